#pragma once
// OpState: the shared state behind a StoreHandle or LoadHandle (handles.h). An operation is sent
// as one or more parts (requests); each part owns a set of key indices. The operation is done
// when every part is done (or it was cancelled or refused), settled when every part settled.
//
// Thread-safety: every method is safe from any thread (one mutex, never held while calling out).

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <span>
#include <vector>

#include "kvault/common/status.h"
#include "kvault/handles.h"

namespace kvault::client_internal {

class OpState {
 public:
  explicit OpState(size_t keys);

  // A failed operation: done and settled, every key and the request with `status`.
  static std::shared_ptr<OpState> Failed(size_t keys, const Status& status);

  // Declares how many parts will report. Call once, before any part reports.
  void ExpectParts(size_t parts);

  // Part `indices` finished: `request` is OK when the daemon answered (key statuses and sizes
  // then hold one entry per index), otherwise the reason (every index gets it).
  void PartDone(std::span<const size_t> indices, const Status& request,
                std::span<const Status> key_statuses, std::span<const uint64_t> object_sizes);
  void PartSettled();

  void Cancel();

  Status Wait(Deadline deadline);
  bool done() const;
  bool cancelled() const;
  bool settled() const;
  bool WaitSettled(Deadline deadline);
  size_t size() const { return keys_; }
  Status key_status(size_t i) const;
  std::vector<Status> key_statuses() const;
  uint64_t object_size(size_t i) const;
  size_t ok_count() const;
  size_t leading_ok() const;

 private:
  void FinishLocked(const Status& status);

  const size_t keys_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  size_t parts_left_ = 0;
  size_t unsettled_ = 0;
  bool done_ = false;
  bool cancelled_ = false;
  Status status_;                   // request-level, once done
  std::vector<Status> key_status_;  // Unavailable "in flight" until the key's part is done
  std::vector<uint8_t> key_done_;
  std::vector<uint64_t> object_size_;
};

}  // namespace kvault::client_internal
