// SharedSegmentHold on keys built by the test in UCX 1.13's layout, with real segments of this
// process (a memfd for posix, a sysv segment): which entries it holds and rewrites, which it
// leaves to UCX, and that a segment whose owner is gone is refused. The fork test
// (transfer_engine_fork_test) covers keys packed by UCX itself and a real dead owner;
// forged_key_test, keys a real client forged and UCX would have mapped.

#include "ucx/shared_segment_hold.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <ucp/api/ucp.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace kvault::transport {
namespace {

constexpr uint64_t kProcfs = uint64_t{1} << 63;
constexpr uint64_t kShmOpen = uint64_t{1} << 62;
constexpr size_t kSegment = 1 << 20;

bool IsUcx113() {
  unsigned major = 0, minor = 0, release = 0;
  ucp_get_version(&major, &minor, &release);
  return major == 1 && minor == 13;
}

void Put64(std::vector<uint8_t>& out, uint64_t v) {
  const size_t at = out.size();
  out.resize(at + 8);
  std::memcpy(out.data() + at, &v, 8);
}

uint64_t Get64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// A packed key: md_map with one bit per entry, memory type host, then each entry (size + bytes).
std::vector<uint8_t> Key(const std::vector<std::vector<uint8_t>>& entries) {
  std::vector<uint8_t> key;
  Put64(key, (uint64_t{1} << entries.size()) - 1);
  key.push_back(0);  // UCS_MEMORY_TYPE_HOST
  for (const std::vector<uint8_t>& e : entries) {
    key.push_back(static_cast<uint8_t>(e.size()));
    key.insert(key.end(), e.begin(), e.end());
  }
  return key;
}

// posix entry in procfs mode: seg_id (flags | fd << 30 | pid), segment address and length.
std::vector<uint8_t> PosixEntry(uint64_t pid, uint64_t fd, uint64_t address, uint64_t length) {
  std::vector<uint8_t> e;
  Put64(e, kProcfs | kShmOpen | (fd << 30) | pid);
  Put64(e, address);
  Put64(e, length);
  return e;
}

std::vector<uint8_t> SysvEntry(uint32_t shmid, uint64_t address) {
  std::vector<uint8_t> e(4);
  std::memcpy(e.data(), &shmid, 4);
  Put64(e, address);
  return e;
}

// The offset of entry `i`'s bytes in a key built by Key().
size_t EntryAt(const std::vector<std::vector<uint8_t>>& entries, size_t i) {
  size_t at = 9;
  for (size_t j = 0; j < i; ++j) at += 1 + entries[j].size();
  return at + 1;
}

// A memfd of `bytes`, standing in for a client's posix segment; -1 when it cannot be made.
int SegmentMemfd(off_t bytes) {
  const int fd = memfd_create("hold-test", MFD_CLOEXEC);
  if (fd >= 0 && ftruncate(fd, bytes) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

class SharedSegmentHoldTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!IsUcx113()) GTEST_SKIP() << "the hold recognizes UCX 1.13's key layouts only";
  }
};

TEST_F(SharedSegmentHoldTest, HoldsTheOwnersPosixSegmentAndNamesItsOwnDescriptor) {
  const int memfd = SegmentMemfd(kSegment);
  ASSERT_GE(memfd, 0);
  const uint64_t base = 0x7f0000100000;  // the owner's address of the segment
  const std::vector<std::vector<uint8_t>> entries = {PosixEntry(getpid(), memfd, base, kSegment),
                                                     {} /* cma: no bytes */};
  const std::vector<uint8_t> key = Key(entries);
  Result<SharedSegmentHold> hold = SharedSegmentHold::Take(key, getpid(), base + 4096, 8192);
  ASSERT_TRUE(hold.ok()) << hold.status().ToString();
  EXPECT_EQ(hold->held(), 1u);
  ASSERT_EQ(hold->key().size(), key.size());
  // Only the seg_id changed: same flags, this process's pid, another descriptor.
  const size_t at = EntryAt(entries, 0);
  const uint64_t seg_id = Get64(hold->key().data() + at);
  EXPECT_EQ(seg_id >> 60, kProcfs >> 60 | kShmOpen >> 60);
  EXPECT_EQ(seg_id & ((uint64_t{1} << 30) - 1), static_cast<uint64_t>(getpid()));
  const int held_fd = static_cast<int>((seg_id & ~(uint64_t{0xF} << 60)) >> 30);
  EXPECT_NE(held_fd, memfd);
  EXPECT_TRUE(std::equal(key.begin(), key.begin() + at, hold->key().begin()));
  EXPECT_TRUE(std::equal(key.begin() + at + 8, key.end(), hold->key().begin() + at + 8));
  // The held descriptor is the same file, and outlives the owner's descriptor.
  struct stat a {
  }, b{};
  ASSERT_EQ(fstat(memfd, &a), 0);
  close(memfd);
  const std::string path = "/proc/self/fd/" + std::to_string(held_fd);
  ASSERT_EQ(stat(path.c_str(), &b), 0) << path;
  EXPECT_EQ(a.st_ino, b.st_ino);
  // Destroying the hold closes it.
  { SharedSegmentHold gone = std::move(*hold); }
  EXPECT_EQ(fcntl(held_fd, F_GETFD), -1);
}

TEST_F(SharedSegmentHoldTest, APosixSegmentWhoseDescriptorIsGoneIsRefused) {
  const int memfd = SegmentMemfd(kSegment);
  ASSERT_GE(memfd, 0);
  const uint64_t base = 0x7f0000100000;
  const std::vector<uint8_t> key = Key({PosixEntry(getpid(), memfd, base, kSegment)});
  // Positive control: while the owner's descriptor is open, the hold succeeds.
  ASSERT_TRUE(SharedSegmentHold::Take(key, getpid(), base, kSegment).ok());
  close(memfd);  // as a dead owner's descriptors are
  Result<SharedSegmentHold> hold = SharedSegmentHold::Take(key, getpid(), base, kSegment);
  ASSERT_FALSE(hold.ok());
  EXPECT_EQ(hold.status().code(), StatusCode::kUnavailable) << hold.status().ToString();
}

TEST_F(SharedSegmentHoldTest, ADescriptorThatIsNoSegmentIsRefusedWithoutBlocking) {
  // A FIFO without a writer: a plain (blocking) open of it through /proc waits for a writer
  // forever, so the hold must open without blocking, then refuse what is not a regular file.
  char dir[] = "/tmp/kvault-hold-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string fifo = std::string(dir) + "/fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  const int fd = open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  const uint64_t base = 0x7f0000100000;
  const std::vector<uint8_t> key = Key({PosixEntry(getpid(), fd, base, kSegment)});
  Result<SharedSegmentHold> hold = SharedSegmentHold::Take(key, getpid(), base, 4096);
  ASSERT_FALSE(hold.ok());
  EXPECT_EQ(hold.status().code(), StatusCode::kInvalidArgument) << hold.status().ToString();
  close(fd);
  unlink(fifo.c_str());
  rmdir(dir);
}

TEST_F(SharedSegmentHoldTest, APosixEntryOfAnotherProcessOrRegionIsRefused) {
  const int memfd = SegmentMemfd(kSegment);
  ASSERT_GE(memfd, 0);
  const uint64_t base = 0x7f0000100000;
  // Positive control: the owner's own segment holding the region.
  EXPECT_TRUE(SharedSegmentHold::Take(Key({PosixEntry(getpid(), memfd, base, kSegment)}), getpid(),
                                      base, 4096)
                  .ok());
  // Another pid than the key's owner (the segment of someone else), a region outside the segment.
  for (const std::vector<uint8_t>& entry : {PosixEntry(getpid() + 1, memfd, base, kSegment),
                                            PosixEntry(getpid(), memfd, base + kSegment, 64)}) {
    Result<SharedSegmentHold> hold =
        SharedSegmentHold::Take(Key({entry, {}}), getpid(), base, 4096);
    ASSERT_FALSE(hold.ok());
    EXPECT_EQ(hold.status().code(), StatusCode::kInvalidArgument) << hold.status().ToString();
  }
  close(memfd);
}

// A key whose region runs past the end of its segment's file would make the daemon read pages
// past the end of the file, which raises SIGBUS: refused before UCX sees it.
TEST_F(SharedSegmentHoldTest, APosixRegionPastTheEndOfItsFileIsRefused) {
  const int memfd = SegmentMemfd(kSegment / 2);
  ASSERT_GE(memfd, 0);
  const uint64_t base = 0x7f0000100000;
  const std::vector<uint8_t> key = Key({PosixEntry(getpid(), memfd, base, kSegment), {}});
  // Positive control: a region inside the file (the claimed segment may be longer: UCX rounds).
  EXPECT_TRUE(SharedSegmentHold::Take(key, getpid(), base + kSegment / 2 - 4096, 4096).ok());
  // One page further: past the end of the file.
  Result<SharedSegmentHold> hold =
      SharedSegmentHold::Take(key, getpid(), base + kSegment / 2, 4096);
  ASSERT_FALSE(hold.ok());
  EXPECT_EQ(hold.status().code(), StatusCode::kInvalidArgument) << hold.status().ToString();
  EXPECT_NE(hold.status().message().find("less than"), std::string::npos)
      << hold.status().ToString();
  close(memfd);
}

// What PeerMemoryGuard replaces when a client cuts its segment short must be whole pages of the
// mapping: the hold reports the huge page size of a segment on hugetlbfs, 0 for any other.
TEST_F(SharedSegmentHoldTest, ThePageSizeOfAPosixSegmentOnHugetlbfsIsReported) {
  const uint64_t base = 0x7f0000100000;
  const int memfd = SegmentMemfd(kSegment);
  ASSERT_GE(memfd, 0);
  Result<SharedSegmentHold> plain = SharedSegmentHold::Take(
      Key({PosixEntry(getpid(), memfd, base, kSegment), {}}), getpid(), base, 4096);
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  EXPECT_EQ(plain->page_bytes(), 0u);
  close(memfd);

  constexpr size_t kHuge = 2 << 20;
  const int huge = memfd_create("hold-test-huge", MFD_CLOEXEC | MFD_HUGETLB);
  // The owner maps its segment, as UCX does when it allocates one; that takes a huge page.
  void* owner = huge >= 0 && ftruncate(huge, kHuge) == 0
                    ? mmap(nullptr, kHuge, PROT_READ | PROT_WRITE, MAP_SHARED, huge, 0)
                    : MAP_FAILED;
  if (owner == MAP_FAILED) {
    if (huge >= 0) close(huge);
    GTEST_SKIP() << "no 2 MiB huge pages on this machine (vm.nr_hugepages is 0)";
  }
  Result<SharedSegmentHold> hold = SharedSegmentHold::Take(
      Key({PosixEntry(getpid(), huge, base, kHuge), {}}), getpid(), base, 4096);
  ASSERT_TRUE(hold.ok()) << hold.status().ToString();
  EXPECT_EQ(hold->page_bytes(), kHuge);
  munmap(owner, kHuge);
  close(huge);
}

// Without the procfs flag the segment is a file named by its path (UCX's USE_PROC_LINK=n), which
// anyone may have named and UCX would open whatever the key says: refused before UCX sees it, in
// the fixed layout and with the directory UCX appends; the same entry with the flag is held.
TEST_F(SharedSegmentHoldTest, APosixEntryNamedByPathIsRefused) {
  const int memfd = SegmentMemfd(kSegment);
  ASSERT_GE(memfd, 0);
  const uint64_t base = 0x7f0000100000;
  const std::vector<uint8_t> linked = PosixEntry(getpid(), memfd, base, kSegment);
  Result<SharedSegmentHold> held = SharedSegmentHold::Take(Key({linked, {}}), getpid(), base, 4096);
  ASSERT_TRUE(held.ok()) << held.status().ToString();  // positive control
  EXPECT_EQ(held->held(), 1u);
  ASSERT_EQ(held->segments().size(), 1u);
  struct stat st {};
  ASSERT_EQ(fstat(memfd, &st), 0);
  EXPECT_EQ(held->segments()[0].inode, static_cast<uint64_t>(st.st_ino));

  std::vector<uint8_t> named = linked;
  named[7] &= 0x7F;  // clear the procfs bit (bit 63 of the little-endian seg_id)
  std::vector<uint8_t> with_dir = named;
  for (char c : std::string("/dev/shm")) with_dir.push_back(static_cast<uint8_t>(c));
  with_dir.push_back(0);
  for (const std::vector<uint8_t>& entry : {named, with_dir}) {
    Result<SharedSegmentHold> hold =
        SharedSegmentHold::Take(Key({entry, {}}), getpid(), base, 4096);
    ASSERT_FALSE(hold.ok()) << entry.size() << "-byte entry";
    EXPECT_EQ(hold.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(hold.status().message().find("named by its path"), std::string::npos)
        << hold.status().ToString();
  }
  // Another transport's binary entry that happens to hold a '/' there and end in 0 is no path:
  // left to UCX as before.
  std::vector<uint8_t> binary(64, 0x01);
  binary[24] = '/';
  binary[40] = 0x9C;
  binary.back() = 0;
  Result<SharedSegmentHold> other =
      SharedSegmentHold::Take(Key({binary, {}}), getpid(), base, 4096);
  ASSERT_TRUE(other.ok()) << other.status().ToString();
  EXPECT_EQ(other->held(), 0u);
  close(memfd);
}

TEST_F(SharedSegmentHoldTest, HoldsTheOwnersSysvSegmentUntilReleasedAndRefusesOthers) {
  const int shmid = shmget(IPC_PRIVATE, kSegment, IPC_CREAT | 0600);
  ASSERT_GE(shmid, 0);
  void* owner = shmat(shmid, nullptr, 0);
  ASSERT_NE(owner, reinterpret_cast<void*>(-1));
  ASSERT_EQ(shmctl(shmid, IPC_RMID, nullptr), 0);  // as UCX does: gone with the last detach
  const uint64_t base = reinterpret_cast<uint64_t>(owner);
  const std::vector<uint8_t> key = Key({{}, SysvEntry(static_cast<uint32_t>(shmid), base)});
  // Expected misses first: a segment another process created, a region outside the segment.
  for (const auto& [owner, region] : {std::pair<pid_t, uint64_t>{getpid() + 1, base},
                                      std::pair<pid_t, uint64_t>{getpid(), base + kSegment}}) {
    Result<SharedSegmentHold> refused = SharedSegmentHold::Take(key, owner, region, 4096);
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument) << refused.status().ToString();
  }
  Result<SharedSegmentHold> hold = SharedSegmentHold::Take(key, getpid(), base, 4096);
  ASSERT_TRUE(hold.ok()) << hold.status().ToString();
  EXPECT_EQ(hold->held(), 1u);
  EXPECT_TRUE(std::equal(key.begin(), key.end(), hold->key().begin(), hold->key().end()));
  // The owner detaches (dies): the hold keeps the segment.
  ASSERT_EQ(shmdt(owner), 0);
  shmid_ds info{};
  EXPECT_EQ(shmctl(shmid, IPC_STAT, &info), 0);
  // Released: the segment is freed, and a new hold is refused.
  { SharedSegmentHold gone = std::move(*hold); }
  Result<SharedSegmentHold> late = SharedSegmentHold::Take(key, getpid(), base, 4096);
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.status().code(), StatusCode::kUnavailable) << late.status().ToString();
}

// UCX maps a held posix file read-write with the server's credentials, so a descriptor the owner
// opened read-only must be refused: otherwise a client could have the server write a file the
// client may only read. Refused for a memfd reopened read-only and a /dev/shm file opened
// read-only; the same files through their read-write descriptors are held.
TEST_F(SharedSegmentHoldTest, APosixSegmentOpenedReadOnlyIsRefused) {
  const uint64_t base = 0x7f0000100000;
  const int memfd = SegmentMemfd(kSegment);
  ASSERT_GE(memfd, 0);
  const std::string shm = "/dev/shm/kvault-hold-test-" + std::to_string(getpid());
  const int shm_rw = open(shm.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
  ASSERT_GE(shm_rw, 0) << shm << ": " << std::strerror(errno);
  ASSERT_EQ(ftruncate(shm_rw, kSegment), 0);
  const int memfd_ro =
      open(("/proc/self/fd/" + std::to_string(memfd)).c_str(), O_RDONLY | O_CLOEXEC);
  const int shm_ro = open(shm.c_str(), O_RDONLY | O_CLOEXEC);
  unlink(shm.c_str());
  ASSERT_GE(memfd_ro, 0);
  ASSERT_GE(shm_ro, 0);
  for (const int rw : {memfd, shm_rw}) {  // positive control
    Result<SharedSegmentHold> hold = SharedSegmentHold::Take(
        Key({PosixEntry(getpid(), rw, base, kSegment), {}}), getpid(), base, 4096);
    ASSERT_TRUE(hold.ok()) << hold.status().ToString();
    EXPECT_EQ(hold->held(), 1u);
  }
  for (const int ro : {memfd_ro, shm_ro}) {
    Result<SharedSegmentHold> hold = SharedSegmentHold::Take(
        Key({PosixEntry(getpid(), ro, base, kSegment), {}}), getpid(), base, 4096);
    ASSERT_FALSE(hold.ok()) << "descriptor " << ro;
    EXPECT_EQ(hold.status().code(), StatusCode::kInvalidArgument) << hold.status().ToString();
    EXPECT_NE(hold.status().message().find("not open for reading and writing"), std::string::npos)
        << hold.status().ToString();
  }
  for (const int fd : {memfd, shm_rw, memfd_ro, shm_ro}) close(fd);
}

// A regular file on a disk file system is no shared-memory segment, even opened read-write by its
// owner: refused (UCX's posix transport makes its segments on tmpfs or hugetlbfs).
TEST_F(SharedSegmentHoldTest, APosixSegmentOnADiskFileSystemIsRefused) {
  char path[] = "/var/tmp/kvault-hold-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  unlink(path);
  struct statfs fs {};
  ASSERT_EQ(fstatfs(fd, &fs), 0);
  if (fs.f_type == TMPFS_MAGIC || fs.f_type == HUGETLBFS_MAGIC) {
    close(fd);
    GTEST_SKIP() << "/var/tmp is on tmpfs here: no disk file system to try";
  }
  ASSERT_EQ(ftruncate(fd, kSegment), 0);
  const uint64_t base = 0x7f0000100000;
  Result<SharedSegmentHold> hold = SharedSegmentHold::Take(
      Key({PosixEntry(getpid(), fd, base, kSegment), {}}), getpid(), base, 4096);
  ASSERT_FALSE(hold.ok());
  EXPECT_EQ(hold.status().code(), StatusCode::kInvalidArgument) << hold.status().ToString();
  EXPECT_NE(hold.status().message().find("not on tmpfs or hugetlbfs"), std::string::npos)
      << hold.status().ToString();
  close(fd);
}

// A segment file that belongs to a user the owner does not act as is refused even when the owner
// holds it read-write (a descriptor it got from someone else). Needs root to give a file away.
TEST_F(SharedSegmentHoldTest, APosixSegmentOfAnotherUserIsRefused) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to make a file of another user";
  const uint64_t base = 0x7f0000100000;
  const int memfd = SegmentMemfd(kSegment);
  ASSERT_GE(memfd, 0);
  const std::vector<uint8_t> key = Key({PosixEntry(getpid(), memfd, base, kSegment), {}});
  ASSERT_TRUE(SharedSegmentHold::Take(key, getpid(), base, 4096).ok());  // positive control
  ASSERT_EQ(fchown(memfd, 65534, 65534), 0) << std::strerror(errno);
  Result<SharedSegmentHold> hold = SharedSegmentHold::Take(key, getpid(), base, 4096);
  ASSERT_FALSE(hold.ok());
  EXPECT_EQ(hold.status().code(), StatusCode::kInvalidArgument) << hold.status().ToString();
  EXPECT_NE(hold.status().message().find("does not act as"), std::string::npos)
      << hold.status().ToString();
  close(memfd);
}

// The creator pid of a sysv segment can be a reused one: the owner must also have the segment
// attached now. A segment this process created but detached is refused; attached, it is held.
TEST_F(SharedSegmentHoldTest, ASysvSegmentNotAttachedInItsOwnerIsRefused) {
  const int shmid = shmget(IPC_PRIVATE, kSegment, IPC_CREAT | 0600);
  ASSERT_GE(shmid, 0);
  const uint64_t base = 0x7f0000100000;
  const std::vector<uint8_t> key = Key({{}, SysvEntry(static_cast<uint32_t>(shmid), base)});
  Result<SharedSegmentHold> detached = SharedSegmentHold::Take(key, getpid(), base, 4096);
  ASSERT_FALSE(detached.ok());
  EXPECT_EQ(detached.status().code(), StatusCode::kInvalidArgument) << detached.status().ToString();
  EXPECT_NE(detached.status().message().find("not attached in its owner"), std::string::npos)
      << detached.status().ToString();
  void* owner = shmat(shmid, nullptr, 0);
  ASSERT_NE(owner, reinterpret_cast<void*>(-1));
  ASSERT_EQ(shmctl(shmid, IPC_RMID, nullptr), 0);  // maps now say "/SYSV00000000 (deleted)"
  const uint64_t at = reinterpret_cast<uint64_t>(owner);
  Result<SharedSegmentHold> attached = SharedSegmentHold::Take(
      Key({{}, SysvEntry(static_cast<uint32_t>(shmid), at)}), getpid(), at, 4096);
  ASSERT_TRUE(attached.ok()) << attached.status().ToString();
  EXPECT_EQ(attached->held(), 1u);
  { SharedSegmentHold gone = std::move(*attached); }
  shmdt(owner);
}

// A sysv segment whose creator pid is the owner's but which belongs to a user the owner does not
// act as (as when the creator died and its pid went to another user's process) is refused. The
// owner is a child that creates and attaches a segment as root, then drops to nobody for good;
// the positive control is a child that keeps its uid. Needs root.
TEST_F(SharedSegmentHoldTest, ASysvSegmentOfAnotherUserIsRefused) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to start an owner of another user";
  for (const bool drop : {false, true}) {
    SCOPED_TRACE(drop ? "owner dropped to nobody" : "owner kept its uid");
    int to_parent[2], to_child[2];
    ASSERT_EQ(pipe2(to_parent, O_CLOEXEC), 0);
    ASSERT_EQ(pipe2(to_child, O_CLOEXEC), 0);
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {  // async-signal-safe calls only
      close(to_parent[0]);
      close(to_child[1]);  // so that the parent's close ends the read below
      int shmid = shmget(IPC_PRIVATE, kSegment, IPC_CREAT | 0600);
      void* at = shmid >= 0 ? shmat(shmid, nullptr, 0) : reinterpret_cast<void*>(-1);
      if (at != reinterpret_cast<void*>(-1)) shmctl(shmid, IPC_RMID, nullptr);
      if (drop && (setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0)) {
        shmid = -1;
      }
      uint64_t message[2] = {static_cast<uint64_t>(shmid), reinterpret_cast<uint64_t>(at)};
      if (write(to_parent[1], message, sizeof(message)) != sizeof(message)) _exit(1);
      char c;
      (void)!read(to_child[0], &c, 1);
      _exit(0);
    }
    close(to_parent[1]);
    close(to_child[0]);
    uint64_t message[2] = {};
    const bool got = read(to_parent[0], message, sizeof(message)) == sizeof(message);
    Result<SharedSegmentHold> hold = Status::Internal("not taken");
    if (got && static_cast<int64_t>(message[0]) >= 0) {
      hold = SharedSegmentHold::Take(
          Key({{}, SysvEntry(static_cast<uint32_t>(message[0]), message[1])}),
          static_cast<uint32_t>(child), message[1], 4096);
    }
    close(to_child[1]);  // the child exits
    close(to_parent[0]);
    waitpid(child, nullptr, 0);
    ASSERT_TRUE(got && static_cast<int64_t>(message[0]) >= 0) << "the child made no segment";
    if (!drop) {
      EXPECT_TRUE(hold.ok()) << hold.status().ToString();
      continue;
    }
    ASSERT_FALSE(hold.ok());
    EXPECT_EQ(hold.status().code(), StatusCode::kInvalidArgument) << hold.status().ToString();
    EXPECT_NE(hold.status().message().find("does not act as"), std::string::npos)
        << hold.status().ToString();
  }
}

// UCX maps a held segment writable and crashes when it cannot: a segment no process may map
// writable is refused here instead, and so is one its owner could still seal after this check
// (a memfd made with MFD_ALLOW_SEALING and no F_SEAL_SEAL). Positive control: such a memfd once
// sealed with F_SEAL_SEAL alone is held.
TEST_F(SharedSegmentHoldTest, APosixSegmentSealedOrSealableIsRefused) {
  const uint64_t base = 0x7f0000100000;
  struct Case {
    const char* name;
    int seals;  // added with F_ADD_SEALS
    const char* why;  // expected in the refusal, or null: held
  };
  for (const Case& c : {Case{"sealed against sealing", F_SEAL_SEAL, nullptr},
                        Case{"sealable", 0, "it can still be sealed"},
                        Case{"write", F_SEAL_WRITE | F_SEAL_SEAL, "it is sealed against writes"},
                        Case{"future write", F_SEAL_FUTURE_WRITE | F_SEAL_SEAL,
                             "it is sealed against writes"}}) {
    SCOPED_TRACE(c.name);
    const int memfd = memfd_create("hold-test-sealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    ASSERT_GE(memfd, 0) << std::strerror(errno);
    ASSERT_EQ(ftruncate(memfd, kSegment), 0);
    if (c.seals != 0) {
      ASSERT_EQ(fcntl(memfd, F_ADD_SEALS, c.seals), 0) << std::strerror(errno);
    }
    Result<SharedSegmentHold> hold = SharedSegmentHold::Take(
        Key({PosixEntry(getpid(), memfd, base, kSegment), {}}), getpid(), base, 4096);
    close(memfd);
    if (c.why == nullptr) {
      ASSERT_TRUE(hold.ok()) << hold.status().ToString();
      EXPECT_EQ(hold->held(), 1u);
      continue;
    }
    ASSERT_FALSE(hold.ok());
    EXPECT_EQ(hold.status().code(), StatusCode::kInvalidArgument) << hold.status().ToString();
    EXPECT_NE(hold.status().message().find(std::string("cannot be mapped for writing here: ") +
                                           c.why),
              std::string::npos)
        << hold.status().ToString();
  }
}

// In a child (as nobody when the test runs as root, so that file modes apply), the owner of its
// own segments: a posix memfd and a sysv segment are held while their mode lets this process
// write them, and refused once the owner made them read-only (0400), since UCX would fail to map
// them writable. Exit status 0 when all held and refused as expected.
int HoldsWritableRefusesReadOnlySegments() {
  if (geteuid() == 0 && (setresgid(65534, 65534, 65534) != 0 ||
                         setresuid(65534, 65534, 65534) != 0)) {
    return 10;
  }
  const uint64_t base = 0x7f0000100000;
  const auto refused = [](const Result<SharedSegmentHold>& hold) {
    if (hold.ok()) return false;
    std::fprintf(stderr, "refused: %s\n", hold.status().ToString().c_str());
    return hold.status().code() == StatusCode::kInvalidArgument &&
           hold.status().message().find("cannot be mapped for writing") != std::string::npos;
  };
  const int memfd = SegmentMemfd(kSegment);
  if (memfd < 0) return 11;
  const std::vector<uint8_t> posix = Key({PosixEntry(getpid(), memfd, base, kSegment), {}});
  if (!SharedSegmentHold::Take(posix, getpid(), base, 4096).ok()) return 12;
  if (fchmod(memfd, 0400) != 0) return 13;
  if (!refused(SharedSegmentHold::Take(posix, getpid(), base, 4096))) return 14;
  const int shmid = shmget(IPC_PRIVATE, kSegment, IPC_CREAT | 0600);
  void* owner = shmid >= 0 ? shmat(shmid, nullptr, 0) : reinterpret_cast<void*>(-1);
  if (owner == reinterpret_cast<void*>(-1)) return 15;
  const uint64_t at = reinterpret_cast<uint64_t>(owner);
  const std::vector<uint8_t> sysv = Key({{}, SysvEntry(static_cast<uint32_t>(shmid), at)});
  int rc = SharedSegmentHold::Take(sysv, getpid(), at, 4096).ok() ? 0 : 16;
  shmid_ds info{};
  if (rc == 0 && shmctl(shmid, IPC_STAT, &info) == 0) {
    info.shm_perm.mode = 0400;
    if (shmctl(shmid, IPC_SET, &info) != 0) rc = 17;
  }
  if (rc == 0 && !refused(SharedSegmentHold::Take(sysv, getpid(), at, 4096))) rc = 18;
  shmdt(owner);
  shmctl(shmid, IPC_RMID, nullptr);
  return rc;
}

TEST_F(SharedSegmentHoldTest, ASegmentThisProcessMayNotWriteIsRefused) {
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) _exit(HoldsWritableRefusesReadOnlySegments());
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << "the child died: status " << status;
  EXPECT_EQ(WEXITSTATUS(status), 0) << "failed at step " << WEXITSTATUS(status)
                                    << " (12, 16: not held while writable; 14, 18: not refused "
                                       "once read-only)";
}

TEST_F(SharedSegmentHoldTest, WithoutAnOwnerPidTheKeyIsPassedAsItIs) {
  const std::vector<uint8_t> key = Key({PosixEntry(1, 3, 0x1000, kSegment), SysvEntry(7, 0x1000)});
  Result<SharedSegmentHold> hold = SharedSegmentHold::Take(key, 0, 0x1000, 4096);
  ASSERT_TRUE(hold.ok()) << hold.status().ToString();
  EXPECT_EQ(hold->held(), 0u);
  EXPECT_TRUE(std::equal(key.begin(), key.end(), hold->key().begin(), hold->key().end()));
}

}  // namespace
}  // namespace kvault::transport
