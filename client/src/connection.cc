// Connection (connection.h): the public side; the work is Connection::Impl's
// (connection_impl.h, connection_setup.cc).

#include "connection_impl.h"

namespace kvault::client_internal {

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
