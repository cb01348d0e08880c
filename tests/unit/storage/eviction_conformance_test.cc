// Every built-in policy against the EvictionPolicy contract, under random store-like traffic:
// victims are resident and evictable, nullopt only when nothing is, refused entries are never lost,
// and ids are reused after OnRemove and OnLeave.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "kvault/storage/eviction_policy.h"

namespace kvault::storage {
namespace {

// Key hashes as the store makes them: well mixed (the ghost lists fingerprint the high bits).
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

class EvictionConformanceTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    Result<std::unique_ptr<EvictionPolicy>> p = MakeEvictionPolicy(GetParam());
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    policy_ = std::move(*p);
  }

  EntryId NewId() {
    if (!free_.empty()) {
      EntryId id = free_.back();
      free_.pop_back();
      return id;
    }
    return next_id_++;
  }

  void Insert(EntryId parent, uint64_t key_hash) {
    const EntryId id = NewId();
    policy_->OnInsert(id, parent, key_hash);
    resident_.insert(id);
    key_of_[id] = key_hash;
    resident_keys_.insert(key_hash);
    last_ = id;
  }

  // `evicted`: OnRemove (the tier made room), else OnLeave (deleted, promoted, lost).
  void Remove(EntryId id, bool evicted = true) {
    ASSERT_EQ(resident_.count(id), 1u) << GetParam() << ": " << id << " is not resident";
    if (evicted) {
      policy_->OnRemove(id);
    } else {
      policy_->OnLeave(id);
    }
    resident_.erase(id);
    resident_keys_.erase(key_of_[id]);
    evicted_keys_.push_back(key_of_[id]);
    pinned_.erase(id);
    free_.push_back(id);
    if (last_ == id) last_ = kNoEntry;
  }

  // Asks for a victim with `pinned_` refused and checks the answer against the model.
  std::optional<EntryId> CheckedVictim() {
    std::optional<EntryId> v =
        policy_->PickVictim([this](EntryId id) { return pinned_.count(id) == 0; });
    size_t evictable = 0;
    for (EntryId id : resident_) evictable += pinned_.count(id) == 0;
    if (!v) {
      EXPECT_EQ(evictable, 0u) << GetParam() << " gave no victim with evictable entries left";
    } else {
      EXPECT_EQ(resident_.count(*v), 1u) << GetParam() << " picked non-resident " << *v;
      EXPECT_EQ(pinned_.count(*v), 0u) << GetParam() << " picked pinned " << *v;
    }
    return v;
  }

  EntryId RandomResident(std::mt19937_64& rng) {
    auto it = resident_.begin();
    std::advance(it, rng() % resident_.size());
    return *it;
  }

  std::unique_ptr<EvictionPolicy> policy_;
  std::set<EntryId> resident_, pinned_;
  std::map<EntryId, uint64_t> key_of_;
  std::set<uint64_t> resident_keys_;
  std::vector<uint64_t> evicted_keys_;
  std::vector<EntryId> free_;
  EntryId next_id_ = 0;
  EntryId last_ = kNoEntry;
};

TEST_P(EvictionConformanceTest, RandomTrafficKeepsTheContract) {
  std::mt19937_64 rng(12345);
  constexpr size_t kCapacity = 64;
  uint64_t next_key = 1;
  for (int step = 0; step < 30000 && !HasFailure(); ++step) {
    const unsigned op = rng() % 100;
    if (op < 45) {
      // A new block: continues the last chain, hangs off a random resident block, or starts one.
      // Sometimes it is a block that was evicted before (same key hash).
      EntryId parent = kNoEntry;
      if (!resident_.empty()) {
        const unsigned how = rng() % 3;
        if (how == 0 && last_ != kNoEntry) parent = last_;
        if (how == 1) parent = RandomResident(rng);
      }
      uint64_t key = Mix(next_key++);
      if (!evicted_keys_.empty() && rng() % 4 == 0) {
        const uint64_t again = evicted_keys_[rng() % evicted_keys_.size()];
        if (resident_keys_.count(again) == 0) key = again;
      }
      if (resident_.size() >= kCapacity) {
        (void)policy_->Admit(key, parent);  // advisory; the model always admits
        std::optional<EntryId> v = CheckedVictim();
        if (!v) continue;  // everything pinned: the store would refuse the write
        Remove(*v);
        if (parent == *v) parent = kNoEntry;
      }
      Insert(parent, key);
    } else if (op < 85) {
      if (!resident_.empty()) {
        const EntryId id = RandomResident(rng);
        policy_->OnAccess(id);
        last_ = id;
      }
    } else if (op < 92) {
      // A demotion, or a delete or promotion (which may come back too).
      if (!resident_.empty()) Remove(RandomResident(rng), /*evicted=*/rng() % 2 == 0);
    } else if (op < 97) {
      if (!resident_.empty()) pinned_.insert(RandomResident(rng));  // pin or lease
    } else if (!pinned_.empty()) {
      pinned_.erase(pinned_.begin());
    }
  }
  // Everything pinned stays tracked: once released, draining evicts every resident entry once.
  pinned_.clear();
  const size_t resident = resident_.size();
  for (size_t i = 0; i < resident && !HasFailure(); ++i) {
    std::optional<EntryId> v = CheckedVictim();
    ASSERT_TRUE(v.has_value()) << GetParam();
    Remove(*v);
  }
  EXPECT_TRUE(resident_.empty());
  EXPECT_EQ(CheckedVictim(), std::nullopt);
}

TEST_P(EvictionConformanceTest, AllPinnedGivesNulloptAndLosesNothing) {
  for (EntryId id = 0; id < 10; ++id) Insert(id == 0 ? kNoEntry : id - 1, Mix(1000 + id));
  for (EntryId id = 0; id < 10; ++id) pinned_.insert(id);
  EXPECT_EQ(CheckedVictim(), std::nullopt);
  pinned_.erase(4);
  EXPECT_EQ(CheckedVictim(), 4u);
  pinned_.clear();
  for (int i = 0; i < 10; ++i) {
    std::optional<EntryId> v = CheckedVictim();
    ASSERT_TRUE(v.has_value());
    Remove(*v);
  }
  EXPECT_EQ(CheckedVictim(), std::nullopt);
}

INSTANTIATE_TEST_SUITE_P(AllPolicies, EvictionConformanceTest,
                         ::testing::ValuesIn(EvictionPolicyNames()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

}  // namespace
}  // namespace kvault::storage
