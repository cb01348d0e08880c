// The server proof that guards the memory hand-over (docs/authentication.md §6): a client on the
// daemon's host with a token hands its process memory to the memory socket the HelloReply names
// only when the AuthReply's server proof verifies. The fake daemon names a real Unix socket that
// the test listens at; the listener refuses every hand-over it receives, so a client that did hand
// over falls back to UCX as it does after a daemon's refusal.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "fake_server.h"
#include "kvault/client.h"
#include "kvault/transport/local/memory_handover.h"

namespace kvault {
namespace {

using std::chrono::milliseconds;
using testing::FakeServer;

constexpr char kToken[] = "s3cret";

// A SOCK_SEQPACKET socket listening at memory.sock in a fresh directory under /tmp, as kvaultd's
// memory socket does. A thread accepts each connection, receives its one request and answers it
// with an unavailable HandOverReply (a refusal: no handle to redeem).
class MemorySocketListener {
 public:
  MemorySocketListener() {
    char dir[] = "/tmp/kvault-proof-XXXXXX";
    if (::mkdtemp(dir) == nullptr) return;
    dir_ = dir;
    path_ = dir_ + "/memory.sock";
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path_.data(), path_.size());
    fd_ = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(fd_, 8) != 0) {
      return;
    }
    listening_ = true;
    thread_ = std::thread([this] { Run(); });
  }

  ~MemorySocketListener() {
    Stop();
    if (fd_ >= 0) ::close(fd_);
    if (!path_.empty()) ::unlink(path_.c_str());
    if (!dir_.empty()) ::rmdir(dir_.c_str());
  }

  bool listening() const { return listening_; }
  const std::string& path() const { return path_; }

  // Stops the thread, then counts what is still waiting in the backlog too: every connection
  // made to the socket so far.
  int StopAndCountConnections() {
    Stop();
    while (fd_ >= 0) {
      const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) break;
      ++connections_;
      ::close(c);
    }
    return connections_.load();
  }

  // The requests received, each with the sender's credentials.
  std::vector<transport::HandedOver> requests() const {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }

 private:
  void Stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
  }

  void Run() {
    while (!stop_.load()) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      ++connections_;
      pollfd q{c, POLLIN, 0};
      if (::poll(&q, 1, 2000) > 0) {
        std::vector<UniqueFd> descriptors;  // the client's /proc/self/mem: closed here
        Result<transport::HandedOver> got = transport::ReceiveHandOver(c, &descriptors);
        if (got.ok()) {
          std::lock_guard<std::mutex> lock(mu_);
          requests_.push_back(*got);
        }
        transport::HandOverReply refusal;
        refusal.status = transport::WireStatus::kUnavailable;
        refusal.message = "refused by the test's memory socket";
        (void)transport::SendHandOverReply(c, refusal);
      }
      ::close(c);
    }
  }

  std::string dir_;
  std::string path_;
  int fd_ = -1;
  bool listening_ = false;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  mutable std::mutex mu_;
  std::vector<transport::HandedOver> requests_;
  std::thread thread_;  // last: started after every member it uses
};

ClientConfig ConfigFor(const std::string& address) {
  ClientConfig c;
  c.server = address;
  c.token = kToken;  // the default tenant's empty token would hand nothing over
  c.connect_timeout = milliseconds(4000);
  c.request_timeout = milliseconds(1000);
  c.reconnect_backoff = milliseconds(0);
  c.client_name = "server-proof-test";
  return c;
}

bool UcxUnavailable(const Result<std::unique_ptr<Client>>& client) {
  return !client.ok() && client.status().message().find("UCX") != std::string::npos &&
         client.status().message().find("worker proof") == std::string::npos;
}

// The client works after the connect: a Ping and a Lookup are answered.
void ExpectWorks(Client& client) {
  Result<std::chrono::nanoseconds> rtt = client.Ping();
  EXPECT_TRUE(rtt.ok()) << rtt.status().ToString();
  std::vector<BlockKey> keys(3);
  for (size_t i = 0; i < keys.size(); ++i) keys[i].fill(static_cast<uint8_t>(i + 1));
  LookupResult found = client.LookupPrefix(keys);
  EXPECT_TRUE(found.status.ok()) << found.status.ToString();
  EXPECT_EQ(found.leading_hits, 2u);  // the fake daemon's canned answer
}

// The client said Hello first without its UCX worker (it meant to hand its memory over), then,
// having handed nothing over, said Hello and Auth again announcing the worker; it never sent an
// AttachMemory.
void ExpectFellBackToUcx(const FakeServer& server) {
  const std::vector<transport::Hello> hellos = server.hellos();
  ASSERT_EQ(hellos.size(), 2u);
  EXPECT_TRUE(hellos[0].worker_address.empty());
  EXPECT_FALSE(hellos[1].worker_address.empty());
  EXPECT_EQ(server.requests(transport::MessageType::kAuth), 2);
  EXPECT_EQ(server.requests(transport::MessageType::kAttachMemory), 0);
  EXPECT_EQ(server.connections(), 1);
}

TEST(ClientServerProof, WrongServerProofHandsNothingToTheMemorySocket) {
  MemorySocketListener socket;
  ASSERT_TRUE(socket.listening()) << std::strerror(errno);
  FakeServer server(FakeServer::Mode::kServe, kToken);
  server.OfferMemorySocket(socket.path(), /*correct_proof=*/false);

  Result<std::unique_ptr<Client>> client = Client::Connect(ConfigFor(server.address()));
  if (UcxUnavailable(client)) GTEST_SKIP() << "UCX unavailable: " << client.status().ToString();
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  ExpectWorks(**client);

  EXPECT_EQ(socket.StopAndCountConnections(), 0);
  EXPECT_TRUE(socket.requests().empty());
  ExpectFellBackToUcx(server);
}

// Positive control of the test above: the same daemon and socket with the right proof get the
// hand-over (this process's memory, sent by this process); refused there, the client falls back
// to UCX on the same connection and works.
TEST(ClientServerProof, RightServerProofHandsMemoryOverAndARefusalFallsBackToUcx) {
  MemorySocketListener socket;
  ASSERT_TRUE(socket.listening()) << std::strerror(errno);
  FakeServer server(FakeServer::Mode::kServe, kToken);
  server.OfferMemorySocket(socket.path(), /*correct_proof=*/true);

  Result<std::unique_ptr<Client>> client = Client::Connect(ConfigFor(server.address()));
  if (UcxUnavailable(client)) GTEST_SKIP() << "UCX unavailable: " << client.status().ToString();
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  ExpectWorks(**client);

  EXPECT_EQ(socket.StopAndCountConnections(), 1);
  const std::vector<transport::HandedOver> requests = socket.requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<transport::HandOverRequest>(requests[0].request));
  EXPECT_EQ(requests[0].peer_pid, static_cast<uint32_t>(::getpid()));
  if (const auto* r = std::get_if<transport::HandOverRequest>(&requests[0].request)) {
    // The request names the control connection to the fake daemon.
    const std::string address = server.address();
    EXPECT_EQ(std::to_string(r->server_end.port), address.substr(address.rfind(':') + 1));
  }
  ExpectFellBackToUcx(server);
}

}  // namespace
}  // namespace kvault
