#pragma once
// ProcessMemory: the memory of a client process on this host, which the server copies block
// bytes into and out of directly, through the process's /proc/<pid>/mem. The data plane for
// local clients of a daemon that serves tenants (transport/README.md, "Process memory"): no UCX
// endpoint to the client and no shared-memory queue it could forge, no mapping of the client's
// memory into the server, and the kernel's own access check decides what may be copied.
//
// Who may be copied: Open takes a process whose real, effective, saved and file-system user ids
// are one and the same, and so are its group ids (a set-user-id program is refused). It opens
// /proc/<pid>/mem with that user's and group's rights: when the server is root and the user is
// not, the opening thread switches only its file-system ids to them and leaves CAP_SYS_PTRACE
// out of its effective set for the open, then switches back (its real and effective ids stay the
// server's, so the client's user can never signal it). The kernel then opens the file exactly
// when that user could ptrace the process: not for a process that made itself not dumpable,
// nor, where Yama's ptrace_scope is 1 or more, for one that did not allow the server
// (PR_SET_PTRACER). The descriptor stays bound to the memory the process had at Open: once the
// process has exited or run another program (a set-user-id one included), every copy fails.
//
// Which process: Open does not know who the client is. The caller first checks that the pid is
// the one at the other end of the client's control connection (HoldsConnection, ucx/
// control_connection.h).
//
// Thread-safety: Read, Write, CheckAccess and Exited may run on many threads at once; Open, the
// moves and the destructor are thread-compatible.

#include <cstdint>
#include <span>
#include <string>

#include "kvault/common/result.h"

namespace kvault::transport {

class ProcessMemory {
 public:
  // The process `pid` of this pid namespace. InvalidArgument for pid 0, when its user or group
  // ids differ among themselves (set-user-id), or when the kernel refuses its user access to
  // its memory (not dumpable, Yama); NotFound when it does not exist (or has exited);
  // Unsupported when this process is not root and the ids differ from its own; Unavailable when
  // the system refuses otherwise.
  static Result<ProcessMemory> Open(uint32_t pid);

  ProcessMemory(ProcessMemory&& other) noexcept;
  ProcessMemory& operator=(ProcessMemory&& other) noexcept;
  ProcessMemory(const ProcessMemory&) = delete;
  ProcessMemory& operator=(const ProcessMemory&) = delete;
  ~ProcessMemory();

  // Copies the process's bytes [remote, +local.size()) into `local`. OK only when every byte was
  // copied. Unavailable when the process has exited or runs another program since Open;
  // InvalidArgument when part of the range is not mapped in the process or lies outside user
  // addresses (nothing is promised about `local` then). As for a debugger, a mapping without
  // read permission is read all the same.
  Status Read(uint64_t remote, std::span<uint8_t> local) const;
  // Copies `local` into the process's bytes [remote, +local.size()); the same statuses as Read
  // (a range not mapped, or mapped shared and read-only, is InvalidArgument; a private
  // read-only mapping gets a private copy of the page, as a debugger's write would). On failure
  // part of the range may have been written.
  Status Write(uint64_t remote, std::span<const uint8_t> local) const;

  // Whether a copy works now: reads one byte as Read would, the last of the process's stack
  // (anonymous memory it has touched, so the probe never waits on a file system; without a
  // [stack] in /proc/<pid>/maps, the start of its first readable mapping). OK, or Read's
  // statuses.
  Status CheckAccess() const;

  // Whether the process has exited.
  bool Exited() const;

  uint32_t pid() const { return pid_; }
  uint32_t uid() const { return uid_; }
  uint32_t gid() const { return gid_; }

 private:
  ProcessMemory(uint32_t pid, int pidfd) : pid_(pid), pidfd_(pidfd) {}
  Status Copy(bool write, uint64_t remote, uint8_t* local, size_t length) const;

  uint32_t pid_ = 0;
  uint32_t uid_ = 0;
  uint32_t gid_ = 0;
  int pidfd_ = -1;  // tells whether the process has exited
  int mem_ = -1;    // /proc/<pid>/mem, opened with the process user's rights
};

}  // namespace kvault::transport
