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

#include <filesystem>
#include <fstream>
#include <string>
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
  DaemonProcess d(dir_, TenantArgs());
  ASSERT_TRUE(d.ok()) << d.Stderr();
  ClientConfig config;
  config.server = d.server();
  config.tenant = "team-a";
  config.token = "secret-a";
  Result<std::unique_ptr<Client>> client = Client::Connect(config);
  ASSERT_TRUE(client.ok()) << client.status().ToString();

  // Stores from memory UCX allocated (shared memory a UCX daemon would map) and loads into
  // memory of the test's own; 24 MiB in all.
  const std::vector<BlockKey> keys = Keys(24, 0x41);
  const uint64_t payload = 1 << 20;
  const int64_t shmem_before = ShmemBytes(d.pid());
  MemoryRegion sources;
  StoreSyntheticObjects(**client, keys, payload, sources);
  const uint64_t object = SyntheticObjectBytes(payload);
  OwnMemory destination(object * keys.size());
  Result<MemoryRegion> registered = (*client)->RegisterMemory(destination.data, destination.size);
  ASSERT_TRUE(registered.ok()) << registered.status().ToString();
  const LookupResult hits = (*client)->LookupPrefix(keys, {.want_lease = true});
  ASSERT_EQ(hits.leading_hits, keys.size());
  std::vector<LoadDestination> destinations;
  for (size_t i = 0; i < keys.size(); ++i) {
    destinations.push_back({destination.at(i * object, object)});
  }
  LoadHandle load = (*client)->Load(hits.lease, keys, destinations);
  ASSERT_TRUE(load.Wait(Clock::now() + std::chrono::seconds(30)).ok());
  for (size_t i = 0; i < keys.size(); ++i) {
    EXPECT_TRUE(IsSyntheticBlockFor(keys[i], destination.at(i * object, object))) << i;
  }
  // No client buffer was mapped into the daemon (a UCX shared-memory plane maps the 24 MiB of
  // sources); a few MiB of the daemon's own shared memory may move.
  EXPECT_LT(ShmemBytes(d.pid()) - shmem_before, int64_t{8} << 20);
  EXPECT_EQ(d.Terminate(), 0);
  EXPECT_NE(d.Stderr().find("data plane process_memory"), std::string::npos) << d.Stderr();
  EXPECT_NE(d.Stderr().find("transports '^shm'"), std::string::npos) << d.Stderr();
}

TEST_F(KvaultdProcessMemoryTest, AHelloNamingAProcessThatDoesNotHoldTheConnectionGetsNone) {
  DaemonProcess d(dir_, TenantArgs());
  ASSERT_TRUE(d.ok()) << d.Stderr();
  const pid_t other = fork();
  if (other == 0) {
    for (;;) pause();
  }
  ASSERT_GT(other, 0);
  for (const uint32_t pid : {static_cast<uint32_t>(other), static_cast<uint32_t>(d.pid()),
                             uint32_t{1}, uint32_t{0x7ffffff0}}) {
    SCOPED_TRACE("pid " + std::to_string(pid));
    RawConnection c(d.control_port());
    ASSERT_TRUE(c.Login("team-a", "secret-a", {}, nullptr, pid));
    EXPECT_EQ(c.data_plane(), transport::DataPlane::kNone);
  }
  kill(other, SIGKILL);
  waitpid(other, nullptr, 0);
  // Positive control: this process holds its connection.
  RawConnection mine(d.control_port());
  ASSERT_TRUE(mine.Login("team-a", "secret-a", {}, nullptr, static_cast<uint32_t>(getpid())));
  EXPECT_EQ(mine.data_plane(), transport::DataPlane::kProcessMemory);
  // Without a tenants file, auto leaves the plane off.
  fs::create_directories(dir_ / "single");
  DaemonProcess single(dir_ / "single", {"--storage.nvme_capacity", "0"});
  ASSERT_TRUE(single.ok()) << single.Stderr();
  RawConnection plain(single.control_port());
  ASSERT_TRUE(plain.Login("", "", {}, nullptr, static_cast<uint32_t>(getpid())));
  EXPECT_EQ(plain.data_plane(), transport::DataPlane::kNone);
}

TEST_F(KvaultdProcessMemoryTest, AStoreNamingUnmappedMemoryFailsThatKeyOnly) {
  DaemonProcess d(dir_, TenantArgs());
  ASSERT_TRUE(d.ok()) << d.Stderr();
  RawConnection c(d.control_port());
  ASSERT_TRUE(c.Login("team-a", "secret-a", {}, nullptr, static_cast<uint32_t>(getpid())));
  ASSERT_EQ(c.data_plane(), transport::DataPlane::kProcessMemory);

  const std::vector<BlockKey> keys = Keys(2, 0x42);
  std::vector<uint8_t> object(SyntheticObjectBytes(4096));
  ASSERT_TRUE(WriteSyntheticBlock(keys[0], 4096, object).ok());
  transport::Store store;
  store.remote_key = {1};  // ignored by this plane; the protocol wants one
  store.entries.push_back({keys[0], reinterpret_cast<uint64_t>(object.data()), object.size()});
  store.entries.push_back({keys[1], 4096, object.size()});  // page 1: never mapped
  ASSERT_TRUE(c.SendMessage(store, 10));
  auto reply = c.ReadMessage();
  ASSERT_TRUE(reply && std::holds_alternative<transport::StoreReply>(reply->first));
  const auto& statuses = std::get<transport::StoreReply>(reply->first).statuses;
  ASSERT_EQ(statuses.size(), 2u);
  EXPECT_EQ(statuses[0], transport::WireStatus::kOk);
  EXPECT_EQ(statuses[1], transport::WireStatus::kTransferFailed);

  // The stored block loads back into other memory of this process; the connection goes on.
  transport::Lookup lookup;
  lookup.keys = keys;
  ASSERT_TRUE(c.SendMessage(lookup, 11));
  reply = c.ReadMessage();
  ASSERT_TRUE(reply && std::holds_alternative<transport::LookupReply>(reply->first));
  EXPECT_EQ(std::get<transport::LookupReply>(reply->first).leading_hits, 1u);
  std::vector<uint8_t> back(object.size(), 0);
  transport::Load load;
  load.remote_key = {1};
  transport::LoadEntry entry;
  entry.key = keys[0];
  entry.address = reinterpret_cast<uint64_t>(back.data());
  entry.capacity = back.size();
  load.entries.push_back(entry);
  ASSERT_TRUE(c.SendMessage(load, 12));
  reply = c.ReadMessage();
  ASSERT_TRUE(reply && std::holds_alternative<transport::LoadReply>(reply->first));
  const auto& outcomes = std::get<transport::LoadReply>(reply->first).outcomes;
  ASSERT_EQ(outcomes.size(), 1u);
  EXPECT_EQ(outcomes[0].status, transport::WireStatus::kOk);
  EXPECT_EQ(back, object);
  EXPECT_TRUE(c.Ping());
}

// A client running as another user (nobody) against a root kvaultd: its memory is opened with
// nobody's rights. A plain process of that user is served through process memory, byte for byte;
// one that made itself not dumpable (as a set-user-id program is) gets no such plane.
TEST_F(KvaultdProcessMemoryTest, AClientOfAnotherUserIsServedWithItsOwnRightsOnly) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to run the client as nobody";
  // The clients are forked before the daemon starts, while this process has one thread; each
  // reads the control port from a pipe and exits 0 when all its checks held.
  auto client = [](bool dumpable, int port_pipe) {
    uint16_t port = 0;
    if (read(port_pipe, &port, sizeof port) != sizeof port) _exit(10);
    if (syscall(SYS_setresgid, 65534, 65534, 65534) != 0 ||
        syscall(SYS_setresuid, 65534, 65534, 65534) != 0 ||
        prctl(PR_SET_DUMPABLE, dumpable ? 1 : 0) != 0) {
      _exit(11);
    }
    RawConnection c(port);
    if (!c.Login("team-a", "secret-a", {}, nullptr, static_cast<uint32_t>(getpid()))) _exit(12);
    if (!dumpable) _exit(c.data_plane() == transport::DataPlane::kNone ? 0 : 13);
    if (c.data_plane() != transport::DataPlane::kProcessMemory) _exit(14);
    BlockKey key;
    key.fill(0x43);
    std::vector<uint8_t> object(SyntheticObjectBytes(8192));
    if (!WriteSyntheticBlock(key, 8192, object).ok()) _exit(15);
    transport::Store store;
    store.remote_key = {1};
    store.entries.push_back({key, reinterpret_cast<uint64_t>(object.data()), object.size()});
    if (!c.SendMessage(store, 10)) _exit(16);
    auto reply = c.ReadMessage();
    if (!reply || !std::holds_alternative<transport::StoreReply>(reply->first) ||
        std::get<transport::StoreReply>(reply->first).statuses !=
            std::vector<transport::WireStatus>{transport::WireStatus::kOk}) {
      _exit(17);
    }
    std::vector<uint8_t> back(object.size(), 0);
    transport::Load load;
    load.remote_key = {1};
    transport::LoadEntry entry;
    entry.key = key;
    entry.address = reinterpret_cast<uint64_t>(back.data());
    entry.capacity = back.size();
    load.entries.push_back(entry);
    if (!c.SendMessage(load, 11)) _exit(18);
    reply = c.ReadMessage();
    if (!reply || !std::holds_alternative<transport::LoadReply>(reply->first)) _exit(19);
    _exit(back == object ? 0 : 20);
  };
  int pipes[2][2];
  pid_t pids[2];
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(pipe(pipes[i]), 0);
    pids[i] = fork();
    if (pids[i] == 0) client(/*dumpable=*/i == 0, pipes[i][0]);
    ASSERT_GT(pids[i], 0);
  }
  DaemonProcess d(dir_, TenantArgs());
  ASSERT_TRUE(d.ok()) << d.Stderr();
  for (int i = 0; i < 2; ++i) {
    const uint16_t port = d.control_port();
    ASSERT_EQ(write(pipes[i][1], &port, sizeof port), static_cast<ssize_t>(sizeof port));
    int status = 0;
    ASSERT_EQ(waitpid(pids[i], &status, 0), pids[i]);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0) << (i == 0 ? "dumpable client" : "undumpable client") << "\n"
                                      << d.Stderr();
  }
  EXPECT_EQ(d.Terminate(), 0);
}

}  // namespace
}  // namespace kvault::testing
