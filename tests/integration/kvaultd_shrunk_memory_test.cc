// A client that shrinks its shared memory under a real kvaultd (UCX posix transport).
//
// Memory from Client::AllocateMemory is a posix shared segment, a file the daemon maps. Once the
// daemon has unpacked (and cached) the region's key, the client can still ftruncate that file;
// the daemon's next read (store) or write (load) of the lost pages raised SIGBUS and killed
// kvaultd, and every tenant's cache with it. Now the transfer fails with a status and the daemon
// goes on serving, this client and others (transport/ucx.md, PeerMemoryGuard).

#include <dirent.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "binary_run.h"
#include "daemon_process.h"
#include "kvault/client.h"
#include "kvault/common/synthetic_block.h"
#include "raw_connection.h"

namespace kvault::testing {
namespace {

using namespace std::chrono_literals;

constexpr size_t kRegionBytes = 1 << 20;
constexpr uint64_t kPayloadBytes = 512 << 10;  // the object spans more than half the region

BlockKey TestKey(uint8_t n) {
  BlockKey k{};
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(n * 17 + i * 3 + 5);
  return k;
}

// True while `pid` runs (not gone, not a zombie waiting to be reaped).
bool Running(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(f)), {});
  const size_t paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] != 'Z' &&
         stat[paren + 2] != 'X';
}

// Requests the daemon failed because the client's memory was cut short under it, as logged.
size_t CutShortFailures(const DaemonProcess& d) {
  const std::string log = d.Stderr();
  size_t n = 0;
  for (size_t at = log.find("cut short"); at != std::string::npos;
       at = log.find("cut short", at + 1)) {
    ++n;
  }
  return n;
}

// This process's descriptors and what they name.
std::set<std::pair<int, std::string>> OpenFiles() {
  std::set<std::pair<int, std::string>> out;
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return out;
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    char target[512] = {};
    const std::string path = std::string("/proc/self/fd/") + e->d_name;
    const ssize_t n = readlink(path.c_str(), target, sizeof(target) - 1);
    if (n > 0) out.insert({std::stoi(e->d_name), std::string(target, n)});
  }
  closedir(dir);
  return out;
}

// kvault_client_memory_faults_total as `d` serves it now (-1 when it is missing).
double MemoryFaults(const DaemonProcess& d) {
  return MetricValue(d.http_port(), "kvault_client_memory_faults_total").value_or(-1);
}

// A region from AllocateMemory and the descriptor of the posix segment behind it (-1 if none).
struct SharedRegion {
  MemoryRegion region;
  int segment_fd = -1;
  std::string segment_name;
};

Result<SharedRegion> AllocateShared(Client& client, size_t bytes = kRegionBytes) {
  const auto before = OpenFiles();
  KVAULT_ASSIGN_OR_RETURN(MemoryRegion region, client.AllocateMemory(bytes));
  SharedRegion out{std::move(region), -1, ""};
  for (const auto& [fd, name] : OpenFiles()) {
    if (before.count({fd, name}) == 0 && name.find("/dev/shm/") == 0) {
      out.segment_fd = fd;
      out.segment_name = name;
    }
  }
  if (out.segment_fd < 0) return Status::NotFound("no new posix segment behind the region");
  return out;
}

class KvaultdShrunkMemoryTest : public BinaryTest {
 protected:
  KvaultdShrunkMemoryTest() : BinaryTest("kvaultd") {}

  // A daemon with a host tier of `host_capacity`, no nvme tier, on posix shared memory and CMA.
  static std::vector<std::string> DaemonArgs(const std::string& host_capacity) {
    return {"--storage.host_capacity", host_capacity, "--storage.nvme_capacity", "0",
            "--ucx.transports",        "posix,cma"};
  }

  // A client of `d` whose AllocateMemory regions are posix segments the daemon maps.
  static Result<std::unique_ptr<Client>> ConnectOverSharedMemory(const DaemonProcess& d) {
    ClientConfig config;
    config.server = d.server();
    config.ucx_transports = "posix,cma";
    config.request_timeout = 10s;
    return Client::Connect(config);
  }
};

TEST_F(KvaultdShrunkMemoryTest, StoresAndLoadsThroughMemoryTheClientShrankFailAndTheDaemonLives) {
  DaemonProcess d(dir_, DaemonArgs("64MiB"));
  ASSERT_TRUE(d.ok()) << d.Stderr();
  Result<std::unique_ptr<Client>> connected = ConnectOverSharedMemory(d);
  ASSERT_TRUE(connected.ok()) << connected.status().ToString();
  Client& client = **connected;
  const uint64_t object = SyntheticObjectBytes(kPayloadBytes);
  ASSERT_LE(object, kRegionBytes);

  auto store = [&](const BlockKey& key, std::span<uint8_t> from) {
    const std::vector<std::span<const uint8_t>> sources = {from};
    StoreHandle stored = client.Store(std::span(&key, 1), sources);
    const Status waited = stored.Wait(Clock::now() + 20s);
    return waited.ok() ? stored.key_status(0) : waited;
  };
  auto load = [&](const BlockKey& key, std::span<uint8_t> into) {
    const std::vector<LoadDestination> destinations = {{into}};
    LoadHandle loaded = client.Load(Lease{}, std::span(&key, 1), destinations);
    const Status waited = loaded.Wait(Clock::now() + 20s);
    return waited.ok() ? loaded.key_status(0) : waited;
  };

  // The store source: one store through it (its key is now mapped and cached by the daemon),
  // then the next object is written into it and the segment cut to nothing.
  Result<SharedRegion> source = AllocateShared(client);
  ASSERT_TRUE(source.ok()) << source.status().ToString();
  const std::span<uint8_t> source_object = source->region.bytes().first(object);
  const BlockKey first = TestKey(1);
  ASSERT_TRUE(WriteSyntheticBlock(first, kPayloadBytes, source_object).ok());
  const std::vector<uint8_t> first_bytes(source_object.begin(), source_object.end());
  ASSERT_TRUE(store(first, source_object).ok());  // positive control
  const BlockKey second = TestKey(2);
  ASSERT_TRUE(WriteSyntheticBlock(second, kPayloadBytes, source_object).ok());
  ASSERT_EQ(ftruncate(source->segment_fd, 0), 0) << source->segment_name;

  const Status shrunk_store = store(second, source_object);
  EXPECT_FALSE(shrunk_store.ok()) << "a store from memory cut to nothing was accepted";
  ASSERT_TRUE(Running(d.pid())) << "kvaultd died:\n" << d.Stderr();
  ASSERT_TRUE(client.Ping().ok());
  EXPECT_EQ(CutShortFailures(d), 1u) << d.Stderr();
  // The key left the daemon's cache; unpacked again it is refused (its region lies past the end
  // of the file), and once the client grows the file back the same memory serves again.
  EXPECT_FALSE(store(second, source_object).ok());
  EXPECT_EQ(CutShortFailures(d), 1u) << "refused when unpacked, before any transfer";
  ASSERT_EQ(ftruncate(source->segment_fd, kRegionBytes), 0);
  ASSERT_TRUE(WriteSyntheticBlock(second, kPayloadBytes, source_object).ok());
  EXPECT_TRUE(store(second, source_object).ok()) << "after the segment grew back";
  // Cut short again, under the key unpacked afresh: refused the same way.
  ASSERT_TRUE(WriteSyntheticBlock(TestKey(3), kPayloadBytes, source_object).ok());
  ASSERT_EQ(ftruncate(source->segment_fd, 0), 0);
  EXPECT_FALSE(store(TestKey(3), source_object).ok());
  ASSERT_TRUE(Running(d.pid())) << "kvaultd died:\n" << d.Stderr();
  EXPECT_EQ(CutShortFailures(d), 2u) << d.Stderr();

  // The load target: one load into it (positive control, key cached), then cut short.
  Result<SharedRegion> target = AllocateShared(client);
  ASSERT_TRUE(target.ok()) << target.status().ToString();
  const std::span<uint8_t> target_object = target->region.bytes().first(object);
  ASSERT_TRUE(load(first, target_object).ok());
  EXPECT_EQ(std::memcmp(target_object.data(), first_bytes.data(), object), 0);
  ASSERT_EQ(ftruncate(target->segment_fd, 4096), 0) << target->segment_name;
  const Status shrunk_load = load(first, target_object);
  EXPECT_FALSE(shrunk_load.ok()) << "a load into memory cut short was reported delivered";
  ASSERT_TRUE(Running(d.pid())) << "kvaultd died:\n" << d.Stderr();
  EXPECT_EQ(CutShortFailures(d), 3u) << d.Stderr();

  // The daemon serves on: the objects stored are intact, the refused third one was never stored,
  // and fresh memory stores and loads as before.
  Result<SharedRegion> fresh = AllocateShared(client);
  ASSERT_TRUE(fresh.ok()) << fresh.status().ToString();
  const std::span<uint8_t> fresh_object = fresh->region.bytes().first(object);
  EXPECT_TRUE(load(first, fresh_object).ok());
  EXPECT_EQ(std::memcmp(fresh_object.data(), first_bytes.data(), object), 0);
  std::memset(fresh_object.data(), 0, object);
  EXPECT_TRUE(load(second, fresh_object).ok());
  EXPECT_TRUE(IsSyntheticBlockFor(second, fresh_object));
  const BlockKey third = TestKey(3);
  EXPECT_FALSE(load(third, fresh_object).ok()) << "nothing was stored under the third key";
  ASSERT_TRUE(WriteSyntheticBlock(third, kPayloadBytes, fresh_object).ok());
  EXPECT_TRUE(store(third, fresh_object).ok());
  std::memset(fresh_object.data(), 0, object);
  EXPECT_TRUE(load(third, fresh_object).ok());
  EXPECT_TRUE(IsSyntheticBlockFor(third, fresh_object));
  EXPECT_TRUE(Running(d.pid()));
  EXPECT_EQ(CutShortFailures(d), 3u) << d.Stderr();
  // Each request cut short cost one absorbed fault per thread that touched the region before it
  // was replaced (the io thread, and for a store the copy helper too), or, for a store read
  // through the segment's file, one short read (the key is then cut short): 3 to 6 here.
  const double faults = MemoryFaults(d);
  EXPECT_GE(faults, 3);
  EXPECT_LE(faults, 6);
}

// A store of bytes the daemon reads through the segment's file (bytes not stored from before) in
// several 1 MiB chunks, after the client cut the file short: the first chunk's short read fails
// the request and marks the key cut short, so the later chunks fail without reading the file and
// count no more, and the key leaves the cache: the next store from that memory is refused when
// its key is unpacked, again without a read. Before, every chunk of every such request read the
// file again and counted.
TEST_F(KvaultdShrunkMemoryTest, AShortReadOfTheSegmentFileCountsOnceAndRetiresTheKey) {
  DaemonProcess d(dir_, DaemonArgs("64MiB"));
  ASSERT_TRUE(d.ok()) << d.Stderr();
  Result<std::unique_ptr<Client>> connected = ConnectOverSharedMemory(d);
  ASSERT_TRUE(connected.ok()) << connected.status().ToString();
  Client& client = **connected;
  constexpr uint64_t kChunks = 3;
  // The object (a header more than the payload) spans kChunks + 1 chunks of 1 MiB.
  constexpr uint64_t kBigPayload = kChunks << 20;
  constexpr size_t kHalf = 4 << 20;
  const uint64_t object = SyntheticObjectBytes(kBigPayload);
  ASSERT_LE(object, kHalf);
  Result<SharedRegion> source = AllocateShared(client, 2 * kHalf);
  ASSERT_TRUE(source.ok()) << source.status().ToString();
  auto store = [&](const BlockKey& key, std::span<uint8_t> from) {
    const std::vector<std::span<const uint8_t>> sources = {from};
    StoreHandle stored = client.Store(std::span(&key, 1), sources);
    const Status waited = stored.Wait(Clock::now() + 20s);
    return waited.ok() ? stored.key_status(0) : waited;
  };
  // Positive control, from the first half: the key is unpacked and cached, the bytes read whole.
  const std::span<uint8_t> head = source->region.bytes().first(object);
  ASSERT_TRUE(WriteSyntheticBlock(TestKey(7), kBigPayload, head).ok());
  ASSERT_TRUE(store(TestKey(7), head).ok());
  const double faults_before = MemoryFaults(d);
  ASSERT_GE(faults_before, 0);
  EXPECT_EQ(CutShortFailures(d), 0u) << d.Stderr();

  // The second half holds the next object; the file is cut to its first half.
  const std::span<uint8_t> tail = source->region.bytes().subspan(kHalf, object);
  ASSERT_TRUE(WriteSyntheticBlock(TestKey(8), kBigPayload, tail).ok());
  ASSERT_EQ(ftruncate(source->segment_fd, kHalf), 0) << source->segment_name;
  EXPECT_FALSE(store(TestKey(8), tail).ok()) << "a store from a cut file was accepted";
  ASSERT_TRUE(Running(d.pid())) << "kvaultd died:\n" << d.Stderr();
  EXPECT_EQ(CutShortFailures(d), 1u) << d.Stderr();
  EXPECT_EQ(MemoryFaults(d), faults_before + 1) << "one short read, not one per chunk";

  // The key is gone from the cache: unpacked again it is refused before any read.
  EXPECT_FALSE(store(TestKey(8), tail).ok());
  EXPECT_EQ(CutShortFailures(d), 1u) << d.Stderr();
  EXPECT_EQ(MemoryFaults(d), faults_before + 1) << "the refused key read nothing";

  // Grown back, the same memory stores again, and what was stored before loads intact.
  ASSERT_EQ(ftruncate(source->segment_fd, 2 * kHalf), 0);
  ASSERT_TRUE(WriteSyntheticBlock(TestKey(8), kBigPayload, tail).ok());
  EXPECT_TRUE(store(TestKey(8), tail).ok());
  for (uint8_t n : {7, 8}) {
    std::memset(head.data(), 0, object);
    const std::vector<LoadDestination> destinations = {{head}};
    const BlockKey key = TestKey(n);
    LoadHandle loaded = client.Load(Lease{}, std::span(&key, 1), destinations);
    ASSERT_TRUE(loaded.Wait(Clock::now() + 20s).ok());
    EXPECT_TRUE(loaded.key_status(0).ok());
    EXPECT_TRUE(IsSyntheticBlockFor(key, head)) << "object " << int(n);
  }
}

// The same, racing: a thread stores object after object from one region while the test cuts the
// region's segment to nothing at a random moment, so the cut lands before, between and during the
// daemon's copies (its helper thread's half included). The daemon lives through every round, and
// every store it reported OK loads back byte for byte: none holds the zeros of a cut region.
TEST_F(KvaultdShrunkMemoryTest, CuttingMemoryShortWhileStoresRunNeverKillsTheDaemon) {
  DaemonProcess d(dir_, DaemonArgs("256MiB"));
  ASSERT_TRUE(d.ok()) << d.Stderr();
  Result<std::unique_ptr<Client>> connected = ConnectOverSharedMemory(d);
  ASSERT_TRUE(connected.ok()) << connected.status().ToString();
  Client& client = **connected;
  constexpr int kRounds = 20;
  constexpr size_t kObjects = 16;
  constexpr size_t kRaceRegionBytes = 4 << 20;
  constexpr uint64_t kRacePayloadBytes = 128
                                         << 10;  // past the size the daemon splits with a helper
  const uint64_t object = SyntheticObjectBytes(kRacePayloadBytes);
  ASSERT_LE(object * kObjects, kRaceRegionBytes);
  std::mt19937 rng(20261127);
  size_t stored = 0;
  size_t refused = 0;
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    Result<SharedRegion> source = AllocateShared(client, kRaceRegionBytes);
    ASSERT_TRUE(source.ok()) << source.status().ToString();
    std::vector<BlockKey> keys(kObjects);
    std::vector<std::vector<uint8_t>> objects(kObjects);
    for (size_t j = 0; j < kObjects; ++j) {
      keys[j] = TestKey(0xF0);  // a key of its own per round and object
      keys[j][0] = static_cast<uint8_t>(round);
      keys[j][1] = static_cast<uint8_t>(j);
      const std::span<uint8_t> at = source->region.bytes().subspan(j * object, object);
      ASSERT_TRUE(WriteSyntheticBlock(keys[j], kRacePayloadBytes, at).ok());
      objects[j].assign(at.begin(), at.end());
    }
    std::vector<char> ok(kObjects, 0);
    auto store_one = [&](size_t j) {
      const std::vector<std::span<const uint8_t>> sources = {
          source->region.bytes().subspan(j * object, object)};
      StoreHandle h = client.Store(std::span(&keys[j], 1), sources);
      ok[j] = h.Wait(Clock::now() + 20s).ok() && h.key_status(0).ok();
    };
    // The first store maps the region into the daemon and caches its key, so the cut then
    // finds the daemon's mapping in place (a key unpacked after the cut is refused up front).
    store_one(0);
    ASSERT_TRUE(ok[0]);
    std::thread storer([&] {
      for (size_t j = 1; j < kObjects; ++j) store_one(j);
    });
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 2000));
    const int cut = ftruncate(source->segment_fd, 0);
    storer.join();
    ASSERT_EQ(cut, 0);
    ASSERT_TRUE(Running(d.pid())) << "kvaultd died:\n" << d.Stderr();

    Result<SharedRegion> target = AllocateShared(client, kRaceRegionBytes);
    ASSERT_TRUE(target.ok()) << target.status().ToString();
    for (size_t j = 0; j < kObjects; ++j) {
      const std::span<uint8_t> into = target->region.bytes().subspan(j * object, object);
      const std::vector<LoadDestination> destinations = {{into}};
      LoadHandle loaded = client.Load(Lease{}, std::span(&keys[j], 1), destinations);
      ASSERT_TRUE(loaded.Wait(Clock::now() + 20s).ok());
      if (ok[j]) {
        stored += j > 0 ? 1 : 0;  // the first, stored before the race, is the positive control
        ASSERT_TRUE(loaded.key_status(0).ok()) << "a stored object is gone";
        EXPECT_EQ(std::memcmp(into.data(), objects[j].data(), object), 0)
            << "object " << j << " was reported stored with other bytes";
      } else {
        ++refused;
        EXPECT_FALSE(loaded.key_status(0).ok()) << "a refused store left an object behind";
      }
    }
  }
  ASSERT_TRUE(client.Ping().ok());
  std::printf(
      "[ shrunk memory ] %d rounds of %zu stores cut short at random: %zu stored, %zu "
      "refused, %zu requests failed as cut short (daemon log)\n",
      kRounds, kObjects, stored, refused, CutShortFailures(d));
  // Both outcomes happened among the racing stores, so the cut fell inside their run, not only
  // before or after it.
  EXPECT_GT(stored, 0u);
  EXPECT_GT(refused, 0u);
}

}  // namespace
}  // namespace kvault::testing
