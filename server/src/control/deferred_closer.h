#pragma once
// DeferredCloser: closes descriptors off the caller's thread. For descriptors a peer handed over
// that were never checked to be harmless: closing a file of a FUSE file system calls into that
// file system, which the peer may serve and never answer, and so may closing a socket that still
// holds descriptors in flight. Each descriptor is queued with the user it came from; at most one
// close per user runs at a time, each on a thread of its own (up to kMaxThreads, started as
// needed), so a close that never returns holds up only later closes of the same user. The
// caller watches pending() and pending_of() and stops taking more while they are high.
//
// Thread-safety: Close, pending and pending_of from any thread; the destructor from the owner's.

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "kvault/common/file_io.h"

namespace kvault::server {

class DeferredCloser {
 public:
  static constexpr size_t kMaxThreads = 16;

  DeferredCloser() = default;
  // Closes what is queued, unless a close does not return within a second: the threads still
  // closing are then left to finish on their own (they own what they still need) and the
  // destructor returns.
  ~DeferredCloser();
  DeferredCloser(const DeferredCloser&) = delete;
  DeferredCloser& operator=(const DeferredCloser&) = delete;

  // Queues `fd`, which came from user `owner`, to be closed (nothing for -1).
  void Close(UniqueFd fd, uint32_t owner);
  // Descriptors queued or being closed: in all, and of one user.
  size_t pending() const;
  size_t pending_of(uint32_t owner) const;

 private:
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    std::unordered_map<uint32_t, std::deque<UniqueFd>> queued;  // per user, oldest first
    std::unordered_set<uint32_t> closing;                       // users with a close running
    size_t queued_count = 0;
    size_t idle = 0;     // threads waiting for work
    size_t woken = 0;    // of those, ones notified for work they have not taken yet
    size_t running = 0;  // threads not finished
    bool stop = false;
  };
  static void Run(const std::shared_ptr<State>& state);

  const std::shared_ptr<State> state_ = std::make_shared<State>();
  std::vector<std::thread> threads_;  // touched by Close (under state_->mu) and the destructor
};

}  // namespace kvault::server
