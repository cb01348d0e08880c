// The chain-aware policy ("prefix"): request tails go first, chains are eaten from
// their end (the prefix that stays still hits), the entry touched last is spared while others can
// go, and (prefix) a block readmitted soon after its eviction is protected like a reused one.
#include <gtest/gtest.h>

#include <vector>

#include "kvault/storage/eviction_policy.h"

namespace kvault::storage {
namespace {

uint64_t Key(uint64_t x) { return (x + 1) * 0x9e3779b97f4a7c15ULL; }

const auto kAll = [](EntryId) { return true; };

std::unique_ptr<EvictionPolicy> Make(std::string_view name) {
  Result<std::unique_ptr<EvictionPolicy>> p = MakeEvictionPolicy(name);
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  return p.ok() ? std::move(*p) : nullptr;
}

// Inserts ids [first, first + n) as one chain, each the parent of the next; the first one hangs
// off `parent`.
void InsertChain(EvictionPolicy& p, EntryId first, int n, EntryId parent = kNoEntry) {
  for (int i = 0; i < n; ++i) {
    const EntryId id = first + static_cast<EntryId>(i);
    p.OnInsert(id, i == 0 ? parent : id - 1, Key(id));
  }
}

std::vector<EntryId> Drain(EvictionPolicy& p, size_t count) {
  std::vector<EntryId> order;
  for (size_t i = 0; i < count; ++i) {
    std::optional<EntryId> v = p.PickVictim(kAll);
    if (!v) break;
    order.push_back(*v);
    p.OnRemove(*v);
  }
  return order;
}

class EvictionChainTest : public ::testing::TestWithParam<std::string> {};

TEST_P(EvictionChainTest, ChainsAreEatenFromTheirEnd) {
  auto p = Make(GetParam());
  InsertChain(*p, 0, 4);   // a0..a3 = ids 0..3
  InsertChain(*p, 10, 2);  // b0, b1 = ids 10, 11 (touched last)
  EXPECT_EQ(Drain(*p, 6), (std::vector<EntryId>{3, 2, 1, 0, 10, 11}));
}

TEST(EvictionLruChainTest, PlainLruEvictsTheChainHeadFirst) {
  auto lru = Make("lru");
  InsertChain(*lru, 0, 4);
  InsertChain(*lru, 10, 2);
  EXPECT_EQ(lru->PickVictim(kAll), 0u);  // strands 1..3: they cannot hit without 0
}

TEST_P(EvictionChainTest, RequestTailsGoBeforeOlderBlocks) {
  auto p = Make(GetParam());
  InsertChain(*p, 0, 3);   // tail 2
  InsertChain(*p, 10, 3);  // tail 12
  InsertChain(*p, 20, 3);  // tail 22, touched last
  // Both finished tails go before any interior block, oldest first.
  EXPECT_EQ(Drain(*p, 2), (std::vector<EntryId>{2, 12}));
}

TEST_P(EvictionChainTest, ReusedChainOutlivesOneShotOnes) {
  auto p = Make(GetParam());
  InsertChain(*p, 0, 3);                            // 0 1 2
  InsertChain(*p, 10, 3);                           // 10 11 12
  InsertChain(*p, 30, 3);                           // 30 31 32
  for (EntryId id : {0u, 1u, 2u}) p->OnAccess(id);  // the first request comes again
  InsertChain(*p, 20, 2);
  const std::vector<EntryId> order = Drain(*p, 3);
  ASSERT_EQ(order.size(), 3u);
  EXPECT_EQ(order[0], 12u);  // finished tails never reused go first, oldest first
  EXPECT_EQ(order[1], 32u);
  EXPECT_NE(order[2], 2u);  // 2 was reused: no longer a tail, and still needed
  EXPECT_NE(order[2], 1u);
  EXPECT_NE(order[2], 0u);
}

TEST_P(EvictionChainTest, SparesTheEntryTouchedLast) {
  auto p = Make(GetParam());
  InsertChain(*p, 0, 2);
  p->OnInsert(5, kNoEntry, Key(5));  // a one-block request: a tail, and the last touched entry
  const std::optional<EntryId> v = p->PickVictim(kAll);
  ASSERT_TRUE(v.has_value());
  EXPECT_NE(*v, 5u);
  EXPECT_EQ(*v, 1u);  // the older tail
}

TEST_P(EvictionChainTest, SkipsPinnedTailsWithoutLosingThem) {
  auto p = Make(GetParam());
  InsertChain(*p, 0, 3);
  InsertChain(*p, 10, 3);
  InsertChain(*p, 20, 1);
  auto not_two = [](EntryId id) { return id != 2; };
  EXPECT_EQ(p->PickVictim(not_two), 12u);
  p->OnRemove(12);
  EXPECT_EQ(p->PickVictim(kAll), 2u);  // still the oldest tail once released
}

INSTANTIATE_TEST_SUITE_P(ChainAware, EvictionChainTest, ::testing::Values("prefix"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

TEST(EvictionPrefixTest, ReadmittedBlockOutlivesOnceSeenOnes) {
  auto p = Make("prefix");
  for (EntryId id = 0; id < 4; ++id) p->OnInsert(id, kNoEntry, Key(id));
  ASSERT_EQ(p->PickVictim(kAll), 0u);
  p->OnRemove(0);
  // Block 0 comes back (same key hash) under a new id while its ghost lives: it counts as reused.
  p->OnInsert(7, kNoEntry, Key(0));
  p->OnInsert(8, kNoEntry, Key(100));
  p->OnInsert(9, kNoEntry, Key(101));
  EXPECT_EQ(Drain(*p, 4), (std::vector<EntryId>{1, 2, 3, 8}));
}

// A chain looked up again where it already stands (OnAccess leaves it in place), and one that
// moves back to the hot end past another chain: the cold end holds the chain touched longest ago,
// from its end.
TEST(EvictionPrefixTest, RelookedChainsMoveAsAWhole) {
  for (const bool moved_back : {false, true}) {
    SCOPED_TRACE(moved_back ? "a, b, a again" : "a twice, then b");
    auto p = Make("prefix");
    InsertChain(*p, 0, 5);   // a = 0..4
    InsertChain(*p, 10, 5);  // b = 10..14
    auto touch = [&](EntryId first) {
      for (EntryId id = first; id < first + 5; ++id) p->OnAccess(id);
    };
    touch(0);
    if (moved_back) {
      touch(10);
      touch(0);
      EXPECT_EQ(Drain(*p, 5), (std::vector<EntryId>{14, 13, 12, 11, 10}));
    } else {
      touch(0);
      touch(10);
      EXPECT_EQ(Drain(*p, 5), (std::vector<EntryId>{4, 3, 2, 1, 0}));
    }
  }
}

// A block that left without being evicted (promoted to a hotter tier, deleted, found damaged)
// leaves no ghost: when it comes back (demoted into this tier again, written again) it is a new
// block, not one the policy was wrong to give up.
TEST(EvictionPrefixTest, ABlockThatLeftWithoutEvictionComesBackAsNew) {
  for (const bool evicted : {true, false}) {
    SCOPED_TRACE(evicted ? "evicted (positive control)" : "left otherwise");
    auto p = Make("prefix");
    for (EntryId id = 0; id < 4; ++id) p->OnInsert(id, kNoEntry, Key(id));
    if (evicted) {
      p->OnRemove(0);
    } else {
      p->OnLeave(0);
    }
    p->OnInsert(7, kNoEntry, Key(0));  // block 0 again, under a new id
    p->OnInsert(8, kNoEntry, Key(100));
    p->OnInsert(9, kNoEntry, Key(101));
    EXPECT_EQ(Drain(*p, 4),
              evicted ? (std::vector<EntryId>{1, 2, 3, 8}) : (std::vector<EntryId>{1, 2, 3, 7}));
  }
}

TEST(EvictionPrefixTest, NewBlockWithoutGhostStaysATail) {
  auto p = Make("prefix");
  for (EntryId id = 0; id < 4; ++id) p->OnInsert(id, kNoEntry, Key(id));
  ASSERT_EQ(p->PickVictim(kAll), 0u);
  p->OnRemove(0);
  p->OnInsert(7, kNoEntry, Key(50));  // never seen
  p->OnInsert(8, kNoEntry, Key(100));
  p->OnInsert(9, kNoEntry, Key(101));
  EXPECT_EQ(Drain(*p, 4), (std::vector<EntryId>{1, 2, 3, 7}));
}

}  // namespace
}  // namespace kvault::storage
