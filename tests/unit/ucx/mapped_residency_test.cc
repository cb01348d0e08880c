// MappedResidency: touched chunks of shared mappings are counted against the budget, and once
// over it the least recently touched chunk's pages leave this process's page tables (checked in
// /proc/self/pagemap) while their bytes stay in the file; a chunk touched again is kept, beside
// an untouched one that goes. Admit passes over a range seen once (nothing mapped) and admits it
// the second time (the same start, no longer), never admits pieces of a chunk streamed once,
// forgets ranges passed over long ago, and always admits for an empty mapping.
// A destroyed mapping's chunks stop counting.
#include "kvault/transport/local/mapped_residency.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kvault/common/file_io.h"

namespace kvault::transport {
namespace {

constexpr size_t kChunk = MappedResidency::kChunkBytes;

// A shared mapping of a fresh memfd of `bytes`, every byte set to its offset's low byte.
class SharedMapping {
 public:
  explicit SharedMapping(size_t bytes) : bytes_(bytes) {
    fd_ = UniqueFd(memfd_create("mapped-residency-test", MFD_CLOEXEC));
    EXPECT_GE(fd_.get(), 0) << std::strerror(errno);
    EXPECT_EQ(ftruncate(fd_.get(), static_cast<off_t>(bytes)), 0);
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd_.get(), 0);
    EXPECT_NE(p, MAP_FAILED) << std::strerror(errno);
    data_ = static_cast<uint8_t*>(p);
    for (size_t i = 0; i < bytes; ++i) data_[i] = static_cast<uint8_t>(i);
  }
  ~SharedMapping() { munmap(data_, bytes_); }
  uint8_t* data() const { return data_; }

  // Whether the page holding data()[offset] is mapped in this process now.
  bool Present(size_t offset) const {
    static const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    const uintptr_t address = reinterpret_cast<uintptr_t>(data_ + offset);
    UniqueFd map(open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
    uint64_t entry = 0;
    EXPECT_EQ(pread(map.get(), &entry, sizeof entry, static_cast<off_t>(address / page * 8)),
              static_cast<ssize_t>(sizeof entry));
    return (entry >> 63) != 0;
  }
  // Whether every byte still holds what the constructor wrote.
  bool Intact() const {
    for (size_t i = 0; i < bytes_; ++i) {
      if (data_[i] != static_cast<uint8_t>(i)) return false;
    }
    return true;
  }

 private:
  size_t bytes_;
  UniqueFd fd_;
  uint8_t* data_ = nullptr;
};

// The mapping's base is not chunk-aligned in general: offsets below are of whole chunks of the
// address space, so each test touches ranges inside aligned chunks.
size_t AlignedOffset(const SharedMapping& m) {
  const uintptr_t base = reinterpret_cast<uintptr_t>(m.data());
  return static_cast<size_t>(((base + kChunk - 1) & ~uintptr_t{kChunk - 1}) - base);
}

TEST(MappedResidencyTest, DropsTheLeastRecentlyTouchedChunkOverTheBudget) {
  MappedResidency residency(2 * kChunk);
  SharedMapping m(6 * kChunk);
  ResidentMapping r(&residency, m.data(), 6 * kChunk);
  const size_t a = AlignedOffset(m);
  const size_t b = a + kChunk;
  const size_t c = a + 2 * kChunk;
  r.Touched(m.data() + a, 4096);
  r.Touched(m.data() + b, 4096);
  EXPECT_EQ(residency.resident_bytes(), 2 * kChunk);
  EXPECT_EQ(residency.dropped_bytes(), 0u);
  EXPECT_TRUE(m.Present(a));
  EXPECT_TRUE(m.Present(b));

  // a touched again: b is now the oldest, and goes when c comes.
  r.Touched(m.data() + a, 1);
  r.Touched(m.data() + c, kChunk);
  EXPECT_EQ(residency.resident_bytes(), 2 * kChunk);
  EXPECT_EQ(residency.dropped_bytes(), kChunk);
  EXPECT_FALSE(m.Present(b)) << "the oldest chunk's page is still mapped";
  EXPECT_TRUE(m.Present(a)) << "the chunk touched again was dropped";
  EXPECT_TRUE(m.Present(c));
  // Dropped pages lose nothing: reading maps them again from the file.
  EXPECT_TRUE(m.Intact());
}

// A range larger than the budget: its oldest chunks are dropped once it is reported, so what
// stays mapped is what is counted.
TEST(MappedResidencyTest, ARangeLargerThanTheBudgetLeavesOnlyTheBudgetMapped) {
  MappedResidency residency(2 * kChunk);
  SharedMapping m(5 * kChunk);
  ResidentMapping r(&residency, m.data(), 5 * kChunk);
  const size_t a = AlignedOffset(m);
  std::memset(m.data() + a, 1, 4 * kChunk);  // the copy, before it is reported
  r.Touched(m.data() + a, 4 * kChunk);
  EXPECT_EQ(residency.resident_bytes(), 2 * kChunk);
  EXPECT_EQ(residency.dropped_bytes(), 2 * kChunk);
  EXPECT_EQ(residency.failed_drops(), 0u);
  EXPECT_FALSE(m.Present(a));
  EXPECT_FALSE(m.Present(a + kChunk + 4096));
  EXPECT_TRUE(m.Present(a + 2 * kChunk));
  EXPECT_TRUE(m.Present(a + 4 * kChunk - 1));
}

TEST(MappedResidencyTest, TouchesOutsideTheMappingCountNothing) {
  MappedResidency residency(2 * kChunk);
  SharedMapping m(4 * kChunk);
  ResidentMapping r(&residency, m.data() + kChunk, kChunk);
  r.Touched(m.data(), 4096);              // before it
  r.Touched(m.data() + 3 * kChunk, 100);  // after it
  r.Touched(m.data() + kChunk, 0);        // empty
  EXPECT_EQ(residency.resident_bytes(), 0u);
  r.Touched(m.data() + kChunk, 1);  // control: inside
  EXPECT_GT(residency.resident_bytes(), 0u);
  EXPECT_LE(residency.resident_bytes(), kChunk);
}

TEST(MappedResidencyTest, AdmitsARangeTheSecondTimeItIsSeen) {
  MappedResidency residency(2 * kChunk);
  SharedMapping m(4 * kChunk);
  ResidentMapping r(&residency, m.data(), 4 * kChunk);
  const size_t a = AlignedOffset(m);
  EXPECT_FALSE(r.Admit(m.data() + a, 4096)) << "seen once: go through the file";
  EXPECT_EQ(residency.resident_bytes(), 0u);
  EXPECT_TRUE(r.Admit(m.data() + a, 4096)) << "seen twice: reused, go through the mapping";
  EXPECT_EQ(residency.resident_bytes(), 0u) << "counted before the copy was reported";
  r.Touched(m.data() + a, 4096);
  EXPECT_EQ(residency.resident_bytes(), kChunk);
  EXPECT_TRUE(r.Admit(m.data() + a + 8192, 100)) << "counted as touched: stays admitted";
}

// A chunk streamed piece after piece (as a store's chunks of one object are) is new bytes each
// time, not reuse: none of it is admitted, until a piece comes again.
TEST(MappedResidencyTest, PiecesOfOneChunkSeenOnceAreNotAdmitted) {
  MappedResidency residency(2 * kChunk);
  SharedMapping m(2 * kChunk);
  ResidentMapping r(&residency, m.data(), 2 * kChunk);
  const size_t a = AlignedOffset(m);
  constexpr size_t kPiece = 64 << 10;
  for (size_t at = 0; at < kChunk; at += kPiece) {
    EXPECT_FALSE(r.Admit(m.data() + a + at, kPiece)) << at;
  }
  EXPECT_EQ(residency.resident_bytes(), 0u);
  EXPECT_TRUE(r.Admit(m.data() + a + kPiece, kPiece));  // seen before
}

TEST(MappedResidencyTest, ForgetsRangesPassedOverLongAgo) {
  MappedResidency residency(kChunk);  // remembers kGhostRounds chunks' worth of ranges
  const size_t remembered = MappedResidency::kGhostRounds;
  SharedMapping m((remembered + 3) * kChunk);
  ResidentMapping r(&residency, m.data(), (remembered + 3) * kChunk);
  const size_t first = AlignedOffset(m);
  for (size_t i = 0; i <= remembered; ++i) {
    EXPECT_FALSE(r.Admit(m.data() + first + i * kChunk, kChunk));
  }
  // The first one was pushed out by the later ones; the last one is still remembered.
  EXPECT_TRUE(r.Admit(m.data() + first + remembered * kChunk, kChunk));
  EXPECT_FALSE(r.Admit(m.data() + first, kChunk));
}

// A range is reuse when it starts where one passed over started and is no longer; a longer one
// is remembered as that long and admitted the next time.
TEST(MappedResidencyTest, AdmitsOnlyTheSameStartNoLonger) {
  MappedResidency residency(4 * kChunk);
  SharedMapping m(4 * kChunk);
  ResidentMapping r(&residency, m.data(), 4 * kChunk);
  const size_t a = AlignedOffset(m);
  EXPECT_FALSE(r.Admit(m.data() + a, 8192));
  EXPECT_FALSE(r.Admit(m.data() + a + 4096, 4096)) << "another start is not reuse";
  EXPECT_FALSE(r.Admit(m.data() + a, 16384)) << "longer than seen";
  EXPECT_TRUE(r.Admit(m.data() + a, 12288));
}

TEST(MappedResidencyTest, AnEmptyMappingAdmitsEverythingAndCountsNothing) {
  ResidentMapping empty;
  EXPECT_FALSE(empty.counts());
  uint8_t byte = 0;
  EXPECT_TRUE(empty.Admit(&byte, 1));
  empty.Touched(&byte, 1);
  MappedResidency residency(kChunk);
  EXPECT_TRUE(ResidentMapping(&residency, &byte, 1).counts());  // control
  EXPECT_FALSE(ResidentMapping(nullptr, &byte, 1).counts());
}

TEST(MappedResidencyTest, ADestroyedMappingStopsCounting) {
  MappedResidency residency(4 * kChunk);
  SharedMapping m(4 * kChunk);
  SharedMapping other(2 * kChunk);
  ResidentMapping kept(&residency, other.data(), 2 * kChunk);
  kept.Touched(other.data() + AlignedOffset(other), 1);
  {
    ResidentMapping gone(&residency, m.data(), 4 * kChunk);
    gone.Touched(m.data() + AlignedOffset(m), kChunk);
    EXPECT_EQ(residency.resident_bytes(), 2 * kChunk);
    ResidentMapping moved = std::move(gone);  // the move keeps counting as one mapping
    EXPECT_EQ(residency.resident_bytes(), 2 * kChunk);
  }
  EXPECT_EQ(residency.resident_bytes(), kChunk) << "only the live mapping's chunk counts";
  EXPECT_EQ(residency.dropped_bytes(), 0u);
}

}  // namespace
}  // namespace kvault::transport
