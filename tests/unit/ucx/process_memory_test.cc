// ProcessMemory: copies into and out of the memory a child process handed over, and the
// refusals that keep a client from making the server touch what is not the client's to share:
// an exited process, one that runs another program since, an unmapped range, a descriptor that
// is not a process's memory file open for reading and writing, each beside a positive control
// that is copied.
#include "kvault/transport/local/process_memory.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "kvault/transport/local/memory_handover.h"
#include "memory_child.h"

namespace kvault::transport {
namespace {

using test::BecomeClient;
using test::BecomeUser;
using test::kNobody;
using test::Pattern;
using Child = test::MemoryChild;

TEST(ProcessMemoryTest, ReadsAndWritesTheChildsBytesAtTheSameAddress) {
  std::vector<uint8_t> bytes = Pattern(3 << 20, 7);  // 3 MiB, several pages
  const std::vector<uint8_t> original = bytes;
  Child child([] { return BecomeClient(); });
  ASSERT_TRUE(child.ready());
  // This process's copy changes; the child's stays the original.
  std::fill(bytes.begin(), bytes.end(), uint8_t{0});
  Result<ProcessMemory> memory = child.Adopt();
  ASSERT_TRUE(memory.ok()) << memory.status().ToString();
  EXPECT_EQ(memory->name(), "process " + std::to_string(child.pid()));

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
}

// Probe compares what lies at an address with what the sender said lies there.
TEST(ProcessMemoryTest, AProbeMatchesOnlyTheBytesTheProcessHolds) {
  std::vector<uint8_t> bytes = Pattern(64, 11);
  Child child([] { return BecomeClient(); });
  ASSERT_TRUE(child.ready());
  Result<ProcessMemory> memory = child.Adopt();
  ASSERT_TRUE(memory.ok()) << memory.status().ToString();
  const uint64_t address = reinterpret_cast<uintptr_t>(bytes.data());
  const std::vector<uint8_t> expected(bytes.begin(), bytes.begin() + 16);
  EXPECT_TRUE(memory->Probe(address, expected).ok());  // positive control
  std::vector<uint8_t> wrong = expected;
  wrong[15] ^= 1;
  const Status differs = memory->Probe(address, wrong);
  EXPECT_EQ(differs.code(), StatusCode::kInvalidArgument) << differs.ToString();
  EXPECT_NE(differs.message().find("differ"), std::string::npos) << differs.ToString();
  EXPECT_EQ(memory->Probe(16, expected).code(), StatusCode::kInvalidArgument);  // not mapped
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
  Result<ProcessMemory> memory = child.Adopt();
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

TEST(ProcessMemoryTest, AnExitedProcessIsNeverCopied) {
  std::vector<uint8_t> bytes = Pattern(4096, 1);
  Child child([] { return BecomeClient(); });
  ASSERT_TRUE(child.ready());
  Result<ProcessMemory> memory = child.Adopt();
  ASSERT_TRUE(memory.ok()) << memory.status().ToString();
  const uint64_t address = reinterpret_cast<uintptr_t>(bytes.data());
  ASSERT_TRUE(memory->Read(address, bytes).ok());  // positive control while it lives
  child.Kill();
  EXPECT_EQ(memory->Read(address, bytes).code(), StatusCode::kUnavailable);
  EXPECT_EQ(memory->Write(address, bytes).code(), StatusCode::kUnavailable);
}

// Adopt takes nothing but another process's memory file opened read-write: a descriptor a
// client hands over in its place is refused (and closed), beside a positive control.
TEST(ProcessMemoryTest, AdoptRefusesEverythingButAProcesssMemoryFileOpenForReadAndWrite) {
  Child child([] { return BecomeClient(); });
  ASSERT_TRUE(child.ready());
  // Refused as InvalidArgument with `needle` in the message.
  // The refused descriptor stays with the caller.
  auto refused = [](int fd, std::string_view needle) {
    UniqueFd owned(fd);
    const Status s = ProcessMemory::Adopt(&owned).status();
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
    EXPECT_NE(s.message().find(needle), std::string::npos) << s.ToString();
    EXPECT_EQ(owned.get(), fd);
  };
  const std::string file = "/tmp/kvault_adopt_" + std::to_string(getpid());
  std::ofstream(file) << "not memory";
  refused(open(file.c_str(), O_RDWR | O_CLOEXEC), "not a process's memory file");
  unlink(file.c_str());
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  refused(pipe_fds[0], "not a process's memory file");
  close(pipe_fds[1]);
  refused(open("/proc/self/status", O_RDONLY | O_CLOEXEC), "not a process's memory file");
  const std::string child_mem = "/proc/" + std::to_string(child.pid()) + "/mem";
  refused(open(child_mem.c_str(), O_RDONLY | O_CLOEXEC), "reading and writing");
  refused(open("/proc/self/mem", O_RDWR | O_CLOEXEC), "this server's own");
  refused(-1, "no descriptor");
  // Positive control: the child's memory file, handed over by the child, is adopted.
  Result<ProcessMemory> memory = child.Adopt();
  EXPECT_TRUE(memory.ok()) << memory.status().ToString();
}

// The audit's case for UCX (transport/ucx.md): a client of another user maps a root-owned
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
  Result<ProcessMemory> memory = child.Adopt();
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

// The memory handed over is the one the process had when it opened the file: once it runs
// another program (a set-user-id one would get root's rights), nothing is copied.
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
  Result<ProcessMemory> memory = child.Adopt();
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
  EXPECT_EQ(memory->Read(address, read).code(), StatusCode::kUnavailable);
  EXPECT_EQ(memory->Write(address, read).code(), StatusCode::kUnavailable);
  EXPECT_EQ(memory->Probe(address, std::span<const uint8_t>(bytes).first(16)).code(),
            StatusCode::kUnavailable);
}

}  // namespace
}  // namespace kvault::transport
