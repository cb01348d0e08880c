#pragma once
// Where the blocks of a wave sit in the CUDA wave codec's device staging (paged_cuda_codec.cc),
// and the kernel batches a wave is encoded or decoded in. Internal to client/src; pure, so that
// it is tested without a GPU.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "kvault/common/status.h"

namespace kvault::client_internal {

// Payloads start at this alignment in device staging.
inline constexpr uint64_t kDeviceAlignment = 256;

inline uint64_t AlignDevice(uint64_t n) {
  return (n + kDeviceAlignment - 1) / kDeviceAlignment * kDeviceAlignment;
}

// Calls fn(begin, end) for the runs of a wave's blocks that share one kernel descriptor: block 0
// of the sequence alone (its sink tokens are raw, so it is larger), then the rest. `first` is
// the sequence index of the wave's first block.
template <typename Fn>
Status ForEachBatch(uint64_t first, size_t count, Fn&& fn) {
  size_t begin = 0;
  if (first == 0 && count > 0) {
    KVAULT_RETURN_IF_ERROR(fn(size_t{0}, size_t{1}));
    begin = 1;
  }
  if (begin < count) KVAULT_RETURN_IF_ERROR(fn(begin, count));
  return Status::Ok();
}

// The device layout of a wave whose block i has a payload of payload_bytes[i]: each batch of
// ForEachBatch at one stride (the widest of its payloads, aligned), batches one after another.
// Block 0 is laid out at its own size: at one stride for all, a wave the host staging holds
// (block 0 large, the others small) could need more device staging than it has.
struct DeviceWaveLayout {
  std::vector<uint64_t> offsets;  // of each block
  std::vector<uint64_t> strides;  // of each block's batch
  uint64_t total = 0;             // bytes the wave takes
};

inline DeviceWaveLayout LayOutDeviceWave(uint64_t first, std::span<const uint64_t> payload_bytes) {
  DeviceWaveLayout layout;
  layout.offsets.resize(payload_bytes.size());
  layout.strides.resize(payload_bytes.size());
  (void)ForEachBatch(first, payload_bytes.size(), [&](size_t begin, size_t end) {
    uint64_t stride = 0;
    for (size_t i = begin; i < end; ++i) stride = std::max(stride, AlignDevice(payload_bytes[i]));
    for (size_t i = begin; i < end; ++i) {
      layout.offsets[i] = layout.total + (i - begin) * stride;
      layout.strides[i] = stride;
    }
    layout.total += (end - begin) * stride;
    return Status::Ok();
  });
  return layout;
}

}  // namespace kvault::client_internal
