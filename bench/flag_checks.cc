// Flag checks shared by the kvault-bench modes (flag_checks.h).
#include "flag_checks.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "kvault/common/cli_args.h"

namespace kvault::bench {

Status CheckTransports(std::string_view flag, const std::string& text) {
  if (IsUcxTransportList(text, /*allow_empty=*/false)) return Status::Ok();
  return Status::InvalidArgument(
      std::string(flag) +
      " takes UCX_TLS transport names of [a-z0-9_], comma-separated, the whole list optionally "
      "negated by a leading ^ (e.g. posix,cma or tcp or ^tcp), got '" +
      text + "'");
}

Status CheckOutputFile(std::string_view flag, const std::string& path) {
  if (path.empty()) return Status::Ok();
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) {
      return Status::InvalidArgument(std::string(flag) + " names a directory: '" + path + "'");
    }
    if (::access(path.c_str(), W_OK) != 0) {
      return Status::InvalidArgument(std::string(flag) + " '" + path + "' is not writable");
    }
  }
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "."
                          : slash == 0               ? "/"
                                                     : path.substr(0, slash);
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Status::InvalidArgument(std::string(flag) + " '" + path + "': no directory '" + dir +
                                   "'");
  }
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    return Status::InvalidArgument(std::string(flag) + " '" + path + "': directory '" + dir +
                                   "' is not writable");
  }
  return Status::Ok();
}

Status CheckExecutableFile(std::string_view flag, const std::string& program) {
  auto executable_file = [](const std::string& path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
           ::access(path.c_str(), X_OK) == 0;
  };
  bool found = false;
  if (program.find('/') != std::string::npos) {
    found = executable_file(program);
  } else if (!program.empty()) {
    const char* path = std::getenv("PATH");
    std::stringstream dirs(path != nullptr ? path : "/usr/bin:/bin");
    std::string dir;
    while (!found && std::getline(dirs, dir, ':')) {
      found = executable_file((dir.empty() ? "." : dir) + "/" + program);
    }
  }
  if (found) return Status::Ok();
  return Status::InvalidArgument(std::string(flag) + " " + program +
                                 ": not an executable file (nor one found in PATH)");
}

uint64_t PhysicalMemoryBytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page_size = ::sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page_size <= 0) return 0;
  return static_cast<uint64_t>(pages) * static_cast<uint64_t>(page_size);
}

Status CheckFitsInMemory(std::string_view what, double bytes) {
  const uint64_t physical = PhysicalMemoryBytes();
  if (physical == 0 || bytes <= static_cast<double>(physical)) return Status::Ok();
  char text[160];
  std::snprintf(text, sizeof text, " needs about %.1f GiB of memory; this machine has %.1f GiB",
                bytes / 1073741824.0, physical / 1073741824.0);
  return Status::InvalidArgument(std::string(what) + text);
}

}  // namespace kvault::bench
