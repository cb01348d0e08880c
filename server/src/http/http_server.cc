// Boost 1.74 Asio uses std::exchange without including <utility> (GCC 12, C++20): include it
// first (DESIGN.md §15, known traps).
#include "http/http_server.h"

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <exception>
#include <map>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>

namespace kvault::server {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using ErrorCode = boost::system::error_code;

constexpr uint32_t kMaxHeaderBytes = 8 * 1024;
constexpr uint64_t kMaxBodyBytes = uint64_t{64} * 1024;
constexpr char kMetricsContentType[] = "text/plain; version=0.0.4; charset=utf-8";
// After a failed accept (out of descriptors), wait before the next so the loop cannot spin.
constexpr std::chrono::milliseconds kAcceptRetryDelay(50);

using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

Response TextResponse(const Request& req, http::status status, std::string body) {
  Response res(status, req.version());
  res.set(http::field::server, "kvaultd");
  res.set(http::field::content_type, "text/plain; charset=utf-8");
  res.set(http::field::cache_control, "no-store");
  res.body() = std::move(body);
  return res;
}

// A parse failure (malformed, oversized) as opposed to the peer closing or a deadline passing.
bool IsBadRequest(const ErrorCode& ec) {
  if (ec.category() != http::make_error_code(http::error::bad_method).category()) return false;
  return ec != http::error::end_of_stream && ec != http::error::partial_message;
}

}  // namespace

struct HttpServer::Impl {
  // One open connection (server thread only).
  struct Slot {
    std::string peer;
    beast::tcp_stream* stream = nullptr;
    bool counted = true;   // holds its place in `connections` and `per_peer`
    uint64_t waiting = 0;  // its key in `waiting` while it waits for a request; 0 otherwise
    std::chrono::steady_clock::time_point waiting_since{};
  };

  HttpServerOptions options;
  MetricsSource metrics;
  uint16_t port = 0;
  std::atomic<bool> ready{false};
  uint32_t connections = 0;  // touched only on the server thread
  // Open connections by peer IP address (server thread only): one host cannot take every slot
  // and starve the probes of others.
  std::unordered_map<std::string, uint32_t> per_peer;
  // Connections waiting for a request (idle keep-alive, or not done sending one), by when they
  // began to wait (server thread only). A connection over a cap takes the place of the oldest
  // one, so idle connections cannot lock probes out.
  std::map<uint64_t, Slot*> waiting;
  uint64_t next_wait = 1;
  std::thread thread;
  // Last member: destroyed first, so coroutine frames it still holds never outlive the rest.
  std::unique_ptr<asio::io_context> ioc = std::make_unique<asio::io_context>(1);

  Response Handle(const Request& req) const;
  // Gives up `slot`'s place in the counts (once).
  void Uncount(Slot& slot);
  // Closes the oldest connection that has waited for a request for idle_before_eviction (of
  // `peer`, when not null) and gives up its place; false when there is none.
  bool EvictWaiting(const std::string* peer);
  asio::awaitable<void> AcceptLoop(tcp::acceptor acceptor);
  asio::awaitable<void> Session(tcp::socket socket, std::string peer);
};

Response HttpServer::Impl::Handle(const Request& req) const {
  std::string_view target(req.target().data(), req.target().size());
  if (const size_t q = target.find('?'); q != std::string_view::npos) target = target.substr(0, q);
  const bool known = target == "/metrics" || target == "/healthz" || target == "/readyz";
  if (!known) return TextResponse(req, http::status::not_found, "not found\n");
  if (req.method() != http::verb::get && req.method() != http::verb::head) {
    Response res = TextResponse(req, http::status::method_not_allowed, "method not allowed\n");
    res.set(http::field::allow, "GET, HEAD");
    return res;
  }
  if (target == "/healthz") return TextResponse(req, http::status::ok, "ok\n");
  if (target == "/readyz") {
    return ready.load() ? TextResponse(req, http::status::ok, "ready\n")
                        : TextResponse(req, http::status::service_unavailable, "not ready\n");
  }
  std::string body;
  try {
    body = metrics ? metrics() : std::string();
  } catch (const std::exception&) {
    return TextResponse(req, http::status::internal_server_error, "metrics unavailable\n");
  }
  Response res = TextResponse(req, http::status::ok, std::move(body));
  res.set(http::field::content_type, kMetricsContentType);
  return res;
}

void HttpServer::Impl::Uncount(Slot& slot) {
  if (!slot.counted) return;
  slot.counted = false;
  --connections;
  auto it = per_peer.find(slot.peer);
  if (it != per_peer.end() && --it->second == 0) per_peer.erase(it);
}

bool HttpServer::Impl::EvictWaiting(const std::string* peer) {
  const auto idle_since = std::chrono::steady_clock::now() - options.idle_before_eviction;
  for (auto it = waiting.begin(); it != waiting.end(); ++it) {
    Slot& slot = *it->second;
    if (slot.waiting_since > idle_since) break;  // oldest first: the rest waited less
    if (peer != nullptr && slot.peer != *peer) continue;
    waiting.erase(it);
    slot.waiting = 0;
    Uncount(slot);
    ErrorCode ignored;
    slot.stream->socket().close(ignored);  // its read ends (aborted) and its session with it
    return true;
  }
  return false;
}

asio::awaitable<void> HttpServer::Impl::AcceptLoop(tcp::acceptor acceptor) {
  for (;;) {
    ErrorCode ec;
    tcp::socket socket =
        co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec == asio::error::operation_aborted) co_return;
    if (ec) {
      asio::steady_timer pause(acceptor.get_executor(), kAcceptRetryDelay);
      co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    const tcp::endpoint remote = socket.remote_endpoint(ec);
    std::string peer = ec ? std::string() : remote.address().to_string();
    // Over a cap, the oldest connection idle for idle_before_eviction (the peer's own, for the
    // peer's cap) gives up its place; with none, the new one is refused: scrapers retry, and a
    // flood cannot exhaust descriptors.
    const auto peer_count = per_peer.find(peer);
    const bool peer_full =
        peer_count != per_peer.end() && peer_count->second >= options.max_connections_per_peer;
    if ((peer_full && !EvictWaiting(&peer)) ||
        (connections >= options.max_connections && !EvictWaiting(nullptr))) {
      socket.close(ec);
      continue;
    }
    ++connections;  // here, not in Session, so the next accept already sees it
    ++per_peer[peer];
    asio::co_spawn(acceptor.get_executor(), Session(std::move(socket), std::move(peer)),
                   asio::detached);
  }
}

asio::awaitable<void> HttpServer::Impl::Session(tcp::socket socket, std::string peer) {
  beast::tcp_stream stream(std::move(socket));
  Slot slot{std::move(peer), &stream};
  struct Release {  // the counts AcceptLoop took for this connection, unless evicted
    Impl& server;
    Slot& slot;
    ~Release() {
      if (slot.waiting != 0) server.waiting.erase(slot.waiting);
      server.Uncount(slot);
    }
  } release{*this, slot};

  beast::flat_buffer buffer(kMaxHeaderBytes + kMaxBodyBytes);
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(kMaxHeaderBytes);
    parser.body_limit(kMaxBodyBytes);
    ErrorCode ec;
    stream.expires_after(options.io_timeout);
    slot.waiting = next_wait++;
    slot.waiting_since = std::chrono::steady_clock::now();
    waiting.emplace(slot.waiting, &slot);
    co_await http::async_read(stream, buffer, parser,
                              asio::redirect_error(asio::use_awaitable, ec));
    if (slot.waiting != 0) waiting.erase(std::exchange(slot.waiting, 0));
    if (!slot.counted) co_return;  // evicted while it waited: its socket is closed
    Response res;
    bool keep_alive = false;
    if (!ec) {
      const Request& req = parser.get();
      res = Handle(req);
      keep_alive = req.keep_alive();
      if (req.method() == http::verb::head) {
        res.content_length(res.body().size());
        res.body().clear();
      } else {
        res.prepare_payload();
      }
    } else if (IsBadRequest(ec)) {
      // A malformed or oversized request: say so, then close (the stream is out of sync).
      res = TextResponse(Request{}, http::status::bad_request, "bad request\n");
      res.prepare_payload();
    } else {
      break;  // closed by the peer, deadline passed, or a socket error
    }
    res.keep_alive(keep_alive);
    stream.expires_after(options.io_timeout);
    co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
    if (ec || !keep_alive) break;
  }
  ErrorCode ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  stream.socket().close(ignored);
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() { Stop(); }

Result<std::unique_ptr<HttpServer>> HttpServer::Start(const HttpServerOptions& options,
                                                      MetricsSource metrics) {
  ErrorCode ec;
  const asio::ip::address address = options.host == "localhost"
                                        ? asio::ip::address(asio::ip::address_v4::loopback())
                                        : asio::ip::make_address(options.host, ec);
  if (ec) {
    return Status::InvalidArgument("http: '" + options.host +
                                   "' is not an IP address or localhost");
  }
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->metrics = std::move(metrics);
  const tcp::endpoint endpoint(address, options.port);
  const std::string where =
      "http: cannot listen on " + options.host + " port " + std::to_string(options.port) + ": ";
  tcp::acceptor acceptor(*impl->ioc);
  if (acceptor.open(endpoint.protocol(), ec); ec) return Status::Unavailable(where + ec.message());
  // A restarted daemon must not wait out TIME_WAIT connections of its predecessor.
  acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (acceptor.bind(endpoint, ec); ec) return Status::Unavailable(where + ec.message());
  if (acceptor.listen(asio::socket_base::max_listen_connections, ec); ec) {
    return Status::Unavailable(where + ec.message());
  }
  impl->port = acceptor.local_endpoint(ec).port();
  if (ec) return Status::Unavailable(where + ec.message());

  Impl* raw = impl.get();
  asio::co_spawn(*raw->ioc, raw->AcceptLoop(std::move(acceptor)), asio::detached);
  raw->thread = std::thread([raw] { raw->ioc->run(); });
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

uint16_t HttpServer::port() const { return impl_->port; }

void HttpServer::SetReady(bool ready) { impl_->ready.store(ready); }

bool HttpServer::ready() const { return impl_->ready.load(); }

void HttpServer::Stop() {
  if (impl_->ioc == nullptr) return;
  impl_->ioc->stop();
  if (impl_->thread.joinable()) impl_->thread.join();
  // Destroying the context destroys the suspended coroutines, which close their sockets and the
  // listener.
  impl_->ioc.reset();
}

}  // namespace kvault::server
