// ExtentAllocator, the placement of blocks in the host arena (size classes) and the gpu pool
// (granularity only): rounding, best fit, coalescing, invariants under random churn.
#include <gtest/gtest.h>

#include <map>
#include <random>

#include "alloc/extent_allocator.h"

namespace kvault::storage {
namespace {

constexpr ExtentAllocator::Rounding kHost{64, true};
constexpr uint64_t kG = 4096;
constexpr ExtentAllocator::Rounding kGpu{kG, false};

TEST(ExtentAllocator, SizeClassesBoundInternalWaste) {
  EXPECT_EQ(ExtentAllocator::ClassBytes(1, kHost), 64u);
  EXPECT_EQ(ExtentAllocator::ClassBytes(4096, kHost), 4096u);
  EXPECT_EQ(ExtentAllocator::ClassBytes(4097, kHost), 4608u);
  EXPECT_EQ(ExtentAllocator::ClassBytes(1 << 20, kHost), uint64_t{1} << 20);
  for (uint64_t n : {5000ull, 70000ull, 1048640ull, 4194368ull, 123456789ull}) {
    const uint64_t c = ExtentAllocator::ClassBytes(n, kHost);
    EXPECT_GE(c, n);
    EXPECT_LE(static_cast<double>(c), 1.125 * static_cast<double>(n)) << n;
    EXPECT_EQ(ExtentAllocator::ClassBytes(c, kHost), c) << "classes are fixed points";
  }
}

TEST(ExtentAllocator, FreedNeighboursCoalesceIntoOneExtent) {
  ExtentAllocator a(64 * 1024, kHost);
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

TEST(ExtentAllocator, HostRandomWorkloadNeverOverlapsOrExceedsCapacity) {
  const uint64_t cap = 8 << 20;
  ExtentAllocator a(cap, kHost);
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
    const uint64_t end = *off + ExtentAllocator::ClassBytes(bytes, kHost);
    ASSERT_LE(end, cap);
    auto next = live.lower_bound(*off);
    if (next != live.end()) {
      ASSERT_LE(end, next->first) << "overlaps the next block";
    }
    if (next != live.begin()) {
      auto prev = std::prev(next);
      ASSERT_LE(prev->first + ExtentAllocator::ClassBytes(prev->second, kHost), *off);
    }
    live[*off] = bytes;
  }
  uint64_t total = 0;
  for (auto& [off, bytes] : live) total += ExtentAllocator::ClassBytes(bytes, kHost);
  EXPECT_EQ(a.allocated_bytes(), total);
  EXPECT_TRUE(a.CheckInvariants());
}

TEST(ExtentAllocator, GranularityModeRoundsAlignsAndRefusesWhenFull) {
  ExtentAllocator a(4 * kG + 100, kGpu);
  EXPECT_EQ(a.capacity(), 4 * kG) << "capacity rounds down to the granularity";
  EXPECT_FALSE(a.Allocate(0).has_value());
  EXPECT_FALSE(a.Allocate(4 * kG + 1).has_value());
  EXPECT_EQ(a.Allocate(1).value(), 0u);
  EXPECT_EQ(a.Allocate(kG + 1).value(), kG) << "rounded to 2 granules";
  EXPECT_FALSE(a.Allocate(2 * kG).has_value());
  EXPECT_EQ(a.Allocate(kG).value(), 3 * kG);
  EXPECT_EQ(a.free_bytes(), 0u);
  EXPECT_EQ(ExtentAllocator::ClassBytes(70000, kGpu), 18 * kG) << "no size classes";
  EXPECT_TRUE(a.CheckInvariants());
}

TEST(ExtentAllocator, FreeCoalescesWithBothNeighbours) {
  ExtentAllocator a(8 * kG, kGpu);
  uint64_t at[4];
  for (uint64_t& p : at) p = a.Allocate(kG).value();
  a.Free(at[0], kG);
  a.Free(at[2], kG);
  EXPECT_EQ(a.free_extents(), 3u);  // [0], [2], and the tail [4..8)
  a.Free(at[1], kG);                // joins both neighbours
  EXPECT_EQ(a.free_extents(), 2u);
  EXPECT_EQ(a.largest_free_extent(), 4 * kG);
  EXPECT_EQ(a.Allocate(3 * kG).value(), 0u);
  EXPECT_TRUE(a.CheckInvariants());
}

TEST(ExtentAllocator, BestFitTakesTheSmallestHoleThatFits) {
  // [A 2][B 1][C 3][D 1][E 1][rest 8]; free A and C: holes of 2, 3 and 8 granules.
  ExtentAllocator a(16 * kG, kGpu);
  const uint64_t pa = a.Allocate(2 * kG).value();
  a.Allocate(kG).value();
  const uint64_t pc = a.Allocate(3 * kG).value();
  a.Allocate(kG).value();
  a.Allocate(kG).value();
  a.Free(pa, 2 * kG);
  a.Free(pc, 3 * kG);
  EXPECT_EQ(a.Allocate(3 * kG).value(), pc);  // the exact hole, not the first or the largest
  EXPECT_EQ(a.Allocate(kG).value(), pa);      // the smallest hole that fits, split
  EXPECT_EQ(a.largest_free_extent(), 8 * kG);
  EXPECT_TRUE(a.CheckInvariants());
}

TEST(ExtentAllocator, GranularityChurnKeepsExtentsDisjointAlignedAndAccounted) {
  constexpr uint64_t kGranules = 1024;
  ExtentAllocator a(kGranules * kG, kGpu);
  std::mt19937_64 rng(3);
  std::map<uint64_t, uint64_t> live;  // offset -> requested bytes
  uint64_t held = 0;
  for (int op = 0; op < 20000; ++op) {
    if (!live.empty() && rng() % 2 == 0) {
      auto it = live.begin();
      std::advance(it, rng() % live.size());
      a.Free(it->first, it->second);
      held -= ExtentAllocator::ClassBytes(it->second, kGpu);
      live.erase(it);
    } else {
      const uint64_t bytes = 1 + rng() % (40 * kG);
      std::optional<uint64_t> at = a.Allocate(bytes);
      if (!at) {
        ASSERT_LT(a.largest_free_extent(), ExtentAllocator::ClassBytes(bytes, kGpu));
        continue;
      }
      ASSERT_EQ(*at % kG, 0u);
      auto next = live.lower_bound(*at);
      if (next != live.end()) {
        ASSERT_LE(*at + ExtentAllocator::ClassBytes(bytes, kGpu), next->first);
      }
      live[*at] = bytes;
      held += ExtentAllocator::ClassBytes(bytes, kGpu);
    }
    if (op % 1000 == 0) {
      ASSERT_TRUE(a.CheckInvariants()) << "after op " << op;
    }
  }
  EXPECT_EQ(a.allocated_bytes(), held);
  EXPECT_TRUE(a.CheckInvariants());
}

}  // namespace
}  // namespace kvault::storage
