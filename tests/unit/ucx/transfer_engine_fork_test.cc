// TransferEngine against a client in another process: the test binary re-executes itself as the
// client (fork + exec, so the child starts UCX from a clean slate), which exercises CMA and shared
// memory across processes, a peer that dies (also before the server first used its key: the
// shared segments are held while UCX attaches them), and prints 1 MiB throughput.
//
// Child protocol over a socketpair: the child sends its worker address, the sealed remote key of
// its buffer and the buffer's address; then answers 'V' (verify a pattern range), 'F' (fill a
// pattern range) and 'Q' (quit).

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <ucp/api/ucp.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "kvault/common/little_endian.h"
#include "kvault/transport/local/mapped_residency.h"
#include "kvault/transport/ucx/transfer_engine.h"
#include "kvault/transport/ucx/ucx_agent.h"
#include "kvault/transport/ucx/ucx_endpoint.h"
#include "kvault/transport/ucx/ucx_remote_key.h"
#include "ucx/envelope.h"
#include "ucx/shared_segment_hold.h"
#include "ucx_test_util.h"

namespace kvault::transport {
namespace {

using testing::AlignedBuffer;
using testing::FillPattern;
using testing::FirstMismatch;
using testing::RecvMessage;
using testing::SendMessage;
using testing::WaitBatch;
using Clock = std::chrono::steady_clock;

constexpr size_t kMiB = 1024 * 1024;
constexpr const char* kChildFlag = "--ucx-child=";

// ---- the child (client) side ------------------------------------------------------------------

int RunChild(const std::string& spec) {
  // spec: "<fd>:<bytes>:<allocate 0|1>:<transports>"
  const size_t a = spec.find(':');
  const size_t b = spec.find(':', a + 1);
  const size_t c = spec.find(':', b + 1);
  const int fd = std::stoi(spec.substr(0, a));
  const size_t bytes = std::stoull(spec.substr(a + 1, b - a - 1));
  const bool allocate = spec.substr(b + 1, c - b - 1) == "1";
  UcxAgentOptions options;
  options.context.transports = spec.substr(c + 1);
  options.context.name = "fork-client";
  Result<std::unique_ptr<UcxAgent>> agent = UcxAgent::Create(options);
  if (!agent.ok()) {
    std::fprintf(stderr, "child: %s\n", agent.status().ToString().c_str());
    return 2;
  }
  int rc = 0;
  {
    AlignedBuffer own(allocate ? 1 : bytes);
    Result<RegisteredRegion> region =
        allocate ? (*agent)->AllocateMemory(bytes) : (*agent)->RegisterMemory(own.data, bytes);
    if (!region.ok()) {
      std::fprintf(stderr, "child: %s\n", region.status().ToString().c_str());
      return 3;
    }
    auto* buffer = static_cast<uint8_t*>(region->memory.address());
    FillPattern(buffer, bytes, 1);
    std::vector<uint8_t> where(16);
    StoreLe64(where.data(), region->remote_address());
    StoreLe64(where.data() + 8, bytes);
    if (!SendMessage(fd, (*agent)->worker_address()) || !SendMessage(fd, region->remote_key) ||
        !SendMessage(fd, where)) {
      return 4;
    }
    std::vector<uint8_t> command;
    while (RecvMessage(fd, command) && !command.empty() && command[0] != 'Q') {
      if (command.size() != 25) {
        rc = 5;
        break;
      }
      const uint64_t seed = LoadLe64(command.data() + 1);
      const uint64_t offset = LoadLe64(command.data() + 9);
      const uint64_t length = LoadLe64(command.data() + 17);
      std::vector<uint8_t> reply(1, 0);
      if (command[0] == 'V') {
        reply[0] = FirstMismatch(buffer + offset, length, seed) == -1 ? 1 : 0;
      } else {
        FillPattern(buffer + offset, length, seed);
        reply[0] = 1;
      }
      if (!SendMessage(fd, reply)) break;
    }
  }
  agent->reset();
  return rc;
}

// ---- the parent (server) side -----------------------------------------------------------------

class ChildClient {
 public:
  // Starts a client with a `bytes` buffer on `transports`, registered (or, with `allocate`,
  // allocated by UCX); empty on failure (with a test failure).
  static std::unique_ptr<ChildClient> Spawn(const std::string& transports, bool allocate,
                                            size_t bytes) {
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
      ADD_FAILURE() << "socketpair: " << std::strerror(errno);
      return nullptr;
    }
    const std::string arg = std::string(kChildFlag) + std::to_string(fds[1]) + ":" +
                            std::to_string(bytes) + ":" + (allocate ? "1:" : "0:") + transports;
    const pid_t pid = fork();
    if (pid == 0) {  // only async-signal-safe calls until exec
      fcntl(fds[1], F_SETFD, 0);
      execl("/proc/self/exe", "transfer_engine_fork_test", arg.c_str(),
            static_cast<char*>(nullptr));
      _exit(127);
    }
    close(fds[1]);
    if (pid < 0) {
      close(fds[0]);
      ADD_FAILURE() << "fork: " << std::strerror(errno);
      return nullptr;
    }
    std::unique_ptr<ChildClient> child(new ChildClient(pid, fds[0]));
    timeval tv{10, 0};  // a broken child fails the test instead of hanging it
    setsockopt(fds[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    std::vector<uint8_t> where;
    if (!RecvMessage(fds[0], child->address) || !RecvMessage(fds[0], child->remote_key) ||
        !RecvMessage(fds[0], where) || where.size() != 16) {
      ADD_FAILURE() << "the child client did not start (transports \"" << transports << "\")";
      return nullptr;
    }
    child->base = LoadLe64(where.data());
    child->length = LoadLe64(where.data() + 8);
    return child;
  }

  ~ChildClient() {
    if (pid_ > 0) {
      (void)SendMessage(fd_, std::vector<uint8_t>{'Q'});
      // Give it a moment to exit cleanly, then make sure.
      for (int i = 0; i < 200 && waitpid(pid_, nullptr, WNOHANG) == 0; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        if (i == 199) Kill();
      }
    }
    close(fd_);
  }

  bool Verify(uint64_t seed, uint64_t offset, uint64_t n) { return Ask('V', seed, offset, n); }
  bool Fill(uint64_t seed, uint64_t offset, uint64_t n) { return Ask('F', seed, offset, n); }

  void Kill() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  std::vector<uint8_t> address;
  std::vector<uint8_t> remote_key;
  uint64_t base = 0;
  uint64_t length = 0;

 private:
  ChildClient(pid_t pid, int fd) : pid_(pid), fd_(fd) {}

  bool Ask(char op, uint64_t seed, uint64_t offset, uint64_t n) {
    std::vector<uint8_t> m(25);
    m[0] = static_cast<uint8_t>(op);
    StoreLe64(m.data() + 1, seed);
    StoreLe64(m.data() + 9, offset);
    StoreLe64(m.data() + 17, n);
    std::vector<uint8_t> reply;
    return SendMessage(fd_, m) && RecvMessage(fd_, reply) && reply.size() == 1 && reply[0] == 1;
  }

  pid_t pid_;
  int fd_;
};

struct ForkCase {
  const char* transports;
  bool allocate;  // client memory from UcxAgent::AllocateMemory instead of RegisterMemory
  const char* name;
};

class ForkedClientTest : public ::testing::TestWithParam<ForkCase> {
 protected:
  void SetUp() override {
    TransferEngineOptions options;
    options.context.transports = GetParam().transports;
    options.context.name = "fork-server";
    options.mapped_residency = &residency_;
    Result<std::unique_ptr<TransferEngine>> engine = TransferEngine::Create(options);
    if (!engine.ok() && engine.status().code() == StatusCode::kUnavailable) {
      GTEST_SKIP() << "transports \"" << GetParam().transports
                   << "\" unavailable: " << engine.status().ToString();
    }
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    engine_ = std::move(engine).value();
  }

  // Spawns a client and connects the engine to it.
  void StartChild(size_t bytes) {
    child_ = ChildClient::Spawn(GetParam().transports, GetParam().allocate, bytes);
    ASSERT_NE(child_, nullptr);
    Result<PeerId> peer = engine_->Connect(child_->address);
    ASSERT_TRUE(peer.ok()) << peer.status().ToString();
    peer_ = *peer;
  }

  TransferBatch Batch(TransferOp op, uint8_t* local, size_t n, size_t count, size_t remote_offset,
                      std::chrono::milliseconds deadline) {
    TransferBatch batch;
    batch.remote_keys.push_back(child_->remote_key);
    for (size_t i = 0; i < count; ++i) {
      batch.transfers.push_back(
          Transfer{op, peer_, local + i * n, child_->base + remote_offset + i * n, n, 0});
    }
    batch.deadline = Clock::now() + deadline;
    return batch;
  }

  MappedResidency residency_{64 << 20};  // outlives engine_
  std::unique_ptr<TransferEngine> engine_;
  std::unique_ptr<ChildClient> child_;
  PeerId peer_ = 0;
};

TEST_P(ForkedClientTest, GetAndPutAcrossProcessesByteForByte) {
  constexpr size_t kBytes = 4 * kMiB;
  ASSERT_NO_FATAL_FAILURE(StartChild(kBytes));
  AlignedBuffer server(kBytes);
  ASSERT_TRUE(engine_->RegisterMemory(server.data, kBytes).ok());
  for (size_t size : {size_t{4096}, 1 * kMiB, 4 * kMiB}) {
    SCOPED_TRACE("size " + std::to_string(size));
    ASSERT_TRUE(child_->Fill(10 + size, 0, size));
    std::vector<Status> s = WaitBatch(engine_->Submit(
        Batch(TransferOp::kGet, server.data, size, 1, 0, std::chrono::milliseconds(4000))));
    ASSERT_EQ(s.size(), 1u);
    ASSERT_TRUE(s[0].ok()) << s[0].ToString();
    EXPECT_EQ(FirstMismatch(server.data, size, 10 + size), -1);

    FillPattern(server.data, size, 20 + size);
    s = WaitBatch(engine_->Submit(
        Batch(TransferOp::kPut, server.data, size, 1, 0, std::chrono::milliseconds(4000))));
    ASSERT_EQ(s.size(), 1u);
    ASSERT_TRUE(s[0].ok()) << s[0].ToString();
    EXPECT_TRUE(child_->Verify(20 + size, 0, size));
  }
}

TEST_P(ForkedClientTest, DeadPeerGivesErrorWithinDeadlineNeverHang) {
  constexpr size_t kBytes = 1 * kMiB;
  ASSERT_NO_FATAL_FAILURE(StartChild(kBytes));
  AlignedBuffer server(kBytes);
  // One good transfer first, so the endpoint is fully wired up when the peer dies.
  std::vector<Status> s = WaitBatch(engine_->Submit(
      Batch(TransferOp::kGet, server.data, 4096, 1, 0, std::chrono::milliseconds(4000))));
  ASSERT_EQ(s.size(), 1u);
  ASSERT_TRUE(s[0].ok()) << s[0].ToString();

  child_->Kill();
  constexpr auto kDeadline = std::chrono::milliseconds(1500);
  // Registered client memory fails at once (or at the deadline). A UCX-allocated segment stays
  // mapped by the server, so transfers into it may succeed until the keepalive (1 s) notices.
  const auto give_up = Clock::now() + std::chrono::seconds(4);
  int failed_batches = 0;
  for (int round = 0; failed_batches < 3 && Clock::now() < give_up; ++round) {
    const TransferOp op = round % 2 == 0 ? TransferOp::kGet : TransferOp::kPut;
    const auto start = Clock::now();
    s = WaitBatch(engine_->Submit(Batch(op, server.data, 64 * 1024, 4, 0, kDeadline)),
                  std::chrono::seconds(5));
    const auto elapsed = Clock::now() - start;
    ASSERT_EQ(s.size(), 4u);
    EXPECT_LT(elapsed, kDeadline + std::chrono::milliseconds(2000));  // no hang
    if (s[0].ok()) {
      EXPECT_TRUE(GetParam().allocate) << "registered memory of a dead client was reachable";
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    ++failed_batches;
    for (const Status& status : s) {
      EXPECT_EQ(status.code(), StatusCode::kUnavailable) << status.ToString();
    }
    std::printf("[ dead peer ] %-13s %s -> %s after %.0f ms\n", GetParam().name,
                op == TransferOp::kGet ? "GET" : "PUT", s[0].ToString().c_str(),
                std::chrono::duration<double, std::milli>(elapsed).count());
  }
  EXPECT_EQ(failed_batches, 3) << "transfers to a dead client kept succeeding";
}

TEST_P(ForkedClientTest, PeerKilledDuringBatchCompletesWithinDeadline) {
  constexpr size_t kBytes = 16 * kMiB;
  ASSERT_NO_FATAL_FAILURE(StartChild(kBytes));
  AlignedBuffer server(kBytes);
  ASSERT_TRUE(engine_->RegisterMemory(server.data, kBytes).ok());
  // Warm-up: the endpoint is wired and the key unpacked before the kill. (A death before the
  // first unpack has a test of its own: KeyOfAClientKilledBeforeItsFirstUseFailsOnlyItsTransfers.)
  std::vector<Status> warm = WaitBatch(engine_->Submit(
      Batch(TransferOp::kGet, server.data, 4096, 1, 0, std::chrono::milliseconds(4000))));
  ASSERT_EQ(warm.size(), 1u);
  ASSERT_TRUE(warm[0].ok()) << warm[0].ToString();
  constexpr auto kDeadline = std::chrono::milliseconds(2000);
  const auto start = Clock::now();
  std::future<std::vector<Status>> f =
      engine_->Submit(Batch(TransferOp::kGet, server.data, 256 * 1024, 64, 0, kDeadline));
  child_->Kill();
  std::vector<Status> s = WaitBatch(std::move(f), std::chrono::seconds(5));
  const auto elapsed = Clock::now() - start;
  ASSERT_EQ(s.size(), 64u);
  for (size_t i = 0; i < s.size(); ++i) {
    // Whatever finished is correct; the rest fails as unavailable. (Memory from AllocateMemory
    // stays mapped by the server after the client dies, so those transfers may all succeed.)
    if (s[i].ok()) {
      EXPECT_EQ(FirstMismatch(server.data + i * 256 * 1024, 256 * 1024, 1, i * 256 * 1024), -1)
          << i;
    } else {
      EXPECT_EQ(s[i].code(), StatusCode::kUnavailable) << s[i].ToString();
    }
  }
  // At worst: the deadline, the cancel grace (250 ms) and a worker restart.
  EXPECT_LT(elapsed, kDeadline + std::chrono::milliseconds(2000));  // no hang
}

// A client that dies after sending its key and before the server first uses it: the transfers
// fail as unavailable, and the server goes on serving the next client. (UCX 1.13 crashed the
// whole process when its attach of the dead client's segment failed; see SharedSegmentHold.)
TEST_P(ForkedClientTest, KeyOfAClientKilledBeforeItsFirstUseFailsOnlyItsTransfers) {
  constexpr size_t kBytes = 1 * kMiB;
  ASSERT_NO_FATAL_FAILURE(StartChild(kBytes));
  AlignedBuffer server(kBytes);
  child_->Kill();
  std::vector<Status> s = WaitBatch(engine_->Submit(
      Batch(TransferOp::kGet, server.data, 64 * 1024, 4, 0, std::chrono::milliseconds(1500))));
  ASSERT_EQ(s.size(), 4u);
  for (const Status& status : s) {
    EXPECT_EQ(status.code(), StatusCode::kUnavailable) << status.ToString();
  }
  // Positive control: the same engine serves a live client, byte for byte.
  ASSERT_NO_FATAL_FAILURE(StartChild(kBytes));
  s = WaitBatch(engine_->Submit(
      Batch(TransferOp::kGet, server.data, kBytes, 1, 0, std::chrono::milliseconds(4000))));
  ASSERT_EQ(s.size(), 1u);
  ASSERT_TRUE(s[0].ok()) << s[0].ToString();
  EXPECT_EQ(FirstMismatch(server.data, kBytes, 1), -1);
}

// The hold itself, with the death placed exactly between the hold and UCX's attach: a key held
// while its owner lived still unpacks after the owner is gone, and reads the owner's bytes;
// a hold taken after the death is refused.
TEST_P(ForkedClientTest, HeldSegmentsOfAKilledClientStillUnpack) {
  constexpr size_t kBytes = 1 * kMiB;
  ASSERT_NO_FATAL_FAILURE(StartChild(kBytes));
  Result<std::span<const uint8_t>> payload = Open(EnvelopeKind::kRemoteKey, child_->remote_key);
  ASSERT_TRUE(payload.ok()) << payload.status().ToString();
  ASSERT_GT(payload->size(), kRemoteKeyHeaderBytes);
  const uint32_t owner = LoadLe32(payload->data() + 16);
  const std::span<const uint8_t> key = payload->subspan(kRemoteKeyHeaderBytes);
  Result<SharedSegmentHold> taken = SharedSegmentHold::Take(key, owner, child_->base, kBytes);
  ASSERT_TRUE(taken.ok()) << taken.status().ToString();
  std::optional<SharedSegmentHold> hold(std::move(*taken));
  if (!GetParam().allocate) {  // registered memory: no shared segment, the key goes to UCX as is
    EXPECT_EQ(hold->held(), 0u);
    EXPECT_TRUE(std::equal(key.begin(), key.end(), hold->key().begin(), hold->key().end()));
    return;
  }
  unsigned major = 0, minor = 0, release = 0;
  ucp_get_version(&major, &minor, &release);
  if (major != 1 || minor != 13) GTEST_SKIP() << "the hold recognizes UCX 1.13's keys only";
  ASSERT_EQ(hold->held(), 1u);

  UcxContextOptions options;
  options.transports = GetParam().transports;
  options.name = "hold-test";
  Result<UcxContext> context = UcxContext::Create(options);
  ASSERT_TRUE(context.ok()) << context.status().ToString();
  Result<UcxWorker> worker = UcxWorker::Create(*context);
  ASSERT_TRUE(worker.ok()) << worker.status().ToString();
  Result<UcxEndpoint> ep = UcxEndpoint::Connect(*worker, child_->address);
  ASSERT_TRUE(ep.ok()) << ep.status().ToString();

  child_->Kill();  // reaped: its descriptors and its own attachments are gone
  // The key held before the death unpacks, and maps the owner's bytes.
  ucp_rkey_h rkey = nullptr;
  ASSERT_EQ(ucp_ep_rkey_unpack(ep->get(), hold->key().data(), &rkey), UCS_OK);
  void* local = nullptr;
  ASSERT_EQ(ucp_rkey_ptr(rkey, child_->base, &local), UCS_OK);
  EXPECT_EQ(FirstMismatch(static_cast<const uint8_t*>(local), kBytes, 1), -1);
  ucp_rkey_destroy(rkey);
  // Once nothing holds the segment, a new hold finds nothing to attach: refused, never unpacked.
  hold.reset();
  Result<SharedSegmentHold> late = SharedSegmentHold::Take(key, owner, child_->base, kBytes);
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.status().code(), StatusCode::kUnavailable) << late.status().ToString();
}

// A batch with a copier: where UCX maps the client's memory into this process (memory the client
// allocated through UCX, under posix or sysv) the copier gets the client's bytes and no UCX request
// is posted; elsewhere (tcp, registered memory) the GETs move through UCX and the copier is never
// called. Either way every GET's bytes land and Run's arrivals name exactly the UCX ones. A posix
// segment's bytes come with its file the first time (read there: the same bytes), and through
// the mapping when the same ranges come again (MappedResidency admits reuse); sysv ones always
// through the mapping.
TEST_P(ForkedClientTest, MappedGetsGoToTheCopierOtherGetsThroughUcx) {
  constexpr size_t kChunk = kMiB / 4;
  constexpr size_t kChunks = 4;
  ASSERT_NO_FATAL_FAILURE(StartChild(kChunk * kChunks));
  AlignedBuffer server(kChunk * kChunks);
  ASSERT_TRUE(engine_->RegisterMemory(server.data, server.size).ok());
  const bool posix = std::string(GetParam().transports).starts_with("posix");
  for (int round = 0; round < 2; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    ASSERT_TRUE(child_->Fill(static_cast<uint8_t>(77 + round), 0, kChunk * kChunks));
    TransferBatch batch =
        Batch(TransferOp::kGet, server.data, kChunk, kChunks, 0, std::chrono::milliseconds(4000));
    std::vector<size_t> copied;
    std::vector<size_t> arrived;
    size_t from_files = 0;
    batch.copy_mapped = [&](size_t i, const MappedRemote& from) {
      EXPECT_EQ(from.bytes.size(), kChunk);
      if (from.bytes.size() != kChunk) return Status::Internal("wrong size");
      uint8_t* to = server.data + i * kChunk;
      if (from.file >= 0) {
        ++from_files;
        EXPECT_EQ(pread(from.file, to, kChunk, static_cast<off_t>(from.file_offset)),
                  static_cast<ssize_t>(kChunk));
      } else {
        std::memcpy(to, from.bytes.data(), kChunk);  // the client's own bytes, mapped here
      }
      copied.push_back(i);
      return Status::Ok();
    };
    std::vector<Status> s = engine_->Run(std::move(batch), [&](size_t i) { arrived.push_back(i); });
    ASSERT_EQ(s.size(), kChunks);
    for (const Status& st : s) EXPECT_TRUE(st.ok()) << st.ToString();
    EXPECT_EQ(FirstMismatch(server.data, kChunk * kChunks, static_cast<uint8_t>(77 + round)), -1);
    const std::vector<size_t> all = {0, 1, 2, 3};
    if (GetParam().allocate) {
      EXPECT_EQ(copied, all);
      EXPECT_TRUE(arrived.empty());
      EXPECT_EQ(from_files, posix && round == 0 ? kChunks : 0u);
    } else {
      EXPECT_TRUE(copied.empty());
      EXPECT_EQ(arrived, all);
    }
  }
}

// Mapped GETs are copied one after another on the calling thread: one not started by the
// batch's deadline fails with deadline-exceeded instead of running late; those before it stand.
// Where nothing is mapped the copier never runs and every GET moves through UCX in time.
TEST_P(ForkedClientTest, MappedGetsPastTheDeadlineFailInsteadOfRunningLate) {
  constexpr size_t kChunk = kMiB / 4;
  ASSERT_NO_FATAL_FAILURE(StartChild(kChunk * 3));
  AlignedBuffer server(kChunk * 3);
  ASSERT_TRUE(child_->Fill(91, 0, kChunk * 3));
  TransferBatch batch =
      Batch(TransferOp::kGet, server.data, kChunk, 3, 0, std::chrono::milliseconds(300));
  std::vector<size_t> copied;
  batch.copy_mapped = [&](size_t i, const MappedRemote& from) {
    std::memcpy(server.data + i * kChunk, from.bytes.data(), from.bytes.size());
    copied.push_back(i);
    if (i == 0) std::this_thread::sleep_for(std::chrono::milliseconds(500));  // a slow copy
    return Status::Ok();
  };
  std::vector<Status> s = engine_->Run(std::move(batch), [](size_t) {});
  ASSERT_EQ(s.size(), 3u);
  EXPECT_TRUE(s[0].ok()) << s[0].ToString();  // positive control: copied in time
  EXPECT_EQ(FirstMismatch(server.data, kChunk, 91), -1);
  if (!GetParam().allocate) {
    EXPECT_TRUE(copied.empty());
    for (const Status& st : s) EXPECT_TRUE(st.ok()) << st.ToString();
    EXPECT_EQ(FirstMismatch(server.data, kChunk * 3, 91), -1);
    return;
  }
  for (size_t i : {size_t{1}, size_t{2}}) EXPECT_TRUE(IsDeadlineExceeded(s[i])) << s[i].ToString();
  EXPECT_EQ(copied, std::vector<size_t>{0});
}

// Not a pass/fail timing test: prints what one engine and one client achieve here, beside an
// in-run memcpy of the same bytes.
TEST_P(ForkedClientTest, PrintsOneMiBThroughput) {
  constexpr size_t kInFlight = 16;
  constexpr size_t kBytes = kInFlight * kMiB;
  ASSERT_NO_FATAL_FAILURE(StartChild(kBytes));
  AlignedBuffer server(kBytes);
  ASSERT_TRUE(engine_->RegisterMemory(server.data, kBytes).ok());
  AlignedBuffer copy(kBytes);

  auto measure = [&](TransferOp op, size_t in_flight) {
    size_t moved = 0;
    const auto start = Clock::now();
    int rounds = 0;
    while (Clock::now() - start < std::chrono::milliseconds(300) || rounds < 3) {
      std::vector<Status> s = WaitBatch(engine_->Submit(
          Batch(op, server.data, kMiB, in_flight, 0, std::chrono::milliseconds(4000))));
      for (const Status& status : s) EXPECT_TRUE(status.ok()) << status.ToString();
      moved += in_flight * kMiB;
      ++rounds;
    }
    return moved / std::chrono::duration<double>(Clock::now() - start).count() / (1 << 30);
  };
  const double get1 = measure(TransferOp::kGet, 1);
  const double put1 = measure(TransferOp::kPut, 1);
  const double getn = measure(TransferOp::kGet, kInFlight);
  const double putn = measure(TransferOp::kPut, kInFlight);
  EXPECT_EQ(FirstMismatch(server.data, kMiB, 1), -1);  // GETs read the child's initial pattern
  const auto start = Clock::now();
  for (int i = 0; i < 10; ++i) std::memcpy(copy.data, server.data, kBytes);
  const double memcpy_gib =
      10.0 * kBytes / std::chrono::duration<double>(Clock::now() - start).count() / (1 << 30);
  std::printf(
      "[ throughput ] %-13s 1 MiB transfers, GiB/s: GET %.2f (1 in flight) %.2f (%zu in flight) | "
      "PUT %.2f (1) %.2f (%zu) | memcpy baseline %.2f\n",
      GetParam().name, get1, getn, kInFlight, put1, putn, kInFlight, memcpy_gib);
  std::printf(
      "{\"bench\":\"ucx_1mib\",\"case\":\"%s\",\"get_gibps\":%.3f,\"get_%zu_gibps\":%.3f,"
      "\"put_gibps\":%.3f,\"put_%zu_gibps\":%.3f,\"memcpy_gibps\":%.3f}\n",
      GetParam().name, get1, kInFlight, getn, put1, kInFlight, putn, memcpy_gib);
}

INSTANTIATE_TEST_SUITE_P(ucx, ForkedClientTest,
                         ::testing::Values(ForkCase{"tcp", false, "Tcp"},
                                           ForkCase{"posix,cma", false, "PosixCma"},
                                           ForkCase{"posix,cma", true, "PosixCmaAlloc"},
                                           ForkCase{"sysv,cma", true, "SysvCmaAlloc"}),
                         [](const ::testing::TestParamInfo<ForkCase>& info) {
                           return std::string(info.param.name);
                         });

// Memory in a posix segment named by its path (UCX_POSIX_USE_PROC_LINK=n in the client) is
// refused when unpacked, before UCX opens the file the key names: nothing ties it to the sender,
// and a fault in it could not be absorbed safely (PeerMemoryGuard). The same memory named through
// /proc unpacks, and is mapped here.
TEST(ForkedClientKeyTest, MappedMemoryTheHoldCannotCheckIsRefused) {
  unsigned major = 0, minor = 0, release = 0;
  ucp_get_version(&major, &minor, &release);
  if (major != 1 || minor != 13) GTEST_SKIP() << "the hold recognizes UCX 1.13's keys only";
  for (const bool proc_link : {true, false}) {
    SCOPED_TRACE(proc_link ? "named through /proc" : "named by path");
    if (!proc_link) setenv("UCX_POSIX_USE_PROC_LINK", "n", 1);
    std::unique_ptr<ChildClient> child = ChildClient::Spawn("posix,cma", true, kMiB);
    unsetenv("UCX_POSIX_USE_PROC_LINK");
    ASSERT_TRUE(child);
    UcxContextOptions options;
    options.transports = "posix,cma";
    options.name = "unchecked-key-test";
    Result<UcxContext> context = UcxContext::Create(options);
    ASSERT_TRUE(context.ok()) << context.status().ToString();
    Result<UcxWorker> worker = UcxWorker::Create(*context);
    ASSERT_TRUE(worker.ok()) << worker.status().ToString();
    Result<UcxEndpoint> ep = UcxEndpoint::Connect(*worker, child->address);
    ASSERT_TRUE(ep.ok()) << ep.status().ToString();
    Result<UcxRemoteKey> key = UcxRemoteKey::Unpack(*ep, child->remote_key);
    if (proc_link) {
      ASSERT_TRUE(key.ok()) << key.status().ToString();
      EXPECT_FALSE(key->cut_short());
      void* mapped = nullptr;
      EXPECT_EQ(ucp_rkey_ptr(key->get(), child->base, &mapped), UCS_OK) << "not mapped here";
    } else if (key.ok()) {
      // Where UCX cannot map a path-named segment (another pid namespace), the key keeps only
      // what reaches the client through UCX: safe as well.
      void* mapped = nullptr;
      EXPECT_NE(ucp_rkey_ptr(key->get(), child->base, &mapped), UCS_OK)
          << "a segment named by path is mapped here";
    } else {
      EXPECT_EQ(key.status().code(), StatusCode::kInvalidArgument) << key.status().ToString();
      EXPECT_NE(key.status().message().find("named by its path"), std::string::npos)
          << key.status().ToString();
    }
  }
}

}  // namespace
}  // namespace kvault::transport

int main(int argc, char** argv) {
  return kvault::transport::testing::RunTestsOrChild(argc, argv, kvault::transport::kChildFlag,
                                                     kvault::transport::RunChild);
}
