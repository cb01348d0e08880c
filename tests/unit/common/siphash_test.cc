// SipHash-2-4 and SipHash-1-3 (common/siphash.h) against the paper's test vectors and OpenSSL's
// SIPHASH MAC with its round counts set (an independent implementation).

#include "kvault/common/siphash.h"

#include <gtest/gtest.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <random>
#include <vector>

#include "../../../common/src/siphash/siphash_variant.h"  // the private seam under test
#include "kvault/common/little_endian.h"

namespace kvault {
namespace {

// Key bytes 00 01 .. 0f, as in the paper's appendix.
SipKey PaperKey() {
  uint8_t bytes[16];
  for (int i = 0; i < 16; ++i) bytes[i] = static_cast<uint8_t>(i);
  return SipKey{LoadLe64(bytes), LoadLe64(bytes + 8)};
}

std::vector<uint8_t> Counting(size_t n) {
  std::vector<uint8_t> m(n);
  for (size_t i = 0; i < n; ++i) m[i] = static_cast<uint8_t>(i);
  return m;
}

uint64_t OpenSslSipHash(const SipKey& key, const std::vector<uint8_t>& message,
                        unsigned int c_rounds, unsigned int d_rounds) {
  uint8_t raw[16];
  StoreLe64(raw, key.k0);
  StoreLe64(raw + 8, key.k1);
  EVP_MAC* mac = EVP_MAC_fetch(nullptr, "SIPHASH", nullptr);
  EXPECT_NE(mac, nullptr);
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(mac);
  size_t size = 8;
  OSSL_PARAM params[] = {OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &size),
                         OSSL_PARAM_construct_uint(OSSL_MAC_PARAM_C_ROUNDS, &c_rounds),
                         OSSL_PARAM_construct_uint(OSSL_MAC_PARAM_D_ROUNDS, &d_rounds),
                         OSSL_PARAM_construct_end()};
  EXPECT_EQ(EVP_MAC_init(ctx, raw, sizeof raw, params), 1);
  EXPECT_EQ(EVP_MAC_update(ctx, message.data(), message.size()), 1);
  uint8_t out[8] = {};
  size_t out_len = 0;
  EXPECT_EQ(EVP_MAC_final(ctx, out, &out_len, sizeof out), 1);
  EXPECT_EQ(out_len, 8u);
  EVP_MAC_CTX_free(ctx);
  EVP_MAC_free(mac);
  return LoadLe64(out);
}

TEST(SipHashTest, PaperVectors) {
  EXPECT_EQ(SipHash24(PaperKey(), Counting(0)), 0x726fdb47dd0e0e31ull);
  EXPECT_EQ(SipHash24(PaperKey(), Counting(15)), 0xa129ca6149be45e5ull);
}

TEST(SipHashTest, MatchesOpenSslForEveryLengthAndRandomKeys) {
  std::mt19937_64 random(7);
  for (size_t length = 0; length <= 80; ++length) {
    const SipKey key{random(), random()};
    std::vector<uint8_t> message(length);
    for (uint8_t& b : message) b = static_cast<uint8_t>(random());
    EXPECT_EQ(SipHash24(key, message), OpenSslSipHash(key, message, 2, 4)) << length;
    EXPECT_EQ(SipHash13(key, message), OpenSslSipHash(key, message, 1, 3)) << length;
  }
}

TEST(SipHashTest, TheRoundCountsMatter) {
  const std::vector<uint8_t> message = Counting(36);
  EXPECT_NE(SipHash13(PaperKey(), message), SipHash24(PaperKey(), message));
}

// Every variant this CPU runs gives, for every count (whole vectors and leftovers alike), what
// SipHash13 of each input's 36 bytes gives; the public batch call too, with the process key.
TEST(SipHashTest, EveryBatchVariantIsSipHash13OfKeyThenSuffix) {
  using Variant = void (*)(uint64_t, uint64_t, const uint8_t*, size_t, uint32_t, uint64_t*);
  std::vector<std::pair<const char*, Variant>> variants = {
      {"baseline", &siphash::SipHash13LanesBaseline}};
  if (__builtin_cpu_supports("avx2")) variants.emplace_back("avx2", &siphash::SipHash13LanesAvx2);
  if (__builtin_cpu_supports("avx512f")) {
    variants.emplace_back("avx512", &siphash::SipHash13LanesAvx512);
  }
  std::mt19937_64 random(3);
  for (size_t count : {0, 1, 2, 3, 7, 8, 9, 17, 64, 1000}) {
    const SipKey key{random(), random()};
    const auto suffix = static_cast<uint32_t>(random());
    std::vector<BlockKey> keys(count);
    for (BlockKey& k : keys) {
      for (uint8_t& b : k) b = static_cast<uint8_t>(random());
    }
    std::vector<uint64_t> want(count);
    for (size_t i = 0; i < count; ++i) {
      std::vector<uint8_t> bytes(keys[i].begin(), keys[i].end());
      bytes.resize(36);
      StoreLe32(bytes.data() + 32, suffix);
      want[i] = SipHash13(key, bytes);
    }
    for (const auto& [name, variant] : variants) {
      std::vector<uint64_t> got(count + 1, 0x1234);
      variant(key.k0, key.k1, reinterpret_cast<const uint8_t*>(keys.data()), count, suffix,
              got.data());
      EXPECT_EQ(std::vector<uint64_t>(got.begin(), got.begin() + count), want)
          << name << " count " << count;
      EXPECT_EQ(got[count], 0x1234u) << name << " wrote past its count " << count;
    }
    std::vector<uint64_t> batch(count);
    SipHash13Batch(key, keys, suffix, batch);
    EXPECT_EQ(batch, want) << count;
  }
}

TEST(SipHashTest, TheProcessKeyIsFixedAndNotZero) {
  const SipKey& a = ProcessSipKey();
  const SipKey& b = ProcessSipKey();
  EXPECT_EQ(&a, &b);
  EXPECT_FALSE(a.k0 == 0 && a.k1 == 0);
}

}  // namespace
}  // namespace kvault
