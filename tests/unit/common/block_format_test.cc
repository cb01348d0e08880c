#include "kvault/common/block_format.h"

#include <gtest/gtest.h>
#include <xxhash.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "block_format_test_util.h"
#include "kvault/common/little_endian.h"

namespace kvault {
namespace {

using namespace block_format_test;

TEST(BlockFormat, CodecNamesBitsAndIds) {
  EXPECT_STREQ(CodecName(CodecId::kRaw), "raw");
  EXPECT_STREQ(CodecName(CodecId::kFp8), "fp8");
  EXPECT_STREQ(CodecName(CodecId::kInt8), "int8");
  EXPECT_STREQ(CodecName(CodecId::kInt4), "int4");
  EXPECT_STREQ(CodecName(CodecId::kInt2), "int2");
  EXPECT_EQ(CodecBits(CodecId::kRaw), 16u);
  EXPECT_EQ(CodecBits(CodecId::kFp8), 8u);
  EXPECT_EQ(CodecBits(CodecId::kInt8), 8u);
  EXPECT_EQ(CodecBits(CodecId::kInt4), 4u);
  EXPECT_EQ(CodecBits(CodecId::kInt2), 2u);
  // On-disk ids never change.
  EXPECT_EQ(static_cast<int>(CodecId::kRaw), 0);
  EXPECT_EQ(static_cast<int>(CodecId::kFp8), 1);
  EXPECT_EQ(static_cast<int>(CodecId::kInt8), 2);
  EXPECT_EQ(static_cast<int>(CodecId::kInt4), 3);
  EXPECT_EQ(static_cast<int>(CodecId::kInt2), 4);
  EXPECT_EQ(kCodecFlagRotate, 0x01);
  EXPECT_EQ(kBlockMagic, 0x4F42564Bu);
}

TEST(BlockFormat, Int4SectionsOfLlamaShapedBlock) {
  const BlockLayout l{1, 8, 128, 256, DType::kF16, 0};
  const SectionLayout k = SectionLayoutFor(Int4(64), true, l);
  EXPECT_EQ(k.sink_bytes, 0u);
  EXPECT_EQ(k.code_bytes, 131072u);            // 256 * 8 * 128 / 2
  EXPECT_EQ(k.param_bytes, 8u * 4 * 128 * 4);  // heads * token groups * channels * (scale, zero)
  EXPECT_EQ(k.padded_bytes, 131072u + 16384u);
  const SectionLayout v = SectionLayoutFor(Int4(64), false, l);
  EXPECT_EQ(v.code_bytes, 131072u);
  EXPECT_EQ(v.param_bytes, 256u * 8 * 2 * 4);  // tokens * heads * channel groups * (scale, zero)
  EXPECT_EQ(v.padded_bytes, 131072u + 16384u);
}

TEST(BlockFormat, SymmetricAndRawSections) {
  const BlockLayout l{1, 8, 128, 256, DType::kF16, 0};
  for (const SectionCodec& c : {kFp8, kInt8}) {
    for (bool is_key : {true, false}) {
      const SectionLayout s = SectionLayoutFor(c, is_key, l);
      EXPECT_EQ(s.code_bytes, 262144u);
      EXPECT_EQ(s.param_bytes, 256u * 8 * 2);  // one fp16 scale per (token, head)
      EXPECT_EQ(s.padded_bytes, 262144u + 4096u);
    }
  }
  const SectionLayout raw = SectionLayoutFor(kRaw, true, l);
  EXPECT_EQ(raw.code_bytes, 256u * 8 * 128 * 2);
  EXPECT_EQ(raw.param_bytes, 0u);
  EXPECT_EQ(raw.padded_bytes, 524288u);
}

TEST(BlockFormat, SinkTokensAreStoredRawBeforeTheCodes) {
  const BlockLayout l{1, 8, 128, 256, DType::kF16, 4};
  const SectionLayout k = SectionLayoutFor(Int4(64), true, l);
  EXPECT_EQ(k.sink_bytes, 4u * 8 * 128 * 2);
  EXPECT_EQ(k.code_bytes, 252u * 8 * 128 / 2);
  EXPECT_EQ(k.param_bytes, 8u * 4 * 128 * 4);  // ceil(252 / 64) = 4 groups, the last one short
  EXPECT_EQ(k.padded_bytes, 8192u + 129024u + 16384u);
  const SectionLayout v = SectionLayoutFor(Int4(64), false, l);
  EXPECT_EQ(v.param_bytes, 252u * 8 * 2 * 4);
  const SectionLayout f = SectionLayoutFor(kFp8, false, l);
  EXPECT_EQ(f.sink_bytes, 8192u);
  EXPECT_EQ(f.code_bytes, 252u * 8 * 128);
  EXPECT_EQ(f.param_bytes, 252u * 8 * 2);
  // Raw ignores sink_tokens: every token is already stored at source precision.
  const SectionLayout raw = SectionLayoutFor(kRaw, true, l);
  EXPECT_EQ(raw.sink_bytes, 0u);
  EXPECT_EQ(raw.code_bytes, 256u * 8 * 128 * 2);
  // All tokens sink: no codes, no params.
  const BlockLayout all_sink{1, 2, 8, 3, DType::kF16, 3};
  const SectionLayout s = SectionLayoutFor(Int2(2), true, all_sink);
  EXPECT_EQ(s.sink_bytes, 3u * 2 * 8 * 2);
  EXPECT_EQ(s.code_bytes, 0u);
  EXPECT_EQ(s.param_bytes, 0u);
  EXPECT_EQ(s.padded_bytes, 96u);
}

TEST(BlockFormat, SectionsArePaddedToSixteen) {
  const BlockLayout l{1, 1, 8, 3, DType::kF16, 0};
  const SectionLayout i8 = SectionLayoutFor(kInt8, true, l);  // 24 codes + 6 scale bytes = 30
  EXPECT_EQ(i8.code_bytes + i8.param_bytes, 30u);
  EXPECT_EQ(i8.padded_bytes, 32u);
  const SectionLayout k2 = SectionLayoutFor(Int2(2), true, l);  // 6 + 1 * 2 * 8 * 4 = 70
  EXPECT_EQ(k2.code_bytes, 6u);
  EXPECT_EQ(k2.param_bytes, 64u);
  EXPECT_EQ(k2.padded_bytes, 80u);
  const SectionLayout v4 = SectionLayoutFor(Int4(3), false, l);  // 12 + 3 * 3 * 4 = 48
  EXPECT_EQ(v4.code_bytes, 12u);
  EXPECT_EQ(v4.param_bytes, 36u);
  EXPECT_EQ(v4.padded_bytes, 48u);
  const SectionLayout v_wide = SectionLayoutFor(Int4(64), false, l);  // group wider than D: 1
  EXPECT_EQ(v_wide.param_bytes, 3u * 1 * 4);
}

TEST(BlockFormat, GeometryIsLayerMajorKThenV) {
  const BlockDescriptor d =
      Descriptor({3, 1, 8, 3, DType::kF16, 0}, {{kInt8, Int2(2)}, {kRaw, kRaw}, {Int4(3), kFp8}});
  Result<BlockGeometry> g = ComputeGeometry(d);
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  EXPECT_EQ(g->header_bytes, 112u + 3 * 16);
  // Layer 0: K (24 + 6 -> 32) + V (6 + 3 tokens * 4 channel groups * 4 = 54 -> 64).
  // Layer 1: 48 + 48.
  // Layer 2: K (12 + 1 head * 1 token group * 8 channels * 4 = 44 -> 48) + V (24 + 6 -> 32).
  EXPECT_EQ(g->layer_offsets, (std::vector<uint64_t>{0, 96, 192}));
  EXPECT_EQ(g->payload_bytes, 272u);
  EXPECT_EQ(g->total_bytes(), 432u);
  EXPECT_EQ(g->k_sections[1].padded_bytes, 48u);
  EXPECT_EQ(g->v_sections[2].padded_bytes, 32u);
}

TEST(BlockFormat, BitsPerElementOfLlama3_8B) {
  const BlockLayout l{32, 8, 128, 256, DType::kBF16, 0};
  auto bits = [&](LayerCodec c) {
    Result<BlockGeometry> g = ComputeGeometry(UniformDescriptor(l, c));
    EXPECT_TRUE(g.ok());
    return g.ok() ? BitsPerElement(*g, l) : 0.0;
  };
  EXPECT_DOUBLE_EQ(bits({kRaw, kRaw}), 16.0);
  EXPECT_DOUBLE_EQ(bits({kFp8, kFp8}), 8.125);
  EXPECT_DOUBLE_EQ(bits({kInt8, kInt8}), 8.125);
  EXPECT_DOUBLE_EQ(bits({Int4(64), Int4(64)}), 4.5);
  EXPECT_DOUBLE_EQ(bits({Int2(64), Int2(64)}), 2.5);
  EXPECT_DOUBLE_EQ(bits({Int4(64), Int2(64)}), 3.5);
}

// --- writing and parsing -----------------------------------------------------------------------

TEST(BlockFormat, HeaderFieldsSitAtDocumentedOffsets) {
  const BlockDescriptor d = MixedDescriptor();
  const std::vector<uint8_t> o = Build(d);
  ASSERT_EQ(o.size(), 512u);
  EXPECT_EQ(std::string(o.begin(), o.begin() + 4), "KVBO");
  EXPECT_EQ(LoadLe32(&o[kMagicAt]), kBlockMagic);
  EXPECT_EQ(LoadLe16(&o[kVersionAt]), 1u);
  EXPECT_EQ(LoadLe16(&o[kHeaderLenAt]), 144u);
  EXPECT_EQ(LoadLe64(&o[kPayloadLenAt]), 512u - 144u);
  EXPECT_EQ(0, std::memcmp(&o[kNsDigestAt], d.ns_digest.data(), 32));
  EXPECT_EQ(0, std::memcmp(&o[kKeyAt], d.key.data(), 32));
  EXPECT_EQ(LoadLe32(&o[kLayersAt]), 2u);
  EXPECT_EQ(LoadLe16(&o[kKvHeadsAt]), 2u);
  EXPECT_EQ(LoadLe16(&o[kHeadDimAt]), 8u);
  EXPECT_EQ(LoadLe32(&o[kBlockTokensAt]), 3u);
  EXPECT_EQ(o[kDTypeAt], 2);  // bf16
  EXPECT_EQ(o[kFlagsAt], 0);
  EXPECT_EQ(LoadLe16(&o[kSinkTokensAt]), 1u);
  for (size_t i = kReservedAt; i < kFixedHeader; ++i) EXPECT_EQ(o[i], 0) << i;
  const uint8_t* e0 = &o[kFixedHeader];
  EXPECT_EQ(e0[0], 3);  // int4
  EXPECT_EQ(e0[1], 1);  // rotate
  EXPECT_EQ(LoadLe16(e0 + 2), 2u);
  EXPECT_EQ(e0[4], 4);  // int2
  EXPECT_EQ(e0[5], 0);
  EXPECT_EQ(LoadLe16(e0 + 6), 4u);
  EXPECT_EQ(LoadLe64(e0 + 8), 0u);
  const uint8_t* e1 = &o[kFixedHeader + kEntry];
  EXPECT_EQ(e1[0], 0);  // raw
  EXPECT_EQ(e1[4], 1);  // fp8
  EXPECT_EQ(LoadLe16(e1 + 2), 0u);
  EXPECT_EQ(LoadLe16(e1 + 6), 0u);
  // Layer 0: K int4 g=2 sink 1: 32 + 16 + 2*1*8*4 = 112; V int2 g=4: 32 + 8 + 2*2*2*4 = 72 -> 80.
  EXPECT_EQ(LoadLe64(e1 + 8), 192u);
}

TEST(BlockFormat, ChecksumIsXxh3OverHeaderWithoutChecksumThenPayload) {
  const std::vector<uint8_t> o = Build(MixedDescriptor());
  ASSERT_FALSE(o.empty());
  const size_t header_len = LoadLe16(&o[kHeaderLenAt]);
  std::vector<uint8_t> covered(o.begin(), o.begin() + kChecksumAt);
  covered.insert(covered.end(), o.begin() + kChecksumAt + 8, o.end());
  EXPECT_EQ(covered.size(), o.size() - 8);
  EXPECT_EQ(LoadLe64(&o[kChecksumAt]), XXH3_64bits(covered.data(), covered.size()));
  EXPECT_EQ(header_len, 144u);
}

// Parts split anywhere (inside the checksum field, at its edges, one byte at a time) hash to the
// stored checksum, as bytes that arrive in pieces are checked.
TEST(BlockFormat, ChecksumStreamOverArbitraryPartsMatchesTheStoredChecksum) {
  const std::vector<uint8_t> o = Build(MixedDescriptor());
  ASSERT_GT(o.size(), 64u);
  const uint64_t stored = LoadLe64(&o[kChecksumAt]);
  for (size_t first : {size_t{1}, size_t{15}, size_t{16}, size_t{17}, size_t{23}, size_t{24},
                       size_t{25}, size_t{40}, o.size()}) {
    BlockChecksumStream stream;
    const std::span<const uint8_t> all(o);
    stream.Update(all.first(first));
    for (size_t at = first; at < o.size(); at += 7) {
      stream.Update(all.subspan(at, std::min<size_t>(7, o.size() - at)));
    }
    EXPECT_EQ(stream.bytes(), o.size());
    EXPECT_EQ(stream.Digest(), stored) << "first part " << first;
  }
  BlockChecksumStream bytewise;
  for (uint8_t b : o) bytewise.Update(std::span(&b, 1));
  EXPECT_EQ(bytewise.Digest(), stored);
}

// CopyAndUpdate copies and hashes as memcpy then Update would, whatever the part sizes (around its
// internal piece size, splitting the checksum field), so an object copied in parts verifies.
TEST(BlockFormat, CopyAndUpdateCopiesAndHashesLikeUpdateAfterACopy) {
  const std::vector<uint8_t> o = Build(MixedDescriptor());
  ASSERT_GT(o.size(), 64u);
  const uint64_t stored = LoadLe64(&o[kChecksumAt]);
  std::vector<uint8_t> large(3 * 8192 + 4097);
  for (size_t i = 0; i < large.size(); ++i) large[i] = static_cast<uint8_t>(i * 31 + 5);
  for (size_t first : {size_t{0}, size_t{1}, size_t{20}, size_t{24}, size_t{40}, o.size()}) {
    SCOPED_TRACE("first part " + std::to_string(first));
    std::vector<uint8_t> copy(o.size(), 0);
    const std::span<const uint8_t> all(o);
    BlockChecksumStream stream;
    stream.CopyAndUpdate(all.first(first), std::span(copy).first(first));
    stream.CopyAndUpdate(all.subspan(first), std::span(copy).subspan(first));
    EXPECT_EQ(copy, o);
    EXPECT_EQ(stream.bytes(), o.size());
    EXPECT_EQ(stream.Digest(), stored);
  }
  for (size_t n : {size_t{0}, size_t{8191}, size_t{8192}, size_t{8193}, large.size()}) {
    SCOPED_TRACE("size " + std::to_string(n));
    std::vector<uint8_t> copy(n, 0);
    BlockChecksumStream fused, plain;
    fused.CopyAndUpdate(std::span(large).first(n), copy);
    plain.Update(std::span(large).first(n));
    EXPECT_TRUE(std::equal(copy.begin(), copy.end(), large.begin()));
    EXPECT_EQ(fused.bytes(), n);
    EXPECT_EQ(fused.Digest(), plain.Digest());
  }
}

TEST(BlockFormat, ComputedChecksumReplacesHashingAndAWrongOneIsCorruption) {
  std::vector<uint8_t> o = Build(MixedDescriptor());
  BlockChecksumStream stream;
  stream.Update(o);
  ParseOptions options;
  options.computed_checksum = stream.Digest();
  EXPECT_TRUE(Parse(o, options).ok());  // positive control
  options.computed_checksum = stream.Digest() ^ 1;
  ExpectCorruption(o, "checksum mismatch", options);
  // A damaged payload whose stream saw the damage is refused too.
  o[o.size() - 20] ^= 0x10;
  BlockChecksumStream damaged;
  damaged.Update(o);
  options.computed_checksum = damaged.Digest();
  ExpectCorruption(o, "checksum mismatch", options);
}

// The annotated example of docs/block_format.md §9, byte for byte.
TEST(BlockFormat, DocumentedExampleParses) {
  const std::vector<uint8_t> o = {
      0x4b, 0x56, 0x42, 0x4f, 0x01, 0x00, 0x80, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0xcf, 0x9b, 0xb5, 0x39, 0x8c, 0x24, 0xf9, 0x0e, 0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5,
      0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf, 0xb0, 0xb1, 0xb2, 0xb3, 0xb4,
      0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf, 0xc0, 0xc1, 0xc2, 0xc3,
      0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xcb, 0xcc, 0xcd, 0xce, 0xcf, 0xd0, 0xd1, 0xd2,
      0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0x01, 0x00,
      0x00, 0x00, 0x01, 0x00, 0x08, 0x00, 0x02, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2a, 0xab, 0x15, 0x7f, 0x00, 0xd6, 0x55,
      0xf5, 0x04, 0x08, 0xf0, 0x20, 0x30, 0x81, 0x40, 0x00, 0x0c, 0x26, 0x08, 0x28, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x81, 0x7f, 0x81, 0x7f, 0x40,
      0x40, 0x40, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, 0x20, 0x00, 0x3c,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
  ASSERT_EQ(o.size(), 192u);
  Result<BlockView> v = Parse(o);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->descriptor.layout, (BlockLayout{1, 1, 8, 2, DType::kF16, 0}));
  EXPECT_EQ(v->descriptor.layers, (std::vector<LayerCodec>{{kInt8, kInt8}}));
  EXPECT_EQ(v->checksum, 0x0ef9248c39b59bcfull);
  EXPECT_EQ(v->Section(0, 0).data(), o.data() + 128);
  EXPECT_EQ(v->Section(0, 1).data(), o.data() + 160);
  // The writer reproduces the header from the descriptor.
  std::vector<uint8_t> again = Build(v->descriptor);
  ASSERT_EQ(again.size(), o.size());
  EXPECT_EQ(0, std::memcmp(again.data(), o.data(), kChecksumAt));
  EXPECT_EQ(0, std::memcmp(again.data() + 24, o.data() + 24, 128 - 24));
}

TEST(BlockFormat, RoundTripsDescriptorsOfEveryCodecMix) {
  const std::vector<BlockDescriptor> cases = {
      UniformDescriptor({1, 1, 8, 1, DType::kF16, 0}, {kRaw, kRaw}),
      UniformDescriptor({1, 1, 8, 2, DType::kF16, 0}, {kInt8, kInt8}),
      UniformDescriptor({4, 2, 16, 5, DType::kBF16, 2}, {kFp8, kInt8}),
      UniformDescriptor({2, 3, 32, 17, DType::kF16, 1}, {Int4(4, true), Int2(8, true)}),
      UniformDescriptor({1, 8, 128, 64, DType::kBF16, 0}, {Int4(64), Int4(64)}),
      MixedDescriptor(),
      Descriptor({4, 1, 24, 7, DType::kF16, 7},  // non-power-of-two D, all tokens sink
                 {{kInt8, kFp8}, {Int4(7), Int2(5)}, {kRaw, Int4(65535)}, {Int2(1), kRaw}}),
      Descriptor({3, 1, 64, 3, DType::kF16, 0},
                 {{kFp8, SectionCodec{CodecId::kFp8, true, 0}},
                  {Int2(2, true), kInt8},
                  {SectionCodec{CodecId::kInt8, true, 0}, Int4(16, true)}}),
  };
  for (size_t c = 0; c < cases.size(); ++c) {
    SCOPED_TRACE("case " + std::to_string(c));
    const BlockDescriptor& d = cases[c];
    const std::vector<uint8_t> o = Build(d);
    Result<BlockGeometry> g = ComputeGeometry(d);
    ASSERT_TRUE(g.ok());
    ASSERT_EQ(o.size(), g->total_bytes());
    EXPECT_EQ(g->payload_bytes % kSectionAlignment, 0u);
    Result<BlockView> v = Parse(o);
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    EXPECT_EQ(v->descriptor.ns_digest, d.ns_digest);
    EXPECT_EQ(v->descriptor.key, d.key);
    EXPECT_EQ(v->descriptor.layout, d.layout);
    EXPECT_EQ(v->descriptor.layers, d.layers);
    EXPECT_EQ(v->geometry.header_bytes, g->header_bytes);
    EXPECT_EQ(v->geometry.payload_bytes, g->payload_bytes);
    EXPECT_EQ(v->geometry.layer_offsets, g->layer_offsets);
    EXPECT_EQ(v->checksum, LoadLe64(&o[kChecksumAt]));
    EXPECT_EQ(v->payload.data(), o.data() + g->header_bytes);
    EXPECT_EQ(v->payload.size(), g->payload_bytes);
    const uint8_t* next = v->payload.data();
    for (uint32_t layer = 0; layer < d.layout.num_layers; ++layer) {
      for (int kv = 0; kv < 2; ++kv) {
        const std::span<const uint8_t> s = v->Section(layer, kv);
        const SectionLayout& want = kv == 0 ? g->k_sections[layer] : g->v_sections[layer];
        EXPECT_EQ(s.data(), next) << layer << "/" << kv;
        EXPECT_EQ(s.size(), want.padded_bytes);
        EXPECT_EQ(s.size() % kSectionAlignment, 0u);
        next += s.size();
      }
    }
    EXPECT_EQ(next, o.data() + o.size());
  }
}

// --- rejections --------------------------------------------------------------------------------

}  // namespace
}  // namespace kvault
