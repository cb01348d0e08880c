#pragma once
// SipHash-2-4 (Aumasson and Bernstein, 2012): a keyed 64-bit hash. Without the 128-bit key, no
// one can choose inputs that collide, which is what a hash table indexed by bytes a client picks
// (block keys) needs: a tenant must not be able to send keys that all land in one probe run.
//
// Thread-safety: pure functions; ProcessSipKey() is initialised once, thread-safely.

#include <cstdint>
#include <span>

namespace kvault {

struct SipKey {
  uint64_t k0 = 0;
  uint64_t k1 = 0;
};

// SipHash-2-4 of `bytes` under `key`, as the reference implementation computes it (the 16 key
// bytes are k0 then k1, little-endian).
uint64_t SipHash24(const SipKey& key, std::span<const uint8_t> bytes);

// A key drawn from the kernel's random source the first time it is asked for, then fixed for the
// life of the process. Hash values under it differ between processes: never store them.
const SipKey& ProcessSipKey();

}  // namespace kvault
