// MemorySocket (memory_socket.h).

#include "control/memory_socket.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>
#include <utility>

#include "kvault/common/errno_text.h"
#include "kvault/common/log.h"
#include "kvault/transport/local/memory_handover.h"
#include "kvault/transport/local/process_memory.h"

namespace kvault::server {
namespace {

sockaddr_un AddressOf(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), std::min(path.size(), sizeof addr.sun_path - 1));
  return addr;
}

// Makes room for a socket at `path`: nothing there, or a socket file nobody listens at (removed).
Status ClearStaleSocket(const std::string& path, const sockaddr_un& addr) {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status::Ok();
    return Status::Unavailable(ErrnoText("memory socket " + path));
  }
  if (!S_ISSOCK(st.st_mode)) {
    return Status::InvalidArgument("memory socket " + path + " exists and is not a socket");
  }
  UniqueFd probe(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (probe.get() < 0) return Status::Unavailable(ErrnoText("socket"));
  if (connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0 ||
      errno == EAGAIN) {
    return Status::Unavailable("another server listens at memory socket " + path);
  }
  if (errno != ECONNREFUSED) return Status::Unavailable(ErrnoText("memory socket " + path));
  if (unlink(path.c_str()) != 0 && errno != ENOENT) {
    return Status::Unavailable(ErrnoText("removing the stale memory socket " + path));
  }
  return Status::Ok();
}

// Starts `program` as the memory gate (memory_gate.h) with `listener` and `link` as its
// descriptors 3 and 4 and this process's environment. SIGINT, SIGTERM and SIGHUP stay blocked
// there: a Ctrl-C in a terminal or a service manager's SIGTERM to every process of the service
// must not stop the gate while kvaultd drains; kvaultd kills it itself.
Result<pid_t> SpawnGate(const std::string& program, int listener, int link,
                        std::chrono::milliseconds io_timeout) {
  // Copies above the gate's numbers, so that dup2 onto them always makes a fresh descriptor
  // (one without close-on-exec).
  UniqueFd listener_copy(fcntl(listener, F_DUPFD_CLOEXEC, kMemoryGateLinkFd + 1));
  UniqueFd link_copy(fcntl(link, F_DUPFD_CLOEXEC, kMemoryGateLinkFd + 1));
  if (listener_copy.get() < 0 || link_copy.get() < 0) {
    return Status::Unavailable(ErrnoText("memory gate: fcntl"));
  }
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attributes;
  posix_spawn_file_actions_init(&actions);
  posix_spawnattr_init(&attributes);
  posix_spawn_file_actions_adddup2(&actions, listener_copy.get(), kMemoryGateListenerFd);
  posix_spawn_file_actions_adddup2(&actions, link_copy.get(), kMemoryGateLinkFd);
  sigset_t stops;
  sigemptyset(&stops);
  for (int stop : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&stops, stop);
  posix_spawnattr_setsigmask(&attributes, &stops);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK);
  const std::string timeout_ms = std::to_string(std::max<int64_t>(io_timeout.count(), 1));
  const std::string parent = std::to_string(getpid());
  const std::string level(LogLevelName(GetLogLevel()));
  const char* argv[] = {program.c_str(), kMemoryGateFlag, timeout_ms.c_str(),
                        parent.c_str(),  level.c_str(),   nullptr};
  pid_t pid = -1;
  const int failed = posix_spawn(&pid, program.c_str(), &actions, &attributes,
                                 const_cast<char* const*>(argv), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  if (failed != 0) {
    return Status::Unavailable("starting the memory gate " + program + ": " +
                               std::strerror(failed));
  }
  return pid;
}

}  // namespace

Result<std::unique_ptr<MemorySocket>> MemorySocket::Start(const std::string& given,
                                                          MemoryHandles* handles,
                                                          const std::string& gate_program,
                                                          std::chrono::milliseconds io_timeout) {
  std::string path = given;
  std::string fresh_directory;
  if (given.empty()) {
    char name[] = "/tmp/kvaultd-XXXXXX";
    if (mkdtemp(name) == nullptr)
      return Status::Unavailable(ErrnoText("mkdtemp /tmp/kvaultd-XXXXXX"));
    fresh_directory = name;
    path = fresh_directory + "/memory.sock";
    if (chmod(name, 0755) != 0) {
      const Status failed = Status::Unavailable(ErrnoText("chmod " + fresh_directory));
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
  constexpr size_t kMostPathBytes = sizeof(sockaddr_un::sun_path) - 1;
  if (path.empty() || path[0] != '/' || path.size() > kMostPathBytes) {
    return Status::InvalidArgument("memory socket path '" + path +
                                   "' must be absolute and at most " +
                                   std::to_string(kMostPathBytes) + " bytes");
  }
  std::unique_ptr<MemorySocket> self(
      new MemorySocket(path, fresh_directory, handles, gate_program, io_timeout));
  self->stop_ = UniqueFd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (self->stop_.get() < 0) return Status::Unavailable(ErrnoText("memory socket: eventfd"));
  KVAULT_RETURN_IF_ERROR(self->StartGate());
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
  StopGate(std::chrono::seconds(1));
  for (pid_t gate : left_behind_) Reaped(gate);  // killed already
  RemoveSocketFile();
  if (!fresh_directory_.empty()) rmdir(fresh_directory_.c_str());
}

Result<UniqueFd> MemorySocket::BindListener() {
  const sockaddr_un addr = AddressOf(path_);
  UniqueFd listener(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (listener.get() < 0) return Status::Unavailable(ErrnoText("memory socket"));
  if (bind(listener.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    return Status::Unavailable(ErrnoText("binding memory socket " + path_));
  }
  // The file bind made, held open so that it is known for sure later (RemoveSocketFile), and
  // its mode set through it, never through the path (which someone could have turned into a
  // link since): 0600 until the gate serves (until then only this user may connect), then
  // 0666 (OpenSocketToAll).
  socket_file_ = UniqueFd(open(path_.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  struct stat st {};
  if (socket_file_.get() < 0 || fstat(socket_file_.get(), &st) != 0 || !S_ISSOCK(st.st_mode)) {
    socket_file_ = UniqueFd();
    return Status::Unavailable("memory socket " + path_ + ": not the socket just bound");
  }
  // listen() here: SO_PEERCRED gives clients this process's pid and uid, whoever accepts.
  if (chmod(("/proc/self/fd/" + std::to_string(socket_file_.get())).c_str(), 0600) != 0 ||
      listen(listener.get(), 64) != 0) {
    const Status failed = Status::Unavailable(ErrnoText("memory socket " + path_));
    RemoveSocketFile();
    return failed;
  }
  return listener;
}

Status MemorySocket::OpenSocketToAll() {
  if (chmod(("/proc/self/fd/" + std::to_string(socket_file_.get())).c_str(), 0666) != 0) {
    return Status::Unavailable(ErrnoText("memory socket " + path_ + ": chmod"));
  }
  return Status::Ok();
}

void MemorySocket::RemoveSocketFile() {
  struct stat bound {
  }, there{};
  if (socket_file_.get() >= 0 && fstat(socket_file_.get(), &bound) == 0 &&
      lstat(path_.c_str(), &there) == 0 && there.st_ino == bound.st_ino &&
      there.st_dev == bound.st_dev) {
    unlink(path_.c_str());
  }
  socket_file_ = UniqueFd();
}

Status MemorySocket::StartGate() {
  // The socket file of a gate that died goes (no one listens there now), and a fresh one is
  // bound: this process keeps no copy of a listener, whose connections, and what clients queued
  // on them, the last close would release here.
  RemoveSocketFile();
  KVAULT_RETURN_IF_ERROR(ClearStaleSocket(path_, AddressOf(path_)));
  KVAULT_ASSIGN_OR_RETURN(UniqueFd listener, BindListener());
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, pair) != 0) {
    RemoveSocketFile();
    return Status::Unavailable(ErrnoText("memory gate: socketpair"));
  }
  UniqueFd own_end(pair[0]);
  UniqueFd gate_end(pair[1]);  // the gate's copy is its own; this one closes here
  Result<pid_t> gate = SpawnGate(gate_program_, listener.get(), gate_end.get(), io_timeout_);
  if (!gate.ok()) {
    RemoveSocketFile();
    return gate.status();
  }
  gate_ = *gate;
  started_at_ = last_heard_ = std::chrono::steady_clock::now();
  gate_end = UniqueFd();
  listener = UniqueFd();  // the gate's copy is the only one now
  Status ready = WaitForGateReady(own_end.get(), started_at_ + std::chrono::seconds(5));
  if (ready.ok()) ready = OpenSocketToAll();
  if (!ready.ok()) {
    StopGate(std::chrono::seconds(1));
    RemoveSocketFile();
    return ready;
  }
  link_ = std::move(own_end);
  return Status::Ok();
}

void MemorySocket::StopGate(std::chrono::milliseconds bound) {
  const pid_t gate = gate_.exchange(-1);
  if (gate > 0) kill(gate, SIGKILL);  // before the link closes, which would end it too
  link_ = UniqueFd();
  if (gate <= 0) return;
  const auto until = std::chrono::steady_clock::now() + bound;
  while (!Reaped(gate)) {
    if (std::chrono::steady_clock::now() >= until) {
      KVAULT_LOG(LogLevel::kWarn, "memory",
                 "the memory gate (pid " + std::to_string(gate) +
                     ") does not exit: it waits in the release of a descriptor a client sent, "
                     "which only that client's file system can end; left behind");
      left_behind_.push_back(gate);
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

bool MemorySocket::Reaped(pid_t gate) {
  int status = 0;
  pid_t reaped;
  do {
    reaped = waitpid(gate, &status, WNOHANG);
  } while (reaped < 0 && errno == EINTR);
  if (reaped == 0) return false;
  if (reaped == gate && (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)) {
    KVAULT_LOG(LogLevel::kWarn, "memory",
               "the memory gate (pid " + std::to_string(gate) + ") had exited with " +
                   (WIFEXITED(status) ? "code " + std::to_string(WEXITSTATUS(status))
                                      : "signal " + std::to_string(WTERMSIG(status))));
  }
  return true;  // reaped, or not a child of this process any more
}

void MemorySocket::Serve() {
  auto restart_at = std::chrono::steady_clock::time_point::max();  // once the gate is gone
  auto backoff = std::chrono::seconds(1);
  // Stops the gate, which is started again `after` from now, unless too many are stuck.
  auto replace = [&](std::chrono::seconds after) {
    StopGate(std::chrono::seconds(1));
    if (left_behind_.size() >= kMaxLeftBehind) {
      KVAULT_LOG(LogLevel::kError, "memory",
                 std::to_string(left_behind_.size()) +
                     " memory gates are stuck releasing what clients sent; no more are started "
                     "(clients on this host use UCX until kvaultd restarts)");
      RemoveSocketFile();
      restart_at = std::chrono::steady_clock::time_point::max();
      return;
    }
    restart_at = std::chrono::steady_clock::now() + after;
  };
  for (;;) {
    handles_->DropExpired();  // at least once a second (the poll's longest wait)
    std::erase_if(left_behind_, [&](pid_t gate) { return Reaped(gate); });
    const auto now = std::chrono::steady_clock::now();
    const bool gate_up = link_.get() >= 0;
    // Given up while too many gates were stuck: once one of them is reaped, try again.
    if (!gate_up && restart_at == std::chrono::steady_clock::time_point::max() &&
        left_behind_.size() < kMaxLeftBehind) {
      restart_at = now + backoff;
    }
    if (!gate_up && now >= restart_at) {
      if (Status started = StartGate(); started.ok()) {
        restart_at = std::chrono::steady_clock::time_point::max();
      } else {
        backoff = std::min<std::chrono::seconds>(backoff * 2, std::chrono::seconds(30));
        KVAULT_LOG(LogLevel::kWarn, "memory",
                   started.ToString() + "; trying again in " + std::to_string(backoff.count()) +
                       " s (until then clients on this host use UCX)");
        restart_at = now + backoff;
      }
      continue;
    }
    if (gate_up && now - last_heard_ > kGateSilence) {
      KVAULT_LOG(LogLevel::kWarn, "memory",
                 "the memory gate has not been heard from for " +
                     std::to_string(kGateSilence.count()) +
                     " s (stuck releasing what a client sent?); replacing it");
      replace(std::chrono::seconds(0));
      continue;
    }
    pollfd polled[2] = {{stop_.get(), POLLIN, 0}, {link_.get(), POLLIN, 0}};
    if (poll(polled, gate_up ? 2 : 1, 1000) < 0) {
      if (errno != EINTR) {  // ENOMEM: try again a little later
        KVAULT_LOG(LogLevel::kWarn, "memory", ErrnoText("memory socket: poll"));
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      continue;
    }
    if (polled[0].revents != 0) return;
    if (!gate_up || polled[1].revents == 0) continue;
    // Everything that arrived, then whether the gate is still there.
    for (;;) {
      Result<std::optional<GateMessage>> message = ReceiveFromGate(link_.get());
      if (message.ok() && !message->has_value()) break;
      if (message.ok()) {
        last_heard_ = std::chrono::steady_clock::now();
        if (!(*message)->heartbeat) Issue(std::move((*message)->hand_over));
        continue;
      }
      if (message.status().code() != StatusCode::kUnavailable) {  // a packet, but not one
        KVAULT_LOG(LogLevel::kError, "memory", message.status().ToString());
        continue;
      }
      // A gate that served a minute or more is started again a second later; one that keeps
      // dying at once waits longer each time (up to 30 s).
      backoff = std::chrono::steady_clock::now() - started_at_ > std::chrono::minutes(1)
                    ? std::chrono::seconds(1)
                    : std::min<std::chrono::seconds>(backoff * 2, std::chrono::seconds(30));
      KVAULT_LOG(LogLevel::kWarn, "memory",
                 "the memory gate stopped (" + message.status().ToString() +
                     "); starting it again in " + std::to_string(backoff.count()) + " s");
      replace(backoff);
      break;
    }
  }
}

void MemorySocket::Issue(ForwardedHandOver forwarded) {
  const transport::HandedOver& handed = forwarded.handed;
  const std::string who =
      "uid " + std::to_string(handed.peer_uid) + " pid " + std::to_string(handed.peer_pid);
  transport::HandOverReply reply;
  HandedOverMemory kept;
  Status outcome;
  if (const auto* region = std::get_if<transport::RegionRequest>(&handed.request)) {
    // Checked again here: kvaultd trusts nothing the gate passes on.
    Result<transport::RegionFile> file =
        transport::RegionFile::Adopt(&forwarded.memory, region->length);
    outcome = file.status();
    if (file.ok()) {
      kept.region = HandedOverRegion{std::move(*file), region->base};
      kept.connection = transport::ControlConnection{region->server_end, region->client_end};
    }
  } else {
    const auto& request = std::get<transport::HandOverRequest>(handed.request);
    // Checked again here: the gate's check cannot tell this process's own memory file.
    Result<transport::ProcessMemory> memory = transport::ProcessMemory::Adopt(&forwarded.memory);
    outcome = memory.status();
    if (memory.ok()) {
      kept.memory = std::move(*memory);
      kept.probe_address = request.probe_address;
      kept.probe = request.probe;
      kept.connection = transport::ControlConnection{request.server_end, request.client_end};
    }
  }
  if (outcome.ok()) {
    kept.sender_pid = handed.peer_pid;
    kept.sender_uid = handed.peer_uid;
    Result<transport::Bytes32> handle = handles_->Issue(std::move(kept), handed.peer_uid);
    outcome = handle.status();
    if (handle.ok()) reply.handle = *handle;
  }
  if (outcome.ok()) {
    KVAULT_LOG(LogLevel::kDebug, "memory", "memory handed over by " + who);
  } else {
    KVAULT_LOG(LogLevel::kInfo, "memory",
               "memory hand-over by " + who + " refused: " + outcome.ToString());
    reply.status = transport::ToWireStatus(outcome.code());
    reply.message = outcome.message().substr(0, transport::kMaxHandOverMessageBytes);
  }
  // The gate sends it to the client; if it cannot take it now, it refuses the client when its
  // time is up. A memory file not adopted (a process's, as the gate checked) closes here without
  // waiting.
  if (Status sent = SendGateReply(link_.get(), forwarded.id, reply); !sent.ok()) {
    KVAULT_LOG(LogLevel::kDebug, "memory", sent.ToString());
  }
}

}  // namespace kvault::server
