#pragma once
// The CUDA codec's quotients without the IEEE divider, host and device: the kernels must write
// the bytes of the CPU reference (kernels/src/reference/), which divides with IEEE x / s, and the
// divider costs them about ten instructions per element. Each function here returns what the
// reference's division gives once the codec has rounded it (to a code or to fp16), for the
// operands the kernels pass; tests/unit/kernels/cuda_quotient_test.cc checks that on the CPU
// against IEEE division, and the gpu tests check the kernels byte for byte.
//
// Host builds use plain fp32 operations (CMakeLists.txt compiles C++ with -ffp-contract=off, so
// nothing is fused) and std::fma; device code the _rn intrinsics.

#include <cmath>

#if defined(__CUDACC__)
#define KVAULT_QUOTIENT_FN __host__ __device__ __forceinline__
#else
#define KVAULT_QUOTIENT_FN inline
#endif

namespace kvault::kernels::cuda_detail {
namespace quotient_ops {

KVAULT_QUOTIENT_FN float Mul(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
KVAULT_QUOTIENT_FN float Sub(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
KVAULT_QUOTIENT_FN float Fma(float a, float b, float c) {
#ifdef __CUDA_ARCH__
  return __fmaf_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}
KVAULT_QUOTIENT_FN float Abs(float a) {
#ifdef __CUDA_ARCH__
  return fabsf(a);
#else
  return std::fabs(a);
#endif
}
// RN(1 / s).
KVAULT_QUOTIENT_FN float Reciprocal(float s) {
#ifdef __CUDA_ARCH__
  return __frcp_rn(s);
#else
  return 1.0f / s;
#endif
}

}  // namespace quotient_ops

// RN(x / s) from r = RN(1 / s): q0 = RN(x * r); e = x - q0 * s (exact, one FMA); RN(q0 + e * r)
// (one FMA), the CPU kernels' Quotient (kernels/src/simd/avx512_primitives.inc). Equal to IEEE
// x / s for a positive finite fp16 s (11-bit significand) and a finite x while the intermediates
// stay normal: the steps scale exactly with the exponents, and every 11-bit significand of s
// against every 24-bit significand of x was checked exhaustively. Below that (|x / s| < 2^-100)
// the result may differ in low bits but is as tiny. An infinite x gives NaN.
KVAULT_QUOTIENT_FN float CorrectedQuotient(float x, float s, float r) {
  using namespace quotient_ops;
  const float q0 = Mul(x, r);
  return Fma(Fma(-s, q0, x), r, q0);
}

// x / s for the symmetric codecs (fp8, int8), r = RN(1 / s). s is a positive finite fp16 value,
// x finite or NaN, |x| <= the vector's amax (EncodeSymmetric's s = fp16(amax / 448 or 127), +Inf
// excluded by the caller, keeps |x / s| below about 900). A zero quotient becomes x, which keeps
// the sign of a -0 input (the FMAs turn -0 into +0; E4M3 has a -0 code) and of a tiny one.
// Checked once for every positive finite fp16 s against IEEE x / s: every fp16 x (1.95e9 pairs,
// all bit-identical) and every bf16 x (1.21e9 pairs; 2.8e6 quotients below 2^-100 differ in low
// bits with the same sign, which fp8 and int8 both encode as a zero code of that sign).
KVAULT_QUOTIENT_FN float ExactQuotient(float x, float s, float r) {
  const float q = CorrectedQuotient(x, s, r);
  return q == 0.0f ? x : q;
}

// n / kD for a scale: n >= 0, +Inf or NaN (a group's range, a vector's amax), kD = 3, 15, 127 or
// 448, the reciprocal computed at compile time. Rounded to fp16 it gives the bits of IEEE n / kD
// for every such n (checked for all of them once, and on a sample in the test). A zero or NaN
// quotient takes n itself: a tiny n rounds to the same fp16 zero, and an Inf n (whose quotient
// comes out NaN) is IEEE's Inf / kD.
template <int kD>
KVAULT_QUOTIENT_FN float DivideForScale(float n) {
  static_assert(kD == 3 || kD == 15 || kD == 127 || kD == 448, "checked for these only");
  constexpr float kInv = 1.0f / static_cast<float>(kD);  // correctly rounded, at compile time
  const float q = CorrectedQuotient(n, static_cast<float>(kD), kInv);
  return quotient_ops::Abs(q) > 0.0f ? q : n;
}

// The int4/int2 quantizer of one group, made once per group from its stored scale sf and zero zf
// (fp16 values as fp32) so that no element needs a division.
struct AsymQuantizer {
  float zero, scale, recip;
};

// The reference codes every element 0 when sf is 0 (its rule), +Inf or NaN (the quotient is then
// 0 or NaN); a zero of +Inf does the same in AsymQuotient, since x - Inf is -Inf or NaN.
KVAULT_QUOTIENT_FN AsymQuantizer MakeAsymQuantizer(float sf, float zf) {
  if (sf > 0.0f && sf < INFINITY) return {zf, sf, quotient_ops::Reciprocal(sf)};
  return {INFINITY, 1.0f, 1.0f};
}

// (x - zf) / sf, to be clamped to [0, levels] and rounded (NaN -> 0) like the reference's: the
// same code for every x. Within a group |(x - zf) / sf| stays below about 2^29 (sf >= 2^-24, and
// fp16(mn) is within 16 of mn), so CorrectedQuotient is IEEE's wherever the code can tell. A zero
// or NaN quotient takes the difference d itself: a tiny d codes 0 either way, and d = +-Inf
// (zf = fp16(mn) overflowed) is IEEE's Inf / sf.
KVAULT_QUOTIENT_FN float AsymQuotient(float x, const AsymQuantizer& q) {
  const float d = quotient_ops::Sub(x, q.zero);
  const float v = CorrectedQuotient(d, q.scale, q.recip);
  return quotient_ops::Abs(v) > 0.0f ? v : d;
}

}  // namespace kvault::kernels::cuda_detail
