#include "ucx/proc_files.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>

namespace kvault::transport {

std::optional<std::string> ReadProcLink(const std::string& path) {
  char target[4096];
  const ssize_t n = readlink(path.c_str(), target, sizeof target);
  if (n < 0) return std::nullopt;
  if (static_cast<size_t>(n) == sizeof target) {  // perhaps cut: never taken for the whole
    errno = ENAMETOOLONG;
    return std::nullopt;
  }
  return std::string(target, static_cast<size_t>(n));
}

std::optional<std::string> ReadProcFile(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string text;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) != 0) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  const int saved = errno;
  close(fd);
  if (n < 0) {
    errno = saved;
    return std::nullopt;
  }
  return text;
}

std::vector<uint64_t> ProcField(std::string_view text, std::string_view name, int base) {
  std::vector<uint64_t> out;
  for (size_t at = 0; at < text.size();) {
    size_t eol = text.find('\n', at);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(at, eol - at);
    at = eol + 1;
    if (line.size() <= name.size() || line.substr(0, name.size()) != name ||
        line[name.size()] != ':') {
      continue;
    }
    const char* p = line.data() + name.size() + 1;
    const char* end = line.data() + line.size();
    while (p < end) {
      while (p < end && (*p == ' ' || *p == '\t')) ++p;
      uint64_t v = 0;
      const auto [next, ec] = std::from_chars(p, end, v, base);
      if (ec != std::errc() || next == p) break;
      out.push_back(v);
      p = next;
    }
    break;
  }
  return out;
}

std::optional<std::string> MountType(uint64_t mount_id) {
  const std::optional<std::string> info = ReadProcFile("/proc/self/mountinfo");
  if (!info) return std::nullopt;
  // "ID PARENT MAJ:MIN ROOT POINT OPTIONS [TAGS...] - TYPE SOURCE SUPER_OPTIONS"
  const std::string id = std::to_string(mount_id) + " ";
  for (size_t at = 0; at < info->size();) {
    size_t eol = info->find('\n', at);
    if (eol == std::string::npos) eol = info->size();
    const std::string_view line(info->data() + at, eol - at);
    at = eol + 1;
    if (line.substr(0, id.size()) != id) continue;
    const size_t dash = line.find(" - ");
    if (dash == std::string_view::npos) return std::nullopt;
    const std::string_view rest = line.substr(dash + 3);
    return std::string(rest.substr(0, rest.find(' ')));
  }
  return std::nullopt;
}

std::optional<std::array<uint64_t, 4>> ProcessUids(uint64_t pid) {
  const std::optional<std::string> status =
      ReadProcFile("/proc/" + std::to_string(pid) + "/status");
  if (!status) return std::nullopt;
  const std::vector<uint64_t> uids = ProcField(*status, "Uid", 10);
  if (uids.size() != 4) return std::nullopt;
  return std::array<uint64_t, 4>{uids[0], uids[1], uids[2], uids[3]};
}

bool IsOneOf(uint64_t uid, const std::array<uint64_t, 4>& uids) {
  return std::find(uids.begin(), uids.end(), uid) != uids.end();
}

std::optional<bool> HasSysvAttached(uint64_t pid, uint32_t shmid) {
  const std::optional<std::string> maps = ReadProcFile("/proc/" + std::to_string(pid) + "/maps");
  if (!maps) return std::nullopt;
  const std::string_view text = *maps;
  for (size_t at = 0; at < text.size();) {
    size_t eol = text.find('\n', at);
    if (eol == std::string_view::npos) eol = text.size();
    const std::string_view line = text.substr(at, eol - at);
    at = eol + 1;
    // address perms offset dev inode path
    size_t field = 0;
    size_t i = 0;
    for (; field < 4 && i < line.size(); ++field) {
      i = line.find(' ', i);
      if (i == std::string_view::npos) break;
      while (i < line.size() && line[i] == ' ') ++i;
    }
    if (field != 4 || i >= line.size()) continue;
    uint64_t inode = 0;
    const auto [next, ec] = std::from_chars(line.data() + i, line.data() + line.size(), inode);
    if (ec != std::errc() || inode != shmid) continue;
    const size_t name = line.find('/', static_cast<size_t>(next - line.data()));
    if (name != std::string_view::npos && line.substr(name, 5) == "/SYSV") return true;
  }
  return false;
}

}  // namespace kvault::transport
