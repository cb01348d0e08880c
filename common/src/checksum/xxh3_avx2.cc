// XXH3 compiled for this file's instruction set (see xxh3_variant.h).
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "checksum/xxh3_variant.h"

namespace kvault::checksum {
namespace {

uint64_t OneShot(const void* data, size_t len) { return XXH3_64bits(data, len); }
void Reset(void* state) {
  XXH3_INITSTATE(static_cast<XXH3_state_t*>(state));
  XXH3_64bits_reset(static_cast<XXH3_state_t*>(state));
}
void Update(void* state, const void* data, size_t len) {
  XXH3_64bits_update(static_cast<XXH3_state_t*>(state), data, len);
}
uint64_t Digest(const void* state) {
  return XXH3_64bits_digest(static_cast<const XXH3_state_t*>(state));
}

}  // namespace

const Xxh3Variant& Xxh3Avx2() {
  static const Xxh3Variant kVariant{OneShot, Reset, Update, Digest, sizeof(XXH3_state_t)};
  return kVariant;
}

}  // namespace kvault::checksum
