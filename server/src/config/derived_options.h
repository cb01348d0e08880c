#pragma once
// The options of other modules, derived from DaemonConfig in one place so that the daemon's
// wiring never re-types a mapping. Pure functions; thread-safe.

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

}  // namespace kvault::server
