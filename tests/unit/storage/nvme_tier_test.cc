// The nvme tier against a real RocksDB database in a temporary directory: round trips, tenant
// scoping, the capacity cap and recovery after reopening. Corruption is nvme_corruption_test.cc;
// crashes and a full disk are tests/integration/nvme_*_test.cc.

#include "kvault/storage/nvme_tier.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <vector>

#include "nvme_test_util.h"

namespace kvault::storage {
namespace {

using testing::CounterOf;
using testing::ObjectFor;
using testing::TempDir;
using testing::TestKey;

NvmeTierOptions SmallOptions(const std::string& dir, NvmeValueLayout layout) {
  NvmeTierOptions options = testing::SmallTierOptions(dir);
  options.value_layout = layout;
  return options;
}

std::unique_ptr<NvmeTier> OpenOrDie(const NvmeTierOptions& options) {
  Result<std::unique_ptr<NvmeTier>> tier = NvmeTier::Open(options);
  if (!tier.ok() && tier.status().code() == StatusCode::kUnsupported) return nullptr;
  EXPECT_TRUE(tier.ok()) << tier.status().ToString();
  return tier.ok() ? std::move(tier).value() : nullptr;
}

// Reads `key` and returns the status; on success `out` holds the object.
Status ReadBack(NvmeTier& tier, const ScopedKey& key, uint32_t bytes, std::vector<uint8_t>& out) {
  out.assign(bytes, 0);
  return tier.Read(key, 0, bytes, out);
}

class NvmeTierTest : public ::testing::TestWithParam<NvmeValueLayout> {
 protected:
  void SetUp() override {
    tier_ = OpenOrDie(SmallOptions(dir_.path(), GetParam()));
    if (tier_ == nullptr) GTEST_SKIP() << "this build has no RocksDB";
  }
  void Reopen() {
    tier_.reset();
    tier_ = OpenOrDie(SmallOptions(dir_.path(), GetParam()));
    ASSERT_NE(tier_, nullptr);
  }

  TempDir dir_;
  std::unique_ptr<NvmeTier> tier_;
};

TEST_P(NvmeTierTest, PutReadEraseRoundTrip) {
  std::vector<ScopedKey> keys;
  uint64_t total = 0;
  for (int i = 0; i < 6; ++i) {
    keys.push_back(TestKey(7, 1, i));
    std::vector<uint8_t> object = ObjectFor(keys.back(), 1, 4);
    total += object.size();
    ASSERT_TRUE(tier_->Put(keys.back(), object).ok());
  }
  EXPECT_EQ(tier_->Usage().used_bytes, total);
  EXPECT_EQ(tier_->Usage().blocks, 6u);
  std::vector<uint8_t> out;
  for (const ScopedKey& key : keys) {
    std::vector<uint8_t> expected = ObjectFor(key, 1, 4);
    ASSERT_TRUE(ReadBack(*tier_, key, expected.size(), out).ok());
    EXPECT_EQ(out, expected);
  }

  const std::vector<uint8_t> erased = ObjectFor(keys[2], 1, 4);
  tier_->Erase(keys[2], 0, erased.size());
  EXPECT_EQ(ReadBack(*tier_, keys[2], erased.size(), out).code(), StatusCode::kNotFound);
  EXPECT_TRUE(ReadBack(*tier_, keys[3], ObjectFor(keys[3], 1, 4).size(), out).ok());
  EXPECT_EQ(tier_->Usage().used_bytes, total - erased.size());
  EXPECT_EQ(tier_->Usage().blocks, 5u);
  tier_->Erase(keys[2], 0, erased.size());  // erasing what is gone changes nothing
  EXPECT_EQ(tier_->Usage().used_bytes, total - erased.size());
  EXPECT_EQ(CounterOf(*tier_, "puts_total"), 6);
  EXPECT_EQ(CounterOf(*tier_, "checksum_failures_total"), 0);
}

TEST_P(NvmeTierTest, SameKeyUnderAnotherTenantIsAnotherBlock) {
  const ScopedKey mine = TestKey(1, 2, 3);
  ScopedKey theirs = mine;
  theirs.tenant = 2;
  const std::vector<uint8_t> object = ObjectFor(mine);
  ASSERT_TRUE(tier_->Put(mine, object).ok());
  std::vector<uint8_t> out;
  EXPECT_EQ(ReadBack(*tier_, theirs, object.size(), out).code(), StatusCode::kNotFound);
  ASSERT_TRUE(ReadBack(*tier_, mine, object.size(), out).ok());
  EXPECT_EQ(out, object);
  tier_->Erase(theirs, 0, object.size());
  EXPECT_TRUE(ReadBack(*tier_, mine, object.size(), out).ok());
}

TEST_P(NvmeTierTest, ReplacingABlockCountsOnlyItsNewSize) {
  const ScopedKey key = TestKey(0, 3, 0);
  const std::vector<uint8_t> object = ObjectFor(key);
  ASSERT_TRUE(tier_->Put(key, object).ok());
  ASSERT_TRUE(tier_->Put(key, object).ok());
  EXPECT_EQ(tier_->Usage().used_bytes, object.size());
  EXPECT_EQ(tier_->Usage().blocks, 1u);
}

TEST_P(NvmeTierTest, ReadWithWrongBufferSizeIsInvalidArgument) {
  const ScopedKey key = TestKey(0, 4, 0);
  const std::vector<uint8_t> object = ObjectFor(key);
  ASSERT_TRUE(tier_->Put(key, object).ok());
  std::vector<uint8_t> out(object.size() - 1);
  EXPECT_EQ(tier_->Read(key, 0, object.size(), out).code(), StatusCode::kInvalidArgument);
  // A caller whose size disagrees with the stored object gets an error, and the block stays.
  EXPECT_EQ(tier_->Read(key, 0, out.size(), out).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(ReadBack(*tier_, key, object.size(), out).ok());
  EXPECT_EQ(CounterOf(*tier_, "checksum_failures_total"), 0);
}

TEST_P(NvmeTierTest, RecoveryAfterReopenListsExactlyWhatWasStored) {
  std::map<std::vector<uint8_t>, uint32_t> expected;  // key bytes with tenant -> size
  auto id = [](const ScopedKey& key) {
    std::vector<uint8_t> id(key.key.begin(), key.key.end());
    id.push_back(static_cast<uint8_t>(key.tenant));
    return id;
  };
  for (int i = 0; i < 20; ++i) {
    const ScopedKey key = TestKey(i % 3, 5, i);
    const std::vector<uint8_t> object = ObjectFor(key, 1, 3);
    ASSERT_TRUE(tier_->Put(key, object).ok());
    expected[id(key)] = static_cast<uint32_t>(object.size());
  }
  for (int i = 0; i < 20; i += 4) {
    const ScopedKey key = TestKey(i % 3, 5, i);
    tier_->Erase(key, 0, expected[id(key)]);
    expected.erase(id(key));
  }
  const uint64_t used = tier_->Usage().used_bytes;
  Reopen();
  EXPECT_EQ(tier_->Usage().used_bytes, used);  // rebuilt at open, before Recover

  std::map<std::vector<uint8_t>, uint32_t> found;
  std::vector<ScopedKey> found_keys;
  ASSERT_TRUE(tier_
                  ->Recover([&](const ScopedKey& key, TierSlot slot, uint32_t bytes) {
                    EXPECT_EQ(slot, 0u);
                    found[id(key)] = bytes;
                    found_keys.push_back(key);
                  })
                  .ok());
  EXPECT_EQ(found, expected);
  EXPECT_EQ(tier_->Usage().used_bytes, used);
  EXPECT_EQ(tier_->Usage().blocks, expected.size());
  std::vector<uint8_t> out;
  for (const ScopedKey& key : found_keys) {
    ASSERT_TRUE(ReadBack(*tier_, key, found[id(key)], out).ok());
    EXPECT_EQ(out, ObjectFor(key, 1, 3));
  }
}

TEST_P(NvmeTierTest, CountersAndGaugesAreReported) {
  const ScopedKey key = TestKey(0, 6, 0);
  ASSERT_TRUE(tier_->Put(key, ObjectFor(key)).ok());
  testing::CounterMap map;
  tier_->VisitCounters(map);
  for (const char* name :
       {"puts_total", "reads_total", "erases_total", "checksum_failures_total",
        "writes_rejected_capacity_total", "writes_rejected_disk_full_total",
        "disk_full_events_total", "disk_full_recoveries_total", "write_errors_total",
        "read_errors_total", "used_bytes", "capacity_bytes", "blocks", "disk_full"}) {
    EXPECT_EQ(map.values.count(std::string("nvme/") + name), 1u) << name;
  }
  EXPECT_EQ(map.values["nvme/blocks"], 1);
  EXPECT_EQ(map.values["nvme/capacity_bytes"], 64 << 20);
  EXPECT_EQ(map.values["nvme/disk_full"], 0);
}

INSTANTIATE_TEST_SUITE_P(Layouts, NvmeTierTest,
                         ::testing::Values(NvmeValueLayout::kBlobFiles, NvmeValueLayout::kInline),
                         testing::LayoutName);

TEST(NvmeTierCapacityTest, PutPastTheCapIsResourceExhaustedAndStoresNothing) {
  TempDir dir;
  const ScopedKey a = TestKey(0, 8, 0), b = TestKey(0, 8, 1), c = TestKey(0, 8, 2);
  const std::vector<uint8_t> object_a = ObjectFor(a, 2, 2), object_b = ObjectFor(b, 2, 2),
                             object_c = ObjectFor(c, 2, 2);
  NvmeTierOptions options = SmallOptions(dir.path(), NvmeValueLayout::kBlobFiles);
  options.capacity_bytes = object_a.size() * 5 / 2;  // room for two blocks of this size
  std::unique_ptr<NvmeTier> tier = OpenOrDie(options);
  if (tier == nullptr) GTEST_SKIP() << "this build has no RocksDB";

  ASSERT_TRUE(tier->Put(a, object_a).ok());
  ASSERT_TRUE(tier->Put(b, object_b).ok());
  Result<TierSlot> refused = tier->Put(c, object_c);
  EXPECT_EQ(refused.status().code(), StatusCode::kResourceExhausted) << refused.status().ToString();
  EXPECT_EQ(tier->Usage().used_bytes, object_a.size() + object_b.size());
  EXPECT_EQ(tier->Usage().blocks, 2u);
  EXPECT_EQ(CounterOf(*tier, "writes_rejected_capacity_total"), 1);
  EXPECT_EQ(CounterOf(*tier, "writes_rejected_disk_full_total"), 0);
  EXPECT_FALSE(tier->disk_full());
  std::vector<uint8_t> out;
  EXPECT_EQ(ReadBack(*tier, c, object_c.size(), out).code(), StatusCode::kNotFound);
  EXPECT_TRUE(ReadBack(*tier, a, object_a.size(), out).ok());

  // Room made by an erasure is usable at once.
  tier->Erase(a, 0, object_a.size());
  ASSERT_TRUE(tier->Put(c, object_c).ok());
  ASSERT_TRUE(ReadBack(*tier, c, object_c.size(), out).ok());
  EXPECT_EQ(out, object_c);
}

TEST(NvmeTierOpenTest, RejectsMissingDirectoryAndZeroCapacity) {
  NvmeTierOptions options;
  options.capacity_bytes = 1 << 20;
  Result<std::unique_ptr<NvmeTier>> tier = NvmeTier::Open(options);
  if (tier.status().code() == StatusCode::kUnsupported) GTEST_SKIP() << "no RocksDB";
  EXPECT_EQ(tier.status().code(), StatusCode::kInvalidArgument);
  TempDir dir;
  options.directory = dir.path();
  options.capacity_bytes = 0;
  EXPECT_EQ(NvmeTier::Open(options).status().code(), StatusCode::kInvalidArgument);
  options.capacity_bytes = 1 << 20;
  EXPECT_TRUE(NvmeTier::Open(options).ok());  // positive control
}

// Direct and buffered I/O, for reads and for the files flushes write, in every combination: the
// blocks written (several memtables' worth, so flushes run) read back after a reopen.
TEST(NvmeTierIoModeTest, EveryCombinationOfDirectAndBufferedIoReadsBackAfterReopen) {
  for (const bool direct_reads : {true, false}) {
    for (const bool direct_writes : {true, false}) {
      SCOPED_TRACE(std::string("reads ") + (direct_reads ? "direct" : "buffered") + ", writes " +
                   (direct_writes ? "direct" : "buffered"));
      TempDir dir;
      NvmeTierOptions options = SmallOptions(dir.path(), NvmeValueLayout::kBlobFiles);
      options.use_direct_reads = direct_reads;
      options.use_direct_writes = direct_writes;
      std::unique_ptr<NvmeTier> tier = OpenOrDie(options);
      if (tier == nullptr) GTEST_SKIP() << "this build has no RocksDB";
      std::vector<ScopedKey> keys;
      for (int i = 0; i < 24; ++i) {  // 24 x ~192 KiB: several 1 MiB memtables flushed
        keys.push_back(TestKey(1, 9, i));
        ASSERT_TRUE(tier->Put(keys.back(), ObjectFor(keys.back(), 3, 3)).ok());
      }
      tier.reset();
      tier = OpenOrDie(options);
      ASSERT_NE(tier, nullptr);
      std::vector<uint8_t> out;
      for (const ScopedKey& key : keys) {
        const std::vector<uint8_t> want = ObjectFor(key, 3, 3);
        ASSERT_TRUE(ReadBack(*tier, key, static_cast<uint32_t>(want.size()), out).ok());
        EXPECT_EQ(out, want);
      }
    }
  }
}

TEST(NvmeTierOpenTest, SecondOpenOfTheSameDirectoryFails) {
  TempDir dir;
  std::unique_ptr<NvmeTier> first = OpenOrDie(SmallOptions(dir.path(), NvmeValueLayout::kInline));
  if (first == nullptr) GTEST_SKIP() << "this build has no RocksDB";
  Result<std::unique_ptr<NvmeTier>> second =
      NvmeTier::Open(SmallOptions(dir.path(), NvmeValueLayout::kInline));
  EXPECT_EQ(second.status().code(), StatusCode::kIoError) << second.status().ToString();
}

}  // namespace
}  // namespace kvault::storage
