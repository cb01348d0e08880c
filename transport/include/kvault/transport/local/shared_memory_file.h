#pragma once
// SharedMemoryFile: memory of this process backed by a file it can hand to kvaultd (a memfd,
// mapped shared here), so that the process-memory data plane copies the bytes in it through
// the file (RegionFile, region_file.h) rather than through /proc/<pid>/mem, whose copies go
// page by page through a kernel bounce page under the process's mmap lock (docs/daemon.md,
// "Process memory"; docs/memory_handover.md, "Regions"). The file is sealed against shrinking
// and growing (and against further seals), so the server never reads past its end or makes it
// grow, and its pages are allocated here first, so that they belong to this process.
//
// Thread-safety: the bytes are the caller's; the object is thread-compatible. Movable only.

#include <cstddef>

#include "kvault/common/file_io.h"
#include "kvault/common/result.h"

namespace kvault::transport {

class SharedMemoryFile {
 public:
  // A fresh file of `bytes` bytes, mapped read-write, every page allocated. InvalidArgument for 0
  // or more than a file holds; ResourceExhausted when the system has not the memory (checked
  // first against MemAvailable and the cgroup's limit, as UcxMemory::Allocate does); Unavailable
  // when the system refuses otherwise (no memfd).
  static Result<SharedMemoryFile> Create(size_t bytes);

  SharedMemoryFile(SharedMemoryFile&& other) noexcept;
  SharedMemoryFile& operator=(SharedMemoryFile&& other) noexcept;
  SharedMemoryFile(const SharedMemoryFile&) = delete;
  SharedMemoryFile& operator=(const SharedMemoryFile&) = delete;
  ~SharedMemoryFile();  // unmaps; the file lives on while another process holds it

  void* address() const { return address_; }
  size_t length() const { return length_; }
  // The file, to hand over (SCM_RIGHTS dups it); owned here.
  int descriptor() const { return file_.get(); }

 private:
  SharedMemoryFile(UniqueFd file, void* address, size_t length)
      : file_(std::move(file)), address_(address), length_(length) {}

  UniqueFd file_;
  void* address_ = nullptr;
  size_t length_ = 0;
};

}  // namespace kvault::transport
