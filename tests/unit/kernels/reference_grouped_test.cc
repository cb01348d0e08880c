// Reference codec, worked examples: int4 and int2 (asymmetric groups: V per token over channels,
// K per channel over tokens) and the index order of every section's parameters. Conventions
// and notation: reference_test_util.h.

#include <gtest/gtest.h>

#include <cstdint>

#include "kvault/kernels/numeric.h"
#include "kvault/kernels/reference_codec.h"
#include "reference_test_util.h"

namespace kvault::kernels {
namespace {

using namespace reference_test;  // NOLINT(build/namespaces): the shared helpers

// =============================================================================================
// int4 / int2 values: per token over groups of g channels

TEST(ReferenceInt4Test, ValueGroupsKnownCodes) {
  // One token, D = 16, g = 8: two groups.
  // Group 0: mn = -1.5, mx = 6 -> scale = fp16(7.5 / 15) = 0.5 = 0x3800, zero = -1.5 = 0xBE00.
  //   (x - zero) / scale:  -1.5 -> 0;  6 -> 15;  0 -> 3;  1.25 -> 5.5 -> 6 (tie, even);
  //   1.75 -> 6.5 -> 6 (tie, even);  2 -> 7;  fp16(0.2) = 0.199951171875 -> 3.3999 -> 3;
  //   -1 -> 1.  Decode fmaf(q, 0.5, -1.5): -1.5, 6, 0, 1.5, 1.5, 2, 0, -1.
  // Group 1: mn = 0, mx = 1 -> 1 / 15 = 0.0666..., spacing 2^-14: 1092.27 -> 1092,
  //   scale = 0.066650390625 = 0x2C44, zero = 0.  x / scale:
  //   0 -> 0;  1 -> 15.0037 -> 15;  0.5 -> 7.5018 -> 8;  0.25 -> 3.7509 -> 4;
  //   0.75 -> 11.2527 -> 11;  fp16(0.1) = 0.0999755859375 = 1.5 * scale exactly -> tie -> 2;
  //   fp16(0.9) = 0.89990234375 -> 13.5018 -> 14;  fp16(0.3) = 0.300048828125 -> 4.5018 -> 5.
  //   Decode q * scale, then fp16:  15 -> 0.999755859375 = 2047.5 * 2^-11, tie -> 1.0 (0x3C00);
  //   8 -> 0.533203125 (0x3844);  4 -> 0.2666015625 (0x3444);  11 -> 0.733154296875 =
  //   1501.5 * 2^-11, tie -> 1502 -> 0x39DE;  2 -> 0.13330078125 (0x3044);
  //   14 -> 0.93310546875 (0x3B77);  5 -> 0.333251953125 (0x3555).
  const BlockLayout l = Layout(1, 1, 16);
  const Halves x = {0xBE00, 0x4600, 0x0000, 0x3D00, 0x3F00, 0x4000, 0x3266, 0xBC00,
                    0x0000, 0x3C00, 0x3800, 0x3400, 0x3A00, 0x2E66, 0x3B33, 0x34CD};
  const SectionCodec c = Codec(CodecId::kInt4, 8);
  const Bytes enc = Encode(x, c, false, l);
  // Codes g0 [0,15,3,6,6,7,3,1], g1 [0,15,8,4,11,2,14,5], element 0 in the low nibble.
  // Params [token][head][group] = (scale, zero) pairs.
  EXPECT_BYTES((Bytes{0xF0, 0x63, 0x76, 0x13, 0xF0, 0x48, 0x2B, 0x5E,  //
                      0x00, 0x38, 0x00, 0xBE, 0x44, 0x2C, 0x00, 0x00}),
               enc);
  EXPECT_HALVES((Halves{0xBE00, 0x4600, 0x0000, 0x3E00, 0x3E00, 0x4000, 0x0000, 0xBC00, 0x0000,
                        0x3C00, 0x3844, 0x3444, 0x39DE, 0x3044, 0x3B77, 0x3555}),
                Decode(enc, c, false, l));
}

TEST(ReferenceInt4Test, DividesByTheScale) {
  // mn = 0x3C05 = 1.0048828125, mx = 0x47A8 = 7.65625: (mx - mn) / 15 = 0.4434245, spacing
  // 2^-12: 1816.27 -> 1816, scale = 0.443359375 = 0x3718, zero = 0x3C05.
  // x = 0x3EAE = 1.669921875: (x - zero) / scale = 0.6650390625 / 0.443359375 = 1.5 exactly ->
  // 2 (even); multiplying by fp32(1 / scale) gives 1.4999999 -> 1.
  // mx -> 6.6513671875 / scale = 15.0022 -> 15. Decode fmaf(15, scale, zero) = 7.6552734375,
  // spacing 2^-8: 1959.75 -> 7.65625 (0x47A8); fmaf(2, scale, zero) = 1.8916015625 = 0x3F91.
  const BlockLayout l = Layout(1, 1, 8);
  const Halves x = {0x3C05, 0x47A8, 0x3EAE, 0x3C05, 0x3C05, 0x3C05, 0x3C05, 0x3C05};
  const SectionCodec c = Codec(CodecId::kInt4, 8);
  const Bytes enc = Encode(x, c, false, l);
  // Codes [0, 15, 2, 0, 0, 0, 0, 0] -> 0xF0, 0x02, 0x00, 0x00.
  EXPECT_BYTES((Bytes{0xF0, 0x02, 0x00, 0x00, 0x18, 0x37, 0x05, 0x3C, 0, 0, 0, 0, 0, 0, 0, 0}),
               enc);
  EXPECT_HALVES((Halves{0x3C05, 0x47A8, 0x3F91, 0x3C05, 0x3C05, 0x3C05, 0x3C05, 0x3C05}),
                Decode(enc, c, false, l));
}

TEST(ReferenceInt4Test, ConstantGroupHasScaleZero) {
  // mn == mx = 2.5 -> scale = 0, zero = 2.5 (0x4100), all codes 0, decode = zero.
  // Second group: mn = 0, mx = 2^-24 -> fp16(2^-24 / 15) = 0 (below 2^-25) -> scale 0 too,
  // so 2^-24 decodes to the zero point 0.
  const BlockLayout l = Layout(1, 1, 16);
  const Halves x = Concat({Repeat(0x4100, 8), {0, 1, 0, 1, 0, 0, 0, 1}});
  const SectionCodec c = Codec(CodecId::kInt4, 8);
  const Bytes enc = Encode(x, c, false, l);
  EXPECT_BYTES((Bytes{0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x00, 0x00, 0x41, 0x00, 0x00, 0x00, 0x00}),
               enc);
  EXPECT_HALVES(Concat({Repeat(0x4100, 8), Repeat(0, 8)}), Decode(enc, c, false, l));
}

TEST(ReferenceInt4Test, NanIgnoredInMinMaxAndCodedZero) {
  // Group 0: NaNs ignored, mn = 0, mx = 15 -> scale 1.0, zero 0; NaN -> code 0 -> decodes to
  // the zero point 0. Group 1: all NaN -> mn = mx = 0 -> scale 0, zero 0, decodes to 0.
  const BlockLayout l = Layout(1, 1, 16);
  const Halves x =
      Concat({{kNan, 0x0000, 0x4B80, 0x4200, 0xFE00, 0x3C00, 0x4000, 0x4400}, Repeat(kNan, 8)});
  //                                     15      3       -NaN    1       2       4
  const SectionCodec c = Codec(CodecId::kInt4, 8);
  const Bytes enc = Encode(x, c, false, l);
  // Codes [0,0,15,3,0,1,2,4] -> 0x00, 0x3F, 0x10, 0x42.
  EXPECT_BYTES((Bytes{0x00, 0x3F, 0x10, 0x42, 0, 0, 0, 0, 0x00, 0x3C, 0x00, 0x00, 0, 0, 0, 0}),
               enc);
  EXPECT_HALVES(
      Concat({{kZero, kZero, 0x4B80, 0x4200, kZero, kOne, 0x4000, 0x4400}, Repeat(kZero, 8)}),
      Decode(enc, c, false, l));
}

TEST(ReferenceInt2Test, ValueGroupPackingLsbFirst) {
  // mn = 0, mx = 3 -> scale = fp16(3 / 3) = 1.0, zero 0. Codes = rne(x): 0.5 -> 0 (tie),
  // 1.5 -> 2 (tie), 2.5 -> 2 (tie). Codes [0,1,2,3,0,2,2,3]; four per byte, element 0 in
  // bits 0-1: 0 | 1<<2 | 2<<4 | 3<<6 = 0xE4, 0 | 2<<2 | 2<<4 | 3<<6 = 0xE8.
  const BlockLayout l = Layout(1, 1, 8);
  const Halves x = {0x0000, 0x3C00, 0x4000, 0x4200, 0x3800, 0x3E00, 0x4100, 0x4200};
  const SectionCodec c = Codec(CodecId::kInt2, 8);
  const Bytes enc = Encode(x, c, false, l);
  // 2 code bytes + one (scale, zero) pair, padded to 16.
  EXPECT_BYTES((Bytes{0xE4, 0xE8, 0x00, 0x3C, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}), enc);
  EXPECT_HALVES((Halves{0x0000, 0x3C00, 0x4000, 0x4200, 0x0000, 0x4000, 0x4000, 0x4200}),
                Decode(enc, c, false, l));
}

TEST(ReferenceInt4Test, PackingLsbFirst) {
  // x = 0..15 over one group: scale 1, zero 0, code i for element i; element 0 in the low
  // nibble: bytes 0x10, 0x32, ..., 0xFE.
  const BlockLayout l = Layout(1, 1, 16);
  Halves x;
  const uint16_t small_ints[16] = {0x0000, 0x3C00, 0x4000, 0x4200, 0x4400, 0x4500, 0x4600, 0x4700,
                                   0x4800, 0x4880, 0x4900, 0x4980, 0x4A00, 0x4A80, 0x4B00, 0x4B80};
  x.assign(small_ints, small_ints + 16);
  const SectionCodec c = Codec(CodecId::kInt4, 16);
  const Bytes enc = Encode(x, c, false, l);
  EXPECT_BYTES(
      (Bytes{0x10, 0x32, 0x54, 0x76, 0x98, 0xBA, 0xDC, 0xFE, 0x00, 0x3C, 0x00, 0x00, 0, 0, 0, 0}),
      enc);
  EXPECT_HALVES(x, Decode(enc, c, false, l));
}

// =============================================================================================
// int4 / int2 keys: per channel over groups of g tokens

TEST(ReferenceInt4Test, KeyGroupsOverTokensWithPartialLastGroup) {
  // 3 tokens, 1 head, D = 8, g = 2: group 0 = tokens 0-1, group 1 = token 2 alone.
  // Group 0, per channel (t0, t1):
  //   c0 (0, 15):  scale fp16(15/15) = 1 (0x3C00), zero 0       -> codes 0, 15
  //   c1 (1, 1):   scale 0,                  zero 1 (0x3C00)    -> 0, 0
  //   c2 (2, 4):   2/15, spacing 2^-13: 1092.27 -> 0.13330078125 (0x3044), zero 2 (0x4000)
  //                -> 0, (4-2)/scale = 15.0037 -> 15; decode 15*scale + 2 = 3.99951171875,
  //                spacing 2^-9 in [2, 4): 2047.75 -> 2048 -> 4.0 (0x4400)
  //   c3 (3, 3):   scale 0, zero 3 (0x4200)
  //   c4 (4, -4):  8/15, spacing 2^-11: 1092.27 -> 0.533203125 (0x3844), zero -4 (0xC400)
  //                -> 15, 0; decode 15*scale - 4 = 3.998046875 = 2047 * 2^-9 exactly (0x43FF)
  //   c5 (5, 5), c6 (6, 6): scale 0, zero 5 (0x4500), 6 (0x4600)
  //   c7 (7, 8):   1/15 -> 0x2C44 (0.066650390625), zero 7 (0x4700) -> 0, 15; decode
  //                7.999755859375, spacing 2^-8: 2047.94 -> 8.0 (0x4800)
  // Group 1 (token 2 = 9 everywhere): scale 0, zero 9 (0x4880), codes 0.
  const BlockLayout l = Layout(3, 1, 8);
  const Halves x = Concat({{0x0000, 0x3C00, 0x4000, 0x4200, 0x4400, 0x4500, 0x4600, 0x4700},
                           {0x4B80, 0x3C00, 0x4400, 0x4200, 0xC400, 0x4500, 0x4600, 0x4800},
                           Repeat(0x4880, 8)});
  const SectionCodec c = Codec(CodecId::kInt4, 2);
  const SectionLayout sl = SectionLayoutFor(c, true, l);
  EXPECT_EQ(sl.code_bytes, 12u);   // 24 codes x 4 bits
  EXPECT_EQ(sl.param_bytes, 64u);  // 1 head x 2 groups x 8 channels x 4 bytes
  EXPECT_EQ(sl.padded_bytes, 80u);
  const Bytes enc = Encode(x, c, true, l);
  // Codes in token-major element order: t0 [0,0,0,0,15,0,0,0], t1 [15,0,15,0,0,0,0,15], t2 0s.
  Bytes expected = {0x00, 0x00, 0x0F, 0x00, 0x0F, 0x0F, 0x00, 0xF0, 0x00, 0x00, 0x00, 0x00};
  // Params [head][group][channel] = (scale, zero).
  const uint16_t g0[8][2] = {{0x3C00, 0x0000}, {0x0000, 0x3C00}, {0x3044, 0x4000},
                             {0x0000, 0x4200}, {0x3844, 0xC400}, {0x0000, 0x4500},
                             {0x0000, 0x4600}, {0x2C44, 0x4700}};
  for (const auto& p : g0) {
    PutHalf(expected, p[0]);
    PutHalf(expected, p[1]);
  }
  for (int ch = 0; ch < 8; ++ch) {
    PutHalf(expected, 0x0000);
    PutHalf(expected, 0x4880);
  }
  expected.resize(80, 0);
  EXPECT_BYTES(expected, enc);
  EXPECT_HALVES(Concat({{0x0000, 0x3C00, 0x4000, 0x4200, 0x43FF, 0x4500, 0x4600, 0x4700},
                        {0x4B80, 0x3C00, 0x4400, 0x4200, 0xC400, 0x4500, 0x4600, 0x4800},
                        Repeat(0x4880, 8)}),
                Decode(enc, c, true, l));
}

TEST(ReferenceInt2Test, KeyGroupsOverTokensAndNegativeZero) {
  // 3 tokens, D = 8, g = 2. Group 0, per channel (t0, t1), 3 levels:
  //   c0 (0, 3):   scale 1 (0x3C00), zero 0                  -> codes 0, 3
  //   c1 (1, 1):   scale 0, zero 1 (0x3C00)
  //   c2 (-1, 1):  2/3, spacing 2^-11: 1365.33 -> 0.66650390625 (0x3955), zero -1 (0xBC00)
  //                -> 0, 3.0007 -> 3; decode 3*scale - 1 = 0.99951171875 = 2047 * 2^-11 (0x3BFF)
  //   c3 (2, 2):   scale 0, zero 2 (0x4000)
  //   c4 (0, 1):   1/3, spacing 2^-12: 0.333251953125 (0x3555), zero 0 -> 0, 3; decode
  //                0.999755859375 = 2047.5 * 2^-11, tie -> 1.0 (0x3C00)
  //   c5 (0, 0.5): 1/6, spacing 2^-13: 0.1666259765625 (0x3155) -> 0, 3; decode 0.4998779296875
  //                = 2047.5 * 2^-12, tie -> 0.5 (0x3800)
  //   c6 (-0, -0): min = max = -0; the reference adds +0, so zero = +0 (0x0000), not 0x8000,
  //                and both decode to fmaf(0, 0, +0) = +0.
  //   c7 (-0, +0): whichever zero the reduction meets first, zero = +0.
  // Group 1 (token 2 = 5): scale 0, zero 5 (0x4500).
  const BlockLayout l = Layout(3, 1, 8);
  const Halves x = Concat({{0x0000, 0x3C00, 0xBC00, 0x4000, 0x0000, 0x0000, kNegZero, kNegZero},
                           {0x4200, 0x3C00, 0x3C00, 0x4000, 0x3C00, 0x3800, kNegZero, kZero},
                           Repeat(0x4500, 8)});
  const SectionCodec c = Codec(CodecId::kInt2, 2);
  const Bytes enc = Encode(x, c, true, l);
  // Codes t0 all 0; t1 [3,0,3,0,3,3,0,0] -> 3 | 3<<4 = 0x33, 3 | 3<<2 = 0x0F; t2 all 0.
  Bytes expected = {0x00, 0x00, 0x33, 0x0F, 0x00, 0x00};
  const uint16_t g0[8][2] = {{0x3C00, 0x0000}, {0x0000, 0x3C00}, {0x3955, 0xBC00},
                             {0x0000, 0x4000}, {0x3555, 0x0000}, {0x3155, 0x0000},
                             {0x0000, 0x0000}, {0x0000, 0x0000}};
  for (const auto& p : g0) {
    PutHalf(expected, p[0]);
    PutHalf(expected, p[1]);
  }
  for (int ch = 0; ch < 8; ++ch) {
    PutHalf(expected, 0x0000);
    PutHalf(expected, 0x4500);
  }
  expected.resize(80, 0);
  EXPECT_BYTES(expected, enc);
  EXPECT_HALVES(Concat({{0x0000, 0x3C00, 0xBC00, 0x4000, 0x0000, 0x0000, 0x0000, 0x0000},
                        {0x4200, 0x3C00, 0x3BFF, 0x4000, 0x3C00, 0x3800, 0x0000, 0x0000},
                        Repeat(0x4500, 8)}),
                Decode(enc, c, true, l));
}

TEST(ReferenceInt4Test, NegativeZeroMinimumInValueGroup) {
  // Values [-0, 0, ..., 0, 15]: the minimum found first is -0; canonicalized to +0, so the
  // stored zero point is 0x0000 with scale 1.
  const BlockLayout l = Layout(1, 1, 8);
  const Halves x = {kNegZero, kZero, kZero, kZero, kZero, kZero, kZero, 0x4B80};
  const SectionCodec c = Codec(CodecId::kInt4, 8);
  const Bytes enc = Encode(x, c, false, l);
  EXPECT_BYTES((Bytes{0x00, 0x00, 0x00, 0xF0, 0x00, 0x3C, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0}),
               enc);
  EXPECT_HALVES((Halves{kZero, kZero, kZero, kZero, kZero, kZero, kZero, 0x4B80}),
                Decode(enc, c, false, l));
}

TEST(ReferenceInt4Test, KeyNanIsCodedZero) {
  // Keys, 2 tokens, g = 2: channel 0 = (NaN, 4): min = max = 4 -> scale 0, zero 4 -> NaN
  // decodes to 4. Channel 1 = (NaN, NaN): scale 0, zero 0. Other channels 0.
  const BlockLayout l = Layout(2, 1, 8);
  const Halves x = Concat({{kNan, kNan, 0, 0, 0, 0, 0, 0}, {0x4400, 0x7C01, 0, 0, 0, 0, 0, 0}});
  const SectionCodec c = Codec(CodecId::kInt4, 2);
  const Bytes enc = Encode(x, c, true, l);
  EXPECT_EQ(GetHalf(&enc[8]), 0x0000);       // c0 scale
  EXPECT_EQ(GetHalf(&enc[8 + 2]), 0x4400);   // c0 zero
  EXPECT_EQ(GetHalf(&enc[12]), 0x0000);      // c1 scale
  EXPECT_EQ(GetHalf(&enc[12 + 2]), 0x0000);  // c1 zero
  EXPECT_HALVES(Concat({{0x4400, 0, 0, 0, 0, 0, 0, 0}, {0x4400, 0, 0, 0, 0, 0, 0, 0}}),
                Decode(enc, c, true, l));
}

// =============================================================================================
// Parameter index order

TEST(ReferenceParamsTest, KeyParamsAreHeadGroupChannel) {
  // Every (head, token group, channel) is constant: value = 100*h + 10*j + c + 1, so each group
  // has scale 0 and its zero point equals the input. 3 tokens, 2 heads, D = 8, g = 2.
  const uint32_t T = 3, H = 2, D = 8, G = 2, groups = 2;
  const BlockLayout l = Layout(T, H, D);
  Halves x(T * H * D);
  for (uint32_t t = 0; t < T; ++t) {
    for (uint32_t h = 0; h < H; ++h) {
      for (uint32_t c = 0; c < D; ++c) {
        x[(t * H + h) * D + c] = FloatToHalf(static_cast<float>(100 * h + 10 * (t / G) + c + 1));
      }
    }
  }
  for (CodecId id : {CodecId::kInt4, CodecId::kInt2}) {
    SCOPED_TRACE(CodecName(id));
    const SectionCodec codec = Codec(id, G);
    const Bytes enc = Encode(x, codec, true, l);
    const uint64_t params = T * H * D * CodecBits(id) / 8;
    for (uint32_t h = 0; h < H; ++h) {
      for (uint32_t j = 0; j < groups; ++j) {
        for (uint32_t c = 0; c < D; ++c) {
          const uint64_t p = params + 4 * ((h * groups + j) * D + c);
          EXPECT_EQ(GetHalf(&enc[p]), 0x0000);
          EXPECT_EQ(GetHalf(&enc[p + 2]), x[((j * G) * H + h) * D + c])
              << h << " " << j << " " << c;
        }
      }
    }
    EXPECT_EQ(Decode(enc, codec, true, l), x);
  }
}

TEST(ReferenceParamsTest, ValueParamsAreTokenHeadGroup) {
  // value = 100*t + 10*h + j + 1 over each group of 8 channels. 2 tokens, 3 heads, D = 16.
  const uint32_t T = 2, H = 3, D = 16, G = 8, groups = 2;
  const BlockLayout l = Layout(T, H, D);
  Halves x(T * H * D);
  for (uint32_t t = 0; t < T; ++t) {
    for (uint32_t h = 0; h < H; ++h) {
      for (uint32_t c = 0; c < D; ++c) {
        x[(t * H + h) * D + c] = FloatToHalf(static_cast<float>(100 * t + 10 * h + c / G + 1));
      }
    }
  }
  for (CodecId id : {CodecId::kInt4, CodecId::kInt2}) {
    SCOPED_TRACE(CodecName(id));
    const SectionCodec codec = Codec(id, G);
    const Bytes enc = Encode(x, codec, false, l);
    const uint64_t params = T * H * D * CodecBits(id) / 8;
    for (uint32_t t = 0; t < T; ++t) {
      for (uint32_t h = 0; h < H; ++h) {
        for (uint32_t j = 0; j < groups; ++j) {
          const uint64_t p = params + 4 * ((t * H + h) * groups + j);
          EXPECT_EQ(GetHalf(&enc[p]), 0x0000);
          EXPECT_EQ(GetHalf(&enc[p + 2]), x[(t * H + h) * D + j * G]) << t << " " << h << " " << j;
        }
      }
    }
    EXPECT_EQ(Decode(enc, codec, false, l), x);
  }
}

TEST(ReferenceParamsTest, SymmetricScalesAreTokenHead) {
  // Vector (t, h) = [448 * 2^v, 0, ...] with v = t * H + h -> scale 2^v: 0x3C00 + v * 0x0400.
  const uint32_t T = 2, H = 3, D = 8;
  const BlockLayout l = Layout(T, H, D);
  Halves x(T * H * D, 0);
  for (uint32_t v = 0; v < T * H; ++v) x[v * D] = static_cast<uint16_t>(0x5F00 + v * 0x0400);
  const Bytes enc = Encode(x, Codec(CodecId::kFp8), false, l);
  for (uint32_t v = 0; v < T * H; ++v) {
    EXPECT_EQ(GetHalf(&enc[T * H * D + 2 * v]), 0x3C00 + v * 0x0400) << v;
    EXPECT_EQ(enc[v * D], 0x7E);
  }
  EXPECT_EQ(Decode(enc, Codec(CodecId::kFp8), false, l), x);
}

}  // namespace
}  // namespace kvault::kernels
