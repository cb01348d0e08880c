#pragma once
// MemoryGate: the process that receives kvaultd's memory hand-overs (docs/daemon.md, "Process
// memory"; transport/process_memory.md). Any local user may connect to the memory
// socket and send descriptors, and releasing a descriptor can wait forever: a file of a FUSE
// file system its sender serves is flushed on close (and, with a writeback cache, written back
// on release), and the kernel waits for that answer uninterruptibly once the sender has read
// the request; a process with a thread waiting so cannot finish exiting. So nothing a client
// sends enters kvaultd unchecked: MemorySocket (memory_socket.h) binds and listens, starts this
// process (`kvaultd --memory-gate`, the same program) with the listener, and keeps no copy of
// it. The gate accepts the connections, reads each request, and checks its descriptor through
// procfs alone (transport::ProcessMemory::Adopt), or, for a region, by its memfd seals, open
// flags and size (transport::RegionFile::Adopt). Only a process's memory file or such a memfd
// (neither has a flush or write-back to wait on) goes on to kvaultd, over a socket pair, with the
// request and the sender's credentials under an id; kvaultd answers with the reply for that id,
// which the gate sends to the client. Every descriptor a client sent, its connections included, is
// released here, on a DeferredCloser (one close at a time per user, so a close that never
// returns holds up only that user's). kvaultd kills the gate when it stops and waits for it at
// most a second.
//
// One thread serves every connection: requests and replies are single packets
// (SOCK_SEQPACKET), so it handles a connection only once its whole request is there and never
// waits on one. A connection must send its request within `io_timeout`, and kvaultd must answer
// within `io_timeout` too; at most kMaxPending connections wait for either, kMaxPendingPerUser
// of one user (SO_PEERCRED), so clients that connect and say nothing cannot keep others out.
// While kMaxUnclosed descriptors (or kMaxUnclosedPerUser of the user) wait to be closed, it
// reads no more requests (of that user) and accepts no connection.
//
// Thread-safety: one MemoryGate per process, driven by Run from one thread; the link functions
// are free functions without shared state.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <unordered_map>
#include <vector>

#include "control/deferred_closer.h"
#include "kvault/common/file_io.h"
#include "kvault/common/result.h"
#include "kvault/transport/local/memory_handover.h"

namespace kvault::server {

// The gate's command line: PROGRAM --memory-gate IO_TIMEOUT_MS PARENT_PID LOG_LEVEL, with the
// listening memory socket on descriptor 3 and its end of the socket pair on descriptor 4; it
// logs to the standard error it inherits.
inline constexpr const char* kMemoryGateFlag = "--memory-gate";
inline constexpr int kMemoryGateListenerFd = 3;
inline constexpr int kMemoryGateLinkFd = 4;

// The link between the gate and kvaultd (a SOCK_SEQPACKET socket pair), one packet each:
//   ready      gate -> kvaultd, once, when it serves: the byte 'R'
//   heartbeat  gate -> kvaultd, about once a second while it serves (not while its closer is
//              full): the byte 'H'. kvaultd replaces a gate it has not heard from for
//              kGateSilence.
//   hand-over  gate -> kvaultd: id (u64 little-endian), the client's request
//              (kHandOverRequestBytes, or kRegionRequestBytes for a region), the sender's uid and
//              pid (u32 little-endian each), with the client's memory file (or region file)
//              attached (SCM_RIGHTS)
//   reply      kvaultd -> gate: id, then the encoded HandOverReply for the client
struct ForwardedHandOver {
  uint64_t id = 0;
  transport::HandedOver handed;
  UniqueFd memory;
};
inline constexpr std::chrono::seconds kGateSilence{10};
struct GateMessage {
  bool heartbeat = false;
  ForwardedHandOver hand_over;  // when not a heartbeat
};
struct GateReply {
  uint64_t id = 0;
  std::vector<uint8_t> reply;  // EncodeHandOverReply's bytes
};
inline constexpr size_t kForwardedHandOverBytes = 8 + transport::kHandOverRequestBytes + 8;
inline constexpr size_t kForwardedRegionBytes = 8 + transport::kRegionRequestBytes + 8;

// Gate side. Each sends without waiting; Unavailable when kvaultd's end is gone or full.
Status SendGateReady(int link);
Status SendGateHeartbeat(int link);
Status ForwardHandOver(int link, uint64_t id, const transport::HandedOver& handed, int memory);
// Reads one reply without waiting; nullopt when nothing has arrived. Unavailable when kvaultd's
// end closed; InvalidArgument for a packet that is not a reply.
Result<std::optional<GateReply>> ReceiveGateReply(int link);

// kvaultd side. Waits for the ready byte until `deadline` (Unavailable: the gate did not start).
Status WaitForGateReady(int link, std::chrono::steady_clock::time_point deadline);
// Reads one heartbeat or hand-over without waiting; nullopt when nothing has arrived.
// Unavailable when the gate's end closed; InvalidArgument or Corruption for a packet that is
// neither (its descriptors are closed).
Result<std::optional<GateMessage>> ReceiveFromGate(int link);
// Sends the reply for hand-over `id` without waiting. Unavailable when the gate's end is gone
// or full (the gate then refuses the client when its time is up).
Status SendGateReply(int link, uint64_t id, const transport::HandOverReply& reply);

// main() of `kvaultd --memory-gate ...`: checks its arguments and descriptors, dies with its
// parent, raises its soft limit of open descriptors to the hard one, and serves until kvaultd
// closes its end of the socket pair; it then exits at once (_exit: nothing it holds is released
// by a destructor). Exit code 0 then, 2 for bad arguments or descriptors.
int MemoryGateMain(int argc, char** argv);

class MemoryGate {
 public:
  MemoryGate(int listener, int link, std::chrono::milliseconds io_timeout)
      : listener_(listener), link_(link), io_timeout_(io_timeout) {}
  // Serves until the link's other end closes.
  void Run();

 private:
  struct Waiting {
    UniqueFd connection;
    std::chrono::steady_clock::time_point deadline;
    uint32_t uid;
  };
  static constexpr size_t kMaxPending = 128;
  static constexpr size_t kMaxPendingPerUser = 8;
  static constexpr size_t kMaxUnclosed = 64;
  static constexpr size_t kMaxUnclosedPerUser = 8;

  // Connections of `uid` waiting for their request or for kvaultd's answer.
  size_t PendingOf(uint32_t uid) const;
  // Accepts what the listener has, while there is room. False when the descriptor table (or
  // memory) is full: the caller stops polling the listener for a while.
  bool Accept();
  // Reads the request that has arrived on `waiting` and passes it on, or refuses it.
  void HandOver(Waiting waiting);
  // Sends kvaultd's replies that arrived to their clients. False when kvaultd is gone.
  bool DeliverReplies();
  // Refuses `waiting` with `status` and closes it (on the closer).
  void Refuse(Waiting waiting, const Status& status);

  const int listener_;
  const int link_;
  const std::chrono::milliseconds io_timeout_;
  std::vector<Waiting> waiting_;                     // for their request
  std::unordered_map<uint64_t, Waiting> answering_;  // for kvaultd's answer, by id
  uint64_t next_id_ = 1;
  std::chrono::steady_clock::time_point last_heartbeat_{};
  DeferredCloser closer_;
};

}  // namespace kvault::server
