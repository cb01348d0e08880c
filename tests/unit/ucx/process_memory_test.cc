// ProcessMemory: copies into and out of a child process's memory, and the refusals that keep a
// client from making the server touch memory that is not the client's to share: an exited
// process, one that runs another program since Open, an unmapped range, a set-user-id process,
// and (as root) a process of the client's user that the user itself may not trace, each beside a
// positive control that is copied.
#include "kvault/transport/local/process_memory.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace kvault::transport {
namespace {

constexpr uint32_t kNobody = 65534;

// A child process, forked from this one, that shares the address of `bytes` (its own copy after
// the fork). `setup` runs in the child before it reports ready; the child then waits for SIGKILL.
class Child {
 public:
  template <typename Setup>
  explicit Child(Setup setup) {
    int fds[2];
    EXPECT_EQ(pipe(fds), 0);
    pid_ = fork();
    if (pid_ == 0) {
      close(fds[0]);
      const char ok = setup() ? 'y' : 'n';
      (void)!write(fds[1], &ok, 1);
      for (;;) pause();
    }
    close(fds[1]);
    char ok = 'n';
    EXPECT_EQ(read(fds[0], &ok, 1), 1);
    close(fds[0]);
    ready_ = ok == 'y';
  }
  ~Child() { Kill(); }
  void Kill() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  uint32_t pid() const { return static_cast<uint32_t>(pid_); }
  bool ready() const { return ready_; }

 private:
  pid_t pid_ = -1;
  bool ready_ = false;
};

// Drops every user and group id of the calling process to `id` (all of real, effective, saved),
// and makes it dumpable again, as a process that user started would be (the switch cleared it).
bool BecomeUser(uint32_t id) {
  return syscall(SYS_setresgid, id, id, id) == 0 && syscall(SYS_setresuid, id, id, id) == 0 &&
         prctl(PR_SET_DUMPABLE, 1) == 0;
}

// What a client is in these tests: this process's user, or nobody when the test runs as root
// (a process of user 0 is never copied directly).
bool BecomeClient() { return geteuid() != 0 || BecomeUser(kNobody); }
uint32_t ClientUid() { return geteuid() == 0 ? kNobody : getuid(); }

std::vector<uint8_t> Pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(i * 31 + seed);
  return v;
}

TEST(ProcessMemoryTest, ReadsAndWritesTheChildsBytesAtTheSameAddress) {
  std::vector<uint8_t> bytes = Pattern(3 << 20, 7);  // 3 MiB, several pages
  const std::vector<uint8_t> original = bytes;
  Child child([] { return BecomeClient(); });
  ASSERT_TRUE(child.ready());
  // This process's copy changes; the child's stays the original.
  std::fill(bytes.begin(), bytes.end(), uint8_t{0});
  Result<ProcessMemory> memory = ProcessMemory::Open(child.pid());
  ASSERT_TRUE(memory.ok()) << memory.status().ToString();
  EXPECT_EQ(memory->pid(), child.pid());
  EXPECT_EQ(memory->uid(), ClientUid());

  const uint64_t address = reinterpret_cast<uintptr_t>(bytes.data());
  std::vector<uint8_t> read(bytes.size());
  ASSERT_TRUE(memory->Read(address, read).ok());
  EXPECT_EQ(read, original);

  const std::vector<uint8_t> fresh = Pattern(bytes.size() - 100, 99);
  ASSERT_TRUE(memory->Write(address + 50, fresh).ok());
  ASSERT_TRUE(memory->Read(address, read).ok());
  EXPECT_TRUE(std::equal(read.begin(), read.begin() + 50, original.begin()));
  EXPECT_TRUE(std::equal(fresh.begin(), fresh.end(), read.begin() + 50));
  EXPECT_TRUE(std::equal(read.end() - 50, read.end(), original.end() - 50));
  // A zero-length copy is a no-op.
  EXPECT_TRUE(memory->Read(address, std::span<uint8_t>()).ok());
  EXPECT_FALSE(memory->Exited());
  EXPECT_TRUE(memory->CheckAccess().ok());
}

TEST(ProcessMemoryTest, ARangeNotMappedInTheChildIsInvalidArgumentAfterAValidOne) {
  // A mapping of two pages whose second page the child unmaps.
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  auto* region = static_cast<uint8_t*>(
      mmap(nullptr, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(region, MAP_FAILED);
  std::memset(region, 0x5a, 2 * page);
  Child child([&] { return BecomeClient() && munmap(region + page, page) == 0; });
  ASSERT_TRUE(child.ready());
  Result<ProcessMemory> memory = ProcessMemory::Open(child.pid());
  ASSERT_TRUE(memory.ok()) << memory.status().ToString();
  const uint64_t address = reinterpret_cast<uintptr_t>(region);
  std::vector<uint8_t> buffer(page);
  ASSERT_TRUE(memory->Read(address, buffer).ok());  // positive control: the mapped page
  EXPECT_EQ(buffer[0], 0x5a);

  std::vector<uint8_t> two_pages(2 * page);
  const Status read = memory->Read(address, two_pages);
  EXPECT_EQ(read.code(), StatusCode::kInvalidArgument) << read.ToString();
  EXPECT_NE(read.message().find("not mapped"), std::string::npos) << read.ToString();
  const Status write = memory->Write(address + page, buffer);
  EXPECT_EQ(write.code(), StatusCode::kInvalidArgument) << write.ToString();
  const Status wraps = memory->Read(~uint64_t{0} - 10, buffer);
  EXPECT_EQ(memory->Read(uint64_t{1} << 63, buffer).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(wraps.code(), StatusCode::kInvalidArgument) << wraps.ToString();
  munmap(region, 2 * page);
}

TEST(ProcessMemoryTest, AnExitedProcessIsNeverCopiedAndCannotBeOpened) {
  std::vector<uint8_t> bytes = Pattern(4096, 1);
  Child child([] { return BecomeClient(); });
  ASSERT_TRUE(child.ready());
  Result<ProcessMemory> memory = ProcessMemory::Open(child.pid());
  ASSERT_TRUE(memory.ok()) << memory.status().ToString();
  const uint64_t address = reinterpret_cast<uintptr_t>(bytes.data());
  ASSERT_TRUE(memory->Read(address, bytes).ok());  // positive control while it lives
  const uint32_t pid = child.pid();
  child.Kill();
  EXPECT_TRUE(memory->Exited());
  EXPECT_EQ(memory->Read(address, bytes).code(), StatusCode::kUnavailable);
  EXPECT_EQ(memory->Write(address, bytes).code(), StatusCode::kUnavailable);
  EXPECT_EQ(ProcessMemory::Open(pid).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(ProcessMemory::Open(0).status().code(), StatusCode::kInvalidArgument);
}

TEST(ProcessMemoryTest, AProcessWithMixedUserIdsIsRefused) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to give a child mixed user ids";
  // Like a set-user-id program: real and effective nobody, saved root.
  Child mixed([] {
    return syscall(SYS_setresgid, kNobody, kNobody, kNobody) == 0 &&
           syscall(SYS_setresuid, kNobody, kNobody, 0) == 0;
  });
  ASSERT_TRUE(mixed.ready());
  const Status refused = ProcessMemory::Open(mixed.pid()).status();
  EXPECT_EQ(refused.code(), StatusCode::kInvalidArgument) << refused.ToString();
  // Positive control: a child with nobody's ids throughout is opened.
  Child uniform([] { return BecomeUser(kNobody); });
  ASSERT_TRUE(uniform.ready());
  Result<ProcessMemory> memory = ProcessMemory::Open(uniform.pid());
  ASSERT_TRUE(memory.ok()) << memory.status().ToString();
  EXPECT_EQ(memory->uid(), kNobody);
  EXPECT_EQ(memory->gid(), kNobody);
}

// As root, /proc/<pid>/mem is opened with the client's ids and without CAP_SYS_PTRACE: a
// process the client's user may not trace (here: it made itself not dumpable, as a
// set-user-id program is) is refused although root could read it, and a plain process of that
// user is copied. The opening thread stays root throughout (the user can never signal it).
TEST(ProcessMemoryTest, AsRootTheKernelChecksTheClientsOwnRights) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to run children as another user";
  std::vector<uint8_t> bytes = Pattern(8192, 3);
  const std::vector<uint8_t> original = bytes;
  const uint64_t address = reinterpret_cast<uintptr_t>(bytes.data());

  Child plain([] { return BecomeUser(kNobody); });
  Child hidden([] { return BecomeUser(kNobody) && prctl(PR_SET_DUMPABLE, 0) == 0; });
  ASSERT_TRUE(plain.ready());
  ASSERT_TRUE(hidden.ready());
  std::fill(bytes.begin(), bytes.end(), uint8_t{0});

  Result<ProcessMemory> plain_memory = ProcessMemory::Open(plain.pid());
  ASSERT_TRUE(plain_memory.ok()) << plain_memory.status().ToString();
  std::vector<uint8_t> read(bytes.size());
  const Status plain_read = plain_memory->Read(address, read);
  ASSERT_TRUE(plain_read.ok()) << plain_read.ToString();
  EXPECT_EQ(read, original);
  EXPECT_TRUE(plain_memory->CheckAccess().ok());

  const Status refused = ProcessMemory::Open(hidden.pid()).status();
  EXPECT_EQ(refused.code(), StatusCode::kInvalidArgument) << refused.ToString();
  EXPECT_NE(refused.message().find("not open to its own user"), std::string::npos)
      << refused.ToString();
  // Root itself could have read it: the refusal comes from opening as the client.
  iovec here{read.data(), read.size()};
  iovec there{bytes.data(), read.size()};
  EXPECT_EQ(process_vm_readv(static_cast<pid_t>(hidden.pid()), &here, 1, &there, 1, 0),
            static_cast<ssize_t>(read.size()));

  // This thread is root, with its capabilities and file-system ids, and the process dumpable.
  uid_t r, e, s;
  ASSERT_EQ(getresuid(&r, &e, &s), 0);
  EXPECT_EQ(r, 0u);
  EXPECT_EQ(e, 0u);
  EXPECT_EQ(syscall(SYS_setfsuid, -1), 0);
  EXPECT_EQ(prctl(PR_GET_DUMPABLE), 1);
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct caps[2] = {};
  ASSERT_EQ(syscall(SYS_capget, &header, caps), 0);
  EXPECT_NE(caps[CAP_TO_INDEX(CAP_SYS_PTRACE)].effective & CAP_TO_MASK(CAP_SYS_PTRACE), 0u);
  EXPECT_NE(caps[CAP_TO_INDEX(CAP_DAC_OVERRIDE)].effective & CAP_TO_MASK(CAP_DAC_OVERRIDE), 0u);
}

// A process of user 0 is never copied directly: nothing would narrow a root server's rights
// (a root process that relays a client's connection could be named). A positive control of
// another user is opened.
TEST(ProcessMemoryTest, AProcessOfUserZeroIsRefused) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root for a child of user 0 and one of nobody";
  Child root_child([] { return true; });
  ASSERT_TRUE(root_child.ready());
  const Status refused = ProcessMemory::Open(root_child.pid()).status();
  EXPECT_EQ(refused.code(), StatusCode::kInvalidArgument) << refused.ToString();
  EXPECT_NE(refused.message().find("runs as root"), std::string::npos) << refused.ToString();
  Child client([] { return BecomeUser(kNobody); });
  ASSERT_TRUE(client.ready());
  EXPECT_TRUE(ProcessMemory::Open(client.pid()).ok());
}

// A root server without CAP_SETUID and CAP_SETGID (a container that dropped them) cannot take a
// client's file-system ids: Open says so and the thread is as before, with what it had.
TEST(ProcessMemoryTest, WithoutTheCapabilitiesToSwitchIdsOpenFailsAndNothingChanges) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  Child client([] { return BecomeUser(kNobody); });
  ASSERT_TRUE(client.ready());
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct saved[2] = {};
  ASSERT_EQ(syscall(SYS_capget, &header, saved), 0);
  __user_cap_data_struct without[2] = {saved[0], saved[1]};
  without[CAP_TO_INDEX(CAP_SETUID)].effective &= ~CAP_TO_MASK(CAP_SETUID);
  without[CAP_TO_INDEX(CAP_SETGID)].effective &= ~CAP_TO_MASK(CAP_SETGID);
  ASSERT_EQ(syscall(SYS_capset, &header, without), 0);
  const Status refused = ProcessMemory::Open(client.pid()).status();
  __user_cap_data_struct after[2] = {};
  ASSERT_EQ(syscall(SYS_capget, &header, after), 0);
  ASSERT_EQ(syscall(SYS_capset, &header, saved), 0);  // this thread's own, back
  EXPECT_EQ(refused.code(), StatusCode::kUnavailable) << refused.ToString();
  EXPECT_NE(refused.message().find("CAP_SETUID"), std::string::npos) << refused.ToString();
  EXPECT_EQ(after[0].effective, without[0].effective);
  EXPECT_EQ(after[1].effective, without[1].effective);
  EXPECT_EQ(syscall(SYS_setfsuid, -1), 0);
  EXPECT_EQ(syscall(SYS_setfsgid, -1), 0);
  // Positive control: with them, it opens.
  EXPECT_TRUE(ProcessMemory::Open(client.pid()).ok());
}

// The audit's case for UCX (transport/README.md): a client of another user maps a root-owned
// file it may only read, shared, and names that mapping; the write is refused and the file is
// unchanged, while a write to the client's own memory goes through.
TEST(ProcessMemoryTest, AFileTheClientMayOnlyReadIsNeverWritten) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to own the file and run the client as nobody";
  const std::string path = "/tmp/kvault_process_memory_" + std::to_string(getpid());
  {
    std::ofstream f(path);
    f << std::string(4096, 'r');
  }
  ASSERT_EQ(chmod(path.c_str(), 0644), 0);
  std::vector<uint8_t> own = Pattern(4096, 9);
  uint8_t* mapped = nullptr;
  Child child([&] {
    if (!BecomeUser(kNobody)) return false;
    const int fd = open(path.c_str(), O_RDONLY);
    if (fd < 0) return false;
    void* p = mmap(nullptr, 4096, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) return false;
    mapped = static_cast<uint8_t*>(p);
    // Tell the parent where: the same address in its memory is not mapped, so write it down.
    std::ofstream(path + ".address") << reinterpret_cast<uintptr_t>(mapped);
    return true;
  });
  ASSERT_TRUE(child.ready());
  uint64_t address = 0;
  std::ifstream(path + ".address") >> address;
  ASSERT_NE(address, 0u);
  Result<ProcessMemory> memory = ProcessMemory::Open(child.pid());
  ASSERT_TRUE(memory.ok()) << memory.status().ToString();
  const std::vector<uint8_t> evil(64, 'X');
  const Status refused = memory->Write(address, evil);
  EXPECT_EQ(refused.code(), StatusCode::kInvalidArgument) << refused.ToString();
  std::vector<uint8_t> through_mapping(64);
  EXPECT_TRUE(memory->Read(address, through_mapping).ok());  // reading it is the client's right
  EXPECT_EQ(through_mapping, std::vector<uint8_t>(64, 'r'));
  std::string content;
  std::getline(std::ifstream(path), content);
  EXPECT_EQ(content, std::string(4096, 'r'));
  // Positive control: the client's own memory takes the write.
  EXPECT_TRUE(memory->Write(reinterpret_cast<uintptr_t>(own.data()), evil).ok());
  std::vector<uint8_t> back(64);
  ASSERT_TRUE(memory->Read(reinterpret_cast<uintptr_t>(own.data()), back).ok());
  EXPECT_EQ(back, evil);
  unlink(path.c_str());
  unlink((path + ".address").c_str());
}

// The memory opened is the one the process had at Open: once it runs another program (a
// set-user-id one would get root's rights), nothing is copied.
TEST(ProcessMemoryTest, AProcessThatRunsAnotherProgramIsNoLongerCopied) {
  int go[2];
  ASSERT_EQ(pipe(go), 0);
  std::vector<uint8_t> bytes = Pattern(4096, 5);
  Child child([&] {
    close(go[1]);
    if (!BecomeClient()) return false;
    std::thread([fd = go[0]] {
      char c;
      if (read(fd, &c, 1) == 1) execl("/bin/sleep", "sleep", "30", static_cast<char*>(nullptr));
    }).detach();
    return true;
  });
  close(go[0]);
  ASSERT_TRUE(child.ready());
  Result<ProcessMemory> memory = ProcessMemory::Open(child.pid());
  ASSERT_TRUE(memory.ok()) << memory.status().ToString();
  const uint64_t address = reinterpret_cast<uintptr_t>(bytes.data());
  std::vector<uint8_t> read(bytes.size());
  ASSERT_TRUE(memory->Read(address, read).ok());  // positive control before the exec
  EXPECT_EQ(read, bytes);
  ASSERT_EQ(write(go[1], "x", 1), 1);
  close(go[1]);
  // Wait for the exec: the command line becomes sleep's.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  std::string cmdline;
  while (cmdline.rfind("sleep", 0) != 0 && std::chrono::steady_clock::now() < until) {
    std::ifstream in("/proc/" + std::to_string(child.pid()) + "/cmdline");
    std::getline(in, cmdline, '\0');
    if (cmdline.rfind("sleep", 0) != 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_EQ(cmdline, "sleep");
  EXPECT_FALSE(memory->Exited());
  EXPECT_EQ(memory->Read(address, read).code(), StatusCode::kUnavailable);
  EXPECT_EQ(memory->Write(address, read).code(), StatusCode::kUnavailable);
  EXPECT_EQ(memory->CheckAccess().code(), StatusCode::kUnavailable);
}

}  // namespace
}  // namespace kvault::transport
