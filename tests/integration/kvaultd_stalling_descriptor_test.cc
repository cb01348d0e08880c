// A descriptor whose close never returns, handed to kvaultd's memory socket: any local user may
// connect there and send one, e.g. of a file on a FUSE file system the sender serves and never
// answers (the kernel then waits uninterruptibly in the process that closes it, and a process
// with such a thread cannot finish exiting). The daemon refuses it, goes on handing over genuine
// memory (the positive control: a tenant's client attaches through the socket afterwards), and
// still stops on SIGTERM with exit code 0 within its bound.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "../unit/server/stalling_fuse.h"
#include "daemon_process.h"
#include "kv_test_util.h"
#include "kvault/common/file_io.h"
#include "kvault/transport/local/memory_handover.h"

namespace kvault::testing {
namespace {

namespace fs = std::filesystem;

class KvaultdStallingDescriptorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("kvaultd_stalling_descriptor_" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    WriteOneTenantFile(dir_ / "tenants.yaml", "team-a", "secret-a");
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path dir_;
};

// The memory socket's path from the ready line ("... memory_socket=PATH"), or "".
std::string MemorySocketOf(const std::string& ready_line) {
  const size_t at = ready_line.find(" memory_socket=");
  if (at == std::string::npos) return "";
  const size_t start = at + std::strlen(" memory_socket=");
  return ready_line.substr(start, ready_line.find_first_of(" \n", start) - start);
}

// Sends a well-formed request with `fd` attached to the socket at `path` and returns the reply
// (Unavailable when none came within 10 s).
Result<transport::HandOverReply> HandOverDescriptor(const std::string& path, int fd) {
  UniqueFd sock(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  if (connect(sock.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    return Status::Unavailable(std::string("connect: ") + std::strerror(errno));
  }
  transport::HandOverRequest request;
  request.probe_address = 0x1000;
  request.client_end = transport::TcpEnd::V4({127, 0, 0, 1}, 40000);
  request.server_end = transport::TcpEnd::V4({127, 0, 0, 1}, 7400);
  const auto bytes = transport::EncodeHandOverRequest(request);
  if (transport::SendWithDescriptor(sock.get(), bytes, fd) != static_cast<ssize_t>(bytes.size())) {
    return Status::Unavailable(std::string("send: ") + std::strerror(errno));
  }
  pollfd polled{sock.get(), POLLIN, 0};
  if (poll(&polled, 1, 10'000) != 1) return Status::Unavailable("no reply within 10 s");
  std::vector<uint8_t> reply(transport::kHandOverReplyHeaderBytes +
                             transport::kMaxHandOverMessageBytes);
  const ssize_t n = recv(sock.get(), reply.data(), reply.size(), 0);
  if (n <= 0) return Status::Unavailable("the socket closed without a reply");
  reply.resize(static_cast<size_t>(n));
  return transport::DecodeHandOverReply(reply);
}

TEST_F(KvaultdStallingDescriptorTest,
       ADescriptorWhoseCloseNeverReturnsNeitherStopsHandOversNorExit) {
  server::StallingFuse fuse;
  if (const std::string why = fuse.Start(); !why.empty()) GTEST_SKIP() << why;
  DaemonProcess d(
      dir_, {"--auth.tenants_file", (dir_ / "tenants.yaml").string(), "--storage.nvme_capacity",
             "0", "--limits.drain_timeout", "2s", "--log_level", "debug"});
  ASSERT_TRUE(d.ok()) << d.Stderr();
  const std::string path = MemorySocketOf(d.ready_line());
  ASSERT_FALSE(path.empty()) << d.ready_line();

  UniqueFd file(fuse.OpenFile());
  ASSERT_GE(file.get(), 0) << std::strerror(errno);
  Result<transport::HandOverReply> refused = HandOverDescriptor(path, file.get());
  file = UniqueFd();  // this process's own close is answered; only kvaultd's side would wait
  ASSERT_TRUE(refused.ok()) << refused.status().ToString();
  EXPECT_NE(refused->status, transport::WireStatus::kOk);
  EXPECT_NE(refused->message.find("not a process's memory file"), std::string::npos)
      << refused->message;
  // The daemon's side closes its copy, and that close now waits for an answer that never comes.
  for (int i = 0; i < 500 && fuse.stalled() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(fuse.stalled(), 1);

  // Positive control: a tenant's client still hands its memory over and attaches it.
  ClientConfig config = TenantClientConfig(d.server(), "team-a", "secret-a");
  {
    Result<std::unique_ptr<Client>> client = Client::Connect(config);
    ASSERT_TRUE(client.ok()) << client.status().ToString();
    const std::vector<BlockKey> keys = {BlockKey{}};
    MemoryRegion sources;
    StoreSyntheticObjects(**client, keys, 4096, sources);
    EXPECT_EQ((*client)->LookupPrefix(keys).leading_hits, 1u);
  }
  EXPECT_NE(d.Stderr().find("data plane process_memory"), std::string::npos) << d.Stderr();

  // SIGTERM: drained (2 s bound), exit 0, without waiting for that close. Should the daemon
  // wait for it after all, the file system is aborted after 30 s so the test fails, not hangs.
  std::atomic<bool> stopped{false};
  std::thread watchdog([&] {
    for (int i = 0; i < 3000 && !stopped; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (!stopped) fuse.Abort();
  });
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(d.Terminate(std::chrono::seconds(20)), 0) << d.Stderr();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(15));
  stopped = true;
  watchdog.join();
  EXPECT_FALSE(fs::exists(path)) << "the socket file outlived the daemon";
}

}  // namespace
}  // namespace kvault::testing
