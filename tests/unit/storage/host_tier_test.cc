// The host arena: size classes, best fit with coalescing, the byte cap, fragmentation reporting.
#include <gtest/gtest.h>

#include <random>
#include <set>

#include "host/extent_allocator.h"
#include "kvault/storage/host_tier.h"
#include "store_test_util.h"

namespace kvault::storage {
namespace {

TEST(ExtentAllocator, SizeClassesBoundInternalWaste) {
  EXPECT_EQ(ExtentAllocator::ClassBytes(1), 64u);
  EXPECT_EQ(ExtentAllocator::ClassBytes(4096), 4096u);
  EXPECT_EQ(ExtentAllocator::ClassBytes(4097), 4608u);
  EXPECT_EQ(ExtentAllocator::ClassBytes(1 << 20), uint64_t{1} << 20);
  for (uint64_t n : {5000ull, 70000ull, 1048640ull, 4194368ull, 123456789ull}) {
    const uint64_t c = ExtentAllocator::ClassBytes(n);
    EXPECT_GE(c, n);
    EXPECT_LE(static_cast<double>(c), 1.125 * static_cast<double>(n)) << n;
    EXPECT_EQ(ExtentAllocator::ClassBytes(c), c) << "classes are fixed points";
  }
}

TEST(ExtentAllocator, FreedNeighboursCoalesceIntoOneExtent) {
  ExtentAllocator a(64 * 1024);
  std::vector<uint64_t> offsets;
  for (int i = 0; i < 16; ++i) offsets.push_back(*a.Allocate(4096));
  EXPECT_FALSE(a.Allocate(64).has_value()) << "arena is full";
  // Free every other block: 8 holes of 4 KiB, none large enough for 8 KiB.
  for (int i = 0; i < 16; i += 2) a.Free(offsets[i], 4096);
  EXPECT_EQ(a.free_bytes(), 32u * 1024);
  EXPECT_FALSE(a.Allocate(8192).has_value());
  EXPECT_NEAR(a.fragmentation(), 1.0 - 1.0 / 8, 1e-9);
  // Free the rest: everything merges back into one extent.
  for (int i = 1; i < 16; i += 2) a.Free(offsets[i], 4096);
  EXPECT_EQ(a.largest_free_extent(), 64u * 1024);
  EXPECT_EQ(a.fragmentation(), 0.0);
  EXPECT_TRUE(a.Allocate(64 * 1024).has_value());
}

TEST(ExtentAllocator, RandomWorkloadNeverOverlapsOrExceedsCapacity) {
  const uint64_t cap = 8 << 20;
  ExtentAllocator a(cap);
  std::mt19937_64 rng(7);
  std::map<uint64_t, uint64_t> live;  // offset -> requested bytes
  for (int step = 0; step < 20000; ++step) {
    if (!live.empty() && (rng() % 3 == 0)) {
      auto it = live.begin();
      std::advance(it, rng() % live.size());
      a.Free(it->first, it->second);
      live.erase(it);
      continue;
    }
    const uint64_t bytes = 1 + rng() % (300 * 1024);
    std::optional<uint64_t> off = a.Allocate(bytes);
    if (!off) continue;
    const uint64_t end = *off + ExtentAllocator::ClassBytes(bytes);
    ASSERT_LE(end, cap);
    auto next = live.lower_bound(*off);
    if (next != live.end()) {
      ASSERT_LE(end, next->first) << "overlaps the next block";
    }
    if (next != live.begin()) {
      auto prev = std::prev(next);
      ASSERT_LE(prev->first + ExtentAllocator::ClassBytes(prev->second), *off);
    }
    live[*off] = bytes;
  }
  uint64_t total = 0;
  for (auto& [off, bytes] : live) total += ExtentAllocator::ClassBytes(bytes);
  EXPECT_EQ(a.allocated_bytes(), total);
}

TEST(HostTier, CapIsEnforcedAndSpaceComesBack) {
  auto tier = HostTier::Create({.capacity_bytes = 1 << 20, .huge_pages = false});
  ASSERT_TRUE(tier.ok()) << tier.status().ToString();
  std::vector<TierSlot> slots;
  while (true) {
    Result<TierSlot> s = (*tier)->Allocate(100 * 1024);
    if (!s.ok()) {
      EXPECT_EQ(s.status().code(), StatusCode::kResourceExhausted);
      break;
    }
    slots.push_back(*s);
  }
  EXPECT_EQ(slots.size(), 9u);  // 100 KiB rounds to 112 KiB: 9 fit in 1 MiB
  EXPECT_LE((*tier)->Usage().reserved_bytes, uint64_t{1} << 20);
  (*tier)->Free(slots.back(), 100 * 1024);
  EXPECT_TRUE((*tier)->Allocate(100 * 1024).ok()) << "freed space is reusable";
}

TEST(HostTier, PutReadRoundTripAndArenaSpan) {
  auto tier = HostTier::Create({.capacity_bytes = 4 << 20});
  ASSERT_TRUE(tier.ok());
  const BlockKey key = testing::KeyOf(1);
  std::vector<uint8_t> object = testing::ObjectFor(key, 100000);
  Result<TierSlot> slot = (*tier)->Put({0, key}, object);
  ASSERT_TRUE(slot.ok());
  std::span<uint8_t> view = (*tier)->Bytes(*slot, object.size());
  EXPECT_GE(view.data(), (*tier)->arena().data());
  EXPECT_LE(view.data() + view.size(), (*tier)->arena().data() + (*tier)->arena().size());
  std::vector<uint8_t> out(object.size());
  ASSERT_TRUE((*tier)->Read({0, key}, *slot, object.size(), out).ok());
  EXPECT_EQ(out, object);
  EXPECT_TRUE(IsSyntheticBlockFor(key, out));
  testing::MapVisitor v;
  (*tier)->VisitCounters(v);
  EXPECT_EQ(v.Get("host.used_bytes"), static_cast<double>(object.size()));
  EXPECT_EQ(v.Get("host.blocks"), 1);
}

TEST(HostTier, ZeroCapacityIsRejected) {
  auto tier = HostTier::Create({.capacity_bytes = 0});
  ASSERT_FALSE(tier.ok());
  EXPECT_EQ(tier.status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvault::storage
