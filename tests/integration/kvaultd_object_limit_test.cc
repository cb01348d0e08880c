// The daemon's object size limit (limits.max_block_bytes) against a real kvaultd: a load buffer
// larger than the limit is fine (no object fills more of it), and blocks stored under a higher
// limit that the nvme tier still holds after a restart with a lower one are dropped, not served
// as replies the protocol cannot carry (which closed the connection).

#include <algorithm>
#include <cstring>

#include "binary_run.h"
#include "daemon_process.h"
#include "kv_test_util.h"
#include "kvault/client.h"
#include "kvault/common/synthetic_block.h"

namespace kvault::testing {
namespace {

using namespace std::chrono_literals;

std::vector<BlockKey> KeysNamed(uint8_t tag, size_t n) {
  std::vector<BlockKey> keys(n);
  for (size_t i = 0; i < n; ++i) {
    keys[i].fill(0x5A);
    keys[i][0] = tag;
    keys[i][1] = static_cast<uint8_t>(i);
  }
  return keys;
}

class KvaultdObjectLimitTest : public BinaryTest {
 protected:
  KvaultdObjectLimitTest() : BinaryTest("kvaultd") {}
};

TEST_F(KvaultdObjectLimitTest, ALoadBufferLargerThanTheLimitReceivesTheWholeObject) {
  DaemonProcess d(dir_, {"--limits-max-block-bytes", "64KiB"});
  ASSERT_TRUE(d.ok()) << d.Stderr();
  std::unique_ptr<Client> c = ConnectOrFail(d.server());
  ASSERT_NE(c, nullptr);
  const std::vector<BlockKey> keys = KeysNamed(1, 2);
  MemoryRegion stored;
  StoreSyntheticObjects(*c, keys, 16 << 10, stored);
  const uint64_t object = SyntheticObjectBytes(16 << 10);

  Result<MemoryRegion> big = c->AllocateMemory(256 << 10);  // 4x the daemon's limit
  ASSERT_TRUE(big.ok()) << big.status().ToString();
  std::vector<LoadDestination> whole = {{big->bytes()}};
  LoadHandle h = c->Load(Lease{}, std::span(&keys[1], 1), whole);
  ASSERT_TRUE(h.Wait(Clock::now() + 10s).ok());
  ASSERT_TRUE(h.key_status(0).ok()) << h.key_status(0).ToString();
  EXPECT_EQ(h.object_size(0), object);
  EXPECT_TRUE(IsSyntheticBlockFor(keys[1], big->bytes().first(object)));

  // A range of the object into the same large buffer.
  std::vector<LoadDestination> range = {{big->bytes(), 100, 1000}};
  LoadHandle part = c->Load(Lease{}, std::span(&keys[0], 1), range);
  ASSERT_TRUE(part.Wait(Clock::now() + 10s).ok());
  ASSERT_TRUE(part.key_status(0).ok()) << part.key_status(0).ToString();
  EXPECT_EQ(std::memcmp(big->bytes().data(), stored.bytes().data() + 100, 1000), 0);

  // Asking for bytes past the limit cannot be served by any object: refused at once.
  std::vector<LoadDestination> past = {{big->bytes(), 65 << 10, 0}};
  LoadHandle refused = c->Load(Lease{}, std::span(&keys[0], 1), past);
  EXPECT_EQ(refused.Wait(Clock::now() + 10s).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(c->Ping().ok());
}

TEST_F(KvaultdObjectLimitTest, BlocksOverALoweredLimitAreDroppedAtRestartAndTheRestServed) {
  // LRU: the small blocks, stored first, are the first a full host tier demotes.
  const std::vector<std::string> common = {
      "--storage-host-capacity",  "1MiB",  "--storage-nvme-capacity", "256MiB",
      "--storage-promote-on-hit", "false", "--storage-policy",        "lru"};
  auto with_limit = [&](const std::string& limit) {
    std::vector<std::string> args = common;
    args.insert(args.end(), {"--limits-max-block-bytes", limit});
    return args;
  };
  const std::vector<BlockKey> small = KeysNamed(2, 4);
  const std::vector<BlockKey> large = KeysNamed(3, 6);
  {
    DaemonProcess d(dir_, with_limit("1MiB"));
    ASSERT_TRUE(d.ok()) << d.Stderr();
    std::unique_ptr<Client> c = ConnectOrFail(d.server());
    ASSERT_NE(c, nullptr);
    MemoryRegion a, b;
    StoreSyntheticObjects(*c, small, 16 << 10, a);
    StoreSyntheticObjects(*c, large, 300 << 10, b);  // pushes the older blocks into nvme
    ASSERT_TRUE(WaitUntilAllInTier(*c, small, Tier::kNvme));
    const LookupResult r = c->LookupPrefix(large);
    ASSERT_EQ(r.leading_hits, large.size());
    ASSERT_GE(std::count(r.tiers.begin(), r.tiers.end(), Tier::kNvme), 1)
        << "no large block reached nvme: the test would prove nothing";
    c.reset();
    ASSERT_EQ(d.Terminate(), 0) << d.Stderr();
  }
  DaemonProcess d(dir_, with_limit("128KiB"));
  ASSERT_TRUE(d.ok()) << d.Stderr();
  std::unique_ptr<Client> c = ConnectOrFail(d.server());
  ASSERT_NE(c, nullptr);
  // Positive control: the small blocks, within both limits, are served from nvme byte for byte.
  Result<MemoryRegion> into = c->AllocateMemory(1 << 20);
  ASSERT_TRUE(into.ok());
  for (const BlockKey& k : small) {
    std::vector<LoadDestination> dst = {{into->bytes()}};
    LoadHandle h = c->Load(Lease{}, std::span(&k, 1), dst);
    ASSERT_TRUE(h.Wait(Clock::now() + 10s).ok());
    ASSERT_TRUE(h.key_status(0).ok()) << h.key_status(0).ToString();
    EXPECT_TRUE(IsSyntheticBlockFor(k, into->bytes().first(h.object_size(0))));
  }
  // The large blocks are gone, not half-served: every lookup misses, every load is a miss, and
  // the connection stays up through all of it.
  const LookupResult r = c->LookupPrefix(large);
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.leading_hits, 0u);
  for (const BlockKey& k : large) {
    std::vector<LoadDestination> dst = {{into->bytes()}};
    LoadHandle h = c->Load(Lease{}, std::span(&k, 1), dst);
    ASSERT_TRUE(h.Wait(Clock::now() + 10s).ok());
    EXPECT_EQ(h.key_status(0).code(), StatusCode::kNotFound) << h.key_status(0).ToString();
  }
  EXPECT_TRUE(c->Ping().ok());
  EXPECT_NE(d.Stderr().find("larger than the largest object now allowed"), std::string::npos)
      << d.Stderr();
  EXPECT_NE(d.Stderr().find("limits.max_block_bytes"), std::string::npos) << d.Stderr();
  EXPECT_EQ(d.Terminate(), 0) << d.Stderr();
}

}  // namespace
}  // namespace kvault::testing
