// BlockStore's public operations. Making room and moving blocks between tiers is tier_moves.cc.
#include <algorithm>
#include <cstring>

#include "core/store_core.h"
#include "kvault/common/block_format.h"
#include "kvault/common/log.h"

namespace kvault::storage {

StoreCore::StoreCore(const BlockStoreOptions& options, StoreTiers tiers,
                     std::vector<std::unique_ptr<EvictionPolicy>> policies)
    : options_(options),
      owned_clock_(options.clock ? nullptr : std::make_unique<SteadyClock>()),
      clock_(options.clock ? options.clock : owned_clock_.get()),
      owned_tiers_(std::move(tiers)),
      host_(owned_tiers_.host.get()),
      policies_(std::move(policies)) {
  tiers_[static_cast<int>(TierKind::kGpu)] = owned_tiers_.gpu.get();
  tiers_[static_cast<int>(TierKind::kHost)] = owned_tiers_.host.get();
  tiers_[static_cast<int>(TierKind::kNvme)] = owned_tiers_.nvme.get();
  // GpuTier is final and ExportIpc is not part of the Tier seam: only the real tier exports.
  gpu_ipc_ = dynamic_cast<const GpuTier*>(owned_tiers_.gpu.get());
}

StoreCore::~StoreCore() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  mover_cv_.notify_all();
  for (std::thread& t : movers_) t.join();
}

Status StoreCore::Recover() {
  struct Dropped {
    ScopedKey key;
    TierSlot slot;
    uint32_t bytes;
  };
  for (TierKind kind : {TierKind::kGpu, TierKind::kHost, TierKind::kNvme}) {
    Tier* t = tier(kind);
    if (t == nullptr) continue;
    // Blocks over max_object_bytes (stored before the limit was lowered) could never be served:
    // no reply may describe an object that large. They are erased once the tier is read.
    std::vector<Dropped> oversized;
    KVAULT_RETURN_IF_ERROR(t->Recover([&](const ScopedKey& key, TierSlot slot, uint32_t bytes) {
      if (bytes > options_.max_object_bytes) {
        oversized.push_back({key, slot, bytes});
        return;
      }
      std::lock_guard lock(mu_);
      if (index_.Find(key) != kNoEntry) return;  // a duplicate across tiers: keep the first
      const EntryId id = InsertEntry(key, bytes);
      IndexEntry& e = index_.at(id);
      e.slot = slot;
      e.tier = kind;
      PublishIn(id, kind);
    }));
    for (const Dropped& d : oversized) t->Erase(d.key, d.slot, d.bytes);
    if (!oversized.empty()) {
      KVAULT_LOG(LogLevel::kWarn, "storage",
                 "dropped " + std::to_string(oversized.size()) + " block(s) recovered from the " +
                     std::string(TierName(kind)) +
                     " tier that are larger than the largest object now allowed (" +
                     std::to_string(options_.max_object_bytes) +
                     " bytes: max_object_bytes, kvaultd's limits.max_block_bytes)");
    }
    // A tier started with a smaller capacity than it held: the movers evict down to its low
    // watermark, and the operator should know why blocks went.
    if (const TierUsage u = t->Usage(); u.reserved_bytes > u.capacity_bytes) {
      KVAULT_LOG(
          LogLevel::kWarn, "storage",
          "the " + std::string(TierName(kind)) + " tier holds " +
              std::to_string(u.reserved_bytes >> 20) + " MiB (" + std::to_string(u.blocks) +
              " blocks) from before, over its capacity of " +
              std::to_string(u.capacity_bytes >> 20) +
              " MiB: blocks will be evicted to bring it under (by the movers, down to its low "
              "watermark, or by writes that need room)");
    }
  }
  return Status::Ok();
}

TierKind StoreCore::landing_tier() const {
  return options_.land_on_gpu && tier(TierKind::kGpu) ? TierKind::kGpu : TierKind::kHost;
}

std::optional<TierKind> StoreCore::ColderTier(TierKind kind) const {
  for (int k = static_cast<int>(kind) + 1; k < kTierCount; ++k) {
    if (tiers_[k] != nullptr) return static_cast<TierKind>(k);
  }
  return std::nullopt;
}

uint64_t StoreCore::KeyHash(const ScopedKey& key) { return ScopedKeyHash{}(key); }

bool StoreCore::Evictable(EntryId id) const {
  const IndexEntry& e = index_.at(id);
  return e.state == EntryState::kResident && e.pins == 0 && e.leases == 0;
}

void StoreCore::ReleaseEntryLease(EntryId id) {
  --index_.at(id).leases;
  ResumeIfUnheld(id);
  EraseIfLostAndUnused(id);
}

void StoreCore::ForgetLost(EntryId id) {
  IndexEntry& e = index_.at(id);
  if (e.state != EntryState::kLost) policy(e.tier)->OnLeave(id);
  e.state = EntryState::kLost;
  EraseIfLostAndUnused(id);
}

void StoreCore::EraseIfLostAndUnused(EntryId id) {
  const IndexEntry& e = index_.at(id);
  if (e.state == EntryState::kLost && e.pins == 0 && e.leases == 0) EraseEntry(id);
}

void StoreCore::ExpireLeases() {
  const size_t expired =
      leases_.ExpireDue(clock_->NowNanos(), [this](EntryId id) { ReleaseEntryLease(id); });
  counters_.leases_expired += expired;
}

void StoreCore::ResumeStalledDemotion(TierKind kind) {
  TierDemotion& demotion = demotion_[static_cast<int>(kind)];
  if (!demotion.stalled) return;
  demotion.stalled = false;
  WakeMovers();
}

void StoreCore::ResumeIfUnheld(EntryId id) {
  const IndexEntry& e = index_.at(id);
  if (e.pins == 0 && e.leases == 0) ResumeStalledDemotion(e.tier);
}

void StoreCore::PublishIn(EntryId id, TierKind kind) {
  IndexEntry& e = index_.at(id);
  if (e.state == EntryState::kReserved) {
    --pending_writes_;
    pending_write_bytes_ -= e.object_bytes;
  }
  e.tier = kind;
  e.state = EntryState::kResident;
  // The parent is a hint taken at Reserve: it may have left since and its id been reused, even by
  // this entry (never its own parent: the policies' lists would loop).
  EntryId parent = e.parent == id ? kNoEntry : e.parent;
  if (parent != kNoEntry) {
    const IndexEntry& p = index_.at(parent);
    if (p.state != EntryState::kResident || p.tier != kind) parent = kNoEntry;
  }
  policy(kind)->OnInsert(id, parent, KeyHash(e.key));
  ResumeStalledDemotion(kind);  // a new block to take as a victim (once no pin holds it)
}

uint64_t StoreCore::TenantBytes(TenantId tenant) const {
  std::lock_guard lock(mu_);
  const auto held = tenant_bytes_.find(tenant);
  return held == tenant_bytes_.end() ? 0 : held->second;
}

EntryId StoreCore::InsertEntry(const ScopedKey& key, uint32_t object_bytes) {
  const EntryId id = index_.Insert(key);
  index_.at(id).object_bytes = object_bytes;
  tenant_bytes_[key.tenant] += object_bytes;
  ++pending_writes_;  // a new entry is reserved until PublishIn
  pending_write_bytes_ += object_bytes;
  return id;
}

void StoreCore::EraseEntry(EntryId id) {
  const IndexEntry& e = index_.at(id);
  if (e.state == EntryState::kReserved) {
    --pending_writes_;
    pending_write_bytes_ -= e.object_bytes;
  }
  auto held = tenant_bytes_.find(e.key.tenant);
  held->second -= e.object_bytes;
  if (held->second == 0) tenant_bytes_.erase(held);
  index_.Erase(id);
}

void StoreCore::DropEntry(EntryId id, bool evicted) {
  IndexEntry& e = index_.at(id);
  if (evicted) {
    policy(e.tier)->OnRemove(id);
  } else {
    policy(e.tier)->OnLeave(id);
  }
  tier(e.tier)->Erase(e.key, e.slot, e.object_bytes);
  EraseEntry(id);
}

Result<std::optional<WriteReservation>> StoreCore::Reserve(const ScopedKey& key,
                                                           uint32_t object_bytes,
                                                           const WriteOptions& options) {
  if (object_bytes == 0 || object_bytes > options_.max_object_bytes) {
    return Status::InvalidArgument("block object of " + std::to_string(object_bytes) +
                                   " bytes: must be 1.." +
                                   std::to_string(options_.max_object_bytes));
  }
  Lock lock(mu_);
  ExpireLeases();
  if (EntryId id = index_.Find(key); id != kNoEntry) {
    const IndexEntry& e = index_.at(id);
    if (e.state == EntryState::kLost) {
      return Status::Unavailable("a damaged copy of this block is still leased; retry later");
    }
    if (e.state == EntryState::kResident || e.state == EntryState::kMoving) {
      policy(e.tier)->OnAccess(id);
    }
    return std::optional<WriteReservation>();
  }
  if (const auto quota = options_.tenant_quota_bytes.find(key.tenant);
      quota != options_.tenant_quota_bytes.end() && quota->second > 0) {
    const uint64_t held = tenant_bytes_[key.tenant];
    if (held + object_bytes > quota->second) {
      ++counters_.quota_rejects;
      return Status::ResourceExhausted(std::string(kTenantQuotaRefusal) + " of " +
                                       std::to_string(quota->second) + " bytes reached (" +
                                       std::to_string(held) + " held)");
    }
  }
  EntryId parent = kNoEntry;
  if (options.parent) parent = index_.Find(ScopedKey{key.tenant, *options.parent});

  // A block the host arena can never hold would empty it before failing: it goes to the colder
  // tier, or is refused when there is none.
  const bool host_can_hold = host_->CanEverHold(object_bytes);
  if (!host_can_hold && !ColderTier(TierKind::kHost)) {
    return Status::InvalidArgument(
        "block object of " + std::to_string(object_bytes) + " bytes: larger than the host tier (" +
        std::to_string(host_->capacity_bytes()) + " bytes) can hold, and there is no colder tier");
  }
  // A full host tier asks its policy whether the block is worth a victim; a block it turns away
  // is staged privately and goes to the next colder tier at Commit (or is not cached).
  // The host policy hears of the parent only when it is one of the host tier's blocks: one in a
  // colder tier is not the policy's to spare, nor to take as a last resort.
  const EntryId host_parent = parent != kNoEntry && index_.at(parent).tier == TierKind::kHost &&
                                      index_.at(parent).state == EntryState::kResident
                                  ? parent
                                  : kNoEntry;
  const bool admitted =
      host_can_hold &&
      (host_->Fits(object_bytes) || policy(TierKind::kHost)->Admit(KeyHash(key), host_parent));
  std::unique_ptr<uint8_t[]> staging;
  TierSlot slot = 0;
  if (admitted) {
    Result<TierSlot> allocated = AllocateHost(object_bytes, lock);
    if (!allocated.ok()) {
      if (options.count_refusal) ++counters_.rejected_no_space;
      return allocated.status();
    }
    slot = *allocated;
    // The key may have been written while AllocateHost released the lock.
    if (index_.Find(key) != kNoEntry) {
      host_->Free(slot, object_bytes);
      return std::optional<WriteReservation>();
    }
    // And the parent may have been evicted for this block, its id freed for this one to take.
    if (options.parent) parent = index_.Find(ScopedKey{key.tenant, *options.parent});
  } else {
    if (host_can_hold) ++counters_.admission_rejects;
    staging.reset(new uint8_t[object_bytes]);
  }
  const EntryId id = InsertEntry(key, object_bytes);
  IndexEntry& e = index_.at(id);
  e.slot = slot;
  e.tier = TierKind::kHost;
  e.parent = parent;
  std::span<uint8_t> bytes =
      staging ? std::span<uint8_t>(staging.get(), object_bytes) : host_->Bytes(slot, object_bytes);
  return std::optional<WriteReservation>(WriteReservation(this, id, bytes, std::move(staging)));
}

Status StoreCore::Commit(EntryId id, std::span<uint8_t> bytes, bool staged,
                         std::optional<uint64_t> computed_checksum) {
  ScopedKey key;
  {
    std::lock_guard lock(mu_);
    key = index_.at(id).key;
  }
  ParseOptions parse;
  parse.expected_key = &key.key;
  parse.computed_checksum = computed_checksum;
  Result<BlockView> view = ParseBlockObject(bytes, parse);
  if (!view.ok()) {
    Abort(id, staged);
    std::lock_guard lock(mu_);
    ++counters_.rejected_corrupt;
    return view.status().WithContext("commit rejected");
  }
  if (staged) {
    // Not admitted to host: straight to the colder tier, if there is one.
    std::optional<TierKind> colder = ColderTier(TierKind::kHost);
    Result<TierSlot> slot = colder ? PutWithRoom(*colder, key, bytes)
                                   : Result<TierSlot>(Status::ResourceExhausted("not admitted"));
    std::lock_guard lock(mu_);
    if (!slot.ok()) {
      EraseEntry(id);
      ++counters_.declined_writes;
      return Status::Ok();  // a cache may decline a block; the writer is not at fault
    }
    index_.at(id).slot = *slot;
    PublishIn(id, *colder);
    ++counters_.commits;
    counters_.committed_bytes += bytes.size();
    return Status::Ok();
  }
  bool mover_work = false;
  {
    std::lock_guard lock(mu_);
    PublishIn(id, TierKind::kHost);
    ++counters_.commits;
    counters_.committed_bytes += bytes.size();
    if (landing_tier() == TierKind::kGpu && !promotions_stopped_) {
      // Writes land in host; a mover carries them to the gpu tier.
      if (promotions_.size() < options_.mover_queue_limit) {
        promotions_.push_back(key);
      } else {
        ++counters_.promotions_dropped;
      }
    }
    // A mover woken with nothing to do goes back to sleep at once, but the wake-up costs this
    // thread a system call and the mover a core: on a full tier, every commit would pay it.
    mover_work = MoverHasWork();
  }
  if (mover_work) WakeMovers();
  return Status::Ok();
}

void StoreCore::Abort(EntryId id, bool staged) {
  std::lock_guard lock(mu_);
  IndexEntry& e = index_.at(id);
  if (!staged) host_->Free(e.slot, e.object_bytes);
  EraseEntry(id);
  ++counters_.aborted_reservations;
}

LookupResult StoreCore::Lookup(TenantId tenant, std::span<const BlockKey> keys,
                               const LookupOptions& options) {
  LookupResult result;
  result.tiers.resize(keys.size());
  std::vector<EntryId> ids(keys.size(), kNoEntry);
  // Every key is hashed once, before the lock, several at a time (BlockIndex::Hash of each).
  std::vector<uint64_t> hashes(keys.size());
  HashScopedKeys(tenant, keys, hashes);
  bool queued_promotion = false;
  {
    Lock lock(mu_);
    ExpireLeases();
    // Overlap cache misses: fetch the table slot kSlotAhead keys ahead and the entry it points
    // to kEntryAhead keys ahead of the key being probed.
    constexpr size_t kSlotAhead = 16, kEntryAhead = 8;
    for (size_t i = 0; i < std::min(keys.size(), kSlotAhead); ++i) index_.Prefetch(hashes[i]);
    bool leading = true;
    for (size_t i = 0; i < keys.size(); ++i) {
      if (i + kEntryAhead < keys.size()) index_.PrefetchEntry(hashes[i + kEntryAhead]);
      const ScopedKey key{tenant, keys[i]};
      const EntryId id = index_.Find(key, hashes[i]);
      if (i + kSlotAhead < keys.size()) index_.Prefetch(hashes[i + kSlotAhead]);
      const bool present = id != kNoEntry && (index_.at(id).state == EntryState::kResident ||
                                              index_.at(id).state == EntryState::kMoving);
      if (!present) {
        leading = false;
        continue;
      }
      const IndexEntry& e = index_.at(id);
      result.tiers[i] = e.tier;
      if (!leading) continue;
      ids[i] = id;
      ++result.leading_hits;
      if (options.touch) policy(e.tier)->OnAccess(id);
      if (options.touch && options_.promote_on_hit && e.tier > landing_tier() && !movers_.empty() &&
          !promotions_stopped_) {
        if (promotions_.size() < options_.mover_queue_limit) {
          promotions_.push_back(key);
          queued_promotion = true;
        } else {
          ++counters_.promotions_dropped;
        }
      }
    }
    if (options.count) {
      ++counters_.lookups;
      counters_.lookup_keys += keys.size();
      counters_.hit_blocks += result.leading_hits;
      counters_.miss_blocks += keys.size() - result.leading_hits;
    }
    if (options.lease_ttl.count() > 0 && result.leading_hits > 0) {
      const auto ttl = std::min(options.lease_ttl, options_.max_lease_ttl);
      ids.resize(result.leading_hits);
      for (EntryId id : ids) ++index_.at(id).leases;
      result.lease = leases_.Add(std::move(ids), clock_->NowNanos() + ttl.count());
      ++counters_.leases_granted;
    }
  }
  if (queued_promotion) WakeMovers();
  return result;
}

Status StoreCore::ReleaseLease(LeaseId lease) {
  std::lock_guard lock(mu_);
  ExpireLeases();
  if (!leases_.Remove(lease, [this](EntryId id) { ReleaseEntryLease(id); })) {
    return Status::NotFound("lease " + std::to_string(lease) + " is unknown or expired");
  }
  ++counters_.leases_released;
  return Status::Ok();
}

Result<std::optional<kernels::GpuIpcExport>> StoreCore::ExportGpu(const ScopedKey& key,
                                                                  LeaseId lease) {
  using Export = std::optional<kernels::GpuIpcExport>;
  std::lock_guard lock(mu_);
  ExpireLeases();
  if (!leases_.Contains(lease)) {
    return Status::NotFound("lease_expired: lease " + std::to_string(lease) +
                            " is unknown or expired");
  }
  const EntryId id = index_.Find(key);
  if (id == kNoEntry) return Export();
  const IndexEntry& e = index_.at(id);
  if (e.state != EntryState::kResident && e.state != EntryState::kMoving) return Export();
  if (!leases_.Covers(lease, id)) {
    return Status::InvalidArgument("lease " + std::to_string(lease) +
                                   " does not cover this block; export only what a lookup leased");
  }
  if (e.tier != TierKind::kGpu) return Export();
  if (gpu_ipc_ == nullptr) {
    return Status::Unsupported("the gpu tier of this store cannot export CUDA IPC handles");
  }
  // A leased block stays in place (a mover that started before the lease keeps it where it is),
  // so the slot read here stays valid while the lease lives.
  Result<kernels::GpuIpcExport> exported = gpu_ipc_->ExportIpc(e.key, e.slot, e.object_bytes);
  if (!exported.ok()) {
    const StatusCode code = exported.status().code();
    if (code == StatusCode::kNotFound || code == StatusCode::kInvalidArgument) {
      return Status::Internal("gpu tier and index disagree: " + exported.status().message());
    }
    return exported.status();
  }
  policy(TierKind::kGpu)->OnAccess(id);
  return Export(*exported);
}

Result<std::optional<BlockPin>> StoreCore::Pin(const ScopedKey& key) {
  Lock lock(mu_);
  ExpireLeases();
  const EntryId id = index_.Find(key);
  if (id == kNoEntry) return std::optional<BlockPin>();
  IndexEntry& e = index_.at(id);
  if (e.state != EntryState::kResident && e.state != EntryState::kMoving) {
    return std::optional<BlockPin>();
  }
  policy(e.tier)->OnAccess(id);
  // Counted once the bytes are in hand: a read that fails is a read failure, not a load.
  auto counted = [this](BlockPin pin) {
    ++counters_.pins;
    counters_.pinned_bytes += pin.bytes().size();
    return std::optional<BlockPin>(std::move(pin));
  };
  if (e.tier == TierKind::kHost) {
    ++e.pins;
    return counted(
        BlockPin(this, id, host_->Bytes(e.slot, e.object_bytes), TierKind::kHost, nullptr));
  }
  if (options_.promote_on_hit && !promotions_stopped_ && e.state == EntryState::kResident &&
      e.tier > TierKind::kHost) {
    Status promoted = Promote(id, TierKind::kHost, /*pin_after=*/true, lock);
    if (promoted.ok()) {
      const IndexEntry& now = index_.at(id);
      return counted(
          BlockPin(this, id, host_->Bytes(now.slot, now.object_bytes), TierKind::kHost, nullptr));
    }
    if (promoted.code() == StatusCode::kCorruption || promoted.code() == StatusCode::kNotFound) {
      return std::optional<BlockPin>();
    }
    // No room in host, or a concurrent reader: read a private copy below.
    if (index_.Find(key) != id || index_.at(id).state != EntryState::kResident) {
      return std::optional<BlockPin>();
    }
  }
  // Read a private copy where the block is; the pin keeps it from moving while we read.
  IndexEntry& entry = index_.at(id);
  ++entry.pins;
  const TierKind where = entry.tier;
  const TierSlot slot = entry.slot;
  const uint32_t bytes = entry.object_bytes;
  lock.unlock();
  std::unique_ptr<uint8_t[]> copy(new uint8_t[bytes]);
  Status read = tier(where)->Read(key, slot, bytes, {copy.get(), bytes});
  lock.lock();
  --index_.at(id).pins;
  ResumeIfUnheld(id);  // a mover may have given up on the tier while this block was pinned
  if (read.code() == StatusCode::kCorruption || read.code() == StatusCode::kNotFound) {
    ++counters_.read_failures;
    ForgetLost(id);  // the tier already deleted what it could not verify; erased once unused
    return std::optional<BlockPin>();
  }
  EraseIfLostAndUnused(id);  // another reader may have found it damaged meanwhile
  if (!read.ok()) {
    ++counters_.read_failures;
    return read;
  }
  std::span<const uint8_t> view(copy.get(), bytes);
  return counted(BlockPin(this, kNoEntry, view, where, std::move(copy)));
}

void StoreCore::Unpin(EntryId id) {
  if (id == kNoEntry) return;
  std::lock_guard lock(mu_);
  --index_.at(id).pins;
  ResumeIfUnheld(id);
  EraseIfLostAndUnused(id);
}

Result<bool> StoreCore::Delete(const ScopedKey& key) {
  std::lock_guard lock(mu_);
  ExpireLeases();
  const EntryId id = index_.Find(key);
  if (id == kNoEntry) return false;
  if (index_.at(id).state == EntryState::kDropping) return false;  // being evicted
  if (!Evictable(id)) {
    return Status::Unavailable("block is pinned, leased, being written or being moved");
  }
  DropEntry(id, /*evicted=*/false);
  ++counters_.deletes;
  return true;
}

}  // namespace kvault::storage
