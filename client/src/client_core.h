#pragma once
// ClientCore: what a Client holds. The current connection (replaced on reconnect), the session it
// authenticated, the UCX agent and the table of registered regions.
//
// Thread-safety: thread-safe. Lock order: conn_mu_ and regions_mu_ are never held together;
// neither is held while waiting on the network.

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "connection.h"
#include "kvault/client.h"
#include "kvault/transport/ucx/ucx_agent.h"

namespace kvault::client_internal {

// A registration and the agent it belongs to (declared first, so it is released last).
struct RegionRecord {
  std::shared_ptr<transport::UcxAgent> agent;
  transport::RegisteredRegion region;

  bool Contains(const void* p, size_t n) const { return n > 0 && region.memory.Contains(p, n); }
};

// A live connection and the session it authenticated.
struct Link {
  std::shared_ptr<Connection> conn;
  uint64_t session = 0;
};

class ClientCore {
 public:
  ClientCore(ClientConfig config, HostPort address, std::shared_ptr<transport::UcxAgent> agent);
  ~ClientCore();

  // The live connection, reconnecting when it is lost (no more often than reconnect_backoff,
  // by one caller at a time, within min(deadline, now + connect_timeout)). Unavailable otherwise.
  Result<Link> Acquire(Deadline deadline);

  // Registers a region in the table that Store and Load search.
  void Track(const std::shared_ptr<RegionRecord>& record);
  // The registered region that holds [p, p + n), or null.
  std::shared_ptr<RegionRecord> FindRegion(const void* p, size_t n);

  const ClientConfig& config() const { return config_; }
  transport::UcxAgent* agent() const { return agent_.get(); }
  std::shared_ptr<transport::UcxAgent> shared_agent() const { return agent_; }
  Deadline DeadlineOr(const std::optional<Deadline>& d) const {
    return d ? *d : Clock::now() + config_.request_timeout;
  }
  bool connected() const;
  uint64_t session_id() const;

 private:
  // TCP connect plus Hello/Auth.
  Result<Link> Open(Deadline deadline);

  const ClientConfig config_;
  const HostPort address_;
  const std::shared_ptr<transport::UcxAgent> agent_;  // null without a data plane

  mutable std::mutex conn_mu_;
  Link link_;
  bool connecting_ = false;
  Deadline next_attempt_{};
  Status last_failure_;

  std::mutex regions_mu_;
  std::vector<std::weak_ptr<RegionRecord>> regions_;

  friend class kvault::Client;
};

}  // namespace kvault::client_internal
