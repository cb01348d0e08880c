#pragma once
// Checks of kvault-bench flag values shared by several modes. They run while the flags are
// parsed, so that bad input is refused (exit code 2) before any work starts. Thread-safe (pure,
// or they read only the file system and sysconf).

#include <cstdint>
#include <string>
#include <string_view>

#include "kvault/common/status.h"

namespace kvault::bench {

// Whether `text` is a transport list both UCX (UCX_TLS) and kvaultd's --ucx-transports accept:
// comma-separated, non-empty names of [a-z0-9_] ("posix,cma", "tcp", "all"), the whole list
// optionally negated by one leading '^' ("^tcp,cma": every transport but these; UCX reads '^'
// only there). UCX's ":aux" suffix is not accepted (kvaultd refuses ':'). The empty list is
// refused: it would leave the choice to UCX and to the environment. InvalidArgument naming `flag`
// otherwise.
Status CheckTransports(std::string_view flag, const std::string& text);

// Whether `program` names an executable regular file: the path itself when it holds a '/', else
// the first match in PATH (the lookup ChildProcess::Start does). InvalidArgument naming `flag`
// otherwise.
Status CheckExecutableFile(std::string_view flag, const std::string& program);

// Whether a file can be written at `path` (a --json FILE): its directory exists and is writable,
// and `path` is no directory, nor a file that cannot be written. OK for an empty path (no file
// asked for). InvalidArgument naming `flag` otherwise, so that a run does not end in a write error
// after all its work.
Status CheckOutputFile(std::string_view flag, const std::string& path);

// This machine's physical memory in bytes (sysconf(_SC_PHYS_PAGES) x the page size); 0 when
// unknown.
uint64_t PhysicalMemoryBytes();

// Whether a run that needs about `bytes` of memory fits this machine's physical memory.
// InvalidArgument "<what> needs about X GiB of memory; this machine has Y GiB" otherwise; OK when
// the physical memory is unknown. Callers compute `bytes` in double, so no product overflows.
Status CheckFitsInMemory(std::string_view what, double bytes);

}  // namespace kvault::bench
