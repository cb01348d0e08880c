// EncodeBlockCpu / DecodeBlockCpu failure paths and instruction set support, and decode against
// the reference codec on random payloads (not only on what the encoder writes), for every
// instruction set this CPU supports. The reference-matching sweeps over codecs, shapes, layouts
// and bit patterns are in cpu_codec_sweep_test.cc; shared helpers in cpu_codec_test_util.h.

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "cpu_codec_test_util.h"
#include "kvault/common/block_format.h"
#include "kvault/kernels/cpu_codec.h"
#include "kvault/kernels/kv_view.h"
#include "kvault/kernels/reference_codec.h"

namespace kvault::kernels {
namespace {

using namespace cpu_codec_test;  // NOLINT(build/namespaces): the shared helpers

// ---- decode of random payloads, per instruction set -----------------------------------------

// Decode must match the reference for any payload, not only for what the encoder writes: random
// codes (E4M3 NaN codes included) and random fp16 scales and zero points (NaN, Inf, negative,
// subnormal).
TEST_P(CpuCodecIsaTest, DecodeMatchesReferenceOnRandomPayloads) {
  std::mt19937_64 rng(7);
  uint64_t n = 0;
  for (const auto& codecs : CodecSweep(2)) {
    for (DType dtype : {DType::kF16, DType::kBF16}) {
      Case c;
      c.codecs = codecs;
      c.tokens = 19;
      c.heads = 3;
      c.dim = n % 2 ? 64 : 128;
      c.sink = static_cast<uint32_t>(n % 3);
      c.dtype = dtype;
      ++n;
      const BlockDescriptor d = DescriptorFor(c);
      Result<BlockGeometry> g = ComputeGeometry(d);
      ASSERT_TRUE(g.ok());
      std::vector<uint8_t> object(g->total_bytes());
      WriteBlockHeader(d, *g, object);
      for (size_t i = g->header_bytes; i < object.size(); ++i)
        object[i] = static_cast<uint8_t>(rng());
      SealBlockObject(object);
      SCOPED_TRACE(std::string(CpuIsaName(GetParam())) + " " + CodecsName(codecs) + " " +
                   std::string(DTypeName(dtype)));
      Result<BlockView> block = ParseBlockObject(object);
      ASSERT_TRUE(block.ok()) << block.status().ToString();
      const uint64_t elems = uint64_t{2} * 2 * c.tokens * c.heads * c.dim;
      std::vector<uint16_t> want(elems), got(elems, 0x5555);
      ASSERT_TRUE(ReferenceDecodeBlock(*block, want).ok());
      PagedKvView view;
      PagedKvViewStorage storage;
      uint16_t* base = got.data();
      const int32_t page0 = 0;
      ASSERT_TRUE(MakePagedKvView(KvLayout::kContiguous, dtype, 2, c.heads, c.dim, c.tokens, 1,
                                  std::span<uint16_t* const>(&base, 1),
                                  std::span<const int32_t>(&page0, 1), view, storage)
                      .ok());
      ASSERT_TRUE(DecodeBlockCpu(*block, view, 0, GetParam()).ok());
      uint64_t bad = 0;
      for (uint64_t i = 0; i < elems; ++i) bad += want[i] != got[i];
      EXPECT_EQ(bad, 0u);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllIsas, CpuCodecIsaTest,
                         ::testing::Values(CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512),
                         [](const ::testing::TestParamInfo<CpuIsa>& info) {
                           return std::string(CpuIsaName(info.param));
                         });

// ---- instruction set detection ---------------------------------------------------------------

TEST(CpuCodecTest, IsaDetectionIsConsistent) {
  EXPECT_TRUE(CpuSupports(CpuIsa::kScalar));
  const CpuIsa best = DetectCpuIsa();
  EXPECT_TRUE(CpuSupports(best));
  if (best == CpuIsa::kAvx512) {
    EXPECT_TRUE(CpuSupports(CpuIsa::kAvx2));
  }
  if (best == CpuIsa::kScalar) {
    EXPECT_FALSE(CpuSupports(CpuIsa::kAvx2));
  }
  if (best != CpuIsa::kAvx512) {
    EXPECT_FALSE(CpuSupports(CpuIsa::kAvx512));
  }
  EXPECT_STREQ(CpuIsaName(CpuIsa::kScalar), "scalar");
  EXPECT_STREQ(CpuIsaName(CpuIsa::kAvx2), "avx2");
  EXPECT_STREQ(CpuIsaName(CpuIsa::kAvx512), "avx512");
  EXPECT_FALSE(CpuSupports(static_cast<CpuIsa>(9)));
}

// ---- failure paths ---------------------------------------------------------------------------

class CpuCodecErrorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    c_.codecs = std::vector<LayerCodec>(2, Both(Sc(CodecId::kInt4, 4)));
    c_.tokens = 8;
    c_.heads = 2;
    c_.dim = 16;
    c_.layout = KvLayout::kVllmNhd;
    c_.page_tokens = 4;
    c_.first_token = 2;
    d_ = DescriptorFor(c_);
    ValueSource values(5, DType::kF16);
    CacheShape shape;
    shape.layout = KvLayout::kVllmNhd;
    shape.layers = 2;
    shape.heads = 2;
    shape.dim = 16;
    shape.page_tokens = 4;
    shape.pages_in_cache = 4;
    shape.page_ids = {2, 0, 3};  // 12 tokens
    MakeCache(shape, values, cache_);
    Result<BlockGeometry> g = ComputeGeometry(d_);
    ASSERT_TRUE(g.ok());
    out_.resize(g->total_bytes());
  }

  Status Encode(const PagedKvView& view, uint64_t first, const BlockDescriptor& d,
                CpuIsa isa = DetectCpuIsa()) {
    return EncodeBlockCpu(view, first, d, out_, isa);
  }

  Case c_;
  BlockDescriptor d_;
  Cache cache_;
  std::vector<uint8_t> out_;
};

TEST_F(CpuCodecErrorTest, EncodeSucceedsOnTheBaseCase) {
  ASSERT_TRUE(Encode(cache_.view, 2, d_).ok());
  ASSERT_TRUE(Encode(cache_.view, 4, d_).ok());  // last 8 of 12 tokens
}

TEST_F(CpuCodecErrorTest, WrongOutputSize) {
  for (int64_t delta : {-1, 1}) {
    std::vector<uint8_t> out(out_.size() + delta);
    const Status st = EncodeBlockCpu(cache_.view, 2, d_, out);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.ToString();
  }
  const Status st = EncodeBlockCpu(cache_.view, 2, d_, std::span<uint8_t>());
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.ToString();
}

TEST_F(CpuCodecErrorTest, ViewDoesNotMatchTheLayout) {
  for (int which = 0; which < 4; ++which) {
    PagedKvView view = cache_.view;
    switch (which) {
      case 0:
        view.num_layers = 3;
        break;
      case 1:
        view.kv_heads = 1;
        break;
      case 2:
        view.head_dim = 8;
        break;
      case 3:
        view.dtype = DType::kBF16;
        break;
    }
    const Status st = Encode(view, 2, d_);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << which << ": " << st.ToString();
  }
  PagedKvView view = cache_.view;
  view.layer_bases = nullptr;
  EXPECT_EQ(Encode(view, 2, d_).code(), StatusCode::kInvalidArgument);
}

TEST_F(CpuCodecErrorTest, TokenRangeOutsideTheView) {
  for (uint64_t first :
       {uint64_t{5}, uint64_t{12}, uint64_t{1} << 40, std::numeric_limits<uint64_t>::max() - 3}) {
    const Status st = Encode(cache_.view, first, d_);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << first << ": " << st.ToString();
  }
}

TEST_F(CpuCodecErrorTest, InvalidDescriptor) {
  std::vector<BlockDescriptor> bad(6, d_);
  bad[0].layers[1].k.group = 0;                     // int4 without a group
  bad[1].layers[0].v = Sc(CodecId::kRaw, 0, true);  // rotation on raw
  bad[2].layout.sink_tokens = 9;                    // more sink tokens than the block
  bad[3].layers.pop_back();                         // codec count != layers
  bad[4].layout.dtype = static_cast<DType>(7);
  bad[5].layers[0].k.codec = static_cast<CodecId>(9);
  for (size_t i = 0; i < bad.size(); ++i) {
    const Status st = Encode(cache_.view, 2, bad[i]);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << i << ": " << st.ToString();
  }
  BlockDescriptor rot = d_;  // rotation needs a power-of-two head_dim: 24 is not
  rot.layers[0].k.rotate = true;
  rot.layout.head_dim = 24;
  PagedKvView view = cache_.view;
  view.head_dim = 24;
  EXPECT_EQ(Encode(view, 2, rot).code(), StatusCode::kInvalidArgument);
}

TEST_F(CpuCodecErrorTest, UnsupportedIsa) {
  const Status st = Encode(cache_.view, 2, d_, static_cast<CpuIsa>(9));
  EXPECT_EQ(st.code(), StatusCode::kUnsupported) << st.ToString();
  for (CpuIsa isa : {CpuIsa::kAvx2, CpuIsa::kAvx512}) {
    if (!CpuSupports(isa)) {
      EXPECT_EQ(Encode(cache_.view, 2, d_, isa).code(), StatusCode::kUnsupported);
    }
  }
}

TEST_F(CpuCodecErrorTest, DecodeErrors) {
  ASSERT_TRUE(Encode(cache_.view, 2, d_).ok());
  Result<BlockView> block = ParseBlockObject(out_);
  ASSERT_TRUE(block.ok());
  EXPECT_TRUE(DecodeBlockCpu(*block, cache_.view, 4).ok());
  EXPECT_EQ(DecodeBlockCpu(*block, cache_.view, 5).code(), StatusCode::kInvalidArgument);
  PagedKvView view = cache_.view;
  view.kv_heads = 3;
  EXPECT_EQ(DecodeBlockCpu(*block, view, 2).code(), StatusCode::kInvalidArgument);
  view = cache_.view;
  view.dtype = DType::kBF16;
  EXPECT_EQ(DecodeBlockCpu(*block, view, 2).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(DecodeBlockCpu(*block, cache_.view, 2, static_cast<CpuIsa>(9)).code(),
            StatusCode::kUnsupported);
  BlockView truncated = *block;  // payload shorter than its geometry says
  truncated.payload = truncated.payload.subspan(0, truncated.payload.size() - 16);
  EXPECT_EQ(DecodeBlockCpu(truncated, cache_.view, 2).code(), StatusCode::kInvalidArgument);
  BlockView invalid = *block;  // descriptor that fails validation
  invalid.descriptor.layers[0].k.group = 0;
  EXPECT_EQ(DecodeBlockCpu(invalid, cache_.view, 2).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvault::kernels
