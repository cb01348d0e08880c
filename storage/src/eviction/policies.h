#pragma once
// Constructors of the built-in eviction policies, one per file of this folder. Callers outside
// storage/ go through MakeEvictionPolicy (kvault/storage/eviction_policy.h).

#include <memory>

#include "kvault/storage/eviction_policy.h"

namespace kvault::storage {

// "lru": least recently used block first (lru_policy.cc).
std::unique_ptr<EvictionPolicy> MakeLruPolicy();

// "prefix": chain-aware ARC with request tails first and ghost lists (prefix_policy.cc).
std::unique_ptr<EvictionPolicy> MakePrefixPolicy();

}  // namespace kvault::storage
