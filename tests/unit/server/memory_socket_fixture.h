#pragma once
// What the MemorySocket tests share (memory_socket_test.cc, memory_socket_gate_test.cc): the
// gate program, socket paths, a child process that hands its memory over, a raw client, and the
// fixture.

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "core/memory_handles.h"
#include "kvault/common/file_io.h"
#include "kvault/transport/local/memory_handover.h"

namespace kvault::server {

// The memory gate is kvaultd itself (`kvaultd --memory-gate`), built beside this test.
inline const std::string kGateProgram = std::string(KVAULT_BIN_DIR) + "/kvaultd";

inline std::string SocketPath(const std::string& name) {
  return "/tmp/kvault_msock_" + std::to_string(getpid()) + "_" + name;
}

inline sockaddr_un AddressOf(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

// The control connection the children of these tests name: any ends will do here (the service
// compares them, not the socket).
inline transport::ControlConnection SomeConnection() {
  return {transport::TcpEnd::V4({127, 0, 0, 1}, 7400), transport::TcpEnd::V4({127, 0, 0, 1}, 5555)};
}

// A child process that hands its memory over at `path`, to a listener it expects to be this
// process (or `server_pid`), and reports the handle (or its failure) through a pipe; it then
// waits to be killed, so the memory stays live.
class HandingChild {
 public:
  explicit HandingChild(const std::string& path, pid_t server_pid = getpid()) {
    int fds[2];
    EXPECT_EQ(pipe(fds), 0);
    const auto start = std::chrono::steady_clock::now();
    pid_ = fork();
    if (pid_ == 0) {
      close(fds[0]);
      // Read back by whoever redeems the handle: it stays, as the child does.
      static transport::HandOverProbe probe{};
      const transport::HandOverTarget target{path, static_cast<uint32_t>(server_pid),
                                             static_cast<uint32_t>(geteuid()), SomeConnection()};
      Result<transport::Bytes32> handle = transport::HandOverOwnMemory(
          target, &probe, std::chrono::steady_clock::now() + std::chrono::seconds(10));
      std::array<uint8_t, 33> out{};
      out[0] = handle.ok() ? 1 : 0;
      if (handle.ok()) std::copy(handle->begin(), handle->end(), out.begin() + 1);
      (void)!write(fds[1], out.data(), out.size());
      for (;;) pause();
    }
    close(fds[1]);
    std::array<uint8_t, 33> in{};
    EXPECT_EQ(read(fds[0], in.data(), in.size()), 33);
    close(fds[0]);
    ok_ = in[0] == 1;
    std::copy(in.begin() + 1, in.end(), handle_.begin());
    took_ = std::chrono::steady_clock::now() - start;
  }
  ~HandingChild() {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  bool ok() const { return ok_; }
  const transport::Bytes32& handle() const { return handle_; }
  // From fork to the child's report.
  std::chrono::steady_clock::duration took() const { return took_; }

 private:
  pid_t pid_ = -1;
  bool ok_ = false;
  transport::Bytes32 handle_{};
  std::chrono::steady_clock::duration took_{};
};

// Sends `bytes` with `fd` attached (when >= 0) as a raw client and returns the decoded reply.
inline Result<transport::HandOverReply> RawHandOver(const std::string& path,
                                                    std::span<const uint8_t> bytes, int fd) {
  UniqueFd sock(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  const sockaddr_un addr = AddressOf(path);
  if (connect(sock.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    return Status::Unavailable("connect");
  }
  if (transport::SendWithDescriptor(sock.get(), bytes, fd) != static_cast<ssize_t>(bytes.size())) {
    return Status::Unavailable("sendmsg");
  }
  std::vector<uint8_t> reply(1024);
  const ssize_t n = recv(sock.get(), reply.data(), reply.size(), 0);
  reply.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return transport::DecodeHandOverReply(reply);
}

// Whether a child's hand-over at `path` goes through within about 5 s (a gate may be starting).
inline bool EventuallyHandedOver(const std::string& path) {
  for (int attempt = 0; attempt < 100; ++attempt) {
    HandingChild child(path);
    if (child.ok()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

// This process, handing over at `path` to a listener in this same process.
inline transport::HandOverTarget ThisProcessAt(const std::string& path) {
  return {.socket_path = path,
          .server_pid = static_cast<uint32_t>(getpid()),
          .server_uid = static_cast<uint32_t>(geteuid()),
          .connection = SomeConnection()};
}

inline transport::HandOverDeadline InTenSeconds() {
  return std::chrono::steady_clock::now() + std::chrono::seconds(10);
}

class MemorySocketTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = SocketPath(::testing::UnitTest::GetInstance()->current_test_info()->name());
    unlink(path_.c_str());
  }
  void TearDown() override { unlink(path_.c_str()); }

  std::string path_;
  MemoryHandles handles_;
};

}  // namespace kvault::server
