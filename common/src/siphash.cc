// SipHash-2-4 (siphash.h), written from the algorithm's description.

#include "kvault/common/siphash.h"

#include <sys/random.h>

#include <bit>
#include <cerrno>
#include <random>

#include "kvault/common/little_endian.h"

namespace kvault {
namespace {

struct SipState {
  uint64_t v0, v1, v2, v3;

  void Round() {
    v0 += v1;
    v1 = std::rotl(v1, 13);
    v1 ^= v0;
    v0 = std::rotl(v0, 32);
    v2 += v3;
    v3 = std::rotl(v3, 16);
    v3 ^= v2;
    v0 += v3;
    v3 = std::rotl(v3, 21);
    v3 ^= v0;
    v2 += v1;
    v1 = std::rotl(v1, 17);
    v1 ^= v2;
    v2 = std::rotl(v2, 32);
  }

  void Absorb(uint64_t m) {  // 2 compression rounds
    v3 ^= m;
    Round();
    Round();
    v0 ^= m;
  }
};

SipKey DrawKey() {
  SipKey key;
  uint8_t bytes[16];
  size_t got = 0;
  while (got < sizeof bytes) {
    // Never blocks: early in boot, before the pool is ready, the fallback below is used.
    const ssize_t n = getrandom(bytes + got, sizeof bytes - got, GRND_NONBLOCK);
    if (n > 0) {
      got += static_cast<size_t>(n);
    } else if (n < 0 && errno != EINTR) {
      break;
    }
  }
  if (got == sizeof bytes) {
    key.k0 = LoadLe64(bytes);
    key.k1 = LoadLe64(bytes + 8);
  } else {  // no getrandom, or its pool not ready yet: the C++ library's source
    std::random_device device;
    key.k0 = (uint64_t{device()} << 32) ^ device();
    key.k1 = (uint64_t{device()} << 32) ^ device();
  }
  return key;
}

}  // namespace

uint64_t SipHash24(const SipKey& key, std::span<const uint8_t> bytes) {
  SipState s{key.k0 ^ 0x736f6d6570736575ull, key.k1 ^ 0x646f72616e646f6dull,
             key.k0 ^ 0x6c7967656e657261ull, key.k1 ^ 0x7465646279746573ull};
  const size_t whole = bytes.size() / 8 * 8;
  for (size_t i = 0; i < whole; i += 8) s.Absorb(LoadLe64(bytes.data() + i));
  // The last block: the leftover bytes, little-endian, and the length's low byte on top.
  uint64_t last = uint64_t{bytes.size() & 0xFF} << 56;
  for (size_t i = whole; i < bytes.size(); ++i) last |= uint64_t{bytes[i]} << (8 * (i - whole));
  s.Absorb(last);
  s.v2 ^= 0xFF;
  for (int i = 0; i < 4; ++i) s.Round();
  return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

const SipKey& ProcessSipKey() {
  static const SipKey key = DrawKey();
  return key;
}

}  // namespace kvault
