#include "host/extent_allocator.h"

#include <bit>

namespace kvault::storage {
namespace {
constexpr uint64_t kGranule = 64;
constexpr uint64_t kFineLimit = 4096;  // up to here, classes are multiples of the granule
constexpr int kClassesPerDoubling = 8;
}  // namespace

ExtentAllocator::ExtentAllocator(uint64_t capacity) : capacity_(capacity / kGranule * kGranule) {
  if (capacity_ > 0) InsertFree(0, capacity_);
}

uint64_t ExtentAllocator::ClassBytes(uint64_t bytes) {
  if (bytes <= kFineLimit) return (bytes + kGranule - 1) / kGranule * kGranule;
  // Between 2^k and 2^(k+1) there are kClassesPerDoubling classes, 2^k / 8 apart.
  const int k = std::bit_width(bytes - 1) - 1;
  const uint64_t step = (uint64_t{1} << k) / kClassesPerDoubling;
  return (bytes + step - 1) / step * step;
}

std::optional<uint64_t> ExtentAllocator::Allocate(uint64_t bytes) {
  const uint64_t length = ClassBytes(bytes);
  if (length == 0 || length > free_bytes()) return std::nullopt;
  auto fit = by_length_.lower_bound({length, 0});
  if (fit == by_length_.end()) return std::nullopt;
  const uint64_t offset = fit->second;
  const uint64_t extent = fit->first;
  EraseFree(by_offset_.find(offset));
  if (extent > length) InsertFree(offset + length, extent - length);
  allocated_ += length;
  return offset;
}

void ExtentAllocator::Free(uint64_t offset, uint64_t bytes) {
  uint64_t length = ClassBytes(bytes);
  allocated_ -= length;
  auto next = by_offset_.lower_bound(offset);
  if (next != by_offset_.end() && next->first == offset + length) {
    length += next->second;
    auto after = std::next(next);
    EraseFree(next);
    next = after;
  }
  if (next != by_offset_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == offset) {
      offset = prev->first;
      length += prev->second;
      EraseFree(prev);
    }
  }
  InsertFree(offset, length);
}

uint64_t ExtentAllocator::largest_free_extent() const {
  return by_length_.empty() ? 0 : by_length_.rbegin()->first;
}

double ExtentAllocator::fragmentation() const {
  const uint64_t free = free_bytes();
  if (free == 0) return 0.0;
  return 1.0 - static_cast<double>(largest_free_extent()) / static_cast<double>(free);
}

void ExtentAllocator::InsertFree(uint64_t offset, uint64_t length) {
  by_offset_.emplace(offset, length);
  by_length_.emplace(length, offset);
}

void ExtentAllocator::EraseFree(std::map<uint64_t, uint64_t>::iterator it) {
  by_length_.erase({it->second, it->first});
  by_offset_.erase(it);
}

}  // namespace kvault::storage
