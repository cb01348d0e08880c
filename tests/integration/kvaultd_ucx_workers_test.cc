// kvaultd with several UCX workers (ucx.workers): clients are spread over the workers as they
// connect, and every request of a client, and its ReleaseMemory, must reach that client's worker.
// Several clients at once store multi-chunk objects, load them back byte for byte, free their
// source regions and store again from fresh ones.

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "binary_run.h"
#include "daemon_process.h"
#include "kvault/client.h"
#include "kvault/common/synthetic_block.h"

namespace kvault::testing {
namespace {

using namespace std::chrono_literals;

constexpr int kClients = 5;  // more than the workers, so two clients share one
constexpr int kRounds = 3;
constexpr uint64_t kPayloadBytes = 600 << 10;  // several transfer chunks

BlockKey KeyFor(int client, int round) {
  BlockKey k{};
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(client * 17 + round * 5 + i);
  k[0] = static_cast<uint8_t>(client);
  k[1] = static_cast<uint8_t>(round);
  k[2] = 0x3C;
  return k;
}

// One client: in each round a fresh region holds a new object, which is stored, loaded back into
// the second half of the region and compared; the region is freed before the next round.
// Returns what went wrong, empty when every round worked.
std::string RunClient(const std::string& server, int id) {
  ClientConfig config;
  config.server = server;
  config.ucx_transports = "posix,cma";
  config.request_timeout = 20s;
  Result<std::unique_ptr<Client>> connected = Client::Connect(config);
  if (!connected.ok()) return "connect: " + connected.status().ToString();
  Client& client = **connected;
  const uint64_t object = SyntheticObjectBytes(kPayloadBytes);
  for (int round = 0; round < kRounds; ++round) {
    const std::string at = "client " + std::to_string(id) + " round " + std::to_string(round);
    Result<MemoryRegion> region = client.AllocateMemory(2 * object);
    if (!region.ok()) return at + ": allocate: " + region.status().ToString();
    const BlockKey key = KeyFor(id, round);
    const std::span<uint8_t> source = region->bytes().first(object);
    const std::span<uint8_t> target = region->bytes().subspan(object, object);
    if (!WriteSyntheticBlock(key, kPayloadBytes, source).ok()) return at + ": build the object";
    const std::span<const uint8_t> sources[] = {source};
    StoreHandle stored = client.Store(std::span(&key, 1), sources);
    Status s = stored.Wait(Clock::now() + 30s);
    if (s.ok()) s = stored.key_status(0);
    if (!s.ok()) return at + ": store: " + s.ToString();
    const LoadDestination destinations[] = {{target}};
    LoadHandle loaded = client.Load(Lease{}, std::span(&key, 1), destinations);
    s = loaded.Wait(Clock::now() + 30s);
    if (s.ok()) s = loaded.key_status(0);
    if (!s.ok()) return at + ": load: " + s.ToString();
    if (!IsSyntheticBlockFor(key, target)) return at + ": loaded bytes differ";
  }
  return "";
}

class KvaultdUcxWorkersTest : public BinaryTest {
 protected:
  KvaultdUcxWorkersTest() : BinaryTest("kvaultd") {}
};

TEST_F(KvaultdUcxWorkersTest, ClientsSpreadOverWorkersStoreAndLoadByteExact) {
  DaemonProcess d(dir_, {"--storage.host_capacity", "128MiB", "--storage.nvme_capacity", "0",
                         "--ucx.transports", "posix,cma", "--ucx.workers", "3"});
  ASSERT_TRUE(d.ok()) << d.Stderr();
  std::vector<std::string> failures(kClients);
  std::vector<std::thread> clients;
  for (int id = 0; id < kClients; ++id) {
    clients.emplace_back([&, id] { failures[id] = RunClient(d.server(), id); });
  }
  for (std::thread& t : clients) t.join();
  for (int id = 0; id < kClients; ++id) EXPECT_EQ(failures[id], "") << "client " << id;

  // Every object is there for a new client too, whichever worker it lands on.
  ClientConfig config;
  config.server = d.server();
  config.ucx_transports = "posix,cma";
  Result<std::unique_ptr<Client>> late = Client::Connect(config);
  ASSERT_TRUE(late.ok()) << late.status().ToString();
  std::vector<BlockKey> keys;
  for (int id = 0; id < kClients; ++id) {
    for (int round = 0; round < kRounds; ++round) keys.push_back(KeyFor(id, round));
  }
  LookupResult hit = (*late)->LookupPrefix(keys);
  ASSERT_TRUE(hit.status.ok()) << hit.status.ToString();
  EXPECT_EQ(hit.leading_hits, keys.size());
  BlockKey absent = KeyFor(kClients, 0);  // never stored: the miss beside the hits
  EXPECT_EQ((*late)->LookupPrefix(std::span(&absent, 1)).leading_hits, 0u);
}

TEST_F(KvaultdUcxWorkersTest, ZeroWorkersIsRefusedAtStart) {
  const BinaryRun r = Run("--ucx.workers 0 --control.port 0 --http.port 0");
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_NE(r.err.find("ucx.workers"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace kvault::testing
