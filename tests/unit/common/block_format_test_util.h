#pragma once
// Shared by the block format tests (block_format_test.cc: layout, checksums, round trips;
// block_format_reject_test.cc: what the parser refuses and Validate's limits): the documented
// byte offsets, descriptor builders and sealed objects.

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "kvault/common/block_format.h"

namespace kvault::block_format_test {

// Byte offsets of docs/block_format.md §2-3, written out here rather than borrowed from the
// implementation so that a moved field fails these tests.
constexpr size_t kMagicAt = 0;
constexpr size_t kVersionAt = 4;
constexpr size_t kHeaderLenAt = 6;
constexpr size_t kPayloadLenAt = 8;
constexpr size_t kChecksumAt = 16;
constexpr size_t kNsDigestAt = 24;
constexpr size_t kKeyAt = 56;
constexpr size_t kLayersAt = 88;
constexpr size_t kKvHeadsAt = 92;
constexpr size_t kHeadDimAt = 94;
constexpr size_t kBlockTokensAt = 96;
constexpr size_t kDTypeAt = 100;
constexpr size_t kFlagsAt = 101;
constexpr size_t kSinkTokensAt = 102;
constexpr size_t kReservedAt = 104;
constexpr size_t kFixedHeader = 112;
constexpr size_t kEntry = 16;

constexpr SectionCodec kRaw{CodecId::kRaw, false, 0};
constexpr SectionCodec kFp8{CodecId::kFp8, false, 0};
constexpr SectionCodec kInt8{CodecId::kInt8, false, 0};

inline SectionCodec Int4(uint16_t group, bool rotate = false) {
  return {CodecId::kInt4, rotate, group};
}
inline SectionCodec Int2(uint16_t group, bool rotate = false) {
  return {CodecId::kInt2, rotate, group};
}

inline BlockDescriptor Descriptor(BlockLayout layout, std::vector<LayerCodec> layers) {
  BlockDescriptor d;
  for (size_t i = 0; i < 32; ++i) {
    d.ns_digest[i] = static_cast<uint8_t>(0xA0 + i);
    d.key[i] = static_cast<uint8_t>(0xC0 + i);
  }
  d.layout = layout;
  d.layers = std::move(layers);
  return d;
}

inline BlockDescriptor UniformDescriptor(BlockLayout layout, LayerCodec codec) {
  return Descriptor(layout, std::vector<LayerCodec>(layout.num_layers, codec));
}

// A sealed object. The parser treats payload bytes as opaque, so a deterministic pattern stands in
// for real codes.
inline std::vector<uint8_t> Build(const BlockDescriptor& d) {
  Result<BlockGeometry> g = ComputeGeometry(d);
  EXPECT_TRUE(g.ok()) << g.status().ToString();
  if (!g.ok()) return {};
  std::vector<uint8_t> object(g->total_bytes());
  WriteBlockHeader(d, *g, object);
  uint32_t x = 0x9E3779B9u;
  for (size_t i = g->header_bytes; i < object.size(); ++i) {
    x = x * 1664525u + 1013904223u;
    object[i] = static_cast<uint8_t>(x >> 24);
  }
  SealBlockObject(object);
  return object;
}

// A small object with two layers and every codec family, used by the rejection tests.
inline BlockDescriptor MixedDescriptor() {
  return Descriptor({2, 2, 8, 3, DType::kBF16, 1}, {{Int4(2, true), Int2(4)}, {kRaw, kFp8}});
}

inline Result<BlockView> Parse(const std::vector<uint8_t>& bytes,
                               const ParseOptions& options = {}) {
  return ParseBlockObject(std::span<const uint8_t>(bytes.data(), bytes.size()), options);
}

inline bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Expects Corruption whose message contains `why`.
inline void ExpectCorruption(const std::vector<uint8_t>& bytes, const std::string& why,
                             const ParseOptions& options = {}) {
  Result<BlockView> r = Parse(bytes, options);
  ASSERT_FALSE(r.ok()) << "accepted; expected: " << why;
  EXPECT_EQ(r.status().code(), StatusCode::kCorruption) << r.status().ToString();
  EXPECT_TRUE(Contains(r.status().message(), why)) << r.status().ToString() << " vs " << why;
}

// --- codecs and geometry -----------------------------------------------------------------------

}  // namespace kvault::block_format_test
