#pragma once
// WireWriter and WireReader: the field encoders behind every message body (docs/protocol.md §4.1).
// Internal to kvault_transport. Not thread-safe (one user each).
//
// The reader is sticky: the first failure is kept, every later read returns zero or empty and
// consumes nothing, so a decoder reads all its fields unconditionally and checks once at the end.
// Counts and lengths are checked against their limit and against the bytes still unread before
// anything is allocated, so a 12-byte body that claims four billion keys costs nothing.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kvault/common/block_key.h"
#include "kvault/common/result.h"
#include "kvault/transport/protocol_limits.h"
#include "kvault/transport/wire_status.h"

namespace kvault::transport::wire {

// Appends little-endian fields to a byte vector.
class WireWriter {
 public:
  explicit WireWriter(std::vector<uint8_t>* out) : out_(out) {}
  void U8(uint8_t v) { out_->push_back(v); }
  void U16(uint16_t v);
  void U32(uint32_t v);
  void U64(uint64_t v);
  void Bool(bool v) { U8(v ? 1 : 0); }
  // A double as its IEEE-754 binary64 bit pattern, little-endian.
  void F64(double v);
  // Raw bytes, no length prefix (fixed-size fields such as keys and nonces).
  void Raw(std::span<const uint8_t> bytes);
  // u16 length, then the bytes. Precondition: s.size() <= 65535 (Validate checks the limit).
  void String(std::string_view s);
  // u32 length, then the bytes. Precondition: b.size() < 2^32.
  void Blob(std::span<const uint8_t> b);
  // u32 count. Precondition: n < 2^32.
  void Count(size_t n) { U32(static_cast<uint32_t>(n)); }

 private:
  std::vector<uint8_t>* out_;
};

// Reads little-endian fields from a body, never outside it.
class WireReader {
 public:
  explicit WireReader(std::span<const uint8_t> body) : body_(body) {}

  uint8_t U8();
  uint16_t U16();
  uint32_t U32();
  uint64_t U64();
  double F64();
  // A u8 that must be 0 or 1; another value fails with Corruption naming `what`.
  bool Bool(std::string_view what);
  // 32 raw bytes.
  BlockKey Bytes32();
  // The next n bytes, as a view into the body; an empty span on truncation (recorded).
  std::span<const uint8_t> Take(size_t n);
  // u16 length (<= max_bytes, else OutOfRange naming `what`), then that many bytes.
  std::string String(uint32_t max_bytes, std::string_view what);
  // u32 length (<= max_bytes, else OutOfRange naming `what`), then that many bytes.
  std::vector<uint8_t> Blob(uint32_t max_bytes, std::string_view what);
  // u32 count of items that take at least `min_item_bytes` each: OutOfRange naming `what` and
  // `limit` (the bound's name) when count > max_items; Corruption when count * min_item_bytes
  // exceeds the unread bytes. Returns 0 on failure, so the caller's reserve/resize is always safe.
  uint32_t Count(uint32_t max_items, size_t min_item_bytes, std::string_view what,
                 std::string_view limit = "max_keys_per_batch");

  size_t remaining() const { return body_.size() - pos_; }
  bool ok() const { return status_.ok(); }

  // The first failure; else Corruption when bytes are left unread; else OK.
  Status Finish() const;

 private:
  // True when n more bytes can be read; otherwise records a truncation and returns false.
  bool Need(size_t n);
  void Fail(Status status);

  std::span<const uint8_t> body_;
  size_t pos_ = 0;
  Status status_;
};

// Shared checks of the messages' Validate functions. Each returns OK or a status naming `field`.
// OutOfRange when s.size() > max (the limit max_string_bytes).
Status CheckString(std::string_view s, uint32_t max, std::string_view field);
// OutOfRange when size > max; `limit_name` names the limit in the message.
Status CheckBlob(size_t size, uint32_t max, std::string_view field, std::string_view limit_name);
// OutOfRange when n > limits.max_keys_per_batch.
Status CheckCount(size_t n, const ProtocolLimits& limits, std::string_view field);
// InvalidArgument when `s` is not a known WireStatus value.
Status CheckKnownStatus(WireStatus s, std::string_view field);

// The body ReleaseLeaseReply, ReleaseMemoryReply and ErrorReply share: u8 status, string message.
Status CheckStatusBody(WireStatus status, std::string_view message, const ProtocolLimits& limits);
void WriteStatusBody(WireStatus status, std::string_view message, std::vector<uint8_t>* out);
void ReadStatusBody(WireReader& r, const ProtocolLimits& limits, WireStatus& status,
                    std::string& message);

// Completes the decoding of message `m` read by `reader`: the reader's status (truncation,
// trailing bytes, limits), then m.Validate(limits) with InvalidArgument reported as Corruption
// (bad bytes received, not a bad call). Every failure is prefixed with the message's name.
template <typename M>
Result<M> FinishDecode(const WireReader& reader, M m, const ProtocolLimits& limits,
                       std::string_view name) {
  Status s = reader.Finish();
  if (s.ok()) s = m.Validate(limits);
  if (s.ok()) return m;
  if (s.code() == StatusCode::kInvalidArgument) s = Status::Corruption(s.message());
  return s.WithContext(name);
}

// The DecodeBody of a message whose body is the status body alone (the three above): reads
// m.status and m.message, then FinishDecode.
template <typename M>
Result<M> DecodeStatusBody(std::span<const uint8_t> body, const ProtocolLimits& limits,
                           std::string_view name) {
  WireReader r(body);
  M m;
  ReadStatusBody(r, limits, m.status, m.message);
  return FinishDecode(r, std::move(m), limits, name);
}

}  // namespace kvault::transport::wire
