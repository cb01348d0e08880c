#pragma once
// Prefix hit counts of one trace replay (shared/traces/README.md): block i of a request is a hit
// only if blocks 0..i are all cached when the request arrives.

#include <cstdint>

namespace kvault::bench {

struct HitStats {
  uint64_t requests = 0;
  uint64_t block_refs = 0;  // blocks referenced, cold misses included
  uint64_t hits = 0;        // leading cached blocks, summed over requests
  uint64_t inserts = 0;     // blocks that became resident
  uint64_t evictions = 0;
  uint64_t bypassed = 0;  // missing blocks not cached (not admitted, or capacity 0)
  // Evictions of a block while one of its children (in the trace's prefix tree) stayed cached:
  // the children are useless until the parent returns. Counted by the policy replay only.
  uint64_t orphaning_evictions = 0;

  double hit_ratio() const {
    return block_refs == 0 ? 0.0 : static_cast<double>(hits) / static_cast<double>(block_refs);
  }
};

}  // namespace kvault::bench
