#include "kvault/common/block_key.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "key_test_util.h"

namespace kvault {
namespace {

using testing::Hexes;
using testing::Iota;

// Expected digests below were computed once with /usr/bin/python3 and hashlib, independently of
// this C++ code. Shorthands used in the comments:
//   le(ts)  = b''.join(t.to_bytes(4, 'little') for t in ts)
//   H(b)    = hashlib.sha256(b).digest()
//   enc(..) = the docs/keys.md version-1 encoding, written in Python from the doc:
//     s(tag, b) = bytes([tag, 1]) + struct.pack('<I', len(b)) + b
//     u(tag, v) = bytes([tag, 2]) + struct.pack('<I', 4) + struct.pack('<I', v)
//     enc = b'KVNS' + bytes([1]) + s(1, tenant) + s(2, model) + s(3, rev) + u(0x10, layers)
//           + u(0x11, kv_heads) + u(0x12, head_dim) + s(0x13, dtype) + u(0x14, block_tokens)
//           + u(0x20, tp_rank) + u(0x21, tp_size) + u(0x22, pp_rank) + u(0x23, pp_size)
//           + u(0x30, len(extra)) + for (n, v) in sorted(extra):
//             bytes([0x31, 3]) + pack('<I', 8 + len(n) + len(v)) + pack('<I', len(n)) + n
//             + pack('<I', len(v)) + v

BlockKey FromHex(const std::string& hex) {
  BlockKey key{};
  EXPECT_EQ(hex.size(), 64u);
  for (size_t i = 0; i < key.size() && 2 * i + 1 < hex.size(); ++i) {
    key[i] = static_cast<uint8_t>(std::stoul(hex.substr(2 * i, 2), nullptr, 16));
  }
  return key;
}

// The smallest valid namespace: every field at its minimum, one extra key.
Namespace SmallNamespace() {
  Namespace ns;
  ns.model_id = "m";
  ns.num_layers = 1;
  ns.kv_heads = 1;
  ns.head_dim = 1;
  ns.dtype = "f16";
  ns.block_tokens = 1;
  ns.extra_keys = {{"k", "v"}};
  return ns;
}

// A realistic namespace: tensor-parallel rank 1 of 2 with a LoRA and a cache salt.
Namespace LlamaNamespace() {
  Namespace ns;
  ns.tenant = "acme";
  ns.model_id = "meta-llama/Llama-3.1-8B-Instruct";
  ns.model_revision = "0e9e39f";
  ns.num_layers = 32;
  ns.kv_heads = 8;
  ns.head_dim = 128;
  ns.dtype = "bf16";
  ns.block_tokens = 16;
  ns.tp_rank = 1;
  ns.tp_size = 2;
  ns.pp_rank = 0;
  ns.pp_size = 1;
  ns.extra_keys = {{"lora", "sql-v3"}, {"cache_salt", "s1"}};
  return ns;
}

std::string DigestHex(const Namespace& ns) {
  Result<BlockKey> digest = NamespaceDigest(ns);
  EXPECT_TRUE(digest.ok()) << digest.status().ToString();
  return digest.ok() ? ToHex(*digest) : std::string();
}

TEST(BlockKeyTest, ToHexIsLowerCaseAndOrdered) {
  BlockKey key;
  for (size_t i = 0; i < key.size(); ++i) key[i] = static_cast<uint8_t>(i * 8 + 7);
  EXPECT_EQ(ToHex(key), "070f171f272f373f474f575f676f777f878f979fa7afb7bfc7cfd7dfe7eff7ff");
}

TEST(NamespaceTest, CanonicalEncodingMatchesDocumentedBytes) {
  // python3: enc(b'', b'm', b'', 1, 1, 1, b'f16', 1, 0, 1, 0, 1, [(b'k', b'v')]).hex()
  Result<std::vector<uint8_t>> encoding = CanonicalEncoding(SmallNamespace());
  ASSERT_TRUE(encoding.ok()) << encoding.status().ToString();
  std::string hex;
  for (uint8_t b : *encoding) {
    static constexpr char kDigits[] = "0123456789abcdef";
    hex.push_back(kDigits[b >> 4]);
    hex.push_back(kDigits[b & 0x0f]);
  }
  EXPECT_EQ(hex,
            "4b564e5301"                          // "KVNS", version 1
            "010100000000"                        // tenant: bytes, ""
            "0201010000006d"                      // model_id: bytes, "m"
            "030100000000"                        // model_revision: bytes, ""
            "10020400000001000000"                // num_layers: u32, 1
            "11020400000001000000"                // kv_heads: u32, 1
            "12020400000001000000"                // head_dim: u32, 1
            "130103000000663136"                  // dtype: bytes, "f16"
            "14020400000001000000"                // block_tokens: u32, 1
            "20020400000000000000"                // tp_rank: u32, 0
            "21020400000001000000"                // tp_size: u32, 1
            "22020400000000000000"                // pp_rank: u32, 0
            "23020400000001000000"                // pp_size: u32, 1
            "30020400000001000000"                // extra key count: u32, 1
            "31030a000000010000006b0100000076");  // extra key: pair, ("k", "v")
}

TEST(NamespaceTest, DigestWorkedExamples) {
  // python3: H(enc(b'', b'm', b'', 1, 1, 1, b'f16', 1, 0, 1, 0, 1, [(b'k', b'v')])).hex()
  EXPECT_EQ(DigestHex(SmallNamespace()),
            "5f02438dcdd3d42f0411a8744cf92e6098fad9c362d3f6af192b26a675f23593");
  // python3: H(enc(b'acme', b'meta-llama/Llama-3.1-8B-Instruct', b'0e9e39f', 32, 8, 128, b'bf16',
  //                16, 1, 2, 0, 1, [(b'lora', b'sql-v3'), (b'cache_salt', b's1')])).hex()
  EXPECT_EQ(DigestHex(LlamaNamespace()),
            "d3c28481e5df2cfe08972a2f6056a1e35c676c0abe80d54283c4ed857f85bb93");
}

TEST(NamespaceTest, EqualNamespacesGiveEqualDigests) {
  const Namespace a = LlamaNamespace();
  const Namespace b = LlamaNamespace();  // built independently, equal field by field
  ASSERT_EQ(a, b);
  EXPECT_EQ(DigestHex(a), DigestHex(b));
  EXPECT_EQ(DigestHex(a), DigestHex(a));  // deterministic across calls
}

TEST(NamespaceTest, ExtraKeyOrderDoesNotMatter) {
  Namespace reordered = LlamaNamespace();
  std::swap(reordered.extra_keys[0], reordered.extra_keys[1]);
  EXPECT_EQ(DigestHex(reordered), DigestHex(LlamaNamespace()));
}

TEST(NamespaceTest, EveryFieldChangesTheDigest) {
  using Mutation = std::pair<std::string, void (*)(Namespace&)>;
  const std::vector<Mutation> mutations = {
      {"tenant", [](Namespace& ns) { ns.tenant = "acme2"; }},
      {"tenant emptied", [](Namespace& ns) { ns.tenant.clear(); }},
      {"model_id", [](Namespace& ns) { ns.model_id = "meta-llama/Llama-3.1-8B"; }},
      {"model_revision", [](Namespace& ns) { ns.model_revision = "0e9e39e"; }},
      {"num_layers", [](Namespace& ns) { ns.num_layers = 31; }},
      {"kv_heads", [](Namespace& ns) { ns.kv_heads = 4; }},
      {"head_dim", [](Namespace& ns) { ns.head_dim = 64; }},
      {"dtype", [](Namespace& ns) { ns.dtype = "f16"; }},
      {"block_tokens", [](Namespace& ns) { ns.block_tokens = 32; }},
      {"tp_rank", [](Namespace& ns) { ns.tp_rank = 0; }},
      {"tp_size", [](Namespace& ns) { ns.tp_size = 4; }},
      {"pp_rank",
       [](Namespace& ns) {
         ns.pp_rank = 1;
         ns.pp_size = 2;
       }},
      {"pp_size", [](Namespace& ns) { ns.pp_size = 2; }},
      {"lora value", [](Namespace& ns) { ns.extra_keys[0].value = "sql-v4"; }},
      {"salt value", [](Namespace& ns) { ns.extra_keys[1].value = "s2"; }},
      {"lora and salt values swapped",
       [](Namespace& ns) { std::swap(ns.extra_keys[0].value, ns.extra_keys[1].value); }},
      {"salt value given to lora, salt dropped",
       [](Namespace& ns) {
         ns.extra_keys = {{"lora", "s1"}};
       }},
      {"lora value given to salt, lora dropped",
       [](Namespace& ns) {
         ns.extra_keys = {{"cache_salt", "sql-v3"}};
       }},
      {"extra key renamed", [](Namespace& ns) { ns.extra_keys[0].name = "adapter"; }},
      {"extra key dropped", [](Namespace& ns) { ns.extra_keys.pop_back(); }},
      {"empty extra key added",
       [](Namespace& ns) {
         ns.extra_keys.push_back({"x", ""});
       }},
      {"byte moved tenant -> model_id",
       [](Namespace& ns) {
         ns.tenant = "acm";
         ns.model_id = "e" + ns.model_id;
       }},
      {"byte moved model_id -> model_revision",
       [](Namespace& ns) {
         ns.model_id.pop_back();
         ns.model_revision = "t" + ns.model_revision;
       }},
      {"byte moved extra name -> value",
       [](Namespace& ns) {
         ns.extra_keys[0] = {"lor", "asql-v3"};
       }},
      {"byte moved between extra keys",
       [](Namespace& ns) {
         ns.extra_keys = {{"lora", "sql-v"}, {"3cache_salt", "s1"}};
       }},
      {"salt folded into lora value",
       [](Namespace& ns) {
         ns.extra_keys = {{"lora", "sql-v3cache_salts1"}};
       }},
  };
  std::set<std::string> seen = {DigestHex(LlamaNamespace())};
  for (const auto& [what, mutate] : mutations) {
    Namespace ns = LlamaNamespace();
    mutate(ns);
    const std::string digest = DigestHex(ns);
    EXPECT_FALSE(digest.empty()) << what;
    EXPECT_TRUE(seen.insert(digest).second) << what << " collides with an earlier namespace";
  }
  EXPECT_EQ(seen.size(), mutations.size() + 1);
}

TEST(NamespaceTest, InvalidNamespacesAreRejected) {
  using Mutation = std::pair<std::string, void (*)(Namespace&)>;
  // Each mutation names the text the error message must contain.
  const std::vector<Mutation> mutations = {
      {"model_id", [](Namespace& ns) { ns.model_id.clear(); }},
      {"dtype", [](Namespace& ns) { ns.dtype.clear(); }},
      {"num_layers", [](Namespace& ns) { ns.num_layers = 0; }},
      {"kv_heads", [](Namespace& ns) { ns.kv_heads = 0; }},
      {"head_dim", [](Namespace& ns) { ns.head_dim = 0; }},
      {"block_tokens", [](Namespace& ns) { ns.block_tokens = 0; }},
      {"tp_size",
       [](Namespace& ns) {
         ns.tp_rank = 0;
         ns.tp_size = 0;
       }},
      {"tp_rank (2) must be < tp_size (2)", [](Namespace& ns) { ns.tp_rank = 2; }},
      {"pp_size", [](Namespace& ns) { ns.pp_size = 0; }},
      {"pp_rank (1) must be < pp_size (1)", [](Namespace& ns) { ns.pp_rank = 1; }},
      {"tenant", [](Namespace& ns) { ns.tenant.assign(kMaxNamespaceStringBytes + 1, 't'); }},
      {"model_id", [](Namespace& ns) { ns.model_id.assign(kMaxNamespaceStringBytes + 1, 'm'); }},
      {"model_revision",
       [](Namespace& ns) { ns.model_revision.assign(kMaxNamespaceStringBytes + 1, 'r'); }},
      {"dtype", [](Namespace& ns) { ns.dtype.assign(kMaxNamespaceStringBytes + 1, 'd'); }},
      {"extra_keys[1].name", [](Namespace& ns) { ns.extra_keys[1].name.clear(); }},
      {"extra_keys[0].name",
       [](Namespace& ns) { ns.extra_keys[0].name.assign(kMaxNamespaceStringBytes + 1, 'n'); }},
      {"extra_keys[0].value",
       [](Namespace& ns) { ns.extra_keys[0].value.assign(kMaxNamespaceStringBytes + 1, 'v'); }},
      {"\"lora\" appears more than once",
       [](Namespace& ns) {
         ns.extra_keys.push_back({"lora", "other"});
       }},
      {"extra keys, limit is",
       [](Namespace& ns) {
         ns.extra_keys.clear();
         for (size_t i = 0; i <= kMaxNamespaceExtraKeys; ++i) {
           ns.extra_keys.push_back({"k" + std::to_string(i), ""});
         }
       }},
  };
  for (const auto& [expected_text, mutate] : mutations) {
    Namespace ns = LlamaNamespace();
    mutate(ns);
    Result<BlockKey> digest = NamespaceDigest(ns);
    ASSERT_FALSE(digest.ok()) << expected_text;
    EXPECT_EQ(digest.status().code(), StatusCode::kInvalidArgument) << expected_text;
    EXPECT_NE(digest.status().message().find(expected_text), std::string::npos)
        << "message \"" << digest.status().message() << "\" lacks \"" << expected_text << "\"";
    Result<std::vector<uint8_t>> encoding = CanonicalEncoding(ns);
    ASSERT_FALSE(encoding.ok()) << expected_text;
    EXPECT_EQ(encoding.status().code(), StatusCode::kInvalidArgument) << expected_text;
  }
}

TEST(NamespaceTest, LimitsAreInclusive) {
  Namespace ns = LlamaNamespace();
  ns.tenant.assign(kMaxNamespaceStringBytes, 't');
  ns.extra_keys.clear();
  for (size_t i = 0; i < kMaxNamespaceExtraKeys; ++i) {
    ns.extra_keys.push_back({"k" + std::to_string(i), std::string(kMaxNamespaceStringBytes, 'v')});
  }
  EXPECT_TRUE(NamespaceDigest(ns).ok());
}

TEST(ChainTest, WorkedExampleIgnoresPartialTail) {
  const BlockKey ns = FromHex("d3c28481e5df2cfe08972a2f6056a1e35c676c0abe80d54283c4ed857f85bb93");
  const std::vector<uint32_t> tokens = Iota(1, 40);  // two full blocks of 16, then 8 more
  Result<std::vector<BlockKey>> keys = ChainBlockKeys(ns, tokens, 16);
  ASSERT_TRUE(keys.ok()) << keys.status().ToString();
  // python3: ns = bytes.fromhex('d3c2...bb93'); k0 = H(ns + le(range(1, 17)));
  //          k1 = H(k0 + le(range(17, 33))); [k0.hex(), k1.hex()]
  EXPECT_EQ(Hexes(*keys), (std::vector<std::string>{
                              "6c62463ce6e7d987e8d2bc5d0c7f52fa1b3b472fcfaff5f81b8262da238e8076",
                              "d3f9283b38513770b2d55d4483dbe9efae33d947f3ad8cfae176c75ac42df94c",
                          }));

  // Exactly 32 tokens give the same two keys; 15 tokens give none.
  Result<std::vector<BlockKey>> exact = ChainBlockKeys(ns, Iota(1, 32), 16);
  ASSERT_TRUE(exact.ok());
  EXPECT_EQ(*exact, *keys);
  Result<std::vector<BlockKey>> short_prompt = ChainBlockKeys(ns, Iota(1, 15), 16);
  ASSERT_TRUE(short_prompt.ok());
  EXPECT_TRUE(short_prompt->empty());
  Result<std::vector<BlockKey>> empty = ChainBlockKeys(ns, {}, 16);
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

TEST(ChainTest, NextBlockKeyWritesTokensLittleEndian) {
  const BlockKey zero{};
  const std::vector<uint32_t> tokens = {0x01020304u, 0xffffffffu};
  // python3: H(b'\0' * 32 + bytes([4, 3, 2, 1]) + b'\xff\xff\xff\xff').hex()
  EXPECT_EQ(ToHex(NextBlockKey(zero, tokens)),
            "33a51a87076af6e5a19217f054c5e6b39a39a370d50be2f9261552fcf3d4f685");
}

TEST(ChainTest, ChainIsNextBlockKeyRepeated) {
  const BlockKey ns = FromHex("5f02438dcdd3d42f0411a8744cf92e6098fad9c362d3f6af192b26a675f23593");
  const std::vector<uint32_t> tokens = Iota(100, 129);  // 10 blocks of 3
  Result<std::vector<BlockKey>> keys = ChainBlockKeys(ns, tokens, 3);
  ASSERT_TRUE(keys.ok());
  ASSERT_EQ(keys->size(), 10u);
  BlockKey parent = ns;
  for (size_t i = 0; i < keys->size(); ++i) {
    parent = NextBlockKey(parent, std::span<const uint32_t>(tokens).subspan(3 * i, 3));
    EXPECT_EQ((*keys)[i], parent) << "block " << i;
  }
  // Deterministic: a second call gives the same keys.
  Result<std::vector<BlockKey>> again = ChainBlockKeys(ns, tokens, 3);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *keys);
}

TEST(ChainTest, ChangedTokenChangesThatBlockAndEveryLaterOne) {
  const BlockKey ns = FromHex("d3c28481e5df2cfe08972a2f6056a1e35c676c0abe80d54283c4ed857f85bb93");
  constexpr uint32_t kBlock = 4;
  const std::vector<uint32_t> base_tokens = Iota(1, 5 * kBlock);
  Result<std::vector<BlockKey>> base = ChainBlockKeys(ns, base_tokens, kBlock);
  ASSERT_TRUE(base.ok());
  ASSERT_EQ(base->size(), 5u);
  for (size_t pos = 0; pos < base_tokens.size(); ++pos) {
    std::vector<uint32_t> tokens = base_tokens;
    tokens[pos] += 1000;
    Result<std::vector<BlockKey>> keys = ChainBlockKeys(ns, tokens, kBlock);
    ASSERT_TRUE(keys.ok());
    const size_t changed_block = pos / kBlock;
    for (size_t i = 0; i < keys->size(); ++i) {
      if (i < changed_block) {
        EXPECT_EQ((*keys)[i], (*base)[i]) << "token " << pos << ", block " << i;
      } else {
        EXPECT_NE((*keys)[i], (*base)[i]) << "token " << pos << ", block " << i;
      }
    }
  }
}

TEST(ChainTest, DifferentNamespacesShareNoKeys) {
  Namespace other_ns = LlamaNamespace();
  other_ns.extra_keys[1].value = "s2";  // another cache salt
  Result<BlockKey> a = NamespaceDigest(LlamaNamespace());
  Result<BlockKey> b = NamespaceDigest(other_ns);
  ASSERT_TRUE(a.ok() && b.ok());
  const std::vector<uint32_t> tokens = Iota(1, 64);
  Result<std::vector<BlockKey>> keys_a = ChainBlockKeys(*a, tokens, 16);
  Result<std::vector<BlockKey>> keys_b = ChainBlockKeys(*b, tokens, 16);
  ASSERT_TRUE(keys_a.ok() && keys_b.ok());
  ASSERT_EQ(keys_a->size(), 4u);
  ASSERT_EQ(keys_b->size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_NE((*keys_a)[i], (*keys_b)[i]) << "block " << i;
}

TEST(ChainTest, ZeroBlockTokensIsInvalid) {
  const BlockKey ns{};
  Result<std::vector<BlockKey>> keys = ChainBlockKeys(ns, Iota(1, 8), 0);
  ASSERT_FALSE(keys.ok());
  EXPECT_EQ(keys.status().code(), StatusCode::kInvalidArgument);
}

// SGLang's get_hash_str, as written in sglang/srt/mem_cache (see docs/keys.md):
//   def get_hash_str(token_ids, prior_hash=None):
//       h = hashlib.sha256()
//       if prior_hash: h.update(bytes.fromhex(prior_hash))
//       for t in token_ids: h.update(t.to_bytes(4, byteorder='little', signed=False))
//       return h.hexdigest()
TEST(SglangTest, PageHashesWithoutPrior) {
  // Seven tokens with page_size 3: two full pages, token 7 is a partial page and gets no hash.
  const std::vector<uint32_t> tokens = Iota(1, 7);
  Result<std::vector<BlockKey>> pages = SglangPageHashes(tokens, 3);
  ASSERT_TRUE(pages.ok()) << pages.status().ToString();
  // python3: p0 = get_hash_str([1, 2, 3]); p1 = get_hash_str([4, 5, 6], p0); [p0, p1]
  EXPECT_EQ(Hexes(*pages), (std::vector<std::string>{
                               "4636993d3e1da4e9d6b8f87b79e8f7c6d018580d52661950eabc3845c5897a4d",
                               "b33a1d453499d2f2cc40ae1c3579a476f2576432f8dcb7d4c235aa946a68d4bf",
                           }));
}

TEST(SglangTest, PageHashesWithPrior) {
  // python3: prior = hashlib.sha256(b'prior').hexdigest()
  const BlockKey prior =
      FromHex("e5bade0e979cb8cf6e53303dae696c6631a5c82ce60386d7a602f85fb249fcc0");
  Result<std::vector<BlockKey>> pages = SglangPageHashes(Iota(1, 6), 3, prior);
  ASSERT_TRUE(pages.ok()) << pages.status().ToString();
  // python3: q0 = get_hash_str([1, 2, 3], prior); q1 = get_hash_str([4, 5, 6], q0); [q0, q1]
  EXPECT_EQ(Hexes(*pages), (std::vector<std::string>{
                               "73207a4f750e134defc82f7534483ed0be3e83911a5740b18b1aa8d57c56a0a5",
                               "3e63f502f122d9b96854b811d4012b5549e06889a462ed7b8d77cba57bb526e1",
                           }));
}

TEST(SglangTest, FullRangeTokenIds) {
  const std::vector<uint32_t> tokens = {0, 151643, 4294967295u};
  Result<std::vector<BlockKey>> pages = SglangPageHashes(tokens, 3);
  ASSERT_TRUE(pages.ok());
  // python3: get_hash_str([0, 151643, 4294967295])
  EXPECT_EQ(Hexes(*pages), (std::vector<std::string>{
                               "a631ad9c61b85d88f45e64be06999166f252d2da045cadd800ef3b905cac2b59",
                           }));
}

TEST(SglangTest, AllZeroPriorIsStillHashed) {
  // SGLang tests the hex string's truthiness, and 64 '0' characters are truthy: a zero digest is
  // a parent like any other, distinct from having no parent.
  const BlockKey zero{};
  Result<std::vector<BlockKey>> with_zero = SglangPageHashes(Iota(1, 3), 3, zero);
  Result<std::vector<BlockKey>> without = SglangPageHashes(Iota(1, 3), 3);
  ASSERT_TRUE(with_zero.ok() && without.ok());
  EXPECT_NE(*with_zero, *without);
  EXPECT_EQ((*with_zero)[0], NextBlockKey(zero, Iota(1, 3)));
}

TEST(SglangTest, PriorContinuesAChain) {
  // Hashing 9 tokens at once equals hashing 3, then 6 with the last hash as prior.
  const std::vector<uint32_t> tokens = Iota(10, 18);
  Result<std::vector<BlockKey>> all = SglangPageHashes(tokens, 3);
  Result<std::vector<BlockKey>> head = SglangPageHashes(std::span(tokens).first(3), 3);
  ASSERT_TRUE(all.ok() && head.ok());
  Result<std::vector<BlockKey>> tail =
      SglangPageHashes(std::span(tokens).subspan(3), 3, head->back());
  ASSERT_TRUE(tail.ok());
  std::vector<BlockKey> joined = *head;
  joined.insert(joined.end(), tail->begin(), tail->end());
  EXPECT_EQ(joined, *all);
}

TEST(SglangTest, KvaultChainIsSglangChainSeededWithNamespaceDigest) {
  // The two schemes differ only in block 0's parent: docs/keys.md relies on this identity.
  const BlockKey ns = FromHex("d3c28481e5df2cfe08972a2f6056a1e35c676c0abe80d54283c4ed857f85bb93");
  const std::vector<uint32_t> tokens = Iota(1, 40);
  Result<std::vector<BlockKey>> sglang = SglangPageHashes(tokens, 16, ns);
  Result<std::vector<BlockKey>> chain = ChainBlockKeys(ns, tokens, 16);
  ASSERT_TRUE(sglang.ok() && chain.ok());
  EXPECT_EQ(*sglang, *chain);
}

TEST(SglangTest, ZeroPageSizeIsInvalid) {
  Result<std::vector<BlockKey>> pages = SglangPageHashes(Iota(1, 4), 0);
  ASSERT_FALSE(pages.ok());
  EXPECT_EQ(pages.status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvault
