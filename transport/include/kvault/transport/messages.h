#pragma once
// Whole frames of typed messages: encoding any message struct into a frame, and decoding a
// received frame into the struct its type names (docs/protocol.md §2, §4).
// Pure functions: thread-safe.

#include <cstdint>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "kvault/common/result.h"
#include "kvault/transport/block_messages.h"
#include "kvault/transport/frame.h"
#include "kvault/transport/protocol_limits.h"
#include "kvault/transport/session_messages.h"

namespace kvault::transport {

// Any message, for dispatch on a received frame.
using Message =
    std::variant<Hello, HelloReply, Auth, AuthReply, ProveWorker, ProveWorkerReply, AttachMemory,
                 AttachMemoryReply, Lookup, LookupReply, Store, StoreReply, Load, LoadReply,
                 ReleaseLease, ReleaseLeaseReply, Delete, DeleteReply, GpuExport, GpuExportReply,
                 ReleaseMemory, ReleaseMemoryReply, Stats, StatsReply, Ping, Pong, ErrorReply>;

// The type of the alternative `message` holds.
MessageType TypeOf(const Message& message);

// True for the requests a connection may send before a successful Auth: Hello, Auth and Ping.
// The server answers any other request on such a connection with ErrorReply{kUnauthenticated}.
bool AllowedBeforeAuth(MessageType type);

// The longest body a request allowed before authentication (AllowedBeforeAuth) has under
// `limits`: a Hello with the longest tenant, client name and worker address. A server refuses a
// longer frame on a connection that has not authenticated before reading its body, so that
// connections without a token cannot make it buffer max_body_bytes each.
uint64_t MaxBodyBeforeAuth(const ProtocolLimits& limits);

// Appends one frame (header and body) holding `message` to *out. Returns message.Validate's
// status (InvalidArgument or OutOfRange, prefixed with the type's name) or FinishFrame's
// OutOfRange for a body over limits.max_body_bytes; *out is then left as it was.
// `limits` are the peer's: the server's own for its replies, the server's announced limits for a
// client's requests (the defaults before HelloReply).
template <typename M>
Status AppendFrame(const M& message, uint64_t request_id, const ProtocolLimits& limits,
                   std::vector<uint8_t>* out) {
  Status valid = message.Validate(limits);
  if (!valid.ok()) return valid.WithContext(MessageTypeName(M::kType));
  const size_t start = out->size();
  out->resize(start + kFrameHeaderBytes);
  message.EncodeBody(out);
  return FinishFrame(M::kType, request_id, limits, start, out);
}

// AppendFrame into a new vector.
template <typename M>
Result<std::vector<uint8_t>> EncodeFrame(const M& message, uint64_t request_id,
                                         const ProtocolLimits& limits = {}) {
  std::vector<uint8_t> out;
  KVAULT_RETURN_IF_ERROR(AppendFrame(message, request_id, limits, &out));
  return out;
}

// AppendFrame for whichever message `message` holds.
Status AppendMessageFrame(const Message& message, uint64_t request_id, const ProtocolLimits& limits,
                          std::vector<uint8_t>* out);

// Decodes `body` as the message `type` names, with that message's DecodeBody (whose statuses it
// returns). Returns Corruption for a type that is not a MessageType.
Result<Message> DecodeMessage(MessageType type, std::span<const uint8_t> body,
                              const ProtocolLimits& limits = {});

// Decodes a frame that must hold an M: Corruption ("expected <M>, got <type>") when
// header.type is another type, else M::DecodeBody's result. A client uses it for the reply it
// waits for, after checking for kError.
template <typename M>
Result<M> DecodeFrameAs(const FrameHeader& header, std::span<const uint8_t> body,
                        const ProtocolLimits& limits = {}) {
  if (header.type != M::kType) {
    return Status::Corruption("expected " + std::string(MessageTypeName(M::kType)) + ", got " +
                              std::string(MessageTypeName(header.type)));
  }
  return M::DecodeBody(body, limits);
}

}  // namespace kvault::transport
