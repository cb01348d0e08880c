// CUDA codec vs the CPU reference, byte for byte and bit for bit.
//
// Every case goes through RunCase (cuda_test_util.h): an engine cache built on the host in one of
// the paged layouts, each block's input gathered with the harness's own index arithmetic and
// encoded with ReferenceEncodeBlock, the payload bytes written by CudaEncodeBlocks compared with
// the reference's (padding and the gap between payloads included), then the reference payloads
// decoded with CudaDecodeBlocks into a zeroed device cache and every element of that cache
// compared with the reference decode scattered into a zeroed host copy.
//
// Without a CUDA device every test here skips visibly; the argument validation tests, which need
// no device, are in cuda_codec_args_test.cc.

#include "kvault/kernels/cuda_codec.h"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <utility>
#include <vector>

#include "cuda_test_util.h"
#include "kvault/common/block_format.h"
#include "kvault/kernels/kv_view.h"

namespace kvault::kernels {
namespace {

using namespace cuda_test;  // NOLINT(build/namespaces): the shared harness

// ---- case lists -----------------------------------------------------------------------------

const KvLayout kLayouts[] = {KvLayout::kContiguous, KvLayout::kVllmNhd, KvLayout::kVllmHnd,
                             KvLayout::kFlashInferNhd, KvLayout::kFlashInferHnd};

TEST(CudaCodecTest, EveryLayoutMatchesReference) {
  SKIP_WITHOUT_CUDA();
  const std::vector<std::pair<SectionCodec, SectionCodec>> codecs = {
      {C(CodecId::kRaw), C(CodecId::kRaw)},
      {C(CodecId::kFp8), C(CodecId::kFp8)},
      {C(CodecId::kInt8, 0, true), C(CodecId::kInt8, 0, true)},
      {C(CodecId::kInt4, 64), C(CodecId::kInt4, 64)},
      {C(CodecId::kInt2, 7, true), C(CodecId::kInt2, 7, true)},
      {C(CodecId::kInt4, 64, true), C(CodecId::kInt2, 64)},
  };
  // Page size != block size, batch starting mid-page.
  const Case mid_page = {.heads = 3,
                         .dim = 64,
                         .block_tokens = 17,
                         .sink = 1,
                         .page_tokens = 16,
                         .num_blocks = 3,
                         .first_token = 5,
                         .pattern = Pattern::kSpecial};
  // vLLM-like: 16-token blocks and pages, starting half-way into page 1.
  const Case vllm_like = {.heads = 8,
                          .dim = 128,
                          .block_tokens = 16,
                          .sink = 0,
                          .page_tokens = 16,
                          .num_blocks = 4,
                          .first_token = 24,
                          .pattern = Pattern::kNormal};
  uint64_t seed = 100;
  for (KvLayout layout : kLayouts) {
    for (size_t i = 0; i < codecs.size(); ++i) {
      for (int variant = 0; variant < 2; ++variant) {
        Case c = variant == 0 ? mid_page : vllm_like;
        c.name = "layout";
        c.layout = layout;
        c.dtype = (i + variant) % 2 ? DType::kBF16 : DType::kF16;
        c.codecs = Uniform(2, codecs[i].first, codecs[i].second);
        c.seed = ++seed;
        RunCase(c);
      }
    }
  }
}

TEST(CudaCodecTest, CodecSweepMatchesReference) {
  SKIP_WITHOUT_CUDA();
  struct Shape {
    uint32_t block_tokens, heads, dim;
  };
  const Shape shapes[] = {{1, 1, 64},  {3, 5, 128},   {7, 3, 256}, {16, 8, 128},
                          {17, 5, 64}, {256, 1, 128}, {16, 3, 256}};
  std::vector<std::pair<CodecId, uint16_t>> configs = {{CodecId::kFp8, 0}, {CodecId::kInt8, 0}};
  for (CodecId id : {CodecId::kInt4, CodecId::kInt2}) {
    for (uint16_t g : {1, 7, 64, 256}) configs.push_back({id, g});
  }
  size_t n = 0;
  for (const auto& [id, g] : configs) {
    for (bool rot : {false, true}) {
      for (uint32_t sink : {0u, 1u, 4u}) {
        const Shape& s = shapes[n % std::size(shapes)];
        RunCase({.name = "sweep",
                 .dtype = n % 2 ? DType::kBF16 : DType::kF16,
                 .heads = s.heads,
                 .dim = s.dim,
                 .block_tokens = s.block_tokens,
                 .sink = std::min(sink, s.block_tokens),  // sink == block_tokens: all tokens raw
                 .codecs = Uniform(2, C(id, g, rot), C(id, g, rot)),
                 .layout = kLayouts[n % std::size(kLayouts)],
                 .page_tokens = n % 3 == 0 ? 16u : (n % 3 == 1 ? 5u : 32u),
                 .num_blocks = s.block_tokens >= 128 ? 2u : 3u,
                 .first_token = static_cast<uint32_t>(n % 7 + 1),
                 .pattern = static_cast<Pattern>(n % 3),
                 .seed = 1000 + n});
        ++n;
      }
    }
  }
}

TEST(CudaCodecTest, OddHeadDimsMatchReference) {
  SKIP_WITHOUT_CUDA();
  // Head dims that are not powers of two (no rotation), and wide heads (several chunks per lane).
  struct Row {
    uint32_t dim;
    SectionCodec k, v;
  };
  const std::vector<Row> rows = {
      {8, C(CodecId::kRaw), C(CodecId::kRaw)},
      {8, C(CodecId::kFp8), C(CodecId::kInt8)},
      {8, C(CodecId::kInt4, 1), C(CodecId::kInt2, 3)},
      {8, C(CodecId::kInt2, 5), C(CodecId::kInt4, 8)},
      {24, C(CodecId::kFp8), C(CodecId::kFp8)},
      {24, C(CodecId::kInt8), C(CodecId::kInt8)},
      {24, C(CodecId::kInt4, 7), C(CodecId::kInt4, 16)},
      {24, C(CodecId::kInt2, 64), C(CodecId::kInt2, 7)},
      {24, C(CodecId::kInt4, 2), C(CodecId::kInt2, 24)},
      {40, C(CodecId::kInt4, 3), C(CodecId::kInt4, 32)},
      {40, C(CodecId::kInt2, 16), C(CodecId::kInt2, 12)},
      {264, C(CodecId::kFp8), C(CodecId::kInt4, 256)},
      {264, C(CodecId::kInt4, 9), C(CodecId::kInt2, 128)},
      {264, C(CodecId::kInt8), C(CodecId::kInt4, 5)},
      {512, C(CodecId::kFp8, 0, true), C(CodecId::kInt8, 0, true)},
      {512, C(CodecId::kInt4, 64, true), C(CodecId::kInt2, 512, true)},
      {1024, C(CodecId::kInt8, 0, true), C(CodecId::kFp8, 0, true)},
      {1024, C(CodecId::kInt4, 64, true), C(CodecId::kInt4, 64, true)},
      {1024, C(CodecId::kInt2, 1, true), C(CodecId::kInt2, 1024, true)},
      {1024, C(CodecId::kInt4, 7), C(CodecId::kInt2, 96, true)},
  };
  size_t n = 0;
  for (const Row& r : rows) {
    for (uint32_t heads : {1u, 5u}) {
      RunCase({.name = "odd-dims",
               .dtype = n % 2 ? DType::kF16 : DType::kBF16,
               .heads = heads,
               .dim = r.dim,
               .block_tokens = r.dim >= 512 ? (n % 2 ? 70u : 5u) : (n % 2 ? 17u : 3u),
               .sink = n % 3 == 0 ? 1u : 0u,
               .codecs = Uniform(2, r.k, r.v),
               .layout = kLayouts[(n + 2) % std::size(kLayouts)],
               .page_tokens = 8,
               .num_blocks = 2,
               .first_token = 3,
               .pattern = static_cast<Pattern>(n % 3),
               .seed = 5000 + n});
      ++n;
    }
  }
}

TEST(CudaCodecTest, LargeKeyGroupsMatchReference) {
  SKIP_WITHOUT_CUDA();
  // int4/int2 keys whose token groups span several teams and several shared-memory refills.
  struct Row {
    uint32_t block_tokens, dim, sink;
    uint16_t group;
    bool rot;
  };
  const Row rows[] = {{256, 128, 0, 64, false}, {256, 128, 4, 256, true}, {256, 64, 1, 128, false},
                      {200, 256, 0, 200, true}, {130, 128, 2, 97, false}, {64, 1024, 0, 64, true},
                      {300, 32, 0, 300, false}, {256, 512, 3, 256, false}};
  size_t n = 0;
  for (const Row& r : rows) {
    for (CodecId id : {CodecId::kInt4, CodecId::kInt2}) {
      RunCase({.name = "large-key-groups",
               .dtype = n % 2 ? DType::kBF16 : DType::kF16,
               .layers = 1,
               .heads = 2,
               .dim = r.dim,
               .block_tokens = r.block_tokens,
               .sink = r.sink,
               .codecs = Uniform(1, C(id, r.group, r.rot), C(CodecId::kInt8)),
               .layout = kLayouts[n % std::size(kLayouts)],
               .page_tokens = 64,
               .num_blocks = 2,
               .first_token = 32,
               .pattern = static_cast<Pattern>(n % 3),
               .seed = 7000 + n});
      ++n;
    }
  }
}

TEST(CudaCodecTest, MixedCodecsPerLayerMatchReference) {
  SKIP_WITHOUT_CUDA();
  const std::vector<LayerCodec> mixed = {
      {C(CodecId::kInt8), C(CodecId::kInt8)},
      {C(CodecId::kInt4, 7, true), C(CodecId::kInt2, 64)},
      {C(CodecId::kFp8, 0, true), C(CodecId::kFp8)},
      {C(CodecId::kRaw), C(CodecId::kRaw)},
      {C(CodecId::kInt4, 64), C(CodecId::kInt2, 64)},
      {C(CodecId::kInt2, 16, true), C(CodecId::kInt4, 1, true)},
  };
  size_t n = 0;
  for (KvLayout layout : kLayouts) {
    for (uint32_t sink : {0u, 1u, 4u}) {
      RunCase({.name = "mixed-layers",
               .dtype = n % 2 ? DType::kBF16 : DType::kF16,
               .layers = static_cast<uint32_t>(mixed.size()),
               .heads = n % 2 ? 8u : 3u,
               .dim = 128,
               .block_tokens = n % 2 ? 16u : 17u,
               .sink = sink,
               .codecs = mixed,
               .layout = layout,
               .page_tokens = 16,
               .num_blocks = 3,
               .first_token = 7,
               .pattern = static_cast<Pattern>(n % 3),
               .seed = 9000 + n});
      ++n;
    }
  }
  // k=int4,v=int2 everywhere (the common mixed spec).
  RunCase({.name = "k=int4,v=int2",
           .layers = 3,
           .heads = 8,
           .dim = 128,
           .block_tokens = 64,
           .codecs = Uniform(3, C(CodecId::kInt4, 64), C(CodecId::kInt2, 64)),
           .page_tokens = 16,
           .num_blocks = 5,
           .first_token = 16});
}

TEST(CudaCodecTest, AlignmentFallbacksMatchReference) {
  SKIP_WITHOUT_CUDA();
  const std::vector<std::pair<SectionCodec, SectionCodec>> codecs = {
      {C(CodecId::kRaw), C(CodecId::kRaw)},
      {C(CodecId::kFp8, 0, true), C(CodecId::kInt8)},
      {C(CodecId::kInt4, 64), C(CodecId::kInt2, 7)},
      {C(CodecId::kInt2, 5, true), C(CodecId::kInt4, 32, true)},
  };
  size_t n = 0;
  for (int mode = 0; mode < 4; ++mode) {
    for (const auto& [k, v] : codecs) {
      RunCase({.name = "alignment",
               .dtype = n % 2 ? DType::kBF16 : DType::kF16,
               .heads = 3,
               .dim = 64,
               .block_tokens = 17,
               .sink = static_cast<uint32_t>(n % 2),
               .codecs = Uniform(2, k, v),
               .layout = mode == 1 ? KvLayout::kFlashInferHnd : KvLayout::kVllmNhd,
               .padded = mode == 2,
               .page_tokens = 16,
               .num_blocks = 3,
               .first_token = 9,
               .pattern = static_cast<Pattern>(n % 3),
               .misaligned_payloads = mode == 0 || mode == 3,
               .misaligned_base = mode == 1 || mode == 3,
               .seed = 11000 + n});
      ++n;
    }
  }
}

TEST(CudaCodecTest, ManyLayersAndBlocksMatchReference) {
  SKIP_WITHOUT_CUDA();
  // More sections than one launch's table holds.
  std::vector<LayerCodec> many;
  for (uint32_t l = 0; l < 130; ++l) {
    many.push_back(l % 3 == 0 ? LayerCodec{C(CodecId::kInt4, 2), C(CodecId::kInt2, 8)}
                              : LayerCodec{C(CodecId::kFp8), C(CodecId::kInt8)});
  }
  RunCase({.name = "many-layers",
           .layers = 130,
           .heads = 1,
           .dim = 16,
           .block_tokens = 3,
           .sink = 1,
           .codecs = many,
           .page_tokens = 4,
           .num_blocks = 2,
           .first_token = 2});
  // Many blocks, a full-size vLLM-like batch.
  RunCase({.name = "many-blocks",
           .layers = 2,
           .heads = 8,
           .dim = 128,
           .block_tokens = 16,
           .codecs = Uniform(2, C(CodecId::kInt4, 64, true), C(CodecId::kInt2, 64, true)),
           .page_tokens = 16,
           .num_blocks = 70,
           .first_token = 0,
           .pattern = Pattern::kNormal});
}

TEST(CudaCodecTest, EmptyBatchIsOk) {
  SKIP_WITHOUT_CUDA();
  Case c;
  c.codecs = Uniform(2, C(CodecId::kFp8), C(CodecId::kFp8));
  const HostCache host = BuildHostCache(c);
  DeviceCache dc;
  ASSERT_TRUE(dc.Build(c, host, false));
  const BlockDescriptor desc = DescriptorOf(c);
  DeviceBuffer out;
  ASSERT_TRUE(out.Allocate(64));
  EXPECT_TRUE(CudaEncodeBlocks(dc.view, 0, 0, desc, out.get(), 1 << 20, nullptr).ok());
  EXPECT_TRUE(CudaDecodeBlocks(out.get(), 1 << 20, 0, desc, dc.view, 0, nullptr).ok());
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

}  // namespace
}  // namespace kvault::kernels
