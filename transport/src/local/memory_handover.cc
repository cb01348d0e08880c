// The memory hand-over over a Unix SOCK_SEQPACKET socket (local/memory_handover.h).

#include "kvault/transport/local/memory_handover.h"

#include <poll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <vector>

#include "kvault/transport/local/process_memory.h"

namespace kvault::transport {
namespace {

Status Failed(const std::string& what) {
  return Status::Unavailable("memory hand-over: " + what + ": " + std::strerror(errno));
}

// Waits until `fd` is ready for `events` or the deadline passes.
Status Await(int fd, short events, HandOverDeadline deadline, const char* what) {
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      return Status::Unavailable(std::string("memory hand-over: deadline passed ") + what);
    }
    pollfd p{fd, events, 0};
    const int n = poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
    if (n > 0) return Status::Ok();
    if (n < 0 && errno != EINTR) return Failed("poll");
  }
}

Result<UniqueFd> ConnectTo(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    return Status::InvalidArgument("memory socket path is empty or longer than " +
                                   std::to_string(sizeof addr.sun_path - 1) + " bytes");
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  UniqueFd sock(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (sock.get() < 0) return Failed("socket");
  if (connect(sock.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    // A Unix connect completes at once or fails (EAGAIN: the server's backlog is full).
    return Failed("cannot connect to " + path);
  }
  return sock;
}

// Connects to the target's socket, checks the listener, sends `bytes` with `descriptor` and
// returns the handle of an ok reply.
Result<Bytes32> Exchange(const HandOverTarget& target, std::span<const uint8_t> bytes,
                         int descriptor, HandOverDeadline deadline) {
  KVAULT_ASSIGN_OR_RETURN(UniqueFd sock, ConnectTo(target.socket_path));
  ucred listener{};
  socklen_t length = sizeof listener;
  if (getsockopt(sock.get(), SOL_SOCKET, SO_PEERCRED, &listener, &length) != 0) {
    return Failed("SO_PEERCRED");
  }
  if (listener.pid <= 0 || static_cast<uint32_t>(listener.pid) != target.server_pid ||
      listener.uid != target.server_uid) {
    return Status::Unavailable(
        "memory hand-over: the process listening at " + target.socket_path + " (pid " +
        std::to_string(listener.pid) + ", uid " + std::to_string(listener.uid) +
        ") is not the daemon, which announced pid " + std::to_string(target.server_pid) +
        " and uid " + std::to_string(target.server_uid) + " (another namespace, or another " +
        "process at that path)");
  }
  while (SendWithDescriptor(sock.get(), bytes, descriptor) != static_cast<ssize_t>(bytes.size())) {
    if (errno != EAGAIN && errno != EWOULDBLOCK) return Failed("sendmsg");
    KVAULT_RETURN_IF_ERROR(Await(sock.get(), POLLOUT, deadline, "sending"));
  }
  std::vector<uint8_t> reply(kHandOverReplyHeaderBytes + kMaxHandOverMessageBytes + 1);
  ssize_t n;
  for (;;) {
    KVAULT_RETURN_IF_ERROR(Await(sock.get(), POLLIN, deadline, "before the reply"));
    n = recv(sock.get(), reply.data(), reply.size(), MSG_DONTWAIT);
    if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) break;
  }
  if (n < 0) return Failed("recv");
  if (n == 0) return Status::Unavailable("memory hand-over: the server closed without a reply");
  reply.resize(static_cast<size_t>(n));
  Result<HandOverReply> decoded = DecodeHandOverReply(reply);
  if (!decoded.ok()) {
    return Status::Unavailable("memory hand-over: malformed reply: " + decoded.status().message());
  }
  if (decoded->status != WireStatus::kOk) return StatusFromWire(decoded->status, decoded->message);
  return decoded->handle;
}

}  // namespace

Result<Bytes32> HandOverOwnMemory(const HandOverTarget& target, HandOverProbe* probe,
                                  HandOverDeadline deadline) {
  KVAULT_ASSIGN_OR_RETURN(UniqueFd memory, ProcessMemory::OpenOwn());
  if (getrandom(probe->data(), probe->size(), 0) != static_cast<ssize_t>(probe->size())) {
    return Failed("getrandom");
  }
  HandOverRequest request;
  request.probe_address = reinterpret_cast<uintptr_t>(probe->data());
  request.probe = *probe;
  request.client_end = target.connection.client;
  request.server_end = target.connection.server;
  return Exchange(target, EncodeHandOverRequest(request), memory.get(), deadline);
}

Result<Bytes32> HandOverRegion(const HandOverTarget& target, uint64_t base, uint64_t length,
                               int file, HandOverDeadline deadline) {
  RegionRequest request;
  request.base = base;
  request.length = length;
  request.client_end = target.connection.client;
  request.server_end = target.connection.server;
  return Exchange(target, EncodeRegionRequest(request), file, deadline);
}

ssize_t SendWithDescriptor(int socket, std::span<const uint8_t> bytes, int descriptor) {
  iovec io{const_cast<uint8_t*>(bytes.data()), bytes.size()};
  msghdr msg{};
  msg.msg_iov = &io;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  if (descriptor >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &descriptor, sizeof(int));
  }
  ssize_t n;
  do {
    n = sendmsg(socket, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  return n;
}

ssize_t ReceiveWithDescriptors(int socket, std::span<uint8_t> buffer,
                               std::vector<UniqueFd>* descriptors, int* flags) {
  iovec io{buffer.data(), buffer.size()};
  // Room for as many descriptors as one message may carry (SCM_MAX_FD, 253): all of them reach
  // the caller, who decides where they are released. (Ones cut for want of room would be
  // released by the kernel in this call, on this thread, and releasing a file can wait on the
  // file system the sender serves.)
  constexpr size_t kMostDescriptors = 253;
  alignas(cmsghdr) char control[CMSG_SPACE(kMostDescriptors * sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &io;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = recvmsg(socket, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return n;
  // Even an empty message may carry descriptors: they all reach the caller.
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd = -1;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      descriptors->emplace_back(fd);
    }
  }
  *flags = msg.msg_flags;
  return n;
}

Result<HandedOver> ReceiveHandOver(int connection, std::vector<UniqueFd>* descriptors) {
  HandedOver out;
  // One byte more than the longer request, to tell a longer packet (it would be cut: MSG_TRUNC).
  static_assert(kRegionRequestBytes < kHandOverRequestBytes);
  std::array<uint8_t, kHandOverRequestBytes + 1> buffer{};
  const size_t before = descriptors->size();
  int flags = 0;
  const ssize_t n = ReceiveWithDescriptors(connection, buffer, descriptors, &flags);
  if (n < 0) return Failed("recvmsg");
  const size_t received = descriptors->size() - before;
  if (n == 0 && received == 0) {
    return Status::Unavailable("memory hand-over: the peer closed before the request");
  }
  const bool cut = (flags & MSG_CTRUNC) != 0;
  const size_t size = static_cast<size_t>(n);
  if ((size != kHandOverRequestBytes && size != kRegionRequestBytes) || (flags & MSG_TRUNC) != 0) {
    return Status::InvalidArgument("memory hand-over: a request is one packet of " +
                                   std::to_string(kHandOverRequestBytes) + " bytes (" +
                                   std::to_string(kRegionRequestBytes) + " for a region)");
  }
  if (received != 1 || cut) {
    return Status::InvalidArgument(
        "memory hand-over: the request must come with exactly one descriptor, not " +
        (cut ? std::string("more (or the descriptor table is full)") : std::to_string(received)));
  }
  KVAULT_ASSIGN_OR_RETURN(out.request,
                          DecodeMemoryRequest(std::span<const uint8_t>(buffer.data(), size)));
  ucred cred{};
  socklen_t length = sizeof cred;
  if (getsockopt(connection, SOL_SOCKET, SO_PEERCRED, &cred, &length) != 0) {
    return Failed("SO_PEERCRED");
  }
  out.peer_uid = cred.uid;
  out.peer_pid = cred.pid > 0 ? static_cast<uint32_t>(cred.pid) : 0;
  return out;
}

Status SendHandOverReply(int connection, const HandOverReply& reply) {
  const std::vector<uint8_t> bytes = EncodeHandOverReply(reply);
  if (SendWithDescriptor(connection, bytes, -1) != static_cast<ssize_t>(bytes.size())) {
    return Failed("sending the reply");
  }
  return Status::Ok();
}

}  // namespace kvault::transport
