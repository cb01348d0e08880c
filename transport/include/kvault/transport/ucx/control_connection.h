#pragma once
// ControlConnection: the two ends of a client's TCP control connection as the server sees them.
// A remote key a client sends names its owner process; with shared memory the server attaches
// that process's segments. The ends let the server check that the process a key names is the one
// at the other end of the connection the key came on (HoldsConnection), so that an authenticated
// client cannot make the server read or write another process's memory with a key it did not
// make (UcxRemoteKey::Unpack, transport/ucx.md "Whose memory a key names").
//
// Thread-safety: a value type; HoldsConnection reads /proc and is safe from any thread.

#include <array>
#include <cstdint>

namespace kvault::transport {

// One end of a TCP connection: an IPv4 address (the first 4 bytes) or an IPv6 one, and a port.
// An IPv4-mapped IPv6 address (::ffff:a.b.c.d) counts as the IPv4 address.
struct TcpEnd {
  bool ipv6 = false;
  std::array<uint8_t, 16> address{};  // network byte order
  uint16_t port = 0;                  // host byte order

  // IPv4 (or IPv4-mapped) from its 4 bytes in network order.
  static TcpEnd V4(std::array<uint8_t, 4> bytes, uint16_t port);
  // IPv6 from its 16 bytes; an IPv4-mapped address becomes V4.
  static TcpEnd V6(const std::array<uint8_t, 16>& bytes, uint16_t port);
  bool operator==(const TcpEnd&) const = default;
};

struct ControlConnection {
  TcpEnd server;  // the server's end (its local endpoint)
  TcpEnd client;  // the client's end (the server's remote endpoint)
};

enum class Holder { kYes, kNo, kUnknown };

// Whether process `pid` (of this process's pid namespace) holds the client end of `connection`:
// its network namespace's TCP table (/proc/<pid>/net/tcp and tcp6) has a socket whose local end
// is connection.client and whose remote end is connection.server, and one of the process's
// descriptors is that socket. kNo when the process does not exist, is exiting, holds no such
// socket, or shares this process's network namespace and its table has no such connection (the
// connection is closed: a client that is going away); kUnknown when its descriptors or namespace
// cannot be read (permissions) or the connection is missing from the table of another network
// namespace (address translation on the way).
Holder HoldsConnection(uint32_t pid, const ControlConnection& connection);

}  // namespace kvault::transport
