#pragma once
// StagingPool: the client's internal staging memory for regions the caller registered
// (Client::RegisterMemory). UCX 1.13 reaches memory that a client registered only through
// software-emulated RMA, which the client's progress thread must serve fragment by fragment; memory
// from UcxAgent::AllocateMemory sits in a shared segment the daemon copies to and from directly
// (transport/ucx.md). So a request on a registered region is staged: Store copies the sources
// into a chunk of this pool before sending, Load has the daemon write into a chunk and copies the
// written bytes out when the reply comes. One memcpy on each side instead of thousands of round
// trips through the client's progress thread.
//
// The pool is one AllocateMemory region of `capacity` bytes, allocated on first use and kept for
// the client's lifetime; chunks are first-fit ranges of it, returned when their StagingChunk goes
// (after the request settled: the daemon can no longer touch them). A load chunk whose request was
// cut off by a lost connection before the daemon answered is retired instead (Chunk::Retire): the
// daemon may still write it, so it never serves another request while the pool lives. Acquire
// never waits: a busy or too small pool (retired chunks included) gives no chunk and the request
// goes to the registered memory directly (slower, equally correct).
//
// Thread-safety: thread-safe; a StagingChunk may be destroyed on any thread, and keeps the pool's
// memory alive until then.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "kvault/common/result.h"

namespace kvault::client_internal {

struct RegionRecord;

// Chunks and the entries inside them start at multiples of 64 bytes.
inline uint64_t StagingAlignUp(uint64_t n) { return (n + 63) / 64 * 64; }

// Where each of `sizes` starts in one chunk (64-byte aligned) and the chunk's total size.
struct StagingLayout {
  std::vector<uint64_t> offsets;
  uint64_t total = 0;
};
StagingLayout LayOut(std::span<const uint64_t> sizes);

class StagingPool {
 public:
  // Makes the pool's region (an AllocateMemory of the given size) on first use.
  using AllocateFn = std::function<Result<std::shared_ptr<RegionRecord>>(uint64_t bytes)>;

  // capacity 0: disabled (Acquire always gives nothing).
  StagingPool(uint64_t capacity, AllocateFn allocate);

  // A range of `bytes` bytes that no other chunk overlaps, or nullopt when the pool is disabled,
  // `bytes` is 0 or over the capacity, the free space is fragmented or taken, or the region could
  // not be allocated (then the pool stays disabled: the failure is not retried per request).
  class Chunk;
  std::optional<Chunk> Acquire(uint64_t bytes);

  uint64_t capacity() const { return capacity_; }
  // The most bytes one request should stage, so that a few requests of a busy client fit at once.
  uint64_t part_bytes() const { return capacity_ / 4; }

  // How the requests on staged regions went: through a chunk, or directly (no chunk to be had).
  void CountRequest(bool staged) { (staged ? staged_ : direct_).fetch_add(1); }
  uint64_t staged_requests() const { return staged_.load(); }
  uint64_t direct_requests() const { return direct_.load(); }
  // Bytes of retired chunks (Chunk::Retire): kept out of the pool for its lifetime.
  uint64_t retired_bytes() const;

 private:
  struct State;
  const uint64_t capacity_;
  const AllocateFn allocate_;
  std::shared_ptr<State> state_;
  std::atomic<uint64_t> staged_{0};
  std::atomic<uint64_t> direct_{0};
};

// A range of the pool; move-only, returned to the pool when destroyed.
class StagingPool::Chunk {
 public:
  Chunk(Chunk&& other) noexcept;
  // Returns this chunk's range, then takes over `other`'s.
  Chunk& operator=(Chunk&& other) noexcept;
  Chunk(const Chunk&) = delete;
  ~Chunk();

  uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  // The pool's registration: its remote key goes in the request.
  const RegionRecord& region() const;
  // Keeps the range out of the pool for good instead of returning it: for a chunk the daemon may
  // still write after its request settled unanswered (the connection failed). The memory stays
  // registered and mapped as long as the pool lives; data() stays valid as long as the pool does.
  void Retire();

 private:
  friend class StagingPool;
  Chunk(std::shared_ptr<State> state, uint64_t offset, uint64_t size, uint8_t* data)
      : state_(std::move(state)), offset_(offset), size_(size), data_(data) {}
  void Return();
  std::shared_ptr<State> state_;
  uint64_t offset_ = 0;
  uint64_t size_ = 0;
  uint8_t* data_ = nullptr;
};

}  // namespace kvault::client_internal
