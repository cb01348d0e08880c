#include "ucx/memory_headroom.h"

#include <algorithm>
#include <charconv>
#include <string>

#include "ucx/proc_files.h"

namespace kvault::transport {
namespace {

std::optional<uint64_t> ParseNumber(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return value;
}

// The path of this process's cgroup in the hierarchy /proc/self/cgroup lists as
// "<id>:<controllers>: <path>" with `controllers` ("" for cgroup v2, "memory" for the v1 memory
// controller).
std::optional<std::string> CgroupPath(std::string_view controllers) {
  const std::optional<std::string> cgroup = ReadProcFile("/proc/self/cgroup");
  if (!cgroup) return std::nullopt;
  std::string_view text = *cgroup;
  while (!text.empty()) {
    const size_t eol = std::min(text.find('\n'), text.size());
    const std::string_view line = text.substr(0, eol);
    text.remove_prefix(std::min(eol + 1, text.size()));
    const size_t first = line.find(':');
    const size_t second = first == std::string_view::npos ? first : line.find(':', first + 1);
    if (second == std::string_view::npos) continue;
    if (line.substr(first + 1, second - first - 1) == controllers) {
      return std::string(line.substr(second + 1));
    }
  }
  return std::nullopt;
}

// What the cgroup limit at `dir` leaves, reading `max_file` and `current_file` there.
std::optional<uint64_t> CgroupHeadroomAt(const std::string& dir, const char* max_file,
                                         const char* current_file) {
  const std::optional<std::string> max = ReadProcFile(dir + "/" + max_file);
  const std::optional<std::string> current = ReadProcFile(dir + "/" + current_file);
  if (!max || !current) return std::nullopt;
  return CgroupHeadroomBytes(*max, *current);
}

}  // namespace

std::optional<uint64_t> MemAvailableBytes(std::string_view meminfo) {
  const std::vector<uint64_t> kib = ProcField(meminfo, "MemAvailable", 10);
  if (kib.empty() || kib[0] > UINT64_MAX / 1024) return std::nullopt;
  return kib[0] * 1024;
}

std::optional<uint64_t> CgroupHeadroomBytes(std::string_view memory_max,
                                            std::string_view memory_current) {
  const std::optional<uint64_t> max = ParseNumber(memory_max);
  const std::optional<uint64_t> current = ParseNumber(memory_current);
  if (!max || !current) return std::nullopt;
  return *max > *current ? *max - *current : 0;
}

std::optional<uint64_t> MemoryHeadroomBytes() {
  std::optional<uint64_t> headroom;
  const auto take = [&](std::optional<uint64_t> bytes) {
    if (bytes) headroom = headroom ? std::min(*headroom, *bytes) : *bytes;
  };
  if (const std::optional<std::string> meminfo = ReadProcFile("/proc/meminfo")) {
    take(MemAvailableBytes(*meminfo));
  }
  // A limit on any cgroup above this one (a systemd slice, a pod) binds too.
  const auto up_from = [&](std::string path, const std::string& root, const char* max_file,
                           const char* current_file) {
    while (true) {
      take(CgroupHeadroomAt(root + path, max_file, current_file));
      const size_t slash = path.rfind('/');
      if (slash == std::string::npos || path.size() <= 1) break;
      path.resize(slash == 0 ? 1 : slash);
    }
  };
  if (const std::optional<std::string> v2 = CgroupPath("")) {
    up_from(*v2, "/sys/fs/cgroup", "memory.max", "memory.current");
  }
  if (const std::optional<std::string> v1 = CgroupPath("memory")) {
    up_from(*v1, "/sys/fs/cgroup/memory", "memory.limit_in_bytes", "memory.usage_in_bytes");
  }
  return headroom;
}

}  // namespace kvault::transport
