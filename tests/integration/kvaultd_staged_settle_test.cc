// When a staged Load (memory the caller registered, ClientConfig::registered_staging_bytes) is
// reported settled, against a real kvaultd: a load cancelled mid-flight never writes the caller's
// buffers after WaitSettled returned; a load cut off by a stalled daemon (SIGSTOP, then the
// client's stall timeout) retires its staging chunk, leaves the caller's buffers alone when the
// daemon wakes and writes the chunk after all, and the client then loads byte-exact again.

#include <signal.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
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

constexpr uint64_t kPayload = 1 << 20;
constexpr size_t kKeys = 8;

BlockKey KeyOf(uint32_t n) {
  BlockKey k{};
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(n * 7 + i * 3 + 1);
  k[0] = static_cast<uint8_t>(n);
  k[2] = 0x5D;
  return k;
}

class KvaultdStagedSettleTest : public BinaryTest {
 protected:
  KvaultdStagedSettleTest() : BinaryTest("kvaultd") {}

  void SetUp() override {
    BinaryTest::SetUp();
    daemon_ = std::make_unique<DaemonProcess>(
        dir_,
        std::vector<std::string>{"--storage.host_capacity", "128MiB", "--storage.nvme_capacity",
                                 "0", "--ucx.transports", "posix,cma"});
    ASSERT_TRUE(daemon_->ok()) << daemon_->Stderr();
  }
  void TearDown() override {
    if (daemon_) ::kill(daemon_->pid(), SIGCONT);  // never leave it stopped
    daemon_.reset();
    BinaryTest::TearDown();
  }

  std::unique_ptr<Client> Connect(std::chrono::milliseconds stall_timeout = 30s) {
    ClientConfig config;
    config.server = daemon_->server();
    config.ucx_transports = "posix,cma";
    config.request_timeout = 20s;
    config.stall_timeout = stall_timeout;
    config.reconnect_backoff = 0ms;
    Result<std::unique_ptr<Client>> c = Client::Connect(config);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(*c) : nullptr;
  }

  // Connects (client_), stores kKeys synthetic objects (keys_, their bytes in stored_), and
  // registers page-aligned destinations for them in the test's own memory (dests_, stride_ apart).
  void ConnectStoreAndRegister(std::chrono::milliseconds stall_timeout = 30s) {
    client_ = Connect(stall_timeout);
    ASSERT_NE(client_, nullptr);
    for (uint32_t i = 0; i < kKeys; ++i) keys_.push_back(KeyOf(i));
    ASSERT_NO_FATAL_FAILURE(StoreSyntheticObjects(*client_, keys_, kPayload, stored_));
    stride_ = (object_ + 4095) / 4096 * 4096;
    memory_ = std::make_unique<OwnMemory>(kKeys * stride_);
    Result<MemoryRegion> region = client_->RegisterMemory(memory_->data, memory_->size);
    ASSERT_TRUE(region.ok()) << region.status().ToString();
    registered_ = std::move(*region);
    for (size_t i = 0; i < kKeys; ++i) dests_.push_back({memory_->at(i * stride_, object_)});
  }

  // SIGSTOP, then waits (10 s at most) until every thread of the daemon is stopped (the signal
  // is asynchronous): from then on it answers nothing. TearDown continues it.
  bool StopDaemon() {
    if (::kill(daemon_->pid(), SIGSTOP) != 0) return false;
    const std::filesystem::path tasks = "/proc/" + std::to_string(daemon_->pid()) + "/task";
    auto all_stopped = [&] {
      std::error_code ec;
      size_t seen = 0;
      for (const auto& task : std::filesystem::directory_iterator(tasks, ec)) {
        std::ifstream f(task.path() / "stat");
        const std::string line((std::istreambuf_iterator<char>(f)), {});
        const size_t paren = line.rfind(')');  // the state follows the command name
        if (paren == std::string::npos || paren + 2 >= line.size()) return false;
        const char state = line[paren + 2];
        if (state != 'T' && state != 't') return false;
        ++seen;
      }
      return !ec && seen > 0;
    };
    const auto until = Clock::now() + 10s;
    while (!all_stopped()) {
      if (Clock::now() >= until) return false;
      std::this_thread::sleep_for(1ms);
    }
    return true;
  }

  std::span<const uint8_t> Stored(size_t i) const {
    return stored_.bytes().subspan(i * object_, object_);
  }

  std::unique_ptr<DaemonProcess> daemon_;
  // Declared before the regions, so that they are released while the client is still open.
  std::unique_ptr<Client> client_;
  const uint64_t object_ = SyntheticObjectBytes(kPayload);
  std::vector<BlockKey> keys_;
  MemoryRegion stored_;
  size_t stride_ = 0;
  std::unique_ptr<OwnMemory> memory_;
  MemoryRegion registered_;
  std::vector<LoadDestination> dests_;
};

TEST_F(KvaultdStagedSettleTest, ACancelledLoadNeverWritesTheDestinationAfterSettling) {
  ASSERT_NO_FATAL_FAILURE(ConnectStoreAndRegister());
  Client* client = client_.get();
  OwnMemory& memory = *memory_;

  int written_after = 0;
  // Rounds whose Cancel() found the load still in flight: the ones that test anything. Every
  // tenth round holds the daemon stopped (SIGSTOP) across Load and Cancel, so that some always
  // are; the others cancel at any moment of a running load (before, during or after the daemon
  // writes the staging chunk), which may or may not be in flight.
  int cancelled_in_flight = 0;
  int cancelled_while_running = 0;
  for (int round = 0; round < 100; ++round) {
    const bool stopped = round % 10 == 0;
    if (stopped) {
      ASSERT_TRUE(StopDaemon());
    }
    LoadHandle h = client->Load(Lease{}, keys_, dests_);
    if (!stopped) std::this_thread::sleep_for(std::chrono::microseconds(round % 25 * 40));
    h.Cancel();
    if (stopped) {
      EXPECT_TRUE(h.cancelled()) << "round " << round << ": done before a stopped daemon answered";
      ASSERT_EQ(::kill(daemon_->pid(), SIGCONT), 0);
    }
    if (h.cancelled()) {
      ++cancelled_in_flight;
      if (!stopped) ++cancelled_while_running;
      const Status s = h.Wait(Clock::now() + 1s);
      EXPECT_EQ(s.code(), StatusCode::kUnavailable) << "round " << round << ": " << s.ToString();
      EXPECT_EQ(s.message(), "cancelled") << "round " << round;
    }
    ASSERT_TRUE(h.WaitSettled(Clock::now() + 30s));
    std::memset(memory.data, 0xEE, memory.size);  // the caller owns the buffers again
    // Every reply was handled on the connection's thread before the Pong.
    ASSERT_TRUE(client->Ping().ok());
    if (!memory.All(0xEE)) ++written_after;
  }
  EXPECT_EQ(written_after, 0) << "rounds whose buffers were written after WaitSettled";
  EXPECT_GE(cancelled_in_flight, 10) << "rounds whose load was cancelled in flight";
  RecordProperty("cancelled_in_flight_while_running", cancelled_while_running);
  EXPECT_GT(client->registered_staging().staged_requests, 0u);
}

TEST_F(KvaultdStagedSettleTest,
       ALoadCutOffByAStalledDaemonRetiresItsChunkAndLeavesTheBuffersAlone) {
  ASSERT_NO_FATAL_FAILURE(ConnectStoreAndRegister(200ms));
  Client* client = client_.get();
  OwnMemory& memory = *memory_;

  ASSERT_EQ(::kill(daemon_->pid(), SIGSTOP), 0);
  LoadHandle cut = client->Load(Lease{}, keys_, dests_, {.deadline = Clock::now() + 100ms});
  // The deadline passes, then the stall timeout drops the connection: done and settled.
  EXPECT_FALSE(cut.Wait(Clock::now() + 10s).ok());
  ASSERT_TRUE(cut.WaitSettled(Clock::now() + 10s));
  EXPECT_FALSE(client->connected());
  EXPECT_GT(client->registered_staging().retired_bytes, 0u);
  ASSERT_EQ(::kill(daemon_->pid(), SIGCONT), 0);
  // The woken daemon may still serve the load into its staging chunk; give it time to.
  std::this_thread::sleep_for(500ms);
  EXPECT_TRUE(memory.All(0xEE)) << "the caller's buffers were written after the load settled";

  // The client reconnects, and staged loads are byte-exact in chunks the late writes miss.
  LoadHandle again = client->Load(Lease{}, keys_, dests_);
  ASSERT_TRUE(again.Wait(Clock::now() + 30s).ok());
  for (size_t i = 0; i < kKeys; ++i) {
    ASSERT_TRUE(again.key_status(i).ok()) << i << ": " << again.key_status(i).ToString();
    EXPECT_EQ(std::memcmp(memory.data + i * stride_, Stored(i).data(), object_), 0) << "key " << i;
  }
}

}  // namespace
}  // namespace kvault::testing
