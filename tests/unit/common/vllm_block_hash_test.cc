#include "kvault/common/vllm_block_hash.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include "key_test_util.h"

namespace kvault {
namespace {

using testing::Hexes;
using testing::Iota;

// Expected bytes and digests below were computed once with Debian's /usr/bin/python3 (3.11) and
// its cbor2 and hashlib modules, independently of this C++ code, following vLLM's definition
// (vllm/v1/core/kv_cache_utils.py hash_block_tokens + vllm/utils/hashing.py sha256_cbor).
// Shorthands used in the comments:
//   C(obj) = cbor2.dumps(obj, canonical=True).hex()
//   H(obj) = hashlib.sha256(cbor2.dumps(obj, canonical=True)).digest()   # vLLM's sha256_cbor
//   NH0    = H("0")                  # NONE_HASH with PYTHONHASHSEED=0
//   ND     = H("vllm-none-hash")     # NONE_HASH with vLLM's DEFAULT_NONE_HASH_SEED
//   chain(toks, extras, nh, B): p = nh; for i in range(len(toks) // B):
//       p = H((p, tuple(toks[B*i:B*(i+1)]), extras[i])); yield p.hex()

using Bytes = VllmExtraKey::Bytes;
using List = VllmExtraKey::List;

std::string Hex(const std::vector<uint8_t>& bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (uint8_t b : bytes) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0x0f]);
  }
  return out;
}

// Integers that fit int64_t convert implicitly; bool and uint64_t do not (see VllmExtraKeyInt).
static_assert(std::is_convertible_v<int, VllmExtraKey>);
static_assert(std::is_convertible_v<int64_t, VllmExtraKey>);
static_assert(std::is_convertible_v<uint32_t, VllmExtraKey>);
static_assert(!std::is_constructible_v<VllmExtraKey, bool>);
static_assert(!std::is_constructible_v<VllmExtraKey, uint64_t>);

std::string CborOf(const VllmExtraKey& key) {
  CanonicalCborWriter w;
  WriteVllmExtraKey(w, key);
  return Hex(w.bytes());
}

// --- Canonical CBOR writer: exact bytes, compared with C(v) -------------------------------------

TEST(CanonicalCborWriterTest, UnsignedHeadsUseShortestForm) {
  const std::vector<std::pair<uint64_t, std::string>> cases = {
      {0, "00"},                            // C(0)
      {1, "01"},                            // C(1)
      {23, "17"},                           // C(23): last inline argument
      {24, "1818"},                         // C(24): first 1-byte argument
      {255, "18ff"},                        // C(255)
      {256, "190100"},                      // C(256): first 2-byte argument
      {65535, "19ffff"},                    // C(65535)
      {65536, "1a00010000"},                // C(65536): first 4-byte argument
      {4294967295u, "1affffffff"},          // C(2**32 - 1)
      {4294967296u, "1b0000000100000000"},  // C(2**32): first 8-byte argument
      {std::numeric_limits<uint64_t>::max(), "1bffffffffffffffff"},  // C(2**64 - 1)
  };
  for (const auto& [v, hex] : cases) {
    CanonicalCborWriter w;
    w.Uint(v);
    EXPECT_EQ(Hex(w.bytes()), hex) << v;
  }
}

TEST(CanonicalCborWriterTest, SignedIntegers) {
  const std::vector<std::pair<int64_t, std::string>> cases = {
      {0, "00"},                                                    // C(0)
      {23, "17"},                                                   // C(23)
      {std::numeric_limits<int64_t>::max(), "1b7fffffffffffffff"},  // C(2**63 - 1)
      {-1, "20"},                                                   // C(-1)
      {-24, "37"},                                                  // C(-24)
      {-25, "3818"},                                                // C(-25)
      {-256, "38ff"},                                               // C(-256)
      {-257, "390100"},                                             // C(-257)
      {-65537, "3a00010000"},                                       // C(-65537)
      {std::numeric_limits<int64_t>::min(), "3b7fffffffffffffff"},  // C(-2**63)
  };
  for (const auto& [v, hex] : cases) {
    CanonicalCborWriter w;
    w.Int(v);
    EXPECT_EQ(Hex(w.bytes()), hex) << v;
  }
}

TEST(CanonicalCborWriterTest, StringsBytesNullAndArrays) {
  auto text = [](std::string_view s) {
    CanonicalCborWriter w;
    w.Text(s);
    return Hex(w.bytes());
  };
  auto bytes = [](const std::vector<uint8_t>& b) {
    CanonicalCborWriter w;
    w.Bytes(b);
    return Hex(w.bytes());
  };
  EXPECT_EQ(text(""), "60");                                // C("")
  EXPECT_EQ(text("a"), "6161");                             // C("a")
  EXPECT_EQ(text("cache_salt"), "6a63616368655f73616c74");  // C("cache_salt")
  EXPECT_EQ(text(std::string(24, 'x')),                     // C("x" * 24): 1-byte length head
            "7818787878787878787878787878787878787878787878787878");
  EXPECT_EQ(text("\xc3\xa9"), "62c3a9");         // C("é"): UTF-8 bytes, byte length 2
  EXPECT_EQ(bytes({}), "40");                    // C(b"")
  EXPECT_EQ(bytes({1, 2}), "420102");            // C(b"\x01\x02")
  EXPECT_EQ(bytes(std::vector<uint8_t>(32, 0)),  // C(bytes(32)): a parent hash
            "5820" + std::string(64, '0'));

  CanonicalCborWriter w;
  w.Null();
  EXPECT_EQ(Hex(w.bytes()), "f6");  // C(None)
  w.Clear();
  w.ArrayHeader(0);
  EXPECT_EQ(Hex(w.bytes()), "80");  // C(())
  w.Clear();
  w.ArrayHeader(24);
  for (int i = 0; i < 24; ++i) w.Uint(1);
  // C([1] * 24): 1-byte array length head, then 24 x 01
  EXPECT_EQ(Hex(w.Take()), "9818010101010101010101010101010101010101010101010101");
  EXPECT_TRUE(w.bytes().empty());
}

TEST(CanonicalCborWriterTest, ExtraKeyValues) {
  EXPECT_EQ(CborOf(7), "07");                                  // C(7)
  EXPECT_EQ(CborOf(-3), "22");                                 // C(-3)
  EXPECT_EQ(CborOf(uint32_t{4294967295u}), "1affffffff");      // C(2**32 - 1)
  EXPECT_EQ(CborOf("sql-lora"), "6873716c2d6c6f7261");         // C("sql-lora")
  EXPECT_EQ(CborOf(std::string("a")), "6161");                 // C("a")
  EXPECT_EQ(CborOf(Bytes{0x00, 0x01, 0xff}), "430001ff");      // C(b"\x00\x01\xff")
  EXPECT_EQ(CborOf(List{"mm-abc", 0}), "82666d6d2d61626300");  // C(("mm-abc", 0))
  EXPECT_EQ(CborOf(List{1, List{2, "z"}, Bytes{0}}),
            "83018202617a4100");    // C((1, (2, "z"), b"\0"))
  EXPECT_EQ(CborOf(List{}), "80");  // C(())
}

// --- NONE_HASH --------------------------------------------------------------------------------

TEST(VllmNoneHashTest, MatchesSha256CborOfTheSeedString) {
  // H("vllm-none-hash").hex()
  EXPECT_EQ(ToHex(VllmNoneHash(kVllmDefaultNoneHashSeed)),
            "9bd96a485ad84efdafb72ee48a1d7a69bcead0f8f0433173941b276b9581eef0");
  // H("0").hex(): PYTHONHASHSEED=0
  EXPECT_EQ(ToHex(VllmNoneHash("0")),
            "4e1195df020de59e0d65a33a4279f1183e7ae4e5d980e309f8b55adff2e61c3e");
  // H("").hex()
  EXPECT_EQ(ToHex(VllmNoneHash("")),
            "8d33f520a3c4cef80d2453aef81b612bfe1cb44c8b2025630ad38662763f13d3");
}

// --- Block hashes ------------------------------------------------------------------------------

TEST(VllmBlockHashTest, FirstBlockFromNoneHash) {
  const BlockKey nh0 = VllmNoneHash("0");
  const std::vector<uint32_t> tokens = Iota(1, 16);
  // H((NH0, tuple(range(1, 17)), None)).hex()
  const std::string expected = "202da172482d928bbc42ab25b0151e2b895f13f41002e27b2ceabcfae6d332ea";
  EXPECT_EQ(ToHex(VllmHashBlockTokens(nh0, tokens, std::nullopt)), expected);
  Result<std::vector<BlockKey>> chain = VllmBlockHashes(nh0, tokens, 16);
  ASSERT_TRUE(chain.ok()) << chain.status().ToString();
  EXPECT_EQ(Hexes(*chain), std::vector<std::string>{expected});
}

TEST(VllmBlockHashTest, ThreeBlockChainIgnoresPartialTail) {
  // list(chain(list(range(1, 15)), [None] * 3, ND, 4)): 14 tokens, 3 full blocks, 2-token tail.
  const std::vector<std::string> expected = {
      "58d0879dff3800f65f8c5fd449d73048c0f7699dd238a03b84b146b151d55111",
      "e1bc29393a2da9fd798f35ff04d215f846aee6df4b803ce3d43b57df56b58fb1",
      "321cf73a943519e37f9c8afa804132a5b9076e22b40b2d5fe6f7a2886960a68a",
  };
  const BlockKey nd = VllmNoneHash(kVllmDefaultNoneHashSeed);
  Result<std::vector<BlockKey>> chain = VllmBlockHashes(nd, Iota(1, 14), 4);
  ASSERT_TRUE(chain.ok()) << chain.status().ToString();
  EXPECT_EQ(Hexes(*chain), expected);

  // The tail does not matter: 12 tokens (no tail) and 15 tokens (3-token tail) give the same.
  Result<std::vector<BlockKey>> exact = VllmBlockHashes(nd, Iota(1, 12), 4);
  Result<std::vector<BlockKey>> longer = VllmBlockHashes(nd, Iota(1, 15), 4);
  ASSERT_TRUE(exact.ok() && longer.ok());
  EXPECT_EQ(Hexes(*exact), expected);
  EXPECT_EQ(Hexes(*longer), expected);

  // The one-step function composes to the same chain.
  const std::vector<uint32_t> tokens = Iota(1, 12);
  BlockKey parent = nd;
  for (size_t i = 0; i < 3; ++i) {
    parent = VllmHashBlockTokens(parent, std::span(tokens).subspan(4 * i, 4), std::nullopt);
    EXPECT_EQ(ToHex(parent), expected[i]) << i;
  }
}

TEST(VllmBlockHashTest, FewerTokensThanABlockGiveNoHashes) {
  const BlockKey nd = VllmNoneHash(kVllmDefaultNoneHashSeed);
  Result<std::vector<BlockKey>> none = VllmBlockHashes(nd, Iota(1, 3), 4);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  Result<std::vector<BlockKey>> empty = VllmBlockHashes(nd, {}, 4);
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

TEST(VllmBlockHashTest, ExtraKeys) {
  const BlockKey nh0 = VllmNoneHash("0");
  const std::vector<uint32_t> t = {1, 2, 3, 4};
  // Common prefix of every input below: C((NH0, (1, 2, 3, 4), ...)) starts with
  // 83 (array of 3) 5820 <NH0> 84 01 02 03 04.
  const std::string prefix =
      "8358204e1195df020de59e0d65a33a4279f1183e7ae4e5d980e309f8b55adff2e61c3e8401020304";
  struct Case {
    const char* name;
    std::optional<VllmExtraKeys> extra;
    std::string cbor_tail;  // C((NH0, t, extra)) minus `prefix`
    std::string hash;       // H((NH0, t, extra)).hex()
  };
  const std::vector<Case> cases = {
      // extra = None
      {"none", std::nullopt, "f6",
       "c9d58ba695280d69b243e1e0df813136ca9196b286fb1a021e0b2e028ef071cb"},
      // extra = ("sql-lora",): a LoRA name
      {"lora", VllmExtraKeys{"sql-lora"}, "816873716c2d6c6f7261",
       "8f9afed63606909cc2ce3ca7179bda617be725f58352aac29d39fcc163208ef4"},
      // extra = ("salt-123",): a cache_salt
      {"salt", VllmExtraKeys{"salt-123"}, "816873616c742d313233",
       "4c7b12133ba5fe40e355bc31516abd2f424ca5fde684bb16e919002f5f76baa2"},
      // extra = (7, -3): integers
      {"ints", VllmExtraKeys{7, -3}, "820722",
       "7e9b5e898d8b0b7a6a51bbd9b81d3410705e7643d7429537de3c305accecb46b"},
      // extra = (("mm-abc", 0),): a multimodal (identifier, offset) tuple
      {"mm", VllmExtraKeys{List{"mm-abc", 0}}, "8182666d6d2d61626300",
       "908c98a3b50c9af56159d4d0d3d578bfd0269ec70133e7d2af4dad3487cffb41"},
      // extra = ("sql-lora", ("mm-abc", -2), "salt-123", b"\x00\x01\xff"): vLLM's order, lora +
      // mm + cache_salt + prompt-embeds digest
      {"mixed", VllmExtraKeys{"sql-lora", List{"mm-abc", -2}, "salt-123", Bytes{0x00, 0x01, 0xff}},
       "846873716c2d6c6f726182666d6d2d616263216873616c742d313233430001ff",
       "9bda0edac24125a9511e25ba51862bd98c07ab072cfd253d6600c9e27e1b43a4"},
      // extra = (): never produced by vLLM (it passes None), but distinct from None
      {"empty", VllmExtraKeys{}, "80",
       "bae5db69900b9c9fe229202e9e5a92f8a5418022ef3db7014bdbbc01eb190a92"},
  };
  std::set<std::string> distinct;
  for (const Case& c : cases) {
    EXPECT_EQ(Hex(VllmBlockHashInput(nh0, t, c.extra)), prefix + c.cbor_tail) << c.name;
    EXPECT_EQ(ToHex(VllmHashBlockTokens(nh0, t, c.extra)), c.hash) << c.name;
    distinct.insert(c.hash);
  }
  EXPECT_EQ(distinct.size(), cases.size());
}

TEST(VllmBlockHashTest, TokenIdsAcrossCborHeadLengths) {
  const BlockKey nh0 = VllmNoneHash("0");
  // Inline, 1-, 2- and 4-byte heads, at both edges of each.
  const std::vector<uint32_t> t = {0, 23, 24, 255, 256, 65535, 65536, 4294967295u};
  // C((NH0, (0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1), None))
  EXPECT_EQ(Hex(VllmBlockHashInput(nh0, t, std::nullopt)),
            "8358204e1195df020de59e0d65a33a4279f1183e7ae4e5d980e309f8b55adff2e61c3e88"
            "0017181818ff19010019ffff1a000100001afffffffff6");
  // H((NH0, (0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1), None)).hex()
  Result<std::vector<BlockKey>> chain = VllmBlockHashes(nh0, t, 8);
  ASSERT_TRUE(chain.ok());
  EXPECT_EQ(Hexes(*chain), std::vector<std::string>{
                               "39532d759036eca7efd7a6e039e216836a50436ef6b04f2f261c9e2f453fb3ec"});
}

TEST(VllmBlockHashTest, LoraOnEveryBlockCacheSaltOnFirstOnly) {
  // vLLM's default block_size 16; 40 tokens = 2 full blocks + an 8-token tail.
  // list(chain(list(range(1000, 1040)), [("sql-lora", "tenant-salt"), ("sql-lora",)], ND, 16))
  const std::vector<std::optional<VllmExtraKeys>> extra = {
      VllmExtraKeys{"sql-lora", "tenant-salt"},
      VllmExtraKeys{"sql-lora"},
  };
  Result<std::vector<BlockKey>> chain =
      VllmBlockHashes(VllmNoneHash(kVllmDefaultNoneHashSeed), Iota(1000, 1039), 16, extra);
  ASSERT_TRUE(chain.ok()) << chain.status().ToString();
  EXPECT_EQ(Hexes(*chain), (std::vector<std::string>{
                               "9309c647bea5877992b15db12521ea1a563f3e7b3990e0fd77d0d02d8b2c3926",
                               "d15def09dc8ab4ef95e76550d34ddd2907b3ac61f19f85a10ec7e0cc891ad237",
                           }));
}

TEST(VllmBlockHashTest, ChangesPropagateDownTheChain) {
  const BlockKey nd = VllmNoneHash(kVllmDefaultNoneHashSeed);
  const std::vector<uint32_t> base = Iota(1, 12);
  // list(chain(list(range(1, 13)), [None] * 3, ND, 4))
  const std::vector<std::string> base_expected = {
      "58d0879dff3800f65f8c5fd449d73048c0f7699dd238a03b84b146b151d55111",
      "e1bc29393a2da9fd798f35ff04d215f846aee6df4b803ce3d43b57df56b58fb1",
      "321cf73a943519e37f9c8afa804132a5b9076e22b40b2d5fe6f7a2886960a68a",
  };

  // Positive control: equal inputs, computed twice (and through a copy), give equal hashes.
  Result<std::vector<BlockKey>> a = VllmBlockHashes(nd, base, 4);
  const std::vector<uint32_t> base_copy = base;
  Result<std::vector<BlockKey>> b = VllmBlockHashes(nd, base_copy, 4);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
  EXPECT_EQ(Hexes(*a), base_expected);

  // One token in block 1 changed (toks[5] = 999): block 0 keeps its hash, blocks 1 and 2 change.
  // mod = list(range(1, 13)); mod[5] = 999; list(chain(mod, [None] * 3, ND, 4))
  std::vector<uint32_t> mod = base;
  mod[5] = 999;
  Result<std::vector<BlockKey>> m = VllmBlockHashes(nd, mod, 4);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(Hexes(*m), (std::vector<std::string>{
                           "58d0879dff3800f65f8c5fd449d73048c0f7699dd238a03b84b146b151d55111",
                           "69b8de770da065d0de45869d440a432b5962da55be6c407d0156f2002df25c1d",
                           "e71d78c1cec0b9d8d9cfef4b78581a01c4b9e5c9af4a15bd5750ec554431f2b4",
                       }));
  EXPECT_EQ((*m)[0], (*a)[0]);
  EXPECT_NE((*m)[1], (*a)[1]);
  EXPECT_NE((*m)[2], (*a)[2]);

  // Extra keys on block 1 only: block 2's own inputs are unchanged, yet its hash changes.
  // list(chain(list(range(1, 13)), [None, ("x",), None], ND, 4))
  const std::vector<std::optional<VllmExtraKeys>> extra = {std::nullopt, VllmExtraKeys{"x"},
                                                           std::nullopt};
  Result<std::vector<BlockKey>> e = VllmBlockHashes(nd, base, 4, extra);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(Hexes(*e), (std::vector<std::string>{
                           "58d0879dff3800f65f8c5fd449d73048c0f7699dd238a03b84b146b151d55111",
                           "e4d2591b98c2e4e4c28c4769d23aa2057399e3e2b3cc7cd47c77952d5cb98895",
                           "51aa5e7efa45757eb085efb0b16a93a30247809efee4a1371f29ab68d4891ff9",
                       }));
  EXPECT_EQ((*e)[0], (*a)[0]);
  EXPECT_NE((*e)[1], (*a)[1]);
  EXPECT_NE((*e)[2], (*a)[2]);

  // An explicit all-None extra list is the same as passing none.
  const std::vector<std::optional<VllmExtraKeys>> all_none(3);
  Result<std::vector<BlockKey>> n = VllmBlockHashes(nd, base, 4, all_none);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, *a);

  // A different NONE_HASH changes every block.
  Result<std::vector<BlockKey>> s = VllmBlockHashes(VllmNoneHash("0"), base, 4);
  ASSERT_TRUE(s.ok());
  for (size_t i = 0; i < 3; ++i) EXPECT_NE((*s)[i], (*a)[i]) << i;
}

TEST(VllmBlockHashTest, InvalidArguments) {
  const BlockKey nd = VllmNoneHash(kVllmDefaultNoneHashSeed);
  Result<std::vector<BlockKey>> zero = VllmBlockHashes(nd, Iota(1, 8), 0);
  ASSERT_FALSE(zero.ok());
  EXPECT_EQ(zero.status().code(), StatusCode::kInvalidArgument);

  // 10 tokens, block 4: two full blocks, so extras must number 0 or 2 (not 3 counting the tail).
  const std::vector<std::optional<VllmExtraKeys>> three(3);
  Result<std::vector<BlockKey>> too_many = VllmBlockHashes(nd, Iota(1, 10), 4, three);
  ASSERT_FALSE(too_many.ok());
  EXPECT_EQ(too_many.status().code(), StatusCode::kInvalidArgument);
  const std::vector<std::optional<VllmExtraKeys>> one(1);
  Result<std::vector<BlockKey>> too_few = VllmBlockHashes(nd, Iota(1, 10), 4, one);
  ASSERT_FALSE(too_few.ok());
  EXPECT_EQ(too_few.status().code(), StatusCode::kInvalidArgument);
  const std::vector<std::optional<VllmExtraKeys>> two(2);
  EXPECT_TRUE(VllmBlockHashes(nd, Iota(1, 10), 4, two).ok());
}

}  // namespace
}  // namespace kvault
