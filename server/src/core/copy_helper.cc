// CopyHelper (copy_helper.h).

#include "core/copy_helper.h"

#include <algorithm>
#include <cstring>
#include <system_error>

#include "kvault/common/positional_copy.h"

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
  Job job;
  job.from = from;
  job.to = to;
  return TryHandOver(std::move(job));
}

bool CopyHelper::TryStartRead(int fd, uint64_t offset, std::span<uint8_t> to) {
  Job job;
  job.to = to;
  job.read = true;
  job.read_fd = fd;
  job.read_offset = offset;
  if (!TryHandOver(std::move(job))) return false;
  reads_started_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

bool CopyHelper::TryStartTask(std::function<void()> task) {
  Job job;
  job.task = std::move(task);
  return TryHandOver(std::move(job));
}

bool CopyHelper::TryHandOver(Job job) {
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
    job_ = std::move(job);
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
  return landed_.load(std::memory_order_relaxed);  // all that landed: set before pending_ cleared
}

int CopyHelper::Wait() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return !pending_; });
  busy_ = false;  // the next caller's job may overwrite error_ once the lock is released
  return error_;
}

int CopyHelper::MovePieces(const Job& job) {
  for (size_t at = 0; at < job.to.size(); at += kPieceBytes) {
    const size_t n = std::min(kPieceBytes, job.to.size() - at);
    if (job.read) {
      size_t done = 0;
      const int error =
          PositionalCopy(job.read_fd, false, job.read_offset + at, job.to.data() + at, n, &done);
      if (error != 0) return error;
    } else {
      std::memcpy(job.to.data() + at, job.from.data() + at, n);
    }
    landed_.store(at + n, std::memory_order_release);
  }
  return 0;
}

void CopyHelper::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return pending_ || stop_; });
    if (!pending_) return;  // stop_ with nothing pending
    Job job = std::move(job_);
    job_ = Job{};
    lock.unlock();
    int error = 0;
    if (job.task) {
      job.task();
    } else {
      error = MovePieces(job);
    }
    job = Job{};  // what a task holds goes before the caller hears it is done
    lock.lock();
    error_ = error;
    pending_ = false;
    cv_.notify_all();
  }
}

}  // namespace kvault::server
