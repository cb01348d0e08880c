// BlockStore::PersistRamTiers (a clean stop): the blocks only RAM holds go to the nvme tier,
// leased ones stay, a deadline already passed moves nothing, a refusing nvme tier ends the pass,
// and without an nvme tier nothing happens. The nvme tier is a fake at the Tier seam.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <optional>
#include <vector>

#include "kvault/storage/block_store.h"
#include "kvault/storage/host_tier.h"
#include "store_test_util.h"

namespace kvault::storage {
namespace {

using testing::CounterOf;
using testing::FakeTier;
using testing::KeyOf;
using testing::ObjectFor;

constexpr uint64_t kPayload = 50000;
constexpr auto kLater = std::chrono::minutes(1);

struct Store {
  std::unique_ptr<BlockStore> store;
  FakeTier* nvme = nullptr;
};

Store Make(bool with_nvme) {
  StoreTiers tiers;
  tiers.host = std::move(*HostTier::Create({.capacity_bytes = 4 << 20, .huge_pages = false}));
  Store s;
  if (with_nvme) {
    auto nvme = std::make_unique<FakeTier>(TierKind::kNvme, 64 << 20);
    s.nvme = nvme.get();
    tiers.nvme = std::move(nvme);
  }
  auto created = BlockStore::Create({.policy = "lru", .mover_threads = 1}, std::move(tiers));
  EXPECT_TRUE(created.ok()) << created.status().ToString();
  s.store = std::move(*created);
  return s;
}

std::optional<TierKind> TierOf(BlockStore& store, int i) {
  const BlockKey key = KeyOf(i);
  return store.Lookup(0, std::span(&key, 1), {.touch = false}).tiers[0];
}

void PutBlocks(BlockStore& store, int n) {
  for (int i = 0; i < n; ++i)
    ASSERT_TRUE(store.Put(0, KeyOf(i), ObjectFor(KeyOf(i), kPayload)).ok());
}

TEST(BlockStorePersist, RamBlocksGoToTheNvmeTierLeasedOnesStay) {
  Store s = Make(true);
  PutBlocks(*s.store, 5);
  const BlockKey leased = KeyOf(0);
  ASSERT_NE(s.store->Lookup(0, std::span(&leased, 1), {.lease_ttl = kLater}).lease, 0u);
  const BlockStore::PersistReport r =
      s.store->PersistRamTiers(std::chrono::steady_clock::now() + kLater);
  EXPECT_EQ(r.blocks, 4u);
  EXPECT_EQ(r.bytes, 4 * ObjectFor(KeyOf(1), kPayload).size());
  EXPECT_EQ(r.left_blocks, 1u);
  EXPECT_EQ(TierOf(*s.store, 0), TierKind::kHost);
  for (int i = 1; i < 5; ++i) EXPECT_EQ(TierOf(*s.store, i), TierKind::kNvme) << i;
  EXPECT_EQ(s.nvme->blocks(), 4u);
  // The store goes on serving: a new block lands in host again, the moved ones read back.
  ASSERT_TRUE(s.store->Put(0, KeyOf(9), ObjectFor(KeyOf(9), kPayload)).ok());
  EXPECT_EQ(TierOf(*s.store, 9), TierKind::kHost);
  Result<std::optional<BlockPin>> pin = s.store->Pin(0, KeyOf(3));
  ASSERT_TRUE(pin.ok() && pin->has_value());
}

TEST(BlockStorePersist, APassedDeadlineMovesNothing) {
  Store s = Make(true);
  PutBlocks(*s.store, 3);
  const BlockStore::PersistReport r =
      s.store->PersistRamTiers(std::chrono::steady_clock::now() - std::chrono::seconds(1));
  EXPECT_EQ(r.blocks, 0u);
  EXPECT_EQ(r.left_blocks, 3u);
  EXPECT_EQ(s.nvme->blocks(), 0u);
}

TEST(BlockStorePersist, ARefusingNvmeTierEndsThePass) {
  Store s = Make(true);
  PutBlocks(*s.store, 3);
  s.nvme->refuse_writes = true;
  const BlockStore::PersistReport r =
      s.store->PersistRamTiers(std::chrono::steady_clock::now() + kLater);
  EXPECT_EQ(r.blocks, 0u);
  // The first attempt's block leaves host (as any demotion the nvme tier refuses does); the pass
  // then stops instead of dropping the others.
  EXPECT_EQ(r.left_blocks, 2u);
  EXPECT_EQ(CounterOf(*s.store, "move_failures_total"), 1);
  EXPECT_EQ(TierOf(*s.store, 2), TierKind::kHost);
}

// Promotions stop with the pass: the queued ones are dropped, and a later hit reads a block
// where it is instead of moving it out of the nvme tier (which would leave it only in RAM).
TEST(BlockStorePersist, NoBlockLeavesTheNvmeTierAfterThePass) {
  StoreTiers tiers;
  tiers.host = std::move(*HostTier::Create({.capacity_bytes = 4 << 20, .huge_pages = false}));
  auto nvme = std::make_unique<FakeTier>(TierKind::kNvme, 64 << 20);
  std::vector<BlockKey> keys;
  for (int i = 0; i < 4; ++i) {
    keys.push_back(KeyOf(i));
    nvme->Preload({0, keys.back()}, ObjectFor(keys.back(), kPayload));
  }
  tiers.nvme = std::move(nvme);
  auto created = BlockStore::Create({.policy = "lru", .mover_threads = 1}, std::move(tiers));
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  BlockStore& store = **created;
  // Positive control: a hit promotes (block 0 moves to host on its read).
  ASSERT_TRUE(store.Pin(0, keys[0]).ok());
  EXPECT_EQ(TierOf(store, 0), TierKind::kHost);
  (void)store.Lookup(0, keys);  // queues promotions of the others
  const BlockStore::PersistReport r =
      store.PersistRamTiers(std::chrono::steady_clock::now() + kLater);
  EXPECT_EQ(r.left_blocks, 0u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(TierOf(store, i), TierKind::kNvme) << i;
  Result<std::optional<BlockPin>> pin = store.Pin(0, keys[2]);
  ASSERT_TRUE(pin.ok() && pin->has_value());
  EXPECT_EQ(TierOf(store, 2), TierKind::kNvme);
  store.WaitForMovers();
  for (int i = 0; i < 4; ++i) EXPECT_EQ(TierOf(store, i), TierKind::kNvme) << i;
}

TEST(BlockStorePersist, NothingWithoutAnNvmeTier) {
  Store s = Make(false);
  PutBlocks(*s.store, 3);
  const BlockStore::PersistReport r =
      s.store->PersistRamTiers(std::chrono::steady_clock::now() + kLater);
  EXPECT_EQ(r.blocks, 0u);
  EXPECT_EQ(r.left_blocks, 0u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(TierOf(*s.store, i), TierKind::kHost) << i;
}

}  // namespace
}  // namespace kvault::storage
