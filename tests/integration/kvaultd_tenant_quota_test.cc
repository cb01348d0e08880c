// A tenant's quota_bytes from kvaultd's tenants file (docs/daemon.md, "Isolation, leases,
// quotas"), end to end with a real kvaultd and libkvault: the daemon hands each tenant's quota to
// its store, so a store past it fails those keys with resource_exhausted, counted as
// quota_exceeded on /metrics, while a tenant without a quota stores on. (Service's side of it, with
// a store given the quotas directly, is tests/unit/server/service_quota_test.cc.)

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "binary_run.h"
#include "daemon_process.h"
#include "kv_test_util.h"
#include "kvault/client.h"
#include "kvault/common/auth.h"
#include "kvault/common/synthetic_block.h"
#include "raw_connection.h"

namespace kvault::testing {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr uint64_t kPayload = 4096;

class KvaultdTenantQuotaTest : public BinaryTest {
 protected:
  KvaultdTenantQuotaTest() : BinaryTest("kvaultd") {}

  // kvault_rejected_requests_total{reason="<reason>"} from /metrics; -1 when absent.
  static double Rejected(const DaemonProcess& d, const std::string& reason) {
    return MetricValue(d.http_port(), "kvault_rejected_requests_total{reason=\"" + reason + "\"}")
        .value_or(-1);
  }
};

// Stores a synthetic object under each of `keys` from one region of `client`; the handle, waited
// on (the request completes whatever each key's status).
StoreHandle StoreObjects(Client& client, const std::vector<BlockKey>& keys, MemoryRegion& region) {
  const uint64_t object = SyntheticObjectBytes(kPayload);
  Result<MemoryRegion> allocated = client.AllocateMemory(object * keys.size());
  EXPECT_TRUE(allocated.ok()) << allocated.status().ToString();
  std::vector<std::span<const uint8_t>> sources;
  if (allocated.ok()) {
    region = std::move(*allocated);
    for (size_t i = 0; i < keys.size(); ++i) {
      std::span<uint8_t> bytes = region.bytes().subspan(i * object, object);
      EXPECT_TRUE(WriteSyntheticBlock(keys[i], kPayload, bytes).ok());
      sources.push_back(bytes);
    }
  }
  StoreHandle h = client.Store(keys, sources);
  const Status waited = h.Wait(Clock::now() + 30s);
  EXPECT_TRUE(waited.ok()) << waited.ToString();
  return h;
}

TEST_F(KvaultdTenantQuotaTest, AStorePastTheQuotaIsRefusedAndCountedWhileOthersStoreOn) {
  const uint64_t object = SyntheticObjectBytes(kPayload);
  {
    // "a" may hold three objects; "b" has no quota.
    std::ofstream f(dir_ / "tenants.yaml");
    f << "tenants:\n  - name: a\n    token_sha256: " << HexEncode(TokenHash("ta"))
      << "\n    quota_bytes: " << 3 * object
      << "\n  - name: b\n    token_sha256: " << HexEncode(TokenHash("tb"))
      << "\n    quota_bytes: 0\n";
  }
  fs::permissions(dir_ / "tenants.yaml", fs::perms::owner_read | fs::perms::owner_write);
  DaemonProcess d(dir_, {"--auth.tenants_file", (dir_ / "tenants.yaml").string()});
  ASSERT_TRUE(d.ok()) << d.Stderr();
  Result<std::unique_ptr<Client>> a = Client::Connect(TenantClientConfig(d.server(), "a", "ta"));
  Result<std::unique_ptr<Client>> b = Client::Connect(TenantClientConfig(d.server(), "b", "tb"));
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  ASSERT_EQ(Rejected(d, "quota_exceeded"), 0);

  std::vector<BlockKey> keys;
  for (uint8_t i = 1; i <= 5; ++i) {
    BlockKey k{};
    k.fill(i);
    keys.push_back(k);
  }
  MemoryRegion a_region;
  const StoreHandle stored = StoreObjects(**a, keys, a_region);
  ASSERT_EQ(stored.size(), keys.size());
  for (size_t i = 0; i < 3; ++i) EXPECT_TRUE(stored.key_status(i).ok()) << i;
  for (size_t i = 3; i < 5; ++i) {
    EXPECT_EQ(stored.key_status(i).code(), StatusCode::kResourceExhausted)
        << i << ": " << stored.key_status(i).ToString();
  }
  EXPECT_EQ((*a)->LookupPrefix(keys).leading_hits, 3u);
  EXPECT_EQ(Rejected(d, "quota_exceeded"), 2);
  EXPECT_EQ(Rejected(d, "no_space"), 0) << "the daemon had room; the tenant did not";

  // Positive control: b, without a quota, stores the same keys (its own blocks) on that daemon.
  MemoryRegion b_region;
  const StoreHandle b_stored = StoreObjects(**b, keys, b_region);
  EXPECT_EQ(b_stored.ok_count(), keys.size());
  EXPECT_EQ((*b)->LookupPrefix(keys).leading_hits, keys.size());
  EXPECT_EQ(Rejected(d, "quota_exceeded"), 2);
}

}  // namespace
}  // namespace kvault::testing
