// EncodeBlockCpu / DecodeBlockCpu against the reference codec, for every instruction set this CPU
// supports: encoded bytes must equal ReferenceEncodeBlock's, and decoded elements written into a
// paged destination must equal ReferenceDecodeBlock's, bit for bit, with every other slot of the
// destination untouched.
//
// The expected reference input is gathered from the paged caches with this file's own index
// arithmetic (CacheOffset below, written from DESIGN.md §6 and kv_view.h's layout comments), not
// with the view's strides.

#include "kvault/kernels/cpu_codec.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "kvault/common/block_format.h"
#include "kvault/kernels/kv_view.h"
#include "kvault/kernels/numeric.h"
#include "kvault/kernels/reference_codec.h"

namespace kvault::kernels {
namespace {

// ---- codecs ----------------------------------------------------------------------------------

SectionCodec Sc(CodecId id, uint16_t group = 0, bool rotate = false) {
  return SectionCodec{id, rotate, group};
}
LayerCodec Both(SectionCodec c) { return LayerCodec{c, c}; }

std::string SectionName(const SectionCodec& c) {
  std::string s = CodecName(c.codec);
  if (IsGroupedCodec(c.codec)) s += ":g=" + std::to_string(c.group);
  if (c.rotate) s += ":rot";
  return s;
}

std::string CodecsName(const std::vector<LayerCodec>& layers) {
  std::string s;
  for (size_t i = 0; i < layers.size(); ++i) {
    if (i) s += ";";
    if (layers[i].k == layers[i].v) {
      s += SectionName(layers[i].k);
    } else {
      s += "k=" + SectionName(layers[i].k) + ",v=" + SectionName(layers[i].v);
    }
  }
  return s;
}

bool AnyRotate(const std::vector<LayerCodec>& layers) {
  for (const LayerCodec& l : layers) {
    if (l.k.rotate || l.v.rotate) return true;
  }
  return false;
}

// Every codec the tests sweep, as the codec of all layers (num_layers copies) or a per-layer mix.
std::vector<std::vector<LayerCodec>> CodecSweep(uint32_t num_layers) {
  std::vector<std::vector<LayerCodec>> out;
  auto all = [&](LayerCodec lc) { out.push_back(std::vector<LayerCodec>(num_layers, lc)); };
  all(Both(Sc(CodecId::kRaw)));
  for (bool rot : {false, true}) {
    all(Both(Sc(CodecId::kFp8, 0, rot)));
    all(Both(Sc(CodecId::kInt8, 0, rot)));
    for (uint16_t g : {1, 7, 64, 256}) {
      all(Both(Sc(CodecId::kInt4, g, rot)));
      all(Both(Sc(CodecId::kInt2, g, rot)));
    }
    all(LayerCodec{Sc(CodecId::kInt4, 64, rot), Sc(CodecId::kInt2, 64, rot)});
  }
  // Per-layer mix: every layer different, K and V different.
  const LayerCodec mix[] = {
      LayerCodec{Sc(CodecId::kInt8), Sc(CodecId::kFp8, 0, true)},
      LayerCodec{Sc(CodecId::kInt4, 7), Sc(CodecId::kInt2, 64, true)},
      LayerCodec{Sc(CodecId::kRaw), Sc(CodecId::kInt4, 3)},
      LayerCodec{Sc(CodecId::kInt2, 5, true), Sc(CodecId::kRaw)},
  };
  std::vector<LayerCodec> mixed;
  for (uint32_t l = 0; l < num_layers; ++l) mixed.push_back(mix[l % 4]);
  out.push_back(mixed);
  return out;
}

// ---- values ----------------------------------------------------------------------------------

std::vector<uint16_t> SpecialValues(DType dtype) {
  if (dtype == DType::kF16) {
    return {0x0000, 0x8000,           0x0001,           0x8001,           0x03FF,
            0x83FF, 0x0400,           0x5F00 /* 448 */, 0xDF00,           0x63D0 /* 1000 */,
            0xE3D0, 0x7BFF /* max */, 0xFBFF,           0x7E00 /* NaN */, 0x7C01,
            0xFE00, 0x7C00 /* inf */, 0xFC00,           0x3C00,           0x5F80 /* 480 */,
            0x5F40 /* 464 */};
  }
  return {0x0000,
          0x8000,
          0x0001,
          0x8001,
          0x007F,
          0x807F,
          0x0080,
          0x43E0 /* 448 */,
          0xC3E0,
          0x447A /* 1000 */,
          0xC47A,
          0x477F /* ~fp16 max */,
          0x7F7F /* max */,
          0xFF7F,
          0x7FC0 /* NaN */,
          0x7F81,
          0xFFC1,
          0x7F80 /* inf */,
          0xFF80,
          0x3F80,
          0x43E8 /* 464 */};
}

// Fast deterministic values (the distribution only needs to be realistic-ish, not exact).
class ValueSource {
 public:
  ValueSource(uint64_t seed, DType dtype)
      : state_(seed), dtype_(dtype), specials_(SpecialValues(dtype)) {}

  uint64_t Bits() {  // splitmix64
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double Uniform() { return static_cast<double>(Bits() >> 11) * 0x1p-53; }
  // Approximately standard normal: the sum of four 16-bit uniforms, rescaled.
  float Normal() {
    const uint64_t r = Bits();
    const uint32_t sum = (r & 0xFFFF) + ((r >> 16) & 0xFFFF) + ((r >> 32) & 0xFFFF) + (r >> 48);
    return (static_cast<float>(sum) * (1.0f / 65536.0f) - 2.0f) * 1.7320508f;
  }

  // One element: mostly normals (outlier channels 30x), sometimes a special value.
  uint16_t Element(uint32_t channel) {
    if (Uniform() < 0.04) return specials_[Bits() % specials_.size()];
    const bool outlier = channel % 37 == 3 || channel % 53 == 10;
    return FromFloat(Normal() * (outlier ? 30.0f : 1.0f), dtype_);
  }

  // One head vector; some vectors are degenerate (constant, all NaN, all zero, tiny).
  void Vector(uint16_t* v, uint32_t dim) {
    const double mode = Uniform();
    if (mode < 0.02) {
      const uint16_t c = Element(0);
      std::fill(v, v + dim, c);
    } else if (mode < 0.03) {
      std::fill(v, v + dim, dtype_ == DType::kF16 ? uint16_t{0x7E00} : uint16_t{0x7FC0});
    } else if (mode < 0.04) {
      for (uint32_t c = 0; c < dim; ++c) v[c] = (Bits() & 1) ? 0x8000 : 0x0000;
    } else if (mode < 0.05) {  // subnormal-sized values only
      for (uint32_t c = 0; c < dim; ++c) v[c] = static_cast<uint16_t>(Bits() & 0x80FF);
    } else {
      const float gain = std::exp(Normal());
      for (uint32_t c = 0; c < dim; ++c) {
        v[c] = Uniform() < 0.04
                   ? Element(c)
                   : FromFloat(Normal() * gain * ((c % 37 == 3) ? 30.0f : 1.0f), dtype_);
      }
    }
  }

 private:
  uint64_t state_;
  DType dtype_;
  std::vector<uint16_t> specials_;
};

// ---- paged caches with independent index arithmetic ---------------------------------------------

struct CacheShape {
  KvLayout layout = KvLayout::kContiguous;
  DType dtype = DType::kF16;
  uint32_t layers = 0, heads = 0, dim = 0;
  uint32_t page_tokens = 0;       // tokens per page (contiguous: the sequence length)
  uint32_t pages_in_cache = 0;    // engine pages (contiguous: 1)
  std::vector<int32_t> page_ids;  // the sequence's pages, in token order
};

// Elements of one tensor (contiguous: the whole cache; otherwise one layer).
uint64_t TensorElems(const CacheShape& s) {
  const uint64_t per_page_kv = uint64_t{s.page_tokens} * s.heads * s.dim;
  if (s.layout == KvLayout::kContiguous) return uint64_t{s.layers} * 2 * per_page_kv;
  return uint64_t{s.pages_in_cache} * 2 * per_page_kv;
}

// (tensor, element index) of element (layer, kv, token, head, c) of the sequence.
std::pair<uint32_t, uint64_t> CacheOffset(const CacheShape& s, uint32_t layer, uint32_t kv,
                                          uint64_t token, uint32_t head, uint32_t c) {
  const uint64_t P = s.page_tokens, H = s.heads, D = s.dim, N = s.pages_in_cache;
  const uint64_t page = static_cast<uint64_t>(s.page_ids.at(token / P));
  const uint64_t slot = token % P;
  switch (s.layout) {
    case KvLayout::kContiguous:  // [layers][2][tokens][heads][dim]
      return {0, (((uint64_t{layer} * 2 + kv) * P + token) * H + head) * D + c};
    case KvLayout::kVllmNhd:  // per layer [2][blocks][block_size][heads][dim]
      return {layer, (((kv * N + page) * P + slot) * H + head) * D + c};
    case KvLayout::kVllmHnd:  // per layer [2][blocks][heads][block_size][dim]
      return {layer, (((kv * N + page) * H + head) * P + slot) * D + c};
    case KvLayout::kFlashInferNhd:  // per layer [pages][2][page_size][heads][dim]
      return {layer, (((page * 2 + kv) * P + slot) * H + head) * D + c};
    case KvLayout::kFlashInferHnd:  // per layer [pages][2][heads][page_size][dim]
      return {layer, (((page * 2 + kv) * H + head) * P + slot) * D + c};
  }
  ADD_FAILURE() << "unknown layout";
  return {0, 0};
}

struct Cache {
  CacheShape shape;
  std::vector<std::vector<uint16_t>> tensors;
  PagedKvView view;
  PagedKvViewStorage storage;

  uint16_t& At(uint32_t layer, uint32_t kv, uint64_t token, uint32_t head, uint32_t c) {
    auto [t, i] = CacheOffset(shape, layer, kv, token, head, c);
    return tensors[t][i];
  }
};

// A cache filled with random bit patterns; the view is built by MakePagedKvView.
void MakeCache(const CacheShape& shape, ValueSource& values, Cache& cache) {
  cache.shape = shape;
  const uint32_t n = shape.layout == KvLayout::kContiguous ? 1 : shape.layers;
  cache.tensors.assign(n, std::vector<uint16_t>(TensorElems(shape)));
  std::vector<uint16_t*> ptrs;
  for (auto& t : cache.tensors) {
    for (size_t i = 0; i < t.size(); i += 4) {  // arbitrary bit patterns, NaN included
      const uint64_t r = values.Bits();
      for (size_t k = 0; k < 4 && i + k < t.size(); ++k)
        t[i + k] = static_cast<uint16_t>(r >> (16 * k));
    }
    ptrs.push_back(t.data());
  }
  const Status st = MakePagedKvView(shape.layout, shape.dtype, shape.layers, shape.heads, shape.dim,
                                    shape.page_tokens, shape.pages_in_cache, ptrs, shape.page_ids,
                                    cache.view, cache.storage);
  ASSERT_TRUE(st.ok()) << st.ToString();
}

// ---- one round trip --------------------------------------------------------------------------

struct Case {
  std::vector<LayerCodec> codecs;
  uint32_t tokens = 0, heads = 0, dim = 0, sink = 0;
  DType dtype = DType::kF16;
  KvLayout layout = KvLayout::kContiguous;
  uint32_t page_tokens = 16;  // paged layouts
  uint32_t first_token = 0;
  uint64_t seed = 0;

  std::string Name() const {
    return CodecsName(codecs) + " tokens=" + std::to_string(tokens) +
           " heads=" + std::to_string(heads) + " dim=" + std::to_string(dim) +
           " sink=" + std::to_string(sink) + " " + std::string(DTypeName(dtype)) + " " +
           KvLayoutName(layout) + " page=" + std::to_string(page_tokens) +
           " first=" + std::to_string(first_token);
  }
};

BlockDescriptor DescriptorFor(const Case& c) {
  BlockDescriptor d;
  d.layout = BlockLayout{
      static_cast<uint32_t>(c.codecs.size()), c.heads, c.dim, c.tokens, c.dtype, c.sink};
  d.layers = c.codecs;
  for (size_t i = 0; i < d.key.size(); ++i) d.key[i] = static_cast<uint8_t>(c.seed + 7 * i);
  for (size_t i = 0; i < d.ns_digest.size(); ++i) d.ns_digest[i] = static_cast<uint8_t>(3 * i);
  return d;
}

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

}  // namespace

void PrintTo(CpuIsa isa, std::ostream* os) { *os << CpuIsaName(isa); }

namespace {

class CpuCodecIsaTest : public ::testing::TestWithParam<CpuIsa> {
 protected:
  void SetUp() override {
    if (!CpuSupports(GetParam())) {
      GTEST_SKIP() << "this CPU does not support " << CpuIsaName(GetParam());
    }
  }
};

TEST_P(CpuCodecIsaTest, MatchesReferenceOnEveryCodecShapeAndLayout) {
  int failures = 0;
  for (const Case& c : SweepCases()) {
    if (!RoundTrip(c, GetParam()) && ++failures >= 5) {
      FAIL() << "stopping after 5 failing cases";
    }
  }
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
