#pragma once
// Connection: one TCP control connection to kvaultd with pipelined requests (docs/protocol.md §1).
// An Asio io_context runs on the connection's own thread; it owns the socket, writes queued
// frames in order, reads frames and hands each reply to the request with the same id. Every
// request has a deadline timer; a request still unanswered stall_timeout after its deadline, a
// frame that cannot be decoded, a reply to an unknown id, or a closed socket fail the connection,
// which completes every pending request with Unavailable at once.
//
// Each request has two callbacks: `done` runs exactly once with the reply or the reason there is
// none (deadline, connection failure); `settled` runs exactly once, later or at the same time,
// when the connection stops tracking the request: its reply arrived, it was never sent, or the
// connection failed. Its argument says whether the daemon is known to be done with the request's
// memory: true for a reply or a request never sent; false when the connection failed with the
// request unanswered, since the daemon may still be moving its bytes over the data plane.
// Both run on the connection's thread, or on the caller's thread when the request fails before
// it is sent. They must not block.
//
// With TLS the socket is wrapped in an OpenSSL stream after the TCP connect; nothing else changes.
//
// Asio stays inside client/src: this header names no Asio type.
//
// Thread-safety: every public method is safe from any thread. The locks (the pending table's,
// limits_mu_, a SyncWaiter's) are never held together, and callbacks always run without them.
// A callback must not own the Connection: its destructor joins the thread callbacks run on.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "kvault/client_config.h"
#include "kvault/common/result.h"
#include "kvault/handles.h"
#include "kvault/transport/messages.h"
#include "kvault/transport/protocol_limits.h"
#include "kvault/transport/ucx/control_connection.h"

namespace kvault::client_internal {

// TLS of a connection (ClientConfig::tls): the CA bundle (empty: the system's default verify
// paths) and the name the daemon's certificate must match.
struct TlsOptions {
  std::string ca_file;
  std::string server_name;
};

class Connection {
 public:
  using DoneFn = std::function<void(Result<transport::Message>)>;
  using SettledFn = std::function<void(bool daemon_done)>;

  // Resolves and connects to `address` before `deadline`, with `tls` also handshakes and verifies
  // the daemon's certificate before it. Unavailable naming the address and the reason (refused,
  // unreachable, timed out, name not found, TLS handshake or certificate verification failed);
  // InvalidArgument for an unreadable CA file.
  static Result<std::shared_ptr<Connection>> Open(const HostPort& address, Deadline deadline,
                                                  std::chrono::milliseconds stall_timeout,
                                                  const std::optional<TlsOptions>& tls = {});
  // Fails pending requests with Unavailable ("client closed") and joins the thread.
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Sends `request` and arranges for its reply. An ErrorReply becomes its status; a reply of
  // another type than the request's fails the connection. Requests are written in call order.
  template <typename M>
  void Call(const M& request, Deadline deadline, DoneFn done, SettledFn settled = {}) {
    const uint64_t id = next_id_.fetch_add(1);
    std::vector<uint8_t> frame;
    Status encoded = transport::AppendFrame(request, id, limits(), &frame);
    if (!encoded.ok()) {
      done(encoded);
      if (settled) settled(true);
      return;
    }
    Submit(id, transport::ReplyTypeFor(M::kType), std::move(frame), deadline, std::move(done),
           std::move(settled));
  }

  // Call and wait for the result (never past `deadline` plus a few milliseconds).
  template <typename M>
  Result<transport::Message> CallSync(const M& request, Deadline deadline) {
    auto waiter = std::make_shared<SyncWaiter>();
    Call(request, deadline, [waiter](Result<transport::Message> r) { waiter->Set(std::move(r)); });
    return waiter->Wait(deadline);
  }

  // The limits requests are encoded and replies decoded with: the defaults until SetLimits.
  transport::ProtocolLimits limits() const;
  // Adopts the server's limits announced in HelloReply.
  void SetLimits(const transport::ProtocolLimits& limits);

  bool alive() const { return alive_.load(); }
  // OK while alive; afterwards why the connection failed.
  Status failure() const;
  // Fails the connection with `reason` (Unavailable) and closes the socket. Idempotent.
  void Fail(const Status& reason);

  const std::string& peer() const { return peer_; }
  // Whether the daemon is on this host: the connection's peer address is a loopback address or
  // the connection's own local address (set by Open).
  bool on_this_host() const { return on_this_host_; }
  // The TCP connection's ends as this side sees them (client = its local end, server = its
  // peer), set by Open; nullopt when the system would not say.
  const std::optional<transport::ControlConnection>& ends() const { return ends_; }

 private:
  class Impl;
  struct SyncWaiter {
    void Set(Result<transport::Message> r);
    Result<transport::Message> Wait(Deadline deadline);
    std::mutex mu;
    std::condition_variable cv;
    std::optional<Result<transport::Message>> result;
  };

  Connection(std::string peer, std::chrono::milliseconds stall_timeout);
  void Submit(uint64_t id, transport::MessageType reply_type, std::vector<uint8_t> frame,
              Deadline deadline, DoneFn done, SettledFn settled);

  const std::string peer_;
  bool on_this_host_ = false;
  std::optional<transport::ControlConnection> ends_;
  std::unique_ptr<Impl> impl_;
  std::atomic<uint64_t> next_id_{1};
  std::atomic<bool> alive_{true};
  mutable std::mutex limits_mu_;
  transport::ProtocolLimits limits_;

  friend class Impl;
};

}  // namespace kvault::client_internal
