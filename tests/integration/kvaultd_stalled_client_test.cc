// kvaultd with a client whose data plane stops answering: its Load stalls in the daemon until the
// transfer deadline (limits.io_timeout), every other client is served meanwhile, whichever io
// thread it was accepted onto, and no other client's transfer fails when the deadline passes and
// the daemon closes the stalled endpoint, on the one UCX worker they all share.
//
// The stalled client is a raw control connection whose Hello names a real UCX worker (TCP) of
// this process that is never progressed: the daemon's PUT into its memory can neither finish nor
// fail before the deadline.

#include <atomic>
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
// The daemon's transfer deadline (limits.io_timeout): long enough that the other clients are
// done well before it on a noisy two-core machine.
constexpr std::chrono::seconds kDeadline{8};

class KvaultdStalledClientTest : public BinaryTest {
 protected:
  KvaultdStalledClientTest() : BinaryTest("kvaultd") {}
};

// Over TCP, where a transfer can stall.
std::unique_ptr<Client> Connect(const DaemonProcess& d) { return ConnectOrFail(d.server(), "tcp"); }

TEST_F(KvaultdStalledClientTest, OtherClientsAreServedWhileOnesTransferStalls) {
  // One UCX worker: the stalled client shares it with everyone else.
  DaemonProcess d(dir_, {"--ucx.transports", "tcp", "--ucx.workers", "1", "--limits.io_timeout",
                         std::to_string(kDeadline.count()) + "s", "--storage.nvme_capacity", "0"});
  ASSERT_TRUE(d.ok()) << d.Stderr();

  // One block for everyone to load.
  auto owner = Connect(d);
  ASSERT_NE(owner, nullptr);
  const uint32_t tokens[1] = {7};
  const BlockKey key = NextBlockKey(BlockKey{}, tokens);
  const uint64_t object = SyntheticObjectBytes(kPayload);
  {
    MemoryRegion stored;
    StoreSyntheticObjects(*owner, {key}, kPayload, stored);
    ASSERT_FALSE(HasFatalFailure());
  }

  // The stalled client: a TCP worker that nobody progresses, and memory registered on it.
  transport::UcxContextOptions ucx;
  ucx.transports = "tcp";
  Result<transport::UcxContext> context = transport::UcxContext::Create(ucx);
  ASSERT_TRUE(context.ok()) << context.status().ToString();
  Result<transport::UcxWorker> worker = transport::UcxWorker::Create(*context);
  ASSERT_TRUE(worker.ok()) << worker.status().ToString();
  Result<transport::UcxMemory> memory = transport::UcxMemory::Allocate(*context, object);
  ASSERT_TRUE(memory.ok()) << memory.status().ToString();
  Result<std::vector<uint8_t>> rkey = memory->PackRemoteKey();
  ASSERT_TRUE(rkey.ok()) << rkey.status().ToString();

  RawConnection stalled(d.control_port());
  ASSERT_TRUE(stalled.connected());
  ASSERT_TRUE(stalled.Login("", "", worker->address(), &*worker));

  // A bystander loads the block again and again from before the stall until after its
  // deadline has passed (the daemon then closes the stalled endpoint): none of its transfers may
  // fail for it.
  std::atomic<bool> done{false};
  std::atomic<int> loads{0}, failures{0};
  std::string first_failure;
  auto bystander_client = Connect(d);
  ASSERT_NE(bystander_client, nullptr);
  Result<MemoryRegion> bystander_region = bystander_client->AllocateMemory(object);
  ASSERT_TRUE(bystander_region.ok());
  std::thread bystander([&] {
    while (!done.load()) {
      std::vector<LoadDestination> dst = {{bystander_region->bytes()}};
      LoadHandle loaded = bystander_client->Load(Lease{}, std::span(&key, 1), dst);
      const Status waited = loaded.Wait(Clock::now() + 10s);
      loads.fetch_add(1);
      if (!waited.ok() || !loaded.key_status(0).ok()) {
        if (failures.fetch_add(1) == 0) {
          first_failure = waited.ok() ? loaded.key_status(0).ToString() : waited.ToString();
        }
      }
    }
  });
  struct JoinAtExit {
    std::atomic<bool>& done;
    std::thread& thread;
    ~JoinAtExit() {
      done.store(true);
      if (thread.joinable()) thread.join();
    }
  } join_at_exit{done, bystander};

  transport::Load load;
  load.remote_key = *rkey;
  load.entries.push_back({key, reinterpret_cast<uint64_t>(memory->address()), object, 0, 0});
  const auto load_sent = Clock::now();
  ASSERT_TRUE(stalled.SendMessage(load, 3));

  // Meanwhile: more clients than kvaultd's io threads used to be (4, round-robin), each
  // connecting, looking up and loading the block, all well within the stalled transfer's
  // deadline, while the stalled Load is still unanswered.
  std::this_thread::sleep_for(100ms);  // the stalled Load is in the daemon's hands
  for (int i = 0; i < 8; ++i) {
    const auto start = Clock::now();
    auto c = Connect(d);
    ASSERT_NE(c, nullptr) << "client " << i << "\n" << d.Stderr();
    LookupResult hit = c->LookupPrefix(std::span(&key, 1));
    ASSERT_TRUE(hit.status.ok()) << hit.status.ToString();
    EXPECT_EQ(hit.leading_hits, 1u);
    Result<MemoryRegion> region = c->AllocateMemory(object);
    ASSERT_TRUE(region.ok());
    std::vector<LoadDestination> dst = {{region->bytes()}};
    LoadHandle loaded = c->Load(Lease{}, std::span(&key, 1), dst);
    ASSERT_TRUE(loaded.Wait(Clock::now() + 10s).ok());
    ASSERT_TRUE(loaded.key_status(0).ok()) << loaded.key_status(0).ToString();
    EXPECT_TRUE(IsSyntheticBlockFor(key, region->bytes().first(loaded.object_size(0))));
    // A client that waited on the stalled one would take until its deadline: half of it is a
    // bound no descheduling reaches (the ordering check below is the sharp one).
    EXPECT_LT(Clock::now() - start, kDeadline / 2)
        << "client " << i << " waited on the stalled one";
  }
  ASSERT_LT(Clock::now() - load_sent, kDeadline - 1s) << "too slow to tell a stall from service";
  EXPECT_FALSE(stalled.Readable())
      << "the stalled client's Load was answered before the other clients were done";

  // The positive control: the stalled Load does end, at its deadline, as a failed transfer of
  // its key.
  auto reply = stalled.ReadMessage(kDeadline + 10s);
  const auto replied = Clock::now();
  const int loads_before_reply = loads.load();
  ASSERT_TRUE(reply.has_value()) << d.Stderr();
  ASSERT_TRUE(std::holds_alternative<transport::LoadReply>(reply->first));
  const auto& outcomes = std::get<transport::LoadReply>(reply->first).outcomes;
  ASSERT_EQ(outcomes.size(), 1u);
  EXPECT_EQ(outcomes[0].status, WireStatus::kTransferFailed);
  EXPECT_GE(replied - load_sent, kDeadline - 500ms);
  EXPECT_LT(replied - load_sent, kDeadline + 5s);

  // The bystander was loading before the reply and goes on loading after it, without a failure.
  while (loads.load() < loads_before_reply + 10 && Clock::now() - replied < 10s) {
    std::this_thread::sleep_for(10ms);
  }
  done.store(true);
  bystander.join();
  EXPECT_GT(loads_before_reply, 10);
  EXPECT_GE(loads.load(), loads_before_reply + 10);
  EXPECT_EQ(failures.load(), 0) << first_failure << "\n" << d.Stderr();
  EXPECT_TRUE(owner->Ping().ok());
}

}  // namespace
}  // namespace kvault::testing
