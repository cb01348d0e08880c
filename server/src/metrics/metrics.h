#pragma once
// Metrics: kvaultd's Prometheus metrics (DESIGN.md §11) over one prometheus::Registry.
//
//   Request-level series are updated by the control plane as things happen:
//     kvault_request_duration_seconds{op}      histogram, op in RequestOpName()
//     kvault_rejected_requests_total{reason}   counter, reason in RejectReasonName()
//     kvault_connections                       gauge, open control connections
//     kvault_inflight_bytes                    gauge, block bytes in transfer
//     kvault_client_memory_faults_total        counter, faults in client shared memory that its
//                                              client had cut short, and short reads of its file
//                                              (absorbed; the transfers through it failed), set by
//                                              RefreshClientMemoryFaults
//     kvault_mapped_client_bytes               gauge, client memory counted as mapped into
//                                              kvaultd (data_plane.mapped_client_bytes bounds it)
//     kvault_mapped_client_dropped_bytes_total counter, client memory unmapped again beyond that
//                                              bound; both set by RefreshMappedClientMemory
//   Every op and reason series exists from construction, at 0.
//   Storage series (kvault_store_*, kvault_tier_*{tier}, kvault_checksum_failures_total{tier})
//   are copied from the storage module's counters by RefreshFromStore(), typically right before
//   each scrape; store_metric_names.h says how names map.
//
// No label carries a key, a token, a hash or a tenant name: label values come only from the fixed
// sets below and the tier names.
// Thread-safety: thread-safe; every method may be called concurrently.

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "kvault/storage/counters.h"

namespace kvault::storage {
class BlockStore;
}

namespace kvault::server {

// The control-plane operations timed per request.
enum class RequestOp : uint8_t {
  kLookup,
  kStore,
  kLoad,
  kRelease,
  kDelete,
  kStats,
  kPing,
  kGpuExport,
  kReleaseMemory
};
inline constexpr size_t kRequestOpCount = 9;
// "lookup", "store", "load", "release", "delete", "stats", "ping", "gpu_export",
// "release_memory".
std::string_view RequestOpName(RequestOp op);

// Why a request (or connection) was refused.
enum class RejectReason : uint8_t {
  kUnauthenticated,     // failed hello, a request before hello, or a wrong worker proof
  kMalformed,           // a frame or message that does not decode
  kTooLarge,            // over a size limit: frame, block, keys per request
  kTooManyConnections,  // limits.max_connections or limits.max_unauthenticated_per_peer reached
  kQuotaExceeded,       // the tenant's quota_bytes reached
  kNoSpace,             // the store could not make room
  kTimeout,             // a read, write or handshake deadline passed
  kDraining,            // arrived while the daemon shuts down
  kUnsupported,         // a protocol version or feature this daemon does not have
};
inline constexpr size_t kRejectReasonCount = 9;
// "unauthenticated", "malformed", "too_large", "too_many_connections", "quota_exceeded",
// "no_space", "timeout", "draining", "unsupported".
std::string_view RejectReasonName(RejectReason reason);

class Metrics {
 public:
  Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  void ObserveRequest(RequestOp op, std::chrono::nanoseconds latency);
  void CountRejected(RejectReason reason);
  void ConnectionOpened() { connections_->Increment(); }
  void ConnectionClosed() { connections_->Decrement(); }
  // `delta` bytes started (> 0) or finished (< 0) moving.
  void AddInflightBytes(int64_t delta) { inflight_bytes_->Increment(static_cast<double>(delta)); }

  // Copies the store's counters and gauges into the storage series. Counters advance by what the
  // store's counter advanced since the last refresh (a counter that went back, as a new store
  // would, counts from its new value).
  void RefreshFromStore(const storage::BlockStore& store);
  // The same over any source that reports through a CounterVisitor (tests, other modules).
  void RefreshFromCounters(const std::function<void(storage::CounterVisitor&)>& visit);

  // Advances kvault_client_memory_faults_total to `total`, a process-wide count that only grows
  // (transport::PeerMemoryGuard::absorbed_total() plus ArrivingObjects::cut_reads_total()),
  // typically right before each scrape.
  void RefreshClientMemoryFaults(uint64_t total);
  // Sets kvault_mapped_client_bytes to `mapped` and advances
  // kvault_mapped_client_dropped_bytes_total to `dropped_total` (transport::MappedResidency's
  // resident_bytes() and dropped_bytes(); the counter never goes back).
  void RefreshMappedClientMemory(uint64_t mapped, uint64_t dropped_total);

  // Every series in the Prometheus text format 0.0.4.
  std::string Serialize() const;

  // For components that register metrics of their own (they keep the kvault_ conventions).
  prometheus::Registry& registry() { return *registry_; }

 private:
  class Refresher;
  struct StoreSeries {
    prometheus::Counter* counter = nullptr;
    prometheus::Gauge* gauge = nullptr;
    uint64_t last = 0;  // the storage counter's value at the previous refresh
  };

  std::shared_ptr<prometheus::Registry> registry_;
  std::array<prometheus::Histogram*, kRequestOpCount> request_seconds_{};
  std::array<prometheus::Counter*, kRejectReasonCount> rejected_{};
  prometheus::Gauge* connections_ = nullptr;
  prometheus::Gauge* inflight_bytes_ = nullptr;
  prometheus::Counter* client_memory_faults_ = nullptr;
  prometheus::Gauge* mapped_client_bytes_ = nullptr;
  prometheus::Counter* mapped_client_dropped_ = nullptr;

  // Advances `counter` to `total`, a process-wide count that only grows, from `*last` (the total
  // it was advanced to before); a total not above it changes nothing. Under refresh_mu_.
  static void AdvanceTo(prometheus::Counter* counter, uint64_t* last, uint64_t total);

  std::mutex refresh_mu_;  // guards the members below
  uint64_t client_memory_faults_last_ = 0;
  uint64_t mapped_client_dropped_last_ = 0;
  // Keyed by "<tier>/<storage name>".
  std::map<std::string, StoreSeries> store_series_;
  std::map<std::string, prometheus::Family<prometheus::Counter>*> counter_families_;
  std::map<std::string, prometheus::Family<prometheus::Gauge>*> gauge_families_;
};

}  // namespace kvault::server
