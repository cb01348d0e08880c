#include "kvault/kernels/reference_codec.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "kvault/kernels/numeric.h"
#include "kvault/kernels/rotation.h"

namespace kvault::kernels {
namespace {

// Worked examples that pin the codec arithmetic of docs/codecs.md. Inputs are given as fp16
// (or bf16) bit patterns; every expected code, scale, zero point and decoded value is a constant
// computed by hand, with the reasoning next to it. Notation: fp16(v) is v rounded to binary16
// (RNE); "spacing" is the distance between neighbouring halves in v's binade, e.g. 2^-11 in
// [0.5, 1) and 2^-13 in [0.125, 0.25). The numbers were cross-checked with Python's struct
// module ('e' and 'f' formats), which implements IEEE rounding independently of kvault.

using Bytes = std::vector<uint8_t>;
using Halves = std::vector<uint16_t>;

BlockLayout Layout(uint32_t tokens, uint32_t heads, uint32_t dim, uint32_t sink = 0,
                   DType dtype = DType::kF16) {
  BlockLayout l;
  l.num_layers = 1;
  l.kv_heads = heads;
  l.head_dim = dim;
  l.block_tokens = tokens;
  l.dtype = dtype;
  l.sink_tokens = sink;
  return l;
}

SectionCodec Codec(CodecId id, uint16_t group = 0, bool rotate = false) {
  return {id, rotate, group};
}

Bytes Encode(const Halves& src, const SectionCodec& c, bool is_key, const BlockLayout& l) {
  EXPECT_EQ(src.size(), uint64_t{l.block_tokens} * l.kv_heads * l.head_dim);
  const SectionLayout sl = SectionLayoutFor(c, is_key, l);
  Bytes out(sl.padded_bytes, 0xCD);  // garbage: the encoder must overwrite padding with zeros
  ReferenceEncodeSection(src.data(), c, is_key, l, out.data());
  return out;
}

Halves Decode(const Bytes& in, const SectionCodec& c, bool is_key, const BlockLayout& l) {
  Halves out(uint64_t{l.block_tokens} * l.kv_heads * l.head_dim, 0xABCD);
  ReferenceDecodeSection(in.data(), c, is_key, l, out.data());
  return out;
}

// Little-endian fp16 pairs written out as bytes.
void PutHalf(Bytes& b, uint16_t h) {
  b.push_back(static_cast<uint8_t>(h & 0xFF));
  b.push_back(static_cast<uint8_t>(h >> 8));
}
uint16_t GetHalf(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

Halves Repeat(uint16_t h, size_t n) { return Halves(n, h); }
Halves Concat(std::initializer_list<Halves> parts) {
  Halves out;
  for (const Halves& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

std::string Hex(const Bytes& b) {
  static const char* d = "0123456789ABCDEF";
  std::string s;
  for (uint8_t v : b) {
    s += d[v >> 4];
    s += d[v & 15];
    s += ' ';
  }
  return s;
}
std::string Hex(const Halves& h) {
  static const char* d = "0123456789ABCDEF";
  std::string s;
  for (uint16_t v : h) {
    for (int sh = 12; sh >= 0; sh -= 4) s += d[(v >> sh) & 15];
    s += ' ';
  }
  return s;
}
#define EXPECT_BYTES(expected, actual) EXPECT_EQ(Hex(Bytes(expected)), Hex(actual))
#define EXPECT_HALVES(expected, actual) EXPECT_EQ(Hex(Halves(expected)), Hex(actual))

// Frequently used halves.
constexpr uint16_t kZero = 0x0000, kNegZero = 0x8000, kOne = 0x3C00, kNan = 0x7E00;

// =============================================================================================
// fp8

TEST(ReferenceFp8Test, ScaleOneKnownCodes) {
  // amax = 448, s = fp16(448 / 448) = 1.0 = 0x3C00, so code = E4M3(x).
  //   448 -> 0x7E;  -448 -> 0xFE;  1 -> 0x38 (exp field 7);  -1 -> 0xB8;  0.5 -> 0x30;
  //   3 = 1.5 * 2 -> field 8, mantissa 4 -> 0x44;
  //   300 = 1.171875 * 2^8 -> mantissa 1.375 eighths -> 1 -> 0x79 = 288;
  //   2^-9 -> smallest subnormal 0x01.
  const BlockLayout l = Layout(1, 1, 8);
  const Halves x = {0x5F00, 0xDF00, 0x3C00, 0xBC00, 0x3800, 0x4200, 0x5CB0, 0x1800};
  //                 448    -448    1       -1      0.5     3       300     2^-9
  const Bytes enc = Encode(x, Codec(CodecId::kFp8), false, l);
  // Section: 8 code bytes, one fp16 scale, zero padding to 16.
  EXPECT_BYTES(
      (Bytes{0x7E, 0xFE, 0x38, 0xB8, 0x30, 0x44, 0x79, 0x01, 0x00, 0x3C, 0, 0, 0, 0, 0, 0}), enc);
  // decode = fp16(e4m3 * 1): everything exact; 300 comes back as 288 = 0x5C80.
  EXPECT_HALVES((Halves{0x5F00, 0xDF00, 0x3C00, 0xBC00, 0x3800, 0x4200, 0x5C80, 0x1800}),
                Decode(enc, Codec(CodecId::kFp8), false, l));
  // K and V use the same per-(token, head) arithmetic.
  EXPECT_EQ(Encode(x, Codec(CodecId::kFp8), true, l), enc);
}

TEST(ReferenceFp8Test, ScaleTwo) {
  // amax = 896, s = fp16(896 / 448) = 2.0 = 0x4000. x / s:
  //   896 -> 448 -> 0x7E;  -100 -> -50 = -1.5625 * 2^5: mantissa 4.5 eighths, tie -> 4 (even):
  //   field 12 -> 0xE4 (-48);  10 -> 5 = 1.25 * 4 -> 0x4A;  0.25 -> 0.125 -> 0x20;
  //   0 -> 0x00;  -0 -> 0x80;  7 -> 3.5 = 1.75 * 2 -> 0x46;  1 -> 0.5 -> 0x30.
  const BlockLayout l = Layout(1, 1, 8);
  const Halves x = {0x6300, 0xD640, 0x4900, 0x3400, kZero, kNegZero, 0x4700, kOne};
  //                 896     -100    10      0.25
  const Bytes enc = Encode(x, Codec(CodecId::kFp8), false, l);
  EXPECT_BYTES(
      (Bytes{0x7E, 0xE4, 0x4A, 0x20, 0x00, 0x80, 0x46, 0x30, 0x00, 0x40, 0, 0, 0, 0, 0, 0}), enc);
  // Decode: 448 * 2 = 896; -48 * 2 = -96 = 0xD600; others exact; -0 stays -0.
  EXPECT_HALVES((Halves{0x6300, 0xD600, 0x4900, 0x3400, kZero, kNegZero, 0x4700, kOne}),
                Decode(enc, Codec(CodecId::kFp8), false, l));
}

TEST(ReferenceFp8Test, QuantizesWithTheStoredRoundedScale) {
  // amax = 100: 100 / 448 = 0.22321428..., in [0.125, 0.25) (spacing 2^-13): 1828.57 -> 1829,
  // s = 1829 * 2^-13 = 0.2232666015625 = 0x3325 (field 12, mantissa 1829 - 1024 = 0x325).
  //   100 / s = 447.895 -> nearest E4M3 448 -> 0x7E; decode 448 * s = 100.0234375, spacing
  //   2^-4 in [64, 128): 1600.375 -> 1600 -> 100.0 = 0x5640.
  //   50 / s = 223.9475 -> in [128, 256) step 16 -> 224 = 1.75 * 2^7 -> 0x76; decode
  //   224 * s = 50.01171875, spacing 2^-5: 1600.375 -> 1600 -> 50.0 = 0x5240.
  const BlockLayout l = Layout(1, 1, 8);
  const Halves x = {0x5640, 0x5240, kZero, kZero, kZero, kZero, kZero, kZero};
  const Bytes enc = Encode(x, Codec(CodecId::kFp8), false, l);
  EXPECT_BYTES((Bytes{0x7E, 0x76, 0, 0, 0, 0, 0, 0, 0x25, 0x33, 0, 0, 0, 0, 0, 0}), enc);
  EXPECT_HALVES(x, Decode(enc, Codec(CodecId::kFp8), false, l));
}

TEST(ReferenceFp8Test, DividesByTheScale) {
  // amax = 45.5 -> s = 45.5 / 448 = 0.1015625 exactly = 1.625 * 2^-4 = 0x2E80.
  // x = fp16 0x29E4 = 1508 * 2^-15 = 0.0460205078125 = 0.453125 * s, so x / s = 0.453125
  // exactly: the midpoint of 0.4375 (1.75 * 2^-2 = 0x2E, even) and 0.46875 (0x2F) -> 0x2E.
  // Multiplying by fp32(1 / s) instead gives 0.45312503 and the code 0x2F, so this pins the
  // division. Decode 0.4375 * s = 0.04443359375 = 1456 * 2^-15 = 0x29B0; 448 * s = 45.5 (0x51B0).
  const BlockLayout l = Layout(1, 1, 8);
  const Halves x = {0x51B0, 0x29E4, 0, 0, 0, 0, 0, 0};
  const Bytes enc = Encode(x, Codec(CodecId::kFp8), false, l);
  EXPECT_BYTES((Bytes{0x7E, 0x2E, 0, 0, 0, 0, 0, 0, 0x80, 0x2E, 0, 0, 0, 0, 0, 0}), enc);
  EXPECT_HALVES((Halves{0x51B0, 0x29B0, 0, 0, 0, 0, 0, 0}),
                Decode(enc, Codec(CodecId::kFp8), false, l));
}

TEST(ReferenceFp8Test, AllZeroVectorStoresScaleOne) {
  // amax = 0 -> fp16(0) == 0 -> the stored scale is 1.0 (0x3C00), codes all 0x00.
  const BlockLayout l = Layout(2, 1, 8);
  const Halves x = Repeat(kZero, 16);
  for (CodecId id : {CodecId::kFp8, CodecId::kInt8}) {
    SCOPED_TRACE(CodecName(id));
    const Bytes enc = Encode(x, Codec(id), false, l);
    Bytes expected(16, 0x00);
    PutHalf(expected, kOne);  // token 0
    PutHalf(expected, kOne);  // token 1
    expected.resize(32, 0x00);
    EXPECT_BYTES(expected, enc);
    EXPECT_HALVES(x, Decode(enc, Codec(id), false, l));
  }
}

TEST(ReferenceFp8Test, NanIsIgnoredInAmaxAndEncodesAs7F) {
  // amax over the non-NaN elements = 448 -> s = 1.0. NaN (either sign) -> 0x7F, which decodes
  // to NaN * s = NaN -> canonical 0x7FFF.
  const BlockLayout l = Layout(1, 1, 8);
  const Halves x = {kNan, 0x5F00, 0xFE00, kOne, 0x7C01, kZero, kZero, 0x3800};
  const Bytes enc = Encode(x, Codec(CodecId::kFp8), false, l);
  EXPECT_BYTES(
      (Bytes{0x7F, 0x7E, 0x7F, 0x38, 0x7F, 0x00, 0x00, 0x30, 0x00, 0x3C, 0, 0, 0, 0, 0, 0}), enc);
  EXPECT_HALVES((Halves{0x7FFF, 0x5F00, 0x7FFF, kOne, 0x7FFF, kZero, kZero, 0x3800}),
                Decode(enc, Codec(CodecId::kFp8), false, l));
}

TEST(ReferenceFp8Test, Bf16InputDecodesToBf16) {
  // bf16 896 = 0x4460 (1.75 * 2^9), 10 = 0x4120, NaN = 0x7FC0. s = 2.0 as above (fp16 0x4000).
  // Decode: 896 -> bf16 0x4460; 10 -> 0x4120; NaN -> bf16 canonical 0x7FFF; -1 -> 0xBF80.
  const BlockLayout l = Layout(1, 1, 8, 0, DType::kBF16);
  const Halves x = {0x4460, 0x4120, 0x7FC0, 0xBF80, 0, 0, 0, 0};
  const Bytes enc = Encode(x, Codec(CodecId::kFp8), false, l);
  // -1 / 2 = -0.5 -> 0xB0.
  EXPECT_BYTES((Bytes{0x7E, 0x4A, 0x7F, 0xB0, 0, 0, 0, 0, 0x00, 0x40, 0, 0, 0, 0, 0, 0}), enc);
  EXPECT_HALVES((Halves{0x4460, 0x4120, 0x7FFF, 0xBF80, 0, 0, 0, 0}),
                Decode(enc, Codec(CodecId::kFp8), false, l));
}

// =============================================================================================
// int8

TEST(ReferenceInt8Test, ScaleOneRoundsHalfToEven) {
  // amax 127 -> s = 1.0. x / s rounded half to even: 2.5 -> 2, 3.5 -> 4, -2.5 -> -2,
  // 0.5 -> 0, 1.5 -> 2, -0.5 -> -0 -> 0. Codes are int8 two's complement: -127 = 0x81,
  // -2 = 0xFE.
  const BlockLayout l = Layout(1, 1, 8);
  const Halves x = {0x57F0, 0xD7F0, 0x4100, 0x4300, 0xC100, 0x3800, 0x3E00, 0xB800};
  //                 127     -127    2.5     3.5     -2.5    0.5     1.5     -0.5
  const Bytes enc = Encode(x, Codec(CodecId::kInt8), false, l);
  EXPECT_BYTES(
      (Bytes{0x7F, 0x81, 0x02, 0x04, 0xFE, 0x00, 0x02, 0x00, 0x00, 0x3C, 0, 0, 0, 0, 0, 0}), enc);
  // decode = fp16(code * s); code 0 gives +0 even for -0.5.
  EXPECT_HALVES((Halves{0x57F0, 0xD7F0, 0x4000, 0x4400, 0xC000, kZero, 0x4000, kZero}),
                Decode(enc, Codec(CodecId::kInt8), false, l));
}

TEST(ReferenceInt8Test, ScaleTwo) {
  // amax 254 -> s = 2.0. x / s = 127, 2.5 -> 2, -2.5 -> -2, 3.5 -> 4, 1.5 -> 2, 0.5 -> 0,
  // -0.5 -> 0, 0.
  const BlockLayout l = Layout(1, 1, 8);
  const Halves x = {0x5BF0, 0x4500, 0xC500, 0x4700, 0x4200, 0x3C00, 0xBC00, kZero};
  //                 254     5       -5      7       3       1       -1
  const Bytes enc = Encode(x, Codec(CodecId::kInt8), false, l);
  EXPECT_BYTES(
      (Bytes{0x7F, 0x02, 0xFE, 0x04, 0x02, 0x00, 0x00, 0x00, 0x00, 0x40, 0, 0, 0, 0, 0, 0}), enc);
  EXPECT_HALVES((Halves{0x5BF0, 0x4400, 0xC400, 0x4800, 0x4400, kZero, kZero, kZero}),
                Decode(enc, Codec(CodecId::kInt8), false, l));
}

TEST(ReferenceInt8Test, RoundedScaleAndNan) {
  // amax 100 (NaN ignored): 100 / 127 = 0.787401..., spacing 2^-11 in [0.5, 1): 1612.6 -> 1613,
  // s = 0.78759765625 = 0x3A4D (0x3800 + 589). 100 / s = 126.968 -> 127; decode 127 * s =
  // 100.0249, spacing 2^-4: 1600.4 -> 100.0 = 0x5640. NaN / s = NaN -> code 0 -> decodes 0.
  const BlockLayout l = Layout(1, 1, 8);
  const Halves x = {0x5640, kNan, 0xFC01, kZero, kZero, kZero, kZero, 0xD640};
  const Bytes enc = Encode(x, Codec(CodecId::kInt8), false, l);
  // -100 -> -127 = 0x81.
  EXPECT_BYTES((Bytes{0x7F, 0x00, 0x00, 0, 0, 0, 0, 0x81, 0x4D, 0x3A, 0, 0, 0, 0, 0, 0}), enc);
  EXPECT_HALVES((Halves{0x5640, kZero, kZero, kZero, kZero, kZero, kZero, 0xD640}),
                Decode(enc, Codec(CodecId::kInt8), false, l));
}

TEST(ReferenceInt8Test, DividesByTheScale) {
  // amax = 39.4375 (0x50EE): 39.4375 / 127 = 0.3105315, spacing 2^-12 in [0.25, 0.5):
  // 1271.94 -> 1272, s = 0.310546875 = 0x34F8. x = 0x3C59 = 1113 * 2^-10 = 1.0869140625 =
  // 3.5 * s, so x / s = 3.5 exactly -> 4 (even). fp32(1 / s) * x = 3.4999998 would give 3.
  // 39.4375 / s = 126.994 -> 127. Decode 127 * s = 39.439453125, spacing 2^-5: 1262.06 ->
  // 39.4375 (0x50EE); 4 * s = 1.2421875 = 0x3CF8.
  const BlockLayout l = Layout(1, 1, 8);
  const Halves x = {0x50EE, 0x3C59, 0, 0, 0, 0, 0, 0};
  const Bytes enc = Encode(x, Codec(CodecId::kInt8), false, l);
  EXPECT_BYTES((Bytes{0x7F, 0x04, 0, 0, 0, 0, 0, 0, 0xF8, 0x34, 0, 0, 0, 0, 0, 0}), enc);
  EXPECT_HALVES((Halves{0x50EE, 0x3CF8, 0, 0, 0, 0, 0, 0}),
                Decode(enc, Codec(CodecId::kInt8), false, l));
}

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

// =============================================================================================
// Sinks and raw

TEST(ReferenceSinkTest, SinkTokensAreRawAndExcludedFromScales) {
  // 4 tokens, sink 2, 1 head, D = 8, fp8. The sink tokens hold 60000, a NaN payload and -0;
  // they are copied byte for byte and do not enter the scales of tokens 2 and 3.
  const BlockLayout l = Layout(4, 1, 8, 2);
  const Halves sink = {0x7B53, 0x7E01, kNegZero, 0xFC01, 0x0001, 0x8001, 0x7C00, 0xFC00,
                       0x1234, 0x5678, 0x9ABC,   0xDEF0, 0x7FFF, 0xFFFF, 0x0400, 0x3C00};
  const Halves body = Concat({{0x5F00, kOne, 0, 0, 0, 0, 0, 0},      // amax 448 -> s = 1
                              {0x6300, 0x4900, 0, 0, 0, 0, 0, 0}});  // amax 896 -> s = 2
  const Halves x = Concat({sink, body});
  const SectionCodec c = Codec(CodecId::kFp8);
  const SectionLayout sl = SectionLayoutFor(c, true, l);
  EXPECT_EQ(sl.sink_bytes, 32u);
  EXPECT_EQ(sl.code_bytes, 16u);
  EXPECT_EQ(sl.param_bytes, 4u);
  EXPECT_EQ(sl.padded_bytes, 64u);
  const Bytes enc = Encode(x, c, true, l);
  Bytes expected;
  for (uint16_t h : sink) PutHalf(expected, h);
  for (uint8_t b : {0x7E, 0x38, 0, 0, 0, 0, 0, 0, 0x7E, 0x4A, 0, 0, 0, 0, 0, 0}) {
    expected.push_back(b);
  }
  PutHalf(expected, 0x3C00);
  PutHalf(expected, 0x4000);
  expected.resize(64, 0);
  EXPECT_BYTES(expected, enc);
  EXPECT_HALVES(x, Decode(enc, c, true, l));
}

TEST(ReferenceSinkTest, SinkTokensExcludedFromKeyGroups) {
  // 5 tokens, sink 1, g = 2: the quantized tokens 1..4 form groups {1,2} and {3,4}. The sink
  // token holds 1000 (0x63D0) in every channel; group 0 spans (0, 15) -> scale 1, zero 0.
  const BlockLayout l = Layout(5, 1, 8, 1);
  const Halves x = Concat({Repeat(0x63D0, 8), Repeat(0x0000, 8), Repeat(0x4B80, 8),
                           Repeat(0x4000, 8), Repeat(0x4000, 8)});
  const SectionCodec c = Codec(CodecId::kInt4, 2);
  const SectionLayout sl = SectionLayoutFor(c, true, l);
  EXPECT_EQ(sl.sink_bytes, 16u);
  EXPECT_EQ(sl.code_bytes, 16u);   // 4 tokens x 8 channels x 4 bits
  EXPECT_EQ(sl.param_bytes, 64u);  // 2 groups x 8 channels x 4 bytes
  const Bytes enc = Encode(x, c, true, l);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(GetHalf(&enc[2 * i]), 0x63D0);
  // Codes: token 1 -> 0, token 2 -> 15 (0xFF per byte), tokens 3-4 -> 0 (constant group).
  EXPECT_BYTES((Bytes{0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0}),
               Bytes(enc.begin() + 16, enc.begin() + 32));
  for (int ch = 0; ch < 8; ++ch) {
    EXPECT_EQ(GetHalf(&enc[32 + 4 * ch]), 0x3C00);
    EXPECT_EQ(GetHalf(&enc[32 + 4 * ch + 2]), 0x0000);
    EXPECT_EQ(GetHalf(&enc[64 + 4 * ch]), 0x0000);
    EXPECT_EQ(GetHalf(&enc[64 + 4 * ch + 2]), 0x4000);
  }
  EXPECT_HALVES(x, Decode(enc, c, true, l));
}

TEST(ReferenceSinkTest, WholeBlockOfSinks) {
  // sink == block_tokens: nothing is quantized; the section is the raw tokens.
  const BlockLayout l = Layout(2, 1, 8, 2);
  Halves x(16);
  for (int i = 0; i < 16; ++i) x[i] = static_cast<uint16_t>(0x7C01 + 0x1111 * i);
  for (const SectionCodec& c : {Codec(CodecId::kFp8), Codec(CodecId::kInt8),
                                Codec(CodecId::kInt4, 64), Codec(CodecId::kInt2, 4, true)}) {
    SCOPED_TRACE(CodecName(c.codec));
    for (bool is_key : {true, false}) {
      const SectionLayout sl = SectionLayoutFor(c, is_key, l);
      EXPECT_EQ(sl.sink_bytes, 32u);
      EXPECT_EQ(sl.code_bytes + sl.param_bytes, 0u);
      const Bytes enc = Encode(x, c, is_key, l);
      ASSERT_EQ(enc.size(), 32u);
      EXPECT_EQ(std::memcmp(enc.data(), x.data(), 32), 0);
      EXPECT_EQ(Decode(enc, c, is_key, l), x);
    }
  }
}

TEST(ReferenceRawTest, ByteIdenticalRoundTripIncludingNanPayloads) {
  Halves x = {0x7E01, 0xFC01, 0x7C01, 0xFFFF, 0x7FFF, kNegZero, 0x0001, 0x7C00,
              0x7FC1, 0xFF81, 0x8001, 0x3C00, 0xABCD, 0x1234,   0x0000, 0xFFC0};
  x.resize(48);
  for (int i = 16; i < 48; ++i) x[i] = static_cast<uint16_t>(i * 1337);
  for (DType dt : {DType::kF16, DType::kBF16}) {
    SCOPED_TRACE(DTypeName(dt));
    const BlockLayout l = Layout(3, 2, 8, 0, dt);
    const SectionCodec c = Codec(CodecId::kRaw);
    for (bool is_key : {true, false}) {
      const Bytes enc = Encode(x, c, is_key, l);
      ASSERT_EQ(enc.size(), 96u);
      EXPECT_EQ(std::memcmp(enc.data(), x.data(), 96), 0);
      EXPECT_EQ(Decode(enc, c, is_key, l), x);
    }
    // A raw section ignores sink_tokens: all tokens are raw already.
    const BlockLayout with_sink = Layout(3, 2, 8, 1, dt);
    EXPECT_EQ(SectionLayoutFor(c, true, with_sink).padded_bytes, 96u);
    EXPECT_EQ(Decode(Encode(x, c, true, with_sink), c, true, with_sink), x);
  }
}

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

}  // namespace
}  // namespace kvault::kernels
