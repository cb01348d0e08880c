// The nvme tier on a filesystem that fills up: an 8 MiB tmpfs mounted for the test (tests run as
// root; without the right to mount, the test is skipped with the reason). Writes stop with
// Unavailable ("nvme tier full: ...") and a counter, reads and erasures go on, and writes resume
// by themselves, without reopening, once erasures have made room.

#include <sys/mount.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "kvault/storage/nvme_tier.h"
#include "nvme_test_util.h"

namespace kvault::storage {
namespace {

using testing::CounterOf;
using testing::ObjectFor;
using testing::TempDir;
using testing::TestKey;

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
                   << std::strerror(errno) << "): the disk-full test needs root";
    }
    mounted_ = true;
    options_.directory = mount_dir_.path() + "/db";
    options_.capacity_bytes = 1ull << 30;  // far above the disk: the disk fills first
    options_.write_buffer_bytes = 512 << 10;
    options_.max_write_buffers = 2;
    options_.blob_file_bytes = 512 << 10;
    options_.reserve_bytes = 1 << 20;
    options_.background_jobs = 2;
    // Recovery is attempted only after erasures, so the test never depends on timing.
    options_.full_retry_interval = std::chrono::hours(1);
  }
  void TearDown() override {
    tier_.reset();
    if (mounted_) EXPECT_EQ(::umount(mount_dir_.path().c_str()), 0) << std::strerror(errno);
  }
  void Open() {
    Result<std::unique_ptr<NvmeTier>> tier = NvmeTier::Open(options_);
    ASSERT_TRUE(tier.ok()) << tier.status().ToString();
    tier_ = std::move(tier).value();
  }
  Status Read(const ScopedKey& key) {
    const std::vector<uint8_t> expected = ObjectFor(key, 2, 2);
    std::vector<uint8_t> out(expected.size());
    Status s = tier_->Read(key, 0, out.size(), out);
    if (s.ok() && out != expected) return Status::Corruption("read back other bytes");
    return s;
  }

  TempDir mount_dir_;
  bool mounted_ = false;
  NvmeTierOptions options_;
  std::unique_ptr<NvmeTier> tier_;
};

TEST_F(NvmeDiskFullTest, WritesStopReadsGoOnAndWritesResumeAfterErasures) {
  Open();
  std::vector<ScopedKey> stored;
  Status refused;
  for (int i = 0; i < 200 && refused.ok(); ++i) {
    const ScopedKey key = TestKey(0, 30, i);
    Result<TierSlot> put = tier_->Put(key, ObjectFor(key, 2, 2));  // ~128 KiB each
    if (put.ok()) {
      stored.push_back(key);
    } else {
      refused = put.status();
    }
  }
  ASSERT_EQ(refused.code(), StatusCode::kUnavailable) << refused.ToString();
  EXPECT_EQ(refused.message().rfind("nvme tier full: ", 0), 0u) << refused.message();
  ASSERT_GT(stored.size(), 10u);
  EXPECT_TRUE(tier_->disk_full());
  EXPECT_EQ(CounterOf(*tier_, "disk_full_events_total"), 1);
  const double rejected = CounterOf(*tier_, "writes_rejected_disk_full_total");
  EXPECT_GE(rejected, 1);

  // Still full: the next write is refused at once and counted.
  const ScopedKey late = TestKey(0, 31, 0);
  EXPECT_EQ(tier_->Put(late, ObjectFor(late, 2, 2)).status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(CounterOf(*tier_, "writes_rejected_disk_full_total"), rejected + 1);
  EXPECT_EQ(CounterOf(*tier_, "writes_rejected_capacity_total"), 0);

  // Reads go on: every acknowledged block reads back, the refused ones miss.
  for (const ScopedKey& key : stored) ASSERT_TRUE(Read(key).ok());
  EXPECT_EQ(Read(late).code(), StatusCode::kNotFound);

  // Erasures go on; three blocks in four make room.
  std::vector<ScopedKey> kept;
  for (size_t i = 0; i < stored.size(); ++i) {
    if (i % 4 == 3) {
      kept.push_back(stored[i]);
    } else {
      tier_->Erase(stored[i], 0, static_cast<uint32_t>(ObjectFor(stored[i], 2, 2).size()));
      EXPECT_EQ(Read(stored[i]).code(), StatusCode::kNotFound);
    }
  }
  for (const ScopedKey& key : kept) ASSERT_TRUE(Read(key).ok());

  // Writes resume by themselves, without reopening.
  std::vector<ScopedKey> added;
  for (int i = 0; i < 8; ++i) {
    const ScopedKey key = TestKey(0, 32, i);
    Result<TierSlot> put = tier_->Put(key, ObjectFor(key, 2, 2));
    ASSERT_TRUE(put.ok()) << "write " << i << " after erasures: " << put.status().ToString();
    added.push_back(key);
  }
  EXPECT_FALSE(tier_->disk_full());
  EXPECT_EQ(CounterOf(*tier_, "disk_full_recoveries_total"), 1);
  for (const ScopedKey& key : kept) ASSERT_TRUE(Read(key).ok());
  for (const ScopedKey& key : added) ASSERT_TRUE(Read(key).ok());

  // And the episode left the database consistent: a reopened tier holds exactly these blocks.
  tier_.reset();
  Open();
  size_t recovered = 0;
  ASSERT_TRUE(tier_->Recover([&](const ScopedKey& key, TierSlot, uint32_t) {
                     ++recovered;
                     EXPECT_TRUE(Read(key).ok());
                   }).ok());
  EXPECT_EQ(recovered, kept.size() + added.size());
  for (size_t i = 0; i < stored.size(); i += 4) EXPECT_EQ(Read(stored[i]).code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace kvault::storage
