#pragma once
// ClientConfig: how a libkvault Client reaches its daemon (DESIGN.md §9). Plain value type;
// thread-compatible.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "kvault/common/result.h"

namespace kvault {

// The longest timeout ClientConfig (and every front end: the C ABI, Python) accepts: one year.
// Keeps each deadline the client computes, and its arithmetic on it, far from the clock's
// overflow.
inline constexpr std::chrono::milliseconds kMaxClientTimeout{int64_t{365} * 24 * 3600 * 1000};

struct ClientConfig {
  // The daemon's control-plane address, "host:port": "127.0.0.1:7480", "kv-node-3:7480",
  // "[::1]:7480". Required.
  std::string server;
  // The tenant whose token the client proves (DESIGN.md §4, docs/authentication.md §6). Empty = the
  // daemon's default tenant.
  std::string tenant;
  // The tenant's token; it never crosses the wire (only an HMAC proof over the server's nonce
  // does). Empty for a single-tenant daemon that requires none.
  std::string token;
  // Bound on TCP connect plus the Hello/Auth handshake. A dead or unreachable daemon fails
  // Connect (and a reconnect) within this time. Default 2 s.
  std::chrono::milliseconds connect_timeout{2000};
  // Deadline of a request whose options name none: Lookup, Store, Load, Stats, ... A daemon that
  // does not answer in time turns the request into misses with an Unavailable status. Default 5 s.
  std::chrono::milliseconds request_timeout{5000};
  // How long a request may stay unanswered after its deadline passed before the connection is
  // declared dead and dropped (which fails every pending request and makes the next call
  // reconnect). Guards against a daemon that accepts bytes but never answers. 0 = never. Must be
  // 0 or at least 1 ms. Default 30 s.
  std::chrono::milliseconds stall_timeout{30000};
  // After the connection is lost, the least time between two reconnect attempts; calls made in
  // between fail at once with Unavailable (misses) instead of each paying connect_timeout.
  // Default 1 s.
  std::chrono::milliseconds reconnect_backoff{1000};
  // Create a UCX agent and announce its worker address, so the daemon can move block bytes.
  // False for tools that only look up, delete or read stats: then RegisterMemory, Store and
  // Load return Unsupported. Default true.
  bool data_plane = true;
  // UCX transports of the agent, in UCX_TLS syntax ("tcp", "posix,cma,tcp", "sm"). Empty: UCX's
  // choice. Must share one transport with the daemon's. Default empty.
  std::string ucx_transports;
  // Staging for memory the caller registered (Client::RegisterMemory): requests on such regions
  // are copied through an internal Client::AllocateMemory pool of this many bytes (allocated on
  // first use), because UCX moves registered memory only through software emulation that the
  // client's progress thread serves fragment by fragment (several times slower, and far slower
  // when cores are scarce; docs/client.md "Memory"). A request that does
  // not fit the pool's free space goes to the registered memory directly. A request stages at most
  // a quarter of the pool. 0 = off; at most 1 TiB. Default 64 MiB.
  uint64_t registered_staging_bytes = uint64_t{64} << 20;
  // Free text shown in the daemon's logs, at most 256 bytes. Default "libkvault".
  std::string client_name = "libkvault";

  // TLS on the control connection (the daemon's tls.cert_file / tls.key_file). Off: plain TCP.
  // On: the client handshakes within connect_timeout, verifies the daemon's certificate chain
  // and that it names tls_server_name, and fails Connect with Unavailable otherwise. A TLS client
  // cannot talk to a plain daemon nor a plain client to a TLS daemon. Default false.
  bool tls = false;
  // PEM bundle of the CAs the daemon's certificate must chain to. Empty: the system's default
  // verify paths. Only with tls.
  std::string tls_ca_file;
  // The name (DNS name or IP address) the daemon's certificate must match; also sent as SNI when
  // it is a DNS name. Empty: the host part of `server`. Only with tls.
  std::string tls_server_name;

  // OK, or InvalidArgument naming the first bad field: an unparsable `server`, a timeout <= 0
  // (stall_timeout may be 0), a negative backoff, a timeout or backoff over kMaxClientTimeout
  // (a year), a tenant or client name over 256 bytes,
  // registered_staging_bytes over 1 TiB, tls_ca_file or tls_server_name set without tls.
  Status Validate() const;
};

// "host:port" split; the host may be a name, an IPv4 address or a bracketed IPv6 address.
struct HostPort {
  std::string host;
  uint16_t port = 0;
};

// InvalidArgument for an empty host, a missing or non-numeric port, or a port outside 1..65535.
Result<HostPort> ParseHostPort(std::string_view text);

}  // namespace kvault
