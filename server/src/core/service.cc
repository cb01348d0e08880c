// Service (service.h): dispatch, the handshake, lookups, leases, deletes and stats. Store and Load
// are in block_transfers.cc, GpuExport in gpu_export.cc.

#include "core/service.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

#include "kvault/common/auth.h"
#include "kvault/common/log.h"
#include "metrics/metrics.h"

namespace kvault::server {
namespace {

using transport::Message;
using transport::MessageType;
using transport::WireStatus;

std::optional<RequestOp> OpOf(MessageType type) {
  switch (type) {
    case MessageType::kLookup:
      return RequestOp::kLookup;
    case MessageType::kStore:
      return RequestOp::kStore;
    case MessageType::kLoad:
      return RequestOp::kLoad;
    case MessageType::kReleaseLease:
      return RequestOp::kRelease;
    case MessageType::kDelete:
      return RequestOp::kDelete;
    case MessageType::kGpuExport:
      return RequestOp::kGpuExport;
    case MessageType::kReleaseMemory:
      return RequestOp::kReleaseMemory;
    case MessageType::kStats:
      return RequestOp::kStats;
    case MessageType::kPing:
      return RequestOp::kPing;
    default:
      return std::nullopt;
  }
}

transport::WireTier ToWireTier(const std::optional<storage::TierKind>& tier) {
  if (!tier) return transport::WireTier::kNone;
  switch (*tier) {
    case storage::TierKind::kGpu:
      return transport::WireTier::kGpu;
    case storage::TierKind::kHost:
      return transport::WireTier::kHost;
    case storage::TierKind::kNvme:
      return transport::WireTier::kNvme;
  }
  return transport::WireTier::kNone;
}

// Flattens the store's counters into Stats entries named "<tier>.<name>".
class StatsCollector final : public storage::CounterVisitor {
 public:
  void Counter(std::string_view tier, std::string_view name, uint64_t value) override {
    entries.push_back({Name(tier, name), value});
  }
  void Gauge(std::string_view tier, std::string_view name, double value) override {
    entries.push_back({Name(tier, name), value});
  }
  std::vector<transport::StatEntry> entries;

 private:
  static std::string Name(std::string_view tier, std::string_view name) {
    std::string out(tier.empty() ? "store" : tier);
    out += '.';
    out += name;
    return out;
  }
};

uint64_t FirstSessionId() {
  // Random, so that a daemon restarted (or another daemon at the same address) gives none of
  // the ids an earlier one gave: a client compares a lease's session with its connection's, and
  // lease ids start again at 1. In [2^32, 2^62): never 0, and far from wrapping.
  uint64_t x = 0;
  if (Result<AuthNonce> random = NewAuthChallenge(); random.ok()) {
    std::memcpy(&x, random->data(), sizeof x);
  } else {
    x = static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());
  }
  return (x & ((uint64_t{1} << 62) - 1)) | (uint64_t{1} << 32);
}

}  // namespace

Service::Service(storage::BlockStore& store, const TenantRegistry& tenants, DataMover* data,
                 Metrics* metrics, ServiceOptions options)
    : store_(store),
      tenants_(tenants),
      data_(data),
      metrics_(metrics),
      options_(options),
      clock_(options.clock != nullptr ? *options.clock : steady_clock_),
      next_session_id_(FirstSessionId()) {}

std::string SessionName(const Session& session) {
  std::string name = "session " + std::to_string(session.id);
  if (session.tenant != nullptr) name += " (tenant '" + LogSafe(session.tenant->name) + "')";
  return name;
}

std::unique_ptr<Session> Service::OpenSession() {
  auto session = std::make_unique<Session>();
  session->id = next_session_id_.fetch_add(1);
  return session;
}

Message Service::Refuse(WireStatus status, std::string message) {
  if (metrics_ != nullptr) {
    switch (status) {
      case WireStatus::kUnauthenticated:
        metrics_->CountRejected(RejectReason::kUnauthenticated);
        break;
      case WireStatus::kOutOfRange:
        metrics_->CountRejected(RejectReason::kTooLarge);
        break;
      case WireStatus::kInvalidArgument:
        metrics_->CountRejected(RejectReason::kMalformed);
        break;
      default:
        break;
    }
  }
  transport::ErrorReply reply;
  reply.status = status;
  reply.message = ReplyText(message);
  return reply;
}

Message Service::Handle(Session& session, const Message& request) {
  const MessageType type = transport::TypeOf(request);
  if (!transport::AllowedBeforeAuth(type) && session.state != SessionState::kAuthenticated) {
    return Refuse(WireStatus::kUnauthenticated, "authenticate first (hello, then auth)");
  }
  const bool block_request = type == MessageType::kLookup || type == MessageType::kStore ||
                             type == MessageType::kLoad || type == MessageType::kGpuExport;
  if (block_request && draining()) {
    // Counted here: other unavailable answers (no random bytes) are the daemon's failures.
    if (metrics_ != nullptr) metrics_->CountRejected(RejectReason::kDraining);
    return Refuse(WireStatus::kUnavailable, "the daemon is shutting down");
  }
  const auto start = std::chrono::steady_clock::now();
  Message reply = std::visit(
      [&](const auto& m) -> Message {
        using M = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<M, transport::Hello>)
          return OnHello(session, m);
        else if constexpr (std::is_same_v<M, transport::Auth>)
          return OnAuth(session, m);
        else if constexpr (std::is_same_v<M, transport::ProveWorker>)
          return OnProveWorker(session, m);
        else if constexpr (std::is_same_v<M, transport::AttachMemory>)
          return OnAttachMemory(session, m);
        else if constexpr (std::is_same_v<M, transport::Ping>)
          return transport::Pong{m.payload};
        else if constexpr (std::is_same_v<M, transport::Lookup>)
          return OnLookup(session, m);
        else if constexpr (std::is_same_v<M, transport::Store>)
          return OnStore(session, m);
        else if constexpr (std::is_same_v<M, transport::Load>)
          return OnLoad(session, m);
        else if constexpr (std::is_same_v<M, transport::ReleaseLease>)
          return OnReleaseLease(session, m);
        else if constexpr (std::is_same_v<M, transport::Delete>)
          return OnDelete(session, m);
        else if constexpr (std::is_same_v<M, transport::GpuExport>)
          return OnGpuExport(session, m);
        else if constexpr (std::is_same_v<M, transport::ReleaseMemory>)
          return OnReleaseMemory(session, m);
        else if constexpr (std::is_same_v<M, transport::Stats>)
          return OnStats(session);
        else {
          return Refuse(WireStatus::kInvalidArgument,
                        std::string(transport::MessageTypeName(type)) + " is not a request");
        }
      },
      request);
  if (metrics_ != nullptr) {
    if (const std::optional<RequestOp> op = OpOf(type)) {
      metrics_->ObserveRequest(*op, std::chrono::steady_clock::now() - start);
    }
  }
  return reply;
}

Message Service::OnHello(Session& session, const transport::Hello& hello) {
  Result<AuthNonce> nonce = NewAuthChallenge();
  if (!nonce.ok()) return Refuse(WireStatus::kUnavailable, nonce.status().message());
  // A new Hello restarts the handshake: whatever the session was bound to is dropped.
  CloseSession(session);
  session.state = SessionState::kChallenged;
  session.tenant = nullptr;
  session.nonce = *nonce;
  session.requested_tenant = hello.tenant;
  session.worker_address = hello.worker_address;
  transport::HelloReply reply;
  reply.server_version = std::min(hello.client_version, transport::kProtocolVersion);
  std::copy(session.nonce.begin(), session.nonce.end(), reply.nonce.begin());
  reply.limits = options_.limits;
  const MemorySocketAnnouncement announced = AnnouncedMemorySocket();
  reply.memory_socket = announced.path;
  reply.server_pid = announced.pid;
  reply.server_uid = announced.uid;
  return reply;
}

Message Service::OnAuth(Session& session, const transport::Auth& auth) {
  if (session.state != SessionState::kChallenged) {
    return Refuse(WireStatus::kUnauthenticated, "auth without a hello");
  }
  // The nonce is single-use: a failed proof needs a new Hello.
  session.state = SessionState::kNew;
  const Tenant* tenant = tenants_.Authenticate(session.requested_tenant, session.nonce, auth.proof);
  if (tenant == nullptr) {
    KVAULT_LOG(LogLevel::kWarn, "auth",
               SessionName(session) + ": authentication failed for tenant '" +
                   LogSafe(session.requested_tenant) + "' (unknown tenant or wrong token)");
    return Refuse(WireStatus::kUnauthenticated, "unknown tenant or wrong token");
  }
  transport::AuthReply reply;
  if (!session.worker_address.empty() && data_ != nullptr) {
    Result<AuthNonce> token = NewAuthChallenge();
    if (!token.ok()) return Refuse(WireStatus::kUnavailable, token.status().message());
    transport::WorkerProof proof;
    proof.session_id = session.id;
    std::copy(token->begin(), token->end(), proof.token.begin());
    Result<transport::PeerId> peer =
        data_->Connect(session.worker_address, session.connection, proof);
    if (!peer.ok()) {
      KVAULT_LOG(LogLevel::kWarn, "auth",
                 SessionName(session) +
                     ": cannot reach the client's UCX worker: " + peer.status().ToString());
      reply.status = transport::ToWireStatus(peer.status().code());
      reply.message = ReplyText("data plane: " + peer.status().message());
      return reply;
    }
    // Unusable until the client returns the token (OnProveWorker).
    {
      std::lock_guard lock(peers_mu_);
      peers_.insert(*peer);
    }
    session.unproven_peer = *peer;
    session.worker_token = *token;
    reply.data_plane = transport::DataPlane::kUcx;
  }
  session.tenant = tenant;
  session.state = SessionState::kAuthenticated;
  KVAULT_LOG(LogLevel::kDebug, "auth",
             SessionName(session) + ": authenticated as tenant '" + LogSafe(tenant->name) +
                 "', data plane " + std::string(transport::DataPlaneName(reply.data_plane)));
  reply.session_id = session.id;
  if (tenant->token_hash) {
    // Shows the client this server knows its token too, and vouches for what the HelloReply
    // said of the memory socket: the client hands its memory over only then (OnAttachMemory).
    const MemorySocketAnnouncement announced = AnnouncedMemorySocket();
    const AuthDigest proof = ServerProof(*tenant->token_hash, session.nonce, auth.proof,
                                         announced.pid, announced.uid, announced.path);
    std::copy(proof.begin(), proof.end(), reply.server_proof.begin());
  }
  return reply;
}

std::string Service::ReplyText(std::string_view text) const {
  return std::string(text.substr(0, options_.limits.max_string_bytes));
}

Service::MemorySocketAnnouncement Service::AnnouncedMemorySocket() const {
  if (options_.memory_handles == nullptr || data_ == nullptr) return {};
  return {options_.memory_socket, static_cast<uint32_t>(getpid()),
          static_cast<uint32_t>(geteuid())};
}

bool Service::IsThisProcesssMemory(const transport::ProcessMemory& memory) {
  // Fresh random bytes, so that no process forked from this one before holds them too.
  Result<AuthNonce> canary = NewAuthChallenge();
  if (!canary.ok()) return true;  // cannot tell: taken for ours, and refused
  return memory.Probe(reinterpret_cast<uintptr_t>(canary->data()), *canary).ok();
}

Message Service::OnAttachMemory(Session& session, const transport::AttachMemory& attach) {
  transport::AttachMemoryReply reply;
  auto refuse = [&](const Status& why) {
    KVAULT_LOG(
        LogLevel::kInfo, "auth",
        SessionName(session) + ": no process-memory data plane (" + why.ToString() + ")" +
            (session.unproven_peer || session.peer ? "; the session keeps its UCX worker" : ""));
    reply.status = transport::ToWireStatus(why.code());
    reply.message = ReplyText(why.message());
    return reply;
  };
  if (options_.memory_handles == nullptr || data_ == nullptr) {
    return refuse(Status::Unsupported("this daemon has no process-memory data plane"));
  }
  if (std::optional<HandedOverMemory> region =
          options_.memory_handles->Redeem(attach.handle, HandedOverKind::kRegion)) {
    return AttachRegion(session, std::move(*region));
  }
  if (session.memory_attached) {
    return refuse(Status::InvalidArgument("this session's memory is attached already"));
  }
  if (session.worker_refused) {
    return refuse(
        Status::InvalidArgument("this session's worker proof failed; a new hello starts over"));
  }
  std::optional<HandedOverMemory> handed = options_.memory_handles->Redeem(attach.handle);
  if (!handed) {
    return refuse(Status::InvalidArgument("the memory handle is unknown, expired or used already"));
  }
  // The client named the control connection it handed its memory over for, on a path no relay
  // between it and this server can see: this session's must be that one.
  if (!session.connection || session.connection->client != handed->connection.client ||
      session.connection->server != handed->connection.server) {
    return refuse(Status::InvalidArgument(
        "the memory was handed over for another control connection (a relay between the client "
        "and kvaultd?)"));
  }
  // Read here, on this authenticated session's io thread, never on the memory socket's: memory
  // that makes a read wait (a file the client serves itself) holds up that thread (and the
  // connections sharing it), as the session's copies would.
  const Status probed = handed->memory->Probe(handed->probe_address, handed->probe);
  if (!probed.ok()) return refuse(probed);
  if (IsThisProcesssMemory(*handed->memory)) {
    return refuse(Status::InvalidArgument("the handed-over memory is kvaultd's own"));
  }
  Result<transport::PeerId> peer =
      data_->AttachProcess(std::move(*handed->memory), handed->sender_uid);
  if (!peer.ok()) return refuse(peer.status());
  // The UCX endpoint the Auth opened, proven or not, is no longer needed.
  if (session.unproven_peer) DisconnectPeer(*session.unproven_peer);
  if (session.peer) DisconnectPeer(*session.peer);
  session.unproven_peer.reset();
  session.worker_token.fill(0);
  {
    std::lock_guard lock(peers_mu_);
    peers_.insert(*peer);
  }
  session.peer = *peer;
  session.memory_attached = true;
  session.memory_pid = handed->sender_pid;
  KVAULT_LOG(LogLevel::kDebug, "auth", SessionName(session) + ": data plane process_memory");
  return reply;
}

Message Service::AttachRegion(Session& session, HandedOverMemory handed) {
  transport::AttachMemoryReply reply;
  auto refuse = [&](const Status& why) {
    KVAULT_LOG(LogLevel::kInfo, "auth",
               SessionName(session) + ": memory region not attached (" + why.ToString() + ")");
    reply.status = transport::ToWireStatus(why.code());
    reply.message = ReplyText(why.message());
    return reply;
  };
  // The region is a file any local process could send: it joins this session only when the
  // process whose memory the session attached sent it, for this very connection.
  if (!session.memory_attached || !session.peer) {
    return refuse(Status::InvalidArgument(
        "a memory region is attached after the process's memory, on the same session"));
  }
  if (!session.connection || session.connection->client != handed.connection.client ||
      session.connection->server != handed.connection.server) {
    return refuse(Status::InvalidArgument(
        "the memory region was handed over for another control connection"));
  }
  if (session.memory_pid == 0 || handed.sender_pid != session.memory_pid) {
    return refuse(Status::InvalidArgument(
        "the memory region was handed over by another process than the one that handed over the "
        "session's memory"));
  }
  const Status attached =
      data_->AttachRegion(*session.peer, handed.region->base, std::move(handed.region->file));
  if (!attached.ok()) return refuse(attached);
  KVAULT_LOG(LogLevel::kDebug, "auth", SessionName(session) + ": memory region attached");
  return reply;
}

Message Service::OnProveWorker(Session& session, const transport::ProveWorker& prove) {
  transport::ProveWorkerReply reply;
  if (!session.unproven_peer) {
    reply.status = WireStatus::kInvalidArgument;
    reply.message = ReplyText(session.peer ? "the worker is proven already"
                                           : "the hello announced no worker to prove");
    return reply;
  }
  const transport::PeerId peer = *session.unproven_peer;
  session.unproven_peer.reset();
  // Constant time: the comparison must not tell a guesser how many bytes were right.
  const bool match = ConstantTimeEqual(prove.token, session.worker_token);
  session.worker_token.fill(0);  // single use
  if (!match) {
    session.worker_refused = true;
    DisconnectPeer(peer);
    if (metrics_ != nullptr) metrics_->CountRejected(RejectReason::kUnauthenticated);
    KVAULT_LOG(LogLevel::kWarn, "auth",
               SessionName(session) +
                   ": worker proof does not match: the announced UCX worker is not this "
                   "client's; no data plane for this session");
    reply.status = WireStatus::kUnauthenticated;
    reply.message = ReplyText("the token does not match the one sent to the announced worker");
    return reply;
  }
  session.peer = peer;
  return reply;
}

Message Service::OnLookup(Session& session, const transport::Lookup& lookup) {
  storage::LookupOptions options;
  std::chrono::milliseconds ttl{0};
  if (lookup.want_lease) {
    ttl = lookup.lease_ttl_ms == 0 ? options_.default_lease_ttl
                                   : std::chrono::milliseconds(lookup.lease_ttl_ms);
    ttl = std::min(ttl, options_.max_lease_ttl);
    options.lease_ttl = ttl;
  }
  storage::LookupResult result = store_.Lookup(session.tenant->id, lookup.keys, options);
  transport::LookupReply reply;
  reply.leading_hits = result.leading_hits;
  reply.tiers.reserve(result.tiers.size());
  for (const auto& tier : result.tiers) reply.tiers.push_back(ToWireTier(tier));
  if (result.lease != 0) {
    RememberLease(session, result.lease, ttl);
    reply.lease_id = result.lease;
    reply.lease_ttl_ms = static_cast<uint32_t>(std::max<int64_t>(1, ttl.count()));
  }
  return reply;
}

void Service::RememberLease(Session& session, storage::LeaseId lease,
                            std::chrono::milliseconds ttl) {
  // Leases a session keeps at the least before it looks for expired ones.
  constexpr size_t kMinLeaseSweep = 16;
  // Read after the store granted the lease: the store's expiry (its own now + at most ttl) is no
  // later than now + ttl, so a lease dropped here has expired in the store too.
  const int64_t now = clock_.NowNanos();
  if (session.leases.size() >= session.lease_sweep_at) {
    std::erase_if(session.leases, [now](const auto& entry) { return entry.second < now; });
    // Doubling: the next sweep comes after at least as many grants as the leases left now.
    session.lease_sweep_at = std::max(kMinLeaseSweep, 2 * session.leases.size());
  }
  session.leases.emplace(lease, now + std::chrono::nanoseconds(ttl).count());
}

Message Service::OnReleaseLease(Session& session, const transport::ReleaseLease& release) {
  transport::ReleaseLeaseReply reply;
  if (session.leases.erase(release.lease_id) == 0 || !store_.ReleaseLease(release.lease_id).ok()) {
    reply.status = WireStatus::kLeaseExpired;
    reply.message = ReplyText("no such lease in this session (released or expired)");
  }
  return reply;
}

Message Service::OnReleaseMemory(Session& session, const transport::ReleaseMemory& release) {
  // The mover forgets the key after the transfers it already runs; the next request of this
  // session comes after this one, so it never meets the old key. Without a data-plane peer
  // nothing was derived from the key.
  if (session.peer && data_ != nullptr) data_->ForgetRemoteKey(*session.peer, release.remote_key);
  return transport::ReleaseMemoryReply{};
}

Message Service::OnDelete(Session& session, const transport::Delete& del) {
  transport::DeleteReply reply;
  reply.statuses.reserve(del.keys.size());
  for (const BlockKey& key : del.keys) {
    Result<bool> deleted = store_.Delete(session.tenant->id, key);
    if (!deleted.ok()) {
      reply.statuses.push_back(transport::ToWireStatus(deleted.status().code()));
    } else {
      reply.statuses.push_back(*deleted ? WireStatus::kOk : WireStatus::kNotFound);
    }
  }
  return reply;
}

Message Service::OnStats(Session& session) {
  StatsCollector collector;
  // The store's counters and tier usage reflect every tenant's activity: only for a tenant
  // allowed to see them (an operator's, or the single tenant).
  if (session.tenant->store_stats) store_.VisitCounters(collector);
  collector.entries.push_back({"daemon.draining", uint64_t{draining() ? 1u : 0u}});
  // The asking tenant's own usage (never another tenant's).
  collector.entries.push_back({"tenant.held_bytes", store_.TenantBytes(session.tenant->id)});
  collector.entries.push_back({"tenant.quota_bytes", session.tenant->quota_bytes});
  transport::StatsReply reply;
  reply.entries = std::move(collector.entries);
  return reply;
}

void Service::CloseSession(Session& session) {
  for (const auto& [lease, expiry] : session.leases) (void)store_.ReleaseLease(lease);
  session.leases.clear();
  session.lease_sweep_at = 0;
  if (session.peer) DisconnectPeer(*session.peer);
  if (session.unproven_peer) DisconnectPeer(*session.unproven_peer);
  session.peer.reset();
  session.unproven_peer.reset();
  session.worker_token.fill(0);
  session.worker_refused = false;
  session.memory_attached = false;
  session.memory_pid = 0;
}

void Service::DisconnectPeer(transport::PeerId peer) {
  if (data_ == nullptr) return;
  {
    std::lock_guard lock(peers_mu_);
    peers_.erase(peer);
  }
  data_->Disconnect(peer);
}

void Service::AbortTransfers() {
  if (data_ == nullptr) return;
  std::unordered_set<transport::PeerId> peers;
  {
    std::lock_guard lock(peers_mu_);
    peers.swap(peers_);
  }
  // Outside the lock: a disconnect waits for the data plane. A session that closes meanwhile
  // disconnects its peer again, which the mover ignores.
  for (transport::PeerId peer : peers) data_->Disconnect(peer);
  if (!peers.empty()) {
    KVAULT_LOG(LogLevel::kWarn, "kvaultd",
               "stopping with requests in flight: disconnected the data plane of " +
                   std::to_string(peers.size()) + " client(s), failing their transfers");
  }
}

std::optional<Message> Service::RefuseUnprovenWorker(const Session& session) {
  if (session.unproven_peer) {
    return Refuse(WireStatus::kUnauthenticated,
                  "the announced UCX worker is not proven yet: return the token the daemon sent "
                  "it in ProveWorker first (docs/authentication.md)");
  }
  if (session.worker_refused) {
    return Refuse(WireStatus::kUnauthenticated,
                  "the announced UCX worker's proof failed: no data plane until a new Hello");
  }
  return std::nullopt;
}

}  // namespace kvault::server
