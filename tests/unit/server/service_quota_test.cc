// Tenant quotas through Service (service_test_fixture.h): a store past a tenant's quota_bytes fails
// those keys with resource_exhausted, counted as quota_exceeded (not no_space) in /metrics, while
// a tenant without a quota stores on. The store is given the registry's quotas exactly as kvaultd
// gives them (server/src/daemon/daemon.cc, OpenStore); that wiring itself is checked with a real
// kvaultd in tests/integration/kvaultd_tenant_quota_test.cc.

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <variant>
#include <vector>

#include "service_test_fixture.h"

namespace kvault::server {
namespace {

using namespace service_test;

constexpr uint64_t kPayload = 8192;

class ServiceQuotaTest : public ServiceTest {
 protected:
  void SetUp() override {
    object_ = SyntheticObjectBytes(kPayload);
    std::vector<TenantSpec> specs = TwoTenants();
    specs[0].quota_bytes = 3 * object_;  // team-a: room for three objects; team-b: no quota
    Build({}, 64ull << 20, specs, &metrics_);
  }

  // kvault_rejected_requests_total{reason="<reason>"}; -1 when the series is missing.
  double Rejected(const std::string& reason) const {
    const std::string text = metrics_.Serialize();
    const std::string needle = "\nkvault_rejected_requests_total{reason=\"" + reason + "\"} ";
    const size_t at = text.find(needle);
    if (at == std::string::npos) return -1;
    return std::strtod(text.c_str() + at + needle.size(), nullptr);
  }

  // The asking tenant's entry `name` of a Stats reply; -1 when missing.
  double StatOf(Session& s, const std::string& name) {
    const Message m = service_->Handle(s, transport::Stats{});
    const auto* reply = std::get_if<transport::StatsReply>(&m);
    EXPECT_NE(reply, nullptr);
    if (reply == nullptr) return -1;
    for (const transport::StatEntry& e : reply->entries) {
      if (e.name != name) continue;
      if (const auto* u = std::get_if<uint64_t>(&e.value)) return static_cast<double>(*u);
      return std::get<double>(e.value);
    }
    return -1;
  }

  uint64_t object_ = 0;
  Metrics metrics_;
};

TEST_F(ServiceQuotaTest, KeysPastTheQuotaAreResourceExhaustedAndCountedAsQuota) {
  auto a = LoggedIn("team-a", "token-a");
  ASSERT_EQ(Rejected("quota_exceeded"), 0);
  ASSERT_EQ(Rejected("no_space"), 0);
  const std::vector<BlockKey> keys = {Key(1), Key(2), Key(3), Key(4), Key(5)};
  EXPECT_EQ(
      StoreKeys(*a, keys, kPayload),
      (std::vector<WireStatus>{WireStatus::kOk, WireStatus::kOk, WireStatus::kOk,
                               WireStatus::kResourceExhausted, WireStatus::kResourceExhausted}));
  EXPECT_EQ(Rejected("quota_exceeded"), 2);
  EXPECT_EQ(Rejected("no_space"), 0) << "the store had room; the tenant did not";
  // Each refused key is counted once by the store too (a refusal for quota is not retried).
  EXPECT_EQ(StoreValue(".quota_rejects_total"), 2);
  // The keys within the quota are stored, those past it are not.
  EXPECT_EQ(LookupKeys(*a, keys, false).leading_hits, 3u);
  EXPECT_EQ(LookupKeys(*a, {Key(4)}, false).leading_hits, 0u);
  EXPECT_EQ(LookupKeys(*a, {Key(5)}, false).leading_hits, 0u);
  EXPECT_EQ(StatOf(*a, "tenant.held_bytes"), static_cast<double>(3 * object_));
  EXPECT_EQ(StatOf(*a, "tenant.quota_bytes"), static_cast<double>(3 * object_));
  // A block already held takes no new room: storing it again is ok, and not a rejection.
  EXPECT_EQ(StoreKeys(*a, {Key(1)}, kPayload), std::vector<WireStatus>{WireStatus::kOk});
  EXPECT_EQ(Rejected("quota_exceeded"), 2);

  // Positive control: team-b, without a quota, stores as many on the same store.
  auto b = LoggedIn("team-b", "token-b");
  EXPECT_EQ(StoreKeys(*b, keys, kPayload), std::vector<WireStatus>(5, WireStatus::kOk));
  EXPECT_EQ(LookupKeys(*b, keys, false).leading_hits, 5u);
  EXPECT_EQ(StatOf(*b, "tenant.quota_bytes"), 0);
  EXPECT_EQ(Rejected("quota_exceeded"), 2);
}

TEST_F(ServiceQuotaTest, ADeleteMakesRoomUnderTheQuota) {
  auto a = LoggedIn("team-a", "token-a");
  ASSERT_EQ(StoreKeys(*a, {Key(1), Key(2), Key(3)}, kPayload),
            std::vector<WireStatus>(3, WireStatus::kOk));
  ASSERT_EQ(StoreKeys(*a, {Key(4)}, kPayload),
            std::vector<WireStatus>{WireStatus::kResourceExhausted});
  transport::Delete del;
  del.keys = {Key(1)};
  const Message m = service_->Handle(*a, del);
  ASSERT_EQ(std::get<transport::DeleteReply>(m).statuses[0], WireStatus::kOk);
  EXPECT_EQ(StoreKeys(*a, {Key(4)}, kPayload), std::vector<WireStatus>{WireStatus::kOk});
  EXPECT_EQ(LookupKeys(*a, {Key(4)}, false).leading_hits, 1u);
  EXPECT_EQ(Rejected("quota_exceeded"), 1);
}

}  // namespace
}  // namespace kvault::server
