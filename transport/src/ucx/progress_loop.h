#pragma once
// ProgressLoop: the dedicated thread that drives one UcxWorker (STYLE.md: "UCX progress runs on
// its own thread"). Each pass runs the owner's work hook, then UCX progress; when a pass finds
// nothing to do for `spin` it arms the worker and sleeps in poll() on the worker's event fd, a
// private wakeup eventfd (Wake) and a timeout (the owner's next deadline, capped at 100 ms so a
// lost event costs latency, never a hang).
//
// Thread-safety: Wake() and Stop() are safe from any thread; the hooks and everything touching
// the worker run on the loop's thread only.

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <thread>

#include "kvault/common/result.h"
#include "kvault/transport/ucx/ucx_worker.h"

namespace kvault::transport {

class ProgressLoop {
 public:
  using Clock = std::chrono::steady_clock;

  struct Hooks {
    // Runs once per pass before UCX progress: drain queues, check deadlines. Returns true when it
    // did something (the loop then does not sleep).
    std::function<bool()> work;
    // The next time the owner needs a pass even without events (a deadline), or
    // Clock::time_point::max().
    std::function<Clock::time_point()> next_wakeup;
    // Runs on the loop's thread after Stop() was requested, before the thread exits: fail what is
    // in flight, close endpoints.
    std::function<void()> on_stop;
  };

  // Starts the thread. `worker` must outlive the loop. Internal when the eventfd or the thread
  // cannot be created.
  static Result<std::unique_ptr<ProgressLoop>> Start(UcxWorker& worker, Hooks hooks,
                                                     std::chrono::microseconds spin);
  // Stops and joins (see Stop).
  ~ProgressLoop();
  ProgressLoop(const ProgressLoop&) = delete;
  ProgressLoop& operator=(const ProgressLoop&) = delete;

  // Makes the loop run a pass soon (after new work was queued).
  void Wake();
  // Requests a stop, waits for on_stop and the thread to finish. Idempotent. Must not be called
  // from the loop's thread.
  void Stop();

 private:
  ProgressLoop(UcxWorker& worker, Hooks hooks, std::chrono::microseconds spin, int wake_fd);
  void Run();
  void Sleep();

  UcxWorker& worker_;
  Hooks hooks_;
  const std::chrono::microseconds spin_;
  const int wake_fd_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace kvault::transport
