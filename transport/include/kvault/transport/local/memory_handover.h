#pragma once
// The memory hand-over (docs/memory_handover.md): how a client on the server's
// host gives the server its memory for the process-memory data plane. The client connects to
// the server's Unix socket (SOCK_SEQPACKET; HelloReply::memory_socket), sends one request
// together with a descriptor of its own /proc/self/mem (SCM_RIGHTS) and gets back a handle,
// which its AttachMemory carries, after a successful Auth. A request and a reply are one packet
// each, so a server never waits on a half-sent one. The bytes are memory_handover_wire.h's; this
// file moves them.
//
// Thread-safety: free functions without shared state.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "kvault/common/file_io.h"
#include "kvault/common/result.h"
#include "kvault/transport/local/memory_handover_wire.h"
#include "kvault/transport/session_messages.h"
#include "kvault/transport/ucx/control_connection.h"

namespace kvault::transport {

using HandOverDeadline = std::chrono::steady_clock::time_point;

// Who the client expects at the memory socket, and for which control connection it hands over.
struct HandOverTarget {
  std::string socket_path;       // HelloReply::memory_socket
  uint32_t server_pid = 0;       // HelloReply::server_pid and server_uid, vouched for by the
  uint32_t server_uid = 0;       // AuthReply's server proof
  ControlConnection connection;  // the control connection's ends as the client sees them
                                 // (client = its local end, server = its peer)
};

// Client side: hands this process's memory over to the server listening at target.socket_path
// and returns the handle it issued. Before anything is sent, the listener's credentials
// (SO_PEERCRED) must be target.server_pid and target.server_uid: memory never goes to another
// process listening at that path (Unavailable otherwise). Fills *probe with random bytes and
// sends their address: they must stay where they are, unchanged, until the server has answered
// the AttachMemory that carries the handle (it reads them back then). Unavailable when the
// socket cannot be reached, the deadline passes or the reply is malformed; the reply's status
// (StatusFromWire) when the server refused.
Result<Bytes32> HandOverOwnMemory(const HandOverTarget& target, HandOverProbe* probe,
                                  HandOverDeadline deadline);

// Client side: hands the server one region of this process's memory, the file `file` (a
// SharedMemoryFile's) whose bytes [0, length) are mapped at `base`, for the control connection of
// `target`, and returns the handle it issued: AttachMemory redeems it on the session that already
// attached this process's memory (docs/memory_handover.md, "Regions"). The listener is checked as
// for HandOverOwnMemory; the same statuses.
Result<Bytes32> HandOverRegion(const HandOverTarget& target, uint64_t base, uint64_t length,
                               int file, HandOverDeadline deadline);

// What a server received on one connection of its memory socket: a process's memory, or a region
// of it.
struct HandedOver {
  MemoryRequest request;
  uint32_t peer_uid = 0;  // the sender's user (SO_PEERCRED)
  uint32_t peer_pid = 0;  // the sender's process, in this process's pid namespace (0: unknown)
};

// Server side: reads the one request packet (a hand-over or a region request, told apart by its
// size) from the accepted socket `connection` without waiting (call it once poll says the
// connection is readable). Every descriptor that came with it is appended to *descriptors,
// whatever the outcome: the caller decides where to close them (closing one may call into a
// file system the sender serves). OK only with exactly one. InvalidArgument or Corruption
// (memory_handover_wire.h) for a malformed request, one that came without exactly one
// descriptor, or a packet of another size; Unavailable when nothing has arrived or the peer
// closed.
Result<HandedOver> ReceiveHandOver(int connection, std::vector<UniqueFd>* descriptors);

// Sends `bytes` as one message on the Unix socket `socket` without waiting, with `descriptor`
// attached (SCM_RIGHTS) when it is >= 0. The bytes sent, or -1 with errno set.
ssize_t SendWithDescriptor(int socket, std::span<const uint8_t> bytes, int descriptor);

// Receives one message from the Unix socket `socket` into `buffer` without waiting, appending
// every descriptor that came with it to *descriptors (up to 253, as many as a message carries)
// and its msg_flags (MSG_TRUNC, MSG_CTRUNC) to *flags. The bytes
// received (0: the peer closed, or sent an empty message), or -1 with errno set.
ssize_t ReceiveWithDescriptors(int socket, std::span<uint8_t> buffer,
                               std::vector<UniqueFd>* descriptors, int* flags);

// Server side: sends `reply` (ValidateHandOverReply must hold) as one packet without waiting (a
// reply fits the socket's buffer). Unavailable when the peer is gone.
Status SendHandOverReply(int connection, const HandOverReply& reply);

}  // namespace kvault::transport
