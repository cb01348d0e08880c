// Reference codec: the Hadamard rotation (pinned signs, scale and fp32 order of operations) and
// whole-block round trips, size checks and bits per element. Conventions and notation:
// reference_test_util.h.

#include <gtest/gtest.h>
#if defined(__x86_64__)
#include <xmmintrin.h>
#endif

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "kvault/kernels/numeric.h"
#include "kvault/kernels/reference_codec.h"
#include "kvault/kernels/rotation.h"
#include "reference_test_util.h"

namespace kvault::kernels {
namespace {

using namespace reference_test;  // NOLINT(build/namespaces): the shared helpers

// =============================================================================================
// Rotation

TEST(RotationTest, SignsArePinned) {
  // splitmix64 from kRotationSeed = 0x6b7661756c74726f ("kvaultro"), computed independently in
  // Python: first output 0xBA4FAEA6AE7336E8, second 0x09849096F980D2B4. Bit i of a word set ->
  // sign -1. Low byte 0xE8 = 1110'1000b -> bits 3, 5, 6, 7 set.
  const std::vector<float> s16 = RotationSigns(16);
  const std::vector<float> expected16 = {1, 1, 1, -1, 1, -1, -1, -1, 1, -1, -1, 1, -1, -1, 1, 1};
  EXPECT_EQ(s16, expected16);
  const std::vector<float> s128 = RotationSigns(128);
  ASSERT_EQ(s128.size(), 128u);
  const uint64_t words[2] = {0xBA4FAEA6AE7336E8ull, 0x09849096F980D2B4ull};
  for (uint32_t i = 0; i < 128; ++i) {
    EXPECT_EQ(s128[i], ((words[i / 64] >> (i % 64)) & 1) ? -1.0f : 1.0f) << i;
  }
  // Shorter heads use a prefix of the same sequence; the call is deterministic.
  EXPECT_EQ(RotationSigns(128), s128);
  const std::vector<float> s64 = RotationSigns(64);
  EXPECT_TRUE(std::equal(s64.begin(), s64.end(), s128.begin()));
}

TEST(RotationTest, ScaleIsFp32OfInverseSqrt) {
  EXPECT_EQ(std::bit_cast<uint32_t>(RotationScale(8)), 0x3EB504F3u);  // 0.35355338...
  EXPECT_EQ(RotationScale(16), 0.25f);
  EXPECT_EQ(RotationScale(64), 0.125f);
  EXPECT_EQ(std::bit_cast<uint32_t>(RotationScale(128)), 0x3DB504F3u);
  EXPECT_EQ(RotationScale(256), 0.0625f);
}

int Parity(uint32_t v) { return std::popcount(v) & 1; }

TEST(RotationTest, ForwardOfBasisVectorIsSignedHadamardColumn) {
  // forward(e_k) = c * H (s . e_k) = c * s_k * H[:, k], with H[i][k] = (-1)^popcount(i & k)
  // for the butterflies of span 1, 2, 4 (Sylvester order). All values are exactly +-c.
  const uint32_t D = 8;
  const std::vector<float> s = RotationSigns(D);
  const float c = RotationScale(D);
  for (uint32_t k = 0; k < D; ++k) {
    std::vector<float> x(D, 0.0f);
    x[k] = 1.0f;
    RotateForwardReference(x.data(), D, s.data(), c);
    for (uint32_t i = 0; i < D; ++i) {
      EXPECT_EQ(x[i], s[k] * c * (Parity(i & k) ? -1.0f : 1.0f)) << k << " " << i;
    }
    // inverse(e_k) = s . (c * H e_k): x_i = s_i * c * (-1)^popcount(i & k).
    std::vector<float> y(D, 0.0f);
    y[k] = 1.0f;
    RotateInverseReference(y.data(), D, s.data(), c);
    for (uint32_t i = 0; i < D; ++i) {
      EXPECT_EQ(y[i], s[i] * c * (Parity(i & k) ? -1.0f : 1.0f)) << k << " " << i;
    }
  }
}

TEST(RotationTest, InverseUndoesForward) {
  for (uint32_t D : {8u, 16u, 64u, 128u, 256u}) {
    SCOPED_TRACE(D);
    const std::vector<float> s = RotationSigns(D);
    const float c = RotationScale(D);
    std::vector<float> x(D);
    uint32_t state = 12345;
    for (float& v : x) {
      state = state * 1664525u + 1013904223u;
      v = static_cast<float>(static_cast<int32_t>(state >> 8) - (1 << 23)) / (1 << 20);
    }
    std::vector<float> y = x;
    RotateForwardReference(y.data(), D, s.data(), c);
    double nx = 0, ny = 0;
    for (uint32_t i = 0; i < D; ++i) {
      nx += double{x[i]} * x[i];
      ny += double{y[i]} * y[i];
    }
    EXPECT_NEAR(std::sqrt(ny), std::sqrt(nx), 1e-6 * std::sqrt(nx));  // orthonormal
    RotateInverseReference(y.data(), D, s.data(), c);
    double err = 0;
    for (uint32_t i = 0; i < D; ++i) err += (double{y[i]} - x[i]) * (double{y[i]} - x[i]);
    EXPECT_LE(std::sqrt(err), 1e-6 * std::sqrt(nx));
  }
}

TEST(RotationTest, Fp32OrderOfOperationsIsPinned) {
  // A D = 8 vector spanning a wide exponent range, so that the butterfly sums round. Expected
  // bits come from an independent Python transcription of rotation.h (every operation rounded
  // to fp32 through struct 'f'): signs first, butterflies of span 1, 2, 4, then times c;
  // inverse: butterflies, then (v * c) * s_i. Running the spans as 4, 2, 1 changes some bits
  // of both results.
  const uint32_t D = 8;
  const std::vector<float> s = RotationSigns(D);
  const float c = RotationScale(D);
  const uint16_t in[8] = {0xA4B2, 0x69C8, 0x6F90, 0x5711, 0xB396, 0xA38F, 0x4999, 0x05AD};
  const uint32_t fwd[8] = {0x4569C6B2, 0x44D7EA37, 0xC4CDF1B0, 0xC56EC8BF,
                           0x456A47E0, 0x44D8ED3D, 0xC4CEE9FB, 0xC56F448E};
  const uint32_t inv[8] = {0xBC98BC2D, 0x45390000, 0x45F20000, 0x42E21FF5,
                           0xBE72E424, 0xBC733EA7, 0x41331E76, 0x393504F3};
  std::vector<float> x(D);
  for (uint32_t i = 0; i < D; ++i) x[i] = HalfToFloat(in[i]);
  RotateForwardReference(x.data(), D, s.data(), c);
  for (uint32_t i = 0; i < D; ++i) EXPECT_EQ(std::bit_cast<uint32_t>(x[i]), fwd[i]) << i;
  for (uint32_t i = 0; i < D; ++i) x[i] = std::bit_cast<float>(fwd[i]);
  RotateInverseReference(x.data(), D, s.data(), c);
  for (uint32_t i = 0; i < D; ++i) EXPECT_EQ(std::bit_cast<uint32_t>(x[i]), inv[i]) << i;
}

TEST(RotationTest, SpreadsAnOutlier) {
  // x[5] = 1000, the rest in [-1, 1]: every |y_i| is within c * (1000 +- 127) of 1000 / sqrt(128)
  // = 88.4, so max |y| < 100 while max |x| = 1000.
  const uint32_t D = 128;
  const std::vector<float> s = RotationSigns(D);
  std::vector<float> x(D);
  for (uint32_t i = 0; i < D; ++i) x[i] = static_cast<float>(static_cast<int>(i % 7) - 3) / 3.0f;
  x[5] = 1000.0f;
  std::vector<float> y = x;
  RotateForwardReference(y.data(), D, s.data(), RotationScale(D));
  float mx = 0;
  for (float v : y) mx = std::max(mx, std::fabs(v));
  EXPECT_LT(mx, 100.0f);
  EXPECT_GT(mx, 77.0f);
}

TEST(RotationTest, Fp8RotOfBasisVectorIsExact) {
  // D = 16, x = e_0 (1.0 in channel 0, sign s_0 = +1). Forward: all y_i = 0.25 (c = 1/4).
  // amax = 0.25: 0.25 / 448 = 5.5804e-4, spacing 2^-21 in [2^-11, 2^-10): 1170.29 -> 1170,
  // s = 1170 * 2^-21 (fp16 0x1000 + 146 = 0x1092). y / s = 448.11 -> 0x7E for all 16 codes.
  // Decode: 448 * s = 524160 * 2^-21 for every channel; H of a constant vector v is
  // [16 v, +0, ..., +0]; x_0 = (16 v * 0.25) * 1 = 524160 * 2^-19 = 0.999755859375 = 2047.5 *
  // 2^-11, tie -> 1.0 (0x3C00). x_i = (+0 * 0.25) * s_i: -0 (0x8000) where s_i = -1.
  const BlockLayout l = Layout(1, 1, 16);
  Halves x(16, 0);
  x[0] = kOne;
  const SectionCodec c = Codec(CodecId::kFp8, 0, true);
  const Bytes enc = Encode(x, c, false, l);
  Bytes expected(16, 0x7E);
  PutHalf(expected, 0x1092);
  expected.resize(32, 0);
  EXPECT_BYTES(expected, enc);
  const std::vector<float> signs = {1, 1, 1, -1, 1, -1, -1, -1, 1, -1, -1, 1, -1, -1, 1, 1};
  Halves decoded(16);
  decoded[0] = 0x3C00;
  for (int i = 1; i < 16; ++i) decoded[i] = signs[i] < 0 ? kNegZero : kZero;
  EXPECT_HALVES(decoded, Decode(enc, c, false, l));
}

// =============================================================================================
// Whole blocks

// Deterministic KV with outlier channels (x20 on channels 3 and 77), per-token gains and a few
// sink-like tokens: enough structure to exercise every codec path.
std::vector<float> MakeKv(uint32_t layers, uint32_t tokens, uint32_t heads, uint32_t dim,
                          uint32_t seed) {
  std::vector<float> out(uint64_t{layers} * 2 * tokens * heads * dim);
  uint64_t state = seed;
  auto next = [&]() {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<float>(static_cast<int64_t>(state >> 40) - (1 << 23)) / (1 << 23);
  };
  for (uint64_t i = 0; i < out.size(); ++i) {
    const uint32_t c = i % dim;
    const uint32_t t = (i / (uint64_t{heads} * dim)) % tokens;
    float v = next();
    if (c == 3 || c == 77) v *= 20.0f;
    v *= 0.5f + static_cast<float>(t % 5) * 0.25f;
    out[i] = v;
  }
  return out;
}

TEST(ReferenceBlockTest, RoundTripWithinPerCodecBounds) {
  const uint32_t L = 5, T = 70, H = 2, D = 128, S = 3;
  for (DType dt : {DType::kF16, DType::kBF16}) {
    SCOPED_TRACE(DTypeName(dt));
    const double u = dt == DType::kF16 ? std::ldexp(1.0, -11) : std::ldexp(1.0, -8);
    BlockDescriptor d;
    d.key[0] = 7;
    d.ns_digest[31] = 9;
    d.layout = {L, H, D, T, dt, S};
    d.layers = {
        {Codec(CodecId::kRaw), Codec(CodecId::kRaw)},
        {Codec(CodecId::kFp8), Codec(CodecId::kInt8)},
        {Codec(CodecId::kInt4, 64), Codec(CodecId::kInt4, 32)},  // 67 tokens: partial group
        {Codec(CodecId::kInt2, 64), Codec(CodecId::kInt2, 64)},
        {Codec(CodecId::kInt4, 32, true), Codec(CodecId::kFp8, 0, true)},
    };
    const std::vector<float> kv = MakeKv(L, T, H, D, 99);
    std::vector<uint16_t> src(kv.size());
    for (size_t i = 0; i < kv.size(); ++i) src[i] = FromFloat(kv[i], dt);

    Result<std::vector<uint8_t>> obj = ReferenceEncodeBlock(d, src);
    ASSERT_TRUE(obj.ok()) << obj.status().ToString();
    Result<BlockView> view = ParseBlockObject(*obj);
    ASSERT_TRUE(view.ok()) << view.status().ToString();
    EXPECT_EQ(view->descriptor.layout, d.layout);
    std::vector<uint16_t> out(src.size(), 0xDEAD);
    ASSERT_TRUE(ReferenceDecodeBlock(*view, out).ok());

    const uint64_t sec_elems = uint64_t{T} * H * D;
    for (uint32_t layer = 0; layer < L; ++layer) {
      for (int kv_i = 0; kv_i < 2; ++kv_i) {
        SCOPED_TRACE("layer " + std::to_string(layer) + (kv_i ? " V" : " K"));
        const SectionCodec& c = kv_i ? d.layers[layer].v : d.layers[layer].k;
        const bool is_key = kv_i == 0;
        const uint16_t* x = &src[(2 * layer + kv_i) * sec_elems];
        const uint16_t* y = &out[(2 * layer + kv_i) * sec_elems];
        const std::span<const uint8_t> sec = view->Section(layer, kv_i);
        const SectionLayout sl = SectionLayoutFor(c, is_key, d.layout);
        // The section in the object is exactly what ReferenceEncodeSection writes.
        Bytes alone(sl.padded_bytes);
        ReferenceEncodeSection(x, c, is_key, d.layout, alone.data());
        ASSERT_EQ(Bytes(sec.begin(), sec.end()), alone);
        // Sink tokens (and raw sections) come back bit for bit.
        const uint64_t exact = c.codec == CodecId::kRaw ? sec_elems : uint64_t{S} * H * D;
        ASSERT_EQ(std::memcmp(x, y, exact * 2), 0);
        if (c.codec == CodecId::kRaw) continue;

        const uint8_t* params = sec.data() + sl.sink_bytes + sl.code_bytes;
        const uint64_t Q = T - S;
        const std::vector<float> signs = RotationSigns(D);
        double worst = 0;  // largest error / bound seen
        for (uint64_t v = 0; v < Q * H; ++v) {
          const uint64_t t = v / H, h = v % H;
          std::vector<float> xf(D), yf(D), target(D);
          for (uint32_t i = 0; i < D; ++i) {
            xf[i] = ToFloat(x[(S * H + v) * D + i], dt);
            yf[i] = ToFloat(y[(S * H + v) * D + i], dt);
          }
          target = xf;  // the quantized domain
          if (c.rotate) RotateForwardReference(target.data(), D, signs.data(), RotationScale(D));
          // Per-element bound in the quantized domain.
          std::vector<double> bound(D);
          float amax = 0;
          for (float a : target) amax = std::max(amax, std::fabs(a));
          for (uint32_t i = 0; i < D; ++i) {
            switch (c.codec) {
              case CodecId::kFp8:
                // E4M3 keeps 3 mantissa bits: half a step is <= 2^-4 of the value <= amax.
                bound[i] = std::ldexp(amax, -4);
                break;
              case CodecId::kInt8:
                bound[i] = 0.5 * HalfToFloat(GetHalf(params + 2 * v)) * (1 + 1e-6);
                break;
              default: {
                uint64_t p;
                if (is_key) {
                  const uint64_t groups = (Q + c.group - 1) / c.group;
                  p = (h * groups + t / c.group) * D + i;
                } else {
                  const uint64_t groups = (D + c.group - 1) / c.group;
                  p = v * groups + i / c.group;
                }
                const double scale = HalfToFloat(GetHalf(params + 4 * p));
                const double zero = HalfToFloat(GetHalf(params + 4 * p + 2));
                // Half a step, plus the fp16 rounding of zero and scale (which can push the
                // extremes past the clamp) and fp32 rounding.
                bound[i] =
                    0.5 * scale +
                    std::ldexp(1.0, -10) * (std::fabs(target[i]) + std::fabs(zero) + 16 * scale) +
                    1e-7;
              }
            }
          }
          if (!c.rotate) {
            for (uint32_t i = 0; i < D; ++i) {
              const double err = std::fabs(double{xf[i]} - yf[i]);
              const double b = bound[i] + u * std::fabs(yf[i]);
              worst = std::max(worst, err / b);
              ASSERT_LE(err, b) << "t " << t << " h " << h << " c " << i;
            }
          } else {
            // The inverse rotation is orthonormal: the L2 error of the vector is bounded by the
            // L2 norm of the per-element bounds, plus rounding of the rotation and the output.
            double err2 = 0, b2 = 0, ny2 = 0, nx2 = 0;
            for (uint32_t i = 0; i < D; ++i) {
              err2 += (double{xf[i]} - yf[i]) * (double{xf[i]} - yf[i]);
              b2 += bound[i] * bound[i];
              ny2 += double{yf[i]} * yf[i];
              nx2 += double{xf[i]} * xf[i];
            }
            const double b = std::sqrt(b2) + u * std::sqrt(ny2) + 1e-5 * std::sqrt(nx2);
            worst = std::max(worst, std::sqrt(err2) / b);
            ASSERT_LE(std::sqrt(err2), b) << "t " << t << " h " << h;
          }
        }
        EXPECT_GT(worst, 0.05) << "bound is suspiciously loose";
      }
    }
  }
}

TEST(ReferenceBlockTest, WrongSizesAreInvalidArgument) {
  BlockDescriptor d;
  d.layout = {2, 1, 8, 4, DType::kF16, 0};
  d.layers = {{Codec(CodecId::kInt4, 2), Codec(CodecId::kFp8)},
              {Codec(CodecId::kRaw), Codec(CodecId::kInt8)}};
  const size_t n = 2 * 2 * 4 * 1 * 8;
  std::vector<uint16_t> src(n, 0x3C00);
  for (size_t bad : {n - 1, n + 1, size_t{0}, n / 2}) {
    Result<std::vector<uint8_t>> r = ReferenceEncodeBlock(d, std::span(src.data(), bad));
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  }
  Result<std::vector<uint8_t>> obj = ReferenceEncodeBlock(d, src);
  ASSERT_TRUE(obj.ok());
  Result<BlockView> view = ParseBlockObject(*obj);
  ASSERT_TRUE(view.ok());
  for (size_t bad : {n - 1, n + 1, size_t{0}}) {
    std::vector<uint16_t> dst(bad);
    Status s = ReferenceDecodeBlock(*view, dst);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << bad;
  }
  std::vector<uint16_t> dst(n);
  ASSERT_TRUE(ReferenceDecodeBlock(*view, dst).ok());
  EXPECT_EQ(dst[0], 0x3C00);

  // Invalid descriptors: layer count mismatch, rot without a power-of-two head_dim.
  BlockDescriptor wrong = d;
  wrong.layers.pop_back();
  EXPECT_EQ(ReferenceEncodeBlock(wrong, src).status().code(), StatusCode::kInvalidArgument);
  BlockDescriptor rot24;
  rot24.layout = {1, 1, 24, 1, DType::kF16, 0};
  rot24.layers = {{Codec(CodecId::kFp8, 0, true), Codec(CodecId::kFp8)}};
  EXPECT_EQ(ReferenceEncodeBlock(rot24, std::vector<uint16_t>(48)).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(ReferenceBlockTest, BitsPerElementAtHeadDim128) {
  // 64 tokens, 8 heads, D = 128, no sink. Per element: codes + metadata.
  //   fp8/int8: 8 + 16 bits per 128-element vector = 8.125
  //   int4 g=64: 4 + 32 bits per 64 elements = 4.5 (K: per channel per 64 tokens, the same)
  //   int2 g=64: 2 + 0.5 = 2.5;  raw: 16
  struct Case {
    LayerCodec codec;
    double bits;
  };
  const std::vector<Case> cases = {
      {{Codec(CodecId::kRaw), Codec(CodecId::kRaw)}, 16.0},
      {{Codec(CodecId::kFp8), Codec(CodecId::kFp8)}, 8.125},
      {{Codec(CodecId::kInt8), Codec(CodecId::kInt8)}, 8.125},
      {{Codec(CodecId::kInt4, 64), Codec(CodecId::kInt4, 64)}, 4.5},
      {{Codec(CodecId::kInt2, 64), Codec(CodecId::kInt2, 64)}, 2.5},
      {{Codec(CodecId::kInt4, 64), Codec(CodecId::kInt2, 64)}, 3.5},
      {{Codec(CodecId::kInt4, 32), Codec(CodecId::kInt4, 32)}, 5.0},
  };
  for (const Case& c : cases) {
    BlockDescriptor d;
    d.layout = {1, 8, 128, 64, DType::kF16, 0};
    d.layers = {c.codec};
    Result<BlockGeometry> g = ComputeGeometry(d);
    ASSERT_TRUE(g.ok());
    EXPECT_DOUBLE_EQ(BitsPerElement(*g, d.layout), c.bits)
        << CodecName(c.codec.k.codec) << "/" << CodecName(c.codec.v.codec);
  }
}

// =============================================================================================
// The caller's floating-point environment

#if defined(__x86_64__)
// MXCSR: the default (exceptions masked, round to nearest even, no flush-to-zero), and bits a
// host process may have set on the calling thread.
constexpr unsigned kDefaultMxcsr = 0x1F80;
constexpr unsigned kFlushToZero = 0x8040;  // FTZ | DAZ (-ffast-math, torch.set_flush_denormal)
constexpr unsigned kRoundingControlMask = 0x6000;
constexpr unsigned kRoundTowardZero = 0x6000;

// Runs `fn` with MXCSR = (saved & ~clear) | set and restores the saved value. Returns the MXCSR
// `fn` left behind, which the section functions must not have changed.
template <typename Fn>
unsigned WithMxcsr(unsigned clear, unsigned set, Fn fn) {
  const unsigned saved = _mm_getcsr();
  _mm_setcsr((saved & ~clear) | set);
  fn();
  const unsigned after = _mm_getcsr();
  _mm_setcsr(saved);
  return after;
}

// "" when equal, else the number of differing positions and the first of them.
template <typename T>
std::string Differences(const std::vector<T>& want, const std::vector<T>& got) {
  if (want.size() != got.size()) return "sizes differ";
  size_t n = 0, first = 0;
  for (size_t i = want.size(); i-- > 0;) {
    if (want[i] != got[i]) ++n, first = i;
  }
  if (n == 0) return "";
  return std::to_string(n) + " differ, first at " + std::to_string(first) + ": want " +
         std::to_string(want[first]) + ", got " + std::to_string(got[first]);
}

// Every codec with and without rotation, as K and as V: encoding `src` and decoding the
// default-mode bytes with the MXCSR bits `clear` cleared and `set` set must give the default
// mode's bytes and elements, and leave the caller's MXCSR as it was.
void ExpectSameBytesUnder(unsigned clear, unsigned set, const Halves& src, const BlockLayout& l) {
  for (CodecId id : {CodecId::kFp8, CodecId::kInt8, CodecId::kInt4, CodecId::kInt2}) {
    for (bool rotate : {false, true}) {
      for (bool is_key : {true, false}) {
        SCOPED_TRACE(std::string(CodecName(id)) + (rotate ? " rot" : "") + (is_key ? " K" : " V"));
        const SectionCodec c = Codec(id, IsGroupedCodec(id) ? 8 : 0, rotate);
        Bytes want;
        Halves want_decoded;
        WithMxcsr(~0u, kDefaultMxcsr, [&] {
          want = Encode(src, c, is_key, l);
          want_decoded = Decode(want, c, is_key, l);
        });
        Bytes got;
        Halves got_decoded;
        const unsigned after = WithMxcsr(clear, set, [&] {
          got = Encode(src, c, is_key, l);
          got_decoded = Decode(want, c, is_key, l);
        });
        EXPECT_EQ(after & (clear | set), set) << "the caller's MXCSR was not restored";
        EXPECT_EQ(Differences(want, got), "") << "encoded bytes";
        EXPECT_EQ(Differences(want_decoded, got_decoded), "") << "decoded elements";
      }
    }
  }
}

// bf16 inputs of both signs in and just above the subnormal range (exponents 0 and 1, so that
// the rotation's sums and its scale by 1/sqrt(D) produce fp32 subnormals): a caller with
// flush-to-zero and denormals-are-zero on gets the bytes of the default mode. (Only encoding
// meets subnormals; decoded values are multiples of an fp16 scale's 2^-24 times E4M3's 2^-9.)
TEST(ReferenceSectionTest, TheCallersFlushToZeroChangesNoByte) {
  const BlockLayout l = Layout(16, 2, 32, /*sink=*/2, DType::kBF16);
  Halves src(uint64_t{l.block_tokens} * l.kv_heads * l.head_dim);
  for (size_t i = 0; i < src.size(); ++i) {
    const uint16_t mantissa = static_cast<uint16_t>(1 + (i * 37) % 127);
    src[i] =
        static_cast<uint16_t>((i % 3 == 0 ? 0x8000 : 0) | (i % 11 == 0 ? 0x0080 : 0) | mantissa);
  }
  // Positive control: the rotated fp32 intermediates hold subnormals.
  const std::vector<float> signs = RotationSigns(l.head_dim);
  uint64_t subnormal = 0;
  for (uint64_t v = 0; v < src.size() / l.head_dim; ++v) {
    std::vector<float> x(l.head_dim);
    for (uint32_t i = 0; i < l.head_dim; ++i) x[i] = Bf16ToFloat(src[v * l.head_dim + i]);
    RotateForwardReference(x.data(), l.head_dim, signs.data(), RotationScale(l.head_dim));
    for (float f : x) subnormal += std::fpclassify(f) == FP_SUBNORMAL;
  }
  ASSERT_GT(subnormal, 0u);
  ExpectSameBytesUnder(0, kFlushToZero, src, l);
}

// The section functions also round to nearest even when the caller chose another rounding mode;
// here decoding (the rotation's fp32 sums and products) would give other elements too.
TEST(ReferenceSectionTest, TheCallersRoundingModeChangesNoByte) {
  const BlockLayout l = Layout(64, 4, 128, /*sink=*/1, DType::kF16);
  Halves src(uint64_t{l.block_tokens} * l.kv_heads * l.head_dim);
  uint32_t state = 2024;
  for (uint16_t& h : src) {
    state = state * 1664525u + 1013904223u;
    const float v = static_cast<float>(static_cast<int32_t>(state >> 8) - (1 << 23)) / (1 << 21);
    h = FloatToHalf(v);
  }
  ExpectSameBytesUnder(kRoundingControlMask, kRoundTowardZero, src, l);
}
#else
TEST(ReferenceSectionTest, TheCallersFloatingPointModeChangesNoByte) {
  GTEST_SKIP() << "MXCSR is x86's";
}
#endif  // defined(__x86_64__)

}  // namespace
}  // namespace kvault::kernels
