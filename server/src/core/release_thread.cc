// ReleaseThread (release_thread.h).

#include "core/release_thread.h"

#include <exception>
#include <utility>

namespace kvault::server {

ReleaseThread::~ReleaseThread() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ReleaseThread::Release(std::shared_ptr<const void> what) {
  if (what == nullptr) return;
  {
    std::lock_guard lock(mu_);
    if (!thread_.joinable() && !stop_) {
      try {
        thread_ = std::thread([this] { Run(); });
      } catch (const std::exception&) {
        // No thread: dropped below, on this one.
      }
    }
    if (thread_.joinable()) {
      queued_.push_back(std::move(what));
      cv_.notify_all();
      return;
    }
  }
  what.reset();
}

size_t ReleaseThread::pending() const {
  std::lock_guard lock(mu_);
  return queued_.size() + dropping_;
}

void ReleaseThread::Run() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stop_ || !queued_.empty(); });
    if (queued_.empty()) return;  // stop_, and everything dropped
    std::shared_ptr<const void> next = std::move(queued_.front());
    queued_.pop_front();
    ++dropping_;
    lock.unlock();
    next.reset();
    lock.lock();
    --dropping_;
  }
}

}  // namespace kvault::server
