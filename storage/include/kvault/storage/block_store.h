#pragma once
// BlockStore: the one facade the daemon serves from (DESIGN.md §7). Every block is a sealed block
// object (docs/block_format.md) scoped by (tenant, 32-byte key) and lives in exactly one tier.
//
//   Writes are two-phase: Reserve() room for an object of n bytes in the landing tier, fill the
//   reservation's bytes (from the network, a codec, a file), then Commit() (the object is verified
//   and published) or Abort(). A reservation that is destroyed without Commit() aborts, so an
//   abandoned write always frees its space.
//   Lookup() reports the leading run of keys present, the tier of every key, and optionally takes a
//   lease: the leading blocks stay readable (never evicted) until the lease is released or its TTL
//   runs out on the store's Clock.
//   Pin() gives read access to one block through an RAII BlockPin: a zero-copy view for the host
//   tier; blocks in colder tiers are promoted into the host tier first (or copied when promotion is
//   off). Pinned blocks are never evicted or moved.
//   When a tier passes its high watermark, background movers demote its least valuable blocks
//   (chosen by the tier's EvictionPolicy) to the next colder tier (gpu -> host -> nvme -> gone)
//   until it is under the low watermark. A write that finds no room evicts in the caller's thread;
//   when every evictable block is pinned, leased or moving it fails at once with ResourceExhausted.
//
// Thread-safety: thread-safe; all methods may be called concurrently. BlockPin and
// WriteReservation are move-only handles used by one thread at a time; they must not outlive the
// store. Lock order (outermost first): BlockStore index mutex -> a tier's internal mutex. Tier I/O
// that can block (nvme reads and writes, GPU copies) and copying block bytes never happen under the
// index mutex.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "kvault/common/block_key.h"
#include "kvault/common/result.h"
#include "kvault/kernels/gpu_ipc.h"
#include "kvault/storage/clock.h"
#include "kvault/storage/counters.h"
#include "kvault/storage/host_tier.h"
#include "kvault/storage/scoped_key.h"
#include "kvault/storage/tier.h"

namespace kvault::storage {

class BlockStore;
class StoreCore;

// Identifies a lease; 0 means "no lease".
using LeaseId = uint64_t;

struct BlockStoreOptions {
  // Eviction policy of the gpu and host tiers, by name (EvictionPolicyNames()). Default "prefix".
  std::string policy = "prefix";
  // Eviction policy of the nvme tier, which is filled by demotion in the host policy's order.
  // Default "lru": measured better there than "prefix" (docs/storage.md, tier manager).
  std::string nvme_policy = "lru";
  // New blocks land in the gpu tier instead of host when one is configured (written to host, then
  // carried by a mover: needs mover_threads > 0). Default off.
  bool land_on_gpu = false;
  // A read (Pin) of a block in a colder tier moves it to the landing tier; with Lookup, a hit in a
  // colder tier queues a background promotion. Off: colder blocks are read where they are.
  bool promote_on_hit = true;
  // Background demotion starts when a tier's reserved bytes pass high_watermark x capacity and
  // stops under low_watermark x capacity. 0 < low <= high <= 1. Defaults 0.95 and 0.90.
  double high_watermark = 0.95;
  double low_watermark = 0.90;
  // Background mover threads (demotion and promotion). 0 disables them: all movement then happens
  // in the threads that write. Default 1.
  int mover_threads = 1;
  // Promotions waiting for a mover at most; more are dropped (counted), never queued without
  // bound. Default 1024.
  size_t mover_queue_limit = 1024;
  // Largest object Reserve accepts. Default 256 MiB. Blocks a persistent tier recovers that are
  // larger (stored under a higher limit) are erased at Create, with a warning.
  uint32_t max_object_bytes = 256u << 20;
  // Lease TTL cap: a longer requested TTL is cut to this. Default 10 minutes.
  std::chrono::nanoseconds max_lease_ttl = std::chrono::minutes(10);
  // Per-tenant cap on the bytes of block objects a tenant holds in all tiers together (reserved
  // and being written included); absent or 0 = no cap. A Reserve that would pass it fails with
  // ResourceExhausted that IsTenantQuotaRefusal() recognises, and counts in quota_rejects_total
  // (making room would not help: the tenant's own bytes are what it is over); room returns as the
  // tenant's blocks are deleted or evicted. Concurrent writers of one tenant may overshoot by
  // the blocks they reserve at the same moment.
  std::unordered_map<TenantId, uint64_t> tenant_quota_bytes{};
  // Time source for leases; nullptr = a SteadyClock owned by the store. Must outlive the store.
  const Clock* clock = nullptr;
};

// The tiers a store manages. Host is required; gpu and nvme are optional. The store owns them.
struct StoreTiers {
  std::unique_ptr<Tier> gpu;
  std::unique_ptr<HostTier> host;
  std::unique_ptr<Tier> nvme;
};

struct WriteOptions {
  // The previous block of the chain, when the writer knows it: lets a prefix-aware policy keep
  // chains whole.
  std::optional<BlockKey> parent{};
  // Count a refusal for want of room in rejected_no_space_total. False for an attempt the
  // caller will repeat once it has freed room (it counts the one it gives up on). Default true.
  bool count_refusal = true;
};

struct LookupOptions {
  // When > 0, the leading hits are leased for this long (capped by max_lease_ttl).
  std::chrono::nanoseconds lease_ttl{0};
  // Count the hits as uses for eviction (false: a pure probe). Default true.
  bool touch = true;
  // Count the lookup in lookups_total, lookup_keys_total, hit_blocks_total and miss_blocks_total
  // (false: a probe of the store's own user, not a client's lookup). Default true.
  bool count = true;
};

struct LookupResult {
  // Keys 0..leading_hits-1 are all present.
  uint32_t leading_hits = 0;
  // Tier of every key, nullopt where absent (keys after the leading run may be present too).
  std::vector<std::optional<TierKind>> tiers;
  // Lease on the leading hits, 0 when none was asked for or nothing hit.
  LeaseId lease = 0;
};

// A block being written. Move-only; destroying it without Commit() aborts.
class WriteReservation {
 public:
  WriteReservation(WriteReservation&& other) noexcept;
  WriteReservation& operator=(WriteReservation&& other) noexcept;
  ~WriteReservation();

  // Where to put the object's bytes; exactly the reserved size.
  std::span<uint8_t> bytes() const { return bytes_; }
  // Verifies the object (block format, checksum, and that its header carries the reserved key)
  // and makes it visible. Corruption on a bad object: the reservation is aborted and nothing is
  // stored. The handle is spent afterwards either way.
  Status Commit();
  // As Commit(), with the checksum of bytes() that the writer computed as they arrived
  // (BlockChecksumStream over the whole object, after the last byte was written): it is compared
  // with the header's instead of hashing the object again.
  Status Commit(uint64_t computed_checksum);
  // Frees the reservation. Idempotent.
  void Abort();

 private:
  friend class StoreCore;
  Status CommitWith(std::optional<uint64_t> computed_checksum);
  WriteReservation(StoreCore* core, uint32_t entry, std::span<uint8_t> bytes,
                   std::unique_ptr<uint8_t[]> owned)
      : core_(core), entry_(entry), bytes_(bytes), owned_(std::move(owned)) {}
  StoreCore* core_ = nullptr;
  uint32_t entry_ = 0;
  std::span<uint8_t> bytes_;
  // Staging for a block the host tier's policy did not admit: it goes to a colder tier (or is
  // not cached) at Commit.
  std::unique_ptr<uint8_t[]> owned_;
};

// Read access to one block. Move-only; the block cannot be evicted or moved while pinned.
class BlockPin {
 public:
  BlockPin(BlockPin&& other) noexcept;
  BlockPin& operator=(BlockPin&& other) noexcept;
  ~BlockPin();

  // The whole block object, valid while the pin lives.
  std::span<const uint8_t> bytes() const { return bytes_; }
  // The tier the bytes are read from.
  TierKind tier() const { return tier_; }

 private:
  friend class StoreCore;
  BlockPin(StoreCore* core, uint32_t entry, std::span<const uint8_t> bytes, TierKind tier,
           std::unique_ptr<uint8_t[]> owned)
      : core_(core), entry_(entry), bytes_(bytes), tier_(tier), owned_(std::move(owned)) {}
  void Release();
  StoreCore* core_ = nullptr;
  uint32_t entry_ = 0;
  std::span<const uint8_t> bytes_;
  TierKind tier_ = TierKind::kHost;
  std::unique_ptr<uint8_t[]> owned_;  // a copy, when the bytes could not be read in place
};

// True for the status Reserve (or Put) returns when the tenant's quota refused the block;
// false for every other status, including ResourceExhausted for want of room in the tiers.
bool IsTenantQuotaRefusal(const Status& status);

class BlockStore {
 public:
  // Builds the store over `tiers` and rebuilds the index from what persistent tiers recovered.
  // InvalidArgument for bad options or a missing host tier; the tiers' Recover() errors.
  static Result<std::unique_ptr<BlockStore>> Create(const BlockStoreOptions& options,
                                                    StoreTiers tiers);
  ~BlockStore();  // stops the movers; outstanding pins and reservations must be gone
  BlockStore(const BlockStore&) = delete;
  BlockStore& operator=(const BlockStore&) = delete;

  // Reserves room for an object of `object_bytes` under (tenant, key). Returns nullopt when the
  // block is already stored or being written (that counts as a use), or a mover is evicting it.
  // InvalidArgument for a size of 0 or over max_object_bytes, or one the host tier can never hold
  // when there is no colder tier (with one, such a block is staged privately and goes there at
  // Commit); ResourceExhausted when no room can be made because everything evictable is pinned,
  // leased or moving, or when the block would take the tenant past its quota (IsTenantQuotaRefusal
  // tells the two apart). May demote or evict other blocks to make room.
  Result<std::optional<WriteReservation>> Reserve(TenantId tenant, const BlockKey& key,
                                                  uint32_t object_bytes,
                                                  const WriteOptions& options = {});

  // Reserve, copy `object`, Commit: for callers that already hold the bytes.
  // Returns false when the block was already present.
  Result<bool> Put(TenantId tenant, const BlockKey& key, std::span<const uint8_t> object,
                   const WriteOptions& options = {});

  // Looks up a chain of keys of one tenant, in order. Never fails; absent keys are misses.
  LookupResult Lookup(TenantId tenant, std::span<const BlockKey> keys,
                      const LookupOptions& options = {});

  // Ends a lease early. NotFound when it does not exist (released or expired).
  Status ReleaseLease(LeaseId lease);

  // Read access to one block: nullopt on a miss (including a block that failed verification in a
  // colder tier, which is then deleted and counted). IoError for a tier that failed to read.
  Result<std::optional<BlockPin>> Pin(TenantId tenant, const BlockKey& key);

  // Describes a block of `tenant` that sits in the gpu tier for a co-located process, which maps
  // it with kernels::GpuIpcImporter and copies it device to device (DESIGN.md §7).
  //   - NotFound ("lease_expired: ...") when `lease` is not live (0, unknown, released or
  //     expired); checked first, whatever the key.
  //   - nullopt when the block is absent (or still being written) or lives in another tier: a
  //     miss, the caller loads it the ordinary way.
  //   - InvalidArgument when the block is present but `lease` does not cover it.
  //   - Unsupported when the gpu tier cannot export (no CUDA IPC on this platform, or a gpu tier
  //     that is not a GpuTier); Internal when the tier does not find a block the index holds.
  // The lease is what keeps the bytes in place while the other process copies them: a leased
  // block is never evicted, demoted or deleted, and nothing moves a block out of the gpu tier
  // but demotion. Once the lease is released or expires, the described range may be reused for
  // another block at any time; a reader that verifies the object it copied (checksum and key in
  // its header) never accepts those bytes as this block's.
  // Security: the description carries the IPC handle of the whole gpu pool, so the importing
  // process can read (and write) every tenant's blocks in it, not only this one. Only hand it to
  // co-located processes that every tenant on the node trusts.
  // Counts as a use of the block for eviction.
  Result<std::optional<kernels::GpuIpcExport>> ExportGpu(TenantId tenant, const BlockKey& key,
                                                         LeaseId lease);

  // Removes a block. Returns false when it was absent (or a mover is evicting it). Unavailable
  // while the block is pinned, leased or being written or moved (nothing is removed).
  Result<bool> Delete(TenantId tenant, const BlockKey& key);

  // Counters and gauges of the store and of every tier.
  void VisitCounters(CounterVisitor& visitor) const;

  // Bytes of block objects `tenant` holds in all tiers (what its quota is checked against).
  uint64_t TenantBytes(TenantId tenant) const;

  // Blocks the caller until the movers have nothing to do (tests and benchmarks).
  void WaitForMovers();

  // What PersistRamTiers moved, and what it left in RAM.
  struct PersistReport {
    uint64_t blocks = 0;       // blocks written to the nvme tier
    uint64_t bytes = 0;        // their object bytes
    uint64_t left_blocks = 0;  // blocks still only in the gpu and host tiers afterwards
  };
  // For a clean stop: writes the blocks only RAM holds (gpu tier, then host tier, coldest first)
  // to the nvme tier, so that a restart serves them again, until `deadline` or until no more can
  // move (the nvme tier evicts colder blocks for them, as demotion does; pinned and leased blocks
  // stay). A block the nvme tier refuses is dropped, as any refused demotion is, and ends the
  // pass. From the call on, no block is promoted out of the nvme tier (a hit reads it where it
  // is; the promotion a mover was running is waited for). Nothing without an nvme tier. The store
  // stays usable; a block written meanwhile stays in RAM.
  PersistReport PersistRamTiers(std::chrono::steady_clock::time_point deadline);

 private:
  explicit BlockStore(std::unique_ptr<StoreCore> core);
  std::unique_ptr<StoreCore> core_;
};

}  // namespace kvault::storage
