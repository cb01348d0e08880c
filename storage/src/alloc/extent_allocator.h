#pragma once
// ExtentAllocator: places variable-size blocks in one contiguous region of `capacity` bytes (the
// host tier's arena, the gpu tier's device pool). Pure bookkeeping on offsets: it never touches
// the memory, so it serves device memory too and is tested without a device.
//
// Requests are rounded up to a multiple of the granularity, so every offset is aligned to it, and
// with size classes further to one of 8 classes per power of two above 4 KiB (at most 12.5%
// internal waste), so that a freed block leaves a hole the next block of its class fits exactly.
// Free space is kept as extents, coalesced with their neighbours on free, and allocation takes the
// best (smallest) fitting extent, lowest offset first. No metadata lives in the region.
//
// O(log n) per call in the number of free extents. Thread-compatible: the owning tier serialises
// calls.

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <utility>

namespace kvault::storage {

class ExtentAllocator {
 public:
  struct Rounding {
    uint64_t granularity = 64;  // a power of two; every extent is a multiple of it
    bool size_classes = true;   // also round to 8 classes per power of two above 4 KiB
  };

  // Manages [0, capacity rounded down to the granularity).
  ExtentAllocator(uint64_t capacity, Rounding rounding);

  // Bytes an object of `bytes` occupies under `rounding`.
  static uint64_t ClassBytes(uint64_t bytes, const Rounding& rounding);
  uint64_t ClassBytes(uint64_t bytes) const { return ClassBytes(bytes, rounding_); }

  // Offset of a ClassBytes(bytes)-long extent, or nullopt when bytes is 0 or no free extent is
  // large enough.
  std::optional<uint64_t> Allocate(uint64_t bytes);
  // Returns the extent Allocate(bytes) gave at `offset`. Precondition: it is allocated, with
  // this `bytes`.
  void Free(uint64_t offset, uint64_t bytes);

  uint64_t capacity() const { return capacity_; }
  uint64_t allocated_bytes() const { return allocated_; }
  uint64_t free_bytes() const { return capacity_ - allocated_; }
  uint64_t free_extents() const { return by_offset_.size(); }
  uint64_t largest_free_extent() const;
  // External fragmentation: 1 - largest free extent / free bytes (0 when free space is one piece).
  double fragmentation() const;
  // For tests: free extents in bounds, aligned, disjoint, never adjacent (always coalesced), the
  // two indexes agree, and they add up to free_bytes().
  bool CheckInvariants() const;

 private:
  void InsertFree(uint64_t offset, uint64_t length);
  void EraseFree(std::map<uint64_t, uint64_t>::iterator it);

  const Rounding rounding_;
  const uint64_t capacity_;
  uint64_t allocated_ = 0;
  std::map<uint64_t, uint64_t> by_offset_;             // offset -> length
  std::set<std::pair<uint64_t, uint64_t>> by_length_;  // (length, offset)
};

}  // namespace kvault::storage
