#pragma once
// Helpers shared by the CPU codec tests (cpu_codec_sweep_test.cc, cpu_codec_errors_test.cc):
// codec lists and their names, deterministic element values, paged caches filled with random bit
// patterns, one test case and its block descriptor, and the per-instruction-set test fixture.
//
// The caches are indexed with this file's own arithmetic (CacheOffset below, written from
// DESIGN.md §6 and kv_view.h's layout comments), not with the view's strides.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "kvault/common/block_format.h"
#include "kvault/kernels/cpu_codec.h"
#include "kvault/kernels/kv_view.h"
#include "kvault/kernels/numeric.h"
#include "kvault/kernels/reference_codec.h"

namespace kvault::kernels {

inline void PrintTo(CpuIsa isa, std::ostream* os) { *os << CpuIsaName(isa); }

namespace cpu_codec_test {

// ---- codecs ----------------------------------------------------------------------------------

inline SectionCodec Sc(CodecId id, uint16_t group = 0, bool rotate = false) {
  return SectionCodec{id, rotate, group};
}
inline LayerCodec Both(SectionCodec c) { return LayerCodec{c, c}; }

inline std::string SectionName(const SectionCodec& c) {
  std::string s = CodecName(c.codec);
  if (IsGroupedCodec(c.codec)) s += ":g=" + std::to_string(c.group);
  if (c.rotate) s += ":rot";
  return s;
}

inline std::string CodecsName(const std::vector<LayerCodec>& layers) {
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

inline bool AnyRotate(const std::vector<LayerCodec>& layers) {
  for (const LayerCodec& l : layers) {
    if (l.k.rotate || l.v.rotate) return true;
  }
  return false;
}

// Every codec the tests sweep, as the codec of all layers (num_layers copies) or a per-layer mix.
inline std::vector<std::vector<LayerCodec>> CodecSweep(uint32_t num_layers) {
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

inline std::vector<uint16_t> SpecialValues(DType dtype) {
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
inline uint64_t TensorElems(const CacheShape& s) {
  const uint64_t per_page_kv = uint64_t{s.page_tokens} * s.heads * s.dim;
  if (s.layout == KvLayout::kContiguous) return uint64_t{s.layers} * 2 * per_page_kv;
  return uint64_t{s.pages_in_cache} * 2 * per_page_kv;
}

// (tensor, element index) of element (layer, kv, token, head, c) of the sequence.
inline std::pair<uint32_t, uint64_t> CacheOffset(const CacheShape& s, uint32_t layer, uint32_t kv,
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
inline void MakeCache(const CacheShape& shape, ValueSource& values, Cache& cache) {
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

// ---- cases ----------------------------------------------------------------------------------

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

inline BlockDescriptor DescriptorFor(const Case& c) {
  BlockDescriptor d;
  d.layout = BlockLayout{
      static_cast<uint32_t>(c.codecs.size()), c.heads, c.dim, c.tokens, c.dtype, c.sink};
  d.layers = c.codecs;
  for (size_t i = 0; i < d.key.size(); ++i) d.key[i] = static_cast<uint8_t>(c.seed + 7 * i);
  for (size_t i = 0; i < d.ns_digest.size(); ++i) d.ns_digest[i] = static_cast<uint8_t>(3 * i);
  return d;
}

// ---- fixture --------------------------------------------------------------------------------

// Parameterized by instruction set; skips, visibly, the ones this CPU lacks.
class CpuCodecIsaTest : public ::testing::TestWithParam<CpuIsa> {
 protected:
  void SetUp() override {
    if (!CpuSupports(GetParam())) {
      GTEST_SKIP() << "this CPU does not support " << CpuIsaName(GetParam());
    }
  }
};

}  // namespace cpu_codec_test
}  // namespace kvault::kernels
