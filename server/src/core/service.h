#pragma once
// Service: kvaultd's request handling with no networking types (DESIGN.md §8). The control plane
// decodes a frame into a transport::Message, calls Handle with the connection's Session, and
// encodes the Message it returns; the core does the rest: the hello/auth handshake, tenant
// scoping of every key, leases owned per session, block bytes moved through a DataMover, per-key
// statuses, request metrics.
//
//   Hello      -> HelloReply with a fresh nonce (a new Hello restarts the handshake)
//   Auth       -> AuthReply; on success the session is bound to its tenant and, when the Hello
//                 carried a worker address, connected to that worker, which is sent a token
//                 (transport/ucx/worker_proof.h); the reply carries the server's proof that it
//                 knows the tenant's token (ServerProof, none for a tenant without one)
//   ProveWorker -> ProveWorkerReply; the token back: from then on block data moves for the
//                 session. Before, and after a wrong token (which also disconnects the worker
//                 until a new Hello), Store and Load get ErrorReply{kUnauthenticated}
//   AttachMemory -> AttachMemoryReply, after auth only: redeems the handle of memory the client
//                 handed over (options.memory_handles), reads its probe back, and from then on
//                 block data moves through that memory; the UCX endpoint the Auth opened is
//                 dropped. A refusal leaves the session's data plane as it was. A handle of a
//                 memory region (docs/memory_handover.md, "Regions") redeemed on a session
//                 whose memory is attached, handed over for its connection by the process whose
//                 memory that is, adds the region (DataMover::AttachRegion); a refused region
//                 leaves the session as it was
//   Ping       -> Pong (allowed before auth)
//   Lookup, Store, Load, ReleaseLease, Delete, GpuExport, ReleaseMemory, Stats -> their replies,
//                 after auth only; before, ErrorReply{kUnauthenticated}
//   anything else (a reply type sent as a request) -> ErrorReply{kInvalidArgument}
//   while draining, Lookup/Store/Load/GpuExport -> ErrorReply{kUnavailable}
//
// A tenant sees only its own blocks: every key is scoped by the session's tenant id, so another
// tenant's probe takes exactly the miss path. A session's leases are releasable only by that
// session, and CloseSession releases them all (a client that dies leaves none behind). A lease
// only protects blocks from eviction: Load serves present blocks whatever lease it names.
// GpuExport is the exception: it describes only blocks a live lease of the session covers,
// because the lease is what keeps the exported bytes in place while the client copies them.
// ReleaseMemory makes the session's data mover forget a remote key the client is about to
// deregister (the mover caches unpacked keys by their bytes, which a later registration may
// repeat); it is answered OK whether or not the key was known.
//
// Thread-safety: Handle and CloseSession may run concurrently for different sessions; calls for
// one session must not overlap (a connection handles one request at a time). SetDraining and
// AbortTransfers may run concurrently with anything.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_set>

#include "core/copy_helper.h"
#include "core/data_mover.h"
#include "core/memory_handles.h"
#include "core/session.h"
#include "kvault/storage/block_store.h"
#include "kvault/storage/clock.h"
#include "kvault/transport/messages.h"
#include "kvault/transport/protocol_limits.h"
#include "tenants/tenant_registry.h"

namespace kvault::server {

class Metrics;

struct ServiceOptions {
  // The limits the daemon decodes with, announced in HelloReply.
  transport::ProtocolLimits limits;
  // Lease lifetime when a Lookup asks for one with ttl 0, and the cap on any request.
  std::chrono::milliseconds default_lease_ttl{30'000};
  std::chrono::milliseconds max_lease_ttl{600'000};
  // Deadline of the transfers of one Store or Load.
  std::chrono::milliseconds transfer_timeout{10'000};
  // Block bytes one request may move; a bigger Store or Load is refused whole.
  uint64_t max_request_bytes = uint64_t{1} << 30;
  // Answer GpuExport with CUDA IPC handles of leased gpu-tier blocks ([storage.gpu_ipc_export]).
  // A handle exposes the whole gpu pool to the client's process. Off: every key is kUnsupported.
  bool gpu_ipc_export = false;
  // The store's lease clock (BlockStoreOptions::clock), read to tell when a session's leases have
  // expired; nullptr = a SteadyClock, which matches a store that also has none. Must outlive the
  // service.
  const storage::Clock* clock = nullptr;
  // The memory clients on this host handed over (process-memory data plane), which an
  // AttachMemory redeems; nullptr = no such plane. Must outlive the service.
  MemoryHandles* memory_handles = nullptr;
  // The path of the socket they hand it over at (MemorySocket), announced in HelloReply when
  // memory_handles is set.
  std::string memory_socket;
};

class Service {
 public:
  // `store`, `tenants`, `data` (may be null: no data plane, Store and Load then fail per key) and
  // `metrics` (may be null) must outlive the service.
  Service(storage::BlockStore& store, const TenantRegistry& tenants, DataMover* data,
          Metrics* metrics, ServiceOptions options);
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;

  // A new session in state kNew with a fresh id.
  std::unique_ptr<Session> OpenSession();

  // Handles one decoded request of `session`; returns the reply to send (never fails: errors
  // are ErrorReply or per-key statuses).
  transport::Message Handle(Session& session, const transport::Message& request);

  // Releases the session's leases and disconnects its data-plane peer. Idempotent.
  void CloseSession(Session& session);

  // While draining, new block requests are refused with kUnavailable; handshakes, Stats, Ping,
  // ReleaseLease, ReleaseMemory and Delete still work.
  void SetDraining(bool draining) { draining_.store(draining); }
  bool draining() const { return draining_.load(); }

  // Fails every data-plane transfer now running, for a shutdown whose drain bound has passed:
  // disconnects the data-plane peers of all sessions (DataMover::Disconnect), so a request that
  // waits on a stalled client ends now rather than at its transfer deadline. Those sessions have
  // no data plane afterwards: their Stores and Loads fail per key.
  void AbortTransfers();

  const ServiceOptions& options() const { return options_; }

 private:
  transport::Message OnHello(Session& session, const transport::Hello& hello);
  transport::Message OnAuth(Session& session, const transport::Auth& auth);
  transport::Message OnProveWorker(Session& session, const transport::ProveWorker& prove);
  transport::Message OnAttachMemory(Session& session, const transport::AttachMemory& attach);
  // OnAttachMemory for a handle of a region (HandedOverMemory::region).
  transport::Message AttachRegion(Session& session, HandedOverMemory handed);
  transport::Message OnLookup(Session& session, const transport::Lookup& lookup);
  transport::Message OnStore(Session& session, const transport::Store& store);
  transport::Message OnLoad(Session& session, const transport::Load& load);
  transport::Message OnReleaseLease(Session& session, const transport::ReleaseLease& release);
  transport::Message OnDelete(Session& session, const transport::Delete& del);
  transport::Message OnGpuExport(Session& session, const transport::GpuExport& request);
  transport::Message OnReleaseMemory(Session& session, const transport::ReleaseMemory& release);
  transport::Message OnStats(Session& session);

  // ErrorReply, counted as a rejected request for unauthenticated (unauthenticated), out_of_range
  // (too_large) and invalid_argument (malformed); other statuses are counted by the caller when
  // they are refusals (draining) or not at all (the daemon's own failures).
  transport::Message Refuse(transport::WireStatus status, std::string message);
  // ErrorReply{kUnauthenticated} for a Store or Load while the session's announced worker is
  // unproven (no ProveWorker yet, or a wrong token); nullopt otherwise.
  std::optional<transport::Message> RefuseUnprovenWorker(const Session& session);
  // Whether `memory` is this process's own (fresh random bytes of ours read back through it);
  // true when no random bytes can be had.
  static bool IsThisProcesssMemory(const transport::ProcessMemory& memory);
  // What HelloReply says of the memory socket, and the server proof vouches for: its path and
  // this process's pid and effective uid when there is a process-memory plane (memory handles
  // and a data mover); all empty and zero otherwise.
  struct MemorySocketAnnouncement {
    std::string path;
    uint32_t pid = 0;
    uint32_t uid = 0;
  };
  MemorySocketAnnouncement AnnouncedMemorySocket() const;
  // `text` cut to the limits' max_string_bytes: what a reply's message may carry (a longer one
  // would fail to encode, and the connection would close instead of the request failing).
  std::string ReplyText(std::string_view text) const;
  // Disconnects a data-plane peer of a session and stops tracking it for AbortTransfers.
  void DisconnectPeer(transport::PeerId peer);
  // Records a lease the store granted `session` for `ttl`, first dropping the session's expired
  // leases when it has collected enough of them (amortised O(1) per lease).
  void RememberLease(Session& session, storage::LeaseId lease, std::chrono::milliseconds ttl);

  storage::BlockStore& store_;
  const TenantRegistry& tenants_;
  DataMover* data_;
  Metrics* metrics_;
  ServiceOptions options_;
  storage::SteadyClock steady_clock_;
  const storage::Clock& clock_;  // options_.clock or steady_clock_
  CopyHelper copy_helper_;       // the second core of a store's copy out of mapped client memory
  std::atomic<uint64_t> next_session_id_;  // starts at FirstSessionId()
  std::atomic<bool> draining_{false};
  // The connected data-plane peers of all sessions, for AbortTransfers.
  std::mutex peers_mu_;
  std::unordered_set<transport::PeerId> peers_;
};

}  // namespace kvault::server
