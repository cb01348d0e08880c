// Memory the caller registered (Client::RegisterMemory) against a real kvaultd: requests on it go
// through the client's staging pool (ClientConfig::registered_staging_bytes), over shared memory
// and over TCP. Byte-exact round trips; a Store copies its sources before it returns (they may be
// overwritten at once); a Load writes exactly what the daemon sent into the caller's buffers and
// leaves the buffers of missed or refused keys alone; requests that do not fit the pool go to the
// registered memory directly; threads sharing one client and a small pool see only their own
// bytes. Staging off is the positive control of the counters.

#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "binary_run.h"
#include "daemon_process.h"
#include "kv_test_util.h"
#include "kvault/client.h"
#include "kvault/common/synthetic_block.h"

namespace kvault::testing {
namespace {

using namespace std::chrono_literals;

BlockKey KeyOf(uint32_t n) {
  BlockKey k{};
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(n * 13 + i * 5 + 3);
  k[0] = static_cast<uint8_t>(n);
  k[1] = static_cast<uint8_t>(n >> 8);
  k[2] = 0x5E;
  return k;
}

bool AllBytesAre(std::span<const uint8_t> bytes, uint8_t value) {
  for (uint8_t b : bytes) {
    if (b != value) return false;
  }
  return true;
}

class RegisteredStagingTest : public BinaryTest, public ::testing::WithParamInterface<const char*> {
 protected:
  RegisteredStagingTest() : BinaryTest("kvaultd") {}

  void SetUp() override {
    BinaryTest::SetUp();
    daemon_ = std::make_unique<DaemonProcess>(
        dir_,
        std::vector<std::string>{"--storage.host_capacity", "64MiB", "--storage.nvme_capacity", "0",
                                 "--ucx.transports", GetParam()});
    ASSERT_TRUE(daemon_->ok()) << daemon_->Stderr();
  }
  void TearDown() override {
    daemon_.reset();  // stopped before its directory goes
    BinaryTest::TearDown();
  }

  std::unique_ptr<Client> Connect(uint64_t staging_bytes) {
    ClientConfig config;
    config.server = daemon_->server();
    config.ucx_transports = GetParam();
    config.request_timeout = 20s;
    config.registered_staging_bytes = staging_bytes;
    Result<std::unique_ptr<Client>> c = Client::Connect(config);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(*c) : nullptr;
  }

  std::unique_ptr<DaemonProcess> daemon_;
};

// Stores objects for `keys` from `memory` (registered) at multiples of `stride`, and waits.
void StoreAll(Client& client, const OwnMemory& memory, std::span<const BlockKey> keys,
              uint64_t payload, size_t stride) {
  const uint64_t object = SyntheticObjectBytes(payload);
  std::vector<std::span<const uint8_t>> sources;
  for (size_t i = 0; i < keys.size(); ++i) {
    std::span<uint8_t> at = memory.at(i * stride, object);
    ASSERT_TRUE(WriteSyntheticBlock(keys[i], payload, at).ok());
    sources.push_back(at);
  }
  StoreHandle stored = client.Store(keys, sources);
  ASSERT_TRUE(stored.Wait(Clock::now() + 30s).ok());
  for (size_t i = 0; i < keys.size(); ++i) {
    EXPECT_TRUE(stored.key_status(i).ok())
        << "store " << i << ": " << stored.key_status(i).ToString();
  }
}

TEST_P(RegisteredStagingTest, StagedRequestsAreByteExactAndFailedKeysLeaveTheirBuffersAlone) {
  auto client = Connect(64 << 20);
  ASSERT_NE(client, nullptr);
  constexpr uint64_t kPayload = 96 << 10;
  const uint64_t object = SyntheticObjectBytes(kPayload);
  const size_t stride = (object + 4095) / 4096 * 4096;
  constexpr size_t kKeys = 6;
  OwnMemory memory(2 * kKeys * stride + 3 * stride);
  Result<MemoryRegion> region = client->RegisterMemory(memory.data, memory.size);
  ASSERT_TRUE(region.ok()) << region.status().ToString();

  std::vector<BlockKey> keys;
  std::vector<std::span<const uint8_t>> sources;
  std::vector<std::vector<uint8_t>> expected;
  for (uint32_t i = 0; i < kKeys; ++i) {
    keys.push_back(KeyOf(i));
    std::span<uint8_t> at = memory.at(i * stride, object);
    ASSERT_TRUE(WriteSyntheticBlock(keys[i], kPayload, at).ok());
    expected.emplace_back(at.begin(), at.end());
    sources.push_back(at);
  }
  StoreHandle stored = client->Store(keys, sources);
  // Staged: the sources were copied before Store returned, so they may change at once.
  std::memset(memory.data, 0x5A, kKeys * stride);
  ASSERT_TRUE(stored.Wait(Clock::now() + 30s).ok());
  for (size_t i = 0; i < kKeys; ++i) {
    EXPECT_TRUE(stored.key_status(i).ok())
        << "store " << i << ": " << stored.key_status(i).ToString();
  }

  // Whole objects for keys 0..3, a 1000-byte range of key 4 into a larger buffer, key 5 into a
  // buffer too small for it (OutOfRange), and a key never stored (NotFound).
  std::memset(memory.data, 0xEE, memory.size);
  const size_t base = kKeys * stride;
  std::vector<BlockKey> load_keys(keys.begin(), keys.begin() + 4);
  std::vector<LoadDestination> destinations;
  for (size_t i = 0; i < 4; ++i) destinations.push_back({memory.at(base + i * stride, stride)});
  load_keys.push_back(keys[4]);
  destinations.push_back({memory.at(base + 4 * stride, 4096), 4096, 1000});
  load_keys.push_back(keys[5]);
  destinations.push_back({memory.at(base + 5 * stride, object - 1)});
  load_keys.push_back(KeyOf(999));
  destinations.push_back({memory.at(base + 6 * stride, stride)});

  LoadHandle loaded = client->Load(Lease{}, load_keys, destinations);
  ASSERT_TRUE(loaded.Wait(Clock::now() + 30s).ok());
  for (size_t i = 0; i < 4; ++i) {
    ASSERT_TRUE(loaded.key_status(i).ok())
        << "load " << i << ": " << loaded.key_status(i).ToString();
    EXPECT_EQ(loaded.object_size(i), object);
    const std::span<const uint8_t> got = destinations[i].buffer.first(object);
    EXPECT_TRUE(std::equal(got.begin(), got.end(), expected[i].begin())) << "load " << i;
    EXPECT_TRUE(IsSyntheticBlockFor(keys[i], got)) << "load " << i;
    EXPECT_TRUE(AllBytesAre(destinations[i].buffer.subspan(object), 0xEE))
        << "load " << i << " wrote past the object";
  }
  ASSERT_TRUE(loaded.key_status(4).ok()) << loaded.key_status(4).ToString();
  const std::span<const uint8_t> range = destinations[4].buffer;
  EXPECT_TRUE(std::equal(range.begin(), range.begin() + 1000, expected[4].begin() + 4096));
  EXPECT_TRUE(AllBytesAre(range.subspan(1000), 0xEE)) << "the range load wrote past its length";
  EXPECT_EQ(loaded.key_status(5).code(), StatusCode::kOutOfRange)
      << loaded.key_status(5).ToString();
  EXPECT_TRUE(AllBytesAre(destinations[5].buffer, 0xEE)) << "a refused load wrote its buffer";
  EXPECT_EQ(loaded.key_status(6).code(), StatusCode::kNotFound) << loaded.key_status(6).ToString();
  EXPECT_TRUE(AllBytesAre(destinations[6].buffer, 0xEE)) << "a missed load wrote its buffer";

  const RegisteredStagingStats stats = client->registered_staging();
  EXPECT_EQ(stats.pool_bytes, uint64_t{64} << 20);
  EXPECT_GE(stats.staged_requests, 2u);
  EXPECT_EQ(stats.direct_requests, 0u);
}

TEST_P(RegisteredStagingTest, WithStagingOffRegisteredMemoryIsUsedDirectly) {
  auto client = Connect(0);
  ASSERT_NE(client, nullptr);
  constexpr uint64_t kPayload = 64 << 10;
  const uint64_t object = SyntheticObjectBytes(kPayload);
  const size_t stride = (object + 4095) / 4096 * 4096;
  OwnMemory memory(8 * stride);
  Result<MemoryRegion> region = client->RegisterMemory(memory.data, memory.size);
  ASSERT_TRUE(region.ok()) << region.status().ToString();
  const std::vector<BlockKey> keys = {KeyOf(10), KeyOf(11), KeyOf(12)};
  ASSERT_NO_FATAL_FAILURE(StoreAll(*client, memory, keys, kPayload, stride));

  std::vector<LoadDestination> destinations;
  for (size_t i = 0; i < keys.size(); ++i)
    destinations.push_back({memory.at((4 + i) * stride, stride)});
  LoadHandle loaded = client->Load(Lease{}, keys, destinations);
  ASSERT_TRUE(loaded.Wait(Clock::now() + 30s).ok());
  for (size_t i = 0; i < keys.size(); ++i) {
    ASSERT_TRUE(loaded.key_status(i).ok()) << loaded.key_status(i).ToString();
    EXPECT_TRUE(IsSyntheticBlockFor(keys[i], destinations[i].buffer.first(object)));
  }
  const RegisteredStagingStats stats = client->registered_staging();
  EXPECT_EQ(stats.pool_bytes, 0u);
  EXPECT_EQ(stats.staged_requests, 0u);
  EXPECT_EQ(stats.direct_requests, 0u);
}

TEST_P(RegisteredStagingTest, RequestsLargerThanThePoolGoToTheRegisteredMemory) {
  // 256 KiB of staging, at most 64 KiB per request: 16 KiB objects are staged a few per request,
  // 300 KiB objects cannot be and go directly.
  auto client = Connect(256 << 10);
  ASSERT_NE(client, nullptr);
  constexpr uint64_t kSmall = 16 << 10, kLarge = 300 << 10;
  const size_t stride = (SyntheticObjectBytes(kLarge) + 4095) / 4096 * 4096;
  OwnMemory memory(24 * stride);
  Result<MemoryRegion> region = client->RegisterMemory(memory.data, memory.size);
  ASSERT_TRUE(region.ok()) << region.status().ToString();
  std::vector<BlockKey> small, large;
  for (uint32_t i = 0; i < 8; ++i) small.push_back(KeyOf(100 + i));
  for (uint32_t i = 0; i < 2; ++i) large.push_back(KeyOf(200 + i));
  ASSERT_NO_FATAL_FAILURE(StoreAll(*client, memory, small, kSmall, stride));
  const RegisteredStagingStats after_small = client->registered_staging();
  EXPECT_GE(after_small.staged_requests, 3u) << "8 small objects need several 64 KiB requests";
  EXPECT_EQ(after_small.direct_requests, 0u);
  ASSERT_NO_FATAL_FAILURE(StoreAll(*client, memory, large, kLarge, stride));
  EXPECT_EQ(client->registered_staging().direct_requests, 2u);

  std::memset(memory.data, 0xEE, memory.size);
  std::vector<BlockKey> all = small;
  all.insert(all.end(), large.begin(), large.end());
  // Each buffer as large as its object, in pages: a Load stages its buffers' whole capacity.
  std::vector<LoadDestination> destinations;
  for (size_t i = 0; i < all.size(); ++i) {
    const uint64_t object = SyntheticObjectBytes(i < small.size() ? kSmall : kLarge);
    destinations.push_back({memory.at(i * stride, (object + 4095) / 4096 * 4096)});
  }
  LoadHandle loaded = client->Load(Lease{}, all, destinations);
  ASSERT_TRUE(loaded.Wait(Clock::now() + 30s).ok());
  for (size_t i = 0; i < all.size(); ++i) {
    ASSERT_TRUE(loaded.key_status(i).ok())
        << "load " << i << ": " << loaded.key_status(i).ToString();
    const uint64_t object = SyntheticObjectBytes(i < small.size() ? kSmall : kLarge);
    EXPECT_TRUE(IsSyntheticBlockFor(all[i], destinations[i].buffer.first(object))) << i;
  }
  const RegisteredStagingStats stats = client->registered_staging();
  EXPECT_GE(stats.staged_requests, 2 * after_small.staged_requests);
  EXPECT_EQ(stats.direct_requests, 4u);  // two stores and two loads of the large objects
}

TEST_P(RegisteredStagingTest, ThreadsSharingASmallPoolSeeOnlyTheirOwnBytes) {
  // 1 MiB of staging for 4 threads moving 200 KiB objects: the threads' requests share the pool
  // (one that finds no free chunk goes directly).
  auto client = Connect(1 << 20);
  ASSERT_NE(client, nullptr);
  constexpr uint64_t kPayload = 200 << 10;
  constexpr int kThreads = 4, kRounds = 12;
  const uint64_t object = SyntheticObjectBytes(kPayload);
  const size_t stride = (object + 4095) / 4096 * 4096;
  std::vector<std::thread> threads;
  std::vector<int> mismatches(kThreads, 0), failures(kThreads, 0);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      OwnMemory memory(2 * stride);
      Result<MemoryRegion> region = client->RegisterMemory(memory.data, memory.size);
      if (!region.ok()) {
        ++failures[t];
        return;
      }
      for (int r = 0; r < kRounds; ++r) {
        const BlockKey key = KeyOf(1000 + t * kRounds + r);
        const std::span<uint8_t> source = memory.at(0, object);
        const std::span<uint8_t> target = memory.at(stride, stride);
        if (!WriteSyntheticBlock(key, kPayload, source).ok()) ++failures[t];
        const std::span<const uint8_t> sources[] = {source};
        StoreHandle stored = client->Store(std::span(&key, 1), sources);
        if (!stored.Wait(Clock::now() + 30s).ok() || !stored.key_status(0).ok()) ++failures[t];
        std::memset(target.data(), 0, target.size());
        const LoadDestination destination{target};
        LoadHandle loaded = client->Load(Lease{}, std::span(&key, 1), std::span(&destination, 1));
        if (!loaded.Wait(Clock::now() + 30s).ok() || !loaded.key_status(0).ok()) {
          ++failures[t];
        } else if (!IsSyntheticBlockFor(key, target.first(object))) {
          ++mismatches[t];
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(failures[t], 0) << "thread " << t;
    EXPECT_EQ(mismatches[t], 0) << "thread " << t;
  }
  const RegisteredStagingStats stats = client->registered_staging();
  EXPECT_EQ(stats.staged_requests + stats.direct_requests, uint64_t{2 * kThreads * kRounds});
  EXPECT_GT(stats.staged_requests, 0u);
}

INSTANTIATE_TEST_SUITE_P(kvaultd, RegisteredStagingTest, ::testing::Values("posix,cma", "tcp"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           return std::string(info.param) == "tcp" ? std::string("Tcp")
                                                                   : std::string("PosixCma");
                         });

}  // namespace
}  // namespace kvault::testing
