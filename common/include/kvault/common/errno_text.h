#pragma once
// ErrnoText: "<what>: <strerror(errno)>", the message of a failed system call. Call it right
// after that call: errno is read when ErrnoText runs, after its argument was built (building it
// allocates, which glibc does without touching errno when it succeeds). Thread-safe (glibc's
// strerror is, for known codes).

#include <cerrno>
#include <cstring>
#include <string>
#include <string_view>

namespace kvault {

inline std::string ErrnoText(std::string_view what) {
  const int error = errno;
  return std::string(what) + ": " + std::strerror(error);
}

}  // namespace kvault
