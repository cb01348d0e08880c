// Service::OnGpuExport (server/src/core/gpu_export.cc) over a real BlockStore whose gpu tier is
// the storage tests' fake (tests/unit/storage/store_test_util.h): auth, draining, the session's
// lease, export off, tenant scoping, and the per-key statuses the store's answers become. The
// fake cannot export CUDA IPC handles, so a block that passes every check comes back
// kUnsupported with the store's reason; real handles are checked in tests/gpu/gpu_export_test.cc.

#include <gtest/gtest.h>

#include <string>
#include <variant>
#include <vector>

#include "../storage/store_test_util.h"
#include "core/service.h"
#include "kvault/common/auth.h"
#include "kvault/storage/block_store.h"
#include "kvault/storage/host_tier.h"
#include "metrics/metrics.h"
#include "tenants_test_util.h"

namespace kvault::server {
namespace {

using testing::TwoTenants;

using storage::testing::FakeTier;
using storage::testing::KeyOf;
using storage::testing::ManualClock;
using storage::testing::ObjectFor;
using transport::Message;
using transport::WireStatus;

constexpr uint64_t kPayload = 8192;  // ~8.3 KB objects

class ServiceGpuExportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    storage::StoreTiers tiers;
    tiers.host =
        std::move(*storage::HostTier::Create({.capacity_bytes = 8 << 20, .huge_pages = false}));
    // Room for one object: a second one pushes the first (unleased) down to host.
    tiers.gpu = std::make_unique<FakeTier>(storage::TierKind::kGpu, 12 << 10);
    storage::BlockStoreOptions options;
    options.policy = "lru";
    options.land_on_gpu = true;
    options.mover_threads = 1;
    options.clock = &clock_;
    auto store = storage::BlockStore::Create(options, std::move(tiers));
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(*store);
    auto tenants = TenantRegistry::Create(TwoTenants());
    ASSERT_TRUE(tenants.ok()) << tenants.status().ToString();
    tenants_.emplace(std::move(*tenants));
    ServiceOptions service;
    service.gpu_ipc_export = true;
    service_ = std::make_unique<Service>(*store_, *tenants_, nullptr, &metrics_, service);
  }

  std::unique_ptr<Session> LoggedIn(Service& service, const std::string& tenant,
                                    const std::string& token) {
    auto s = service.OpenSession();
    transport::Hello hello;
    hello.tenant = tenant;
    Message m = service.Handle(*s, hello);
    transport::Auth auth;
    const AuthDigest proof = AuthProof(TokenHash(token), std::get<transport::HelloReply>(m).nonce);
    std::copy(proof.begin(), proof.end(), auth.proof.begin());
    m = service.Handle(*s, auth);
    EXPECT_TRUE(std::holds_alternative<transport::AuthReply>(m));
    EXPECT_EQ(s->state, SessionState::kAuthenticated);
    return s;
  }

  // Stores a block of the session's tenant and lets the mover take it to the gpu tier.
  void Put(Session& s, const BlockKey& key) {
    Result<bool> put = store_->Put(s.tenant->id, key, ObjectFor(key, kPayload));
    ASSERT_TRUE(put.ok()) << put.status().ToString();
    store_->WaitForMovers();
  }

  transport::LookupReply Lookup(Service& service, Session& s, std::vector<BlockKey> keys) {
    transport::Lookup lookup;
    lookup.keys = std::move(keys);
    lookup.want_lease = true;
    Message m = service.Handle(s, lookup);
    return std::get<transport::LookupReply>(m);
  }

  Message Export(Service& service, Session& s, uint64_t lease, std::vector<BlockKey> keys) {
    return service.Handle(s, transport::GpuExport{lease, std::move(keys)});
  }

  static std::vector<WireStatus> Statuses(const Message& m) {
    std::vector<WireStatus> out;
    const auto* reply = std::get_if<transport::GpuExportReply>(&m);
    EXPECT_NE(reply, nullptr) << "got type " << transport::MessageTypeName(transport::TypeOf(m));
    if (reply == nullptr) return out;
    for (const transport::GpuExportEntry& e : reply->entries) out.push_back(e.status);
    return out;
  }

  static std::string MessageOf(const Message& m) {
    const auto* reply = std::get_if<transport::GpuExportReply>(&m);
    return reply ? reply->message : "";
  }

  ManualClock clock_;
  Metrics metrics_;
  std::unique_ptr<storage::BlockStore> store_;
  std::optional<TenantRegistry> tenants_;
  std::unique_ptr<Service> service_;
};

TEST_F(ServiceGpuExportTest, RefusedBeforeAuthAndWhileDraining) {
  auto fresh = service_->OpenSession();
  Message m = Export(*service_, *fresh, 1, {KeyOf(1)});
  ASSERT_TRUE(std::holds_alternative<transport::ErrorReply>(m));
  EXPECT_EQ(std::get<transport::ErrorReply>(m).status, WireStatus::kUnauthenticated);

  auto s = LoggedIn(*service_, "team-a", "token-a");
  Put(*s, KeyOf(1));
  const uint64_t lease = Lookup(*service_, *s, {KeyOf(1)}).lease_id;
  ASSERT_NE(lease, 0u);
  service_->SetDraining(true);
  m = Export(*service_, *s, lease, {KeyOf(1)});
  ASSERT_TRUE(std::holds_alternative<transport::ErrorReply>(m));
  EXPECT_EQ(std::get<transport::ErrorReply>(m).status, WireStatus::kUnavailable);
}

TEST_F(ServiceGpuExportTest, PerKeyStatusesFollowTheStore) {
  auto s = LoggedIn(*service_, "team-a", "token-a");
  const BlockKey in_host = KeyOf(1), in_gpu = KeyOf(2), uncovered = KeyOf(3), absent = KeyOf(4);
  Put(*s, in_host);
  Put(*s, uncovered);  // pushes in_host down: the fake gpu tier holds one object
  Put(*s, in_gpu);     // pushes uncovered down
  const transport::LookupReply hits = Lookup(*service_, *s, {in_host, in_gpu});
  ASSERT_EQ(hits.leading_hits, 2u);
  ASSERT_EQ(hits.tiers[0], transport::WireTier::kHost);
  ASSERT_EQ(hits.tiers[1], transport::WireTier::kGpu);
  ASSERT_NE(hits.lease_id, 0u);

  const Message m = Export(*service_, *s, hits.lease_id, {in_host, in_gpu, uncovered, absent});
  const std::vector<WireStatus> st = Statuses(m);
  ASSERT_EQ(st.size(), 4u);
  EXPECT_EQ(st[0], WireStatus::kNotFound) << "a block in another tier is a miss";
  // Every check passed; the fake tier is not a GpuTier and cannot export.
  EXPECT_EQ(st[1], WireStatus::kUnsupported);
  EXPECT_NE(MessageOf(m).find("cannot export"), std::string::npos) << MessageOf(m);
  EXPECT_EQ(st[2], WireStatus::kInvalidArgument) << "the lease does not cover it";
  EXPECT_EQ(st[3], WireStatus::kNotFound);
  const auto& reply = std::get<transport::GpuExportReply>(m);
  EXPECT_TRUE(reply.Validate(service_->options().limits).ok());
  // Counted under the message type's name.
  EXPECT_NE(metrics_.Serialize().find("op=\"gpu_export\""), std::string::npos);
}

TEST_F(ServiceGpuExportTest, AGpuResidentLeasedBlockReachesTheTier) {
  auto s = LoggedIn(*service_, "team-a", "token-a");
  Put(*s, KeyOf(1));
  const transport::LookupReply hits = Lookup(*service_, *s, {KeyOf(1)});
  ASSERT_EQ(hits.tiers[0], transport::WireTier::kGpu);
  const Message m = Export(*service_, *s, hits.lease_id, {KeyOf(1)});
  EXPECT_EQ(Statuses(m), std::vector<WireStatus>{WireStatus::kUnsupported});
  EXPECT_NE(MessageOf(m).find("cannot export"), std::string::npos) << MessageOf(m);
}

TEST_F(ServiceGpuExportTest, OnlyALiveLeaseOfThisSessionCounts) {
  auto a = LoggedIn(*service_, "team-a", "token-a");
  auto a2 = LoggedIn(*service_, "team-a", "token-a");
  Put(*a, KeyOf(1));
  const uint64_t lease = Lookup(*service_, *a, {KeyOf(1)}).lease_id;
  ASSERT_NE(lease, 0u);
  // Another session of the same tenant: as if the lease did not exist.
  Message m = Export(*service_, *a2, lease, {KeyOf(1), KeyOf(2)});
  EXPECT_EQ(Statuses(m), std::vector<WireStatus>(2, WireStatus::kLeaseExpired));
  EXPECT_NE(MessageOf(m).find("not a live lease of this session"), std::string::npos);
  // Positive control: the owner gets past the lease check.
  EXPECT_EQ(Statuses(Export(*service_, *a, lease, {KeyOf(1)})),
            std::vector<WireStatus>{WireStatus::kUnsupported});
  // An unknown id, and the owner's lease once it expired in the store.
  EXPECT_EQ(Statuses(Export(*service_, *a, lease + 1000, {KeyOf(1)})),
            std::vector<WireStatus>{WireStatus::kLeaseExpired});
  clock_.Advance(std::chrono::hours(1));
  m = Export(*service_, *a, lease, {KeyOf(1)});
  EXPECT_EQ(Statuses(m), std::vector<WireStatus>{WireStatus::kLeaseExpired});
  EXPECT_NE(MessageOf(m).find("has expired"), std::string::npos) << MessageOf(m);
  // A released lease is gone from the session.
  const uint64_t again = Lookup(*service_, *a, {KeyOf(1)}).lease_id;
  ASSERT_TRUE(std::holds_alternative<transport::ReleaseLeaseReply>(
      service_->Handle(*a, transport::ReleaseLease{again})));
  EXPECT_EQ(Statuses(Export(*service_, *a, again, {KeyOf(1)})),
            std::vector<WireStatus>{WireStatus::kLeaseExpired});
}

TEST_F(ServiceGpuExportTest, AnotherTenantsKeyIsAMiss) {
  auto a = LoggedIn(*service_, "team-a", "token-a");
  auto b = LoggedIn(*service_, "team-b", "token-b");
  Put(*a, KeyOf(1));
  // a's lease keeps its block in the gpu tier while b's arrives (the fake tier holds one object
  // and would otherwise push it down to host, where an export misses for anyone): what b gets
  // below is decided by the tenant, not by where the block is.
  const transport::LookupReply a_hits = Lookup(*service_, *a, {KeyOf(1)});
  ASSERT_EQ(a_hits.tiers[0], transport::WireTier::kGpu);
  ASSERT_NE(a_hits.lease_id, 0u);
  Put(*b, KeyOf(2));
  // b asks for a's key bytes too: a miss for b, so its lease covers only its own block.
  const transport::LookupReply b_hits = Lookup(*service_, *b, {KeyOf(2), KeyOf(1)});
  EXPECT_EQ(b_hits.leading_hits, 1u);
  ASSERT_NE(b_hits.lease_id, 0u);
  // b's own lease, a's key bytes: b has no such block.
  const Message m = Export(*service_, *b, b_hits.lease_id, {KeyOf(1)});
  EXPECT_EQ(Statuses(m), std::vector<WireStatus>{WireStatus::kNotFound});
  EXPECT_EQ(MessageOf(m), "");
  // Positive control: the owner, with the block where it was, gets past every check (the fake
  // tier then refuses to export, as for any gpu-resident leased block).
  const Message owner = Export(*service_, *a, a_hits.lease_id, {KeyOf(1)});
  EXPECT_EQ(Statuses(owner), std::vector<WireStatus>{WireStatus::kUnsupported});
  EXPECT_NE(MessageOf(owner).find("cannot export"), std::string::npos) << MessageOf(owner);
}

TEST_F(ServiceGpuExportTest, ExportOffAnswersUnsupportedWithTheReason) {
  Service off(*store_, *tenants_, nullptr, &metrics_, ServiceOptions{});
  auto s = LoggedIn(off, "team-a", "token-a");
  Put(*s, KeyOf(1));
  const uint64_t lease = Lookup(off, *s, {KeyOf(1)}).lease_id;
  const Message m = Export(off, *s, lease, {KeyOf(1), KeyOf(9)});
  EXPECT_EQ(Statuses(m), std::vector<WireStatus>(2, WireStatus::kUnsupported));
  EXPECT_NE(MessageOf(m).find("storage.gpu_ipc_export"), std::string::npos) << MessageOf(m);
  EXPECT_NE(metrics_.Serialize().find("kvault_rejected_requests_total{reason=\"unsupported\"} 1"),
            std::string::npos);
  // The lease is checked first: a foreign one is lease_expired even with export off.
  EXPECT_EQ(Statuses(Export(off, *s, lease + 1000, {KeyOf(1)})),
            std::vector<WireStatus>{WireStatus::kLeaseExpired});
}

TEST_F(ServiceGpuExportTest, TheReasonIsCutToTheStringLimit) {
  ServiceOptions options;
  options.limits.max_string_bytes = transport::kMinStringBytes;
  Service off(*store_, *tenants_, nullptr, nullptr, options);
  auto s = LoggedIn(off, "team-a", "token-a");
  Put(*s, KeyOf(1));
  const uint64_t lease = Lookup(off, *s, {KeyOf(1)}).lease_id;
  const Message m = Export(off, *s, lease, {KeyOf(1)});
  EXPECT_EQ(MessageOf(m).size(), transport::kMinStringBytes);
  EXPECT_TRUE(std::get<transport::GpuExportReply>(m).Validate(options.limits).ok());
}

}  // namespace
}  // namespace kvault::server
