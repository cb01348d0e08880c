#pragma once
// Belady's MIN over a block trace with prefix hit counting: the offline optimum that eviction
// policies are measured against (shared/traces/README.md, shared/research/traces.md §3.2).
//
// Requests are replayed in order. A request's hits are the leading run of its blocks cached on
// arrival; then every block of the request, block 0 first, is touched (if cached) or inserted.
// When an insert finds the cache full, MIN evicts the cached block whose next use is farthest away
// (a block never used again counts as farthest; ties go to the deeper block) - unless the new
// block's own next use is at least as far, in which case the new block is not cached (bypass). Next
// uses are reference positions, so within one future request the deeper block is the later one.
// Under prefix hashing a parent is never used later than its child, so the cache stays
// prefix-closed.
//
// O(R log R) time and O(R) memory for R block references. Thread-safe (no shared state).

#include <cstdint>

#include "trace/hit_stats.h"
#include "trace/mooncake_trace.h"

namespace kvault::bench {

HitStats SimulateBelady(const BlockTrace& trace, uint64_t capacity_blocks);

}  // namespace kvault::bench
