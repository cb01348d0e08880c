// MemoryGate (memory_gate.h).

#include "control/memory_gate.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "kvault/common/errno_text.h"
#include "kvault/common/file_io.h"
#include "kvault/common/little_endian.h"
#include "kvault/common/log.h"
#include "kvault/transport/local/process_memory.h"
#include "kvault/transport/local/region_file.h"

namespace kvault::server {
namespace {

constexpr uint8_t kReadyByte = 'R';
constexpr uint8_t kHeartbeatByte = 'H';

template <typename T>
bool ParseNumber(std::string_view text, T* out) {
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && end == text.data() + text.size();
}

bool SocketOption(int fd, int option, int expected) {
  int value = 0;
  socklen_t length = sizeof value;
  return getsockopt(fd, SOL_SOCKET, option, &value, &length) == 0 && value == expected;
}

// OK when all `bytes` went out; else why not (errno only when the send itself failed).
Status Sent(ssize_t sent, size_t bytes, const char* what) {
  if (sent == static_cast<ssize_t>(bytes)) return Status::Ok();
  if (sent < 0) return Status::Unavailable(ErrnoText(what));
  return Status::Unavailable(std::string(what) + ": " + std::to_string(sent) + " of " +
                             std::to_string(bytes) + " bytes sent");
}

Status SendByte(int link, uint8_t byte, const char* what) {
  return Sent(transport::SendWithDescriptor(link, std::span<const uint8_t>(&byte, 1), -1), 1, what);
}

// The descriptor a request came with, once checked (and owned): a process's memory file for a
// hand-over, a sealed memfd for a region.
struct CheckedFile {
  std::optional<transport::ProcessMemory> memory;
  std::optional<transport::RegionFile> region;
  int descriptor() const { return memory ? memory->descriptor() : region->descriptor(); }
};

Result<CheckedFile> CheckFile(const transport::MemoryRequest& request, UniqueFd* fd) {
  CheckedFile out;
  if (const auto* region = std::get_if<transport::RegionRequest>(&request)) {
    KVAULT_ASSIGN_OR_RETURN(out.region, transport::RegionFile::Adopt(fd, region->length));
  } else {
    KVAULT_ASSIGN_OR_RETURN(out.memory, transport::ProcessMemory::Adopt(fd));
  }
  return out;
}

}  // namespace

Status SendGateReady(int link) {
  return SendByte(link, kReadyByte, "memory gate: telling kvaultd it is ready");
}

Status SendGateHeartbeat(int link) {
  return SendByte(link, kHeartbeatByte, "memory gate: heartbeat");
}

Status ForwardHandOver(int link, uint64_t id, const transport::HandedOver& handed, int memory) {
  std::vector<uint8_t> bytes(8);
  StoreLe64(bytes.data(), id);
  const std::vector<uint8_t> request = transport::EncodeMemoryRequest(handed.request);
  bytes.insert(bytes.end(), request.begin(), request.end());
  bytes.resize(bytes.size() + 8);
  StoreLe32(bytes.data() + bytes.size() - 8, handed.peer_uid);
  StoreLe32(bytes.data() + bytes.size() - 4, handed.peer_pid);
  return Sent(transport::SendWithDescriptor(link, bytes, memory), bytes.size(),
              "the memory hand-over cannot reach kvaultd");
}

Result<std::optional<GateReply>> ReceiveGateReply(int link) {
  std::vector<uint8_t> bytes(8 + transport::kHandOverReplyHeaderBytes +
                             transport::kMaxHandOverMessageBytes + 1);
  const ssize_t n = recv(link, bytes.data(), bytes.size(), MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
    return std::optional<GateReply>();
  }
  if (n <= 0) return Status::Unavailable(n < 0 ? ErrnoText("memory gate link") : "kvaultd is gone");
  if (static_cast<size_t>(n) < 8 + transport::kHandOverReplyHeaderBytes ||
      static_cast<size_t>(n) == bytes.size()) {
    return Status::InvalidArgument("malformed reply from kvaultd (" + std::to_string(n) +
                                   " bytes)");
  }
  GateReply reply;
  reply.id = LoadLe64(bytes.data());
  reply.reply.assign(bytes.begin() + 8, bytes.begin() + n);
  return std::optional<GateReply>(std::move(reply));
}

Status WaitForGateReady(int link, std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd polled{link, POLLIN, 0};
    const int ready = poll(&polled, 1, static_cast<int>(std::max<int64_t>(left.count(), 0)));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return Status::Unavailable("the memory gate did not start in time");
    uint8_t byte = 0;
    const ssize_t n = recv(link, &byte, 1, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n != 1 || byte != kReadyByte) {
      return Status::Unavailable("the memory gate exited as it started (see its log lines)");
    }
    return Status::Ok();
  }
}

Result<std::optional<GateMessage>> ReceiveFromGate(int link) {
  std::array<uint8_t, kForwardedHandOverBytes + 1> bytes{};
  std::vector<UniqueFd> descriptors;
  int flags = 0;
  const ssize_t n = transport::ReceiveWithDescriptors(link, bytes, &descriptors, &flags);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
    return std::optional<GateMessage>();
  }
  if (n < 0) return Status::Unavailable(ErrnoText("memory gate"));
  if (n == 0 && descriptors.empty()) return Status::Unavailable("the memory gate closed");
  GateMessage message;
  if (n == 1 && bytes[0] == kHeartbeatByte && descriptors.empty()) {
    message.heartbeat = true;
    return std::optional<GateMessage>(std::move(message));
  }
  // The gate is this program: anything else is a bug, refused rather than trusted.
  const size_t size = static_cast<size_t>(n);
  if ((size != kForwardedHandOverBytes && size != kForwardedRegionBytes) ||
      descriptors.size() != 1 || (flags & (MSG_TRUNC | MSG_CTRUNC)) != 0) {
    return Status::InvalidArgument("malformed packet from the memory gate (" + std::to_string(n) +
                                   " bytes, " + std::to_string(descriptors.size()) +
                                   " descriptors)");
  }
  ForwardedHandOver& forwarded = message.hand_over;
  forwarded.id = LoadLe64(bytes.data());
  KVAULT_ASSIGN_OR_RETURN(
      forwarded.handed.request,
      transport::DecodeMemoryRequest(std::span<const uint8_t>(bytes.data() + 8, size - 16)));
  const uint8_t* credentials = bytes.data() + size - 8;
  forwarded.handed.peer_uid = LoadLe32(credentials);
  forwarded.handed.peer_pid = LoadLe32(credentials + 4);
  forwarded.memory = std::move(descriptors[0]);
  return std::optional<GateMessage>(std::move(message));
}

Status SendGateReply(int link, uint64_t id, const transport::HandOverReply& reply) {
  std::vector<uint8_t> bytes(8);
  StoreLe64(bytes.data(), id);
  const std::vector<uint8_t> encoded = transport::EncodeHandOverReply(reply);
  bytes.insert(bytes.end(), encoded.begin(), encoded.end());
  return Sent(transport::SendWithDescriptor(link, bytes, -1), bytes.size(),
              "the memory hand-over reply cannot reach the gate");
}

int MemoryGateMain(int argc, char** argv) {
  uint64_t io_timeout_ms = 0;
  pid_t parent = 0;
  const Result<LogLevel> level = argc == 5 ? ParseLogLevel(argv[4]) : Status::InvalidArgument("");
  // Descriptor 3 must be a listening socket and 4 a SOCK_SEQPACKET one, as kvaultd gives them.
  if (argc != 5 || std::string_view(argv[1]) != kMemoryGateFlag ||
      !ParseNumber(argv[2], &io_timeout_ms) || !ParseNumber(argv[3], &parent) || parent <= 0 ||
      io_timeout_ms == 0 || !level.ok() || !SocketOption(kMemoryGateListenerFd, SO_ACCEPTCONN, 1) ||
      !SocketOption(kMemoryGateLinkFd, SO_TYPE, SOCK_SEQPACKET)) {
    std::fputs(
        "kvaultd --memory-gate is started by kvaultd itself (docs/daemon.md, \"Process "
        "memory\"), not by hand\n",
        stderr);
    return 2;
  }
  // Nothing else kvaultd had open stays open here; as many descriptors as allowed may be
  // received (the kernel releases, on the receiving thread, those it has no room for).
  close_range(kMemoryGateLinkFd + 1, ~0U, 0);
  RaiseOpenFileLimit();
  // Dies with the kvaultd thread that started it (kvaultd kills it anyway when it stops); if
  // kvaultd is already gone, so is the gate.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) return 0;
  SetLogLevel(*level);
  fcntl(kMemoryGateListenerFd, F_SETFD, FD_CLOEXEC);
  fcntl(kMemoryGateLinkFd, F_SETFD, FD_CLOEXEC);
  fcntl(kMemoryGateListenerFd, F_SETFL, O_NONBLOCK);
  fcntl(kMemoryGateLinkFd, F_SETFL, O_NONBLOCK);
  if (!SendGateReady(kMemoryGateLinkFd).ok()) _exit(0);  // kvaultd is gone
  // Never destroyed: its connections and descriptors are released by the exit, not by this
  // thread, and no closer thread is waited for.
  auto* gate = new MemoryGate(kMemoryGateListenerFd, kMemoryGateLinkFd,
                              std::chrono::milliseconds(io_timeout_ms));
  gate->Run();
  _exit(0);
}

size_t MemoryGate::PendingOf(uint32_t uid) const {
  size_t pending = 0;
  for (const Waiting& w : waiting_) pending += w.uid == uid ? 1 : 0;
  for (const auto& [id, w] : answering_) pending += w.uid == uid ? 1 : 0;
  return pending;
}

void MemoryGate::Run() {
  std::vector<pollfd> polled;
  auto accept_again = std::chrono::steady_clock::time_point{};  // after a full descriptor table
  for (;;) {
    const auto now = std::chrono::steady_clock::now();
    // Connections whose request, or whose answer from kvaultd, did not come in time.
    for (Waiting& w : waiting_) {
      if (w.deadline <= now) closer_.Close(std::move(w.connection), w.uid);
    }
    std::erase_if(waiting_, [](const Waiting& w) { return w.connection.get() < 0; });
    for (auto it = answering_.begin(); it != answering_.end();) {
      if (it->second.deadline > now) {
        ++it;
        continue;
      }
      Refuse(std::move(it->second), Status::Unavailable("kvaultd did not answer in time"));
      it = answering_.erase(it);
    }
    // While descriptors pile up unclosed (a file system that does not answer a close), no
    // request is read and no connection accepted: they wait, and time out.
    const bool stalled = closer_.pending() >= kMaxUnclosed;
    const bool accepting =
        !stalled && waiting_.size() + answering_.size() < kMaxPending && now >= accept_again;
    int timeout_ms = accepting ? 1000 : 100;
    polled.assign({{link_, POLLIN, 0}, {listener_, static_cast<short>(accepting ? POLLIN : 0), 0}});
    for (const Waiting& w : waiting_) {
      polled.push_back({w.connection.get(), static_cast<short>(stalled ? 0 : POLLIN), 0});
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(w.deadline - now).count() + 1;
      timeout_ms = std::min(timeout_ms, static_cast<int>(std::max<int64_t>(left, 0)));
    }
    if (poll(polled.data(), polled.size(), timeout_ms) < 0) {
      if (errno != EINTR) {  // ENOMEM: try again a little later
        KVAULT_LOG(LogLevel::kWarn, "memory-gate", ErrnoText("poll"));
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      continue;
    }
    if (polled[0].revents != 0 && !DeliverReplies()) return;  // kvaultd closed its end
    // Heard about once a second while this gate serves; silent while its closer is full, so
    // that kvaultd replaces it.
    if (!stalled && std::chrono::steady_clock::now() - last_heartbeat_ >= std::chrono::seconds(1)) {
      (void)SendGateHeartbeat(link_);
      last_heartbeat_ = std::chrono::steady_clock::now();
    }
    // Every connection whose request arrived is handled, unless its user's descriptors already
    // wait for the closer (then, or when the closer is full, it is closed unread: the kernel
    // drops the descriptors of an unread packet, on the closer's thread). One that hung up is
    // closed. poll reports a hang-up even where nothing was asked for.
    std::vector<std::pair<Waiting, short>> ready;  // with what poll said of it
    size_t kept = 0;
    for (size_t i = 0; i < waiting_.size(); ++i) {
      const short events = polled[i + 2].revents;
      if (events == 0) {
        if (kept != i) waiting_[kept] = std::move(waiting_[i]);
        ++kept;
      } else {
        ready.emplace_back(std::move(waiting_[i]), events);
      }
    }
    waiting_.resize(kept);
    for (auto& [w, events] : ready) {
      const bool hung_up = (events & (POLLHUP | POLLERR)) != 0 && (events & POLLIN) == 0;
      const bool may_read =
          closer_.pending() < kMaxUnclosed && closer_.pending_of(w.uid) < kMaxUnclosedPerUser;
      if (may_read && !hung_up) {
        HandOver(std::move(w));
      } else {
        closer_.Close(std::move(w.connection), w.uid);
      }
    }
    if (accepting && polled[1].revents != 0 && !Accept()) {
      accept_again = std::chrono::steady_clock::now() + std::chrono::milliseconds(100);
    }
  }
}

bool MemoryGate::DeliverReplies() {
  for (;;) {
    Result<std::optional<GateReply>> got = ReceiveGateReply(link_);
    if (!got.ok() && got.status().code() == StatusCode::kUnavailable) return false;
    if (!got.ok()) {
      KVAULT_LOG(LogLevel::kError, "memory-gate", got.status().ToString());
      continue;
    }
    if (!got->has_value()) return true;
    auto it = answering_.find((*got)->id);
    if (it == answering_.end()) continue;  // that client was refused already (its time was up)
    // One packet, which fits the socket's buffer; the client may be gone already.
    (void)!send(it->second.connection.get(), (*got)->reply.data(), (*got)->reply.size(),
                MSG_DONTWAIT | MSG_NOSIGNAL);
    closer_.Close(std::move(it->second.connection), it->second.uid);
    answering_.erase(it);
  }
}

bool MemoryGate::Accept() {
  while (waiting_.size() + answering_.size() < kMaxPending) {
    UniqueFd connection(accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (connection.get() < 0) {
      // EMFILE, ENFILE, ENOMEM: the listener stays readable; the caller waits a little.
      return errno != EMFILE && errno != ENFILE && errno != ENOBUFS && errno != ENOMEM;
    }
    ucred cred{};
    socklen_t length = sizeof cred;
    if (getsockopt(connection.get(), SOL_SOCKET, SO_PEERCRED, &cred, &length) != 0) {
      closer_.Close(std::move(connection), 0);
      continue;
    }
    Waiting w{std::move(connection), std::chrono::steady_clock::now() + io_timeout_, cred.uid};
    if (const size_t of_user = PendingOf(cred.uid); of_user >= kMaxPendingPerUser) {
      Refuse(std::move(w),
             Status::Unavailable("this user has " + std::to_string(of_user) +
                                 " memory hand-over connections waiting for their request"));
      continue;
    }
    waiting_.push_back(std::move(w));
  }
  return true;
}

void MemoryGate::HandOver(Waiting waiting) {
  std::vector<UniqueFd> descriptors;
  Result<transport::HandedOver> received =
      transport::ReceiveHandOver(waiting.connection.get(), &descriptors);
  Status outcome = received.status();
  std::string who = "a client";
  if (received.ok()) {
    who =
        "uid " + std::to_string(received->peer_uid) + " pid " + std::to_string(received->peer_pid);
    // Only a process's memory file or a sealed memfd, which have no flush a close could wait on,
    // leave the gate.
    Result<CheckedFile> checked = CheckFile(received->request, &descriptors[0]);
    outcome = checked.status();
    if (checked.ok()) {
      const uint64_t id = next_id_++;
      outcome = ForwardHandOver(link_, id, *received, checked->descriptor());
      if (outcome.ok()) {
        waiting.deadline = std::chrono::steady_clock::now() + io_timeout_;
        answering_.emplace(id, std::move(waiting));  // kvaultd answers
        return;
      }
    }
  }
  if (outcome.code() == StatusCode::kUnavailable) {
    // The peer closed or sent nothing, or kvaultd is busy; not worth more than debug.
    KVAULT_LOG(LogLevel::kDebug, "memory-gate",
               "memory hand-over by " + who + " ended: " + outcome.ToString());
  } else {
    KVAULT_LOG(LogLevel::kInfo, "memory-gate",
               "memory hand-over by " + who + " refused: " + outcome.ToString());
  }
  // Whatever was not adopted may be a file the sender serves: closed on the closer.
  for (UniqueFd& fd : descriptors) closer_.Close(std::move(fd), waiting.uid);
  Refuse(std::move(waiting), outcome);
}

void MemoryGate::Refuse(Waiting waiting, const Status& status) {
  transport::HandOverReply reply;
  reply.status = transport::ToWireStatus(status.code());
  reply.message = status.message().substr(0, transport::kMaxHandOverMessageBytes);
  (void)transport::SendHandOverReply(waiting.connection.get(), reply);  // the client may be gone
  closer_.Close(std::move(waiting.connection), waiting.uid);
}

}  // namespace kvault::server
