// Client::RetireMemory and RetiredStaging (client/src/retired_staging.h) behind it: memory that a
// cut-off transfer may still write is kept mapped and out of use, for at most
// RetiredStaging::kHold and at most kMostRegions regions, oldest freed first, and outlives the
// KvStore or PagedKvStore that retired it. The regions are real ones of a client connected to a
// real kvaultd.

#include <cstring>

#include "binary_run.h"
#include "daemon_process.h"
#include "kv_test_util.h"
#include "kvault/client.h"
#include "retired_staging.h"

namespace kvault::testing {
namespace {

using client_internal::RetiredStaging;
using std::chrono::seconds;

constexpr size_t kBytes = 1 << 16;

// A real kvaultd and a client of it, whose regions the tests retire.
class RetiredStagingTest : public BinaryTest {
 protected:
  RetiredStagingTest() : BinaryTest("kvaultd") {}
  void SetUp() override {
    BinaryTest::SetUp();
    daemon_ = std::make_unique<DaemonProcess>(dir_, std::vector<std::string>{});
    ASSERT_TRUE(daemon_->ok()) << daemon_->Stderr();
    client_ = ConnectOrFail(daemon_->server());
    ASSERT_NE(client_, nullptr);
  }
  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<Client> client_;
};

TEST_F(RetiredStagingTest, KeepsRetiredRegionsMappedWithinItsBounds) {
  Client* client = client_.get();
  RetiredStaging retired;
  const Clock::time_point t0 = Clock::now();
  std::vector<uint8_t*> bases;
  for (size_t i = 0; i <= RetiredStaging::kMostRegions; ++i) {
    Result<MemoryRegion> region = client->AllocateMemory(kBytes);
    ASSERT_TRUE(region.ok()) << region.status().ToString();
    std::memset(region->data(), static_cast<int>(i + 1), kBytes);
    bases.push_back(region->data());
    retired.Retire(std::move(*region), t0 + seconds(i));
  }
  // One more than the bound: the oldest was freed, the others are kept, still mapped and intact
  // (a freed region is unmapped: reading it would crash the test).
  EXPECT_EQ(retired.size(), RetiredStaging::kMostRegions);
  for (size_t i = 1; i < bases.size(); ++i) {
    EXPECT_EQ(bases[i][0], i + 1);
    EXPECT_EQ(bases[i][kBytes - 1], i + 1);
  }
  // Regions retired more than kHold ago are freed at the next Retire (an empty region adds
  // nothing): those of t0 + 1 s and t0 + 2 s, not that of t0 + 3 s.
  retired.Retire(MemoryRegion(),
                 t0 + seconds(2) + RetiredStaging::kHold + std::chrono::milliseconds(500));
  EXPECT_EQ(retired.size(), RetiredStaging::kMostRegions - 2);
  EXPECT_EQ(bases[3][0], 4);
  retired.Retire(MemoryRegion(), t0 + seconds(10) + RetiredStaging::kHold);
  EXPECT_EQ(retired.size(), 0u);
  // The client still allocates (nothing it holds was disturbed).
  EXPECT_TRUE(client->AllocateMemory(kBytes).ok());
}

// A region handed to Client::RetireMemory stays mapped after the caller dropped it (it would be
// unmapped otherwise: reading it would crash the test), and the client goes on working.
TEST_F(RetiredStagingTest, ClientRetireMemoryKeepsTheRegionMapped) {
  Client* client = client_.get();
  Result<MemoryRegion> region = client->AllocateMemory(kBytes);
  ASSERT_TRUE(region.ok()) << region.status().ToString();
  std::memset(region->data(), 0x5A, kBytes);
  const uint8_t* base = region->data();
  client->RetireMemory(std::move(*region));
  client->RetireMemory(MemoryRegion());  // ignored
  EXPECT_EQ(base[0], 0x5A);
  EXPECT_EQ(base[kBytes - 1], 0x5A);
  EXPECT_TRUE(client->Ping().ok());
  Result<MemoryRegion> next = client->AllocateMemory(kBytes);
  ASSERT_TRUE(next.ok());
  EXPECT_NE(next->data(), base);  // the retired range is not handed out again
}

}  // namespace
}  // namespace kvault::testing
