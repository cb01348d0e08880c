// BlockStore with a colder tier (an in-memory fake at the Tier seam) and a manual clock:
// leases, demotion, promotion, verification failures, a colder tier that stops taking writes,
// recovery, and the background movers' watermarks.
#include <gtest/gtest.h>

#include <algorithm>

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

struct TwoTierStore {
  std::unique_ptr<BlockStore> store;
  FakeTier* nvme = nullptr;
};

TwoTierStore MakeStore(const ManualClock* clock, BlockStoreOptions options = {},
                       uint64_t nvme_capacity = 64 << 20,
                       std::map<TierSlot, std::pair<ScopedKey, uint32_t>> preloaded = {}) {
  options.policy = "lru";
  options.clock = clock;
  StoreTiers tiers;
  tiers.host = std::move(*HostTier::Create({.capacity_bytes = 1 << 20, .huge_pages = false}));
  auto nvme = std::make_unique<FakeTier>(TierKind::kNvme, nvme_capacity);
  nvme->preloaded = std::move(preloaded);
  FakeTier* raw = nvme.get();
  tiers.nvme = std::move(nvme);
  auto store = BlockStore::Create(options, std::move(tiers));
  EXPECT_TRUE(store.ok()) << store.status().ToString();
  return {std::move(*store), raw};
}

// True when `r` holds true (an error or false is not).
bool IsTrue(const Result<bool>& r) { return r.ok() && *r; }

// A store with only a 1 MiB host tier (nothing hides an eviction), LRU, no movers.
std::unique_ptr<BlockStore> MakeHostOnlyStore(const ManualClock* clock) {
  StoreTiers tiers;
  tiers.host = std::move(*HostTier::Create({.capacity_bytes = 1 << 20, .huge_pages = false}));
  auto store =
      BlockStore::Create({.policy = "lru", .mover_threads = 0, .clock = clock}, std::move(tiers));
  EXPECT_TRUE(store.ok()) << store.status().ToString();
  return store.ok() ? std::move(*store) : nullptr;
}

void PutRange(BlockStore& store, int from, int to) {
  for (int i = from; i < to; ++i) {
    const BlockKey key = KeyOf(i);
    Result<bool> put = store.Put(0, key, ObjectFor(key, kPayload));
    ASSERT_TRUE(put.ok()) << i << ": " << put.status().ToString();
  }
}

TEST(BlockStoreTiers, FullHostDemotesToTheColderTierInsteadOfDropping) {
  ManualClock clock;
  TwoTierStore s = MakeStore(&clock, {.mover_threads = 0});
  PutRange(*s.store, 0, 30);
  std::vector<BlockKey> keys;
  for (int i = 0; i < 30; ++i) keys.push_back(KeyOf(i));
  LookupResult r = s.store->Lookup(0, keys, {.touch = false});
  EXPECT_EQ(r.leading_hits, 30u) << "nothing was dropped";
  EXPECT_EQ(r.tiers[0], TierKind::kNvme) << "the oldest went colder";
  EXPECT_EQ(r.tiers[29], TierKind::kHost);
  EXPECT_GT(CounterOf(*s.store, "host.demotions_total"), 15);
  EXPECT_EQ(CounterOf(*s.store, "host.evictions_total"), 0);
}

TEST(BlockStoreTiers, PinOfAColdBlockPromotesItAndReturnsTheSameBytes) {
  ManualClock clock;
  TwoTierStore s = MakeStore(&clock, {.mover_threads = 0});
  PutRange(*s.store, 0, 30);
  const BlockKey cold = KeyOf(0);
  auto pin = s.store->Pin(0, cold);
  ASSERT_TRUE(pin.ok() && pin->has_value()) << pin.status().ToString();
  EXPECT_EQ((*pin)->tier(), TierKind::kHost);
  EXPECT_TRUE(IsSyntheticBlockFor(cold, (*pin)->bytes()));
  EXPECT_EQ(s.store->Lookup(0, std::span(&cold, 1)).tiers[0], TierKind::kHost);
  EXPECT_EQ(CounterOf(*s.store, "host.promotions_total"), 1);
}

TEST(BlockStoreTiers, WithoutPromotionAColdBlockIsReadInPlace) {
  ManualClock clock;
  TwoTierStore s = MakeStore(&clock, {.promote_on_hit = false, .mover_threads = 0});
  PutRange(*s.store, 0, 30);
  const BlockKey cold = KeyOf(0);
  auto pin = s.store->Pin(0, cold);
  ASSERT_TRUE(pin.ok() && pin->has_value());
  EXPECT_EQ((*pin)->tier(), TierKind::kNvme);
  EXPECT_TRUE(IsSyntheticBlockFor(cold, (*pin)->bytes()));
  EXPECT_EQ(s.store->Lookup(0, std::span(&cold, 1)).tiers[0], TierKind::kNvme);
}

TEST(BlockStoreTiers, ABlockThatFailsVerificationIsAMissAndForgotten) {
  ManualClock clock;
  TwoTierStore s = MakeStore(&clock, {.mover_threads = 0});
  PutRange(*s.store, 0, 30);
  const BlockKey cold = KeyOf(0);
  const BlockKey hot = KeyOf(29);
  s.nvme->corrupt_reads = true;
  auto pin = s.store->Pin(0, cold);
  ASSERT_TRUE(pin.ok()) << pin.status().ToString();
  EXPECT_FALSE(pin->has_value());
  EXPECT_EQ(s.store->Lookup(0, std::span(&cold, 1)).leading_hits, 0u);
  EXPECT_GE(CounterOf(*s.store, "read_failures_total"), 1);
  // Positive control: a healthy host block still reads.
  auto good = s.store->Pin(0, hot);
  ASSERT_TRUE(good.ok() && good->has_value());
  EXPECT_TRUE(IsSyntheticBlockFor(hot, (*good)->bytes()));
}

TEST(BlockStoreTiers, AColderTierThatStopsWritingDoesNotStopTheStore) {
  ManualClock clock;
  TwoTierStore s = MakeStore(&clock, {.mover_threads = 0});
  s.nvme->refuse_writes = true;  // disk full
  PutRange(*s.store, 0, 30);
  EXPECT_EQ(s.nvme->blocks(), 0u);
  EXPECT_GT(CounterOf(*s.store, "host.evictions_total"), 15) << "host dropped instead";
  EXPECT_GT(CounterOf(*s.store, "move_failures_total"), 15);
  // Space returns: demotion resumes by itself.
  s.nvme->refuse_writes = false;
  PutRange(*s.store, 100, 110);
  EXPECT_GT(s.nvme->blocks(), 0u);
}

// A colder tier whose writes fail with Corruption (RocksDB's status once it met a damaged file)
// has lost nothing of the block being demoted: the block leaves the host tier as for any refused
// write, and its host room is freed. (It was taken for a lost block and forgotten with its host
// room held: the arena filled with room nobody owned and every write was refused.)
TEST(BlockStoreTiers, AColderTierWhoseWritesFailAsCorruptionLeaksNoHostRoom) {
  ManualClock clock;
  TwoTierStore s = MakeStore(&clock, {.mover_threads = 0});
  s.nvme->corrupt_writes = true;
  PutRange(*s.store, 0, 90);  // three times what the host tier holds
  EXPECT_EQ(s.nvme->blocks(), 0u);
  EXPECT_GT(CounterOf(*s.store, "host.evictions_total"), 60) << "host dropped instead";
  EXPECT_GT(CounterOf(*s.store, "move_failures_total"), 60);
  const BlockKey last = KeyOf(89);
  EXPECT_EQ(s.store->Lookup(0, std::span(&last, 1)).leading_hits, 1u);
  // Positive control: once the colder tier writes again, demotion resumes.
  s.nvme->corrupt_writes = false;
  PutRange(*s.store, 100, 130);
  EXPECT_GT(s.nvme->blocks(), 0u);
}

TEST(BlockStoreTiers, ColdTierEvictsWhenItIsFullToo) {
  ManualClock clock;
  TwoTierStore s = MakeStore(&clock, {.mover_threads = 0}, /*nvme_capacity=*/1 << 20);
  PutRange(*s.store, 0, 60);
  EXPECT_GT(CounterOf(*s.store, "nvme.evictions_total"), 20);
  EXPECT_LE(s.nvme->Usage().used_bytes, uint64_t{1} << 20);
}

TEST(BlockStoreTiers, LeasedBlocksStayUntilTheLeaseEndsOrExpires) {
  ManualClock clock;
  auto store = MakeHostOnlyStore(&clock);
  PutRange(*store, 0, 4);
  std::vector<BlockKey> leased = {KeyOf(0), KeyOf(1), KeyOf(2), KeyOf(3)};
  LookupResult r = store->Lookup(0, leased, {.lease_ttl = std::chrono::seconds(5)});
  ASSERT_EQ(r.leading_hits, 4u);
  ASSERT_NE(r.lease, 0u);
  PutRange(*store, 10, 40);  // far more than fits
  EXPECT_EQ(store->Lookup(0, leased, {.touch = false}).leading_hits, 4u) << "leased survived";
  const BlockKey unleased = KeyOf(10);
  EXPECT_EQ(store->Lookup(0, std::span(&unleased, 1)).leading_hits, 0u) << "others were evicted";
  // After the TTL the lease expires and the blocks become evictable.
  clock.Advance(std::chrono::seconds(6));
  PutRange(*store, 100, 130);
  EXPECT_EQ(store->Lookup(0, leased, {.touch = false}).leading_hits, 0u);
  EXPECT_EQ(CounterOf(*store, "leases_expired_total"), 1);
  EXPECT_EQ(store->ReleaseLease(r.lease).code(), StatusCode::kNotFound);
}

TEST(BlockStoreTiers, ReleasingALeaseMakesItsBlocksEvictable) {
  ManualClock clock;
  auto store = MakeHostOnlyStore(&clock);
  PutRange(*store, 0, 8);
  std::vector<BlockKey> all;
  for (int i = 0; i < 8; ++i) all.push_back(KeyOf(i));
  LookupResult r = store->Lookup(0, all, {.lease_ttl = std::chrono::minutes(1)});
  ASSERT_EQ(r.leading_hits, 8u);
  // Everything is leased: a write is refused at once, not blocked.
  const BlockKey extra = KeyOf(50);
  Result<bool> refused = store->Put(0, extra, ObjectFor(extra, 4 * kPayload));
  EXPECT_EQ(refused.status().code(), StatusCode::kResourceExhausted);
  ASSERT_TRUE(store->ReleaseLease(r.lease).ok());
  EXPECT_TRUE(store->Put(0, extra, ObjectFor(extra, 4 * kPayload)).ok());
  EXPECT_EQ(store->Lookup(0, std::span(&extra, 1)).leading_hits, 1u);
}

TEST(BlockStoreTiers, ABlockLeased65536TimesStaysLeasedUntilTheLastRelease) {
  ManualClock clock;
  auto store = MakeHostOnlyStore(&clock);
  PutRange(*store, 0, 2);
  const BlockKey hot = KeyOf(0), other = KeyOf(1);
  // A hot prefix block is leased by every lookup that hits it within the TTL.
  constexpr int kLeases = 65536;  // one past what 16 bits count
  std::vector<LeaseId> leases;
  for (int i = 0; i < kLeases; ++i) {
    LookupResult r = store->Lookup(0, std::span(&hot, 1), {.lease_ttl = std::chrono::minutes(1)});
    ASSERT_NE(r.lease, 0u);
    leases.push_back(r.lease);
  }
  EXPECT_EQ(store->Delete(0, hot).status().code(), StatusCode::kUnavailable) << "still leased";
  for (int i = 0; i + 1 < kLeases; ++i) ASSERT_TRUE(store->ReleaseLease(leases[i]).ok());
  EXPECT_EQ(store->Delete(0, hot).status().code(), StatusCode::kUnavailable) << "one lease left";
  ASSERT_TRUE(store->ReleaseLease(leases.back()).ok());
  EXPECT_TRUE(IsTrue(store->Delete(0, hot))) << "deletable after the last release";
  EXPECT_TRUE(IsTrue(store->Delete(0, other))) << "positive control";
}

TEST(BlockStoreTiers, ABlockLargerThanTheHostTierDoesNotEmptyIt) {
  ManualClock clock;
  auto store = MakeHostOnlyStore(&clock);
  PutRange(*store, 0, 8);
  const BlockKey huge = KeyOf(50);
  Result<std::optional<WriteReservation>> refused = store->Reserve(0, huge, 2 << 20);
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
  std::vector<BlockKey> held;
  for (int i = 0; i < 8; ++i) held.push_back(KeyOf(i));
  EXPECT_EQ(store->Lookup(0, held, {.touch = false}).leading_hits, 8u) << "nothing was evicted";
  EXPECT_EQ(CounterOf(*store, "host.evictions_total"), 0);
  const BlockKey fits = KeyOf(51);  // positive control: a block that fits still evicts for room
  EXPECT_TRUE(IsTrue(store->Put(0, fits, ObjectFor(fits, 4 * kPayload))));
  EXPECT_GT(CounterOf(*store, "host.evictions_total"), 0);
}

TEST(BlockStoreTiers, ABlockLargerThanTheHostTierGoesToTheColderTier) {
  ManualClock clock;
  TwoTierStore s = MakeStore(&clock, {.mover_threads = 0});
  PutRange(*s.store, 0, 8);
  const BlockKey huge = KeyOf(50);
  ASSERT_TRUE(IsTrue(s.store->Put(0, huge, ObjectFor(huge, 2 << 20))));
  const LookupResult r = s.store->Lookup(0, std::span(&huge, 1), {.touch = false});
  ASSERT_EQ(r.leading_hits, 1u);
  EXPECT_EQ(r.tiers[0], TierKind::kNvme);
  std::vector<BlockKey> held;
  for (int i = 0; i < 8; ++i) held.push_back(KeyOf(i));
  const LookupResult kept = s.store->Lookup(0, held, {.touch = false});
  EXPECT_EQ(kept.leading_hits, 8u);
  EXPECT_EQ(kept.tiers[0], TierKind::kHost) << "the host tier was not emptied for it";
  EXPECT_EQ(CounterOf(*s.store, "host.demotions_total"), 0);
  EXPECT_EQ(CounterOf(*s.store, "declined_writes_total"), 0);
  // The colder tier refusing such a block: the writer is told OK (a cache may decline), the
  // block is not kept, and the store counts it.
  s.nvme->refuse_writes = true;
  const BlockKey refused = KeyOf(51);
  ASSERT_TRUE(s.store->Put(0, refused, ObjectFor(refused, 2 << 20)).ok());
  EXPECT_EQ(s.store->Lookup(0, std::span(&refused, 1)).leading_hits, 0u);
  EXPECT_EQ(CounterOf(*s.store, "declined_writes_total"), 1);
}

TEST(BlockStoreTiers, ReadingABlockLargerThanTheHostTierDoesNotEmptyIt) {
  ManualClock clock;
  TwoTierStore s = MakeStore(&clock, {.mover_threads = 0});  // promote_on_hit: a read promotes
  PutRange(*s.store, 0, 8);
  const BlockKey huge = KeyOf(50);
  const std::vector<uint8_t> object = ObjectFor(huge, 2 << 20);
  ASSERT_TRUE(IsTrue(s.store->Put(0, huge, object)));
  Result<std::optional<BlockPin>> pin = s.store->Pin(0, huge);
  ASSERT_TRUE(pin.ok() && pin->has_value()) << "read where it is";
  EXPECT_TRUE(
      std::equal(object.begin(), object.end(), (*pin)->bytes().begin(), (*pin)->bytes().end()));
  pin->reset();
  EXPECT_EQ(CounterOf(*s.store, "host.demotions_total"), 0) << "the host tier was not emptied";
  std::vector<BlockKey> held;
  for (int i = 0; i < 8; ++i) held.push_back(KeyOf(i));
  EXPECT_EQ(s.store->Lookup(0, held, {.touch = false}).tiers[0], TierKind::kHost);
}

TEST(BlockStoreTiers, ABlockLargerThanTheColderTierDoesNotEmptyItEither) {
  ManualClock clock;
  TwoTierStore s = MakeStore(&clock, {.mover_threads = 0}, /*nvme_capacity=*/1 << 20);
  PutRange(*s.store, 0, 16);  // the oldest are demoted into the colder tier
  const uint64_t colder_blocks = s.nvme->blocks();
  ASSERT_GT(colder_blocks, 0u);
  const BlockKey huge = KeyOf(50);
  // A cache may decline a block: the write succeeds and the block is not cached.
  ASSERT_TRUE(s.store->Put(0, huge, ObjectFor(huge, 2 << 20)).ok());
  EXPECT_EQ(s.store->Lookup(0, std::span(&huge, 1)).leading_hits, 0u);
  EXPECT_EQ(s.nvme->blocks(), colder_blocks) << "nothing evicted from the colder tier for it";
}

TEST(BlockStoreTiers, AProbeWithoutTouchDoesNotPromote) {
  ManualClock clock;
  TwoTierStore s = MakeStore(&clock, {.mover_threads = 1});
  PutRange(*s.store, 0, 30);
  s.store->WaitForMovers();
  const BlockKey cold = KeyOf(0);
  ASSERT_EQ(s.store->Lookup(0, std::span(&cold, 1), {.touch = false}).tiers[0], TierKind::kNvme);
  s.store->WaitForMovers();
  EXPECT_EQ(s.store->Lookup(0, std::span(&cold, 1), {.touch = false}).tiers[0], TierKind::kNvme);
  EXPECT_EQ(CounterOf(*s.store, "host.promotions_total"), 0);
  s.store->Lookup(0, std::span(&cold, 1));  // positive control: a use promotes
  s.store->WaitForMovers();
  EXPECT_EQ(s.store->Lookup(0, std::span(&cold, 1), {.touch = false}).tiers[0], TierKind::kHost);
}

TEST(BlockStoreTiers, LandingOnGpuWithoutMoversIsRefused) {
  for (const int movers : {0, 1}) {
    StoreTiers tiers;
    tiers.host = std::move(*HostTier::Create({.capacity_bytes = 1 << 20, .huge_pages = false}));
    tiers.gpu = std::make_unique<FakeTier>(TierKind::kGpu, 1 << 20);
    Result<std::unique_ptr<BlockStore>> store =
        BlockStore::Create({.land_on_gpu = true, .mover_threads = movers}, std::move(tiers));
    if (movers == 0) {
      EXPECT_EQ(store.status().code(), StatusCode::kInvalidArgument);
    } else {
      EXPECT_TRUE(store.ok()) << store.status().ToString();
    }
  }
}

TEST(BlockStoreTiers, RecoveryRebuildsTheIndexFromThePersistentTier) {
  ManualClock clock;
  std::map<TierSlot, std::pair<ScopedKey, uint32_t>> preloaded;
  // Only the index is rebuilt from Recover; reading needs real bytes, so read nothing here.
  for (int i = 0; i < 5; ++i) preloaded[100 + i] = {ScopedKey{3, KeyOf(i)}, 4096};
  TwoTierStore s = MakeStore(&clock, {.mover_threads = 0}, 64 << 20, preloaded);
  std::vector<BlockKey> keys;
  for (int i = 0; i < 5; ++i) keys.push_back(KeyOf(i));
  LookupResult r = s.store->Lookup(3, keys);
  EXPECT_EQ(r.leading_hits, 5u);
  EXPECT_EQ(r.tiers[4], TierKind::kNvme);
  EXPECT_EQ(s.store->Lookup(4, keys).leading_hits, 0u) << "recovered blocks keep their tenant";
}

// A block stored under a higher limit can never be served (no reply may describe it): recovery
// erases it from the tier instead of indexing it, and keeps the blocks within the limit.
TEST(BlockStoreTiers, RecoveryErasesBlocksOverTheObjectLimit) {
  ManualClock clock;
  std::map<TierSlot, std::pair<ScopedKey, uint32_t>> preloaded;
  preloaded[100] = {ScopedKey{0, KeyOf(0)}, 4096};
  preloaded[101] = {ScopedKey{0, KeyOf(1)}, 8192};  // exactly the limit: kept
  preloaded[102] = {ScopedKey{0, KeyOf(2)}, 8193};
  TwoTierStore s =
      MakeStore(&clock, {.mover_threads = 0, .max_object_bytes = 8192}, 64 << 20, preloaded);
  const std::vector<BlockKey> keys = {KeyOf(0), KeyOf(1), KeyOf(2)};
  const LookupResult r = s.store->Lookup(0, keys);
  EXPECT_EQ(r.leading_hits, 2u);
  EXPECT_FALSE(r.tiers[2].has_value());
  EXPECT_EQ(s.nvme->erased, std::vector<TierSlot>{102});
}

TEST(BlockStoreTiers, MoversKeepTheHostTierUnderItsWatermarks) {
  ManualClock clock;
  TwoTierStore s =
      MakeStore(&clock, {.high_watermark = 0.6, .low_watermark = 0.4, .mover_threads = 1});
  PutRange(*s.store, 0, 9);
  s.store->WaitForMovers();
  EXPECT_LE(CounterOf(*s.store, "host.reserved_bytes"), 0.6 * (1 << 20));
  EXPECT_GT(s.nvme->blocks(), 0u);
  std::vector<BlockKey> keys;
  for (int i = 0; i < 9; ++i) keys.push_back(KeyOf(i));
  EXPECT_EQ(s.store->Lookup(0, keys, {.touch = false}).leading_hits, 9u);
}

// A parent hint naming a block in a colder tier never makes that block a victim of the host tier:
// with every host block leased, the child is refused and the parent stays where it is.
TEST(BlockStoreTiers, AParentInTheColderTierIsNotEvictedToMakeRoomForItsChild) {
  ManualClock clock;
  StoreTiers tiers;
  tiers.host = std::move(*HostTier::Create({.capacity_bytes = 1 << 20, .huge_pages = false}));
  auto nvme = std::make_unique<FakeTier>(TierKind::kNvme, 64 << 20);
  FakeTier* cold = nvme.get();
  tiers.nvme = std::move(nvme);
  auto store = std::move(*BlockStore::Create(
      {.policy = "prefix", .mover_threads = 0, .clock = &clock}, std::move(tiers)));
  const BlockKey parent = KeyOf(100);
  ASSERT_TRUE(store->Put(0, parent, ObjectFor(parent, kPayload)).ok());
  PutRange(*store, 0, 9);  // the host tier holds 9: the parent went to nvme
  const LookupResult where = store->Lookup(0, std::span(&parent, 1), {.touch = false});
  ASSERT_EQ(where.leading_hits, 1u);
  ASSERT_EQ(where.tiers[0], TierKind::kNvme);
  std::vector<BlockKey> hosted;
  for (int i = 0; i < 9; ++i) {
    const BlockKey k = KeyOf(i);
    if (store->Lookup(0, std::span(&k, 1), {.touch = false}).tiers[0] == TierKind::kHost) {
      hosted.push_back(k);
    }
  }
  ASSERT_FALSE(hosted.empty());
  LookupResult leased =
      store->Lookup(0, hosted, {.lease_ttl = std::chrono::minutes(1), .touch = false});
  ASSERT_EQ(leased.leading_hits, hosted.size());

  const BlockKey child = KeyOf(101);
  auto reserved = store->Reserve(0, child, static_cast<uint32_t>(ObjectFor(child, kPayload).size()),
                                 {.parent = parent});
  EXPECT_EQ(reserved.status().code(), StatusCode::kResourceExhausted)
      << reserved.status().ToString();
  const LookupResult after = store->Lookup(0, std::span(&parent, 1), {.touch = false});
  EXPECT_EQ(after.leading_hits, 1u) << "the parent was dropped to make room for its child";
  EXPECT_EQ(cold->blocks(), 1u);
  // Positive control: once the lease is released, the child stores (a host block goes to nvme).
  ASSERT_TRUE(store->ReleaseLease(leased.lease).ok());
  EXPECT_TRUE(store->Put(0, child, ObjectFor(child, kPayload), {.parent = parent}).ok());
  EXPECT_EQ(store->Lookup(0, std::span(&parent, 1), {.touch = false}).leading_hits, 1u);
}

// A mover that found every block leased stops trying until a pin or lease goes away. An expired
// lease is such a going-away, with no write after it to wake the mover.
TEST(BlockStoreTiers, AnExpiredLeaseLetsAStalledMoverDemoteWithoutAnotherWrite) {
  ManualClock clock;
  TwoTierStore s =
      MakeStore(&clock, {.high_watermark = 0.6, .low_watermark = 0.4, .mover_threads = 1});
  PutRange(*s.store, 0, 6);  // 0.57 of the host tier: under the high watermark
  std::vector<BlockKey> leased;
  for (int i = 0; i < 6; ++i) leased.push_back(KeyOf(i));
  ASSERT_NE(s.store->Lookup(0, leased, {.lease_ttl = std::chrono::seconds(5)}).lease, 0u);
  // Two more blocks go over it: the mover demotes the committed one and then stalls, since the
  // rest is leased or still being written.
  auto held =
      s.store->Reserve(0, KeyOf(7), static_cast<uint32_t>(ObjectFor(KeyOf(7), kPayload).size()));
  ASSERT_TRUE(held.ok() && held->has_value());
  PutRange(*s.store, 6, 7);
  s.store->WaitForMovers();
  const double high = 0.6 * (1 << 20), low = 0.4 * (1 << 20);
  ASSERT_GT(CounterOf(*s.store, "host.reserved_bytes"), high) << "the mover stalled above it";
  EXPECT_EQ(s.store->Lookup(0, leased, {.touch = false}).tiers[0], TierKind::kHost);

  clock.Advance(std::chrono::seconds(6));
  const BlockKey probe = KeyOf(100);
  EXPECT_EQ(s.store->Lookup(0, std::span(&probe, 1)).leading_hits, 0u);  // expires the lease
  s.store->WaitForMovers();
  EXPECT_EQ(CounterOf(*s.store, "leases_expired_total"), 1);
  EXPECT_LE(CounterOf(*s.store, "host.reserved_bytes"), low) << "demoted down to the low mark";
  LookupResult after = s.store->Lookup(0, leased, {.touch = false});
  EXPECT_EQ(after.leading_hits, 6u) << "demoted, not dropped";
  // Getting from about 0.67 of the tier to 0.4 took at least three of the formerly leased
  // blocks (which three is the policy's choice: it spares the one it saw last, and its order
  // among the rest is not this test's subject).
  const auto demoted =
      std::count(after.tiers.begin(), after.tiers.end(), std::optional<TierKind>(TierKind::kNvme));
  EXPECT_GE(demoted, 3) << "the formerly leased blocks stayed in host";
}

// A block promoted out of a tier was not evicted from it: when it is demoted back, that tier's
// policy takes it for a new block, not for one it was wrong to evict (a ghost hit that made it
// "frequent" and moved the policy's recency target). Here the nvme tier's prefix policy: the
// promoted block, back in nvme before block 2, goes before block 2.
TEST(BlockStoreTiers, ABlockDemotedBackAfterItsPromotionIsNotTakenForAReusedOne) {
  ManualClock clock;
  const uint64_t object_bytes = ObjectFor(KeyOf(0), kPayload).size();
  TwoTierStore s = MakeStore(&clock, {.nvme_policy = "prefix", .mover_threads = 0},
                             /*nvme_capacity=*/object_bytes * 7 / 2);  // holds 3 blocks
  auto tier_of = [&](int i) {
    const BlockKey key = KeyOf(i);
    return s.store->Lookup(0, std::span(&key, 1), {.touch = false}).tiers[0];
  };
  PutRange(*s.store, 0, 10);  // host (LRU) holds 9: block 0 went to nvme
  ASSERT_EQ(tier_of(0), TierKind::kNvme);
  {
    auto pin = s.store->Pin(0, KeyOf(0));  // promoted to host; host's oldest, 1, to nvme
    ASSERT_TRUE(pin.ok() && pin->has_value());
    ASSERT_EQ((*pin)->tier(), TierKind::kHost);
  }
  ASSERT_EQ(tier_of(1), TierKind::kNvme);
  std::vector<BlockKey> others;
  for (int i = 2; i < 10; ++i) others.push_back(KeyOf(i));
  s.store->Lookup(0, others);  // block 0 is host's least recently used now
  PutRange(*s.store, 10, 11);
  ASSERT_EQ(tier_of(0), TierKind::kNvme) << "demoted back";
  PutRange(*s.store, 11, 14);  // blocks 2, 3, 4 follow it into nvme, which evicts twice
  EXPECT_EQ(tier_of(0), std::nullopt) << "block 0 outlived block 2, which came after it";
  EXPECT_EQ(tier_of(2), TierKind::kNvme);
  EXPECT_EQ(tier_of(1), std::nullopt);
  EXPECT_EQ(CounterOf(*s.store, "nvme.evictions_total"), 2);
}

// Likewise a deleted block written again is a new block to the policy, not a reused one.
TEST(BlockStoreTiers, ADeletedBlockWrittenAgainIsNotTakenForAReusedOne) {
  ManualClock clock;
  StoreTiers tiers;
  tiers.host = std::move(*HostTier::Create({.capacity_bytes = 1 << 20, .huge_pages = false}));
  auto store = std::move(*BlockStore::Create(
      {.policy = "prefix", .mover_threads = 0, .clock = &clock}, std::move(tiers)));
  const BlockKey again = KeyOf(0);
  PutRange(*store, 0, 1);
  ASSERT_TRUE(IsTrue(store->Delete(0, again)));
  PutRange(*store, 0, 9);   // block 0 again, then 1..8: the tier is full
  PutRange(*store, 9, 10);  // evicts the oldest block seen once: block 0
  EXPECT_EQ(store->Lookup(0, std::span(&again, 1), {.touch = false}).leading_hits, 0u);
  const BlockKey next = KeyOf(1);
  EXPECT_EQ(store->Lookup(0, std::span(&next, 1), {.touch = false}).leading_hits, 1u);
  EXPECT_EQ(CounterOf(*store, "host.evictions_total"), 1);
}

TEST(BlockStoreTiers, LookupHitsInTheColdTierArePromotedInTheBackground) {
  ManualClock clock;
  TwoTierStore s = MakeStore(&clock, {.mover_threads = 1});
  PutRange(*s.store, 0, 30);
  s.store->WaitForMovers();
  const BlockKey cold = KeyOf(0);
  ASSERT_EQ(s.store->Lookup(0, std::span(&cold, 1)).tiers[0], TierKind::kNvme);
  s.store->WaitForMovers();
  EXPECT_EQ(s.store->Lookup(0, std::span(&cold, 1), {.touch = false}).tiers[0], TierKind::kHost);
}

}  // namespace
}  // namespace kvault::storage
