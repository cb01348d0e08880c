#pragma once
// XXH3-64 (seed 0), the checksum of block objects. The hashing loop is compiled for AVX-512, AVX2
// and baseline x86-64 and chosen at run time; the value is the same everywhere (XXH3 is defined
// independently of the instruction set). Thread-safe: no shared mutable state.

#include <cstddef>
#include <cstdint>
#include <span>

namespace kvault {

// One-shot checksum of `data`.
uint64_t Checksum64(std::span<const uint8_t> data);

// Streaming checksum: Update() with consecutive parts gives the one-shot value of their
// concatenation. Lets a writer hash each part while it is still in cache. Not thread-safe
// (one writer).
class Checksum64Stream {
 public:
  Checksum64Stream();
  void Update(std::span<const uint8_t> part);
  uint64_t Digest() const;

  // Room for the underlying XXH3 state (static_assert against xxhash.h where it is compiled).
  static constexpr size_t kStateBytes = 640;

 private:
  alignas(64) unsigned char state_[kStateBytes];
};

}  // namespace kvault
