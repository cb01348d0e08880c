// MemorySocket against what would stall or fill it: an empty packet's descriptors are closed, not
// leaked; a descriptor whose close never returns, or a region file on a file system that never
// answers, stalls only the gate, and the next client is served; a gate that dies is started
// again, one that falls silent is replaced; silent clients delay no one, and one user's cannot
// fill the socket. Each beside a positive control.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "control/memory_socket.h"
#include "kvault/transport/local/memory_handover.h"
#include "kvault/transport/local/shared_memory_file.h"
#include "memory_socket_fixture.h"
#include "stalling_fuse.h"

namespace kvault::server {
namespace {

using transport::Bytes32;

// A packet with no bytes can still carry descriptors, and a request may carry many: they are
// all taken and closed (in the gate, none leaks), and a reply says why.
TEST_F(MemorySocketTest, AnEmptyPacketsDescriptorsAreClosedNotLeaked) {
  Result<std::unique_ptr<MemorySocket>> socket =
      MemorySocket::Start(path_, &handles_, kGateProgram);
  ASSERT_TRUE(socket.ok()) << socket.status().ToString();
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
  std::error_code ec;
  const std::filesystem::path sent =
      std::filesystem::read_symlink("/proc/self/fd/" + std::to_string(fds[0]), ec);
  ASSERT_FALSE(ec) << ec.message();
  // Descriptors of the pipe open here and in the gate (where the descriptors clients send go).
  const std::string gate_fds = "/proc/" + std::to_string((*socket)->gate_pid()) + "/fd";
  auto copies_open = [&] {
    size_t copies = 0;
    for (const char* dir : {"/proc/self/fd", gate_fds.c_str()}) {
      for (const auto& entry : std::filesystem::directory_iterator(dir)) {
        std::error_code unreadable;
        copies += std::filesystem::read_symlink(entry.path(), unreadable) == sent ? 1 : 0;
      }
    }
    return copies;
  };
  for (int i = 0; i < 20; ++i) {
    Result<transport::HandOverReply> reply = RawHandOver(path_, {}, fds[0]);
    // While 8 of this user's received descriptors wait for the gate's closer thread (a loaded
    // host), the gate closes new connections unanswered: ask again until answered.
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!reply.ok() && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      reply = RawHandOver(path_, {}, fds[0]);
    }
    ASSERT_TRUE(reply.ok()) << reply.status().ToString();
    EXPECT_EQ(reply->status, transport::WireStatus::kInvalidArgument) << reply->message;
  }
  {  // A well-formed request carrying 40 copies: refused, every copy taken (none cut).
    transport::HandOverRequest request;
    request.probe_address = 0x1000;
    request.client_end = SomeConnection().client;
    request.server_end = SomeConnection().server;
    const auto bytes = transport::EncodeHandOverRequest(request);
    constexpr size_t kCopies = 40;
    auto send_copies = [&]() -> Result<transport::HandOverReply> {
      UniqueFd sock(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
      const sockaddr_un addr = AddressOf(path_);
      if (connect(sock.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
        return Status::Unavailable("connect");
      }
      const std::vector<int> copies(kCopies, fds[0]);
      alignas(cmsghdr) char control[CMSG_SPACE(kCopies * sizeof(int))] = {};
      iovec io{const_cast<uint8_t*>(bytes.data()), bytes.size()};
      msghdr msg{};
      msg.msg_iov = &io;
      msg.msg_iovlen = 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
      cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(kCopies * sizeof(int));
      std::memcpy(CMSG_DATA(c), copies.data(), kCopies * sizeof(int));
      if (sendmsg(sock.get(), &msg, 0) != static_cast<ssize_t>(bytes.size())) {
        return Status::Unavailable("sendmsg");
      }
      std::vector<uint8_t> reply(1024);
      const ssize_t n = recv(sock.get(), reply.data(), reply.size(), 0);
      reply.resize(n > 0 ? static_cast<size_t>(n) : 0);
      return transport::DecodeHandOverReply(reply);
    };
    Result<transport::HandOverReply> decoded = send_copies();
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!decoded.ok() && std::chrono::steady_clock::now() < until) {  // as above
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      decoded = send_copies();
    }
    ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
    EXPECT_NE(decoded->message.find("exactly one descriptor, not 40"), std::string::npos)
        << decoded->message;
  }
  EXPECT_GE(copies_open(), 2u);  // both ends here, at least
  close(fds[0]);
  close(fds[1]);
  size_t left = copies_open();
  for (int i = 0; i < 500 && left != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    left = copies_open();
  }
  EXPECT_EQ(left, 0u) << "descriptors of the pipe still open";
  HandingChild child(path_);  // positive control: still serving
  EXPECT_TRUE(child.ok());
}

// A descriptor whose close never returns (a file of a FUSE file system its sender serves and
// never answers) is refused, and its close waits in the gate: this process never holds it, the
// next client's memory is handed over all the same (positive control), and stopping the socket
// takes about a second (the gate is killed and not waited for), not forever.
TEST_F(MemorySocketTest, ADescriptorWhoseCloseNeverReturnsStallsOnlyTheGate) {
  StallingFuse fuse;
  if (const std::string why = fuse.Start(); !why.empty()) GTEST_SKIP() << why;
  Result<std::unique_ptr<MemorySocket>> socket =
      MemorySocket::Start(path_, &handles_, kGateProgram);
  ASSERT_TRUE(socket.ok()) << socket.status().ToString();
  UniqueFd file(fuse.OpenFile());
  ASSERT_GE(file.get(), 0) << std::strerror(errno);
  transport::HandOverRequest request;
  request.probe_address = 0x1000;
  request.client_end = SomeConnection().client;
  request.server_end = SomeConnection().server;
  Result<transport::HandOverReply> reply =
      RawHandOver(path_, transport::EncodeHandOverRequest(request), file.get());
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->status, transport::WireStatus::kInvalidArgument) << reply->message;
  EXPECT_NE(reply->message.find("not a process's memory file"), std::string::npos);
  for (int i = 0; i < 500 && fuse.stalled() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(fuse.stalled(), 1);  // the gate's close waits for an answer
  HandingChild child(path_);
  EXPECT_TRUE(child.ok());
  EXPECT_EQ(handles_.pending(), 1u);
  const pid_t gate = (*socket)->gate_pid();
  const auto start = std::chrono::steady_clock::now();
  socket->reset();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
  // The gate, killed, finishes dying once the file system is gone: reaped here.
  fuse.Abort();
  for (int i = 0; i < 500 && waitpid(gate, nullptr, WNOHANG) == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

// A region whose file is one of a FUSE file system that never answers is refused as not a memfd
// (F_GET_SEALS asks no file system), its close waits in the gate, and a sealed region handed
// over right after gets its handle within seconds (positive control).
TEST_F(MemorySocketTest, ARegionFileOfAStallingFileSystemIsRefusedWithoutHangingTheGate) {
  StallingFuse fuse;
  if (const std::string why = fuse.Start(); !why.empty()) GTEST_SKIP() << why;
  Result<std::unique_ptr<MemorySocket>> socket =
      MemorySocket::Start(path_, &handles_, kGateProgram);
  ASSERT_TRUE(socket.ok()) << socket.status().ToString();
  constexpr size_t kBytes = 4096;
  Result<transport::SharedMemoryFile> sealed = transport::SharedMemoryFile::Create(kBytes);
  ASSERT_TRUE(sealed.ok()) << sealed.status().ToString();
  const uint64_t base = reinterpret_cast<uintptr_t>(sealed->address());
  UniqueFd file(fuse.OpenFile());
  ASSERT_GE(file.get(), 0) << std::strerror(errno);
  const auto start = std::chrono::steady_clock::now();
  const Status refused =
      transport::HandOverRegion(ThisProcessAt(path_), base, kBytes, file.get(), InTenSeconds())
          .status();
  EXPECT_EQ(refused.code(), StatusCode::kInvalidArgument) << refused.ToString();
  EXPECT_NE(refused.message().find("not a memfd"), std::string::npos) << refused.ToString();
  EXPECT_EQ(handles_.pending(), 0u);
  for (int i = 0; i < 500 && fuse.stalled() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(fuse.stalled(), 1);  // the gate's close waits for an answer
  Result<Bytes32> handle = transport::HandOverRegion(ThisProcessAt(path_), base, kBytes,
                                                     sealed->descriptor(), InTenSeconds());
  ASSERT_TRUE(handle.ok()) << handle.status().ToString();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  std::optional<HandedOverMemory> handed = handles_.Redeem(*handle, HandedOverKind::kRegion);
  ASSERT_TRUE(handed.has_value());
  ASSERT_TRUE(handed->region.has_value());
  EXPECT_EQ(handed->region->base, base);
  const pid_t gate = (*socket)->gate_pid();
  socket->reset();
  // The gate, killed, finishes dying once the file system is gone: reaped here.
  fuse.Abort();
  for (int i = 0; i < 500 && waitpid(gate, nullptr, WNOHANG) == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

// A gate that dies is started again: a second later hand-overs go through once more.
TEST_F(MemorySocketTest, AGateThatDiesIsStartedAgain) {
  Result<std::unique_ptr<MemorySocket>> socket =
      MemorySocket::Start(path_, &handles_, kGateProgram);
  ASSERT_TRUE(socket.ok()) << socket.status().ToString();
  const pid_t first = (*socket)->gate_pid();
  ASSERT_GT(first, 0);
  ASSERT_EQ(kill(first, SIGKILL), 0);
  EXPECT_TRUE(EventuallyHandedOver(path_));
  EXPECT_GT((*socket)->gate_pid(), 0);
  EXPECT_NE((*socket)->gate_pid(), first);
}

// A gate that falls silent (here stopped with SIGSTOP; in earnest, stuck releasing what a client
// sent) is killed and replaced after kGateSilence: hand-overs go through again, to a new gate.
TEST_F(MemorySocketTest, AGateThatFallsSilentIsReplaced) {
  Result<std::unique_ptr<MemorySocket>> socket =
      MemorySocket::Start(path_, &handles_, kGateProgram);
  ASSERT_TRUE(socket.ok()) << socket.status().ToString();
  const pid_t first = (*socket)->gate_pid();
  ASSERT_GT(first, 0);
  ASSERT_EQ(kill(first, SIGSTOP), 0);
  const auto until = std::chrono::steady_clock::now() + kGateSilence + std::chrono::seconds(10);
  while ((*socket)->gate_pid() == first && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_NE((*socket)->gate_pid(), first);
  EXPECT_TRUE(EventuallyHandedOver(path_));
}

// Connections that say nothing hold up no one: a client's hand-over goes through while they
// wait (the io timeout is far beyond the client's deadline). One user cannot hold more than
// kMaxPendingPerUser of them: the next of that user is refused at once, and once they are gone
// that user is served again.
TEST_F(MemorySocketTest, SilentClientsDelayNoOneAndOneUserCannotFillTheSocket) {
  Result<std::unique_ptr<MemorySocket>> server =
      MemorySocket::Start(path_, &handles_, kGateProgram, std::chrono::seconds(60));
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  const sockaddr_un addr = AddressOf(path_);
  std::vector<UniqueFd> silent;
  for (int i = 0; i < 7; ++i) {
    silent.emplace_back(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    ASSERT_EQ(connect(silent.back().get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr),
              0);
  }
  {
    HandingChild child(path_);  // the eighth of this user
    EXPECT_TRUE(child.ok());
  }
  silent.emplace_back(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  ASSERT_EQ(connect(silent.back().get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
  {
    HandingChild refused(path_);  // a ninth: refused at once, not after 60 s (nor its 10 s)
    EXPECT_FALSE(refused.ok());
    EXPECT_LT(refused.took(), std::chrono::seconds(5));
  }
  silent.clear();
  EXPECT_TRUE(EventuallyHandedOver(path_));
}

}  // namespace
}  // namespace kvault::server
