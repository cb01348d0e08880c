#pragma once
// The bytes of the memory hand-over (docs/memory_handover.md): on the server's memory socket
// (HelloReply::memory_socket, a Unix SOCK_SEQPACKET socket), a client on the same host hands
// over its own /proc/self/mem descriptor and gets back a 32-byte memory handle, which its
// AttachMemory carries. Only the encoding lives here; no sockets. All integers little-endian.
//
//   request (client -> server, exactly kHandOverRequestBytes, sent in one sendmsg together with
//   one SCM_RIGHTS descriptor: the client's /proc/self/mem opened O_RDWR)
//     0   4   magic          "KVMH"
//     4   2   version        kHandOverVersion
//     6   2   reserved       0
//     8   8   probe_address  where in the client's memory the probe bytes lie; nonzero
//     16  16  probe          random bytes the client wrote at probe_address
//     32  19  client_end     the client's end of its TCP control connection (getsockname)
//     51  19  server_end     the server's end of it, as the client sees it (getpeername)
//   each end (19 bytes)
//     +0  1   family         4 or 6
//     +1  16  address        network byte order; family 4: the first 4 bytes, the other 12 zero;
//                            family 6: never an IPv4-mapped address (::ffff:0:0/96), which is
//                            sent as family 4
//     +17 2   port           nonzero
//   reply (server -> client)
//     0   4   magic          "KVMH"
//     4   2   version        kHandOverVersion
//     6   1   status         WireStatus byte
//     7   1   reserved       0
//     8   32  handle         nonzero exactly when status is ok
//     40  2   message_bytes  <= kMaxHandOverMessageBytes
//     42  n   message        UTF-8, why the hand-over was refused; may be empty
//
//   region request (client -> server, exactly kRegionRequestBytes, in one sendmsg together with
//   one SCM_RIGHTS descriptor: a sealed memfd the client maps at `base`; answered by a reply as
//   above, whose handle AttachMemory redeems for the session that attached the client's memory)
//     0   4   magic          "KVMR"
//     4   2   version        kHandOverVersion
//     6   2   reserved       0
//     8   8   base           where the client maps the file's first byte; nonzero
//     16  8   length         bytes of the file mapped there; nonzero, base + length <= 2^63
//     24  19  client_end     as in the request above
//     43  19  server_end
//
// The request goes straight to the daemon over its Unix socket, never through whatever sits on
// the control connection, so its two ends are what a relay there can neither see nor change: the
// daemon's AttachMemory redeems the handle only on a session whose connection ends, as the
// daemon sees them, equal them.
//
// Plain value types; pure functions: thread-safe.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "kvault/common/result.h"
#include "kvault/transport/session_messages.h"
#include "kvault/transport/ucx/control_connection.h"
#include "kvault/transport/wire_status.h"

namespace kvault::transport {

inline constexpr uint16_t kHandOverVersion = 1;
inline constexpr size_t kHandOverRequestBytes = 70;
inline constexpr size_t kRegionRequestBytes = 62;
// The bytes of one TcpEnd in a request: family, address, port.
inline constexpr size_t kHandOverEndBytes = 19;
inline constexpr size_t kHandOverReplyHeaderBytes = 42;
inline constexpr size_t kMaxHandOverMessageBytes = 256;

using HandOverProbe = std::array<uint8_t, 16>;

// Client -> server, sent in ONE sendmsg together with one SCM_RIGHTS descriptor: the client's
// /proc/self/mem opened O_RDWR. The server reads `probe.size()` bytes at `probe_address` through
// the descriptor and compares them with `probe`, to check that it is the sender's live memory.
struct HandOverRequest {
  uint64_t probe_address = 0;
  HandOverProbe probe{};
  // Both ends of the client's TCP control connection as the client sees them: its local end
  // (getsockname) and its peer (getpeername). The server's AttachMemory requires that they equal
  // the redeeming session's ends as the server sees them (its peer and its local end), so a relay
  // on the control connection cannot redeem the handle on its own session. Ports nonzero. An
  // IPv4 end has ipv6 false and its address in the first 4 bytes, the other 12 zero (what
  // TcpEnd::V4 and TcpEnd::V6 of an IPv4-mapped address make).
  TcpEnd client_end;
  TcpEnd server_end;
  bool operator==(const HandOverRequest&) const = default;
};

// Client -> server, sent in ONE sendmsg together with one SCM_RIGHTS descriptor: a memfd sealed
// against shrinking and growing (shared_memory_file.h), whose bytes [0, length) the client maps
// at [base, base + length). The server then copies the client's bytes in that range through the
// file instead of through its memory file (docs/memory_handover.md, "Regions").
struct RegionRequest {
  uint64_t base = 0;
  uint64_t length = 0;
  TcpEnd client_end;  // as in HandOverRequest
  TcpEnd server_end;
  bool operator==(const RegionRequest&) const = default;
};

// Server -> client.
struct HandOverReply {
  WireStatus status = WireStatus::kOk;
  // What the client's AttachMemory carries; all zero unless status is kOk.
  Bytes32 handle{};
  // Why the hand-over was refused; may be empty. <= kMaxHandOverMessageBytes.
  std::string message;
  bool operator==(const HandOverReply&) const = default;
};

// Writes each end in its canonical form: an IPv6 end holding an IPv4-mapped address goes out as
// family 4, and bytes 4..15 of an IPv4 end's address as zero, so the decoder gives back the
// request exactly when its ends are canonical (see HandOverRequest). Zero fields are written as
// they are (the decoder refuses them).
std::array<uint8_t, kHandOverRequestBytes> EncodeHandOverRequest(const HandOverRequest& request);

// Exactly kHandOverRequestBytes (the 32-byte request of an earlier draft is refused by its
// length): Corruption for another length, a wrong magic, nonzero reserved, an end whose family is
// neither 4 nor 6, a family-4 end with nonzero bytes after its 4 address bytes, or a family-6 end
// with an IPv4-mapped address; Unsupported for a version other than kHandOverVersion;
// InvalidArgument for probe_address 0 or an end with port 0. Checked in field order; the message
// names the field (client_end, server_end).
Result<HandOverRequest> DecodeHandOverRequest(std::span<const uint8_t> bytes);

// Writes ends as EncodeHandOverRequest does.
std::array<uint8_t, kRegionRequestBytes> EncodeRegionRequest(const RegionRequest& request);

// Exactly kRegionRequestBytes: the statuses of DecodeHandOverRequest (magic "KVMR"), and
// InvalidArgument for base or length 0 or a range that ends past 2^63 (no user address lies
// there).
Result<RegionRequest> DecodeRegionRequest(std::span<const uint8_t> bytes);

// Either request, as the memory socket carries them: told apart by their length.
using MemoryRequest = std::variant<HandOverRequest, RegionRequest>;
std::vector<uint8_t> EncodeMemoryRequest(const MemoryRequest& request);
// kHandOverRequestBytes decode as a hand-over, kRegionRequestBytes as a region (with the
// statuses above); Corruption for another length.
Result<MemoryRequest> DecodeMemoryRequest(std::span<const uint8_t> bytes);

// Precondition: ValidateHandOverReply(reply) is OK.
std::vector<uint8_t> EncodeHandOverReply(const HandOverReply& reply);

// OK when status is kOk exactly when handle is not all zero (else InvalidArgument), message is at
// most kMaxHandOverMessageBytes (else OutOfRange), and status is a known WireStatus (else
// InvalidArgument).
Status ValidateHandOverReply(const HandOverReply& reply);

// From the first kHandOverReplyHeaderBytes of a reply (more bytes are ignored): how many message
// bytes follow. Corruption for fewer bytes, a wrong magic or reserved byte, or a header
// ValidateHandOverReply refuses (unknown status, status and handle disagree); Unsupported for
// another version; OutOfRange for a message length over kMaxHandOverMessageBytes.
Result<size_t> HandOverReplyMessageBytes(std::span<const uint8_t> header);

// A whole reply (header + message): HandOverReplyMessageBytes' statuses, and Corruption for
// trailing or missing bytes.
Result<HandOverReply> DecodeHandOverReply(std::span<const uint8_t> bytes);

}  // namespace kvault::transport
