// The store's hash index: inserts, finds and erases stay consistent through growth, collisions
// and backward-shift deletion.
#include <gtest/gtest.h>

#include <random>
#include <unordered_map>

#include "core/block_index.h"
#include "store_test_util.h"

namespace kvault::storage {
namespace {

TEST(BlockIndex, MatchesAReferenceMapUnderRandomOperations) {
  BlockIndex index;
  std::unordered_map<ScopedKey, EntryId, ScopedKeyHash> reference;
  std::mt19937_64 rng(11);
  for (int step = 0; step < 200000; ++step) {
    // Few distinct first bytes and two tenants: plenty of probe collisions.
    const uint64_t n = rng() % 5000;
    ScopedKey key{static_cast<TenantId>(n % 2), testing::KeyOf(n / 2)};
    auto it = reference.find(key);
    if (rng() % 3 == 0 && it != reference.end()) {
      index.Erase(it->second);
      reference.erase(it);
    } else if (it == reference.end()) {
      reference[key] = index.Insert(key);
    }
    if (step % 1000 == 0) {
      for (auto& [k, id] : reference) ASSERT_EQ(index.Find(k), id);
    }
  }
  EXPECT_EQ(index.size(), reference.size());
  for (auto& [k, id] : reference) {
    ASSERT_EQ(index.Find(k), id);
    EXPECT_EQ(index.at(id).key, k);
  }
  // Absent keys miss; the same key under another tenant is another block.
  EXPECT_EQ(index.Find({7, testing::KeyOf(1)}), kNoEntry);
}

TEST(BlockIndex, IdsAreReusedAfterErase) {
  BlockIndex index;
  const EntryId a = index.Insert({0, testing::KeyOf(1)});
  index.Erase(a);
  const EntryId b = index.Insert({0, testing::KeyOf(2)});
  EXPECT_EQ(a, b);
  EXPECT_EQ(index.Find({0, testing::KeyOf(1)}), kNoEntry);
  EXPECT_EQ(index.Find({0, testing::KeyOf(2)}), b);
  EXPECT_EQ(index.at(b).state, EntryState::kReserved);
}

}  // namespace
}  // namespace kvault::storage
