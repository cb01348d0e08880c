// MemorySocket (memory_socket.h).

#include "control/memory_socket.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "kvault/common/log.h"
#include "kvault/transport/local/memory_handover.h"
#include "kvault/transport/local/process_memory.h"

namespace kvault::server {
namespace {

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

// Makes room for a socket at `path`: nothing there, or a socket file nobody listens at (removed).
Status ClearStaleSocket(const std::string& path, const sockaddr_un& addr) {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status::Ok();
    return Status::Unavailable(Errno("memory socket " + path));
  }
  if (!S_ISSOCK(st.st_mode)) {
    return Status::InvalidArgument("memory socket " + path + " exists and is not a socket");
  }
  UniqueFd probe(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (probe.get() < 0) return Status::Unavailable(Errno("socket"));
  if (connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0 ||
      errno == EAGAIN) {
    return Status::Unavailable("another server listens at memory socket " + path);
  }
  if (errno != ECONNREFUSED) return Status::Unavailable(Errno("memory socket " + path));
  if (unlink(path.c_str()) != 0 && errno != ENOENT) {
    return Status::Unavailable(Errno("removing the stale memory socket " + path));
  }
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<MemorySocket>> MemorySocket::Start(const std::string& given,
                                                          MemoryHandles* handles,
                                                          std::chrono::milliseconds io_timeout) {
  std::string path = given;
  std::string fresh_directory;
  if (given.empty()) {
    char name[] = "/tmp/kvaultd-XXXXXX";
    if (mkdtemp(name) == nullptr) return Status::Unavailable(Errno("mkdtemp /tmp/kvaultd-XXXXXX"));
    fresh_directory = name;
    path = fresh_directory + "/memory.sock";
    if (chmod(name, 0755) != 0) {
      const Status failed = Status::Unavailable(Errno("chmod " + fresh_directory));
      rmdir(name);
      return failed;
    }
  }
  // Removes the fresh directory again on every early return.
  struct DirectoryGuard {
    std::string directory;
    ~DirectoryGuard() {
      if (!directory.empty()) rmdir(directory.c_str());
    }
  } guard{fresh_directory};
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path[0] != '/' || path.size() >= sizeof addr.sun_path) {
    return Status::InvalidArgument("memory socket path '" + path +
                                   "' must be absolute and at most " +
                                   std::to_string(sizeof addr.sun_path - 1) + " bytes");
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  KVAULT_RETURN_IF_ERROR(ClearStaleSocket(path, addr));
  std::unique_ptr<MemorySocket> self(new MemorySocket(path, fresh_directory, handles, io_timeout));
  self->listener_ = UniqueFd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  self->stop_ = UniqueFd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (self->listener_.get() < 0 || self->stop_.get() < 0) {
    return Status::Unavailable(Errno("memory socket"));
  }
  if (bind(self->listener_.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    return Status::Unavailable(Errno("binding memory socket " + path));
  }
  // The mode is set through a descriptor of what bind made, never through the path (which
  // someone could have turned into a link since).
  UniqueFd made(open(path.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  struct stat st {};
  if (made.get() >= 0 && fstat(made.get(), &st) == 0 && S_ISSOCK(st.st_mode)) {
    self->inode_ = st.st_ino;
    self->device_ = st.st_dev;
  }
  const std::string by_descriptor = "/proc/self/fd/" + std::to_string(made.get());
  if (self->inode_ == 0 || chmod(by_descriptor.c_str(), 0666) != 0 ||
      listen(self->listener_.get(), 64) != 0) {
    const Status failed = Status::Unavailable(Errno("memory socket " + path));
    unlink(path.c_str());
    return failed;
  }
  self->thread_ = std::thread([s = self.get()] { s->Serve(); });
  guard.directory.clear();  // the socket owns it now
  return self;
}

MemorySocket::~MemorySocket() {
  if (thread_.joinable()) {
    const uint64_t one = 1;
    (void)!write(stop_.get(), &one, sizeof one);
    thread_.join();
  }
  struct stat st {};
  if (inode_ != 0 && lstat(path_.c_str(), &st) == 0 && st.st_ino == inode_ &&
      st.st_dev == device_) {
    unlink(path_.c_str());
  }
  if (!fresh_directory_.empty()) rmdir(fresh_directory_.c_str());
}

void MemorySocket::Serve() {
  std::vector<Waiting> waiting;
  std::vector<pollfd> polled;
  auto accept_again = std::chrono::steady_clock::time_point{};  // after a full descriptor table
  for (;;) {
    const auto now = std::chrono::steady_clock::now();
    handles_->DropExpired();  // at least once a second (the poll's longest wait)
    std::erase_if(waiting, [&](const Waiting& w) { return w.deadline <= now; });
    // While descriptors pile up unclosed (a file system that does not answer a close), no
    // request is read and no connection accepted: they wait, and time out.
    const bool stalled = closer_.pending() >= kMaxUnclosed;
    const bool accepting = !stalled && waiting.size() < kMaxPending && now >= accept_again;
    int timeout_ms = 1000;
    polled.assign({{stop_.get(), POLLIN, 0},
                   {listener_.get(), static_cast<short>(accepting ? POLLIN : 0), 0}});
    if (!accepting) timeout_ms = 100;
    for (const Waiting& w : waiting) {
      polled.push_back({w.connection.get(), static_cast<short>(stalled ? 0 : POLLIN), 0});
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(w.deadline - now).count() + 1;
      timeout_ms = std::min(timeout_ms, static_cast<int>(std::max<int64_t>(left, 0)));
    }
    if (poll(polled.data(), polled.size(), timeout_ms) < 0) {
      if (errno != EINTR) {  // ENOMEM: try again a little later
        KVAULT_LOG(LogLevel::kWarn, "memory", Errno("memory socket: poll"));
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      continue;
    }
    if (polled[0].revents != 0) return;
    // Every connection whose request arrived is answered and closed, unless its user's
    // descriptors already wait for the closer (then, or when the closer is full, it is closed
    // unread: the kernel drops the descriptors of an unread packet without a close). One that
    // hung up is closed. poll reports a hang-up even where nothing was asked for.
    size_t kept = 0;
    for (size_t i = 0; i < waiting.size(); ++i) {
      const short events = polled[i + 2].revents;
      const bool hung_up = (events & (POLLHUP | POLLERR)) != 0 && (events & POLLIN) == 0;
      const bool may_read = closer_.pending() < kMaxUnclosed &&
                            closer_.pending_of(waiting[i].uid) < kMaxUnclosedPerUser;
      if (events == 0) {
        if (kept != i) waiting[kept] = std::move(waiting[i]);
        ++kept;
      } else if (may_read && !hung_up) {
        HandOver(waiting[i].connection.get(), waiting[i].uid);
      }  // else: closed unread as it leaves `waiting`
    }
    waiting.resize(kept);
    if (accepting && polled[1].revents != 0 && !Accept(&waiting)) {
      accept_again = std::chrono::steady_clock::now() + std::chrono::milliseconds(100);
    }
  }
}

bool MemorySocket::Accept(std::vector<Waiting>* waiting) {
  while (waiting->size() < kMaxPending) {
    UniqueFd connection(accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (connection.get() < 0) {
      // EMFILE, ENFILE, ENOMEM: the listener stays readable; the caller waits a little.
      return errno != EMFILE && errno != ENFILE && errno != ENOBUFS && errno != ENOMEM;
    }
    ucred cred{};
    socklen_t length = sizeof cred;
    if (getsockopt(connection.get(), SOL_SOCKET, SO_PEERCRED, &cred, &length) != 0) continue;
    const size_t of_user = static_cast<size_t>(std::count_if(
        waiting->begin(), waiting->end(), [&](const Waiting& w) { return w.uid == cred.uid; }));
    if (of_user >= kMaxPendingPerUser) {
      transport::HandOverReply busy;
      busy.status = transport::WireStatus::kUnavailable;
      busy.message = "this user has " + std::to_string(of_user) +
                     " memory hand-over connections waiting for their request";
      (void)transport::SendHandOverReply(connection.get(), busy);
      continue;  // closed
    }
    waiting->push_back(
        {std::move(connection), std::chrono::steady_clock::now() + io_timeout_, cred.uid});
  }
  return true;
}

void MemorySocket::HandOver(int connection, uint32_t uid) {
  std::vector<UniqueFd> descriptors;
  Result<transport::HandedOver> received = transport::ReceiveHandOver(connection, &descriptors);
  transport::HandOverReply reply;
  Status outcome = received.status();
  std::string who = "a client";
  if (received.ok()) {
    who =
        "uid " + std::to_string(received->peer_uid) + " pid " + std::to_string(received->peer_pid);
    Result<transport::ProcessMemory> memory = transport::ProcessMemory::Adopt(&descriptors[0]);
    outcome = memory.status();
    if (memory.ok()) {
      Result<transport::Bytes32> handle = handles_->Issue(
          HandedOverMemory{std::move(*memory), received->request.probe_address,
                           received->request.probe,
                           transport::ControlConnection{received->request.server_end,
                                                        received->request.client_end}},
          received->peer_uid);
      outcome = handle.status();
      if (handle.ok()) reply.handle = *handle;
    }
  }
  if (outcome.ok() || outcome.code() == StatusCode::kUnavailable) {
    // Unavailable: the peer closed or sent nothing; not worth more than debug (nor a flood).
    KVAULT_LOG(LogLevel::kDebug, "memory",
               outcome.ok() ? "memory handed over by " + who
                            : "memory hand-over by " + who + " ended: " + outcome.ToString());
  }
  if (!outcome.ok()) {
    if (outcome.code() != StatusCode::kUnavailable) {
      KVAULT_LOG(LogLevel::kInfo, "memory",
                 "memory hand-over by " + who + " refused: " + outcome.ToString());
    }
    reply.status = transport::ToWireStatus(outcome.code());
    reply.message = outcome.message().substr(0, transport::kMaxHandOverMessageBytes);
  }
  // The client may be gone already; nothing else to do then.
  (void)transport::SendHandOverReply(connection, reply);
  // Whatever was not adopted may be a file the sender serves: closed off this thread.
  for (UniqueFd& fd : descriptors) closer_.Close(std::move(fd), uid);
}

}  // namespace kvault::server
