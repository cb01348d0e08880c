#pragma once
// The state ControlServer shares with its connections (control_server.cc, connection.h): the io
// loops and their threads, the acceptor, the counts behind the connection limits, and the closers
// Stop() calls. Private to server/src/control.
//
// Thread-safety: loops (loops_mu), unauthenticated (unauthenticated_mu) and closers (mu) are
// guarded; the counters are atomic; the rest is set by Start() before the accept thread runs.

// clang-format off
#include <utility>  // first: Boost 1.74 Asio under GCC 12 in C++20 mode (DESIGN.md §15)
// clang-format on

#include <algorithm>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "control/control_server.h"
#include "control/usable_cores.h"
#include "kvault/transport/messages.h"
#include "metrics/metrics.h"

namespace kvault::server {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

// An io thread and its event loop: one single-threaded io_context, so an event wakes the thread
// that owns the socket and its handler runs there. (A context shared by all threads handed
// completions from the thread in epoll_wait to idle ones: about 12 futex calls per ping.)
struct IoLoop {
  // Open connections on this loop. Declared before `io`, whose destruction may still destroy a
  // connection that decrements it.
  std::atomic<uint32_t> connections{0};
  asio::io_context io{1};
  std::thread thread;
};

struct ControlServer::Impl {
  Impl(const ControlServerOptions& o, Service& svc, Metrics* m)
      : options(o),
        max_body_before_auth(transport::MaxBodyBeforeAuth(o.limits)),
        kept_buffer_bytes(KeptBufferBytes(o.limits)),
        service(svc),
        metrics(m),
        acceptor(accept_loop) {}

  // The loop of a connection just accepted (the accept thread's call): a loop without
  // connections if there is one, else a new loop and thread while there are fewer than
  // options.threads, else the loop with the fewest connections. A request runs on its
  // connection's thread until it is answered, storage work and data-plane transfer included, so
  // a connection with a thread of its own never waits behind another's request. Counts the
  // connection on the loop. When no thread can be started, an existing loop is shared (warn);
  // nullptr when there is none at all.
  IoLoop* PickLoop();

  // Adds a loop and starts its thread; nullptr (warn) when either fails: an io_context needs an
  // epoll and an eventfd, a thread needs memory and a task slot. Caller holds loops_mu.
  IoLoop* StartLoop();

  // Runs `io` until it is stopped. Without busy polling that is io.run(): the thread sleeps in
  // epoll_wait whenever nothing is ready. With it, for up to options.busy_poll after its last
  // handler, and while polling pays (BusyPollPays, on the open connections of the whole server),
  // the thread polls instead (epoll_wait with a zero timeout, then the handlers that became
  // ready); otherwise it runs one handler at a time as io.run() would, sleeping when idle.
  void RunLoop(asio::io_context& io);

  // Stops the accept thread (so no loop is added any more), then every loop; joins them all and
  // destroys the loops, and with them any connection still held by a handler, while the rest of
  // the server (the closers' map, its mutex) is still alive.
  void StopLoops();

  // Counts a connection from `address` that has not authenticated yet; false (nothing counted)
  // when that address has options.max_unauthenticated_per_peer such connections already.
  bool AddUnauthenticated(const std::string& address);

  // Undoes one AddUnauthenticated: the connection authenticated or closed.
  void RemoveUnauthenticated(const std::string& address);

  // Counts the refusal and logs it (warn) with the peer and what was wrong.
  void Reject(RejectReason reason, std::string_view peer, std::string_view detail);

  ControlServerOptions options;
  // Longest frame body read before a connection authenticates (transport::MaxBodyBeforeAuth).
  const uint64_t max_body_before_auth;
  // A connection keeps its request and reply buffers from frame to frame up to this size: a full
  // batch (max_keys_per_batch entries of up to 64 bytes, a remote key) at least; the buffers of a
  // larger frame are freed once it is answered.
  static size_t KeptBufferBytes(const transport::ProtocolLimits& limits) {
    return std::max<size_t>(size_t{64} << 10, size_t{limits.max_keys_per_batch} * 64 +
                                                  limits.max_remote_key_bytes + 4096);
  }
  const size_t kept_buffer_bytes;
  Service& service;
  Metrics* metrics;
  // The io loops, added by PickLoop up to options.threads and never removed before StopLoops.
  std::mutex loops_mu;
  std::vector<std::unique_ptr<IoLoop>> loops;
  // The acceptor's own loop and thread: never blocked by a request that waits on the disk or the
  // data plane, so new connections are accepted while every io thread is busy.
  asio::io_context accept_loop{1};
  std::thread accept_thread;
  std::optional<asio::ssl::context> ssl;
  tcp::acceptor acceptor;
  uint16_t port = 0;
  std::atomic<uint32_t> connections{0};
  const uint32_t usable_cores = UsableCores();
  std::atomic<uint32_t> in_flight{0};
  std::atomic<bool> stopped{false};
  // Open connections not authenticated yet, by peer IP address (AddUnauthenticated); the accept
  // thread adds, io threads remove.
  std::mutex unauthenticated_mu;
  std::unordered_map<std::string, uint32_t> unauthenticated;
  // Closers of open connections, by connection number.
  std::mutex mu;
  std::unordered_map<uint64_t, std::function<void()>> closers;
  uint64_t next_connection = 0;
};

}  // namespace kvault::server
