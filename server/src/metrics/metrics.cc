#include "metrics/metrics.h"

#include <prometheus/text_serializer.h>

#include <exception>

#include "kvault/storage/block_store.h"
#include "metrics/store_metric_names.h"

namespace kvault::server {
namespace {

// Request latencies from tens of microseconds (a lookup served from the index) to seconds (a
// large load from nvme under load).
const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const prometheus::Histogram::BucketBoundaries buckets = {
      0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
      0.05,    0.1,    0.25,    0.5,    1.0,   2.5,    5.0,   10.0};
  return buckets;
}

constexpr std::array<std::string_view, kRequestOpCount> kOpNames = {
    "lookup", "store", "load",       "release",       "delete",
    "stats",  "ping",  "gpu_export", "release_memory"};
constexpr std::array<std::string_view, kRejectReasonCount> kReasonNames = {
    "unauthenticated", "malformed", "too_large", "too_many_connections", "quota_exceeded",
    "no_space",        "timeout",   "draining",  "unsupported"};

}  // namespace

std::string_view RequestOpName(RequestOp op) { return kOpNames[static_cast<size_t>(op)]; }
std::string_view RejectReasonName(RejectReason reason) {
  return kReasonNames[static_cast<size_t>(reason)];
}

// The CounterVisitor that copies one refresh into the registry. Runs under refresh_mu_.
class Metrics::Refresher : public storage::CounterVisitor {
 public:
  explicit Refresher(Metrics& m) : m_(m) {}

  void Counter(std::string_view tier, std::string_view name, uint64_t value) override {
    StoreSeries* s = Series(tier, name, /*counter=*/true);
    if (s->counter == nullptr) return;
    // A value below the last one means the source restarted: count from its new value.
    const uint64_t delta = value >= s->last ? value - s->last : value;
    s->last = value;
    if (delta != 0) s->counter->Increment(static_cast<double>(delta));
  }

  void Gauge(std::string_view tier, std::string_view name, double value) override {
    StoreSeries* s = Series(tier, name, /*counter=*/false);
    if (s->gauge != nullptr) s->gauge->Set(value);
  }

 private:
  // The series for (tier, name), registered on first sight. When the registry refuses it (a name
  // already used with another type) both pointers stay null: that figure is left out and the
  // daemon goes on.
  StoreSeries* Series(std::string_view tier, std::string_view name, bool counter) {
    std::string id = std::string(tier) + "/" + std::string(name);
    if (auto it = m_.store_series_.find(id); it != m_.store_series_.end()) return &it->second;
    const StoreMetricName mapped = MapStoreMetric(tier, name);
    prometheus::Labels labels(mapped.labels.begin(), mapped.labels.end());
    if (!tier.empty()) labels.emplace("tier", std::string(tier));
    StoreSeries series;
    try {
      if (counter) {
        series.counter = &Add(m_.counter_families_, prometheus::BuildCounter(), mapped, labels);
      } else {
        series.gauge = &Add(m_.gauge_families_, prometheus::BuildGauge(), mapped, labels);
      }
    } catch (const std::exception&) {
      series = StoreSeries{};  // remembered as refused, so it is not retried on every refresh
    }
    return &m_.store_series_.emplace(std::move(id), series).first->second;
  }

  template <typename T>
  T& Add(std::map<std::string, prometheus::Family<T>*>& families,
         prometheus::detail::Builder<T> builder, const StoreMetricName& mapped,
         const prometheus::Labels& labels) {
    auto it = families.find(mapped.name);
    if (it == families.end()) {
      auto& family = builder.Name(mapped.name).Help(mapped.help).Register(*m_.registry_);
      it = families.emplace(mapped.name, &family).first;
    }
    return it->second->Add(labels);
  }

  Metrics& m_;
};

Metrics::Metrics() : registry_(std::make_shared<prometheus::Registry>()) {
  auto& latency = prometheus::BuildHistogram()
                      .Name("kvault_request_duration_seconds")
                      .Help(
                          "Time the daemon spends on a decoded request until its reply "
                          "is ready (block transfers included; reading the frame and writing "
                          "the reply not), by operation.")
                      .Register(*registry_);
  for (size_t i = 0; i < kRequestOpCount; ++i) {
    request_seconds_[i] = &latency.Add({{"op", std::string(kOpNames[i])}}, LatencyBuckets());
  }
  auto& rejected =
      prometheus::BuildCounter()
          .Name("kvault_rejected_requests_total")
          .Help(
              "Requests and connections refused, by reason; no_space and quota_exceeded count "
              "the store entries refused, one per key.")
          .Register(*registry_);
  for (size_t i = 0; i < kRejectReasonCount; ++i) {
    rejected_[i] = &rejected.Add({{"reason", std::string(kReasonNames[i])}});
  }
  connections_ = &prometheus::BuildGauge()
                      .Name("kvault_connections")
                      .Help("Open control-plane connections.")
                      .Register(*registry_)
                      .Add({});
  inflight_bytes_ =
      &prometheus::BuildGauge()
           .Name("kvault_inflight_bytes")
           .Help(
               "Bytes of the stores and loads in progress: store object lengths and load "
               "destination capacities as the clients gave them.")
           .Register(*registry_)
           .Add({});
  client_memory_faults_ =
      &prometheus::BuildCounter()
           .Name("kvault_client_memory_faults_total")
           .Help(
               "Faults in a client's shared memory that the client had cut short (shrunk its "
               "segment) while kvaultd read or wrote it, and reads of its segment's file that "
               "came up short; absorbed, and the transfers through that memory failed.")
           .Register(*registry_)
           .Add({});
  mapped_client_bytes_ =
      &prometheus::BuildGauge()
           .Name("kvault_mapped_client_bytes")
           .Help(
               "Bytes of clients' memory counted as mapped into kvaultd (shared-memory segments "
               "and regions it copies through), within data_plane.mapped_client_bytes.")
           .Register(*registry_)
           .Add({});
  mapped_client_dropped_ =
      &prometheus::BuildCounter()
           .Name("kvault_mapped_client_dropped_bytes_total")
           .Help(
               "Bytes of clients' memory kvaultd unmapped again to stay within "
               "data_plane.mapped_client_bytes (the clients keep them).")
           .Register(*registry_)
           .Add({});
}

void Metrics::ObserveRequest(RequestOp op, std::chrono::nanoseconds latency) {
  request_seconds_[static_cast<size_t>(op)]->Observe(
      std::chrono::duration<double>(latency).count());
}

void Metrics::CountRejected(RejectReason reason) {
  rejected_[static_cast<size_t>(reason)]->Increment();
}

void Metrics::RefreshFromStore(const storage::BlockStore& store) {
  RefreshFromCounters([&store](storage::CounterVisitor& v) { store.VisitCounters(v); });
}

void Metrics::RefreshFromCounters(const std::function<void(storage::CounterVisitor&)>& visit) {
  std::lock_guard lock(refresh_mu_);
  Refresher refresher(*this);
  visit(refresher);
}

void Metrics::AdvanceTo(prometheus::Counter* counter, uint64_t* last, uint64_t total) {
  if (total <= *last) return;
  counter->Increment(static_cast<double>(total - *last));
  *last = total;
}

void Metrics::RefreshClientMemoryFaults(uint64_t total) {
  std::lock_guard lock(refresh_mu_);
  AdvanceTo(client_memory_faults_, &client_memory_faults_last_, total);
}

void Metrics::RefreshMappedClientMemory(uint64_t mapped, uint64_t dropped_total) {
  std::lock_guard lock(refresh_mu_);
  mapped_client_bytes_->Set(static_cast<double>(mapped));
  AdvanceTo(mapped_client_dropped_, &mapped_client_dropped_last_, dropped_total);
}

std::string Metrics::Serialize() const {
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace kvault::server
