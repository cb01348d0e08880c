// Parent hints through the Service: a Store entry's `parent` reaches the store's prefix-aware
// policy, so a full host tier gives up chains from their tails and what stays is a prefix that
// still hits. Without hints the same writes orphan blocks (a chain loses its head and keeps a
// tail no lookup can reach), which is what the test tells apart.

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "service_test_fixture.h"

namespace kvault::server::service_test {
namespace {

constexpr size_t kChains = 4;
constexpr size_t kBlocksPerChain = 8;
constexpr size_t kCapacityBlocks = 28;  // 32 blocks written: 4 must go
constexpr uint64_t kPayload = 8192;

BlockKey ChainKey(size_t chain, size_t block) {
  BlockKey k{};
  k.fill(0xC4);
  k[0] = static_cast<uint8_t>(chain + 1);
  k[1] = static_cast<uint8_t>(block);
  return k;
}

class ServiceChainTest : public ServiceTest {
 protected:
  void SetUp() override {
    storage::BlockStoreOptions options;
    options.policy = "prefix";
    options.mover_threads = 0;  // room is made at Reserve only: exactly 4 evictions
    Build(options, kCapacityBlocks * storage::HostTierClassBytes(SyntheticObjectBytes(kPayload)));
  }

  // Stores each chain in one Store request, block 0 first; with `parents`, each entry names the
  // block before it.
  void StoreChains(Session& s, bool parents) {
    for (size_t chain = 0; chain < kChains; ++chain) {
      std::vector<std::vector<uint8_t>> objects;
      transport::Store store;
      store.remote_key = {9};
      for (size_t b = 0; b < kBlocksPerChain; ++b) {
        objects.push_back(*MakeSyntheticBlock(ChainKey(chain, b), kPayload));
        transport::StoreEntry e{ChainKey(chain, b), reinterpret_cast<uint64_t>(objects[b].data()),
                                objects[b].size()};
        if (parents && b > 0) e.parent = ChainKey(chain, b - 1);
        store.entries.push_back(e);
      }
      const Message m = service_->Handle(s, store);
      const auto* reply = std::get_if<transport::StoreReply>(&m);
      ASSERT_NE(reply, nullptr);
      for (WireStatus st : reply->statuses) ASSERT_EQ(st, WireStatus::kOk);
    }
  }

  // present[chain][block]: probed one key at a time, without touching.
  std::vector<std::vector<bool>> Present(const std::string& tenant) {
    const storage::TenantId id = tenants_->Find(tenant)->id;
    storage::LookupOptions probe;
    probe.touch = false;
    std::vector<std::vector<bool>> out(kChains, std::vector<bool>(kBlocksPerChain));
    for (size_t chain = 0; chain < kChains; ++chain) {
      for (size_t b = 0; b < kBlocksPerChain; ++b) {
        const BlockKey k = ChainKey(chain, b);
        out[chain][b] = store_->Lookup(id, std::span(&k, 1), probe).leading_hits == 1;
      }
    }
    return out;
  }

  static size_t Resident(const std::vector<std::vector<bool>>& present) {
    size_t n = 0;
    for (const auto& chain : present)
      n += static_cast<size_t>(std::count(chain.begin(), chain.end(), true));
    return n;
  }

  // Resident blocks whose predecessor in the chain is gone: bytes no prefix lookup can reach.
  static size_t Orphans(const std::vector<std::vector<bool>>& present) {
    size_t n = 0;
    for (const auto& chain : present) {
      for (size_t b = 1; b < chain.size(); ++b) n += chain[b] && !chain[b - 1] ? 1 : 0;
    }
    return n;
  }

  // Leading hits of each chain, as a client's LookupPrefix sees them.
  size_t LeadingHits(Session& s) {
    size_t hits = 0;
    for (size_t chain = 0; chain < kChains; ++chain) {
      std::vector<BlockKey> keys;
      for (size_t b = 0; b < kBlocksPerChain; ++b) keys.push_back(ChainKey(chain, b));
      hits += LookupKeys(s, keys, false).leading_hits;
    }
    return hits;
  }
};

TEST_F(ServiceChainTest, ParentHintsMakeAFullTierGiveUpChainsFromTheirTails) {
  auto s = LoggedIn("team-a", "token-a");
  ASSERT_NO_FATAL_FAILURE(StoreChains(*s, /*parents=*/true));
  const auto present = Present("team-a");
  ASSERT_EQ(Resident(present), kCapacityBlocks);
  EXPECT_EQ(Orphans(present), 0u);
  // Every resident block is part of a prefix that hits.
  EXPECT_EQ(LeadingHits(*s), kCapacityBlocks);
  for (size_t chain = 0; chain < kChains; ++chain) EXPECT_TRUE(present[chain][0]) << chain;
}

// The contrast: the same writes without hints lose chain 0's head first, and its rest is
// resident but unreachable.
TEST_F(ServiceChainTest, WithoutParentHintsTheOldestChainLosesItsHead) {
  auto s = LoggedIn("team-a", "token-a");
  ASSERT_NO_FATAL_FAILURE(StoreChains(*s, /*parents=*/false));
  const auto present = Present("team-a");
  ASSERT_EQ(Resident(present), kCapacityBlocks);
  EXPECT_FALSE(present[0][0]);
  EXPECT_GT(Orphans(present), 0u);
  EXPECT_LT(LeadingHits(*s), kCapacityBlocks);
}

// A hint is only a hint: a parent the tenant does not hold, another tenant's key, or the entry's
// own key changes nothing about what is stored.
TEST_F(ServiceChainTest, AnyParentValueIsAcceptedAndStoresTheBlock) {
  auto a = LoggedIn("team-a", "token-a");
  auto b = LoggedIn("team-b", "token-b");
  ASSERT_EQ(StoreKeys(*b, {Key(1)}), std::vector<WireStatus>{WireStatus::kOk});
  std::vector<std::vector<uint8_t>> objects;
  transport::Store store;
  store.remote_key = {9};
  const std::vector<std::pair<BlockKey, BlockKey>> key_and_parent = {
      {Key(2), Key(99)},  // never stored
      {Key(3), Key(1)},   // team-b's block
      {Key(4), Key(4)},   // itself
  };
  for (const auto& [key, parent] : key_and_parent) {
    objects.push_back(*MakeSyntheticBlock(key, kPayload));
    store.entries.push_back(
        {key, reinterpret_cast<uint64_t>(objects.back().data()), objects.back().size(), parent});
  }
  const Message m = service_->Handle(*a, store);
  const auto* reply = std::get_if<transport::StoreReply>(&m);
  ASSERT_NE(reply, nullptr);
  EXPECT_EQ(reply->statuses, std::vector<WireStatus>(3, WireStatus::kOk));
  for (const auto& [key, parent] : key_and_parent) {
    EXPECT_EQ(LookupKeys(*a, {key}, false).leading_hits, 1u);
  }
  // team-b's block is still only team-b's.
  EXPECT_EQ(LookupKeys(*a, {Key(1)}, false).leading_hits, 0u);
  EXPECT_EQ(LookupKeys(*b, {Key(1)}, false).leading_hits, 1u);
}

}  // namespace
}  // namespace kvault::server::service_test
