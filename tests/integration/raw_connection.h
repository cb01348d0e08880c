#pragma once
// A plain TCP connection to kvaultd's control port that speaks frames byte by byte, for tests
// that must send what no well-behaved client would (garbage, truncated frames, a byte a second).

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "kvault/common/auth.h"
#include "kvault/transport/messages.h"
#include "kvault/transport/ucx/worker_proof.h"

namespace kvault::testing {

class RawConnection {
 public:
  // Connects to 127.0.0.1:`port`, from `source` (an IPv4 literal; another loopback address such as
  // 127.0.0.2 looks like another host to the daemon) when given.
  explicit RawConnection(uint16_t port, const char* source = nullptr) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (source != nullptr) {
      sockaddr_in from{};
      from.sin_family = AF_INET;
      if (::inet_pton(AF_INET, source, &from.sin_addr) != 1 ||
          ::bind(fd_, reinterpret_cast<sockaddr*>(&from), sizeof from) != 0) {
        ::close(fd_);
        fd_ = -1;
        return;
      }
    }
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
    int one = 1;
    if (fd_ >= 0) ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  ~RawConnection() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  bool connected() const { return fd_ >= 0; }
  int fd() const { return fd_; }

  bool Send(std::span<const uint8_t> bytes) {
    size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (n <= 0) return false;
      done += static_cast<size_t>(n);
    }
    return true;
  }

  template <typename M>
  bool SendMessage(const M& m, uint64_t request_id) {
    Result<std::vector<uint8_t>> frame = transport::EncodeFrame(m, request_id);
    return frame.ok() && Send(*frame);
  }

  // Reads exactly n bytes within `timeout`; nullopt on timeout or close.
  std::optional<std::vector<uint8_t>> ReadExactly(size_t n, std::chrono::milliseconds timeout) {
    std::vector<uint8_t> out(n);
    size_t done = 0;
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (done < n) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          until - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return std::nullopt;
      const ssize_t r = ::recv(fd_, out.data() + done, n - done, 0);
      if (r <= 0) return std::nullopt;
      done += static_cast<size_t>(r);
    }
    return out;
  }

  // The next whole message and its request id, or nullopt (timeout, close, undecodable).
  std::optional<std::pair<transport::Message, uint64_t>> ReadMessage(
      std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    auto head = ReadExactly(transport::kFrameHeaderBytes, timeout);
    if (!head) return std::nullopt;
    Result<transport::FrameHeader> h = transport::DecodeFrameHeader(*head);
    if (!h.ok()) return std::nullopt;
    std::vector<uint8_t> body;
    if (h->body_length > 0) {
      auto b = ReadExactly(h->body_length, timeout);
      if (!b) return std::nullopt;
      body = std::move(*b);
    }
    Result<transport::Message> m = transport::DecodeMessage(h->type, body);
    if (!m.ok()) return std::nullopt;
    return std::make_pair(std::move(*m), h->request_id);
  }

  // True when bytes (or the end of the stream) are waiting to be read right now. A failed poll
  // also counts as readable, so a check that nothing has arrived cannot pass on an error.
  bool Readable() const {
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, 0) != 0;
  }

  // True when the server closed the connection within `timeout` (EOF or reset), after any bytes
  // still in flight.
  bool ClosedWithin(std::chrono::milliseconds timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    uint8_t buf[4096];
    while (std::chrono::steady_clock::now() < until) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      if (::recv(fd_, buf, sizeof buf, 0) <= 0) return true;
    }
    return false;
  }

  // Hello + Auth for `tenant` with `token` (the empty token for the default tenant), announcing
  // `worker_address` (a sealed UCX worker address; empty: no data plane). Request ids 1 and 2.
  // With `worker` (whose address was announced, and which no other thread progresses), then
  // proves it: progresses it until the daemon's token arrives and returns it in ProveWorker
  // (request id 2). Without, the data plane stays unproven (ProveWorker below).
  // The HelloReply (hello_reply()), the Auth's proof (auth_proof()) and the last AuthReply
  // (auth_reply(), data_plane()) are kept, so that a test can check the server's proof and then
  // hand its memory over and send AttachMemory (below).
  bool Login(const std::string& tenant = "", const std::string& token = "",
             const std::vector<uint8_t>& worker_address = {},
             transport::UcxWorker* worker = nullptr) {
    std::unique_ptr<transport::WorkerProofMailbox> mailbox;
    if (worker != nullptr) {
      Result<std::unique_ptr<transport::WorkerProofMailbox>> attached =
          transport::WorkerProofMailbox::Attach(*worker);
      if (!attached.ok()) return false;
      mailbox = std::move(*attached);
    }
    transport::Hello hello;
    hello.tenant = tenant;
    hello.worker_address = worker_address;
    if (!SendMessage(hello, 1)) return false;
    auto reply = ReadMessage();
    if (!reply || !std::holds_alternative<transport::HelloReply>(reply->first)) return false;
    hello_reply_ = std::get<transport::HelloReply>(reply->first);
    transport::Auth auth;
    const AuthDigest proof = AuthProof(TokenHash(token), hello_reply_.nonce);
    std::copy(proof.begin(), proof.end(), auth.proof.begin());
    auth_proof_ = auth.proof;
    if (!SendMessage(auth, 2)) return false;
    reply = ReadMessage();
    if (!reply || !std::holds_alternative<transport::AuthReply>(reply->first)) return false;
    auth_reply_ = std::get<transport::AuthReply>(reply->first);
    const transport::AuthReply& ok = auth_reply_;
    if (ok.status != transport::WireStatus::kOk) return false;
    session_id_ = ok.session_id;
    data_plane_ = ok.data_plane;
    if (worker == nullptr) return true;
    std::optional<std::array<uint8_t, 32>> sent;
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!(sent = mailbox->Take(ok.session_id)) && std::chrono::steady_clock::now() < until) {
      worker->Progress();
    }
    return sent && ProveWorker(*sent) == transport::WireStatus::kOk;
  }

  // The session id of the last successful Auth; 0 before.
  uint64_t session_id() const { return session_id_; }
  // The data plane the last successful Auth gave the session.
  transport::DataPlane data_plane() const { return data_plane_; }
  // The HelloReply the last Login received (its memory_socket, nonce, limits); default before.
  const transport::HelloReply& hello_reply() const { return hello_reply_; }
  // The proof the last Login's Auth carried; all zero before.
  const transport::Bytes32& auth_proof() const { return auth_proof_; }
  // The AuthReply the last Login received, ok or not (its server_proof); default before.
  const transport::AuthReply& auth_reply() const { return auth_reply_; }

  // Sends AttachMemory with `handle` (request id 3); the AttachMemoryReply, or nullopt when none
  // came: an ErrorReply (kept in last_error()), another message, a timeout or a close.
  std::optional<transport::AttachMemoryReply> AttachMemory(const transport::Bytes32& handle) {
    last_error_.reset();
    if (!SendMessage(transport::AttachMemory{handle}, 3)) return std::nullopt;
    auto reply = ReadMessage();
    if (!reply) return std::nullopt;
    if (const auto* error = std::get_if<transport::ErrorReply>(&reply->first)) {
      last_error_ = *error;
      return std::nullopt;
    }
    if (!std::holds_alternative<transport::AttachMemoryReply>(reply->first)) return std::nullopt;
    return std::get<transport::AttachMemoryReply>(reply->first);
  }
  // The ErrorReply that answered the last AttachMemory, if one did.
  const std::optional<transport::ErrorReply>& last_error() const { return last_error_; }

  // Sends ProveWorker with `token` (request id 2); the reply's status, kInternal when none came.
  transport::WireStatus ProveWorker(const std::array<uint8_t, 32>& token) {
    if (!SendMessage(transport::ProveWorker{token}, 2)) return transport::WireStatus::kInternal;
    auto reply = ReadMessage();
    if (!reply || !std::holds_alternative<transport::ProveWorkerReply>(reply->first)) {
      return transport::WireStatus::kInternal;
    }
    return std::get<transport::ProveWorkerReply>(reply->first).status;
  }

  // A Ping round trip.
  bool Ping(uint64_t payload = 7) {
    if (!SendMessage(transport::Ping{payload}, 99)) return false;
    auto reply = ReadMessage();
    return reply && std::holds_alternative<transport::Pong>(reply->first) &&
           std::get<transport::Pong>(reply->first).payload == payload && reply->second == 99;
  }

 private:
  int fd_ = -1;
  uint64_t session_id_ = 0;
  transport::DataPlane data_plane_ = transport::DataPlane::kNone;
  transport::HelloReply hello_reply_;
  transport::Bytes32 auth_proof_{};
  transport::AuthReply auth_reply_;
  std::optional<transport::ErrorReply> last_error_;
};

// An HTTP GET against the daemon's http port: the whole response (status line, headers, body).
inline std::string HttpGet(uint16_t port, const std::string& path) {
  using namespace std::chrono_literals;
  RawConnection c(port);
  const std::string req = "GET " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  c.Send(std::span(reinterpret_cast<const uint8_t*>(req.data()), req.size()));
  std::string out;
  while (auto chunk = c.ReadExactly(1, 2s)) out.push_back(static_cast<char>((*chunk)[0]));
  return out;
}

// The value of `series` in the daemon's /metrics on http port `port`: a metric name with its
// labels as /metrics prints them (`kvault_connections`,
// `kvault_rejected_requests_total{reason="timeout"}`). nullopt when the scrape fails or lacks it.
inline std::optional<double> MetricValue(uint16_t port, const std::string& series) {
  const std::string text = HttpGet(port, "/metrics");
  const std::string needle = "\n" + series + " ";
  const size_t at = text.find(needle);
  if (at == std::string::npos) return std::nullopt;
  return std::strtod(text.c_str() + at + needle.size(), nullptr);
}

// Asks `done` every 20 ms until it answers true or `timeout` has passed; its last answer. For
// waiting on the daemon's state (a metric, a slot coming free) instead of sleeping a fixed time,
// which a loaded machine can outlast.
template <typename Predicate>
bool Eventually(Predicate done, std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

}  // namespace kvault::testing
