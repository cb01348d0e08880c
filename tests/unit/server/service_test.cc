// Service (server/src/core/service.h) over a real BlockStore with a host tier
// (service_test_fixture.h): the handshake, tenant isolation, store/lookup/load, leases per
// session, failure paths.

#include "core/service.h"

#include <gtest/gtest.h>

#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "service_test_fixture.h"

namespace kvault::server {
namespace {

using namespace service_test;

TEST_F(ServiceTest, BlockRequestsBeforeAuthAreRefused) {
  auto s = service_->OpenSession();
  Message m = service_->Handle(*s, transport::Lookup{});
  const auto* error = std::get_if<transport::ErrorReply>(&m);
  ASSERT_NE(error, nullptr);
  EXPECT_EQ(error->status, WireStatus::kUnauthenticated);
  // Ping works before auth.
  m = service_->Handle(*s, transport::Ping{42});
  ASSERT_TRUE(std::holds_alternative<transport::Pong>(m));
  EXPECT_EQ(std::get<transport::Pong>(m).payload, 42u);
}

TEST_F(ServiceTest, WrongTokenUnknownTenantAndReplayedNonceFail) {
  auto s = service_->OpenSession();
  Message m = Login(*s, "team-a", "token-b");
  ASSERT_TRUE(std::holds_alternative<transport::ErrorReply>(m));
  EXPECT_EQ(std::get<transport::ErrorReply>(m).status, WireStatus::kUnauthenticated);
  m = Login(*s, "team-c", "token-a");
  ASSERT_TRUE(std::holds_alternative<transport::ErrorReply>(m));
  // Auth without a fresh Hello (the nonce is single-use) fails even with the right proof.
  transport::Auth again;
  m = service_->Handle(*s, again);
  ASSERT_TRUE(std::holds_alternative<transport::ErrorReply>(m));
  EXPECT_NE(s->state, SessionState::kAuthenticated);
  // Positive control: the right token works on the same session.
  m = Login(*s, "team-a", "token-a");
  ASSERT_TRUE(std::holds_alternative<transport::AuthReply>(m));
  EXPECT_EQ(std::get<transport::AuthReply>(m).status, WireStatus::kOk);
  EXPECT_EQ(s->state, SessionState::kAuthenticated);
  EXPECT_TRUE(s->peer.has_value());
}

TEST_F(ServiceTest, StoreLookupLoadRoundTrip) {
  auto s = LoggedIn("team-a", "token-a");
  const std::vector<BlockKey> keys = {Key(1), Key(2), Key(3)};
  EXPECT_EQ(StoreKeys(*s, keys), std::vector<WireStatus>(3, WireStatus::kOk));
  // Storing again is a no-op success.
  EXPECT_EQ(StoreKeys(*s, keys), std::vector<WireStatus>(3, WireStatus::kOk));

  const transport::LookupReply hits = LookupKeys(*s, {Key(1), Key(2), Key(9), Key(3)}, true);
  EXPECT_EQ(hits.leading_hits, 2u);
  ASSERT_EQ(hits.tiers.size(), 4u);
  EXPECT_EQ(hits.tiers[0], transport::WireTier::kHost);
  EXPECT_EQ(hits.tiers[2], transport::WireTier::kNone);
  EXPECT_NE(hits.lease_id, 0u);

  const std::vector<uint8_t> want = *MakeSyntheticBlock(Key(2), 8192);
  std::vector<uint8_t> dst(want.size() + 100, 0xEE);
  const transport::LoadReply loaded = LoadKey(*s, Key(2), dst, hits.lease_id);
  ASSERT_EQ(loaded.outcomes.size(), 1u);
  EXPECT_EQ(loaded.outcomes[0].status, WireStatus::kOk);
  EXPECT_EQ(loaded.outcomes[0].object_size, want.size());
  EXPECT_TRUE(IsSyntheticBlockFor(Key(2), std::span(dst).first(want.size())));
  EXPECT_EQ(dst[want.size()], 0xEE);  // nothing past the object

  // A byte range (a layer range) and one that does not fit.
  std::vector<uint8_t> part(100);
  EXPECT_EQ(LoadKey(*s, Key(2), part, 0, 64, 100).outcomes[0].status, WireStatus::kOk);
  EXPECT_EQ(std::memcmp(part.data(), want.data() + 64, 100), 0);
  const transport::LoadReply too_small = LoadKey(*s, Key(2), part);
  EXPECT_EQ(too_small.outcomes[0].status, WireStatus::kOutOfRange);
  EXPECT_EQ(too_small.outcomes[0].object_size, want.size());
  // A miss.
  EXPECT_EQ(LoadKey(*s, Key(9), dst).outcomes[0].status, WireStatus::kNotFound);
}

TEST_F(ServiceTest, AnotherTenantTakesTheMissPath) {
  auto a = LoggedIn("team-a", "token-a");
  auto b = LoggedIn("team-b", "token-b");
  ASSERT_EQ(StoreKeys(*a, {Key(1), Key(2)}), std::vector<WireStatus>(2, WireStatus::kOk));
  std::vector<uint8_t> dst(64 << 10);
  // Positive control: the owner hits.
  EXPECT_EQ(LookupKeys(*a, {Key(1), Key(2)}, false).leading_hits, 2u);
  EXPECT_EQ(LoadKey(*a, Key(1), dst).outcomes[0].status, WireStatus::kOk);
  // The other tenant misses exactly as for an absent key.
  const transport::LookupReply foreign = LookupKeys(*b, {Key(1), Key(2)}, true);
  EXPECT_EQ(foreign.leading_hits, 0u);
  EXPECT_EQ(foreign.tiers, std::vector<transport::WireTier>(2, transport::WireTier::kNone));
  EXPECT_EQ(foreign.lease_id, 0u);
  std::vector<uint8_t> other(64 << 10, 0);
  EXPECT_EQ(LoadKey(*b, Key(1), other).outcomes[0].status, WireStatus::kNotFound);
  EXPECT_EQ(other, std::vector<uint8_t>(64 << 10, 0));
  // And cannot delete it.
  transport::Delete del;
  del.keys = {Key(1)};
  Message m = service_->Handle(*b, del);
  EXPECT_EQ(std::get<transport::DeleteReply>(m).statuses[0], WireStatus::kNotFound);
  EXPECT_EQ(LookupKeys(*a, {Key(1)}, false).leading_hits, 1u);
}

TEST_F(ServiceTest, CorruptObjectIsRejectedAndNothingIsLeftReserved) {
  auto s = LoggedIn("team-a", "token-a");
  const double used_before = StoreValue("host.reserved_bytes");
  const double rejected_before = StoreValue(".rejected_corrupt_writes_total");
  transport::Store store;
  store.remote_key = {9};
  std::vector<uint8_t> object = *MakeSyntheticBlock(Key(5), 4096);
  object[object.size() - 1] ^= 0xFF;  // payload damaged: checksum fails
  store.entries.push_back({Key(5), reinterpret_cast<uint64_t>(object.data()), object.size()});
  std::vector<uint8_t> wrong_key = *MakeSyntheticBlock(Key(6), 4096);  // carries key 6
  store.entries.push_back({Key(7), reinterpret_cast<uint64_t>(wrong_key.data()), wrong_key.size()});
  Message m = service_->Handle(*s, store);
  const auto& reply = std::get<transport::StoreReply>(m);
  EXPECT_EQ(reply.statuses[0], WireStatus::kCorruption);
  // A well-formed object sealed for another key is as corrupt as a damaged one.
  EXPECT_EQ(reply.statuses[1], WireStatus::kCorruption);
  EXPECT_EQ(StoreValue(".rejected_corrupt_writes_total"), rejected_before + 2);
  EXPECT_EQ(LookupKeys(*s, {Key(5)}, false).leading_hits, 0u);
  EXPECT_EQ(LookupKeys(*s, {Key(7)}, false).leading_hits, 0u);
  EXPECT_EQ(LookupKeys(*s, {Key(6)}, false).leading_hits, 0u);
  EXPECT_EQ(StoreValue("host.reserved_bytes"), used_before);
  // Positive control: the same object under the key it was sealed for stores and is found.
  EXPECT_EQ(StoreKeys(*s, {Key(6)}, 4096), std::vector<WireStatus>{WireStatus::kOk});
  EXPECT_EQ(LookupKeys(*s, {Key(6)}, false).leading_hits, 1u);
  EXPECT_EQ(StoreValue(".rejected_corrupt_writes_total"), rejected_before + 2);
}

TEST_F(ServiceTest, FailedTransfersFailTheirKeysAndFreeTheirRoom) {
  auto s = LoggedIn("team-a", "token-a");
  const double used_before = StoreValue("host.reserved_bytes");
  mover_.fail_transfers = true;
  EXPECT_EQ(StoreKeys(*s, {Key(1), Key(2)}),
            std::vector<WireStatus>(2, WireStatus::kTransferFailed));
  EXPECT_EQ(StoreValue("host.reserved_bytes"), used_before);
  EXPECT_EQ(LookupKeys(*s, {Key(1)}, false).leading_hits, 0u);
  // The same keys store fine once transfers work again.
  mover_.fail_transfers = false;
  EXPECT_EQ(StoreKeys(*s, {Key(1), Key(2)}), std::vector<WireStatus>(2, WireStatus::kOk));
  EXPECT_GT(StoreValue("host.reserved_bytes"), used_before);
  mover_.fail_transfers = true;
  std::vector<uint8_t> dst(64 << 10);
  EXPECT_EQ(LoadKey(*s, Key(1), dst).outcomes[0].status, WireStatus::kTransferFailed);
}

// A key named twice in one Store is reserved for its first entry; the repeat answers as that
// entry does, a failure included (it answered ok, as for a key another request is storing, while
// the block was absent). Positive control: both ok when the copy succeeds.
TEST_F(ServiceTest, AKeyRepeatedInOneStoreAnswersAsItsFirstEntry) {
  auto s = LoggedIn("team-a", "token-a");
  mover_.fail_transfer_at = 0;  // the first entry's only transfer
  EXPECT_EQ(StoreKeys(*s, {Key(7), Key(8), Key(7)}),
            (std::vector<WireStatus>{WireStatus::kTransferFailed, WireStatus::kOk,
                                     WireStatus::kTransferFailed}));
  EXPECT_EQ(LookupKeys(*s, {Key(7)}, false).leading_hits, 0u);
  // Stored before this request: kOk however often it is named.
  EXPECT_EQ(StoreKeys(*s, {Key(8), Key(8)}), std::vector<WireStatus>(2, WireStatus::kOk));
  mover_.fail_transfer_at.reset();
  EXPECT_EQ(StoreKeys(*s, {Key(7), Key(7)}), std::vector<WireStatus>(2, WireStatus::kOk));
  EXPECT_EQ(LookupKeys(*s, {Key(7)}, false).leading_hits, 1u);
}

// A client that stops answering holds a Store for one transfer_timeout, however many waves the
// request needs (each wave got a deadline of its own before): past the request's deadline the
// remaining entries fail at once, and no room is taken for them. Positive control: with the
// client answering, the same request runs in several waves and stores every object.
TEST_F(ServiceTest, AStoreOfManyWavesEndsAtOneDeadline) {
  ServiceOptions options;
  options.clock = &clock_;
  options.transfer_timeout = std::chrono::milliseconds(100);
  service_ = std::make_unique<Service>(*store_, *tenants_, &mover_, nullptr, options);
  auto s = LoggedIn("team-a", "token-a");
  const double reserved_before = StoreValue("host.reserved_bytes");
  std::vector<BlockKey> keys;
  for (uint8_t i = 0; i < 40; ++i) keys.push_back(Key(i));  // 160 MiB: three waves of 64 MiB
  constexpr uint64_t kPayload = 4 << 20;
  mover_.wait_for_deadline = true;
  const double lookups_before = StoreValue(".lookups_total");
  EXPECT_EQ(StoreKeys(*s, keys, kPayload),
            std::vector<WireStatus>(keys.size(), WireStatus::kTransferFailed));
  EXPECT_EQ(mover_.runs, 1) << "a wave ran after the request's deadline";
  EXPECT_EQ(StoreValue("host.reserved_bytes"), reserved_before);
  // The daemon's own checks of what is stored are not clients' lookups.
  EXPECT_EQ(StoreValue(".lookups_total"), lookups_before);
  // The control gets time enough for 160 MiB on a busy machine.
  mover_.wait_for_deadline = false;
  mover_.runs = 0;
  options.transfer_timeout = std::chrono::seconds(60);
  service_ = std::make_unique<Service>(*store_, *tenants_, &mover_, nullptr, options);
  s = LoggedIn("team-a", "token-a");
  const double refused_before = StoreValue(".rejected_no_space_total");
  EXPECT_EQ(StoreKeys(*s, keys, kPayload), std::vector<WireStatus>(keys.size(), WireStatus::kOk));
  EXPECT_GE(mover_.runs, 3);
  // Waves begin where the room runs out; the writes all succeeded, so none counts as refused.
  EXPECT_EQ(StoreValue(".rejected_no_space_total"), refused_before);
}

// Objects larger than a transfer chunk move in several GETs, each hashed as it lands: a damaged
// byte in a later chunk is still caught, and a failed chunk fails only its own object.
TEST_F(ServiceTest, LeasesBelongToTheirSessionAndCloseReleasesThem) {
  auto a = LoggedIn("team-a", "token-a");
  auto other = LoggedIn("team-a", "token-a");
  ASSERT_EQ(StoreKeys(*a, {Key(1)}), std::vector<WireStatus>(1, WireStatus::kOk));
  const uint64_t lease = LookupKeys(*a, {Key(1)}, true).lease_id;
  ASSERT_NE(lease, 0u);
  EXPECT_EQ(StoreValue(".active_leases"), 1.0);
  // Another session of the same tenant cannot release it; naming it in a Load gives no more
  // than a Load without a lease (the block is served because it is present).
  std::vector<uint8_t> dst(64 << 10);
  EXPECT_EQ(LoadKey(*other, Key(1), dst, lease).outcomes[0].status, WireStatus::kOk);
  Message m = service_->Handle(*other, transport::ReleaseLease{lease});
  EXPECT_EQ(std::get<transport::ReleaseLeaseReply>(m).status, WireStatus::kLeaseExpired);
  // A leased block cannot be deleted.
  transport::Delete del;
  del.keys = {Key(1)};
  m = service_->Handle(*a, del);
  EXPECT_EQ(std::get<transport::DeleteReply>(m).statuses[0], WireStatus::kUnavailable);
  // Closing the owner's session releases the lease; the block can then go.
  service_->CloseSession(*a);
  EXPECT_EQ(StoreValue(".active_leases"), 0.0);
  EXPECT_EQ(mover_.disconnects, 1);
  m = service_->Handle(*other, del);
  EXPECT_EQ(std::get<transport::DeleteReply>(m).statuses[0], WireStatus::kOk);
}

// A Hello on an authenticated session starts the handshake over (docs/authentication.md): the
// session drops what it held as the old tenant, is refused until Auth, and then sees only the new
// tenant's blocks.
TEST_F(ServiceTest, ANewHelloDropsTheOldTenantsLeasesAndScope) {
  auto s = LoggedIn("team-a", "token-a");
  ASSERT_EQ(StoreKeys(*s, {Key(1)}), std::vector<WireStatus>(1, WireStatus::kOk));
  const uint64_t lease = LookupKeys(*s, {Key(1)}, true).lease_id;
  ASSERT_NE(lease, 0u);
  ASSERT_EQ(StoreValue(".active_leases"), 1.0);
  const int disconnects = mover_.disconnects;

  transport::Hello hello;
  hello.tenant = "team-b";
  hello.worker_address = {1, 2, 3};
  Message m = service_->Handle(*s, hello);
  const auto* challenge = std::get_if<transport::HelloReply>(&m);
  ASSERT_NE(challenge, nullptr);
  // a's lease and data-plane peer are gone with a.
  EXPECT_EQ(StoreValue(".active_leases"), 0.0);
  EXPECT_TRUE(s->leases.empty());
  EXPECT_EQ(mover_.disconnects, disconnects + 1);
  // Between Hello and Auth the session is nobody's.
  EXPECT_NE(s->state, SessionState::kAuthenticated);
  transport::Lookup lookup;
  lookup.keys = {Key(1)};
  const Message refused = service_->Handle(*s, lookup);
  const auto* error = std::get_if<transport::ErrorReply>(&refused);
  ASSERT_NE(error, nullptr);
  EXPECT_EQ(error->status, WireStatus::kUnauthenticated);

  transport::Auth auth;
  const AuthDigest proof = AuthProof(TokenHash("token-b"), challenge->nonce);
  std::copy(proof.begin(), proof.end(), auth.proof.begin());
  m = service_->Handle(*s, auth);
  ASSERT_TRUE(std::holds_alternative<transport::AuthReply>(m));
  ASSERT_EQ(std::get<transport::AuthReply>(m).status, WireStatus::kOk);
  ASSERT_FALSE(mover_.proofs.empty());
  m = service_->Handle(*s, transport::ProveWorker{mover_.proofs.back().token});
  ASSERT_EQ(std::get<transport::ProveWorkerReply>(m).status, WireStatus::kOk);
  // Now b: a's block misses, a's old lease is not the session's.
  const transport::LookupReply foreign = LookupKeys(*s, {Key(1)}, true);
  EXPECT_EQ(foreign.leading_hits, 0u);
  EXPECT_EQ(foreign.lease_id, 0u);
  std::vector<uint8_t> dst(64 << 10);
  EXPECT_EQ(LoadKey(*s, Key(1), dst).outcomes[0].status, WireStatus::kNotFound);
  m = service_->Handle(*s, transport::ReleaseLease{lease});
  EXPECT_EQ(std::get<transport::ReleaseLeaseReply>(m).status, WireStatus::kLeaseExpired);
  // Positive controls: b's own block stores and hits on this session; a's is still a's.
  EXPECT_EQ(StoreKeys(*s, {Key(2)}), std::vector<WireStatus>(1, WireStatus::kOk));
  const transport::LookupReply own = LookupKeys(*s, {Key(2)}, true);
  EXPECT_EQ(own.leading_hits, 1u);
  EXPECT_NE(own.lease_id, 0u);
  EXPECT_EQ(LoadKey(*s, Key(2), dst).outcomes[0].status, WireStatus::kOk);
  auto a = LoggedIn("team-a", "token-a");
  EXPECT_EQ(LookupKeys(*a, {Key(1)}, false).leading_hits, 1u);
  EXPECT_EQ(LookupKeys(*a, {Key(2)}, false).leading_hits, 0u);
}

TEST_F(ServiceTest, ReleaseLeaseWorksOnceForItsOwner) {
  auto s = LoggedIn("team-a", "token-a");
  ASSERT_EQ(StoreKeys(*s, {Key(1)}), std::vector<WireStatus>(1, WireStatus::kOk));
  const uint64_t lease = LookupKeys(*s, {Key(1)}, true).lease_id;
  Message m = service_->Handle(*s, transport::ReleaseLease{lease});
  EXPECT_EQ(std::get<transport::ReleaseLeaseReply>(m).status, WireStatus::kOk);
  m = service_->Handle(*s, transport::ReleaseLease{lease});
  EXPECT_EQ(std::get<transport::ReleaseLeaseReply>(m).status, WireStatus::kLeaseExpired);
}

// A client that lets its leases run out instead of releasing them must not grow its session: the
// expired ones are dropped as new ones are granted, and the live ones stay releasable.
TEST_F(ServiceTest, ExpiredLeasesLeaveTheSessionAndLiveOnesStay) {
  auto s = LoggedIn("team-a", "token-a");
  ASSERT_EQ(StoreKeys(*s, {Key(1)}), std::vector<WireStatus>(1, WireStatus::kOk));
  const uint64_t live = LookupKeys(*s, {Key(1)}, true).lease_id;  // default ttl, 30 s
  ASSERT_NE(live, 0u);
  transport::Lookup short_lease;
  short_lease.keys = {Key(1)};
  short_lease.want_lease = true;
  short_lease.lease_ttl_ms = 1;
  for (int i = 0; i < 1000; ++i) {
    const Message m = service_->Handle(*s, short_lease);
    ASSERT_NE(std::get<transport::LookupReply>(m).lease_id, 0u);
    clock_.Advance(std::chrono::milliseconds(2));
  }
  // Without pruning the session would hold all 1001.
  EXPECT_LE(s->leases.size(), 32u);
  EXPECT_TRUE(s->leases.contains(live));
  Message m = service_->Handle(*s, transport::ReleaseLease{live});
  EXPECT_EQ(std::get<transport::ReleaseLeaseReply>(m).status, WireStatus::kOk);
}

// Past the drain bound the daemon cuts the transfers still running by disconnecting every
// session's data-plane peer, each once (a session closed earlier has none left to cut).
TEST_F(ServiceTest, AbortTransfersDisconnectsEveryOpenSessionsPeer) {
  auto a = LoggedIn("team-a", "token-a");
  auto b = LoggedIn("team-b", "token-b");
  auto closed = LoggedIn("team-a", "token-a");
  service_->CloseSession(*closed);
  ASSERT_EQ(mover_.disconnects, 1);
  service_->AbortTransfers();
  EXPECT_EQ(mover_.disconnects, 3);
  service_->AbortTransfers();
  EXPECT_EQ(mover_.disconnects, 3);
}

TEST_F(ServiceTest, DrainingRefusesNewBlockRequestsButServesStats) {
  auto s = LoggedIn("team-a", "token-a");
  service_->SetDraining(true);
  Message m = service_->Handle(*s, transport::Lookup{});
  ASSERT_TRUE(std::holds_alternative<transport::ErrorReply>(m));
  EXPECT_EQ(std::get<transport::ErrorReply>(m).status, WireStatus::kUnavailable);
  m = service_->Handle(*s, transport::Stats{});
  ASSERT_TRUE(std::holds_alternative<transport::StatsReply>(m));
  bool saw_capacity = false;
  for (const auto& e : std::get<transport::StatsReply>(m).entries) {
    if (e.name == "host.capacity_bytes") saw_capacity = true;
  }
  EXPECT_TRUE(saw_capacity);
}

// The store's counters and tier usage show every tenant's activity: a tenant without store_stats
// sees only its own usage and the daemon's state.
TEST_F(ServiceTest, StatsShowStoreWideFiguresOnlyToATenantAllowedThem) {
  auto names_of = [&](Session& s) {
    std::set<std::string> names;
    Message m = service_->Handle(s, transport::Stats{});
    EXPECT_TRUE(std::holds_alternative<transport::StatsReply>(m));
    if (!std::holds_alternative<transport::StatsReply>(m)) return names;
    for (const auto& e : std::get<transport::StatsReply>(m).entries) names.insert(e.name);
    return names;
  };
  auto b = LoggedIn("team-b", "token-b");
  const std::set<std::string> own = names_of(*b);
  EXPECT_TRUE(own.contains("tenant.held_bytes"));
  EXPECT_TRUE(own.contains("daemon.draining"));
  for (const std::string& name : own) {
    EXPECT_TRUE(name.starts_with("tenant.") || name.starts_with("daemon.")) << name;
  }
  auto a = LoggedIn("team-a", "token-a");  // positive control: store_stats
  const std::set<std::string> all = names_of(*a);
  EXPECT_TRUE(all.contains("store.lookups_total"));
  EXPECT_TRUE(all.contains("host.used_bytes"));
  EXPECT_TRUE(all.contains("tenant.held_bytes"));
}

TEST_F(ServiceTest, OversizedRequestIsRefusedWhole) {
  ServiceOptions options;
  options.max_request_bytes = 1000;
  Service small(*store_, *tenants_, &mover_, nullptr, options);
  auto s = small.OpenSession();
  ASSERT_TRUE(
      std::holds_alternative<transport::AuthReply>(HelloAuth(small, *s, "team-a", "token-a")));
  Message m;
  transport::Store store;
  store.remote_key = {9};
  store.entries.push_back({Key(1), 1, 4096});
  m = small.Handle(*s, store);
  ASSERT_TRUE(std::holds_alternative<transport::ErrorReply>(m));
  EXPECT_EQ(std::get<transport::ErrorReply>(m).status, WireStatus::kOutOfRange);
}

}  // namespace
}  // namespace kvault::server
