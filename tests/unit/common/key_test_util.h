#pragma once
// Helpers of the block key tests (block_key_test.cc, vllm_block_hash_test.cc): keys as hex and
// runs of token ids.

#include <cstdint>
#include <string>
#include <vector>

#include "kvault/common/block_key.h"

namespace kvault::testing {

// ToHex of each key, in order.
inline std::vector<std::string> Hexes(const std::vector<BlockKey>& keys) {
  std::vector<std::string> out;
  for (const BlockKey& key : keys) out.push_back(ToHex(key));
  return out;
}

// The token ids first, first + 1, ..., last (both included).
inline std::vector<uint32_t> Iota(uint32_t first, uint32_t last) {
  std::vector<uint32_t> out;
  for (uint32_t t = first; t <= last; ++t) out.push_back(t);
  return out;
}

}  // namespace kvault::testing
