#pragma once
// ClientCore: what a Client holds. The current connection (replaced on reconnect), the session it
// authenticated, the UCX agent, the table of registered regions and the channel their releases
// go on.
//
// Thread-safety: thread-safe. Lock order: conn_mu_ and regions_mu_ are never held together (no
// region record dies under regions_mu_); neither is held while waiting on the network.

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "connection.h"
#include "kvault/client.h"
#include "kvault/transport/local/memory_handover.h"
#include "kvault/transport/local/shared_memory_file.h"
#include "kvault/transport/ucx/ucx_agent.h"
#include "retired_staging.h"
#include "staging_pool.h"

namespace kvault::client_internal {

// Where a dying region's ReleaseMemory goes: the current connection, if one is up. Shared by the
// ClientCore and every region record, which may outlive the core (a MemoryRegion kept after its
// Client) and die on any thread, the connection's own reader thread included (a request's
// settled callback may hold the last reference).
//
// Holds no reference to the connection: the core attaches its live connection and detaches it
// before letting it go, so a region never becomes a connection's last owner (whose destructor
// would join the very thread that may be running it).
//
// Send calls into the connection without mu_: a send that fails there fails the connection,
// which completes its pending requests on the calling thread, and a settled callback among them
// may drop the last reference to another region, whose record calls Send again (re-entrantly,
// on the same thread). Instead a count of Sends in progress keeps the attached connection alive:
// Attach and Detach wait until no Send uses the connection they replace.
//
// Thread-safety: thread-safe. Lock order: ClientCore::conn_mu_, then mu_ (Attach, Detach). No
// lock of this class is held while calling the connection; Attach and Detach must not be called
// from a connection callback (they may wait for a Send that runs it).
class ReleaseChannel {
 public:
  explicit ReleaseChannel(std::chrono::milliseconds timeout) : timeout_(timeout) {}

  // The connection later releases go on; precondition: it stays alive until Detach returns.
  // Both wait until no Send is using the connection attached before. Attach first sends the
  // releases kept while none was attached (Send's `keep`). Its sends may fail `conn` and complete
  // its pending requests on this thread: only call it before anyone else uses `conn`.
  void Attach(Connection* conn);
  void Detach();
  // Forgets the releases kept so far: a new session, before it gets the live regions, holds none
  // of the freed ones.
  void DropKept();

  // Queues ReleaseMemory{remote_key} on the attached connection, after every request already
  // queued there and before any queued later; never waits for the reply (which is ignored).
  // Without a live connection it does nothing, since a new session starts with nothing cached by
  // the daemon; except with `keep` (a region handed over as a file, which a new session gets
  // again while it connects): then the next Attach sends it. Kept ones are as many as such
  // regions die while disconnected (each held a descriptor and its memory until then).
  void Send(const std::vector<uint8_t>& remote_key, bool keep = false);

 private:
  const std::chrono::milliseconds timeout_;
  std::mutex mu_;
  std::condition_variable idle_;           // signalled when sending_ drops to 0
  Connection* conn_ = nullptr;             // guarded by mu_
  size_t sending_ = 0;                     // guarded by mu_: Sends calling conn_ now
  std::deque<std::vector<uint8_t>> kept_;  // guarded by mu_: Send's `keep` while detached
};

// A registration and the agent it belongs to (declared first, so it is released last). Before
// the registration goes, the daemon is told to forget its remote key (ReleaseMemory), because a
// later registration may pack to the same bytes.
struct RegionRecord {
  RegionRecord(std::shared_ptr<transport::UcxAgent> agent, transport::RegisteredRegion region,
               std::shared_ptr<ReleaseChannel> channel,
               std::unique_ptr<transport::SharedMemoryFile> file = nullptr)
      : agent(std::move(agent)),
        file(std::move(file)),
        region(std::move(region)),
        channel(std::move(channel)) {}
  ~RegionRecord();
  RegionRecord(const RegionRecord&) = delete;
  RegionRecord& operator=(const RegionRecord&) = delete;

  bool Contains(const void* p, size_t n) const { return n > 0 && region.memory.Contains(p, n); }

  std::shared_ptr<transport::UcxAgent> agent;
  // The memory of an AllocateMemory region of a process-memory session, which the daemon copies
  // through (unmapped after the registration goes); null otherwise.
  std::unique_ptr<transport::SharedMemoryFile> file;
  transport::RegisteredRegion region;
  std::shared_ptr<ReleaseChannel> channel;
  // Requests on this region go through the staging pool (caller-registered memory).
  bool staged = false;
};

// A live connection and the session it authenticated.
struct Link {
  std::shared_ptr<Connection> conn;
  uint64_t session = 0;
  // How the daemon moves this session's block bytes: kProcessMemory copies straight from and to
  // any memory of this process (staging is then useless), kUcx through registered memory.
  transport::DataPlane data_plane = transport::DataPlane::kNone;
  // With kProcessMemory: where regions of this process's memory are handed over for this
  // connection (HandOverRegion).
  std::shared_ptr<const transport::HandOverTarget> memory_target;
};

class ClientCore {
 public:
  ClientCore(ClientConfig config, HostPort address, std::shared_ptr<transport::UcxAgent> agent);
  ~ClientCore();

  // The live connection, reconnecting when it is lost (no more often than reconnect_backoff,
  // by one caller at a time, within min(deadline, now + connect_timeout)). Unavailable otherwise.
  Result<Link> Acquire(Deadline deadline);

  // A record for a new registration of the agent, in the table that Store and Load search.
  // `staged`: requests on it go through staging() (memory the caller registered).
  std::shared_ptr<RegionRecord> Adopt(transport::RegisteredRegion region, bool staged = false);
  // The registered region that holds [p, p + n), or null.
  std::shared_ptr<RegionRecord> FindRegion(const void* p, size_t n);

  // For AllocateMemory while the session copies through process memory: `len` bytes of a fresh
  // SharedMemoryFile, registered, adopted, and handed to the daemon as a region (a refused
  // hand-over is logged at debug level: the daemon then copies through the memory file). Null
  // when the current session uses another plane (or none is up): the caller allocates through
  // UCX; also when no such file can be made or registered, unless for want of memory
  // (ResourceExhausted).
  Result<std::shared_ptr<RegionRecord>> AllocateShared(size_t len);

  const ClientConfig& config() const { return config_; }
  transport::UcxAgent* agent() const { return agent_.get(); }
  // Staging for requests on staged regions (config().registered_staging_bytes).
  StagingPool& staging() { return staging_; }
  // Client::RetireMemory.
  void Retire(MemoryRegion region);
  Deadline DeadlineOr(const std::optional<Deadline>& d) const {
    return d ? *d : Clock::now() + config_.request_timeout;
  }
  bool connected() const;
  uint64_t session_id() const;

 private:
  // TCP connect plus Hello/Auth.
  Result<Link> Open(Deadline deadline);
  // After a successful Auth: attaches this process's memory to the session (the process-memory
  // data plane) when the daemon proved it knows the token (AuthReply::server_proof), the token
  // is not empty, the daemon is on this host and names a memory socket: hands the memory over
  // there (transport/local/memory_handover.h, within kHandOverTimeout and half of what is left
  // until `deadline`) and sends AttachMemory.
  // False when any of that does not hold or is refused (the reason logged at debug level; the
  // session keeps the plane its AuthReply named); the status when the connection failed.
  // On true, *target says where regions go.
  Result<bool> AttachOwnMemory(Connection& conn, const transport::HelloReply& hr,
                               const transport::Auth& auth, const transport::AuthReply& ar,
                               Deadline deadline, std::optional<transport::HandOverTarget>* target);
  // Hands `record`'s file over as a region and redeems the handle on `conn` (AttachMemory). OK
  // or why not; the session goes on either way unless the connection failed.
  Status HandOverRegion(Connection& conn, const transport::HandOverTarget& target,
                        const RegionRecord& record, Deadline deadline);
  // Puts `record` in the region table.
  void Track(const std::shared_ptr<RegionRecord>& record);
  // Every live region with a file, for a fresh session.
  std::vector<std::shared_ptr<RegionRecord>> SharedRegions();
  static constexpr std::chrono::milliseconds kHandOverTimeout{2'000};

  const ClientConfig config_;
  const HostPort address_;
  const std::shared_ptr<transport::UcxAgent> agent_;  // null without a data plane

  mutable std::mutex conn_mu_;
  Link link_;
  bool connecting_ = false;
  Deadline next_attempt_{};
  Status last_failure_;

  // Attached to link_.conn while it is set.
  const std::shared_ptr<ReleaseChannel> release_channel_;

  // A registered range and its record: FindRegion locks only the record whose range matches, so
  // no other record can become its last owner, and die, under regions_mu_.
  struct TrackedRegion {
    uintptr_t begin = 0;
    size_t size = 0;
    std::weak_ptr<RegionRecord> record;
  };
  std::mutex regions_mu_;
  std::vector<TrackedRegion> regions_;

  StagingPool staging_;

  std::mutex retired_mu_;
  RetiredStaging retired_;  // guarded by retired_mu_

  friend class kvault::Client;
};

}  // namespace kvault::client_internal
