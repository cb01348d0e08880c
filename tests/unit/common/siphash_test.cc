// SipHash-2-4 (common/siphash.h) against the paper's test vectors and OpenSSL's SIPHASH MAC (an
// independent implementation).

#include "kvault/common/siphash.h"

#include <gtest/gtest.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <random>
#include <vector>

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

uint64_t OpenSslSipHash24(const SipKey& key, const std::vector<uint8_t>& message) {
  uint8_t raw[16];
  StoreLe64(raw, key.k0);
  StoreLe64(raw + 8, key.k1);
  EVP_MAC* mac = EVP_MAC_fetch(nullptr, "SIPHASH", nullptr);
  EXPECT_NE(mac, nullptr);
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(mac);
  size_t size = 8;
  unsigned int c_rounds = 2, d_rounds = 4;
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
    EXPECT_EQ(SipHash24(key, message), OpenSslSipHash24(key, message)) << length;
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
