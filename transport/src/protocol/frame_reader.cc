#include "kvault/transport/frame_reader.h"

#include <algorithm>
#include <cstring>

namespace kvault::transport {
namespace {

// The body vector grows by at most this much ahead of the bytes received.
constexpr size_t kBodyReserveStep = size_t{64} << 10;

}  // namespace

FrameReader::FrameReader(const ProtocolLimits& limits) : limits_(limits) {}

Result<size_t> FrameReader::Feed(std::span<const uint8_t> data) {
  if (!status_.ok()) return status_;
  if (ready_) return size_t{0};
  size_t used = 0;
  if (!header_done_) {
    const size_t n = std::min(kFrameHeaderBytes - header_filled_, data.size());
    std::memcpy(header_bytes_ + header_filled_, data.data(), n);
    header_filled_ += n;
    used += n;
    if (header_filled_ < kFrameHeaderBytes) return used;
    Result<FrameHeader> header = DecodeFrameHeader(header_bytes_, limits_);
    if (!header.ok()) {
      status_ = header.status();
      return status_;
    }
    header_done_ = true;
    frame_.header = *header;
    frame_.body.clear();
    frame_.body.reserve(std::min<size_t>(frame_.header.body_length, kBodyReserveStep));
  }
  const size_t missing = frame_.header.body_length - frame_.body.size();
  const size_t n = std::min(missing, data.size() - used);
  frame_.body.insert(frame_.body.end(), data.begin() + static_cast<std::ptrdiff_t>(used),
                     data.begin() + static_cast<std::ptrdiff_t>(used + n));
  used += n;
  if (frame_.body.size() == frame_.header.body_length) ready_ = true;
  return used;
}

Frame FrameReader::TakeFrame() {
  Frame out = std::move(frame_);
  frame_ = Frame{};
  header_filled_ = 0;
  header_done_ = false;
  ready_ = false;
  return out;
}

size_t FrameReader::bytes_wanted() const {
  if (!status_.ok() || ready_) return 0;
  if (!header_done_) return kFrameHeaderBytes - header_filled_;
  return frame_.header.body_length - frame_.body.size();
}

std::optional<uint64_t> FrameReader::failed_request_id() const {
  if (status_.ok()) return std::nullopt;
  return PeekRequestId(header_bytes_);
}

}  // namespace kvault::transport
