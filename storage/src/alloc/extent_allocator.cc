#include "alloc/extent_allocator.h"

#include <algorithm>
#include <bit>

namespace kvault::storage {
namespace {
constexpr uint64_t kFineLimit = 4096;  // up to here, size classes are multiples of the granularity
constexpr int kClassesPerDoubling = 8;
}  // namespace

ExtentAllocator::ExtentAllocator(uint64_t capacity, Rounding rounding)
    : rounding_(rounding), capacity_(capacity / rounding.granularity * rounding.granularity) {
  if (capacity_ > 0) InsertFree(0, capacity_);
}

uint64_t ExtentAllocator::ClassBytes(uint64_t bytes, const Rounding& rounding) {
  const uint64_t g = rounding.granularity;
  uint64_t rounded = (bytes + g - 1) / g * g;
  if (rounding.size_classes && rounded > kFineLimit) {
    // Between 2^k and 2^(k+1) there are kClassesPerDoubling classes, 2^k / 8 apart.
    const int k = std::bit_width(rounded - 1) - 1;
    const uint64_t step = std::max((uint64_t{1} << k) / kClassesPerDoubling, g);
    rounded = (rounded + step - 1) / step * step;
  }
  return rounded;
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

bool ExtentAllocator::CheckInvariants() const {
  if (by_offset_.size() != by_length_.size()) return false;
  uint64_t total = 0, end_of_previous = 0;
  bool first = true;
  for (const auto& [offset, length] : by_offset_) {
    if (length == 0 || offset % rounding_.granularity != 0 || offset + length > capacity_) {
      return false;
    }
    if (!first && offset <= end_of_previous) return false;  // overlapping or not coalesced
    if (by_length_.count({length, offset}) == 0) return false;
    end_of_previous = offset + length;
    first = false;
    total += length;
  }
  return total == free_bytes();
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
