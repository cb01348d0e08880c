// SharedMemoryFile and RegionFile: a created file is mapped writable and sealed against shrinking,
// growing and further seals; a RegionFile adopted from its descriptor reads and writes the bytes
// the mapping shows, and refuses ranges past its length; Adopt refuses every descriptor that is
// not a memfd sealed against shrinking and growing, open read-write, of at least the asked
// length, and leaves such a descriptor open and the caller's, each beside an adopted control.
#include "kvault/transport/local/region_file.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "kvault/common/file_io.h"
#include "kvault/common/status.h"
#include "kvault/transport/local/shared_memory_file.h"

namespace kvault::transport {
namespace {

constexpr size_t kMiB = size_t{1} << 20;
constexpr int kSizeSeals = F_SEAL_SHRINK | F_SEAL_GROW;

std::vector<uint8_t> Pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(seed + 7 * i + (i >> 8));
  return out;
}

// A memfd of `bytes` bytes, all allocated unless `sparse`, with `seals` added (none when 0);
// `sealable` false makes one created without MFD_ALLOW_SEALING.
UniqueFd Memfd(size_t bytes, int seals, bool sealable = true, bool sparse = false) {
  UniqueFd fd(memfd_create("region-file-test", MFD_CLOEXEC | (sealable ? MFD_ALLOW_SEALING : 0)));
  EXPECT_GE(fd.get(), 0) << std::strerror(errno);
  EXPECT_EQ(ftruncate(fd.get(), static_cast<off_t>(bytes)), 0) << std::strerror(errno);
  if (!sparse) {
    EXPECT_EQ(posix_fallocate(fd.get(), 0, static_cast<off_t>(bytes)), 0);
  }
  if (seals != 0) {
    EXPECT_EQ(fcntl(fd.get(), F_ADD_SEALS, seals), 0) << std::strerror(errno);
  }
  return fd;
}

UniqueFd Reopen(int fd, int flags) {
  UniqueFd out(open(("/proc/self/fd/" + std::to_string(fd)).c_str(), flags | O_CLOEXEC));
  EXPECT_GE(out.get(), 0) << std::strerror(errno);
  return out;
}

// Adopt refuses *fd with InvalidArgument (naming `needle`) and leaves it open and the caller's.
void ExpectRefused(UniqueFd* fd, uint64_t length, const std::string& needle) {
  const int before = fd->get();
  Result<RegionFile> r = RegionFile::Adopt(fd, length);
  ASSERT_FALSE(r.ok()) << needle;
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().ToString();
  EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status().ToString();
  EXPECT_EQ(fd->get(), before);
  if (before >= 0) {
    EXPECT_NE(fcntl(before, F_GETFD), -1) << "the refused descriptor was closed";
  }
}

// Adopt takes *fd: it is no longer the caller's.
void ExpectAdopted(UniqueFd* fd, uint64_t length) {
  Result<RegionFile> r = RegionFile::Adopt(fd, length);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(fd->get(), -1);
  EXPECT_EQ(r->length(), length);
}

TEST(RegionFileTest, CreateRefusesZeroBytes) {
  Result<SharedMemoryFile> zero = SharedMemoryFile::Create(0);
  ASSERT_FALSE(zero.ok());
  EXPECT_EQ(zero.status().code(), StatusCode::kInvalidArgument) << zero.status().ToString();
  Result<SharedMemoryFile> one = SharedMemoryFile::Create(1);
  ASSERT_TRUE(one.ok()) << one.status().ToString();
  EXPECT_EQ(one->length(), 1u);
  EXPECT_NE(one->address(), nullptr);
}

TEST(RegionFileTest, CreatedFileIsWritableAndSealed) {
  Result<SharedMemoryFile> file = SharedMemoryFile::Create(kMiB);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  ASSERT_EQ(file->length(), kMiB);
  const std::vector<uint8_t> pattern = Pattern(kMiB, 3);
  std::memcpy(file->address(), pattern.data(), kMiB);
  // The mapping is the file: its bytes read back through the descriptor.
  std::vector<uint8_t> back(kMiB);
  ASSERT_EQ(pread(file->descriptor(), back.data(), kMiB, 0), static_cast<ssize_t>(kMiB));
  EXPECT_EQ(back, pattern);

  const int seals = fcntl(file->descriptor(), F_GET_SEALS);
  ASSERT_GE(seals, 0) << std::strerror(errno);
  EXPECT_EQ(seals, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
  EXPECT_NE(ftruncate(file->descriptor(), kMiB / 2), 0);
  EXPECT_NE(ftruncate(file->descriptor(), 2 * kMiB), 0);
  EXPECT_NE(fcntl(file->descriptor(), F_ADD_SEALS, F_SEAL_WRITE), 0);
  struct stat st {};
  ASSERT_EQ(fstat(file->descriptor(), &st), 0);
  EXPECT_EQ(st.st_size, static_cast<off_t>(kMiB));
  // Its own length is no change.
  EXPECT_EQ(ftruncate(file->descriptor(), kMiB), 0) << std::strerror(errno);
}

TEST(RegionFileTest, AdoptedFileSharesTheMapping) {
  Result<SharedMemoryFile> file = SharedMemoryFile::Create(kMiB);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  auto* mapped = static_cast<uint8_t*>(file->address());
  const std::vector<uint8_t> pattern = Pattern(kMiB, 11);
  std::memcpy(mapped, pattern.data(), kMiB);

  UniqueFd fd(dup(file->descriptor()));
  Result<RegionFile> region = RegionFile::Adopt(&fd, kMiB);
  ASSERT_TRUE(region.ok()) << region.status().ToString();
  EXPECT_EQ(fd.get(), -1);
  EXPECT_EQ(region->length(), kMiB);

  constexpr size_t kAt = 4096 + 7;
  std::vector<uint8_t> read(3 * 4096);
  ASSERT_TRUE(region->Read(kAt, read).ok());
  EXPECT_EQ(read, std::vector<uint8_t>(pattern.begin() + kAt, pattern.begin() + kAt + read.size()));

  const std::vector<uint8_t> written = Pattern(3 * 4096, 200);
  ASSERT_TRUE(region->Write(kAt, written).ok());
  EXPECT_EQ(std::memcmp(mapped + kAt, written.data(), written.size()), 0);
  // Nothing around the written bytes changed.
  EXPECT_EQ(mapped[kAt - 1], pattern[kAt - 1]);
  EXPECT_EQ(mapped[kAt + written.size()], pattern[kAt + written.size()]);
}

TEST(RegionFileTest, RangesPastTheLengthAreOutOfRange) {
  Result<SharedMemoryFile> file = SharedMemoryFile::Create(kMiB);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  auto* mapped = static_cast<uint8_t*>(file->address());
  UniqueFd fd(dup(file->descriptor()));
  Result<RegionFile> region = RegionFile::Adopt(&fd, kMiB);
  ASSERT_TRUE(region.ok()) << region.status().ToString();

  // The last byte, exactly.
  uint8_t one = 0x5A;
  ASSERT_TRUE(region->Write(kMiB - 1, std::span(&one, 1)).ok());
  EXPECT_EQ(mapped[kMiB - 1], 0x5A);
  mapped[kMiB - 1] = 0xA5;
  ASSERT_TRUE(region->Read(kMiB - 1, std::span(&one, 1)).ok());
  EXPECT_EQ(one, 0xA5);

  std::vector<uint8_t> two(2, 0x77);
  for (uint64_t offset : {uint64_t{kMiB - 1}, uint64_t{kMiB}, uint64_t{2 * kMiB}, ~uint64_t{0}}) {
    EXPECT_EQ(region->Read(offset, two).code(), StatusCode::kOutOfRange) << offset;
    EXPECT_EQ(region->Write(offset, two).code(), StatusCode::kOutOfRange) << offset;
  }
  std::vector<uint8_t> whole(kMiB + 1);
  EXPECT_EQ(region->Read(0, whole).code(), StatusCode::kOutOfRange);
  EXPECT_EQ(mapped[kMiB - 1], 0xA5);  // the refused writes wrote nothing
}

TEST(RegionFileTest, AdoptRefusesFilesThatAreNotSealedMemfds) {
  // A regular file.
  std::string path = ::testing::TempDir() + "region_file_test_XXXXXX";
  UniqueFd regular(mkstemp(path.data()));
  ASSERT_GE(regular.get(), 0) << std::strerror(errno);
  unlink(path.c_str());
  ASSERT_EQ(ftruncate(regular.get(), 8192), 0);
  ExpectRefused(&regular, 4096, "region file");
  // A pipe.
  int ends[2];
  ASSERT_EQ(pipe2(ends, O_CLOEXEC), 0);
  UniqueFd read_end(ends[0]);
  UniqueFd write_end(ends[1]);
  ExpectRefused(&read_end, 1, "not a memfd");
  ExpectRefused(&write_end, 1, "not a memfd");
  // No descriptor at all.
  UniqueFd none;
  ExpectRefused(&none, 4096, "no region file");
  // The control: a sealed memfd.
  UniqueFd sealed = Memfd(8192, kSizeSeals);
  ExpectAdopted(&sealed, 8192);
}

TEST(RegionFileTest, AdoptRefusesMemfdsThatMayChangeSize) {
  const std::string needle = "not sealed against shrinking and growing";
  UniqueFd unsealable = Memfd(8192, 0, /*sealable=*/false);
  ExpectRefused(&unsealable, 4096, needle);
  UniqueFd unsealed = Memfd(8192, 0);
  ExpectRefused(&unsealed, 4096, needle);
  UniqueFd shrink_only = Memfd(8192, F_SEAL_SHRINK);
  ExpectRefused(&shrink_only, 4096, needle);
  UniqueFd grow_only = Memfd(8192, F_SEAL_GROW);
  ExpectRefused(&grow_only, 4096, needle);
  // The control: both seals, and the first refused file once it has the other seal too.
  ASSERT_EQ(fcntl(shrink_only.get(), F_ADD_SEALS, F_SEAL_GROW), 0) << std::strerror(errno);
  ExpectAdopted(&shrink_only, 8192);
  UniqueFd sealed = Memfd(8192, kSizeSeals | F_SEAL_SEAL);
  ExpectAdopted(&sealed, 8192);
}

TEST(RegionFileTest, AdoptRefusesADescriptorNotOpenForReadingAndWriting) {
  UniqueFd sealed = Memfd(8192, kSizeSeals);
  UniqueFd read_only = Reopen(sealed.get(), O_RDONLY);
  ExpectRefused(&read_only, 4096, "not open for reading and writing");
  UniqueFd write_only = Reopen(sealed.get(), O_WRONLY);
  ExpectRefused(&write_only, 4096, "not open for reading and writing");
  // The control: the same file reopened read-write.
  UniqueFd read_write = Reopen(sealed.get(), O_RDWR);
  ExpectAdopted(&read_write, 8192);
}

// Only a file of exactly the region's length: a longer one could hold the region's bytes in
// holes while the pages past them make it look allocated.
TEST(RegionFileTest, AdoptRefusesAFileOfAnotherLengthThanTheRegion) {
  UniqueFd sealed = Memfd(8192, kSizeSeals);
  ExpectRefused(&sealed, 8193, "holds 8192 bytes, fewer than the region's 8193");
  ExpectRefused(&sealed, ~uint64_t{0}, "fewer than");
  ExpectRefused(&sealed, 4096, "holds 8192 bytes, more than the region's 4096");
  // The control: the same file, at its exact length.
  ExpectAdopted(&sealed, 8192);
}

// The header's promise for a client that seals its file against writes: adopted, read, and every
// Write Unavailable.
TEST(RegionFileTest, WriteSealedFileIsReadOnly) {
  UniqueFd sealed = Memfd(8192, kSizeSeals | F_SEAL_WRITE);
  Result<RegionFile> region = RegionFile::Adopt(&sealed, 8192);
  ASSERT_TRUE(region.ok()) << region.status().ToString();
  std::vector<uint8_t> bytes(16, 0xEE);
  ASSERT_TRUE(region->Read(100, bytes).ok());
  EXPECT_EQ(bytes, std::vector<uint8_t>(16, 0));
  EXPECT_EQ(region->Write(100, bytes).code(), StatusCode::kUnavailable);
}

// A sparse file would have the server's writes allocate its pages (charged to the server): only
// one whose pages the client allocated is taken.
TEST(RegionFileTest, AdoptRefusesASparseFile) {
  UniqueFd sparse = Memfd(64 << 10, kSizeSeals, true, /*sparse=*/true);
  ExpectRefused(&sparse, 64 << 10, "sparse");
  UniqueFd allocated = Memfd(64 << 10, kSizeSeals);
  ExpectAdopted(&allocated, 64 << 10);
}

// Allocated() tells a file the client punched a hole into after the hand-over.
TEST(RegionFileTest, AllocatedTellsAPunchedHole) {
  UniqueFd fd = Memfd(64 << 10, kSizeSeals);
  UniqueFd client(dup(fd.get()));
  Result<RegionFile> region = RegionFile::Adopt(&fd, 64 << 10);
  ASSERT_TRUE(region.ok()) << region.status().ToString();
  EXPECT_TRUE(region->Allocated());
  ASSERT_EQ(fallocate(client.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 8192, 4096), 0)
      << std::strerror(errno);
  EXPECT_FALSE(region->Allocated());
}

}  // namespace
}  // namespace kvault::transport
