#include "kvault/kernels/codec_spec.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

namespace kvault::kernels {
namespace {

SectionCodec Raw() { return {CodecId::kRaw, false, 0}; }
SectionCodec Fp8(bool rot = false) { return {CodecId::kFp8, rot, 0}; }
SectionCodec Int8(bool rot = false) { return {CodecId::kInt8, rot, 0}; }
SectionCodec Int4(uint16_t g = 64, bool rot = false) { return {CodecId::kInt4, rot, g}; }
SectionCodec Int2(uint16_t g = 64, bool rot = false) { return {CodecId::kInt2, rot, g}; }
LayerCodec Both(SectionCodec c) { return {c, c}; }

// CodecSpec declares `operator== = default`, but LayerRangeOverride has no operator==, so using
// `spec == spec` fails to compile (std::vector's operator== needs the element's). The test
// SpecIsEqualityComparable records that through the SFINAE-friendly check below; until it is
// fixed the tests compare specs through SameSpec, field by field.
template <typename T>
constexpr bool kEqualityComparable = requires(const T& a) {
  a == a;
};

::testing::AssertionResult SameSpec(const CodecSpec& a, const CodecSpec& b) {
  if (a.default_codec != b.default_codec) {
    return ::testing::AssertionFailure() << "default codecs differ";
  }
  if (a.sink_tokens != b.sink_tokens) {
    return ::testing::AssertionFailure() << "sink " << a.sink_tokens << " vs " << b.sink_tokens;
  }
  if (a.overrides.size() != b.overrides.size()) {
    return ::testing::AssertionFailure() << "override counts differ";
  }
  for (size_t i = 0; i < a.overrides.size(); ++i) {
    const LayerRangeOverride& x = a.overrides[i];
    const LayerRangeOverride& y = b.overrides[i];
    if (x.first != y.first || x.last != y.last || x.codec != y.codec) {
      return ::testing::AssertionFailure() << "override " << i << " differs";
    }
  }
  return ::testing::AssertionSuccess();
}

TEST(CodecSpecTest, SpecIsEqualityComparable) {
  // codec_spec.h promises "parsing it gives an equal spec" via CodecSpec::operator==.
  EXPECT_TRUE(kEqualityComparable<LayerRangeOverride>)
      << "CodecSpec::operator== cannot be instantiated: LayerRangeOverride needs "
         "`bool operator==(const LayerRangeOverride&) const = default;`";
}

CodecSpec Parse(const std::string& text) {
  Result<CodecSpec> r = ParseCodecSpec(text);
  EXPECT_TRUE(r.ok()) << "'" << text << "': " << r.status().ToString();
  return r.ok() ? *r : CodecSpec{};
}

// ---------------------------------------------------------------------------------------------
// Valid specs

struct ValidCase {
  std::string text;
  CodecSpec expected;
  std::string canonical;
};

std::vector<ValidCase> ValidCases() {
  std::vector<ValidCase> cases;
  auto add = [&](std::string text, LayerCodec def, std::vector<LayerRangeOverride> overrides,
                 uint32_t sink, std::string canonical) {
    CodecSpec s;
    s.default_codec = def;
    s.overrides = std::move(overrides);
    s.sink_tokens = sink;
    cases.push_back({std::move(text), s, std::move(canonical)});
  };
  add("raw", Both(Raw()), {}, 0, "raw");
  add("fp8", Both(Fp8()), {}, 0, "fp8");
  add("int8", Both(Int8()), {}, 0, "int8");
  add("int4", Both(Int4()), {}, 0, "int4:g=64");  // grouped codecs default to g=64
  add("int2", Both(Int2()), {}, 0, "int2:g=64");
  add("k=int4,v=int2", {Int4(), Int2()}, {}, 0, "k=int4:g=64,v=int2:g=64");
  add("v=int2,k=int4", {Int4(), Int2()}, {}, 0, "k=int4:g=64,v=int2:g=64");  // any order
  add("k=int4,v=int4", Both(Int4()), {}, 0, "int4:g=64");  // equal sides print as one codec
  add("int4:g=32", Both(Int4(32)), {}, 0, "int4:g=32");
  add("int4:rot:g=32", Both(Int4(32, true)), {}, 0, "int4:g=32:rot");
  add("fp8:rot", Both(Fp8(true)), {}, 0, "fp8:rot");
  add("int2,g=32,rot,sink=4", Both(Int2(32, true)), {}, 4, "int2:g=32:rot,sink=4");
  add("sink=4,rot,g=32,int2", Both(Int2(32, true)), {}, 4, "int2:g=32:rot,sink=4");
  add("int4:g=1", Both(Int4(1)), {}, 0, "int4:g=1");
  add("int4:g=65535", Both(Int4(65535)), {}, 0, "int4:g=65535");
  add("int8,sink=0", Both(Int8()), {}, 0, "int8");
  add("raw,sink=7", Both(Raw()), {}, 7, "raw,sink=7");
  add("fp8,sink=65535", Both(Fp8()), {}, 65535, "fp8,sink=65535");
  add("k=int4:g=32,v=int2;layers=0-1:int8;layers=30-31:fp8", {Int4(32), Int2()},
      {{0, 1, Both(Int8())}, {30, 31, Both(Fp8())}}, 0,
      "k=int4:g=32,v=int2:g=64;layers=0-1:int8;layers=30-31:fp8");
  add("int4;layers=5-5:k=raw,v=int2:g=8,rot", Both(Int4()), {{5, 5, {Raw(), Int2(8, true)}}}, 0,
      "int4:g=64;layers=5-5:k=raw,v=int2:g=8:rot");
  add("int2,sink=4;layers=0-0:raw", Both(Int2()), {{0, 0, Both(Raw())}}, 4,
      "int2:g=64,sink=4;layers=0-0:raw");
  // A bare g= applies only to the grouped sides (fp8 takes none)...
  add("k=fp8,v=int4,g=16", {Fp8(), Int4(16)}, {}, 0, "k=fp8,v=int4:g=16");
  add("k=int4,v=int2,g=8", {Int4(8), Int2(8)}, {}, 0, "k=int4:g=8,v=int2:g=8");
  // ...and never overrides a group written on the codec itself.
  add("k=int4:g=32,v=int2,g=16", {Int4(32), Int2(16)}, {}, 0, "k=int4:g=32,v=int2:g=16");
  // A bare rot applies to the lossy sides only.
  add("k=raw,v=int4,rot", {Raw(), Int4(64, true)}, {}, 0, "k=raw,v=int4:g=64:rot");
  add("k=fp8,v=raw,rot", {Fp8(true), Raw()}, {}, 0, "k=fp8:rot,v=raw");
  add("k=int8,v=int2,rot", {Int8(true), Int2(64, true)}, {}, 0, "k=int8:rot,v=int2:g=64:rot");
  return cases;
}

TEST(CodecSpecTest, ParsesEveryValidExample) {
  for (const ValidCase& c : ValidCases()) {
    SCOPED_TRACE(c.text);
    Result<CodecSpec> r = ParseCodecSpec(c.text);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->default_codec, c.expected.default_codec);
    ASSERT_EQ(r->overrides.size(), c.expected.overrides.size());
    for (size_t i = 0; i < c.expected.overrides.size(); ++i) {
      EXPECT_EQ(r->overrides[i].first, c.expected.overrides[i].first);
      EXPECT_EQ(r->overrides[i].last, c.expected.overrides[i].last);
      EXPECT_EQ(r->overrides[i].codec, c.expected.overrides[i].codec);
    }
    EXPECT_EQ(r->sink_tokens, c.expected.sink_tokens);
    EXPECT_TRUE(SameSpec(*r, c.expected));
  }
}

TEST(CodecSpecTest, ToStringIsCanonicalAndReparsesEqual) {
  for (const ValidCase& c : ValidCases()) {
    SCOPED_TRACE(c.text);
    const CodecSpec spec = Parse(c.text);
    const std::string text = spec.ToString();
    EXPECT_EQ(text, c.canonical);
    Result<CodecSpec> again = ParseCodecSpec(text);
    ASSERT_TRUE(again.ok()) << again.status().ToString();
    EXPECT_TRUE(SameSpec(*again, spec));
    EXPECT_EQ(again->ToString(), text);  // canonical text is a fixed point
  }
}

TEST(CodecSpecTest, SectionCodecToString) {
  EXPECT_EQ(SectionCodecToString(Raw()), "raw");
  EXPECT_EQ(SectionCodecToString(Fp8()), "fp8");
  EXPECT_EQ(SectionCodecToString(Fp8(true)), "fp8:rot");
  EXPECT_EQ(SectionCodecToString(Int8()), "int8");
  EXPECT_EQ(SectionCodecToString(Int4(64, true)), "int4:g=64:rot");
  EXPECT_EQ(SectionCodecToString(Int2(7)), "int2:g=7");
}

TEST(CodecSpecTest, LeadingZerosInNumbersAreAccepted) {
  const CodecSpec s = Parse("int4:g=032;layers=01-02:int8");
  EXPECT_EQ(s.default_codec, Both(Int4(32)));
  ASSERT_EQ(s.overrides.size(), 1u);
  EXPECT_EQ(s.overrides[0].first, 1u);
  EXPECT_EQ(s.overrides[0].last, 2u);
  EXPECT_EQ(s.ToString(), "int4:g=32;layers=1-2:int8");
}

// ---------------------------------------------------------------------------------------------
// ResolveLayers

TEST(CodecSpecTest, ResolveLayersWithoutOverrides) {
  Result<std::vector<LayerCodec>> r = Parse("k=int4,v=int2").ResolveLayers(3);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, std::vector<LayerCodec>(3, LayerCodec{Int4(), Int2()}));
}

// A layer count from a caller is checked before anything is sized by it: 500 million layers took
// 3.9 GB and 6 s before the descriptor check refused them, 2^32 - 1 ran out of memory.
TEST(CodecSpecTest, ResolveLayersRefusesALayerCountOutsideTheFormatAtOnce) {
  const CodecSpec spec = Parse("int4");
  ASSERT_TRUE(spec.ResolveLayers(kMaxLayers).ok());  // positive control: the largest allowed
  for (const uint32_t n : {0u, kMaxLayers + 1, 500'000'000u, UINT32_MAX}) {
    const auto start = std::chrono::steady_clock::now();
    Result<std::vector<LayerCodec>> r = spec.ResolveLayers(n);
    ASSERT_FALSE(r.ok()) << n;
    EXPECT_EQ(r.status().code(), StatusCode::kOutOfRange) << r.status().ToString();
    EXPECT_NE(r.status().message().find("num_layers must be in 1..1024, got " + std::to_string(n)),
              std::string::npos)
        << r.status().ToString();
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  }
}

TEST(CodecSpecTest, ResolveLayersAppliesOverridesInOrderLaterWins) {
  const CodecSpec spec = Parse("int4;layers=0-2:int8;layers=2-3:fp8;layers=5-5:raw");
  Result<std::vector<LayerCodec>> r = spec.ResolveLayers(7);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const std::vector<LayerCodec> expected = {Both(Int8()), Both(Int8()), Both(Fp8()), Both(Fp8()),
                                            Both(Int4()), Both(Raw()),  Both(Int4())};
  EXPECT_EQ(*r, expected);
  // The reverse order gives layer 2 to the int8 override.
  Result<std::vector<LayerCodec>> rev =
      Parse("int4;layers=2-3:fp8;layers=0-2:int8").ResolveLayers(4);
  ASSERT_TRUE(rev.ok());
  EXPECT_EQ((*rev)[2], Both(Int8()));
  EXPECT_EQ((*rev)[3], Both(Fp8()));
}

TEST(CodecSpecTest, ResolveLayersTypicalLlama) {
  const CodecSpec spec = Parse("k=int4:g=32,v=int2;layers=0-1:int8;layers=30-31:fp8");
  Result<std::vector<LayerCodec>> r = spec.ResolveLayers(32);
  ASSERT_TRUE(r.ok());
  for (uint32_t l = 0; l < 32; ++l) {
    SCOPED_TRACE(l);
    if (l <= 1) {
      EXPECT_EQ((*r)[l], Both(Int8()));
    } else if (l >= 30) {
      EXPECT_EQ((*r)[l], Both(Fp8()));
    } else {
      EXPECT_EQ((*r)[l], (LayerCodec{Int4(32), Int2()}));
    }
  }
}

TEST(CodecSpecTest, ResolveLayersRejectsOverridePastTheModel) {
  const CodecSpec spec = Parse("int4;layers=30-31:fp8");
  Result<std::vector<LayerCodec>> r = spec.ResolveLayers(31);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("30-31"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("31 layers"), std::string::npos) << r.status().message();
  EXPECT_TRUE(spec.ResolveLayers(32).ok());
}

// ---------------------------------------------------------------------------------------------
// Malformed specs

struct BadCase {
  std::string text;
  std::string quoted;  // the offending term, which the message must quote as 'term'
};

TEST(CodecSpecTest, RejectsMalformedSpecsQuotingTheOffendingTerm) {
  const std::vector<BadCase> cases = {
      // Unknown codec or option.
      {"int3", "int3"},
      {"INT4", "INT4"},
      {"k=int5,v=int2", "k=int5"},
      {"int4,foo", "foo"},
      {"int4:bar", "bar"},
      {"int4,rotate", "rotate"},
      // g out of range or in the wrong place.
      {"int4:g=0", "g=0"},
      {"int4,g=0", "g=0"},
      {"int4:g=70000", "g=70000"},
      {"int4:g=65536", "g=65536"},
      {"int4:g=", "g="},
      {"int4:g=-1", "g=-1"},
      {"int4:g=1.5", "g=1.5"},
      {"int4:g=+8", "g=+8"},
      {"fp8:g=32", "fp8:g=32"},
      {"int8:g=32", "int8:g=32"},
      {"raw:g=32", "raw:g=32"},
      {"fp8,g=32", "fp8,g=32"},  // a bare g with no grouped side: the segment
      {"k=int4:g=8,v=fp8,g=32", "k=int4:g=8,v=fp8,g=32"},  // nobody left to take it
      // rot on raw.
      {"raw:rot", "raw:rot"},
      {"raw,rot", "raw,rot"},
      {"k=raw:rot,v=int4", "k=raw:rot"},
      // A side set twice.
      {"k=int4,k=int2,v=int2", "k=int2"},
      {"int4,k=int2", "k=int2"},
      {"int4,v=int2", "v=int2"},
      {"int4,int8", "int8"},
      {"k=int4,int8", "int8"},
      {"k=int4,v=int2,v=int2", "v=int2"},
      // A side missing.
      {"k=int4", "k=int4"},
      {"v=fp8", "v=fp8"},
      {"g=32", "g=32"},
      {"rot", "rot"},
      {"sink=4", "sink=4"},
      {"int4;layers=0-1:k=int8", "k=int8"},
      // sink outside the default segment or bound to a codec.
      {"int4;layers=0-1:int8,sink=4", "sink=4"},
      {"int4:sink=4", "int4:sink=4"},
      {"k=int4:sink=4,v=int2", "k=int4:sink=4"},
      {"int4,sink=65536", "sink=65536"},
      {"int4,sink=x", "sink=x"},
      // layers= in the first segment; malformed or reversed ranges.
      {"layers=0-1:int8", "layers=0-1:int8"},
      {"int4;int8", "int8"},
      {"int4;layers=5-2:int8", "layers=5-2:int8"},
      {"int4;layers=0-1", "layers=0-1"},
      {"int4;layers=1:int8", "layers=1:int8"},
      {"int4;layers=-1:int8", "layers=-1:int8"},
      {"int4;layers=a-b:int8", "layers=a-b:int8"},
      {"int4;layers=0-1024:int8", "layers=0-1024:int8"},  // past kMaxLayers
      {"int4;layers=0-1:int8:g=4", "int8:g=4"},
      {"int4;layers=0-1:bogus", "bogus"},
      // Garbage characters.
      {"int4 ", "int4 "},
      {" int4", " int4"},
      {"in#t4", "in#t4"},
      {"int4,g=3 2", "g=3 2"},
      {"int4\t", "int4\t"},
      {"k=int4,v=int2;layers=0-1:int8!", "int8!"},
      // Empty terms: trailing or doubled separators.
      {"int4,", "int4,"},
      {"int4,,rot", "int4,,rot"},
      {",int4", ",int4"},
      {"int4;", "int4;"},
      {"int4:", "int4:"},
      // Repeated options.
      {"int4,sink=4,sink=8", "sink=8"},
      {"int4:g=32:g=16", "g=16"},
      {"int4,g=32,g=16", "g=16"},
      {"int4,rot,rot", "rot"},
  };
  for (const BadCase& c : cases) {
    SCOPED_TRACE("spec '" + c.text + "'");
    Result<CodecSpec> r = ParseCodecSpec(c.text);
    if (r.ok()) {
      ADD_FAILURE() << "parsed as " << r->ToString();
      continue;
    }
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("'" + c.quoted + "'"), std::string::npos)
        << "message does not quote '" << c.quoted << "': " << r.status().message();
  }
}

// A bare codec sets both sides, so after `v=` it sets V a second time. The parser applies the
// bare codec to K, finds K unset, and then copies K over V without checking V.
TEST(CodecSpecTest, RejectsBareCodecAfterVSide) {
  for (const char* text : {"v=int4,int8", "v=fp8,raw", "v=int2:g=8,int4:g=16"}) {
    SCOPED_TRACE(text);
    Result<CodecSpec> r = ParseCodecSpec(text);
    if (r.ok()) {
      ADD_FAILURE() << "accepted; V silently replaced: " << r->ToString();
      continue;
    }
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  }
  Result<CodecSpec> r = ParseCodecSpec("v=int4,int8");
  if (!r.ok()) {
    EXPECT_NE(r.status().message().find("'int8'"), std::string::npos) << r.status().message();
  }
}

TEST(CodecSpecTest, RejectsEmptyAndOverlongSpecs) {
  Result<CodecSpec> empty = ParseCodecSpec("");
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(empty.status().message().find("empty"), std::string::npos);

  std::string longest = "int4";
  while (longest.size() + 15 <= 4096) longest += ";layers=0-0:raw";
  EXPECT_TRUE(ParseCodecSpec(longest).ok());
  Result<CodecSpec> too_long = ParseCodecSpec(std::string(4097, 'a'));
  ASSERT_FALSE(too_long.ok());
  EXPECT_EQ(too_long.status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvault::kernels
