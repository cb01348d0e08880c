#pragma once
// ProgressLoop: the dedicated thread that drives one UcxWorker (STYLE.md: "UCX progress runs on
// its own thread"). Each pass runs the owner's work hook, then UCX progress; when a pass finds
// nothing to do for `spin` it arms the worker and sleeps in poll() on the worker's event fd, a
// private wakeup eventfd (Wake) and a timeout (the owner's next deadline, capped at 100 ms so a
// lost event costs latency, never a hang).
//
// Taking over: a thread that would otherwise only wait for the loop may drive the worker itself
// (TakeOver), which spares two thread hand-offs per request. The loop runs no pass while such a
// thread holds the worker, stops spinning when one asks for it, and sleeps until Wake(): whoever
// gives the worker back with work still on it calls Wake().
//
// Thread-safety: Wake(), Stop() and TakeOver() are safe from any thread; the hooks and everything
// touching the worker run on the loop's thread, or on a thread holding TakeOver's lock. The worker
// must then be kSerialized.

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
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
  // Holding the worker (see TakeOver). Releases it when destroyed.
  class Driving {
   public:
    Driving(Driving&&) = default;
    ~Driving();

   private:
    friend class ProgressLoop;
    explicit Driving(ProgressLoop& loop);
    std::unique_lock<std::mutex> lock_;
    ProgressLoop* loop_;
  };
  // Blocks until the loop is between passes and returns a guard under which the caller may drive
  // the worker (post requests, progress it, call what the hooks call). While any thread waits
  // for or holds one, the loop runs no pass and sleeps; so whoever releases it with requests
  // still outstanding must Wake() the loop afterwards. (Work queued meanwhile is not lost: a
  // Wake() the loop received while the worker was taken is repeated when the last taker lets
  // go.) Never call it from the loop's thread or a hook.
  Driving TakeOver();
  // Requests a stop, waits for on_stop and the thread to finish. Idempotent. Must not be called
  // from the loop's thread.
  void Stop();

 private:
  ProgressLoop(UcxWorker& worker, Hooks hooks, std::chrono::microseconds spin, int wake_fd);
  void Run();
  // One pass under the worker lock: the work hook, then UCX progress until it finds nothing.
  bool Pass();
  void Sleep();
  bool Taken() const { return takers_.load() > 0; }  // seq_cst: see ~Driving

  UcxWorker& worker_;
  Hooks hooks_;
  const std::chrono::microseconds spin_;
  const int wake_fd_;
  std::mutex worker_mu_;        // held for every pass, every arm, and by TakeOver's callers
  std::atomic<int> takers_{0};  // threads waiting for or holding a Driving guard
  // A Wake() reached the loop while the worker was taken: the last taker to let go repeats it.
  std::atomic<bool> missed_wake_{false};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace kvault::transport
