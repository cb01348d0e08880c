// Reference codec, worked examples: fp8 and int8 (per-vector symmetric scales), sink tokens and
// raw sections. Conventions and notation: reference_test_util.h.

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>

#include "kvault/kernels/reference_codec.h"
#include "reference_test_util.h"

namespace kvault::kernels {
namespace {

using namespace reference_test;  // NOLINT(build/namespaces): the shared helpers

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

}  // namespace
}  // namespace kvault::kernels
