// TransferEngine (server side) against UcxAgent (client side) in one process: two UCX contexts,
// two progress threads, real transports. Each test is parameterised by the transports both sides
// are pinned to.

#include "kvault/transport/ucx/transfer_engine.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "kvault/transport/ucx/ucx_agent.h"
#include "kvault/transport/ucx/ucx_memory.h"
#include "kvault/transport/ucx/ucx_worker.h"
#include "ucx_test_util.h"

namespace kvault::transport {
namespace {

using testing::AlignedBuffer;
using testing::FillPattern;
using testing::FirstMismatch;
using testing::MakeStuckClient;
using testing::StuckClient;
using testing::WaitBatch;
using Clock = std::chrono::steady_clock;

constexpr size_t kKiB = 1024;
constexpr size_t kMiB = 1024 * 1024;

std::chrono::steady_clock::time_point In(std::chrono::milliseconds ms) { return Clock::now() + ms; }

class TransferEngineTest : public testing::EngineAndAgentTest {
 protected:
  // One transfer of `n` bytes between server `local` and the client's registered `region`.
  std::vector<Status> RunOne(TransferOp op, void* local, const RegisteredRegion& region,
                             size_t offset, size_t n) {
    TransferBatch batch;
    batch.remote_keys.push_back(region.remote_key);
    batch.transfers.push_back(Transfer{op, peer_, local, region.remote_address() + offset, n, 0});
    batch.deadline = In(std::chrono::milliseconds(4000));
    return WaitBatch(engine_->Submit(std::move(batch)));
  }
};

TEST_P(TransferEngineTest, GetAndPutRoundTripsByteForByte) {
  for (size_t size : {4 * kKiB, 1 * kMiB, 4 * kMiB}) {
    SCOPED_TRACE("size " + std::to_string(size));
    AlignedBuffer client(size);
    AlignedBuffer server(size);
    Result<RegisteredRegion> region = agent_->RegisterMemory(client.data, size);
    ASSERT_TRUE(region.ok()) << region.status().ToString();
    Result<RegionId> registered = engine_->RegisterMemory(server.data, size);
    ASSERT_TRUE(registered.ok()) << registered.status().ToString();

    FillPattern(client.data, size, 1);  // store: the server GETs the client's block
    std::vector<Status> got = RunOne(TransferOp::kGet, server.data, *region, 0, size);
    ASSERT_EQ(got.size(), 1u);
    ASSERT_TRUE(got[0].ok()) << got[0].ToString();
    EXPECT_EQ(FirstMismatch(server.data, size, 1), -1);

    FillPattern(server.data, size, 2);  // load: the server PUTs into the client's memory
    std::vector<Status> put = RunOne(TransferOp::kPut, server.data, *region, 0, size);
    ASSERT_EQ(put.size(), 1u);
    ASSERT_TRUE(put[0].ok()) << put[0].ToString();
    EXPECT_EQ(FirstMismatch(client.data, size, 2), -1);  // visible once the batch completed

    EXPECT_TRUE(engine_->UnregisterMemory(*registered).ok());
  }
}

TEST_P(TransferEngineTest, BatchOfManyTransfersInSubRangesOfOneArena) {
  // The server's arena is registered once; every block lands in a sub-range of it. The client
  // registers a sub-range of its own buffer and addresses blocks inside it.
  constexpr size_t kBlocks = 192;
  constexpr size_t kBlock = 16 * kKiB;
  AlignedBuffer arena(kBlocks * kBlock * 2);
  AlignedBuffer client_buffer(kBlocks * kBlock + 64 * kKiB);
  uint8_t* client = client_buffer.data + 32 * kKiB;
  Result<RegisteredRegion> region = agent_->RegisterMemory(client, kBlocks * kBlock);
  ASSERT_TRUE(region.ok()) << region.status().ToString();
  ASSERT_TRUE(engine_->RegisterMemory(arena.data, arena.size).ok());

  // First half GET (client -> arena, every other slot), second half PUT (arena -> client).
  TransferBatch batch;
  batch.remote_keys.push_back(region->remote_key);
  for (size_t i = 0; i < kBlocks; ++i) {
    const bool get = i < kBlocks / 2;
    uint8_t* slot = arena.data + (2 * i + 1) * kBlock;
    if (get) {
      FillPattern(client + i * kBlock, kBlock, 100 + i);
    } else {
      FillPattern(slot, kBlock, 100 + i);
    }
    batch.transfers.push_back(Transfer{get ? TransferOp::kGet : TransferOp::kPut, peer_, slot,
                                       region->remote_address() + i * kBlock, kBlock, 0});
  }
  batch.deadline = In(std::chrono::milliseconds(4000));
  std::vector<Status> statuses = WaitBatch(engine_->Submit(std::move(batch)));
  ASSERT_EQ(statuses.size(), kBlocks);
  for (size_t i = 0; i < kBlocks; ++i) {
    ASSERT_TRUE(statuses[i].ok()) << i << ": " << statuses[i].ToString();
    const uint8_t* landed =
        i < kBlocks / 2 ? arena.data + (2 * i + 1) * kBlock : client + i * kBlock;
    ASSERT_EQ(FirstMismatch(landed, kBlock, 100 + i), -1) << "block " << i;
  }
  // The bytes around the client's registered sub-range were never written.
  for (size_t i = 0; i < 32 * kKiB; ++i) ASSERT_EQ(client_buffer.data[i], 0) << i;
}

TEST_P(TransferEngineTest, UnregisteredLocalMemoryIsRegisteredOnTheFly) {
  AlignedBuffer client(256 * kKiB);
  std::vector<uint8_t> server(256 * kKiB);  // plain heap memory, never registered
  Result<RegisteredRegion> region = agent_->RegisterMemory(client.data, client.size);
  ASSERT_TRUE(region.ok());
  FillPattern(client.data, client.size, 7);
  std::vector<Status> got = RunOne(TransferOp::kGet, server.data(), *region, 0, server.size());
  ASSERT_EQ(got.size(), 1u);
  ASSERT_TRUE(got[0].ok()) << got[0].ToString();
  EXPECT_EQ(FirstMismatch(server.data(), server.size(), 7), -1);
}

TEST_P(TransferEngineTest, BadInputFailsOnlyItsOwnTransfers) {
  AlignedBuffer client(64 * kKiB);
  AlignedBuffer server(64 * kKiB);
  Result<RegisteredRegion> region = agent_->RegisterMemory(client.data, client.size);
  ASSERT_TRUE(region.ok());
  FillPattern(client.data, client.size, 9);

  std::vector<uint8_t> garbage_key(region->remote_key.size(), 0x5c);
  std::vector<uint8_t> flipped_key = region->remote_key;
  flipped_key[flipped_key.size() - 1] ^= 0x01;
  const uint64_t base = region->remote_address();
  TransferBatch batch;
  batch.remote_keys = {region->remote_key, garbage_key, flipped_key};
  batch.transfers = {
      Transfer{TransferOp::kGet, peer_, server.data, base, 4 * kKiB, 0},             // good
      Transfer{TransferOp::kGet, peer_, server.data + 4 * kKiB, base, 4 * kKiB, 1},  // garbage key
      Transfer{TransferOp::kGet, peer_, server.data + 8 * kKiB, base, 4 * kKiB, 2},  // flipped key
      Transfer{TransferOp::kGet, peer_, server.data, base, 4 * kKiB, 7},             // no such key
      Transfer{TransferOp::kGet, peer_ + 1000, server.data, base, 4 * kKiB, 0},      // no such peer
      Transfer{TransferOp::kGet, peer_, nullptr, base, 4 * kKiB, 0},                 // null local
      Transfer{TransferOp::kGet, peer_, server.data, base, 0, 0},                    // empty
      Transfer{TransferOp::kPut, peer_, server.data, base + 60 * kKiB, 8 * kKiB, 0},  // past region
      Transfer{TransferOp::kGet, peer_, server.data + 12 * kKiB, base + 4 * kKiB, 4 * kKiB, 0},
  };
  batch.deadline = In(std::chrono::milliseconds(4000));
  // Arrivals name exactly the GETs that landed, before the batch completes.
  std::mutex arrivals_mu;
  std::vector<size_t> arrivals;
  batch.on_arrival = [&](size_t i) {
    std::lock_guard<std::mutex> lock(arrivals_mu);
    arrivals.push_back(i);
  };
  std::vector<Status> s = WaitBatch(engine_->Submit(std::move(batch)));
  {
    std::lock_guard<std::mutex> lock(arrivals_mu);
    std::sort(arrivals.begin(), arrivals.end());
    EXPECT_EQ(arrivals, (std::vector<size_t>{0, 8}));  // not the refused GETs, not the PUT
  }
  ASSERT_EQ(s.size(), 9u);
  EXPECT_TRUE(s[0].ok()) << s[0].ToString();
  EXPECT_EQ(s[1].code(), StatusCode::kInvalidArgument) << s[1].ToString();
  EXPECT_NE(s[1].message().find("remote key"), std::string::npos) << s[1].ToString();
  EXPECT_EQ(s[2].code(), StatusCode::kCorruption) << s[2].ToString();
  EXPECT_EQ(s[3].code(), StatusCode::kInvalidArgument) << s[3].ToString();
  EXPECT_EQ(s[4].code(), StatusCode::kNotFound) << s[4].ToString();
  EXPECT_EQ(s[5].code(), StatusCode::kInvalidArgument) << s[5].ToString();
  EXPECT_EQ(s[6].code(), StatusCode::kInvalidArgument) << s[6].ToString();
  EXPECT_EQ(s[7].code(), StatusCode::kOutOfRange) << s[7].ToString();
  EXPECT_TRUE(s[8].ok()) << s[8].ToString();
  EXPECT_EQ(FirstMismatch(server.data, 4 * kKiB, 9), -1);
  // The client's memory was not written by the refused PUT.
  EXPECT_EQ(FirstMismatch(client.data, client.size, 9), -1);
}

TEST_P(TransferEngineTest, PeerLifecycleAndRegistrationErrors) {
  std::vector<uint8_t> garbage(48, 0x11);
  EXPECT_EQ(engine_->Connect(garbage).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(engine_->Stats().open_endpoints, 1u);

  AlignedBuffer arena(64 * kKiB);
  Result<RegionId> region = engine_->RegisterMemory(arena.data, arena.size);
  ASSERT_TRUE(region.ok());
  EXPECT_EQ(engine_->RegisterMemory(arena.data + 4096, 4096).status().code(),
            StatusCode::kInvalidArgument);  // overlaps
  EXPECT_EQ(engine_->RegisterMemory(nullptr, 4096).status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(engine_->UnregisterMemory(*region).ok());
  EXPECT_EQ(engine_->UnregisterMemory(*region).code(), StatusCode::kNotFound);

  EXPECT_TRUE(engine_->Disconnect(peer_).ok());
  EXPECT_EQ(engine_->Disconnect(peer_).code(), StatusCode::kNotFound);
  AlignedBuffer client(4 * kKiB);
  Result<RegisteredRegion> client_region = agent_->RegisterMemory(client.data, client.size);
  ASSERT_TRUE(client_region.ok());
  std::vector<Status> s = RunOne(TransferOp::kGet, arena.data, *client_region, 0, 4 * kKiB);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].code(), StatusCode::kNotFound) << s[0].ToString();

  // Reconnecting gives a new id that works.
  Result<PeerId> again = engine_->Connect(agent_->worker_address());
  ASSERT_TRUE(again.ok());
  EXPECT_NE(*again, peer_);
  peer_ = *again;
  FillPattern(client.data, client.size, 3);
  s = RunOne(TransferOp::kGet, arena.data, *client_region, 0, 4 * kKiB);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_TRUE(s[0].ok()) << s[0].ToString();
  EXPECT_EQ(FirstMismatch(arena.data, 4 * kKiB, 3), -1);

  // A batch without a deadline is refused; one already past is not started.
  TransferBatch no_deadline;
  no_deadline.remote_keys.push_back(client_region->remote_key);
  no_deadline.transfers.push_back(
      Transfer{TransferOp::kGet, peer_, arena.data, client_region->remote_address(), 4 * kKiB, 0});
  TransferBatch late = no_deadline;
  late.deadline = Clock::now() - std::chrono::milliseconds(1);
  s = WaitBatch(engine_->Submit(std::move(no_deadline)));
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].code(), StatusCode::kInvalidArgument) << s[0].ToString();
  s = WaitBatch(engine_->Submit(std::move(late)));
  ASSERT_EQ(s.size(), 1u);
  EXPECT_TRUE(IsDeadlineExceeded(s[0])) << s[0].ToString();
  EXPECT_EQ(engine_->Stats().open_endpoints, 1u);  // the peer was not reset for it

  // An empty batch completes at once.
  TransferBatch empty;
  empty.deadline = In(std::chrono::milliseconds(1000));
  EXPECT_TRUE(WaitBatch(engine_->Submit(std::move(empty))).empty());
}

// Waits (bounded) until the progress thread reports `n` unpacked keys held.
bool WaitForCachedKeys(const TransferEngine& engine, size_t n) {
  const auto until = Clock::now() + std::chrono::seconds(5);
  while (engine.Stats().cached_remote_keys != n) {
    if (Clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

TEST_P(TransferEngineTest, ForgottenKeysAreUnpackedAfreshForTheSameBytes) {
  // UCX-allocated regions freed and allocated again: with shared memory the remote key of the
  // new one often repeats the old one's bytes while naming other memory. Once the key is
  // forgotten, the same bytes reach the new memory.
  constexpr size_t kSize = 64 * kKiB;
  AlignedBuffer server(kSize);
  std::vector<std::vector<uint8_t>> seen;
  int repeats = 0;
  for (uint64_t round = 0; round < 8; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    Result<RegisteredRegion> region = agent_->AllocateMemory(kSize);
    ASSERT_TRUE(region.ok()) << region.status().ToString();
    repeats += std::find(seen.begin(), seen.end(), region->remote_key) != seen.end();
    seen.push_back(region->remote_key);
    FillPattern(region->memory.address(), kSize, 100 + round);
    std::vector<Status> got = RunOne(TransferOp::kGet, server.data, *region, 0, kSize);
    ASSERT_EQ(got.size(), 1u);
    ASSERT_TRUE(got[0].ok()) << got[0].ToString();
    EXPECT_EQ(FirstMismatch(server.data, kSize, 100 + round), -1);
    ASSERT_TRUE(WaitForCachedKeys(*engine_, 1));
    engine_->ForgetRemoteKey(peer_, region->remote_key);
    ASSERT_TRUE(WaitForCachedKeys(*engine_, 0));
  }
  std::printf("[ forget ] %s: %d of 8 regions repeated an earlier remote key\n", GetParam(),
              repeats);
  // Unknown keys and peers are ignored.
  engine_->ForgetRemoteKey(peer_, std::vector<uint8_t>{1, 2, 3});
  engine_->ForgetRemoteKey(peer_ + 100, seen.front());
  AlignedBuffer client(4 * kKiB);
  Result<RegisteredRegion> registered = agent_->RegisterMemory(client.data, client.size);
  ASSERT_TRUE(registered.ok());
  std::vector<Status> got = RunOne(TransferOp::kGet, server.data, *registered, 0, client.size);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_TRUE(got[0].ok()) << got[0].ToString();
}

TEST_P(TransferEngineTest, KeyForgottenUnderARunningBatchLivesUntilItFinishes) {
  constexpr size_t kSize = 4 * kMiB;
  AlignedBuffer client(kSize);
  AlignedBuffer first(kSize);
  AlignedBuffer second(kSize);
  FillPattern(client.data, kSize, 21);
  Result<RegisteredRegion> region = agent_->RegisterMemory(client.data, kSize);
  ASSERT_TRUE(region.ok()) << region.status().ToString();
  auto batch = [&](uint8_t* local) {
    TransferBatch b;
    b.remote_keys.push_back(region->remote_key);
    b.transfers.push_back(
        Transfer{TransferOp::kGet, peer_, local, region->remote_address(), kSize, 0});
    b.deadline = In(std::chrono::milliseconds(4000));
    return b;
  };
  // Queued back to back: the forget lands while the first batch holds the key (which is then
  // retired, not destroyed), and the second batch unpacks the bytes again.
  std::future<std::vector<Status>> a = engine_->Submit(batch(first.data));
  engine_->ForgetRemoteKey(peer_, region->remote_key);
  std::future<std::vector<Status>> b = engine_->Submit(batch(second.data));
  std::vector<Status> got_a = WaitBatch(std::move(a));
  std::vector<Status> got_b = WaitBatch(std::move(b));
  ASSERT_EQ(got_a.size(), 1u);
  ASSERT_EQ(got_b.size(), 1u);
  EXPECT_TRUE(got_a[0].ok()) << got_a[0].ToString();
  EXPECT_TRUE(got_b[0].ok()) << got_b[0].ToString();
  EXPECT_EQ(FirstMismatch(first.data, kSize, 21), -1);
  EXPECT_EQ(FirstMismatch(second.data, kSize, 21), -1);
  // Only the second batch's key stays cached; the retired one went with its last user.
  EXPECT_TRUE(WaitForCachedKeys(*engine_, 1));
  engine_->ForgetRemoteKey(peer_, region->remote_key);
  EXPECT_TRUE(WaitForCachedKeys(*engine_, 0));
}

INSTANTIATE_TEST_SUITE_P(ucx, TransferEngineTest, ::testing::Values("tcp", "posix,cma"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           return std::string(info.param) == "tcp" ? "Tcp" : "PosixCma";
                         });

// UCX 1.13 emulates GET into registered memory with messages the target's worker must process
// (over TCP and over shared memory alike), and wireup needs them too. A client whose worker is
// never progressed therefore never answers: the deadline must fire, the endpoint be reset, and a
// fresh client must work afterwards.
class TransferEngineDeadlineTest : public ::testing::TestWithParam<const char*> {};

TEST_P(TransferEngineDeadlineTest, PeerThatNeverProgressesFailsWithDeadlineExceeded) {
  TransferEngineOptions options;
  options.context.transports = GetParam();
  Result<std::unique_ptr<TransferEngine>> engine = TransferEngine::Create(options);
  if (!engine.ok() && engine.status().code() == StatusCode::kUnavailable) {
    GTEST_SKIP() << "tcp unavailable: " << engine.status().ToString();
  }
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();

  StuckClient stuck;
  MakeStuckClient(GetParam(), 64 * kKiB, stuck);
  ASSERT_FALSE(HasFatalFailure());

  Result<PeerId> stuck_peer = (*engine)->Connect(stuck.worker->address());
  ASSERT_TRUE(stuck_peer.ok()) << stuck_peer.status().ToString();
  AlignedBuffer server(64 * kKiB);
  TransferBatch batch;
  batch.remote_keys.push_back(stuck.remote_key);
  batch.transfers.push_back(
      Transfer{TransferOp::kGet, *stuck_peer, server.data, stuck.address(), 64 * kKiB, 0});
  constexpr auto kDeadline = std::chrono::milliseconds(300);
  const auto start = Clock::now();
  batch.deadline = start + kDeadline;
  std::vector<Status> s = WaitBatch((*engine)->Submit(std::move(batch)), std::chrono::seconds(5));
  const auto elapsed = Clock::now() - start;
  ASSERT_EQ(s.size(), 1u);
  EXPECT_TRUE(IsDeadlineExceeded(s[0])) << s[0].ToString();
  EXPECT_GE(elapsed, kDeadline);
  EXPECT_LT(elapsed, kDeadline + std::chrono::milliseconds(2500))
      << std::chrono::duration<double>(elapsed).count();
  // The stuck peer's endpoint was reset (the count is refreshed right after the callback).
  const auto until = Clock::now() + std::chrono::seconds(1);
  while ((*engine)->Stats().open_endpoints != 0 && Clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ((*engine)->Stats().open_endpoints, 0u);

  // A fresh, healthy client works on the same engine.
  UcxAgentOptions agent_options;
  agent_options.context.transports = GetParam();
  Result<std::unique_ptr<UcxAgent>> agent = UcxAgent::Create(agent_options);
  ASSERT_TRUE(agent.ok());
  AlignedBuffer client(64 * kKiB);
  FillPattern(client.data, client.size, 42);
  Result<RegisteredRegion> region = (*agent)->RegisterMemory(client.data, client.size);
  ASSERT_TRUE(region.ok());
  Result<PeerId> fresh = (*engine)->Connect((*agent)->worker_address());
  ASSERT_TRUE(fresh.ok());
  TransferBatch ok_batch;
  ok_batch.remote_keys.push_back(region->remote_key);
  ok_batch.transfers.push_back(
      Transfer{TransferOp::kGet, *fresh, server.data, region->remote_address(), 64 * kKiB, 0});
  ok_batch.deadline = In(std::chrono::milliseconds(4000));
  s = WaitBatch((*engine)->Submit(std::move(ok_batch)));
  ASSERT_EQ(s.size(), 1u);
  EXPECT_TRUE(s[0].ok()) << s[0].ToString();
  EXPECT_EQ(FirstMismatch(server.data, 64 * kKiB, 42), -1);

  engine->reset();
  region = Status::Unavailable("released before its agent");
  agent->reset();
}

// A client that answered once and then stalls: its reply to the expired GET arrives after the
// engine reported the failure. The server's buffer must never see it (UCX 1.13 keeps such GETs
// after a force-close, so the engine restarts its worker), and the engine must keep working.
TEST_P(TransferEngineDeadlineTest, ExpiredGetIsNeverWrittenLate) {
  TransferEngineOptions options;
  options.context.transports = GetParam();
  Result<std::unique_ptr<TransferEngine>> engine = TransferEngine::Create(options);
  if (!engine.ok() && engine.status().code() == StatusCode::kUnavailable) {
    GTEST_SKIP() << "transports unavailable: " << engine.status().ToString();
  }
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();
  UcxContextOptions client_options;
  client_options.transports = GetParam();
  Result<UcxContext> client_context = UcxContext::Create(client_options);
  ASSERT_TRUE(client_context.ok());
  std::optional<UcxWorker> client_worker;
  {
    Result<UcxWorker> w = UcxWorker::Create(*client_context);
    ASSERT_TRUE(w.ok());
    client_worker.emplace(std::move(w).value());
  }
  AlignedBuffer client(256 * kKiB);
  FillPattern(client.data, client.size, 77);
  std::optional<UcxMemory> client_memory;
  {
    Result<UcxMemory> m = UcxMemory::Map(*client_context, client.data, client.size);
    ASSERT_TRUE(m.ok());
    client_memory.emplace(std::move(m).value());
  }
  const std::vector<uint8_t> key = client_memory->PackRemoteKey().value();
  Result<PeerId> peer = (*engine)->Connect(client_worker->address());
  ASSERT_TRUE(peer.ok());
  auto get = [&](uint8_t* local, std::chrono::milliseconds deadline) {
    TransferBatch batch;
    batch.remote_keys.push_back(key);
    batch.transfers.push_back(Transfer{TransferOp::kGet, *peer, local,
                                       reinterpret_cast<uint64_t>(client.data), client.size, 0});
    batch.deadline = Clock::now() + deadline;
    return (*engine)->Submit(std::move(batch));
  };
  auto progress_client_for = [&](std::chrono::milliseconds d) {
    const auto until = Clock::now() + d;
    while (Clock::now() < until) client_worker->Progress();
  };

  // Warm-up with a responsive client: the endpoint is wired up.
  AlignedBuffer first(256 * kKiB);
  std::future<std::vector<Status>> warm = get(first.data, std::chrono::milliseconds(4000));
  const auto until = Clock::now() + std::chrono::seconds(4);
  while (warm.wait_for(std::chrono::seconds(0)) != std::future_status::ready &&
         Clock::now() < until) {
    client_worker->Progress();
  }
  std::vector<Status> s = WaitBatch(std::move(warm));
  ASSERT_EQ(s.size(), 1u);
  ASSERT_TRUE(s[0].ok()) << s[0].ToString();
  ASSERT_EQ(FirstMismatch(first.data, first.size, 77), -1);

  // The client stalls; the GET expires.
  AlignedBuffer late(256 * kKiB);
  s = WaitBatch(get(late.data, std::chrono::milliseconds(200)), std::chrono::seconds(5));
  ASSERT_EQ(s.size(), 1u);
  EXPECT_TRUE(IsDeadlineExceeded(s[0])) << s[0].ToString();
  // The client wakes up and answers; nothing may land in the reported-failed buffer.
  progress_client_for(std::chrono::milliseconds(300));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  for (size_t i = 0; i < late.size; ++i) ASSERT_EQ(late.data[i], 0) << "late write at " << i;
  std::printf("[ expired GET ] %s: worker restarts %llu\n", GetParam(),
              static_cast<unsigned long long>((*engine)->Stats().worker_restarts));

  // The engine still works with a healthy client.
  UcxAgentOptions agent_options;
  agent_options.context.transports = GetParam();
  Result<std::unique_ptr<UcxAgent>> agent = UcxAgent::Create(agent_options);
  ASSERT_TRUE(agent.ok());
  AlignedBuffer healthy(64 * kKiB);
  FillPattern(healthy.data, healthy.size, 5);
  {
    Result<RegisteredRegion> region = (*agent)->RegisterMemory(healthy.data, healthy.size);
    ASSERT_TRUE(region.ok());
    Result<PeerId> fresh = (*engine)->Connect((*agent)->worker_address());
    ASSERT_TRUE(fresh.ok());
    TransferBatch batch;
    batch.remote_keys.push_back(region->remote_key);
    batch.transfers.push_back(
        Transfer{TransferOp::kGet, *fresh, first.data, region->remote_address(), healthy.size, 0});
    batch.deadline = In(std::chrono::milliseconds(4000));
    s = WaitBatch((*engine)->Submit(std::move(batch)));
    ASSERT_EQ(s.size(), 1u);
    EXPECT_TRUE(s[0].ok()) << s[0].ToString();
    EXPECT_EQ(FirstMismatch(first.data, healthy.size, 5), -1);
  }
  engine->reset();
  agent->reset();
  client_memory.reset();
}

INSTANTIATE_TEST_SUITE_P(ucx, TransferEngineDeadlineTest, ::testing::Values("tcp", "posix,cma"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           return std::string(info.param) == "tcp" ? "Tcp" : "PosixCma";
                         });

}  // namespace
}  // namespace kvault::transport
