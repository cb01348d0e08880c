#include "kvault/transport/ucx/peer_memory_guard.h"

#include <signal.h>
#include <sys/mman.h>
#include <ucs/debug/debug.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <utility>
#include <vector>

namespace kvault::transport {
namespace {

// One watched region. `end` == 0: free. Writers (under Registry::mu) publish `begin` before `end`
// and clear `end` first; the handler reads `end`, then `begin`.
struct Slot {
  std::atomic<uintptr_t> begin{0};
  std::atomic<uintptr_t> end{0};
  std::atomic<uint64_t> faults{0};
};

// Never freed: the handler may run until the process is gone.
struct Registry {
  Slot* slots = nullptr;               // kMaxWatched, in memory mapped once (touched as used)
  std::atomic<size_t> constructed{0};  // slots [0, constructed) exist; the handler scans them
  std::mutex mu;                       // Watch and Release
  std::vector<int> free_slots;         // under mu
  struct sigaction previous {};        // what SIGBUS did before the first guard
  uintptr_t page = 4096;
};

std::atomic<Registry*> g_registry{nullptr};
std::atomic<uint64_t> g_absorbed{0};

// What SIGBUS would have done without the guards.
void PassOn(int signo, siginfo_t* info, void* context, const struct sigaction& previous) {
  if ((previous.sa_flags & SA_SIGINFO) != 0 && previous.sa_sigaction != nullptr) {
    previous.sa_sigaction(signo, info, context);
    return;
  }
  if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
    previous.sa_handler(signo);
    return;
  }
  struct sigaction fallback {};
  fallback.sa_handler = SIG_DFL;
  sigemptyset(&fallback.sa_mask);
  sigaction(SIGBUS, &fallback, nullptr);
  // A fault re-runs the access on return and dies of it now; a signal sent by kill() is sent
  // again (blocked until this handler returns).
  if (info->si_code <= 0) raise(SIGBUS);
}

// Async-signal-safe: atomics, mmap, sigaction, raise.
void OnBusError(int signo, siginfo_t* info, void* context) {
  Registry* r = g_registry.load(std::memory_order_acquire);
  const uintptr_t at = reinterpret_cast<uintptr_t>(info->si_addr);
  if (info->si_code > 0) {  // raised by the kernel for an access, so si_addr is meaningful
    const size_t n = r->constructed.load(std::memory_order_acquire);
    for (size_t i = 0; i < n; ++i) {
      Slot& s = r->slots[i];
      const uintptr_t end = s.end.load(std::memory_order_acquire);
      if (end == 0 || at >= end || at < s.begin.load(std::memory_order_relaxed)) continue;
      // The peer's file ends before `at`; it is contiguous, so nothing of the region past the
      // faulting page is left either. Private zero pages take their place.
      const uintptr_t from = at & ~(r->page - 1);
      const uintptr_t to = (end + r->page - 1) & ~(r->page - 1);
      const int saved_errno = errno;
      void* patched = mmap(reinterpret_cast<void*>(from), to - from, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
      errno = saved_errno;
      if (patched == MAP_FAILED) break;
      // Every region that shares a patched page reads zeros there now (two keys may name one
      // mapping), so each is cut short, not only the one that faulted.
      for (size_t j = 0; j < n; ++j) {
        Slot& other = r->slots[j];
        const uintptr_t other_end = other.end.load(std::memory_order_acquire);
        if (other_end > from && other.begin.load(std::memory_order_relaxed) < to) {
          other.faults.fetch_add(1, std::memory_order_relaxed);
        }
      }
      g_absorbed.fetch_add(1, std::memory_order_relaxed);
      return;
    }
  }
  PassOn(signo, info, context, r->previous);
}

bool HandlerInstalled() {
  struct sigaction now {};
  return sigaction(SIGBUS, nullptr, &now) == 0 && (now.sa_flags & SA_SIGINFO) != 0 &&
         now.sa_sigaction == &OnBusError;
}

Result<Registry*> Install() {
  auto* r = new Registry();
  r->page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  void* slots = mmap(nullptr, sizeof(Slot) * PeerMemoryGuard::kMaxWatched, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (slots == MAP_FAILED) {
    return Status::Internal(std::string("PeerMemoryGuard: mmap of the slot table: ") +
                            std::strerror(errno));
  }
  r->slots = static_cast<Slot*>(slots);
  struct sigaction act {};
  act.sa_sigaction = &OnBusError;
  act.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&act.sa_mask);
  // `previous` is read before the handler can run: it is in place before the registry is
  // published, and the registry before the handler.
  sigaction(SIGBUS, nullptr, &r->previous);
  g_registry.store(r, std::memory_order_release);
  sigaction(SIGBUS, &act, nullptr);
  if (!HandlerInstalled()) {
    // Later UCX versions keep the error signals they handle (a sigaction for them is ignored)
    // until told to give one back, which restores what they replaced.
    ucs_debug_disable_signal(SIGBUS);
    sigaction(SIGBUS, nullptr, &r->previous);
    sigaction(SIGBUS, &act, nullptr);
    if (!HandlerInstalled()) {
      return Status::Internal("PeerMemoryGuard: the SIGBUS handler could not be installed");
    }
  }
  return r;
}

Result<Registry*> TheRegistry() {
  static Result<Registry*> registry = Install();
  return registry;
}

}  // namespace

Result<PeerMemoryGuard> PeerMemoryGuard::Watch(const void* begin, size_t length) {
  const auto first = reinterpret_cast<uintptr_t>(begin);
  if (begin == nullptr || length == 0 || first + length < first) {
    return Status::InvalidArgument("PeerMemoryGuard: empty or wrapping region");
  }
  KVAULT_ASSIGN_OR_RETURN(Registry * r, TheRegistry());
  std::lock_guard<std::mutex> lock(r->mu);
  int slot = -1;
  if (!r->free_slots.empty()) {
    slot = r->free_slots.back();
    r->free_slots.pop_back();
  } else {
    const size_t n = r->constructed.load(std::memory_order_relaxed);
    if (n == kMaxWatched) {
      return Status::ResourceExhausted("PeerMemoryGuard: " + std::to_string(kMaxWatched) +
                                       " peer regions are mapped here already");
    }
    new (&r->slots[n]) Slot();
    r->constructed.store(n + 1, std::memory_order_release);
    slot = static_cast<int>(n);
  }
  Slot& s = r->slots[slot];
  s.faults.store(0, std::memory_order_relaxed);
  s.begin.store(first, std::memory_order_relaxed);
  s.end.store(first + length, std::memory_order_release);
  return PeerMemoryGuard(slot);
}

PeerMemoryGuard::PeerMemoryGuard(PeerMemoryGuard&& other) noexcept
    : slot_(std::exchange(other.slot_, -1)) {}

PeerMemoryGuard& PeerMemoryGuard::operator=(PeerMemoryGuard&& other) noexcept {
  if (this != &other) {
    Release();
    slot_ = std::exchange(other.slot_, -1);
  }
  return *this;
}

PeerMemoryGuard::~PeerMemoryGuard() { Release(); }

void PeerMemoryGuard::Release() {
  if (slot_ < 0) return;
  Registry* r = g_registry.load(std::memory_order_acquire);
  std::lock_guard<std::mutex> lock(r->mu);
  Slot& s = r->slots[slot_];
  s.end.store(0, std::memory_order_release);
  s.begin.store(0, std::memory_order_relaxed);
  r->free_slots.push_back(slot_);
  slot_ = -1;
}

bool PeerMemoryGuard::cut_short() const {
  if (slot_ < 0) return false;
  return g_registry.load(std::memory_order_acquire)
             ->slots[slot_]
             .faults.load(std::memory_order_relaxed) > 0;
}

uint64_t PeerMemoryGuard::absorbed_total() { return g_absorbed.load(std::memory_order_relaxed); }

}  // namespace kvault::transport
