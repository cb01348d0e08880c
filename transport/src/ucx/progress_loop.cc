#include "ucx/progress_loop.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <system_error>

namespace kvault::transport {
namespace {

constexpr std::chrono::milliseconds kMaxSleep{100};

}  // namespace

Result<std::unique_ptr<ProgressLoop>> ProgressLoop::Start(UcxWorker& worker, Hooks hooks,
                                                          std::chrono::microseconds spin) {
  const int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) return Status::Internal(std::string("eventfd: ") + std::strerror(errno));
  std::unique_ptr<ProgressLoop> loop(new ProgressLoop(worker, std::move(hooks), spin, fd));
  try {
    loop->thread_ = std::thread([raw = loop.get()] { raw->Run(); });
  } catch (const std::system_error& e) {
    return Status::Internal(std::string("cannot start the UCX progress thread: ") + e.what());
  }
  return loop;
}

ProgressLoop::ProgressLoop(UcxWorker& worker, Hooks hooks, std::chrono::microseconds spin,
                           int wake_fd)
    : worker_(worker), hooks_(std::move(hooks)), spin_(spin), wake_fd_(wake_fd) {}

ProgressLoop::~ProgressLoop() {
  Stop();
  close(wake_fd_);
}

void ProgressLoop::Wake() {
  const uint64_t one = 1;
  // EAGAIN means the counter is already non-zero: the loop will wake anyway.
  (void)!write(wake_fd_, &one, sizeof(one));
}

ProgressLoop::Driving::Driving(ProgressLoop& loop) : loop_(&loop) {
  loop.takers_.fetch_add(1);
  lock_ = std::unique_lock<std::mutex>(loop.worker_mu_);
}

ProgressLoop::Driving::~Driving() {
  if (!lock_.owns_lock()) return;  // moved from
  lock_.unlock();
  // Sequentially consistent with the loop's "missed_wake_ = true, then check takers_": either
  // the loop sees no taker and runs a pass, or the last taker sees the flag and wakes it.
  if (loop_->takers_.fetch_sub(1) == 1 && loop_->missed_wake_.exchange(false)) loop_->Wake();
}

ProgressLoop::Driving ProgressLoop::TakeOver() { return Driving(*this); }

void ProgressLoop::Stop() {
  stop_.store(true, std::memory_order_release);
  Wake();
  if (thread_.joinable()) thread_.join();
}

bool ProgressLoop::Pass() {
  std::lock_guard<std::mutex> lock(worker_mu_);
  bool busy = hooks_.work();
  while (worker_.Progress() != 0) busy = true;
  return busy;
}

void ProgressLoop::Run() {
  auto last_activity = Clock::now();
  while (!stop_.load(std::memory_order_acquire)) {
    // While a thread drives the worker itself, a pass would only contend for the lock (and, on
    // few cores, for the CPU it needs): sleep; it wakes the loop if it leaves work behind.
    if (!Taken() && Pass()) {
      last_activity = Clock::now();
      continue;
    }
    if (!Taken() && Clock::now() - last_activity < spin_) continue;
    Sleep();
    last_activity = Clock::now();
  }
  std::lock_guard<std::mutex> lock(worker_mu_);
  hooks_.on_stop();
}

void ProgressLoop::Sleep() {
  Result<bool> armed = Status::Unavailable("the worker is driven by another thread");
  Clock::time_point next = Clock::time_point::max();
  int worker_fd = -1;  // read under the lock: a restart replaces the worker and its fd
  // While the worker is taken its events are the taker's to progress: sleep on the wakeup fd
  // only (arming now could find events pending and return at once, again and again).
  if (!Taken()) {
    std::lock_guard<std::mutex> lock(worker_mu_);
    armed = worker_.Arm();
    if (armed.ok() && !*armed) return;  // events pending: progress instead of sleeping
    next = hooks_.next_wakeup();
    worker_fd = worker_.event_fd();
  }
  auto timeout = kMaxSleep;
  if (next != Clock::time_point::max()) {
    const auto until = std::chrono::ceil<std::chrono::milliseconds>(next - Clock::now());
    timeout = std::clamp(until, std::chrono::milliseconds(0), kMaxSleep);
  }
  pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {worker_fd, POLLIN, 0}};
  // If arming failed the worker fd cannot be trusted; the timeout still bounds the sleep.
  (void)poll(fds, armed.ok() ? 2 : 1, static_cast<int>(timeout.count()));
  uint64_t drained = 0;
  if (read(wake_fd_, &drained, sizeof(drained)) == sizeof(drained) && Taken()) {
    missed_wake_.store(true);  // the next pass may not come before the taker lets go
  }
}

}  // namespace kvault::transport
