// AVX2 (+ FMA, F16C) section kernels of the CPU codec; see simd_sections.h.
//
// The same lane-exact transcription of the reference as cpu_codec_avx512.cc (whose header
// comment lists the rules), 8 fp32 lanes wide. head_dim is a multiple of 8, so a vector is a
// whole number of chunks. Scratch buffers are padded and accessed with full-width loads and
// stores. Rounding to integers uses vcvtps2dq in the current MXCSR mode, round-to-nearest-even
// by default, which is also what the reference's nearbyintf uses. The primitives are in
// avx2_primitives.inc; every helper lives in an anonymous namespace (see simd_sections.h for
// why).

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "simd/simd_sections.h"

#define KV_INLINE inline __attribute__((always_inline))

namespace kvault::kernels::simd {
namespace {

#include "simd/avx2_primitives.inc"
#include "simd/section_common.inc"

// Tokens ahead that the kernels prefetch: the paged source is gathered vector by vector, which
// the hardware prefetchers follow poorly.
constexpr uint32_t kPrefetchTokens = 2;

// ---- encode ----------------------------------------------------------------------------------

template <bool kFp8, bool kExact>
KV_INLINE void QuantizeSymmetric(const float* x, uint32_t dim, float s, float r, uint8_t* out) {
  const __m256 scale = _mm256_set1_ps(s), rcp = _mm256_set1_ps(r);
  for (uint32_t c = 0; c < dim; c += 8) {
    const __m256 y = _mm256_loadu_ps(x + c);
    __m256i code;
    if constexpr (kFp8) {
      code = FloatToE4M3(kExact ? _mm256_div_ps(y, scale) : Quotient(y, scale, rcp), y);
    } else {
      code = _mm256_and_si256(
          RoundClampInt8(kExact ? _mm256_div_ps(y, scale) : Quotient(y, scale, rcp)), Set32(0xFF));
    }
    _mm_storel_epi64(reinterpret_cast<__m128i*>(out + c), Narrow8(code));
  }
}

// fp8/int8, heads batched as in the AVX-512 kernel.
template <bool kFp8, bool kBf16, bool kRot>
void EncodeSymmetric(const SectionJob& j) {
  const uint32_t dim = j.dim, stride = j.vec_stride;
  const __m256 divisor = _mm256_set1_ps(kFp8 ? 448.0f : 127.0f);
  const __m256 abs_mask = _mm256_castsi256_ps(Set32(0x7FFFFFFF));
  for (uint32_t t = j.sink; t < j.tokens; ++t) {
    const uint64_t v0 = static_cast<uint64_t>(t - j.sink) * j.heads;
    for (uint32_t h0 = 0; h0 < j.heads; h0 += kHeadBatch) {
      const uint32_t nb = j.heads - h0 < kHeadBatch ? j.heads - h0 : kHeadBatch;
      for (uint32_t b = 0; b < nb; ++b) {
        float* x = j.vec + b * stride;
        if (t + kPrefetchTokens < j.tokens) Prefetch(At(j, t + kPrefetchTokens, h0 + b), dim);
        LoadVector<kBf16, kRot>(j, At(j, t, h0 + b), x);
        __m256 amax = _mm256_setzero_ps();
        for (uint32_t c = 0; c < dim; c += 8) {
          amax = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + c), abs_mask), amax);
        }
        j.mn[b] = HMax(amax);
      }
      // Scales fp16(amax / divisor) (amax is never NaN), 0 -> 1.0; 8 heads at a time.
      uint16_t s16[kHeadBatch];
      for (uint32_t b = 0; b < nb; b += 8) {
        __m128i h = _mm256_cvtps_ph(_mm256_div_ps(_mm256_loadu_ps(j.mn + b), divisor),
                                    _MM_FROUND_TO_NEAREST_INT);
        __m256 sf = _mm256_cvtph_ps(h);
        const __m256 zero = _mm256_cmp_ps(sf, _mm256_setzero_ps(), _CMP_EQ_OQ);
        const __m256i zero32 = _mm256_castps_si256(zero);
        h = _mm_blendv_epi8(
            h, _mm_set1_epi16(0x3C00),
            _mm_packs_epi32(_mm256_castsi256_si128(zero32), _mm256_extracti128_si256(zero32, 1)));
        _mm256_storeu_ps(j.sf + b, _mm256_blendv_ps(sf, _mm256_set1_ps(1.0f), zero));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(s16 + b), h);
      }
      std::memcpy(j.params_out + 2 * (v0 + h0), s16, 2 * nb);
      for (uint32_t b = 0; b < nb; ++b) {
        uint8_t* out = j.codes_out + (v0 + h0 + b) * dim;
        const float* x = j.vec + b * stride;
        if (__builtin_isinf(j.sf[b])) {  // see the AVX-512 kernel
          QuantizeSymmetric<kFp8, true>(x, dim, j.sf[b], 0.0f, out);
        } else {
          QuantizeSymmetric<kFp8, false>(x, dim, j.sf[b], 1.0f / j.sf[b], out);
        }
      }
    }
  }
}

template <int kBits, bool kBf16, bool kRot>
void EncodeGroupedKeys(const SectionJob& j) {
  const uint32_t dim = j.dim, g = j.group;
  const uint32_t quantized = j.tokens - j.sink;
  const uint64_t groups = (quantized + uint64_t{g} - 1) / g;
  const __m256 levels = _mm256_set1_ps(static_cast<float>((1 << kBits) - 1));
  const __m256 zero = _mm256_setzero_ps();
  for (uint32_t h = 0; h < j.heads; ++h) {
    for (uint64_t jg = 0; jg < groups; ++jg) {
      const uint32_t t0 = static_cast<uint32_t>(jg * g);
      const uint32_t n = quantized - t0 < g ? quantized - t0 : g;
      const bool buffered = kRot && n <= j.key_buf_tokens;
      for (uint32_t c = 0; c < dim; c += 8) {
        _mm256_storeu_ps(j.mn + c, _mm256_set1_ps(__builtin_inff()));
        _mm256_storeu_ps(j.mx + c, _mm256_set1_ps(-__builtin_inff()));
      }
      for (uint32_t i = 0; i < n; ++i) {
        const uint16_t* src = At(j, j.sink + t0 + i, h);
        if (i + kPrefetchTokens < n) Prefetch(At(j, j.sink + t0 + i + kPrefetchTokens, h), dim);
        float* x = buffered ? j.key_buf + uint64_t{i} * j.vec_stride : j.vec;
        if constexpr (kRot) LoadVector<kBf16, true>(j, src, x);
        for (uint32_t c = 0; c < dim; c += 8) {
          const __m256 y = kRot ? _mm256_loadu_ps(x + c) : LoadSrc<kBf16>(src + c);
          _mm256_storeu_ps(j.mn + c, _mm256_min_ps(y, _mm256_loadu_ps(j.mn + c)));
          _mm256_storeu_ps(j.mx + c, _mm256_max_ps(y, _mm256_loadu_ps(j.mx + c)));
        }
      }
      uint8_t* params = j.params_out + 4 * ((h * groups + jg) * dim);
      __m256 inf_zero = _mm256_setzero_ps();
      for (uint32_t c = 0; c < dim; c += 8) {
        __m256 mn = _mm256_loadu_ps(j.mn + c), mx = _mm256_loadu_ps(j.mx + c);
        const __m256 all_nan = _mm256_cmp_ps(mn, mx, _CMP_GT_OQ);
        mn = _mm256_add_ps(_mm256_andnot_ps(all_nan, mn), zero);  // also -0 -> +0
        mx = _mm256_add_ps(_mm256_andnot_ps(all_nan, mx), zero);
        const __m128i scale = Narrow<false>(_mm256_div_ps(_mm256_sub_ps(mx, mn), levels));
        const __m128i zp = Narrow<false>(mn);
        const __m256 sf = _mm256_cvtph_ps(scale), zf = _mm256_cvtph_ps(zp);
        _mm256_storeu_ps(j.sf + c, sf);
        _mm256_storeu_ps(j.zf + c, zf);
        _mm256_storeu_ps(j.mx + c, _mm256_div_ps(_mm256_set1_ps(1.0f), sf));  // reciprocals
        inf_zero = _mm256_or_ps(inf_zero, IsInf(zf));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(params + 4 * c), _mm_unpacklo_epi16(scale, zp));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(params + 4 * c + 16),
                         _mm_unpackhi_epi16(scale, zp));
      }
      const bool exact = _mm256_movemask_ps(inf_zero) != 0;
      for (uint32_t i = 0; i < n; ++i) {
        const uint16_t* src = At(j, j.sink + t0 + i, h);
        const float* x = j.vec;
        if (buffered) {
          x = j.key_buf + uint64_t{i} * j.vec_stride;
        } else if (kRot) {
          LoadVector<kBf16, true>(j, src, j.vec);
        }
        uint8_t* out = j.codes_out + (uint64_t{t0 + i} * j.heads + h) * dim * kBits / 8;
        for (uint32_t c = 0; c < dim; c += 8) {
          const __m256 y = kRot ? _mm256_loadu_ps(x + c) : LoadSrc<kBf16>(src + c);
          const __m256 sf = _mm256_loadu_ps(j.sf + c), zf = _mm256_loadu_ps(j.zf + c);
          const __m256 rf = _mm256_loadu_ps(j.mx + c);
          StorePacked<kBits>(out + c * kBits / 8, exact ? GroupCodes<kBits, true>(y, sf, zf, rf)
                                                        : GroupCodes<kBits, false>(y, sf, zf, rf));
        }
      }
    }
  }
}

template <int kBits, bool kBf16, bool kRot>
void EncodeGroupedValues(const SectionJob& j) {
  const uint32_t dim = j.dim, g = j.group, stride = j.vec_stride;
  const uint32_t groups = (dim + g - 1) / g;
  const __m256 levels = _mm256_set1_ps(static_cast<float>((1 << kBits) - 1));
  const __m256 zero = _mm256_setzero_ps();
  const bool aligned = g % 8 == 0;  // chunks never straddle groups: pack codes directly
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (uint32_t t = j.sink; t < j.tokens; ++t) {
    const uint64_t v0 = static_cast<uint64_t>(t - j.sink) * j.heads;
    for (uint32_t h0 = 0; h0 < j.heads; h0 += kHeadBatch) {
      const uint32_t nb = j.heads - h0 < kHeadBatch ? j.heads - h0 : kHeadBatch;
      for (uint32_t b = 0; b < nb; ++b) {
        float* x = j.vec + b * stride;  // readable up to dim + 8
        if (t + kPrefetchTokens < j.tokens) Prefetch(At(j, t + kPrefetchTokens, h0 + b), dim);
        LoadVector<kBf16, kRot>(j, At(j, t, h0 + b), x);
        for (uint32_t jg = 0; jg < groups; ++jg) {
          const uint32_t c0 = jg * g, end = dim - c0 < g ? dim : c0 + g;
          __m256 lo = _mm256_set1_ps(__builtin_inff()), hi = _mm256_set1_ps(-__builtin_inff());
          for (uint32_t c = c0; c < end; c += 8) {
            const __m256 y = _mm256_loadu_ps(x + c);
            const __m256 mn = _mm256_min_ps(y, lo), mx = _mm256_max_ps(y, hi);
            if (end - c >= 8) {
              lo = mn;
              hi = mx;
            } else {  // lanes past the group keep their running value
              const __m256 in = _mm256_castsi256_ps(
                  _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(end - c)), iota));
              lo = _mm256_blendv_ps(lo, mn, in);
              hi = _mm256_blendv_ps(hi, mx, in);
            }
          }
          j.mn[b * groups + jg] = HMin(lo);
          j.mx[b * groups + jg] = HMax(hi);
        }
      }
      // Scales and zero points, 8 (head, group) pairs at a time; the arrays are padded, and
      // pairs past np are computed but not stored.
      const uint32_t np = nb * groups;
      uint8_t* params = j.params_out + 4 * (v0 + h0) * groups;
      for (uint32_t p = 0; p < np; p += 8) {
        __m256 mn = _mm256_loadu_ps(j.mn + p), mx = _mm256_loadu_ps(j.mx + p);
        const __m256 all_nan = _mm256_cmp_ps(mn, mx, _CMP_GT_OQ);
        mn = _mm256_add_ps(_mm256_andnot_ps(all_nan, mn), zero);  // also -0 -> +0
        mx = _mm256_add_ps(_mm256_andnot_ps(all_nan, mx), zero);
        const __m128i scale = Narrow<false>(_mm256_div_ps(_mm256_sub_ps(mx, mn), levels));
        const __m128i zp = Narrow<false>(mn);
        const __m256 sf = _mm256_cvtph_ps(scale);
        _mm256_storeu_ps(j.sf + p, sf);
        _mm256_storeu_ps(j.zf + p, _mm256_cvtph_ps(zp));
        _mm256_storeu_ps(j.mn + p, _mm256_div_ps(_mm256_set1_ps(1.0f), sf));  // reciprocals
        alignas(32) uint8_t pairs[32];
        _mm_store_si128(reinterpret_cast<__m128i*>(pairs), _mm_unpacklo_epi16(scale, zp));
        _mm_store_si128(reinterpret_cast<__m128i*>(pairs + 16), _mm_unpackhi_epi16(scale, zp));
        if (np - p >= 8) {
          std::memcpy(params + 4 * p, pairs, 32);
        } else {
          std::memcpy(params + 4 * p, pairs, 4 * (np - p));
        }
      }
      for (uint32_t b = 0; b < nb; ++b) {
        const float* x = j.vec + b * stride;
        uint8_t* out = j.codes_out + (v0 + h0 + b) * dim * kBits / 8;
        for (uint32_t jg = 0; jg < groups; ++jg) {
          const uint32_t c0 = jg * g, end = dim - c0 < g ? dim : c0 + g;
          const __m256 sf = _mm256_set1_ps(j.sf[b * groups + jg]);
          const __m256 zf = _mm256_set1_ps(j.zf[b * groups + jg]);
          const __m256 rf = _mm256_set1_ps(j.mn[b * groups + jg]);
          const bool exact = __builtin_isinf(j.zf[b * groups + jg]);
          for (uint32_t c = c0; c < end; c += 8) {
            const __m256 y = _mm256_loadu_ps(x + c);
            const __m256i code = exact ? GroupCodes<kBits, true>(y, sf, zf, rf)
                                       : GroupCodes<kBits, false>(y, sf, zf, rf);
            if (aligned) {
              StorePacked<kBits>(out + c * kBits / 8, code);
            } else {  // spills past `end` are rewritten by the next group or land in padding
              _mm_storel_epi64(reinterpret_cast<__m128i*>(j.codes8 + c), Narrow8(code));
            }
          }
        }
        if (!aligned) PackCodeBytes<kBits>(j.codes8, dim, out);
      }
    }
  }
}

// ---- decode ----------------------------------------------------------------------------------

// Decoded chunk y of channels [c, c + 8): into the scratch vector x when kRot (the vector is
// then rotated back by RotateInverseAndStore), else straight into the destination.
template <bool kBf16, bool kRot>
KV_INLINE void StoreDecoded(float* x, uint16_t* dst, uint32_t c, __m256 y) {
  if constexpr (kRot) {
    _mm256_storeu_ps(x + c, y);
  } else {
    StoreDst<kBf16>(dst + c, y);
  }
}

template <bool kFp8, bool kBf16, bool kRot>
void DecodeSymmetric(const SectionJob& j) {
  const uint32_t dim = j.dim;
  float* x = j.vec;
  for (uint32_t t = j.sink; t < j.tokens; ++t) {
    for (uint32_t h = 0; h < j.heads; ++h) {
      const uint64_t v = static_cast<uint64_t>(t - j.sink) * j.heads + h;
      const __m256 sf = _mm256_set1_ps(HalfToFloatS(LoadU16(j.params_in + 2 * v)));
      const uint8_t* in = j.codes_in + v * dim;
      uint16_t* dst = At(j, t, h);
      if (t + kPrefetchTokens < j.tokens) PrefetchForWrite(At(j, t + kPrefetchTokens, h), dim);
      for (uint32_t c = 0; c < dim; c += 8) {
        const __m256 q = kFp8 ? E4M3ToFloat(UnpackChunk<8>(in + c))
                              : _mm256_cvtepi32_ps(UnpackChunk<-8>(in + c));
        const __m256 y = _mm256_mul_ps(q, sf);
        StoreDecoded<kBf16, kRot>(x, dst, c, y);
      }
      if constexpr (kRot) RotateInverseAndStore<kBf16>(j, x, dst);
    }
  }
}

template <int kBits, bool kBf16, bool kRot>
void DecodeGroupedKeys(const SectionJob& j) {
  const uint32_t dim = j.dim, g = j.group;
  const uint32_t quantized = j.tokens - j.sink;
  const uint64_t groups = (quantized + uint64_t{g} - 1) / g;
  const uint64_t stride = j.vec_stride;
  const __m256i low16 = Set32(0xFFFF);
  float* x = j.vec;
  for (uint32_t tq = 0; tq < quantized; ++tq) {
    if (tq % g == 0) {
      const uint64_t jg = tq / g;
      for (uint32_t h = 0; h < j.heads; ++h) {
        const uint8_t* params = j.params_in + 4 * ((h * groups + jg) * dim);
        for (uint32_t c = 0; c < dim; c += 8) {
          const __m256i pair = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(params + 4 * c));
          _mm256_storeu_ps(j.sf + h * stride + c,
                           _mm256_cvtph_ps(Narrow16(_mm256_and_si256(pair, low16))));
          _mm256_storeu_ps(j.zf + h * stride + c,
                           _mm256_cvtph_ps(Narrow16(_mm256_srli_epi32(pair, 16))));
        }
      }
    }
    for (uint32_t h = 0; h < j.heads; ++h) {
      const uint8_t* in = j.codes_in + (uint64_t{tq} * j.heads + h) * dim * kBits / 8;
      uint16_t* dst = At(j, j.sink + tq, h);
      if (tq + kPrefetchTokens < quantized) {
        PrefetchForWrite(At(j, j.sink + tq + kPrefetchTokens, h), dim);
      }
      const float* sf = j.sf + h * stride;
      const float* zf = j.zf + h * stride;
      for (uint32_t c = 0; c < dim; c += 8) {
        const __m256 code = _mm256_cvtepi32_ps(UnpackChunk<kBits>(in + c * kBits / 8));
        const __m256 y = _mm256_fmadd_ps(code, _mm256_loadu_ps(sf + c), _mm256_loadu_ps(zf + c));
        StoreDecoded<kBf16, kRot>(x, dst, c, y);
      }
      if constexpr (kRot) RotateInverseAndStore<kBf16>(j, x, dst);
    }
  }
}

template <int kBits, bool kBf16, bool kRot>
void DecodeGroupedValues(const SectionJob& j) {
  const uint32_t dim = j.dim, g = j.group;
  const uint32_t groups = (dim + g - 1) / g;
  const bool aligned = g % 8 == 0;
  float* x = j.vec;
  for (uint32_t t = j.sink; t < j.tokens; ++t) {
    for (uint32_t h = 0; h < j.heads; ++h) {
      const uint64_t v = static_cast<uint64_t>(t - j.sink) * j.heads + h;
      const uint8_t* in = j.codes_in + v * dim * kBits / 8;
      const uint8_t* params = j.params_in + 4 * (v * groups);
      uint16_t* dst = At(j, t, h);
      if (t + kPrefetchTokens < j.tokens) PrefetchForWrite(At(j, t + kPrefetchTokens, h), dim);
      if (!aligned) {  // spread each group's scale and zero point over its channels
        for (uint32_t jg = 0; jg < groups; ++jg) {
          const __m256 sf = _mm256_set1_ps(HalfToFloatS(LoadU16(params + 4 * jg)));
          const __m256 zf = _mm256_set1_ps(HalfToFloatS(LoadU16(params + 4 * jg + 2)));
          const uint32_t c0 = jg * g, end = dim - c0 < g ? dim : c0 + g;
          for (uint32_t c = c0; c < end; c += 8) {  // spills are rewritten by the next group
            _mm256_storeu_ps(j.sf + c, sf);
            _mm256_storeu_ps(j.zf + c, zf);
          }
        }
      }
      __m256 sf = _mm256_setzero_ps(), zf = _mm256_setzero_ps();
      for (uint32_t c = 0; c < dim; c += 8) {
        if (!aligned) {
          sf = _mm256_loadu_ps(j.sf + c);
          zf = _mm256_loadu_ps(j.zf + c);
        } else if (c % g == 0) {
          sf = _mm256_set1_ps(HalfToFloatS(LoadU16(params + 4 * (c / g))));
          zf = _mm256_set1_ps(HalfToFloatS(LoadU16(params + 4 * (c / g) + 2)));
        }
        const __m256 code = _mm256_cvtepi32_ps(UnpackChunk<kBits>(in + c * kBits / 8));
        const __m256 y = _mm256_fmadd_ps(code, sf, zf);
        StoreDecoded<kBf16, kRot>(x, dst, c, y);
      }
      if constexpr (kRot) RotateInverseAndStore<kBf16>(j, x, dst);
    }
  }
}

}  // namespace

void EncodeSectionAvx2(const SectionJob& job) { EncodeSection(job); }

void DecodeSectionAvx2(const SectionJob& job) { DecodeSection(job); }

}  // namespace kvault::kernels::simd
