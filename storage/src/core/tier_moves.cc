// The tier manager part of the store: making room, demotion, promotion, and the mover threads.
#include <cstring>
#include <vector>

#include "core/store_core.h"

namespace kvault::storage {
namespace {
// Bounds the victims one request may evict before it gives up with ResourceExhausted (a victim
// can come back when a reader pins it during its move).
constexpr int kMaxEvictionAttempts = 4096;
// Victims a mover takes from the coldest tier per hold of the index mutex (DropVictims): the
// lookups and writers waiting for the mutex wait for at most this many policy picks, never for
// the erases (a RocksDB write each in the nvme tier).
constexpr size_t kMaxDropsPerHold = 64;
}  // namespace

Result<TierSlot> StoreCore::AllocateHost(uint32_t bytes, Lock& lock) {
  // Evicting cannot make room for more than the whole arena: refuse before emptying it (a
  // promotion of a block that went to a colder tier for its size).
  if (!host_->CanEverHold(bytes)) {
    return Status::ResourceExhausted("host tier: a block of " + std::to_string(bytes) +
                                     " bytes is larger than the tier can hold");
  }
  for (int attempt = 0; attempt < kMaxEvictionAttempts; ++attempt) {
    Result<TierSlot> slot = host_->Allocate(bytes);
    if (slot.ok()) {
      if (!movers_.empty() && AboveHighWatermark(TierKind::kHost)) mover_cv_.notify_one();
      return slot;
    }
    std::optional<EntryId> victim =
        policy(TierKind::kHost)->PickVictim([this](EntryId id) { return Evictable(id); });
    if (!victim) break;
    Demote(*victim, lock);
  }
  return Status::ResourceExhausted(
      "host tier full: every block that could make room is pinned, leased or being moved");
}

Result<TierSlot> StoreCore::PutWithRoom(TierKind kind, const ScopedKey& key,
                                        std::span<const uint8_t> object) {
  // Evicting cannot make room for more than the whole tier: refuse before emptying it.
  if (object.size() > tier(kind)->Usage().capacity_bytes) {
    return Status::ResourceExhausted(std::string(TierName(kind)) + " tier: a block of " +
                                     std::to_string(object.size()) +
                                     " bytes is larger than the tier");
  }
  for (int attempt = 0; attempt < kMaxEvictionAttempts; ++attempt) {
    Result<TierSlot> slot = tier(kind)->Put(key, object);
    if (slot.ok() || slot.status().code() != StatusCode::kResourceExhausted) return slot;
    Lock lock(mu_);
    std::optional<EntryId> victim =
        policy(kind)->PickVictim([this](EntryId id) { return Evictable(id); });
    if (!victim) return slot;
    Demote(*victim, lock);
  }
  return Status::ResourceExhausted(std::string(TierName(kind)) + " tier: no room after evicting");
}

Result<TierSlot> StoreCore::CopyToTier(const ScopedKey& key, TierKind from, TierSlot slot,
                                       uint32_t bytes, TierKind to, Lock& lock) {
  if (to == TierKind::kHost) {
    Result<TierSlot> host_slot = AllocateHost(bytes, lock);
    if (!host_slot.ok()) return host_slot;
    lock.unlock();
    Status read = tier(from)->Read(key, slot, bytes, host_->Bytes(*host_slot, bytes));
    lock.lock();
    if (!read.ok()) {
      host_->Free(*host_slot, bytes);
      return read;
    }
    return host_slot;
  }
  lock.unlock();
  std::unique_ptr<uint8_t[]> staging;
  std::span<const uint8_t> source;
  Status read;
  if (from == TierKind::kHost) {
    source = host_->Bytes(slot, bytes);
  } else {
    staging.reset(new uint8_t[bytes]);
    read = tier(from)->Read(key, slot, bytes, {staging.get(), bytes});
    source = {staging.get(), bytes};
  }
  Result<TierSlot> put = read.ok() ? PutWithRoom(to, key, source) : Result<TierSlot>(read);
  lock.lock();
  // Corruption and NotFound mean the source's copy is lost (Demote and Promote forget the block);
  // the destination refusing the write, even with RocksDB's Corruption, loses nothing.
  if (read.ok() && !put.ok() &&
      (put.status().code() == StatusCode::kCorruption ||
       put.status().code() == StatusCode::kNotFound)) {
    return Status::IoError(std::string(TierName(to)) +
                           " tier refused the block: " + put.status().message());
  }
  return put;
}

bool StoreCore::Demote(EntryId id, Lock& lock) {
  IndexEntry& e = index_.at(id);
  const TierKind from = e.tier;
  const std::optional<TierKind> colder = ColderTier(from);
  if (!colder) {
    ++counters_.evictions[static_cast<int>(from)];
    DropEntry(id, /*evicted=*/true);
    return true;
  }
  const ScopedKey key = e.key;
  const TierSlot slot = e.slot;
  const uint32_t bytes = e.object_bytes;
  e.state = EntryState::kMoving;
  ++e.pins;  // the mover's own pin: nobody else frees the source while it is copied
  Result<TierSlot> moved = CopyToTier(key, from, slot, bytes, *colder, lock);
  IndexEntry& after = index_.at(id);
  --after.pins;
  if (!moved.ok()) {
    ++counters_.move_failures;
    if (moved.status().code() == StatusCode::kCorruption ||
        moved.status().code() == StatusCode::kNotFound) {
      ForgetLost(id);
      return true;
    }
    // The colder tier refused (full disk, failed write): the block leaves this tier anyway so
    // that writers make progress, unless someone started using it meanwhile, or a reader found
    // it damaged meanwhile (ForgetLost: it is out of the policy already).
    if (after.state != EntryState::kMoving) {
      EraseIfLostAndUnused(id);
      return false;
    }
    after.state = EntryState::kResident;
    if (after.pins == 0 && after.leases == 0) {
      ++counters_.evictions[static_cast<int>(from)];
      DropEntry(id, /*evicted=*/true);
      return true;
    }
    return false;
  }
  if (after.pins > 0 || after.leases > 0 || after.state != EntryState::kMoving) {
    // Read or leased while it moved: it is evidently hot, keep it where it is.
    tier(*colder)->Erase(key, *moved, bytes);
    if (after.state == EntryState::kMoving) after.state = EntryState::kResident;
    EraseIfLostAndUnused(id);
    return false;
  }
  policy(from)->OnRemove(id);
  tier(from)->Erase(key, slot, bytes);
  after.slot = *moved;
  PublishIn(id, *colder);
  ++counters_.demotions[static_cast<int>(from)];
  return true;
}

bool StoreCore::DropVictims(TierKind kind, Lock& lock) {
  struct Victim {
    EntryId id;
    ScopedKey key;
    TierSlot slot;
    uint32_t bytes;
    uint64_t reserved;  // what the tier's reserved bytes fall by when it is erased
  };
  TierDemotion& demotion = demotion_[static_cast<int>(kind)];
  std::vector<Victim> victims;
  while (victims.size() < kMaxDropsPerHold && AboveLowWatermark(kind)) {
    const std::optional<EntryId> victim =
        policy(kind)->PickVictim([this](EntryId id) { return Evictable(id); });
    if (!victim) break;
    IndexEntry& e = index_.at(*victim);
    policy(kind)->OnRemove(*victim);
    // Absent for lookups and reads from now on, and not evictable again; the entry stays in the
    // index until the tier has erased the block, so that nobody stores the key again meanwhile.
    e.state = EntryState::kDropping;
    const uint64_t reserved =
        kind == TierKind::kHost ? HostTierClassBytes(e.object_bytes) : e.object_bytes;
    demotion.dropping_bytes += reserved;
    victims.push_back({*victim, e.key, e.slot, e.object_bytes, reserved});
  }
  if (victims.empty()) return false;
  lock.unlock();
  for (const Victim& v : victims) tier(kind)->Erase(v.key, v.slot, v.bytes);
  lock.lock();
  for (const Victim& v : victims) {
    demotion.dropping_bytes -= v.reserved;
    EraseEntry(v.id);
  }
  counters_.evictions[static_cast<int>(kind)] += victims.size();
  return true;
}

Status StoreCore::Promote(EntryId id, TierKind to, bool pin_after, Lock& lock) {
  IndexEntry& e = index_.at(id);
  const TierKind from = e.tier;
  const ScopedKey key = e.key;
  const TierSlot slot = e.slot;
  const uint32_t bytes = e.object_bytes;
  e.state = EntryState::kMoving;
  ++e.pins;
  Result<TierSlot> moved = CopyToTier(key, from, slot, bytes, to, lock);
  IndexEntry& after = index_.at(id);
  --after.pins;
  if (!moved.ok()) {
    if (moved.status().code() == StatusCode::kCorruption ||
        moved.status().code() == StatusCode::kNotFound) {
      ++counters_.read_failures;
      ForgetLost(id);
    } else {
      ++counters_.move_failures;
      if (after.state == EntryState::kMoving) after.state = EntryState::kResident;
    }
    return moved.status();
  }
  if (after.pins > 0 || after.state != EntryState::kMoving) {
    tier(to)->Erase(key, *moved, bytes);
    if (after.state == EntryState::kMoving) {
      after.state = EntryState::kResident;
      return Status::Unavailable("block is being read");
    }
    EraseIfLostAndUnused(id);
    return Status::Corruption("block failed verification");
  }
  policy(from)->OnLeave(id);  // promoted, not evicted: `from` keeps no ghost of it
  tier(from)->Erase(key, slot, bytes);
  after.slot = *moved;
  PublishIn(id, to);
  ++counters_.promotions[static_cast<int>(to)];
  if (pin_after) ++after.pins;
  return Status::Ok();
}

BlockStore::PersistReport StoreCore::PersistRamTiers(
    std::chrono::steady_clock::time_point deadline) {
  BlockStore::PersistReport report;
  if (tiers_[static_cast<int>(TierKind::kNvme)] == nullptr) return report;
  Lock lock(mu_);
  // No block leaves the nvme tier for RAM from now on (a promotion erases its nvme copy): none
  // is queued or started, and the one a mover may be running is waited for.
  promotions_stopped_ = true;
  promotions_.clear();
  idle_cv_.wait(lock, [this] { return busy_movers_ == 0; });
  ExpireLeases();
  // The gpu tier's blocks go to host first (Demote moves one tier colder), then host's to nvme.
  for (const TierKind kind : {TierKind::kGpu, TierKind::kHost}) {
    if (tiers_[static_cast<int>(kind)] == nullptr) continue;
    const TierKind colder = *ColderTier(kind);
    while (std::chrono::steady_clock::now() < deadline) {
      const std::optional<EntryId> victim =
          policy(kind)->PickVictim([this](EntryId id) { return Evictable(id); });
      if (!victim) break;
      const ScopedKey key = index_.at(*victim).key;
      const uint32_t bytes = index_.at(*victim).object_bytes;
      const bool stayed = !Demote(*victim, lock);
      const EntryId now = index_.Find(key);
      // A block that stayed would be picked again; one that is gone was refused by the colder
      // tier (full, failing) or found damaged, and going on would drop every other block to no
      // purpose: both end the pass.
      if (stayed || now == kNoEntry || index_.at(now).tier != colder) break;
      if (colder == TierKind::kNvme) {
        ++report.blocks;
        report.bytes += bytes;
      }
    }
  }
  for (const TierKind kind : {TierKind::kGpu, TierKind::kHost}) {
    if (tiers_[static_cast<int>(kind)] != nullptr) {
      report.left_blocks += tier(kind)->Usage().blocks;
    }
  }
  return report;
}

uint64_t StoreCore::ReservedBytes(TierKind kind) const {
  const uint64_t reserved = tier(kind)->Usage().reserved_bytes;
  const uint64_t dropping = demotion_[static_cast<int>(kind)].dropping_bytes;
  // Between the erases and DropVictims retaking mu_, the tier no longer counts the victims but
  // dropping_bytes still does: the clamp keeps that brief undercount at zero.
  return reserved > dropping ? reserved - dropping : 0;
}

bool StoreCore::AboveHighWatermark(TierKind kind) const {
  return static_cast<double>(ReservedBytes(kind)) >
         options_.high_watermark * static_cast<double>(tier(kind)->Usage().capacity_bytes);
}

bool StoreCore::AboveLowWatermark(TierKind kind) const {
  return static_cast<double>(ReservedBytes(kind)) >
         options_.low_watermark * static_cast<double>(tier(kind)->Usage().capacity_bytes);
}

bool StoreCore::MoverHasWork() const {
  if (!promotions_.empty() && !promotions_stopped_) return true;
  for (int k = 0; k < kTierCount; ++k) {
    if (tiers_[k] != nullptr && !demotion_[k].stalled &&
        AboveHighWatermark(static_cast<TierKind>(k))) {
      return true;
    }
  }
  return false;
}

void StoreCore::WakeMovers() {
  if (movers_.empty()) return;
  mover_cv_.notify_one();
}

void StoreCore::StartMovers() {
  for (int i = 0; i < options_.mover_threads; ++i) movers_.emplace_back([this] { MoverLoop(); });
}

void StoreCore::MoverLoop() {
  Lock lock(mu_);
  while (true) {
    mover_cv_.wait(lock, [this] { return stopping_ || MoverHasWork(); });
    if (stopping_) return;
    ++busy_movers_;
    // Demote from every tier over its high watermark down to its low watermark, hottest first.
    // A stalled tier is tried too (a failed move can leave a victim without a resume): the try
    // clears or renews its stall.
    for (int k = 0; k < kTierCount && !stopping_; ++k) {
      const TierKind kind = static_cast<TierKind>(k);
      if (tiers_[k] == nullptr || !AboveHighWatermark(kind)) continue;
      const bool coldest = !ColderTier(kind);
      demotion_[k].stalled = false;
      while (!stopping_ && AboveLowWatermark(kind)) {
        if (coldest) {
          if (DropVictims(kind, lock)) continue;
          demotion_[k].stalled = true;  // resumed when a block of the tier may be evictable
          break;
        }
        std::optional<EntryId> victim =
            policy(kind)->PickVictim([this](EntryId id) { return Evictable(id); });
        if (!victim) {
          demotion_[k].stalled = true;
          break;
        }
        Demote(*victim, lock);
      }
    }
    // Then one queued promotion, so demotion never waits behind a long promotion queue.
    if (!promotions_.empty() && !stopping_ && !promotions_stopped_) {
      const ScopedKey key = promotions_.front();
      promotions_.pop_front();
      const EntryId id = index_.Find(key);
      if (id != kNoEntry && index_.at(id).state == EntryState::kResident &&
          index_.at(id).tier != landing_tier()) {
        const TierKind to = landing_tier();
        if (index_.at(id).tier > to) (void)Promote(id, to, /*pin_after=*/false, lock);
      }
    }
    --busy_movers_;
    idle_cv_.notify_all();
  }
}

void StoreCore::WaitForMovers() {
  Lock lock(mu_);
  idle_cv_.wait(lock, [this] { return movers_.empty() || (busy_movers_ == 0 && !MoverHasWork()); });
}

}  // namespace kvault::storage
