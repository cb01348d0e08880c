#include "kvault/common/checksum.h"

#include "checksum/xxh3_variant.h"

namespace kvault {
namespace {

const checksum::Xxh3Variant& Best() {
  static const checksum::Xxh3Variant& best = []() -> const checksum::Xxh3Variant& {
#ifdef KVAULT_CHECKSUM_BASELINE_ONLY  // builds that compile only the baseline variant (fuzzers)
    return checksum::Xxh3Baseline();
#else
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) {
      return checksum::Xxh3Avx512();
    }
    if (__builtin_cpu_supports("avx2")) return checksum::Xxh3Avx2();
    return checksum::Xxh3Baseline();
#endif
  }();
  return best;
}

}  // namespace

uint64_t Checksum64(std::span<const uint8_t> data) {
  return Best().oneshot(data.data(), data.size());
}

Checksum64Stream::Checksum64Stream() {
  Best().reset(state_);  // the state fits: static_assert in xxh3_variant_body.inc
}

void Checksum64Stream::Update(std::span<const uint8_t> part) {
  Best().update(state_, part.data(), part.size());
}

uint64_t Checksum64Stream::Digest() const { return Best().digest(state_); }

}  // namespace kvault
