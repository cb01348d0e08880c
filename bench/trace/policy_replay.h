#pragma once
// Replays a block trace through an EvictionPolicy directly, without a BlockStore: the quick way to
// explore and cross-check policies. Same semantics as SimulateBelady (belady.h): a request's hits
// are its leading cached blocks on arrival, then each block, block 0 first, is accessed (cached)
// or inserted (missing) with the previous block of the request as parent when that one is cached.
// A missing block with the cache full asks Admit(), then PickVictim() (every block is evictable
// here), and the victim is removed before the insert. Entry ids are dense and reused, as in the
// store; key hashes are a fixed mix of the trace's hash ids. Thread-compatible (the policy is not
// shared).

#include <cstdint>

#include "kvault/storage/eviction_policy.h"
#include "trace/hit_stats.h"
#include "trace/mooncake_trace.h"

namespace kvault::bench {

// Internal if the policy returns no victim although every block is evictable, or an id that is not
// resident.
Result<HitStats> ReplayPolicy(const BlockTrace& trace, uint64_t capacity_blocks,
                              storage::EvictionPolicy& policy);

// The key hash the replay gives a trace hash id (SplitMix64 finaliser).
uint64_t TraceKeyHash(uint64_t hash_id);

}  // namespace kvault::bench
