#pragma once
// UcxWorker: RAII owner of a UCP worker (ucp_worker_create / ucp_worker_destroy): the progress
// engine that endpoints, requests and remote keys hang off.
//
// Destruction order: destroy every UcxEndpoint (and UcxRemoteKey) of a worker before the worker,
// and the worker before its UcxContext.
//
// Thread-safety: set by the thread mode. kSingle (the default): one thread at a time, always the
// same one, calls everything except Signal(). kMulti: any thread. Signal() is safe from any thread
// in every mode. Movable, not copyable; a moved-from worker is empty.

#include <chrono>
#include <cstdint>
#include <vector>

#include "kvault/common/result.h"
#include "kvault/transport/ucx/ucx_context.h"

struct ucp_worker;

namespace kvault::transport {

enum class UcxThreadMode {
  kSingle,      // only one thread ever touches the worker (cheapest)
  kSerialized,  // several threads, but the caller serialises them
  kMulti,       // several threads at once; UCX takes a lock on every call
};

class UcxWorker {
 public:
  // Creates a worker on `context` (which must outlive it). Unavailable / ResourceExhausted when
  // UCX cannot open its transports.
  static Result<UcxWorker> Create(const UcxContext& context,
                                  UcxThreadMode mode = UcxThreadMode::kSingle);

  UcxWorker(UcxWorker&& other) noexcept;
  UcxWorker& operator=(UcxWorker&& other) noexcept;
  UcxWorker(const UcxWorker&) = delete;
  UcxWorker& operator=(const UcxWorker&) = delete;
  ~UcxWorker();

  // This worker's address, sealed in kvault's envelope (see transport/ucx.md):
  // the bytes a client sends once so that a server can UcxEndpoint::Connect to it. Computed once
  // at creation.
  const std::vector<uint8_t>& address() const { return address_; }

  // Runs UCX's progress once: completes requests and fires their callbacks on this thread.
  // Returns the number of events processed (0 when there was nothing to do).
  unsigned Progress();

  // Progresses until `done()` is true or `timeout` passes. Returns whether `done()` became true.
  // For blocking helpers and tests; the progress threads of this module do not use it.
  template <typename Done>
  bool ProgressUntil(Done done, std::chrono::milliseconds timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
      if (Progress() == 0 && std::chrono::steady_clock::now() >= until) return false;
    }
    return true;
  }

  // Waits, progressing, until everything started on the worker's endpoints (UCX's own
  // connection set-up included) has gone out, or `timeout` passes (the flush is then
  // cancelled). Before destroying a worker: UCX 1.13 aborts the process when ucp_worker_destroy
  // finds its answer to a peer's connection request still queued. OK when flushed; the flush's
  // status (a peer that is gone) or Unavailable (time is up) otherwise.
  Status Flush(std::chrono::milliseconds timeout);

  // The fd that becomes readable when the worker has events (requires the context's wakeup
  // feature, always on in UcxContext). Owned by the worker; do not close it.
  int event_fd() const { return event_fd_; }
  // Prepares the worker for sleeping on event_fd(). Returns true when armed (safe to poll the fd),
  // false when events are already pending (call Progress() again instead of sleeping).
  Result<bool> Arm();
  // Wakes a thread sleeping on event_fd(). Safe from any thread.
  Status Signal();

  ucp_worker* get() const { return worker_; }

 private:
  UcxWorker(ucp_worker* worker, int event_fd, std::vector<uint8_t> address);

  ucp_worker* worker_ = nullptr;
  int event_fd_ = -1;
  std::vector<uint8_t> address_;
};

}  // namespace kvault::transport
