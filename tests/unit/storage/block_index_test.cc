// The store's hash index: inserts, finds and erases stay consistent through growth, collisions
// and backward-shift deletion; its keyed hash spreads keys a client chose to collide.
#include "core/block_index.h"

#include <gtest/gtest.h>

#include <random>
#include <set>
#include <unordered_map>
#include <vector>

#include "kvault/common/little_endian.h"
#include "store_test_util.h"

namespace kvault::storage {
namespace {

// Keys alike in their first 16 bytes all hashed to one table slot before the hash was keyed (it
// read bytes 0-15 only): a tenant could make every lookup walk one long probe run. Keyed, 4096
// such keys spread over an 8192-slot table as random ones do (about 3,200 distinct slots).
TEST(BlockIndex, KeysAlikeInTheirFirstBytesSpreadOverTheTable) {
  std::set<uint64_t> slots;
  std::set<uint64_t> tenants_apart;
  for (uint32_t i = 0; i < 4096; ++i) {
    ScopedKey key;
    key.key.fill(0x5A);
    StoreLe32(key.key.data() + 28, i);
    slots.insert(HashScopedKey(key) & 8191);
    key.tenant = 1;
    tenants_apart.insert(HashScopedKey(key) & 8191);
  }
  EXPECT_GT(slots.size(), 2900u);
  EXPECT_GT(tenants_apart.size(), 2900u);
  // The index hashes with it; the same bytes under another tenant hash elsewhere.
  ScopedKey probe;
  probe.key.fill(3);
  EXPECT_EQ(BlockIndex::Hash(probe), HashScopedKey(probe));
  ScopedKey a, b;
  a.key.fill(1);
  b.key.fill(1);
  b.tenant = 2;
  EXPECT_NE(HashScopedKey(a), HashScopedKey(b));
}

// The store's tables hash a ScopedKey word by word (SipState); that must be SipHash-1-3 (checked
// against OpenSSL in siphash_test) of the 36 bytes scoped_key.h documents: the key, then the
// tenant little-endian.
TEST(BlockIndex, ScopedKeyHashIsSipHash13OfKeyThenTenant) {
  std::mt19937_64 random(11);
  for (int i = 0; i < 64; ++i) {
    ScopedKey k;
    for (uint8_t& b : k.key) b = static_cast<uint8_t>(random());
    k.tenant = static_cast<TenantId>(random());
    std::vector<uint8_t> bytes(k.key.begin(), k.key.end());
    bytes.resize(36);
    StoreLe32(bytes.data() + 32, k.tenant);
    EXPECT_EQ(HashScopedKey(k), SipHash13(ProcessSipKey(), bytes)) << i;
    EXPECT_EQ(BlockIndex::Hash(k), HashScopedKey(k)) << i;
  }
  // The batched form a chain lookup uses gives the same values.
  std::vector<BlockKey> chain(37);
  for (BlockKey& key : chain) {
    for (uint8_t& b : key) b = static_cast<uint8_t>(random());
  }
  std::vector<uint64_t> batched(chain.size());
  HashScopedKeys(9, chain, batched);
  for (size_t i = 0; i < chain.size(); ++i) {
    EXPECT_EQ(batched[i], HashScopedKey(ScopedKey{9, chain[i]})) << i;
  }
}

TEST(BlockIndex, MatchesAReferenceMapUnderRandomOperations) {
  BlockIndex index;
  std::unordered_map<ScopedKey, EntryId, ScopedKeyHash> reference;
  std::mt19937_64 rng(11);
  for (int step = 0; step < 200000; ++step) {
    // 2,500 keys under two tenants in a table that grows from small: probe runs and
    // backward-shift deletions (where collisions fall depends on this process's hash key).
    const uint64_t n = rng() % 5000;
    ScopedKey key{static_cast<TenantId>(n % 2), testing::KeyOf(n / 2)};
    auto it = reference.find(key);
    if (rng() % 3 == 0 && it != reference.end()) {
      index.Erase(it->second);
      reference.erase(it);
    } else if (it == reference.end()) {
      reference[key] = index.Insert(key);
    }
    if (step % 1000 == 0) {
      for (auto& [k, id] : reference) ASSERT_EQ(index.Find(k), id);
    }
  }
  EXPECT_EQ(index.size(), reference.size());
  for (auto& [k, id] : reference) {
    ASSERT_EQ(index.Find(k), id);
    EXPECT_EQ(index.at(id).key, k);
  }
  // Absent keys miss; the same key under another tenant is another block.
  EXPECT_EQ(index.Find({7, testing::KeyOf(1)}), kNoEntry);
}

TEST(BlockIndex, IdsAreReusedAfterErase) {
  BlockIndex index;
  const EntryId a = index.Insert({0, testing::KeyOf(1)});
  index.Erase(a);
  const EntryId b = index.Insert({0, testing::KeyOf(2)});
  EXPECT_EQ(a, b);
  EXPECT_EQ(index.Find({0, testing::KeyOf(1)}), kNoEntry);
  EXPECT_EQ(index.Find({0, testing::KeyOf(2)}), b);
  EXPECT_EQ(index.at(b).state, EntryState::kReserved);
}

}  // namespace
}  // namespace kvault::storage
