// BlockStore's facade, its handles, and the counters it reports.
#include <algorithm>

#include "core/store_core.h"

namespace kvault::storage {

bool IsTenantQuotaRefusal(const Status& status) {
  return status.code() == StatusCode::kResourceExhausted &&
         status.message().starts_with(kTenantQuotaRefusal);
}

Result<std::unique_ptr<BlockStore>> BlockStore::Create(const BlockStoreOptions& options,
                                                       StoreTiers tiers) {
  if (!tiers.host) return Status::InvalidArgument("block store: a host tier is required");
  if (!(options.low_watermark > 0 && options.low_watermark <= options.high_watermark &&
        options.high_watermark <= 1.0)) {
    return Status::InvalidArgument("block store: need 0 < low_watermark <= high_watermark <= 1");
  }
  if (options.mover_threads < 0 || options.mover_threads > 64) {
    return Status::InvalidArgument("block store: mover_threads must be 0..64");
  }
  if (options.max_object_bytes == 0) {
    return Status::InvalidArgument("block store: max_object_bytes must be > 0");
  }
  if (options.land_on_gpu && !tiers.gpu) {
    return Status::InvalidArgument("block store: land_on_gpu needs a gpu tier");
  }
  if (options.land_on_gpu && options.mover_threads == 0) {
    return Status::InvalidArgument(
        "block store: land_on_gpu needs mover_threads > 0 (a mover carries new blocks to the gpu "
        "tier)");
  }
  std::vector<std::unique_ptr<EvictionPolicy>> policies(kTierCount);
  const Tier* present[kTierCount] = {tiers.gpu.get(), tiers.host.get(), tiers.nvme.get()};
  for (int k = 0; k < kTierCount; ++k) {
    if (present[k] == nullptr) continue;
    const bool nvme = k == static_cast<int>(TierKind::kNvme);
    Result<std::unique_ptr<EvictionPolicy>> policy =
        MakeEvictionPolicy(nvme ? options.nvme_policy : options.policy);
    if (!policy.ok()) return policy.status().WithContext("block store");
    policies[k] = std::move(*policy);
  }
  auto core = std::make_unique<StoreCore>(options, std::move(tiers), std::move(policies));
  KVAULT_RETURN_IF_ERROR(core->Recover());
  core->StartMovers();
  return std::unique_ptr<BlockStore>(new BlockStore(std::move(core)));
}

BlockStore::BlockStore(std::unique_ptr<StoreCore> core) : core_(std::move(core)) {}
BlockStore::~BlockStore() = default;

Result<std::optional<WriteReservation>> BlockStore::Reserve(TenantId tenant, const BlockKey& key,
                                                            uint32_t object_bytes,
                                                            const WriteOptions& options) {
  return core_->Reserve(ScopedKey{tenant, key}, object_bytes, options);
}

Result<bool> BlockStore::Put(TenantId tenant, const BlockKey& key, std::span<const uint8_t> object,
                             const WriteOptions& options) {
  if (object.size() > UINT32_MAX) return Status::InvalidArgument("block object too large");
  Result<std::optional<WriteReservation>> reserved =
      Reserve(tenant, key, static_cast<uint32_t>(object.size()), options);
  if (!reserved.ok()) return reserved.status();
  if (!reserved->has_value()) return false;
  WriteReservation& reservation = **reserved;
  std::copy(object.begin(), object.end(), reservation.bytes().begin());
  KVAULT_RETURN_IF_ERROR(reservation.Commit());
  return true;
}

LookupResult BlockStore::Lookup(TenantId tenant, std::span<const BlockKey> keys,
                                const LookupOptions& options) {
  return core_->Lookup(tenant, keys, options);
}

Status BlockStore::ReleaseLease(LeaseId lease) { return core_->ReleaseLease(lease); }

Result<std::optional<kernels::GpuIpcExport>> BlockStore::ExportGpu(TenantId tenant,
                                                                   const BlockKey& key,
                                                                   LeaseId lease) {
  return core_->ExportGpu(ScopedKey{tenant, key}, lease);
}

Result<std::optional<BlockPin>> BlockStore::Pin(TenantId tenant, const BlockKey& key) {
  return core_->Pin(ScopedKey{tenant, key});
}

Result<bool> BlockStore::Delete(TenantId tenant, const BlockKey& key) {
  return core_->Delete(ScopedKey{tenant, key});
}

void BlockStore::VisitCounters(CounterVisitor& visitor) const { core_->VisitCounters(visitor); }

void BlockStore::WaitForMovers() { core_->WaitForMovers(); }

BlockStore::PersistReport BlockStore::PersistRamTiers(
    std::chrono::steady_clock::time_point deadline) {
  return core_->PersistRamTiers(deadline);
}

uint64_t BlockStore::TenantBytes(TenantId tenant) const { return core_->TenantBytes(tenant); }

// WriteReservation

WriteReservation::WriteReservation(WriteReservation&& other) noexcept
    : core_(std::exchange(other.core_, nullptr)),
      entry_(other.entry_),
      bytes_(other.bytes_),
      owned_(std::move(other.owned_)) {}

WriteReservation& WriteReservation::operator=(WriteReservation&& other) noexcept {
  if (this != &other) {
    Abort();
    core_ = std::exchange(other.core_, nullptr);
    entry_ = other.entry_;
    bytes_ = other.bytes_;
    owned_ = std::move(other.owned_);
  }
  return *this;
}

WriteReservation::~WriteReservation() { Abort(); }

Status WriteReservation::Commit() { return CommitWith(std::nullopt); }

Status WriteReservation::Commit(uint64_t computed_checksum) {
  return CommitWith(computed_checksum);
}

Status WriteReservation::CommitWith(std::optional<uint64_t> computed_checksum) {
  if (core_ == nullptr) return Status::InvalidArgument("reservation already committed or aborted");
  StoreCore* core = std::exchange(core_, nullptr);
  return core->Commit(entry_, bytes_, owned_ != nullptr, computed_checksum);
}

void WriteReservation::Abort() {
  if (core_ == nullptr) return;
  std::exchange(core_, nullptr)->Abort(entry_, owned_ != nullptr);
}

// BlockPin

BlockPin::BlockPin(BlockPin&& other) noexcept
    : core_(std::exchange(other.core_, nullptr)),
      entry_(other.entry_),
      bytes_(other.bytes_),
      tier_(other.tier_),
      owned_(std::move(other.owned_)) {}

BlockPin& BlockPin::operator=(BlockPin&& other) noexcept {
  if (this != &other) {
    Release();
    core_ = std::exchange(other.core_, nullptr);
    entry_ = other.entry_;
    bytes_ = other.bytes_;
    tier_ = other.tier_;
    owned_ = std::move(other.owned_);
  }
  return *this;
}

BlockPin::~BlockPin() { Release(); }

void BlockPin::Release() {
  if (core_ == nullptr) return;
  std::exchange(core_, nullptr)->Unpin(entry_);
}

// Counters

void StoreCore::VisitCounters(CounterVisitor& visitor) const {
  {
    std::lock_guard lock(mu_);
    const StoreCounters& c = counters_;
    visitor.Counter("", "lookups_total", c.lookups);
    visitor.Counter("", "lookup_keys_total", c.lookup_keys);
    visitor.Counter("", "hit_blocks_total", c.hit_blocks);
    visitor.Counter("", "miss_blocks_total", c.miss_blocks);
    visitor.Counter("", "commits_total", c.commits);
    visitor.Counter("", "committed_bytes_total", c.committed_bytes);
    visitor.Counter("", "aborted_reservations_total", c.aborted_reservations);
    visitor.Counter("", "rejected_corrupt_writes_total", c.rejected_corrupt);
    visitor.Counter("", "rejected_no_space_total", c.rejected_no_space);
    visitor.Counter("", "quota_rejects_total", c.quota_rejects);
    visitor.Counter("", "admission_rejects_total", c.admission_rejects);
    visitor.Counter("", "declined_writes_total", c.declined_writes);
    visitor.Counter("", "pins_total", c.pins);
    visitor.Counter("", "pinned_bytes_total", c.pinned_bytes);
    visitor.Counter("", "deletes_total", c.deletes);
    visitor.Counter("", "leases_granted_total", c.leases_granted);
    visitor.Counter("", "leases_expired_total", c.leases_expired);
    visitor.Counter("", "leases_released_total", c.leases_released);
    visitor.Counter("", "move_failures_total", c.move_failures);
    visitor.Counter("", "promotions_dropped_total", c.promotions_dropped);
    visitor.Counter("", "read_failures_total", c.read_failures);
    visitor.Gauge("", "indexed_blocks", static_cast<double>(index_.size()));
    visitor.Gauge("", "active_leases", static_cast<double>(leases_.size()));
    visitor.Gauge("", "pending_writes", static_cast<double>(pending_writes_));
    visitor.Gauge("", "pending_write_bytes", static_cast<double>(pending_write_bytes_));
    visitor.Gauge("", "queued_promotions", static_cast<double>(promotions_.size()));
    for (int k = 0; k < kTierCount; ++k) {
      if (tiers_[k] == nullptr) continue;
      const std::string_view name = TierName(static_cast<TierKind>(k));
      visitor.Counter(name, "evictions_total", c.evictions[k]);
      visitor.Counter(name, "demotions_total", c.demotions[k]);
      visitor.Counter(name, "promotions_total", c.promotions[k]);
    }
  }
  for (const Tier* t : tiers_) {
    if (t != nullptr) t->VisitCounters(visitor);
  }
}

}  // namespace kvault::storage
