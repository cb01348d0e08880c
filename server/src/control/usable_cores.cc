// UsableCores (usable_cores.h).

#include "control/usable_cores.h"

#include <sched.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <string>
#include <thread>

namespace kvault::server {
namespace {

std::optional<uint64_t> ParseCount(std::string_view text) {
  uint64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return v;
}

uint32_t AffinityCores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

// This process's cgroup path ("/" for the root) in the hierarchy whose /proc/self/cgroup line
// has `controllers` ("" for the cgroup v2 line "0::PATH", "cpu" for v1's "N:cpu,cpuacct:PATH").
std::optional<std::string> OwnCgroup(std::string_view controller) {
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  while (std::getline(in, line)) {
    const size_t first = line.find(':');
    const size_t second = line.find(':', first + 1);
    if (first == std::string::npos || second == std::string::npos) continue;
    const std::string_view list = std::string_view(line).substr(first + 1, second - first - 1);
    bool match = controller.empty() && list.empty();
    for (size_t at = 0; !controller.empty() && at <= list.size();) {
      const size_t comma = std::min(list.find(',', at), list.size());
      if (list.substr(at, comma - at) == controller) match = true;
      at = comma + 1;
    }
    if (match) return line.substr(second + 1);
  }
  return std::nullopt;
}

// The first line of `file`, or "" when it cannot be read.
std::string FirstLine(const std::string& file) {
  std::ifstream in(file);
  std::string line;
  std::getline(in, line);
  return line;
}

// Calls visit(dir) for `path` under `root` and for each of its ancestors up to `root` itself.
template <typename Visit>
void ForEachAncestor(const std::string& root, std::string path, Visit visit) {
  for (;;) {
    visit(root + (path == "/" ? std::string() : path));
    if (path.empty() || path == "/") return;
    const size_t slash = path.rfind('/');
    path = slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
  }
}

}  // namespace

std::optional<uint32_t> CoresOfCpuMax(std::string_view line) {
  while (!line.empty() && (line.back() == '\n' || line.back() == ' ')) line.remove_suffix(1);
  const size_t space = line.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  const std::optional<uint64_t> quota = ParseCount(line.substr(0, space));  // "max": nullopt
  const std::optional<uint64_t> period = ParseCount(line.substr(space + 1));
  if (!quota || !period || *period == 0) return std::nullopt;
  const uint64_t cores = (*quota + *period - 1) / *period;
  return static_cast<uint32_t>(std::clamp<uint64_t>(cores, 1, UINT32_MAX));
}

uint32_t UsableCores() {
  uint32_t cores = AffinityCores();
  auto cap = [&](std::optional<uint32_t> limit) {
    if (limit) cores = std::min(cores, *limit);
  };
  // The quota of the process's own cgroup and of each ancestor applies. cgroup v2: cpu.max.
  if (std::optional<std::string> v2 = OwnCgroup("")) {
    ForEachAncestor("/sys/fs/cgroup", *v2, [&](const std::string& dir) {
      cap(CoresOfCpuMax(FirstLine(dir + "/cpu.max")));
    });
  }
  // cgroup v1: cpu.cfs_quota_us (-1: none) over cpu.cfs_period_us, as "QUOTA PERIOD".
  if (std::optional<std::string> v1 = OwnCgroup("cpu")) {
    for (const char* root : {"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"}) {
      ForEachAncestor(root, *v1, [&](const std::string& dir) {
        cap(CoresOfCpuMax(FirstLine(dir + "/cpu.cfs_quota_us") + " " +
                          FirstLine(dir + "/cpu.cfs_period_us")));
      });
    }
  }
  return std::max(1u, cores);
}

}  // namespace kvault::server
