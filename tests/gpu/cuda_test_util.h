#pragma once
// Helpers shared by the CUDA codec tests (cuda_*_test.cc): section codecs in one call, uniform
// per-layer codec lists, and the visible skip on machines without a CUDA device.

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "kvault/common/block_format.h"
#include "kvault/kernels/cuda_codec.h"

// Skips the current test, visibly, when there is no usable CUDA device.
#define SKIP_WITHOUT_CUDA()                                                    \
  do {                                                                         \
    if (!::kvault::kernels::CudaAvailable()) GTEST_SKIP() << "no CUDA device"; \
  } while (false)

namespace kvault::kernels::cuda_test {

// A section codec; grouped codecs default to g = 64.
inline SectionCodec C(CodecId id, uint16_t group = 0, bool rotate = false) {
  SectionCodec c;
  c.codec = id;
  c.group = IsGroupedCodec(id) ? (group ? group : 64) : 0;
  c.rotate = rotate;
  return c;
}

// The same K and V codecs on every layer.
inline std::vector<LayerCodec> Uniform(uint32_t layers, SectionCodec k, SectionCodec v) {
  return std::vector<LayerCodec>(layers, LayerCodec{k, v});
}

}  // namespace kvault::kernels::cuda_test
