// The nvme tier on a filesystem that fills up: an 8 MiB tmpfs mounted for each test (tests run as
// root; without the right to mount, the tests are skipped with the reason). Writes stop with
// Unavailable ("nvme tier full: ...") and a counter, reads and erasures go on, and writes resume
// by themselves, without reopening, once space returns: the tier's recovery thread notices, so
// the tests wait for it (boundedly) rather than expect a Put to recover. Two ways to fill up:
//   - the tier's own writes reach min_free_bytes (the normal case: RocksDB never sees ENOSPC);
//   - something else fills the disk and RocksDB's flush hits ENOSPC (min_free_bytes 0).

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "kvault/storage/nvme_tier.h"
#include "nvme_test_util.h"

namespace kvault::storage {
namespace {

using testing::CounterOf;
using testing::ObjectFor;
using testing::TempDir;
using testing::TestKey;

// Before main, while the process has one thread (unshare refuses more): a private mount
// namespace, so that the tmpfs mounts vanish with the process even if a test dies. Best effort.
const bool kPrivateMounts = [] {
  return ::unshare(CLONE_NEWNS) == 0 &&
         ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0;
}();

class NvmeDiskFullTest : public ::testing::Test {
 protected:
  void SetUp() override {
    {
      NvmeTierOptions probe;
      probe.capacity_bytes = 1;
      if (NvmeTier::Open(probe).status().code() == StatusCode::kUnsupported) {
        GTEST_SKIP() << "this build has no RocksDB";
      }
    }
    if (::mount("tmpfs", mount_dir_.path().c_str(), "tmpfs", 0, "size=8m") != 0) {
      GTEST_SKIP() << "cannot mount an 8 MiB tmpfs at " << mount_dir_.path() << " ("
                   << std::strerror(errno) << "): the disk-full tests need root";
    }
    mounted_ = true;
    options_.directory = mount_dir_.path() + "/db";
    options_.capacity_bytes = 1ull << 30;  // far above the disk: the disk fills first
    options_.write_buffer_bytes = 256 << 10;
    options_.max_write_buffers = 2;
    options_.blob_file_bytes = 512 << 10;
    options_.min_free_bytes = 2 << 20;
    options_.reserve_bytes = 1 << 20;
    options_.background_jobs = 2;
    // Retries are frequent, so that the last erasures of a series are covered soon whatever
    // attempts they woke on the way. Without erasures no retry can succeed: the tier went full
    // when a block (128 KiB) no longer fitted above min_free_bytes, and a recovery needs
    // write_buffer_bytes (256 KiB) above it.
    options_.full_retry_interval = std::chrono::milliseconds(100);
  }
  void TearDown() override {
    tier_.reset();
    if (mounted_) {
      EXPECT_EQ(::umount2(mount_dir_.path().c_str(), MNT_DETACH), 0) << std::strerror(errno);
    }
  }
  void Open() {
    Result<std::unique_ptr<NvmeTier>> tier = NvmeTier::Open(options_);
    ASSERT_TRUE(tier.ok()) << tier.status().ToString();
    tier_ = std::move(tier).value();
  }
  // Blocks of about 128 KiB.
  Result<TierSlot> Put(const ScopedKey& key) { return tier_->Put(key, ObjectFor(key, 2, 2)); }
  Status Read(const ScopedKey& key) {
    const std::vector<uint8_t> expected = ObjectFor(key, 2, 2);
    std::vector<uint8_t> out(expected.size());
    Status s = tier_->Read(key, 0, out.size(), out);
    if (s.ok() && out != expected) return Status::Corruption("read back other bytes");
    return s;
  }
  void Erase(const ScopedKey& key) {
    tier_->Erase(key, 0, static_cast<uint32_t>(ObjectFor(key, 2, 2).size()));
  }
  // Waits (at most 30 s) until the recovery thread has lifted the full state.
  bool WaitUntilWritable() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (tier_->disk_full() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return !tier_->disk_full();
  }
  // Puts blocks of `stream` until one is refused; returns those stored and the refusal.
  std::vector<ScopedKey> FillUntilRefused(uint64_t stream, Status& refused) {
    std::vector<ScopedKey> stored;
    for (int i = 0; i < 200; ++i) {
      const ScopedKey key = TestKey(0, stream, i);
      Result<TierSlot> put = Put(key);
      if (!put.ok()) {
        refused = put.status();
        break;
      }
      stored.push_back(key);
    }
    return stored;
  }
  // After a clean close and reopen, the tier holds exactly `expected`, all verifying.
  void ExpectReopenedTierHolds(const std::vector<ScopedKey>& expected) {
    tier_.reset();
    Open();
    std::set<std::vector<uint8_t>> found;
    ASSERT_TRUE(tier_
                    ->Recover([&](const ScopedKey& key, TierSlot, uint32_t) {
                      found.insert({key.key.begin(), key.key.end()});
                      EXPECT_TRUE(Read(key).ok());
                    })
                    .ok());
    for (size_t i = 0; i < expected.size(); ++i) {
      const ScopedKey& key = expected[i];
      EXPECT_EQ(found.erase({key.key.begin(), key.key.end()}), 1u)
          << "block " << i << " of " << expected.size() << " is missing after reopening";
    }
    EXPECT_TRUE(found.empty()) << found.size() << " blocks that should be gone came back";
  }

  TempDir mount_dir_;
  bool mounted_ = false;
  NvmeTierOptions options_;
  std::unique_ptr<NvmeTier> tier_;
};

TEST_F(NvmeDiskFullTest, WritesStopAtTheFloorReadsGoOnAndWritesResumeAfterErasures) {
  Open();
  Status refused;
  const std::vector<ScopedKey> stored = FillUntilRefused(30, refused);
  ASSERT_EQ(refused.code(), StatusCode::kUnavailable) << refused.ToString();
  EXPECT_EQ(refused.message().rfind("nvme tier full: ", 0), 0u) << refused.message();
  ASSERT_GT(stored.size(), 10u);
  EXPECT_TRUE(tier_->disk_full());
  EXPECT_EQ(CounterOf(*tier_, "disk_full_events_total"), 1);
  EXPECT_EQ(CounterOf(*tier_, "writes_rejected_disk_full_total"), 1);
  EXPECT_EQ(CounterOf(*tier_, "writes_rejected_capacity_total"), 0);

  // Still full: the next write is refused at once and counted.
  const ScopedKey late = TestKey(0, 31, 0);
  EXPECT_EQ(Put(late).status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(CounterOf(*tier_, "writes_rejected_disk_full_total"), 2);

  // Reads go on: every acknowledged block reads back; the refused one misses.
  for (const ScopedKey& key : stored) ASSERT_TRUE(Read(key).ok());
  EXPECT_EQ(Read(late).code(), StatusCode::kNotFound);

  // Erasures go on. As eviction would, they take the oldest blocks: three in four.
  std::vector<ScopedKey> kept;
  for (size_t i = 0; i < stored.size(); ++i) {
    if (i < stored.size() * 3 / 4) {
      Erase(stored[i]);
      EXPECT_EQ(Read(stored[i]).code(), StatusCode::kNotFound);
    } else {
      kept.push_back(stored[i]);
    }
  }
  for (const ScopedKey& key : kept) ASSERT_TRUE(Read(key).ok());

  // Writes resume by themselves, without reopening: the recovery thread, woken by the erasures,
  // compacts their space back. It may wake while the erasures are still being made, and resume
  // writes with part of their space: a write that finds the floor again is refused, and the next
  // recovery (the retry interval is 100 ms) brings the rest back. Four blocks fit in what the
  // erasures freed.
  for (int i = 0; i < 4; ++i) {
    const ScopedKey key = TestKey(0, 32, i);
    Result<TierSlot> put = Status::Unavailable("not tried");
    for (int attempt = 0; attempt < 5 && !put.ok(); ++attempt) {
      ASSERT_TRUE(WaitUntilWritable()) << "still full 30 s after the erasures";
      put = Put(key);
      if (!put.ok()) {
        ASSERT_EQ(put.status().code(), StatusCode::kUnavailable);
      }
    }
    ASSERT_TRUE(put.ok()) << "write " << i << " after erasures: " << put.status().ToString();
    kept.push_back(key);
  }
  EXPECT_FALSE(tier_->disk_full());
  EXPECT_GE(CounterOf(*tier_, "disk_full_recoveries_total"), 1);
  for (const ScopedKey& key : kept) ASSERT_TRUE(Read(key).ok());
  ExpectReopenedTierHolds(kept);
}

TEST_F(NvmeDiskFullTest, EnospcFromRocksDbStopsWritesUntilSpaceReturns) {
  options_.min_free_bytes = 0;  // write until RocksDB itself runs out of space
  options_.full_retry_interval = std::chrono::milliseconds(10);
  Open();
  std::vector<ScopedKey> kept;
  for (int i = 0; i < 6; ++i) {
    kept.push_back(TestKey(0, 40, i));
    ASSERT_TRUE(Put(kept.back()).ok());
  }
  // Something else takes the rest of the disk.
  const std::string filler = mount_dir_.path() + "/filler";
  {
    int fd = ::open(filler.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    std::vector<char> chunk(64 << 10, 'f');
    while (::write(fd, chunk.data(), chunk.size()) > 0) {
    }
    ::close(fd);
  }
  // Writes go to memtables until a flush fails with ENOSPC.
  Status refused;
  std::vector<ScopedKey> accepted = FillUntilRefused(41, refused);
  ASSERT_EQ(refused.code(), StatusCode::kUnavailable) << refused.ToString();
  EXPECT_EQ(refused.message().rfind("nvme tier full: ", 0), 0u) << refused.message();
  EXPECT_NE(refused.message().find("No space left"), std::string::npos) << refused.message();
  EXPECT_TRUE(tier_->disk_full());
  EXPECT_GE(CounterOf(*tier_, "writes_rejected_disk_full_total"), 1);

  // Reads go on, from disk and from the memtables that could not be flushed.
  kept.insert(kept.end(), accepted.begin(), accepted.end());
  for (const ScopedKey& key : kept) ASSERT_TRUE(Read(key).ok());
  // Erasures go on (deferred while RocksDB refuses writes).
  const ScopedKey erased = kept.front();
  kept.erase(kept.begin());
  Erase(erased);
  EXPECT_EQ(Read(erased).code(), StatusCode::kNotFound);
  EXPECT_TRUE(Read(kept.front()).ok());

  // Space returns from outside; the recovery thread finds it without reopening.
  ASSERT_EQ(::unlink(filler.c_str()), 0);
  ASSERT_TRUE(WaitUntilWritable()) << "still full 30 s after space returned";
  const ScopedKey next = TestKey(0, 42, 0);
  const Status put = Put(next).status();
  ASSERT_TRUE(put.ok()) << put.ToString();
  kept.push_back(next);
  EXPECT_FALSE(tier_->disk_full());
  EXPECT_GE(CounterOf(*tier_, "disk_full_recoveries_total"), 1);
  for (const ScopedKey& key : kept) ASSERT_TRUE(Read(key).ok());
  EXPECT_EQ(Read(erased).code(), StatusCode::kNotFound);
  ExpectReopenedTierHolds(kept);
}

}  // namespace
}  // namespace kvault::storage
