// kvaultd and libkvault end to end: real daemon processes on loopback, real UCX transfers.
// Round trips for every codec verified byte for byte after decode, lease expiry, tenant
// isolation with a positive control, a client killed mid-transfer leaving nothing behind,
// SIGTERM with blocks persisted in the nvme tier, SIGKILL and restart.
//
// The killed client is this test binary re-executed (KVAULT_E2E_CHILD set), so that the child
// starts its own UCX from scratch rather than inheriting the parent's through fork().

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <thread>

#include "binary_run.h"
#include "daemon_process.h"
#include "kv_test_util.h"
#include "kvault/client.h"
#include "kvault/common/auth.h"
#include "kvault/common/block_key.h"
#include "kvault/common/synthetic_block.h"
#include "kvault/kv_store.h"

namespace kvault::testing {
namespace {

using namespace std::chrono_literals;

constexpr uint32_t kLayers = 2, kHeads = 2, kDim = 64, kBlockTokens = 16;

std::unique_ptr<Client> Connect(const DaemonProcess& d, const std::string& tenant = "",
                                const std::string& token = "") {
  ClientConfig config;
  config.server = d.server();
  config.tenant = tenant;
  config.token = token;
  Result<std::unique_ptr<Client>> c = Client::Connect(config);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? std::move(*c) : nullptr;
}

// The daemon's Stats as name -> value.
std::map<std::string, double> StatsOf(Client& c) {
  std::map<std::string, double> out;
  Result<std::vector<ServerStat>> stats = c.Stats();
  EXPECT_TRUE(stats.ok()) << stats.status().ToString();
  if (stats.ok()) {
    for (const ServerStat& s : *stats) out[s.name] = s.AsDouble();
  }
  return out;
}

// Host KV [layers][2][tokens][heads][dim] of random fp16 values, and a contiguous view of it.
struct HostKv {
  explicit HostKv(uint32_t tokens, uint32_t seed) : tokens(tokens) {
    data.resize(size_t{kLayers} * 2 * tokens * kHeads * kDim);
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (uint16_t& v : data) {
      // fp16 bits of a normal sample: sign, exponent 13..16, random mantissa.
      const float x = normal(rng);
      const uint16_t sign = x < 0 ? 0x8000 : 0;
      v = static_cast<uint16_t>(sign | ((13 + (rng() % 3)) << 10) | (rng() & 0x3FF));
    }
    MakeView();
  }
  void MakeView() {
    uint16_t* base = data.data();
    const int32_t page = 0;
    EXPECT_TRUE(kernels::MakePagedKvView(kernels::KvLayout::kContiguous, DType::kF16, kLayers,
                                         kHeads, kDim, tokens, 1, std::span(&base, 1),
                                         std::span(&page, 1), view, storage)
                    .ok());
  }
  uint32_t tokens;
  std::vector<uint16_t> data;
  kernels::PagedKvView view;
  kernels::PagedKvViewStorage storage;
};

std::vector<uint32_t> TokenIds(uint32_t n, uint32_t seed) {
  std::vector<uint32_t> t(n);
  std::mt19937 rng(seed);
  for (uint32_t& x : t) x = rng() % 128000;
  return t;
}

BlockKey NamespaceFor(const std::string& model) {
  return TestNamespaceDigest(model, kLayers, kHeads, kDim, kBlockTokens);
}

class KvaultdClientTest : public BinaryTest {
 protected:
  KvaultdClientTest() : BinaryTest("kvaultd") {}
};

TEST_F(KvaultdClientTest, EveryCodecRoundTripsByteExactAfterDecode) {
  DaemonProcess d(dir_, {});
  ASSERT_TRUE(d.ok()) << d.Stderr();
  auto client = Connect(d);
  ASSERT_NE(client, nullptr);
  const uint32_t blocks = 6;
  HostKv source(blocks * kBlockTokens, 7);
  for (const std::string codec : {"raw", "fp8", "int8", "int4", "int2", "k=int4,v=int2", "int4,rot",
                                  "int2,g=32,sink=4", "k=int8,v=int4;layers=1-1:fp8"}) {
    SCOPED_TRACE(codec);
    const BlockKey ns = NamespaceFor("e2e-" + codec);
    const std::vector<BlockKey> keys =
        *ChainBlockKeys(ns, TokenIds(blocks * kBlockTokens, 3), kBlockTokens);
    KvStoreOptions options;
    options.format = {kLayers, kHeads, kDim, DType::kF16, kBlockTokens, codec, ns};
    options.staging_bytes = 1 << 20;
    Result<std::unique_ptr<KvStore>> kv = KvStore::Create(*client, options);
    ASSERT_TRUE(kv.ok()) << kv.status().ToString();
    const KvTransferResult stored = (*kv)->StoreBlocks(source.view, keys);
    ASSERT_TRUE(stored.status.ok()) << stored.status.ToString();
    ASSERT_EQ(stored.leading_ok, blocks);

    const LookupResult hits = client->LookupPrefix(keys, {.want_lease = true});
    ASSERT_TRUE(hits.status.ok()) << hits.status.ToString();
    EXPECT_EQ(hits.leading_hits, blocks);
    EXPECT_TRUE(hits.lease.valid());

    HostKv loaded(blocks * kBlockTokens, 99);  // filled with other values first
    const KvTransferResult got = (*kv)->LoadBlocks(hits.lease, keys, loaded.view);
    ASSERT_TRUE(got.status.ok()) << got.status.ToString();
    EXPECT_EQ(got.leading_ok, blocks);
    for (const Status& st : got.key_status) EXPECT_TRUE(st.ok()) << st.ToString();
    EXPECT_TRUE(client->ReleaseLease(hits.lease).ok());

    // What the same codec gives locally: encode, then decode.
    HostKv want(blocks * kBlockTokens, 99);
    const KvBlockCodec& local = (*kv)->codec();
    for (uint32_t b = 0; b < blocks; ++b) {
      std::vector<uint8_t> object(local.ObjectBytes(b));
      ASSERT_TRUE(local.Encode(source.view, b, keys[b], object).ok());
      ASSERT_TRUE(local.Decode(object, b, keys[b], want.view).ok());
    }
    EXPECT_EQ(loaded.data, want.data) << "decoded KV differs from the local decode";
    if (codec == "raw") {
      EXPECT_EQ(loaded.data, source.data);
    }
  }
}

TEST_F(KvaultdClientTest, LeasesExpireAndTenantsAreIsolated) {
  {
    std::ofstream f(dir_ / "tenants.yaml");
    f << "tenants:\n  - name: a\n    token_sha256: " << HexEncode(TokenHash("ta"))
      << "\n    quota_bytes: 0\n    store_stats: true\n  - name: b\n    token_sha256: "
      << HexEncode(TokenHash("tb")) << "\n    quota_bytes: 0\n";
  }
  DaemonProcess d(dir_, {"--auth.tenants_file", (dir_ / "tenants.yaml").string()});
  ASSERT_TRUE(d.ok()) << d.Stderr();
  auto a = Connect(d, "a", "ta");
  auto b = Connect(d, "b", "tb");
  ASSERT_TRUE(a && b);
  ClientConfig wrong;
  wrong.server = d.server();
  wrong.tenant = "a";
  wrong.token = "tb";
  const Result<std::unique_ptr<Client>> refused = Client::Connect(wrong);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument) << refused.status().ToString();
  EXPECT_NE(refused.status().message().find("unauthenticated"), std::string::npos)
      << refused.status().ToString();

  Result<MemoryRegion> region = a->AllocateMemory(1 << 20);
  ASSERT_TRUE(region.ok()) << region.status().ToString();
  const std::vector<BlockKey> keys = *ChainBlockKeys(NamespaceFor("iso"), TokenIds(64, 5), 16);
  std::vector<std::span<const uint8_t>> sources;
  uint64_t at = 0;
  for (const BlockKey& k : keys) {
    const uint64_t n = SyntheticObjectBytes(4096);
    ASSERT_TRUE(WriteSyntheticBlock(k, 4096, region->bytes().subspan(at, n)).ok());
    sources.push_back(region->bytes().subspan(at, n));
    at += n;
  }
  StoreHandle stored = a->Store(keys, sources);
  ASSERT_TRUE(stored.Wait(Clock::now() + 10s).ok());

  // Positive control: the owner hits all; the other tenant misses all, lease or not.
  EXPECT_EQ(a->LookupPrefix(keys).leading_hits, keys.size());
  const LookupResult foreign = b->LookupPrefix(keys, {.want_lease = true});
  EXPECT_EQ(foreign.leading_hits, 0u);
  EXPECT_FALSE(foreign.lease.valid());
  // Positive control: the owner loads the first block, byte-exact.
  Result<MemoryRegion> a_region = a->AllocateMemory(64 << 10);
  ASSERT_TRUE(a_region.ok()) << a_region.status().ToString();
  std::vector<LoadDestination> a_dst = {{a_region->bytes()}};
  LoadHandle own_load = a->Load(Lease{}, std::span(keys).first(1), a_dst);
  ASSERT_TRUE(own_load.Wait(Clock::now() + 10s).ok());
  ASSERT_TRUE(own_load.key_status(0).ok()) << own_load.key_status(0).ToString();
  ASSERT_EQ(own_load.object_size(0), sources[0].size());
  EXPECT_TRUE(std::equal(sources[0].begin(), sources[0].end(), a_region->bytes().begin()));
  // The other tenant's load of the same key is a plain miss that leaves its buffer alone.
  Result<MemoryRegion> b_region = b->AllocateMemory(64 << 10);
  ASSERT_TRUE(b_region.ok());
  std::fill(b_region->bytes().begin(), b_region->bytes().end(), uint8_t{0xA5});
  std::vector<LoadDestination> dst = {{b_region->bytes()}};
  LoadHandle foreign_load = b->Load(Lease{}, std::span(keys).first(1), dst);
  EXPECT_TRUE(foreign_load.Wait(Clock::now() + 10s).ok());             // the request completes...
  EXPECT_EQ(foreign_load.key_status(0).code(), StatusCode::kNotFound)  // ...with the key missed
      << foreign_load.key_status(0).ToString();
  EXPECT_EQ(foreign_load.object_size(0), 0u);
  EXPECT_TRUE(foreign_load.WaitSettled(Clock::now() + 10s));
  EXPECT_TRUE(std::all_of(b_region->bytes().begin(), b_region->bytes().end(), [](uint8_t v) {
    return v == 0xA5;
  })) << "a miss wrote into the other tenant's buffer";

  // A short lease expires by itself.
  const LookupResult leased = a->LookupPrefix(keys, {.want_lease = true, .lease_ttl = 300ms});
  ASSERT_TRUE(leased.lease.valid());
  EXPECT_EQ(StatsOf(*a)["store.active_leases"], 1.0);
  EXPECT_EQ(StatsOf(*b).count("store.active_leases"), 0u) << "b sees no store-wide figures";
  std::this_thread::sleep_for(700ms);
  a->LookupPrefix(keys);  // expiry is lazy: any store operation collects due leases
  EXPECT_EQ(StatsOf(*a)["store.active_leases"], 0.0);
  EXPECT_FALSE(a->ReleaseLease(leased.lease).ok());
}

// The child side of ClientKilledMidTransferLeavesNothingBehind: connect, take a lease, start a
// large store, say so on stdout, then wait to be killed.
TEST(KvaultdClientChild, StoreUntilKilled) {
  const char* server = std::getenv("KVAULT_E2E_CHILD");
  if (server == nullptr) GTEST_SKIP() << "runs only as the child of a kvaultd_client_test";
  ClientConfig config;
  config.server = server;
  config.request_timeout = 60s;
  auto c = Client::Connect(config);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  const std::vector<BlockKey> present = *ChainBlockKeys(NamespaceFor("kill"), TokenIds(16, 1), 16);
  const LookupResult leased = (*c)->LookupPrefix(present, {.want_lease = true});
  ASSERT_TRUE(leased.lease.valid());
  const uint64_t object = SyntheticObjectBytes(1 << 20);
  const size_t n = 48;
  auto region = (*c)->AllocateMemory(object * n);
  ASSERT_TRUE(region.ok());
  const std::vector<BlockKey> keys =
      *ChainBlockKeys(NamespaceFor("kill-big"), TokenIds(16 * n, 2), 16);
  std::vector<std::span<const uint8_t>> sources;
  for (size_t i = 0; i < n; ++i) {
    auto bytes = region->bytes().subspan(i * object, object);
    ASSERT_TRUE(WriteSyntheticBlock(keys[i], 1 << 20, bytes).ok());
    sources.push_back(bytes);
  }
  StoreHandle h = (*c)->Store(keys, sources);
  std::printf("STORING\n");
  std::fflush(stdout);
  (void)h.Wait(Clock::now() + 60s);  // killed meanwhile, whatever the outcome
  std::this_thread::sleep_for(60s);
}

TEST_F(KvaultdClientTest, ClientKilledMidTransferLeavesNothingBehind) {
  DaemonProcess d(dir_, {"--storage.host_capacity", "256MiB", "--storage.nvme_capacity", "0"});
  ASSERT_TRUE(d.ok()) << d.Stderr();
  auto observer = Connect(d);
  ASSERT_NE(observer, nullptr);
  // A block for the child to lease.
  {
    auto region = observer->AllocateMemory(64 << 10);
    const std::vector<BlockKey> k = *ChainBlockKeys(NamespaceFor("kill"), TokenIds(16, 1), 16);
    ASSERT_TRUE(
        WriteSyntheticBlock(k[0], 4096, region->bytes().first(SyntheticObjectBytes(4096))).ok());
    std::vector<std::span<const uint8_t>> src = {region->bytes().first(SyntheticObjectBytes(4096))};
    StoreHandle h = observer->Store(k, src);
    ASSERT_TRUE(h.Wait(Clock::now() + 10s).ok());
  }
  std::map<std::string, double> before = StatsOf(*observer);

  for (int round = 0; round < 3; ++round) {
    int out[2];
    ASSERT_EQ(::pipe(out), 0);
    const pid_t child = ::fork();
    if (child == 0) {
      ::dup2(out[1], STDOUT_FILENO);
      ::close(out[0]);
      ::setenv("KVAULT_E2E_CHILD", d.server().c_str(), 1);
      const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
      ::execl(self.c_str(), self.c_str(), "--gtest_filter=KvaultdClientChild.StoreUntilKilled",
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(out[1]);
    std::string seen;
    char buf[256];
    const auto until = std::chrono::steady_clock::now() + 30s;
    while (seen.find("STORING") == std::string::npos && std::chrono::steady_clock::now() < until) {
      const ssize_t r = ::read(out[0], buf, sizeof buf);
      if (r <= 0) break;
      seen.append(buf, static_cast<size_t>(r));
    }
    ::close(out[0]);
    if (seen.find("STORING") == std::string::npos) {  // no orphan child after a failed round
      ::kill(child, SIGKILL);
      ::waitpid(child, nullptr, 0);
    }
    ASSERT_NE(seen.find("STORING"), std::string::npos) << seen << d.Stderr();
    std::this_thread::sleep_for(std::chrono::milliseconds(5 * round));
    ::kill(child, SIGKILL);
    ::waitpid(child, nullptr, 0);
  }
  // Within a few seconds every lease and reservation of the dead clients is gone.
  std::map<std::string, double> after;
  const auto until = std::chrono::steady_clock::now() + 20s;
  do {
    std::this_thread::sleep_for(200ms);
    after = StatsOf(*observer);
  } while ((after["store.active_leases"] != before["store.active_leases"] ||
            after["store.pending_writes"] != 0) &&
           std::chrono::steady_clock::now() < until);
  // On failure, the daemon's log says what it was still doing with the dead clients.
  EXPECT_EQ(after["store.active_leases"], before["store.active_leases"]) << d.Stderr();
  // No reservation of the dead clients is left (each was committed or aborted).
  EXPECT_EQ(before["store.pending_writes"], 0.0);
  EXPECT_EQ(after["store.pending_writes"], 0.0) << d.Stderr();
  EXPECT_EQ(after["store.pending_write_bytes"], 0.0);
  // And the daemon still serves.
  EXPECT_TRUE(observer->Ping().ok());
}

// Stores `n` synthetic 256 KiB blocks under a chain; returns the keys. With `expect_stored`
// false (a daemon killed meanwhile) the outcome is not checked.
std::vector<BlockKey> StoreSynthetic(Client& c, const std::string& name, size_t n,
                                     bool expect_stored = true) {
  const uint64_t object = SyntheticObjectBytes(256 << 10);
  auto region = c.AllocateMemory(object * n);
  EXPECT_TRUE(region.ok());
  const std::vector<BlockKey> keys = *ChainBlockKeys(NamespaceFor(name), TokenIds(16 * n, 9), 16);
  std::vector<std::span<const uint8_t>> sources;
  for (size_t i = 0; i < n; ++i) {
    auto bytes = region->bytes().subspan(i * object, object);
    EXPECT_TRUE(WriteSyntheticBlock(keys[i], 256 << 10, bytes).ok());
    sources.push_back(bytes);
  }
  StoreHandle h = c.Store(keys, sources);
  const Status waited = h.Wait(Clock::now() + 30s);
  if (!expect_stored) return keys;
  EXPECT_TRUE(waited.ok()) << waited.ToString();
  EXPECT_EQ(h.ok_count(), n) << h.key_status(0).ToString();  // stored in waves if need be
  return keys;
}

// Loads every key that hits and checks its bytes; returns how many hit.
size_t LoadAndVerifyHits(Client& c, const std::vector<BlockKey>& keys) {
  const uint64_t object = SyntheticObjectBytes(256 << 10);
  auto region = c.AllocateMemory(object);
  EXPECT_TRUE(region.ok());
  size_t hits = 0;
  for (const BlockKey& k : keys) {
    std::vector<LoadDestination> dst = {{region->bytes()}};
    LoadHandle h = c.Load(Lease{}, std::span(&k, 1), dst);
    if (!h.Wait(Clock::now() + 10s).ok() || !h.key_status(0).ok()) continue;
    ++hits;
    EXPECT_TRUE(IsSyntheticBlockFor(k, region->bytes().first(h.object_size(0))))
        << "a loaded block does not carry its own bytes";
  }
  return hits;
}

// A lease from before a daemon restart stays the lost session's: releasing it on the reconnected
// client is refused, and it does not release the lease the restarted daemon granted under the
// same id (lease ids start again at 1, and session ids did too, so the client took the old lease
// for its new session's and released another caller's pin). Positive control: the new lease
// releases.
TEST_F(KvaultdClientTest, ALeaseFromBeforeARestartReleasesNothingOfTheNewSession) {
  auto d = std::make_unique<DaemonProcess>(dir_, std::vector<std::string>{});
  ASSERT_TRUE(d->ok()) << d->Stderr();
  std::unique_ptr<Client> c = Connect(*d);
  ASSERT_NE(c, nullptr);
  const std::vector<BlockKey> keys = StoreSynthetic(*c, "restart", 2);
  const LookupResult before = c->LookupPrefix(keys, {.want_lease = true});
  ASSERT_TRUE(before.status.ok()) << before.status.ToString();
  ASSERT_TRUE(before.lease.valid());

  RestartOnSamePort(&d, dir_, {});
  ASSERT_TRUE(d->ok()) << d->Stderr();
  // The first calls after the loss reconnect (the blocks died with the daemon: no nvme tier).
  const auto until = Clock::now() + 20s;
  while (!c->Ping().ok() && Clock::now() < until) std::this_thread::sleep_for(50ms);
  ASSERT_EQ(StoreSynthetic(*c, "restart", 2), keys);
  const LookupResult after = c->LookupPrefix(keys, {.want_lease = true});
  ASSERT_TRUE(after.status.ok()) << after.status.ToString();
  ASSERT_TRUE(after.lease.valid());
  EXPECT_NE(after.lease.session, before.lease.session) << "a restarted daemon reused a session id";

  const Status stale = c->ReleaseLease(before.lease);
  EXPECT_FALSE(stale.ok()) << "a lease of the lost session was released";
  EXPECT_TRUE(c->ReleaseLease(after.lease).ok()) << "the new session's lease is gone";
  EXPECT_EQ(d->Terminate(), 0) << d->Stderr();
}

TEST_F(KvaultdClientTest, SigtermKeepsNvmeBlocksAndSigkillNeverServesWrongBytes) {
  // No promotion on hit: a block read from nvme stays there, so the blocks found in nvme after the
  // clean restart are exactly those a later SIGKILL must not lose (a promoted block would live
  // only in the host tier, which a kill may lose).
  const std::vector<std::string> args = {
      "--storage.host_capacity",  "4MiB", "--storage.nvme_capacity",  "1GiB",
      "--limits.max_block_bytes", "1MiB", "--storage.promote_on_hit", "false"};
  std::vector<BlockKey> keys;
  size_t persisted = 0;  // blocks of `keys` served from nvme after the clean restart
  {
    DaemonProcess d(dir_, args);
    ASSERT_TRUE(d.ok()) << d.Stderr();
    auto c = Connect(d);
    keys = StoreSynthetic(*c, "persist", 40);  // 10 MiB: most of it demoted to nvme
    const LookupResult r = c->LookupPrefix(keys);
    size_t on_nvme = 0;
    for (Tier t : r.tiers) on_nvme += t == Tier::kNvme;
    EXPECT_GT(on_nvme, 20u);
    c.reset();
    EXPECT_EQ(d.Terminate(), 0) << d.Stderr();
  }
  {
    // After a clean stop the nvme blocks are all there, byte for byte.
    DaemonProcess d(dir_, args);
    ASSERT_TRUE(d.ok()) << d.Stderr();
    auto c = Connect(d);
    const LookupResult r = c->LookupPrefix(keys);
    for (Tier t : r.tiers) persisted += t == Tier::kNvme;
    EXPECT_GT(persisted, 20u);
    EXPECT_EQ(LoadAndVerifyHits(*c, keys), persisted);
    // Now write more and kill it mid-way.
    std::thread writer([&] { StoreSynthetic(*c, "killed", 40, /*expect_stored=*/false); });
    std::this_thread::sleep_for(100ms);
    d.Kill();
    writer.join();
  }
  {
    // After SIGKILL the daemon starts, serves, and whatever it returns is right.
    DaemonProcess d(dir_, args);
    ASSERT_TRUE(d.ok()) << d.Stderr();
    auto c = Connect(d);
    // The blocks that were in nvme before the kill are all still there, byte for byte.
    EXPECT_EQ(LoadAndVerifyHits(*c, keys), persisted);
    LoadAndVerifyHits(*c, *ChainBlockKeys(NamespaceFor("killed"), TokenIds(16 * 40, 9), 16));
    const std::vector<BlockKey> fresh = StoreSynthetic(*c, "after", 4);
    EXPECT_EQ(LoadAndVerifyHits(*c, fresh), 4u);
    EXPECT_EQ(d.Terminate(), 0) << d.Stderr();
  }
}

}  // namespace
}  // namespace kvault::testing
