#pragma once
// SipHash (Aumasson and Bernstein, 2012): a keyed 64-bit hash. Without the 128-bit key, no one can
// choose inputs that collide, which is what a hash table indexed by bytes a client picks (block
// keys) needs: a tenant must not be able to send keys that all land in one probe run.
//
// SipHash-c-d runs c rounds per 8-byte block and d to finalise. SipHash-2-4 is the paper's
// recommendation; SipHash-1-3 is the variant Python (3.11 on) and Rust's standard HashMap hash
// with, for the same defence at about half the cost: what the store's tables use.
//
// Thread-safety: pure functions; ProcessSipKey() is initialised once, thread-safely.

#include <bit>
#include <cstdint>
#include <span>

#include "kvault/common/block_key.h"
#include "kvault/common/little_endian.h"

namespace kvault {

struct SipKey {
  uint64_t k0 = 0;
  uint64_t k1 = 0;
};

// The state of one SipHash-c-d computation, for callers that feed whole 8-byte words of a
// fixed-size input themselves (ScopedKey's hash). Value type.
template <int kCompressionRounds, int kFinalRounds>
class SipState {
 public:
  explicit SipState(const SipKey& key)
      : v0_(key.k0 ^ 0x736f6d6570736575ull),
        v1_(key.k1 ^ 0x646f72616e646f6dull),
        v2_(key.k0 ^ 0x6c7967656e657261ull),
        v3_(key.k1 ^ 0x7465646279746573ull) {}

  // One 8-byte block of the input, read little-endian.
  void Absorb(uint64_t m) {
    v3_ ^= m;
    for (int i = 0; i < kCompressionRounds; ++i) Round();
    v0_ ^= m;
  }

  // The hash, given the last block: the 0..7 bytes left over, little-endian, with the input's
  // length (mod 256) in the top byte.
  uint64_t Finish(uint64_t last_block) {
    Absorb(last_block);
    v2_ ^= 0xFF;
    for (int i = 0; i < kFinalRounds; ++i) Round();
    return v0_ ^ v1_ ^ v2_ ^ v3_;
  }

 private:
  void Round() {
    v0_ += v1_;
    v1_ = std::rotl(v1_, 13);
    v1_ ^= v0_;
    v0_ = std::rotl(v0_, 32);
    v2_ += v3_;
    v3_ = std::rotl(v3_, 16);
    v3_ ^= v2_;
    v0_ += v3_;
    v3_ = std::rotl(v3_, 21);
    v3_ ^= v0_;
    v2_ += v1_;
    v1_ = std::rotl(v1_, 17);
    v1_ ^= v2_;
    v2_ = std::rotl(v2_, 32);
  }

  uint64_t v0_, v1_, v2_, v3_;
};

// SipHash-c-d of `bytes` under `key`, as the reference implementation computes it (the 16 key
// bytes are k0 then k1, little-endian).
template <int kCompressionRounds, int kFinalRounds>
uint64_t SipHash(const SipKey& key, std::span<const uint8_t> bytes) {
  SipState<kCompressionRounds, kFinalRounds> state(key);
  const size_t whole = bytes.size() / 8 * 8;
  for (size_t i = 0; i < whole; i += 8) state.Absorb(LoadLe64(bytes.data() + i));
  uint64_t last = uint64_t{bytes.size() & 0xFF} << 56;
  for (size_t i = whole; i < bytes.size(); ++i) last |= uint64_t{bytes[i]} << (8 * (i - whole));
  return state.Finish(last);
}

inline uint64_t SipHash24(const SipKey& key, std::span<const uint8_t> bytes) {
  return SipHash<2, 4>(key, bytes);
}
inline uint64_t SipHash13(const SipKey& key, std::span<const uint8_t> bytes) {
  return SipHash<1, 3>(key, bytes);
}

// SipHash-1-3 under `key` of each 36-byte input keys[i] followed by `suffix` (u32 little-endian),
// into out[i], for i < min(keys.size(), out.size()): what SipHash13 of those bytes gives, several
// inputs at a time with the widest vector instructions the CPU has (AVX-512, AVX2 or SSE2, chosen
// once at run time).
void SipHash13Batch(const SipKey& key, std::span<const BlockKey> keys, uint32_t suffix,
                    std::span<uint64_t> out);

// A key drawn from the kernel's random source the first time it is asked for, then fixed for the
// life of the process. Hash values under it differ between processes: never store them.
const SipKey& ProcessSipKey();

}  // namespace kvault
