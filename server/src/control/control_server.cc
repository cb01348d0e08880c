// ControlServer (control_server.h): accept loop, per-connection coroutines, deadlines, drain.

// clang-format off
#include <utility>  // first: Boost 1.74 Asio under GCC 12 in C++20 mode (DESIGN.md §15)
// clang-format on

#include "control/control_server.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <cstring>
#include <exception>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "control/usable_cores.h"
#include "core/service.h"
#include "kvault/common/log.h"
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
      : options(o), service(svc), metrics(m), acceptor(accept_loop) {}

  // The loop of a connection just accepted (the accept thread's call): a loop without
  // connections if there is one, else a new loop and thread while there are fewer than
  // options.threads, else the loop with the fewest connections. A request runs on its
  // connection's thread until it is answered, storage work and data-plane transfer included, so
  // a connection with a thread of its own never waits behind another's request. Counts the
  // connection on the loop. When no thread can be started, an existing loop is shared (warn);
  // nullptr when there is none at all.
  IoLoop* PickLoop() {
    std::lock_guard lock(loops_mu);
    IoLoop* best = nullptr;
    for (const auto& loop : loops) {
      if (best == nullptr || loop->connections.load() < best->connections.load()) best = loop.get();
    }
    if ((best == nullptr || best->connections.load() > 0) &&
        loops.size() < std::max<uint32_t>(1, options.threads)) {
      if (IoLoop* fresh = StartLoop()) best = fresh;
    }
    if (best != nullptr) best->connections.fetch_add(1);
    return best;
  }

  // Adds a loop and starts its thread; nullptr (warn) when either fails: an io_context needs an
  // epoll and an eventfd, a thread needs memory and a task slot. Caller holds loops_mu.
  IoLoop* StartLoop() {
    try {
      IoLoop* loop = loops.emplace_back(std::make_unique<IoLoop>()).get();
      try {
        loop->thread = std::thread([this, &io = loop->io] {
          auto idle = asio::make_work_guard(io);  // a loop without connections keeps running
          RunLoop(io);
        });
      } catch (...) {
        loops.pop_back();
        throw;
      }
      return loop;
    } catch (const std::exception& e) {
      KVAULT_LOG(LogLevel::kWarn, "control",
                 std::string("cannot start an io thread (") + e.what() + "); " +
                     (loops.empty() ? std::string("no io thread to serve the connection")
                                    : "sharing one of the " + std::to_string(loops.size())));
      return nullptr;
    }
  }

  // Runs `io` until it is stopped. Without busy polling that is io.run(): the thread sleeps in
  // epoll_wait whenever nothing is ready. With it, for up to options.busy_poll after its last
  // handler, and while polling pays (BusyPollPays, on the open connections of the whole server),
  // the thread polls instead (epoll_wait with a zero timeout, then the handlers that became
  // ready); otherwise it runs one handler at a time as io.run() would, sleeping when idle.
  void RunLoop(asio::io_context& io) {
    if (options.busy_poll.count() == 0) {
      io.run();
      return;
    }
    Clock::time_point last_work = Clock::now();
    while (!io.stopped()) {
      const bool polling = Clock::now() - last_work < options.busy_poll &&
                           BusyPollPays(connections.load(std::memory_order_relaxed), usable_cores);
      if (polling ? io.poll() > 0 : io.run_one() > 0) last_work = Clock::now();
    }
  }

  // Stops the accept thread (so no loop is added any more), then every loop; joins them all and
  // destroys the loops, and with them any connection still held by a handler, while the rest of
  // the server (the closers' map, its mutex) is still alive.
  void StopLoops() {
    accept_loop.stop();
    if (accept_thread.joinable()) accept_thread.join();
    std::lock_guard lock(loops_mu);
    for (auto& loop : loops) loop->io.stop();
    for (auto& loop : loops) {
      if (loop->thread.joinable()) loop->thread.join();
    }
    loops.clear();
  }

  // Counts a connection from `address` that has not authenticated yet; false (nothing counted)
  // when that address has options.max_unauthenticated_per_peer such connections already.
  bool AddUnauthenticated(const std::string& address) {
    std::lock_guard lock(unauthenticated_mu);
    uint32_t& count = unauthenticated[address];
    if (count >= options.max_unauthenticated_per_peer) return false;
    ++count;
    return true;
  }

  // Undoes one AddUnauthenticated: the connection authenticated or closed.
  void RemoveUnauthenticated(const std::string& address) {
    std::lock_guard lock(unauthenticated_mu);
    auto it = unauthenticated.find(address);
    if (it == unauthenticated.end()) return;
    if (--it->second == 0) unauthenticated.erase(it);
  }

  // Counts the refusal and logs it (warn) with the peer and what was wrong.
  void Reject(RejectReason reason, std::string_view peer, std::string_view detail) {
    if (metrics != nullptr) metrics->CountRejected(reason);
    KVAULT_LOG(LogLevel::kWarn, "control",
               std::string(peer) + ": refused (" + std::string(RejectReasonName(reason)) +
                   "): " + std::string(detail));
  }

  ControlServerOptions options;
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

bool BusyPollPays(uint32_t open_connections, uint32_t usable_cores) {
  return uint64_t{open_connections} * 2 <= usable_cores;
}

namespace {

tcp::socket& Lowest(tcp::socket& s) { return s; }
tcp::socket& Lowest(asio::ssl::stream<tcp::socket>& s) { return s.next_layer(); }

// "HOST:PORT" of the socket's peer, for log lines; "unknown peer" once it is gone.
std::string PeerName(const tcp::socket& socket) {
  error_code ec;
  const tcp::endpoint peer = socket.remote_endpoint(ec);
  if (ec) return "unknown peer";
  const std::string host = peer.address().to_string();
  return (peer.address().is_v6() ? "[" + host + "]" : host) + ":" + std::to_string(peer.port());
}

transport::TcpEnd EndOf(const tcp::endpoint& e) {
  if (e.address().is_v4()) return transport::TcpEnd::V4(e.address().to_v4().to_bytes(), e.port());
  return transport::TcpEnd::V6(e.address().to_v6().to_bytes(), e.port());
}

// The peer's IP address, the key of the per-address count of unauthenticated connections; empty
// once the socket is gone.
std::string PeerAddress(const tcp::socket& socket) {
  error_code ec;
  const tcp::endpoint peer = socket.remote_endpoint(ec);
  return ec ? std::string() : peer.address().to_string();
}

// Both ends of the socket, which the session's remote keys are checked against; nullopt once the
// socket is gone.
std::optional<transport::ControlConnection> ConnectionOf(const tcp::socket& socket) {
  error_code local_ec, remote_ec;
  const tcp::endpoint local = socket.local_endpoint(local_ec);
  const tcp::endpoint remote = socket.remote_endpoint(remote_ec);
  if (local_ec || remote_ec) return std::nullopt;
  return transport::ControlConnection{EndOf(local), EndOf(remote)};
}

// One connection: its stream, its watchdog and its session. Everything runs on the
// connection's io thread (the one thread of its io_context). Until its session first
// authenticates it counts as unauthenticated for `address` (Impl::AddUnauthenticated, done by the
// accept loop) and every deadline is capped at the handshake deadline.
template <typename Stream>
class Connection : public std::enable_shared_from_this<Connection<Stream>> {
 public:
  Connection(ControlServer::Impl& server, IoLoop& loop, Stream stream, std::string address)
      : server_(server),
        loop_(loop),
        stream_(std::move(stream)),
        watchdog_(Lowest(stream_).get_executor()),
        handshake_deadline_(Clock::now() + server.options.handshake_timeout),
        address_(std::move(address)),
        session_(server.service.OpenSession()),
        peer_(PeerName(Lowest(stream_))) {
    session_->connection = ConnectionOf(Lowest(stream_));
    KVAULT_LOG(LogLevel::kDebug, "control",
               peer_ + ": connected (session " + std::to_string(session_->id) + ")");
  }

  ~Connection() {
    KVAULT_LOG(LogLevel::kDebug, "control", peer_ + ": disconnected");
    server_.service.CloseSession(*session_);
    if (!authenticated_) server_.RemoveUnauthenticated(address_);
    if (server_.metrics != nullptr) server_.metrics->ConnectionClosed();
    server_.connections.fetch_sub(1);
    loop_.connections.fetch_sub(1);
    std::lock_guard lock(server_.mu);
    server_.closers.erase(number_);
  }

  void Register() {
    std::weak_ptr<Connection> weak = this->shared_from_this();
    auto executor = Lowest(stream_).get_executor();
    std::lock_guard lock(server_.mu);
    number_ = server_.next_connection++;
    server_.closers[number_] = [weak, executor] {
      asio::post(executor, [weak] {
        if (auto self = weak.lock()) self->Close();
      });
    };
  }

  asio::awaitable<void> Run() {
    auto self = this->shared_from_this();
    try {
      if constexpr (!std::is_same_v<Stream, tcp::socket>) {
        Arm(server_.options.io_timeout);
        error_code ec;
        co_await stream_.async_handshake(asio::ssl::stream_base::server,
                                         asio::redirect_error(asio::use_awaitable, ec));
        Disarm();
        if (ec) {
          KVAULT_LOG(LogLevel::kWarn, "control",
                     peer_ + ": TLS handshake failed: " + ec.message() + "; connection closed");
          Close();
          co_return;
        }
      }
      while (co_await ServeOne()) {
      }
    } catch (const boost::system::system_error&) {
      // Closed by the peer, by a deadline or by Stop(): nothing more to do on this connection.
    }
    Close();
  }

  auto executor() { return Lowest(stream_).get_executor(); }

  void Close() {
    watchdog_.cancel();
    error_code ec;
    Lowest(stream_).shutdown(tcp::socket::shutdown_both, ec);
    Lowest(stream_).close(ec);
  }

 private:
  // Closes the connection unless the current step finishes within `d`, and, before the session
  // has authenticated, by the handshake deadline. The timer is only re-armed
  // when the new deadline is earlier than the pending expiry: when it fires early it re-arms at
  // the deadline then in force, so a busy connection costs no timer system call per request.
  void Arm(std::chrono::milliseconds d) {
    deadline_ = Clock::now() + d;
    if (!authenticated_) deadline_ = std::min(deadline_, handshake_deadline_);
    if (timer_armed_ && timer_expiry_ <= deadline_) return;
    StartTimer(deadline_);
  }

  // The current step has no deadline.
  void Disarm() { deadline_ = Clock::time_point::max(); }

  void StartTimer(Clock::time_point at) {
    timer_armed_ = true;
    timer_expiry_ = at;
    watchdog_.expires_at(at);  // a pending wait completes with operation_aborted
    std::weak_ptr<Connection> weak = this->shared_from_this();
    watchdog_.async_wait([weak](const error_code& ec) {
      if (ec) return;  // re-armed (a newer wait is pending) or closed
      if (auto self = weak.lock()) self->OnTimer();
    });
  }

  void OnTimer() {
    timer_armed_ = false;
    if (deadline_ == Clock::time_point::max()) return;
    if (Clock::now() < deadline_) {
      StartTimer(deadline_);
      return;
    }
    server_.Reject(RejectReason::kTimeout, peer_,
                   !authenticated_ && deadline_ == handshake_deadline_
                       ? "not authenticated within limits.handshake_timeout (" +
                             std::to_string(server_.options.handshake_timeout.count()) +
                             " ms); connection closed"
                       : "no complete request or reply within its deadline; connection closed");
    Close();
  }

  // The session authenticated for the first time: from now on the connection has the ordinary
  // deadlines and no longer counts against its address. (A later Hello restarts the session's
  // handshake, but the connection has proved a token once.)
  void NoteAuthenticated() {
    if (authenticated_ || session_->state != SessionState::kAuthenticated) return;
    authenticated_ = true;
    server_.RemoveUnauthenticated(address_);
  }

  // Fills `out` from the bytes read ahead, then from the stream. Small reads go through the
  // read-ahead buffer, so a frame that arrived in one segment costs one receive.
  asio::awaitable<void> ReadExactly(std::span<uint8_t> out) {
    size_t got = TakeReadAhead(out);
    while (got < out.size()) {
      const size_t rest = out.size() - got;
      if (rest >= read_ahead_.size()) {
        co_await asio::async_read(stream_, asio::buffer(out.data() + got, rest),
                                  asio::use_awaitable);
        co_return;
      }
      co_await FillReadAhead();
      got += TakeReadAhead(out.subspan(got));
    }
  }

  // One receive into the empty read-ahead buffer (at least one byte).
  asio::awaitable<void> FillReadAhead() {
    ahead_begin_ = 0;
    ahead_end_ = co_await stream_.async_read_some(asio::buffer(read_ahead_), asio::use_awaitable);
  }

  size_t TakeReadAhead(std::span<uint8_t> out) {
    const size_t n = std::min(out.size(), ahead_end_ - ahead_begin_);
    if (n > 0) std::memcpy(out.data(), read_ahead_.data() + ahead_begin_, n);
    ahead_begin_ += n;
    return n;
  }

  // Reads, handles and answers one frame. Returns false when the connection must close.
  asio::awaitable<bool> ServeOne() {
    const transport::ProtocolLimits& limits = server_.options.limits;
    std::array<uint8_t, transport::kFrameHeaderBytes> head{};
    if (ahead_begin_ == ahead_end_) {
      Arm(server_.options.idle_timeout);
      co_await FillReadAhead();
    }
    Arm(server_.options.io_timeout);  // the rest of the frame must follow promptly
    co_await ReadExactly(head);
    Result<transport::FrameHeader> header = transport::DecodeFrameHeader(head, limits);
    if (!header.ok()) {
      const bool version = header.status().code() == StatusCode::kUnsupported;
      server_.Reject(version                                           ? RejectReason::kUnsupported
                     : header.status().code() == StatusCode::kOutOfRange ? RejectReason::kTooLarge
                                                                         : RejectReason::kMalformed,
                     peer_, "frame header: " + header.status().message() + "; connection closed");
      co_await SendError(transport::PeekRequestId(head).value_or(0),
                         version ? transport::WireStatus::kUnsupportedVersion
                                 : transport::ToWireStatus(header.status().code()),
                         header.status().message());
      co_return false;
    }
    body_.resize(header->body_length);
    if (!body_.empty()) co_await ReadExactly(body_);
    Disarm();
    Result<transport::Message> request = transport::DecodeMessage(header->type, body_, limits);
    if (!request.ok()) {
      server_.Reject(request.status().code() == StatusCode::kOutOfRange ? RejectReason::kTooLarge
                                                                         : RejectReason::kMalformed,
                     peer_,
                     std::string(transport::MessageTypeName(header->type)) + ": " +
                         request.status().message() + "; connection closed");
      co_await SendError(header->request_id, transport::ToWireStatus(request.status().code()),
                         request.status().message());
      co_return false;
    }
    // In flight until its reply is written (or the write fails): Drain waits for that.
    server_.in_flight.fetch_add(1);
    struct InFlight {
      std::atomic<uint32_t>& count;
      ~InFlight() { count.fetch_sub(1); }
    } in_flight{server_.in_flight};
    transport::Message reply = server_.service.Handle(*session_, *request);
    NoteAuthenticated();
    out_.clear();
    Status encoded = transport::AppendMessageFrame(reply, header->request_id, limits, &out_);
    if (!encoded.ok()) {
      co_await SendError(header->request_id, transport::WireStatus::kInternal,
                         "reply does not fit the protocol limits: " + encoded.message());
      co_return false;
    }
    Arm(server_.options.io_timeout);
    co_await asio::async_write(stream_, asio::buffer(out_), asio::use_awaitable);
    Disarm();
    co_return true;
  }

  asio::awaitable<void> SendError(uint64_t request_id, transport::WireStatus status,
                                  std::string message) {
    transport::ErrorReply error;
    error.status = status == transport::WireStatus::kOk ? transport::WireStatus::kInternal : status;
    error.message = message.substr(0, server_.options.limits.max_string_bytes);
    out_.clear();
    if (!transport::AppendFrame(error, request_id, server_.options.limits, &out_).ok()) co_return;
    Arm(server_.options.io_timeout);
    error_code ec;
    co_await asio::async_write(stream_, asio::buffer(out_),
                               asio::redirect_error(asio::use_awaitable, ec));
    Disarm();
  }

  ControlServer::Impl& server_;
  IoLoop& loop_;  // the loop the connection runs on (its stream's executor)
  Stream stream_;
  asio::steady_timer watchdog_;
  Clock::time_point deadline_ = Clock::time_point::max();  // of the current step
  const Clock::time_point handshake_deadline_;             // accept + handshake_timeout
  bool authenticated_ = false;                             // the session has authenticated once
  const std::string address_;                              // the peer's IP address
  bool timer_armed_ = false;
  Clock::time_point timer_expiry_{};
  std::array<uint8_t, 16 * 1024> read_ahead_{};
  size_t ahead_begin_ = 0;
  size_t ahead_end_ = 0;
  std::unique_ptr<Session> session_;
  const std::string peer_;  // HOST:PORT, for log lines
  std::vector<uint8_t> body_;
  std::vector<uint8_t> out_;
  uint64_t number_ = 0;
};

template <typename Stream>
void Launch(ControlServer::Impl& s, IoLoop& loop, Stream stream, std::string address) {
  auto connection =
      std::make_shared<Connection<Stream>>(s, loop, std::move(stream), std::move(address));
  connection->Register();
  // The coroutine runs on the connection's io_context, as do its watchdog and Stop()'s close;
  // that context has one thread, so one connection's steps never run concurrently.
  asio::co_spawn(
      connection->executor(),
      [connection]() -> asio::awaitable<void> { co_await connection->Run(); }, asio::detached);
}

// Moves the open descriptor of `from` into `to` (a socket of another io_context). On failure the
// descriptor stays with `from` or is closed; `to` stays closed.
error_code HandOver(tcp::socket& from, tcp::socket& to) {
  error_code ec;
  const tcp::endpoint local = from.local_endpoint(ec);
  if (ec) return ec;
  const tcp::socket::native_handle_type fd = from.release(ec);
  if (ec) return ec;
  to.assign(local.protocol(), fd, ec);
  if (ec) ::close(fd);
  return ec;
}

asio::awaitable<void> AcceptLoop(ControlServer::Impl& s) {
  for (;;) {
    error_code ec;
    // Accepted onto the accept loop, then handed to the loop PickLoop chooses at that moment.
    tcp::socket accepted =
        co_await s.acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (ec == asio::error::operation_aborted || !s.acceptor.is_open()) co_return;
      continue;  // e.g. EMFILE: keep serving the connections we have
    }
    if (s.stopped.load()) co_return;
    if (s.connections.load() >= s.options.max_connections) {
      s.Reject(RejectReason::kTooManyConnections, PeerName(accepted),
               "limits.max_connections (" + std::to_string(s.options.max_connections) +
                   ") reached; connection closed");
      accepted.close(ec);
      continue;
    }
    // Until it authenticates, the connection counts against its address (the Connection takes
    // the count over once launched).
    std::string address = PeerAddress(accepted);
    if (!s.AddUnauthenticated(address)) {
      s.Reject(RejectReason::kTooManyConnections, PeerName(accepted),
               "limits.max_unauthenticated_per_peer (" +
                   std::to_string(s.options.max_unauthenticated_per_peer) +
                   ") connections from this address have not authenticated yet; connection closed");
      accepted.close(ec);
      continue;
    }
    accepted.set_option(tcp::no_delay(true), ec);
    IoLoop* loop = s.PickLoop();
    if (loop == nullptr) {
      s.RemoveUnauthenticated(address);
      accepted.close(ec);
      continue;
    }
    tcp::socket socket(loop->io);
    ec = HandOver(accepted, socket);
    if (ec) {
      loop->connections.fetch_sub(1);
      s.RemoveUnauthenticated(address);
      KVAULT_LOG(LogLevel::kWarn, "control",
                 "cannot hand an accepted connection to its io thread: " + ec.message());
      accepted.close(ec);
      continue;
    }
    s.connections.fetch_add(1);
    if (s.metrics != nullptr) s.metrics->ConnectionOpened();
    if (s.ssl) {
      Launch(s, *loop, asio::ssl::stream<tcp::socket>(std::move(socket), *s.ssl),
             std::move(address));
    } else {
      Launch(s, *loop, std::move(socket), std::move(address));
    }
  }
}

// Cuts the data-plane transfers of the requests still in flight (Service::AbortTransfers), so that
// those waiting on a stalled client end now instead of at their transfer deadline, and waits a
// moment for them to be answered. A request waiting on something else (the disk) is not cut.
// Waits until no request is in flight or `bound` has passed; true when none is.
bool WaitForInFlight(ControlServer::Impl& s, std::chrono::milliseconds bound) {
  const auto until = Clock::now() + bound;
  while (s.in_flight.load() > 0 && Clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return s.in_flight.load() == 0;
}

void AbortInFlight(ControlServer::Impl& s) {
  s.service.AbortTransfers();
  (void)WaitForInFlight(s, std::chrono::seconds(1));
}

}  // namespace

Result<std::unique_ptr<ControlServer>> ControlServer::Start(const ControlServerOptions& options,
                                                            Service& service, Metrics* metrics) {
  auto impl = std::make_unique<Impl>(options, service, metrics);
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return Status::InvalidArgument("control plane TLS needs both a certificate and a key file");
  }
  if (!options.tls_cert_file.empty()) {
    impl->ssl.emplace(asio::ssl::context::tls_server);
    error_code ec;
    impl->ssl->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                               asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                               asio::ssl::context::no_tlsv1_1,
                           ec);
    impl->ssl->use_certificate_chain_file(options.tls_cert_file, ec);
    if (ec) return Status::InvalidArgument("TLS certificate " + options.tls_cert_file + ": " + ec.message());
    impl->ssl->use_private_key_file(options.tls_key_file, asio::ssl::context::pem, ec);
    if (ec) return Status::InvalidArgument("TLS key " + options.tls_key_file + ": " + ec.message());
  }
  error_code ec;
  const std::string host = options.host == "localhost" ? "127.0.0.1" : options.host;
  const asio::ip::address address = asio::ip::make_address(host, ec);
  if (ec) return Status::InvalidArgument("control host '" + options.host + "' is not an IP address");
  const tcp::endpoint endpoint(address, options.port);
  impl->acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(endpoint, ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return Status::Unavailable("control plane cannot listen on " + options.host + ":" +
                               std::to_string(options.port) + ": " + ec.message());
  }
  impl->port = impl->acceptor.local_endpoint().port();
  Impl& s = *impl;
  asio::co_spawn(s.accept_loop, AcceptLoop(s), asio::detached);
  s.accept_thread = std::thread([&io = s.accept_loop] { io.run(); });
  return std::unique_ptr<ControlServer>(new ControlServer(std::move(impl)));
}

ControlServer::ControlServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ControlServer::~ControlServer() { Stop(); }

uint16_t ControlServer::port() const { return impl_->port; }

bool ControlServer::tls() const { return impl_->ssl.has_value(); }

bool ControlServer::Drain(std::chrono::milliseconds bound) {
  Impl& s = *impl_;
  asio::post(s.accept_loop, [&s] {
    error_code ec;
    s.acceptor.close(ec);
  });
  s.service.SetDraining(true);
  if (WaitForInFlight(s, bound)) return true;
  AbortInFlight(s);
  return false;
}

void ControlServer::Stop() {
  Impl& s = *impl_;
  if (s.stopped.exchange(true)) return;
  // A request still running (no Drain, or one past its bound) would hold its io thread, and so
  // the join below, until its transfer deadline.
  if (s.in_flight.load() > 0) AbortInFlight(s);
  asio::post(s.accept_loop, [&s] {
    error_code ec;
    s.acceptor.close(ec);
  });
  {
    std::lock_guard lock(s.mu);
    for (auto& [number, close] : s.closers) close();
  }
  // Let the connections unwind (their coroutines end once their sockets are closed), then stop.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (s.connections.load() > 0 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  s.StopLoops();
}

}  // namespace kvault::server
