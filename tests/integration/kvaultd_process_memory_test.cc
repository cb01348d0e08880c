// The process-memory data plane of a kvaultd that serves tenants (data_plane.process_memory
// auto): a client on this host authenticates, checks the daemon's proof, hands its memory over
// at the daemon's memory socket and attaches it, then stores and loads through it, byte for
// byte; a handle attaches one authenticated session once (beside the positive control that
// does); a request naming memory the client has not mapped fails its keys only; clients of
// another user than the daemon and root's are served alike, not dumpable ones cannot hand over;
// and the daemon's UCX leaves out shared memory, so it maps none of the client's buffers.
// libkvault's side: kvaultd_process_memory_client_test.cc.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "daemon_process.h"
#include "kv_test_util.h"
#include "kvault/common/auth.h"
#include "kvault/transport/local/memory_handover.h"
#include "kvault/transport/messages.h"
#include "process_memory_fixture.h"
#include "raw_connection.h"

namespace kvault::testing {
namespace {

// Stores one synthetic object from memory of this process over `c` and loads it back into
// other memory; 0 when both went through byte for byte, else a code from `first` up.
int StoreAndLoadOwnMemory(RawConnection& c, uint8_t seed, int first) {
  BlockKey key;
  key.fill(seed);
  std::vector<uint8_t> object(SyntheticObjectBytes(8192));
  if (!WriteSyntheticBlock(key, 8192, object).ok()) return first;
  transport::Store store;
  store.remote_key = {1};  // ignored by this plane; the protocol wants one
  store.entries.push_back({key, reinterpret_cast<uint64_t>(object.data()), object.size()});
  if (!c.SendMessage(store, 10)) return first + 1;
  auto reply = c.ReadMessage();
  if (!reply || !std::holds_alternative<transport::StoreReply>(reply->first) ||
      std::get<transport::StoreReply>(reply->first).statuses !=
          std::vector<transport::WireStatus>{transport::WireStatus::kOk}) {
    return first + 2;
  }
  std::vector<uint8_t> back(object.size(), 0);
  transport::Load load;
  load.remote_key = {1};
  transport::LoadEntry entry;
  entry.key = key;
  entry.address = reinterpret_cast<uint64_t>(back.data());
  entry.capacity = back.size();
  load.entries.push_back(entry);
  if (!c.SendMessage(load, 11)) return first + 3;
  reply = c.ReadMessage();
  if (!reply || !std::holds_alternative<transport::LoadReply>(reply->first)) return first + 4;
  return back == object ? 0 : first + 5;
}

// The ends of `c`'s TCP connection as the client sees them.
transport::ControlConnection EndsOf(const RawConnection& c) {
  sockaddr_in local{};
  sockaddr_in peer{};
  socklen_t local_length = sizeof local;
  socklen_t peer_length = sizeof peer;
  getsockname(c.fd(), reinterpret_cast<sockaddr*>(&local), &local_length);
  getpeername(c.fd(), reinterpret_cast<sockaddr*>(&peer), &peer_length);
  auto end = [](const sockaddr_in& a) {
    std::array<uint8_t, 4> bytes;
    std::memcpy(bytes.data(), &a.sin_addr, 4);
    return transport::TcpEnd::V4(bytes, ntohs(a.sin_port));
  };
  return {end(peer), end(local)};
}

// Hands this process's memory over at the memory socket `c`'s HelloReply named, for `c`'s
// connection; all zeros when that fails. The probe stays in place for the rest of the (client)
// process, and is renewed by each call: the daemon reads it back on AttachMemory.
transport::Bytes32 HandOver(const RawConnection& c) {
  static transport::HandOverProbe probe{};
  const transport::HelloReply& hr = c.hello_reply();
  Result<transport::Bytes32> handle = transport::HandOverOwnMemory(
      {hr.memory_socket, hr.server_pid, hr.server_uid, EndsOf(c)}, &probe,
      std::chrono::steady_clock::now() + std::chrono::seconds(10));
  return handle.ok() ? *handle : transport::Bytes32{};
}

// Logs `c` in as team-a, hands this process's memory over and attaches it: true when the daemon
// took it.
bool LoginAndAttach(RawConnection& c) {
  if (!c.Login("team-a", "secret-a")) return false;
  const std::optional<transport::AttachMemoryReply> attached = c.AttachMemory(HandOver(c));
  return attached && attached->status == transport::WireStatus::kOk;
}

// Forwards one TCP connection, accepted on a port of its own, to 127.0.0.1:`target` and back
// until either side closes: a relay between a client and kvaultd.
class Relay {
 public:
  explicit Relay(uint16_t target) {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof addr;
    ::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::listen(listener_, 1);
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &length);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this, target] { Pump(target); });
  }
  ~Relay() {
    stop_ = true;
    ::shutdown(listener_, SHUT_RDWR);
    thread_.join();
    ::close(listener_);
  }
  uint16_t port() const { return port_; }

 private:
  void Pump(uint16_t target) {
    const int in = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
    if (in < 0) return;
    const int out = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(target);
    if (::connect(out, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      std::vector<uint8_t> buffer(1 << 16);
      pollfd p[2] = {{in, POLLIN, 0}, {out, POLLIN, 0}};
      while (!stop_ && ::poll(p, 2, 50) >= 0) {
        bool closed = false;
        for (int i = 0; i < 2; ++i) {
          if (p[i].revents == 0) continue;
          const ssize_t n = ::read(p[i].fd, buffer.data(), buffer.size());
          if (n <= 0 ||
              ::send(p[1 - i].fd, buffer.data(), static_cast<size_t>(n), MSG_NOSIGNAL) != n) {
            closed = true;
          }
        }
        if (closed) break;
      }
    }
    ::close(out);
    ::close(in);
  }

  int listener_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// An RssShmem figure of /proc/<pid>/status in bytes, or -1.
int64_t ShmemBytes(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("RssShmem:", 0) == 0) return std::stoll(line.substr(9)) * 1024;
  }
  return -1;
}

TEST_F(KvaultdProcessMemoryTest, ALocalTenantClientStoresAndLoadsThroughItsOwnMemory) {
  // libkvault in the client: stores from memory UCX allocated (shared memory a UCX daemon would
  // map) and loads into memory of its own; 24 MiB in all.
  ForkedClient client([](uint16_t port) {
    ClientConfig config;
    config.server = "127.0.0.1:" + std::to_string(port);
    config.tenant = "team-a";
    config.token = "secret-a";
    Result<std::unique_ptr<Client>> c = Client::Connect(config);
    if (!c.ok()) return 1;
    const std::vector<BlockKey> keys = Keys(24, 0x41);
    const uint64_t payload = 1 << 20;
    const uint64_t object = SyntheticObjectBytes(payload);
    Result<MemoryRegion> sources = (*c)->AllocateMemory(object * keys.size());
    if (!sources.ok()) return 2;
    std::vector<std::span<const uint8_t>> spans;
    for (size_t i = 0; i < keys.size(); ++i) {
      std::span<uint8_t> bytes = sources->bytes().subspan(i * object, object);
      if (!WriteSyntheticBlock(keys[i], payload, bytes).ok()) return 3;
      spans.push_back(bytes);
    }
    StoreHandle stored = (*c)->Store(keys, spans);
    if (!stored.Wait(Clock::now() + std::chrono::seconds(30)).ok() ||
        stored.ok_count() != keys.size()) {
      return 4;
    }
    OwnMemory destination(object * keys.size());
    Result<MemoryRegion> registered = (*c)->RegisterMemory(destination.data, destination.size);
    if (!registered.ok()) return 5;
    const LookupResult hits = (*c)->LookupPrefix(keys, {.want_lease = true});
    if (hits.leading_hits != keys.size()) return 6;
    std::vector<LoadDestination> destinations;
    for (size_t i = 0; i < keys.size(); ++i) {
      destinations.push_back({destination.at(i * object, object)});
    }
    LoadHandle load = (*c)->Load(hits.lease, keys, destinations);
    if (!load.Wait(Clock::now() + std::chrono::seconds(30)).ok()) return 7;
    for (size_t i = 0; i < keys.size(); ++i) {
      if (!IsSyntheticBlockFor(keys[i], destination.at(i * object, object))) return 8;
    }
    return 0;
  });
  DaemonProcess d(dir_, TenantArgs());
  ASSERT_TRUE(d.ok()) << d.Stderr();
  const int64_t shmem_before = ShmemBytes(d.pid());
  EXPECT_EQ(client.Run(d.control_port()), 0) << d.Stderr();
  // No client buffer was mapped into the daemon (a UCX shared-memory plane maps the 24 MiB of
  // sources); a few MiB of the daemon's own shared memory may move.
  EXPECT_LT(ShmemBytes(d.pid()) - shmem_before, int64_t{8} << 20);
  EXPECT_EQ(d.Terminate(), 0);
  EXPECT_NE(d.Stderr().find("data plane process_memory"), std::string::npos) << d.Stderr();
  EXPECT_NE(d.Stderr().find("transports '^shm'"), std::string::npos) << d.Stderr();
}

// AttachMemory works only after a successful Auth, whose reply proves the daemon knows the
// token and vouches for what it announced of its memory socket (path, pid, uid); a handle
// attaches one session, once, and only the one it was handed over for: used again, forged,
// handed over for another connection, or on a session already attached it is refused, each
// beside the positive control that attaches and moves bytes. Without a tenants file, auto leaves
// the plane off: no memory socket is named and AttachMemory is unsupported.
TEST_F(KvaultdProcessMemoryTest, AHandleAttachesTheSessionItWasHandedOverForOnce) {
  auto refused = [](const std::optional<transport::AttachMemoryReply>& reply) {
    return reply && reply->status == transport::WireStatus::kInvalidArgument;
  };
  ForkedClient client([&](uint16_t port) {
    RawConnection first(port);
    if (first.AttachMemory(transport::Bytes32{1})) return 1;  // before auth: an ErrorReply
    if (!first.Login("team-a", "secret-a")) return 2;
    const transport::HelloReply& hr = first.hello_reply();
    if (hr.memory_socket.empty() || hr.memory_socket[0] != '/' || hr.server_pid == 0) return 3;
    const auto& proof = first.auth_reply().server_proof;
    const AuthDigest token = TokenHash("secret-a");
    if (!VerifyServerProof(token, hr.nonce, first.auth_proof(), hr.server_pid, hr.server_uid,
                           hr.memory_socket, proof) ||
        VerifyServerProof(TokenHash("secret-b"), hr.nonce, first.auth_proof(), hr.server_pid,
                          hr.server_uid, hr.memory_socket, proof) ||
        VerifyServerProof(token, hr.nonce, first.auth_proof(), hr.server_pid, hr.server_uid,
                          "/tmp/other.sock", proof) ||
        VerifyServerProof(token, hr.nonce, first.auth_proof(), hr.server_pid + 1, hr.server_uid,
                          hr.memory_socket, proof)) {
      return 4;
    }
    const transport::Bytes32 handle = HandOver(first);
    if (handle == transport::Bytes32{}) return 5;
    std::optional<transport::AttachMemoryReply> attached = first.AttachMemory(handle);
    if (!attached || attached->status != transport::WireStatus::kOk) return 6;
    if (int failed = StoreAndLoadOwnMemory(first, 0x47, 20); failed != 0) return failed;
    if (!refused(first.AttachMemory(HandOver(first)))) return 7;  // attached already

    RawConnection second(port);
    if (!second.Login("team-a", "secret-a")) return 8;
    if (!refused(second.AttachMemory(handle))) return 9;  // spent by the first
    transport::Bytes32 forged = HandOver(second);
    forged[0] ^= 1;
    if (!refused(second.AttachMemory(forged))) return 10;
    RawConnection third(port);
    if (!third.Login("team-a", "secret-a")) return 11;
    if (!refused(third.AttachMemory(HandOver(second)))) return 12;  // handed over for another
    attached = second.AttachMemory(HandOver(second));               // positive control
    if (!attached || attached->status != transport::WireStatus::kOk) return 13;
    return 0;
  });
  DaemonProcess d(dir_, TenantArgs());
  ASSERT_TRUE(d.ok()) << d.Stderr();
  EXPECT_NE(d.ready_line().find(" memory_socket=/"), std::string::npos) << d.ready_line();
  EXPECT_EQ(client.Run(d.control_port()), 0) << d.Stderr();
  EXPECT_EQ(d.Terminate(), 0);
  EXPECT_NE(d.Stderr().find("memory handle is unknown, expired or used already"), std::string::npos)
      << d.Stderr();

  fs::create_directories(dir_ / "single");
  ForkedClient plain([&](uint16_t port) {
    RawConnection c(port);
    if (!c.Login()) return 1;
    if (!c.hello_reply().memory_socket.empty() || c.hello_reply().server_pid != 0) return 2;
    const std::optional<transport::AttachMemoryReply> attached =
        c.AttachMemory(transport::Bytes32{1});
    return attached && attached->status == transport::WireStatus::kUnsupported ? 0 : 3;
  });
  DaemonProcess single(dir_ / "single", {"--storage.nvme_capacity", "0"});
  ASSERT_TRUE(single.ok()) << single.Stderr();
  EXPECT_EQ(single.ready_line().find("memory_socket="), std::string::npos);
  EXPECT_EQ(plain.Run(single.control_port()), 0) << single.Stderr();
}

// A relay between the client and kvaultd (here a process of the client's own; one of another
// user listening where the client connects would be the attack) passes the handshake and the
// server proof along, but the memory the client hands over names the client's connection to
// the relay, which is not the relay's session with kvaultd: AttachMemory through the relay is
// refused. The client's direct connection attaches (positive control).
TEST_F(KvaultdProcessMemoryTest, MemoryHandedOverDoesNotAttachARelaysSession) {
  ForkedClient client([&](uint16_t port) {
    Relay relay(port);
    RawConnection through(relay.port());
    if (!through.Login("team-a", "secret-a")) return 1;
    const transport::HelloReply& hr = through.hello_reply();
    if (!VerifyServerProof(TokenHash("secret-a"), hr.nonce, through.auth_proof(), hr.server_pid,
                           hr.server_uid, hr.memory_socket, through.auth_reply().server_proof)) {
      return 2;  // the relay changes nothing the proof covers
    }
    const std::optional<transport::AttachMemoryReply> relayed =
        through.AttachMemory(HandOver(through));
    if (!relayed || relayed->status != transport::WireStatus::kInvalidArgument ||
        relayed->message.find("another control connection") == std::string::npos) {
      return 3;
    }
    RawConnection direct(port);
    return LoginAndAttach(direct) ? 0 : 4;
  });
  DaemonProcess d(dir_, TenantArgs());
  ASSERT_TRUE(d.ok()) << d.Stderr();
  EXPECT_EQ(client.Run(d.control_port()), 0) << d.Stderr();
}

// A request naming memory the client has not mapped fails that key only; the other key, from
// the client's memory, is stored and loads back, and the connection goes on.
TEST_F(KvaultdProcessMemoryTest, AStoreNamingUnmappedMemoryFailsThatKeyOnly) {
  ForkedClient client([](uint16_t port) {
    RawConnection c(port);
    if (!LoginAndAttach(c)) return 1;
    const std::vector<BlockKey> keys = Keys(2, 0x42);
    std::vector<uint8_t> object(SyntheticObjectBytes(4096));
    if (!WriteSyntheticBlock(keys[0], 4096, object).ok()) return 3;
    transport::Store store;
    store.remote_key = {1};
    store.entries.push_back({keys[0], reinterpret_cast<uint64_t>(object.data()), object.size()});
    store.entries.push_back({keys[1], 4096, object.size()});  // page 1: never mapped
    if (!c.SendMessage(store, 10)) return 4;
    auto reply = c.ReadMessage();
    if (!reply || !std::holds_alternative<transport::StoreReply>(reply->first)) return 5;
    const auto& statuses = std::get<transport::StoreReply>(reply->first).statuses;
    if (statuses != std::vector<transport::WireStatus>{transport::WireStatus::kOk,
                                                       transport::WireStatus::kTransferFailed}) {
      return 6;
    }
    transport::Lookup lookup;
    lookup.keys = keys;
    if (!c.SendMessage(lookup, 11)) return 7;
    reply = c.ReadMessage();
    if (!reply || !std::holds_alternative<transport::LookupReply>(reply->first) ||
        std::get<transport::LookupReply>(reply->first).leading_hits != 1) {
      return 8;
    }
    if (int failed = StoreAndLoadOwnMemory(c, 0x44, 20); failed != 0) return failed;
    return c.Ping() ? 0 : 9;
  });
  DaemonProcess d(dir_, TenantArgs());
  ASSERT_TRUE(d.ok()) << d.Stderr();
  EXPECT_EQ(client.Run(d.control_port()), 0) << d.Stderr();
}

// The daemon opens no client's memory itself, so a client of another user (nobody) is served
// byte for byte through the memory it hands over. A process that made itself not dumpable
// cannot open its own memory file (the kernel gives it to root), so it hands nothing over and
// gets no process-memory plane: its choice to keep others out holds for kvaultd too.
TEST_F(KvaultdProcessMemoryTest, AClientOfAnotherUserIsServedANotDumpableOneIsNot) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to run the clients as nobody";
  ForkedClient plain([](uint16_t port) {
    RawConnection c(port);
    if (!LoginAndAttach(c)) return 1;
    return StoreAndLoadOwnMemory(c, 0x43, 10);
  });
  ForkedClient hidden([](uint16_t port) {
    if (prctl(PR_SET_DUMPABLE, 0) != 0) return 1;
    RawConnection c(port);
    if (!c.Login("team-a", "secret-a")) return 2;
    const transport::HelloReply& hr = c.hello_reply();
    transport::HandOverProbe probe{};
    const Status refused = transport::HandOverOwnMemory(
                               {hr.memory_socket, hr.server_pid, hr.server_uid, EndsOf(c)}, &probe,
                               std::chrono::steady_clock::now() + std::chrono::seconds(10))
                               .status();
    if (refused.ok() || refused.message().find("/proc/self/mem") == std::string::npos) return 3;
    return 0;
  });
  DaemonProcess d(dir_, TenantArgs());
  ASSERT_TRUE(d.ok()) << d.Stderr();
  EXPECT_EQ(plain.Run(d.control_port()), 0) << d.Stderr();
  EXPECT_EQ(hidden.Run(d.control_port()), 0) << d.Stderr();
  EXPECT_EQ(d.Terminate(), 0);
}

// data_plane.memory_socket: a path that cannot be bound (longer than a Unix socket path may
// be) stops a daemon with process_memory on, naming the key, and leaves a daemon with auto
// running without the plane (a warning, no memory_socket in the ready line); a good explicit
// path is used as given (positive control).
TEST_F(KvaultdProcessMemoryTest, MemorySocketKey) {
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = TenantArgs();
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  };
  const std::string too_long = "/tmp/" + std::string(120, 'x') + ".sock";
  for (const char* sub : {"on", "auto", "good"}) fs::create_directories(dir_ / sub);
  {
    DaemonProcess on(dir_ / "on", with({"--data-plane-memory-socket", too_long,
                                        "--data-plane-process-memory", "on"}));
    EXPECT_FALSE(on.ok());
    EXPECT_NE(on.Stderr().find("data_plane.memory_socket"), std::string::npos) << on.Stderr();
    EXPECT_NE(on.Stderr().find("at most 107 bytes"), std::string::npos) << on.Stderr();
  }
  {
    DaemonProcess automatic(dir_ / "auto", with({"--data-plane-memory-socket", too_long}));
    ASSERT_TRUE(automatic.ok()) << automatic.Stderr();
    EXPECT_EQ(automatic.ready_line().find("memory_socket="), std::string::npos);
    EXPECT_NE(automatic.Stderr().find("no process-memory data plane (data_plane.memory_socket"),
              std::string::npos)
        << automatic.Stderr();
  }
  const std::string good = (dir_ / "good" / "m.sock").string();
  ASSERT_LE(good.size(), 107u);
  DaemonProcess explicit_path(dir_ / "good", with({"--data-plane-memory-socket", good}));
  ASSERT_TRUE(explicit_path.ok()) << explicit_path.Stderr();
  EXPECT_NE(explicit_path.ready_line().find(" memory_socket=" + good), std::string::npos)
      << explicit_path.ready_line();
}

}  // namespace
}  // namespace kvault::testing
