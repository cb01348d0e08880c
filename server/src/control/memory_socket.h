#pragma once
// MemorySocket: kvaultd's Unix socket for the memory hand-over (docs/protocol.md, "The memory
// hand-over"; transport/local/memory_handover.h). A client on this host that sees the socket's
// path in its HelloReply connects, sends one request with a descriptor of its own memory, and
// gets a handle that its Auth redeems (MemoryHandles). One thread serves every connection:
// requests and replies are single packets (SOCK_SEQPACKET), so it handles a connection only once
// its whole request is there and never waits on one. A connection must send its request within
// `io_timeout`; at most kMaxPending connections wait for theirs, kMaxPendingPerUser of one user
// (SO_PEERCRED), so clients that connect and say nothing cannot keep others out.
//
// The thread never touches a client's memory nor calls into the file system of a descriptor it
// was sent: it checks the descriptor through procfs alone (transport::ProcessMemory::Adopt) and
// keeps it with its probe and the connection ends the client named; the session that redeems
// the handle checks them. Every descriptor it received and does not keep is closed on a
// DeferredCloser's thread (the kernel itself drops, without a close, those of packets never
// read and any beyond the one a request may carry); while kMaxUnclosed of them wait there, it
// reads no more requests and accepts no connection. It also drops expired handles, at least
// once a second. A refusal names its reason to the client and, with the
// sender's uid and pid (no handle, no bytes), in the log.
//
// Thread-safety: Start and the destructor from one controlling thread.

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "control/deferred_closer.h"
#include "core/memory_handles.h"
#include "kvault/common/file_io.h"
#include "kvault/common/result.h"

namespace kvault::server {

class MemorySocket {
 public:
  // Binds `path` (mode 0666: who may use the plane is decided by the Auth that redeems the
  // handle), listens, and starts the thread. An empty `path` is memory.sock in a fresh
  // directory /tmp/kvaultd-XXXXXX (mode 0755, its name unpredictable, so no other user can
  // take the name first or replace the socket), removed with the socket. A socket file that no
  // server answers at any more (left by a daemon that was killed) is replaced. InvalidArgument for
  // a path that is relative or too long for a Unix socket, or names something that is not a socket;
  // Unavailable when a live server listens there or the system refuses. `handles` must outlive the
  // socket.
  static Result<std::unique_ptr<MemorySocket>> Start(
      const std::string& path, MemoryHandles* handles,
      std::chrono::milliseconds io_timeout = std::chrono::milliseconds(2'000));

  // Stops the thread and removes the socket file (when it is still the one bound), and the fresh
  // directory Start made for it.
  ~MemorySocket();
  MemorySocket(const MemorySocket&) = delete;
  MemorySocket& operator=(const MemorySocket&) = delete;

  const std::string& path() const { return path_; }

 private:
  MemorySocket(std::string path, std::string fresh_directory, MemoryHandles* handles,
               std::chrono::milliseconds io_timeout)
      : path_(std::move(path)),
        fresh_directory_(std::move(fresh_directory)),
        handles_(handles),
        io_timeout_(io_timeout) {}
  struct Waiting {
    UniqueFd connection;
    std::chrono::steady_clock::time_point deadline;
    uint32_t uid;
  };
  static constexpr size_t kMaxPending = 128;
  static constexpr size_t kMaxPendingPerUser = 8;
  static constexpr size_t kMaxUnclosed = 64;
  static constexpr size_t kMaxUnclosedPerUser = 8;

  void Serve();
  // Accepts what the listener has, while there is room. False when the descriptor table (or
  // memory) is full: the caller stops polling the listener for a while.
  bool Accept(std::vector<Waiting>* waiting);
  // Reads the request that has arrived on `connection` (of user `uid`), issues a handle or
  // refuses, replies.
  void HandOver(int connection, uint32_t uid);

  const std::string path_;
  const std::string fresh_directory_;  // made by Start for an empty path; else empty
  MemoryHandles* const handles_;
  const std::chrono::milliseconds io_timeout_;
  UniqueFd listener_;
  UniqueFd stop_;  // an eventfd written by the destructor
  DeferredCloser closer_;
  uint64_t inode_ = 0;
  uint64_t device_ = 0;
  std::thread thread_;
};

}  // namespace kvault::server
