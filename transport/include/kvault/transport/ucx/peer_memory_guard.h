#pragma once
// PeerMemoryGuard: keeps a peer that cuts its shared memory short from crashing this process.
//
// Why: with the posix transport, the memory a client allocated through UCX is a file (a shared
// segment) that the server maps. The client can shrink that file at any moment (ftruncate); a
// read or write of the server's mapping past the new end then raises SIGBUS, and by default
// SIGBUS kills the process: one client would take kvaultd and every tenant's requests down.
// SharedSegmentHold refuses a key whose region lies past the end of its file, but only when the
// key is unpacked; the file can shrink at any time after that.
//
// What: while a guard watches a region, a SIGBUS raised by an access inside it is absorbed: the
// whole region is replaced by private zero pages (reads give zeros, writes go nowhere and never
// reach the client), the access goes on, and every guard whose region shares a replaced page
// reports cut_short(), so the transfers that used the region fail with a status. One fault per
// region and thread, whichever way the copy runs. A SIGBUS anywhere else, or one sent by a process
// (kill, sigqueue), goes to the handler that was there before the first guard (UCX's backtrace
// printer by default; a process with none dies with a core dump, as it would have). The first Watch
// installs the handler, once per process.
//
// Thread-safety: Watch, destruction and cut_short() may run on any thread, concurrently; the
// signal handler takes no lock and allocates nothing. A region must stay mapped while watched:
// destroy the guard before the mapping goes away.

#include <cstddef>
#include <cstdint>
#include <span>

#include "kvault/common/result.h"

namespace kvault::transport {

class PeerMemoryGuard {
 public:
  // How many regions can be watched at once in a process (one per unpacked remote key of mapped
  // memory: 64 cached keys per peer, 1,024 connections by default).
  static constexpr size_t kMaxWatched = 65536;

  // A file as /proc/self/maps shows its mappings: device (major, minor of st_dev) and inode.
  // `any_device`: match the inode on any device (a sysv segment shows its shmid as the inode).
  struct MappedFile {
    uint32_t major = 0;
    uint32_t minor = 0;
    uint64_t inode = 0;
    bool any_device = false;
  };

  // Watches nothing.
  PeerMemoryGuard() = default;

  // Watches [begin, begin + length), memory of a peer mapped here. `page_bytes`: the page size of
  // the mapping (a power of two, at least the system's; larger for a file on hugetlbfs), the
  // unit in which it can be replaced. `files`: when not empty, the mapping must be one of these
  // files (the segments the peer's key was checked against), not merely some shared mapping.
  // InvalidArgument for an empty or wrapping region, a bad page size, or a region that does not
  // lie inside one shared mapping of this process (of one of `files`), so a replacement can never
  // reach memory outside the peer's mapping; ResourceExhausted when kMaxWatched regions are
  // already watched; Internal when the handler cannot be installed.
  static Result<PeerMemoryGuard> Watch(const void* begin, size_t length, size_t page_bytes = 0,
                                       std::span<const MappedFile> files = {});

  PeerMemoryGuard(PeerMemoryGuard&& other) noexcept;
  PeerMemoryGuard& operator=(PeerMemoryGuard&& other) noexcept;
  PeerMemoryGuard(const PeerMemoryGuard&) = delete;
  PeerMemoryGuard& operator=(const PeerMemoryGuard&) = delete;
  ~PeerMemoryGuard();  // stops watching

  bool watching() const { return slot_ >= 0; }
  // True once an access to the region, or to a region sharing one of its pages, faulted (the peer
  // cut its memory short) since Watch: the region now reads as zeros here.
  bool cut_short() const;

  // Faults absorbed in this process, by every guard, since it started.
  static uint64_t absorbed_total();

 private:
  explicit PeerMemoryGuard(int slot) : slot_(slot) {}
  void Release();

  int slot_ = -1;
};

}  // namespace kvault::transport
