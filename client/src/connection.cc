// Connection (connection.h): the Asio side of the client's control plane.

// clang-format off
#include <utility>  // before any Asio header: Boost 1.74 Asio under GCC 12, C++20 (DESIGN.md §15)
// clang-format on

#include "connection.h"

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
#include <deque>
#include <span>
#include <thread>
#include <unordered_map>

#include "kvault/transport/frame_reader.h"

namespace kvault::client_internal {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;

// Asio's timers cannot take time_point::max(); a year is "never" for a request.
Deadline Clamp(Deadline d) {
  const Deadline far = Clock::now() + std::chrono::hours(24 * 365);
  return std::min(d, far);
}

long long MillisUntil(Deadline d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d - Clock::now()).count();
}

// Frames may be as large as the ceiling: the server announces its own limits, and the reader only
// grows a body as its bytes arrive, so a lying header costs nothing.
transport::ProtocolLimits FrameLimits() {
  transport::ProtocolLimits l;
  l.max_body_bytes = transport::kCeilingBodyBytes;
  return l;
}

}  // namespace

class Connection::Impl {
 public:
  struct Pending {
    transport::MessageType reply_type{};
    DoneFn done;  // emptied once called
    SettledFn settled;
    std::shared_ptr<asio::steady_timer> timer;  // touched on the io thread only
  };

  Impl(Connection* owner, std::chrono::milliseconds stall_timeout)
      : owner_(owner),
        stall_timeout_(stall_timeout),
        work_(asio::make_work_guard(ioc_)),
        socket_(ioc_),
        reader_(FrameLimits()),
        thread_([this] { ioc_.run(); }) {}

  ~Impl() {
    FailNow(Status::Unavailable("client closed"));
    work_.reset();
    ioc_.stop();
    if (thread_.joinable()) thread_.join();
  }

  Status Connect(const HostPort& address, Deadline deadline, const std::optional<TlsOptions>& tls);

  void Submit(uint64_t id, transport::MessageType reply_type, std::vector<uint8_t> frame,
              Deadline deadline, DoneFn done, SettledFn settled) {
    Status failed;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (failed_) {
        failed = failure_;
      } else {
        pending_.emplace(id, Pending{reply_type, std::move(done), std::move(settled), nullptr});
      }
    }
    if (!failed.ok()) {
      if (settled) settled();
      if (done) done(failed);
      return;
    }
    asio::post(ioc_, [this, id, frame = std::move(frame), deadline]() mutable {
      Start(id, std::move(frame), Clamp(deadline));
    });
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
    }
    owner_->alive_.store(false);
    asio::post(ioc_, [this] {
      error_code ec;
      socket_.close(ec);
    });
    for (auto& [id, p] : taken) Complete(p, reason);
  }

  Status failure() const {
    std::lock_guard<std::mutex> lock(mu_);
    return failure_;
  }

  void StartReading() {
    asio::post(ioc_, [this] { ReadMore(); });
  }

 private:
  // Settled first: once a waiter sees the request done, a reply (or a closed connection) has
  // already made its memory the caller's again (handles.h: done and settled coincide).
  static void Complete(Pending& p, Result<transport::Message> result) {
    if (p.settled) std::exchange(p.settled, nullptr)();
    if (p.done) std::exchange(p.done, nullptr)(std::move(result));
  }

  Status Lost(std::string_view what) const {
    return Status::Unavailable("connection to kvaultd at " + owner_->peer_ +
                               " lost: " + std::string(what));
  }

  // io thread: arms the deadline and queues the frame.
  void Start(uint64_t id, std::vector<uint8_t> frame, Deadline deadline) {
    auto timer = std::make_shared<asio::steady_timer>(ioc_);
    timer->expires_at(deadline);
    transport::MessageType reply_type{};
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = pending_.find(id);
      if (it == pending_.end()) return;  // the connection failed meanwhile
      it->second.timer = timer;
      reply_type = it->second.reply_type;
    }
    timer->async_wait([this, id, timer, reply_type](const error_code& ec) {
      if (!ec) OnDeadline(id, reply_type, timer);
    });
    writes_.push_back(std::move(frame));
    if (!writing_) WriteNext();
  }

  void OnDeadline(uint64_t id, transport::MessageType reply_type,
                  const std::shared_ptr<asio::steady_timer>& timer) {
    DoneFn done;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = pending_.find(id);
      if (it == pending_.end()) return;
      done = std::move(it->second.done);
      it->second.done = nullptr;
    }
    const std::string request(transport::MessageTypeName(
        static_cast<transport::MessageType>(static_cast<uint16_t>(reply_type) & 0x7FFF)));
    if (done) {
      done(Status::Unavailable(request + ": deadline exceeded: no reply from kvaultd at " +
                               owner_->peer_ + " in time"));
    }
    // The reply is still expected (it settles the request). A daemon that never sends it is
    // stuck: drop the connection so later calls reconnect instead of queueing behind it.
    if (stall_timeout_.count() <= 0) return;
    timer->expires_after(stall_timeout_);
    timer->async_wait([this, id, request, timer](const error_code& ec) {
      if (ec) return;
      bool still_pending;
      {
        std::lock_guard<std::mutex> lock(mu_);
        still_pending = pending_.count(id) != 0;
      }
      if (still_pending) {
        FailNow(Lost("no reply to a " + request + " request " +
                     std::to_string(stall_timeout_.count()) + " ms after its deadline"));
      }
    });
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

  void WriteNext() {
    writing_ = true;
    WithStream([this](auto& stream) {
      asio::async_write(stream, asio::buffer(writes_.front()),
                        [this](const error_code& ec, size_t) {
                          if (ec) {
                            writing_ = false;
                            writes_.clear();
                            FailNow(Lost("write failed: " + ec.message()));
                            return;
                          }
                          writes_.pop_front();
                          if (writes_.empty()) {
                            writing_ = false;
                          } else {
                            WriteNext();
                          }
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
    if (p->timer) p->timer->cancel();
    if (!decoded.ok()) {
      const Status reason = Lost("undecodable " + type_name + ": " + decoded.status().ToString());
      FailNow(reason);
      Complete(*p, reason);
      return false;
    }
    if (h.type == transport::MessageType::kError) {
      Complete(*p, std::get<transport::ErrorReply>(*decoded).ToStatus());
      return true;
    }
    if (h.type != p->reply_type) {
      const Status reason =
          Lost("expected " + std::string(transport::MessageTypeName(p->reply_type)) + ", got " +
               type_name);
      FailNow(reason);
      Complete(*p, reason);
      return false;
    }
    Complete(*p, std::move(decoded));
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

  mutable std::mutex mu_;  // guards pending_, failed_, failure_
  std::unordered_map<uint64_t, Pending> pending_;
  bool failed_ = false;
  Status failure_;

  // io thread only.
  std::deque<std::vector<uint8_t>> writes_;
  bool writing_ = false;
  std::array<uint8_t, 64 * 1024> read_buf_{};
  transport::FrameReader reader_;

  std::thread thread_;  // last: started after every member it uses
};

Status Connection::Impl::SetUpTls(const TlsOptions& tls) {
  ssl_ctx_.emplace(asio::ssl::context::tls_client);
  error_code ec;
  ssl_ctx_->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                            asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                            asio::ssl::context::no_tlsv1_1,
                        ec);
  if (tls.ca_file.empty()) {
    ssl_ctx_->set_default_verify_paths(ec);
    if (ec) {
      return Status::Unavailable("TLS: cannot load the system's CA certificates: " + ec.message());
    }
  } else {
    ssl_ctx_->load_verify_file(tls.ca_file, ec);
    if (ec) {
      return Status::InvalidArgument("TLS CA file " + tls.ca_file + ": " + ec.message());
    }
  }
  tls_.emplace(socket_, *ssl_ctx_);
  tls_->set_verify_mode(asio::ssl::verify_peer);
  // The chain check is OpenSSL's; the name check is Asio's. Either failure is remembered so the
  // handshake error can say which.
  tls_->set_verify_callback(
      [this, check = asio::ssl::host_name_verification(tls.server_name), name = tls.server_name](
          bool preverified, asio::ssl::verify_context& ctx) mutable {
        X509_STORE_CTX* store = ctx.native_handle();
        if (!preverified) {
          verify_failure_ = X509_verify_cert_error_string(X509_STORE_CTX_get_error(store));
          return false;
        }
        if (!check(preverified, ctx)) {
          verify_failure_ = "the certificate does not match the server name '" + name + "'";
          return false;
        }
        return true;
      },
      ec);
  if (ec) return Status::Internal("TLS: cannot set the verify callback: " + ec.message());
  // SNI takes DNS names only, never an address literal.
  error_code not_ip;
  asio::ip::make_address(tls.server_name, not_ip);
  if (not_ip) SSL_set_tlsext_host_name(tls_->native_handle(), tls.server_name.c_str());
  return Status::Ok();
}

template <typename Op>
void Connection::Impl::Handshake(const std::shared_ptr<Op>& op, const std::string& peer) {
  tls_->async_handshake(asio::ssl::stream_base::client, [this, op, peer](const error_code& ec) {
    op->timer.cancel();
    if (ec) {
      std::string why = ec.message();
      if (!verify_failure_.empty()) why += " (" + verify_failure_ + ")";
      if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated) {
        why = "the daemon closed the connection (is its control plane TLS?)";
      }
      op->Finish(Status::Unavailable("TLS handshake with " + peer + " failed: " + why));
      return;
    }
    op->Finish(Status::Ok());
  });
}

Status Connection::Impl::Connect(const HostPort& address, Deadline deadline,
                                 const std::optional<TlsOptions>& tls) {
  if (tls) KVAULT_RETURN_IF_ERROR(SetUpTls(*tls));
  struct Op {
    explicit Op(asio::io_context& ioc) : resolver(ioc), timer(ioc) {}
    tcp::resolver resolver;
    asio::steady_timer timer;
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    Status status;
    void Finish(Status s) {
      std::lock_guard<std::mutex> lock(mu);
      if (done) return;
      done = true;
      status = std::move(s);
      cv.notify_all();
    }
  };
  auto op = std::make_shared<Op>(ioc_);
  const std::string peer = owner_->peer_;
  const auto budget = std::max<long long>(0, MillisUntil(deadline));
  asio::post(ioc_, [this, op, address, deadline, peer, budget] {
    op->timer.expires_at(Clamp(deadline));
    op->timer.async_wait([this, op, peer, budget](const error_code& ec) {
      if (ec) return;
      op->Finish(Status::Unavailable("connect to " + peer + " timed out after " +
                                     std::to_string(budget) + " ms"));
      op->resolver.cancel();
      error_code ignored;
      socket_.close(ignored);
    });
    op->resolver.async_resolve(
        address.host, std::to_string(address.port),
        [this, op, peer](const error_code& ec, const tcp::resolver::results_type& results) {
          if (ec) {
            op->Finish(Status::Unavailable("cannot resolve " + peer + ": " + ec.message()));
            op->timer.cancel();
            return;
          }
          asio::async_connect(
              socket_, results, [this, op, peer](const error_code& ec, const tcp::endpoint&) {
                if (ec) {
                  op->timer.cancel();
                  op->Finish(
                      Status::Unavailable("cannot connect to " + peer + ": " + ec.message()));
                  return;
                }
                error_code ignored;
                socket_.set_option(tcp::no_delay(true), ignored);
                if (tls_) {
                  Handshake(op, peer);  // the timer still bounds it
                  return;
                }
                op->timer.cancel();
                op->Finish(Status::Ok());
              });
        });
  });
  std::unique_lock<std::mutex> lock(op->mu);
  // The timer on the io thread is the real deadline; the wait has a small margin after it.
  op->cv.wait_until(lock, Clamp(deadline) + std::chrono::milliseconds(100),
                    [&] { return op->done; });
  if (!op->done) {
    return Status::Unavailable("connect to " + peer + " timed out after " + std::to_string(budget) +
                               " ms");
  }
  return op->status;
}

// --- Connection ---

Connection::Connection(std::string peer, std::chrono::milliseconds stall_timeout)
    : peer_(std::move(peer)), impl_(std::make_unique<Impl>(this, stall_timeout)) {}

// The Impl goes first: its thread's handlers use the members below it.
Connection::~Connection() { impl_.reset(); }

Result<std::shared_ptr<Connection>> Connection::Open(const HostPort& address, Deadline deadline,
                                                     std::chrono::milliseconds stall_timeout,
                                                     const std::optional<TlsOptions>& tls) {
  const std::string peer = address.host.find(':') != std::string::npos
                               ? "[" + address.host + "]:" + std::to_string(address.port)
                               : address.host + ":" + std::to_string(address.port);
  std::shared_ptr<Connection> conn(new Connection(peer, stall_timeout));
  Status connected = conn->impl_->Connect(address, deadline, tls);
  if (!connected.ok()) {
    conn->Fail(connected);
    return connected;
  }
  conn->impl_->StartReading();
  return conn;
}

void Connection::Submit(uint64_t id, transport::MessageType reply_type, std::vector<uint8_t> frame,
                        Deadline deadline, DoneFn done, SettledFn settled) {
  impl_->Submit(id, reply_type, std::move(frame), deadline, std::move(done), std::move(settled));
}

transport::ProtocolLimits Connection::limits() const {
  std::lock_guard<std::mutex> lock(limits_mu_);
  return limits_;
}

void Connection::SetLimits(const transport::ProtocolLimits& limits) {
  std::lock_guard<std::mutex> lock(limits_mu_);
  limits_ = limits;
}

Status Connection::failure() const { return impl_->failure(); }

void Connection::Fail(const Status& reason) {
  impl_->FailNow(reason.ok() ? Status::Unavailable("connection closed") : reason);
}

void Connection::SyncWaiter::Set(Result<transport::Message> r) {
  std::lock_guard<std::mutex> lock(mu);
  if (result) return;
  result = std::move(r);
  cv.notify_all();
}

Result<transport::Message> Connection::SyncWaiter::Wait(Deadline deadline) {
  std::unique_lock<std::mutex> lock(mu);
  // The connection's timer completes the call at the deadline; the margin only matters if the
  // io thread is starved.
  cv.wait_until(lock, Clamp(deadline) + std::chrono::milliseconds(50),
                [&] { return result.has_value(); });
  if (!result) return Status::Unavailable("deadline exceeded: no reply from kvaultd in time");
  return std::move(*result);
}

}  // namespace kvault::client_internal
