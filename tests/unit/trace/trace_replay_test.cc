// The policy replay: hand-checked LRU figures, orphan counting, a policy that breaks the contract
// is reported, and the real Mooncake traces reproduce the reference table of
// shared/traces/README.md (LRU and MIN), with the chain-aware policies ahead of LRU.
#include <gtest/gtest.h>

#include <filesystem>

#include "trace/belady.h"
#include "trace/policy_replay.h"

namespace kvault::bench {
namespace {

namespace fs = std::filesystem;

BlockTrace FromChains(const std::vector<std::vector<uint64_t>>& chains) {
  std::vector<TraceRequest> requests(chains.size());
  for (size_t i = 0; i < chains.size(); ++i) requests[i].hash_ids = chains[i];
  return MakeBlockTrace(requests);
}

std::unique_ptr<storage::EvictionPolicy> Make(std::string_view name) {
  auto p = storage::MakeEvictionPolicy(name);
  EXPECT_TRUE(p.ok());
  return p.ok() ? std::move(*p) : nullptr;
}

TEST(PolicyReplayTest, LruByHand) {
  // Capacity 3. {0,1,2}: 3 inserts. {0,1,3}: hits 0,1; 3 evicts 2. {0,1,2}: hits 0,1; 2 evicts 3.
  // {4}: evicts 0, the coldest, while its child 1 stays. {5}: evicts 1 while its child 2 stays.
  const BlockTrace t = FromChains({{0, 1, 2}, {0, 1, 3}, {0, 1, 2}, {4}, {5}});
  Result<HitStats> s = ReplayPolicy(t, 3, *Make("lru"));
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->block_refs, 11u);
  EXPECT_EQ(s->hits, 4u);
  EXPECT_EQ(s->inserts, 7u);
  EXPECT_EQ(s->evictions, 4u);
  EXPECT_EQ(s->bypassed, 0u);
  EXPECT_EQ(s->orphaning_evictions, 2u);
  // prefix eats the chain from its end instead: no orphans.
  Result<HitStats> leaf = ReplayPolicy(t, 3, *Make("prefix"));
  ASSERT_TRUE(leaf.ok());
  EXPECT_EQ(leaf->orphaning_evictions, 0u);
}

TEST(PolicyReplayTest, ZeroCapacityCachesNothing) {
  const BlockTrace t = FromChains({{0, 1}, {0, 1}});
  Result<HitStats> s = ReplayPolicy(t, 0, *Make("prefix"));
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->hits, 0u);
  EXPECT_EQ(s->bypassed, 4u);
}

// Evicts nothing: breaks the contract once the cache is full.
class NoVictimPolicy final : public storage::EvictionPolicy {
 public:
  std::string_view name() const override { return "none"; }
  void OnInsert(storage::EntryId, storage::EntryId, uint64_t) override {}
  void OnAccess(storage::EntryId) override {}
  void OnRemove(storage::EntryId) override {}
  std::optional<storage::EntryId> PickVictim(
      const std::function<bool(storage::EntryId)>&) override {
    return std::nullopt;
  }
};

TEST(PolicyReplayTest, PolicyWithoutVictimIsAnInternalError) {
  NoVictimPolicy p;
  Result<HitStats> s = ReplayPolicy(FromChains({{0}, {1}}), 1, p);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kInternal);
}

fs::path TraceDir() {
  // The repository sits beside shared/ (…/main/tests/unit/trace/this_file).
  const fs::path beside = fs::path(__FILE__).parent_path() / ".." / ".." / ".." / ".." / "shared";
  for (const fs::path& p : {beside / "traces", fs::path("/work/shared/traces")}) {
    if (fs::exists(p / "synthetic_trace.jsonl")) return p;
  }
  return {};
}

struct Reference {
  const char* file;
  double fraction;
  double lru_percent;
  double min_percent;
};

class TraceRegressionTest : public ::testing::TestWithParam<Reference> {};

TEST_P(TraceRegressionTest, ReproducesTheReferenceTable) {
  const fs::path dir = TraceDir();
  if (dir.empty()) GTEST_SKIP() << "shared/traces is not beside the repository";
  const Reference ref = GetParam();
  Result<std::vector<TraceRequest>> requests = ReadMooncakeTrace((dir / ref.file).string());
  ASSERT_TRUE(requests.ok()) << requests.status().ToString();
  const BlockTrace t = MakeBlockTrace(*requests);
  ASSERT_TRUE(t.prefix_consistent);
  const uint64_t capacity = CapacityForFraction(t, ref.fraction);

  Result<HitStats> lru = ReplayPolicy(t, capacity, *Make("lru"));
  ASSERT_TRUE(lru.ok());
  const HitStats min = SimulateBelady(t, capacity);
  EXPECT_NEAR(100 * lru->hit_ratio(), ref.lru_percent, 0.05);
  EXPECT_NEAR(100 * min.hit_ratio(), ref.min_percent, 0.05);
  for (const char* name : {"prefix"}) {
    Result<HitStats> s = ReplayPolicy(t, capacity, *Make(name));
    ASSERT_TRUE(s.ok());
    EXPECT_GT(s->hit_ratio(), lru->hit_ratio()) << name;
    EXPECT_LE(s->hits, min.hits) << name;
  }
}

INSTANTIATE_TEST_SUITE_P(Mooncake, TraceRegressionTest,
                         ::testing::Values(Reference{"synthetic_trace.jsonl", 0.10, 26.0, 50.6},
                                           Reference{"conversation_trace.jsonl", 0.05, 19.5, 36.6}),
                         [](const ::testing::TestParamInfo<Reference>& info) {
                           return std::string(info.param.file[0] == 's' ? "Synthetic10Percent"
                                                                        : "Conversation5Percent");
                         });

}  // namespace
}  // namespace kvault::bench
