#pragma once
// Daemon: one running kvaultd assembled from its config (DESIGN.md §8): the tiers and the
// BlockStore under data_dir, the UCX transfer engine with the host arena registered once, the
// Service, the control plane, and the HTTP endpoint with metrics. main.cc owns the process
// concerns (arguments, signals, the ready line); tests can run a Daemon in-process.
//
// Thread-safety: Start, ReadyLine, Shutdown from one thread.

#include <memory>
#include <string>

#include "config/daemon_config.h"
#include "kvault/common/result.h"

namespace kvault::server {

class Daemon {
 public:
  // Opens the store (the nvme tier recovers what it holds), starts every listener and marks the
  // daemon ready. Errors name the part that failed (config, tenants, a tier, a listener).
  static Result<std::unique_ptr<Daemon>> Start(const DaemonConfig& config);
  ~Daemon();  // Shutdown() with no drain
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // "kvaultd ready control=HOST:PORT http=HOST:PORT tiers=host,nvme tenants=N data_dir=DIR tls=off"
  // An IPv6 HOST is bracketed ("control=[::1]:7400"), so HOST:PORT is what `kvault --server` and
  // ClientConfig::server take.
  std::string ReadyLine() const;

  // SIGTERM's path: not ready, stop accepting, let in-flight requests finish within
  // drain_timeout, close connections, stop the data plane, flush and close the store.
  // Returns true when nothing in flight had to be cut off. Idempotent.
  bool Shutdown(bool drain);

  struct Parts;

 private:
  explicit Daemon(std::unique_ptr<Parts> parts);
  std::unique_ptr<Parts> parts_;
};

}  // namespace kvault::server
