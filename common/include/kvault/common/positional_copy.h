#pragma once
// PositionalCopy: the pread/pwrite loop of every copy at a file offset (FileReader, the
// transport's ProcessMemory and RegionFile, the daemon's reads of clients' segment files). Moves
// `n` bytes between `local` and the file `fd` at `offset` (pwrite when `write`), going on after
// short moves and EINTR. Returns 0 when all moved; else the errno of the failed call (0 is never
// returned for a failure: a call that moved nothing gives -1), with *done the bytes moved before.
// Thread-safe (positional calls only).

#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>

namespace kvault {

inline int PositionalCopy(int fd, bool write, uint64_t offset, uint8_t* local, size_t n,
                          size_t* done) {
  *done = 0;
  while (*done < n) {
    const off_t at = static_cast<off_t>(offset + *done);
    const ssize_t moved =
        write ? pwrite(fd, local + *done, n - *done, at) : pread(fd, local + *done, n - *done, at);
    if (moved > 0) {
      *done += static_cast<size_t>(moved);
      continue;
    }
    if (moved == 0) return -1;
    if (errno != EINTR) return errno;
  }
  return 0;
}

}  // namespace kvault
