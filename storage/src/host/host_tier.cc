#include "kvault/storage/host_tier.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "alloc/extent_allocator.h"

namespace kvault::storage {

namespace {
// 64-byte granules (cache lines, AVX-512 vectors) and size classes.
constexpr ExtentAllocator::Rounding kHostRounding{64, true};
}  // namespace

uint64_t HostTierClassBytes(uint64_t bytes) {
  return ExtentAllocator::ClassBytes(bytes, kHostRounding);
}

Result<std::unique_ptr<HostTier>> HostTier::Create(const HostTierOptions& options) {
  if (options.capacity_bytes == 0) {
    return Status::InvalidArgument("host tier: capacity_bytes must be > 0");
  }
  const uint64_t page = 2u << 20;
  const uint64_t mapped = (options.capacity_bytes + page - 1) / page * page;
  int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
  if (options.prefault) flags |= MAP_POPULATE;
  void* base = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, flags, -1, 0);
  if (base == MAP_FAILED) {
    return Status::ResourceExhausted("host tier: cannot map " + std::to_string(mapped) +
                                     " bytes: " + std::strerror(errno));
  }
  if (options.huge_pages) madvise(base, mapped, MADV_HUGEPAGE);  // advisory; failure is harmless
  return std::unique_ptr<HostTier>(
      new HostTier(static_cast<uint8_t*>(base), mapped, options.capacity_bytes));
}

HostTier::HostTier(uint8_t* base, uint64_t mapped_bytes, uint64_t capacity)
    : base_(base),
      mapped_bytes_(mapped_bytes),
      capacity_bytes_(capacity),
      allocator_(std::make_unique<ExtentAllocator>(capacity, kHostRounding)) {}

HostTier::~HostTier() { munmap(base_, mapped_bytes_); }

Result<TierSlot> HostTier::Allocate(uint32_t bytes) {
  std::lock_guard lock(mu_);
  std::optional<uint64_t> offset = bytes == 0 ? std::nullopt : allocator_->Allocate(bytes);
  if (!offset) {
    ++allocation_failures_;
    return Status::ResourceExhausted("host tier: no free extent of " + std::to_string(bytes) +
                                     " bytes");
  }
  used_bytes_ += bytes;
  ++blocks_;
  return TierSlot{*offset};
}

void HostTier::Free(TierSlot slot, uint32_t bytes) {
  std::lock_guard lock(mu_);
  allocator_->Free(slot, bytes);
  used_bytes_ -= bytes;
  --blocks_;
}

std::span<uint8_t> HostTier::Bytes(TierSlot slot, uint32_t bytes) const {
  return {base_ + slot, bytes};
}

bool HostTier::Fits(uint32_t bytes) const {
  std::lock_guard lock(mu_);
  return allocator_->largest_free_extent() >= allocator_->ClassBytes(bytes);
}

TierUsage HostTier::Usage() const {
  std::lock_guard lock(mu_);
  return {allocator_->capacity(), used_bytes_, allocator_->allocated_bytes(), blocks_};
}

Result<TierSlot> HostTier::Put(const ScopedKey&, std::span<const uint8_t> object) {
  Result<TierSlot> slot = Allocate(static_cast<uint32_t>(object.size()));
  if (!slot.ok()) return slot;
  std::memcpy(base_ + *slot, object.data(), object.size());
  return slot;
}

Status HostTier::Read(const ScopedKey&, TierSlot slot, uint32_t object_bytes,
                      std::span<uint8_t> out) {
  if (out.size() != object_bytes) return Status::InvalidArgument("host tier: wrong read size");
  std::memcpy(out.data(), base_ + slot, object_bytes);
  return Status::Ok();
}

void HostTier::Erase(const ScopedKey&, TierSlot slot, uint32_t object_bytes) {
  Free(slot, object_bytes);
}

void HostTier::VisitCounters(CounterVisitor& visitor) const {
  std::lock_guard lock(mu_);
  const std::string_view tier = TierName(TierKind::kHost);
  visitor.Gauge(tier, "capacity_bytes", static_cast<double>(allocator_->capacity()));
  visitor.Gauge(tier, "used_bytes", static_cast<double>(used_bytes_));
  visitor.Gauge(tier, "reserved_bytes", static_cast<double>(allocator_->allocated_bytes()));
  visitor.Gauge(tier, "blocks", static_cast<double>(blocks_));
  visitor.Gauge(tier, "fragmentation_ratio", allocator_->fragmentation());
  visitor.Counter(tier, "allocation_failures_total", allocation_failures_);
}

}  // namespace kvault::storage
