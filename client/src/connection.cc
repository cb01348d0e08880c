// Connection (connection.h): the public side; the work is Connection::Impl's
// (connection_impl.h, connection_setup.cc).

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstring>
#include <optional>

#include "connection_impl.h"

namespace kvault::client_internal {

// --- Connection ---

Connection::Connection(std::string peer, std::chrono::milliseconds stall_timeout)
    : peer_(std::move(peer)), impl_(std::make_unique<Impl>(this, stall_timeout)) {}

// The Impl goes first: its thread's handlers use the members below it.
Connection::~Connection() { impl_.reset(); }

namespace {

// Whether the peer of the connected socket `fd` is this host: a loopback address, or the
// socket's own local address (what a connection to one of this host's addresses has).
bool PeerIsOnThisHost(int fd) {
  sockaddr_storage peer{};
  sockaddr_storage self{};
  socklen_t peer_length = sizeof peer;
  socklen_t self_length = sizeof self;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_length) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&self), &self_length) != 0 ||
      peer.ss_family != self.ss_family) {
    return false;
  }
  if (peer.ss_family == AF_INET) {
    const in_addr p = reinterpret_cast<const sockaddr_in*>(&peer)->sin_addr;
    const in_addr s = reinterpret_cast<const sockaddr_in*>(&self)->sin_addr;
    return (ntohl(p.s_addr) >> 24) == 127 || p.s_addr == s.s_addr;
  }
  if (peer.ss_family == AF_INET6) {
    const in6_addr& p = reinterpret_cast<const sockaddr_in6*>(&peer)->sin6_addr;
    const in6_addr& s = reinterpret_cast<const sockaddr_in6*>(&self)->sin6_addr;
    const bool v4_loopback = IN6_IS_ADDR_V4MAPPED(&p) && p.s6_addr[12] == 127;
    return IN6_IS_ADDR_LOOPBACK(&p) || v4_loopback || std::memcmp(&p, &s, sizeof p) == 0;
  }
  return false;
}

// One end of a TCP connection as TcpEnd, or nullopt for another family.
std::optional<transport::TcpEnd> TcpEndOf(const sockaddr_storage& end) {
  if (end.ss_family == AF_INET) {
    const auto& in = reinterpret_cast<const sockaddr_in&>(end);
    std::array<uint8_t, 4> bytes;
    std::memcpy(bytes.data(), &in.sin_addr, 4);
    return transport::TcpEnd::V4(bytes, ntohs(in.sin_port));
  }
  if (end.ss_family == AF_INET6) {
    const auto& in6 = reinterpret_cast<const sockaddr_in6&>(end);
    std::array<uint8_t, 16> bytes;
    std::memcpy(bytes.data(), &in6.sin6_addr, 16);
    return transport::TcpEnd::V6(bytes, ntohs(in6.sin6_port));
  }
  return std::nullopt;
}

// Both ends of the connected socket `fd`, as this side sees them.
std::optional<transport::ControlConnection> EndsOf(int fd) {
  sockaddr_storage local{};
  sockaddr_storage peer{};
  socklen_t local_length = sizeof local;
  socklen_t peer_length = sizeof peer;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_length) != 0 ||
      getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_length) != 0) {
    return std::nullopt;
  }
  const std::optional<transport::TcpEnd> client = TcpEndOf(local);
  const std::optional<transport::TcpEnd> server = TcpEndOf(peer);
  if (!client || !server) return std::nullopt;
  return transport::ControlConnection{*server, *client};
}

}  // namespace

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
  conn->on_this_host_ = PeerIsOnThisHost(conn->impl_->native_handle());
  conn->ends_ = EndsOf(conn->impl_->native_handle());
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
