// Many threads storing, looking up, leasing, reading and deleting while the store evicts and
// demotes: every byte read back must be the block that was asked for.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <random>
#include <thread>

#include "kvault/storage/block_store.h"
#include "store_test_util.h"

namespace kvault::storage {
namespace {

using testing::FakeTier;
using testing::KeyOf;
using testing::ObjectFor;

void RunMixedLoad(BlockStore& store, int threads, int ops_per_thread) {
  std::atomic<uint64_t> mismatches{0}, reads{0}, hits{0}, unexpected{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      std::mt19937_64 rng(1000 + t);
      for (int op = 0; op < ops_per_thread; ++op) {
        const uint64_t id = rng() % 400;
        const TenantId tenant = static_cast<TenantId>(id % 2);
        const BlockKey key = KeyOf(id);
        switch (rng() % 5) {
          case 0:
          case 1: {
            Result<bool> put = store.Put(tenant, key, ObjectFor(key, 20000 + 100 * (id % 37)));
            if (!put.ok() && put.status().code() != StatusCode::kResourceExhausted) ++unexpected;
            break;
          }
          case 2: {
            std::vector<BlockKey> chain;
            for (uint64_t j = id; j < id + 8; ++j) chain.push_back(KeyOf(j));
            LookupResult r = store.Lookup(tenant, chain, {.lease_ttl = std::chrono::seconds(1)});
            hits += r.leading_hits;
            if (r.lease != 0 && !store.ReleaseLease(r.lease).ok()) ++unexpected;
            break;
          }
          case 3: {
            Result<std::optional<BlockPin>> pin = store.Pin(tenant, key);
            if (!pin.ok()) {
              ++unexpected;
            } else if (pin->has_value()) {
              ++reads;
              if (!IsSyntheticBlockFor(key, (*pin)->bytes())) ++mismatches;
            }
            break;
          }
          case 4: {
            Result<bool> d = store.Delete(tenant, key);
            if (!d.ok() && d.status().code() != StatusCode::kUnavailable) ++unexpected;
            break;
          }
        }
      }
    });
  }
  for (std::thread& w : workers) w.join();
  EXPECT_EQ(mismatches.load(), 0u);
  EXPECT_EQ(unexpected.load(), 0u);
  EXPECT_GT(reads.load(), 100u) << "the load must actually read blocks";
  EXPECT_GT(hits.load(), 100u);
}

TEST(BlockStoreConcurrency, HostOnlyUnderEvictionPressure) {
  StoreTiers tiers;
  tiers.host = *HostTier::Create({.capacity_bytes = 2 << 20, .huge_pages = false});
  auto store = *BlockStore::Create({.policy = "lru", .mover_threads = 1}, std::move(tiers));
  RunMixedLoad(*store, 8, 3000);
  testing::MapVisitor v;
  store->VisitCounters(v);
  EXPECT_GT(v.Get("host.evictions_total"), 0);
  EXPECT_LE(v.Get("host.reserved_bytes"), 2 << 20);
}

TEST(BlockStoreConcurrency, TwoTiersWithDemotionAndPromotion) {
  StoreTiers tiers;
  tiers.host = *HostTier::Create({.capacity_bytes = 1 << 20, .huge_pages = false});
  tiers.nvme = std::make_unique<FakeTier>(TierKind::kNvme, 4 << 20);
  auto store = *BlockStore::Create(
      {.policy = "lru", .high_watermark = 0.8, .low_watermark = 0.6, .mover_threads = 2},
      std::move(tiers));
  RunMixedLoad(*store, 8, 3000);
  store->WaitForMovers();
  testing::MapVisitor v;
  store->VisitCounters(v);
  EXPECT_GT(v.Get("host.demotions_total"), 0);
  EXPECT_GT(v.Get("nvme.promotions_total") + v.Get("host.promotions_total"), 0);
}

// Two readers take private copies of the same damaged block in a colder tier (no promotion): the
// first to finish finds it damaged and marks it lost while the other still reads; the other then
// finds it gone. The entry is erased exactly once and the store keeps working.
TEST(BlockStoreConcurrency, TwoReadersOfADamagedColdBlock) {
  StoreTiers tiers;
  tiers.host = *HostTier::Create({.capacity_bytes = 1 << 20, .huge_pages = false});
  auto nvme = std::make_unique<FakeTier>(TierKind::kNvme, 64 << 20);
  FakeTier* cold_tier = nvme.get();
  tiers.nvme = std::move(nvme);
  auto store = *BlockStore::Create({.policy = "lru", .promote_on_hit = false, .mover_threads = 0},
                                   std::move(tiers));
  for (int i = 0; i < 16; ++i) {
    const BlockKey key = KeyOf(i);
    ASSERT_TRUE(store->Put(0, key, ObjectFor(key, 100000)).ok());
  }
  const BlockKey cold = KeyOf(0);
  ASSERT_EQ(store->Lookup(0, std::span(&cold, 1), {.touch = false}).tiers[0], TierKind::kNvme);

  std::mutex mu;
  std::condition_variable both_in;
  int readers = 0;
  cold_tier->before_read = [&] {  // both reads are under way before either fails
    std::unique_lock lock(mu);
    ++readers;
    both_in.notify_all();
    both_in.wait_for(lock, std::chrono::seconds(5), [&] { return readers >= 2; });
  };
  cold_tier->corrupt_reads = true;
  std::atomic<int> misses{0};
  auto read = [&] {
    Result<std::optional<BlockPin>> pin = store->Pin(0, cold);
    if (pin.ok() && !pin->has_value()) ++misses;
  };
  std::thread a(read), b(read);
  a.join();
  b.join();
  EXPECT_EQ(misses.load(), 2) << "both readers see a miss, not an error";
  EXPECT_EQ(store->Lookup(0, std::span(&cold, 1)).leading_hits, 0u) << "the damaged block is gone";

  cold_tier->before_read = nullptr;
  cold_tier->corrupt_reads = false;
  const BlockKey other = KeyOf(15), fresh = KeyOf(99);  // the store still works
  EXPECT_EQ(store->Lookup(0, std::span(&other, 1)).leading_hits, 1u);
  EXPECT_TRUE(store->Put(0, fresh, ObjectFor(fresh, 100000)).ok());
  EXPECT_EQ(store->Lookup(0, std::span(&fresh, 1)).leading_hits, 1u);
  EXPECT_TRUE(store->Put(0, cold, ObjectFor(cold, 100000)).ok()) << "its key can be stored again";
}

}  // namespace
}  // namespace kvault::storage
