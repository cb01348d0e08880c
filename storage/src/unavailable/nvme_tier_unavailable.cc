// The nvme tier in a build without RocksDB: Open reports Unsupported, so no NvmeTier object ever
// exists and the other members are never called.

#include <utility>

#include "kvault/storage/nvme_tier.h"

namespace kvault::storage {

class NvmeTier::Impl {};

NvmeTier::NvmeTier(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
NvmeTier::~NvmeTier() = default;

Result<std::unique_ptr<NvmeTier>> NvmeTier::Open(const NvmeTierOptions& /*options*/) {
  return Status::Unsupported("nvme tier: this build has no RocksDB");
}

TierUsage NvmeTier::Usage() const { return {}; }

Result<TierSlot> NvmeTier::Put(const ScopedKey& /*key*/, std::span<const uint8_t> /*object*/) {
  return Status::Unsupported("nvme tier: this build has no RocksDB");
}

Status NvmeTier::Read(const ScopedKey& /*key*/, TierSlot /*slot*/, uint32_t /*object_bytes*/,
                      std::span<uint8_t> /*out*/) {
  return Status::Unsupported("nvme tier: this build has no RocksDB");
}

void NvmeTier::Erase(const ScopedKey& /*key*/, TierSlot /*slot*/, uint32_t /*object_bytes*/) {}

Status NvmeTier::Recover(const RecoverFn& /*found*/) {
  return Status::Unsupported("nvme tier: this build has no RocksDB");
}

void NvmeTier::VisitCounters(CounterVisitor& /*visitor*/) const {}

bool NvmeTier::disk_full() const { return false; }

}  // namespace kvault::storage
