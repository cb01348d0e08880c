// CUDA codec argument validation. Every case is rejected with InvalidArgument before any CUDA call,
// by both CudaEncodeBlocks and CudaDecodeBlocks, so these tests need no device and run everywhere
// (the data tests are in cuda_codec_test.cc).

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>

#include "cuda_test_util.h"
#include "kvault/common/block_format.h"
#include "kvault/kernels/cuda_codec.h"
#include "kvault/kernels/kv_view.h"

namespace kvault::kernels {
namespace {

using cuda_test::C;
using cuda_test::Uniform;

class CudaCodecValidationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    desc_.layout.num_layers = 2;
    desc_.layout.kv_heads = 4;
    desc_.layout.head_dim = 64;
    desc_.layout.block_tokens = 16;
    desc_.layout.dtype = DType::kF16;
    desc_.layers = Uniform(2, C(CodecId::kFp8), C(CodecId::kInt4, 32));
    geometry_ = ComputeGeometry(desc_).value();
    // A vLLM-NHD view of 10 pages of 16 tokens; the pointers are never dereferenced on failure.
    view_.layout = KvLayout::kVllmNhd;
    view_.dtype = DType::kF16;
    view_.num_layers = 2;
    view_.kv_heads = 4;
    view_.head_dim = 64;
    view_.page_tokens = 16;
    view_.head_stride = 64;
    view_.slot_stride = 4 * 64;
    view_.page_stride = 16 * 4 * 64;
    view_.kv_stride = 10 * 16 * 4 * 64;
    view_.layer_bases = fake_bases_;
    view_.page_ids = fake_ids_;
    view_.num_pages = 10;
  }

  void ExpectInvalid(const PagedKvView& view, uint64_t first_token, uint32_t blocks,
                     const BlockDescriptor& desc, uint64_t stride, const char* what) {
    uint8_t* payloads = reinterpret_cast<uint8_t*>(uintptr_t{0x1000});
    const Status enc = CudaEncodeBlocks(view, first_token, blocks, desc, payloads, stride, nullptr);
    EXPECT_EQ(enc.code(), StatusCode::kInvalidArgument) << what << ": " << enc.ToString();
    const Status dec = CudaDecodeBlocks(payloads, stride, blocks, desc, view, first_token, nullptr);
    EXPECT_EQ(dec.code(), StatusCode::kInvalidArgument) << what << ": " << dec.ToString();
  }

  // The base view changed by `change`, for two blocks from token 0 with the base descriptor.
  void ExpectInvalidView(const std::function<void(PagedKvView&)>& change, const char* what) {
    PagedKvView v = view_;
    change(v);
    ExpectInvalid(v, 0, 2, desc_, geometry_.payload_bytes, what);
  }

  // The base descriptor changed by `change`, for two blocks from token 0 in the base view.
  void ExpectInvalidDescriptor(const std::function<void(BlockDescriptor&)>& change,
                               const char* what) {
    BlockDescriptor d = desc_;
    change(d);
    ExpectInvalid(view_, 0, 2, d, geometry_.payload_bytes, what);
  }

  BlockDescriptor desc_;
  BlockGeometry geometry_;
  PagedKvView view_;
  uint16_t* fake_bases_[2] = {reinterpret_cast<uint16_t*>(uintptr_t{0x10000}),
                              reinterpret_cast<uint16_t*>(uintptr_t{0x20000})};
  int32_t fake_ids_[10] = {};
};

TEST_F(CudaCodecValidationTest, MismatchedViewIsInvalid) {
  ExpectInvalidView([](PagedKvView& v) { v.kv_heads = 8; }, "kv_heads");
  ExpectInvalidView([](PagedKvView& v) { v.head_dim = 128; }, "head_dim");
  ExpectInvalidView([](PagedKvView& v) { v.num_layers = 3; }, "num_layers");
  ExpectInvalidView([](PagedKvView& v) { v.dtype = DType::kBF16; }, "dtype");
  ExpectInvalidView([](PagedKvView& v) { v.layer_bases = nullptr; }, "no layer bases");
  ExpectInvalidView([](PagedKvView& v) { v.page_ids = nullptr; }, "no page ids");
  ExpectInvalidView([](PagedKvView& v) { v.page_tokens = 0; }, "page_tokens 0");
}

TEST_F(CudaCodecValidationTest, BadStridesAreInvalid) {
  ExpectInvalidView([](PagedKvView& v) { v.head_stride = -64; }, "negative head stride");
  ExpectInvalidView([](PagedKvView& v) { v.head_stride = 32; }, "overlapping heads");
  ExpectInvalidView([](PagedKvView& v) { v.slot_stride = 0; }, "zero slot stride");
  ExpectInvalidView([](PagedKvView& v) { v.page_stride = -1; }, "negative page stride");
  ExpectInvalidView([](PagedKvView& v) { v.kv_stride = 0; }, "zero kv stride");
}

TEST_F(CudaCodecValidationTest, TokenRangeOutsideViewIsInvalid) {
  const uint64_t stride = geometry_.payload_bytes;
  ExpectInvalid(view_, 0, 11, desc_, stride, "11 blocks of 16 in 160 tokens");
  ExpectInvalid(view_, 1, 10, desc_, stride, "one token past the end");
  ExpectInvalid(view_, 161, 0, desc_, stride, "first token past the end");
  ExpectInvalid(view_, ~uint64_t{0} - 3, 1, desc_, stride, "overflowing range");
}

TEST_F(CudaCodecValidationTest, SmallStrideAndBadDescriptorAreInvalid) {
  ExpectInvalid(view_, 0, 2, desc_, geometry_.payload_bytes - 1, "payload stride");
  ExpectInvalidDescriptor(
      [](BlockDescriptor& d) {
        d.layers[0].k = C(CodecId::kRaw);
        d.layers[0].k.rotate = true;
      },
      "rotation on raw");
  ExpectInvalidDescriptor([](BlockDescriptor& d) { d.layout.sink_tokens = 17; },
                          "sink > block_tokens");
  ExpectInvalidDescriptor([](BlockDescriptor& d) { d.layers.pop_back(); }, "missing layer codec");
}

TEST_F(CudaCodecValidationTest, NullPayloadsAreInvalid) {
  const Status enc =
      CudaEncodeBlocks(view_, 0, 2, desc_, nullptr, geometry_.payload_bytes, nullptr);
  EXPECT_EQ(enc.code(), StatusCode::kInvalidArgument) << enc.ToString();
  const Status dec =
      CudaDecodeBlocks(nullptr, geometry_.payload_bytes, 2, desc_, view_, 0, nullptr);
  EXPECT_EQ(dec.code(), StatusCode::kInvalidArgument) << dec.ToString();
}

}  // namespace
}  // namespace kvault::kernels
