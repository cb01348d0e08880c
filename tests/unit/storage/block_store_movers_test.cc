// The background movers against tiers that are fakes at the Tier seam: eviction from the coldest
// tier leaves the index mutex to lookups and writers while the tier erases, and a tier whose
// blocks are all leased does not stop the demotion of the others.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <future>
#include <mutex>
#include <optional>
#include <vector>

#include "kvault/storage/block_store.h"
#include "store_test_util.h"

namespace kvault::storage {
namespace {

using testing::CounterOf;
using testing::FakeTier;
using testing::KeyOf;
using testing::ManualClock;
using testing::ObjectFor;

constexpr uint64_t kPayload = 100000;  // ~100 KB objects: 9 fit in a 1 MiB host tier

// Holds the first Erase of a FakeTier until Release(); later erases pass.
class EraseGate {
 public:
  void Install(FakeTier& tier) {
    tier.before_erase = [this] {
      std::unique_lock lock(mu_);
      if (entered_) return;
      entered_ = true;
      cv_.notify_all();
      cv_.wait(lock, [this] { return released_; });
    };
  }
  // True once the first Erase is held; false when none came within `limit`.
  bool WaitEntered(std::chrono::seconds limit) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, limit, [this] { return entered_; });
  }
  void Release() {
    std::lock_guard lock(mu_);
    released_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool entered_ = false;
  bool released_ = false;
};

// The mover evicts from the coldest tier with the index mutex released while the tier erases
// (nvme: a RocksDB write per block), so lookups and writes go on meanwhile. (It held the mutex
// through every erase down to the low watermark: on a large nvme tier, tens of thousands of
// RocksDB writes during which every Lookup, Reserve, Commit and Pin waited.)
TEST(BlockStoreMovers, LookupsAndWritesGoOnWhileTheColdestTierErasesVictims) {
  ManualClock clock;
  constexpr uint64_t kNvmeCapacity = 1 << 20;
  constexpr int kRecovered = 200;  // small blocks, 0.8 of the tier: over 64 victims to go
  auto nvme = std::make_unique<FakeTier>(TierKind::kNvme, kNvmeCapacity);
  FakeTier* cold = nvme.get();
  for (int i = 0; i < kRecovered; ++i) cold->Preload({0, KeyOf(i)}, ObjectFor(KeyOf(i)));
  EraseGate gate;
  gate.Install(*cold);
  StoreTiers tiers;
  tiers.host = std::move(*HostTier::Create({.capacity_bytes = 1 << 20, .huge_pages = false}));
  tiers.nvme = std::move(nvme);
  auto created = BlockStore::Create(
      {.high_watermark = 0.6, .low_watermark = 0.4, .mover_threads = 1, .clock = &clock},
      std::move(tiers));
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  std::unique_ptr<BlockStore> store = std::move(*created);
  struct OpenGate {  // lets the mover finish before the store is destroyed, on every path
    EraseGate& gate;
    ~OpenGate() { gate.Release(); }
  } open_gate{gate};
  ASSERT_TRUE(gate.WaitEntered(std::chrono::seconds(60))) << "the mover evicted nothing";

  // The mover is inside the tier's Erase of its first victim (the least recently used block,
  // the first recovered).
  struct During {
    LookupResult oldest, newest;
    Status put;
    Result<bool> deleted = false;
    bool reserved = true;
  };
  auto during = std::async(std::launch::async, [&] {
    const BlockKey oldest = KeyOf(0), newest = KeyOf(kRecovered - 1), fresh = KeyOf(1000);
    During d;
    d.oldest = store->Lookup(0, std::span(&oldest, 1), {.touch = false});
    d.newest = store->Lookup(0, std::span(&newest, 1), {.touch = false});
    d.put = store->Put(0, fresh, ObjectFor(fresh)).status();
    d.deleted = store->Delete(0, oldest);
    const auto reservation = store->Reserve(0, oldest, 4096 + 256);
    d.reserved = !reservation.ok() || reservation->has_value();
    return d;
  });
  // Ready at once; the limit only turns the mover holding the mutex through the erase (the
  // lookup would wait for it forever: the erase waits for this test) into a failure.
  EXPECT_EQ(during.wait_for(std::chrono::seconds(20)), std::future_status::ready)
      << "a lookup waited for the mover's erase";
  gate.Release();
  const During d = during.get();
  EXPECT_EQ(d.oldest.leading_hits, 0u) << "a victim being erased is already a miss";
  EXPECT_EQ(d.newest.leading_hits, 1u);
  EXPECT_TRUE(d.put.ok()) << d.put.ToString();
  // Being evicted, it can be neither deleted nor written again: as if evicted already, and
  // written just before.
  EXPECT_TRUE(d.deleted.ok() && !*d.deleted) << d.deleted.status().ToString();
  EXPECT_FALSE(d.reserved);

  // Every batch done: the tier is down to its low watermark, and index, tier and counters agree.
  store->WaitForMovers();
  EXPECT_LE(cold->Usage().reserved_bytes, 0.4 * kNvmeCapacity);
  EXPECT_GT(cold->Usage().reserved_bytes, 0.3 * kNvmeCapacity) << "evicted far past the mark";
  const size_t kept = cold->blocks();
  EXPECT_EQ(CounterOf(*store, "nvme.evictions_total"), kRecovered - static_cast<double>(kept));
  EXPECT_GT(kRecovered - kept, 64u) << "more than one batch of victims";
  EXPECT_EQ(cold->erased.size(), kRecovered - kept);
  EXPECT_EQ(CounterOf(*store, "indexed_blocks"), static_cast<double>(kept + 1));
  std::vector<BlockKey> keys;
  for (int i = 0; i < kRecovered; ++i) keys.push_back(KeyOf(i));
  const LookupResult after = store->Lookup(0, keys, {.touch = false});
  EXPECT_EQ(
      std::count(after.tiers.begin(), after.tiers.end(), std::optional<TierKind>(TierKind::kNvme)),
      static_cast<std::ptrdiff_t>(kept));
  EXPECT_EQ(after.tiers[kRecovered - 1], TierKind::kNvme) << "the newest were kept";
}

// One tier whose blocks are all leased stalls the demotion of that tier only: the host tier's
// mover still demotes when host passes its high watermark. (One stall flag for all tiers kept
// every mover asleep until a pin or lease went away or a commit came.)
TEST(BlockStoreMovers, AStalledGpuTierDoesNotStopTheHostTiersDemotion) {
  ManualClock clock;
  constexpr double kHigh = 0.6;
  StoreTiers tiers;
  tiers.host = std::move(*HostTier::Create({.capacity_bytes = 1 << 20, .huge_pages = false}));
  auto gpu = std::make_unique<FakeTier>(TierKind::kGpu, 1 << 20);
  FakeTier* hot = gpu.get();
  tiers.gpu = std::move(gpu);
  tiers.nvme = std::make_unique<FakeTier>(TierKind::kNvme, 64 << 20);
  auto created = BlockStore::Create({.policy = "lru",
                                     .land_on_gpu = true,
                                     .high_watermark = kHigh,
                                     .low_watermark = 0.4,
                                     .mover_threads = 1,
                                     .clock = &clock},
                                    std::move(tiers));
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  std::unique_ptr<BlockStore> store = std::move(*created);
  auto tier_of = [&](int i) {
    const BlockKey key = KeyOf(i);
    return store->Lookup(0, std::span(&key, 1), {.touch = false}).tiers[0];
  };

  // Six blocks land on gpu (0.57 of it: under the high mark), and are leased.
  std::vector<BlockKey> leased;
  for (int i = 0; i < 6; ++i) {
    leased.push_back(KeyOf(i));
    ASSERT_TRUE(store->Put(0, leased.back(), ObjectFor(leased.back(), kPayload)).ok());
    store->WaitForMovers();
  }
  ASSERT_NE(store->Lookup(0, leased, {.lease_ttl = std::chrono::minutes(1)}).lease, 0u);
  ASSERT_EQ(tier_of(5), TierKind::kGpu);
  // A seventh takes gpu over its high mark; the mover demotes it back to host, the one block it
  // may take, and the gpu tier stalls above its low mark.
  ASSERT_TRUE(store->Put(0, KeyOf(6), ObjectFor(KeyOf(6), kPayload)).ok());
  store->WaitForMovers();
  ASSERT_EQ(tier_of(6), TierKind::kHost);
  ASSERT_EQ(hot->blocks(), 6u);

  // Host passes its high mark with writes in progress (no commit, pin or lease release since):
  // the mover demotes block 6, the only committed block of host, to nvme.
  std::vector<WriteReservation> writes;
  const uint32_t object_bytes = static_cast<uint32_t>(ObjectFor(KeyOf(100), kPayload).size());
  for (int i = 100; CounterOf(*store, "host.reserved_bytes") <= kHigh * (1 << 20); ++i) {
    auto reserved = store->Reserve(0, KeyOf(i), object_bytes);
    ASSERT_TRUE(reserved.ok() && reserved->has_value()) << reserved.status().ToString();
    writes.push_back(std::move(**reserved));
  }
  store->WaitForMovers();
  EXPECT_EQ(tier_of(6), TierKind::kNvme) << "host stayed over its high mark";
  EXPECT_EQ(CounterOf(*store, "host.demotions_total"), 1);
  EXPECT_EQ(hot->blocks(), 6u) << "the leased gpu blocks stay where they are";
  EXPECT_EQ(tier_of(0), TierKind::kGpu);
}

}  // namespace
}  // namespace kvault::storage
