#pragma once
// The options of other modules, derived from DaemonConfig in one place so that the daemon's
// wiring never re-types a mapping. Pure functions; thread-safe.

#include <string>

#include "config/daemon_config.h"
#include "kvault/storage/block_store.h"
#include "kvault/transport/protocol_limits.h"

namespace kvault::server {

// storage.* (policies, landing tier, promotion, watermarks, movers), limits.max_block_bytes and
// leases.max_ttl. The clock is left null (the store's own steady clock).
storage::BlockStoreOptions StoreOptionsFor(const DaemonConfig& config);

// limits.max_frame_bytes, limits.max_keys_per_request and limits.max_block_bytes; the other
// protocol limits keep their defaults. Valid (ProtocolLimits::Validate) for every config that
// passes the option table's bounds.
transport::ProtocolLimits ProtocolLimitsFor(const DaemonConfig& config);

// Which data planes the daemon runs (data_plane.process_memory, ucx.transports, auth).
struct DataPlaneChoice {
  bool process_memory = false;  // a ProcessDataMover for clients on this host
  std::string ucx_transports;   // what the UCX context is given (UCX_TLS syntax)
  std::string memory_socket;    // the hand-over socket's absolute path; empty = a fresh one
};
// process_memory: "on", or "auto" with a tenants file. ucx_transports: ucx.transports as set;
// when it is empty and "auto" turned process memory on, "^shm" (every transport but shared
// memory and CMA: with tenants, clients on this host move data through process memory, and no
// one reaches UCX's trusting shared-memory lanes). memory_socket: data_plane.memory_socket made
// absolute (against the working directory), when process_memory and it is set.
DataPlaneChoice ChooseDataPlanes(const DaemonConfig& config);

}  // namespace kvault::server
