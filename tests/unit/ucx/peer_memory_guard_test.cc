// PeerMemoryGuard on real shared mappings of a memfd that the test shrinks under them, as a
// client can shrink the posix segment kvaultd maps: inside a watched region the fault is
// absorbed, anywhere else SIGBUS still ends the process.

#include "kvault/transport/ucx/peer_memory_guard.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
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
  int fd() const { return fd_; }
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
  // The whole region was replaced at once: the rest reads zeros, writes go nowhere, and no
  // further fault is taken, from either end.
  EXPECT_EQ(file.data()[kBytes - 1], 0);
  EXPECT_EQ(file.data()[0], 0);
  file.data()[kBytes - 1] = 7;
  EXPECT_EQ(PeerMemoryGuard::absorbed_total(), before + 1);
}

TEST(PeerMemoryGuardTest, AWriteIntoAWatchedRegionCutToNothingIsAbsorbedToo) {
  SharedFile file;
  ASSERT_TRUE(file.ok());
  Result<PeerMemoryGuard> guard = PeerMemoryGuard::Watch(Address(file.data()), kBytes);
  ASSERT_TRUE(guard.ok());
  const uint64_t before = PeerMemoryGuard::absorbed_total();
  file.ShrinkTo(0);
  // Backwards, as memmove copies an overlapping range: still one fault for the region.
  std::vector<uint8_t> bytes(kBytes, 3);
  for (size_t at = kBytes; at > 0; at -= 4096) {
    std::memcpy(const_cast<uint8_t*>(file.data()) + at - 4096, bytes.data(), 4096);
  }
  EXPECT_TRUE(guard->cut_short());
  EXPECT_EQ(PeerMemoryGuard::absorbed_total(), before + 1);
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

TEST(PeerMemoryGuardTest, EveryRegionSharingAReplacedPageIsCutShort) {
  SharedFile file;
  ASSERT_TRUE(file.ok());
  const auto* base = const_cast<const uint8_t*>(file.data());
  // Three keys of one mapping: the second half (where the fault is), the whole (sharing its
  // pages), the first quarter (inside the file's new end, sharing no page with the second half).
  Result<PeerMemoryGuard> tail = PeerMemoryGuard::Watch(base + kBytes / 2, kBytes / 2);
  Result<PeerMemoryGuard> whole = PeerMemoryGuard::Watch(base, kBytes);
  Result<PeerMemoryGuard> head = PeerMemoryGuard::Watch(base, kBytes / 4);
  ASSERT_TRUE(whole.ok() && tail.ok() && head.ok());
  file.ShrinkTo(kBytes / 4);
  // The first slot that holds the address wins: `tail`, watched first.
  EXPECT_EQ(file.data()[kBytes / 2 + 10], 0);
  EXPECT_TRUE(tail->cut_short());
  EXPECT_TRUE(whole->cut_short()) << "part of it reads zeros now";
  EXPECT_FALSE(head->cut_short());
  EXPECT_EQ(file.data()[0], 0x5A);
  EXPECT_EQ(file.data()[kBytes / 4 - 1], 0x5A);
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

TEST(PeerMemoryGuardTest, RegionsOutsideOneSharedMappingAndBadPageSizesAreRefused) {
  SharedFile file;
  ASSERT_TRUE(file.ok());
  const auto* base = const_cast<const uint8_t*>(file.data());
  // Positive controls: the mapping itself, and any part of it.
  EXPECT_TRUE(PeerMemoryGuard::Watch(base, kBytes).ok());
  EXPECT_TRUE(PeerMemoryGuard::Watch(base + 100, 5000).ok());
  auto code = [](Result<PeerMemoryGuard> r) { return r.status().code(); };
  EXPECT_EQ(code(PeerMemoryGuard::Watch(nullptr, 10)), StatusCode::kInvalidArgument);
  EXPECT_EQ(code(PeerMemoryGuard::Watch(base, 0)), StatusCode::kInvalidArgument);
  EXPECT_EQ(code(PeerMemoryGuard::Watch(reinterpret_cast<void*>(~uintptr_t{0} - 4), 10)),
            StatusCode::kInvalidArgument);
  // Past the end of the mapping: a replacement would reach whatever lies behind it.
  EXPECT_EQ(code(PeerMemoryGuard::Watch(base, kBytes + 1)), StatusCode::kInvalidArgument);
  // Private memory (the stack, the heap) is no peer's mapping.
  int on_stack = 0;
  EXPECT_EQ(code(PeerMemoryGuard::Watch(&on_stack, sizeof(on_stack))),
            StatusCode::kInvalidArgument);
  std::vector<uint8_t> heap(1 << 20);
  EXPECT_EQ(code(PeerMemoryGuard::Watch(heap.data(), heap.size())), StatusCode::kInvalidArgument);
  // Told which file the peer's segment is, the mapping must be that file.
  struct stat st {};
  ASSERT_EQ(fstat(file.fd(), &st), 0);
  const PeerMemoryGuard::MappedFile same{major(st.st_dev), minor(st.st_dev),
                                         static_cast<uint64_t>(st.st_ino), false};
  PeerMemoryGuard::MappedFile other = same;
  other.inode += 1;
  EXPECT_TRUE(PeerMemoryGuard::Watch(base, kBytes, 0, std::span(&same, 1)).ok());
  EXPECT_EQ(code(PeerMemoryGuard::Watch(base, kBytes, 0, std::span(&other, 1))),
            StatusCode::kInvalidArgument);
  other = same;
  other.minor += 1;
  EXPECT_EQ(code(PeerMemoryGuard::Watch(base, kBytes, 0, std::span(&other, 1))),
            StatusCode::kInvalidArgument);
  other.any_device = true;  // the inode alone (how a sysv segment is told)
  EXPECT_TRUE(PeerMemoryGuard::Watch(base, kBytes, 0, std::span(&other, 1)).ok());
  // Page sizes: a power of two, at least the system's.
  EXPECT_EQ(code(PeerMemoryGuard::Watch(base, kBytes, 3000)), StatusCode::kInvalidArgument);
  EXPECT_EQ(code(PeerMemoryGuard::Watch(base, kBytes, 1024)), StatusCode::kInvalidArgument);
  // Whole pages of 2 MiB around a 64 KiB mapping are not all inside it.
  EXPECT_EQ(code(PeerMemoryGuard::Watch(base, kBytes, 2 << 20)), StatusCode::kInvalidArgument);
}

TEST(PeerMemoryGuardTest, WatchingIsBoundedAndSlotsComeBack) {
  SharedFile file;
  ASSERT_TRUE(file.ok());
  std::vector<PeerMemoryGuard> guards;
  Status refused;
  for (size_t i = 0; i <= PeerMemoryGuard::kMaxWatched; ++i) {
    Result<PeerMemoryGuard> g = PeerMemoryGuard::Watch(Address(file.data()), 4096);
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
  EXPECT_TRUE(PeerMemoryGuard::Watch(Address(file.data()), 4096).ok());
}

TEST(PeerMemoryGuardTest, ASegmentInHugePagesIsReplacedInWholeHugePages) {
  constexpr size_t kHuge = 2 << 20;
  const int fd = memfd_create("peer-memory-guard-huge", MFD_CLOEXEC | MFD_HUGETLB);
  void* p = fd >= 0 && ftruncate(fd, 2 * kHuge) == 0
                ? mmap(nullptr, 2 * kHuge, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
                : MAP_FAILED;
  if (p == MAP_FAILED) {
    if (fd >= 0) close(fd);
    GTEST_SKIP() << "no 2 MiB huge pages on this machine (vm.nr_hugepages is 0)";
  }
  auto* bytes = static_cast<volatile uint8_t*>(p);
  bytes[0] = 1;
  bytes[kHuge] = 2;
  {
    // A region inside the second huge page, watched with the mapping's page size (what
    // SharedSegmentHold reports for a file on hugetlbfs).
    Result<PeerMemoryGuard> guard =
        PeerMemoryGuard::Watch(const_cast<uint8_t*>(bytes) + kHuge + 4096, 8192, kHuge);
    ASSERT_TRUE(guard.ok()) << guard.status().ToString();
    ASSERT_EQ(ftruncate(fd, kHuge), 0);
    EXPECT_EQ(bytes[kHuge + 5000], 0);
    EXPECT_TRUE(guard->cut_short());
    EXPECT_EQ(bytes[0], 1) << "the first huge page is still the file's";
  }
  munmap(p, 2 * kHuge);
  close(fd);
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

// A SIGBUS a process sends (here sigqueue-like, with an address inside the watched region made
// up by the sender) is not a fault: it takes its old course, the default here.
TEST(PeerMemoryGuardDeathTest, ASigbusSentByAProcessIsNotAbsorbedWhateverAddressItNames) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        SharedFile file;
        Result<PeerMemoryGuard> guard = PeerMemoryGuard::Watch(Address(file.data()), kBytes);
        if (!guard.ok()) _exit(3);
        siginfo_t info{};
        info.si_signo = SIGBUS;
        info.si_code = SI_QUEUE;
        info.si_addr = const_cast<uint8_t*>(file.data()) + 100;
        syscall(SYS_rt_tgsigqueueinfo, getpid(), gettid(), SIGBUS, &info);
        _exit(5);
      },
      ::testing::KilledBySignal(SIGBUS), "");
}

}  // namespace
}  // namespace kvault::transport
