// The nvme tier recovers from a full disk on a thread of its own, never inside a Put: a Put while
// full returns Unavailable at once even while a recovery is stuck, erasures wake a recovery
// however long full_retry_interval is, an ENOSPC entry has the reserve file released at once, and
// closing a full tier waits for no interval. Drives the tier's Impl, which lets a test enter the
// full state and hold a lock stripe, on an ordinary temporary directory (the disk itself never
// fills here: tests/integration/nvme_disk_full_test.cc does that on a tmpfs).
#include <gtest/gtest.h>

#if defined(KVAULT_HAVE_ROCKSDB)
#include <chrono>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "kvault/storage/nvme_tier.h"
#include "nvme/nvme_tier_impl.h"
#include "nvme_test_util.h"

namespace kvault::storage {
namespace {

using Impl = NvmeTier::Impl;

using testing::CounterOf;
using testing::ObjectFor;
using testing::TempDir;
using testing::TestKey;

constexpr char kReserveFile[] = "kvault-nvme-reserve";

NvmeTierOptions Options(const std::string& dir) {
  NvmeTierOptions options = testing::SmallTierOptions(dir);
  // Small, so that a recovery's room check passes on any machine that can run the tests.
  options.min_free_bytes = 1 << 20;
  return options;
}

std::unique_ptr<Impl> OpenOrDie(const NvmeTierOptions& options) {
  Result<std::unique_ptr<Impl>> tier = Impl::Open(options);
  EXPECT_TRUE(tier.ok()) << tier.status().ToString();
  return tier.ok() ? std::move(tier).value() : nullptr;
}

// Blocks of 2 layers, about 128 KiB each.
std::vector<uint8_t> Object(const ScopedKey& key) { return ObjectFor(key, 2, 2); }
uint32_t SizeOf(const ScopedKey& key) { return static_cast<uint32_t>(Object(key).size()); }

Status ReadOf(Impl& tier, const ScopedKey& key) {
  std::vector<uint8_t> out(Object(key).size());
  return tier.Read(key, static_cast<uint32_t>(out.size()), out);
}

// Polls `done` until it holds or 30 s pass (a bound for a loaded machine, not a timing check).
bool WaitUntil(const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

// Records an erasure of `key` as pending: Erase finds its stripe busy.
void ErasePending(Impl& tier, const ScopedKey& key) {
  std::unique_lock<std::mutex> held = tier.HoldStripeForTesting(key);
  std::future<void> erased = std::async(std::launch::async, [&] { tier.Erase(key, SizeOf(key)); });
  const bool returned = erased.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
  held.unlock();
  erased.wait();
  ASSERT_TRUE(returned) << "Erase waited for the stripe";
}

TEST(NvmeDiskFullRecoveryTest, APutWhileFullReturnsAtOnceWhileARecoveryIsStuck) {
  TempDir dir;
  NvmeTierOptions options = Options(dir.path());
  options.full_retry_interval = std::chrono::milliseconds(10);
  std::unique_ptr<Impl> tier = OpenOrDie(options);
  ASSERT_NE(tier, nullptr);
  const ScopedKey erased = TestKey(1, 1, 0), kept = TestKey(1, 1, 1), later = TestKey(1, 1, 2);
  ASSERT_TRUE(tier->Put(erased, Object(erased)).ok());
  ASSERT_TRUE(tier->Put(kept, Object(kept)).ok());
  // A pending erasure: a recovery writes it, and for that takes every lock stripe.
  ASSERT_NO_FATAL_FAILURE(ErasePending(*tier, erased));

  tier->EnterDiskFull("test: the disk is full", /*rocksdb_out_of_space=*/false);
  EXPECT_EQ(CounterOf(*tier, "disk_full_events_total"), 1);
  // With one stripe held, a recovery that starts cannot finish (ApplyPendingErases waits for it).
  std::unique_lock<std::mutex> held = tier->HoldStripeForTesting(kept);
  const bool attempted = WaitUntil([&] { return tier->RecoveryAttemptsForTesting() > 0; });
  std::future<Status> put = std::async(std::launch::async, [&] {
    const std::vector<uint8_t> object = Object(later);
    return tier->Put(later, object).status();
  });
  const bool returned = put.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
  const bool still_full = tier->disk_full();
  held.unlock();
  const Status refused = put.get();
  ASSERT_TRUE(attempted) << "the recovery thread started no attempt within 30 s";
  ASSERT_TRUE(returned) << "a Put on a full tier waited for the recovery";
  EXPECT_TRUE(still_full) << "the recovery finished without the stripe it needs";
  EXPECT_EQ(refused.code(), StatusCode::kUnavailable) << refused.ToString();
  EXPECT_EQ(refused.message().rfind("nvme tier full: ", 0), 0u) << refused.message();
  EXPECT_EQ(CounterOf(*tier, "writes_rejected_disk_full_total"), 1);
  EXPECT_EQ(ReadOf(*tier, later).code(), StatusCode::kNotFound) << "a refused Put stored nothing";

  // Released, the recovery finishes by itself: no Put drives it.
  ASSERT_TRUE(WaitUntil([&] { return !tier->disk_full(); })) << "still full 30 s after";
  EXPECT_EQ(CounterOf(*tier, "disk_full_recoveries_total"), 1);
  EXPECT_EQ(CounterOf(*tier, "disk_full"), 0);
  ASSERT_TRUE(tier->Put(later, Object(later)).ok());
  EXPECT_EQ(CounterOf(*tier, "writes_rejected_disk_full_total"), 1);
  EXPECT_EQ(ReadOf(*tier, erased).code(), StatusCode::kNotFound);
  EXPECT_TRUE(ReadOf(*tier, kept).ok());
  EXPECT_TRUE(ReadOf(*tier, later).ok());
  EXPECT_EQ(tier->Usage().blocks, 2u);
  EXPECT_EQ(tier->Usage().used_bytes, SizeOf(kept) + SizeOf(later));
}

TEST(NvmeDiskFullRecoveryTest, ErasuresWakeARecoveryWhateverTheInterval) {
  TempDir dir;
  NvmeTierOptions options = Options(dir.path());
  options.full_retry_interval = std::chrono::hours(1);
  std::unique_ptr<Impl> tier = OpenOrDie(options);
  ASSERT_NE(tier, nullptr);
  std::vector<ScopedKey> keys;
  for (int i = 0; i < 12; ++i) {  // 12 x ~128 KiB
    keys.push_back(TestKey(2, 1, i));
    ASSERT_TRUE(tier->Put(keys.back(), Object(keys.back())).ok());
  }
  tier->EnterDiskFull("test: the disk is full", /*rocksdb_out_of_space=*/false);

  // Control: erasures short of write_buffer_bytes wake nothing, and the interval is an hour. (The
  // disk has room: an attempt now would succeed.)
  tier->Erase(keys[0], SizeOf(keys[0]));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(tier->RecoveryAttemptsForTesting(), 0u);
  EXPECT_TRUE(tier->disk_full());

  uint64_t erased = SizeOf(keys[0]);
  size_t next = 1;
  while (erased < options.write_buffer_bytes) {
    tier->Erase(keys[next], SizeOf(keys[next]));
    erased += SizeOf(keys[next++]);
  }
  ASSERT_TRUE(WaitUntil([&] { return !tier->disk_full(); })) << "still full 30 s after erasures";
  EXPECT_EQ(tier->RecoveryAttemptsForTesting(), 1u);
  EXPECT_EQ(CounterOf(*tier, "disk_full_recoveries_total"), 1);
  ASSERT_TRUE(tier->Put(TestKey(2, 2, 0), Object(TestKey(2, 2, 0))).ok());
  for (size_t i = next; i < keys.size(); ++i) EXPECT_TRUE(ReadOf(*tier, keys[i]).ok());
}

TEST(NvmeDiskFullRecoveryTest, AnEnospcEntryReleasesTheReserveAtOnceAndRecoveryHoldsItAgain) {
  TempDir dir;
  NvmeTierOptions options = Options(dir.path());
  options.full_retry_interval = std::chrono::hours(1);
  std::unique_ptr<Impl> tier = OpenOrDie(options);
  ASSERT_NE(tier, nullptr);
  const std::filesystem::path reserve = std::filesystem::path(dir.path()) / kReserveFile;
  ASSERT_TRUE(std::filesystem::exists(reserve)) << "positive control: held at open";
  std::vector<ScopedKey> keys;
  for (int i = 0; i < 10; ++i) {
    keys.push_back(TestKey(3, 1, i));
    ASSERT_TRUE(tier->Put(keys.back(), Object(keys.back())).ok());
  }

  tier->EnterDiskFull("test: No space left on device", /*rocksdb_out_of_space=*/true);
  ASSERT_TRUE(WaitUntil([&] { return !std::filesystem::exists(reserve); }))
      << "the reserve file was not released";
  EXPECT_TRUE(tier->disk_full());
  EXPECT_EQ(tier->RecoveryAttemptsForTesting(), 0u) << "the release is not a recovery attempt";

  for (const ScopedKey& key : keys) tier->Erase(key, SizeOf(key));  // ~1.25 MiB: a retry is due
  ASSERT_TRUE(WaitUntil([&] { return !tier->disk_full(); })) << "still full 30 s after erasures";
  ASSERT_TRUE(std::filesystem::exists(reserve)) << "recovery did not hold the reserve again";
  EXPECT_EQ(std::filesystem::file_size(reserve), options.reserve_bytes);
}

TEST(NvmeDiskFullRecoveryTest, ClosingAFullTierWaitsForNoInterval) {
  TempDir dir;
  NvmeTierOptions options = Options(dir.path());
  options.full_retry_interval = std::chrono::hours(1);
  std::unique_ptr<Impl> tier = OpenOrDie(options);
  ASSERT_NE(tier, nullptr);
  const ScopedKey key = TestKey(4, 1, 0);
  ASSERT_TRUE(tier->Put(key, Object(key)).ok());
  tier->EnterDiskFull("test: the disk is full", /*rocksdb_out_of_space=*/false);
  std::future<void> closed = std::async(std::launch::async, [&] { tier.reset(); });
  EXPECT_EQ(closed.wait_for(std::chrono::seconds(30)), std::future_status::ready)
      << "closing waited for the retry interval";
  closed.wait();
}

}  // namespace
}  // namespace kvault::storage
#endif  // KVAULT_HAVE_ROCKSDB
