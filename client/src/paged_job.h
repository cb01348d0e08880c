#pragma once
// PagedPipeline::Job: one StorePaged or LoadPaged call as the pipeline thread runs it
// (paged_pipeline.h), and the staging alignment its waves use. Internal to client/src.

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "paged_op_state.h"
#include "paged_pipeline.h"
#include "paged_wave_codec.h"

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

  // Why no further wave may start: Unavailable "cancelled" or "deadline exceeded"; else OK.
  Status StopBeforeNextWave() const {
    if (state->cancelled()) return Status::Unavailable("cancelled");
    if (deadline && Clock::now() >= *deadline) return Status::Unavailable("deadline exceeded");
    return Status::Ok();
  }
};

// One wave of a load: layers [first_layer, +layer_count) of blocks [first, +count).
struct LoadWave {
  uint32_t first_layer = 0;
  uint32_t layer_count = 0;
  size_t first = 0;
  size_t count = 0;
  bool last_of_layers = false;  // the wave completes its layers for every block
};

// A load wave sent to the daemon: its handle and where each block lands in staging.
struct IssuedLoadWave {
  LoadHandle handle;
  std::vector<StagedBlock> staged;
  bool two_parts = false;  // header and range are separate destinations (two per key)
  bool sent = false;
};

// What a load has achieved so far.
struct LoadProgress {
  std::vector<Status> result;  // per block; OK until something fails it
  size_t active = 0;           // blocks [0, active) are still worth loading
  bool abandoned = false;      // a wave's staging may still be written by the daemon

  void Fail(size_t block, const Status& status) {
    result[block] = status;
    active = std::min(active, block);
  }
};

}  // namespace kvault::client_internal
