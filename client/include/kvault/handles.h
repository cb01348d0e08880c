#pragma once
// Handles of asynchronous block transfers: Client::Store returns a StoreHandle, Client::Load a
// LoadHandle (client.h). A handle is a cheap shared reference to the operation's state; copies
// observe the same operation.
//
// Life of an operation:
//   in flight -> done      every key has its status: the daemon replied, the request's deadline
//                          passed (Unavailable "deadline exceeded"), the connection was lost
//                          (Unavailable), the input was refused (InvalidArgument), or Cancel()
//                          was called (Unavailable "cancelled"; cancelled() is true).
//   done      -> settled   every request it was sent in got its reply (the daemon is done with
//                          the request's memory), or its connection was lost. A lost connection
//                          settles the request without the daemon's word: a transfer it had
//                          started may still reach memory the request named directly (an
//                          AllocateMemory region, or registered memory that got no staging);
//                          staged memory is safe (docs/client.md, "Handles").
// Done and settled coincide when the daemon answers. After a deadline or Cancel() they do not:
// the daemon may still be working on the request. So:
//   - Load: the destination buffers may still be written until Settled() is true. Do not reuse
//     them before WaitSettled() returns true (or before the MemoryRegion and every handle that
//     uses it are gone: the region stays registered while a request that names it is unsettled).
//   - Store: keep the sources unchanged until Settled(); a source changed under a transfer makes
//     the daemon refuse that block (checksum), it never stores wrong bytes.
//
// Thread-safety: every method is safe from any thread, on one handle or on copies of it.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "kvault/common/status.h"

namespace kvault {

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;

namespace client_internal {
class OpState;
}

class TransferHandle {
 public:
  // An empty handle: done and settled, status InvalidArgument ("empty handle").
  TransferHandle() = default;

  // Blocks until the operation is done or `deadline` passes, whichever comes first. Returns the
  // request-level status once done: OK when the daemon answered every part of the request (each
  // key then has its own status, which may still be a miss or a failure), otherwise the reason
  // the request failed as a whole (every key has that status too). When `deadline` passes first,
  // returns Unavailable ("still in flight") and the handle stays in flight; the request's own
  // deadline (its options) still bounds it. Never blocks past `deadline`.
  Status Wait(Deadline deadline = Deadline::max()) const;
  // True once the operation is done. Never blocks.
  bool Poll() const;
  // Completes the operation now, if it is still in flight, with Unavailable ("cancelled"); keys
  // that already had a result keep it. The daemon is not told: see "settled" above. Idempotent.
  void Cancel();
  bool cancelled() const;

  // True when the call refused the operation before sending anything (input it rejected, or no
  // data plane): done and settled from the start, Wait() says why. A daemon that could not be
  // reached, or that answered, however fast, never makes an operation refused(). True for an
  // empty handle.
  bool refused() const;

  // True once the daemon can no longer touch the request's memory (see above).
  bool Settled() const;
  // Blocks until Settled() or `deadline`; returns Settled().
  bool WaitSettled(Deadline deadline) const;

  // Number of keys of the operation.
  size_t size() const;
  // Status of key i once done: OK, NotFound (a miss), Unavailable, IoError ("transfer_failed"),
  // Corruption, ResourceExhausted, OutOfRange, ... Before done: Unavailable ("in flight").
  // Precondition: i < size().
  Status key_status(size_t i) const;
  std::vector<Status> key_statuses() const;
  // Keys whose status is OK, and the length of the leading run of OK keys.
  size_t ok_count() const;
  size_t leading_ok() const;

 protected:
  explicit TransferHandle(std::shared_ptr<client_internal::OpState> state)
      : state_(std::move(state)) {}
  std::shared_ptr<client_internal::OpState> state_;
  friend class Client;
};

class StoreHandle : public TransferHandle {
 public:
  StoreHandle() = default;

 private:
  using TransferHandle::TransferHandle;
  friend class Client;
};

class LoadHandle : public TransferHandle {
 public:
  LoadHandle() = default;
  // The whole stored object's size for key i, as the daemon reported it (also on OutOfRange, so
  // a caller can retry with room enough); 0 for a miss or before done. The bytes written for an
  // OK key are the destination's length, or object_size - offset when the length was 0.
  uint64_t object_size(size_t i) const;

 private:
  using TransferHandle::TransferHandle;
  friend class Client;
};

}  // namespace kvault
