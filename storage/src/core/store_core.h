#pragma once
// StoreCore: the BlockStore's state and logic. block_store.cc holds the public operations
// (reserve/commit, lookup, leases, pins, delete), tier_moves.cc the tier manager part (making
// room, demotion, promotion, the mover threads). See block_store.h for the contract and lock order.

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/block_index.h"
#include "core/lease_table.h"
#include "kvault/storage/block_store.h"
#include "kvault/storage/eviction_policy.h"
#include "kvault/storage/gpu_tier.h"

namespace kvault::storage {

// How the message of a quota refusal begins; IsTenantQuotaRefusal looks for nothing else, and no
// other status of the store begins so.
inline constexpr std::string_view kTenantQuotaRefusal = "tenant quota";

// Store-wide event counts; guarded by StoreCore::mu_.
struct StoreCounters {
  uint64_t lookups = 0, lookup_keys = 0, hit_blocks = 0, miss_blocks = 0;
  uint64_t commits = 0, committed_bytes = 0, aborted_reservations = 0, rejected_corrupt = 0;
  uint64_t rejected_no_space = 0, admission_rejects = 0, quota_rejects = 0, declined_writes = 0;
  uint64_t pins = 0, pinned_bytes = 0, deletes = 0;
  uint64_t leases_granted = 0, leases_expired = 0, leases_released = 0;
  uint64_t evictions[kTierCount] = {}, demotions[kTierCount] = {}, promotions[kTierCount] = {};
  uint64_t move_failures = 0, promotions_dropped = 0, read_failures = 0;
};

class StoreCore {
 public:
  StoreCore(const BlockStoreOptions& options, StoreTiers tiers,
            std::vector<std::unique_ptr<EvictionPolicy>> policies);
  ~StoreCore();

  Status Recover();
  void StartMovers();

  Result<std::optional<WriteReservation>> Reserve(const ScopedKey& key, uint32_t object_bytes,
                                                  const WriteOptions& options);
  // `staged`: the bytes are in the reservation's own buffer (the host policy did not admit it).
  Status Commit(EntryId id, std::span<uint8_t> bytes, bool staged,
                std::optional<uint64_t> computed_checksum);
  void Abort(EntryId id, bool staged);
  LookupResult Lookup(TenantId tenant, std::span<const BlockKey> keys,
                      const LookupOptions& options);
  Status ReleaseLease(LeaseId lease);
  Result<std::optional<kernels::GpuIpcExport>> ExportGpu(const ScopedKey& key, LeaseId lease);
  Result<std::optional<BlockPin>> Pin(const ScopedKey& key);
  void Unpin(EntryId id);
  Result<bool> Delete(const ScopedKey& key);
  uint64_t TenantBytes(TenantId tenant) const;
  void VisitCounters(CounterVisitor& visitor) const;
  void WaitForMovers();
  BlockStore::PersistReport PersistRamTiers(std::chrono::steady_clock::time_point deadline);

 private:
  using Lock = std::unique_lock<std::mutex>;

  Tier* tier(TierKind kind) const { return tiers_[static_cast<int>(kind)]; }
  EvictionPolicy* policy(TierKind kind) const { return policies_[static_cast<int>(kind)].get(); }
  TierKind landing_tier() const;
  // The next colder tier present after `kind`, or nullopt (blocks leaving `kind` are dropped).
  std::optional<TierKind> ColderTier(TierKind kind) const;
  static uint64_t KeyHash(const ScopedKey& key);
  bool Evictable(EntryId id) const;
  void ExpireLeases();
  // index_.Insert / index_.Erase that keep tenant_bytes_ right. Caller holds mu_.
  EntryId InsertEntry(const ScopedKey& key, uint32_t object_bytes);
  void EraseEntry(EntryId id);
  void ReleaseEntryLease(EntryId id);
  // Makes `id` resident in tier `kind` for the policies (tells that tier's policy).
  void PublishIn(EntryId id, TierKind kind);
  // A block its tier could not verify (the tier already deleted it): erased now when nothing
  // references the entry, else marked kLost and erased by the last Unpin or lease release.
  void ForgetLost(EntryId id);
  // Erases a kLost entry once nothing references it.
  void EraseIfLostAndUnused(EntryId id);
  // Erases a resident block everywhere: tier, policy, index. Cheap tier erases only (under mu_).
  // `evicted`: the tier gives it up for room (its policy hears OnRemove), else it is deleted
  // (OnLeave).
  void DropEntry(EntryId id, bool evicted);

  // tier_moves.cc
  // Allocates `bytes` in the host arena, demoting or dropping host blocks while it does not fit.
  // ResourceExhausted when nothing evictable is left. May release and retake `lock`.
  Result<TierSlot> AllocateHost(uint32_t bytes, Lock& lock);
  // Puts `object` into a non-host tier, dropping that tier's victims while it reports no room.
  // Called without mu_ held.
  Result<TierSlot> PutWithRoom(TierKind kind, const ScopedKey& key,
                               std::span<const uint8_t> object);
  // Moves resident block `id` one tier colder (or drops it from the coldest). May release and
  // retake `lock`. Returns false when the block stayed where it was.
  bool Demote(EntryId id, Lock& lock);
  // The movers' eviction from the coldest tier `kind`: takes up to kMaxDropsPerHold of its
  // victims (only as many as it takes to reach the low watermark) out of the policy and the
  // lookups' sight, releases `lock` while the tier erases them, then erases their entries.
  // Returns false, having done nothing, when no block was evictable.
  bool DropVictims(TierKind kind, Lock& lock);
  // Moves resident block `id` into tier `to` (hotter). Leaves it pinned once when `pin_after`.
  // Returns the outcome of the read from the colder tier (Corruption drops the block).
  Status Promote(EntryId id, TierKind to, bool pin_after, Lock& lock);
  // Copies the object of `id` (state kMoving, pinned by the caller) into `to`, without mu_.
  Result<TierSlot> CopyToTier(const ScopedKey& key, TierKind from, TierSlot slot, uint32_t bytes,
                              TierKind to, Lock& lock);
  // The tier's reserved bytes less those of victims DropVictims is erasing.
  uint64_t ReservedBytes(TierKind kind) const;
  bool AboveHighWatermark(TierKind kind) const;
  bool AboveLowWatermark(TierKind kind) const;
  void MoverLoop();
  bool MoverHasWork() const;
  void WakeMovers();
  // A block of tier `kind` may have become evictable (a pin or lease went away, a block became
  // resident), so a demotion of that tier that found nothing evictable may find a victim now:
  // clears the tier's stall and wakes a mover. Nothing when the tier's demotion had not stalled
  // (a mover woken without work costs the caller a system call and takes mu_ from it). Caller
  // holds mu_.
  void ResumeStalledDemotion(TierKind kind);
  // ResumeStalledDemotion of `id`'s tier once nothing pins or leases the block (its last pin or
  // lease went away). Caller holds mu_.
  void ResumeIfUnheld(EntryId id);

  const BlockStoreOptions options_;
  std::unique_ptr<SteadyClock> owned_clock_;
  const Clock* clock_;
  StoreTiers owned_tiers_;
  Tier* tiers_[kTierCount] = {};
  HostTier* host_;
  // The gpu tier when it is a GpuTier (the only kind that can export CUDA IPC handles); null
  // without a gpu tier or with another Tier in its place (a test double).
  const GpuTier* gpu_ipc_ = nullptr;
  std::vector<std::unique_ptr<EvictionPolicy>> policies_;  // by TierKind; null for absent tiers

  mutable std::mutex mu_;
  BlockIndex index_;  // guarded by mu_
  // Bytes per tenant over every index entry, whatever its state; kept by InsertEntry/EraseEntry.
  std::unordered_map<TenantId, uint64_t> tenant_bytes_;  // guarded by mu_
  // Entries reserved and not yet committed or aborted, and their bytes.  // guarded by mu_
  uint64_t pending_writes_ = 0;
  uint64_t pending_write_bytes_ = 0;
  LeaseTable leases_;                 // guarded by mu_
  StoreCounters counters_;            // guarded by mu_
  std::deque<ScopedKey> promotions_;  // guarded by mu_
  int busy_movers_ = 0;               // guarded by mu_
  bool stopping_ = false;             // guarded by mu_
  // Set by PersistRamTiers: no block is promoted (queued, moved, or on a hit) any more.
  bool promotions_stopped_ = false;  // guarded by mu_
  // Background demotion of one tier.
  struct TierDemotion {
    // The movers' last try found nothing evictable in the tier: they leave it alone (MoverHasWork)
    // until ResumeStalledDemotion. Per tier, so that one tier full of leased blocks does not stop
    // the demotion of the others.
    bool stalled = false;
    // Bytes of victims DropVictims is erasing outside mu_: gone for the watermarks already.
    uint64_t dropping_bytes = 0;
  };
  TierDemotion demotion_[kTierCount];  // by TierKind; guarded by mu_
  std::condition_variable mover_cv_;
  std::condition_variable idle_cv_;
  std::vector<std::thread> movers_;
};

}  // namespace kvault::storage
