#pragma once
// Private to the KV generator: deterministic math that does not depend on the platform's libm,
// and seeded random streams (splitmix64 + ziggurat normals), one per (purpose, layer, head).
// Everything is a pure function or a value type: thread-safe.

#include <cmath>
#include <cstdint>
#include <cstring>

namespace kvault::kernels::generator {

// ---------------------------------------------------------------------------------------------
// Deterministic math. Only +, -, *, /, sqrt, floor and exact scaling (frexp/ldexp) are used, all
// of which IEEE 754 defines exactly, so results do not depend on the platform's libm.

constexpr double kLn2 = 0x1.62e42fefa39efp-1;
constexpr double kTwoPi = 6.283185307179586;

// 1/n for n = 0..18 (index 0 unused); constant-folded with IEEE division.
constexpr double kInv[] = {0.0,      1.0,      1.0 / 2,  1.0 / 3,  1.0 / 4,  1.0 / 5,  1.0 / 6,
                           1.0 / 7,  1.0 / 8,  1.0 / 9,  1.0 / 10, 1.0 / 11, 1.0 / 12, 1.0 / 13,
                           1.0 / 14, 1.0 / 15, 1.0 / 16, 1.0 / 17, 1.0 / 18};

// e^x, relative error ~1e-16 on the range used here.
inline double DetExp(double x) {
  if (x < -740.0) return 0.0;
  if (x > 709.0) return HUGE_VAL;
  const double k = std::floor(x / kLn2 + 0.5);
  const double r = x - k * kLn2;  // |r| <= ~0.35
  // Taylor series to r^14 (truncation < 1e-19), as 1 + r(1 + r/2(1 + r/3(...))).
  double p = 1.0 + r * kInv[14];
  for (int n = 13; n >= 1; --n) p = 1.0 + (r * kInv[n]) * p;
  const int ki = static_cast<int>(k);
  if (ki < -1022) return std::ldexp(p, ki);
  uint64_t bits = static_cast<uint64_t>(ki + 1023) << 52;  // 2^k, exact
  double scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

// Natural logarithm of x > 0.
inline double DetLog(double x) {
  int e = 0;
  double m = std::frexp(x, &e);  // m in [0.5, 1)
  if (m < 0.70710678118654752) {
    m *= 2.0;
    --e;
  }
  const double s = (m - 1.0) / (m + 1.0);  // |s| <= 0.1716
  const double s2 = s * s;
  // 2 atanh(s) = 2 (s + s^3/3 + s^5/5 + ...); s2^12 < 1e-18.
  double p = 1.0 / 25;
  for (int k = 11; k >= 0; --k) p = 1.0 / (2 * k + 1) + s2 * p;
  return e * kLn2 + 2.0 * s * p;
}

// sin and cos of 2*pi*turns.
inline void DetSinCosTurns(double turns, double* sin_out, double* cos_out) {
  const double q = std::floor(turns * 4.0 + 0.5);
  const double x = (turns - q * 0.25) * kTwoPi;  // |x| <= pi/4
  const double x2 = x * x;
  // Taylor series to x^17 / x^18 (truncation < 1e-19 on |x| <= pi/4), nested as
  // x (1 - x^2/(2*3) (1 - x^2/(4*5) (...))) and 1 - x^2/(1*2) (1 - x^2/(3*4) (...)).
  double s = 0.0;
  double c = 0.0;
  for (int n = 17; n >= 3; n -= 2) s = (s + 1.0) * (-x2 * kInv[n - 1] * kInv[n]);
  s = x * (1.0 + s);
  for (int n = 18; n >= 2; n -= 2) c = (c + 1.0) * (-x2 * kInv[n - 1] * kInv[n]);
  c = 1.0 + c;
  const int64_t quadrant = static_cast<int64_t>(q) & 3;  // two's complement: works for q < 0
  switch (quadrant) {
    case 0:
      *sin_out = s, *cos_out = c;
      break;
    case 1:
      *sin_out = c, *cos_out = -s;
      break;
    case 2:
      *sin_out = -s, *cos_out = -c;
      break;
    default:
      *sin_out = -c, *cos_out = s;
      break;
  }
}

// ---------------------------------------------------------------------------------------------
// Random streams: splitmix64, one independent stream per (purpose, layer, head), so any part of
// the tensor can be regenerated alone and K, V and the queries never share draws.

inline uint64_t Mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

enum Purpose : uint64_t {
  kKeyParams = 1,
  kKeys,
  kValueParams,
  kValues,
  kQueryMean,
  kQueries,
  kSinkLogits,
  kBiasLayerDraw,
  kDelimiterDraw,
};

// Ziggurat tables (Doornik 2005, "An Improved Ziggurat Method", 128 blocks).
struct ZigguratTables {
  static constexpr int kBlocks = 128;
  static constexpr double kR = 3.442619855899;       // start of the tail
  static constexpr double kV = 9.91256303526217e-3;  // area of each block
  double x[kBlocks + 1];
  double f[kBlocks + 1];  // exp(-x[i]^2 / 2)
  double ratio[kBlocks];  // x[i+1] / x[i]

  ZigguratTables() {
    // Block i spans [0, x[i]] horizontally and [f(x[i]), f(x[i+1])] vertically; block 0 is the
    // base rectangle plus the tail beyond R.
    double fx = DetExp(-0.5 * kR * kR);
    x[0] = kV / fx;
    x[1] = kR;
    x[kBlocks] = 0.0;
    for (int i = 2; i < kBlocks; ++i) {
      x[i] = std::sqrt(-2.0 * DetLog(kV / x[i - 1] + fx));
      fx = DetExp(-0.5 * x[i] * x[i]);
    }
    for (int i = 0; i <= kBlocks; ++i) f[i] = DetExp(-0.5 * x[i] * x[i]);
    for (int i = 0; i < kBlocks; ++i) ratio[i] = x[i + 1] / x[i];
  }
};

inline const ZigguratTables& Zig() {
  static const ZigguratTables tables;
  return tables;
}

class Rng {
 public:
  explicit Rng(uint64_t state) : state_(state), zig_(Zig()) {}

  uint64_t Next() {
    state_ += 0x9E3779B97F4A7C15ull;
    return Mix64(state_);
  }
  // [0, 1) with 53 random bits.
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
  // (0, 1).
  double UniformOpen() { return (static_cast<double>(Next() >> 11) + 0.5) * 0x1.0p-53; }
  double Uniform(double lo, double hi) { return lo + (hi - lo) * Uniform(); }
  // Integer in [0, n), n > 0 (multiply-shift; bias < 2^-32).
  uint32_t Below(uint32_t n) { return static_cast<uint32_t>(((Next() >> 32) * n) >> 32); }
  double LogNormal(double log_std) { return DetExp(log_std * Normal()); }

  // N(0, 1). Fast path (97% of draws): one 64-bit draw, one compare, one multiply.
  double Normal() {
    const uint64_t r = Next();
    const double u = 2.0 * (static_cast<double>(r >> 11) * 0x1.0p-53) - 1.0;
    const unsigned i = static_cast<unsigned>(r & 0x7F);  // bits unused by u
    if (std::fabs(u) < zig_.ratio[i]) return u * zig_.x[i];
    return NormalSlow(u, i);
  }

 private:
  double NormalSlow(double u, unsigned i) {
    for (;;) {
      if (i == 0) {  // bottom block: the tail beyond R (Marsaglia)
        double x, y;
        do {
          x = DetLog(UniformOpen()) / ZigguratTables::kR;
          y = DetLog(UniformOpen());
        } while (-2.0 * y < x * x);
        return u < 0 ? x - ZigguratTables::kR : ZigguratTables::kR - x;
      }
      // Wedge: accept if a uniform height between f(x[i]) and f(x[i+1]) is under the density.
      const double x = u * zig_.x[i];
      const double y = zig_.f[i] + Uniform() * (zig_.f[i + 1] - zig_.f[i]);
      if (y < DetExp(-0.5 * x * x)) return x;
      const uint64_t r = Next();
      u = 2.0 * (static_cast<double>(r >> 11) * 0x1.0p-53) - 1.0;
      i = static_cast<unsigned>(r & 0x7F);
      if (std::fabs(u) < zig_.ratio[i]) return u * zig_.x[i];
    }
  }

  uint64_t state_;
  const ZigguratTables& zig_;
};

inline Rng Stream(uint64_t seed, Purpose purpose, uint32_t layer = 0, uint32_t head = 0) {
  uint64_t h = Mix64(seed ^ 0x6B7661756C74ull);  // "kvault"
  h = Mix64(h + purpose);
  h = Mix64(h + layer);
  h = Mix64(h + head);
  return Rng(h);
}

}  // namespace kvault::kernels::generator
