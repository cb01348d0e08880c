#pragma once
// ErrnoText: "<what>: <strerror(errno)>", the message of a failed system call, read at once
// (before anything else can change errno). Thread-safe (strerror of glibc is, for known codes).

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
