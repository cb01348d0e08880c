#pragma once
// ControlServer: kvaultd's control plane (DESIGN.md §8): TCP (optionally TLS) on Boost.Asio, one
// coroutine per connection, every request decoded with the transport limits and answered by the
// Service.
//
//   - A frame must arrive whole within io_timeout of its first byte, and a reply must be written
//     within io_timeout; a connection may sit idle between requests for idle_timeout. A peer that
//     misses a deadline (e.g. sends one byte a second) is disconnected.
//   - A frame that does not decode (bad magic or version, unknown type, over a limit, malformed
//     body) gets an ErrorReply and the connection is closed; other connections are unaffected.
//   - A connection must authenticate (TLS handshake, Hello, a successful Auth) within
//     handshake_timeout of being accepted, whatever io_timeout and idle_timeout allow, or it is
//     closed (counted as rejected, reason timeout).
//   - At most max_connections are open, and at most max_unauthenticated_per_peer of those from one
//     IP address have not authenticated yet; more are accepted and closed at once (counted as
//     rejected, reason too_many_connections). So peers that connect and say nothing hold slots
//     for handshake_timeout at most, and one host cannot fill the table with them.
//   - Each connection gets an io thread of its own while there are fewer than `threads` (see
//     ControlServerOptions::threads): a request that waits on the disk or on a stalled
//     data-plane transfer holds up no other connection.
//   - Drain(): stop accepting, refuse new block requests (Service::SetDraining), wait up to a bound
//     for in-flight requests to finish (their replies written); past the bound, fail the
//     data-plane transfers still running (Service::AbortTransfers), so a request stalled on a
//     client that stopped answering ends at once rather than at its transfer deadline. Stop()
//     does the same for requests still running, then closes every connection and joins the
//     threads.
//
// Thread-safety: Start/Drain/Stop from one controlling thread; everything else is internal.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "kvault/common/result.h"
#include "kvault/transport/protocol_limits.h"

namespace kvault::server {

class Service;
class Metrics;

struct ControlServerOptions {
  std::string host = "127.0.0.1";  // IP literal or "localhost"
  uint16_t port = 0;               // 0: any free port (port() tells which)
  // The most io threads, each with its own event loop, started as connections arrive: each
  // connection gets a thread of its own while there are fewer than this many, then shares the
  // one with the fewest connections. A connection stays on its thread and its requests run there
  // until answered, so only connections sharing a thread ever wait on each other.
  uint32_t threads = 64;
  // After handling something, an io thread polls its event loop without sleeping for this long,
  // while the server has at most one open connection per two usable cores (BusyPollPays); 0 =
  // it always sleeps in epoll_wait when idle.
  std::chrono::microseconds busy_poll{0};
  uint32_t max_connections = 1024;
  std::chrono::milliseconds io_timeout{30'000};
  std::chrono::milliseconds idle_timeout{600'000};
  // From accept to a successful Auth. Short, because an unauthenticated connection holds a slot
  // of max_connections; long enough for a client's Hello and Auth round trips, and for the
  // TLS handshake when there is one.
  std::chrono::milliseconds handshake_timeout{5'000};
  // Connections from one IP address not authenticated yet. High enough for the clients of one
  // host that connect at the same moment; low enough that one host cannot take every slot.
  uint32_t max_unauthenticated_per_peer = 64;
  transport::ProtocolLimits limits;
  // PEM files for TLS; both empty = plain TCP.
  std::string tls_cert_file;
  std::string tls_key_file;
};

// Whether io threads may busy-poll with `open_connections` control connections on a machine
// with `usable_cores` cores this process may run on: each connection's client and the io thread
// serving it are taken to need a core each, so polling only pays while they all have one.
bool BusyPollPays(uint32_t open_connections, uint32_t usable_cores);

class ControlServer {
 public:
  // Binds, listens and starts the accept thread (io threads start as connections arrive).
  // InvalidArgument for a bad host or TLS files;
  // Unavailable when the address cannot be bound. `service` and `metrics` (may be null) must
  // outlive the server.
  static Result<std::unique_ptr<ControlServer>> Start(const ControlServerOptions& options,
                                                      Service& service, Metrics* metrics);
  ~ControlServer();  // Stop()
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  uint16_t port() const;
  bool tls() const;

  // Stops accepting and waits until no request is being handled or `bound` has passed; then fails
  // the data-plane transfers of the requests still running and waits up to a second for them to
  // end. Returns true when everything in flight finished within `bound`.
  bool Drain(std::chrono::milliseconds bound);

  // Closes every connection and joins the threads. Idempotent.
  void Stop();

  struct Impl;

 private:
  explicit ControlServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvault::server
