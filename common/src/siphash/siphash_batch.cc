// SipHash13Batch (siphash.h): the widest variant this CPU runs, chosen once.

#include <algorithm>

#include "kvault/common/siphash.h"
#include "siphash/siphash_variant.h"

namespace kvault {
namespace {

using Variant = void (*)(uint64_t, uint64_t, const uint8_t*, size_t, uint32_t, uint64_t*);

Variant Best() {
  static const Variant best = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return &siphash::SipHash13LanesAvx512;
    if (__builtin_cpu_supports("avx2")) return &siphash::SipHash13LanesAvx2;
    return &siphash::SipHash13LanesBaseline;
  }();
  return best;
}

}  // namespace

void SipHash13Batch(const SipKey& key, std::span<const BlockKey> keys, uint32_t suffix,
                    std::span<uint64_t> out) {
  static_assert(sizeof(BlockKey) == 32, "keys are read as one 32-byte run each");
  const size_t n = std::min(keys.size(), out.size());
  if (n == 0) return;
  Best()(key.k0, key.k1, reinterpret_cast<const uint8_t*>(keys.data()), n, suffix, out.data());
}

}  // namespace kvault
