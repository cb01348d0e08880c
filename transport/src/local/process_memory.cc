// ProcessMemory (local/process_memory.h): cross-memory attach with the client's own rights.

#include "kvault/transport/local/process_memory.h"

#include <poll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>

namespace kvault::transport {
namespace {

// The four ids of a "Uid:" or "Gid:" line of /proc/<pid>/status: real, effective, saved, fs.
struct ProcIds {
  uint32_t ids[4] = {0, 0, 0, 0};
  bool Uniform() const {
    return std::all_of(ids, ids + 4, [&](uint32_t id) { return id == ids[0]; });
  }
};

std::optional<ProcIds> ReadIds(std::istream& status, const std::string& line_name) {
  status.clear();
  status.seekg(0);
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(line_name, 0) != 0) continue;
    std::istringstream fields(line.substr(line_name.size()));
    ProcIds result;
    for (uint32_t& id : result.ids) {
      if (!(fields >> id)) return std::nullopt;
    }
    return result;
  }
  return std::nullopt;
}

// A thread left with another user's ids must not go on serving: stop the process.
[[noreturn]] void DieSwitchingIds(const char* call) {
  std::fprintf(stderr,
               "kvault: fatal: %s failed while switching ids for a process-memory copy: %s\n", call,
               std::strerror(errno));
  std::abort();
}

// The dumpable flag of this process before any thread switched ids. Changing a thread's
// effective user id clears the flag (no core dumps, /proc files owned by root); it is put back
// after each switch.
int DumpableAtStart() {
  static const int dumpable = prctl(PR_GET_DUMPABLE);
  return dumpable < 0 ? 1 : dumpable;
}

// The ProcessMemory whose ids the calling thread holds (ProcessMemory::Scope), or null.
thread_local const ProcessMemory* running_as = nullptr;

std::string RangeText(uint64_t remote, size_t length) {
  char text[64];
  std::snprintf(text, sizeof text, "[0x%llx, +%zu)", static_cast<unsigned long long>(remote),
                length);
  return text;
}

}  // namespace

Result<ProcessMemory> ProcessMemory::Open(uint32_t pid) {
  if (pid == 0) return Status::InvalidArgument("process id 0 names no process");
  DumpableAtStart();
  const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, static_cast<pid_t>(pid), 0));
  if (pidfd < 0) {
    if (errno == ESRCH)
      return Status::NotFound("process " + std::to_string(pid) + " does not exist");
    return Status::Unavailable(std::string("pidfd_open: ") + std::strerror(errno));
  }
  ProcessMemory memory(pid, 0, 0, pidfd);  // closes the pidfd on every early return
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  const std::optional<ProcIds> uids = ReadIds(status, "Uid:");
  const std::optional<ProcIds> gids = ReadIds(status, "Gid:");
  if (!uids || !gids || memory.Exited()) {
    return Status::NotFound("process " + std::to_string(pid) + " has exited");
  }
  if (!uids->Uniform() || !gids->Uniform()) {
    return Status::InvalidArgument("process " + std::to_string(pid) +
                                   " runs with mixed user or group ids (set-user-id); its memory "
                                   "is not copied directly");
  }
  memory.uid_ = uids->ids[0];
  memory.gid_ = gids->ids[0];
  if (geteuid() != 0 && (memory.uid_ != getuid() || memory.gid_ != getgid())) {
    return Status::Unsupported("process " + std::to_string(pid) +
                               " belongs to another user or group, and this process is not root");
  }
  return memory;
}

ProcessMemory::ProcessMemory(ProcessMemory&& other) noexcept
    : pid_(other.pid_), uid_(other.uid_), gid_(other.gid_), pidfd_(other.pidfd_) {
  other.pidfd_ = -1;
}

ProcessMemory& ProcessMemory::operator=(ProcessMemory&& other) noexcept {
  if (this != &other) {
    if (pidfd_ >= 0) close(pidfd_);
    pid_ = other.pid_;
    uid_ = other.uid_;
    gid_ = other.gid_;
    pidfd_ = other.pidfd_;
    other.pidfd_ = -1;
  }
  return *this;
}

ProcessMemory::~ProcessMemory() {
  if (pidfd_ >= 0) close(pidfd_);
}

bool ProcessMemory::Exited() const {
  pollfd p{pidfd_, POLLIN, 0};
  const int ready = poll(&p, 1, 0);
  return ready != 0;  // readable once the process has exited; an error counts as gone
}

// Raw system calls: glibc's setresuid would change the ids of every thread of the process. The
// saved user id stays what it was (0), which is what allows the way back; with an effective user
// id other than 0 the thread has no effective capabilities, so the kernel's checks are the
// client's.
ProcessMemory::Scope::Scope(const ProcessMemory& memory) : previous_(running_as) {
  if (previous_ != nullptr) {
    std::fprintf(stderr, "kvault: fatal: ProcessMemory::Scope inside another on one thread\n");
    std::abort();
  }
  running_as = &memory;
  if (geteuid() != 0) return;
  uid_t r, e, s;
  gid_t gr, ge, gs;
  if (getresuid(&r, &e, &s) != 0 || getresgid(&gr, &ge, &gs) != 0) DieSwitchingIds("getresuid");
  saved_[0] = r, saved_[1] = e, saved_[2] = s, saved_[3] = gr, saved_[4] = ge, saved_[5] = gs;
  const uid_t keep = static_cast<uid_t>(-1);
  if (syscall(SYS_setresgid, memory.gid(), memory.gid(), keep) != 0) DieSwitchingIds("setresgid");
  if (syscall(SYS_setresuid, memory.uid(), memory.uid(), keep) != 0) DieSwitchingIds("setresuid");
  switched_ = true;
}

ProcessMemory::Scope::~Scope() {
  running_as = previous_;
  if (!switched_) return;
  const uid_t keep = static_cast<uid_t>(-1);
  if (syscall(SYS_setresuid, saved_[0], saved_[1], keep) != 0) DieSwitchingIds("setresuid back");
  if (syscall(SYS_setresgid, saved_[3], saved_[4], keep) != 0) DieSwitchingIds("setresgid back");
  prctl(PR_SET_DUMPABLE, DumpableAtStart());
}

Status ProcessMemory::CheckAccess() const {
  std::ifstream maps("/proc/" + std::to_string(pid_) + "/maps");
  std::string line;
  while (std::getline(maps, line)) {
    // "start-end perms offset dev inode [path]"; [vvar] and [vsyscall] cannot be copied.
    std::istringstream fields(line);
    std::string range, perms;
    if (!(fields >> range >> perms) || perms.empty() || perms[0] != 'r') continue;
    if (line.find("[vvar]") != std::string::npos || line.find("[vsyscall]") != std::string::npos) {
      continue;
    }
    uint8_t byte = 0;
    return Read(std::strtoull(range.c_str(), nullptr, 16), std::span<uint8_t>(&byte, 1));
  }
  if (Exited()) return Status::Unavailable("process " + std::to_string(pid_) + " has exited");
  return Status::InvalidArgument("process " + std::to_string(pid_) +
                                 " has no readable mapping this process can see");
}

Status ProcessMemory::Read(uint64_t remote, std::span<uint8_t> local) const {
  return Copy(false, remote, local.data(), local.size());
}

Status ProcessMemory::Write(uint64_t remote, std::span<const uint8_t> local) const {
  return Copy(true, remote, const_cast<uint8_t*>(local.data()), local.size());
}

Status ProcessMemory::Copy(bool write, uint64_t remote, void* local, size_t length) const {
  if (length == 0) return Status::Ok();
  if (remote + length < remote) {
    return Status::InvalidArgument("range " + RangeText(remote, length) + " wraps around");
  }
  if (running_as != nullptr && running_as != this) {
    return Status::Internal("a copy for process " + std::to_string(pid_) +
                            " inside the Scope of process " + std::to_string(running_as->pid_));
  }
  std::optional<Scope> as_owner;
  if (running_as == nullptr) as_owner.emplace(*this);
  // Checked with the ids switched, just before the copies: the pid is still this process's.
  if (Exited()) {
    return Status::Unavailable("process " + std::to_string(pid_) + " has exited");
  }
  size_t done = 0;
  while (done < length) {
    constexpr size_t kMaxPerCall = size_t{1} << 30;
    const size_t n = std::min(length - done, kMaxPerCall);
    iovec here{static_cast<uint8_t*>(local) + done, n};
    iovec there{reinterpret_cast<void*>(static_cast<uintptr_t>(remote + done)), n};
    const ssize_t moved = write
                              ? process_vm_writev(static_cast<pid_t>(pid_), &here, 1, &there, 1, 0)
                              : process_vm_readv(static_cast<pid_t>(pid_), &here, 1, &there, 1, 0);
    if (moved > 0) {
      done += static_cast<size_t>(moved);
      continue;
    }
    const int error = moved == 0 ? EFAULT : errno;
    const std::string what = std::string(write ? "writing " : "reading ") +
                             RangeText(remote + done, length - done) + " of process " +
                             std::to_string(pid_);
    switch (error) {
      case EINTR:
        continue;
      case ESRCH:
        return Status::Unavailable(what + ": the process has exited");
      case EPERM:
        return Status::InvalidArgument(what +
                                       ": refused by the kernel (the process's user may "
                                       "not trace it: set-user-id, not dumpable, or ptrace scope)");
      case EFAULT:
        return Status::InvalidArgument(what + ": not mapped " + (write ? "writable" : "readable") +
                                       " in that process");
      case ENOMEM:
        return Status::ResourceExhausted(what + ": out of memory");
      default:
        return Status::Unavailable(what + ": " + std::strerror(error));
    }
  }
  return Status::Ok();
}

}  // namespace kvault::transport
