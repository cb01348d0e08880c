// SharedMemoryFile (local/shared_memory_file.h).

#include "kvault/transport/local/shared_memory_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <utility>

#include "kvault/common/errno_text.h"
#include "ucx/memory_headroom.h"

namespace kvault::transport {

Result<SharedMemoryFile> SharedMemoryFile::Create(size_t bytes) {
  if (bytes == 0) return Status::InvalidArgument("shared memory file: zero length");
  if (bytes > static_cast<size_t>(std::numeric_limits<off_t>::max())) {
    return Status::InvalidArgument("shared memory file: " + std::to_string(bytes) +
                                   " bytes are more than a file holds");
  }
  // Allocated whole below: past what this process may still take, the memory cgroup's OOM killer
  // would end it on the way instead of an error.
  if (const std::optional<uint64_t> headroom = MemoryHeadroomBytes();
      headroom && bytes > *headroom) {
    return Status::ResourceExhausted("shared memory file: cannot allocate " +
                                     std::to_string(bytes) + " bytes: only " +
                                     std::to_string(*headroom) +
                                     " bytes of memory are available to this process "
                                     "(MemAvailable, cgroup limit)");
  }
  UniqueFd file(memfd_create("kvault-region", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (file.get() < 0) return Status::Unavailable(ErrnoText("shared memory file: memfd_create"));
  if (ftruncate(file.get(), static_cast<off_t>(bytes)) != 0) {
    return Status::Unavailable(ErrnoText("shared memory file: ftruncate"));
  }
  // Every page allocated here, so that they are this process's (charged to its memory cgroup),
  // never allocated by the server's first write into a hole; a shortage is a status, not a
  // signal on first touch.
  if (const int error = posix_fallocate(file.get(), 0, static_cast<off_t>(bytes)); error != 0) {
    errno = error;
    return error == ENOSPC || error == ENOMEM || error == EFBIG
               ? Status::ResourceExhausted(ErrnoText("shared memory file: allocating"))
               : Status::Unavailable(ErrnoText("shared memory file: allocating"));
  }
  if (fcntl(file.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    return Status::Unavailable(ErrnoText("shared memory file: sealing"));
  }
  void* address = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, file.get(), 0);
  if (address == MAP_FAILED) {
    return errno == ENOMEM ? Status::ResourceExhausted(ErrnoText("shared memory file: mmap"))
                           : Status::Unavailable(ErrnoText("shared memory file: mmap"));
  }
#ifdef MADV_POPULATE_WRITE
  // The page tables too, so that first touches here fault nothing; advisory.
  (void)madvise(address, bytes, MADV_POPULATE_WRITE);
#endif
  return SharedMemoryFile(std::move(file), address, bytes);
}

SharedMemoryFile::SharedMemoryFile(SharedMemoryFile&& other) noexcept
    : file_(std::move(other.file_)),
      address_(std::exchange(other.address_, nullptr)),
      length_(std::exchange(other.length_, 0)) {}

SharedMemoryFile& SharedMemoryFile::operator=(SharedMemoryFile&& other) noexcept {
  if (this != &other) {
    if (address_ != nullptr) munmap(address_, length_);
    file_ = std::move(other.file_);
    address_ = std::exchange(other.address_, nullptr);
    length_ = std::exchange(other.length_, 0);
  }
  return *this;
}

SharedMemoryFile::~SharedMemoryFile() {
  if (address_ != nullptr) munmap(address_, length_);
}

}  // namespace kvault::transport
