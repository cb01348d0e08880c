#pragma once
// Session: the state of one control connection, owned by the connection and handed to every
// Service call for it (DESIGN.md §8). A connection is new, then challenged (Hello answered with a
// nonce), then authenticated (Auth proved the tenant's token); only then may it use blocks.
//
// Thread-compatible: one connection handles one request at a time.

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "kvault/common/auth.h"
#include "kvault/storage/block_store.h"
#include "kvault/transport/ucx/control_connection.h"
#include "kvault/transport/ucx/transfer.h"
#include "tenants/tenant_registry.h"

namespace kvault::server {

enum class SessionState : uint8_t { kNew, kChallenged, kAuthenticated };

struct Session {
  uint64_t id = 0;  // nonzero, unique for the daemon's lifetime
  SessionState state = SessionState::kNew;
  AuthNonce nonce{};                    // issued by the last Hello
  std::string requested_tenant;         // the tenant the Hello named
  std::vector<uint8_t> worker_address;  // the client's data-plane worker, may be empty
  const Tenant* tenant = nullptr;       // set by a successful Auth
  // Data-plane peer: a process-memory peer is usable once AttachMemory connected it; a UCX one
  // is connected by Auth (unproven_peer) and usable once ProveWorker returned worker_token, the
  // token sent to it (transport/ucx/worker_proof.h).
  std::optional<transport::PeerId> peer;
  std::optional<transport::PeerId> unproven_peer;
  AuthNonce worker_token{};
  bool worker_refused = false;  // a ProveWorker had the wrong token
  bool memory_attached = false;  // AttachMemory made `peer` a process-memory peer
  uint32_t memory_pid = 0;       // then: the pid that handed it over (SO_PEERCRED), 0 if unknown
  // The control connection's ends, set by the control server; the peer's remote keys are
  // checked against it (UcxRemoteKey::Unpack). Empty in-process (tests).
  std::optional<transport::ControlConnection> connection;
  // Leases this session was granted, each with a time (nanoseconds on the store's Clock) by which
  // it has surely expired in the store. Expired ones are dropped as new ones are granted
  // (Service::OnLookup), so a client that lets its leases run out does not grow the session:
  // the map holds at most about twice the live leases (and never fewer than a small minimum).
  std::unordered_map<storage::LeaseId, int64_t> leases;
  size_t lease_sweep_at = 0;  // OnLookup drops expired leases once leases.size() reaches this
};

// "session 12" or, once authenticated, "session 12 (tenant 'team-a')": how log lines name it.
std::string SessionName(const Session& session);

}  // namespace kvault::server
