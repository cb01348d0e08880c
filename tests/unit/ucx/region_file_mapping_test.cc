// RegionFile::MapShared: a mapped region file reads and writes the client's bytes exactly,
// through the file the first time a range is seen and through the mapping once it is reused
// (the residency counts it then, and not before); writes through either way show in the
// client's mapping. A file sealed against writes cannot be mapped and still reads through the
// file; a region whose mapping is destroyed stops counting in the residency.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "kvault/common/file_io.h"
#include "kvault/common/status.h"
#include "kvault/transport/local/mapped_residency.h"
#include "kvault/transport/local/region_file.h"
#include "kvault/transport/local/shared_memory_file.h"

namespace kvault::transport {
namespace {

constexpr size_t kChunk = MappedResidency::kChunkBytes;

std::vector<uint8_t> Pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(seed + 13 * i + (i >> 9));
  return out;
}

// The server's side of `file`: a RegionFile over a duplicate of its descriptor.
RegionFile ServerSide(const SharedMemoryFile& file) {
  UniqueFd dup_fd(dup(file.descriptor()));
  Result<RegionFile> region = RegionFile::Adopt(&dup_fd, file.length());
  EXPECT_TRUE(region.ok()) << region.status().ToString();
  return std::move(region).value();
}

// Shared memory mapped in this process now (RssShmem of /proc/self/status), in bytes.
uint64_t MappedSharedBytes() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("RssShmem:", 0) == 0) return std::stoull(line.substr(9)) << 10;
  }
  ADD_FAILURE() << "no RssShmem in /proc/self/status";
  return 0;
}

TEST(RegionFileMappingTest, CopiesThroughTheFileFirstAndTheMappingOnceReused) {
  MappedResidency residency(4 * kChunk);
  // The client's bytes written through the file: the region's mapping is this process's only one.
  UniqueFd fd(memfd_create("region-mapping-test", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  ASSERT_GE(fd.get(), 0);
  const std::vector<uint8_t> pattern = Pattern(4 * kChunk, 3);
  ASSERT_EQ(pwrite(fd.get(), pattern.data(), pattern.size(), 0),
            static_cast<ssize_t>(pattern.size()));
  ASSERT_EQ(fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
  UniqueFd client(dup(fd.get()));
  Result<RegionFile> adopted = RegionFile::Adopt(&fd, pattern.size());
  ASSERT_TRUE(adopted.ok()) << adopted.status().ToString();
  RegionFile region = std::move(*adopted);
  ASSERT_TRUE(region.MapShared(&residency).ok());
  EXPECT_TRUE(region.mapped());

  constexpr size_t kAt = 12345;
  constexpr size_t kBytes = 300000;
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    const uint64_t mapped_before = MappedSharedBytes();
    std::vector<uint8_t> read(kBytes);
    ASSERT_TRUE(region.Read(kAt, read).ok());
    EXPECT_EQ(read, std::vector<uint8_t>(pattern.begin() + kAt, pattern.begin() + kAt + kBytes));
    // Seen once: through the file, nothing mapped or counted; from the second time on, through
    // the mapping, counted.
    if (round == 0) {
      EXPECT_EQ(residency.resident_bytes(), 0u);
      EXPECT_LT(MappedSharedBytes(), mapped_before + kBytes / 2) << "bytes used once were mapped";
    } else {
      EXPECT_GT(residency.resident_bytes(), 0u);
    }
    if (round == 1) {
      EXPECT_GE(MappedSharedBytes(), mapped_before + kBytes - 8192) << "reused bytes not mapped";
    }
  }

  // Writes land in the client's memory whichever way they go: a fresh range (through the file)
  // and the reused one (through the mapping).
  auto client_bytes = [&](size_t at, size_t n) {
    std::vector<uint8_t> out(n);
    EXPECT_EQ(pread(client.get(), out.data(), n, static_cast<off_t>(at)), static_cast<ssize_t>(n));
    return out;
  };
  const std::vector<uint8_t> fresh = Pattern(5000, 90);
  const size_t far = 3 * kChunk + 100;
  ASSERT_TRUE(region.Write(far, fresh).ok());
  EXPECT_EQ(client_bytes(far, fresh.size()), fresh);
  const std::vector<uint8_t> again = Pattern(7000, 150);
  ASSERT_TRUE(region.Write(kAt, again).ok());
  EXPECT_EQ(client_bytes(kAt, again.size()), again);
  EXPECT_EQ(client_bytes(kAt + again.size(), 1)[0], pattern[kAt + again.size()]);
  // The client's later writes are what the next read through the mapping sees.
  const uint8_t flipped = static_cast<uint8_t>(~again[0]);
  ASSERT_EQ(pwrite(client.get(), &flipped, 1, kAt), 1);
  uint8_t first = 0;
  ASSERT_TRUE(region.Read(kAt, std::span(&first, 1)).ok());
  EXPECT_EQ(first, flipped);
}

TEST(RegionFileMappingTest, AWriteSealedFileIsNotMappedAndStillReads) {
  UniqueFd fd(memfd_create("region-mapping-test", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  ASSERT_GE(fd.get(), 0);
  ASSERT_EQ(ftruncate(fd.get(), 8192), 0);
  ASSERT_EQ(posix_fallocate(fd.get(), 0, 8192), 0);
  ASSERT_EQ(pwrite(fd.get(), "abc", 3, 100), 3);
  ASSERT_EQ(fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE), 0);
  Result<RegionFile> region = RegionFile::Adopt(&fd, 8192);
  ASSERT_TRUE(region.ok()) << region.status().ToString();
  MappedResidency residency(kChunk);
  EXPECT_EQ(region->MapShared(&residency).code(), StatusCode::kUnavailable);
  EXPECT_FALSE(region->mapped());
  for (int round = 0; round < 2; ++round) {
    char read[3] = {};
    ASSERT_TRUE(region->Read(100, std::span(reinterpret_cast<uint8_t*>(read), 3)).ok());
    EXPECT_EQ(std::memcmp(read, "abc", 3), 0);
  }
  EXPECT_EQ(residency.resident_bytes(), 0u);
}

// A mapped region assigned over another: the old one's counted chunks are forgotten before its
// mapping goes, and the new one reads its own bytes.
TEST(RegionFileMappingTest, AssigningARegionForgetsTheOldOnesChunks) {
  MappedResidency residency(4 * kChunk);
  Result<SharedMemoryFile> first = SharedMemoryFile::Create(kChunk);
  Result<SharedMemoryFile> second = SharedMemoryFile::Create(kChunk);
  ASSERT_TRUE(first.ok() && second.ok());
  std::memset(second->address(), 0x5C, kChunk);
  RegionFile region = ServerSide(*first);
  ASSERT_TRUE(region.MapShared(&residency).ok());
  std::vector<uint8_t> read(4096);
  ASSERT_TRUE(region.Read(0, read, RegionFile::Via::kMapping).ok());
  EXPECT_GT(residency.resident_bytes(), 0u);
  RegionFile other = ServerSide(*second);
  ASSERT_TRUE(other.MapShared(&residency).ok());
  region = std::move(other);
  EXPECT_EQ(residency.resident_bytes(), 0u);
  ASSERT_TRUE(region.Read(0, read, RegionFile::Via::kMapping).ok());
  EXPECT_EQ(read, std::vector<uint8_t>(4096, 0x5C));
  EXPECT_GT(residency.resident_bytes(), 0u);
}

TEST(RegionFileMappingTest, AForgottenRegionStopsCounting) {
  MappedResidency residency(4 * kChunk);
  Result<SharedMemoryFile> file = SharedMemoryFile::Create(kChunk);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  {
    RegionFile region = ServerSide(*file);
    ASSERT_TRUE(region.MapShared(&residency).ok());
    std::vector<uint8_t> read(4096);
    ASSERT_TRUE(region.Read(0, read).ok());
    ASSERT_TRUE(region.Read(0, read).ok());
    EXPECT_GT(residency.resident_bytes(), 0u);
    RegionFile moved = std::move(region);
    ASSERT_TRUE(moved.Read(0, read).ok());
    EXPECT_GT(residency.resident_bytes(), 0u);
  }
  EXPECT_EQ(residency.resident_bytes(), 0u);
}

}  // namespace
}  // namespace kvault::transport
