#pragma once
// ProcessMemory: the memory of a client process on this host, which the server copies block
// bytes into and out of directly, through a descriptor of the process's memory file
// (/proc/<pid>/mem) that the process itself handed over (memory_handover.h). The data plane for
// local clients of a daemon that serves tenants (transport/process_memory.md): no UCX
// endpoint to the client and no shared-memory queue it could forge, no mapping of the client's
// memory into the server, and no privilege: the server never opens another process's memory.
// The kernel checked, when the client opened the file, that it might; whoever hands a
// descriptor over could write that memory already.
//
// The descriptor stays bound to the memory the process had when it opened the file: once the
// process has exited or run another program, every copy fails with Unavailable.
//
// Thread-safety: Read, Write and Probe may run on many threads at once; Adopt, the moves and
// the destructor are thread-compatible.

#include <cstdint>
#include <span>
#include <string>

#include "kvault/common/file_io.h"
#include "kvault/common/result.h"

namespace kvault::transport {

class ProcessMemory {
 public:
  // Takes *fd when it is a process's memory file: on a procfs mount of this mount namespace,
  // named ".../mem", opened read-write, and not this process's own (by the pid in the name procfs
  // gives it here: a client of another pid namespace whose pid has this process's number is
  // refused too, and uses UCX). InvalidArgument otherwise, and *fd is left to the caller: the
  // checks only read this process's procfs (fdinfo, the fd's link, mountinfo) and never call
  // into the descriptor's file system, whereas closing it may (a FUSE file system the sender
  // serves answers a close when it likes). Unavailable when the system cannot tell.
  static Result<ProcessMemory> Adopt(UniqueFd* fd);

  // Opens this process's own memory file (/proc/self/mem) read-write: what a client hands over.
  // Unavailable when the system refuses: as for a process that made itself not dumpable and is
  // not root, whose /proc files the kernel gives to root.
  static Result<UniqueFd> OpenOwn();

  ProcessMemory(ProcessMemory&&) noexcept = default;
  ProcessMemory& operator=(ProcessMemory&&) noexcept = default;

  // Copies the process's bytes [remote, +local.size()) into `local`. OK only when every byte was
  // copied. Unavailable when the process has exited or runs another program since it opened the
  // file; InvalidArgument when part of the range is not mapped in the process or lies outside
  // user addresses (nothing is promised about `local` then). As for a debugger, a mapping
  // without read permission is read all the same.
  Status Read(uint64_t remote, std::span<uint8_t> local) const;
  // Copies `local` into the process's bytes [remote, +local.size()); the same statuses as Read
  // (a range not mapped, or mapped shared and read-only, is InvalidArgument; a private
  // read-only mapping gets a private copy of the page, as a debugger's write would). On failure
  // part of the range may have been written.
  Status Write(uint64_t remote, std::span<const uint8_t> local) const;

  // Whether the memory is the live memory of the process that vouches for `expected`: reads
  // expected.size() bytes at `remote` and compares. OK when equal; InvalidArgument when they
  // differ; Read's statuses otherwise.
  Status Probe(uint64_t remote, std::span<const uint8_t> expected) const;

  // The memory file's descriptor (owned here), e.g. to pass it on to another process.
  int descriptor() const { return mem_.get(); }
  // "process <pid>" as procfs named it to this process, for messages.
  const std::string& name() const { return name_; }

 private:
  ProcessMemory(UniqueFd fd, std::string name) : mem_(std::move(fd)), name_(std::move(name)) {}
  Status Copy(bool write, uint64_t remote, uint8_t* local, size_t length) const;

  UniqueFd mem_;
  std::string name_;
};

}  // namespace kvault::transport
