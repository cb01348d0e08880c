// libFuzzer harness for the control-plane decoder (DESIGN.md §14, docs/protocol.md): any byte
// string fed to a FrameReader, or decoded as one frame, or as the body of any message type, must
// decode or fail with a clear status without reading outside the input or allocating past the
// limits, and whatever decodes must re-encode to exactly the bytes it came from. The same input
// is also decoded as a memory hand-over request and reply (docs/memory_handover.md).
// Built with -fsanitize=fuzzer,address,undefined by tests/fuzz/CMakeLists.txt.

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

#include "kvault/transport/frame_reader.h"
#include "kvault/transport/local/memory_handover_wire.h"
#include "kvault/transport/messages.h"

namespace {

using kvault::Result;
using kvault::Status;
using kvault::StatusCode;
using namespace kvault::transport;  // NOLINT(google-build-using-namespace)

void Require(bool condition) {
  if (!condition) std::abort();
}

// Small limits make the limit paths reachable from short inputs; default ones cover the rest.
ProtocolLimits TightLimits() {
  ProtocolLimits l;
  l.max_body_bytes = kMinBodyBytes;
  l.max_keys_per_batch = 3;
  l.max_block_object_bytes = 4096;
  l.max_string_bytes = kMinStringBytes;
  l.max_remote_key_bytes = 8;
  l.max_worker_address_bytes = 8;
  return l;
}

// A body failure is Corruption (malformed) or OutOfRange (over a limit), nothing else.
void CheckBodyFailure(const Status& s) {
  Require(s.code() == StatusCode::kCorruption || s.code() == StatusCode::kOutOfRange);
  Require(!s.message().empty());
}

// Decodes one frame's body; an accepted message re-encodes to the same frame bytes.
void CheckFrame(const FrameHeader& header, std::span<const uint8_t> body,
                const ProtocolLimits& limits) {
  Require(body.size() == header.body_length);
  Result<Message> m = DecodeMessage(header.type, body, limits);
  if (!m.ok()) {
    CheckBodyFailure(m.status());
    return;
  }
  Require(TypeOf(*m) == header.type);
  std::vector<uint8_t> again;
  Status s = AppendMessageFrame(*m, header.request_id, limits, &again);
  Require(s.ok());
  Require(again.size() == kFrameHeaderBytes + body.size());
  Require(body.empty() ||
          std::memcmp(again.data() + kFrameHeaderBytes, body.data(), body.size()) == 0);
  Result<FrameHeader> reparsed = DecodeFrameHeader(again, limits);
  Require(reparsed.ok() && *reparsed == header);
}

// Feeds the input to a FrameReader in chunks whose sizes come from the input itself.
void FeedStream(std::span<const uint8_t> data, const ProtocolLimits& limits) {
  FrameReader reader(limits);
  size_t at = 0;
  size_t step = 1;
  while (at < data.size()) {
    const size_t n = std::min(step, data.size() - at);
    std::span<const uint8_t> chunk = data.subspan(at, n);
    at += n;
    step = 1 + (data[at - 1] % 61);
    while (!chunk.empty()) {
      Result<size_t> used = reader.Feed(chunk);
      if (!used.ok()) {
        Require(!reader.status().ok());
        Require(reader.bytes_wanted() == 0);
        const StatusCode c = used.status().code();
        Require(c == StatusCode::kCorruption || c == StatusCode::kOutOfRange ||
                c == StatusCode::kUnsupported);
        return;
      }
      Require(*used <= chunk.size());
      chunk = chunk.subspan(*used);
      if (reader.frame_ready()) {
        Frame f = reader.TakeFrame();
        Require(f.body.size() <= limits.max_body_bytes);
        CheckFrame(f.header, f.body, limits);
      } else {
        Require(chunk.empty());
      }
    }
  }
}

// The input as a memory hand-over request and as a whole reply: refused with the documented
// codes, or accepted and re-encoded to exactly the same bytes. The header function agrees with
// the whole-reply decoder.
void CheckHandOver(std::span<const uint8_t> bytes) {
  Result<HandOverRequest> request = DecodeHandOverRequest(bytes);
  if (request.ok()) {
    const auto again = EncodeHandOverRequest(*request);
    Require(bytes.size() == again.size() &&
            std::memcmp(again.data(), bytes.data(), again.size()) == 0);
  } else {
    const StatusCode c = request.status().code();
    Require(c == StatusCode::kCorruption || c == StatusCode::kUnsupported ||
            c == StatusCode::kInvalidArgument);
  }
  Result<size_t> message_bytes = HandOverReplyMessageBytes(bytes);
  Result<HandOverReply> reply = DecodeHandOverReply(bytes);
  if (reply.ok()) {
    Require(message_bytes.ok() && *message_bytes == reply->message.size());
    Require(ValidateHandOverReply(*reply).ok());
    const std::vector<uint8_t> again = EncodeHandOverReply(*reply);
    Require(bytes.size() == again.size() &&
            std::memcmp(again.data(), bytes.data(), again.size()) == 0);
  } else {
    const StatusCode c = reply.status().code();
    Require(c == StatusCode::kCorruption || c == StatusCode::kUnsupported ||
            c == StatusCode::kOutOfRange);
    if (!message_bytes.ok()) Require(message_bytes.status().code() == c);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> bytes(data, size);
  const ProtocolLimits defaults;
  const ProtocolLimits tight = TightLimits();

  CheckHandOver(bytes);

  // The input as a stream of frames.
  FeedStream(bytes, defaults);
  FeedStream(bytes, tight);

  // The input as exactly one frame.
  Result<FrameView> frame = DecodeFrame(bytes, defaults);
  if (frame.ok()) {
    CheckFrame(frame->header, frame->body, defaults);
  } else {
    const StatusCode c = frame.status().code();
    Require(c == StatusCode::kCorruption || c == StatusCode::kOutOfRange ||
            c == StatusCode::kUnsupported);
  }

  // The input after its first byte as the body of the message type that byte picks, so the
  // fuzzer reaches every body decoder without having to build a header first.
  if (!bytes.empty()) {
    constexpr MessageType kTypes[] = {MessageType::kHello,
                                      MessageType::kHelloReply,
                                      MessageType::kAuth,
                                      MessageType::kAuthReply,
                                      MessageType::kProveWorker,
                                      MessageType::kProveWorkerReply,
                                      MessageType::kAttachMemory,
                                      MessageType::kAttachMemoryReply,
                                      MessageType::kLookup,
                                      MessageType::kLookupReply,
                                      MessageType::kStore,
                                      MessageType::kStoreReply,
                                      MessageType::kLoad,
                                      MessageType::kLoadReply,
                                      MessageType::kReleaseLease,
                                      MessageType::kReleaseLeaseReply,
                                      MessageType::kDelete,
                                      MessageType::kDeleteReply,
                                      MessageType::kStats,
                                      MessageType::kStatsReply,
                                      MessageType::kPing,
                                      MessageType::kPong,
                                      MessageType::kError,
                                      MessageType::kGpuExport,
                                      MessageType::kGpuExportReply,
                                      MessageType::kReleaseMemory,
                                      MessageType::kReleaseMemoryReply};
    constexpr size_t kCount = sizeof(kTypes) / sizeof(kTypes[0]);
    FrameHeader header;
    header.type = kTypes[bytes[0] % kCount];
    header.request_id = bytes[0];
    const std::span<const uint8_t> body = bytes.subspan(1);
    header.body_length = static_cast<uint32_t>(body.size());
    for (const ProtocolLimits* limits : {&defaults, &tight}) {
      if (body.size() <= limits->max_body_bytes) CheckFrame(header, body, *limits);
    }
  }
  return 0;
}
