// The process-memory data plane of a kvaultd that serves tenants (data_plane.process_memory
// auto): a client on this host stores and loads through its own memory, byte for byte; a Hello
// naming a process that does not hold the connection gets no such plane (beside the positive
// control that does); a request naming memory the client has not mapped fails its keys only; and
// the daemon's UCX leaves out shared memory, so it maps none of the client's buffers.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "daemon_process.h"
#include "kv_test_util.h"
#include "kvault/common/auth.h"
#include "kvault/transport/messages.h"
#include "raw_connection.h"

namespace kvault::testing {
namespace {

namespace fs = std::filesystem;

class KvaultdProcessMemoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("kvaultd_process_memory_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    std::ofstream f(dir_ / "tenants.yaml");
    f << "tenants:\n  - name: team-a\n    token_sha256: " << HexEncode(TokenHash("secret-a"))
      << "\n    quota_bytes: 0\n";
    f.close();
    fs::permissions(dir_ / "tenants.yaml", fs::perms::owner_read | fs::perms::owner_write);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::vector<std::string> TenantArgs() const {
    return {"--auth.tenants_file",
            (dir_ / "tenants.yaml").string(),
            "--storage.nvme_capacity",
            "0",
            "--log_level",
            "debug"};
  }

  fs::path dir_;
};

std::vector<BlockKey> Keys(size_t n, uint8_t seed) {
  std::vector<BlockKey> keys(n);
  for (size_t i = 0; i < n; ++i) {
    keys[i].fill(seed);
    keys[i][0] = static_cast<uint8_t>(i);
  }
  return keys;
}

// A client process forked now (while this process has one thread, before the daemon starts):
// as root it becomes nobody (a process of user 0 is never copied directly) and dumpable, as a
// process that user started would be; it then waits for the daemon's control port and exits
// with body(port) (0 when every check held, another code naming the one that failed).
class ForkedClient {
 public:
  explicit ForkedClient(const std::function<int(uint16_t)>& body) {
    int fds[2];
    EXPECT_EQ(pipe(fds), 0);
    pid_ = fork();
    if (pid_ == 0) {
      close(fds[1]);
      uint16_t port = 0;
      if (read(fds[0], &port, sizeof port) != sizeof port) _exit(100);
      if (geteuid() == 0 &&
          (syscall(SYS_setresgid, 65534, 65534, 65534) != 0 ||
           syscall(SYS_setresuid, 65534, 65534, 65534) != 0 || prctl(PR_SET_DUMPABLE, 1) != 0)) {
        _exit(101);
      }
      _exit(body(port));
    }
    close(fds[0]);
    port_pipe_ = fds[1];
  }
  ~ForkedClient() {
    if (port_pipe_ >= 0) close(port_pipe_);
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  // Hands the client `port` and waits for it (up to 60 s); its exit code, or -1.
  int Run(uint16_t port) {
    if (write(port_pipe_, &port, sizeof port) != static_cast<ssize_t>(sizeof port)) return -1;
    close(port_pipe_);
    port_pipe_ = -1;
    for (int i = 0; i < 6000; ++i) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return -1;
  }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int port_pipe_ = -1;
};

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

// A Hello naming a process that does not hold the connection (another process of the client's
// user, the daemon, init, a pid that does not exist) gets no process-memory plane; the client
// naming itself does. Without a tenants file, auto leaves the plane off.
TEST_F(KvaultdProcessMemoryTest, AHelloNamingAProcessThatDoesNotHoldTheConnectionGetsNone) {
  ForkedClient other([](uint16_t) {
    for (;;) pause();
    return 0;
  });
  const pid_t other_pid = other.pid();
  auto named = [](uint16_t port, uint32_t pid) {
    RawConnection c(port);
    if (!c.Login("team-a", "secret-a", {}, nullptr, pid)) return transport::DataPlane{99};
    return c.data_plane();
  };
  uint32_t daemon_pid = 0;
  int daemon_pipe[2];
  ASSERT_EQ(pipe(daemon_pipe), 0);
  ForkedClient client([&](uint16_t port) {
    close(daemon_pipe[1]);
    if (read(daemon_pipe[0], &daemon_pid, sizeof daemon_pid) != sizeof daemon_pid) return 1;
    for (const uint32_t pid :
         {static_cast<uint32_t>(other_pid), daemon_pid, uint32_t{1}, uint32_t{0x7ffffff0}}) {
      if (named(port, pid) != transport::DataPlane::kNone) return 2;
    }
    // Positive control: this process holds its connection.
    return named(port, static_cast<uint32_t>(getpid())) == transport::DataPlane::kProcessMemory ? 0
                                                                                                : 3;
  });
  close(daemon_pipe[0]);
  DaemonProcess d(dir_, TenantArgs());
  ASSERT_TRUE(d.ok()) << d.Stderr();
  const uint32_t pid = static_cast<uint32_t>(d.pid());
  ASSERT_EQ(write(daemon_pipe[1], &pid, sizeof pid), static_cast<ssize_t>(sizeof pid));
  close(daemon_pipe[1]);
  EXPECT_EQ(client.Run(d.control_port()), 0) << d.Stderr();

  fs::create_directories(dir_ / "single");
  ForkedClient plain([&](uint16_t port) {
    return named(port, static_cast<uint32_t>(getpid())) == transport::DataPlane::kNone ? 0 : 1;
  });
  DaemonProcess single(dir_ / "single", {"--storage.nvme_capacity", "0"});
  ASSERT_TRUE(single.ok()) << single.Stderr();
  EXPECT_EQ(plain.Run(single.control_port()), 0) << single.Stderr();
}

// A request naming memory the client has not mapped fails that key only; the other key, from
// the client's memory, is stored and loads back, and the connection goes on.
TEST_F(KvaultdProcessMemoryTest, AStoreNamingUnmappedMemoryFailsThatKeyOnly) {
  ForkedClient client([](uint16_t port) {
    RawConnection c(port);
    if (!c.Login("team-a", "secret-a", {}, nullptr, static_cast<uint32_t>(getpid()))) return 1;
    if (c.data_plane() != transport::DataPlane::kProcessMemory) return 2;
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

// As root, kvaultd opens a client's memory with the client's rights only: a plain process of
// the client's user (nobody) is served, byte for byte; one that made itself not dumpable (as a
// set-user-id program is) gets no such plane although root could read it.
TEST_F(KvaultdProcessMemoryTest, AClientOfAnotherUserIsServedWithItsOwnRightsOnly) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to run the client as nobody";
  ForkedClient plain([](uint16_t port) {
    RawConnection c(port);
    if (!c.Login("team-a", "secret-a", {}, nullptr, static_cast<uint32_t>(getpid()))) return 1;
    if (c.data_plane() != transport::DataPlane::kProcessMemory) return 2;
    return StoreAndLoadOwnMemory(c, 0x43, 10);
  });
  ForkedClient hidden([](uint16_t port) {
    if (prctl(PR_SET_DUMPABLE, 0) != 0) return 1;
    RawConnection c(port);
    if (!c.Login("team-a", "secret-a", {}, nullptr, static_cast<uint32_t>(getpid()))) return 2;
    return c.data_plane() == transport::DataPlane::kNone ? 0 : 3;
  });
  DaemonProcess d(dir_, TenantArgs());
  ASSERT_TRUE(d.ok()) << d.Stderr();
  EXPECT_EQ(plain.Run(d.control_port()), 0) << d.Stderr();
  EXPECT_EQ(hidden.Run(d.control_port()), 0) << d.Stderr();
  EXPECT_EQ(d.Terminate(), 0);
}

// A client of user 0 is never served through process memory (a root process relaying another
// client's connection could otherwise be named): it gets the UCX plane, which works.
TEST_F(KvaultdProcessMemoryTest, AClientOfUserZeroGetsUcx) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  DaemonProcess d(dir_, TenantArgs());
  ASSERT_TRUE(d.ok()) << d.Stderr();
  ClientConfig config;
  config.server = d.server();
  config.tenant = "team-a";
  config.token = "secret-a";
  Result<std::unique_ptr<Client>> client = Client::Connect(config);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  const std::vector<BlockKey> keys = Keys(2, 0x45);
  MemoryRegion sources;
  StoreSyntheticObjects(**client, keys, 4096, sources);
  EXPECT_EQ((*client)->LookupPrefix(keys).leading_hits, keys.size());
  EXPECT_EQ(d.Terminate(), 0);
  EXPECT_NE(d.Stderr().find("data plane ucx"), std::string::npos) << d.Stderr();
  EXPECT_EQ(d.Stderr().find("data plane process_memory"), std::string::npos) << d.Stderr();
}

}  // namespace
}  // namespace kvault::testing
