// The gpu tier in a build without CUDA: every entry point reports Unsupported. No GpuTier is ever
// constructed here; the members exist so that code using them links.

#include <utility>

#include "kvault/storage/gpu_tier.h"

namespace kvault::storage {
namespace {

Status NoCuda() { return Status::Unsupported("this build has no CUDA"); }

}  // namespace

class GpuTier::Impl {};

Result<std::unique_ptr<GpuTier>> GpuTier::Create(const GpuTierOptions& /*options*/) {
  return NoCuda();
}

GpuTier::GpuTier(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GpuTier::~GpuTier() = default;

int GpuTier::device() const { return -1; }
uint64_t GpuTier::capacity_bytes() const { return 0; }
TierUsage GpuTier::Usage() const { return {}; }

Result<TierSlot> GpuTier::Put(const ScopedKey& /*key*/, std::span<const uint8_t> /*object*/) {
  return NoCuda();
}

Status GpuTier::Read(const ScopedKey& /*key*/, TierSlot /*slot*/, uint32_t /*object_bytes*/,
                     std::span<uint8_t> /*out*/) {
  return NoCuda();
}

void GpuTier::Erase(const ScopedKey& /*key*/, TierSlot /*slot*/, uint32_t /*object_bytes*/) {}

void GpuTier::VisitCounters(CounterVisitor& /*visitor*/) const {}

Result<kernels::GpuIpcExport> GpuTier::ExportIpc(const ScopedKey& /*key*/, TierSlot /*slot*/,
                                        uint32_t /*object_bytes*/) const {
  return NoCuda();
}

}  // namespace kvault::storage
