#include "trace/belady.h"

#include <queue>
#include <tuple>
#include <vector>

namespace kvault::bench {
namespace {

constexpr uint64_t kNever = UINT64_MAX;

// Eviction key of one cached block: larger is evicted first.
struct Candidate {
  uint64_t next_use;  // reference position of the next use, kNever if none
  uint32_t depth;     // position in its request
  uint32_t block;
  bool operator<(const Candidate& o) const {
    return std::tie(next_use, depth, block) < std::tie(o.next_use, o.depth, o.block);
  }
};

}  // namespace

HitStats SimulateBelady(const BlockTrace& trace, uint64_t capacity_blocks) {
  const size_t refs = trace.blocks.size();
  std::vector<uint64_t> next_use(refs, kNever);
  {
    std::vector<uint64_t> later(trace.unique_blocks, kNever);
    for (size_t p = refs; p-- > 0;) {
      next_use[p] = later[trace.blocks[p]];
      later[trace.blocks[p]] = p;
    }
  }

  HitStats stats;
  stats.block_refs = refs;
  stats.requests = trace.num_requests();
  // cached_next[b]: next use of cached block b, which identifies its live heap entry (a block's
  // next use only grows); kNotCached when absent. Stale heap entries are skipped when popped.
  constexpr uint64_t kNotCached = UINT64_MAX - 1;
  std::vector<uint64_t> cached_next(trace.unique_blocks, kNotCached);
  std::priority_queue<Candidate> heap;
  uint64_t cached = 0;

  auto top_live = [&]() -> const Candidate& {
    while (cached_next[heap.top().block] != heap.top().next_use) heap.pop();
    return heap.top();
  };

  for (size_t r = 0; r < trace.num_requests(); ++r) {
    const size_t begin = trace.request_begin[r];
    const size_t end = trace.request_begin[r + 1];
    size_t p = begin;
    while (p < end && cached_next[trace.blocks[p]] != kNotCached) ++p;
    stats.hits += p - begin;

    for (p = begin; p < end; ++p) {
      const uint32_t b = trace.blocks[p];
      const Candidate self{next_use[p], static_cast<uint32_t>(p - begin), b};
      if (cached_next[b] != kNotCached) {
        cached_next[b] = self.next_use;  // the old heap entry goes stale
        heap.push(self);
        continue;
      }
      if (cached >= capacity_blocks) {
        if (cached == 0) {
          ++stats.bypassed;
          continue;
        }
        const Candidate& victim = top_live();
        if (!(self < victim)) {  // self is used no sooner than any cached block
          ++stats.bypassed;
          continue;
        }
        cached_next[victim.block] = kNotCached;
        heap.pop();
        --cached;
        ++stats.evictions;
      }
      cached_next[b] = self.next_use;
      heap.push(self);
      ++cached;
      ++stats.inserts;
    }
  }
  return stats;
}

}  // namespace kvault::bench
