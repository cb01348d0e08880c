#include "wire_io.h"

#include <bit>
#include <cstring>
#include <string>

#include "kvault/common/little_endian.h"

namespace kvault::transport::wire {

void WireWriter::U16(uint16_t v) {
  uint8_t b[2];
  StoreLe16(b, v);
  out_->insert(out_->end(), b, b + 2);
}

void WireWriter::U32(uint32_t v) {
  uint8_t b[4];
  StoreLe32(b, v);
  out_->insert(out_->end(), b, b + 4);
}

void WireWriter::U64(uint64_t v) {
  uint8_t b[8];
  StoreLe64(b, v);
  out_->insert(out_->end(), b, b + 8);
}

void WireWriter::F64(double v) { U64(std::bit_cast<uint64_t>(v)); }

void WireWriter::Raw(std::span<const uint8_t> bytes) {
  out_->insert(out_->end(), bytes.begin(), bytes.end());
}

void WireWriter::String(std::string_view s) {
  U16(static_cast<uint16_t>(s.size()));
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  out_->insert(out_->end(), p, p + s.size());
}

void WireWriter::Blob(std::span<const uint8_t> b) {
  U32(static_cast<uint32_t>(b.size()));
  Raw(b);
}

void WireReader::Fail(Status status) {
  if (status_.ok()) status_ = std::move(status);
}

bool WireReader::Need(size_t n) {
  if (!status_.ok()) return false;
  if (n <= remaining()) return true;
  Fail(Status::Corruption("truncated body: " + std::to_string(n) + " bytes needed at offset " +
                          std::to_string(pos_) + ", " + std::to_string(remaining()) + " left"));
  return false;
}

uint8_t WireReader::U8() {
  if (!Need(1)) return 0;
  return body_[pos_++];
}

uint16_t WireReader::U16() {
  if (!Need(2)) return 0;
  const uint16_t v = LoadLe16(body_.data() + pos_);
  pos_ += 2;
  return v;
}

uint32_t WireReader::U32() {
  if (!Need(4)) return 0;
  const uint32_t v = LoadLe32(body_.data() + pos_);
  pos_ += 4;
  return v;
}

uint64_t WireReader::U64() {
  if (!Need(8)) return 0;
  const uint64_t v = LoadLe64(body_.data() + pos_);
  pos_ += 8;
  return v;
}

double WireReader::F64() { return std::bit_cast<double>(U64()); }

bool WireReader::Bool(std::string_view what) {
  const uint8_t v = U8();
  if (v > 1) {
    Fail(Status::Corruption(std::string(what) + " must be 0 or 1, got " + std::to_string(v)));
    return false;
  }
  return v == 1;
}

BlockKey WireReader::Bytes32() {
  BlockKey key{};
  if (!Need(key.size())) return key;
  std::memcpy(key.data(), body_.data() + pos_, key.size());
  pos_ += key.size();
  return key;
}

std::span<const uint8_t> WireReader::Take(size_t n) {
  if (!Need(n)) return {};
  const std::span<const uint8_t> bytes = body_.subspan(pos_, n);
  pos_ += n;
  return bytes;
}

std::string WireReader::String(uint32_t max_bytes, std::string_view what) {
  const uint16_t n = U16();
  if (n > max_bytes) {
    Fail(Status::OutOfRange(std::string(what) + " of " + std::to_string(n) +
                            " bytes exceeds max_string_bytes " + std::to_string(max_bytes)));
    return {};
  }
  if (!Need(n)) return {};
  std::string s(reinterpret_cast<const char*>(body_.data() + pos_), n);
  pos_ += n;
  return s;
}

std::vector<uint8_t> WireReader::Blob(uint32_t max_bytes, std::string_view what) {
  const uint32_t n = U32();
  if (n > max_bytes) {
    Fail(Status::OutOfRange(std::string(what) + " of " + std::to_string(n) +
                            " bytes exceeds the limit of " + std::to_string(max_bytes)));
    return {};
  }
  if (!Need(n)) return {};
  std::vector<uint8_t> b(body_.begin() + static_cast<std::ptrdiff_t>(pos_),
                         body_.begin() + static_cast<std::ptrdiff_t>(pos_ + n));
  pos_ += n;
  return b;
}

uint32_t WireReader::Count(uint32_t max_items, size_t min_item_bytes, std::string_view what,
                           std::string_view limit) {
  const uint32_t n = U32();
  if (!status_.ok()) return 0;
  if (n > max_items) {
    Fail(Status::OutOfRange(std::to_string(n) + " " + std::string(what) + " exceed " +
                            std::string(limit) + " " + std::to_string(max_items)));
    return 0;
  }
  // n <= 2^32 and min_item_bytes is a small constant: the product cannot overflow 64 bits.
  const uint64_t needed = static_cast<uint64_t>(n) * min_item_bytes;
  if (needed > remaining()) {
    Fail(Status::Corruption("truncated body: " + std::to_string(n) + " " + std::string(what) +
                            " need at least " + std::to_string(needed) + " bytes, " +
                            std::to_string(remaining()) + " left"));
    return 0;
  }
  return n;
}

Status WireReader::Finish() const {
  if (!status_.ok()) return status_;
  if (pos_ != body_.size()) {
    return Status::Corruption(std::to_string(body_.size() - pos_) +
                              " trailing bytes after offset " + std::to_string(pos_));
  }
  return Status::Ok();
}

Status CheckString(std::string_view s, uint32_t max, std::string_view field) {
  if (s.size() <= max) return Status::Ok();
  return Status::OutOfRange(std::string(field) + " of " + std::to_string(s.size()) +
                            " bytes exceeds max_string_bytes " + std::to_string(max));
}

Status CheckBlob(size_t size, uint32_t max, std::string_view field, std::string_view limit_name) {
  if (size <= max) return Status::Ok();
  return Status::OutOfRange(std::string(field) + " of " + std::to_string(size) + " bytes exceeds " +
                            std::string(limit_name) + " " + std::to_string(max));
}

Status CheckCount(size_t n, const ProtocolLimits& limits, std::string_view field) {
  if (n <= limits.max_keys_per_batch) return Status::Ok();
  return Status::OutOfRange(std::to_string(n) + " " + std::string(field) +
                            " exceed max_keys_per_batch " +
                            std::to_string(limits.max_keys_per_batch));
}

Status CheckKnownStatus(WireStatus s, std::string_view field) {
  if (IsKnownWireStatus(static_cast<uint8_t>(s))) return Status::Ok();
  return Status::InvalidArgument(std::string(field) + ": unknown wire status " +
                                 std::to_string(static_cast<int>(s)));
}

Status CheckStatusBody(WireStatus status, std::string_view message, const ProtocolLimits& limits) {
  KVAULT_RETURN_IF_ERROR(CheckKnownStatus(status, "status"));
  return CheckString(message, limits.max_string_bytes, "message");
}

void WriteStatusBody(WireStatus status, std::string_view message, std::vector<uint8_t>* out) {
  WireWriter w(out);
  w.U8(static_cast<uint8_t>(status));
  w.String(message);
}

void ReadStatusBody(WireReader& r, const ProtocolLimits& limits, WireStatus& status,
                    std::string& message) {
  status = static_cast<WireStatus>(r.U8());
  message = r.String(limits.max_string_bytes, "message");
}

}  // namespace kvault::transport::wire
