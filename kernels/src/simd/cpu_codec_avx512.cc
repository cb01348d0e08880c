// AVX-512 (F, BW, VL, DQ) section kernels of the CPU codec; see simd_sections.h.
//
// Every lane performs exactly the fp32 operations of the reference (reference_codec.cc) on the
// same operands, so results are bit-identical:
//   - fp16 -> fp32 with vcvtph2ps and bf16 -> fp32 by a shift (both exact);
//   - fp32 -> fp16 with vcvtps2ph round-to-nearest-even, fp32 -> bf16 by the integer RNE of
//     FloatToBf16; NaN lanes are then replaced by the canonical 0x7FFF;
//   - quantization divides by the stored fp16 scale with a correctly rounded quotient (vdivps,
//     or the FMA-corrected reciprocal of Quotient, which gives the same bits where it is used;
//     fp8 fast-path codes start from x * (1 / s) and take the exact quotient wherever that could
//     change a code, see Codes64), rounds to nearest-even (vcvtps2dq with embedded rounding;
//     clamping to the integer bounds first gives the same result as clamping after), and maps NaN
//     to code 0 (E4M3: the algorithm of FloatToE4M3);
//   - max/min reductions skip NaN the way `if (v > m) m = v` does: vmaxps/vminps return their
//     second operand when either is NaN, so the running value is always passed second;
//   - int4/int2 decode uses vfmadd exactly where the reference calls fmaf;
//   - the Hadamard butterflies are the reference's a + b / a - b on the same operands, one span
//     after the other in ascending order, with the same sign and scale multiplies.
//
// head_dim is a multiple of 8, so a vector is a run of 16-lane chunks plus at most one 8-lane
// tail. Scratch buffers are padded to whole chunks and always accessed with full-width loads and
// stores (masked stores would defeat store-to-load forwarding); lanes past head_dim hold values
// that are never written out. Every helper lives in an anonymous namespace (see simd_sections.h).

// GCC 12 reports its own _mm512_undefined_* placeholders inside the intrinsic headers as
// "maybe uninitialized" (GCC bug 105593); nothing in this file reads an uninitialized value.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "simd/simd_sections.h"

#define KV_INLINE inline __attribute__((always_inline))

namespace kvault::kernels::simd {
namespace {

#include "simd/avx512_primitives.inc"
#include "simd/section_common.inc"

// Tokens ahead that the kernels prefetch: the paged source is gathered vector by vector, which
// the hardware prefetchers follow poorly.
constexpr uint32_t kPrefetchTokens = 2;

// ---- encode ----------------------------------------------------------------------------------

// Codes of one fp8/int8 vector x (padded) with scale s (r = 1 / s) into out.
template <bool kFp8, bool kExact>
KV_INLINE void QuantizeSymmetric(const float* x, uint32_t dim, float s, float r, uint8_t* out) {
  const __m512 scale = _mm512_set1_ps(s), rcp = _mm512_set1_ps(r);
  for (uint32_t c = 0; c < dim; c += 16) {
    const __m512 y = _mm512_loadu_ps(x + c);
    __m512i code;
    if constexpr (kFp8) {
      code = FloatToE4M3(kExact ? _mm512_div_ps(y, scale) : Quotient(y, scale, rcp), y);
    } else {
      code = RoundClampInt8(kExact ? _mm512_div_ps(y, scale) : Quotient(y, scale, rcp));
    }
    const __m128i bytes = _mm512_cvtepi32_epi8(code);
    if (dim - c < 16) {
      _mm_storel_epi64(reinterpret_cast<__m128i*>(out + c), bytes);
    } else {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + c), bytes);
    }
  }
}

// ---- fp8/int8 fast path ---------------------------------------------------------------------
//
// A vector whose elements are all finite, with a finite scale, is encoded 64 elements at a time
// by Codes64 (avx512_primitives.inc). NaN never reaches this path (no NaN element, finite scale,
// so the quotients are finite). A group of 64 that Codes64 cannot settle (E4M3 quotients near a
// tie point or below 2^-6) is redone with the exact Quotient and the general FloatToE4M3.

// Chunk c (a whole 16 lanes) of the vector: from the source, or from the rotated scratch.
template <bool kBf16, bool kRot>
KV_INLINE __m512 LoadChunk(const uint16_t* src, const float* x, uint32_t c) {
  if constexpr (kRot) {
    return _mm512_loadu_ps(x + c);
  } else {
    return Widen<kBf16>(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + c)));
  }
}

// Codes of one vector whose elements are finite and whose scale s (r = 1 / s) is finite.
template <bool kFp8, bool kBf16, bool kRot>
KV_INLINE void QuantizeFast(const uint16_t* src, const float* x, uint32_t dim, float s, float r,
                            const FastConstants& k, uint8_t* out) {
  const __m512 scale = _mm512_set1_ps(s), rcp = _mm512_set1_ps(r);
  uint32_t c = 0;
  for (; c + 64 <= dim; c += 64) {
    const __m512 y0 = LoadChunk<kBf16, kRot>(src, x, c);
    const __m512 y1 = LoadChunk<kBf16, kRot>(src, x, c + 16);
    const __m512 y2 = LoadChunk<kBf16, kRot>(src, x, c + 32);
    const __m512 y3 = LoadChunk<kBf16, kRot>(src, x, c + 48);
    __m512i codes;
    const bool exact = Codes64<kFp8>(y0, y1, y2, y3, scale, rcp, k, codes);
    _mm512_storeu_si512(out + c, codes);
    if (!exact) {  // rare: redo the group with the exact quotient
      for (uint32_t e = c; e < c + 64; e += 16) {
        const __m512 y = LoadChunk<kBf16, kRot>(src, x, e);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + e),
                         _mm512_cvtepi32_epi8(FloatToE4M3(Quotient(y, scale, rcp), y)));
      }
    }
  }
  for (; c < dim; c += 16) {  // remainder chunks: the general per-chunk code
    const bool tail = dim - c < 16;
    const __m512 y = kRot ? _mm512_loadu_ps(x + c) : LoadSrc<kBf16>(src + c, tail);
    const __m512 q = Quotient(y, scale, rcp);
    const __m128i bytes = _mm512_cvtepi32_epi8(kFp8 ? FloatToE4M3(q, y) : RoundClampInt8(q));
    if (tail) {
      _mm_storel_epi64(reinterpret_cast<__m128i*>(out + c), bytes);
    } else {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + c), bytes);
    }
  }
}

// fp8/int8: per (token, head) scale fp16(amax / 448 or 127), 0 -> 1.0. The heads of a token are
// done in batches: load and reduce every vector, compute the batch's scales in one vector, then
// quantize, so the reduction -> scale -> quantize latency of one vector overlaps the others.
// Unrotated, amax is an integer max of the 16-bit magnitude patterns (exact for non-NaN values),
// reduced for the whole batch at once; rotated, of the fp32 patterns. A vector holding a NaN
// takes the NaN-skipping fp32 reduction and the general quantizer.
template <bool kFp8, bool kBf16, bool kRot>
void EncodeSymmetric(const SectionJob& j) {
  const uint32_t dim = j.dim, stride = j.vec_stride;
  const __m512 divisor = _mm512_set1_ps(kFp8 ? 448.0f : 127.0f);
  const FastConstants k = MakeFastConstants();
  __m512i m16[kHeadBatch];
  for (uint32_t t = j.sink; t < j.tokens; ++t) {
    const uint64_t v0 = static_cast<uint64_t>(t - j.sink) * j.heads;
    for (uint32_t h0 = 0; h0 < j.heads; h0 += kHeadBatch) {
      const uint32_t nb = j.heads - h0 < kHeadBatch ? j.heads - h0 : kHeadBatch;
      const __mmask16 m = Mask16(nb);
      __m512 amax;
      __mmask16 nan;
      if constexpr (kRot) {
        for (uint32_t b = 0; b < nb; ++b) {
          float* x = j.vec + b * stride;
          if (t + kPrefetchTokens < j.tokens) Prefetch(At(j, t + kPrefetchTokens, h0 + b), dim);
          LoadVector<kBf16, true>(j, At(j, t, h0 + b), x);
          __m512i mx = _mm512_setzero_si512();  // lanes past dim hold 0
          for (uint32_t c = 0; c < dim; c += 16) {
            mx = _mm512_max_epu32(mx,
                                  _mm512_and_si512(_mm512_loadu_si512(x + c), Set32(0x7FFFFFFF)));
          }
          const uint32_t bits = _mm512_reduce_max_epu32(mx);
          std::memcpy(j.mn + b, &bits, 4);
        }
        const __m512i bits = _mm512_maskz_loadu_epi32(m, j.mn);
        nan = _mm512_cmpgt_epu32_mask(bits, Set32(0x7F800000));
        amax = _mm512_castsi512_ps(bits);
      } else {
        for (uint32_t b = 0; b < nb; ++b) {
          if (t + kPrefetchTokens < j.tokens) Prefetch(At(j, t + kPrefetchTokens, h0 + b), dim);
          m16[b] = MaxMagnitude16(At(j, t, h0 + b), dim);
        }
        for (uint32_t b = nb; b < (nb + 7) / 8 * 8; ++b) m16[b] = _mm512_setzero_si512();
        __m256i bits = _mm256_zextsi128_si256(ReduceMax8(m16));
        if (nb > 8) bits = _mm256_inserti128_si256(bits, ReduceMax8(m16 + 8), 1);
        nan = _mm256_cmpgt_epu16_mask(bits, _mm256_set1_epi16(kBf16 ? 0x7F80 : 0x7C00));
        amax = kBf16 ? _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bits), 16))
                     : _mm512_cvtph_ps(bits);
      }
      if (nan != 0) {  // NaN-skipping fp32 reduction of those vectors
        _mm512_storeu_ps(j.mn, amax);
        for (uint32_t b = 0; b < nb; ++b) {
          if (((nan >> b) & 1) == 0) continue;
          float* x = j.vec + b * stride;
          if constexpr (!kRot) LoadVector<kBf16, false>(j, At(j, t, h0 + b), x);
          __m512 am = _mm512_setzero_ps();
          for (uint32_t c = 0; c < dim; c += 16) {
            am = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + c)), am);  // NaN keeps amax
          }
          j.mn[b] = _mm512_reduce_max_ps(am);
        }
        amax = _mm512_loadu_ps(j.mn);
      }
      // amax is never NaN, so fp16(amax / divisor) needs no NaN fix-up.
      __m256i s16 = _mm512_cvtps_ph(_mm512_div_ps(_mm512_maskz_mov_ps(m, amax), divisor), kRne);
      __m512 sf = _mm512_cvtph_ps(s16);
      const __mmask16 zero = _mm512_cmp_ps_mask(sf, _mm512_setzero_ps(), _CMP_EQ_OQ);
      s16 = _mm256_mask_mov_epi16(s16, zero, _mm256_set1_epi16(0x3C00));
      sf = _mm512_mask_mov_ps(sf, zero, _mm512_set1_ps(1.0f));
      // s is finite unless amax / divisor overflowed fp16; then x may be Inf (Quotient's
      // precondition fails), so divide. Otherwise |x| <= amax bounds |x / s| by ~2 * divisor.
      const __mmask16 inf = _mm512_fpclass_ps_mask(sf, 0x18);  // +-Inf
      _mm512_storeu_ps(j.sf, sf);
      _mm512_storeu_ps(j.zf, _mm512_div_ps(_mm512_set1_ps(1.0f), sf));  // reciprocals
      _mm256_mask_storeu_epi16(j.params_out + 2 * (v0 + h0), m, s16);
      for (uint32_t b = 0; b < nb; ++b) {
        uint8_t* out = j.codes_out + (v0 + h0 + b) * dim;
        float* x = j.vec + b * stride;
        const uint16_t* src = At(j, t, h0 + b);
        if (((inf >> b) & 1) != 0) {
          if (!kRot && ((nan >> b) & 1) == 0) LoadVector<kBf16, false>(j, src, x);
          QuantizeSymmetric<kFp8, true>(x, dim, j.sf[b], 0.0f, out);
        } else if (((nan >> b) & 1) != 0) {  // the scratch is already loaded
          QuantizeSymmetric<kFp8, false>(x, dim, j.sf[b], j.zf[b], out);
        } else {
          QuantizeFast<kFp8, kBf16, kRot>(src, x, dim, j.sf[b], j.zf[b], k, out);
        }
      }
    }
  }
}

// int4/int2 keys: per channel over groups of g tokens; params [head][group][channel][2].
template <int kBits, bool kBf16, bool kRot>
void EncodeGroupedKeys(const SectionJob& j) {
  const uint32_t dim = j.dim, g = j.group;
  const uint32_t quantized = j.tokens - j.sink;
  const uint64_t groups = (quantized + uint64_t{g} - 1) / g;
  const __m512 levels = _mm512_set1_ps(static_cast<float>((1 << kBits) - 1));
  const __m512 zero = _mm512_setzero_ps();
  for (uint32_t h = 0; h < j.heads; ++h) {
    for (uint64_t jg = 0; jg < groups; ++jg) {
      const uint32_t t0 = static_cast<uint32_t>(jg * g);
      const uint32_t n = quantized - t0 < g ? quantized - t0 : g;
      const bool buffered = kRot && n <= j.key_buf_tokens;
      for (uint32_t c = 0; c < dim; c += 16) {
        _mm512_storeu_ps(j.mn + c, _mm512_set1_ps(__builtin_inff()));
        _mm512_storeu_ps(j.mx + c, _mm512_set1_ps(-__builtin_inff()));
      }
      // Pass 1: running min/max per channel over the group's tokens, in token order.
      for (uint32_t i = 0; i < n; ++i) {
        const uint16_t* src = At(j, j.sink + t0 + i, h);
        if (i + kPrefetchTokens < n) Prefetch(At(j, j.sink + t0 + i + kPrefetchTokens, h), dim);
        float* x = buffered ? j.key_buf + uint64_t{i} * j.vec_stride : j.vec;
        if constexpr (kRot) LoadVector<kBf16, true>(j, src, x);
        for (uint32_t c = 0; c < dim; c += 16) {
          const __m512 y = kRot ? _mm512_loadu_ps(x + c) : LoadSrc<kBf16>(src + c, dim - c < 16);
          _mm512_storeu_ps(j.mn + c, _mm512_min_ps(y, _mm512_loadu_ps(j.mn + c)));
          _mm512_storeu_ps(j.mx + c, _mm512_max_ps(y, _mm512_loadu_ps(j.mx + c)));
        }
      }
      // Scales and zero points of the group's channels.
      uint8_t* params = j.params_out + 4 * ((h * groups + jg) * dim);
      __mmask16 inf_zero = 0;
      for (uint32_t c = 0; c < dim; c += 16) {
        __m512 mn = _mm512_loadu_ps(j.mn + c), mx = _mm512_loadu_ps(j.mx + c);
        const __mmask16 all_nan = _mm512_cmp_ps_mask(mn, mx, _CMP_GT_OQ);
        mn = _mm512_add_ps(_mm512_mask_mov_ps(mn, all_nan, zero), zero);  // also -0 -> +0
        mx = _mm512_add_ps(_mm512_mask_mov_ps(mx, all_nan, zero), zero);
        const __m256i scale = Narrow<false>(_mm512_div_ps(_mm512_sub_ps(mx, mn), levels));
        const __m256i zp = Narrow<false>(mn);
        const __m512 sf = _mm512_cvtph_ps(scale), zf = _mm512_cvtph_ps(zp);
        _mm512_storeu_ps(j.sf + c, sf);
        _mm512_storeu_ps(j.zf + c, zf);
        _mm512_storeu_ps(j.mx + c, _mm512_div_ps(_mm512_set1_ps(1.0f), sf));  // reciprocals
        inf_zero |= _mm512_mask_fpclass_ps_mask(Mask16(dim - c), zf, 0x18);   // +-Inf
        const __m512i pair = _mm512_or_si512(_mm512_cvtepu16_epi32(scale),
                                             _mm512_slli_epi32(_mm512_cvtepu16_epi32(zp), 16));
        if (dim - c < 16) {
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(params + 4 * c),
                              _mm512_castsi512_si256(pair));
        } else {
          _mm512_storeu_si512(params + 4 * c, pair);
        }
      }
      // Pass 2: codes.
      for (uint32_t i = 0; i < n; ++i) {
        const uint16_t* src = At(j, j.sink + t0 + i, h);
        const float* x = j.vec;
        if (buffered) {
          x = j.key_buf + uint64_t{i} * j.vec_stride;
        } else if (kRot) {
          LoadVector<kBf16, true>(j, src, j.vec);
        }
        uint8_t* out = j.codes_out + (uint64_t{t0 + i} * j.heads + h) * dim * kBits / 8;
        for (uint32_t c = 0; c < dim; c += 16) {
          const bool tail = dim - c < 16;
          const __m512 y = kRot ? _mm512_loadu_ps(x + c) : LoadSrc<kBf16>(src + c, tail);
          const __m512 sf = _mm512_loadu_ps(j.sf + c), zf = _mm512_loadu_ps(j.zf + c);
          const __m512 rf = _mm512_loadu_ps(j.mx + c);
          const __m512i code = inf_zero ? GroupCodes<kBits, true>(y, sf, zf, rf)
                                        : GroupCodes<kBits, false>(y, sf, zf, rf);
          StorePacked<kBits>(out + c * kBits / 8, code, tail);
        }
      }
    }
  }
}

// int4/int2 values: per token over groups of g channels; params [token][head][group][2]. Heads
// are batched as in EncodeSymmetric; the (head, group) scales of a batch are computed 16 at a
// time.
template <int kBits, bool kBf16, bool kRot>
void EncodeGroupedValues(const SectionJob& j) {
  const uint32_t dim = j.dim, g = j.group, stride = j.vec_stride;
  const uint32_t groups = (dim + g - 1) / g;
  const __m512 levels = _mm512_set1_ps(static_cast<float>((1 << kBits) - 1));
  const __m512 zero = _mm512_setzero_ps();
  const bool aligned = g % 16 == 0;  // chunks never straddle groups: pack codes directly
  for (uint32_t t = j.sink; t < j.tokens; ++t) {
    const uint64_t v0 = static_cast<uint64_t>(t - j.sink) * j.heads;
    for (uint32_t h0 = 0; h0 < j.heads; h0 += kHeadBatch) {
      const uint32_t nb = j.heads - h0 < kHeadBatch ? j.heads - h0 : kHeadBatch;
      // Min and max of every (head, group), NaN skipped.
      for (uint32_t b = 0; b < nb; ++b) {
        float* x = j.vec + b * stride;
        if (t + kPrefetchTokens < j.tokens) Prefetch(At(j, t + kPrefetchTokens, h0 + b), dim);
        LoadVector<kBf16, kRot>(j, At(j, t, h0 + b), x);
        for (uint32_t jg = 0; jg < groups; ++jg) {
          const uint32_t c0 = jg * g, end = dim - c0 < g ? dim : c0 + g;
          __m512 lo = _mm512_set1_ps(__builtin_inff()), hi = _mm512_set1_ps(-__builtin_inff());
          for (uint32_t c = c0; c < end; c += 16) {
            const __mmask16 m = Mask16(end - c);  // lanes of this group
            const __m512 y = _mm512_loadu_ps(x + c);
            lo = _mm512_mask_min_ps(lo, m, y, lo);
            hi = _mm512_mask_max_ps(hi, m, y, hi);
          }
          j.mn[b * groups + jg] = _mm512_reduce_min_ps(lo);
          j.mx[b * groups + jg] = _mm512_reduce_max_ps(hi);
        }
      }
      // Scales and zero points, 16 (head, group) pairs at a time.
      const uint32_t np = nb * groups;
      uint8_t* params = j.params_out + 4 * (v0 + h0) * groups;
      for (uint32_t p = 0; p < np; p += 16) {
        const __mmask16 m = Mask16(np - p);
        __m512 mn = _mm512_maskz_loadu_ps(m, j.mn + p), mx = _mm512_maskz_loadu_ps(m, j.mx + p);
        const __mmask16 all_nan = _mm512_cmp_ps_mask(mn, mx, _CMP_GT_OQ);
        mn = _mm512_add_ps(_mm512_mask_mov_ps(mn, all_nan, zero), zero);  // also -0 -> +0
        mx = _mm512_add_ps(_mm512_mask_mov_ps(mx, all_nan, zero), zero);
        const __m256i scale = Narrow<false>(_mm512_div_ps(_mm512_sub_ps(mx, mn), levels));
        const __m256i zp = Narrow<false>(mn);
        const __m512 sf = _mm512_cvtph_ps(scale);
        _mm512_storeu_ps(j.sf + p, sf);
        _mm512_storeu_ps(j.zf + p, _mm512_cvtph_ps(zp));
        _mm512_storeu_ps(j.mn + p, _mm512_div_ps(_mm512_set1_ps(1.0f), sf));  // reciprocals
        const __m512i pair = _mm512_or_si512(_mm512_cvtepu16_epi32(scale),
                                             _mm512_slli_epi32(_mm512_cvtepu16_epi32(zp), 16));
        _mm512_mask_storeu_epi32(params + 4 * p, m, pair);
      }
      // Codes.
      for (uint32_t b = 0; b < nb; ++b) {
        const float* x = j.vec + b * stride;
        uint8_t* out = j.codes_out + (v0 + h0 + b) * dim * kBits / 8;
        for (uint32_t jg = 0; jg < groups; ++jg) {
          const uint32_t c0 = jg * g, end = dim - c0 < g ? dim : c0 + g;
          const __m512 sf = _mm512_set1_ps(j.sf[b * groups + jg]);
          const __m512 zf = _mm512_set1_ps(j.zf[b * groups + jg]);
          const __m512 rf = _mm512_set1_ps(j.mn[b * groups + jg]);
          const bool exact = __builtin_isinf(j.zf[b * groups + jg]);
          for (uint32_t c = c0; c < end; c += 16) {
            const __m512 y = _mm512_loadu_ps(x + c);
            const __m512i code = exact ? GroupCodes<kBits, true>(y, sf, zf, rf)
                                       : GroupCodes<kBits, false>(y, sf, zf, rf);
            if (aligned) {
              StorePacked<kBits>(out + c * kBits / 8, code, end - c < 16);
            } else {  // spills past `end` are rewritten by the next group or land in padding
              _mm_storeu_si128(reinterpret_cast<__m128i*>(j.codes8 + c),
                               _mm512_cvtepi32_epi8(code));
            }
          }
        }
        if (!aligned) PackCodeBytes<kBits>(j.codes8, dim, out);
      }
    }
  }
}

// ---- decode ----------------------------------------------------------------------------------

// Decoded chunk y of channels [c, c + 16): into the scratch vector x when kRot (the vector is
// then rotated back by RotateInverseAndStore), else straight into the destination.
template <bool kBf16, bool kRot>
KV_INLINE void StoreDecoded(float* x, uint16_t* dst, uint32_t c, __m512 y, bool tail) {
  if constexpr (kRot) {
    _mm512_storeu_ps(x + c, y);
  } else {
    StoreDst<kBf16>(dst + c, y, tail);
  }
}

template <bool kFp8, bool kBf16, bool kRot>
void DecodeSymmetric(const SectionJob& j) {
  const uint32_t dim = j.dim;
  float* x = j.vec;
  for (uint32_t t = j.sink; t < j.tokens; ++t) {
    for (uint32_t h = 0; h < j.heads; ++h) {
      const uint64_t v = static_cast<uint64_t>(t - j.sink) * j.heads + h;
      const __m512 sf = _mm512_set1_ps(HalfToFloatS(LoadU16(j.params_in + 2 * v)));
      const uint8_t* in = j.codes_in + v * dim;
      uint16_t* dst = At(j, t, h);
      if (t + kPrefetchTokens < j.tokens) PrefetchForWrite(At(j, t + kPrefetchTokens, h), dim);
      for (uint32_t c = 0; c < dim; c += 16) {
        const bool tail = dim - c < 16;
        const __m512 q = kFp8 ? E4M3ToFloat(UnpackChunk<8>(in + c, tail))
                              : _mm512_cvtepi32_ps(UnpackChunk<-8>(in + c, tail));
        const __m512 y = _mm512_mul_ps(q, sf);
        StoreDecoded<kBf16, kRot>(x, dst, c, y, tail);
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
  const uint64_t stride = j.vec_stride;  // floats per head in sf/zf
  float* x = j.vec;
  for (uint32_t tq = 0; tq < quantized; ++tq) {
    if (tq % g == 0) {  // new token group: widen the scales and zero points of every head
      const uint64_t jg = tq / g;
      for (uint32_t h = 0; h < j.heads; ++h) {
        const uint8_t* params = j.params_in + 4 * ((h * groups + jg) * dim);
        for (uint32_t c = 0; c < dim; c += 16) {
          const __m512i pair = dim - c < 16 ? _mm512_zextsi256_si512(_mm256_loadu_si256(
                                                  reinterpret_cast<const __m256i*>(params + 4 * c)))
                                            : _mm512_loadu_si512(params + 4 * c);
          _mm512_storeu_ps(j.sf + h * stride + c, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(pair)));
          _mm512_storeu_ps(j.zf + h * stride + c,
                           _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(pair, 16))));
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
      for (uint32_t c = 0; c < dim; c += 16) {
        const bool tail = dim - c < 16;
        const __m512 code = _mm512_cvtepi32_ps(UnpackChunk<kBits>(in + c * kBits / 8, tail));
        const __m512 y = _mm512_fmadd_ps(code, _mm512_loadu_ps(sf + c), _mm512_loadu_ps(zf + c));
        StoreDecoded<kBf16, kRot>(x, dst, c, y, tail);
      }
      if constexpr (kRot) RotateInverseAndStore<kBf16>(j, x, dst);
    }
  }
}

template <int kBits, bool kBf16, bool kRot>
void DecodeGroupedValues(const SectionJob& j) {
  const uint32_t dim = j.dim, g = j.group;
  const uint32_t groups = (dim + g - 1) / g;
  const bool aligned = g % 16 == 0;
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
          const __m512 sf = _mm512_set1_ps(HalfToFloatS(LoadU16(params + 4 * jg)));
          const __m512 zf = _mm512_set1_ps(HalfToFloatS(LoadU16(params + 4 * jg + 2)));
          const uint32_t c0 = jg * g, end = dim - c0 < g ? dim : c0 + g;
          for (uint32_t c = c0; c < end; c += 16) {  // spills are rewritten by the next group
            _mm512_storeu_ps(j.sf + c, sf);
            _mm512_storeu_ps(j.zf + c, zf);
          }
        }
      }
      __m512 sf = _mm512_setzero_ps(), zf = _mm512_setzero_ps();
      for (uint32_t c = 0; c < dim; c += 16) {
        const bool tail = dim - c < 16;
        if (!aligned) {
          sf = _mm512_loadu_ps(j.sf + c);
          zf = _mm512_loadu_ps(j.zf + c);
        } else if (c % g == 0) {
          sf = _mm512_set1_ps(HalfToFloatS(LoadU16(params + 4 * (c / g))));
          zf = _mm512_set1_ps(HalfToFloatS(LoadU16(params + 4 * (c / g) + 2)));
        }
        const __m512 code = _mm512_cvtepi32_ps(UnpackChunk<kBits>(in + c * kBits / 8, tail));
        const __m512 y = _mm512_fmadd_ps(code, sf, zf);
        StoreDecoded<kBf16, kRot>(x, dst, c, y, tail);
      }
      if constexpr (kRot) RotateInverseAndStore<kBf16>(j, x, dst);
    }
  }
}

}  // namespace

void EncodeSectionAvx512(const SectionJob& job) { EncodeSection(job); }

void DecodeSectionAvx512(const SectionJob& job) { DecodeSection(job); }

}  // namespace kvault::kernels::simd
