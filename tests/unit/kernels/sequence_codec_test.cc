// Sequence encode/decode: blocks cut at the right places, sinks only in block 0, and decode
// refusing objects that are missing, swapped or from another sequence.
#include "kvault/kernels/sequence_codec.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "kvault/kernels/kv_generator.h"

namespace kvault::kernels {
namespace {

struct Sequence {
  KvTensor kv;
  KvTensor out;
  PagedKvView in_view, out_view;
  PagedKvViewStorage in_storage, out_storage;
  uint16_t* in_ptr = nullptr;
  uint16_t* out_ptr = nullptr;
  std::vector<Digest32> keys;
};

void Make(Sequence& s, uint32_t tokens, uint32_t block) {
  KvGeneratorOptions o;
  o.shape = {2, 3, 64, tokens, DType::kF16};
  s.kv = *GenerateKv(o);
  s.out = s.kv;
  std::fill(s.out.data.begin(), s.out.data.end(), 0);
  s.in_ptr = s.kv.data.data();
  s.out_ptr = s.out.data.data();
  const int32_t page0 = 0;
  ASSERT_TRUE(MakePagedKvView(KvLayout::kContiguous, DType::kF16, 2, 3, 64, tokens, 1,
                              {&s.in_ptr, 1}, {&page0, 1}, s.in_view, s.in_storage)
                  .ok());
  ASSERT_TRUE(MakePagedKvView(KvLayout::kContiguous, DType::kF16, 2, 3, 64, tokens, 1,
                              {&s.out_ptr, 1}, {&page0, 1}, s.out_view, s.out_storage)
                  .ok());
  for (uint64_t b = 0; b < BlockCount(tokens, block); ++b) {
    Digest32 k{};
    k[0] = static_cast<uint8_t>(b + 1);
    s.keys.push_back(k);
  }
}

TEST(SequenceCodecTest, RawRoundTripAndBlockShapes) {
  Sequence s;
  Make(s, 37, 16);
  SequenceCodecOptions opt;
  opt.block_tokens = 16;
  opt.threads = 2;
  const CodecSpec spec = *ParseCodecSpec("int8,sink=4");
  std::vector<std::vector<uint8_t>> objects;
  ASSERT_TRUE(EncodeSequenceCpu(s.in_view, 37, spec, Digest32{}, s.keys, opt, objects).ok());
  ASSERT_EQ(objects.size(), 3u);
  const uint32_t want_tokens[] = {16, 16, 5}, want_sink[] = {4, 0, 0};
  for (size_t b = 0; b < 3; ++b) {
    auto v = ParseBlockObject(objects[b]);
    ASSERT_TRUE(v.ok());
    EXPECT_EQ(v->descriptor.layout.block_tokens, want_tokens[b]);
    EXPECT_EQ(v->descriptor.layout.sink_tokens, want_sink[b]);
    EXPECT_EQ(v->descriptor.key, s.keys[b]);
  }
  ASSERT_TRUE(DecodeSequenceCpu(objects, s.keys, s.out_view, 37, opt).ok());
  // Sink tokens come back bit-exact.
  for (uint32_t t = 0; t < 4; ++t) {
    for (uint32_t e = 0; e < 3 * 64; ++e) {
      ASSERT_EQ(s.out.data[s.out.Offset(0, 0, t, 0, 0) + e],
                s.kv.data[s.kv.Offset(0, 0, t, 0, 0) + e]);
    }
  }
}

TEST(SequenceCodecTest, DecodeRejectsSwappedMissingOrForeignObjects) {
  Sequence s;
  Make(s, 32, 16);
  SequenceCodecOptions opt;
  opt.block_tokens = 16;
  const CodecSpec spec = *ParseCodecSpec("fp8");
  std::vector<std::vector<uint8_t>> objects;
  ASSERT_TRUE(EncodeSequenceCpu(s.in_view, 32, spec, Digest32{}, s.keys, opt, objects).ok());
  ASSERT_TRUE(DecodeSequenceCpu(objects, s.keys, s.out_view, 32, opt).ok());  // positive control

  auto swapped = objects;
  std::swap(swapped[0], swapped[1]);
  Status st = DecodeSequenceCpu(swapped, s.keys, s.out_view, 32, opt);
  EXPECT_EQ(st.code(), StatusCode::kCorruption) << st.ToString();

  auto missing = objects;
  missing.pop_back();
  st = DecodeSequenceCpu(missing, {s.keys.data(), 1}, s.out_view, 32, opt);
  EXPECT_EQ(st.code(), StatusCode::kCorruption) << st.ToString();

  // An object encoded for a 16-token block does not fit a 32-token block size.
  SequenceCodecOptions other = opt;
  other.block_tokens = 32;
  st = DecodeSequenceCpu({objects.data(), 1}, {s.keys.data(), 1}, s.out_view, 32, other);
  EXPECT_EQ(st.code(), StatusCode::kCorruption) << st.ToString();
}

// A window of blocks [1, 3) of a 37-token sequence (the partial last block included), with the
// view holding only those tokens, gives the whole sequence's objects and decode for them.
TEST(SequenceCodecTest, WindowMatchesTheWholeSequence) {
  Sequence whole;
  Make(whole, 37, 16);
  SequenceCodecOptions opt;
  opt.block_tokens = 16;
  opt.threads = 2;
  const CodecSpec spec = *ParseCodecSpec("int4,sink=4");
  std::vector<std::vector<uint8_t>> all;
  ASSERT_TRUE(EncodeSequenceCpu(whole.in_view, 37, spec, Digest32{}, whole.keys, opt, all).ok());
  ASSERT_TRUE(DecodeSequenceCpu(all, whole.keys, whole.out_view, 37, opt).ok());

  // The window's tokens [16, 37) as their own [2][2][21][3][64] tensor.
  const uint32_t window_tokens = 21;
  const size_t row = 3 * 64;
  std::vector<uint16_t> in(size_t{2} * 2 * window_tokens * row), out(in.size(), 0);
  for (size_t lk = 0; lk < 4; ++lk) {
    std::copy_n(whole.kv.data.begin() + (lk * 37 + 16) * row, window_tokens * row,
                in.begin() + lk * window_tokens * row);
  }
  uint16_t* in_ptr = in.data();
  uint16_t* out_ptr = out.data();
  const int32_t page0 = 0;
  PagedKvView in_view, out_view;
  PagedKvViewStorage in_storage, out_storage;
  ASSERT_TRUE(MakePagedKvView(KvLayout::kContiguous, DType::kF16, 2, 3, 64, window_tokens, 1,
                              {&in_ptr, 1}, {&page0, 1}, in_view, in_storage)
                  .ok());
  ASSERT_TRUE(MakePagedKvView(KvLayout::kContiguous, DType::kF16, 2, 3, 64, window_tokens, 1,
                              {&out_ptr, 1}, {&page0, 1}, out_view, out_storage)
                  .ok());
  opt.first_block = 1;
  EXPECT_EQ(WindowBlockCount(37, opt), 2u);
  const std::span<const Digest32> keys(whole.keys.data() + 1, 2);
  std::vector<std::vector<uint8_t>> part;
  ASSERT_TRUE(EncodeSequenceCpu(in_view, 37, spec, Digest32{}, keys, opt, part).ok());
  ASSERT_EQ(part.size(), 2u);
  EXPECT_EQ(part[0], all[1]);
  EXPECT_EQ(part[1], all[2]);
  ASSERT_TRUE(DecodeSequenceCpu(part, keys, out_view, 37, opt).ok());
  for (size_t lk = 0; lk < 4; ++lk) {
    EXPECT_TRUE(std::equal(out.begin() + lk * window_tokens * row,
                           out.begin() + (lk + 1) * window_tokens * row,
                           whole.out.data.begin() + (lk * 37 + 16) * row))
        << "layer " << lk / 2 << " kv " << lk % 2;
  }
  // A window of one block, and windows that start past the sequence.
  opt.max_blocks = 1;
  EXPECT_EQ(WindowBlockCount(37, opt), 1u);
  ASSERT_TRUE(EncodeSequenceCpu(in_view, 37, spec, Digest32{}, keys.first(1), opt, part).ok());
  EXPECT_EQ(part.size(), 1u);
  EXPECT_EQ(part[0], all[1]);
  opt.first_block = 3;
  EXPECT_EQ(WindowBlockCount(37, opt), 0u);
  EXPECT_EQ(EncodeSequenceCpu(in_view, 37, spec, Digest32{}, {}, opt, part).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(DecodeSequenceCpu({}, {}, out_view, 37, opt).code(), StatusCode::kInvalidArgument);
  // The window's objects decode only at their own positions.
  opt.first_block = 0;
  opt.max_blocks = 2;
  EXPECT_EQ(DecodeSequenceCpu(std::span(all).subspan(1, 2), keys, out_view, 37, opt).code(),
            StatusCode::kCorruption);
}

TEST(SequenceCodecTest, SinkLargerThanTheBlockIsRejected) {
  Sequence s;
  Make(s, 32, 16);
  SequenceCodecOptions opt;
  opt.block_tokens = 16;
  std::vector<std::vector<uint8_t>> objects;
  Status st = EncodeSequenceCpu(s.in_view, 32, *ParseCodecSpec("int4,sink=17"), Digest32{}, s.keys,
                                opt, objects);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("sink=17"), std::string::npos) << st.ToString();
  // Positive control: a sink that fills the first block exactly is fine.
  EXPECT_TRUE(EncodeSequenceCpu(s.in_view, 32, *ParseCodecSpec("int4,sink=16"), Digest32{}, s.keys,
                                opt, objects)
                  .ok());
}

TEST(SequenceCodecTest, ContiguousViewNeedsExactlyOnePage) {
  std::vector<uint16_t> data(2 * 2 * 8 * 3 * 64);
  uint16_t* p = data.data();
  const int32_t two[] = {0, 0};
  PagedKvView view;
  PagedKvViewStorage storage;
  EXPECT_EQ(MakePagedKvView(KvLayout::kContiguous, DType::kF16, 2, 3, 64, 8, 1, {&p, 1}, two, view,
                            storage)
                .code(),
            StatusCode::kInvalidArgument);
  EXPECT_TRUE(MakePagedKvView(KvLayout::kContiguous, DType::kF16, 2, 3, 64, 8, 1, {&p, 1}, {two, 1},
                              view, storage)
                  .ok());
}

}  // namespace
}  // namespace kvault::kernels
