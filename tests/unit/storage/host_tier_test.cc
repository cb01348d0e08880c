// The host arena: the byte cap, zero-copy views, counters. Its allocator: extent_allocator_test.
#include <gtest/gtest.h>

#include "kvault/storage/host_tier.h"
#include "store_test_util.h"

namespace kvault::storage {
namespace {

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
