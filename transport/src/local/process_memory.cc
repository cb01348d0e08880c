// ProcessMemory (local/process_memory.h): a client process's /proc/<pid>/mem, opened with its
// user's rights.

#include "kvault/transport/local/process_memory.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <vector>

#include "ucx/proc_files.h"

namespace kvault::transport {
namespace {

// True when `ids` (a "Uid:" or "Gid:" line of /proc/<pid>/status: real, effective, saved,
// file-system) holds four ids, all the same.
bool Uniform(const std::vector<uint64_t>& ids) {
  return ids.size() == 4 &&
         std::all_of(ids.begin(), ids.end(), [&](uint64_t id) { return id == ids[0]; });
}

// A thread left with another user's ids or without its capabilities must not go on serving.
[[noreturn]] void DieSwitchingIds(const char* call) {
  std::fprintf(stderr, "kvault: fatal: %s failed while opening a client's memory: %s\n", call,
               std::strerror(errno));
  std::abort();
}

// The dumpable flag of this process before any thread switched ids. Changing a thread's
// file-system user id clears the flag (no core dumps, /proc files owned by root); it is put back
// after each switch.
int DumpableAtStart() {
  static const int dumpable = prctl(PR_GET_DUMPABLE);
  return dumpable < 0 ? 1 : dumpable;
}

// The calling thread's file-system ids, read without changing them (setfs*id(-1) changes
// nothing and returns the current id).
uid_t CurrentFsUid() { return static_cast<uid_t>(syscall(SYS_setfsuid, static_cast<uid_t>(-1))); }
gid_t CurrentFsGid() { return static_cast<gid_t>(syscall(SYS_setfsgid, static_cast<gid_t>(-1))); }

// Opens `path` read-write as `uid` and `gid` would: the calling thread (of a root process) takes
// them as its file-system ids and leaves CAP_SYS_PTRACE out of its effective set for the open,
// then switches back. Its real and effective ids never change, so that user cannot signal it.
// Raw system calls: the glibc wrappers would change every thread of the process. Unavailable
// when the switch is not allowed (no CAP_SETUID or CAP_SETGID: the thread is then as before);
// otherwise the descriptor, or the open's errno in *open_errno and -1.
Result<int> OpenAsUser(const std::string& path, uid_t uid, gid_t gid, int* open_errno) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct saved[2] = {};
  if (syscall(SYS_capget, &header, saved) != 0) {
    return Status::Unavailable(std::string("capget: ") + std::strerror(errno));
  }
  __user_cap_data_struct without[2] = {saved[0], saved[1]};
  without[CAP_TO_INDEX(CAP_SYS_PTRACE)].effective &= ~CAP_TO_MASK(CAP_SYS_PTRACE);
  if (syscall(SYS_capset, &header, without) != 0) {
    return Status::Unavailable(std::string("capset: ") + std::strerror(errno));
  }
  const uid_t old_uid = CurrentFsUid();
  const gid_t old_gid = CurrentFsGid();
  auto restore = [&] {
    syscall(SYS_setfsuid, old_uid);
    syscall(SYS_setfsgid, old_gid);
    // A thread left with another user's ids or without its capabilities must not go on.
    if (CurrentFsUid() != old_uid || CurrentFsGid() != old_gid) DieSwitchingIds("setfsuid back");
    if (syscall(SYS_capset, &header, saved) != 0) DieSwitchingIds("capset back");
    // Changing the file-system user id cleared the process's dumpable flag: put it back.
    prctl(PR_SET_DUMPABLE, DumpableAtStart());
  };
  // setfs*id report the previous id, never an error: read them back to see that they took.
  syscall(SYS_setfsgid, gid);
  syscall(SYS_setfsuid, uid);
  if (CurrentFsUid() != uid || CurrentFsGid() != gid) {
    restore();
    return Status::Unavailable(
        "cannot take a client's file-system ids (kvaultd lacks "
        "CAP_SETUID or CAP_SETGID)");
  }
  const int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  *open_errno = errno;
  restore();
  return fd;
}

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
  const std::string who = "process " + std::to_string(pid);
  const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, static_cast<pid_t>(pid), 0));
  if (pidfd < 0) {
    if (errno == ESRCH) return Status::NotFound(who + " does not exist");
    return Status::Unavailable(std::string("pidfd_open: ") + std::strerror(errno));
  }
  ProcessMemory memory(pid, pidfd);  // closes what it holds on every early return
  const std::optional<std::string> status =
      ReadProcFile("/proc/" + std::to_string(pid) + "/status");
  const std::vector<uint64_t> uids =
      status ? ProcField(*status, "Uid", 10) : std::vector<uint64_t>();
  const std::vector<uint64_t> gids =
      status ? ProcField(*status, "Gid", 10) : std::vector<uint64_t>();
  if (uids.empty() || gids.empty() || memory.Exited()) return Status::NotFound(who + " has exited");
  if (!Uniform(uids) || !Uniform(gids)) {
    return Status::InvalidArgument(who +
                                   " runs with mixed user or group ids (set-user-id); its memory "
                                   "is not copied directly");
  }
  memory.uid_ = static_cast<uint32_t>(uids[0]);
  memory.gid_ = static_cast<uint32_t>(gids[0]);
  // For a process of user 0 nothing would narrow a root server's rights (and a process that
  // relays a client's connection may be one): never copied directly.
  if (memory.uid_ == 0) {
    return Status::InvalidArgument(who + " runs as root; its memory is not copied directly");
  }
  const bool root = geteuid() == 0;
  if (!root && (memory.uid_ != getuid() || memory.gid_ != getgid())) {
    return Status::Unsupported(who +
                               " belongs to another user or group, and this process is "
                               "not root");
  }
  const std::string path = "/proc/" + std::to_string(pid) + "/mem";
  int error = 0;
  if (root) {
    KVAULT_ASSIGN_OR_RETURN(memory.mem_, OpenAsUser(path, memory.uid_, memory.gid_, &error));
  } else {
    memory.mem_ = open(path.c_str(), O_RDWR | O_CLOEXEC);
    error = errno;
  }
  if (memory.mem_ < 0) {
    if (error == ENOENT || error == ESRCH) return Status::NotFound(who + " has exited");
    if (error == EACCES || error == EPERM) {
      return Status::InvalidArgument(who +
                                     "'s memory is not open to its own user (not dumpable, "
                                     "or Yama's ptrace_scope without PR_SET_PTRACER)");
    }
    return Status::Unavailable("opening " + path + ": " + std::strerror(error));
  }
  return memory;
}

ProcessMemory::ProcessMemory(ProcessMemory&& other) noexcept
    : pid_(other.pid_), uid_(other.uid_), gid_(other.gid_), pidfd_(other.pidfd_), mem_(other.mem_) {
  other.pidfd_ = -1;
  other.mem_ = -1;
}

ProcessMemory& ProcessMemory::operator=(ProcessMemory&& other) noexcept {
  if (this != &other) {
    if (pidfd_ >= 0) close(pidfd_);
    if (mem_ >= 0) close(mem_);
    pid_ = other.pid_;
    uid_ = other.uid_;
    gid_ = other.gid_;
    pidfd_ = other.pidfd_;
    mem_ = other.mem_;
    other.pidfd_ = -1;
    other.mem_ = -1;
  }
  return *this;
}

ProcessMemory::~ProcessMemory() {
  if (pidfd_ >= 0) close(pidfd_);
  if (mem_ >= 0) close(mem_);
}

bool ProcessMemory::Exited() const {
  pollfd p{pidfd_, POLLIN, 0};
  return poll(&p, 1, 0) != 0;  // readable once the process has exited; an error counts as gone
}

Status ProcessMemory::CheckAccess() const {
  // The probe reads the last byte of the main thread's stack: anonymous memory the process has
  // touched, so the read never waits on a file system (a page of a file the client serves itself,
  // FUSE, could hold it). Without a [stack] line, the first readable mapping.
  std::ifstream maps("/proc/" + std::to_string(pid_) + "/maps");
  std::string line;
  std::optional<uint64_t> stack_last, first_readable;
  while (std::getline(maps, line)) {
    // "start-end perms offset dev inode [path]"; [vvar] and [vsyscall] cannot be copied.
    std::istringstream fields(line);
    std::string range, perms;
    if (!(fields >> range >> perms) || perms.empty() || perms[0] != 'r') continue;
    if (line.find("[vvar]") != std::string::npos || line.find("[vsyscall]") != std::string::npos) {
      continue;
    }
    const size_t dash = range.find('-');
    if (dash == std::string::npos) continue;
    const uint64_t begin = std::strtoull(range.c_str(), nullptr, 16);
    const uint64_t end = std::strtoull(range.c_str() + dash + 1, nullptr, 16);
    if (end <= begin) continue;
    if (!first_readable) first_readable = begin;
    if (line.size() >= 7 && line.compare(line.size() - 7, 7, "[stack]") == 0) stack_last = end - 1;
  }
  const std::optional<uint64_t> probe = stack_last ? stack_last : first_readable;
  if (probe) {
    uint8_t byte = 0;
    return Read(*probe, std::span<uint8_t>(&byte, 1));
  }
  if (Exited()) return Status::Unavailable("process " + std::to_string(pid_) + " has exited");
  return Status::InvalidArgument("process " + std::to_string(pid_) +
                                 " has no readable mapping this process can see");
}

Status ProcessMemory::Read(uint64_t remote, std::span<uint8_t> local) const {
  return Copy(false, remote, local.data(), local.size());
}

Status ProcessMemory::Write(uint64_t remote, std::span<const uint8_t> local) const {
  // pwrite only reads `local`.
  return Copy(true, remote, const_cast<uint8_t*>(local.data()), local.size());
}

Status ProcessMemory::Copy(bool write, uint64_t remote, uint8_t* local, size_t length) const {
  if (length == 0) return Status::Ok();
  // File offsets are signed: user addresses lie far below 2^63.
  constexpr uint64_t kEnd = uint64_t{1} << 63;
  if (remote >= kEnd || length > kEnd - remote) {
    return Status::InvalidArgument("range " + RangeText(remote, length) +
                                   " lies outside user addresses");
  }
  size_t done = 0;
  while (done < length) {
    const off_t at = static_cast<off_t>(remote + done);
    const ssize_t moved = write ? pwrite(mem_, local + done, length - done, at)
                                : pread(mem_, local + done, length - done, at);
    if (moved > 0) {
      done += static_cast<size_t>(moved);
      continue;
    }
    const int error = moved == 0 ? 0 : errno;
    if (error == EINTR) continue;
    const std::string what = std::string(write ? "writing " : "reading ") +
                             RangeText(remote + done, length - done) + " of process " +
                             std::to_string(pid_);
    switch (error) {
      case 0:  // the memory opened is gone
        return Status::Unavailable(what + ": the process has exited or runs another program");
      case EIO:
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
