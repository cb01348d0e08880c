#pragma once
// Synthetic block objects: valid, sealed v1 objects (raw fp16 codec) of a chosen size whose
// payload is a pure function of the key. Benchmarks, tests and demos use them to move real bytes
// through the store and to check every byte that comes back (self-checking payloads).
//
// Pure functions: safe to call from any thread.

#include <cstdint>
#include <span>
#include <vector>

#include "kvault/common/block_format.h"
#include "kvault/common/result.h"

namespace kvault {

// Layout of a synthetic object whose payload holds at least `min_payload_bytes`: head_dim 128,
// one KV head, fp16, up to 256 tokens, as many layers as needed (512 payload bytes per layer and
// token). `min_payload_bytes` 0 gives the smallest object (one layer, one token).
BlockDescriptor SyntheticDescriptor(const Digest32& key, uint64_t min_payload_bytes);

// Total object bytes (header + payload) of SyntheticDescriptor(key, min_payload_bytes).
uint64_t SyntheticObjectBytes(uint64_t min_payload_bytes);

// Builds the sealed object for `key`. OutOfRange past kMaxBlockObjectBytes.
Result<std::vector<uint8_t>> MakeSyntheticBlock(const Digest32& key, uint64_t min_payload_bytes);

// Writes the object into `out`, which must be exactly SyntheticObjectBytes(min_payload_bytes).
Status WriteSyntheticBlock(const Digest32& key, uint64_t min_payload_bytes,
                           std::span<uint8_t> out);

// True when `object` parses, verifies, carries `key`, and its payload is exactly the synthetic
// payload of `key`.
bool IsSyntheticBlockFor(const Digest32& key, std::span<const uint8_t> object);

}  // namespace kvault
