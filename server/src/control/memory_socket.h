#pragma once
// MemorySocket: kvaultd's Unix socket for the memory hand-over (docs/memory_handover.md;
// transport/local/memory_handover.h). A client on this host that sees the socket's
// path in its HelloReply connects, sends one request with a descriptor of its own memory, and
// gets a handle that its Auth redeems (MemoryHandles).
//
// This side binds and listens (so a client's SO_PEERCRED check of the listener sees this
// process), and starts the memory gate (memory_gate.h) with the listener, keeping no copy of
// it: the gate accepts the connections and receives everything clients send, and only a
// process's memory file (or a region's sealed memfd), with its request, comes on to kvaultd. A
// thread here receives those, issues the handle and sends the reply back to the gate for the
// client; it also drops expired handles, at least once a second. A gate that dies is started again,
// with a fresh listener at the same path, a second later (longer, up to 30 s, while it keeps dying
// at once); one not heard from for kGateSilence (stuck releasing what a client sent) is killed,
// left behind and replaced at once, up to kMaxLeftBehind stuck ones (then the plane stays off).
// When the socket stops, the gate is killed and waited for at most a second (it may be stuck
// releasing a descriptor a client sent, which only that client's file system ends). A refusal names
// its reason to the client and, with the sender's uid and pid (no handle, no bytes), in the log.
//
// Thread-safety: Start and the destructor from one controlling thread.

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "control/memory_gate.h"
#include "core/memory_handles.h"
#include "kvault/common/file_io.h"
#include "kvault/common/result.h"

namespace kvault::server {

class MemorySocket {
 public:
  // Binds `path` (mode 0666: who may use the plane is decided by the Auth that redeems the
  // handle), listens, starts the gate (`gate_program`, which must be kvaultd: /proc/self/exe in
  // kvaultd) and waits until it serves (up to 5 s), and starts the thread. An empty `path` is
  // memory.sock in a fresh directory /tmp/kvaultd-XXXXXX (mode 0755, its name unpredictable, so no
  // other user can take the name first or replace the socket), removed with the socket. A socket
  // file that no server answers at any more (left by a daemon that was killed) is replaced.
  // InvalidArgument for a path that is relative or too long for a Unix socket, or names something
  // that is not a socket; Unavailable when a live server listens there, the gate cannot be started,
  // or the system refuses. `handles` must outlive the socket.
  static Result<std::unique_ptr<MemorySocket>> Start(
      const std::string& path, MemoryHandles* handles, const std::string& gate_program,
      std::chrono::milliseconds io_timeout = std::chrono::milliseconds(2'000));

  // Stops the thread and the gate, and removes the socket file (when it is still the one bound)
  // and the fresh directory Start made for it.
  ~MemorySocket();
  MemorySocket(const MemorySocket&) = delete;
  MemorySocket& operator=(const MemorySocket&) = delete;

  const std::string& path() const { return path_; }
  // The gate's process id at this moment (-1 while it is being started again).
  pid_t gate_pid() const { return gate_.load(); }

 private:
  MemorySocket(std::string path, std::string fresh_directory, MemoryHandles* handles,
               std::string gate_program, std::chrono::milliseconds io_timeout)
      : path_(std::move(path)),
        fresh_directory_(std::move(fresh_directory)),
        handles_(handles),
        gate_program_(std::move(gate_program)),
        io_timeout_(io_timeout) {}

  // Binds a fresh socket at path_ (mode 0600 for now) and listens; socket_file_ holds the file.
  Result<UniqueFd> BindListener();
  // Sets the socket file's mode to 0666, once its gate serves.
  Status OpenSocketToAll();
  // Removes the socket file at path_ when it is still the one this object bound.
  void RemoveSocketFile();
  // Binds a fresh listener, starts a gate with it and a fresh socket pair (link_ is this side's
  // end), keeps no copy of the listener, and waits for the gate to say it is ready.
  Status StartGate();
  // Kills the gate and reaps it, waiting at most `bound`; one not reaped by then is left behind
  // (left_behind_).
  void StopGate(std::chrono::milliseconds bound);
  // Whether `gate` has exited and is reaped now (its exit logged unless it was killed).
  static bool Reaped(pid_t gate);
  void Serve();
  // Issues the handle for what the gate passed on, or refuses, and sends the gate the reply.
  void Issue(ForwardedHandOver forwarded);

  const std::string path_;
  const std::string fresh_directory_;  // made by Start for an empty path; else empty
  MemoryHandles* const handles_;
  const std::string gate_program_;
  const std::chrono::milliseconds io_timeout_;
  UniqueFd link_;  // this side of the socket pair with the gate
  UniqueFd stop_;  // an eventfd written by the destructor
  std::atomic<pid_t> gate_{-1};                       // written by Start and the thread
  std::chrono::steady_clock::time_point started_at_;  // of the gate
  std::chrono::steady_clock::time_point last_heard_;  // from the gate
  // Gates killed but not reaped: stuck releasing what a client sent. At most kMaxLeftBehind
  // before no more are started.
  static constexpr size_t kMaxLeftBehind = 4;
  std::vector<pid_t> left_behind_;
  UniqueFd socket_file_;  // O_PATH descriptor of the socket file bound last
  std::thread thread_;
};

}  // namespace kvault::server
