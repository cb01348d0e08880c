#pragma once
// PagedPipeline::Job: one StorePaged or LoadPaged call as the pipeline thread runs it
// (paged_pipeline.h), and the staging alignment its waves use. Internal to client/src.

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "paged_pipeline.h"

namespace kvault::client_internal {

// Objects and load slots start at this alignment inside a staging buffer.
inline constexpr uint64_t kStagingAlignment = 64;

inline uint64_t AlignStaging(uint64_t n) {
  return (n + kStagingAlignment - 1) / kStagingAlignment * kStagingAlignment;
}

struct PagedPipeline::Job {
  bool store = true;
  std::vector<int32_t> block_ids;
  uint64_t tokens = 0;
  std::vector<BlockKey> keys;  // exactly the blocks of the transfer
  std::optional<Deadline> deadline;
  void* stream = nullptr;
  bool skip_stored = true;  // store
  Lease lease;              // load
  uint32_t layers_per_wave = 0;
  std::shared_ptr<PagedOpState> state;
};

}  // namespace kvault::client_internal
