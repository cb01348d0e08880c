#include "kvault/kernels/numeric.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

namespace kvault::kernels {
namespace {

// Expected values are hand-computed constants (the reasoning is in the comments) or come from
// the oracles below, which are written from the IEEE / OCP definitions in double precision and
// share no code with numeric.h: "decode" is sign * 2^e * significand by std::ldexp, "encode" is
// "pick the nearest representable value, ties to the even code" over a table of decoded values.

float F(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
const float kQuietNan = std::numeric_limits<float>::quiet_NaN();
const float kInf = std::numeric_limits<float>::infinity();

// binary16 by definition: 1 sign, 5 exponent (bias 15), 10 mantissa bits.
double HalfValue(uint16_t h) {
  const int e = (h >> 10) & 0x1F;
  const int m = h & 0x3FF;
  const double sign = (h & 0x8000) ? -1.0 : 1.0;
  if (e == 0x1F) return m == 0 ? sign * HUGE_VAL : std::nan("");
  if (e == 0) return sign * std::ldexp(m, -24);
  return sign * std::ldexp(1024 + m, e - 25);
}

// bfloat16 by definition: 1 sign, 8 exponent (bias 127), 7 mantissa bits.
double Bf16Value(uint16_t b) {
  const int e = (b >> 7) & 0xFF;
  const int m = b & 0x7F;
  const double sign = (b & 0x8000) ? -1.0 : 1.0;
  if (e == 0xFF) return m == 0 ? sign * HUGE_VAL : std::nan("");
  if (e == 0) return sign * std::ldexp(m, -133);
  return sign * std::ldexp(128 + m, e - 134);
}

// OCP E4M3fn by definition (quant.md §5.1): bias 7, no Inf, NaN = S.1111.111.
double E4M3Value(uint8_t c) {
  const int e = (c >> 3) & 0xF;
  const int m = c & 0x7;
  const double sign = (c & 0x80) ? -1.0 : 1.0;
  if (e == 0xF && m == 0x7) return std::nan("");
  if (e == 0) return sign * std::ldexp(m, -9);
  return sign * std::ldexp(8 + m, e - 10);
}

// Nearest-value encoder over the ascending magnitudes `table` (index = code without sign),
// ties to the even code. Magnitudes past the last entry saturate to the last code.
uint32_t NearestEven(const std::vector<double>& table, double a) {
  auto it = std::upper_bound(table.begin(), table.end(), a);
  if (it == table.begin()) return 0;
  const uint32_t lo = static_cast<uint32_t>(it - table.begin() - 1);
  if (table[lo] == a || lo + 1 == table.size()) return lo;
  const double dlo = a - table[lo];
  const double dhi = table[lo + 1] - a;
  if (dlo < dhi) return lo;
  if (dhi < dlo) return lo + 1;
  return (lo & 1u) ? lo + 1 : lo;
}

// Non-negative half magnitudes 0x0000..0x7BFF, then 65536 standing for the code 0x7C00 (Inf):
// IEEE rounds to Inf exactly when the value would round to 2^16 with an unbounded exponent.
const std::vector<double>& HalfTable() {
  static const std::vector<double> t = [] {
    std::vector<double> v;
    for (uint32_t h = 0; h <= 0x7BFF; ++h) v.push_back(HalfValue(static_cast<uint16_t>(h)));
    v.push_back(65536.0);
    return v;
  }();
  return t;
}

uint16_t OracleHalf(float f) {
  if (std::isnan(f)) return 0x7FFF;
  const uint16_t sign = std::signbit(f) ? 0x8000 : 0;
  const double a = std::fabs(static_cast<double>(f));
  if (a >= 65536.0) return sign | 0x7C00;
  return static_cast<uint16_t>(sign | NearestEven(HalfTable(), a));
}

// Same for bfloat16: 0x0000..0x7F7F, then 2^128 standing for 0x7F80 (Inf).
const std::vector<double>& Bf16Table() {
  static const std::vector<double> t = [] {
    std::vector<double> v;
    for (uint32_t b = 0; b <= 0x7F7F; ++b) v.push_back(Bf16Value(static_cast<uint16_t>(b)));
    v.push_back(std::ldexp(1.0, 128));
    return v;
  }();
  return t;
}

uint16_t OracleBf16(float f) {
  if (std::isnan(f)) return 0x7FFF;
  const uint16_t sign = std::signbit(f) ? 0x8000 : 0;
  const double a = std::fabs(static_cast<double>(f));
  if (std::isinf(a)) return sign | 0x7F80;
  return static_cast<uint16_t>(sign | NearestEven(Bf16Table(), a));
}

// E4M3 satfinite per quant.md §5.2: NaN -> 0x7F; |x| > 464 -> +-448; otherwise RNE. The table
// holds 0x00..0x7E and then 480 standing for 0x7F, so |x| in (448, 464] rounds to 0x7E (464 is a
// tie, and 0x7E is the even code), and above 464 the result is clamped back to 0x7E.
const std::vector<double>& E4M3Table() {
  static const std::vector<double> t = [] {
    std::vector<double> v;
    for (uint32_t c = 0; c <= 0x7E; ++c) v.push_back(E4M3Value(static_cast<uint8_t>(c)));
    v.push_back(480.0);
    return v;
  }();
  return t;
}

uint8_t OracleE4M3(float f) {
  if (std::isnan(f)) return 0x7F;
  const uint8_t sign = std::signbit(f) ? 0x80 : 0;
  const double a = std::fabs(static_cast<double>(f));
  const uint32_t c = std::min<uint32_t>(NearestEven(E4M3Table(), a), 0x7E);
  return static_cast<uint8_t>(sign | c);
}

// Same float, bit for bit (distinguishes -0 from +0); any NaN equals any NaN.
::testing::AssertionResult SameFloat(double expected, float actual) {
  if (std::isnan(expected) && std::isnan(actual)) return ::testing::AssertionSuccess();
  const float e = static_cast<float>(expected);
  if (Bits(e) == Bits(actual)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "expected " << e << " (0x" << std::hex << Bits(e)
                                       << "), got " << actual << " (0x" << Bits(actual) << ")";
}

// ---------------------------------------------------------------------------------------------
// The oracles themselves, on constants from the format definitions.

TEST(NumericOracleTest, AgreesWithHandConstants) {
  EXPECT_EQ(HalfValue(0x3C00), 1.0);
  EXPECT_EQ(HalfValue(0x7BFF), 65504.0);
  EXPECT_EQ(HalfValue(0x0001), std::ldexp(1.0, -24));
  EXPECT_EQ(HalfValue(0x0400), std::ldexp(1.0, -14));
  EXPECT_EQ(Bf16Value(0x3F80), 1.0);
  EXPECT_EQ(E4M3Value(0x7E), 448.0);
  EXPECT_EQ(E4M3Value(0x38), 1.0);
  EXPECT_EQ(OracleHalf(65519.0f), 0x7BFF);
  EXPECT_EQ(OracleHalf(65520.0f), 0x7C00);
  EXPECT_EQ(OracleE4M3(464.0f), 0x7E);
  EXPECT_EQ(OracleE4M3(1000.0f), 0x7E);
}

// ---------------------------------------------------------------------------------------------
// binary16

TEST(NumericTest, IsNonFinite16MatchesTheFloatValueOnEveryPattern) {
  for (uint32_t b = 0; b <= 0xFFFF; ++b) {
    const uint16_t bits = static_cast<uint16_t>(b);
    ASSERT_EQ(IsNonFinite16(bits, DType::kF16), !std::isfinite(HalfToFloat(bits))) << b;
    ASSERT_EQ(IsNonFinite16(bits, DType::kBF16), !std::isfinite(Bf16ToFloat(bits))) << b;
  }
}

TEST(HalfTest, HalfToFloatAllPatterns) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = HalfToFloat(static_cast<uint16_t>(h));
    ASSERT_TRUE(SameFloat(HalfValue(static_cast<uint16_t>(h)), f)) << "h=0x" << std::hex << h;
  }
}

TEST(HalfTest, HalfToFloatHandConstants) {
  EXPECT_EQ(HalfToFloat(0x3C00), 1.0f);
  EXPECT_EQ(HalfToFloat(0xC000), -2.0f);
  EXPECT_EQ(HalfToFloat(0x7BFF), 65504.0f);               // (2 - 2^-10) * 2^15
  EXPECT_EQ(HalfToFloat(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(HalfToFloat(0x03FF), 1023.0f * std::ldexp(1.0f, -24));
  EXPECT_EQ(HalfToFloat(0x0400), std::ldexp(1.0f, -14));  // smallest normal
  EXPECT_EQ(Bits(HalfToFloat(0x8000)), 0x80000000u);      // -0 keeps its sign
  EXPECT_EQ(HalfToFloat(0x7C00), kInf);
  EXPECT_EQ(HalfToFloat(0xFC00), -kInf);
  EXPECT_TRUE(std::isnan(HalfToFloat(0x7E00)));
  EXPECT_TRUE(std::isnan(HalfToFloat(0x7C01)));
  EXPECT_TRUE(std::isnan(HalfToFloat(0xFFFF)));
}

TEST(HalfTest, RoundTripAllPatterns) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const uint16_t bits = static_cast<uint16_t>(h);
    const bool is_nan = (h & 0x7C00) == 0x7C00 && (h & 0x3FF) != 0;
    const uint16_t expected = is_nan ? 0x7FFF : bits;
    ASSERT_EQ(FloatToHalf(HalfToFloat(bits)), expected) << "h=0x" << std::hex << h;
  }
}

TEST(HalfTest, FloatToHalfOverflow) {
  EXPECT_EQ(FloatToHalf(65504.0f), 0x7BFF);
  // 65519.99f is the float 65519.9921875: below the midpoint 65520 between 65504 and 2^16.
  EXPECT_EQ(FloatToHalf(65519.99f), 0x7BFF);
  EXPECT_EQ(FloatToHalf(F(0x477FEFFF)), 0x7BFF);  // the float just below 65520
  EXPECT_EQ(FloatToHalf(65520.0f), 0x7C00);       // tie with 2^16: even (Inf) wins
  EXPECT_EQ(FloatToHalf(-65520.0f), 0xFC00);
  EXPECT_EQ(FloatToHalf(1e10f), 0x7C00);
  EXPECT_EQ(FloatToHalf(std::numeric_limits<float>::max()), 0x7C00);
  EXPECT_EQ(FloatToHalf(kInf), 0x7C00);
  EXPECT_EQ(FloatToHalf(-kInf), 0xFC00);
}

TEST(HalfTest, FloatToHalfRoundsTiesToEven) {
  EXPECT_EQ(FloatToHalf(1.0f), 0x3C00);
  EXPECT_EQ(FloatToHalf(-1.0f), 0xBC00);
  // In [1, 2) the half step is 2^-10.
  EXPECT_EQ(FloatToHalf(1.0f + std::ldexp(1.0f, -11)), 0x3C00);  // tie 1 | 1+2^-10 -> even 0x3C00
  EXPECT_EQ(FloatToHalf(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);  // tie 0x3C01 | 0x3C02
  EXPECT_EQ(FloatToHalf(F(0x3F801001)), 0x3C01);  // 1 + 2^-11 + 2^-23: just above the tie
  EXPECT_EQ(FloatToHalf(F(0x3F800FFF)), 0x3C00);  // just below it
  EXPECT_EQ(FloatToHalf(-(1.0f + 3 * std::ldexp(1.0f, -11))), 0xBC02);
  // In [2048, 4096) the step is 2: 2049 is a tie 2048 (0x6800) | 2050 (0x6801).
  EXPECT_EQ(FloatToHalf(2049.0f), 0x6800);
  EXPECT_EQ(FloatToHalf(2051.0f), 0x6802);  // tie 0x6801 | 0x6802
  // 2047.5: tie 2047 (0x67FF, odd) | 2048 (0x6800): the carry moves into the exponent.
  EXPECT_EQ(FloatToHalf(2047.5f), 0x6800);
  // 0.1f = 0x3DCCCCCD; 0.1 * 2^14 = 1638.4 -> mantissa 1638 - 1024 = 614 = 0x266, exponent -4.
  EXPECT_EQ(FloatToHalf(0.1f), 0x2E66);
}

TEST(HalfTest, FloatToHalfSubnormals) {
  const float u = std::ldexp(1.0f, -24);  // smallest half subnormal
  EXPECT_EQ(FloatToHalf(u), 0x0001);
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -25)), 0x0000);      // tie 0 | 2^-24 -> even 0
  EXPECT_EQ(FloatToHalf(-std::ldexp(1.0f, -25)), 0x8000);     // signed zero
  EXPECT_EQ(FloatToHalf(F(0x33000001)), 0x0001);              // just above 2^-25
  EXPECT_EQ(FloatToHalf(3 * std::ldexp(1.0f, -25)), 0x0002);  // tie 1 | 2 -> 2
  EXPECT_EQ(FloatToHalf(5 * std::ldexp(1.0f, -25)), 0x0002);  // tie 2 | 3 -> 2
  EXPECT_EQ(FloatToHalf(1023 * u), 0x03FF);                   // largest subnormal
  // 1023.5 * 2^-24: tie 0x03FF | 0x0400 (smallest normal) -> 0x0400.
  EXPECT_EQ(FloatToHalf(1023.5f * u), 0x0400);
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -14)), 0x0400);
  EXPECT_EQ(FloatToHalf(1e-45f), 0x0000);  // fp32 denormal
  EXPECT_EQ(FloatToHalf(0.0f), 0x0000);
  EXPECT_EQ(FloatToHalf(-0.0f), 0x8000);
}

TEST(HalfTest, FloatToHalfNanIsCanonical) {
  EXPECT_EQ(FloatToHalf(kQuietNan), 0x7FFF);
  EXPECT_EQ(FloatToHalf(-kQuietNan), 0x7FFF);
  EXPECT_EQ(FloatToHalf(F(0x7F800001)), 0x7FFF);  // signalling, payload only in the low bits
  EXPECT_EQ(FloatToHalf(F(0xFFC00000)), 0x7FFF);
  EXPECT_EQ(FloatToHalf(F(0x7FFFFFFF)), 0x7FFF);
}

// Every midpoint between neighbouring halves (exact in fp32), and one fp32 ulp either side.
TEST(HalfTest, FloatToHalfAllMidpointsAgainstOracle) {
  for (uint32_t h = 0; h < 0x7BFF; ++h) {
    const float mid = static_cast<float>((HalfValue(h) + HalfValue(h + 1)) / 2);
    for (float x : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, kInf)}) {
      ASSERT_EQ(FloatToHalf(x), OracleHalf(x)) << "x=" << x;
      ASSERT_EQ(FloatToHalf(-x), OracleHalf(-x)) << "x=" << -x;
    }
  }
}

TEST(HalfTest, FloatToHalfStridedSweepAgainstOracle) {
  for (uint64_t b = 0; b <= 0xFFFFFFFFull; b += 509) {
    const float x = F(static_cast<uint32_t>(b));
    ASSERT_EQ(FloatToHalf(x), OracleHalf(x)) << "bits=0x" << std::hex << b;
  }
}

// ---------------------------------------------------------------------------------------------
// bfloat16

TEST(Bf16Test, Bf16ToFloatAllPatterns) {
  for (uint32_t b = 0; b < 65536; ++b) {
    ASSERT_TRUE(
        SameFloat(Bf16Value(static_cast<uint16_t>(b)), Bf16ToFloat(static_cast<uint16_t>(b))))
        << "b=0x" << std::hex << b;
  }
}

TEST(Bf16Test, RoundTripAllPatterns) {
  for (uint32_t b = 0; b < 65536; ++b) {
    const bool is_nan = (b & 0x7F80) == 0x7F80 && (b & 0x7F) != 0;
    ASSERT_EQ(FloatToBf16(Bf16ToFloat(static_cast<uint16_t>(b))), is_nan ? 0x7FFF : b)
        << "b=0x" << std::hex << b;
  }
}

TEST(Bf16Test, FloatToBf16RoundsTiesToEven) {
  EXPECT_EQ(FloatToBf16(1.0f), 0x3F80);
  // In [1, 2) the bf16 step is 2^-7; 1 + 2^-8 = 0x3F808000 is a tie 0x3F80 | 0x3F81.
  EXPECT_EQ(FloatToBf16(F(0x3F808000)), 0x3F80);
  EXPECT_EQ(FloatToBf16(F(0x3F818000)), 0x3F82);  // tie 0x3F81 | 0x3F82
  EXPECT_EQ(FloatToBf16(F(0x3F808001)), 0x3F81);  // just above the tie
  EXPECT_EQ(FloatToBf16(F(0x3F807FFF)), 0x3F80);  // just below
  EXPECT_EQ(FloatToBf16(F(0xBF818000)), 0xBF82);
  EXPECT_EQ(FloatToBf16(F(0x3F7FFF80)), 0x3F80);  // 0x3F7F | 0x3F80 tie, carry into exponent
  EXPECT_EQ(FloatToBf16(-0.0f), 0x8000);
  EXPECT_EQ(FloatToBf16(F(0x00008000)), 0x0000);  // subnormal tie 0 | 0x0001 -> 0
  EXPECT_EQ(FloatToBf16(F(0x00018000)), 0x0002);  // subnormal tie 0x0001 | 0x0002 -> 0x0002
}

TEST(Bf16Test, FloatToBf16OverflowAndNan) {
  EXPECT_EQ(FloatToBf16(kInf), 0x7F80);
  EXPECT_EQ(FloatToBf16(-kInf), 0xFF80);
  // FLT_MAX is above the midpoint (2 - 2^-8) * 2^127 between bf16 max and 2^128: Inf.
  EXPECT_EQ(FloatToBf16(std::numeric_limits<float>::max()), 0x7F80);
  EXPECT_EQ(FloatToBf16(F(0x7F7F7FFF)), 0x7F7F);  // below that midpoint
  EXPECT_EQ(FloatToBf16(kQuietNan), 0x7FFF);
  EXPECT_EQ(FloatToBf16(-kQuietNan), 0x7FFF);
  // A NaN whose payload sits only in the low 16 bits: naive truncation would make it Inf.
  EXPECT_EQ(FloatToBf16(F(0x7F800001)), 0x7FFF);
  EXPECT_EQ(FloatToBf16(F(0xFF80FFFF)), 0x7FFF);
  EXPECT_EQ(FloatToBf16(F(0x7FFFFFFF)), 0x7FFF);
}

TEST(Bf16Test, FloatToBf16StridedSweepAgainstOracle) {
  for (uint64_t b = 0; b <= 0xFFFFFFFFull; b += 509) {
    const float x = F(static_cast<uint32_t>(b));
    ASSERT_EQ(FloatToBf16(x), OracleBf16(x)) << "bits=0x" << std::hex << b;
  }
  // Every tie point and its neighbours (0x8000 below the kept bits).
  for (uint32_t hi = 0; hi < 0x7F7F; ++hi) {
    for (uint32_t lo : {0x7FFFu, 0x8000u, 0x8001u}) {
      const float x = F((hi << 16) | lo);
      ASSERT_EQ(FloatToBf16(x), OracleBf16(x)) << "bits=0x" << std::hex << ((hi << 16) | lo);
    }
  }
}

TEST(DTypeDispatchTest, ToFloatAndFromFloatPickTheFormat) {
  EXPECT_EQ(ToFloat(0x3C00, DType::kF16), 1.0f);
  EXPECT_EQ(ToFloat(0x3F80, DType::kBF16), 1.0f);
  EXPECT_EQ(FromFloat(1.0f, DType::kF16), 0x3C00);
  EXPECT_EQ(FromFloat(1.0f, DType::kBF16), 0x3F80);
  EXPECT_EQ(FromFloat(kQuietNan, DType::kBF16), 0x7FFF);
}

// ---------------------------------------------------------------------------------------------
// E4M3fn

TEST(E4M3Test, E4M3ToFloatAllCodes) {
  for (uint32_t c = 0; c < 256; ++c) {
    ASSERT_TRUE(SameFloat(E4M3Value(static_cast<uint8_t>(c)), E4M3ToFloat(static_cast<uint8_t>(c))))
        << "c=0x" << std::hex << c;
  }
}

TEST(E4M3Test, E4M3ToFloatHandConstants) {
  EXPECT_EQ(E4M3ToFloat(0x7E), 448.0f);  // e=15, m=6: 2^8 * 1.75
  EXPECT_EQ(E4M3ToFloat(0xFE), -448.0f);
  EXPECT_EQ(E4M3ToFloat(0x7D), 416.0f);        // 2^8 * 1.625
  EXPECT_EQ(E4M3ToFloat(0x78), 256.0f);        // e=15, m=0
  EXPECT_EQ(E4M3ToFloat(0x77), 240.0f);        // e=14, m=7: 2^7 * 1.875
  EXPECT_EQ(E4M3ToFloat(0x38), 1.0f);          // e=7 = bias
  EXPECT_EQ(E4M3ToFloat(0x08), 0.015625f);     // 2^-6, smallest normal
  EXPECT_EQ(E4M3ToFloat(0x07), 0.013671875f);  // 7 * 2^-9, largest subnormal
  EXPECT_EQ(E4M3ToFloat(0x01), 0.001953125f);  // 2^-9, smallest subnormal
  EXPECT_EQ(Bits(E4M3ToFloat(0x00)), 0x00000000u);
  EXPECT_EQ(Bits(E4M3ToFloat(0x80)), 0x80000000u);  // -0
  EXPECT_TRUE(std::isnan(E4M3ToFloat(0x7F)));
  EXPECT_TRUE(std::isnan(E4M3ToFloat(0xFF)));
  // No Inf in E4M3fn: 0x78..0x7E are all finite.
  for (uint32_t c = 0x78; c <= 0x7E; ++c) EXPECT_TRUE(std::isfinite(E4M3ToFloat(c)));
}

TEST(E4M3Test, FloatToE4M3Saturation) {
  EXPECT_EQ(FloatToE4M3(448.0f), 0x7E);
  EXPECT_EQ(FloatToE4M3(464.0f), 0x7E);     // tie 448 (m=110, even) | 480 (not finite)
  EXPECT_EQ(FloatToE4M3(464.0001f), 0x7E);  // past 448 + half ulp: SATFINITE
  EXPECT_EQ(FloatToE4M3(F(0x43E80001)), 0x7E);
  EXPECT_EQ(FloatToE4M3(480.0f), 0x7E);
  EXPECT_EQ(FloatToE4M3(1e30f), 0x7E);
  EXPECT_EQ(FloatToE4M3(kInf), 0x7E);
  EXPECT_EQ(FloatToE4M3(-464.0f), 0xFE);
  EXPECT_EQ(FloatToE4M3(-500.0f), 0xFE);
  EXPECT_EQ(FloatToE4M3(-kInf), 0xFE);
  EXPECT_EQ(FloatToE4M3(440.0f), 0x7E);  // between 416 and 448 (step 32), nearer 448
  EXPECT_EQ(FloatToE4M3(432.0f), 0x7E);  // tie 416 (m=5, odd) | 448 (m=6) -> 448
  EXPECT_EQ(FloatToE4M3(431.0f), 0x7D);  // below the tie -> 416
}

TEST(E4M3Test, FloatToE4M3NanAndZero) {
  EXPECT_EQ(FloatToE4M3(kQuietNan), 0x7F);
  EXPECT_EQ(FloatToE4M3(-kQuietNan), 0x7F);  // sign dropped
  EXPECT_EQ(FloatToE4M3(F(0x7F800001)), 0x7F);
  EXPECT_EQ(FloatToE4M3(F(0xFFFFFFFF)), 0x7F);
  EXPECT_EQ(FloatToE4M3(0.0f), 0x00);
  EXPECT_EQ(FloatToE4M3(-0.0f), 0x80);
  EXPECT_EQ(FloatToE4M3(1e-40f), 0x00);  // fp32 denormal
  EXPECT_EQ(FloatToE4M3(-1e-40f), 0x80);
}

TEST(E4M3Test, FloatToE4M3SubnormalsAndTies) {
  const float q = std::ldexp(1.0f, -10);  // half of the smallest subnormal 2^-9
  EXPECT_EQ(FloatToE4M3(q), 0x00);        // tie 0 | 0x01 -> even 0
  EXPECT_EQ(FloatToE4M3(-q), 0x80);
  EXPECT_EQ(FloatToE4M3(std::nextafter(q, 1.0f)), 0x01);
  EXPECT_EQ(FloatToE4M3(std::ldexp(1.0f, -9)), 0x01);
  EXPECT_EQ(FloatToE4M3(3 * q), 0x02);   // tie 0x01 | 0x02 -> 0x02
  EXPECT_EQ(FloatToE4M3(5 * q), 0x02);   // tie 0x02 | 0x03 -> 0x02
  EXPECT_EQ(FloatToE4M3(15 * q), 0x08);  // tie 7 * 2^-9 (0x07) | 2^-6 (0x08) -> 0x08
  EXPECT_EQ(FloatToE4M3(std::ldexp(1.0f, -6)), 0x08);
  // Normals: in [1, 2) the step is 1/8.
  EXPECT_EQ(FloatToE4M3(1.0f), 0x38);
  EXPECT_EQ(FloatToE4M3(1.0625f), 0x38);  // tie 1.0 (0x38) | 1.125 (0x39) -> 0x38
  EXPECT_EQ(FloatToE4M3(1.1875f), 0x3A);  // tie 0x39 | 0x3A -> 0x3A
  EXPECT_EQ(FloatToE4M3(1.0626f), 0x39);
  EXPECT_EQ(FloatToE4M3(1.9375f), 0x40);  // tie 1.875 (0x3F) | 2.0 (0x40): exponent carry
  EXPECT_EQ(FloatToE4M3(-1.1875f), 0xBA);
  EXPECT_EQ(FloatToE4M3(248.0f), 0x78);  // tie 240 (0x77, odd) | 256 (0x78)
  // 0.3 = 1.2 * 2^-2: exponent field 5, mantissa 1.6 eighths -> 2: 1.25 * 2^-2 = 0.3125.
  EXPECT_EQ(FloatToE4M3(0.3f), 0x2A);
  // 50 = 1.5625 * 2^5: mantissa 4.5 eighths, tie -> 4: field 12 -> 0x64.
  EXPECT_EQ(FloatToE4M3(50.0f), 0x64);
  EXPECT_EQ(FloatToE4M3(-50.0f), 0xE4);
}

TEST(E4M3Test, EncodeOfEveryDecodedCodeIsIdentity) {
  for (uint32_t c = 0; c < 256; ++c) {
    if ((c & 0x7F) == 0x7F) continue;  // NaN
    const uint8_t code = static_cast<uint8_t>(c);
    const float v = E4M3ToFloat(code);
    EXPECT_EQ(FloatToE4M3(v), code) << "c=0x" << std::hex << c;
    EXPECT_EQ(Bits(E4M3ToFloat(FloatToE4M3(v))), Bits(v)) << "c=0x" << std::hex << c;
  }
  EXPECT_EQ(FloatToE4M3(E4M3ToFloat(0x7F)), 0x7F);
  EXPECT_EQ(FloatToE4M3(E4M3ToFloat(0xFF)), 0x7F);
}

TEST(E4M3Test, FloatToE4M3AllHalvesAndMidpointsAgainstOracle) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float x = HalfToFloat(static_cast<uint16_t>(h));
    ASSERT_EQ(FloatToE4M3(x), OracleE4M3(x)) << "x=" << x;
  }
  for (uint32_t c = 0; c < 0x7E; ++c) {
    const float mid = static_cast<float>((E4M3Value(c) + E4M3Value(c + 1)) / 2);
    for (float x : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, kInf)}) {
      ASSERT_EQ(FloatToE4M3(x), OracleE4M3(x)) << "x=" << x;
      ASSERT_EQ(FloatToE4M3(-x), OracleE4M3(-x)) << "x=" << -x;
    }
  }
}

TEST(E4M3Test, FloatToE4M3StridedSweepAgainstOracle) {
  for (uint64_t b = 0; b <= 0xFFFFFFFFull; b += 509) {
    const float x = F(static_cast<uint32_t>(b));
    ASSERT_EQ(FloatToE4M3(x), OracleE4M3(x)) << "bits=0x" << std::hex << b;
  }
}

}  // namespace
}  // namespace kvault::kernels
