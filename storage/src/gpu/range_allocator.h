#pragma once
// RangeAllocator: carves byte ranges out of one fixed region (the gpu tier's pool). Best fit over
// the free ranges, split on allocation, coalesced with free neighbours on release. Pure
// bookkeeping on offsets: it never touches the memory, so it is tested without a device.

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <unordered_map>
#include <utility>

namespace kvault::storage::gpu_internal {

// Thread-compatible: the owner serializes calls (GpuTier holds its mutex).
class RangeAllocator {
 public:
  // Manages [0, capacity). Preconditions: granularity is a power of two and capacity is a
  // multiple of it (GpuTier validates its options before building one).
  RangeAllocator(uint64_t capacity, uint64_t granularity);

  // Offset of a range of at least `bytes` (rounded up to the granularity), aligned to the
  // granularity; nullopt when bytes is 0 or no free range is large enough. Among the free ranges
  // that fit, takes the smallest (then the lowest offset), and splits off the rest.
  std::optional<uint64_t> Allocate(uint64_t bytes);

  // Releases the range that Allocate returned at `offset` and merges it with free neighbours.
  // Returns the bytes released, 0 when nothing is allocated at `offset`.
  uint64_t Free(uint64_t offset);

  // The rounded size of the range allocated at `offset`, 0 when none is.
  uint64_t AllocatedSize(uint64_t offset) const;

  uint64_t capacity() const { return capacity_; }
  uint64_t granularity() const { return granularity_; }
  uint64_t allocated_bytes() const { return capacity_ - free_bytes_; }
  uint64_t free_bytes() const { return free_bytes_; }
  uint64_t largest_free() const;
  uint64_t free_ranges() const { return free_by_offset_.size(); }
  uint64_t allocations() const { return allocated_.size(); }

  // 1 - largest_free / free_bytes: 0 when the free space is one range (or there is none), close
  // to 1 when it is scattered in many small holes.
  double Fragmentation() const;

  // Whole-structure consistency check for tests: free ranges in bounds, disjoint and never
  // adjacent (always coalesced), the two free indexes agree, and free plus allocated ranges tile
  // [0, capacity) exactly.
  bool CheckInvariants() const;

 private:
  uint64_t RoundUp(uint64_t bytes) const {
    return (bytes + granularity_ - 1) & ~(granularity_ - 1);
  }
  void InsertFree(uint64_t offset, uint64_t size);
  void EraseFree(std::map<uint64_t, uint64_t>::iterator it);

  uint64_t capacity_;
  uint64_t granularity_;
  uint64_t free_bytes_;
  std::map<uint64_t, uint64_t> free_by_offset_;           // offset -> size
  std::set<std::pair<uint64_t, uint64_t>> free_by_size_;  // (size, offset), for best fit
  std::unordered_map<uint64_t, uint64_t> allocated_;      // offset -> rounded size
};

}  // namespace kvault::storage::gpu_internal
