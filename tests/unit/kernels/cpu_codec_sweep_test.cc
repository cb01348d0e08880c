// EncodeBlockCpu / DecodeBlockCpu against the reference codec, for every instruction set this CPU
// supports: encoded bytes must equal ReferenceEncodeBlock's, and decoded elements written into a
// paged destination must equal ReferenceDecodeBlock's, bit for bit, with every other slot of the
// destination untouched. Swept over codecs, shapes, layouts, every fp16/bf16 bit pattern and
// extreme magnitudes.
//
// The expected reference input is gathered from the paged caches with the test's own index
// arithmetic (CacheOffset in cpu_codec_test_util.h, written from DESIGN.md §6 and kv_view.h's
// layout comments), not with the view's strides. Failure paths, instruction set detection and
// decoding of random payloads are in cpu_codec_errors_test.cc.

#include <gtest/gtest.h>
#if defined(__x86_64__)
#include <xmmintrin.h>
#endif

#include <algorithm>
#include <cstdint>
#include <random>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "cpu_codec_test_util.h"
#include "kvault/common/block_format.h"
#include "kvault/kernels/cpu_codec.h"
#include "kvault/kernels/kv_view.h"
#include "kvault/kernels/numeric.h"
#include "kvault/kernels/reference_codec.h"

namespace kvault::kernels {
namespace {

using namespace cpu_codec_test;  // NOLINT(build/namespaces): the shared helpers

// ---- one round trip --------------------------------------------------------------------------

CacheShape ShapeFor(const Case& c, ValueSource& values) {
  CacheShape s;
  s.layout = c.layout;
  s.dtype = c.dtype;
  s.layers = static_cast<uint32_t>(c.codecs.size());
  s.heads = c.heads;
  s.dim = c.dim;
  const uint64_t seq_tokens = uint64_t{c.first_token} + c.tokens + (values.Bits() % 3);
  if (c.layout == KvLayout::kContiguous) {
    s.page_tokens = static_cast<uint32_t>(seq_tokens);
    s.pages_in_cache = 1;
    s.page_ids = {0};
    return s;
  }
  s.page_tokens = c.page_tokens;
  const uint32_t pages = static_cast<uint32_t>((seq_tokens + c.page_tokens - 1) / c.page_tokens);
  s.pages_in_cache = pages + 3;
  std::vector<int32_t> ids(s.pages_in_cache);
  for (uint32_t i = 0; i < s.pages_in_cache; ++i) ids[i] = static_cast<int32_t>(i);
  std::mt19937_64 rng(values.Bits());
  std::shuffle(ids.begin(), ids.end(), rng);
  s.page_ids.assign(ids.begin(), ids.begin() + pages);
  return s;
}

std::string FirstDifference(const std::vector<uint8_t>& a, std::span<const uint8_t> b) {
  if (a.size() != b.size())
    return "sizes " + std::to_string(a.size()) + " vs " + std::to_string(b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] != b[i]) {
      return "first difference at byte " + std::to_string(i) + ": reference " +
             std::to_string(a[i]) + ", cpu " + std::to_string(b[i]);
    }
  }
  return "";
}

// Encodes and decodes one case with `isa`; returns false after reporting a failure.
bool RoundTrip(const Case& c, CpuIsa isa) {
  SCOPED_TRACE(std::string(CpuIsaName(isa)) + " " + c.Name());
  ValueSource values(c.seed, c.dtype);
  const BlockDescriptor d = DescriptorFor(c);
  Cache src;
  MakeCache(ShapeFor(c, values), values, src);
  if (::testing::Test::HasFatalFailure()) return false;
  // Per-vector patterns (degenerate vectors included) for the block's tokens.
  const uint32_t L = d.layout.num_layers;
  std::vector<uint16_t> vec(c.dim);
  for (uint32_t l = 0; l < L; ++l) {
    for (uint32_t kv = 0; kv < 2; ++kv) {
      for (uint32_t t = 0; t < c.tokens; ++t) {
        for (uint32_t h = 0; h < c.heads; ++h) {
          values.Vector(vec.data(), c.dim);
          for (uint32_t i = 0; i < c.dim; ++i) src.At(l, kv, c.first_token + t, h, i) = vec[i];
        }
      }
    }
  }
  // Expected input of the reference: [layers][2][tokens][heads][dim].
  const uint64_t section = uint64_t{c.tokens} * c.heads * c.dim;
  std::vector<uint16_t> gathered(section * 2 * L);
  for (uint32_t l = 0; l < L; ++l) {
    for (uint32_t kv = 0; kv < 2; ++kv) {
      for (uint32_t t = 0; t < c.tokens; ++t) {
        for (uint32_t h = 0; h < c.heads; ++h) {
          for (uint32_t i = 0; i < c.dim; ++i) {
            gathered[(((uint64_t{l} * 2 + kv) * c.tokens + t) * c.heads + h) * c.dim + i] =
                src.At(l, kv, c.first_token + t, h, i);
          }
        }
      }
    }
  }
  Result<std::vector<uint8_t>> expected = ReferenceEncodeBlock(d, gathered);
  EXPECT_TRUE(expected.ok()) << expected.status().ToString();
  if (!expected.ok()) return false;

  const std::vector<std::vector<uint16_t>> src_before = src.tensors;
  std::vector<uint8_t> object(expected->size() + 1, 0xCD);
  const Status enc = EncodeBlockCpu(src.view, c.first_token, d,
                                    std::span<uint8_t>(object.data(), expected->size()), isa);
  EXPECT_TRUE(enc.ok()) << enc.ToString();
  if (!enc.ok()) return false;
  const std::string diff =
      FirstDifference(*expected, std::span<const uint8_t>(object.data(), expected->size()));
  EXPECT_EQ(diff, "") << "encoded bytes differ from the reference";
  EXPECT_EQ(object.back(), 0xCD) << "wrote past the object";
  EXPECT_TRUE(src.tensors == src_before) << "encode modified its source";
  if (!diff.empty()) return false;

  // Decode: reference into a contiguous array, CPU into a randomly filled paged destination.
  Result<BlockView> block = ParseBlockObject(*expected);
  EXPECT_TRUE(block.ok()) << block.status().ToString();
  if (!block.ok()) return false;
  std::vector<uint16_t> ref_out(gathered.size());
  const Status rd = ReferenceDecodeBlock(*block, ref_out);
  EXPECT_TRUE(rd.ok()) << rd.ToString();
  Cache dst;
  MakeCache(src.shape, values, dst);
  if (::testing::Test::HasFatalFailure()) return false;
  const std::vector<std::vector<uint16_t>> dst_before = dst.tensors;
  const Status dec = DecodeBlockCpu(*block, dst.view, c.first_token, isa);
  EXPECT_TRUE(dec.ok()) << dec.ToString();
  if (!dec.ok()) return false;
  std::vector<std::vector<uint8_t>> touched(dst.tensors.size());
  for (size_t i = 0; i < touched.size(); ++i) touched[i].assign(dst.tensors[i].size(), 0);
  uint64_t mismatches = 0;
  std::string first;
  for (uint32_t l = 0; l < L; ++l) {
    for (uint32_t kv = 0; kv < 2; ++kv) {
      for (uint32_t t = 0; t < c.tokens; ++t) {
        for (uint32_t h = 0; h < c.heads; ++h) {
          for (uint32_t i = 0; i < c.dim; ++i) {
            auto [ti, off] = CacheOffset(dst.shape, l, kv, c.first_token + t, h, i);
            touched[ti][off] = 1;
            const uint16_t want =
                ref_out[(((uint64_t{l} * 2 + kv) * c.tokens + t) * c.heads + h) * c.dim + i];
            const uint16_t got = dst.tensors[ti][off];
            if (want != got && mismatches++ == 0) {
              first = "layer " + std::to_string(l) + " kv " + std::to_string(kv) + " token " +
                      std::to_string(t) + " head " + std::to_string(h) + " dim " +
                      std::to_string(i) + ": reference " + std::to_string(want) + ", cpu " +
                      std::to_string(got);
            }
          }
        }
      }
    }
  }
  EXPECT_EQ(mismatches, 0u) << "decoded elements differ; first at " << first;
  uint64_t clobbered = 0;
  for (size_t ti = 0; ti < dst.tensors.size(); ++ti) {
    for (size_t i = 0; i < dst.tensors[ti].size(); ++i) {
      if (!touched[ti][i] && dst.tensors[ti][i] != dst_before[ti][i]) ++clobbered;
    }
  }
  EXPECT_EQ(clobbered, 0u) << "decode wrote outside the block's slots";
  return mismatches == 0 && clobbered == 0;
}

// ---- the sweep -------------------------------------------------------------------------------

// Every codec of CodecSweep on every (tokens, head_dim) pair; heads, sink, dtype, layout, page size
// and the block's first token cycle independently across the cases.
std::vector<Case> SweepCases() {
  std::vector<Case> cases;
  const KvLayout layouts[] = {KvLayout::kContiguous, KvLayout::kVllmNhd, KvLayout::kVllmHnd,
                              KvLayout::kFlashInferNhd, KvLayout::kFlashInferHnd};
  const uint32_t heads[] = {1, 3, 5};
  const uint32_t sinks[] = {0, 1, 4};
  const uint32_t pages[] = {16, 5, 1, 3};
  uint64_t n = 0;
  auto add = [&](const std::vector<LayerCodec>& codecs, uint32_t tokens, uint32_t dim) {
    Case c;
    c.codecs = codecs;
    c.tokens = tokens;
    c.dim = dim;
    c.heads = heads[n % 3];
    c.sink = std::min(sinks[(n / 3) % 3], tokens);
    c.dtype = (n / 2) % 2 == 0 ? DType::kF16 : DType::kBF16;
    c.layout = layouts[n % 5];
    c.page_tokens = pages[(n / 7) % 4];
    // Start mid-page (or at 0 now and then).
    c.first_token =
        n % 11 == 0 ? 0 : c.page_tokens + c.page_tokens / 2 + static_cast<uint32_t>(n % 3);
    c.seed = 1000 + n;
    cases.push_back(c);
    ++n;
  };
  for (const auto& codecs : CodecSweep(2)) {
    const bool rot = AnyRotate(codecs);
    for (uint32_t tokens : {1u, 3u, 7u, 16u, 17u}) {
      for (uint32_t dim : {8u, 24u, 64u, 128u, 256u}) {
        if (rot && dim == 24) continue;  // rotation needs a power-of-two head_dim
        add(codecs, tokens, dim);
      }
    }
    add(codecs, 256, 64);
    add(codecs, 256, 128);
  }
  for (const auto& codecs : CodecSweep(4)) add(codecs, 17, 128);
  return cases;
}

TEST(CpuCodecTest, SweepCoversTheMatrix) {
  const std::vector<Case> cases = SweepCases();
  std::set<std::string> seen;
  for (const Case& c : cases) {
    seen.insert("layout " + std::string(KvLayoutName(c.layout)));
    seen.insert("heads " + std::to_string(c.heads));
    seen.insert("sink " + std::to_string(c.sink));
    seen.insert("dtype " + std::string(DTypeName(c.dtype)));
    seen.insert("dim " + std::to_string(c.dim));
    seen.insert("tokens " + std::to_string(c.tokens));
    seen.insert("page " + std::to_string(c.page_tokens));
    seen.insert(std::string("mid-page ") + (c.first_token % c.page_tokens != 0 ? "yes" : "no"));
  }
  for (const char* want : {"layout contiguous",
                           "layout vllm-nhd",
                           "layout vllm-hnd",
                           "layout flashinfer-nhd",
                           "layout flashinfer-hnd",
                           "heads 1",
                           "heads 3",
                           "heads 5",
                           "sink 0",
                           "sink 1",
                           "sink 4",
                           "dtype f16",
                           "dtype bf16",
                           "dim 8",
                           "dim 24",
                           "dim 64",
                           "dim 128",
                           "dim 256",
                           "tokens 1",
                           "tokens 3",
                           "tokens 7",
                           "tokens 16",
                           "tokens 17",
                           "tokens 256",
                           "page 1",
                           "page 3",
                           "page 5",
                           "page 16",
                           "mid-page yes"}) {
    EXPECT_TRUE(seen.count(want)) << want;
  }
  EXPECT_GT(cases.size(), 500u);
}

// ---- reference matching, per instruction set ------------------------------------------------

TEST_P(CpuCodecIsaTest, MatchesReferenceOnEveryCodecShapeAndLayout) {
  int failures = 0;
  for (const Case& c : SweepCases()) {
    if (!RoundTrip(c, GetParam()) && ++failures >= 5) {
      FAIL() << "stopping after 5 failing cases";
    }
  }
}

// A caller that turned on flush-to-zero and denormals-are-zero (MXCSR; a library built with
// -ffast-math, torch.set_flush_denormal) gets the reference's bytes all the same, for bf16 inputs
// below 2^-126 too, and its setting back afterwards.
TEST_P(CpuCodecIsaTest, TheCallersFlushToZeroChangesNoByte) {
#if defined(__x86_64__)
  Case c;
  c.codecs = {LayerCodec{Sc(CodecId::kRaw), Sc(CodecId::kInt4, 8)},
              LayerCodec{Sc(CodecId::kInt8), Sc(CodecId::kFp8, 0, /*rotate=*/true)}};
  c.sink = 2;
  c.tokens = 16;
  c.heads = 2;
  c.dim = 32;
  c.dtype = DType::kBF16;
  const BlockDescriptor d = DescriptorFor(c);
  // bf16 subnormals (exponent 0), both signs, with some normals among them.
  std::vector<uint16_t> src(uint64_t{2} * c.codecs.size() * c.tokens * c.heads * c.dim);
  for (size_t i = 0; i < src.size(); ++i) {
    const uint16_t mantissa = static_cast<uint16_t>(1 + (i * 37) % 127);
    src[i] =
        static_cast<uint16_t>((i % 3 == 0 ? 0x8000 : 0) | (i % 11 == 0 ? 0x0080 : 0) | mantissa);
  }
  Result<std::vector<uint8_t>> expected = ReferenceEncodeBlock(d, src);
  ASSERT_TRUE(expected.ok()) << expected.status().ToString();
  Result<BlockView> expected_block = ParseBlockObject(*expected);
  ASSERT_TRUE(expected_block.ok());
  std::vector<uint16_t> want(src.size());
  ASSERT_TRUE(ReferenceDecodeBlock(*expected_block, want).ok());
  uint64_t nonzero = 0;
  for (uint16_t w : want) nonzero += (w & 0x7FFF) != 0;
  ASSERT_GT(nonzero, 0u) << "the sample must keep subnormals through the codecs";

  PagedKvView view;
  PagedKvViewStorage storage;
  uint16_t* base = src.data();
  const int32_t page0 = 0;
  ASSERT_TRUE(MakePagedKvView(KvLayout::kContiguous, c.dtype, 2, c.heads, c.dim, c.tokens, 1,
                              std::span<uint16_t* const>(&base, 1),
                              std::span<const int32_t>(&page0, 1), view, storage)
                  .ok());
  std::vector<uint8_t> object(expected->size());
  std::vector<uint16_t> got(src.size(), 0x1234);
  const unsigned saved = _mm_getcsr();
  _mm_setcsr(saved | 0x8040);  // FTZ and DAZ
  const Status encoded = EncodeBlockCpu(view, 0, d, object, GetParam());
  base = got.data();
  PagedKvView out;
  PagedKvViewStorage out_storage;
  const Status made = MakePagedKvView(KvLayout::kContiguous, c.dtype, 2, c.heads, c.dim, c.tokens,
                                      1, std::span<uint16_t* const>(&base, 1),
                                      std::span<const int32_t>(&page0, 1), out, out_storage);
  const Status decoded = made.ok() ? DecodeBlockCpu(*expected_block, out, 0, GetParam()) : made;
  const unsigned after = _mm_getcsr();
  _mm_setcsr(saved);
  EXPECT_EQ(after & 0xFFC0, (saved | 0x8040) & 0xFFC0) << "the caller's setting was not restored";
  ASSERT_TRUE(encoded.ok()) << encoded.ToString();
  ASSERT_TRUE(decoded.ok()) << decoded.ToString();
  EXPECT_EQ(FirstDifference(*expected, object), "");
  uint64_t bad = 0;
  for (size_t i = 0; i < want.size(); ++i) bad += want[i] != got[i];
  EXPECT_EQ(bad, 0u) << "decoded elements differ";
#else
  GTEST_SKIP() << "MXCSR is x86's";
#endif
}

// Encodes `src` ([layers][2][tokens][heads][dim] of case c) through a contiguous view and
// checks bytes and decoded elements against the reference.
void CheckContiguous(const Case& c, std::vector<uint16_t>& src, CpuIsa isa) {
  const BlockDescriptor d = DescriptorFor(c);
  const uint32_t layers = d.layout.num_layers;
  Result<std::vector<uint8_t>> expected = ReferenceEncodeBlock(d, src);
  ASSERT_TRUE(expected.ok()) << expected.status().ToString();
  PagedKvView view;
  PagedKvViewStorage storage;
  uint16_t* base = src.data();
  const int32_t page0 = 0;
  ASSERT_TRUE(MakePagedKvView(KvLayout::kContiguous, c.dtype, layers, c.heads, c.dim, c.tokens, 1,
                              std::span<uint16_t* const>(&base, 1),
                              std::span<const int32_t>(&page0, 1), view, storage)
                  .ok());
  std::vector<uint8_t> object(expected->size());
  ASSERT_TRUE(EncodeBlockCpu(view, 0, d, object, isa).ok());
  ASSERT_EQ(FirstDifference(*expected, object), "");
  Result<BlockView> block = ParseBlockObject(object);
  ASSERT_TRUE(block.ok());
  std::vector<uint16_t> want(src.size()), got(src.size(), 0x1234);
  ASSERT_TRUE(ReferenceDecodeBlock(*block, want).ok());
  base = got.data();
  ASSERT_TRUE(MakePagedKvView(KvLayout::kContiguous, c.dtype, layers, c.heads, c.dim, c.tokens, 1,
                              std::span<uint16_t* const>(&base, 1),
                              std::span<const int32_t>(&page0, 1), view, storage)
                  .ok());
  ASSERT_TRUE(DecodeBlockCpu(*block, view, 0, isa).ok());
  uint64_t bad = 0;
  for (size_t i = 0; i < want.size(); ++i) bad += want[i] != got[i];
  ASSERT_EQ(bad, 0u) << "decoded elements differ";
}

// Sweeps every fp16 or bf16 bit pattern through each lossy codec: K holds the patterns in order,
// V in a shuffled order.
TEST_P(CpuCodecIsaTest, MatchesReferenceOnEveryBitPattern) {
  for (DType dtype : {DType::kF16, DType::kBF16}) {
    for (const auto& codecs : CodecSweep(1)) {
      if (codecs[0].k.codec == CodecId::kRaw && codecs[0].v.codec == CodecId::kRaw) continue;
      Case c;
      c.codecs = codecs;
      c.tokens = 256;
      c.heads = 2;
      c.dim = 128;
      c.dtype = dtype;
      std::vector<uint16_t> src(2 * 65536);
      for (uint32_t i = 0; i < 65536; ++i) src[i] = static_cast<uint16_t>(i);
      std::vector<uint16_t> perm(src.begin(), src.begin() + 65536);
      std::mt19937_64 rng(42);
      std::shuffle(perm.begin(), perm.end(), rng);
      std::copy(perm.begin(), perm.end(), src.begin() + 65536);
      SCOPED_TRACE(std::string(CpuIsaName(GetParam())) + " " + CodecsName(codecs) + " " +
                   std::string(DTypeName(dtype)));
      CheckContiguous(c, src, GetParam());
      if (HasFatalFailure()) return;
    }
  }
}

// Large magnitudes: groups of bf16 values clustered around +-7e4 .. 3e38 overflow the fp16 zero
// point or scale (a zero point of +-Inf with a finite scale takes the kernels' division path;
// an Inf scale makes every fp8 code a signed zero), and fp16 values near +-65504.
TEST_P(CpuCodecIsaTest, MatchesReferenceOnExtremeMagnitudes) {
  const float bf16_bases[] = {7e4f, -7e4f, 1.5e5f, -1e6f, 3e7f, -1e9f, 3e38f, -3e38f, 1e4f};
  const float f16_bases[] = {6e4f, -6e4f, 65504.0f, -3e4f, 1e-5f};
  const float spreads[] = {1e-3f, 1e-2f, 0.3f, 0.0f};
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    const float* bases = dtype == DType::kBF16 ? bf16_bases : f16_bases;
    const uint32_t num_bases = dtype == DType::kBF16 ? 9 : 5;
    for (const auto& codecs : CodecSweep(1)) {
      Case c;
      c.codecs = codecs;
      c.tokens = 23;
      c.heads = 3;
      c.dim = 64;
      c.dtype = dtype;
      std::mt19937_64 rng(11);
      std::uniform_real_distribution<float> u(-1.0f, 1.0f);
      std::vector<uint16_t> src(uint64_t{2} * c.tokens * c.heads * c.dim);
      for (uint32_t kv = 0; kv < 2; ++kv) {
        for (uint32_t t = 0; t < c.tokens; ++t) {
          for (uint32_t h = 0; h < c.heads; ++h) {
            // The base is constant over tokens (K groups run over tokens), the spread is not.
            const float base = bases[(h + 3 * kv + t / 8) % num_bases];
            const float spread = spreads[(t + h) % 4];
            for (uint32_t i = 0; i < c.dim; ++i) {
              src[((kv * c.tokens + t) * c.heads + h) * c.dim + i] =
                  FromFloat(base * (1.0f + spread * u(rng)), dtype);
            }
          }
        }
      }
      SCOPED_TRACE(std::string(CpuIsaName(GetParam())) + " " + CodecsName(codecs) + " " +
                   std::string(DTypeName(dtype)));
      CheckContiguous(c, src, GetParam());
      if (HasFatalFailure()) return;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllIsas, CpuCodecIsaTest,
                         ::testing::Values(CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512),
                         [](const ::testing::TestParamInfo<CpuIsa>& info) {
                           return std::string(CpuIsaName(info.param));
                         });

}  // namespace
}  // namespace kvault::kernels
