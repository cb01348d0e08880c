// The nvme tier's Erase never waits (the BlockStore calls it under its index mutex): when the key's
// lock stripe is busy (a Put holds it through RocksDB's write stalls) the erasure is recorded, the
// block misses and its bytes are back at once, and the next Put (or closing) writes the deletion.
// Drives the tier's Impl, which lets a test hold a stripe.
#include <gtest/gtest.h>

#if defined(KVAULT_HAVE_ROCKSDB)
#include <future>
#include <map>
#include <memory>
#include <thread>
#include <vector>

#include "kvault/storage/nvme_tier.h"
#include "nvme/nvme_tier_impl.h"
#include "nvme_test_util.h"

namespace kvault::storage {

namespace {

using Impl = NvmeTier::Impl;

using testing::ObjectFor;
using testing::TempDir;
using testing::TestKey;

NvmeTierOptions Options(const std::string& dir) {
  NvmeTierOptions options;
  options.directory = dir;
  options.capacity_bytes = 64ull << 20;
  options.write_buffer_bytes = 1 << 20;
  options.blob_file_bytes = 4 << 20;
  options.reserve_bytes = 1 << 20;
  return options;
}

std::unique_ptr<Impl> OpenOrDie(const std::string& dir) {
  Result<std::unique_ptr<Impl>> tier = Impl::Open(Options(dir));
  EXPECT_TRUE(tier.ok()) << tier.status().ToString();
  return tier.ok() ? std::move(tier).value() : nullptr;
}

Status ReadOf(Impl& tier, const ScopedKey& key) {
  std::vector<uint8_t> out(ObjectFor(key).size());
  return tier.Read(key, static_cast<uint32_t>(out.size()), out);
}

// Runs Erase(key) on another thread while this one holds the key's stripe; true when Erase
// returned without waiting for it.
bool EraseWhileStripeHeld(Impl& tier, const ScopedKey& key) {
  std::unique_lock<std::mutex> held = tier.HoldStripeForTesting(key);
  std::future<void> erased = std::async(std::launch::async, [&] { tier.Erase(key); });
  const bool returned = erased.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
  held.unlock();
  erased.wait();
  return returned;
}

using KeySet = std::map<BlockKey, uint32_t>;

KeySet Recovered(Impl& tier) {
  KeySet found;
  EXPECT_TRUE(
      tier.Recover([&](const ScopedKey& key, TierSlot, uint32_t bytes) { found[key.key] = bytes; })
          .ok());
  return found;
}

TEST(NvmeDeferredEraseTest, AnEraseBehindABusyStripeMissesAtOnceAndIsWrittenByTheNextPut) {
  TempDir dir;
  std::unique_ptr<Impl> tier = OpenOrDie(dir.path());
  ASSERT_NE(tier, nullptr);
  const ScopedKey erased = TestKey(1, 1, 0), kept = TestKey(1, 1, 1), later = TestKey(1, 1, 2);
  const std::vector<uint8_t> erased_object = ObjectFor(erased), kept_object = ObjectFor(kept);
  ASSERT_TRUE(tier->Put(erased, erased_object).ok());
  ASSERT_TRUE(tier->Put(kept, kept_object).ok());
  const uint64_t both = erased_object.size() + kept_object.size();
  ASSERT_EQ(tier->Usage().used_bytes, both);

  ASSERT_TRUE(EraseWhileStripeHeld(*tier, erased)) << "Erase waited for the stripe";
  EXPECT_EQ(ReadOf(*tier, erased).code(), StatusCode::kNotFound) << "gone for callers at once";
  EXPECT_TRUE(ReadOf(*tier, kept).ok()) << "positive control";
  // A caller evicting until the tier is under a mark sees the room at once.
  EXPECT_EQ(tier->Usage().used_bytes, kept_object.size());
  EXPECT_EQ(tier->Usage().blocks, 1u);

  // The next Put writes the deletion; the bytes are not given back twice.
  const std::vector<uint8_t> later_object = ObjectFor(later);
  ASSERT_TRUE(tier->Put(later, later_object).ok());
  EXPECT_EQ(tier->Usage().used_bytes, kept_object.size() + later_object.size());
  EXPECT_EQ(tier->Usage().blocks, 2u);

  tier.reset();
  tier = OpenOrDie(dir.path());
  ASSERT_NE(tier, nullptr);
  const auto found = Recovered(*tier);
  EXPECT_EQ(found.count(erased.key), 0u) << "the deletion reached RocksDB";
  EXPECT_EQ(found.count(kept.key), 1u);
  EXPECT_EQ(found.count(later.key), 1u);
}

TEST(NvmeDeferredEraseTest, APutOfTheSameKeyReplacesAPendingErasureAndCountsOnce) {
  TempDir dir;
  std::unique_ptr<Impl> tier = OpenOrDie(dir.path());
  ASSERT_NE(tier, nullptr);
  const ScopedKey key = TestKey(2, 1, 0);
  const std::vector<uint8_t> object = ObjectFor(key);
  ASSERT_TRUE(tier->Put(key, object).ok());
  ASSERT_TRUE(EraseWhileStripeHeld(*tier, key));
  ASSERT_EQ(ReadOf(*tier, key).code(), StatusCode::kNotFound);

  ASSERT_TRUE(tier->Put(key, object).ok());
  EXPECT_TRUE(ReadOf(*tier, key).ok()) << "the new copy is readable";
  EXPECT_EQ(tier->Usage().used_bytes, object.size()) << "its bytes count once";
  EXPECT_EQ(tier->Usage().blocks, 1u);
  tier.reset();
  tier = OpenOrDie(dir.path());
  ASSERT_NE(tier, nullptr);
  EXPECT_EQ(Recovered(*tier).count(key.key), 1u) << "the erasure did not delete the new copy";
}

TEST(NvmeDeferredEraseTest, ClosingWritesPendingErasures) {
  TempDir dir;
  std::unique_ptr<Impl> tier = OpenOrDie(dir.path());
  ASSERT_NE(tier, nullptr);
  const ScopedKey erased = TestKey(3, 1, 0), kept = TestKey(3, 1, 1);
  ASSERT_TRUE(tier->Put(erased, ObjectFor(erased)).ok());
  ASSERT_TRUE(tier->Put(kept, ObjectFor(kept)).ok());
  ASSERT_TRUE(EraseWhileStripeHeld(*tier, erased));
  tier.reset();  // no Put after the erasure
  tier = OpenOrDie(dir.path());
  ASSERT_NE(tier, nullptr);
  const auto found = Recovered(*tier);
  EXPECT_EQ(found.count(erased.key), 0u);
  EXPECT_EQ(found.count(kept.key), 1u);
  EXPECT_EQ(tier->Usage().blocks, 1u);
}

}  // namespace
}  // namespace kvault::storage
#endif  // KVAULT_HAVE_ROCKSDB
