// The CUDA codec's division-free quotients (kernels/src/cuda/quotient.h), checked on the CPU
// against what the reference computes with IEEE division: the same fp16 scale, the same int4/int2
// code, the same fp8/int8 quotient. The kernels run these very functions on the GPU; the gpu
// tests then compare the kernels' bytes with the reference's.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "cuda/quotient.h"
#include "kvault/kernels/numeric.h"

namespace kvault::kernels::cuda_detail {
namespace {

// The reference's int4/int2 code (DESIGN.md §6): 0 when scale == 0, else
// clamp(rne((x - zero) / scale), 0, levels), NaN -> 0.
uint32_t ReferenceCode(float x, float scale, float zero, float levels) {
  if (scale == 0.0f) return 0;
  const float q = (x - zero) / scale;
  if (std::isnan(q)) return 0;
  return static_cast<uint32_t>(std::nearbyint(std::fmin(std::fmax(q, 0.0f), levels)));
}

uint32_t KernelCode(float x, const AsymQuantizer& q, float levels) {
  const float v = AsymQuotient(x, q);
  if (std::isnan(v)) return 0;
  return static_cast<uint32_t>(std::nearbyint(std::fmin(std::fmax(v, 0.0f), levels)));
}

// Positive finite fp16 values, as fp32.
std::vector<float> PositiveHalves() {
  std::vector<float> v;
  for (uint32_t h = 1; h < 0x7C00u; ++h) v.push_back(HalfToFloat(static_cast<uint16_t>(h)));
  return v;
}

template <int kD>
void ExpectScalesMatchDivision() {
  SCOPED_TRACE("divisor " + std::to_string(kD));
  const float d = static_cast<float>(kD);
  uint64_t checked = 0, mismatches = 0, plain_mismatches = 0;
  auto check = [&](float n) {
    ++checked;
    const uint16_t want = FloatToHalf(n / d);
    if (FloatToHalf(DivideForScale<kD>(n)) != want && ++mismatches <= 5) {
      ADD_FAILURE() << "n = " << n << " (bits " << FloatBits(n) << ")";
    }
    // Without the correction step the quotient is often off by an ulp: the positive control
    // that this sample can tell the two apart.
    if (FloatToHalf(n * (1.0f / d)) != want) ++plain_mismatches;
  };
  // A spread of every binade, +Inf and NaNs.
  for (uint64_t bits = 0; bits <= 0x7FFFFFFFu; bits += 4099) check(BitsFloat(bits));
  for (uint32_t bits : {0x7F800000u, 0x7F800001u, 0x7FC00000u, 0x7FFFFFFFu}) {
    check(BitsFloat(bits));
  }
  // Where fp16 rounding decides: n / d near the midpoint of two neighbouring fp16 values.
  const std::vector<float> halves = PositiveHalves();
  for (size_t i = 0; i + 1 < halves.size(); ++i) {
    const float mid = static_cast<float>(0.5 * (double{halves[i]} + double{halves[i + 1]}) * kD);
    float n = mid;
    for (int s = 0; s < 3; ++s) n = std::nextafter(n, 0.0f);
    for (int s = 0; s < 7; ++s, n = std::nextafter(n, INFINITY)) check(n);
  }
  EXPECT_EQ(mismatches, 0u) << "of " << checked;
  EXPECT_GT(plain_mismatches, 0u) << "the sample never needs the correction step";
}

TEST(CudaQuotientTest, ScalesRoundLikeIeeeDivision) {
  ExpectScalesMatchDivision<3>();
  ExpectScalesMatchDivision<15>();
  ExpectScalesMatchDivision<127>();
  ExpectScalesMatchDivision<448>();
}

TEST(CudaQuotientTest, SymmetricQuotientEqualsIeeeDivision) {
  // Every positive finite fp16 scale against fp16 and bf16 inputs (the codecs' inputs before
  // rotation) whose quotient stays within the codecs' range (|x| <= 448 s for fp8).
  std::mt19937 rng(7);
  uint64_t checked = 0, mismatches = 0;
  for (float s : PositiveHalves()) {
    const float r = 1.0f / s;
    for (int i = 0; i < 24; ++i) {
      const uint32_t raw = rng();
      const bool bf16 = (i & 1) != 0;
      const float x = bf16 ? Bf16ToFloat(static_cast<uint16_t>(raw)) : HalfToFloat(raw & 0xFFFFu);
      if (!std::isfinite(x) || std::fabs(x) > 448.0f * s) continue;
      ++checked;
      const float want = x / s, got = ExactQuotient(x, s, r);
      if (std::fabs(want) < 0x1p-100f) {
        // Below 2^-100 only the sign matters (fp8 and int8 both code it as a zero).
        if (std::signbit(want) != std::signbit(got) || std::fabs(got) >= 0x1p-99f) ++mismatches;
      } else if (FloatBits(want) != FloatBits(got)) {
        if (++mismatches <= 5) ADD_FAILURE() << x << " / " << s << ": " << got << " != " << want;
      }
    }
  }
  EXPECT_GT(checked, 100000u);
  EXPECT_EQ(mismatches, 0u) << "of " << checked;
  // -0 keeps its sign (E4M3 has a -0 code).
  EXPECT_TRUE(std::signbit(ExactQuotient(-0.0f, 1.0f, 1.0f)));
}

// A group as the kernels see it: min/max of its values, the reference's fp16 scale and zero.
struct Group {
  float scale, zero;
};
Group GroupOf(const float* v, int n, float levels) {
  float mn = INFINITY, mx = -INFINITY;
  for (int i = 0; i < n; ++i) {
    if (std::isnan(v[i])) continue;
    mn = std::fmin(mn, v[i]);
    mx = std::fmax(mx, v[i]);
  }
  if (mn > mx) mn = mx = 0.0f;
  mn += 0.0f;
  mx += 0.0f;
  return {HalfToFloat(FloatToHalf((mx - mn) / levels)), HalfToFloat(FloatToHalf(mn))};
}

TEST(CudaQuotientTest, AsymmetricCodesEqualTheReferences) {
  const float specials[] = {0.0f,      -0.0f,    INFINITY,  -INFINITY, NAN,       65504.0f,
                            -65504.0f, 65520.0f, -65520.0f, 70000.0f,  -70000.0f, 3e38f,
                            -3e38f,    1e-40f,   -1e-40f,   448.0f};
  std::mt19937_64 rng(11);
  auto random_value = [&]() {
    const uint64_t kind = rng() % 20;
    if (kind < 2) return specials[rng() % std::size(specials)];
    const int e = static_cast<int>(rng() % 80) - 40;
    const float m = std::ldexp(static_cast<float>(rng() % (1u << 24)) / (1u << 24), e);
    const float v = kind < 4 ? m * 1e4f : m;
    return (rng() & 1) ? -v : v;
  };
  std::normal_distribution<float> normal(0.0f, 1.0f);
  uint64_t checked = 0, mismatches = 0, in_groups = 0, nonzero = 0, plain_mismatches = 0;
  for (float levels : {15.0f, 3.0f}) {
    for (int g = 0; g < 200000; ++g) {
      // Half the groups mix every magnitude and the specials; half are KV-like: values around
      // an offset, which use the whole code range.
      float v[8];
      const float offset = random_value(), spread = std::fabs(random_value());
      for (float& x : v) x = g % 2 ? random_value() : offset + spread * normal(rng);
      const Group grp = GroupOf(v, 8, levels);
      const AsymQuantizer q = MakeAsymQuantizer(grp.scale, grp.zero);
      for (float x : v) {
        ++checked;
        ++in_groups;
        const uint32_t want = ReferenceCode(x, grp.scale, grp.zero, levels);
        nonzero += want != 0;
        if (KernelCode(x, q, levels) != want && ++mismatches <= 5) {
          ADD_FAILURE() << "x " << x << " scale " << grp.scale << " zero " << grp.zero;
        }
        // Without the correction step some codes come out one off: the positive control.
        const float plain = (x - q.zero) * q.recip;
        if (!std::isnan(plain) && std::isfinite(grp.scale) && grp.scale > 0.0f &&
            static_cast<uint32_t>(std::nearbyint(std::fmin(std::fmax(plain, 0.0f), levels))) !=
                want) {
          ++plain_mismatches;
        }
      }
    }
    // Every fp16 scale, at the values where rounding to a code changes: (k + 1/2) * scale.
    for (float s : PositiveHalves()) {
      const AsymQuantizer q = MakeAsymQuantizer(s, 0.0f);
      for (int k = 0; k < static_cast<int>(levels); ++k) {
        float x = (static_cast<float>(k) + 0.5f) * s;
        for (int i = 0; i < 2; ++i) x = std::nextafter(x, 0.0f);
        for (int i = 0; i < 5; ++i, x = std::nextafter(x, INFINITY)) {
          ++checked;
          if (KernelCode(x, q, levels) != ReferenceCode(x, s, 0.0f, levels) && ++mismatches <= 5) {
            ADD_FAILURE() << "x " << x << " scale " << s;
          }
        }
      }
    }
  }
  EXPECT_EQ(mismatches, 0u) << "of " << checked;
  EXPECT_GT(nonzero, in_groups / 8) << "the groups should use more codes than 0";
  EXPECT_GT(plain_mismatches, 0u) << "the sample never needs the correction step";
}

TEST(CudaQuotientTest, DegenerateGroupsCodeLikeTheReference) {
  // Scale 0 (a constant group), +Inf and NaN: every code 0; a zero that overflowed fp16 (-Inf)
  // with a finite scale: every non-NaN value codes to the top level.
  for (float scale : {0.0f, INFINITY, NAN}) {
    const AsymQuantizer q = MakeAsymQuantizer(scale, 1.0f);
    for (float x : {0.0f, 1.0f, -5.0f, 65504.0f, INFINITY, -INFINITY, NAN}) {
      EXPECT_EQ(KernelCode(x, q, 15.0f), ReferenceCode(x, scale, 1.0f, 15.0f)) << scale << " " << x;
      EXPECT_EQ(KernelCode(x, q, 15.0f), 0u);
    }
  }
  const AsymQuantizer q = MakeAsymQuantizer(4668.0f, -INFINITY);
  for (float x : {0.0f, -70000.0f, 65504.0f, INFINITY}) {
    EXPECT_EQ(KernelCode(x, q, 15.0f), ReferenceCode(x, 4668.0f, -INFINITY, 15.0f));
    EXPECT_EQ(KernelCode(x, q, 15.0f), 15u);
  }
  EXPECT_EQ(KernelCode(NAN, q, 15.0f), 0u);
  EXPECT_EQ(KernelCode(-INFINITY, q, 15.0f), ReferenceCode(-INFINITY, 4668.0f, -INFINITY, 15.0f));
}

}  // namespace
}  // namespace kvault::kernels::cuda_detail
