// kvaultd's HTTP endpoint over a real loopback socket on port 0: /metrics, /healthz, /readyz,
// 404, 405, 400, keep-alive, the read deadline, the connection cap, bind errors and Stop.
#include "http/http_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <string>

#include "metrics/metrics.h"

namespace kvault::server {
namespace {

// Generous bound on any single wait of the test client: the test fails rather than hangs.
constexpr int kClientTimeoutSeconds = 10;

// A blocking loopback client socket, from `source` (a 127.0.0.0/8 address, host byte order);
// -1 when the connection is refused.
int Connect(uint16_t port, uint32_t source = INADDR_LOOPBACK) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  timeval tv{kClientTimeoutSeconds, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in from{};
  from.sin_family = AF_INET;
  from.sin_addr.s_addr = htonl(source);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof from) != 0) {
    ::close(fd);
    return -1;
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool SendAll(int fd, const std::string& data) {
  size_t sent = 0;
  while (sent < data.size()) {
    const ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

// Everything the server sends until it closes the connection. `closed` says whether it did
// (false: the client's receive timeout passed first).
std::string ReadUntilClosed(int fd, bool* closed = nullptr) {
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (closed != nullptr) *closed = n == 0 || errno == ECONNRESET;
    return out;
  }
}

// Sends `request` on a new connection and returns the whole response (the request should ask the
// server to close, or be one the server closes after).
std::string Exchange(uint16_t port, const std::string& request) {
  const int fd = Connect(port);
  if (fd < 0) return "(connection refused)";
  SendAll(fd, request);
  std::string response = ReadUntilClosed(fd);
  ::close(fd);
  return response;
}

std::string Get(uint16_t port, const std::string& target, const std::string& method = "GET") {
  return Exchange(
      port, method + " " + target + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
}

int StatusOf(const std::string& response) {
  if (response.compare(0, 9, "HTTP/1.1 ") != 0 || response.size() < 12) return -1;
  return std::stoi(response.substr(9, 3));
}

std::string BodyOf(const std::string& response) {
  const size_t end = response.find("\r\n\r\n");
  return end == std::string::npos ? "" : response.substr(end + 4);
}

// GET /healthz until it is served (a freed slot is seen once the server has closed the
// connection), for up to 10 s (a bound against a hang, not a latency check); the last status
// (0: none).
int HealthzWithin10s(uint16_t port) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  int status = StatusOf(Get(port, "/healthz"));
  while (status != 200 && std::chrono::steady_clock::now() < until) {
    ::usleep(10'000);
    status = StatusOf(Get(port, "/healthz"));
  }
  return status;
}

std::unique_ptr<HttpServer> StartOrDie(HttpServerOptions options,
                                       HttpServer::MetricsSource metrics = nullptr) {
  auto server = HttpServer::Start(options, std::move(metrics));
  EXPECT_TRUE(server.ok()) << server.status().ToString();
  return server.ok() ? std::move(*server) : nullptr;
}

TEST(HttpServerTest, ServesMetricsHealthAndReadiness) {
  Metrics metrics;
  metrics.CountRejected(RejectReason::kMalformed);
  auto server = StartOrDie({}, [&metrics] { return metrics.Serialize(); });
  ASSERT_NE(server, nullptr);
  const uint16_t port = server->port();
  ASSERT_NE(port, 0);

  const std::string m = Get(port, "/metrics");
  EXPECT_EQ(StatusOf(m), 200) << m;
  EXPECT_NE(m.find("Content-Type: text/plain; version=0.0.4"), std::string::npos) << m;
  EXPECT_NE(BodyOf(m).find("kvault_request_duration_seconds_bucket{op=\"lookup\""),
            std::string::npos);
  EXPECT_NE(BodyOf(m).find("kvault_rejected_requests_total{reason=\"malformed\"} 1"),
            std::string::npos);
  EXPECT_EQ(StatusOf(Get(port, "/metrics?name[]=x")), 200);  // a query string is ignored

  const std::string health = Get(port, "/healthz");
  EXPECT_EQ(StatusOf(health), 200);
  EXPECT_EQ(BodyOf(health), "ok\n");

  EXPECT_FALSE(server->ready());
  EXPECT_EQ(StatusOf(Get(port, "/readyz")), 503);
  server->SetReady(true);
  EXPECT_EQ(StatusOf(Get(port, "/readyz")), 200);
  server->SetReady(false);
  EXPECT_EQ(StatusOf(Get(port, "/readyz")), 503);

  EXPECT_EQ(StatusOf(Get(port, "/")), 404);
  EXPECT_EQ(StatusOf(Get(port, "/metricsx")), 404);
  EXPECT_EQ(StatusOf(Get(port, "/nope", "POST")), 404);
  const std::string post = Get(port, "/metrics", "POST");
  EXPECT_EQ(StatusOf(post), 405);
  EXPECT_NE(post.find("Allow: GET, HEAD"), std::string::npos) << post;
  EXPECT_EQ(StatusOf(Get(port, "/healthz", "DELETE")), 405);

  const std::string head = Get(port, "/healthz", "HEAD");
  EXPECT_EQ(StatusOf(head), 200);
  EXPECT_EQ(BodyOf(head), "");
  EXPECT_NE(head.find("Content-Length: 3"), std::string::npos) << head;
}

TEST(HttpServerTest, MalformedRequestGets400AndAClose) {
  auto server = StartOrDie({});
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(StatusOf(Exchange(server->port(), "NOT HTTP AT ALL\r\n\r\n")), 400);
  const std::string huge_header =
      "GET /healthz HTTP/1.1\r\nX-Big: " + std::string(16 * 1024, 'a') + "\r\n\r\n";
  EXPECT_EQ(StatusOf(Exchange(server->port(), huge_header)), 400);
}

TEST(HttpServerTest, KeepAliveServesSeveralRequestsOnOneConnection) {
  auto server = StartOrDie({});
  ASSERT_NE(server, nullptr);
  const std::string response =
      Exchange(server->port(),
               "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
               "GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"
               "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  size_t answers = 0;
  for (size_t pos = 0; (pos = response.find("HTTP/1.1 ", pos)) != std::string::npos; ++pos) {
    ++answers;
  }
  EXPECT_EQ(answers, 3u) << response;
  EXPECT_NE(response.find("503 Service Unavailable"), std::string::npos);
}

TEST(HttpServerTest, SilentClientIsDroppedAfterTheDeadlineWhileOthersAreServed) {
  auto server = StartOrDie({.io_timeout = std::chrono::milliseconds(300)});
  ASSERT_NE(server, nullptr);
  const int idle = Connect(server->port());
  ASSERT_GE(idle, 0);
  // Sent nothing, and another client is served meanwhile.
  EXPECT_EQ(StatusOf(Get(server->port(), "/healthz")), 200);
  // The server closes the silent connection on its own (well before the client's own timeout).
  bool closed = false;
  EXPECT_EQ(ReadUntilClosed(idle, &closed), "");
  EXPECT_TRUE(closed) << "the silent connection was still open after " << kClientTimeoutSeconds
                      << " s";
  ::close(idle);
  // A client that stops halfway through its headers is dropped the same way.
  const int partial = Connect(server->port());
  ASSERT_GE(partial, 0);
  ASSERT_TRUE(SendAll(partial, "GET /healthz HTTP/1.1\r\nHost:"));
  EXPECT_EQ(StatusOf(Get(server->port(), "/healthz")), 200);
  closed = false;
  ReadUntilClosed(partial, &closed);
  EXPECT_TRUE(closed);
  ::close(partial);
}

// Sends a keep-alive GET /healthz on `fd` and reads its answer: the connection is then counted
// and waiting for its next request.
void ServeOnce(int fd) {
  ASSERT_TRUE(SendAll(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
  char reply[256];
  ASSERT_GT(::recv(fd, reply, sizeof reply, 0), 0);
}

// True when `fd` is still open and served: a request on it gets a 200 (and the connection closes).
bool StillServed(int fd) {
  if (!SendAll(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")) return false;
  return StatusOf(ReadUntilClosed(fd)) == 200;
}

// Every slot taken by connections waiting for a request: once one has waited idle_before_eviction,
// the next connection takes the place of the oldest, which is closed; the other stays served.
TEST(HttpServerTest, AConnectionOverTheCapTakesThePlaceOfTheOldestIdleOne) {
  auto server = StartOrDie({.max_connections = 2,
                            .max_connections_per_peer = 8,
                            .idle_before_eviction = std::chrono::milliseconds(100)});
  ASSERT_NE(server, nullptr);
  const int a = Connect(server->port());
  ASSERT_GE(a, 0);
  ASSERT_NO_FATAL_FAILURE(ServeOnce(a));
  const int b = Connect(server->port());
  ASSERT_GE(b, 0);
  ASSERT_NO_FATAL_FAILURE(ServeOnce(b));
  // A probe gets its answer although both slots are taken (refused until a has idled 100 ms)...
  EXPECT_EQ(HealthzWithin10s(server->port()), 200);
  // ...in a's place, the oldest: a is closed, b still served.
  bool closed = false;
  EXPECT_EQ(ReadUntilClosed(a, &closed), "");
  EXPECT_TRUE(closed);
  EXPECT_TRUE(StillServed(b));
  ::close(a);
  ::close(b);
}

// With no connection idle long enough to give up its place, one over the cap is accepted and
// closed at once, without an answer, and the open ones keep theirs.
TEST(HttpServerTest, ConnectionsOverTheCapAreClosedWhenNoneHasIdledLongEnough) {
  auto server = StartOrDie({.max_connections = 2,
                            .max_connections_per_peer = 8,
                            .idle_before_eviction = std::chrono::seconds(600)});
  ASSERT_NE(server, nullptr);
  const int a = Connect(server->port());
  ASSERT_GE(a, 0);
  ASSERT_NO_FATAL_FAILURE(ServeOnce(a));
  const int b = Connect(server->port());
  ASSERT_GE(b, 0);
  ASSERT_NO_FATAL_FAILURE(ServeOnce(b));
  EXPECT_EQ(Get(server->port(), "/healthz"), "");
  EXPECT_TRUE(StillServed(a));
  // Freeing a slot lets the next one in (positive control).
  EXPECT_EQ(HealthzWithin10s(server->port()), 200);
  EXPECT_TRUE(StillServed(b));
  ::close(a);
  ::close(b);
}

TEST(HttpServerTest, OneHostCannotTakeEverySlot) {
  auto server = StartOrDie({.max_connections = 8,
                            .max_connections_per_peer = 2,
                            .idle_before_eviction = std::chrono::milliseconds(100)});
  ASSERT_NE(server, nullptr);
  const int a = Connect(server->port());
  const int b = Connect(server->port());
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  ASSERT_NO_FATAL_FAILURE(ServeOnce(a));
  ASSERT_NO_FATAL_FAILURE(ServeOnce(b));
  // A third connection from the same address takes the place of that address's oldest idle one,
  // so the address never holds more than its cap...
  EXPECT_EQ(HealthzWithin10s(server->port()), 200);
  pollfd fds[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
  ASSERT_GE(::poll(fds, 2, 10'000), 1);
  const int gone = fds[0].revents != 0 ? a : b;
  const int kept = gone == a ? b : a;
  bool closed = false;
  EXPECT_EQ(ReadUntilClosed(gone, &closed), "");
  EXPECT_TRUE(closed);
  EXPECT_TRUE(StillServed(kept));
  // ...while a probe from another address is served (positive control).
  const int probe = Connect(server->port(), INADDR_LOOPBACK + 1);  // 127.0.0.2
  ASSERT_GE(probe, 0);
  ASSERT_TRUE(SendAll(probe, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  EXPECT_EQ(StatusOf(ReadUntilClosed(probe)), 200);
  ::close(probe);
  ::close(a);
  ::close(b);
}

TEST(HttpServerTest, BindErrorsAndStop) {
  auto bad_host = HttpServer::Start({.host = "example.com"}, nullptr);
  EXPECT_EQ(bad_host.status().code(), StatusCode::kInvalidArgument);

  auto server = StartOrDie({});
  ASSERT_NE(server, nullptr);
  const uint16_t port = server->port();
  auto clash = HttpServer::Start({.port = port}, nullptr);
  ASSERT_FALSE(clash.ok());
  EXPECT_EQ(clash.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(clash.status().message().find(std::to_string(port)), std::string::npos);

  auto local = StartOrDie({.host = "localhost"});
  ASSERT_NE(local, nullptr);
  EXPECT_EQ(StatusOf(Get(local->port(), "/healthz")), 200);

  const int open = Connect(port);  // an idle connection must not hold Stop up
  ASSERT_GE(open, 0);
  server->Stop();
  server->Stop();  // idempotent
  bool closed = false;
  ReadUntilClosed(open, &closed);
  EXPECT_TRUE(closed);
  ::close(open);
  EXPECT_EQ(Connect(port), -1);
}

TEST(HttpServerTest, AThrowingMetricsSourceGives500) {
  auto server = StartOrDie({}, []() -> std::string { throw std::runtime_error("boom"); });
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(StatusOf(Get(server->port(), "/metrics")), 500);
  EXPECT_EQ(StatusOf(Get(server->port(), "/healthz")), 200);
}

}  // namespace
}  // namespace kvault::server
