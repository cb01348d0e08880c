#pragma once
// The CPU time a process has used so far, for tests that check that a daemon does not spin.

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

namespace kvault::testing {

// User plus system CPU time of `pid` so far, all threads (0 when it cannot be read).
inline std::chrono::milliseconds CpuTime(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), {});
  const size_t paren = text.rfind(')');
  if (paren == std::string::npos || paren + 2 > text.size()) return std::chrono::milliseconds(0);
  std::istringstream fields(text.substr(paren + 2));  // after "pid (comm) "
  std::string field;
  uint64_t utime = 0, stime = 0;
  for (int i = 3; fields >> field; ++i) {  // field 3 is the state
    if (i == 14) utime = std::stoull(field);
    if (i == 15) {
      stime = std::stoull(field);
      break;
    }
  }
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  return std::chrono::milliseconds(static_cast<int64_t>((utime + stime) * 1000.0 / ticks));
}

}  // namespace kvault::testing
