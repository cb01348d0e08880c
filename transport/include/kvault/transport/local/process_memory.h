#pragma once
// ProcessMemory: the memory of a client process on this host, which the server copies block
// bytes into and out of directly (cross-memory attach: process_vm_readv and process_vm_writev),
// with the rights of the client's own user. The data plane for local clients of a daemon that
// serves tenants (transport/README.md, "Process memory"): no UCX endpoint to the client and no
// shared-memory queue it could forge, no mapping of the client's memory into the server, and the
// kernel's own access check decides what may be read or written.
//
// Who may be copied: Open takes a process whose real, effective and saved user ids are one and
// the same, and so are its group ids (a set-user-id program is refused). Each copy runs on the
// calling thread with that user and group as its real and effective ids and without
// capabilities when the server is root (the ids are switched on that thread only, and back);
// otherwise with the server's own ids. The kernel then allows the copy exactly when that user
// could ptrace the process at that moment: a process that has since run a set-user-id program,
// or made itself not dumpable, is refused, whatever the server's rights.
//
// Which process: Open does not know who the client is. The caller first checks that the pid is
// the one at the other end of the client's control connection (HoldsConnection, ucx/
// control_connection.h). A pidfd taken at Open ties the object to that process: once it has
// exited every copy fails with Unavailable, so a new process given the same pid is never touched.
//
// Thread-safety: Read and Write may run on many threads at once; Open and the destructor are
// thread-compatible.

#include <cstdint>
#include <span>
#include <string>

#include "kvault/common/result.h"

namespace kvault::transport {

class ProcessMemory {
 public:
  // The process `pid` of this pid namespace. InvalidArgument for pid 0, or when its user or
  // group ids differ among themselves (set-user-id); NotFound when it does not exist (or has
  // exited); Unsupported when this process is not root and the ids differ from its own (the
  // kernel would refuse every copy); Unavailable when pidfd_open fails otherwise.
  static Result<ProcessMemory> Open(uint32_t pid);

  ProcessMemory(ProcessMemory&& other) noexcept;
  ProcessMemory& operator=(ProcessMemory&& other) noexcept;
  ProcessMemory(const ProcessMemory&) = delete;
  ProcessMemory& operator=(const ProcessMemory&) = delete;
  ~ProcessMemory();

  // Copies the process's bytes [remote, +local.size()) into `local`. OK only when every byte was
  // copied. Unavailable when the process has exited; InvalidArgument when the kernel refuses
  // the copy (the rules above) or part of the range is not mapped readable in the process, or
  // the range wraps around (nothing is promised about `local` then).
  Status Read(uint64_t remote, std::span<uint8_t> local) const;
  // Copies `local` into the process's bytes [remote, +local.size()); the same statuses as Read
  // (a range that is mapped but not writable is InvalidArgument). On failure part of the range
  // may have been written.
  Status Write(uint64_t remote, std::span<const uint8_t> local) const;

  // Whether a copy would be allowed now: reads one byte of the process's first readable mapping
  // (/proc/<pid>/maps) as Read would. OK, or Read's statuses.
  Status CheckAccess() const;

  // Holds the calling thread in the process's user and group ids (when this process is root;
  // otherwise does nothing) until it is destroyed, so that a run of Read and Write calls on this
  // thread switches once instead of once per call. Must be destroyed on the thread that made
  // it, before the ProcessMemory; do nothing on that thread meanwhile but copy this process's
  // memory (a Scope inside another aborts; a copy of another ProcessMemory is Internal).
  class Scope {
   public:
    explicit Scope(const ProcessMemory& memory);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    const ProcessMemory* previous_;
    bool switched_ = false;
    uint32_t saved_[6] = {};  // the thread's real, effective, saved user, then group ids
  };

  // Whether the process has exited (its pidfd is readable).
  bool Exited() const;

  uint32_t pid() const { return pid_; }
  uint32_t uid() const { return uid_; }
  uint32_t gid() const { return gid_; }

 private:
  ProcessMemory(uint32_t pid, uint32_t uid, uint32_t gid, int pidfd)
      : pid_(pid), uid_(uid), gid_(gid), pidfd_(pidfd) {}
  Status Copy(bool write, uint64_t remote, void* local, size_t length) const;

  uint32_t pid_ = 0;
  uint32_t uid_ = 0;
  uint32_t gid_ = 0;
  int pidfd_ = -1;
};

}  // namespace kvault::transport
