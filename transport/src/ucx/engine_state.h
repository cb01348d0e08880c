#pragma once
// The state EngineCore keeps per peer, per unpacked remote key and per batch in flight, shared by
// engine_core.cc (batches) and engine_core_keys.cc (the remote-key cache). Private to
// transport/src/ucx; everything here is touched only by the thread driving the worker.

#include <ucp/api/ucp.h>

#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <vector>

#include "kvault/transport/local/mapped_residency.h"
#include "kvault/transport/ucx/ucx_remote_key.h"
#include "ucx/engine_core.h"

namespace kvault::transport {

struct CachedKey {
  std::vector<uint8_t> bytes;  // as the client sealed them
  UcxRemoteKey key;
  uint32_t users = 0;  // batches in flight that posted requests with it
  // The key's region where UCX mapped it here (empty when it is not, or without a residency):
  // destroyed before `key`, whose destruction may unmap it.
  ResidentMapping resident;
};

struct EngineCore::Peer {
  std::vector<uint8_t> address;  // sealed; kept to re-create the endpoint after a reset
  std::optional<ControlConnection> connection;  // what its keys are checked against
  std::optional<UcxEndpoint> ep;                // empty after a failure or a deadline reset
  uint64_t ep_generation = 0;                   // counts the endpoints created, ep the last
  bool failed = false;                          // the error handler ran for the current endpoint
  std::list<std::unique_ptr<CachedKey>> keys;   // unpacked on ep; most recently used first
};

// UCX callbacks get a pointer to one of these; the batch outlives every request that has one.
struct OpContext {
  BatchState* batch = nullptr;
  uint32_t index = 0;
};
struct FlushContext {
  BatchState* batch = nullptr;
  PeerId peer = 0;
  bool in_flight = false;
  bool confirmed = false;  // flush completed OK: this peer's PUTs reached the client
};

// The key a batch uses for one (peer, remote key index) pair.
struct KeyUse {
  PeerId peer = 0;
  uint32_t index = 0;
  CachedKey* key = nullptr;  // null when unpacking failed
  Status status;             // why it failed
};

enum class Phase { kTransfers, kFlushing, kDelivered };

struct BatchState {
  EngineCore* core = nullptr;
  TransferBatch request;
  std::vector<ucp_mem*> local_memh;
  TransferCallback done;
  std::vector<Status> statuses;
  std::vector<uint8_t> in_flight;  // per transfer: its UCX request has not completed
  // Per PUT posted: the ep_generation of the endpoint it went on. A flush confirms only what went
  // on the endpoint it flushes: a PUT on an endpoint reset since is not known to have landed.
  std::vector<uint64_t> put_generation;
  std::vector<OpContext> ops;      // sized once: UCX holds pointers into it
  std::vector<FlushContext> flushes;
  std::vector<KeyUse> keys;
  size_t outstanding = 0;  // UCX requests (transfers and flushes) not yet completed
  Phase phase = Phase::kTransfers;
  bool expired = false;
  bool ready = false;  // queued in EngineCore::ready_
  EngineCore::Clock::time_point grace_until;
  std::list<std::unique_ptr<BatchState>>::iterator self;
};

// Where the client's byte at `address` is mapped in this process (the key's memory is a shared
// segment UCX attached: posix or sysv), or null when it is not (CMA, TCP, registered memory).
inline const uint8_t* MappedHere(const CachedKey& key, uint64_t address) {
  void* mapped = nullptr;
  return ucp_rkey_ptr(key.key.get(), address, &mapped) == UCS_OK
             ? static_cast<const uint8_t*>(mapped)
             : nullptr;
}

}  // namespace kvault::transport
