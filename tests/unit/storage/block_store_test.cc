// BlockStore on a host tier: two-phase writes, lookups, pins, deletes, tenants, the cap.
#include <gtest/gtest.h>

#include "kvault/storage/block_store.h"
#include "store_test_util.h"

namespace kvault::storage {
namespace {

using testing::CounterOf;
using testing::KeyOf;
using testing::ObjectFor;

std::unique_ptr<BlockStore> HostStore(uint64_t capacity, BlockStoreOptions options = {}) {
  options.policy = "lru";
  auto host = HostTier::Create({.capacity_bytes = capacity, .huge_pages = false});
  if (!host.ok()) return nullptr;
  StoreTiers tiers;
  tiers.host = std::move(*host);
  auto store = BlockStore::Create(options, std::move(tiers));
  return store.ok() ? std::move(*store) : nullptr;
}

TEST(BlockStore, PutLookupPinRoundTrip) {
  auto store = HostStore(8 << 20);
  ASSERT_NE(store, nullptr);
  std::vector<BlockKey> keys;
  for (int i = 0; i < 4; ++i) {
    keys.push_back(KeyOf(i));
    Result<bool> put = store->Put(0, keys.back(), ObjectFor(keys.back()));
    ASSERT_TRUE(put.ok()) << put.status().ToString();
    EXPECT_TRUE(*put);
  }
  keys.push_back(KeyOf(100));  // absent
  keys.push_back(KeyOf(2));    // present, but after a miss
  LookupResult r = store->Lookup(0, keys);
  EXPECT_EQ(r.leading_hits, 4u);
  ASSERT_EQ(r.tiers.size(), 6u);
  EXPECT_EQ(r.tiers[0], TierKind::kHost);
  EXPECT_FALSE(r.tiers[4].has_value());
  EXPECT_EQ(r.tiers[5], TierKind::kHost) << "per-key tier covers keys after the leading run";
  EXPECT_EQ(r.lease, 0u);

  Result<std::optional<BlockPin>> pin = store->Pin(0, keys[1]);
  ASSERT_TRUE(pin.ok());
  ASSERT_TRUE(pin->has_value());
  EXPECT_EQ((*pin)->tier(), TierKind::kHost);
  EXPECT_TRUE(IsSyntheticBlockFor(keys[1], (*pin)->bytes()));
  EXPECT_EQ(CounterOf(*store, "hit_blocks_total"), 4);
  EXPECT_EQ(CounterOf(*store, "miss_blocks_total"), 2);
}

// A block whose parent is evicted to make room for it takes the parent's freed id (ids are
// reused, last freed first). It must not become its own parent: the prefix policy then linked it
// after itself, and the next victim search walked that loop forever under the store's lock.
TEST(BlockStore, AChildThatTakesItsEvictedParentsIdIsNotItsOwnParent) {
  const BlockKey parent = KeyOf(1);
  const BlockKey child = KeyOf(2);
  const BlockKey grandchild = KeyOf(3);
  const uint64_t object_bytes = ObjectFor(parent).size();
  // Room for one block: the child's write evicts the parent (no colder tier: dropped).
  auto host =
      HostTier::Create({.capacity_bytes = HostTierClassBytes(object_bytes), .huge_pages = false});
  ASSERT_TRUE(host.ok());
  StoreTiers tiers;
  tiers.host = std::move(*host);
  BlockStoreOptions options;
  options.policy = "prefix";
  options.mover_threads = 0;  // a full tier: a mover would evict the child in the background
  auto created = BlockStore::Create(options, std::move(tiers));
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  BlockStore& store = **created;
  ASSERT_TRUE(store.Put(0, parent, ObjectFor(parent)).ok());
  Result<bool> put = store.Put(0, child, ObjectFor(child), WriteOptions{.parent = parent});
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  EXPECT_EQ(store.Lookup(0, std::span(&parent, 1)).leading_hits, 0u) << "evicted for the child";
  {
    // Touched (its policy entry placed again), then pinned: the next write finds no victim.
    Result<std::optional<BlockPin>> pin = store.Pin(0, child);
    ASSERT_TRUE(pin.ok() && pin->has_value());
    Result<bool> refused =
        store.Put(0, grandchild, ObjectFor(grandchild), WriteOptions{.parent = child});
    EXPECT_EQ(refused.status().code(), StatusCode::kResourceExhausted)
        << refused.status().ToString();
  }
  // Unpinned, the child is the victim, and the store serves on.
  put = store.Put(0, grandchild, ObjectFor(grandchild), WriteOptions{.parent = child});
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  EXPECT_EQ(store.Lookup(0, std::span(&grandchild, 1)).leading_hits, 1u);
  EXPECT_EQ(store.Lookup(0, std::span(&child, 1)).leading_hits, 0u);
}

TEST(BlockStore, SecondWriteOfAKeyIsANoOp) {
  auto store = HostStore(8 << 20);
  const BlockKey key = KeyOf(1);
  EXPECT_TRUE(*store->Put(0, key, ObjectFor(key)));
  Result<bool> again = store->Put(0, key, ObjectFor(key));
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(*again);
  // While a write is in progress, a second writer is told the block is on its way.
  const BlockKey other = KeyOf(2);
  auto first = store->Reserve(0, other, 8192);
  ASSERT_TRUE(first.ok() && first->has_value());
  auto second = store->Reserve(0, other, 8192);
  ASSERT_TRUE(second.ok());
  EXPECT_FALSE(second->has_value());
  EXPECT_EQ(store->Lookup(0, std::span(&other, 1)).leading_hits, 0u) << "reserved is invisible";
}

TEST(BlockStore, AbandonedAndAbortedReservationsFreeTheirSpace) {
  auto store = HostStore(1 << 20);
  const BlockKey key = KeyOf(9);
  const std::vector<uint8_t> object = ObjectFor(key, 200000);
  {
    auto r = store->Reserve(0, key, object.size());
    ASSERT_TRUE(r.ok() && r->has_value());
    EXPECT_GT(CounterOf(*store, "host.reserved_bytes"), 0);
  }  // dropped without Commit
  EXPECT_EQ(CounterOf(*store, "host.reserved_bytes"), 0);
  EXPECT_EQ(store->Lookup(0, std::span(&key, 1)).leading_hits, 0u);
  {
    auto r = store->Reserve(0, key, object.size());
    ASSERT_TRUE(r.ok() && r->has_value());
    (*r)->Abort();
    EXPECT_EQ(CounterOf(*store, "host.reserved_bytes"), 0);
  }
  EXPECT_EQ(CounterOf(*store, "aborted_reservations_total"), 2);
  // Positive control: the same key commits fine afterwards.
  auto r = store->Reserve(0, key, object.size());
  ASSERT_TRUE(r.ok() && r->has_value());
  std::copy(object.begin(), object.end(), (*r)->bytes().begin());
  ASSERT_TRUE((*r)->Commit().ok());
  EXPECT_EQ(store->Lookup(0, std::span(&key, 1)).leading_hits, 1u);
}

TEST(BlockStore, CommitRejectsObjectsThatAreNotTheReservedBlock) {
  auto store = HostStore(8 << 20);
  const BlockKey key = KeyOf(1);
  // An object sealed for another key.
  std::vector<uint8_t> foreign = ObjectFor(KeyOf(2));
  auto r = store->Reserve(0, key, foreign.size());
  ASSERT_TRUE(r.ok() && r->has_value());
  std::copy(foreign.begin(), foreign.end(), (*r)->bytes().begin());
  Status s = (*r)->Commit();
  EXPECT_EQ(s.code(), StatusCode::kCorruption) << s.ToString();
  // A damaged object.
  std::vector<uint8_t> damaged = ObjectFor(key);
  damaged[damaged.size() / 2] ^= 0x40;
  Result<bool> put = store->Put(0, key, damaged);
  EXPECT_EQ(put.status().code(), StatusCode::kCorruption);
  EXPECT_EQ(store->Lookup(0, std::span(&key, 1)).leading_hits, 0u);
  EXPECT_EQ(CounterOf(*store, "host.reserved_bytes"), 0) << "rejected writes free their space";
  EXPECT_EQ(CounterOf(*store, "rejected_corrupt_writes_total"), 2);
  // Positive control.
  EXPECT_TRUE(*store->Put(0, key, ObjectFor(key)));
  EXPECT_EQ(store->Lookup(0, std::span(&key, 1)).leading_hits, 1u);
}

TEST(BlockStore, TenantsNeverSeeEachOthersBlocks) {
  auto store = HostStore(8 << 20);
  const BlockKey key = KeyOf(5);
  ASSERT_TRUE(*store->Put(1, key, ObjectFor(key)));
  EXPECT_EQ(store->Lookup(2, std::span(&key, 1)).leading_hits, 0u);
  Result<std::optional<BlockPin>> foreign = store->Pin(2, key);
  ASSERT_TRUE(foreign.ok());
  EXPECT_FALSE(foreign->has_value());
  EXPECT_FALSE(*store->Delete(2, key));
  // Positive control: the owner still hits.
  EXPECT_EQ(store->Lookup(1, std::span(&key, 1)).leading_hits, 1u);
  EXPECT_TRUE(store->Pin(1, key)->has_value());
}

TEST(BlockStore, DeleteRefusesPinnedBlocksAndFreesOthers) {
  auto store = HostStore(8 << 20);
  const BlockKey key = KeyOf(3);
  EXPECT_FALSE(*store->Delete(0, key));
  ASSERT_TRUE(*store->Put(0, key, ObjectFor(key)));
  {
    auto pin = store->Pin(0, key);
    ASSERT_TRUE(pin.ok() && pin->has_value());
    Result<bool> d = store->Delete(0, key);
    EXPECT_EQ(d.status().code(), StatusCode::kUnavailable);
    EXPECT_TRUE(IsSyntheticBlockFor(key, (*pin)->bytes())) << "bytes intact while pinned";
  }
  EXPECT_TRUE(*store->Delete(0, key));
  EXPECT_EQ(store->Lookup(0, std::span(&key, 1)).leading_hits, 0u);
  EXPECT_EQ(CounterOf(*store, "host.used_bytes"), 0);
}

TEST(BlockStore, HostTierNeverHoldsMoreThanItsCap) {
  const uint64_t cap = 2 << 20;
  auto store = HostStore(cap);
  for (int i = 0; i < 200; ++i) {
    const BlockKey key = KeyOf(i);
    Result<bool> put = store->Put(0, key, ObjectFor(key, 50000 + 997 * (i % 50)));
    ASSERT_TRUE(put.ok()) << i << ": " << put.status().ToString();
    ASSERT_LE(CounterOf(*store, "host.reserved_bytes"), static_cast<double>(cap));
  }
  EXPECT_GT(CounterOf(*store, "host.evictions_total"), 100);
  // LRU keeps the newest block.
  const BlockKey newest = KeyOf(199);
  EXPECT_EQ(store->Lookup(0, std::span(&newest, 1)).leading_hits, 1u);
}

TEST(BlockStore, PinnedBlocksAreNeverEvictedAndAFullStoreSaysSoAtOnce) {
  auto store = HostStore(1 << 20);
  std::vector<BlockPin> pins;
  int stored = 0;
  for (int i = 0;; ++i) {
    const BlockKey key = KeyOf(i);
    Result<bool> put = store->Put(0, key, ObjectFor(key, 100000));
    if (!put.ok()) {
      EXPECT_EQ(put.status().code(), StatusCode::kResourceExhausted) << put.status().ToString();
      break;
    }
    ++stored;
    pins.push_back(std::move(**store->Pin(0, key)));
    ASSERT_LT(i, 100) << "the store never reported that it is full";
  }
  EXPECT_GT(stored, 5);
  for (int i = 0; i < stored; ++i) EXPECT_TRUE(IsSyntheticBlockFor(KeyOf(i), pins[i].bytes()));
  EXPECT_EQ(CounterOf(*store, "rejected_no_space_total"), 1);
  // Unpinning one makes room again (positive control).
  pins.erase(pins.begin());
  const BlockKey next = KeyOf(1000);
  EXPECT_TRUE(store->Put(0, next, ObjectFor(next, 100000)).ok());
  EXPECT_EQ(store->Lookup(0, std::span(&next, 1)).leading_hits, 1u);
}

TEST(BlockStore, BadArgumentsAreRejectedClearly) {
  auto store = HostStore(1 << 20);
  auto zero = store->Reserve(0, KeyOf(1), 0);
  EXPECT_EQ(zero.status().code(), StatusCode::kInvalidArgument);
  auto huge = store->Reserve(0, KeyOf(1), 1u << 30);
  EXPECT_EQ(huge.status().code(), StatusCode::kInvalidArgument);

  StoreTiers none;
  EXPECT_EQ(BlockStore::Create({}, std::move(none)).status().code(),
            StatusCode::kInvalidArgument);
  for (auto [low, high] : {std::pair{0.9, 0.8}, std::pair{0.0, 0.5}, std::pair{0.5, 1.5}}) {
    StoreTiers tiers;
    tiers.host = std::move(*HostTier::Create({.capacity_bytes = 1 << 20}));
    BlockStoreOptions options;
    options.low_watermark = low;
    options.high_watermark = high;
    EXPECT_EQ(BlockStore::Create(options, std::move(tiers)).status().code(),
              StatusCode::kInvalidArgument);
  }
  StoreTiers tiers;
  tiers.host = std::move(*HostTier::Create({.capacity_bytes = 1 << 20}));
  BlockStoreOptions options;
  options.policy = "no-such-policy";
  Result<std::unique_ptr<BlockStore>> bad = BlockStore::Create(options, std::move(tiers));
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("lru"), std::string::npos) << bad.status().ToString();
}

}  // namespace
}  // namespace kvault::storage
