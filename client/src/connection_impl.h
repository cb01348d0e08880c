#pragma once
// Connection::Impl (connection.h): the Asio side of the client's control plane. The io thread
// owns the socket's reads, the single deadline timer and queued writes; callers register requests
// and, without TLS and with nothing queued, send their frames themselves. connection.cc holds the
// Connection methods, connection_setup.cc the TCP connect and the TLS handshake.
// Internal to client/src.

// clang-format off
#include <utility>  // before any Asio header: Boost 1.74 Asio under GCC 12, C++20 (DESIGN.md §15)
// clang-format on

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <cstring>
#include <deque>
#include <map>
#include <optional>
#include <span>
#include <thread>
#include <unordered_map>
#include <vector>

#include "connection.h"
#include "kvault/transport/frame_reader.h"

namespace kvault::client_internal {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;

// Asio's timers cannot take time_point::max(); a year is "never" for a request.
inline Deadline Clamp(Deadline d) {
  const Deadline far = Clock::now() + std::chrono::hours(24 * 365);
  return std::min(d, far);
}

inline long long MillisUntil(Deadline d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d - Clock::now()).count();
}

// Frames may be as large as the ceiling: the server announces its own limits, and the reader only
// grows a body as its bytes arrive, so a lying header costs nothing.
inline transport::ProtocolLimits FrameLimits() {
  transport::ProtocolLimits l;
  l.max_body_bytes = transport::kCeilingBodyBytes;
  return l;
}

class Connection::Impl {
 public:
  struct Pending {
    transport::MessageType reply_type{};
    DoneFn done;  // emptied once called
    SettledFn settled;
    // Its entry in deadlines_ (none once its deadline and stall bound have both passed).
    std::optional<std::multimap<Deadline, uint64_t>::iterator> due;
    bool overdue = false;  // its deadline passed: done has run, the reply is still awaited
  };

  Impl(Connection* owner, std::chrono::milliseconds stall_timeout)
      : owner_(owner),
        stall_timeout_(stall_timeout),
        work_(asio::make_work_guard(ioc_)),
        socket_(ioc_),
        deadline_timer_(ioc_),
        reader_(FrameLimits()),
        thread_([this] { ioc_.run(); }) {}

  ~Impl() {
    FailNow(Status::Unavailable("client closed"));
    work_.reset();
    ioc_.stop();
    if (thread_.joinable()) thread_.join();
  }

  Status Connect(const HostPort& address, Deadline deadline, const std::optional<TlsOptions>& tls);
  // The socket's descriptor, for address queries after Connect.
  int native_handle() { return socket_.native_handle(); }

  void Submit(uint64_t id, transport::MessageType reply_type, std::vector<uint8_t> frame,
              Deadline deadline, DoneFn done, SettledFn settled) {
    deadline = Clamp(deadline);
    Status failed;
    bool arm = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (failed_) {
        failed = failure_;
      } else {
        auto due = deadlines_.emplace(deadline, id);
        pending_.emplace(id, Pending{reply_type, std::move(done), std::move(settled), due});
        if (deadline < timer_at_) {
          timer_at_ = deadline;
          arm = true;
        }
      }
    }
    if (!failed.ok()) {
      if (settled) settled(true);  // never sent
      if (done) done(failed);
      return;
    }
    if (arm) asio::post(ioc_, [this] { ArmTimer(); });
    Write(std::move(frame));
  }

  // Any thread. Completes every pending request with `reason` and closes the socket.
  void FailNow(const Status& reason) {
    std::unordered_map<uint64_t, Pending> taken;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (failed_) return;
      failed_ = true;
      failure_ = reason;
      taken.swap(pending_);
      deadlines_.clear();
      timer_at_ = Deadline::max();
    }
    owner_->alive_.store(false);
    {
      // Before any request is settled: no caller may send a frame after this point (a request
      // registered just before the failure must not reach the daemon once reported settled).
      // shutdown() stops the socket without freeing its descriptor; the io thread closes it.
      std::lock_guard<std::mutex> lock(write_mu_);
      closed_ = true;
      if (connected_ && socket_.is_open()) ::shutdown(socket_.native_handle(), SHUT_RDWR);
    }
    asio::post(ioc_, [this] {
      std::lock_guard<std::mutex> lock(write_mu_);
      error_code ec;
      socket_.close(ec);
    });
    // Unanswered: the daemon may still be working on them (SettledFn's argument).
    for (auto& [id, p] : taken) Complete(p, reason, false);
  }

  Status failure() const {
    std::lock_guard<std::mutex> lock(mu_);
    return failure_;
  }

  // After a successful Connect: reads start, and the socket may be shut down from any thread.
  void StartReading() {
    {
      std::lock_guard<std::mutex> lock(write_mu_);
      connected_ = true;
    }
    asio::post(ioc_, [this] { ReadMore(); });
  }

 private:
  // Settled first: once a waiter sees the request done, a reply has already made its memory the
  // caller's again (handles.h: done and settled coincide; a lost connection settles it too, with
  // `daemon_done` false: SettledFn). A done callback that still writes the caller's memory (a
  // staged load's copy-out) must keep its operation unsettled itself (OpState::PartCopiedOut).
  static void Complete(Pending& p, Result<transport::Message> result, bool daemon_done) {
    if (p.settled) std::exchange(p.settled, nullptr)(daemon_done);
    if (p.done) std::exchange(p.done, nullptr)(std::move(result));
  }

  Status Lost(std::string_view what) const {
    return Status::Unavailable("connection to kvaultd at " + owner_->peer_ +
                               " lost: " + std::string(what));
  }

  static std::string RequestName(transport::MessageType reply_type) {
    return std::string(transport::MessageTypeName(
        static_cast<transport::MessageType>(static_cast<uint16_t>(reply_type) & 0x7FFF)));
  }

  // io thread: one timer serves every request. It is set to the earliest deadline when a request
  // brings an earlier one, and otherwise left alone: when it fires it completes the requests that
  // are due and re-arms at the next deadline, so a request costs no timer system call.
  void ArmTimer() {
    Deadline at;
    {
      std::lock_guard<std::mutex> lock(mu_);
      at = timer_at_;
    }
    if (at == Deadline::max() || (timer_set_ && timer_set_at_ == at)) return;
    timer_set_ = true;
    timer_set_at_ = at;
    deadline_timer_.expires_at(at);  // a pending wait completes with operation_aborted
    deadline_timer_.async_wait([this](const error_code& ec) {
      if (!ec) OnTimer();
    });
  }

  // io thread. A request past its deadline completes with Unavailable; its reply is still expected
  // (it settles the request). One still unanswered stall_timeout later means a stuck daemon: the
  // connection is dropped so later calls reconnect instead of queueing behind it.
  void OnTimer() {
    timer_set_ = false;
    const Deadline now = Clock::now();
    std::vector<std::pair<DoneFn, std::string>> expired;
    std::string stalled;
    {
      std::lock_guard<std::mutex> lock(mu_);
      while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
        const uint64_t id = deadlines_.begin()->second;
        deadlines_.erase(deadlines_.begin());
        Pending& p = pending_.at(id);
        p.due.reset();
        if (p.overdue) {
          stalled = RequestName(p.reply_type);
          break;
        }
        p.overdue = true;
        expired.emplace_back(std::exchange(p.done, nullptr), RequestName(p.reply_type));
        if (stall_timeout_.count() > 0) p.due = deadlines_.emplace(now + stall_timeout_, id);
      }
      timer_at_ = deadlines_.empty() ? Deadline::max() : deadlines_.begin()->first;
    }
    for (auto& [done, request] : expired) {
      if (done) {
        done(Status::Unavailable(request + ": deadline exceeded: no reply from kvaultd at " +
                                 owner_->peer_ + " in time"));
      }
    }
    if (!stalled.empty()) {
      FailNow(Lost("no reply to a " + stalled + " request " +
                   std::to_string(stall_timeout_.count()) + " ms after its deadline"));
      return;
    }
    ArmTimer();
  }

  // Any thread. Frames go out in call order. Without TLS and with nothing queued the caller sends
  // the frame itself (no hop to the io thread); what the socket does not take at once, and every
  // frame while the io thread is writing, is queued for the io thread.
  void Write(std::vector<uint8_t> frame) {
    bool kick = false;
    Status failed;
    {
      std::lock_guard<std::mutex> lock(write_mu_);
      if (closed_) return;  // FailNow has completed (or will complete) the request
      if (!tls_ && !writing_ && writes_.empty()) {
        const ssize_t n = ::send(socket_.native_handle(), frame.data(), frame.size(),
                                 MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n == static_cast<ssize_t>(frame.size())) return;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
          failed = Lost(std::string("write failed: ") + std::strerror(errno));
        } else if (n > 0) {
          frame.erase(frame.begin(), frame.begin() + n);
        }
      }
      if (failed.ok()) {
        writes_.push_back(std::move(frame));
        kick = !writing_;
        writing_ = true;
      }
    }
    if (!failed.ok()) {
      FailNow(failed);
      return;
    }
    if (kick) asio::post(ioc_, [this] { WriteNext(); });
  }

  // Calls f with the stream the frames travel on: the TLS stream when there is one, else the
  // socket. io thread only.
  template <typename F>
  void WithStream(F&& f) {
    if (tls_) {
      f(*tls_);
    } else {
      f(socket_);
    }
  }

  // Sets up the TLS context and stream before the connect. Caller's thread, before any io.
  Status SetUpTls(const TlsOptions& tls);
  // io thread, after the TCP connect: the client handshake, then op->Finish.
  template <typename Op>
  void Handshake(const std::shared_ptr<Op>& op, const std::string& peer);

  // io thread: writes the queued frames, oldest first, until the queue is empty.
  void WriteNext() {
    const std::vector<uint8_t>* front = nullptr;
    {
      std::lock_guard<std::mutex> lock(write_mu_);
      if (closed_ || writes_.empty()) {
        writing_ = false;
        return;
      }
      front = &writes_.front();  // deque elements stay put while others are pushed
    }
    WithStream([this, front](auto& stream) {
      asio::async_write(stream, asio::buffer(*front), [this](const error_code& ec, size_t) {
        if (ec) {
          {
            std::lock_guard<std::mutex> lock(write_mu_);
            writing_ = false;
            writes_.clear();
          }
          FailNow(Lost("write failed: " + ec.message()));
          return;
        }
        {
          std::lock_guard<std::mutex> lock(write_mu_);
          writes_.pop_front();
        }
        WriteNext();
      });
    });
  }

  void ReadMore() {
    WithStream([this](auto& stream) {
      stream.async_read_some(asio::buffer(read_buf_), [this](const error_code& ec, size_t n) {
        if (ec) {
          FailNow(Lost(ec == asio::error::eof || ec == asio::ssl::error::stream_truncated
                           ? "the daemon closed the connection"
                           : "read failed: " + ec.message()));
          return;
        }
        if (OnBytes(std::span<const uint8_t>(read_buf_.data(), n))) ReadMore();
      });
    });
  }

  // False when the connection failed.
  bool OnBytes(std::span<const uint8_t> data) {
    while (!data.empty()) {
      Result<size_t> used = reader_.Feed(data);
      if (!used.ok()) {
        FailNow(Lost("undecodable frame: " + used.status().ToString()));
        return false;
      }
      data = data.subspan(*used);
      if (reader_.frame_ready() && !Dispatch(reader_.TakeFrame())) return false;
    }
    return true;
  }

  bool Dispatch(const transport::Frame& frame) {
    const transport::FrameHeader& h = frame.header;
    const std::string type_name(transport::MessageTypeName(h.type));
    if (!transport::IsReply(h.type)) {
      FailNow(Lost("the daemon sent a request frame (" + type_name + ")"));
      return false;
    }
    std::optional<Pending> p;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = pending_.find(h.request_id);
      if (it != pending_.end()) {
        p = std::move(it->second);
        pending_.erase(it);
        if (p->due) deadlines_.erase(*p->due);
      }
    }
    const transport::ProtocolLimits limits = owner_->limits();
    Result<transport::Message> decoded = transport::DecodeMessage(h.type, frame.body, limits);
    if (!p) {
      // An ErrorReply that names no request (id 0) refuses the whole stream; anything else is a
      // reply to a request never sent.
      if (h.type == transport::MessageType::kError && decoded.ok()) {
        FailNow(Lost("the daemon refused the stream: " +
                     std::get<transport::ErrorReply>(*decoded).ToStatus().ToString()));
      } else {
        FailNow(Lost(type_name + " for unknown request id " + std::to_string(h.request_id)));
      }
      return false;
    }
    if (!decoded.ok()) {
      const Status reason = Lost("undecodable " + type_name + ": " + decoded.status().ToString());
      FailNow(reason);
      Complete(*p, reason, true);
      return false;
    }
    if (h.type == transport::MessageType::kError) {
      Complete(*p, std::get<transport::ErrorReply>(*decoded).ToStatus(), true);
      return true;
    }
    if (h.type != p->reply_type) {
      const Status reason =
          Lost("expected " + std::string(transport::MessageTypeName(p->reply_type)) + ", got " +
               type_name);
      FailNow(reason);
      Complete(*p, reason, true);
      return false;
    }
    Complete(*p, std::move(decoded), true);
    return true;
  }

  Connection* owner_;
  const std::chrono::milliseconds stall_timeout_;
  asio::io_context ioc_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  tcp::socket socket_;
  // With TLS: the context and the stream over socket_ (set up by Connect before any io).
  std::optional<asio::ssl::context> ssl_ctx_;
  std::optional<asio::ssl::stream<tcp::socket&>> tls_;
  std::string verify_failure_;  // io thread: why the verify callback refused the certificate

  asio::steady_timer deadline_timer_;

  mutable std::mutex mu_;  // guards pending_, deadlines_, timer_at_, failed_, failure_
  std::unordered_map<uint64_t, Pending> pending_;
  std::multimap<Deadline, uint64_t> deadlines_;  // when each pending request is next due
  Deadline timer_at_ = Deadline::max();  // when the timer fires (max: not armed)
  bool failed_ = false;
  Status failure_;

  std::mutex write_mu_;  // guards writes_, writing_, closed_ and sends on the socket
  std::deque<std::vector<uint8_t>> writes_;
  bool writing_ = false;  // the io thread owns the writes until the queue is empty
  bool closed_ = false;   // the socket is closed: nothing more is sent
  bool connected_ = false;  // Connect succeeded: the io thread no longer opens the socket

  // io thread only.
  bool timer_set_ = false;
  Deadline timer_set_at_{};
  std::array<uint8_t, 64 * 1024> read_buf_{};
  transport::FrameReader reader_;

  std::thread thread_;  // last: started after every member it uses
};

}  // namespace kvault::client_internal
