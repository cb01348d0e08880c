// Damage to stored blocks is caught on read: bytes flipped in a stored value (written through
// RocksDB directly, and flipped in a blob file on disk), a valid block stored under another key
// and a truncated value all read as Corruption, are deleted, and count in
// checksum_failures_total. Every expected miss is paired with a block that still reads back.
//
// The test writes through RocksDB itself, with the layout docs/storage_nvme.md fixes (block entry:
// tenant big-endian || 32-byte key -> object; size entry: FF FF FF FF || tenant || key -> u32 LE
// size), spelled out here rather than borrowed from the tier so that a changed layout fails it.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kvault/storage/nvme_tier.h"
#include "nvme_test_util.h"

#if KVAULT_HAVE_ROCKSDB
#include <rocksdb/db.h>
#endif

namespace kvault::storage {
namespace {

using testing::CounterOf;
using testing::ObjectFor;
using testing::TempDir;
using testing::TestKey;

#if KVAULT_HAVE_ROCKSDB

std::string DbKeyOf(const ScopedKey& key) {
  std::string out;
  for (int shift = 24; shift >= 0; shift -= 8)
    out.push_back(static_cast<char>(key.tenant >> shift));
  out.append(reinterpret_cast<const char*>(key.key.data()), key.key.size());
  return out;
}

std::string SizeKeyOf(const ScopedKey& key) { return std::string(4, '\xFF') + DbKeyOf(key); }

std::string SizeOf(uint32_t bytes) {
  std::string out;
  for (int shift = 0; shift < 32; shift += 8) out.push_back(static_cast<char>(bytes >> shift));
  return out;
}

// Opens the tier's database with plain RocksDB and lets `edit` change it.
void EditDatabase(const std::string& dir, const std::function<void(rocksdb::DB&)>& edit) {
  rocksdb::Options options;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, dir, &raw);
  ASSERT_TRUE(s.ok()) << s.ToString();
  std::unique_ptr<rocksdb::DB> db(raw);
  edit(*db);
  ASSERT_TRUE(db->Close().ok());
}

class NvmeCorruptionTest : public ::testing::TestWithParam<NvmeValueLayout> {
 protected:
  void SetUp() override {
    options_.directory = dir_.path();
    options_.capacity_bytes = 64ull << 20;
    options_.value_layout = GetParam();
    options_.write_buffer_bytes = 1 << 20;
    options_.reserve_bytes = 0;
    options_.background_jobs = 2;
    Open();
  }
  void Open() {
    Result<std::unique_ptr<NvmeTier>> tier = NvmeTier::Open(options_);
    ASSERT_TRUE(tier.ok()) << tier.status().ToString();
    tier_ = std::move(tier).value();
  }
  void Put(const ScopedKey& key) { ASSERT_TRUE(tier_->Put(key, ObjectFor(key)).ok()); }
  Status Read(const ScopedKey& key, uint32_t bytes) {
    std::vector<uint8_t> out(bytes);
    Status s = tier_->Read(key, 0, bytes, out);
    if (s.ok()) {
      EXPECT_EQ(out, ObjectFor(key));
    }
    return s;
  }
  Status Read(const ScopedKey& key) { return Read(key, ObjectFor(key).size()); }
  std::vector<ScopedKey> Recovered() {
    std::vector<ScopedKey> keys;
    EXPECT_TRUE(
        tier_->Recover([&](const ScopedKey& key, TierSlot, uint32_t) { keys.push_back(key); })
            .ok());
    return keys;
  }

  TempDir dir_;
  NvmeTierOptions options_;
  std::unique_ptr<NvmeTier> tier_;
};

TEST_P(NvmeCorruptionTest, FlippedBytesAreCaughtDeletedAndCounted) {
  const ScopedKey control = TestKey(0, 20, 99);
  Put(control);
  // One victim per damaged place: magic, key inside the header, checksum, payload, last byte.
  const std::vector<size_t> flips = {0, 60, 17, 40000, SIZE_MAX};
  std::vector<ScopedKey> victims;
  for (size_t i = 0; i < flips.size(); ++i) {
    victims.push_back(TestKey(0, 20, i));
    Put(victims.back());
  }
  tier_.reset();
  EditDatabase(dir_.path(), [&](rocksdb::DB& db) {
    for (size_t i = 0; i < flips.size(); ++i) {
      std::string value;
      ASSERT_TRUE(db.Get({}, DbKeyOf(victims[i]), &value).ok());
      const size_t at = std::min(flips[i], value.size() - 1);
      value[at] = static_cast<char>(value[at] ^ 0x10);
      ASSERT_TRUE(db.Put({}, DbKeyOf(victims[i]), value).ok());
    }
  });
  Open();
  ASSERT_EQ(Recovered().size(), victims.size() + 1);

  for (const ScopedKey& victim : victims) {
    EXPECT_EQ(Read(victim).code(), StatusCode::kCorruption);
    EXPECT_EQ(Read(victim).code(), StatusCode::kNotFound);  // deleted on the first read
  }
  EXPECT_EQ(CounterOf(*tier_, "checksum_failures_total"), victims.size());
  EXPECT_TRUE(Read(control).ok());
  EXPECT_EQ(tier_->Usage().blocks, 1u);
  EXPECT_EQ(tier_->Usage().used_bytes, ObjectFor(control).size());

  // The deletions are durable: a reopened tier holds only the control block.
  tier_.reset();
  Open();
  const std::vector<ScopedKey> left = Recovered();
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0], control);
  EXPECT_TRUE(Read(control).ok());
}

TEST_P(NvmeCorruptionTest, BlockStoredUnderAnotherKeyIsCaught) {
  const ScopedKey victim = TestKey(3, 21, 0);
  const ScopedKey donor = TestKey(3, 21, 1);
  Put(victim);
  Put(donor);
  const std::vector<uint8_t> donor_object = ObjectFor(donor);
  tier_.reset();
  EditDatabase(dir_.path(), [&](rocksdb::DB& db) {
    const std::string value(donor_object.begin(), donor_object.end());
    ASSERT_TRUE(db.Put({}, DbKeyOf(victim), value).ok());
    ASSERT_TRUE(db.Put({}, SizeKeyOf(victim), SizeOf(value.size())).ok());
  });
  Open();
  ASSERT_EQ(Recovered().size(), 2u);

  Status s = Read(victim, donor_object.size());
  EXPECT_EQ(s.code(), StatusCode::kCorruption) << s.ToString();
  EXPECT_EQ(Read(victim, donor_object.size()).code(), StatusCode::kNotFound);
  EXPECT_EQ(CounterOf(*tier_, "checksum_failures_total"), 1);
  EXPECT_TRUE(Read(donor).ok());
  EXPECT_EQ(tier_->Usage().used_bytes, donor_object.size());
}

TEST_P(NvmeCorruptionTest, TruncatedValueIsCaught) {
  const ScopedKey victim = TestKey(0, 22, 0);
  const ScopedKey control = TestKey(0, 22, 1);
  Put(victim);
  Put(control);
  tier_.reset();
  EditDatabase(dir_.path(), [&](rocksdb::DB& db) {
    std::string value;
    ASSERT_TRUE(db.Get({}, DbKeyOf(victim), &value).ok());
    value.resize(value.size() - 100);
    ASSERT_TRUE(db.Put({}, DbKeyOf(victim), value).ok());
  });
  Open();
  ASSERT_EQ(Recovered().size(), 2u);
  EXPECT_EQ(Read(victim).code(), StatusCode::kCorruption);
  EXPECT_EQ(Read(victim).code(), StatusCode::kNotFound);
  EXPECT_EQ(CounterOf(*tier_, "checksum_failures_total"), 1);
  EXPECT_TRUE(Read(control).ok());
}

INSTANTIATE_TEST_SUITE_P(Layouts, NvmeCorruptionTest,
                         ::testing::Values(NvmeValueLayout::kBlobFiles, NvmeValueLayout::kInline),
                         testing::LayoutName);

// Damage below RocksDB: a byte flipped in a blob file on disk.
TEST(NvmeBlobFileDamageTest, FlippedByteInABlobFileIsCaught) {
  TempDir dir;
  NvmeTierOptions options;
  options.directory = dir.path();
  options.capacity_bytes = 64ull << 20;
  options.reserve_bytes = 0;
  options.background_jobs = 2;
  const ScopedKey victim = TestKey(0, 23, 0);
  const ScopedKey control = TestKey(0, 23, 1);
  const std::vector<uint8_t> victim_object = ObjectFor(victim, 2, 2);
  const std::vector<uint8_t> control_object = ObjectFor(control, 2, 2);
  // Two opens, two flushes: each block in its own blob file, the victim's first.
  for (const auto* item : {&victim, &control}) {
    Result<std::unique_ptr<NvmeTier>> tier = NvmeTier::Open(options);
    ASSERT_TRUE(tier.ok()) << tier.status().ToString();
    ASSERT_TRUE((*tier)->Put(*item, item == &victim ? victim_object : control_object).ok());
  }
  std::vector<std::filesystem::path> blobs;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    if (entry.path().extension() == ".blob") blobs.push_back(entry.path());
  }
  std::sort(blobs.begin(), blobs.end());
  ASSERT_EQ(blobs.size(), 2u);
  {
    std::FILE* f = std::fopen(blobs[0].c_str(), "r+b");
    ASSERT_NE(f, nullptr);
    const long at = static_cast<long>(std::filesystem::file_size(blobs[0]) / 2);
    ASSERT_EQ(std::fseek(f, at, SEEK_SET), 0);
    const int byte = std::fgetc(f);
    ASSERT_EQ(std::fseek(f, at, SEEK_SET), 0);
    std::fputc(byte ^ 0x01, f);
    std::fclose(f);
  }

  Result<std::unique_ptr<NvmeTier>> tier = NvmeTier::Open(options);
  ASSERT_TRUE(tier.ok()) << tier.status().ToString();
  std::vector<uint8_t> out(victim_object.size());
  Status s = (*tier)->Read(victim, 0, out.size(), out);
  EXPECT_EQ(s.code(), StatusCode::kCorruption) << s.ToString();
  EXPECT_EQ((*tier)->Read(victim, 0, out.size(), out).code(), StatusCode::kNotFound);
  EXPECT_EQ(CounterOf(**tier, "checksum_failures_total"), 1);
  out.resize(control_object.size());
  ASSERT_TRUE((*tier)->Read(control, 0, out.size(), out).ok());
  EXPECT_EQ(out, control_object);
}

#else  // KVAULT_HAVE_ROCKSDB

TEST(NvmeCorruptionTest, SkippedWithoutRocksDb) { GTEST_SKIP() << "this build has no RocksDB"; }

#endif  // KVAULT_HAVE_ROCKSDB

}  // namespace
}  // namespace kvault::storage
