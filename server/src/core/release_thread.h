#pragma once
// ReleaseThread: drops references on a thread of its own, so that what the last one frees is
// freed there and not on an io thread. Closing the last descriptor of a large memfd (a client's
// region once the client has exited) frees all of its pages there and then: 110-165 ms for 1 GiB
// in a scratch program here (with a build running), during which an io thread would serve none
// of its other connections.
//
// Thread-safety: Release, Share and pending may be called from any thread, but not once the
// destructor has begun, except by the release thread itself (what it drops may hand over more).
// The thread starts on the first Release; the destructor drops what is still queued, and what
// that hands over, in order, and joins it.

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>

namespace kvault::server {

class ReleaseThread {
 public:
  ReleaseThread() = default;
  ~ReleaseThread();
  ReleaseThread(const ReleaseThread&) = delete;
  ReleaseThread& operator=(const ReleaseThread&) = delete;

  // Drops `what` on the release thread, after everything handed over before; right here when
  // that thread cannot be started. Whatever `what` holds must not need anything that goes
  // before this ReleaseThread.
  void Release(std::shared_ptr<const void> what);
  // Shares `object` so that it is destroyed on the release thread (handed to Release when the
  // last reference goes), whichever thread drops that reference: a copy still running on an io
  // thread, say. The last reference must go before this ReleaseThread does: on the release thread
  // itself (an object it drops may hold others) at any time, on any other thread before the
  // destructor has begun. Where Release cannot queue it (no memory), the object is destroyed
  // where the last reference went.
  template <typename T>
  std::shared_ptr<T> Share(std::unique_ptr<T> object) {
    return std::shared_ptr<T>(object.release(), [this](T* last) {
      try {
        Release(std::shared_ptr<const void>(std::unique_ptr<T>(last)));
      } catch (...) {  // NOLINT(bugprone-empty-catch): unwinding destroyed the object here
      }
    });
  }
  // References handed over and not dropped yet.
  size_t pending() const;

 private:
  void Run();

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<const void>> queued_;
  size_t dropping_ = 0;  // taken off the queue, not dropped yet
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace kvault::server
