// The process's SipHash key (siphash.h); the hash itself is inline in the header.

#include <sys/random.h>

#include <cerrno>
#include <random>

#include "kvault/common/little_endian.h"
#include "kvault/common/siphash.h"

namespace kvault {
namespace {

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

const SipKey& ProcessSipKey() {
  static const SipKey key = DrawKey();
  return key;
}

}  // namespace kvault
