// StagingPool (staging_pool.h): a first-fit range allocator over one lazily allocated region.

#include "staging_pool.h"

#include <iterator>
#include <map>
#include <mutex>
#include <utility>

#include "client_core.h"

namespace kvault::client_internal {

StagingLayout LayOut(std::span<const uint64_t> sizes) {
  StagingLayout out;
  out.offsets.reserve(sizes.size());
  for (uint64_t n : sizes) {
    out.offsets.push_back(out.total);
    out.total = StagingAlignUp(out.total + n);
  }
  return out;
}

// The region and its free ranges (offset -> length, never adjacent: freed ranges merge).
struct StagingPool::State {
  std::mutex mu;
  bool failed = false;
  std::shared_ptr<RegionRecord> region;
  std::map<uint64_t, uint64_t> free;
  uint64_t retired = 0;

  void Release(uint64_t offset, uint64_t size) {
    std::lock_guard<std::mutex> lock(mu);
    auto next = free.lower_bound(offset);
    if (next != free.begin()) {
      auto prev = std::prev(next);
      if (prev->first + prev->second == offset) {
        offset = prev->first;
        size += prev->second;
        free.erase(prev);
      }
    }
    if (next != free.end() && offset + size == next->first) {
      size += next->second;
      free.erase(next);
    }
    free.emplace(offset, size);
  }
};

StagingPool::StagingPool(uint64_t capacity, AllocateFn allocate)
    : capacity_(capacity), allocate_(std::move(allocate)), state_(std::make_shared<State>()) {}

std::optional<StagingPool::Chunk> StagingPool::Acquire(uint64_t bytes) {
  if (capacity_ == 0 || bytes == 0 || bytes > capacity_) return std::nullopt;
  bytes = StagingAlignUp(bytes);
  std::lock_guard<std::mutex> lock(state_->mu);
  if (state_->failed) return std::nullopt;
  if (!state_->region) {
    // The first request that needs the pool pays for the allocation (once).
    Result<std::shared_ptr<RegionRecord>> region = allocate_(capacity_);
    if (!region.ok() || *region == nullptr) {
      state_->failed = true;
      return std::nullopt;
    }
    state_->region = std::move(*region);
    state_->free.emplace(0, capacity_);
  }
  for (auto it = state_->free.begin(); it != state_->free.end(); ++it) {
    if (it->second < bytes) continue;
    const uint64_t offset = it->first;
    const uint64_t left = it->second - bytes;
    state_->free.erase(it);
    if (left > 0) state_->free.emplace(offset + bytes, left);
    uint8_t* base = static_cast<uint8_t*>(state_->region->region.memory.address());
    return Chunk(state_, offset, bytes, base + offset);
  }
  return std::nullopt;
}

StagingPool::Chunk::Chunk(Chunk&& other) noexcept
    : state_(std::move(other.state_)),
      offset_(other.offset_),
      size_(other.size_),
      data_(std::exchange(other.data_, nullptr)) {}

StagingPool::Chunk& StagingPool::Chunk::operator=(Chunk&& other) noexcept {
  if (this != &other) {
    Return();
    state_ = std::move(other.state_);
    offset_ = other.offset_;
    size_ = other.size_;
    data_ = std::exchange(other.data_, nullptr);
  }
  return *this;
}

StagingPool::Chunk::~Chunk() { Return(); }

void StagingPool::Chunk::Return() {
  if (state_) state_->Release(offset_, size_);
  state_.reset();
}

const RegionRecord& StagingPool::Chunk::region() const { return *state_->region; }

void StagingPool::Chunk::Retire() {
  if (!state_) return;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->retired += size_;
  }
  state_.reset();
}

uint64_t StagingPool::retired_bytes() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->retired;
}

}  // namespace kvault::client_internal
