#pragma once
// UcxEndpoint: RAII owner of a UCP endpoint connected to a peer worker by its address
// (ucp_ep_create with UCP_EP_PARAM_FIELD_REMOTE_ADDRESS, ucp_ep_close_nbx).
//
// Endpoints use UCX's PEER error-handling mode: when the peer dies or its link breaks, the
// endpoint's requests complete with an error and the error handler runs, instead of hanging.
// After an error the endpoint must be closed with kForce (it cannot carry traffic any more).
//
// Destruction order: remote keys unpacked on an endpoint before the endpoint (module convention;
// UCX itself only needs them gone before the worker); the endpoint before its worker. Destroying
// an open endpoint force-closes it and progresses the worker until the close finishes (bounded by
// one second), so destroy it on the worker's thread.
//
// Thread-safety: as the worker's (kSingle: only the worker's thread). Movable, not copyable; a
// moved-from or closed endpoint is empty.

#include <chrono>
#include <functional>
#include <memory>
#include <span>

#include "kvault/common/result.h"
#include "kvault/transport/ucx/ucx_worker.h"

struct ucp_ep;

namespace kvault::transport {

enum class UcxCloseMode {
  kFlush,  // completes outstanding operations, then tells the peer; needs a live peer
  kForce,  // drops the endpoint at once; outstanding requests complete with Unavailable (canceled)
};

struct UcxEndpointState;  // private: the error handler's context, kept until the close finishes
class UcxPendingClose;

class UcxEndpoint {
 public:
  // Runs on the worker's thread inside Progress() when the endpoint fails; `status` says why
  // (kUnavailable for a dead or unreachable peer). Not called after a close has started.
  using ErrorHandler = std::function<void(const Status& status)>;

  // Connects `worker` to the peer whose sealed address (UcxWorker::address()) is
  // `peer_address`. Local and fast: no round trip; the first operations wait for the wireup.
  // InvalidArgument / Corruption when the address bytes are malformed; Unavailable when no
  // configured transport reaches the peer.
  static Result<UcxEndpoint> Connect(UcxWorker& worker, std::span<const uint8_t> peer_address,
                                     ErrorHandler on_error = {});

  UcxEndpoint(UcxEndpoint&& other) noexcept;
  UcxEndpoint& operator=(UcxEndpoint&& other) noexcept;
  UcxEndpoint(const UcxEndpoint&) = delete;
  UcxEndpoint& operator=(const UcxEndpoint&) = delete;
  ~UcxEndpoint();

  // Starts closing; the endpoint is empty afterwards. The returned object tracks the close and
  // must be kept until Done() (its destructor waits, bounded). Precondition: not empty.
  UcxPendingClose StartClose(UcxCloseMode mode);
  // StartClose + progress the worker until the close finishes or `timeout` passes. OK when
  // closed; for kFlush, the peer's error (Unavailable) when it died; Unavailable on timeout.
  Status Close(UcxCloseMode mode,
               std::chrono::milliseconds timeout = std::chrono::milliseconds(1000));

  bool empty() const { return ep_ == nullptr; }
  ucp_ep* get() const { return ep_; }
  UcxWorker* worker() const { return worker_; }

 private:
  UcxEndpoint(UcxWorker* worker, ucp_ep* ep, std::unique_ptr<UcxEndpointState> state);

  UcxWorker* worker_ = nullptr;
  ucp_ep* ep_ = nullptr;
  std::unique_ptr<UcxEndpointState> state_;
};

// A close in progress (from UcxEndpoint::StartClose). Movable, not copyable; same thread rules
// as the endpoint.
class UcxPendingClose {
 public:
  UcxPendingClose(UcxPendingClose&& other) noexcept;
  UcxPendingClose& operator=(UcxPendingClose&& other) noexcept;
  UcxPendingClose(const UcxPendingClose&) = delete;
  UcxPendingClose& operator=(const UcxPendingClose&) = delete;
  // Progresses the worker until the close finishes, at most one second; if it still has not,
  // hands the request back to UCX and deliberately leaks the small error-handler state, so that
  // a late UCX callback never touches freed memory.
  ~UcxPendingClose();

  // True once the close finished. Does not progress the worker: the caller does.
  bool Done();
  // The close's outcome; meaningful once Done().
  const Status& status() const { return status_; }
  // Progresses the worker until Done() or `timeout` passes; returns status(), or Unavailable on
  // timeout.
  Status Wait(std::chrono::milliseconds timeout);

 private:
  friend class UcxEndpoint;
  UcxPendingClose(UcxWorker* worker, void* request, std::unique_ptr<UcxEndpointState> state,
                  Status immediate);
  void Finish();

  UcxWorker* worker_ = nullptr;
  void* request_ = nullptr;  // UCX request, or null when the close finished at once
  std::unique_ptr<UcxEndpointState> state_;
  Status status_;
};

}  // namespace kvault::transport
