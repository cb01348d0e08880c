// A clean stop (SIGTERM) writes the blocks only RAM holds to the nvme tier, within
// limits.drain_timeout, so that the restarted daemon serves them (docs/daemon.md, "Stopping"):
// blocks stored into the host tier, and blocks a hit promoted from the nvme tier into RAM (which
// left the nvme tier then). With limits.drain_timeout 0 nothing is written, they are gone, and the
// log says so.

#include <numeric>
#include <string>
#include <vector>

#include "binary_run.h"
#include "daemon_process.h"
#include "kv_test_util.h"
#include "kvault/client.h"
#include "kvault/common/block_key.h"

namespace kvault::testing {
namespace {

constexpr uint64_t kPayload = 64 << 10;

// The chain of n one-token blocks over tokens first_token, first_token + 1, ...
std::vector<BlockKey> Chain(uint32_t first_token, size_t n) {
  std::vector<uint32_t> tokens(n);
  std::iota(tokens.begin(), tokens.end(), first_token);
  return *ChainBlockKeys(BlockKey{}, tokens, 1);
}

class KvaultdCleanStopTest : public BinaryTest {
 protected:
  KvaultdCleanStopTest() : BinaryTest("kvaultd") {}

  // Stores chain `a` (it stays in the host tier), stops the daemon with SIGTERM, restarts it and
  // returns the leading hits of `a` and the tier of its first block then.
  std::pair<uint32_t, Tier> StoreStopRestart(const std::vector<std::string>& args,
                                             const std::vector<BlockKey>& a) {
    auto d = std::make_unique<DaemonProcess>(dir_, args);
    EXPECT_TRUE(d->ok()) << d->Stderr();
    {
      std::unique_ptr<Client> client = ConnectOrFail(d->server());
      if (client == nullptr) return {0, Tier::kNone};
      MemoryRegion region;
      StoreSyntheticObjects(*client, a, kPayload, region);
      const LookupResult before = client->LookupPrefix(a);
      EXPECT_EQ(before.leading_hits, a.size());
      EXPECT_EQ(before.tiers[0], Tier::kHost);
    }
    EXPECT_EQ(d->Terminate(), 0) << d->Stderr();
    stopped_log_ = d->Stderr();
    d = std::make_unique<DaemonProcess>(dir_, args);
    EXPECT_TRUE(d->ok()) << d->Stderr();
    std::unique_ptr<Client> client = ConnectOrFail(d->server());
    if (client == nullptr) return {0, Tier::kNone};
    const LookupResult after = client->LookupPrefix(a);
    return {after.leading_hits, after.tiers.empty() ? Tier::kNone : after.tiers[0]};
  }
  std::string stopped_log_;
};

TEST_F(KvaultdCleanStopTest, BlocksHeldOnlyInRamAreOnTheNvmeTierAfterARestart) {
  const std::vector<BlockKey> a = Chain(100, 8);
  const auto [hits, tier] = StoreStopRestart(
      {"--storage.host_capacity", "64MiB", "--storage.nvme_capacity", "256MiB"}, a);
  EXPECT_EQ(hits, a.size());
  EXPECT_EQ(tier, Tier::kNvme);
  EXPECT_NE(stopped_log_.find("wrote 8 block(s)"), std::string::npos) << stopped_log_;
}

TEST_F(KvaultdCleanStopTest, WithDrainTimeoutZeroTheyAreGone) {
  const std::vector<BlockKey> a = Chain(200, 8);
  const auto [hits, tier] =
      StoreStopRestart({"--storage.host_capacity", "64MiB", "--storage.nvme_capacity", "256MiB",
                        "--limits.drain_timeout", "0"},
                       a);
  EXPECT_EQ(hits, 0u);
  // The log says what was left behind.
  EXPECT_NE(stopped_log_.find("wrote 0 block(s)"), std::string::npos) << stopped_log_;
  EXPECT_NE(stopped_log_.find("8 left in RAM"), std::string::npos) << stopped_log_;
}

// The case that lost data: a hit promotes a block from the nvme tier into RAM (erasing its nvme
// copy); a clean stop puts it back.
TEST_F(KvaultdCleanStopTest, ABlockPromotedByAHitSurvivesACleanStop) {
  const std::vector<std::string> args = {"--storage.host_capacity", "64MiB",
                                         "--storage.nvme_capacity", "256MiB"};
  const std::vector<BlockKey> a = Chain(300, 8);
  ASSERT_EQ(StoreStopRestart(args, a).second, Tier::kNvme);  // now only on the nvme tier
  auto d = std::make_unique<DaemonProcess>(dir_, args);
  ASSERT_TRUE(d->ok()) << d->Stderr();
  {
    std::unique_ptr<Client> client = ConnectOrFail(d->server());
    ASSERT_NE(client, nullptr);
    Result<MemoryRegion> into = client->AllocateMemory(a.size() * (kPayload + 4096));
    ASSERT_TRUE(into.ok());
    // A load pins (and promotes) the blocks: they move to the host tier.
    std::vector<LoadDestination> dests;
    for (size_t i = 0; i < a.size(); ++i) {
      dests.push_back({into->bytes().subspan(i * (kPayload + 4096), kPayload + 4096), 0, 0});
    }
    ASSERT_TRUE(client->Load(Lease{}, a, dests).Wait().ok());
    const LookupResult promoted = client->LookupPrefix(a);
    ASSERT_EQ(promoted.leading_hits, a.size());
    EXPECT_EQ(promoted.tiers[0], Tier::kHost);
  }
  EXPECT_EQ(d->Terminate(), 0) << d->Stderr();
  d = std::make_unique<DaemonProcess>(dir_, args);
  ASSERT_TRUE(d->ok()) << d->Stderr();
  std::unique_ptr<Client> client = ConnectOrFail(d->server());
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(client->LookupPrefix(a).leading_hits, a.size());
}

// A restart with a smaller nvme capacity than the tier holds says so (the movers then evict down
// to its low watermark); one within its capacity does not.
TEST_F(KvaultdCleanStopTest, ARestartOnASmallerNvmeTierSaysSo) {
  const std::vector<std::string> big = {"--storage.host_capacity", "64MiB",
                                        "--storage.nvme_capacity", "256MiB"};
  const std::vector<BlockKey> a = Chain(400, 40);  // 40 x 64 KiB: 2.5 MiB on the nvme tier
  ASSERT_EQ(StoreStopRestart(big, a).first, a.size());
  {
    DaemonProcess same(dir_, big);
    ASSERT_TRUE(same.ok()) << same.Stderr();
    EXPECT_EQ(same.Terminate(), 0);
    EXPECT_EQ(same.Stderr().find("over its capacity"), std::string::npos) << same.Stderr();
  }
  DaemonProcess small(dir_, {"--storage.host_capacity", "64MiB", "--storage.nvme_capacity", "1MiB",
                             "--limits.max_block_bytes", "1MiB"});
  ASSERT_TRUE(small.ok()) << small.Stderr();
  EXPECT_NE(small.Stderr().find("the nvme tier holds 2 MiB (40 blocks) from before, over its "
                                "capacity of 1 MiB"),
            std::string::npos)
      << small.Stderr();
}

}  // namespace
}  // namespace kvault::testing
