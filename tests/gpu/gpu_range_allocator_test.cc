// The gpu tier's pool allocator (best fit, split, coalesce). Pure bookkeeping on offsets, so these
// tests need no device and run in every CUDA build.

#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <vector>

#include "gpu/range_allocator.h"

namespace kvault::storage::gpu_internal {
namespace {

constexpr uint64_t kG = 256;

TEST(GpuRangeAllocatorTest, RoundsToGranularityAndRefusesWhenFull) {
  RangeAllocator a(4 * kG, kG);
  EXPECT_FALSE(a.Allocate(0).has_value());
  EXPECT_FALSE(a.Allocate(4 * kG + 1).has_value());
  const std::optional<uint64_t> x = a.Allocate(1);
  ASSERT_TRUE(x.has_value());
  EXPECT_EQ(*x, 0u);
  EXPECT_EQ(a.AllocatedSize(*x), kG);
  const std::optional<uint64_t> y = a.Allocate(kG + 1);  // two granules
  ASSERT_TRUE(y.has_value());
  EXPECT_EQ(*y, kG);
  EXPECT_EQ(a.AllocatedSize(*y), 2 * kG);
  EXPECT_FALSE(a.Allocate(2 * kG).has_value());
  const std::optional<uint64_t> z = a.Allocate(kG);
  ASSERT_TRUE(z.has_value());
  EXPECT_EQ(*z, 3 * kG);
  EXPECT_FALSE(a.Allocate(1).has_value());
  EXPECT_EQ(a.free_bytes(), 0u);
  EXPECT_EQ(a.allocated_bytes(), 4 * kG);
  EXPECT_EQ(a.Fragmentation(), 0.0);
  EXPECT_TRUE(a.CheckInvariants());
}

TEST(GpuRangeAllocatorTest, FreeOfAnUnknownOffsetChangesNothing) {
  RangeAllocator a(8 * kG, kG);
  const uint64_t x = a.Allocate(2 * kG).value();
  EXPECT_EQ(a.Free(x + kG), 0u);  // inside an allocation, not its start
  EXPECT_EQ(a.Free(5 * kG), 0u);  // free space
  EXPECT_EQ(a.allocations(), 1u);
  EXPECT_EQ(a.Free(x), 2 * kG);
  EXPECT_EQ(a.Free(x), 0u);  // twice
  EXPECT_EQ(a.free_bytes(), 8 * kG);
  EXPECT_TRUE(a.CheckInvariants());
}

TEST(GpuRangeAllocatorTest, FreeCoalescesWithBothNeighbours) {
  RangeAllocator a(5 * kG, kG);
  std::vector<uint64_t> at;
  for (int i = 0; i < 5; ++i) at.push_back(a.Allocate(kG).value());
  a.Free(at[1]);
  a.Free(at[3]);
  EXPECT_EQ(a.free_ranges(), 2u);
  EXPECT_DOUBLE_EQ(a.Fragmentation(), 0.5);
  EXPECT_FALSE(a.Allocate(2 * kG).has_value());
  a.Free(at[2]);  // joins [1] and [3]
  EXPECT_EQ(a.free_ranges(), 1u);
  EXPECT_EQ(a.largest_free(), 3 * kG);
  EXPECT_EQ(a.Fragmentation(), 0.0);
  EXPECT_EQ(a.Allocate(3 * kG).value(), at[1]);
  a.Free(at[0]);
  a.Free(at[4]);
  EXPECT_TRUE(a.CheckInvariants());
}

TEST(GpuRangeAllocatorTest, BestFitTakesTheSmallestHoleThatFits) {
  // Layout: [A 2][B 1][C 3][D 1][E 1][rest 8], then free A and C: holes of 2, 3 and 8 granules.
  RangeAllocator a(16 * kG, kG);
  const uint64_t pa = a.Allocate(2 * kG).value();
  a.Allocate(kG).value();
  const uint64_t pc = a.Allocate(3 * kG).value();
  a.Allocate(kG).value();
  a.Allocate(kG).value();
  a.Free(pa);
  a.Free(pc);
  EXPECT_EQ(a.Allocate(3 * kG).value(), pc);  // the exact hole, not the first or the largest
  EXPECT_EQ(a.Allocate(kG).value(), pa);      // the smallest hole that fits, split
  EXPECT_EQ(a.largest_free(), 8 * kG);
  EXPECT_TRUE(a.CheckInvariants());
}

TEST(GpuRangeAllocatorTest, RandomChurnKeepsRangesDisjointAndAccounted) {
  constexpr uint64_t kGranules = 1024;
  RangeAllocator a(kGranules * kG, kG);
  std::vector<int> owner(kGranules, -1);  // an independent model: which allocation holds a granule
  std::map<uint64_t, uint64_t> live;      // offset -> requested bytes
  std::mt19937_64 rng(42);
  int id = 0;
  for (int op = 0; op < 20000; ++op) {
    if (live.empty() || rng() % 100 < 55) {
      const uint64_t bytes = 1 + rng() % (24 * kG);
      const std::optional<uint64_t> at = a.Allocate(bytes);
      if (!at) {
        // Refusal must be honest: no free run of granules is long enough.
        const uint64_t need = (bytes + kG - 1) / kG;
        uint64_t run = 0, best = 0;
        for (uint64_t g = 0; g < kGranules; ++g) {
          run = owner[g] < 0 ? run + 1 : 0;
          best = std::max(best, run);
        }
        ASSERT_LT(best, need) << "refused " << bytes << " bytes with a free run of " << best;
        continue;
      }
      ASSERT_EQ(*at % kG, 0u);
      const uint64_t size = a.AllocatedSize(*at);
      ASSERT_GE(size, bytes);
      ASSERT_LT(size - bytes, kG);
      for (uint64_t g = *at / kG; g < (*at + size) / kG; ++g) {
        ASSERT_LT(g, kGranules);
        ASSERT_EQ(owner[g], -1) << "granule " << g << " handed out twice";
        owner[g] = id;
      }
      ++id;
      live[*at] = bytes;
    } else {
      auto it = live.begin();
      std::advance(it, static_cast<std::ptrdiff_t>(rng() % live.size()));
      const uint64_t size = a.Free(it->first);
      ASSERT_EQ(size, (it->second + kG - 1) / kG * kG);
      for (uint64_t g = it->first / kG; g < (it->first + size) / kG; ++g) owner[g] = -1;
      live.erase(it);
    }
    if (op % 500 == 0) {
      ASSERT_TRUE(a.CheckInvariants()) << "after op " << op;
    }
  }
  ASSERT_TRUE(a.CheckInvariants());
  uint64_t held = 0;
  for (int o : owner) held += o >= 0 ? kG : 0;
  EXPECT_EQ(a.allocated_bytes(), held);
  for (const auto& [offset, bytes] : live) a.Free(offset);
  EXPECT_EQ(a.free_ranges(), 1u);
  EXPECT_EQ(a.free_bytes(), kGranules * kG);
}

}  // namespace
}  // namespace kvault::storage::gpu_internal
