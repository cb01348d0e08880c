#pragma once
// The copies of a staged request (staging_pool.h): a Store part's sources copied into a chunk
// before it is sent, and a Load part's bytes copied from a chunk into the caller's buffers when its
// reply comes.
//
// Thread-safety: thread-compatible; a StagedLoad is read-only once made, so its CopyOut may run on
// the connection's thread while its owner holds it elsewhere.

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "kvault/client.h"
#include "staging_pool.h"

namespace kvault::client_internal {

// The sources of one Store part, copied into one chunk.
struct StagedSources {
  std::shared_ptr<StagingPool::Chunk> chunk;
  // staged[k]: the copy of sources[indices[k]].
  std::vector<std::span<const uint8_t>> staged;
};

// Copies sources[indices[k]] for every k into one chunk of `pool`; nullopt when no chunk can be
// had.
std::optional<StagedSources> StageSources(StagingPool& pool,
                                          std::span<const std::span<const uint8_t>> sources,
                                          std::span<const size_t> indices);

// One Load part sent into a chunk: what the daemon writes to, and where the caller wants it.
class StagedLoad {
 public:
  // A chunk that holds what the daemon may write for destinations[indices[k]] (its length, or
  // its whole buffer when the length is 0); nullopt when no chunk can be had.
  static std::optional<StagedLoad> Make(StagingPool& pool,
                                        std::span<const LoadDestination> destinations,
                                        std::span<const size_t> indices);

  // The destination the request names for entry k: same offset and length, inside the chunk.
  const LoadDestination& staged(size_t k) const { return staged_[k]; }
  const RegionRecord& region() const { return chunk_->region(); }

  // Copies the bytes the daemon wrote for every entry whose status is OK (its length, or the
  // object from its offset to the end when the length is 0, never past the caller's buffer) into
  // the caller's buffer. Entries that failed leave the caller's buffer untouched.
  void CopyOut(std::span<const Status> statuses, std::span<const uint64_t> object_sizes) const;

  // The request settled unanswered (its connection failed): the daemon may still write the
  // chunk, so it is retired rather than returned to the pool (StagingPool::Chunk::Retire). Call
  // only from the request's settled callback, after which nothing reads the chunk.
  void RetireChunk() const { chunk_->Retire(); }

 private:
  StagedLoad(std::shared_ptr<StagingPool::Chunk> chunk, std::vector<LoadDestination> wanted,
             std::vector<LoadDestination> staged)
      : chunk_(std::move(chunk)), wanted_(std::move(wanted)), staged_(std::move(staged)) {}

  std::shared_ptr<StagingPool::Chunk> chunk_;
  std::vector<LoadDestination> wanted_;  // the caller's, per entry
  std::vector<LoadDestination> staged_;  // inside the chunk, per entry
};

}  // namespace kvault::client_internal
