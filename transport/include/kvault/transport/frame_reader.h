#pragma once
// FrameReader: reassembles frames from a byte stream, without doing any I/O (docs/protocol.md
// §2.2). Not thread-safe: one reader per connection, used from that connection's strand.
//
// It never holds more than one frame: kFrameHeaderBytes of header, then at most
// limits.max_body_bytes of body, which it grows only as body bytes arrive (a header that
// announces 4 MiB and sends nothing costs nothing). Feed() never consumes past the end of the
// frame being assembled, so a caller can either feed whatever its socket returned and loop, or
// read exactly bytes_wanted() bytes at a time (header, then body) and feed those.
//
//   FrameReader reader(limits);
//   while (!data.empty()) {
//     KVAULT_ASSIGN_OR_RETURN(size_t used, reader.Feed(data));
//     data = data.subspan(used);
//     if (reader.frame_ready()) Handle(reader.TakeFrame());
//   }

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "kvault/common/result.h"
#include "kvault/transport/frame.h"
#include "kvault/transport/protocol_limits.h"

namespace kvault::transport {

// A received frame that owns its body.
struct Frame {
  FrameHeader header;
  std::vector<uint8_t> body;  // exactly header.body_length bytes
};

class FrameReader {
 public:
  // `limits` bound the body length (DecodeFrameHeader). Precondition: limits.Validate() is OK.
  explicit FrameReader(const ProtocolLimits& limits = {});

  // Consumes a prefix of `data`: at most the bytes that complete the current frame (header and
  // body), and nothing while a frame is ready and not yet taken. Returns the number of bytes
  // consumed; fewer than data.size() only when a frame is ready.
  // When the header completes it is decoded; a header DecodeFrameHeader refuses puts the reader
  // in a failed state: this call and every later one return that status (the stream cannot be
  // resynchronised, so the caller replies with an ErrorReply if it wants and closes).
  Result<size_t> Feed(std::span<const uint8_t> data);

  // True when a complete frame is waiting for TakeFrame().
  bool frame_ready() const { return ready_; }

  // Hands over the complete frame and starts on the next one. Precondition: frame_ready().
  Frame TakeFrame();

  // Bytes still missing from the current header or body; 0 while a frame is ready or after a
  // failure. Reading exactly this many and feeding them never over-reads the socket.
  size_t bytes_wanted() const;

  // After a header failure: the refused header's request id when its magic was right
  // (PeekRequestId), so the caller can name it in its ErrorReply; otherwise nullopt.
  std::optional<uint64_t> failed_request_id() const;

  // OK, or the failure that stopped the reader.
  const Status& status() const { return status_; }

 private:
  ProtocolLimits limits_;
  uint8_t header_bytes_[kFrameHeaderBytes] = {};
  size_t header_filled_ = 0;
  bool header_done_ = false;
  bool ready_ = false;
  Frame frame_;
  Status status_;
};

}  // namespace kvault::transport
