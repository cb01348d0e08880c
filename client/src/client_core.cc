// ClientCore (client_core.h): the handshake, reconnects and the region table.

#include "client_core.h"

#include <algorithm>
#include <utility>

#include "kvault/common/auth.h"
#include "kvault/common/log.h"
#include "kvault/transport/local/memory_handover.h"

namespace kvault::client_internal {

void ReleaseChannel::Attach(Connection* conn) {
  std::deque<std::vector<uint8_t>> kept;
  {
    std::unique_lock<std::mutex> lock(mu_);
    idle_.wait(lock, [&] { return sending_ == 0; });
    conn_ = conn;
    if (conn != nullptr) kept.swap(kept_);
  }
  // Regions released while the new session connected may have been handed to it.
  for (const std::vector<uint8_t>& key : kept) Send(key, /*keep=*/true);
}

void ReleaseChannel::Detach() { Attach(nullptr); }

void ReleaseChannel::DropKept() {
  std::lock_guard<std::mutex> lock(mu_);
  kept_.clear();
}

void ReleaseChannel::Send(const std::vector<uint8_t>& remote_key, bool keep) {
  transport::ReleaseMemory request;
  request.remote_key = remote_key;
  Connection* conn = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (conn_ == nullptr || !conn_->alive()) {
      if (keep) {
        kept_.push_back(remote_key);
      }
      return;
    }
    conn = conn_;
    ++sending_;  // keeps conn attached, and so alive, until the call returns
  }
  // The deadline only bounds how long the connection waits for the reply before it counts the
  // daemon as stalled; nothing waits for it here. A failed send completes other requests here,
  // whose settled callbacks may release regions and so re-enter Send.
  conn->Call(request, Clock::now() + timeout_, [](Result<transport::Message>) {});
  std::lock_guard<std::mutex> lock(mu_);
  if (--sending_ == 0) idle_.notify_all();
}

RegionRecord::~RegionRecord() {
  // Before the memory is deregistered: the daemon must forget the key before a later
  // registration can pack to the same bytes, and every later request is queued after this one.
  if (channel && !region.remote_key.empty()) channel->Send(region.remote_key, file != nullptr);
}

ClientCore::ClientCore(ClientConfig config, HostPort address,
                       std::shared_ptr<transport::UcxAgent> agent)
    : config_(std::move(config)),
      address_(std::move(address)),
      agent_(std::move(agent)),
      release_channel_(std::make_shared<ReleaseChannel>(config_.request_timeout)),
      staging_(agent_ ? config_.registered_staging_bytes : 0,
               [this](uint64_t bytes) -> Result<std::shared_ptr<RegionRecord>> {
                 KVAULT_ASSIGN_OR_RETURN(transport::RegisteredRegion region,
                                         agent_->AllocateMemory(bytes));
                 // Not in the region table: no caller's pointer lies in it.
                 return std::make_shared<RegionRecord>(agent_, std::move(region), release_channel_);
               }) {}

ClientCore::~ClientCore() {
  std::shared_ptr<Connection> conn;
  {
    std::lock_guard<std::mutex> lock(conn_mu_);
    release_channel_->Detach();
    conn = std::move(link_.conn);
  }
  if (conn) conn->Fail(Status::Unavailable("client closed"));
}

Result<bool> ClientCore::AttachOwnMemory(Connection& conn, const transport::HelloReply& hr,
                                         const transport::Auth& auth,
                                         const transport::AuthReply& ar, Deadline deadline,
                                         std::optional<transport::HandOverTarget>* target_out) {
  // docs/authentication.md §6 and docs/memory_handover.md. The empty token of the default tenant
  // proves nothing, so no daemon gets this process's memory without having shown it knows a
  // real token; nor one on another host.
  if (hr.memory_socket.empty() || config_.token.empty() || !conn.on_this_host() || !conn.ends()) {
    return false;
  }
  auto skip = [](const std::string& why) {
    KVAULT_LOG(LogLevel::kDebug, "client", "no process-memory data plane, using UCX: " + why);
    return false;
  };
  if (!VerifyServerProof(TokenHash(config_.token), hr.nonce, auth.proof, hr.server_pid,
                         hr.server_uid, hr.memory_socket, ar.server_proof)) {
    return skip("kvaultd did not prove that it knows the token");
  }
  // The daemon reads the probe back when it redeems the handle: it stays here until the reply.
  transport::HandOverProbe probe{};
  const transport::HandOverTarget target{hr.memory_socket, hr.server_pid, hr.server_uid,
                                         *conn.ends()};
  // At most half of what is left of the connect: a client that falls back to UCX still needs
  // another handshake and the worker proof.
  const auto now = Clock::now();
  const auto left = deadline > now ? deadline - now : Clock::duration::zero();
  if (left / 2 < std::chrono::milliseconds(1)) return skip("no time left for the hand-over");
  Result<transport::Bytes32> handle = transport::HandOverOwnMemory(
      target, &probe, now + std::min<Clock::duration>(kHandOverTimeout, left / 2));
  if (!handle.ok()) return skip(handle.status().ToString());
  // Only an AttachMemoryReply settles it: after anything else the daemon may still act on the
  // request (and read the probe, gone once this returns), so the connection is given up.
  Result<transport::Message> reply = conn.CallSync(transport::AttachMemory{*handle}, deadline);
  if (!reply.ok()) return reply.status();
  const auto& attached = std::get<transport::AttachMemoryReply>(*reply);
  if (attached.status != transport::WireStatus::kOk) return skip(attached.ToStatus().ToString());
  *target_out = target;
  return true;
}

Status ClientCore::HandOverRegion(Connection& conn, const transport::HandOverTarget& target,
                                  const RegionRecord& record, Deadline deadline) {
  const auto now = Clock::now();
  Result<transport::Bytes32> handle = transport::HandOverRegion(
      target, reinterpret_cast<uintptr_t>(record.file->address()), record.file->length(),
      record.file->descriptor(), std::min<Deadline>(deadline, now + kHandOverTimeout));
  if (!handle.ok()) return handle.status();
  Result<transport::Message> reply = conn.CallSync(transport::AttachMemory{*handle}, deadline);
  if (!reply.ok()) return reply.status();
  return std::get<transport::AttachMemoryReply>(*reply).ToStatus();
}

std::vector<std::shared_ptr<RegionRecord>> ClientCore::SharedRegions() {
  std::vector<std::shared_ptr<RegionRecord>> out;
  {
    std::lock_guard<std::mutex> lock(regions_mu_);
    for (const TrackedRegion& t : regions_) {
      if (std::shared_ptr<RegionRecord> r = t.record.lock(); r && r->file) out.push_back(r);
    }
  }
  return out;  // the records may die here, outside regions_mu_
}

Result<std::shared_ptr<RegionRecord>> ClientCore::AllocateShared(size_t len) {
  Link link;
  {
    std::lock_guard<std::mutex> lock(conn_mu_);
    if (!link_.conn || !link_.conn->alive() || link_.memory_target == nullptr) {
      return std::shared_ptr<RegionRecord>();
    }
    link = link_;
  }
  Result<transport::SharedMemoryFile> file = transport::SharedMemoryFile::Create(len);
  Result<transport::RegisteredRegion> region =
      file.ok() ? agent_->RegisterMemory(file->address(), file->length())
                : Result<transport::RegisteredRegion>(file.status());
  if (!region.ok()) {
    if (region.status().code() == StatusCode::kResourceExhausted) return region.status();
    // No memfd here (a seccomp filter, no descriptors left): UCX's allocation will do.
    KVAULT_LOG(LogLevel::kDebug, "client",
               "no shared memory file, allocating through UCX: " + region.status().ToString());
    return std::shared_ptr<RegionRecord>();
  }
  auto record = std::make_shared<RegionRecord>(
      agent_, std::move(*region), release_channel_,
      std::make_unique<transport::SharedMemoryFile>(std::move(*file)));
  Track(record);
  if (Status s = HandOverRegion(*link.conn, *link.memory_target, *record,
                                Clock::now() + config_.request_timeout);
      !s.ok()) {
    KVAULT_LOG(LogLevel::kDebug, "client",
               "memory region not handed over (the daemon copies it through the process's "
               "memory file): " +
                   s.ToString());
  }
  return record;
}

Result<Link> ClientCore::Open(Deadline deadline) {
  std::optional<TlsOptions> tls;
  if (config_.tls) {
    tls = TlsOptions{config_.tls_ca_file,
                     config_.tls_server_name.empty() ? address_.host : config_.tls_server_name};
  }
  KVAULT_ASSIGN_OR_RETURN(std::shared_ptr<Connection> conn,
                          Connection::Open(address_, deadline, config_.stall_timeout, tls));
  auto fail = [&](const Status& s, std::string_view step) {
    const Status reason = s.WithContext(std::string(step) + " with kvaultd at " + conn->peer());
    conn->Fail(reason);
    return reason;
  };

  // Hello, announcing this client's UCX worker when `announce_worker`.
  auto say_hello = [&](bool announce_worker) -> Result<transport::HelloReply> {
    transport::Hello hello;
    hello.tenant = config_.tenant;
    hello.client_name = config_.client_name;
    if (announce_worker) {
      hello.worker_address = agent_->worker_address();
      agent_->ForgetWorkerProofs();  // one that came too late for an earlier handshake is stale
    }
    Result<transport::Message> reply = conn->CallSync(hello, deadline);
    if (!reply.ok()) {
      Status s = reply.status();
      // A daemon that hangs up on a plain Hello: its control plane is TLS (it drops a stream
      // that is no TLS handshake), or it is at its connection limits.
      if (!config_.tls && s.code() == StatusCode::kUnavailable &&
          s.message().find("closed the connection") != std::string::npos) {
        s = Status::Unavailable(s.message() +
                                " before answering hello (is its control plane TLS? then set "
                                "tls; else it may be at its connection limits)");
      }
      return fail(s, "hello");
    }
    transport::HelloReply hr = std::get<transport::HelloReply>(*reply);
    if (hr.server_version != transport::kProtocolVersion) {
      return fail(Status::Unsupported("the daemon speaks protocol version " +
                                      std::to_string(hr.server_version) + ", this client " +
                                      std::to_string(transport::kProtocolVersion)),
                  "hello");
    }
    conn->SetLimits(hr.limits);
    return hr;
  };
  // Auth over the nonce of `hr`; fills `auth` (the proof sent) and returns an ok AuthReply.
  auto authenticate = [&](const transport::HelloReply& hr,
                          transport::Auth& auth) -> Result<transport::AuthReply> {
    const AuthDigest proof = AuthProof(TokenHash(config_.token), hr.nonce);
    std::copy(proof.begin(), proof.end(), auth.proof.begin());
    Result<transport::Message> reply = conn->CallSync(auth, deadline);
    if (!reply.ok()) return fail(reply.status(), "auth");
    transport::AuthReply ar = std::get<transport::AuthReply>(*reply);
    if (ar.status != transport::WireStatus::kOk) return fail(ar.ToStatus(), "auth");
    return ar;
  };

  // A client that may hand its memory over (a token, the daemon on this host) first announces
  // no UCX worker, so that the daemon opens no UCX endpoint to it: UCX 1.13 aborts a process
  // whose worker still has its answer to a peer's connection request queued when that peer goes
  // away (transport/ucx.md, "What UCX 1.13 does"). When the daemon names no memory socket it
  // says Hello again at once, announcing the worker; when the hand-over fails after Auth, it
  // says Hello and Auth again.
  bool announced = agent_ != nullptr &&
                   (config_.token.empty() || !conn->on_this_host() || !conn->ends().has_value());
  KVAULT_ASSIGN_OR_RETURN(transport::HelloReply hr, say_hello(announced));
  if (agent_ && !announced && hr.memory_socket.empty()) {
    announced = true;
    KVAULT_ASSIGN_OR_RETURN(hr, say_hello(true));
  }
  transport::Auth auth;
  KVAULT_ASSIGN_OR_RETURN(transport::AuthReply ar, authenticate(hr, auth));
  if (agent_) {
    std::optional<transport::HandOverTarget> target;
    Result<bool> attached = AttachOwnMemory(*conn, hr, auth, ar, deadline, &target);
    if (!attached.ok()) return fail(attached.status(), "attach memory");
    if (*attached) {
      // The regions of the session before, for this one, within half of what is left of the
      // connect (the rest is copied through the memory file).
      const Deadline regions_until = Clock::now() + (deadline - Clock::now()) / 2;
      // Regions freed before now never reach this session; ones freed from now on may have, and
      // are released on it once it is attached.
      release_channel_->DropKept();
      for (const std::shared_ptr<RegionRecord>& record : SharedRegions()) {
        if (Clock::now() + std::chrono::milliseconds(1) >= regions_until) {
          KVAULT_LOG(LogLevel::kDebug, "client", "no time left to hand memory regions over");
          break;
        }
        if (Status s = HandOverRegion(*conn, *target, *record, regions_until); !s.ok()) {
          if (!conn->alive()) return fail(s, "attach memory region");
          KVAULT_LOG(LogLevel::kDebug, "client", "memory region not handed over: " + s.ToString());
          if (s.code() == StatusCode::kResourceExhausted) break;  // the daemon takes no more
        }
      }
      return Link{std::move(conn), ar.session_id, transport::DataPlane::kProcessMemory,
                  std::make_shared<const transport::HandOverTarget>(*target)};
    }
    if (!announced) {
      KVAULT_ASSIGN_OR_RETURN(hr, say_hello(true));
      KVAULT_ASSIGN_OR_RETURN(ar, authenticate(hr, auth));
    }
  }
  if (agent_ && ar.data_plane == transport::DataPlane::kUcx) {
    // The daemon sent a token to the worker this Hello announced; returning it shows the worker
    // is this client's (transport/ucx/worker_proof.h). No block data moves before.
    Result<std::array<uint8_t, 32>> token = agent_->AwaitWorkerProof(ar.session_id, deadline);
    if (!token.ok()) return fail(token.status(), "worker proof");
    Result<transport::Message> proven = conn->CallSync(transport::ProveWorker{*token}, deadline);
    if (!proven.ok()) return fail(proven.status(), "worker proof");
    const auto& pr = std::get<transport::ProveWorkerReply>(*proven);
    if (pr.status != transport::WireStatus::kOk) return fail(pr.ToStatus(), "worker proof");
  }
  return Link{std::move(conn), ar.session_id, ar.data_plane, nullptr};
}

Result<Link> ClientCore::Acquire(Deadline deadline) {
  std::shared_ptr<Connection> dead;  // destroyed after the lock is released (joins its thread)
  {
    std::lock_guard<std::mutex> lock(conn_mu_);
    if (link_.conn && link_.conn->alive()) return link_;
    if (link_.conn) {
      last_failure_ = link_.conn->failure();
      release_channel_->Detach();
      dead = std::move(link_.conn);
      link_ = Link{};
      next_attempt_ = Clock::now();  // the first reconnect after a loss is immediate
    }
    const Deadline now = Clock::now();
    if (connecting_) {
      return Status::Unavailable(
          "reconnecting to kvaultd at " + config_.server +
          (last_failure_.ok() ? "" : "; last failure: " + last_failure_.message()));
    }
    if (now < next_attempt_) {
      const auto wait =
          std::chrono::duration_cast<std::chrono::milliseconds>(next_attempt_ - now).count();
      return Status::Unavailable(last_failure_.message() + " (next reconnect attempt in " +
                                 std::to_string(wait) + " ms)");
    }
    connecting_ = true;
  }
  dead.reset();
  // Open starts a thread and an io_context, which throw when the process is out of threads or
  // memory: that is a failed attempt like any other, not an exception out of the caller's call
  // (nor a `connecting_` left set, which would refuse every later call).
  Result<Link> opened = Status::Unavailable("opening a connection to kvaultd");
  try {
    opened = Open(std::min(deadline, Clock::now() + config_.connect_timeout));
  } catch (const std::exception& e) {
    opened = Status::Unavailable("opening a connection to kvaultd at " + config_.server + ": " +
                                 e.what());
  }
  std::lock_guard<std::mutex> lock(conn_mu_);
  connecting_ = false;
  if (!opened.ok()) {
    last_failure_ = opened.status();
    next_attempt_ = Clock::now() + config_.reconnect_backoff;
    return opened.status();
  }
  link_ = *opened;
  release_channel_->Attach(link_.conn.get());
  last_failure_ = Status::Ok();
  return link_;
}

bool ClientCore::connected() const {
  std::lock_guard<std::mutex> lock(conn_mu_);
  return link_.conn && link_.conn->alive();
}

uint64_t ClientCore::session_id() const {
  std::lock_guard<std::mutex> lock(conn_mu_);
  return link_.conn && link_.conn->alive() ? link_.session : 0;
}

std::shared_ptr<RegionRecord> ClientCore::Adopt(transport::RegisteredRegion region, bool staged) {
  auto record = std::make_shared<RegionRecord>(agent_, std::move(region), release_channel_);
  record->staged = staged;
  Track(record);
  return record;
}

void ClientCore::Track(const std::shared_ptr<RegionRecord>& record) {
  const TrackedRegion tracked{reinterpret_cast<uintptr_t>(record->region.memory.address()),
                              record->region.memory.length(), record};
  std::lock_guard<std::mutex> lock(regions_mu_);
  std::erase_if(regions_, [](const TrackedRegion& t) { return t.record.expired(); });
  regions_.push_back(tracked);
}

std::shared_ptr<RegionRecord> ClientCore::FindRegion(const void* p, size_t n) {
  const uintptr_t at = reinterpret_cast<uintptr_t>(p);
  std::lock_guard<std::mutex> lock(regions_mu_);
  for (const TrackedRegion& t : regions_) {
    if (n == 0 || at < t.begin || n > t.size || at - t.begin > t.size - n) continue;
    // A freed region's range may be registered again: skip the dead record.
    if (std::shared_ptr<RegionRecord> r = t.record.lock()) return r;
  }
  return nullptr;
}

void ClientCore::Retire(MemoryRegion region) {
  std::lock_guard<std::mutex> lock(retired_mu_);
  retired_.Retire(std::move(region));
}

}  // namespace kvault::client_internal
