// CopyHelper (copy_helper.h).

#include "core/copy_helper.h"

#include <algorithm>
#include <cstring>
#include <system_error>

namespace kvault::server {
namespace {

// A spin-wait hint: lets the sibling hyperthread (or the hypervisor) have the core meanwhile.
inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

}  // namespace

CopyHelper::~CopyHelper() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool CopyHelper::TryStart(std::span<const uint8_t> from, std::span<uint8_t> to) {
  return TryHandOver(from, to, nullptr);
}

bool CopyHelper::TryStartTask(std::function<void()> task) {
  return TryHandOver({}, {}, std::move(task));
}

bool CopyHelper::TryHandOver(std::span<const uint8_t> from, std::span<uint8_t> to,
                             std::function<void()> task) {
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
    task_ = std::move(task);
    landed_.store(0, std::memory_order_relaxed);
  }
  cv_.notify_all();
  return true;
}

size_t CopyHelper::AwaitLanded(size_t landed) {
  auto last_progress = std::chrono::steady_clock::now();
  for (;;) {
    const size_t now_landed = landed_.load(std::memory_order_acquire);
    if (now_landed > landed) return now_landed;
    // Nothing landed yet: the helper has not run (its core is taken); spinning here could keep
    // it from the core it waits for.
    if (now_landed == 0) break;
    CpuRelax();
    const auto now = std::chrono::steady_clock::now();
    if (now - last_progress >= kSpinWithoutProgress) break;
  }
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return !pending_; });
  return landed_.load(std::memory_order_relaxed);  // all of it: set before pending_ was cleared
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
      std::function<void()> task = std::move(task_);
      task_ = nullptr;
      lock.unlock();
      if (task) task();
      task = nullptr;  // what it holds goes before the caller hears it is done
      for (size_t at = 0; at < from.size(); at += kPieceBytes) {
        const size_t n = std::min(kPieceBytes, from.size() - at);
        std::memcpy(to.data() + at, from.data() + at, n);
        landed_.store(at + n, std::memory_order_release);
      }
      lock.lock();
      pending_ = false;
      cv_.notify_all();
    } else {
      return;  // stop_ with nothing pending
    }
  }
}

}  // namespace kvault::server
