#pragma once
// Private: one instruction-set variant of XXH3. Each variant's .cc includes xxhash.h inline
// (XXH_INLINE_ALL) under its own compile flags, so the vector code xxhash selects at compile time
// (AVX-512, AVX2, SSE2) lives in that translation unit only.

#include <cstddef>
#include <cstdint>

namespace kvault::checksum {

struct Xxh3Variant {
  uint64_t (*oneshot)(const void* data, size_t len);
  void (*reset)(void* state);
  void (*update)(void* state, const void* data, size_t len);
  uint64_t (*digest)(const void* state);
  size_t state_bytes;
};

const Xxh3Variant& Xxh3Avx512();
const Xxh3Variant& Xxh3Avx2();
const Xxh3Variant& Xxh3Baseline();

}  // namespace kvault::checksum
