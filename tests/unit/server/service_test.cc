// Service (server/src/core/service.h) over a real BlockStore with a host tier, with a DataMover
// fake that copies within this process (a client "address" is a pointer here): the handshake,
// tenant isolation, store/lookup/load, leases per session, failure paths, ReleaseMemory.

#include "core/service.h"

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "kvault/common/auth.h"
#include "kvault/common/synthetic_block.h"
#include "kvault/storage/block_store.h"
#include "kvault/storage/host_tier.h"
#include "metrics/metrics.h"
#include "tenants_test_util.h"

namespace kvault::server {
namespace {

using testing::TwoTenants;

using transport::Message;
using transport::WireStatus;

// Copies between server memory and "client memory" in this process. Can be told to fail.
class CopyingMover final : public DataMover {
 public:
  Result<transport::PeerId> Connect(
      std::span<const uint8_t> address,
      const std::optional<transport::ControlConnection>& /*connection*/,
      const transport::WorkerProof& proof) override {
    if (address.empty()) return Status::InvalidArgument("empty address");
    proofs.push_back(proof);
    return ++peers;
  }
  void Disconnect(transport::PeerId) override { ++disconnects; }
  std::vector<Status> Run(transport::TransferBatch batch) override {
    std::vector<Status> out;
    last_batch_transfers = batch.transfers.size();
    for (const transport::Transfer& t : batch.transfers) {
      if (fail_transfers || (fail_transfer_at && *fail_transfer_at == out.size())) {
        out.push_back(Status::Unavailable("deadline exceeded (test)"));
        continue;
      }
      auto* remote = reinterpret_cast<uint8_t*>(t.remote_address);
      auto* local = static_cast<uint8_t*>(t.local);
      if (t.op == transport::TransferOp::kGet && mapped && batch.copy_mapped) {
        batch.copy_mapped(out.size(), std::span<const uint8_t>(remote, t.length));
        ++mapped_copies;
      } else if (t.op == transport::TransferOp::kGet) {
        std::memcpy(local, remote, t.length);
      } else {
        std::memcpy(remote, local, t.length);
      }
      out.push_back(Status::Ok());
    }
    return out;
  }
  void ForgetRemoteKey(transport::PeerId peer, std::span<const uint8_t> remote_key) override {
    forgotten.emplace_back(peer, std::vector<uint8_t>(remote_key.begin(), remote_key.end()));
  }
  // As a shared-memory transport does with UCX-allocated client memory: GETs go to the batch's
  // copier (TransferBatch::copy_mapped) instead of being copied here.
  bool mapped = false;
  size_t mapped_copies = 0;
  transport::PeerId peers = 0;
  int disconnects = 0;
  bool fail_transfers = false;
  std::optional<size_t> fail_transfer_at;  // fail only the transfer with this index in a batch
  size_t last_batch_transfers = 0;
  std::vector<std::pair<transport::PeerId, std::vector<uint8_t>>> forgotten;
  std::vector<transport::WorkerProof> proofs;  // sent by Connect, in order
};

// Hello (announcing `worker`, empty for none) and Auth as `tenant` with `token` on `service`;
// returns Auth's answer (an AuthReply, or an ErrorReply). No worker proof.
Message HelloAuth(Service& service, Session& s, const std::string& tenant, const std::string& token,
                  std::vector<uint8_t> worker = {}) {
  transport::Hello hello;
  hello.tenant = tenant;
  hello.worker_address = std::move(worker);
  const Message m = service.Handle(s, hello);
  const auto* reply = std::get_if<transport::HelloReply>(&m);
  EXPECT_NE(reply, nullptr);
  if (reply == nullptr) return m;
  transport::Auth auth;
  const AuthDigest proof = AuthProof(TokenHash(token), reply->nonce);
  std::copy(proof.begin(), proof.end(), auth.proof.begin());
  return service.Handle(s, auth);
}

// Reads one gauge or counter of the store.
class Probe final : public storage::CounterVisitor {
 public:
  void Counter(std::string_view tier, std::string_view name, uint64_t v) override {
    values[std::string(tier) + "." + std::string(name)] = static_cast<double>(v);
  }
  void Gauge(std::string_view tier, std::string_view name, double v) override {
    values[std::string(tier) + "." + std::string(name)] = v;
  }
  std::map<std::string, double> values;
};

BlockKey Key(uint8_t i) {
  BlockKey k{};
  k.fill(static_cast<uint8_t>(0x40 + i));
  k[0] = i;
  return k;
}

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    storage::HostTierOptions host;
    host.capacity_bytes = 64ull << 20;
    host.huge_pages = false;
    auto host_tier = storage::HostTier::Create(host);
    ASSERT_TRUE(host_tier.ok()) << host_tier.status().ToString();
    storage::StoreTiers tiers;
    tiers.host = std::move(*host_tier);
    auto store = storage::BlockStore::Create({}, std::move(tiers));
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(*store);
    auto tenants = TenantRegistry::Create(TwoTenants());
    ASSERT_TRUE(tenants.ok()) << tenants.status().ToString();
    tenants_.emplace(std::move(*tenants));
    service_ = std::make_unique<Service>(*store_, *tenants_, &mover_, nullptr, ServiceOptions{});
  }

  // Hello + Auth as `tenant` with `token`, then (with `prove`, after a successful Auth) the
  // worker proof the mover was given; returns the AuthReply or the ErrorReply.
  Message Login(Session& s, const std::string& tenant, const std::string& token,
                bool prove = true) {
    Message auth_reply = HelloAuth(*service_, s, tenant, token, {1, 2, 3});
    const auto* ok = std::get_if<transport::AuthReply>(&auth_reply);
    if (prove && ok != nullptr && ok->status == WireStatus::kOk) {
      EXPECT_FALSE(mover_.proofs.empty());
      if (!mover_.proofs.empty()) {
        EXPECT_EQ(mover_.proofs.back().session_id, ok->session_id);
        const Message proven =
            service_->Handle(s, transport::ProveWorker{mover_.proofs.back().token});
        EXPECT_EQ(std::get<transport::ProveWorkerReply>(proven).status, WireStatus::kOk);
      }
    }
    return auth_reply;
  }

  std::unique_ptr<Session> LoggedIn(const std::string& tenant, const std::string& token) {
    auto s = service_->OpenSession();
    Message m = Login(*s, tenant, token);
    EXPECT_TRUE(std::holds_alternative<transport::AuthReply>(m));
    EXPECT_EQ(s->state, SessionState::kAuthenticated);
    return s;
  }

  // Stores synthetic objects for keys; returns the StoreReply statuses.
  std::vector<WireStatus> StoreKeys(Session& s, const std::vector<BlockKey>& keys,
                                    uint64_t payload = 8192) {
    objects_.clear();
    transport::Store store;
    store.remote_key = {9};
    for (const BlockKey& k : keys) {
      objects_.push_back(*MakeSyntheticBlock(k, payload));
    }
    for (size_t i = 0; i < keys.size(); ++i) {
      store.entries.push_back(
          {keys[i], reinterpret_cast<uint64_t>(objects_[i].data()), objects_[i].size()});
    }
    Message m = service_->Handle(s, store);
    const auto* reply = std::get_if<transport::StoreReply>(&m);
    EXPECT_NE(reply, nullptr);
    return reply ? reply->statuses : std::vector<WireStatus>{};
  }

  transport::LookupReply LookupKeys(Session& s, const std::vector<BlockKey>& keys, bool lease) {
    transport::Lookup lookup;
    lookup.keys = keys;
    lookup.want_lease = lease;
    Message m = service_->Handle(s, lookup);
    const auto* reply = std::get_if<transport::LookupReply>(&m);
    EXPECT_NE(reply, nullptr);
    return reply ? *reply : transport::LookupReply{};
  }

  transport::LoadReply LoadKey(Session& s, const BlockKey& key, std::vector<uint8_t>& dst,
                               uint64_t lease = 0, uint64_t offset = 0, uint64_t length = 0) {
    transport::Load load;
    load.lease_id = lease;
    load.remote_key = {9};
    load.entries.push_back(
        {key, reinterpret_cast<uint64_t>(dst.data()), dst.size(), offset, length});
    Message m = service_->Handle(s, load);
    const auto* reply = std::get_if<transport::LoadReply>(&m);
    EXPECT_NE(reply, nullptr);
    return reply ? *reply : transport::LoadReply{};
  }

  double StoreValue(const std::string& name) {
    Probe probe;
    store_->VisitCounters(probe);
    EXPECT_TRUE(probe.values.contains(name)) << name;
    return probe.values[name];
  }

  CopyingMover mover_;
  std::unique_ptr<storage::BlockStore> store_;
  std::optional<TenantRegistry> tenants_;
  std::unique_ptr<Service> service_;
  std::vector<std::vector<uint8_t>> objects_;
};

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
  EXPECT_NE(reply.statuses[1], WireStatus::kOk);
  EXPECT_EQ(LookupKeys(*s, {Key(5)}, false).leading_hits, 0u);
  EXPECT_EQ(LookupKeys(*s, {Key(7)}, false).leading_hits, 0u);
  EXPECT_EQ(StoreValue("host.reserved_bytes"), used_before);
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

// Objects larger than a transfer chunk move in several GETs, each hashed as it lands: a damaged
// byte in a later chunk is still caught, and a failed chunk fails only its own object.
TEST_F(ServiceTest, LargeObjectsMoveInChunksVerifiedAsTheyLand) {
  auto s = LoggedIn("team-a", "token-a");
  const uint64_t payload = 2500 << 10;  // three chunks of at most 1 MiB
  const double used_before = StoreValue("host.reserved_bytes");
  // Positive control: two multi-chunk objects store and load back byte for byte.
  EXPECT_EQ(StoreKeys(*s, {Key(1), Key(2)}, payload), std::vector<WireStatus>(2, WireStatus::kOk));
  EXPECT_EQ(mover_.last_batch_transfers, 6u);  // chunked, not one GET per object
  std::vector<uint8_t> dst(objects_[1].size());
  EXPECT_EQ(LoadKey(*s, Key(2), dst).outcomes[0].status, WireStatus::kOk);
  EXPECT_EQ(dst, objects_[1]);

  // Damage past the first chunk.
  transport::Store store;
  store.remote_key = {9};
  std::vector<uint8_t> damaged = *MakeSyntheticBlock(Key(3), payload);
  damaged[damaged.size() - 5] ^= 0x01;
  store.entries.push_back({Key(3), reinterpret_cast<uint64_t>(damaged.data()), damaged.size()});
  Message m = service_->Handle(*s, store);
  EXPECT_EQ(std::get<transport::StoreReply>(m).statuses[0], WireStatus::kCorruption);
  EXPECT_EQ(LookupKeys(*s, {Key(3)}, false).leading_hits, 0u);

  // The second chunk of the first object fails: that object fails, the next one is stored.
  const double used_after_two = StoreValue("host.reserved_bytes");
  mover_.fail_transfer_at = 1;
  EXPECT_EQ(StoreKeys(*s, {Key(4), Key(5)}, payload),
            (std::vector<WireStatus>{WireStatus::kTransferFailed, WireStatus::kOk}));
  mover_.fail_transfer_at.reset();
  EXPECT_EQ(LookupKeys(*s, {Key(4)}, false).leading_hits, 0u);
  EXPECT_EQ(LookupKeys(*s, {Key(5)}, false).leading_hits, 1u);
  EXPECT_GT(used_after_two, used_before);
  EXPECT_EQ(StoreValue("host.reserved_bytes"), used_after_two + (used_after_two - used_before) / 2);
}

// Client memory mapped into the daemon: the service copies each chunk itself, with the copy
// helper taking half of the large ones, and hashes on the way; damage anywhere is still caught.
TEST_F(ServiceTest, MappedClientMemoryIsCopiedAndVerifiedOnTheWay) {
  mover_.mapped = true;
  auto s = LoggedIn("team-a", "token-a");
  const uint64_t payload = 2500 << 10;  // three chunks of at most 1 MiB
  // Positive control: multi-chunk and small objects store through the copier and load back.
  EXPECT_EQ(StoreKeys(*s, {Key(1), Key(2), Key(3)}, payload),
            std::vector<WireStatus>(3, WireStatus::kOk));
  EXPECT_EQ(mover_.mapped_copies, 9u);
  std::vector<uint8_t> dst(objects_[1].size());
  EXPECT_EQ(LoadKey(*s, Key(2), dst).outcomes[0].status, WireStatus::kOk);
  EXPECT_EQ(dst, objects_[1]);
  EXPECT_EQ(StoreKeys(*s, {Key(4)}, 1000), std::vector<WireStatus>(1, WireStatus::kOk));

  // One flipped byte in the first half of a chunk (copied by this thread), in the second half
  // (the helper's), and in the last chunk: each object is refused, nothing is left reserved.
  const double used_before = StoreValue("host.reserved_bytes");
  for (uint64_t at : {uint64_t{1000}, uint64_t{(1 << 20) + (700 << 10)}, payload - 3}) {
    SCOPED_TRACE("damaged at " + std::to_string(at));
    transport::Store store;
    store.remote_key = {9};
    std::vector<uint8_t> damaged = *MakeSyntheticBlock(Key(5), payload);
    damaged[at] ^= 0x40;
    store.entries.push_back({Key(5), reinterpret_cast<uint64_t>(damaged.data()), damaged.size()});
    Message m = service_->Handle(*s, store);
    EXPECT_EQ(std::get<transport::StoreReply>(m).statuses[0], WireStatus::kCorruption);
    EXPECT_EQ(LookupKeys(*s, {Key(5)}, false).leading_hits, 0u);
    EXPECT_EQ(StoreValue("host.reserved_bytes"), used_before);
  }
  // And the undamaged object stores (the key was not poisoned by the refusals).
  EXPECT_EQ(StoreKeys(*s, {Key(5)}, payload), std::vector<WireStatus>(1, WireStatus::kOk));
  EXPECT_EQ(LookupKeys(*s, {Key(5)}, false).leading_hits, 1u);
}

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

TEST_F(ServiceTest, ReleaseLeaseWorksOnceForItsOwner) {
  auto s = LoggedIn("team-a", "token-a");
  ASSERT_EQ(StoreKeys(*s, {Key(1)}), std::vector<WireStatus>(1, WireStatus::kOk));
  const uint64_t lease = LookupKeys(*s, {Key(1)}, true).lease_id;
  Message m = service_->Handle(*s, transport::ReleaseLease{lease});
  EXPECT_EQ(std::get<transport::ReleaseLeaseReply>(m).status, WireStatus::kOk);
  m = service_->Handle(*s, transport::ReleaseLease{lease});
  EXPECT_EQ(std::get<transport::ReleaseLeaseReply>(m).status, WireStatus::kLeaseExpired);
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

TEST_F(ServiceTest, ReleaseMemoryMakesTheSessionsMoverForgetTheKey) {
  Metrics metrics;
  Service service(*store_, *tenants_, &mover_, &metrics, ServiceOptions{});
  const transport::ReleaseMemory release{{0x4B, 0x56, 0x52, 0x4B, 9}};
  // Before auth: refused, and nothing is forgotten.
  auto fresh = service.OpenSession();
  Message m = service.Handle(*fresh, release);
  ASSERT_TRUE(std::holds_alternative<transport::ErrorReply>(m));
  EXPECT_EQ(std::get<transport::ErrorReply>(m).status, WireStatus::kUnauthenticated);
  EXPECT_TRUE(mover_.forgotten.empty());

  auto s = service.OpenSession();
  ASSERT_TRUE(std::holds_alternative<transport::AuthReply>(
      HelloAuth(service, *s, "team-a", "token-a", {1, 2, 3})));
  ASSERT_FALSE(mover_.proofs.empty());
  ASSERT_TRUE(std::holds_alternative<transport::ProveWorkerReply>(
      service.Handle(*s, transport::ProveWorker{mover_.proofs.back().token})));
  ASSERT_TRUE(s->peer.has_value());
  m = service.Handle(*s, release);
  ASSERT_TRUE(std::holds_alternative<transport::ReleaseMemoryReply>(m));
  EXPECT_EQ(std::get<transport::ReleaseMemoryReply>(m), transport::ReleaseMemoryReply{});
  ASSERT_EQ(mover_.forgotten.size(), 1u);
  EXPECT_EQ(mover_.forgotten[0].first, *s->peer);
  EXPECT_EQ(mover_.forgotten[0].second, release.remote_key);

  // A key the session never used is OK too (the mover ignores it), also while draining.
  service.SetDraining(true);
  m = service.Handle(*s, transport::ReleaseMemory{{7}});
  ASSERT_TRUE(std::holds_alternative<transport::ReleaseMemoryReply>(m));
  EXPECT_EQ(std::get<transport::ReleaseMemoryReply>(m).status, WireStatus::kOk);
  ASSERT_EQ(mover_.forgotten.size(), 2u);
  EXPECT_EQ(mover_.forgotten[1].second, std::vector<uint8_t>{7});
  EXPECT_NE(
      metrics.Serialize().find("kvault_request_duration_seconds_count{op=\"release_memory\"} 2"),
      std::string::npos);
}

TEST_F(ServiceTest, ReleaseMemoryWithoutADataPlaneIsOk) {
  auto s = service_->OpenSession();
  // No worker address: the session never connects a data-plane peer.
  ASSERT_TRUE(
      std::holds_alternative<transport::AuthReply>(HelloAuth(*service_, *s, "team-b", "token-b")));
  EXPECT_FALSE(s->peer.has_value());
  Message m = service_->Handle(*s, transport::ReleaseMemory{{1, 2}});
  ASSERT_TRUE(std::holds_alternative<transport::ReleaseMemoryReply>(m));
  EXPECT_TRUE(std::get<transport::ReleaseMemoryReply>(m).ToStatus().ok());
  EXPECT_TRUE(mover_.forgotten.empty());
}

// The worker a Hello announces is only the client's word: until the client returns the token
// sent to that worker, no block data moves for the session.
TEST_F(ServiceTest, NoDataMovesUntilTheWorkerIsProven) {
  auto s = service_->OpenSession();
  const Message auth = Login(*s, "team-a", "token-a", /*prove=*/false);
  ASSERT_EQ(std::get<transport::AuthReply>(auth).status, WireStatus::kOk);
  ASSERT_EQ(mover_.proofs.size(), 1u);
  const transport::WorkerProof sent = mover_.proofs[0];
  EXPECT_EQ(sent.session_id, s->id);
  EXPECT_NE(sent.token, decltype(sent.token){});  // random bytes, not zeros
  EXPECT_FALSE(s->peer.has_value());
  // Unproven: stores and loads are refused with a clear status, nothing is stored.
  const auto refusal = [&](const Message& request) {
    const Message m = service_->Handle(*s, request);
    const auto* error = std::get_if<transport::ErrorReply>(&m);
    return error == nullptr
               ? std::string("not refused")
               : std::string(transport::WireStatusName(error->status)) + ": " + error->message;
  };
  transport::Store store;
  store.remote_key = {9};
  store.entries.push_back({Key(1), 4096, 4096});
  transport::Load load;
  load.remote_key = {9};
  load.entries.push_back({Key(1), 4096, 4096, 0, 0});
  EXPECT_NE(refusal(store).find("unauthenticated: the announced UCX worker is not proven"),
            std::string::npos)
      << refusal(store);
  EXPECT_NE(refusal(load).find("not proven"), std::string::npos) << refusal(load);
  EXPECT_EQ(LookupKeys(*s, {Key(1)}, false).leading_hits, 0u);

  // A wrong token: refused, the worker is dropped, and the right one no longer helps.
  transport::ProveWorker wrong{sent.token};
  wrong.token[31] ^= 1;
  Message m = service_->Handle(*s, wrong);
  EXPECT_EQ(std::get<transport::ProveWorkerReply>(m).status, WireStatus::kUnauthenticated);
  EXPECT_EQ(mover_.disconnects, 1);
  m = service_->Handle(*s, transport::ProveWorker{sent.token});
  EXPECT_EQ(std::get<transport::ProveWorkerReply>(m).status, WireStatus::kInvalidArgument);
  EXPECT_NE(refusal(store).find("proof failed"), std::string::npos) << refusal(store);

  // Positive control: a new handshake with the right token moves data.
  ASSERT_EQ(std::get<transport::AuthReply>(Login(*s, "team-a", "token-a")).status, WireStatus::kOk);
  EXPECT_EQ(mover_.proofs.size(), 2u);
  EXPECT_NE(mover_.proofs[1].token, sent.token);  // fresh per handshake
  EXPECT_TRUE(s->peer.has_value());
  EXPECT_EQ(StoreKeys(*s, {Key(1)}), std::vector<WireStatus>{WireStatus::kOk});
  EXPECT_EQ(LookupKeys(*s, {Key(1)}, false).leading_hits, 1u);
  // Proving twice is refused and changes nothing.
  m = service_->Handle(*s, transport::ProveWorker{mover_.proofs[1].token});
  EXPECT_EQ(std::get<transport::ProveWorkerReply>(m).status, WireStatus::kInvalidArgument);
  EXPECT_EQ(StoreKeys(*s, {Key(2)}), std::vector<WireStatus>{WireStatus::kOk});
}

TEST_F(ServiceTest, ProveWorkerNeedsAuthAndAnAnnouncedWorker) {
  auto fresh = service_->OpenSession();
  Message m = service_->Handle(*fresh, transport::ProveWorker{});
  ASSERT_TRUE(std::holds_alternative<transport::ErrorReply>(m));
  EXPECT_EQ(std::get<transport::ErrorReply>(m).status, WireStatus::kUnauthenticated);

  auto s = service_->OpenSession();  // no worker address
  ASSERT_TRUE(
      std::holds_alternative<transport::AuthReply>(HelloAuth(*service_, *s, "team-b", "token-b")));
  EXPECT_TRUE(mover_.proofs.empty());
  m = service_->Handle(*s, transport::ProveWorker{});
  EXPECT_EQ(std::get<transport::ProveWorkerReply>(m).status, WireStatus::kInvalidArgument);
  EXPECT_NE(std::get<transport::ProveWorkerReply>(m).message.find("no worker"), std::string::npos);
}

TEST_F(ServiceTest, AWrongWorkerProofCountsAsUnauthenticated) {
  Metrics metrics;
  Service service(*store_, *tenants_, &mover_, &metrics, ServiceOptions{});
  const std::string series = "kvault_rejected_requests_total{reason=\"unauthenticated\"} 1";
  auto s = service.OpenSession();
  ASSERT_TRUE(std::holds_alternative<transport::AuthReply>(
      HelloAuth(service, *s, "team-a", "token-a", {1, 2, 3})));
  EXPECT_EQ(metrics.Serialize().find(series), std::string::npos);  // nothing counted yet
  Message m = service.Handle(*s, transport::ProveWorker{});
  EXPECT_EQ(std::get<transport::ProveWorkerReply>(m).status, WireStatus::kUnauthenticated);
  EXPECT_NE(metrics.Serialize().find(series), std::string::npos) << metrics.Serialize();
}

}  // namespace
}  // namespace kvault::server
