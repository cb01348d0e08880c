// KvBlockCodec: the client's block <-> object layer over the CPU codecs, whole objects and layer
// ranges, without a daemon.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "kvault/kernels/kv_view.h"
#include "kvault/kv_store.h"

namespace kvault {
namespace {

constexpr uint32_t kLayers = 4, kHeads = 2, kDim = 16, kBlock = 8;

KvBlockFormat Format(const std::string& codec) {
  KvBlockFormat f;
  f.num_layers = kLayers;
  f.kv_heads = kHeads;
  f.head_dim = kDim;
  f.dtype = DType::kF16;
  f.block_tokens = kBlock;
  f.codec = codec;
  f.ns_digest.fill(0x42);
  return f;
}

// A contiguous [layers][2][tokens][heads][dim] fp16 tensor and its view.
struct Kv {
  explicit Kv(uint32_t tokens, bool fill) : data(size_t{kLayers} * 2 * tokens * kHeads * kDim, 0) {
    if (fill) {
      for (size_t i = 0; i < data.size(); ++i) {
        // fp16 values in about [-2, 2]: sign, small exponent, varied mantissa.
        const uint16_t mant = static_cast<uint16_t>((i * 2654435761u) >> 22) & 0x3FF;
        data[i] = static_cast<uint16_t>(((i % 3 == 0) ? 0x8000 : 0) | (14 + i % 2) << 10 | mant);
      }
    }
    uint16_t* base = data.data();
    const int32_t page = 0;
    const Status s =
        kernels::MakePagedKvView(kernels::KvLayout::kContiguous, DType::kF16, kLayers, kHeads, kDim,
                                 tokens, 1, {&base, 1}, {&page, 1}, view, storage);
    EXPECT_TRUE(s.ok()) << s.ToString();
  }
  // Elements of (layer, token range of block b) for K and V.
  std::vector<uint16_t> Layer(uint32_t layer, uint32_t tokens) const {
    const size_t per_layer = size_t{2} * tokens * kHeads * kDim;
    return {data.begin() + layer * per_layer, data.begin() + (layer + 1) * per_layer};
  }
  std::vector<uint16_t> data;
  kernels::PagedKvView view;
  kernels::PagedKvViewStorage storage;
};

BlockKey KeyOf(uint8_t b) {
  BlockKey k;
  k.fill(b);
  return k;
}

TEST(ClientKvBlockCodec, RefusesBadSpecsAndShapes) {
  EXPECT_FALSE(KvBlockCodec::Create(Format("int3")).ok());
  KvBlockFormat f = Format("fp8");
  f.block_tokens = 0;
  EXPECT_FALSE(KvBlockCodec::Create(f).ok());
  f = Format("int4,rot");
  f.head_dim = 24;  // rotation needs a power of two
  EXPECT_FALSE(KvBlockCodec::Create(f).ok());
  f = Format("fp8,sink=9");  // more sink tokens than a block
  EXPECT_FALSE(KvBlockCodec::Create(f).ok());
}

// Every shape the block format cannot hold is InvalidArgument, as Create documents, also where
// the format's own checks say OutOfRange (counts past its limits); the largest shape it holds is
// fine.
TEST(ClientKvBlockCodec, BadShapesAreInvalidArgumentNamingTheField) {
  struct Case {
    void (*edit)(KvBlockFormat&);
    const char* field;
  };
  const Case cases[] = {
      {[](KvBlockFormat& f) { f.num_layers = 0; }, "num_layers"},
      {[](KvBlockFormat& f) { f.num_layers = 1025; }, "num_layers"},
      {[](KvBlockFormat& f) { f.kv_heads = 0; }, "kv_heads"},
      {[](KvBlockFormat& f) { f.kv_heads = 1025; }, "kv_heads"},
      {[](KvBlockFormat& f) { f.head_dim = 12; }, "head_dim"},
      {[](KvBlockFormat& f) { f.block_tokens = 65537; }, "block_tokens"},
  };
  for (const Case& c : cases) {
    KvBlockFormat f = Format("raw");
    c.edit(f);
    const Status s = KvBlockCodec::Create(f).status();
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << c.field << ": " << s.ToString();
    EXPECT_NE(s.message().find(c.field), std::string::npos) << s.ToString();
  }
  KvBlockFormat edge = Format("raw");
  edge.num_layers = 1024;
  edge.kv_heads = 1024;
  edge.head_dim = 8;
  edge.block_tokens = 1;
  EXPECT_TRUE(KvBlockCodec::Create(edge).ok());
}

TEST(ClientKvBlockCodec, RawRoundTripIsExactAndChecksKeyAndPosition) {
  Result<KvBlockCodec> codec = KvBlockCodec::Create(Format("raw"));
  ASSERT_TRUE(codec.ok()) << codec.status().ToString();
  Kv in(2 * kBlock, true), out(2 * kBlock, false);
  for (uint64_t b = 0; b < 2; ++b) {
    std::vector<uint8_t> object(codec->ObjectBytes(b));
    ASSERT_TRUE(codec->Encode(in.view, b, KeyOf(b + 1), object).ok());
    EXPECT_EQ(codec->Decode(object, b, KeyOf(9), out.view).code(), StatusCode::kCorruption);
    ASSERT_TRUE(codec->Decode(object, b, KeyOf(b + 1), out.view).ok());
  }
  EXPECT_EQ(in.data, out.data);
  std::vector<uint8_t> object(codec->ObjectBytes(0));
  EXPECT_EQ(codec->Encode(in.view, 0, KeyOf(1), std::span<uint8_t>(object).first(10)).code(),
            StatusCode::kInvalidArgument);
  EXPECT_FALSE(codec->Encode(in.view, 2, KeyOf(1), object).ok());  // past the view's tokens
}

// Block 2^63 of 8 tokens ends at 2^66 + 8, which wraps to token 8 in uint64: unchecked, it would
// alias block 0. Such indexes, and those past the view, are InvalidArgument everywhere.
TEST(ClientKvBlockCodec, IndexesWhoseTokensOverflowOrLiePastTheViewAreRefused) {
  Result<KvBlockCodec> codec = KvBlockCodec::Create(Format("raw"));
  ASSERT_TRUE(codec.ok()) << codec.status().ToString();
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  Kv in(2 * kBlock, true), out(2 * kBlock, false);
  const std::span<const uint8_t> none;
  std::vector<uint8_t> object(codec->ObjectBytes(0));
  ASSERT_TRUE(codec->Encode(in.view, 0, KeyOf(1), object).ok());

  for (uint64_t index : {uint64_t{1} << 63, uint64_t{1} << 61, kMax / kBlock, kMax}) {
    SCOPED_TRACE(index);
    EXPECT_EQ(codec->FirstToken(index, kMax).status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(codec->Descriptor(index, KeyOf(1)).status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(codec->LayerRange(index, 0, 1).status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(codec->ObjectBytes(index), 0u);
    std::vector<uint8_t> scratch(object.size());
    EXPECT_EQ(codec->Encode(in.view, index, KeyOf(1), scratch).code(),
              StatusCode::kInvalidArgument);
    EXPECT_EQ(codec->Decode(object, index, KeyOf(1), out.view).code(),
              StatusCode::kInvalidArgument);
    EXPECT_EQ(codec->DecodeLayers(none, none, index, KeyOf(1), 0, 1, out.view).code(),
              StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(out.data, std::vector<uint16_t>(out.data.size(), 0));  // nothing was written

  // Past the view but without overflow: block 2 of a 2-block view.
  EXPECT_EQ(codec->FirstToken(2, 2 * kBlock).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(codec->Decode(object, 2, KeyOf(1), out.view).code(), StatusCode::kInvalidArgument);
  // The last block that fits in uint64, and the last block of the view.
  EXPECT_EQ(codec->FirstToken(kMax / kBlock - 1, kMax).value(), (kMax / kBlock - 1) * kBlock);
  EXPECT_EQ(codec->FirstToken(1, 2 * kBlock).value(), kBlock);
  std::vector<uint8_t> last(codec->ObjectBytes(1));
  ASSERT_TRUE(codec->Encode(in.view, 1, KeyOf(2), last).ok());
  ASSERT_TRUE(codec->Decode(last, 1, KeyOf(2), out.view).ok());
  // Layer 0's K: block 1 decoded, block 0 untouched.
  const size_t per_block = size_t{kBlock} * kHeads * kDim;
  EXPECT_TRUE(std::equal(out.data.begin() + per_block, out.data.begin() + 2 * per_block,
                         in.data.begin() + per_block));
  EXPECT_TRUE(std::all_of(out.data.begin(), out.data.begin() + per_block,
                          [](uint16_t x) { return x == 0; }));
}

TEST(ClientKvBlockCodec, LayerRangeDecodesLikeTheWholeObjectAndLeavesOtherLayersAlone) {
  Result<KvBlockCodec> codec = KvBlockCodec::Create(Format("k=int4,v=int2,g=8;layers=0-0:int8"));
  ASSERT_TRUE(codec.ok()) << codec.status().ToString();
  Kv in(kBlock, true), whole(kBlock, false), part(kBlock, false);
  std::vector<uint8_t> object(codec->ObjectBytes(0));
  ASSERT_TRUE(codec->Encode(in.view, 0, KeyOf(7), object).ok());
  ASSERT_TRUE(codec->Decode(object, 0, KeyOf(7), whole.view).ok());

  for (uint32_t first = 0; first < kLayers; ++first) {
    for (uint32_t count = 1; first + count <= kLayers; ++count) {
      std::fill(part.data.begin(), part.data.end(), 0xFFFF);
      Result<ByteRange> range = codec->LayerRange(0, first, count);
      ASSERT_TRUE(range.ok());
      ASSERT_LE(range->offset + range->length, object.size());
      const std::span<const uint8_t> bytes(object);
      ASSERT_TRUE(codec
                      ->DecodeLayers(bytes.first(codec->HeaderBytes()),
                                     bytes.subspan(range->offset, range->length), 0, KeyOf(7),
                                     first, count, part.view)
                      .ok())
          << first << "+" << count;
      for (uint32_t l = 0; l < kLayers; ++l) {
        if (l >= first && l < first + count) {
          EXPECT_EQ(part.Layer(l, kBlock), whole.Layer(l, kBlock)) << "layer " << l;
        } else {
          EXPECT_EQ(part.Layer(l, kBlock),
                    std::vector<uint16_t>(2 * kBlock * kHeads * kDim, 0xFFFF));
        }
      }
    }
  }
  EXPECT_FALSE(codec->LayerRange(0, 3, 2).ok());
  EXPECT_FALSE(codec->LayerRange(0, 0, 0).ok());
}

TEST(ClientKvBlockCodec, LayerDecodeRefusesAHeaderOfAnotherCodecOrKey) {
  Result<KvBlockCodec> fp8 = KvBlockCodec::Create(Format("fp8"));
  Result<KvBlockCodec> int8 = KvBlockCodec::Create(Format("int8"));
  ASSERT_TRUE(fp8.ok() && int8.ok());
  Kv in(kBlock, true), out(kBlock, false);
  std::vector<uint8_t> object(int8->ObjectBytes(0));
  ASSERT_TRUE(int8->Encode(in.view, 0, KeyOf(3), object).ok());
  const std::span<const uint8_t> bytes(object);
  Result<ByteRange> range = fp8->LayerRange(0, 1, 1);
  ASSERT_TRUE(range.ok());
  // Same byte sizes (int8 and fp8 have equal layouts), different codec ids in the header.
  ASSERT_EQ(fp8->ObjectBytes(0), int8->ObjectBytes(0));
  EXPECT_EQ(
      fp8->DecodeLayers(bytes.first(fp8->HeaderBytes()),
                        bytes.subspan(range->offset, range->length), 0, KeyOf(3), 1, 1, out.view)
          .code(),
      StatusCode::kCorruption);
  Result<ByteRange> own = int8->LayerRange(0, 1, 1);
  EXPECT_EQ(int8->DecodeLayers(bytes.first(int8->HeaderBytes()),
                               bytes.subspan(own->offset, own->length), 0, KeyOf(4), 1, 1, out.view)
                .code(),
            StatusCode::kCorruption);
  EXPECT_TRUE(int8->DecodeLayers(bytes.first(int8->HeaderBytes()),
                                 bytes.subspan(own->offset, own->length), 0, KeyOf(3), 1, 1,
                                 out.view)
                  .ok());
}

TEST(ClientKvBlockCodec, OwnObjectCheckRefusesAnObjectOfAnotherCodecOfTheSameSize) {
  Result<KvBlockCodec> fp8 = KvBlockCodec::Create(Format("fp8"));
  Result<KvBlockCodec> int8 = KvBlockCodec::Create(Format("int8"));
  ASSERT_TRUE(fp8.ok() && int8.ok());
  ASSERT_EQ(fp8->ObjectBytes(0), int8->ObjectBytes(0));
  Kv in(kBlock, true);
  std::vector<uint8_t> object(int8->ObjectBytes(0));
  ASSERT_TRUE(int8->Encode(in.view, 0, KeyOf(5), object).ok());
  // VerifyObject takes any codec (Decode decodes with the object's own descriptor) ...
  EXPECT_TRUE(fp8->VerifyObject(object, 0, KeyOf(5)).ok());
  // ... but a decoder that uses fp8's descriptor must not get an int8 object.
  Result<BlockView> other = fp8->VerifyOwnObject(object, 0, KeyOf(5));
  EXPECT_EQ(other.status().code(), StatusCode::kCorruption);
  EXPECT_NE(other.status().message().find("another codec"), std::string::npos);
  // Positive controls: the writer's codec accepts it; a wrong key is still refused.
  Result<BlockView> own = int8->VerifyOwnObject(object, 0, KeyOf(5));
  ASSERT_TRUE(own.ok()) << own.status().ToString();
  EXPECT_EQ(own->payload.size(), object.size() - int8->HeaderBytes());
  EXPECT_EQ(int8->VerifyOwnObject(object, 0, KeyOf(6)).status().code(), StatusCode::kCorruption);
  // A truncated object is refused, not read past its end.
  EXPECT_FALSE(int8->VerifyOwnObject(std::span(object).first(10), 0, KeyOf(5)).ok());
}

TEST(ClientKvBlockCodec, ViewOfAnotherShapeIsRefused) {
  Result<KvBlockCodec> codec = KvBlockCodec::Create(Format("fp8"));
  ASSERT_TRUE(codec.ok());
  Kv in(kBlock, true);
  kernels::PagedKvView wrong = in.view;
  wrong.kv_heads = 1;
  std::vector<uint8_t> object(codec->ObjectBytes(0));
  EXPECT_EQ(codec->Encode(wrong, 0, KeyOf(1), object).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvault
