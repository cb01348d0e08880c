#pragma once
// One control connection (Connection<Stream>, for a plain TCP socket or a TLS stream over one) and
// Launch, which starts its coroutine: reads a frame within its deadlines, has the Service handle
// it, writes the reply. Private to server/src/control; included by control_server.cc only.

// clang-format off
#include <utility>  // first: Boost 1.74 Asio under GCC 12 in C++20 mode (DESIGN.md §15)
// clang-format on

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "control/control_server_impl.h"
#include "core/service.h"
#include "kvault/common/log.h"
#include "kvault/transport/messages.h"

namespace kvault::server::control_detail {

inline tcp::socket& Lowest(tcp::socket& s) { return s; }
inline tcp::socket& Lowest(asio::ssl::stream<tcp::socket>& s) { return s.next_layer(); }

// "HOST:PORT" of the socket's peer, for log lines; "unknown peer" once it is gone.
inline std::string PeerName(const tcp::socket& socket) {
  error_code ec;
  const tcp::endpoint peer = socket.remote_endpoint(ec);
  if (ec) return "unknown peer";
  const std::string host = peer.address().to_string();
  return (peer.address().is_v6() ? "[" + host + "]" : host) + ":" + std::to_string(peer.port());
}

inline transport::TcpEnd EndOf(const tcp::endpoint& e) {
  if (e.address().is_v4()) return transport::TcpEnd::V4(e.address().to_v4().to_bytes(), e.port());
  return transport::TcpEnd::V6(e.address().to_v6().to_bytes(), e.port());
}

// The peer's IP address, the key of the per-address count of unauthenticated connections; empty
// once the socket is gone.
inline std::string PeerAddress(const tcp::socket& socket) {
  error_code ec;
  const tcp::endpoint peer = socket.remote_endpoint(ec);
  return ec ? std::string() : peer.address().to_string();
}

// Both ends of the socket, which the session's remote keys are checked against; nullopt once the
// socket is gone.
inline std::optional<transport::ControlConnection> ConnectionOf(const tcp::socket& socket) {
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
      server_.Reject(version ? RejectReason::kUnsupported
                     : header.status().code() == StatusCode::kOutOfRange ? RejectReason::kTooLarge
                                                                         : RejectReason::kMalformed,
                     peer_, "frame header: " + header.status().message() + "; connection closed");
      co_await SendError(transport::PeekRequestId(head).value_or(0),
                         version ? transport::WireStatus::kUnsupportedVersion
                                 : transport::ToWireStatus(header.status().code()),
                         header.status().message());
      co_return false;
    }
    if (!authenticated_ && header->body_length > server_.max_body_before_auth) {
      // Refused before a byte of it is buffered: no token, no room.
      const std::string why = std::string(transport::MessageTypeName(header->type)) + " of " +
                              std::to_string(header->body_length) +
                              " bytes before authentication, more than the " +
                              std::to_string(server_.max_body_before_auth) + " a Hello can take";
      server_.Reject(RejectReason::kTooLarge, peer_, why + "; connection closed");
      co_await SendError(header->request_id, transport::ToWireStatus(StatusCode::kOutOfRange), why);
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
    // A larger frame's buffers are not kept while the connection idles.
    if (body_.capacity() > server_.kept_buffer_bytes) std::vector<uint8_t>().swap(body_);
    if (out_.capacity() > server_.kept_buffer_bytes) std::vector<uint8_t>().swap(out_);
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

}  // namespace kvault::server::control_detail
