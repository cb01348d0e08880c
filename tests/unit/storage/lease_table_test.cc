// LeaseTable: leases released long before they expire leave no trace that grows with the lease
// rate, and expiry still releases exactly the live leases, each once.
#include "core/lease_table.h"

#include <gtest/gtest.h>

#include <map>
#include <vector>

namespace kvault::storage {
namespace {

constexpr int64_t kTtl = 600'000'000'000;  // 10 minutes, the store's cap

TEST(LeaseTable, LeasesReleasedBeforeTheirExpiryDoNotAccumulate) {
  LeaseTable table;
  std::map<EntryId, int> held;  // entry -> leases on it, as the store counts them
  auto release = [&](EntryId id) { --held[id]; };
  // 100 leases stay live; 100,000 more are taken and released at once, as a hot prefix is
  // leased by every lookup and released as soon as the blocks are read.
  std::vector<uint64_t> live;
  for (EntryId e = 0; e < 100; ++e) {
    ++held[e];
    live.push_back(table.Add({e}, kTtl + e));
  }
  for (int i = 0; i < 100'000; ++i) {
    const EntryId e = 1000 + static_cast<EntryId>(i % 7);
    ++held[e];
    const uint64_t lease = table.Add({e}, kTtl + 1000 + i);
    ASSERT_TRUE(table.Remove(lease, release));
    ASSERT_LE(table.expiry_entries(), 2 * table.size() + 100) << "after " << i << " releases";
  }
  EXPECT_EQ(table.size(), 100u);
  // Expiry is unchanged: every live lease expires once, in its turn, and nothing else is released.
  EXPECT_EQ(table.ExpireDue(kTtl + 49, release), 50u);
  EXPECT_EQ(table.size(), 50u);
  EXPECT_TRUE(table.Contains(live[50]));
  EXPECT_FALSE(table.Contains(live[49]));
  EXPECT_EQ(table.ExpireDue(kTtl + 200'000, release), 50u);
  EXPECT_EQ(table.size(), 0u);
  EXPECT_EQ(table.expiry_entries(), 0u);
  for (const auto& [entry, leases] : held) EXPECT_EQ(leases, 0) << "entry " << entry;
}

TEST(LeaseTable, ARemovedLeaseIsNeitherReleasedAgainNorExpired) {
  LeaseTable table;
  int released = 0;
  auto release = [&](EntryId) { ++released; };
  const uint64_t a = table.Add({1, 2}, 100);
  const uint64_t b = table.Add({3}, 200);
  EXPECT_TRUE(table.Remove(a, release));
  EXPECT_EQ(released, 2);
  EXPECT_FALSE(table.Remove(a, release));
  EXPECT_EQ(table.ExpireDue(150, release), 0u) << "a was released already";
  EXPECT_EQ(released, 2);
  EXPECT_EQ(table.ExpireDue(200, release), 1u);
  EXPECT_EQ(released, 3);
  EXPECT_FALSE(table.Contains(b));
}

}  // namespace
}  // namespace kvault::storage
