#include "kvault/transport/ucx/peer_memory_guard.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <ucs/debug/debug.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <utility>
#include <vector>

namespace kvault::transport {
namespace {

// One watched region, read by the handler as a seqlock: `generation` is odd while Watch or
// Release (under Registry::mu) rewrites the slot, and a reader that sees it change meanwhile
// skips the slot. `end` == 0: free.
struct Slot {
  std::atomic<uint64_t> generation{0};
  std::atomic<uintptr_t> begin{0};
  std::atomic<uintptr_t> end{0};
  std::atomic<uintptr_t> page{0};
  std::atomic<uint64_t> faults{0};
};

struct Region {
  uintptr_t begin = 0;
  uintptr_t end = 0;  // 0: no region (free, or rewritten while read)
  uintptr_t page = 0;
};

// Async-signal-safe.
Region Read(const Slot& s) {
  const uint64_t before = s.generation.load(std::memory_order_acquire);
  if ((before & 1) != 0) return {};
  Region r{s.begin.load(std::memory_order_relaxed), s.end.load(std::memory_order_relaxed),
           s.page.load(std::memory_order_relaxed)};
  std::atomic_thread_fence(std::memory_order_acquire);
  if (s.generation.load(std::memory_order_relaxed) != before || r.page == 0) return {};
  return r;
}

// Under Registry::mu.
void Write(Slot& s, Region r) {
  const uint64_t g = s.generation.load(std::memory_order_relaxed);
  s.generation.store(g + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  s.begin.store(r.begin, std::memory_order_relaxed);
  s.end.store(r.end, std::memory_order_relaxed);
  s.page.store(r.page, std::memory_order_relaxed);
  s.faults.store(0, std::memory_order_relaxed);
  s.generation.store(g + 2, std::memory_order_release);
}

// Never freed: the handler may run until the process is gone.
struct Registry {
  Slot* slots = nullptr;               // kMaxWatched, in memory mapped once (touched as used)
  std::atomic<size_t> constructed{0};  // slots [0, constructed) exist; the handler scans them
  std::mutex mu;                       // Watch and Release
  std::vector<int> free_slots;         // under mu
  struct sigaction previous {};        // what SIGBUS did before the first guard
  uintptr_t system_page = 4096;
};

std::atomic<Registry*> g_registry{nullptr};
std::atomic<uint64_t> g_absorbed{0};

// What SIGBUS would have done without the guards. Async-signal-safe.
void PassOn(int signo, siginfo_t* info, void* context, const struct sigaction& previous) {
  const bool from_an_access = info->si_code > 0;  // else sent by a process: kill, sigqueue
  if (previous.sa_handler == SIG_IGN) {
    if (!from_an_access) return;
  } else if (previous.sa_handler != SIG_DFL) {
    if ((previous.sa_flags & SA_SIGINFO) != 0) {
      previous.sa_sigaction(signo, info, context);
    } else {
      previous.sa_handler(signo);
    }
    return;
  }
  // The default action (also for a faulting access while ignored, as the kernel would): the
  // signal is raised again with it, and arrives once this handler returns.
  struct sigaction fallback {};
  fallback.sa_handler = SIG_DFL;
  sigemptyset(&fallback.sa_mask);
  sigaction(SIGBUS, &fallback, nullptr);
  raise(SIGBUS);
}

// Async-signal-safe: atomics, mmap, sigaction, raise.
void OnBusError(int signo, siginfo_t* info, void* context) {
  Registry* r = g_registry.load(std::memory_order_acquire);
  const auto at = reinterpret_cast<uintptr_t>(info->si_addr);
  if (info->si_code > 0) {  // raised by the kernel for an access: si_addr is where
    const size_t n = r->constructed.load(std::memory_order_acquire);
    for (size_t i = 0; i < n; ++i) {
      const Region hit = Read(r->slots[i]);
      if (hit.end == 0 || at < hit.begin || at >= hit.end) continue;
      // The whole region, in whole pages of its mapping (Watch checked that they lie inside it).
      const uintptr_t from = hit.begin & ~(hit.page - 1);
      const uintptr_t to = (hit.end + hit.page - 1) & ~(hit.page - 1);
      const int saved_errno = errno;
      void* patched = mmap(reinterpret_cast<void*>(from), to - from, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
      errno = saved_errno;
      if (patched == MAP_FAILED) break;
      // Every region that shares a replaced page reads zeros there now (two keys may name one
      // mapping), so each is cut short, not only the one that faulted.
      for (size_t j = 0; j < n; ++j) {
        const Region other = Read(r->slots[j]);
        if (other.end > from && other.begin < to) {
          r->slots[j].faults.fetch_add(1, std::memory_order_relaxed);
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
  r->system_page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
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
  // What runs now (UCX's error handler, installed when libucs loads, unless UCX_HANDLE_ERRORS
  // says otherwise) is what other SIGBUS go to. It is read before the registry is published, and
  // the registry before the handler can run.
  sigaction(SIGBUS, nullptr, &r->previous);
  g_registry.store(r, std::memory_order_release);
  sigaction(SIGBUS, &act, nullptr);
  if (!HandlerInstalled()) {
    // UCX after 1.13 ignores a sigaction for an error signal it handles until told to give the
    // signal back.
    ucs_debug_disable_signal(SIGBUS);
    // Its handler, called for another SIGBUS, would re-raise it past a handler it no longer
    // restores; what it gave back (the action before it) is what other SIGBUS go to.
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

// OK when [begin, end) lies inside one shared mapping of this process (/proc/self/maps) and, when
// `files` is not empty, that mapping shows one of them.
Status InsideOneSharedMapping(uintptr_t begin, uintptr_t end,
                              std::span<const PeerMemoryGuard::MappedFile> files) {
  const int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return Status::Internal(std::string("PeerMemoryGuard: /proc/self/maps: ") +
                            std::strerror(errno));
  }
  std::string maps;
  char buf[1 << 16];
  for (ssize_t n; (n = read(fd, buf, sizeof(buf))) > 0;) maps.append(buf, static_cast<size_t>(n));
  close(fd);
  // Lines: "start-end perms offset major:minor inode [path]", numbers in hex but the inode
  // (decimal), sorted by address.
  for (size_t at = 0; at < maps.size();) {
    size_t eol = maps.find('\n', at);
    if (eol == std::string::npos) eol = maps.size();
    const char* line = maps.c_str() + at;
    char* rest = nullptr;
    const uintptr_t start = std::strtoull(line, &rest, 16);
    const uintptr_t stop = *rest == '-' ? std::strtoull(rest + 1, &rest, 16) : 0;
    if (start > begin) break;
    if (begin < stop) {
      const bool shared = rest[0] == ' ' && std::strlen(rest) > 5 && rest[4] == 's';
      if (!shared || end > stop) break;
      if (files.empty()) return Status::Ok();
      char* field = rest + 5;
      (void)std::strtoull(field, &field, 16);  // offset
      const auto major = static_cast<uint32_t>(std::strtoul(field, &field, 16));
      const auto minor =
          static_cast<uint32_t>(*field == ':' ? std::strtoul(field + 1, &field, 16) : 0);
      const uint64_t inode = std::strtoull(field, &field, 10);
      for (const PeerMemoryGuard::MappedFile& f : files) {
        if (f.inode == inode && (f.any_device || (f.major == major && f.minor == minor))) {
          return Status::Ok();
        }
      }
      return Status::InvalidArgument(
          "PeerMemoryGuard: the region lies in a mapping of another file than the peer's");
    }
    at = eol + 1;
  }
  return Status::InvalidArgument(
      "PeerMemoryGuard: the region does not lie inside one shared mapping of this process");
}

}  // namespace

Result<PeerMemoryGuard> PeerMemoryGuard::Watch(const void* begin, size_t length, size_t page_bytes,
                                               std::span<const MappedFile> files) {
  const auto first = reinterpret_cast<uintptr_t>(begin);
  if (begin == nullptr || length == 0 || first + length < first) {
    return Status::InvalidArgument("PeerMemoryGuard: empty or wrapping region");
  }
  KVAULT_ASSIGN_OR_RETURN(Registry * r, TheRegistry());
  const uintptr_t page = page_bytes == 0 ? r->system_page : page_bytes;
  if ((page & (page - 1)) != 0 || page < r->system_page) {
    return Status::InvalidArgument("PeerMemoryGuard: page size " + std::to_string(page_bytes) +
                                   " is not a power of two of at least the system's");
  }
  // The replacement covers the region's whole pages: they must all belong to the mapping.
  const uintptr_t from = first & ~(page - 1);
  const uintptr_t to =
      first + length + page - 1 < first + length ? 0 : (first + length + page - 1) & ~(page - 1);
  if (to == 0) return Status::InvalidArgument("PeerMemoryGuard: region wraps at its last page");
  KVAULT_RETURN_IF_ERROR(InsideOneSharedMapping(from, to, files));
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
  Write(r->slots[slot], Region{first, first + length, page});
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
  Write(r->slots[slot_], Region{});
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
