// The eviction policies' building blocks: the intrusive lists, the chain tracker and the ghost set
// (checked against a plain model under random traffic).
#include <gtest/gtest.h>

#include <deque>
#include <random>
#include <vector>

#include "eviction/chain_tracker.h"
#include "eviction/entry_list.h"
#include "eviction/ghost_set.h"

namespace kvault::storage {
namespace {

std::vector<EntryId> HeadToTail(const EntryLinks& links, const EntryList& list) {
  std::vector<EntryId> out;
  for (EntryId id = list.head; id != kNoEntry; id = links.Next(id)) out.push_back(id);
  return out;
}

TEST(EntryListTest, PushInsertMoveUnlink) {
  EntryLinks links;
  links.Grow(9);
  EntryList a, b;
  links.PushHead(a, 1);
  links.PushHead(a, 2);
  links.InsertAfter(a, 1, 3);  // after the tail: becomes the tail
  links.InsertAfter(a, 2, 4);
  EXPECT_EQ(HeadToTail(links, a), (std::vector<EntryId>{2, 4, 1, 3}));
  links.InsertAfter(a, 3, 5);  // after the tail: becomes the tail
  EXPECT_EQ(a.tail, 5u);
  links.MoveToHead(a, 1);
  EXPECT_EQ(HeadToTail(links, a), (std::vector<EntryId>{1, 2, 4, 3, 5}));
  links.Unlink(a, 1);
  links.Unlink(a, 5);
  links.PushHead(b, 5);
  EXPECT_EQ(HeadToTail(links, a), (std::vector<EntryId>{2, 4, 3}));
  EXPECT_EQ(a.size, 3u);
  EXPECT_EQ(HeadToTail(links, b), (std::vector<EntryId>{5}));
  EXPECT_EQ(links.Prev(a.tail), 4u);
}

TEST(ChainTrackerTest, ParentsAndChildrenFollowRemovalAndReuse) {
  ChainTracker chains;
  chains.OnInsert(0, kNoEntry);
  chains.OnInsert(1, 0);
  chains.OnInsert(2, 0);
  EXPECT_EQ(chains.Parent(1), 0u);
  EXPECT_EQ(chains.Children(0), 2u);
  chains.OnRemove(2);
  EXPECT_EQ(chains.Children(0), 1u);
  chains.OnRemove(0);
  EXPECT_EQ(chains.Parent(1), kNoEntry);  // the parent left
  chains.OnInsert(0, kNoEntry);           // its id now holds another block
  EXPECT_EQ(chains.Parent(1), kNoEntry);
  EXPECT_EQ(chains.Children(0), 0u);
  chains.OnRemove(1);  // must not touch the new block 0
  EXPECT_EQ(chains.Children(0), 0u);
}

// An entry named as its own parent (a stale hint whose id it took) gets none; a real parent
// given next to it is recorded.
TEST(ChainTrackerTest, AnEntryIsNeverItsOwnParent) {
  ChainTracker chains;
  chains.OnInsert(3, 3);
  EXPECT_EQ(chains.Parent(3), kNoEntry);
  EXPECT_EQ(chains.Children(3), 0u);
  chains.OnInsert(4, 3);  // positive control
  EXPECT_EQ(chains.Parent(4), 3u);
  EXPECT_EQ(chains.Children(3), 1u);
}

uint64_t KeyHash(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

TEST(GhostSetTest, ForgetsTheOldestBeyondTheLimit) {
  GhostSet ghosts;
  ghosts.SetLimit(3);
  for (uint64_t k = 0; k < 5; ++k) ghosts.Add(KeyHash(k), k % 2 == 1);
  EXPECT_EQ(ghosts.size(), 3u);
  EXPECT_EQ(ghosts.Take(KeyHash(0)), std::nullopt);
  EXPECT_EQ(ghosts.Take(KeyHash(1)), std::nullopt);
  EXPECT_EQ(ghosts.Take(KeyHash(3)), std::optional<bool>(true));
  EXPECT_EQ(ghosts.Take(KeyHash(3)), std::nullopt);  // taken once
  EXPECT_EQ(ghosts.Take(KeyHash(2)), std::optional<bool>(false));
  EXPECT_EQ(ghosts.size(), 1u);
  EXPECT_EQ(ghosts.size(false), 1u);
  EXPECT_EQ(ghosts.size(true), 0u);
}

TEST(GhostSetTest, ReAddKeepsOneGhostWithTheNewestTag) {
  GhostSet ghosts;
  ghosts.SetLimit(4);
  ghosts.Add(KeyHash(1), false);
  ghosts.Add(KeyHash(1), true);
  EXPECT_EQ(ghosts.size(), 1u);
  EXPECT_EQ(ghosts.Take(KeyHash(1)), std::optional<bool>(true));
}

TEST(GhostSetTest, ZeroLimitHoldsNothing) {
  GhostSet ghosts;
  ghosts.Add(KeyHash(1), false);
  EXPECT_EQ(ghosts.Take(KeyHash(1)), std::nullopt);
  EXPECT_EQ(ghosts.size(), 0u);
}

TEST(GhostSetTest, MatchesAFifoModelUnderRandomTraffic) {
  // The model: the last `limit` adds, oldest first; a taken or re-added ghost stays as a dead entry
  // in the window (the ring keeps its place), so the window counts adds, not live ghosts.
  struct Entry {
    uint64_t key;
    bool tag;
    bool live;
  };
  std::deque<Entry> model;
  auto model_take = [&](uint64_t key) -> std::optional<bool> {
    for (Entry& e : model) {
      if (e.live && e.key == key) {
        e.live = false;
        return e.tag;
      }
    }
    return std::nullopt;
  };
  std::mt19937_64 rng(7);
  GhostSet ghosts;
  size_t limit = 8;
  ghosts.SetLimit(limit);
  for (int step = 0; step < 200000; ++step) {
    const uint64_t key = KeyHash(rng() % 3000);
    const unsigned op = rng() % 100;
    if (op < 55) {
      const bool tag = rng() % 2 == 0;
      (void)model_take(key);
      while (model.size() >= limit) model.pop_front();
      model.push_back({key, tag, true});
      ghosts.Add(key, tag);
    } else if (op < 99) {
      ASSERT_EQ(ghosts.Take(key), model_take(key)) << "step " << step;
    } else {
      limit = 1 + rng() % 2000;  // grows and shrinks, as a policy's capacity estimate may
      ghosts.SetLimit(limit);
    }
    size_t live[2] = {0, 0};
    for (const Entry& e : model) live[e.tag] += e.live;
    ASSERT_EQ(ghosts.size(false), live[0]) << "step " << step;
    ASSERT_EQ(ghosts.size(true), live[1]) << "step " << step;
  }
}

}  // namespace
}  // namespace kvault::storage
