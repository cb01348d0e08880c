// PeerMemoryGuard on real shared mappings of a memfd that the test shrinks under them, as a
// client can shrink the posix segment kvaultd maps: inside a watched region the fault is
// absorbed, anywhere else SIGBUS still ends the process.

#include "kvault/transport/ucx/peer_memory_guard.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <vector>

namespace kvault::transport {
namespace {

constexpr size_t kBytes = 64 << 10;

// A shared mapping of a file of kBytes, filled with 0x5A; the test can shrink the file.
class SharedFile {
 public:
  SharedFile() {
    fd_ = memfd_create("peer-memory-guard-test", MFD_CLOEXEC);
    if (fd_ < 0 || ftruncate(fd_, kBytes) != 0) return;
    void* p = mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    if (p == MAP_FAILED) return;
    data_ = static_cast<volatile uint8_t*>(p);
    for (size_t i = 0; i < kBytes; ++i) data_[i] = 0x5A;
  }
  ~SharedFile() {
    if (data_ != nullptr) munmap(const_cast<uint8_t*>(data_), kBytes);
    if (fd_ >= 0) close(fd_);
  }
  bool ok() const { return data_ != nullptr; }
  volatile uint8_t* data() const { return data_; }
  void ShrinkTo(size_t bytes) const { ASSERT_EQ(ftruncate(fd_, static_cast<off_t>(bytes)), 0); }

 private:
  int fd_ = -1;
  volatile uint8_t* data_ = nullptr;
};

const void* Address(volatile uint8_t* p) { return const_cast<const uint8_t*>(p); }

TEST(PeerMemoryGuardTest, AReadPastTheShrunkEndOfAWatchedRegionGivesZerosAndIsReported) {
  SharedFile file;
  ASSERT_TRUE(file.ok());
  Result<PeerMemoryGuard> guard = PeerMemoryGuard::Watch(Address(file.data()), kBytes);
  ASSERT_TRUE(guard.ok()) << guard.status().ToString();
  EXPECT_TRUE(guard->watching());
  // Positive control: whole file, nothing absorbed.
  EXPECT_EQ(file.data()[kBytes - 1], 0x5A);
  EXPECT_FALSE(guard->cut_short());
  const uint64_t before = PeerMemoryGuard::absorbed_total();

  file.ShrinkTo(kBytes / 4);
  EXPECT_EQ(file.data()[kBytes / 2], 0);  // past the end: a zero page, not SIGBUS
  EXPECT_TRUE(guard->cut_short());
  EXPECT_EQ(PeerMemoryGuard::absorbed_total(), before + 1);
  // What the file still holds reads as before; writes past the end go nowhere, without a fault.
  EXPECT_EQ(file.data()[kBytes / 4 - 1], 0x5A);
  file.data()[kBytes - 1] = 7;
  EXPECT_EQ(PeerMemoryGuard::absorbed_total(), before + 1);
}

TEST(PeerMemoryGuardTest, AWriteIntoAWatchedRegionCutToNothingIsAbsorbedToo) {
  SharedFile file;
  ASSERT_TRUE(file.ok());
  Result<PeerMemoryGuard> guard = PeerMemoryGuard::Watch(Address(file.data()), kBytes);
  ASSERT_TRUE(guard.ok());
  file.ShrinkTo(0);
  std::vector<uint8_t> bytes(kBytes, 3);
  std::memcpy(const_cast<uint8_t*>(file.data()), bytes.data(), bytes.size());
  EXPECT_TRUE(guard->cut_short());
}

TEST(PeerMemoryGuardTest, OnlyTheGuardWhoseRegionFaultedIsCutShort) {
  SharedFile shrunk;
  SharedFile intact;
  ASSERT_TRUE(shrunk.ok() && intact.ok());
  Result<PeerMemoryGuard> a = PeerMemoryGuard::Watch(Address(shrunk.data()), kBytes);
  Result<PeerMemoryGuard> b = PeerMemoryGuard::Watch(Address(intact.data()), kBytes);
  ASSERT_TRUE(a.ok() && b.ok());
  shrunk.ShrinkTo(0);
  EXPECT_EQ(shrunk.data()[0], 0);
  EXPECT_TRUE(a->cut_short());
  EXPECT_FALSE(b->cut_short());
  EXPECT_EQ(intact.data()[0], 0x5A);
}

TEST(PeerMemoryGuardTest, EveryRegionSharingAPatchedPageIsCutShort) {
  SharedFile file;
  ASSERT_TRUE(file.ok());
  const auto* base = const_cast<const uint8_t*>(file.data());
  // Three keys of one mapping: the whole, the second half (overlapping the fault), the first
  // quarter (before the file's new end, untouched by the patch).
  Result<PeerMemoryGuard> whole = PeerMemoryGuard::Watch(base, kBytes);
  Result<PeerMemoryGuard> tail = PeerMemoryGuard::Watch(base + kBytes / 2, kBytes / 2);
  Result<PeerMemoryGuard> head = PeerMemoryGuard::Watch(base, kBytes / 4);
  ASSERT_TRUE(whole.ok() && tail.ok() && head.ok());
  file.ShrinkTo(kBytes / 4);
  EXPECT_EQ(file.data()[kBytes / 4 + 10], 0);  // faults in `whole` only
  EXPECT_TRUE(whole->cut_short());
  EXPECT_TRUE(tail->cut_short()) << "its pages read zeros now";
  EXPECT_FALSE(head->cut_short());
  EXPECT_EQ(file.data()[0], 0x5A);
}

TEST(PeerMemoryGuardTest, AMovedGuardKeepsWatchingAndADestroyedOneStops) {
  SharedFile file;
  ASSERT_TRUE(file.ok());
  Result<PeerMemoryGuard> watched = PeerMemoryGuard::Watch(Address(file.data()), kBytes);
  ASSERT_TRUE(watched.ok());
  PeerMemoryGuard moved = std::move(*watched);
  EXPECT_FALSE(watched->watching());
  EXPECT_TRUE(moved.watching());
  file.ShrinkTo(0);
  EXPECT_EQ(file.data()[100], 0);
  EXPECT_TRUE(moved.cut_short());
  EXPECT_FALSE(watched->cut_short());
}

TEST(PeerMemoryGuardTest, BadRegionsAreRefused) {
  EXPECT_EQ(PeerMemoryGuard::Watch(nullptr, 10).status().code(), StatusCode::kInvalidArgument);
  int x = 0;
  EXPECT_EQ(PeerMemoryGuard::Watch(&x, 0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(PeerMemoryGuard::Watch(reinterpret_cast<void*>(~uintptr_t{0} - 4), 10).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(PeerMemoryGuardTest, WatchingIsBoundedAndSlotsComeBack) {
  int x = 0;
  std::vector<PeerMemoryGuard> guards;
  Status refused;
  for (size_t i = 0; i <= PeerMemoryGuard::kMaxWatched; ++i) {
    Result<PeerMemoryGuard> g = PeerMemoryGuard::Watch(&x, sizeof(x));
    if (!g.ok()) {
      refused = g.status();
      break;
    }
    guards.push_back(std::move(*g));
  }
  // Other tests of this process may hold a few.
  EXPECT_EQ(refused.code(), StatusCode::kResourceExhausted) << refused.ToString();
  EXPECT_GT(guards.size(), PeerMemoryGuard::kMaxWatched - 16);
  guards.pop_back();
  EXPECT_TRUE(PeerMemoryGuard::Watch(&x, sizeof(x)).ok());
}

// Positive control for the death tests below: the same access inside a watched region lives.
TEST(PeerMemoryGuardDeathTest, AFaultOutsideEveryWatchedRegionStillEndsTheProcess) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        SharedFile watched_file;
        SharedFile unwatched_file;
        Result<PeerMemoryGuard> guard =
            PeerMemoryGuard::Watch(Address(watched_file.data()), kBytes);
        if (!guard.ok()) _exit(3);
        watched_file.ShrinkTo(0);
        if (watched_file.data()[0] != 0) _exit(4);  // absorbed
        unwatched_file.ShrinkTo(0);
        (void)unwatched_file.data()[0];  // not watched: SIGBUS as always
        _exit(5);
      },
      ::testing::KilledBySignal(SIGBUS), "");
}

TEST(PeerMemoryGuardDeathTest, AFaultAfterTheGuardIsGoneEndsTheProcess) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        SharedFile file;
        {
          Result<PeerMemoryGuard> guard = PeerMemoryGuard::Watch(Address(file.data()), kBytes);
          if (!guard.ok()) _exit(3);
        }
        file.ShrinkTo(0);
        (void)file.data()[0];
        _exit(5);
      },
      ::testing::KilledBySignal(SIGBUS), "");
}

TEST(PeerMemoryGuardDeathTest, ASigbusSentByKillIsNotAbsorbed) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        SharedFile file;
        Result<PeerMemoryGuard> guard = PeerMemoryGuard::Watch(Address(file.data()), kBytes);
        if (!guard.ok()) _exit(3);
        kill(getpid(), SIGBUS);
        _exit(5);
      },
      ::testing::KilledBySignal(SIGBUS), "");
}

}  // namespace
}  // namespace kvault::transport
