#pragma once
// ExtentAllocator: places variable-size blocks in one contiguous arena of `capacity` bytes.
//
// Requests are rounded up to a size class: 64-byte granules up to 4 KiB, then 8 classes per power
// of two (at most 12.5% internal waste), so a freed block leaves a hole that the next block of the
// same class fits exactly. Free space is kept as extents, coalesced with their neighbours on
// free, and allocation takes the best (smallest) fitting extent, lowest offset first. No metadata
// lives inside the arena, so the arena can be registered with CUDA or UCX as plain memory.
//
// O(log n) per call in the number of free extents. Thread-compatible: HostTier serialises calls.

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <utility>

namespace kvault::storage {

class ExtentAllocator {
 public:
  explicit ExtentAllocator(uint64_t capacity);

  // Bytes an object of `bytes` actually occupies (its size class).
  static uint64_t ClassBytes(uint64_t bytes);

  // Offset of a ClassBytes(bytes)-long extent, or nullopt when no free extent is large enough.
  std::optional<uint64_t> Allocate(uint64_t bytes);
  // Returns the extent Allocate(bytes) gave at `offset`. Precondition: it is allocated.
  void Free(uint64_t offset, uint64_t bytes);

  uint64_t capacity() const { return capacity_; }
  uint64_t allocated_bytes() const { return allocated_; }
  uint64_t free_bytes() const { return capacity_ - allocated_; }
  uint64_t largest_free_extent() const;
  // External fragmentation: 1 - largest free extent / free bytes (0 when free space is one piece).
  double fragmentation() const;

 private:
  void InsertFree(uint64_t offset, uint64_t length);
  void EraseFree(std::map<uint64_t, uint64_t>::iterator it);

  uint64_t capacity_;
  uint64_t allocated_ = 0;
  std::map<uint64_t, uint64_t> by_offset_;             // offset -> length
  std::set<std::pair<uint64_t, uint64_t>> by_length_;  // (length, offset)
};

}  // namespace kvault::storage
