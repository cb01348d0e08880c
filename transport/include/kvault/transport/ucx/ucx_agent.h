#pragma once
// UcxAgent: the client side of the data plane. A UCX context and worker whose only job is to be
// the target of the server's GETs and PUTs: it registers the client's memory, reports the worker
// address (sent to the server once) and keeps a progress thread running, because with TCP UCX
// emulates one-sided operations with messages that the target's worker must process.
//
// Destruction order: destroy every RegisteredRegion before the agent.
//
// Thread-safety: all methods are safe from any thread.

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "kvault/common/result.h"
#include "kvault/transport/ucx/ucx_context.h"
#include "kvault/transport/ucx/ucx_memory.h"

namespace kvault::transport {

struct UcxAgentOptions {
  // Transports, name and keepalive of the agent's UCX context (thread_safe is always on).
  // Default: UCX's choice of transports. Must share at least one transport with the server.
  UcxContextOptions context;
  // As TransferEngineOptions::spin_before_sleep. Default 50 us.
  std::chrono::microseconds spin_before_sleep{50};
};

// Client memory the server may read and write.
struct RegisteredRegion {
  UcxMemory memory;                 // deregisters on destruction
  std::vector<uint8_t> remote_key;  // sealed; send with addresses inside memory's range
  uint64_t remote_address() const { return reinterpret_cast<uint64_t>(memory.address()); }
};

class UcxAgent {
 public:
  // Errors as UcxContext::Create and UcxWorker::Create; Internal when the progress thread cannot
  // start.
  static Result<std::unique_ptr<UcxAgent>> Create(const UcxAgentOptions& options);
  // Stops and joins the progress thread. Precondition: every RegisteredRegion is gone.
  ~UcxAgent();
  UcxAgent(const UcxAgent&) = delete;
  UcxAgent& operator=(const UcxAgent&) = delete;

  // The worker's sealed address, sent to the server once per connection.
  const std::vector<uint8_t>& worker_address() const;
  // The token a server sent this worker for session `session_id` after its Auth
  // (worker_proof.h), for the client to return in ProveWorker; waits until `deadline`.
  // Unavailable with a deadline-exceeded message when none arrived.
  Result<std::array<uint8_t, 32>> AwaitWorkerProof(uint64_t session_id,
                                                   std::chrono::steady_clock::time_point deadline);
  // Forgets every proof received so far (WorkerProofMailbox::Clear); call before a handshake.
  void ForgetWorkerProofs();

  // Registers caller-owned [address, address + length) for remote read and write and packs its
  // remote key. Works over every transport, but with UCX 1.13 one-sided GET/PUT into such memory
  // from a server on the same host is emulated with messages through shared memory (the agent's
  // thread copies; ~0.5 GiB/s); across hosts it goes over TCP as usual. Errors as
  // UcxMemory::Map and PackRemoteKey.
  Result<RegisteredRegion> RegisterMemory(void* address, size_t length);
  // Allocates `length` bytes through UCX and registers them. With a shared-memory transport
  // (posix, sysv) the bytes live in a shared segment that a server on the same host maps, so its
  // GETs and PUTs are single memcpys that never involve this process (zero-copy staging buffers:
  // use these for the client's pinned host staging area). Freed with the region.
  Result<RegisteredRegion> AllocateMemory(size_t length);

  class Impl;

 private:
  explicit UcxAgent(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvault::transport
