#include "gpu/range_allocator.h"

#include <algorithm>
#include <iterator>
#include <vector>

namespace kvault::storage::gpu_internal {

RangeAllocator::RangeAllocator(uint64_t capacity, uint64_t granularity)
    : capacity_(capacity), granularity_(granularity), free_bytes_(0) {
  if (capacity_ > 0) InsertFree(0, capacity_);
}

void RangeAllocator::InsertFree(uint64_t offset, uint64_t size) {
  free_by_offset_.emplace(offset, size);
  free_by_size_.emplace(size, offset);
  free_bytes_ += size;
}

void RangeAllocator::EraseFree(std::map<uint64_t, uint64_t>::iterator it) {
  free_by_size_.erase({it->second, it->first});
  free_bytes_ -= it->second;
  free_by_offset_.erase(it);
}

std::optional<uint64_t> RangeAllocator::Allocate(uint64_t bytes) {
  if (bytes == 0 || bytes > capacity_) return std::nullopt;
  const uint64_t size = RoundUp(bytes);
  auto fit = free_by_size_.lower_bound({size, 0});
  if (fit == free_by_size_.end()) return std::nullopt;
  const uint64_t offset = fit->second;
  const uint64_t range = fit->first;
  EraseFree(free_by_offset_.find(offset));
  if (range > size) InsertFree(offset + size, range - size);
  allocated_.emplace(offset, size);
  return offset;
}

uint64_t RangeAllocator::Free(uint64_t offset) {
  auto found = allocated_.find(offset);
  if (found == allocated_.end()) return 0;
  const uint64_t size = found->second;
  allocated_.erase(found);

  uint64_t start = offset;
  uint64_t end = offset + size;
  auto next = free_by_offset_.lower_bound(offset);
  if (next != free_by_offset_.end() && next->first == end) {
    end += next->second;
    next = std::next(next);
    EraseFree(std::prev(next));
  }
  if (next != free_by_offset_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == start) {
      start = prev->first;
      EraseFree(prev);
    }
  }
  InsertFree(start, end - start);
  return size;
}

uint64_t RangeAllocator::AllocatedSize(uint64_t offset) const {
  auto found = allocated_.find(offset);
  return found == allocated_.end() ? 0 : found->second;
}

uint64_t RangeAllocator::largest_free() const {
  return free_by_size_.empty() ? 0 : free_by_size_.rbegin()->first;
}

double RangeAllocator::Fragmentation() const {
  if (free_bytes_ == 0) return 0.0;
  return 1.0 - static_cast<double>(largest_free()) / static_cast<double>(free_bytes_);
}

bool RangeAllocator::CheckInvariants() const {
  if (free_by_offset_.size() != free_by_size_.size()) return false;
  uint64_t free_sum = 0;
  uint64_t prev_end = 0;
  bool first = true;
  for (const auto& [offset, size] : free_by_offset_) {
    if (size == 0 || offset % granularity_ != 0 || size % granularity_ != 0) return false;
    if (offset + size > capacity_ || offset + size < offset) return false;
    if (!first && offset <= prev_end) return false;  // overlapping or adjacent (not coalesced)
    if (!free_by_size_.contains({size, offset})) return false;
    prev_end = offset + size;
    first = false;
    free_sum += size;
  }
  if (free_sum != free_bytes_) return false;

  // Free and allocated ranges together must tile [0, capacity) with no gap and no overlap.
  std::vector<std::pair<uint64_t, uint64_t>> all(free_by_offset_.begin(), free_by_offset_.end());
  all.insert(all.end(), allocated_.begin(), allocated_.end());
  std::sort(all.begin(), all.end());
  uint64_t cursor = 0;
  for (const auto& [offset, size] : all) {
    if (offset != cursor || size == 0) return false;
    cursor = offset + size;
  }
  return cursor == capacity_;
}

}  // namespace kvault::storage::gpu_internal
