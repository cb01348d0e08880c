#pragma once
// DeferredCloser: closes descriptors on a thread of its own. For descriptors a peer handed over
// that were never checked to be harmless: closing a file of a FUSE file system calls into that
// file system, which the peer may serve and never answer. Such a close holds up only this
// thread; the caller watches pending() and stops taking more descriptors while it is high.
//
// Thread-safety: Close and pending from any thread; the destructor from the owner's.

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <utility>

#include "kvault/common/file_io.h"

namespace kvault::server {

class DeferredCloser {
 public:
  DeferredCloser();
  // Closes what is queued, unless a close does not return within a second: the thread is then
  // left to finish on its own (it owns what it still needs) and the destructor returns.
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
    std::deque<std::pair<UniqueFd, uint32_t>> queue;  // with the user it came from
    std::unordered_map<uint32_t, size_t> of_owner;    // queued or being closed, per user
    size_t closing = 0;                               // 1 while the thread closes one
    bool stop = false;
    bool done = false;  // the thread has finished
  };
  static void Run(const std::shared_ptr<State>& state);

  const std::shared_ptr<State> state_ = std::make_shared<State>();
  std::thread thread_;
};

}  // namespace kvault::server
