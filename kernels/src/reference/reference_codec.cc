#include "kvault/kernels/reference_codec.h"

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "float_environment.h"
#include "kvault/common/little_endian.h"
#include "kvault/kernels/numeric.h"
#include "kvault/kernels/rotation.h"

namespace kvault::kernels {
namespace {

static_assert(std::endian::native == std::endian::little, "kvault's formats assume little-endian");

constexpr uint16_t kHalfOne = 0x3C00;

struct Dims {
  uint64_t tokens, heads, dim, sink, quantized;
};

Dims DimsOf(const BlockLayout& l) {
  return {l.block_tokens, l.kv_heads, l.head_dim, l.sink_tokens,
          static_cast<uint64_t>(l.block_tokens - l.sink_tokens)};
}

void PackCodes(const std::vector<uint8_t>& codes, uint32_t bits, uint8_t* out) {
  if (bits == 8) {
    std::memcpy(out, codes.data(), codes.size());
    return;
  }
  const uint32_t per_byte = 8 / bits;
  for (size_t i = 0; i < codes.size(); i += per_byte) {
    uint8_t byte = 0;
    for (uint32_t j = 0; j < per_byte; ++j)
      byte |= static_cast<uint8_t>(codes[i + j] << (j * bits));
    out[i / per_byte] = byte;
  }
}

uint8_t UnpackCode(const uint8_t* codes, uint64_t i, uint32_t bits) {
  if (bits == 8) return codes[i];
  const uint64_t bit = i * bits;
  return static_cast<uint8_t>((codes[bit / 8] >> (bit % 8)) & ((1u << bits) - 1u));
}

// Rounds half to even, then clamps to [lo, hi]; NaN becomes 0.
int32_t RoundClamp(float v, float lo, float hi) {
  const float r = std::nearbyintf(v);
  if (r != r) return 0;
  return static_cast<int32_t>(r < lo ? lo : (r > hi ? hi : r));
}

// Symmetric 8-bit scale for amax: fp16(amax / divisor), with 0 replaced by 1.0.
uint16_t SymmetricScale(float amax, float divisor) {
  const uint16_t s = FloatToHalf(amax / divisor);
  return HalfToFloat(s) == 0.0f ? kHalfOne : s;
}

std::vector<float> ToFp32(const uint16_t* src, const Dims& d, DType dtype, bool rotate) {
  const uint64_t n = d.quantized * d.heads * d.dim;
  std::vector<float> x(n);
  for (uint64_t i = 0; i < n; ++i) x[i] = ToFloat(src[i], dtype);
  if (rotate) {
    const std::vector<float> signs = RotationSigns(static_cast<uint32_t>(d.dim));
    const float scale = RotationScale(static_cast<uint32_t>(d.dim));
    for (uint64_t v = 0; v < d.quantized * d.heads; ++v) {
      RotateForwardReference(&x[v * d.dim], static_cast<uint32_t>(d.dim), signs.data(), scale);
    }
  }
  return x;
}

void EncodeSymmetric(const std::vector<float>& x, const Dims& d, CodecId codec, uint8_t* codes_out,
                     uint8_t* params) {
  std::vector<uint8_t> codes(x.size());
  for (uint64_t v = 0; v < d.quantized * d.heads; ++v) {
    const float* y = &x[v * d.dim];
    float amax = 0.0f;
    for (uint64_t c = 0; c < d.dim; ++c) {
      const float a = std::fabs(y[c]);
      if (a > amax) amax = a;  // NaN compares false and is ignored
    }
    const uint16_t s = SymmetricScale(amax, codec == CodecId::kFp8 ? kE4M3Max : 127.0f);
    const float sf = HalfToFloat(s);
    for (uint64_t c = 0; c < d.dim; ++c) {
      if (codec == CodecId::kFp8) {
        codes[v * d.dim + c] = FloatToE4M3(y[c] / sf);
      } else {
        codes[v * d.dim + c] = static_cast<uint8_t>(RoundClamp(y[c] / sf, -127.0f, 127.0f));
      }
    }
    StoreHalf(params + 2 * v, s);
  }
  PackCodes(codes, 8, codes_out);
}

// Asymmetric b-bit quantization of the elements idx(0..n) sharing one (scale, zero).
template <typename Index>
void EncodeGroup(const std::vector<float>& x, uint64_t n, Index idx, uint32_t bits,
                 std::vector<uint8_t>& codes, uint8_t* param) {
  float mn = std::numeric_limits<float>::infinity();
  float mx = -std::numeric_limits<float>::infinity();
  for (uint64_t i = 0; i < n; ++i) {
    const float v = x[idx(i)];
    if (v < mn) mn = v;
    if (v > mx) mx = v;
  }
  if (mn > mx) mn = mx = 0.0f;  // every element NaN
  // Adding +0 turns -0 into +0, so the result does not depend on which zero a reduction meets
  // first (SIMD and GPU reductions visit elements in another order).
  mn += 0.0f;
  mx += 0.0f;
  const float levels = static_cast<float>((1u << bits) - 1u);
  const uint16_t scale = FloatToHalf((mx - mn) / levels);
  const uint16_t zero = FloatToHalf(mn);
  const float sf = HalfToFloat(scale);
  const float zf = HalfToFloat(zero);
  for (uint64_t i = 0; i < n; ++i) {
    const uint64_t j = idx(i);
    codes[j] = sf == 0.0f ? 0 : static_cast<uint8_t>(RoundClamp((x[j] - zf) / sf, 0.0f, levels));
  }
  StoreHalf(param, scale);
  StoreHalf(param + 2, zero);
}

}  // namespace

void ReferenceEncodeSection(const uint16_t* src, const SectionCodec& codec, bool is_key,
                            const BlockLayout& layout, uint8_t* out) {
  const IeeeFloatScope ieee;  // the bytes must not depend on the caller's MXCSR
  const SectionLayout sl = SectionLayoutFor(codec, is_key, layout);
  std::memset(out, 0, sl.padded_bytes);
  if (codec.codec == CodecId::kRaw) {
    std::memcpy(out, src, sl.code_bytes);
    return;
  }
  const Dims d = DimsOf(layout);
  std::memcpy(out, src, sl.sink_bytes);
  const std::vector<float> x =
      ToFp32(src + d.sink * d.heads * d.dim, d, layout.dtype, codec.rotate);
  uint8_t* codes_out = out + sl.sink_bytes;
  uint8_t* params = codes_out + sl.code_bytes;
  if (!IsGroupedCodec(codec.codec)) {
    EncodeSymmetric(x, d, codec.codec, codes_out, params);
    return;
  }
  const uint32_t bits = CodecBits(codec.codec);
  const uint64_t g = codec.group;
  std::vector<uint8_t> codes(x.size());
  if (is_key) {  // per channel over groups of g tokens; params [head][group][channel][2]
    const uint64_t groups = (d.quantized + g - 1) / g;
    for (uint64_t h = 0; h < d.heads; ++h) {
      for (uint64_t j = 0; j < groups; ++j) {
        const uint64_t t0 = j * g;
        const uint64_t n = std::min(g, d.quantized - t0);
        for (uint64_t c = 0; c < d.dim; ++c) {
          auto idx = [&](uint64_t i) { return ((t0 + i) * d.heads + h) * d.dim + c; };
          EncodeGroup(x, n, idx, bits, codes, params + 4 * ((h * groups + j) * d.dim + c));
        }
      }
    }
  } else {  // per token over groups of g channels; params [token][head][group][2]
    const uint64_t groups = (d.dim + g - 1) / g;
    for (uint64_t v = 0; v < d.quantized * d.heads; ++v) {
      for (uint64_t j = 0; j < groups; ++j) {
        const uint64_t c0 = j * g;
        const uint64_t n = std::min(g, d.dim - c0);
        auto idx = [&](uint64_t i) { return v * d.dim + c0 + i; };
        EncodeGroup(x, n, idx, bits, codes, params + 4 * (v * groups + j));
      }
    }
  }
  PackCodes(codes, bits, codes_out);
}

void ReferenceDecodeSection(const uint8_t* in, const SectionCodec& codec, bool is_key,
                            const BlockLayout& layout, uint16_t* dst) {
  const IeeeFloatScope ieee;
  const SectionLayout sl = SectionLayoutFor(codec, is_key, layout);
  if (codec.codec == CodecId::kRaw) {
    std::memcpy(dst, in, sl.code_bytes);
    return;
  }
  const Dims d = DimsOf(layout);
  std::memcpy(dst, in, sl.sink_bytes);
  const uint8_t* codes = in + sl.sink_bytes;
  const uint8_t* params = codes + sl.code_bytes;
  const uint32_t bits = CodecBits(codec.codec);
  const uint64_t n = d.quantized * d.heads * d.dim;
  std::vector<float> x(n);
  for (uint64_t i = 0; i < n; ++i) {
    const uint64_t v = i / d.dim;  // (token, head) vector
    const uint64_t c = i % d.dim;
    const uint8_t code = UnpackCode(codes, i, bits);
    switch (codec.codec) {
      case CodecId::kFp8:
        x[i] = E4M3ToFloat(code) * HalfToFloat(LoadHalf(params + 2 * v));
        break;
      case CodecId::kInt8:
        x[i] =
            static_cast<float>(static_cast<int8_t>(code)) * HalfToFloat(LoadHalf(params + 2 * v));
        break;
      default: {
        uint64_t p;
        if (is_key) {
          const uint64_t groups = (d.quantized + codec.group - 1) / codec.group;
          const uint64_t t = v / d.heads, h = v % d.heads;
          p = (h * groups + t / codec.group) * d.dim + c;
        } else {
          const uint64_t groups = (d.dim + codec.group - 1) / codec.group;
          p = v * groups + c / codec.group;
        }
        const float scale = HalfToFloat(LoadHalf(params + 4 * p));
        const float zero = HalfToFloat(LoadHalf(params + 4 * p + 2));
        x[i] = std::fmaf(static_cast<float>(code), scale, zero);
      }
    }
  }
  if (codec.rotate) {
    const std::vector<float> signs = RotationSigns(static_cast<uint32_t>(d.dim));
    const float scale = RotationScale(static_cast<uint32_t>(d.dim));
    for (uint64_t v = 0; v < d.quantized * d.heads; ++v) {
      RotateInverseReference(&x[v * d.dim], static_cast<uint32_t>(d.dim), signs.data(), scale);
    }
  }
  uint16_t* out = dst + d.sink * d.heads * d.dim;
  for (uint64_t i = 0; i < n; ++i) out[i] = FromFloat(x[i], layout.dtype);
}

Result<std::vector<uint8_t>> ReferenceEncodeBlock(const BlockDescriptor& descriptor,
                                                  std::span<const uint16_t> src) {
  const IeeeFloatScope ieee;
  KVAULT_ASSIGN_OR_RETURN(BlockGeometry g, ComputeGeometry(descriptor));
  const BlockLayout& l = descriptor.layout;
  const uint64_t section_elems = uint64_t{l.block_tokens} * l.kv_heads * l.head_dim;
  if (src.size() != section_elems * 2 * l.num_layers) {
    return Status::InvalidArgument("block source holds " + std::to_string(src.size()) +
                                   " elements, layout needs " +
                                   std::to_string(section_elems * 2 * l.num_layers));
  }
  std::vector<uint8_t> object(g.total_bytes());
  WriteBlockHeader(descriptor, g, object);
  uint8_t* payload = object.data() + g.header_bytes;
  for (uint32_t layer = 0; layer < l.num_layers; ++layer) {
    const uint16_t* k = src.data() + (2 * layer) * section_elems;
    uint8_t* out = payload + g.layer_offsets[layer];
    ReferenceEncodeSection(k, descriptor.layers[layer].k, true, l, out);
    ReferenceEncodeSection(k + section_elems, descriptor.layers[layer].v, false, l,
                           out + g.k_sections[layer].padded_bytes);
  }
  SealBlockObject(object);
  return object;
}

Status ReferenceDecodeBlock(const BlockView& block, std::span<uint16_t> dst) {
  const IeeeFloatScope ieee;
  const BlockLayout& l = block.descriptor.layout;
  const uint64_t section_elems = uint64_t{l.block_tokens} * l.kv_heads * l.head_dim;
  if (dst.size() != section_elems * 2 * l.num_layers) {
    return Status::InvalidArgument("decode destination holds " + std::to_string(dst.size()) +
                                   " elements, block needs " +
                                   std::to_string(section_elems * 2 * l.num_layers));
  }
  for (uint32_t layer = 0; layer < l.num_layers; ++layer) {
    uint16_t* k = dst.data() + (2 * layer) * section_elems;
    ReferenceDecodeSection(block.Section(layer, 0).data(), block.descriptor.layers[layer].k, true,
                           l, k);
    ReferenceDecodeSection(block.Section(layer, 1).data(), block.descriptor.layers[layer].v, false,
                           l, k + section_elems);
  }
  return Status::Ok();
}

}  // namespace kvault::kernels
