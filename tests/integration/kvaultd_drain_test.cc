// kvaultd's SIGTERM path with a request in flight (docs/daemon.md, "Stopping"): the drain waits
// for the request and its reply, and past limits.drain_timeout (0: at once) the daemon cuts the
// transfer instead of waiting for its deadline (limits.io_timeout).
//
// The request in flight is a Load into a client that stops answering: a raw control connection
// whose Hello names a real UCX worker (TCP) of this process that is never progressed, as in
// kvaultd_stalled_client_test.cc, so the daemon's PUT can neither finish nor fail before the
// transfer deadline.

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "binary_run.h"
#include "daemon_process.h"
#include "kv_test_util.h"
#include "kvault/client.h"
#include "kvault/common/synthetic_block.h"
#include "kvault/transport/ucx/ucx_context.h"
#include "kvault/transport/ucx/ucx_memory.h"
#include "kvault/transport/ucx/ucx_worker.h"
#include "raw_connection.h"

namespace kvault::testing {
namespace {

using namespace std::chrono_literals;
using transport::WireStatus;

constexpr uint64_t kPayload = 1 << 20;

class KvaultdDrainTest : public BinaryTest {
 protected:
  KvaultdDrainTest() : BinaryTest("kvaultd") {}

  // Starts kvaultd over TCP with `args`, stores one block and sends a Load of it from a client
  // whose worker never answers; the Load is then in the daemon's hands. Check ok() after.
  void StartWithStalledLoad(std::vector<std::string> args) {
    args.insert(args.end(),
                {"--ucx.transports", "tcp", "--ucx.workers", "1", "--storage.nvme_capacity", "0"});
    daemon_ = std::make_unique<DaemonProcess>(dir_, args);
    ASSERT_TRUE(daemon_->ok()) << daemon_->Stderr();
    auto owner = ConnectOrFail(daemon_->server(), "tcp");
    ASSERT_NE(owner, nullptr);
    const uint32_t tokens[1] = {7};
    const BlockKey key = NextBlockKey(BlockKey{}, tokens);
    const uint64_t object = SyntheticObjectBytes(kPayload);
    MemoryRegion stored;
    StoreSyntheticObjects(*owner, {key}, kPayload, stored);
    if (::testing::Test::HasFatalFailure()) return;

    transport::UcxContextOptions ucx;
    ucx.transports = "tcp";
    Result<transport::UcxContext> context = transport::UcxContext::Create(ucx);
    ASSERT_TRUE(context.ok()) << context.status().ToString();
    context_ = std::make_unique<transport::UcxContext>(std::move(*context));
    Result<transport::UcxWorker> worker = transport::UcxWorker::Create(*context_);
    ASSERT_TRUE(worker.ok()) << worker.status().ToString();
    worker_ = std::make_unique<transport::UcxWorker>(std::move(*worker));
    Result<transport::UcxMemory> memory = transport::UcxMemory::Allocate(*context_, object);
    ASSERT_TRUE(memory.ok()) << memory.status().ToString();
    memory_ = std::make_unique<transport::UcxMemory>(std::move(*memory));
    Result<std::vector<uint8_t>> rkey = memory_->PackRemoteKey();
    ASSERT_TRUE(rkey.ok()) << rkey.status().ToString();

    stalled_ = std::make_unique<RawConnection>(daemon_->control_port());
    ASSERT_TRUE(stalled_->Login("", "", worker_->address(), worker_.get()));
    transport::Load load;
    load.remote_key = *rkey;
    load.entries.push_back({key, reinterpret_cast<uint64_t>(memory_->address()), object, 0, 0});
    ASSERT_TRUE(stalled_->SendMessage(load, 3));
    // The Load is in the daemon's hands once its bytes count as in transfer (the owner's Store
    // was answered, so its bytes no longer do): from then on it is a request in flight.
    const bool in_transfer = Eventually(
        [&] {
          return MetricValue(daemon_->http_port(), "kvault_inflight_bytes").value_or(0) >= object;
        },
        20s);
    ASSERT_TRUE(in_transfer) << "the Load never reached its transfer (answered at once: "
                             << stalled_->Readable() << ")\n"
                             << daemon_->Stderr();
    ASSERT_FALSE(stalled_->Readable()) << "the Load was answered: it did not stall";
  }

  // Destroyed in reverse: the connection and the daemon go before the worker, its memory and
  // their UCX context.
  std::unique_ptr<transport::UcxContext> context_;
  std::unique_ptr<transport::UcxMemory> memory_;
  std::unique_ptr<transport::UcxWorker> worker_;
  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<RawConnection> stalled_;
};

// SIGTERM waits for the request in flight: the stalled Load is answered (its transfer failed at
// its deadline) before the connection closes, and the daemon then exits 0.
TEST_F(KvaultdDrainTest, SigtermWaitsForTheRequestInFlight) {
  // The transfer deadline (5 s from the Load's start) is well past the 2 s checked below, however
  // late the Load was seen in flight on a loaded machine.
  StartWithStalledLoad({"--limits.io_timeout", "5s", "--limits.drain_timeout", "30s"});
  if (HasFatalFailure()) return;
  const auto start = Clock::now();
  int exit_code = -2;
  std::thread stopper([&] { exit_code = daemon_->Terminate(60s); });
  auto reply = stalled_->ReadMessage(20s);
  stopper.join();
  ASSERT_TRUE(reply.has_value()) << "no reply before the connection closed";
  ASSERT_TRUE(std::holds_alternative<transport::LoadReply>(reply->first));
  const auto& outcomes = std::get<transport::LoadReply>(reply->first).outcomes;
  ASSERT_EQ(outcomes.size(), 1u);
  EXPECT_EQ(outcomes[0].status, WireStatus::kTransferFailed);
  EXPECT_EQ(exit_code, 0);
  EXPECT_GE(Clock::now() - start, 2s) << "the daemon did not wait for the request in flight";
}

// With limits.drain_timeout 0 the daemon stops at once: it cuts the stalled transfer instead of
// waiting for its 20 s deadline.
TEST_F(KvaultdDrainTest, DrainTimeoutZeroCutsAStalledTransfer) {
  StartWithStalledLoad({"--limits.io_timeout", "20s", "--limits.drain_timeout", "0"});
  if (HasFatalFailure()) return;
  const auto start = Clock::now();
  EXPECT_EQ(daemon_->Terminate(60s), 0);
  const auto took = Clock::now() - start;
  EXPECT_LT(took, 5s) << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                      << " ms\n"
                      << daemon_->Stderr();
  EXPECT_TRUE(stalled_->ClosedWithin(5s));
  EXPECT_NE(daemon_->Stderr().find("stopping with requests in flight: disconnected the data plane"),
            std::string::npos)
      << daemon_->Stderr();
}

}  // namespace
}  // namespace kvault::testing
