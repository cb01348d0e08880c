// ControlConnection (control_connection.h): which process holds a TCP connection, from /proc.

#include "kvault/transport/ucx/control_connection.h"

#include <dirent.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

#include "ucx/proc_files.h"

namespace kvault::transport {
namespace {

constexpr std::array<uint8_t, 12> kV4MappedPrefix = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

// One "ADDRESS:PORT" field of /proc/net/tcp (8 hex digits) or tcp6 (32): the kernel prints each
// 32-bit word of the address as it lies in memory (network order) read as a native integer.
std::optional<TcpEnd> ParseProcEnd(const std::string& field, bool ipv6) {
  const size_t colon = field.find(':');
  const size_t digits = ipv6 ? 32 : 8;
  if (colon != digits || field.size() != colon + 5) return std::nullopt;
  std::array<uint8_t, 16> bytes{};
  for (size_t word = 0; word < digits / 8; ++word) {
    char* end = nullptr;
    const std::string hex = field.substr(word * 8, 8);
    const uint32_t value = static_cast<uint32_t>(std::strtoul(hex.c_str(), &end, 16));
    if (end != hex.c_str() + 8) return std::nullopt;
    std::memcpy(bytes.data() + word * 4, &value, 4);  // back to memory order
  }
  char* end = nullptr;
  const unsigned long port = std::strtoul(field.c_str() + colon + 1, &end, 16);
  if (end != field.c_str() + field.size() || port > 0xffff) return std::nullopt;
  if (!ipv6) return TcpEnd::V4({bytes[0], bytes[1], bytes[2], bytes[3]}, uint16_t(port));
  return TcpEnd::V6(bytes, static_cast<uint16_t>(port));
}

// The inode of the socket in `table` (/proc/<pid>/net/tcp or tcp6) whose local end is `local`
// and remote end `remote`; nullopt when there is none or the table cannot be read.
std::optional<uint64_t> FindSocket(const std::string& table, bool ipv6, const TcpEnd& local,
                                   const TcpEnd& remote) {
  std::ifstream in(table);
  std::string line;
  std::getline(in, line);  // the header
  while (std::getline(in, line)) {
    // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
    std::istringstream fields(line);
    std::string sl, local_field, remote_field, skip;
    uint64_t inode = 0;
    if (!(fields >> sl >> local_field >> remote_field)) continue;
    for (int i = 0; i < 6; ++i) fields >> skip;
    if (!(fields >> inode) || inode == 0) continue;
    const std::optional<TcpEnd> l = ParseProcEnd(local_field, ipv6);
    const std::optional<TcpEnd> r = ParseProcEnd(remote_field, ipv6);
    if (l && r && *l == local && *r == remote) return inode;
  }
  return std::nullopt;
}

// Where the socket of a live connection must be: in the TCP table of a process of the same
// network namespace. kNo when `proc` (/proc/<pid>) shares ours or is exiting (its namespaces are
// gone), kUnknown when it is in another one (the connection may be translated on its way) or that
// cannot be read.
Holder AbsentFromTable(const std::string& proc) {
  const std::optional<std::string> theirs = ReadProcLink(proc + "/ns/net");
  if (!theirs) return errno == ENOENT ? Holder::kNo : Holder::kUnknown;
  const std::optional<std::string> ours = ReadProcLink("/proc/self/ns/net");
  if (!ours) return Holder::kUnknown;
  return *theirs == *ours ? Holder::kNo : Holder::kUnknown;
}

}  // namespace

TcpEnd TcpEnd::V4(std::array<uint8_t, 4> bytes, uint16_t port) {
  TcpEnd e;
  std::memcpy(e.address.data(), bytes.data(), 4);
  e.port = port;
  return e;
}

TcpEnd TcpEnd::V6(const std::array<uint8_t, 16>& bytes, uint16_t port) {
  if (std::memcmp(bytes.data(), kV4MappedPrefix.data(), kV4MappedPrefix.size()) == 0) {
    return V4({bytes[12], bytes[13], bytes[14], bytes[15]}, port);
  }
  TcpEnd e;
  e.ipv6 = true;
  e.address = bytes;
  e.port = port;
  return e;
}

Holder HoldsConnection(uint32_t pid, const ControlConnection& connection) {
  if (pid == 0) return Holder::kNo;
  const std::string proc = "/proc/" + std::to_string(pid);
  if (access(proc.c_str(), F_OK) != 0) return Holder::kNo;
  // The client's socket: local end = the client's, remote = the server's. An IPv4 client of a
  // dual-stack server may sit in either table.
  std::optional<uint64_t> inode =
      FindSocket(proc + "/net/tcp", false, connection.client, connection.server);
  if (!inode) inode = FindSocket(proc + "/net/tcp6", true, connection.client, connection.server);
  if (!inode) return AbsentFromTable(proc);
  const std::string wanted = "socket:[" + std::to_string(*inode) + "]";
  const std::string fd_dir = proc + "/fd";
  DIR* dir = opendir(fd_dir.c_str());
  if (dir == nullptr) return errno == ENOENT ? Holder::kNo : Holder::kUnknown;
  Holder found = Holder::kNo;
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    const std::optional<std::string> target = ReadProcLink(fd_dir + "/" + entry->d_name);
    if (!target) {
      if (errno == EACCES || errno == EPERM) found = Holder::kUnknown;
      continue;
    }
    if (*target == wanted) {
      found = Holder::kYes;
      break;
    }
  }
  closedir(dir);
  return found;
}

}  // namespace kvault::transport
