#pragma once
// The fixture of the Service tests (service_test.cc: handshake, tenants, store/lookup/load,
// leases, failure paths; service_data_plane_test.cc: chunked and mapped stores, ReleaseMemory,
// worker proofs): Service over a real BlockStore with a host tier and a DataMover fake that
// copies within this process (a client "address" is a pointer here). Store and service share a
// manual clock, so leases expire only when a test advances it.

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include "../storage/store_test_util.h"
#include "core/service.h"
#include "kvault/common/auth.h"
#include "kvault/common/file_io.h"
#include "kvault/common/synthetic_block.h"
#include "kvault/storage/block_store.h"
#include "kvault/storage/host_tier.h"
#include "metrics/metrics.h"
#include "tenants_test_util.h"

namespace kvault::server::service_test {

using testing::TwoTenants;

using transport::Message;
using transport::WireStatus;

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
    ++runs;
    last_batch_transfers = batch.transfers.size();
    if (wait_for_deadline) {  // a client that stopped answering
      std::this_thread::sleep_until(batch.deadline);
      return std::vector<Status>(batch.transfers.size(),
                                 Status::Unavailable("deadline exceeded (test)"));
    }
    for (const transport::Transfer& t : batch.transfers) {
      if (fail_transfers || (fail_transfer_at && *fail_transfer_at == out.size())) {
        out.push_back(Status::Unavailable("deadline exceeded (test)"));
        continue;
      }
      auto* remote = reinterpret_cast<uint8_t*>(t.remote_address);
      auto* local = static_cast<uint8_t*>(t.local);
      if (t.op == transport::TransferOp::kGet && mapped && batch.copy_mapped) {
        transport::MappedRemote from{std::span<const uint8_t>(remote, t.length)};
        UniqueFd file;
        if (mapped_file) {
          file = FileHolding(from.bytes);
          from.file = file.get();
          from.file_offset = kFileOffset;
        }
        ++mapped_copies;
        out.push_back(batch.copy_mapped(out.size(), from));
        continue;
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
  // With `mapped`: each GET also names a file holding its bytes (at kFileOffset), which the
  // copier reads instead, as for bytes the client does not use again; `cut_files` leaves each
  // file a byte short, as a client that cut its segment short would.
  bool mapped_file = false;
  bool cut_files = false;
  static constexpr uint64_t kFileOffset = 4096 + 7;
  UniqueFd FileHolding(std::span<const uint8_t> bytes) const {
    UniqueFd fd(memfd_create("copying-mover", MFD_CLOEXEC));
    const size_t kept = cut_files ? bytes.size() - 1 : bytes.size();
    EXPECT_EQ(pwrite(fd.get(), bytes.data(), kept, kFileOffset), static_cast<ssize_t>(kept));
    return fd;
  }
  size_t mapped_copies = 0;
  transport::PeerId peers = 0;
  int disconnects = 0;
  bool fail_transfers = false;
  // Each batch waits for its deadline, then fails: a peer that stopped answering.
  bool wait_for_deadline = false;
  int runs = 0;                            // batches run
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

inline BlockKey Key(uint8_t i) {
  BlockKey k{};
  k.fill(static_cast<uint8_t>(0x40 + i));
  k[0] = i;
  return k;
}

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override { Build(); }

  // (Re)builds the store (a host tier of `host_bytes`; `store_options` with the fixture's clock,
  // and the tenants' quotas as kvaultd passes them), the registry of `tenants` and the Service
  // over them, reporting to `metrics` (may be null).
  void Build(storage::BlockStoreOptions store_options = {}, uint64_t host_bytes = 64ull << 20,
             const std::vector<TenantSpec>& tenants = TwoTenants(), Metrics* metrics = nullptr) {
    service_.reset();
    store_.reset();
    auto registry = TenantRegistry::Create(tenants);
    ASSERT_TRUE(registry.ok()) << registry.status().ToString();
    tenants_.emplace(std::move(*registry));
    storage::HostTierOptions host;
    host.capacity_bytes = host_bytes;
    host.huge_pages = false;
    auto host_tier = storage::HostTier::Create(host);
    ASSERT_TRUE(host_tier.ok()) << host_tier.status().ToString();
    storage::StoreTiers tiers;
    tiers.host = std::move(*host_tier);
    store_options.clock = &clock_;
    for (const Tenant& t : tenants_->tenants()) {
      if (t.quota_bytes > 0) store_options.tenant_quota_bytes[t.id] = t.quota_bytes;
    }
    auto store = storage::BlockStore::Create(store_options, std::move(tiers));
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(*store);
    ServiceOptions service_options;
    service_options.clock = &clock_;
    service_ = std::make_unique<Service>(*store_, *tenants_, &mover_, metrics, service_options);
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

  storage::testing::ManualClock clock_;
  CopyingMover mover_;
  std::unique_ptr<storage::BlockStore> store_;
  std::optional<TenantRegistry> tenants_;
  std::unique_ptr<Service> service_;
  std::vector<std::vector<uint8_t>> objects_;
};

}  // namespace kvault::server::service_test
