// Belady's MIN with prefix hit counting: hand-checked cases, and equality with a brute-force
// optimum (every legal keep/evict/bypass choice) on small random prefix-tree traces; no policy
// replayed on the same trace does better.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <vector>

#include "trace/belady.h"
#include "trace/policy_replay.h"

namespace kvault::bench {
namespace {

BlockTrace FromChains(const std::vector<std::vector<uint64_t>>& chains) {
  std::vector<TraceRequest> requests(chains.size());
  for (size_t i = 0; i < chains.size(); ++i) requests[i].hash_ids = chains[i];
  return MakeBlockTrace(requests);
}

TEST(BeladyTest, HandCheckedCases) {
  const BlockTrace t = FromChains({{0, 1, 2}, {0, 1, 3}, {0, 1, 2}, {4}, {4, 5}, {0}});
  ASSERT_TRUE(t.prefix_consistent);
  // Infinite cache: every re-reference hits.
  HitStats inf = SimulateBelady(t, 100);
  EXPECT_EQ(inf.block_refs, 13u);
  EXPECT_EQ(inf.hits, 13u - t.unique_blocks);
  EXPECT_EQ(SimulateBelady(t, 0).hits, 0u);
  EXPECT_EQ(SimulateBelady(t, 0).bypassed, 13u);
  // Two blocks: 0 and 1 stay for {0,1,3} and {0,1,2} (2 and 3 are bypassed: 2's next use is after
  // both), then 1, used never again, makes room for 4; 5 is never used again.
  HitStats two = SimulateBelady(t, 2);
  EXPECT_EQ(two.hits, 2u + 2u + 1u + 1u);
  EXPECT_EQ(two.evictions, 1u);
}

TEST(BeladyTest, BypassesABlockUsedLaterThanEveryCachedOne) {
  // Capacity 1: block 5 is never used again, so 0 stays.
  const BlockTrace t = FromChains({{0}, {5}, {0}});
  HitStats s = SimulateBelady(t, 1);
  EXPECT_EQ(s.hits, 1u);
  EXPECT_EQ(s.bypassed, 1u);
  EXPECT_EQ(s.evictions, 0u);
}

// The best hit count over every legal sequence of choices: a missing block may be bypassed, or
// inserted (into a free slot, or in place of any cached block). Memoised on (position, cache).
class BruteForce {
 public:
  BruteForce(const BlockTrace& t, uint64_t capacity) : t_(t), capacity_(capacity) {
    for (size_t r = 0; r < t.num_requests(); ++r) starts_[t.request_begin[r]] = r;
  }
  uint64_t Best() { return Solve(0, 0); }

 private:
  uint64_t Solve(size_t p, uint32_t mask) {
    if (p == t_.blocks.size()) return 0;
    const uint64_t key = (uint64_t{mask} << 32) | p;
    if (auto it = memo_.find(key); it != memo_.end()) return it->second;
    uint64_t hits = 0;
    if (auto s = starts_.find(p); s != starts_.end()) {
      for (uint32_t b : t_.request(s->second)) {
        if (!(mask >> b & 1)) break;
        ++hits;
      }
    }
    const uint32_t b = t_.blocks[p];
    uint64_t best;
    if (mask >> b & 1) {
      best = Solve(p + 1, mask);
    } else {
      best = Solve(p + 1, mask);  // bypass
      if (static_cast<uint64_t>(__builtin_popcount(mask)) < capacity_) {
        best = std::max(best, Solve(p + 1, mask | 1u << b));
      } else {
        for (uint32_t v = 0; v < 32; ++v) {
          if (mask >> v & 1) best = std::max(best, Solve(p + 1, (mask & ~(1u << v)) | 1u << b));
        }
      }
    }
    memo_[key] = hits + best;
    return hits + best;
  }

  const BlockTrace& t_;
  uint64_t capacity_;
  std::map<size_t, size_t> starts_;
  std::map<uint64_t, uint64_t> memo_;
};

// A random prefix tree of up to `nodes` blocks (some of them roots) and requests that each walk
// from a root down to a random block.
BlockTrace RandomPrefixTreeTrace(std::mt19937_64& rng, int nodes, int requests) {
  std::vector<int> parent(nodes, -1);
  for (int i = 1; i < nodes; ++i) parent[i] = rng() % 5 == 0 ? -1 : static_cast<int>(rng() % i);
  std::vector<std::vector<uint64_t>> chains;
  for (int r = 0; r < requests; ++r) {
    std::vector<uint64_t> chain;
    for (int n = static_cast<int>(rng() % nodes); n >= 0; n = parent[n]) chain.push_back(n);
    std::reverse(chain.begin(), chain.end());
    chains.push_back(chain);
  }
  return FromChains(chains);
}

TEST(BeladyTest, MatchesBruteForceOptimumOnRandomPrefixTrees) {
  std::mt19937_64 rng(2024);
  int checked = 0;
  for (int round = 0; round < 400; ++round) {
    const BlockTrace t = RandomPrefixTreeTrace(rng, 3 + rng() % 8, 3 + rng() % 6);
    ASSERT_TRUE(t.prefix_consistent);
    for (uint64_t capacity = 1; capacity <= 4; ++capacity) {
      const uint64_t optimum = BruteForce(t, capacity).Best();
      ASSERT_EQ(SimulateBelady(t, capacity).hits, optimum)
          << "round " << round << " capacity " << capacity;
      ++checked;
    }
  }
  EXPECT_EQ(checked, 1600);
}

TEST(BeladyTest, NoPolicyBeatsIt) {
  std::mt19937_64 rng(99);
  for (int round = 0; round < 200; ++round) {
    const BlockTrace t = RandomPrefixTreeTrace(rng, 5 + rng() % 30, 10 + rng() % 40);
    for (uint64_t capacity : {1u, 3u, 8u}) {
      const uint64_t min_hits = SimulateBelady(t, capacity).hits;
      for (const std::string& name : storage::EvictionPolicyNames()) {
        auto policy = storage::MakeEvictionPolicy(name);
        ASSERT_TRUE(policy.ok());
        Result<HitStats> s = ReplayPolicy(t, capacity, **policy);
        ASSERT_TRUE(s.ok()) << s.status().ToString();
        EXPECT_LE(s->hits, min_hits) << name << " round " << round << " capacity " << capacity;
      }
    }
  }
}

}  // namespace
}  // namespace kvault::bench
