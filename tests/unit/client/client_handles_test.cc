// Store/Load handles: region checks, batch splitting and the handle state machine (Wait with a
// deadline, Poll, Cancel, settlement) against a fake daemon, and the ReleaseMemory a region sends
// when it goes. The client has a real UCX agent (for registered memory); the fake daemon moves no
// bytes.
#include <gtest/gtest.h>

#include <algorithm>
#include <thread>

#include "fake_server.h"
#include "kvault/client.h"
#include "kvault/kv_store.h"

namespace kvault {
namespace {

using std::chrono::milliseconds;
using testing::FakeServer;

std::vector<BlockKey> Keys(size_t n) { return testing::NumberedKeys(n); }

milliseconds Since(Deadline t0) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - t0);
}

// Connects the fixture, or returns from the test when that failed or was skipped.
#define CONNECT(...)                               \
  do {                                             \
    ASSERT_NO_FATAL_FAILURE(Connect(__VA_ARGS__)); \
    if (IsSkipped()) return;                       \
  } while (false)

class ClientHandles : public ::testing::Test {
 protected:
  // Connects to a fresh fake daemon; skips the test when UCX cannot start here.
  void Connect(FakeServer::Mode mode, transport::ProtocolLimits limits = {}) {
    server_ = std::make_unique<FakeServer>(mode, "", limits);
    ClientConfig c;
    c.server = server_->address();
    c.connect_timeout = milliseconds(2000);
    c.request_timeout = milliseconds(300);
    c.reconnect_backoff = milliseconds(0);
    Result<std::unique_ptr<Client>> client = Client::Connect(c);
    // Only a UCX that cannot start here skips; a worker proof that failed is a failure.
    if (!client.ok() && client.status().message().find("UCX") != std::string::npos &&
        client.status().message().find("worker proof") == std::string::npos) {
      GTEST_SKIP() << "UCX unavailable: " << client.status().ToString();
    }
    ASSERT_TRUE(client.ok()) << client.status().ToString();
    client_ = std::move(*client);
    EXPECT_FALSE(server_->last_hello().worker_address.empty());
    buffer_.assign(64 * 1024, 0);
    Result<MemoryRegion> region = client_->RegisterMemory(buffer_.data(), buffer_.size());
    ASSERT_TRUE(region.ok()) << region.status().ToString();
    region_ = std::move(*region);
  }

  std::span<const uint8_t> Src(size_t offset, size_t n) const {
    return {buffer_.data() + offset, n};
  }
  std::span<uint8_t> Dst(size_t offset, size_t n) { return {buffer_.data() + offset, n}; }

  std::unique_ptr<FakeServer> server_;
  std::vector<uint8_t> buffer_;
  std::unique_ptr<Client> client_;
  MemoryRegion region_;  // after client_: destroyed first
};

TEST(ClientHandlesEmpty, EmptyHandleIsDoneAndInvalid) {
  StoreHandle h;
  EXPECT_TRUE(h.Poll());
  EXPECT_TRUE(h.Settled());
  EXPECT_TRUE(h.refused());
  EXPECT_EQ(h.Wait().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(h.size(), 0u);
}

TEST_F(ClientHandles, RegionReportsItsBytes) {
  CONNECT(FakeServer::Mode::kServe);
  EXPECT_EQ(region_.data(), buffer_.data());
  EXPECT_EQ(region_.size(), buffer_.size());
  EXPECT_FALSE(region_.remote_key().empty());
  EXPECT_TRUE(region_.Contains(buffer_.data() + 10, 100));
  EXPECT_FALSE(region_.Contains(buffer_.data() + buffer_.size() - 1, 2));
  EXPECT_FALSE(client_->RegisterMemory(nullptr, 10).ok());
  EXPECT_FALSE(client_->RegisterMemory(buffer_.data(), 0).ok());
}

TEST_F(ClientHandles, SourcesAndDestinationsOutsideRegisteredMemoryAreRefused) {
  CONNECT(FakeServer::Mode::kServe);
  const std::vector<BlockKey> keys = Keys(2);
  std::vector<uint8_t> elsewhere(256);
  std::vector<std::span<const uint8_t>> sources = {Src(0, 128), {elsewhere.data(), 128}};
  StoreHandle store = client_->Store(keys, sources);
  EXPECT_TRUE(store.Poll());
  EXPECT_TRUE(store.Settled());
  EXPECT_TRUE(store.refused());
  const Status s = store.Wait();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("source 1"), std::string::npos) << s.ToString();
  EXPECT_EQ(store.key_status(0).code(), StatusCode::kInvalidArgument);

  // Straddling the end of the region.
  std::vector<LoadDestination> dests = {{Dst(0, 64)}, {Dst(buffer_.size() - 32, 64)}};
  dests[1].buffer = {buffer_.data() + buffer_.size() - 32, 64};
  LoadHandle load = client_->Load(Lease{}, keys, dests);
  EXPECT_TRUE(load.refused());
  EXPECT_EQ(load.Wait().code(), StatusCode::kInvalidArgument);

  // Count mismatch, empty source, length over capacity.
  EXPECT_EQ(client_->Store(Keys(3), sources).Wait().code(), StatusCode::kInvalidArgument);
  sources[1] = {};
  EXPECT_EQ(client_->Store(keys, sources).Wait().code(), StatusCode::kInvalidArgument);
  std::vector<LoadDestination> too_long = {{Dst(0, 16), 0, 32}};
  EXPECT_EQ(client_->Load(Lease{}, Keys(1), too_long).Wait().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(server_->requests(transport::MessageType::kStore), 0);
  EXPECT_EQ(server_->requests(transport::MessageType::kLoad), 0);
}

TEST_F(ClientHandles, BatchesOverTheDaemonsLimitAreSplitUnderOneHandle) {
  transport::ProtocolLimits limits;
  limits.max_keys_per_batch = 2;
  CONNECT(FakeServer::Mode::kServe, limits);
  const std::vector<BlockKey> keys = Keys(5);
  std::vector<std::span<const uint8_t>> sources;
  std::vector<LoadDestination> dests;
  for (size_t i = 0; i < 5; ++i) {
    sources.push_back(Src(i * 1024, 1024));
    dests.push_back({Dst(i * 1024, 1024)});
  }
  StoreHandle store = client_->Store(keys, sources);
  ASSERT_TRUE(store.Wait().ok()) << store.Wait().ToString();
  EXPECT_FALSE(store.refused());
  EXPECT_EQ(store.ok_count(), 5u);
  EXPECT_EQ(store.leading_ok(), 5u);
  EXPECT_TRUE(store.WaitSettled(Clock::now() + milliseconds(2000)));
  EXPECT_EQ(server_->requests(transport::MessageType::kStore), 3);

  LoadHandle load = client_->Load(Lease{}, keys, dests);
  ASSERT_TRUE(load.Wait().ok());
  EXPECT_EQ(load.ok_count(), 0u);
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(load.key_status(i).code(), StatusCode::kNotFound);
    EXPECT_EQ(load.object_size(i), 0u);
  }
  EXPECT_EQ(server_->requests(transport::MessageType::kLoad), 3);
}

// The daemon's own refusal, however fast, is the transfer's outcome, not a refusal of the call:
// only input the client rejected before sending makes a refused() handle.
TEST_F(ClientHandles, ADaemonsImmediateRefusalIsNotARefusedCall) {
  CONNECT(FakeServer::Mode::kRefuseRequests);
  const std::vector<BlockKey> keys = Keys(2);
  const std::vector<std::span<const uint8_t>> sources = {Src(0, 128), Src(128, 128)};
  StoreHandle store = client_->Store(keys, sources);
  const Status s = store.Wait(Clock::now() + milliseconds(5000));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find("refused by the fake daemon"), std::string::npos) << s.ToString();
  EXPECT_FALSE(store.refused());
  EXPECT_EQ(server_->requests(transport::MessageType::kStore), 1);
  std::vector<LoadDestination> dests = {{Dst(0, 64)}, {Dst(64, 64)}};
  LoadHandle load = client_->Load(Lease{}, keys, dests);
  EXPECT_EQ(load.Wait(Clock::now() + milliseconds(5000)).code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(load.refused());
  // Positive control: the same client's own refusal (count mismatch) is refused().
  StoreHandle mismatched = client_->Store(Keys(3), sources);
  EXPECT_TRUE(mismatched.refused());
  EXPECT_EQ(mismatched.Wait().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(server_->requests(transport::MessageType::kStore), 1);
}

TEST_F(ClientHandles, WaitWithAnEarlierDeadlineLeavesTheRequestInFlight) {
  CONNECT(FakeServer::Mode::kIgnoreRequests);
  const std::vector<BlockKey> keys = Keys(2);
  std::vector<std::span<const uint8_t>> sources = {Src(0, 512), Src(512, 512)};
  // The request's deadline is far past the early Wait's (3 s against 40 ms), so that a thread
  // the machine descheduled for a while still sees the request in flight.
  constexpr milliseconds kRequestDeadline(3000);
  const Deadline t0 = Clock::now();
  StoreHandle h = client_->Store(keys, sources, {.deadline = t0 + kRequestDeadline});
  EXPECT_FALSE(h.Poll());
  EXPECT_EQ(h.key_status(0).message(), "in flight");
  const Status early = h.Wait(Clock::now() + milliseconds(40));
  EXPECT_EQ(early.code(), StatusCode::kUnavailable);
  EXPECT_NE(early.message().find("still in flight"), std::string::npos) << early.ToString();
  EXPECT_FALSE(h.Poll());

  // The request's own deadline completes it: every key a clear Unavailable, no hang.
  const Status final_status = h.Wait();
  EXPECT_EQ(final_status.code(), StatusCode::kUnavailable);
  EXPECT_NE(final_status.message().find("deadline exceeded"), std::string::npos)
      << final_status.ToString();
  EXPECT_GE(Since(t0), kRequestDeadline - milliseconds(5));
  EXPECT_LT(Since(t0), kRequestDeadline + milliseconds(10'000));  // bounded, not a hang
  EXPECT_TRUE(h.Poll());
  EXPECT_EQ(h.key_status(1).code(), StatusCode::kUnavailable);
  EXPECT_FALSE(h.cancelled());
  // No reply came, so the daemon could still read the sources.
  EXPECT_FALSE(h.Settled());
}

TEST_F(ClientHandles, CancelCompletesAtOnceAndSettlesWhenTheConnectionCloses) {
  CONNECT(FakeServer::Mode::kIgnoreRequests);
  const std::vector<BlockKey> keys = Keys(3);
  std::vector<LoadDestination> dests = {{Dst(0, 100)}, {Dst(100, 100)}, {Dst(200, 100)}};
  LoadHandle h =
      client_->Load(Lease{}, keys, dests, {.deadline = Clock::now() + milliseconds(10'000)});
  EXPECT_FALSE(h.Poll());
  const Deadline t0 = Clock::now();
  h.Cancel();
  h.Cancel();  // idempotent
  EXPECT_TRUE(h.Poll());
  EXPECT_TRUE(h.cancelled());
  const Status s = h.Wait();
  EXPECT_LT(Since(t0), milliseconds(1000));  // at once, not at the 5 s deadline
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_EQ(s.message(), "cancelled");
  EXPECT_EQ(h.key_status(2).message(), "cancelled");
  // The daemon was not told: the destinations are not safe to reuse yet.
  EXPECT_FALSE(h.Settled());
  EXPECT_FALSE(h.WaitSettled(Clock::now() + milliseconds(20)));
  // Closing the client closes the connection, which settles the request.
  client_.reset();
  EXPECT_TRUE(h.Settled());
}

// A load on caller-registered memory goes through staging and is copied out when its reply
// arrives. Cancelled before the reply, it must not copy once it reports settled: the caller owns
// the destination again (and Python may have freed it).
TEST_F(ClientHandles, CancelledStagedLoadNeverWritesTheDestinationAfterSettling) {
  CONNECT(FakeServer::Mode::kServeHits);
  constexpr size_t kBlock = 4096;
  const std::vector<BlockKey> keys = Keys(4);
  std::vector<LoadDestination> dests;
  for (size_t k = 0; k < keys.size(); ++k) dests.push_back({Dst(k * kBlock, kBlock)});
  auto untouched = [&] {
    return std::all_of(buffer_.begin(), buffer_.begin() + keys.size() * kBlock,
                       [](uint8_t b) { return b == 0xEE; });
  };
  // A load that is not cancelled copies its staging into the destinations.
  std::fill(buffer_.begin(), buffer_.end(), 0xEE);
  LoadHandle served = client_->Load(Lease{}, keys, dests);
  ASSERT_TRUE(served.Wait(Clock::now() + milliseconds(2000)).ok());
  ASSERT_TRUE(served.Settled());
  ASSERT_FALSE(untouched()) << "the staged copy-out did not run: the test proves nothing";
  ASSERT_GT(client_->registered_staging().staged_requests, 0u);

  for (int i = 0; i < 5; ++i) {
    std::fill(buffer_.begin(), buffer_.end(), 0xEE);
    LoadHandle h = client_->Load(Lease{}, keys, dests);
    h.Cancel();  // the fake answers kLoadDelay later
    ASSERT_TRUE(h.WaitSettled(Clock::now() + milliseconds(2000)));
    // The reply was handled on the connection's thread before the Pong: a copy-out of the
    // cancelled load would have landed by now.
    ASSERT_TRUE(client_->Ping().ok());
    EXPECT_TRUE(untouched()) << "round " << i << ": destination written after Settled()";
  }
  EXPECT_EQ(client_->registered_staging().retired_bytes, 0u) << "answered loads return chunks";
}

// The daemon may still write a staged load's chunk when the connection is lost before its reply:
// the chunk never serves another request.
TEST_F(ClientHandles, AStagedLoadCutOffByALostConnectionRetiresItsChunk) {
  CONNECT(FakeServer::Mode::kCloseOnRequest);
  std::vector<LoadDestination> dests = {{Dst(0, 4096)}};
  LoadHandle h =
      client_->Load(Lease{}, Keys(1), dests, {.deadline = Clock::now() + milliseconds(5000)});
  EXPECT_EQ(h.Wait().code(), StatusCode::kUnavailable);
  ASSERT_TRUE(h.WaitSettled(Clock::now() + milliseconds(2000)));
  const RegisteredStagingStats stats = client_->registered_staging();
  EXPECT_EQ(stats.staged_requests, 1u);
  EXPECT_EQ(stats.retired_bytes, 4096u);
}

// A daemon that cannot be reached is the transfer's outcome (Unavailable), not a refusal of the
// call's input: refused() stays false, so the C ABI hands the caller a transfer to read.
TEST_F(ClientHandles, ADaemonThatCannotBeReachedIsNotARefusedCall) {
  CONNECT(FakeServer::Mode::kServe);
  server_.reset();                     // the daemon is gone, its port closed
  EXPECT_FALSE(client_->Ping().ok());  // the client has seen the connection go
  std::vector<std::span<const uint8_t>> sources = {Src(0, 256)};
  StoreHandle store =
      client_->Store(Keys(1), sources, {.deadline = Clock::now() + milliseconds(2000)});
  const Status s = store.Wait(Clock::now() + milliseconds(10000));
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.ToString();
  EXPECT_FALSE(store.refused());
  std::vector<LoadDestination> dests = {{Dst(0, 64)}};
  LoadHandle load =
      client_->Load(Lease{}, Keys(1), dests, {.deadline = Clock::now() + milliseconds(2000)});
  EXPECT_EQ(load.Wait(Clock::now() + milliseconds(10000)).code(), StatusCode::kUnavailable);
  EXPECT_FALSE(load.refused());
  // Positive control: bad input on the same client is refused().
  EXPECT_TRUE(client_->Store(Keys(2), sources).refused());
}

TEST_F(ClientHandles, ConnectionLossFailsPendingHandlesWithAClearStatus) {
  CONNECT(FakeServer::Mode::kCloseOnRequest);
  std::vector<std::span<const uint8_t>> sources = {Src(0, 256)};
  StoreHandle h = client_->Store(Keys(1), sources, {.deadline = Clock::now() + milliseconds(5000)});
  const Deadline t0 = Clock::now();
  const Status s = h.Wait();
  EXPECT_LT(Since(t0), milliseconds(1000));
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_NE(s.message().find("closed the connection"), std::string::npos) << s.ToString();
  // The handle completes as the connection fails; it settles once the reader has let go.
  EXPECT_TRUE(h.WaitSettled(Clock::now() + milliseconds(2000)));
}

// Index of the first `type` in `seen` at or after `from`, or seen.size().
size_t IndexOf(const std::vector<transport::MessageType>& seen, transport::MessageType type,
               size_t from = 0) {
  for (size_t i = from; i < seen.size(); ++i) {
    if (seen[i] == type) return i;
  }
  return seen.size();
}

// Waits (bounded) until the fake daemon received `n` ReleaseMemory requests.
bool WaitForReleases(const FakeServer& server, size_t n) {
  const Deadline until = Clock::now() + milliseconds(5000);
  while (server.released_keys().size() < n) {
    if (Clock::now() >= until) return false;
    std::this_thread::sleep_for(milliseconds(1));
  }
  return true;
}

TEST_F(ClientHandles, ReleasedRegionIsForgottenByTheDaemonBeforeLaterRequests) {
  CONNECT(FakeServer::Mode::kServe);
  Result<MemoryRegion> allocated = client_->AllocateMemory(64 * 1024);
  ASSERT_TRUE(allocated.ok()) << allocated.status().ToString();
  const std::vector<uint8_t> key = allocated->remote_key();
  const std::vector<std::span<const uint8_t>> sources = {allocated->bytes().first(256)};
  StoreHandle h = client_->Store(Keys(1), sources);
  {
    MemoryRegion dropped = std::move(*allocated);  // the unsettled store still holds it
  }
  ASSERT_TRUE(h.Wait(Clock::now() + milliseconds(2000)).ok());
  // Settled before done: the release is queued by the time Wait returns.
  ASSERT_TRUE(client_->Ping().ok());
  EXPECT_EQ(server_->released_keys(), std::vector<std::vector<uint8_t>>{key});
  const std::vector<transport::MessageType> seen = server_->seen();
  const size_t store = IndexOf(seen, transport::MessageType::kStore);
  const size_t release = IndexOf(seen, transport::MessageType::kReleaseMemory);
  const size_t ping = IndexOf(seen, transport::MessageType::kPing, release);
  EXPECT_LT(store, release);
  EXPECT_LT(release, ping);  // a later request never overtakes the release
  EXPECT_TRUE(client_->connected());
}

TEST_F(ClientHandles, RegionReleasedByItsLastRequestNeverBlocksTheReader) {
  CONNECT(FakeServer::Mode::kServe);
  for (int i = 0; i < 20; ++i) {
    Result<MemoryRegion> allocated = client_->AllocateMemory(16 * 1024);
    ASSERT_TRUE(allocated.ok()) << allocated.status().ToString();
    const std::vector<std::span<const uint8_t>> sources = {allocated->bytes().first(128)};
    // Region and handle go at once: usually the reply's settlement, on the connection's reader
    // thread, drops the last reference and sends the release from there.
    (void)client_->Store(Keys(1), sources);
  }
  ASSERT_TRUE(WaitForReleases(*server_, 20));
  EXPECT_TRUE(client_->Ping().ok());
  EXPECT_TRUE(client_->connected());
}

TEST_F(ClientHandles, RegionReleasedWithoutAConnectionSendsNothing) {
  CONNECT(FakeServer::Mode::kCloseOnRequest);
  Result<MemoryRegion> allocated = client_->AllocateMemory(16 * 1024);
  ASSERT_TRUE(allocated.ok()) << allocated.status().ToString();
  EXPECT_FALSE(client_->Ping().ok());  // the fake daemon closes the connection on it
  const Deadline until = Clock::now() + milliseconds(2000);
  while (client_->connected() && Clock::now() < until) std::this_thread::sleep_for(milliseconds(1));
  ASSERT_FALSE(client_->connected());
  { MemoryRegion dropped = std::move(*allocated); }
  // A region that outlives its client is released without one.
  Result<MemoryRegion> orphan = client_->AllocateMemory(16 * 1024);
  ASSERT_TRUE(orphan.ok()) << orphan.status().ToString();
  client_.reset();
  { MemoryRegion dropped = std::move(*orphan); }
  // Neither release reconnected, and nothing reached the daemon after the loss.
  EXPECT_EQ(server_->connections(), 1);
  const std::vector<transport::MessageType> seen = server_->seen();
  EXPECT_EQ(IndexOf(seen, transport::MessageType::kReleaseMemory), seen.size());
}

TEST_F(ClientHandles, KvStoreMovesBlocksInWavesThroughBoundedStaging) {
  CONNECT(FakeServer::Mode::kServe);
  KvStoreOptions o;
  o.format.num_layers = 2;
  o.format.kv_heads = 1;
  o.format.head_dim = 16;
  o.format.block_tokens = 4;
  o.format.codec = "fp8";
  Result<KvBlockCodec> codec = KvBlockCodec::Create(o.format);
  ASSERT_TRUE(codec.ok());
  o.staging_bytes = 2 * ((codec->ObjectBytes(1) + 63) / 64 * 64);  // two objects per wave
  EXPECT_FALSE(KvStore::Create(*client_, {o.format, 16}).ok());    // cannot hold one object
  Result<std::unique_ptr<KvStore>> kv = KvStore::Create(*client_, o);
  ASSERT_TRUE(kv.ok()) << kv.status().ToString();

  constexpr uint32_t kTokens = 5 * 4;
  std::vector<uint16_t> tensor(size_t{2} * 2 * kTokens * 16, 0x3C00);  // 1.0 in fp16
  uint16_t* base = tensor.data();
  const int32_t page = 0;
  kernels::PagedKvView view;
  kernels::PagedKvViewStorage storage;
  ASSERT_TRUE(kernels::MakePagedKvView(kernels::KvLayout::kContiguous, DType::kF16, 2, 1, 16,
                                       kTokens, 1, {&base, 1}, {&page, 1}, view, storage)
                  .ok());
  const std::vector<BlockKey> keys = Keys(5);
  KvTransferResult stored = (*kv)->StoreBlocks(view, keys);
  ASSERT_TRUE(stored.status.ok()) << stored.status.ToString();
  EXPECT_EQ(stored.leading_ok, 5u);
  EXPECT_EQ(server_->requests(transport::MessageType::kStore), 3);  // waves of 2, 2, 1

  // Blocks before first_block (the prefix the daemon holds) are neither encoded nor sent.
  KvTransferResult tail = (*kv)->StoreBlocks(view, keys, std::nullopt, 3);
  ASSERT_TRUE(tail.status.ok()) << tail.status.ToString();
  EXPECT_EQ(tail.leading_ok, 5u);
  EXPECT_EQ(server_->requests(transport::MessageType::kStore), 4);  // one wave: blocks 3 and 4
  KvTransferResult past = (*kv)->StoreBlocks(view, keys, std::nullopt, 6);
  EXPECT_EQ(past.status.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(past.leading_ok, 0u);

  // The fake daemon has nothing: every block is a miss, the view is left alone.
  KvTransferResult loaded = (*kv)->LoadBlocks(Lease{}, keys, view, std::pair{1u, 1u});
  ASSERT_TRUE(loaded.status.ok()) << loaded.status.ToString();
  EXPECT_EQ(loaded.leading_ok, 0u);
  EXPECT_EQ(loaded.key_status[4].code(), StatusCode::kNotFound);
  EXPECT_EQ(tensor, std::vector<uint16_t>(tensor.size(), 0x3C00));
}

}  // namespace
}  // namespace kvault
