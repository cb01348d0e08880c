#pragma once
// The instruction-set variants of SipHash13Batch (siphash.h); siphash_batch.cc picks one at run
// time. Each writes out[i] = SipHash-1-3 under (k0, k1) of the 32 bytes at keys + 32 * i followed
// by `suffix` little-endian, for i < count.

#include <cstddef>
#include <cstdint>

namespace kvault::siphash {

void SipHash13LanesBaseline(uint64_t k0, uint64_t k1, const uint8_t* keys, size_t count,
                            uint32_t suffix, uint64_t* out);
void SipHash13LanesAvx2(uint64_t k0, uint64_t k1, const uint8_t* keys, size_t count,
                        uint32_t suffix, uint64_t* out);
void SipHash13LanesAvx512(uint64_t k0, uint64_t k1, const uint8_t* keys, size_t count,
                          uint32_t suffix, uint64_t* out);

}  // namespace kvault::siphash
