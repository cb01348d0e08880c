#pragma once
// Helpers shared by the CUDA codec tests (cuda_*_test.cc): section codecs in one call, uniform
// per-layer codec lists, the visible skip on machines without a CUDA device, and the harness of
// cuda_codec_test.cc that checks the CUDA codec against the CPU reference.
//
// The harness (RunCase) builds an engine cache on the host in one of the paged layouts (with
// shuffled page ids, a batch that starts mid-page and spare pages around it), gathers each block's
// input with this file's own index arithmetic, encodes it with ReferenceEncodeBlock and compares
// the payload bytes written by CudaEncodeBlocks (into a buffer pre-filled with 0xA5, so padding and
// the gap between payloads are checked too). It then decodes the reference payloads with
// CudaDecodeBlocks into a zeroed device cache and compares every element of that cache with the
// reference decode scattered into a zeroed host copy: written slots bit for bit, all others zero.

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "kvault/common/block_format.h"
#include "kvault/kernels/cuda_codec.h"
#include "kvault/kernels/kv_view.h"
#include "kvault/kernels/numeric.h"
#include "kvault/kernels/reference_codec.h"

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

// ---- cases ----------------------------------------------------------------------------------

enum class Pattern { kNormal, kSpecial, kDegenerate };

// Built with designated initializers; every member has a default.
struct Case {
  std::string name = "";
  DType dtype = DType::kF16;
  uint32_t layers = 2, heads = 3, dim = 64, block_tokens = 17, sink = 0;
  std::vector<LayerCodec> codecs = {};  // one per layer
  KvLayout layout = KvLayout::kVllmNhd;
  bool padded =
      false;  // NHD with 4 padding elements after each head: strides not 16-byte multiples
  uint32_t page_tokens = 16;
  uint32_t num_blocks = 3;
  uint32_t first_token = 5;
  Pattern pattern = Pattern::kNormal;
  bool misaligned_payloads =
      false;                     // payload pointer + 4 and a stride that is not a multiple of 16
  bool misaligned_base = false;  // layer bases 2 bytes past a 16-byte boundary
  uint64_t seed = 1;
};

inline std::string CodecText(const SectionCodec& c) {
  std::string s = CodecName(c.codec);
  if (IsGroupedCodec(c.codec)) s += ":g=" + std::to_string(c.group);
  if (c.rotate) s += ":rot";
  return s;
}

inline std::string Describe(const Case& c) {
  std::string s =
      c.name + " [" + std::string(DTypeName(c.dtype)) + " L" + std::to_string(c.layers) + " H" +
      std::to_string(c.heads) + " D" + std::to_string(c.dim) + " bt" +
      std::to_string(c.block_tokens) + " sink" + std::to_string(c.sink) + " " +
      (c.padded ? "padded-nhd" : KvLayoutName(c.layout)) + " page" + std::to_string(c.page_tokens) +
      " blocks" + std::to_string(c.num_blocks) + " first" + std::to_string(c.first_token) +
      " pattern" + std::to_string(static_cast<int>(c.pattern));
  if (c.misaligned_payloads) s += " misaligned-payloads";
  if (c.misaligned_base) s += " misaligned-base";
  s += " codecs";
  for (const LayerCodec& lc : c.codecs) s += " k=" + CodecText(lc.k) + ",v=" + CodecText(lc.v);
  return s + "]";
}

// ---- values ---------------------------------------------------------------------------------

inline uint16_t Encode16(float f, DType dtype) { return FromFloat(f, dtype); }

inline std::vector<uint16_t> SpecialValues(DType dtype) {
  std::vector<uint16_t> v;
  for (float f : {0.0f, -0.0f, 448.0f, -448.0f, 1000.0f, -1000.0f, 464.0f, -464.0f, 65504.0f,
                  -65504.0f, 0.5f, -0.5f, 1.5f, 2.5f, 6.103515625e-05f, 1.0f, -1.0f}) {
    v.push_back(Encode16(f, dtype));
  }
  if (dtype == DType::kF16) {
    for (uint16_t b :
         {0x0001, 0x8001, 0x03FF, 0x83FF, 0x0200, 0x7E00, 0xFE00, 0x7C01, 0x7C00, 0xFC00, 0x7BFF}) {
      v.push_back(b);
    }
  } else {
    for (uint16_t b : {0x0001, 0x8001, 0x007F, 0x807F, 0x0040, 0x7FC0, 0xFFC0, 0x7F81, 0x7F80,
                       0xFF80, 0x7F7F, 0xFF7F}) {
      v.push_back(b);
    }
  }
  return v;
}

// Value of element (layer, kv, token, head, d) of the whole cache; `token` is the cache position
// (page * page_tokens + slot), so every slot gets data, used or not.
class ValueSource {
 public:
  explicit ValueSource(const Case& c) : c_(c), rng_(c.seed), specials_(SpecialValues(c.dtype)) {}

  // Fills `vec` (head_dim elements) for one (token, head) vector.
  void Vector(uint64_t token, uint32_t head, uint32_t layer, uint32_t kv, uint16_t* vec) {
    std::normal_distribution<float> normal(0.0f, 1.0f);
    const float token_gain =
        0.5f + static_cast<float>((token * 7 + head + layer * 3 + kv) % 11) / 4.0f;
    auto outlier = [&](uint32_t d) {
      float g = 1.0f;
      if (d % 17 == 3) g *= 25.0f;
      if (d % 29 == 11) g *= 60.0f;
      return g;
    };
    switch (c_.pattern) {
      case Pattern::kNormal:
        for (uint32_t d = 0; d < c_.dim; ++d) {
          vec[d] = Encode16(normal(rng_) * token_gain * outlier(d), c_.dtype);
        }
        break;
      case Pattern::kSpecial:
        for (uint32_t d = 0; d < c_.dim; ++d) {
          if (rng_() % 5 < 2) {
            vec[d] = specials_[rng_() % specials_.size()];
          } else {
            vec[d] = Encode16(normal(rng_) * token_gain * outlier(d), c_.dtype);
          }
        }
        break;
      case Pattern::kDegenerate: {
        const uint32_t kind = rng_() % 8;
        const uint16_t pos0 = Encode16(0.0f, c_.dtype), neg0 = Encode16(-0.0f, c_.dtype);
        const uint16_t nan = c_.dtype == DType::kF16 ? 0x7E00 : 0x7FC0;
        for (uint32_t d = 0; d < c_.dim; ++d) {
          switch (kind) {
            case 0:
              vec[d] = pos0;
              break;
            case 1:
              vec[d] = neg0;
              break;
            case 2:
              vec[d] = (rng_() & 1) ? pos0 : neg0;
              break;
            case 3:
              vec[d] = Encode16(1.5f, c_.dtype);
              break;
            case 4:
              vec[d] = nan;
              break;
            case 5:
              vec[d] = (rng_() & 1) ? nan : Encode16(normal(rng_), c_.dtype);
              break;
            case 6:
              vec[d] = (rng_() % 3 == 0) ? neg0 : Encode16(std::fabs(normal(rng_)), c_.dtype);
              break;
            default:
              vec[d] = Encode16(normal(rng_) * outlier(d), c_.dtype);
              break;
          }
        }
        break;
      }
    }
  }

 private:
  const Case& c_;
  std::mt19937_64 rng_;
  std::vector<uint16_t> specials_;
};

// ---- the cache, with the harness's own index arithmetic ------------------------------------

struct HostCache {
  uint32_t pages = 0;        // pages in the cache (contiguous: 1)
  uint32_t page_tokens = 0;  // contiguous: all tokens
  uint64_t layer_elems = 0;  // elements per layer tensor (contiguous: per layer slice)
  uint32_t head_pitch = 0;   // elements from one head's vector to the next (NHD) / D
  std::vector<int32_t> page_ids;
  std::vector<uint16_t> data;  // layers x layer_elems
};

// Offset inside layer `layer`'s tensor of element (kv, page, slot, head, 0).
inline uint64_t ElemOffset(const Case& c, const HostCache& h, uint32_t kv, uint64_t page,
                           uint64_t slot, uint32_t head) {
  const uint64_t H = c.heads, D = c.dim, P = h.pages, pt = h.page_tokens;
  if (c.padded) {
    const uint64_t hp = h.head_pitch;
    return ((kv * P + page) * pt + slot) * H * hp + head * hp;
  }
  switch (c.layout) {
    case KvLayout::kContiguous:
      return ((kv * pt + slot) * H + head) * D;
    case KvLayout::kVllmNhd:
      return ((kv * P + page) * pt + slot) * H * D + head * D;
    case KvLayout::kVllmHnd:
      return ((kv * P + page) * H + head) * pt * D + slot * D;
    case KvLayout::kFlashInferNhd:
      return ((page * 2 + kv) * pt + slot) * H * D + head * D;
    case KvLayout::kFlashInferHnd:
      return ((page * 2 + kv) * H + head) * pt * D + slot * D;
  }
  return 0;
}

inline uint64_t SequenceTokens(const Case& c) {
  return uint64_t{c.first_token} + uint64_t{c.num_blocks} * c.block_tokens;
}

inline HostCache BuildHostCache(const Case& c) {
  HostCache h;
  const uint64_t tokens = SequenceTokens(c);
  std::mt19937_64 rng(c.seed * 977 + 5);
  if (c.layout == KvLayout::kContiguous && !c.padded) {
    h.pages = 1;
    h.page_tokens = static_cast<uint32_t>(tokens + 3);  // spare tokens after the batch
    h.page_ids = {0};
    h.layer_elems = 2ull * h.page_tokens * c.heads * c.dim;
  } else {
    h.page_tokens = c.page_tokens;
    const uint32_t used = static_cast<uint32_t>((tokens + c.page_tokens - 1) / c.page_tokens);
    h.pages = used + 3;
    std::vector<int32_t> perm(h.pages);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    h.page_ids.assign(perm.begin(), perm.begin() + used);
    h.head_pitch = c.dim + (c.padded ? 4 : 0);
    h.layer_elems = 2ull * h.pages * h.page_tokens * c.heads * (c.padded ? h.head_pitch : c.dim);
  }
  h.data.assign(h.layer_elems * c.layers, 0);
  ValueSource values(c);
  std::vector<uint16_t> vec(c.dim);
  for (uint32_t layer = 0; layer < c.layers; ++layer) {
    for (uint32_t kv = 0; kv < 2; ++kv) {
      for (uint64_t page = 0; page < h.pages; ++page) {
        for (uint64_t slot = 0; slot < h.page_tokens; ++slot) {
          for (uint32_t head = 0; head < c.heads; ++head) {
            values.Vector(page * h.page_tokens + slot, head, layer, kv, vec.data());
            std::memcpy(&h.data[layer * h.layer_elems + ElemOffset(c, h, kv, page, slot, head)],
                        vec.data(), c.dim * 2);
          }
        }
      }
    }
  }
  return h;
}

// Offset in `h.data` of element (layer, kv, sequence token, head, 0).
inline uint64_t SequenceOffset(const Case& c, const HostCache& h, uint32_t layer, uint32_t kv,
                               uint64_t token, uint32_t head) {
  const uint64_t page = static_cast<uint64_t>(h.page_ids[token / h.page_tokens]);
  return layer * h.layer_elems + ElemOffset(c, h, kv, page, token % h.page_tokens, head);
}

// Block `b`'s KV as [layers][2][block_tokens][heads][dim].
inline std::vector<uint16_t> GatherBlock(const Case& c, const HostCache& h, uint32_t b) {
  std::vector<uint16_t> out(uint64_t{c.layers} * 2 * c.block_tokens * c.heads * c.dim);
  uint16_t* p = out.data();
  for (uint32_t layer = 0; layer < c.layers; ++layer) {
    for (uint32_t kv = 0; kv < 2; ++kv) {
      for (uint32_t t = 0; t < c.block_tokens; ++t) {
        const uint64_t token = c.first_token + uint64_t{b} * c.block_tokens + t;
        for (uint32_t head = 0; head < c.heads; ++head, p += c.dim) {
          std::memcpy(p, &h.data[SequenceOffset(c, h, layer, kv, token, head)], c.dim * 2);
        }
      }
    }
  }
  return out;
}

inline void ScatterBlock(const Case& c, const HostCache& h, uint32_t b,
                         const std::vector<uint16_t>& in, std::vector<uint16_t>& cache) {
  const uint16_t* p = in.data();
  for (uint32_t layer = 0; layer < c.layers; ++layer) {
    for (uint32_t kv = 0; kv < 2; ++kv) {
      for (uint32_t t = 0; t < c.block_tokens; ++t) {
        const uint64_t token = c.first_token + uint64_t{b} * c.block_tokens + t;
        for (uint32_t head = 0; head < c.heads; ++head, p += c.dim) {
          std::memcpy(&cache[SequenceOffset(c, h, layer, kv, token, head)], p, c.dim * 2);
        }
      }
    }
  }
}

// ---- device side ----------------------------------------------------------------------------

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    if (p_ != nullptr) cudaFree(p_);
  }
  bool Allocate(size_t bytes) {
    return cudaMalloc(&p_, std::max<size_t>(bytes, 16)) == cudaSuccess;
  }
  template <typename T = uint8_t>
  T* get() const {
    return static_cast<T*>(p_);
  }

 private:
  void* p_ = nullptr;
};

// A device copy of the host cache and a view of it (device arrays for bases and page ids).
struct DeviceCache {
  DeviceBuffer tensor, bases, ids;
  PagedKvView view;
  uint64_t base_shift = 0;  // elements between the allocation and layer 0
  uint64_t total_elems = 0;

  bool Build(const Case& c, const HostCache& h, bool zero) {
    base_shift = c.misaligned_base ? 1 : 0;
    total_elems = h.layer_elems * c.layers;
    if (!tensor.Allocate((total_elems + base_shift) * 2)) return false;
    uint16_t* base = tensor.get<uint16_t>() + base_shift;
    if (zero) {
      if (cudaMemset(tensor.get(), 0, (total_elems + base_shift) * 2) != cudaSuccess) return false;
    } else if (cudaMemcpy(base, h.data.data(), total_elems * 2, cudaMemcpyHostToDevice) !=
               cudaSuccess) {
      return false;
    }
    std::vector<uint16_t*> layer_ptrs;
    for (uint32_t l = 0; l < c.layers; ++l) layer_ptrs.push_back(base + l * h.layer_elems);
    PagedKvViewStorage storage;
    if (c.padded) {
      const int64_t hp = h.head_pitch, H = c.heads, pt = h.page_tokens, P = h.pages;
      view = PagedKvView{};
      view.layout = KvLayout::kVllmNhd;
      view.dtype = c.dtype;
      view.num_layers = c.layers;
      view.kv_heads = c.heads;
      view.head_dim = c.dim;
      view.head_stride = hp;
      view.slot_stride = H * hp;
      view.page_stride = pt * H * hp;
      view.kv_stride = P * pt * H * hp;
      view.page_tokens = h.page_tokens;
      view.num_pages = static_cast<uint32_t>(h.page_ids.size());
      storage.layer_bases = layer_ptrs;
      storage.page_ids = h.page_ids;
    } else {
      std::vector<uint16_t*> tensors = layer_ptrs;
      if (c.layout == KvLayout::kContiguous) tensors = {base};
      const Status st = MakePagedKvView(c.layout, c.dtype, c.layers, c.heads, c.dim, h.page_tokens,
                                        h.pages, tensors, h.page_ids, view, storage);
      if (!st.ok()) {
        ADD_FAILURE() << st.ToString();
        return false;
      }
    }
    if (!bases.Allocate(sizeof(uint16_t*) * storage.layer_bases.size()) ||
        !ids.Allocate(sizeof(int32_t) * storage.page_ids.size())) {
      return false;
    }
    if (cudaMemcpy(bases.get(), storage.layer_bases.data(),
                   sizeof(uint16_t*) * storage.layer_bases.size(),
                   cudaMemcpyHostToDevice) != cudaSuccess ||
        cudaMemcpy(ids.get(), storage.page_ids.data(), sizeof(int32_t) * storage.page_ids.size(),
                   cudaMemcpyHostToDevice) != cudaSuccess) {
      return false;
    }
    view.layer_bases = bases.get<uint16_t* const>();
    view.page_ids = ids.get<const int32_t>();
    view.num_pages = static_cast<uint32_t>(storage.page_ids.size());
    return true;
  }

  std::vector<uint16_t> Download() const {
    std::vector<uint16_t> out(total_elems);
    EXPECT_EQ(cudaMemcpy(out.data(), tensor.get<uint16_t>() + base_shift, total_elems * 2,
                         cudaMemcpyDeviceToHost),
              cudaSuccess);
    return out;
  }
};

inline BlockDescriptor DescriptorOf(const Case& c) {
  BlockDescriptor d;
  d.ns_digest.fill(0x11);
  d.key.fill(0x22);
  d.layout.num_layers = c.layers;
  d.layout.kv_heads = c.heads;
  d.layout.head_dim = c.dim;
  d.layout.block_tokens = c.block_tokens;
  d.layout.dtype = c.dtype;
  d.layout.sink_tokens = c.sink;
  d.layers = c.codecs;
  return d;
}

// Where in a payload byte `offset` lies, for failure messages.
inline std::string PayloadPlace(const BlockGeometry& g, uint64_t offset) {
  for (size_t l = 0; l < g.layer_offsets.size(); ++l) {
    const uint64_t k0 = g.layer_offsets[l];
    const uint64_t v0 = k0 + g.k_sections[l].padded_bytes;
    const uint64_t end = v0 + g.v_sections[l].padded_bytes;
    if (offset < k0 || offset >= end) continue;
    const bool is_v = offset >= v0;
    const SectionLayout& s = is_v ? g.v_sections[l] : g.k_sections[l];
    const uint64_t rel = offset - (is_v ? v0 : k0);
    const char* part = rel < s.sink_bytes                                  ? "sink"
                       : rel < s.sink_bytes + s.code_bytes                 ? "codes"
                       : rel < s.sink_bytes + s.code_bytes + s.param_bytes ? "params"
                                                                           : "padding";
    return "layer " + std::to_string(l) + (is_v ? " V " : " K ") + part + " +" +
           std::to_string(rel);
  }
  return "outside the payload";
}

// Runs one case; failures are reported through gtest with the case description.
inline void RunCase(const Case& c) {
  SCOPED_TRACE(Describe(c));
  const BlockDescriptor desc = DescriptorOf(c);
  Result<BlockGeometry> geometry_or = ComputeGeometry(desc);
  ASSERT_TRUE(geometry_or.ok()) << geometry_or.status().ToString();
  const BlockGeometry& g = *geometry_or;
  const HostCache host = BuildHostCache(c);

  // Reference objects.
  std::vector<std::vector<uint8_t>> objects;
  for (uint32_t b = 0; b < c.num_blocks; ++b) {
    Result<std::vector<uint8_t>> obj = ReferenceEncodeBlock(desc, GatherBlock(c, host, b));
    ASSERT_TRUE(obj.ok()) << obj.status().ToString();
    objects.push_back(std::move(obj).value());
  }

  const uint64_t payload = g.payload_bytes;
  const uint64_t stride = c.misaligned_payloads ? payload + 20 : payload + 32;
  const uint64_t shift = c.misaligned_payloads ? 4 : 0;
  const uint64_t buffer_bytes = shift + stride * c.num_blocks;

  // Encode.
  {
    DeviceCache dc;
    ASSERT_TRUE(dc.Build(c, host, false));
    DeviceBuffer out;
    ASSERT_TRUE(out.Allocate(buffer_bytes));
    ASSERT_EQ(cudaMemset(out.get(), 0xA5, buffer_bytes), cudaSuccess);
    const Status st = CudaEncodeBlocks(dc.view, c.first_token, c.num_blocks, desc,
                                       out.get() + shift, stride, nullptr);
    ASSERT_TRUE(st.ok()) << st.ToString();
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    std::vector<uint8_t> got(buffer_bytes);
    ASSERT_EQ(cudaMemcpy(got.data(), out.get(), buffer_bytes, cudaMemcpyDeviceToHost), cudaSuccess);
    for (uint64_t i = 0; i < shift; ++i) ASSERT_EQ(got[i], 0xA5) << "byte before the payloads";
    for (uint32_t b = 0; b < c.num_blocks; ++b) {
      const uint8_t* dev = got.data() + shift + b * stride;
      const uint8_t* ref = objects[b].data() + g.header_bytes;
      if (std::memcmp(dev, ref, payload) != 0) {
        uint64_t i = 0;
        while (dev[i] == ref[i]) ++i;
        uint64_t mismatches = 0;
        for (uint64_t k = 0; k < payload; ++k) mismatches += dev[k] != ref[k];
        ADD_FAILURE() << "block " << b << ": " << mismatches << " payload bytes differ; first at "
                      << i << " (" << PayloadPlace(g, i) << "): device 0x" << std::hex
                      << int{dev[i]} << ", reference 0x" << int{ref[i]};
        return;
      }
      for (uint64_t i = payload; i < stride; ++i) {
        ASSERT_EQ(dev[i], 0xA5) << "block " << b << " wrote past its payload at " << i;
      }
    }
  }

  // Decode the reference payloads into a zeroed cache.
  {
    DeviceCache dc;
    ASSERT_TRUE(dc.Build(c, host, true));
    std::vector<uint8_t> staged(buffer_bytes, 0x5A);
    for (uint32_t b = 0; b < c.num_blocks; ++b) {
      std::memcpy(staged.data() + shift + b * stride, objects[b].data() + g.header_bytes, payload);
    }
    DeviceBuffer in;
    ASSERT_TRUE(in.Allocate(buffer_bytes));
    ASSERT_EQ(cudaMemcpy(in.get(), staged.data(), buffer_bytes, cudaMemcpyHostToDevice),
              cudaSuccess);
    const Status st = CudaDecodeBlocks(in.get() + shift, stride, c.num_blocks, desc, dc.view,
                                       c.first_token, nullptr);
    ASSERT_TRUE(st.ok()) << st.ToString();
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const std::vector<uint16_t> got = dc.Download();

    std::vector<uint16_t> want(host.data.size(), 0);
    for (uint32_t b = 0; b < c.num_blocks; ++b) {
      Result<BlockView> view = ParseBlockObject(objects[b]);
      ASSERT_TRUE(view.ok()) << view.status().ToString();
      std::vector<uint16_t> block(uint64_t{c.layers} * 2 * c.block_tokens * c.heads * c.dim);
      ASSERT_TRUE(ReferenceDecodeBlock(*view, block).ok());
      ScatterBlock(c, host, b, block, want);
    }
    ASSERT_EQ(got.size(), want.size());
    if (got != want) {
      uint64_t first = 0, mismatches = 0;
      for (uint64_t i = got.size(); i-- > 0;) {
        if (got[i] != want[i]) {
          first = i;
          ++mismatches;
        }
      }
      const uint64_t layer = first / host.layer_elems;
      ADD_FAILURE() << mismatches << " cache elements differ after decode; first at element "
                    << first << " (layer " << layer << ", offset " << first % host.layer_elems
                    << "): device 0x" << std::hex << got[first] << ", expected 0x" << want[first];
    }
  }
}

}  // namespace kvault::kernels::cuda_test
