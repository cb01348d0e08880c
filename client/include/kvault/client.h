#pragma once
// libkvault: the C++ client of kvaultd (DESIGN.md §9, docs/client.md).
//
//   auto client = kvault::Client::Connect({.server = "127.0.0.1:7480"});   // Result<unique_ptr>
//   auto region = (*client)->RegisterMemory(buffer, bytes);               // host memory
//   kvault::LookupResult hit = (*client)->LookupPrefix(keys, {.want_lease = true});
//   kvault::LoadHandle load = (*client)->Load(hit.lease, first_hits, destinations);
//   Status s = load.Wait();
//
// Every call has a deadline (its options, or ClientConfig::request_timeout). A slow or dead daemon
// becomes misses and an Unavailable status saying why, never a hang and never an exception. The
// client keeps one TCP connection (requests are pipelined over it; a reader thread matches each
// reply to its request by id) and one UCX agent that the daemon GETs stored blocks from and PUTs
// loaded blocks into. When the connection is lost, pending requests fail at once and the next call
// reconnects (at most once per ClientConfig::reconnect_backoff); leases of the lost session are
// then void (a Load with one runs without a lease).
//
// Thread-safety: Client is thread-safe: every method may be called from many threads at once.
// MemoryRegion is thread-compatible; handles are thread-safe (handles.h).

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "kvault/client_config.h"
#include "kvault/common/block_key.h"
#include "kvault/common/result.h"
#include "kvault/handles.h"
#include "kvault/kernels/gpu_ipc.h"

namespace kvault {

namespace client_internal {
struct RegionRecord;
class ClientCore;
}  // namespace client_internal

// Where a looked-up block lives.
enum class Tier : uint8_t { kNone = 0, kGpu = 1, kHost = 2, kNvme = 3 };
// "none", "gpu", "host", "nvme".
std::string_view TierName(Tier tier);

// A server-side pin on looked-up blocks (DESIGN.md §2). Valid only on the session that got it.
struct Lease {
  uint64_t id = 0;       // 0 = no lease
  Deadline expiry{};     // conservative: measured from when the Lookup was sent
  uint64_t session = 0;  // the daemon session that granted it
  bool valid() const { return id != 0; }
};

// Host memory registered with the client's UCX agent: Store sources and Load destinations must lie
// inside one. Move-only. Deregistered when the last of this handle and the unsettled requests
// that use it is gone; the memory itself stays the caller's (RegisterMemory) or is freed then
// (AllocateMemory). Just before, the client queues a ReleaseMemory with remote_key() on the
// current connection, so that the daemon forgets the key before any later request (a region
// registered later may pack to the same key bytes); it never waits for the reply, so the last
// reference may go on any thread, and it sends nothing while disconnected.
class MemoryRegion {
 public:
  MemoryRegion() = default;
  MemoryRegion(MemoryRegion&&) noexcept = default;
  MemoryRegion& operator=(MemoryRegion&&) noexcept = default;
  ~MemoryRegion();

  uint8_t* data() const;
  size_t size() const;
  std::span<uint8_t> bytes() const { return {data(), size()}; }
  // True when [p, p + n) lies inside the region (n > 0).
  bool Contains(const void* p, size_t n) const;
  // The packed UCX remote key sent with requests that use this region.
  const std::vector<uint8_t>& remote_key() const;
  bool valid() const { return record_ != nullptr; }

 private:
  explicit MemoryRegion(std::shared_ptr<client_internal::RegionRecord> record)
      : record_(std::move(record)) {}
  std::shared_ptr<client_internal::RegionRecord> record_;
  friend class Client;
};

struct LookupOptions {
  // Ask for a lease that pins the leading hits until the Load. Default false.
  bool want_lease = false;
  // Requested lease lifetime; 0 = the daemon's default (it may shorten any). Default 0.
  std::chrono::milliseconds lease_ttl{0};
  // Default: now + ClientConfig::request_timeout.
  std::optional<Deadline> deadline{};
};

struct LookupResult {
  // Keys [0, leading_hits) are cached. 0 whenever status is not OK.
  uint32_t leading_hits = 0;
  // One per key when status is OK (kNone for a miss); empty otherwise.
  std::vector<Tier> tiers;
  // Valid when a lease was asked for and granted.
  Lease lease;
  // OK, or why the lookup could not be answered (Unavailable for a dead, slow or unreachable
  // daemon; InvalidArgument for more keys than one request carries under the daemon's limits:
  // its max_keys_per_batch, or fewer when they would not fit in a frame). A failed lookup is a
  // full miss.
  Status status;
};

struct StoreOptions {
  // Default: now + ClientConfig::request_timeout.
  std::optional<Deadline> deadline{};
  // Empty, or one per key: parents[i] is the key of the block before keys[i] in its chain (all
  // zero for a chain's first block, or when not known). A hint for the daemon's prefix-aware
  // eviction, which then evicts a chain from its tail instead of orphaning it from its head;
  // without it every block counts as a chain's first. The span must stay valid during the call.
  std::span<const BlockKey> parents{};
};

// parents for StoreOptions when keys[first..] are consecutive blocks of one chain: keys[i-1] for
// each i > first, and keys[first - 1] (all zero when first is 0) for keys[first].
std::vector<BlockKey> ChainParents(std::span<const BlockKey> keys, size_t first = 0);

// Where one loaded block goes: `buffer` inside a registered region receives object bytes
// [offset, offset + length) (length 0: to the end of the object), e.g. one layer range
// (docs/block_messages.md §4.3). buffer.size() is the capacity.
struct LoadDestination {
  std::span<uint8_t> buffer;
  uint64_t offset = 0;
  uint64_t length = 0;
};

struct LoadOptions {
  // Default: now + ClientConfig::request_timeout.
  std::optional<Deadline> deadline{};
};

// One block of Client::ExportGpuBlocks.
struct GpuBlockExport {
  // OK: `block` describes the block. NotFound: not in the daemon's gpu tier (absent, or in host
  // or nvme: Load it instead). NotFound "lease_expired: ...": the lease is no longer live on the
  // current session. Unsupported: the daemon does not export (storage.gpu_ipc_export is off, or
  // its GPU cannot); the message says which. InvalidArgument: the lease does not cover the key.
  Status status;
  // Set when status is OK: what kernels::GpuIpcImporter maps or copies from.
  kernels::GpuIpcExport block;
};

// How the client's requests on memory the caller registered went (ClientConfig::
// registered_staging_bytes). Counts requests (a Store or Load is one or more requests).
struct RegisteredStagingStats {
  uint64_t pool_bytes = 0;       // the staging pool's size; 0: staging is off
  uint64_t staged_requests = 0;  // copied through the pool
  uint64_t direct_requests = 0;  // sent on the registered memory itself: no room in the pool
  // Pool bytes kept out of use for the client's lifetime: chunks of loads whose connection failed
  // before the daemon answered, which the daemon may still write (docs/client.md, "Handles").
  uint64_t retired_bytes = 0;
};

// One entry of the daemon's Stats reply.
struct ServerStat {
  std::string name;                      // e.g. "host.used_bytes", "store.lookups_total"
  std::variant<uint64_t, double> value;  // counters and byte counts are u64, ratios f64
  double AsDouble() const;
};

class Client {
 public:
  // Validates `config`, creates the UCX agent (unless config.data_plane is false), connects over
  // TCP and runs the Hello/Auth handshake (announcing the agent's worker address), all within
  // config.connect_timeout. Errors: InvalidArgument (config), Unavailable (unreachable or
  // silent daemon, handshake timeout, lost connection, UCX could not start),
  // InvalidArgument "unauthenticated: ..." (the daemon refused the token).
  static Result<std::unique_ptr<Client>> Connect(const ClientConfig& config);
  // Closes the connection; pending requests complete with Unavailable ("client closed").
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Registers caller-owned host memory [ptr, ptr + len) for the daemon's transfers. The memory
  // must outlive the region. Requests on it are staged through the client's own shared memory
  // (ClientConfig::registered_staging_bytes): a Store copies its sources before it returns, a Load
  // copies the bytes of each OK key out when its reply comes. InvalidArgument for a null pointer
  // or zero length; Unsupported without a data plane; UCX's status when it refuses
  // (ResourceExhausted for pinning limits).
  Result<MemoryRegion> RegisterMemory(void* ptr, size_t len);
  // Allocates `len` bytes through UCX and registers them; with a shared-memory transport a daemon
  // on the same host reaches them with single copies (the preferred staging buffer). While the
  // session is on the process-memory plane they are a sealed memfd instead, handed to the daemon
  // as a region it copies through (docs/memory_handover.md, "Regions").
  Result<MemoryRegion> AllocateMemory(size_t len);
  // Keeps `region` out of use instead of freeing it, for memory that a transfer cut off by a lost
  // connection may still be written into (handles.h, "settled"; docs/client.md, "Handles"): it
  // stays mapped and registered for two minutes (past the daemon's default limits.io_timeout of
  // 30 s) or until the client is destroyed, at most four regions at once (the oldest freed
  // first). KvStore and PagedKvStore retire their staging this way. An empty region is ignored.
  void RetireMemory(MemoryRegion region);

  // How many leading keys of a chain (prefix order) the daemon holds; optionally leases them.
  // Never fails as a Result: a failure is a full miss with the reason in `status`.
  LookupResult LookupPrefix(std::span<const BlockKey> keys, const LookupOptions& options = {});

  // Stores sealed block objects (common/block_format.h): sources[i] is the whole object of
  // keys[i], inside a region registered with this client. Batches over the daemon's limits and
  // sources in different regions are split into several requests under one handle. Input errors
  // complete the handle at once with InvalidArgument: mismatched counts, an empty source, a
  // source outside every registered region, an object over the daemon's size limit, parents
  // that are neither empty nor one per key. Per key:
  // OK (stored or already present; also when another request was storing the same block at that
  // moment, whose failure leaves it absent: a later lookup misses), IoError (transfer failed),
  // Corruption (the object failed verification or holds another key), ResourceExhausted (no room
  // or not admitted).
  StoreHandle Store(std::span<const BlockKey> keys,
                    std::span<const std::span<const uint8_t>> sources,
                    const StoreOptions& options = {});

  // Loads blocks (or byte ranges of them) into registered memory. `lease` from LookupPrefix keeps
  // the blocks from being evicted meanwhile; pass Lease{} for none (a lease of an earlier,
  // lost session is dropped silently). Input errors as Store, and an offset or length past the
  // daemon's object size limit; a buffer larger than that limit is fine (no object fills more of
  // it). Per key: OK (bytes written),
  // NotFound (a miss), OutOfRange (range outside the object, or capacity too small; see
  // object_size), IoError (transfer failed), Corruption (the stored object was bad and dropped),
  // NotFound "lease_expired" (the daemon no longer knows the lease).
  LoadHandle Load(const Lease& lease, std::span<const BlockKey> keys,
                  std::span<const LoadDestination> destinations, const LoadOptions& options = {});

  // Ends a lease before its expiry. NotFound ("lease_expired") when the daemon does not know it
  // (expired, released, or from a lost session); Unavailable when the daemon cannot be reached.
  Status ReleaseLease(const Lease& lease, std::optional<Deadline> deadline = std::nullopt);

  // CUDA IPC descriptions of leased blocks that sit in the daemon's gpu tier, for a process on
  // the daemon's host that copies them device to device with kernels::GpuIpcImporter instead of
  // loading them through host memory (docs/client.md, "CUDA IPC export"). `lease` (from
  // LookupPrefix on this connection's session) must cover every key; the described bytes stay
  // in place only while it lives, so copy before releasing it or letting it expire, and verify
  // the copied object (its checksum and key) as any block. Each description maps the daemon's
  // whole gpu pool: only daemons that enable storage.gpu_ipc_export hand them out.
  // Errors: InvalidArgument for no lease or more keys than one request carries under the
  // daemon's limits (its max_keys_per_batch, or fewer when a reply would not fit in a frame);
  // Unavailable when the daemon cannot be reached. Otherwise one GpuBlockExport per key.
  Result<std::vector<GpuBlockExport>> ExportGpuBlocks(
      const Lease& lease, std::span<const BlockKey> keys,
      std::optional<Deadline> deadline = std::nullopt);

  // Drops keys from every tier. One status per key: OK (deleted) or NotFound (was not there).
  // InvalidArgument for more keys than one request carries (as LookupPrefix); Unavailable when
  // the daemon cannot be reached.
  Result<std::vector<Status>> Delete(std::span<const BlockKey> keys,
                                     std::optional<Deadline> deadline = std::nullopt);

  // The daemon's counters and gauges, in its order (docs/protocol.md §4.4).
  Result<std::vector<ServerStat>> Stats(std::optional<Deadline> deadline = std::nullopt);

  // Round trip of a Ping: measures liveness and latency of the control plane.
  Result<std::chrono::nanoseconds> Ping(std::optional<Deadline> deadline = std::nullopt);

  // The staging of requests on RegisterMemory regions so far.
  RegisteredStagingStats registered_staging() const;

  // True while the current connection is up (false after a loss, until a call reconnects).
  bool connected() const;
  // The daemon's id of the current session (0 when disconnected).
  uint64_t session_id() const;
  const ClientConfig& config() const;

 private:
  explicit Client(std::unique_ptr<client_internal::ClientCore> core);
  std::unique_ptr<client_internal::ClientCore> core_;
};

}  // namespace kvault
