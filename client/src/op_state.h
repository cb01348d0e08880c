#pragma once
// OpState: the shared state behind a StoreHandle or LoadHandle (handles.h). An operation is sent
// as one or more parts (requests); each part owns a set of key indices. The operation is done
// when every part is done (or it was cancelled or refused), settled when it is done, every part
// settled and no staged part is still copying into the caller's buffers.
//
// Thread-safety: every method is safe from any thread (one mutex, never held while calling out).

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <span>
#include <vector>

#include "kvault/common/status.h"
#include "kvault/handles.h"

namespace kvault::client_internal {

class OpState {
 public:
  explicit OpState(size_t keys);

  // An operation that ended before anything was sent: done and settled, every key and the request
  // with `status`. `refused`: the call rejected its input (refused()); false when it could not
  // reach the daemon.
  static std::shared_ptr<OpState> Failed(size_t keys, const Status& status, bool refused = true);

  // Declares how many parts will report. Call once, before any part reports.
  void ExpectParts(size_t parts);

  // Part `indices` finished: `request` is OK when the daemon answered (key statuses and sizes
  // then hold one entry per index), otherwise the reason (every index gets it).
  void PartDone(std::span<const size_t> indices, const Status& request,
                std::span<const Status> key_statuses, std::span<const uint64_t> object_sizes);
  // A staged load part's reply (the daemon answered): runs `copy_out`, which copies the part from
  // staging into the caller's buffers, then reports the part done like PartDone. Once the
  // operation is done (cancelled, or its deadline passed) the buffers are the caller's again:
  // then `copy_out` does not run. The operation is not settled while `copy_out` runs, so a
  // Cancel() meanwhile does not hand the buffers back before the copy ends.
  void PartCopiedOut(std::span<const size_t> indices, std::span<const Status> key_statuses,
                     std::span<const uint64_t> object_sizes, const std::function<void()>& copy_out);
  void PartSettled();

  void Cancel();

  Status Wait(Deadline deadline);
  bool done() const;
  bool cancelled() const;
  bool settled() const;
  // True for an operation made by Failed(): fixed before the state is shared.
  bool refused() const { return refused_; }
  bool WaitSettled(Deadline deadline);
  size_t size() const { return keys_; }
  Status key_status(size_t i) const;
  std::vector<Status> key_statuses() const;
  uint64_t object_size(size_t i) const;
  size_t ok_count() const;
  size_t leading_ok() const;

 private:
  void FinishLocked(const Status& status);
  void PartDoneLocked(std::span<const size_t> indices, const Status& request,
                      std::span<const Status> key_statuses, std::span<const uint64_t> object_sizes);
  bool SettledLocked() const { return done_ && unsettled_ == 0 && copying_ == 0; }

  const size_t keys_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  size_t parts_left_ = 0;
  size_t unsettled_ = 0;
  size_t copying_ = 0;  // staged parts copying out (PartCopiedOut), outside mu_
  bool done_ = false;
  bool cancelled_ = false;
  bool refused_ = false;            // set by Failed() only, before the state is shared
  Status status_;                   // request-level, once done
  std::vector<Status> key_status_;  // Unavailable "in flight" until the key's part is done
  std::vector<uint8_t> key_done_;
  std::vector<uint64_t> object_size_;
};

}  // namespace kvault::client_internal
