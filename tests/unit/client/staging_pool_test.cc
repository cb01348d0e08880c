// StagingPool (client/src/staging_pool.h): the lazily allocated region, first-fit chunks that
// never overlap, freed ranges merging back, the refusals (disabled, too large, full, failed
// allocation, which is not retried), retired chunks that never come back and chunks that outlive
// the pool. The region comes from a real UCX agent, as in the client.
#include "staging_pool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <list>
#include <random>

#include "client_core.h"

namespace kvault::client_internal {
namespace {

class StagingPoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Result<std::unique_ptr<transport::UcxAgent>> agent = transport::UcxAgent::Create({});
    if (!agent.ok()) GTEST_SKIP() << "UCX cannot start here: " << agent.status().ToString();
    agent_ = std::move(*agent);
  }

  // Allocates through the agent and counts the calls; fails while `fail_` is set.
  StagingPool::AllocateFn Allocator() {
    return [this](uint64_t bytes) -> Result<std::shared_ptr<RegionRecord>> {
      ++allocations_;
      last_bytes_ = bytes;
      if (fail_) return Status::ResourceExhausted("test: no memory");
      KVAULT_ASSIGN_OR_RETURN(transport::RegisteredRegion region, agent_->AllocateMemory(bytes));
      return std::make_shared<RegionRecord>(agent_, std::move(region), nullptr);
    };
  }

  std::shared_ptr<transport::UcxAgent> agent_;
  int allocations_ = 0;
  uint64_t last_bytes_ = 0;
  bool fail_ = false;
};

bool Overlap(const StagingPool::Chunk& a, const StagingPool::Chunk& b) {
  return a.data() < b.data() + b.size() && b.data() < a.data() + a.size();
}

TEST(StagingLayoutTest, EntriesStartAt64ByteBoundaries) {
  const uint64_t sizes[] = {1, 64, 65, 0, 100};
  const StagingLayout layout = LayOut(sizes);
  EXPECT_EQ(layout.offsets, (std::vector<uint64_t>{0, 64, 128, 256, 256}));
  EXPECT_EQ(layout.total, 384u);
  EXPECT_EQ(LayOut({}).total, 0u);
  EXPECT_EQ(StagingAlignUp(0), 0u);
  EXPECT_EQ(StagingAlignUp(63), 64u);
  EXPECT_EQ(StagingAlignUp(64), 64u);
}

TEST_F(StagingPoolTest, ADisabledPoolGivesNothingAndAllocatesNothing) {
  StagingPool pool(0, Allocator());
  EXPECT_FALSE(pool.Acquire(64).has_value());
  EXPECT_EQ(allocations_, 0);
  EXPECT_EQ(pool.part_bytes(), 0u);
}

TEST_F(StagingPoolTest, TheRegionIsAllocatedOnFirstUseOnly) {
  StagingPool pool(1 << 20, Allocator());
  EXPECT_EQ(allocations_, 0);
  EXPECT_FALSE(pool.Acquire(0).has_value());
  EXPECT_FALSE(pool.Acquire((1 << 20) + 1).has_value());
  EXPECT_EQ(allocations_, 0) << "refused sizes need no region";
  std::optional<StagingPool::Chunk> a = pool.Acquire(100);
  ASSERT_TRUE(a.has_value());
  std::optional<StagingPool::Chunk> b = pool.Acquire(100);
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(allocations_, 1);
  EXPECT_EQ(last_bytes_, uint64_t{1} << 20);
  EXPECT_EQ(a->size(), 128u);
  EXPECT_FALSE(Overlap(*a, *b));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b->data()) % 64, 0u);
  EXPECT_TRUE(a->region().Contains(a->data(), a->size()));
  EXPECT_TRUE(b->region().Contains(b->data(), b->size()));
  EXPECT_EQ(&a->region(), &b->region());
}

TEST_F(StagingPoolTest, AFailedAllocationIsNotRetried) {
  fail_ = true;
  StagingPool pool(1 << 20, Allocator());
  EXPECT_FALSE(pool.Acquire(4096).has_value());
  fail_ = false;
  EXPECT_FALSE(pool.Acquire(4096).has_value());
  EXPECT_EQ(allocations_, 1);
}

TEST_F(StagingPoolTest, AFullPoolRefusesUntilChunksReturnAndFreedRangesMerge) {
  constexpr uint64_t kQuarter = 64 << 10;
  StagingPool pool(4 * kQuarter, Allocator());
  std::vector<StagingPool::Chunk> chunks;
  for (int i = 0; i < 4; ++i) {
    std::optional<StagingPool::Chunk> c = pool.Acquire(kQuarter);
    ASSERT_TRUE(c.has_value()) << i;
    chunks.push_back(std::move(*c));
  }
  EXPECT_FALSE(pool.Acquire(1).has_value()) << "the pool is full";
  // Free the two middle quarters: a half fits in the merged hole, and nothing more.
  chunks.erase(chunks.begin() + 1, chunks.begin() + 3);
  std::optional<StagingPool::Chunk> half = pool.Acquire(2 * kQuarter);
  ASSERT_TRUE(half.has_value()) << "freed neighbours did not merge";
  EXPECT_FALSE(pool.Acquire(1).has_value());
  for (const StagingPool::Chunk& c : chunks) EXPECT_FALSE(Overlap(*half, c));
  half.reset();
  chunks.clear();
  EXPECT_TRUE(pool.Acquire(4 * kQuarter).has_value()) << "the whole pool is free again";
}

TEST_F(StagingPoolTest, ARetiredChunkNeverServesAnotherRequest) {
  constexpr uint64_t kQuarter = 64 << 10;
  StagingPool pool(4 * kQuarter, Allocator());
  std::optional<StagingPool::Chunk> retired = pool.Acquire(kQuarter);
  std::optional<StagingPool::Chunk> returned = pool.Acquire(kQuarter);
  ASSERT_TRUE(retired.has_value() && returned.has_value());
  uint8_t* const retired_at = retired->data();
  retired->Retire();
  retired.reset();
  returned.reset();
  EXPECT_EQ(pool.retired_bytes(), kQuarter);
  EXPECT_FALSE(pool.Acquire(4 * kQuarter).has_value()) << "the retired quarter came back";
  std::vector<StagingPool::Chunk> rest;
  while (std::optional<StagingPool::Chunk> c = pool.Acquire(kQuarter))
    rest.push_back(std::move(*c));
  ASSERT_EQ(rest.size(), 3u);
  for (const StagingPool::Chunk& c : rest) EXPECT_NE(c.data(), retired_at);
}

TEST_F(StagingPoolTest, ChunksOutliveThePool) {
  std::optional<StagingPool::Chunk> chunk;
  {
    StagingPool pool(1 << 20, Allocator());
    chunk = pool.Acquire(4096);
    ASSERT_TRUE(chunk.has_value());
  }
  std::memset(chunk->data(), 0xAB, chunk->size());  // still mapped and registered
  EXPECT_EQ(chunk->data()[4095], 0xAB);
}

TEST_F(StagingPoolTest, RandomTrafficNeverHandsOutOverlappingChunks) {
  constexpr uint64_t kCapacity = 1 << 20;
  StagingPool pool(kCapacity, Allocator());
  std::mt19937 rng(7);
  std::list<StagingPool::Chunk> live;
  uint64_t in_use = 0;
  int granted = 0, refused = 0;
  for (int step = 0; step < 4000; ++step) {
    if (!live.empty() && rng() % 3 == 0) {
      auto it = std::next(live.begin(), rng() % live.size());
      in_use -= it->size();
      live.erase(it);
      continue;
    }
    const uint64_t bytes = 1 + rng() % (kCapacity / 8);
    std::optional<StagingPool::Chunk> c = pool.Acquire(bytes);
    if (!c) {
      ++refused;
      continue;
    }
    ++granted;
    EXPECT_GE(c->size(), bytes);
    for (const StagingPool::Chunk& other : live) ASSERT_FALSE(Overlap(*c, other)) << step;
    in_use += c->size();
    ASSERT_LE(in_use, kCapacity);
    live.push_back(std::move(*c));
  }
  EXPECT_GT(granted, 100);
  EXPECT_GT(refused, 0) << "the traffic never filled the pool";
  live.clear();
  EXPECT_TRUE(pool.Acquire(kCapacity).has_value()) << "ranges were lost";
}

}  // namespace
}  // namespace kvault::client_internal
