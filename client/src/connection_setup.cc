// Connection::Impl's connect and TLS handshake (connection_impl.h).

#include "connection_impl.h"
#include "resolve.h"

namespace kvault::client_internal {

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
  // On this thread, never on the io_context's: a lookup that outlives the deadline is left to a
  // thread of its own (resolve.h), where Asio's resolver thread would be joined here.
  const std::string peer = owner_->peer_;
  Result<std::vector<ResolvedAddress>> resolved = ResolveBy(address.host, address.port, deadline);
  if (!resolved.ok()) return resolved.status().WithContext("connect to " + peer);
  std::vector<tcp::endpoint> endpoints;
  for (const ResolvedAddress& r : *resolved) {
    tcp::endpoint endpoint;
    std::memcpy(endpoint.data(), &r.address, r.length);
    endpoint.resize(r.length);
    endpoints.push_back(endpoint);
  }
  struct Op {
    explicit Op(asio::io_context& ioc) : timer(ioc) {}
    asio::steady_timer timer;
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    Status status;
    // False when the connect had already finished (the first outcome wins).
    bool Finish(Status s) {
      std::lock_guard<std::mutex> lock(mu);
      if (done) return false;
      done = true;
      status = std::move(s);
      cv.notify_all();
      return true;
    }
  };
  auto op = std::make_shared<Op>(ioc_);
  const auto budget = std::max<long long>(0, MillisUntil(deadline));
  asio::post(ioc_, [this, op, endpoints = std::move(endpoints), deadline, peer, budget] {
    op->timer.expires_at(Clamp(deadline));
    op->timer.async_wait([this, op, peer, budget](const error_code& ec) {
      if (ec) return;
      // A connect that finished just before the timer fired keeps its socket.
      if (!op->Finish(Status::Unavailable("connect to " + peer + " timed out after " +
                                          std::to_string(budget) + " ms"))) {
        return;
      }
      std::lock_guard<std::mutex> lock(write_mu_);
      error_code ignored;
      socket_.close(ignored);
    });
    asio::async_connect(
        socket_, endpoints, [this, op, peer](const error_code& ec, const tcp::endpoint&) {
          if (ec) {
            op->timer.cancel();
            op->Finish(Status::Unavailable("cannot connect to " + peer + ": " + ec.message()));
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

}  // namespace kvault::client_internal
