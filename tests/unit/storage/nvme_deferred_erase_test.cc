// The nvme tier's Erase never waits and never reads the disk (the BlockStore calls it under its
// index mutex): when the key's lock stripe is busy (a Put holds it through RocksDB's write stalls)
// the erasure is recorded, the block misses and its bytes are back at once, and the next Put (or
// closing) writes the deletion; the bytes it gives back come from RocksDB's memory or from the
// caller, each erasure counted once. Drives the tier's Impl, which lets a test hold a stripe.
#include <gtest/gtest.h>

#if defined(KVAULT_HAVE_ROCKSDB)
#include <rocksdb/perf_context.h>
#include <rocksdb/perf_level.h>

#include <cstdio>
#include <filesystem>
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
  NvmeTierOptions options = testing::SmallTierOptions(dir);
  options.background_jobs = NvmeTierOptions{}.background_jobs;  // as these tests were tuned
  return options;
}

// No block cache, and reads through the page cache: after a reopen, every table block RocksDB
// needs is read from its file, where the test can damage it.
NvmeTierOptions ColdOptions(const std::string& dir) {
  NvmeTierOptions options = Options(dir);
  options.block_cache_bytes = 0;
  options.use_direct_reads = false;
  return options;
}

std::unique_ptr<Impl> OpenOrDie(const NvmeTierOptions& options) {
  Result<std::unique_ptr<Impl>> tier = Impl::Open(options);
  EXPECT_TRUE(tier.ok()) << tier.status().ToString();
  return tier.ok() ? std::move(tier).value() : nullptr;
}

std::unique_ptr<Impl> OpenOrDie(const std::string& dir) { return OpenOrDie(Options(dir)); }

uint32_t SizeOf(const ScopedKey& key) { return static_cast<uint32_t>(ObjectFor(key).size()); }

Status ReadOf(Impl& tier, const ScopedKey& key) {
  std::vector<uint8_t> out(ObjectFor(key).size());
  return tier.Read(key, static_cast<uint32_t>(out.size()), out);
}

// Runs Erase(key) on another thread while this one holds the key's stripe; true when Erase
// returned without waiting for it.
bool EraseWhileStripeHeld(Impl& tier, const ScopedKey& key) {
  std::unique_lock<std::mutex> held = tier.HoldStripeForTesting(key);
  std::future<void> erased = std::async(std::launch::async, [&] { tier.Erase(key, SizeOf(key)); });
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

// Stores `keys` and closes the tier: closing flushes, so every entry is then in a table file.
void StoreAndClose(const NvmeTierOptions& options, const std::vector<ScopedKey>& keys) {
  std::unique_ptr<Impl> tier = OpenOrDie(options);
  ASSERT_NE(tier, nullptr);
  for (const ScopedKey& key : keys) ASSERT_TRUE(tier->Put(key, ObjectFor(key)).ok());
}

// Table blocks RocksDB read from disk on this thread while `run` ran.
template <typename Fn>
uint64_t BlockReadsDuring(Fn&& run) {
  rocksdb::SetPerfLevel(rocksdb::PerfLevel::kEnableCount);
  rocksdb::get_perf_context()->Reset();
  run();
  const uint64_t reads = rocksdb::get_perf_context()->block_read_count;
  rocksdb::SetPerfLevel(rocksdb::PerfLevel::kDisable);
  return reads;
}

TEST(NvmeEraseNoDiskReadTest, AnEraseWhoseSizeIsOnDiskOnlyReadsNothingAndCountsTheCallersSize) {
  TempDir dir;
  const NvmeTierOptions options = ColdOptions(dir.path());
  const std::vector<ScopedKey> keys = {TestKey(4, 1, 0), TestKey(4, 1, 1), TestKey(4, 1, 2)};
  ASSERT_NO_FATAL_FAILURE(StoreAndClose(options, keys));
  std::unique_ptr<Impl> tier = OpenOrDie(options);
  ASSERT_NE(tier, nullptr);
  const uint64_t total = SizeOf(keys[0]) + SizeOf(keys[1]) + SizeOf(keys[2]);
  ASSERT_EQ(tier->Usage().used_bytes, total);

  EXPECT_EQ(BlockReadsDuring([&] { tier->Erase(keys[0], SizeOf(keys[0])); }), 0u)
      << "Erase read a table block from disk";
  // Positive control: in this state a lookup of another key does read its table block.
  EXPECT_GT(BlockReadsDuring([&] { EXPECT_TRUE(ReadOf(*tier, keys[1]).ok()); }), 0u);

  EXPECT_EQ(ReadOf(*tier, keys[0]).code(), StatusCode::kNotFound);
  EXPECT_EQ(tier->Usage().used_bytes, total - SizeOf(keys[0]));
  EXPECT_EQ(tier->Usage().blocks, 2u);
  // Erasing it again changes nothing: RocksDB's memtable holds the deletion.
  tier->Erase(keys[0], SizeOf(keys[0]));
  EXPECT_EQ(tier->Usage().used_bytes, total - SizeOf(keys[0]));
  EXPECT_EQ(tier->Usage().blocks, 2u);

  // The accounting left is the one a reopen rebuilds from the size entries.
  tier.reset();
  tier = OpenOrDie(options);
  ASSERT_NE(tier, nullptr);
  EXPECT_EQ(tier->Usage().used_bytes, total - SizeOf(keys[0]));
  const auto found = Recovered(*tier);
  EXPECT_EQ(found.count(keys[0].key), 0u);
  EXPECT_EQ(found.count(keys[1].key), 1u);
}

// Flips one byte at the start of every table file in `dir`: the first data block, which here holds
// every size entry, fails its checksum when RocksDB reads it.
void DamageTableFiles(const std::string& dir) {
  int damaged = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".sst") continue;
    std::FILE* f = std::fopen(entry.path().c_str(), "r+b");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(std::fseek(f, 8, SEEK_SET), 0);
    const int byte = std::fgetc(f);
    ASSERT_EQ(std::fseek(f, 8, SEEK_SET), 0);
    std::fputc(byte ^ 0x40, f);
    ASSERT_EQ(std::fclose(f), 0);
    ++damaged;
  }
  ASSERT_GT(damaged, 0) << "no table file in " << dir;
}

// The tier has no block cache here, so a deferred Erase never learns the stored size from
// memory and gives back the size the caller stored; the damaged tables make sure the later Put
// cannot read it either, and must not count the erasure again.
TEST(NvmeDeferredEraseTest, ADeferredErasureOfASizeNotInMemoryIsCountedOnceAtOnce) {
  TempDir dir;
  const NvmeTierOptions options = ColdOptions(dir.path());
  const ScopedKey erased = TestKey(5, 1, 0), kept = TestKey(5, 1, 1), later = TestKey(5, 1, 2);
  ASSERT_NO_FATAL_FAILURE(StoreAndClose(options, {erased, kept}));
  std::unique_ptr<Impl> tier = OpenOrDie(options);
  ASSERT_NE(tier, nullptr);
  ASSERT_EQ(tier->Usage().used_bytes, SizeOf(erased) + SizeOf(kept));
  ASSERT_NO_FATAL_FAILURE(DamageTableFiles(dir.path()));
  // Positive control: the size entries cannot be read now.
  EXPECT_FALSE(tier->Recover([](const ScopedKey&, TierSlot, uint32_t) {}).ok());

  ASSERT_TRUE(EraseWhileStripeHeld(*tier, erased)) << "Erase waited for the stripe";
  EXPECT_EQ(ReadOf(*tier, erased).code(), StatusCode::kNotFound);
  EXPECT_EQ(tier->Usage().used_bytes, SizeOf(kept)) << "counted at once, with the caller's size";
  EXPECT_EQ(tier->Usage().blocks, 1u);

  // The next Put writes the deletion and counts nothing more.
  ASSERT_TRUE(tier->Put(later, ObjectFor(later)).ok());
  EXPECT_EQ(tier->Usage().used_bytes, SizeOf(kept) + SizeOf(later));
  EXPECT_EQ(tier->Usage().blocks, 2u);
  EXPECT_EQ(ReadOf(*tier, erased).code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace kvault::storage
#endif  // KVAULT_HAVE_ROCKSDB
