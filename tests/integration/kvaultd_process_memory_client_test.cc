// libkvault on the process-memory data plane of a kvaultd that serves tenants: in this process
// it hands its memory over and announces no UCX worker, so the daemon opens no UCX endpoint to
// it; with the plane off, or when it cannot hand over (not dumpable), it says Hello again with its
// worker and is served over UCX; and clients destroyed right after connecting, or outliving a
// daemon killed right after they connected, do not abort (UCX 1.13 would, with its answer to
// the daemon's connection request still queued). Memory the client allocates is handed over as
// files the daemon copies through, again after a restart.
#include <gtest/gtest.h>
#include <sys/prctl.h>

#include <algorithm>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "daemon_process.h"
#include "kv_test_util.h"
#include "process_memory_fixture.h"

namespace kvault::testing {
namespace {

// A libkvault client of tenant team-a in this process: connects to `d`, stores two objects,
// looks them up, and is gone on return.
void StoreAndLookUpThroughLibkvault(const DaemonProcess& d, uint8_t seed) {
  Result<std::unique_ptr<Client>> client =
      Client::Connect(TenantClientConfig(d.server(), "team-a", "secret-a"));
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  const std::vector<BlockKey> keys = Keys(2, seed);
  MemoryRegion sources;
  StoreSyntheticObjects(**client, keys, 4096, sources);
  EXPECT_EQ((*client)->LookupPrefix(keys).leading_hits, keys.size());
}

// A libkvault client that cannot hand its memory over (not dumpable, and not root: nobody when
// the suite runs as root) first says Hello without its UCX worker, fails the hand-over after Auth,
// says Hello and Auth again announcing its worker, and is served over UCX: its store goes through
// and looks up.
TEST_F(KvaultdProcessMemoryTest, ALibkvaultClientThatCannotHandOverFallsBackToUcx) {
  ForkedClient hidden([](uint16_t port) {
    if (prctl(PR_SET_DUMPABLE, 0) != 0) return 1;
    ClientConfig config =
        TenantClientConfig("127.0.0.1:" + std::to_string(port), "team-a", "secret-a");
    Result<std::unique_ptr<Client>> client = Client::Connect(config);
    if (!client.ok()) return 2;
    const std::vector<BlockKey> keys = Keys(1, 0x47);
    const uint64_t object = SyntheticObjectBytes(4096);
    Result<MemoryRegion> region = (*client)->AllocateMemory(object);
    if (!region.ok() || !WriteSyntheticBlock(keys[0], 4096, region->bytes()).ok()) return 3;
    const std::span<const uint8_t> sources[1] = {region->bytes()};
    StoreHandle h = (*client)->Store(keys, sources);
    if (!h.Wait(Clock::now() + std::chrono::seconds(30)).ok() || h.ok_count() != 1) return 4;
    if ((*client)->LookupPrefix(keys).leading_hits != 1) return 5;
    return 0;
  });
  DaemonProcess d(dir_, TenantArgs());
  ASSERT_TRUE(d.ok()) << d.Stderr();
  EXPECT_EQ(hidden.Run(d.control_port()), 0) << d.Stderr();
  EXPECT_EQ(d.Terminate(), 0);
  const std::string log = d.Stderr();
  const size_t none = log.find("authenticated as tenant 'team-a', data plane none");
  const size_t ucx = log.find("authenticated as tenant 'team-a', data plane ucx");
  EXPECT_NE(none, std::string::npos) << log;
  EXPECT_NE(ucx, std::string::npos) << log;
  EXPECT_LT(none, ucx) << log;
  EXPECT_EQ(log.find("data plane process_memory"), std::string::npos) << log;
}

// libkvault in this very process (root when the suite runs as root) hands its memory over too
// and moves its blocks through it.
TEST_F(KvaultdProcessMemoryTest, LibkvaultInThisProcessUsesProcessMemory) {
  DaemonProcess d(dir_, TenantArgs());
  ASSERT_TRUE(d.ok()) << d.Stderr();
  ASSERT_NO_FATAL_FAILURE(StoreAndLookUpThroughLibkvault(d, 0x45));
  EXPECT_EQ(d.Terminate(), 0);
  EXPECT_NE(d.Stderr().find("data plane process_memory"), std::string::npos) << d.Stderr();
  // The client announced no UCX worker before handing its memory over, so the daemon opened no
  // UCX endpoint to it.
  EXPECT_NE(d.Stderr().find("authenticated as tenant 'team-a', data plane none"), std::string::npos)
      << d.Stderr();
  EXPECT_EQ(d.Stderr().find("data plane ucx"), std::string::npos) << d.Stderr();
}

// How often kvaultd's log says a session attached a memory region.
size_t RegionsAttached(const std::string& log) {
  size_t n = 0;
  for (size_t at = log.find("memory region attached"); at != std::string::npos;
       at = log.find("memory region attached", at + 1)) {
    ++n;
  }
  return n;
}

// Stores `keys` from `sources` (one object each, back to back), loads them into `into` and
// checks every byte.
void StoreAndLoadBack(Client& client, const std::vector<BlockKey>& keys, MemoryRegion& sources,
                      MemoryRegion& into) {
  const uint64_t object = sources.bytes().size() / keys.size();
  std::vector<std::span<const uint8_t>> from;
  std::vector<LoadDestination> to;
  for (size_t i = 0; i < keys.size(); ++i) {
    from.push_back(sources.bytes().subspan(i * object, object));
    to.push_back(LoadDestination{into.bytes().subspan(i * object, object), 0, object});
  }
  std::fill(into.bytes().begin(), into.bytes().end(), uint8_t{0});
  StoreHandle stored = client.Store(keys, from);
  ASSERT_TRUE(stored.Wait(Clock::now() + std::chrono::seconds(30)).ok());
  ASSERT_EQ(stored.ok_count(), keys.size());
  LoadHandle loaded = client.Load(Lease{}, keys, to);
  ASSERT_TRUE(loaded.Wait(Clock::now() + std::chrono::seconds(30)).ok());
  ASSERT_EQ(loaded.ok_count(), keys.size());
  EXPECT_TRUE(std::equal(sources.bytes().begin(), sources.bytes().end(), into.bytes().begin()));
}

// AllocateMemory of a client on the process-memory plane hands each region to the daemon as a
// file, which its copies go through: blocks stored from one region and loaded into another come
// back byte for byte (large enough to be split between two threads). A daemon restarted on the
// same port gets both regions again on the client's new session. A client on the UCX plane
// (positive control of the log line) attaches none.
TEST_F(KvaultdProcessMemoryTest, AllocatedMemoryIsCopiedThroughItsFileAcrossARestart) {
  auto d = std::make_unique<DaemonProcess>(dir_, TenantArgs());
  ASSERT_TRUE(d->ok()) << d->Stderr();
  const std::string server = d->server();
  Result<std::unique_ptr<Client>> client =
      Client::Connect(TenantClientConfig(server, "team-a", "secret-a"));
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  const std::vector<BlockKey> keys = Keys(3, 0x48);
  MemoryRegion sources;
  ASSERT_NO_FATAL_FAILURE(StoreSyntheticObjects(**client, keys, 600 << 10, sources));
  Result<MemoryRegion> into = (*client)->AllocateMemory(sources.bytes().size());
  ASSERT_TRUE(into.ok()) << into.status().ToString();
  ASSERT_NO_FATAL_FAILURE(StoreAndLoadBack(**client, keys, sources, *into));
  EXPECT_EQ(RegionsAttached(d->Stderr()), 2u) << d->Stderr();

  RestartOnSamePort(&d, dir_, TenantArgs());
  ASSERT_TRUE(d->ok()) << d->Stderr();
  // The first call after the loss reconnects (the blocks died with the daemon: no nvme tier).
  const auto until = Clock::now() + std::chrono::seconds(20);
  while ((*client)->LookupPrefix(keys).status.code() == StatusCode::kUnavailable &&
         Clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_NO_FATAL_FAILURE(StoreAndLoadBack(**client, keys, sources, *into));
  EXPECT_EQ(RegionsAttached(d->Stderr()), 2u) << d->Stderr();
  EXPECT_EQ(d->Terminate(), 0);

  std::vector<std::string> off = TenantArgs();
  off.insert(off.end(), {"--data_plane.process_memory", "off"});
  fs::create_directories(dir_ / "off");
  DaemonProcess ucx(dir_ / "off", off);
  ASSERT_TRUE(ucx.ok()) << ucx.Stderr();
  ASSERT_NO_FATAL_FAILURE(StoreAndLookUpThroughLibkvault(ucx, 0x49));
  EXPECT_EQ(ucx.Terminate(), 0);
  EXPECT_EQ(RegionsAttached(ucx.Stderr()), 0u) << ucx.Stderr();
  EXPECT_NE(ucx.Stderr().find("data plane ucx"), std::string::npos) << ucx.Stderr();
}

// Positive control of the above: with the plane off (no memory socket announced) the same client
// says hello again, announcing its worker, and is served over UCX after the worker proof.
TEST_F(KvaultdProcessMemoryTest, WithoutThePlaneTheClientAnnouncesItsWorkerAndUsesUcx) {
  std::vector<std::string> args = TenantArgs();
  args.insert(args.end(), {"--data_plane.process_memory", "off"});
  DaemonProcess d(dir_, args);
  ASSERT_TRUE(d.ok()) << d.Stderr();
  ASSERT_NO_FATAL_FAILURE(StoreAndLookUpThroughLibkvault(d, 0x46));
  EXPECT_EQ(d.Terminate(), 0);
  // No memory socket named: the second Hello came before any Auth.
  EXPECT_EQ(d.Stderr().find("data plane none"), std::string::npos) << d.Stderr();
  EXPECT_NE(d.Stderr().find("authenticated as tenant 'team-a', data plane ucx"), std::string::npos)
      << d.Stderr();
  EXPECT_EQ(d.Stderr().find("data plane process_memory"), std::string::npos) << d.Stderr();
}

// Clients of the process-memory plane outlive a daemon killed right after they connected and
// stored: none of them had a UCX endpoint of the daemon's, so none has an answer to the daemon's
// UCX connection request queued when it goes (UCX 1.13 aborts the process then). Positive
// control: every store and lookup before the kill succeeds.
TEST_F(KvaultdProcessMemoryTest, ClientsOutliveADaemonKilledRightAfterTheyConnected) {
  for (int round = 0; round < 3; ++round) {
    DaemonProcess d(dir_, TenantArgs());
    ASSERT_TRUE(d.ok()) << d.Stderr();
    ClientConfig config = TenantClientConfig(d.server(), "team-a", "secret-a");
    std::vector<std::unique_ptr<Client>> clients;
    std::vector<MemoryRegion> sources(4);
    for (size_t i = 0; i < sources.size(); ++i) {
      Result<std::unique_ptr<Client>> client = Client::Connect(config);
      ASSERT_TRUE(client.ok()) << client.status().ToString();
      const std::vector<BlockKey> keys =
          Keys(1, static_cast<uint8_t>(0x70 + round * sources.size() + i));
      StoreSyntheticObjects(**client, keys, 4096, sources[i]);
      EXPECT_EQ((*client)->LookupPrefix(keys).leading_hits, 1u);
      clients.push_back(std::move(*client));
    }
    d.Kill();
    // A lookup now is a miss with a clear status, not an abort.
    EXPECT_EQ(clients[0]->LookupPrefix(Keys(1, 0x70)).leading_hits, 0u);
    clients.clear();
  }
}

// Clients destroyed right after their first store, while the daemon runs: each goes without
// aborting the process (UCX 1.13 aborts in ucp_worker_destroy when its answer to the daemon's
// connection request is still queued; the agent flushes the worker first), and the daemon
// serves the next (positive control: every store and lookup succeeds).
TEST_F(KvaultdProcessMemoryTest, ClientsDestroyedRightAfterConnectingDoNotAbort) {
  DaemonProcess d(dir_, TenantArgs());
  ASSERT_TRUE(d.ok()) << d.Stderr();
  ClientConfig config = TenantClientConfig(d.server(), "team-a", "secret-a");
  for (uint8_t round = 0; round < 8; ++round) {
    Result<std::unique_ptr<Client>> client = Client::Connect(config);
    ASSERT_TRUE(client.ok()) << client.status().ToString();
    const std::vector<BlockKey> keys = Keys(1, static_cast<uint8_t>(0x60 + round));
    MemoryRegion sources;
    StoreSyntheticObjects(**client, keys, 4096, sources);
    EXPECT_EQ((*client)->LookupPrefix(keys).leading_hits, 1u);
  }  // destroyed here, at once
  EXPECT_EQ(d.Terminate(), 0);
}

}  // namespace
}  // namespace kvault::testing
