// The CUDA wave codec's device staging layout (client/src/paged_device_layout.h): block 0 of a
// sequence (larger, with raw sink tokens) at its own stride, so that a wave the host staging
// holds fits the device staging of the same size.
#include "paged_device_layout.h"

#include <gtest/gtest.h>

namespace kvault::client_internal {
namespace {

// 32 layers, 8 KV heads, head_dim 128, 256-token blocks, int2,g=32,rot,sink=4: block 0's
// payload and the others', and the 64 MiB, depth-2 staging slice.
constexpr uint64_t kBlock0 = 6733824, kBlockN = 6291456, kSlice = 33554432;

TEST(PagedDeviceLayoutTest, AWaveFromBlockZeroFitsTheSliceItsHostStagingFits) {
  const std::vector<uint64_t> payloads = {kBlock0, kBlockN, kBlockN, kBlockN, kBlockN};
  const DeviceWaveLayout layout = LayOutDeviceWave(0, payloads);
  EXPECT_EQ(layout.total, kBlock0 + 4 * kBlockN);
  EXPECT_LE(layout.total, kSlice);
  EXPECT_GT(5 * kBlock0, kSlice) << "one stride for all would not have fitted";
  EXPECT_EQ(layout.offsets, (std::vector<uint64_t>{0, kBlock0, kBlock0 + kBlockN,
                                                   kBlock0 + 2 * kBlockN, kBlock0 + 3 * kBlockN}));
  EXPECT_EQ(layout.strides[0], kBlock0);
  EXPECT_EQ(layout.strides[4], kBlockN);
}

TEST(PagedDeviceLayoutTest, BatchesAreAlignedAndNeverOverlap) {
  const std::vector<uint64_t> payloads = {1000, 700, 700, 700};
  for (uint64_t first : {uint64_t{0}, uint64_t{3}}) {
    SCOPED_TRACE(first);
    const DeviceWaveLayout layout = LayOutDeviceWave(first, payloads);
    for (size_t i = 0; i < payloads.size(); ++i) {
      EXPECT_EQ(layout.offsets[i] % kDeviceAlignment, 0u) << i;
      EXPECT_GE(layout.strides[i], payloads[i]) << i;
      const uint64_t end = i + 1 < payloads.size() ? layout.offsets[i + 1] : layout.total;
      EXPECT_GE(end - layout.offsets[i], payloads[i]) << i;
    }
  }
  // A wave that does not start at block 0 is one batch at the widest stride.
  const DeviceWaveLayout later = LayOutDeviceWave(3, payloads);
  EXPECT_EQ(later.total, 4 * AlignDevice(1000));
  // From block 0: block 0 alone, then three at 768.
  const DeviceWaveLayout from_zero = LayOutDeviceWave(0, payloads);
  EXPECT_EQ(from_zero.total, AlignDevice(1000) + 3 * AlignDevice(700));
  EXPECT_TRUE(LayOutDeviceWave(0, {}).offsets.empty());
}

}  // namespace
}  // namespace kvault::client_internal
