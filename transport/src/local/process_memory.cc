// ProcessMemory (local/process_memory.h): a client process's memory file, handed over by it.

#include "kvault/transport/local/process_memory.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "kvault/common/positional_copy.h"
#include "ucx/proc_files.h"

namespace kvault::transport {
namespace {

std::string RangeText(uint64_t remote, size_t length) {
  char text[64];
  std::snprintf(text, sizeof text, "[0x%llx, +%zu)", static_cast<unsigned long long>(remote),
                length);
  return text;
}

// The path procfs gives the descriptor ("/proc/<pid>/mem", "/proc/<pid>/task/<tid>/mem"), or
// empty.
std::string LinkOf(int fd) {
  return ReadProcLink("/proc/self/fd/" + std::to_string(fd)).value_or(std::string());
}

// The pid of "/proc/<pid>/..." or 0.
uint64_t PidOf(const std::string& link) {
  constexpr std::string_view kProc = "/proc/";
  if (link.compare(0, kProc.size(), kProc) != 0) return 0;
  uint64_t pid = 0;
  for (size_t i = kProc.size(); i < link.size() && link[i] != '/'; ++i) {
    if (link[i] < '0' || link[i] > '9' || pid > (uint64_t{1} << 32)) return 0;
    pid = pid * 10 + static_cast<uint64_t>(link[i] - '0');
  }
  return pid;
}

}  // namespace

Result<ProcessMemory> ProcessMemory::Adopt(UniqueFd* fd) {
  if (fd->get() < 0) return Status::InvalidArgument("no descriptor was handed over");
  const Status not_memory = Status::InvalidArgument(
      "the handed-over descriptor is not a process's memory file (/proc/<pid>/mem on a procfs "
      "mount of this server's mount namespace)");
  // Only procfs is read here. The fd's link first: reading the fdinfo of some descriptors (an
  // epoll one) takes a lock whose holder may wait on the sender, so only one named like a memory
  // file gets that far. fdinfo has the open flags and the mount, mountinfo its type.
  const std::string link = LinkOf(fd->get());
  constexpr std::string_view kMem = "/mem";
  if (link.size() <= kMem.size() ||
      link.compare(link.size() - kMem.size(), kMem.size(), kMem) != 0) {
    return not_memory;
  }
  const std::optional<std::string> info =
      ReadProcFile("/proc/self/fdinfo/" + std::to_string(fd->get()));
  const std::vector<uint64_t> flags = info ? ProcField(*info, "flags", 8) : std::vector<uint64_t>();
  const std::vector<uint64_t> mount =
      info ? ProcField(*info, "mnt_id", 10) : std::vector<uint64_t>();
  if (flags.size() != 1 || mount.size() != 1) {
    return Status::Unavailable("cannot read the fdinfo of the handed-over descriptor");
  }
  if (MountType(mount[0]) != "proc") return not_memory;
  if ((flags[0] & O_ACCMODE) != O_RDWR) {
    return Status::InvalidArgument(
        "the handed-over memory file is not open for reading and writing");
  }
  const uint64_t pid = PidOf(link);
  if (pid != 0 && pid == static_cast<uint64_t>(getpid())) {
    return Status::InvalidArgument("the handed-over memory file is this server's own");
  }
  return ProcessMemory(std::move(*fd), pid != 0 ? "process " + std::to_string(pid)
                                                : std::string("the process that handed it over"));
}

Result<UniqueFd> ProcessMemory::OpenOwn() {
  UniqueFd fd(open("/proc/self/mem", O_RDWR | O_CLOEXEC));
  if (fd.get() < 0) {
    return Status::Unavailable(std::string("opening /proc/self/mem: ") + std::strerror(errno));
  }
  return fd;
}

Status ProcessMemory::Probe(uint64_t remote, std::span<const uint8_t> expected) const {
  std::vector<uint8_t> seen(expected.size());
  KVAULT_RETURN_IF_ERROR(Read(remote, seen));
  if (!std::equal(seen.begin(), seen.end(), expected.begin())) {
    return Status::InvalidArgument("the probe bytes at " + RangeText(remote, expected.size()) +
                                   " of " + name_ + " differ from the ones it sent");
  }
  return Status::Ok();
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
  const int error = PositionalCopy(mem_.get(), write, remote, local, length, &done);
  if (error != 0) {
    const std::string what = std::string(write ? "writing " : "reading ") +
                             RangeText(remote + done, length - done) + " of " + name_;
    switch (error) {
      case -1:  // nothing moved: the memory opened is gone
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
