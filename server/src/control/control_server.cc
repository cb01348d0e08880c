// ControlServer (control_server.h): Start, the accept loop, Drain and Stop. Connections:
// connection.h; the shared state and the io loops: control_server_impl.h.

// clang-format off
#include <utility>  // first: Boost 1.74 Asio under GCC 12 in C++20 mode (DESIGN.md §15)
// clang-format on

#include "control/control_server.h"

#include <unistd.h>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <cerrno>
#include <memory>
#include <string>
#include <thread>

#include "control/connection.h"
#include "control/control_server_impl.h"
#include "core/service.h"
#include "kvault/common/log.h"
#include "metrics/metrics.h"

namespace kvault::server {

bool BusyPollPays(uint32_t open_connections, uint32_t usable_cores) {
  return uint64_t{open_connections} * 2 <= usable_cores;
}

namespace {

using control_detail::Launch;
using control_detail::PeerAddress;
using control_detail::PeerName;

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

// After an accept that failed for want of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM:
// the pending connection stays queued and the next accept fails the same way at once) the loop
// waits this long before it tries again.
constexpr std::chrono::milliseconds kAcceptRetryDelay{50};

asio::awaitable<void> AcceptLoop(ControlServer::Impl& s) {
  bool failing = false;  // logged once per run of failed accepts
  for (;;) {
    error_code ec;
    // Accepted onto the accept loop, then handed to the loop PickLoop chooses at that moment.
    tcp::socket accepted =
        co_await s.acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (ec == asio::error::operation_aborted || !s.acceptor.is_open()) co_return;
      // A failure of that one connection (reset before it was accepted, say): on to the next.
      const int code = ec.category() == asio::error::get_system_category() ? ec.value() : 0;
      if (code != EMFILE && code != ENFILE && code != ENOBUFS && code != ENOMEM) continue;
      // Out of descriptors or memory: keep serving the connections we have; retry without
      // spinning.
      if (!failing) {
        KVAULT_LOG(LogLevel::kWarn, "control",
                   "accepting a connection failed (" + ec.message() + "); retrying every " +
                       std::to_string(kAcceptRetryDelay.count()) + " ms");
      }
      failing = true;
      asio::steady_timer pause(s.accept_loop, kAcceptRetryDelay);
      co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    if (failing) KVAULT_LOG(LogLevel::kInfo, "control", "accepting connections again");
    failing = false;
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
    if (ec)
      return Status::InvalidArgument("TLS certificate " + options.tls_cert_file + ": " +
                                     ec.message());
    impl->ssl->use_private_key_file(options.tls_key_file, asio::ssl::context::pem, ec);
    if (ec) return Status::InvalidArgument("TLS key " + options.tls_key_file + ": " + ec.message());
  }
  error_code ec;
  const std::string host = options.host == "localhost" ? "127.0.0.1" : options.host;
  const asio::ip::address address = asio::ip::make_address(host, ec);
  if (ec)
    return Status::InvalidArgument("control host '" + options.host + "' is not an IP address");
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
