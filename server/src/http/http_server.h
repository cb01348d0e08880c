#pragma once
// HttpServer: kvaultd's operator endpoint on its own port (DESIGN.md §8, §11), HTTP/1.1 over
// Boost.Beast on one io_context thread of its own, so a stalled control plane never stops a scrape
// or a probe, and the other way round.
//
//   GET /metrics   200, Prometheus text format 0.0.4 from the MetricsSource
//   GET /healthz   200 "ok" while the process runs (liveness)
//   GET /readyz    200 "ready" once SetReady(true), else 503 "not ready" (readiness)
//   other paths    404; known paths with a method other than GET or HEAD: 405 with Allow
//   bad requests   400 and the connection is closed
//
// Every read and write has a deadline (io_timeout; also the idle limit between keep-alive
// requests), request headers are capped at 8 KiB and bodies at 64 KiB, and at most
// max_connections are open at once, max_connections_per_peer of them from one IP address. A
// connection over a cap takes the place of the oldest connection that has waited for a request
// for idle_before_eviction (of the same address, for the address's cap), which is closed: idle
// keep-alive connections cannot lock probes out. When none has, the new connection is closed on
// accept. It serves no tenant data.
//
// Thread-safety: thread-safe. The MetricsSource runs on the server's thread, one call at a time.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "kvault/common/result.h"

namespace kvault::server {

struct HttpServerOptions {
  // An IP literal or "localhost". Default loopback.
  std::string host = "127.0.0.1";
  // 0 = any free port; port() tells which. Default 0.
  uint16_t port = 0;
  // Deadline of each read and write, and how long an idle connection is kept. Default 10 s.
  std::chrono::milliseconds io_timeout = std::chrono::seconds(10);
  // Open connections at most. Default 64 (scrapers and probes need a handful).
  uint32_t max_connections = 64;
  // Open connections from one IP address at most, so that one host holding idle connections
  // cannot take every slot and fail the probes of the others. Default 8.
  uint32_t max_connections_per_peer = 8;
  // How long a connection must have waited for a request before a connection over a cap may take
  // its place: long enough that a probe that just connected, or a request already on its way,
  // is not cut off. Default 1 s.
  std::chrono::milliseconds idle_before_eviction = std::chrono::seconds(1);
};

class HttpServer {
 public:
  // Produces the /metrics body (e.g. Metrics::RefreshFromStore then Metrics::Serialize).
  using MetricsSource = std::function<std::string()>;

  // Binds, listens and starts serving on a new thread; readiness starts false.
  // InvalidArgument for a host that is not an IP literal or "localhost"; Unavailable when the
  // address cannot be bound (in use, not local, no permission).
  static Result<std::unique_ptr<HttpServer>> Start(const HttpServerOptions& options,
                                                   MetricsSource metrics);
  ~HttpServer();  // Stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // The bound port (the kernel's choice when options.port was 0).
  uint16_t port() const;

  // What /readyz answers from now on.
  void SetReady(bool ready);
  bool ready() const;

  // Closes the listener and every connection and joins the thread. Idempotent.
  void Stop();

 private:
  struct Impl;
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvault::server
