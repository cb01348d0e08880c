// The nvme tier's blob GC switch: the decision (BlobGcPays: only the files GC would relocate
// count, a threshold with hysteresis), and the tier with real RocksDB directories: puts alone
// never turn GC on, erasures in the oldest files do, and every block still reads back after
// the relocations that follow.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "kvault/storage/nvme_tier.h"
#include "nvme/blob_gc.h"
#include "nvme_test_util.h"

namespace kvault::storage {
namespace {

using nvme::BlobFileGarbage;
using nvme::BlobGcPays;
using testing::CounterOf;
using testing::ObjectFor;
using testing::TestKey;

std::vector<BlobFileGarbage> Files(std::initializer_list<uint64_t> garbage_of_100) {
  std::vector<BlobFileGarbage> out;
  for (uint64_t garbage : garbage_of_100) out.push_back({100, garbage});
  return out;
}

TEST(BlobGcPays, OnlyTheFilesGcWouldRelocateCount) {
  // 8 files at cutoff 0.25: the oldest 2 are eligible.
  EXPECT_FALSE(BlobGcPays(Files({0, 0, 100, 100, 100, 100, 100, 100}), 0.25, 0.2, false));
  EXPECT_TRUE(BlobGcPays(Files({20, 20, 0, 0, 0, 0, 0, 0}), 0.25, 0.2, false));
  EXPECT_FALSE(BlobGcPays(Files({19, 19, 100, 100, 100, 100, 100, 100}), 0.25, 0.2, false));
  EXPECT_TRUE(BlobGcPays(Files({40, 0, 0, 0, 0, 0, 0, 0}), 0.25, 0.2, false));  // 40 of 200
  // Fewer files than one eligible (floor(0.25 x 3) = 0), and no files: nothing to relocate.
  EXPECT_FALSE(BlobGcPays(Files({100, 100, 100}), 0.25, 0.2, false));
  EXPECT_FALSE(BlobGcPays({}, 0.25, 0.2, false));
}

TEST(BlobGcPays, OnceOnItStaysOnUntilHalfTheThreshold) {
  const std::vector<BlobFileGarbage> eleven = Files({11, 11, 0, 0, 0, 0, 0, 0});
  const std::vector<BlobFileGarbage> nine = Files({9, 9, 0, 0, 0, 0, 0, 0});
  EXPECT_FALSE(BlobGcPays(eleven, 0.25, 0.2, /*active=*/false));
  EXPECT_TRUE(BlobGcPays(eleven, 0.25, 0.2, /*active=*/true));
  EXPECT_FALSE(BlobGcPays(nine, 0.25, 0.2, /*active=*/true));
}

TEST(BlobGcPays, ZeroThresholdMeansAlways) {
  EXPECT_TRUE(BlobGcPays({}, 0.25, 0.0, false));
  EXPECT_TRUE(BlobGcPays(Files({0, 0, 0, 0}), 0.25, 0.0, false));
}

#if defined(KVAULT_HAVE_ROCKSDB)
// Small memtables and blob files, so that a few MiB of blocks make many flushes and compactions.
NvmeTierOptions SmallTier(const std::string& dir, double min_garbage) {
  NvmeTierOptions o;
  o.directory = dir;
  o.capacity_bytes = 256 << 20;
  o.write_buffer_bytes = 1 << 20;
  o.blob_file_bytes = 1 << 20;
  o.blob_gc_min_garbage = min_garbage;
  o.min_free_bytes = 0;
  o.reserve_bytes = 0;
  return o;
}

std::unique_ptr<NvmeTier> OpenTier(const NvmeTierOptions& options) {
  Result<std::unique_ptr<NvmeTier>> tier = NvmeTier::Open(options);
  EXPECT_TRUE(tier.ok()) << tier.status().ToString();
  if (!tier.ok()) return nullptr;
  EXPECT_TRUE((*tier)->Recover([](const ScopedKey&, TierSlot, uint32_t) {}).ok());
  return std::move(*tier);
}

void PutRange(NvmeTier& tier, uint64_t first, uint64_t count) {
  for (uint64_t i = first; i < first + count; ++i) {
    const ScopedKey key = TestKey(1, 7, i);
    ASSERT_TRUE(tier.Put(key, ObjectFor(key)).ok()) << i;
  }
}

// The name of the oldest blob file in `dir` (RocksDB numbers files in order), "" when none.
std::string OldestBlobFile(const std::string& dir) {
  std::string oldest;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (entry.path().extension() == ".blob" && (oldest.empty() || name < oldest)) oldest = name;
  }
  return oldest;
}

// Puts one more block at a time (each Put re-decides after the compactions that finished) until
// the gauge reads `want` or `seconds` pass.
bool GcBecomes(NvmeTier& tier, double want, uint64_t& next, int seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    PutRange(tier, next++, 1);
    if (CounterOf(tier, "blob_gc_active") == want) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return CounterOf(tier, "blob_gc_active") == want;
}

TEST(NvmeBlobGc, PutsAloneNeverTurnGcOnErasuresInTheOldestFilesDo) {
  testing::TempDir dir;
  std::unique_ptr<NvmeTier> tier =
      OpenTier(SmallTier(dir.path(), NvmeTierOptions().blob_gc_min_garbage));
  ASSERT_NE(tier, nullptr);
  uint64_t next = 0;
  PutRange(*tier, next, 160);  // about 15 MiB: many flushes and compactions, no garbage
  next += 160;
  EXPECT_FALSE(GcBecomes(*tier, 1, next, 2)) << "GC turned on without any erasure";
  EXPECT_EQ(CounterOf(*tier, "blob_gc_switches_total"), 0);

  // Erase three in four of the oldest 80 blocks, then keep writing so that compactions meet the
  // erasures and count them as garbage of the oldest files.
  std::vector<uint64_t> kept;
  for (uint64_t i = 0; i < 80; ++i) {
    if (i % 4 == 0) {
      kept.push_back(i);
    } else {
      const ScopedKey key = TestKey(1, 7, i);
      tier->Erase(key, 0, static_cast<uint32_t>(ObjectFor(key).size()));
    }
  }
  EXPECT_TRUE(GcBecomes(*tier, 1, next, 20)) << "GC stayed off with the oldest files 75% garbage";
  EXPECT_GE(CounterOf(*tier, "blob_gc_switches_total"), 1);
  // With GC on, compactions relocate the live quarter and drop the oldest file.
  const std::string oldest = OldestBlobFile(dir.path());
  ASSERT_FALSE(oldest.empty());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (OldestBlobFile(dir.path()) == oldest && std::chrono::steady_clock::now() < deadline) {
    PutRange(*tier, next++, 1);
  }
  EXPECT_NE(OldestBlobFile(dir.path()), oldest) << "the oldest blob file was never collected";
  // Whatever GC relocated, every block that is still there reads back byte for byte.
  for (uint64_t i = 80; i < next; ++i) kept.push_back(i);
  for (uint64_t i : kept) {
    const ScopedKey key = TestKey(1, 7, i);
    const std::vector<uint8_t> expected = ObjectFor(key);
    std::vector<uint8_t> out(expected.size());
    ASSERT_TRUE(tier->Read(key, 0, static_cast<uint32_t>(out.size()), out).ok()) << i;
    ASSERT_EQ(out, expected) << i;
  }
  EXPECT_EQ(CounterOf(*tier, "checksum_failures_total"), 0);
}

TEST(NvmeBlobGc, ZeroThresholdKeepsGcOnFromTheStart) {
  testing::TempDir dir;
  std::unique_ptr<NvmeTier> tier = OpenTier(SmallTier(dir.path(), 0.0));
  ASSERT_NE(tier, nullptr);
  EXPECT_EQ(CounterOf(*tier, "blob_gc_active"), 1);
  PutRange(*tier, 0, 40);
  EXPECT_EQ(CounterOf(*tier, "blob_gc_active"), 1);
  EXPECT_EQ(CounterOf(*tier, "blob_gc_switches_total"), 0);
}

TEST(NvmeBlobGc, ThresholdOutsideZeroToOneIsRefused) {
  testing::TempDir dir;
  for (double bad : {-0.1, 1.5}) {
    Result<std::unique_ptr<NvmeTier>> tier = NvmeTier::Open(SmallTier(dir.path(), bad));
    ASSERT_FALSE(tier.ok()) << bad;
    EXPECT_EQ(tier.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(tier.status().message().find("blob_gc_min_garbage"), std::string::npos);
  }
  EXPECT_TRUE(NvmeTier::Open(SmallTier(dir.path(), 1.0)).ok());  // the bound itself is fine
}
#endif  // KVAULT_HAVE_ROCKSDB

}  // namespace
}  // namespace kvault::storage
