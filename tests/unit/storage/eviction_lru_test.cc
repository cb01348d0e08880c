// LRU: recency order, victims that skip pinned entries without losing them, id reuse; and the
// policy factory.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "kvault/storage/eviction_policy.h"

namespace kvault::storage {
namespace {

std::unique_ptr<EvictionPolicy> Make(std::string_view name) {
  Result<std::unique_ptr<EvictionPolicy>> p = MakeEvictionPolicy(name);
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  return p.ok() ? std::move(*p) : nullptr;
}

const auto kAll = [](EntryId) { return true; };

TEST(EvictionLruTest, EvictsLeastRecentlyUsedFirst) {
  auto lru = Make("lru");
  for (EntryId id = 0; id < 4; ++id) lru->OnInsert(id, kNoEntry, 100 + id);
  lru->OnAccess(0);  // order, coldest first: 1 2 3 0
  EXPECT_EQ(lru->PickVictim(kAll), 1u);
  lru->OnRemove(1);
  EXPECT_EQ(lru->PickVictim(kAll), 2u);
  lru->OnAccess(2);  // 3 0 2
  EXPECT_EQ(lru->PickVictim(kAll), 3u);
  lru->OnRemove(3);
  lru->OnRemove(0);
  EXPECT_EQ(lru->PickVictim(kAll), 2u);
  lru->OnRemove(2);
  EXPECT_EQ(lru->PickVictim(kAll), std::nullopt);
}

TEST(EvictionLruTest, PickVictimDoesNotRemove) {
  auto lru = Make("lru");
  lru->OnInsert(7, kNoEntry, 1);
  lru->OnInsert(3, kNoEntry, 2);
  EXPECT_EQ(lru->PickVictim(kAll), 7u);
  EXPECT_EQ(lru->PickVictim(kAll), 7u);  // still there until OnRemove
}

TEST(EvictionLruTest, SkipsPinnedEntriesAndKeepsTheirPlace) {
  auto lru = Make("lru");
  for (EntryId id = 0; id < 5; ++id) lru->OnInsert(id, kNoEntry, id);
  std::set<EntryId> pinned = {0, 1};
  auto unpinned = [&](EntryId id) { return pinned.count(id) == 0; };
  EXPECT_EQ(lru->PickVictim(unpinned), 2u);
  lru->OnRemove(2);
  EXPECT_EQ(lru->PickVictim(unpinned), 3u);
  pinned.clear();
  // The skipped entries are still tracked, and still the coldest.
  EXPECT_EQ(lru->PickVictim(unpinned), 0u);
  lru->OnRemove(0);
  EXPECT_EQ(lru->PickVictim(unpinned), 1u);
}

TEST(EvictionLruTest, NothingEvictableGivesNullopt) {
  auto lru = Make("lru");
  EXPECT_EQ(lru->PickVictim(kAll), std::nullopt);
  lru->OnInsert(0, kNoEntry, 0);
  lru->OnInsert(1, kNoEntry, 1);
  EXPECT_EQ(lru->PickVictim([](EntryId) { return false; }), std::nullopt);
  EXPECT_EQ(lru->PickVictim(kAll), 0u);
}

TEST(EvictionLruTest, ReusedIdStartsAsMostRecent) {
  auto lru = Make("lru");
  for (EntryId id = 0; id < 3; ++id) lru->OnInsert(id, kNoEntry, id);
  lru->OnRemove(0);
  lru->OnInsert(0, kNoEntry, 99);  // the store reuses slot 0 for a new block
  EXPECT_EQ(lru->PickVictim(kAll), 1u);
  lru->OnRemove(1);
  lru->OnRemove(2);
  EXPECT_EQ(lru->PickVictim(kAll), 0u);
}

TEST(EvictionFactoryTest, NamesStartWithTheDefaultAndAllConstruct) {
  const std::vector<std::string> names = EvictionPolicyNames();
  ASSERT_FALSE(names.empty());
  EXPECT_EQ(names.front(), "prefix");
  EXPECT_NE(std::find(names.begin(), names.end(), "lru"), names.end());
  for (const std::string& name : names) {
    auto p = Make(name);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(p->name(), name);
  }
}

TEST(EvictionFactoryTest, UnknownNameListsTheAcceptedOnes) {
  Result<std::unique_ptr<EvictionPolicy>> p = MakeEvictionPolicy("belady");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument);
  for (const std::string& name : EvictionPolicyNames()) {
    EXPECT_NE(p.status().message().find(name), std::string::npos) << p.status().message();
  }
  EXPECT_NE(p.status().message().find("belady"), std::string::npos);
  EXPECT_FALSE(MakeEvictionPolicy("").ok());
  EXPECT_FALSE(MakeEvictionPolicy("LRU").ok());
}

}  // namespace
}  // namespace kvault::storage
