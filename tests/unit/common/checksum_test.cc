// The block checksum: every instruction-set variant and the streaming form agree with the system
// libxxhash's XXH3_64bits (an independent build of the reference implementation).
#include "kvault/common/checksum.h"

#include <gtest/gtest.h>
#include <xxhash.h>

#include <random>
#include <vector>

#include "../../../common/src/checksum/xxh3_variant.h"  // the private seam under test

namespace kvault {
namespace {

std::vector<uint8_t> RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

// Lengths that cross every XXH3 code path: empty, short, mid, long with partial stripes/blocks.
const size_t kLengths[] = {0,   1,   3,   4,    8,    9,    16,    17,     128,
                           129, 240, 241, 1023, 1024, 4096, 65537, 1 << 20};

TEST(ChecksumTest, OneShotMatchesLibxxhash) {
  for (size_t n : kLengths) {
    const auto data = RandomBytes(n, static_cast<uint32_t>(n));
    EXPECT_EQ(Checksum64(data), XXH3_64bits(data.data(), data.size())) << n;
  }
}

TEST(ChecksumTest, EverySupportedVariantMatchesLibxxhash) {
  __builtin_cpu_init();
  std::vector<std::pair<const char*, const checksum::Xxh3Variant*>> variants = {
      {"baseline", &checksum::Xxh3Baseline()}};
  if (__builtin_cpu_supports("avx2")) variants.emplace_back("avx2", &checksum::Xxh3Avx2());
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) {
    variants.emplace_back("avx512", &checksum::Xxh3Avx512());
  }
  for (const auto& [name, v] : variants) {
    ASSERT_LE(v->state_bytes, Checksum64Stream::kStateBytes) << name;
    for (size_t n : kLengths) {
      const auto data = RandomBytes(n, static_cast<uint32_t>(n) + 7);
      const uint64_t want = XXH3_64bits(data.data(), data.size());
      EXPECT_EQ(v->oneshot(data.data(), data.size()), want) << name << " " << n;
      alignas(64) unsigned char state[Checksum64Stream::kStateBytes];
      v->reset(state);
      v->update(state, data.data(), n / 3);
      v->update(state, data.data() + n / 3, n - n / 3);
      EXPECT_EQ(v->digest(state), want) << name << " streaming " << n;
    }
  }
}

TEST(ChecksumTest, StreamingEqualsOneShotForAnySplit) {
  const auto data = RandomBytes(300000, 42);
  std::mt19937 rng(1);
  for (int round = 0; round < 20; ++round) {
    Checksum64Stream stream;
    size_t off = 0;
    while (off < data.size()) {
      const size_t n = std::min<size_t>(data.size() - off, rng() % 5000);
      stream.Update({data.data() + off, n});
      off += n;
    }
    EXPECT_EQ(stream.Digest(), XXH3_64bits(data.data(), data.size()));
  }
}

TEST(ChecksumTest, DifferentDataDifferentChecksum) {
  auto data = RandomBytes(4096, 3);
  const uint64_t before = Checksum64(data);
  data[2000] ^= 1;
  EXPECT_NE(Checksum64(data), before);
  data[2000] ^= 1;
  EXPECT_EQ(Checksum64(data), before);  // positive control
}

}  // namespace
}  // namespace kvault
