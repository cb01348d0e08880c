#pragma once
// Helpers shared by the UCX tests: deterministic byte patterns, a skip for transports this
// machine lacks, and length-prefixed messages over a socket (to talk to a forked client).

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kvault/transport/ucx/transfer_engine.h"
#include "kvault/transport/ucx/ucx_agent.h"
#include "kvault/transport/ucx/ucx_memory.h"
#include "kvault/transport/ucx/ucx_worker.h"

namespace kvault::transport::testing {

// splitmix64 of the word index: no period that an offset error could hide in.
inline uint64_t PatternWord(uint64_t seed, uint64_t index) {
  uint64_t z = seed * 0x9e3779b97f4a7c15ull + index + 1;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Fills `n` bytes with the pattern of `seed` as it runs from byte `offset` (a multiple of 8) of a
// larger buffer, so that sub-ranges can be checked on their own.
inline void FillPattern(void* p, size_t n, uint64_t seed, size_t offset = 0) {
  auto* bytes = static_cast<uint8_t*>(p);
  for (size_t i = 0; i < n; i += 8) {
    const uint64_t w = PatternWord(seed, (offset + i) / 8);
    std::memcpy(bytes + i, &w, std::min<size_t>(8, n - i));
  }
}

// Index of the first byte that differs from FillPattern(_, n, seed, offset), or -1.
inline int64_t FirstMismatch(const void* p, size_t n, uint64_t seed, size_t offset = 0) {
  const auto* bytes = static_cast<const uint8_t*>(p);
  for (size_t i = 0; i < n; i += 8) {
    const uint64_t w = PatternWord(seed, (offset + i) / 8);
    if (std::memcmp(bytes + i, &w, std::min<size_t>(8, n - i)) != 0) {
      for (size_t j = i; j < std::min(n, i + 8); ++j) {
        if (bytes[j] != reinterpret_cast<const uint8_t*>(&w)[j - i]) return static_cast<int64_t>(j);
      }
    }
  }
  return -1;
}

// Page-aligned heap buffer (zeroed).
struct AlignedBuffer {
  explicit AlignedBuffer(size_t n) : size(n) {
    data = static_cast<uint8_t*>(std::aligned_alloc(4096, (n + 4095) / 4096 * 4096));
    std::memset(data, 0, n);
  }
  ~AlignedBuffer() { std::free(data); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  uint8_t* data;
  size_t size;
};

// Waits for a batch, failing (not hanging) after `limit`.
inline std::vector<Status> WaitBatch(std::future<std::vector<Status>> f,
                                     std::chrono::seconds limit = std::chrono::seconds(10)) {
  if (f.wait_for(limit) != std::future_status::ready) {
    ADD_FAILURE() << "batch did not complete within " << limit.count() << " s";
    return {};
  }
  return f.get();
}

// A TransferEngine (server side) and a UcxAgent (client side) in this process, both pinned to
// the transports of the test's parameter and connected (peer_). Skips when this machine lacks
// the transports.
class EngineAndAgentTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    TransferEngineOptions engine_options;
    engine_options.context.transports = GetParam();
    engine_options.context.name = "test-server";
    Result<std::unique_ptr<TransferEngine>> engine = TransferEngine::Create(engine_options);
    if (!engine.ok() && engine.status().code() == StatusCode::kUnavailable) {
      GTEST_SKIP() << "transports \"" << GetParam()
                   << "\" unavailable: " << engine.status().ToString();
    }
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    engine_ = std::move(engine).value();

    UcxAgentOptions agent_options;
    agent_options.context.transports = GetParam();
    agent_options.context.name = "test-client";
    Result<std::unique_ptr<UcxAgent>> agent = UcxAgent::Create(agent_options);
    ASSERT_TRUE(agent.ok()) << agent.status().ToString();
    agent_ = std::move(agent).value();

    Result<PeerId> peer = engine_->Connect(agent_->worker_address());
    ASSERT_TRUE(peer.ok()) << peer.status().ToString();
    peer_ = *peer;
  }

  void TearDown() override {
    engine_.reset();  // before the agent: the engine's endpoints point at the agent's worker
    agent_.reset();
  }

  std::unique_ptr<TransferEngine> engine_;
  std::unique_ptr<UcxAgent> agent_;
  PeerId peer_ = 0;
};

// A client whose worker nobody ever progresses: a bare context and worker, and `bytes` of
// registered memory. UCX emulates a GET from that memory with messages it never answers, so such
// a GET only ends at its deadline. Members are destroyed memory first, context last.
struct StuckClient {
  std::optional<UcxContext> context;
  std::optional<UcxWorker> worker;
  std::unique_ptr<AlignedBuffer> buffer;
  std::optional<UcxMemory> memory;
  std::vector<uint8_t> remote_key;
  uint64_t address() const { return reinterpret_cast<uint64_t>(buffer->data); }
};

// Fills `out` (gtest assertions: check HasFatalFailure() after it).
inline void MakeStuckClient(const std::string& transports, size_t bytes, StuckClient& out) {
  UcxContextOptions options;
  options.transports = transports;
  Result<UcxContext> context = UcxContext::Create(options);
  ASSERT_TRUE(context.ok()) << context.status().ToString();
  out.context.emplace(std::move(context).value());
  Result<UcxWorker> worker = UcxWorker::Create(*out.context);
  ASSERT_TRUE(worker.ok()) << worker.status().ToString();
  out.worker.emplace(std::move(worker).value());
  out.buffer = std::make_unique<AlignedBuffer>(bytes);
  Result<UcxMemory> memory = UcxMemory::Map(*out.context, out.buffer->data, bytes);
  ASSERT_TRUE(memory.ok()) << memory.status().ToString();
  out.memory.emplace(std::move(memory).value());
  Result<std::vector<uint8_t>> key = out.memory->PackRemoteKey();
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  out.remote_key = std::move(key).value();
}

inline bool SendAll(int fd, const void* p, size_t n) {
  const auto* b = static_cast<const uint8_t*>(p);
  while (n > 0) {
    const ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
    if (w <= 0) return false;
    b += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

inline bool RecvAll(int fd, void* p, size_t n) {
  auto* b = static_cast<uint8_t*>(p);
  while (n > 0) {
    const ssize_t r = recv(fd, b, n, 0);
    if (r <= 0) return false;
    b += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

inline bool SendMessage(int fd, const std::vector<uint8_t>& m) {
  const uint32_t n = static_cast<uint32_t>(m.size());
  return SendAll(fd, &n, sizeof(n)) && SendAll(fd, m.data(), m.size());
}

inline bool RecvMessage(int fd, std::vector<uint8_t>& m) {
  uint32_t n = 0;
  if (!RecvAll(fd, &n, sizeof(n)) || n > (1u << 20)) return false;
  m.resize(n);
  return RecvAll(fd, m.data(), n);
}

// main() of a test binary that re-executes itself as a child (fork + exec): with an argument
// `flag`<spec> it runs `child`(spec) and returns its exit code, else the tests.
inline int RunTestsOrChild(int argc, char** argv, const char* flag,
                           int (*child)(const std::string& spec)) {
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], flag, std::strlen(flag)) == 0)
      return child(argv[i] + std::strlen(flag));
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}

}  // namespace kvault::transport::testing
