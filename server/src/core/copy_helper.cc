// CopyHelper (copy_helper.h).

#include "core/copy_helper.h"

#include <cstring>
#include <system_error>

namespace kvault::server {

CopyHelper::~CopyHelper() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool CopyHelper::TryStart(std::span<const uint8_t> from, std::span<uint8_t> to) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (busy_ || stop_) return false;
    if (!thread_.joinable()) {
      try {
        thread_ = std::thread([this] { Run(); });
      } catch (const std::system_error&) {
        return false;  // no helper: the caller copies alone
      }
    }
    busy_ = true;
    pending_ = true;
    from_ = from;
    to_ = to;
  }
  cv_.notify_all();
  return true;
}

void CopyHelper::Wait() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return !pending_; });
  busy_ = false;
}

void CopyHelper::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return pending_ || stop_; });
    if (pending_) {
      const std::span<const uint8_t> from = from_;
      const std::span<uint8_t> to = to_;
      lock.unlock();
      std::memcpy(to.data(), from.data(), from.size());
      lock.lock();
      pending_ = false;
      cv_.notify_all();
    } else {
      return;  // stop_ with nothing pending
    }
  }
}

}  // namespace kvault::server
