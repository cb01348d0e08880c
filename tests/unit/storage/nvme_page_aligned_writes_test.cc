// The file system the nvme tier opens RocksDB with: its writable files ask RocksDB for page-aligned
// buffers (direct writes from a buffer 512 bytes into a page ran at a third of the disk's speed on
// the development VM, docs/storage_nvme.md), they still write what they are given, and the tier's
// options actually use it.
#include <gtest/gtest.h>

#if defined(KVAULT_HAVE_ROCKSDB)
#include <rocksdb/env.h>
#include <rocksdb/file_system.h>

#include <fstream>
#include <iterator>
#include <memory>
#include <string>

#include "nvme/db_options.h"
#include "nvme/page_aligned_file_system.h"
#include "nvme/reserve_file.h"
#include "nvme_test_util.h"

namespace kvault::storage {
namespace {

std::unique_ptr<rocksdb::FSWritableFile> OpenWritable(rocksdb::FileSystem& fs,
                                                      const std::string& path, bool direct) {
  rocksdb::FileOptions options;
  options.use_direct_writes = direct;
  std::unique_ptr<rocksdb::FSWritableFile> file;
  rocksdb::IOStatus s = fs.NewWritableFile(path, options, &file, nullptr);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return file;
}

size_t AlignmentOf(rocksdb::FileSystem& fs, const std::string& path, bool direct) {
  std::unique_ptr<rocksdb::FSWritableFile> file = OpenWritable(fs, path, direct);
  if (file == nullptr) return 0;
  EXPECT_TRUE(file->Close(rocksdb::IOOptions(), nullptr).ok());
  return file->GetRequiredBufferAlignment();
}

TEST(NvmePageAlignedWrites, WritableFilesAskForAtLeastAPage) {
  testing::TempDir dir;
  const bool direct = nvme::SupportsDirectIo(dir.path());
  std::shared_ptr<rocksdb::FileSystem> base = rocksdb::FileSystem::Default();
  std::shared_ptr<rocksdb::FileSystem> aligned = nvme::PageAlignedWrites(base);
  const size_t own = AlignmentOf(*base, dir.path() + "/base", direct);
  ASSERT_GT(own, 0u);
  const size_t wrapped = AlignmentOf(*aligned, dir.path() + "/wrapped", direct);
  EXPECT_EQ(wrapped % nvme::kWriteBufferAlignment, 0u) << "wrapped alignment " << wrapped;
  EXPECT_GE(wrapped, own) << "never less than what the file itself needs";
  EXPECT_EQ(wrapped, std::max(own, nvme::kWriteBufferAlignment));
}

TEST(NvmePageAlignedWrites, WrappedFilesWriteWhatTheyAreGiven) {
  testing::TempDir dir;
  std::shared_ptr<rocksdb::FileSystem> aligned =
      nvme::PageAlignedWrites(rocksdb::FileSystem::Default());
  const std::string path = dir.path() + "/data";
  std::unique_ptr<rocksdb::FSWritableFile> file = OpenWritable(*aligned, path, false);
  ASSERT_NE(file, nullptr);
  ASSERT_TRUE(file->Append("kvault", rocksdb::IOOptions(), nullptr).ok());
  ASSERT_TRUE(file->Close(rocksdb::IOOptions(), nullptr).ok());
  // Reopened for appending through the wrapper: still page-aligned, and appends land after.
  std::unique_ptr<rocksdb::FSWritableFile> again;
  ASSERT_TRUE(aligned->ReopenWritableFile(path, rocksdb::FileOptions(), &again, nullptr).ok());
  EXPECT_EQ(again->GetRequiredBufferAlignment() % nvme::kWriteBufferAlignment, 0u);
  ASSERT_TRUE(again->Append(" nvme", rocksdb::IOOptions(), nullptr).ok());
  ASSERT_TRUE(again->Close(rocksdb::IOOptions(), nullptr).ok());
  std::ifstream in(path, std::ios::binary);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), "kvault nvme");
  // A file that cannot be created is an error, not a wrapped null.
  std::unique_ptr<rocksdb::FSWritableFile> missing;
  EXPECT_FALSE(aligned
                   ->NewWritableFile(dir.path() + "/no/such/dir/file", rocksdb::FileOptions(),
                                     &missing, nullptr)
                   .ok());
  EXPECT_EQ(missing, nullptr);
}

TEST(NvmePageAlignedWrites, TheTiersDatabaseOptionsUseIt) {
  testing::TempDir dir;
  NvmeTierOptions options;
  options.directory = dir.path();
  options.capacity_bytes = 64 << 20;
  nvme::DbOptions db = nvme::MakeDbOptions(options, nullptr);
  ASSERT_NE(db.db.env, nullptr);
  EXPECT_NE(db.db.env, rocksdb::Env::Default());
  const size_t alignment = AlignmentOf(*db.db.env->GetFileSystem(), dir.path() + "/f",
                                       nvme::SupportsDirectIo(dir.path()));
  EXPECT_EQ(alignment % nvme::kWriteBufferAlignment, 0u) << alignment;
}

}  // namespace
}  // namespace kvault::storage
#endif  // KVAULT_HAVE_ROCKSDB
