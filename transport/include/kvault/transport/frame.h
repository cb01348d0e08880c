#pragma once
// Frames of the control-plane protocol (docs/protocol.md §2): a fixed 24-byte little-endian
// header followed by a message body of body_length bytes.
//
//   offset  size  field
//   0       4     magic        the bytes "KVLT"
//   4       2     version      protocol version, kProtocolVersion
//   6       2     type         MessageType
//   8       2     flags        reserved, 0 (every bit)
//   10      2     reserved     0
//   12      8     request_id   chosen by the requester, echoed by the reply
//   20      4     body_length  bytes after the header, <= ProtocolLimits::max_body_bytes
//
// The magic, version and request id keep these offsets in every future version, so a peer can
// always recognise a frame of another version and name the request it refuses.
// Everything here is a pure function of its arguments: thread-safe.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "kvault/common/result.h"
#include "kvault/transport/protocol_limits.h"

namespace kvault::transport {

inline constexpr uint32_t kFrameMagic = 0x544C564B;  // bytes 4B 56 4C 54 = "KVLT"
// Version 3: HelloReply names the memory socket, AuthReply carries the server's proof, and
// AttachMemory redeems a memory handle; Hello has no client_pid any more (docs/protocol.md §8).
// A peer speaks only this version; a frame of any other version, 1 and 2 included, is refused.
inline constexpr uint16_t kProtocolVersion = 3;
inline constexpr size_t kFrameHeaderBytes = 24;
// Flag bits this version understands: none. Any other bit is refused.
inline constexpr uint16_t kKnownFrameFlags = 0;

// Message type numbers. A reply is its request's number with bit 15 set; Error (0x8000) answers
// any request. Never renumber; docs/protocol.md §4 lists the body of each.
enum class MessageType : uint16_t {
  kHello = 0x0001,
  kAuth = 0x0002,
  kProveWorker = 0x0003,
  kAttachMemory = 0x0004,
  kLookup = 0x0010,
  kStore = 0x0011,
  kLoad = 0x0012,
  kReleaseLease = 0x0013,
  kDelete = 0x0014,
  kGpuExport = 0x0015,
  kReleaseMemory = 0x0016,
  kStats = 0x0020,
  kPing = 0x0030,
  kError = 0x8000,
  kHelloReply = 0x8001,
  kAuthReply = 0x8002,
  kProveWorkerReply = 0x8003,
  kAttachMemoryReply = 0x8004,
  kLookupReply = 0x8010,
  kStoreReply = 0x8011,
  kLoadReply = 0x8012,
  kReleaseLeaseReply = 0x8013,
  kDeleteReply = 0x8014,
  kGpuExportReply = 0x8015,
  kReleaseMemoryReply = 0x8016,
  kStatsReply = 0x8020,
  kPong = 0x8030,
};

// Stable snake_case name of a type ("hello", "lookup_reply", ...), for logs and metric labels;
// "unknown" for a number that is not a MessageType.
std::string_view MessageTypeName(MessageType type);
// True when `raw` is one of the MessageType numbers above.
bool IsKnownMessageType(uint16_t raw);
// True for replies and Error (bit 15 set): what only a server sends.
inline bool IsReply(MessageType type) { return (static_cast<uint16_t>(type) & 0x8000) != 0; }
// The reply type of a request type. Precondition: !IsReply(request) and a known type.
inline MessageType ReplyTypeFor(MessageType request) {
  return static_cast<MessageType>(static_cast<uint16_t>(request) | 0x8000);
}

struct FrameHeader {
  uint16_t version = kProtocolVersion;
  MessageType type = MessageType::kPing;
  uint16_t flags = 0;
  uint64_t request_id = 0;
  uint32_t body_length = 0;
  bool operator==(const FrameHeader&) const = default;
};

// Writes the 24 header bytes (magic, the fields, reserved 0) at `out`, which must have room for
// kFrameHeaderBytes. Performs no validation.
void EncodeFrameHeader(const FrameHeader& header, uint8_t* out);

// Decodes and checks the first kFrameHeaderBytes of `bytes` (more bytes are ignored). Never reads
// outside `bytes`. Checks, in this order, and returns:
//   - fewer than kFrameHeaderBytes bytes: Corruption ("truncated frame header");
//   - a magic other than "KVLT": Corruption ("bad magic");
//   - a version other than kProtocolVersion: Unsupported, and only in this case; the server
//     answers it with ErrorReply{kUnsupportedVersion} (framed as kProtocolVersion) and closes;
//   - a flag bit outside kKnownFrameFlags, or a nonzero reserved field: Corruption;
//   - a type that is not a MessageType: Corruption ("unknown message type");
//   - body_length > limits.max_body_bytes: OutOfRange.
// Any failure leaves the stream unusable: the body length cannot be trusted, so the connection is
// closed after an optional ErrorReply.
Result<FrameHeader> DecodeFrameHeader(std::span<const uint8_t> bytes,
                                      const ProtocolLimits& limits = {});

// The request id of a header whose magic is "KVLT", whatever its version or other fields;
// nullopt for fewer than kFrameHeaderBytes bytes or another magic. Lets a server name the request
// in the ErrorReply to a header it refuses.
std::optional<uint64_t> PeekRequestId(std::span<const uint8_t> bytes);

// One whole frame held elsewhere: the decoded header and a view of its body.
struct FrameView {
  FrameHeader header;
  std::span<const uint8_t> body;
};

// Decodes a buffer that holds exactly one frame: DecodeFrameHeader's statuses, then Corruption
// when `bytes` is shorter ("truncated frame body") or longer ("trailing bytes") than the header
// plus body_length. The body is not decoded. `body` points into `bytes`.
Result<FrameView> DecodeFrame(std::span<const uint8_t> bytes, const ProtocolLimits& limits = {});

// Completes a frame whose encoding began at out->at(frame_start): kFrameHeaderBytes of room for
// the header, then the body up to out->end(). Writes the header with this type, request id and
// the body's length. Returns OutOfRange, and truncates `out` back to frame_start, when the body
// exceeds limits.max_body_bytes. Used by the AppendFrame templates of messages.h.
Status FinishFrame(MessageType type, uint64_t request_id, const ProtocolLimits& limits,
                   size_t frame_start, std::vector<uint8_t>* out);

}  // namespace kvault::transport
