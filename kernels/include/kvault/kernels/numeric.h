#pragma once
// Scalar number formats shared by the CPU reference, the generator and the tests: IEEE binary16,
// bfloat16 and OCP FP8 E4M3 ("fn"). Conversions from fp32 round to nearest, ties to even, without
// flushing subnormals. Every NaN result is the canonical pattern 0x7FFF (fp16 and bf16) or 0x7F
// (E4M3), which is what the CUDA intrinsics produce, so all three codec paths agree bit for bit.

#include <cstdint>
#include <cstring>

#include "kvault/common/dtype.h"

namespace kvault::kernels {

using ::kvault::DType;

inline constexpr uint16_t kCanonicalNan16 = 0x7FFF;
inline constexpr uint8_t kE4M3Nan = 0x7F;
inline constexpr float kE4M3Max = 448.0f;

inline uint32_t FloatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float BitsFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// binary16 -> fp32, exact.
inline float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  uint32_t mant = h & 0x3FFu;
  if (exp == 0x1F) return BitsFloat(sign | 0x7F800000u | (mant << 13));  // Inf / NaN
  if (exp != 0) return BitsFloat(sign | ((exp + 112u) << 23) | (mant << 13));
  if (mant == 0) return BitsFloat(sign);
  // Subnormal: value = mant * 2^-24, exactly representable in fp32.
  const float v = static_cast<float>(mant) * BitsFloat(0x33800000u);  // 2^-24
  return sign ? -v : v;
}

// fp32 -> binary16, round to nearest even; overflow -> Inf; NaN -> 0x7FFF.
inline uint16_t FloatToHalf(float f) {
  const uint32_t x = FloatBits(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t a = x & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return kCanonicalNan16;
  if (a >= 0x477FF000u) return sign | 0x7C00u;  // >= 65520 rounds to Inf (and Inf itself)
  if (a >= 0x38800000u) {                       // normal half range (>= 2^-14)
    const uint32_t mant = a & 0x7FFFFFu;
    const uint32_t exp = (a >> 23) - 112u;
    uint32_t h = (exp << 10) | (mant >> 13);
    const uint32_t rem = mant & 0x1FFFu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // carry may bump the exponent
    return static_cast<uint16_t>(sign | h);
  }
  if (a < 0x33000000u) return sign;  // < 2^-25 (half of the smallest subnormal): zero
  // Subnormal half: value = q * 2^-24.
  const int e = static_cast<int>(a >> 23) - 127;  // -25 .. -15
  const uint32_t m = (a & 0x7FFFFFu) | 0x800000u;
  const int shift = -e - 1;  // q = m >> (23 - (e + 24)) = m >> (-1 - e)
  uint32_t q = m >> shift;
  const uint32_t rem = m & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1);
  if (rem > half || (rem == half && (q & 1u))) ++q;
  return static_cast<uint16_t>(sign | q);
}

// bfloat16 -> fp32, exact.
inline float Bf16ToFloat(uint16_t b) { return BitsFloat(static_cast<uint32_t>(b) << 16); }

// fp32 -> bfloat16, round to nearest even (subnormals kept); NaN -> 0x7FFF.
inline uint16_t FloatToBf16(float f) {
  const uint32_t x = FloatBits(f);
  if ((x & 0x7FFFFFFFu) > 0x7F800000u) return kCanonicalNan16;
  const uint32_t rounded = x + 0x7FFFu + ((x >> 16) & 1u);
  return static_cast<uint16_t>(rounded >> 16);
}

inline float ToFloat(uint16_t bits, DType dtype) {
  return dtype == DType::kF16 ? HalfToFloat(bits) : Bf16ToFloat(bits);
}
inline uint16_t FromFloat(float f, DType dtype) {
  return dtype == DType::kF16 ? FloatToHalf(f) : FloatToBf16(f);
}
// True for Inf and NaN in either 16-bit dtype: the exponent field is all ones.
inline bool IsNonFinite16(uint16_t bits, DType dtype) {
  const uint16_t exponent = dtype == DType::kF16 ? 0x7C00 : 0x7F80;
  return (bits & exponent) == exponent;
}

// fp32 -> E4M3fn with saturation to +-448 and NaN -> 0x7F (sign dropped): the semantics of
// __nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3). Round to nearest even, subnormals kept.
inline uint8_t FloatToE4M3(float f) {
  const uint32_t b = FloatBits(f);
  const uint8_t s = static_cast<uint8_t>((b >> 24) & 0x80u);
  const uint32_t a = b & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return kE4M3Nan;
  if (a > 0x43E80000u) return s | 0x7Eu;  // |x| > 464 (or Inf) saturates to 448
  if (a <= 0x3A800000u) return s;         // |x| <= 2^-10 rounds to signed zero
  const int e = static_cast<int>(a >> 23) - 127;
  const uint32_t m = (a & 0x7FFFFFu) | 0x800000u;
  if (e >= -6) {
    uint32_t q = m >> 20;
    const uint32_t r = m & 0xFFFFFu;
    if (r > 0x80000u || (r == 0x80000u && (q & 1u))) ++q;
    const uint32_t c = (static_cast<uint32_t>(e + 7) << 3) + (q - 8u);  // carry bumps exponent
    return static_cast<uint8_t>(s | (c > 0x7Eu ? 0x7Eu : c));
  }
  const int sh = 14 - e;  // subnormal: q * 2^-9
  uint32_t q = m >> sh;
  const uint32_t r = m & ((1u << sh) - 1u);
  const uint32_t h = 1u << (sh - 1);
  if (r > h || (r == h && (q & 1u))) ++q;
  return static_cast<uint8_t>(s | q);  // q == 8 encodes 2^-6 (0x08)
}

// E4M3fn -> fp32, exact. 0x7F and 0xFF are NaN.
inline float E4M3ToFloat(uint8_t c) {
  const uint32_t sign = static_cast<uint32_t>(c & 0x80u) << 24;
  const uint32_t e = (c >> 3) & 0xFu;
  const uint32_t m = c & 0x7u;
  if (e == 0xF && m == 0x7) return BitsFloat(0x7FC00000u);
  if (e == 0) {
    const float v = static_cast<float>(m) * BitsFloat(0x3B000000u);  // m * 2^-9
    return sign ? -v : v;
  }
  return BitsFloat(sign | ((e + 120u) << 23) | (m << 20));
}

}  // namespace kvault::kernels
