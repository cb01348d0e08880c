#pragma once
// HostTier: block objects in one RAM arena with a byte cap (DESIGN.md §7 `host`).
//
// The arena is a single anonymous mapping of `capacity_bytes`, reserved up front but faulted in
// only as blocks land, so a fresh tier costs no resident memory. Because it is one contiguous,
// page-aligned range it can be pinned for CUDA (cudaHostRegister) and registered with UCX once;
// arena() exposes it for that. Blocks are placed by ExtentAllocator (size classes, best fit,
// coalescing); fragmentation is reported as a gauge.
//
// Reads are zero-copy: Bytes() returns a view into the arena that stays valid until the slot is
// freed; the BlockStore's pins guarantee that nobody frees a slot that is being read.
//
// Thread-safe: allocation and accounting take an internal mutex; copying bytes does not.

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>

#include "kvault/common/result.h"
#include "kvault/storage/tier.h"

namespace kvault::storage {

class ExtentAllocator;

struct HostTierOptions {
  // Cap on the bytes the arena can hand out (block objects plus size-class rounding). Must be
  // > 0. Default 1 GiB.
  uint64_t capacity_bytes = uint64_t{1} << 30;
  // Ask the kernel for transparent huge pages on the arena: fewer TLB misses when copying large
  // blocks; costs up to 2 MiB of extra resident memory per partly used huge page. Default on.
  bool huge_pages = true;
  // Fault every page in at start (MAP_POPULATE): the first writes are faster, but the whole cap
  // is resident from the start. Default off.
  bool prefault = false;
};

// Bytes the arena spends on an object of `bytes` bytes (its size class, >= bytes).
uint64_t HostTierClassBytes(uint64_t bytes);

class HostTier final : public Tier {
 public:
  // InvalidArgument for a zero capacity; ResourceExhausted when the mapping fails.
  static Result<std::unique_ptr<HostTier>> Create(const HostTierOptions& options);
  ~HostTier() override;
  HostTier(const HostTier&) = delete;
  HostTier& operator=(const HostTier&) = delete;

  // Reserves room for an object of `bytes` bytes. ResourceExhausted when no free extent is large
  // enough (the caller evicts and retries). The bytes are uninitialised.
  Result<TierSlot> Allocate(uint32_t bytes);
  // Returns a slot from Allocate (or Put) with the same `bytes`.
  void Free(TierSlot slot, uint32_t bytes);
  // The `bytes` bytes at `slot`. Valid until the slot is freed.
  std::span<uint8_t> Bytes(TierSlot slot, uint32_t bytes) const;
  // The whole arena, for one-time CUDA pinning or UCX registration.
  std::span<uint8_t> arena() const { return {base_, mapped_bytes_}; }
  // True when an object of `bytes` would fit now without evicting anything.
  bool Fits(uint32_t bytes) const;
  // True when an object of `bytes` fits the empty arena (its size class is at most the
  // capacity): evicting can make room for it. No lock.
  bool CanEverHold(uint32_t bytes) const { return HostTierClassBytes(bytes) <= capacity_bytes_; }
  uint64_t capacity_bytes() const { return capacity_bytes_; }

  // Tier
  TierKind kind() const override { return TierKind::kHost; }
  TierUsage Usage() const override;
  Result<TierSlot> Put(const ScopedKey& key, std::span<const uint8_t> object) override;
  Status Read(const ScopedKey& key, TierSlot slot, uint32_t object_bytes,
              std::span<uint8_t> out) override;
  void Erase(const ScopedKey& key, TierSlot slot, uint32_t object_bytes) override;
  void VisitCounters(CounterVisitor& visitor) const override;

 private:
  HostTier(uint8_t* base, uint64_t mapped_bytes, uint64_t capacity);

  uint8_t* const base_;
  const uint64_t mapped_bytes_;
  const uint64_t capacity_bytes_;
  mutable std::mutex mu_;
  std::unique_ptr<ExtentAllocator> allocator_;  // guarded by mu_
  uint64_t used_bytes_ = 0;                     // guarded by mu_
  uint64_t blocks_ = 0;                         // guarded by mu_
  uint64_t allocation_failures_ = 0;            // guarded by mu_
};

}  // namespace kvault::storage
