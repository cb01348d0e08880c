#pragma once
// MemoryChild: a child process, forked from the test, that hands its own memory file over to the
// test as a client of the process-memory plane does; and the helpers the tests around it share.
// Header-only, for tests only.

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <span>
#include <vector>

#include "kvault/transport/local/memory_handover.h"
#include "kvault/transport/local/process_memory.h"

namespace kvault::transport::test {

inline constexpr uint32_t kNobody = 65534;

// A child process, forked from this one, that shares the address of `bytes` (its own copy after
// the fork). `setup` runs in the child; the child then hands its own memory file (opened
// read-write, as a client does) to this process over a socket pair, and waits for SIGKILL.
class MemoryChild {
 public:
  template <typename Setup>
  explicit MemoryChild(Setup setup) {
    int fds[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    pid_ = fork();
    if (pid_ == 0) {
      close(fds[0]);
      int mem = -1;
      if (setup()) {
        Result<UniqueFd> own = ProcessMemory::OpenOwn();
        if (own.ok()) mem = own->Release();
      }
      SendFd(fds[1], mem);
      for (;;) pause();
    }
    close(fds[1]);
    memory_ = UniqueFd(ReceiveFd(fds[0]));
    close(fds[0]);
  }
  ~MemoryChild() { Kill(); }
  void Kill() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  uint32_t pid() const { return static_cast<uint32_t>(pid_); }
  bool ready() const { return memory_.get() >= 0; }
  // The child's memory file, adopted (once).
  Result<ProcessMemory> Adopt() { return ProcessMemory::Adopt(&memory_); }

  // One byte, with `fd` attached when it is >= 0.
  static void SendFd(int socket, int fd) {
    const uint8_t byte = fd >= 0 ? 'y' : 'n';
    (void)SendWithDescriptor(socket, std::span<const uint8_t>(&byte, 1), fd);
  }
  // The descriptor SendFd attached, once the child's byte has arrived (-1 for none).
  static int ReceiveFd(int socket) {
    pollfd ready{socket, POLLIN, 0};
    if (poll(&ready, 1, 10'000) != 1) return -1;
    uint8_t byte = 0;
    std::vector<UniqueFd> received;
    int flags = 0;
    if (ReceiveWithDescriptors(socket, std::span<uint8_t>(&byte, 1), &received, &flags) != 1 ||
        byte != 'y' || received.size() != 1) {
      return -1;
    }
    return received[0].Release();
  }

 private:
  pid_t pid_ = -1;
  UniqueFd memory_;
};

// Drops every user and group id of the calling process to `id` (all of real, effective, saved),
// and makes it dumpable again, as a process that user started would be (the switch cleared it).
inline bool BecomeUser(uint32_t id) {
  return syscall(SYS_setresgid, id, id, id) == 0 && syscall(SYS_setresuid, id, id, id) == 0 &&
         prctl(PR_SET_DUMPABLE, 1) == 0;
}

// What a client is in these tests: this process's user, or nobody when the test runs as root,
// so that the copies cover a client of another user than the server's.
inline bool BecomeClient() { return geteuid() != 0 || BecomeUser(kNobody); }

inline std::vector<uint8_t> Pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(i * 31 + seed);
  return v;
}

}  // namespace kvault::transport::test
