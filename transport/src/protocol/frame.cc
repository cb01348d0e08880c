#include "kvault/transport/frame.h"

#include <cstdio>
#include <string>

#include "kvault/common/little_endian.h"

namespace kvault::transport {
namespace {

// Header field offsets (docs/protocol.md §2.1).
constexpr size_t kOffMagic = 0;
constexpr size_t kOffVersion = 4;
constexpr size_t kOffType = 6;
constexpr size_t kOffFlags = 8;
constexpr size_t kOffReserved = 10;
constexpr size_t kOffRequestId = 12;
constexpr size_t kOffBodyLength = 20;
static_assert(kOffBodyLength + 4 == kFrameHeaderBytes);

std::string Hex16(uint16_t v) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "0x%04x", v);
  return buf;
}

}  // namespace

std::string_view MessageTypeName(MessageType type) {
  switch (type) {
    case MessageType::kHello:
      return "hello";
    case MessageType::kAuth:
      return "auth";
    case MessageType::kProveWorker:
      return "prove_worker";
    case MessageType::kAttachMemory:
      return "attach_memory";
    case MessageType::kLookup:
      return "lookup";
    case MessageType::kStore:
      return "store";
    case MessageType::kLoad:
      return "load";
    case MessageType::kReleaseLease:
      return "release_lease";
    case MessageType::kDelete:
      return "delete";
    case MessageType::kGpuExport:
      return "gpu_export";
    case MessageType::kReleaseMemory:
      return "release_memory";
    case MessageType::kStats:
      return "stats";
    case MessageType::kPing:
      return "ping";
    case MessageType::kError:
      return "error";
    case MessageType::kHelloReply:
      return "hello_reply";
    case MessageType::kAuthReply:
      return "auth_reply";
    case MessageType::kProveWorkerReply:
      return "prove_worker_reply";
    case MessageType::kAttachMemoryReply:
      return "attach_memory_reply";
    case MessageType::kLookupReply:
      return "lookup_reply";
    case MessageType::kStoreReply:
      return "store_reply";
    case MessageType::kLoadReply:
      return "load_reply";
    case MessageType::kReleaseLeaseReply:
      return "release_lease_reply";
    case MessageType::kDeleteReply:
      return "delete_reply";
    case MessageType::kGpuExportReply:
      return "gpu_export_reply";
    case MessageType::kReleaseMemoryReply:
      return "release_memory_reply";
    case MessageType::kStatsReply:
      return "stats_reply";
    case MessageType::kPong:
      return "pong";
  }
  return "unknown";
}

bool IsKnownMessageType(uint16_t raw) {
  return MessageTypeName(static_cast<MessageType>(raw)) != "unknown";
}

void EncodeFrameHeader(const FrameHeader& header, uint8_t* out) {
  StoreLe32(out + kOffMagic, kFrameMagic);
  StoreLe16(out + kOffVersion, header.version);
  StoreLe16(out + kOffType, static_cast<uint16_t>(header.type));
  StoreLe16(out + kOffFlags, header.flags);
  StoreLe16(out + kOffReserved, 0);
  StoreLe64(out + kOffRequestId, header.request_id);
  StoreLe32(out + kOffBodyLength, header.body_length);
}

Result<FrameHeader> DecodeFrameHeader(std::span<const uint8_t> bytes,
                                      const ProtocolLimits& limits) {
  if (bytes.size() < kFrameHeaderBytes) {
    return Status::Corruption("truncated frame header: " + std::to_string(bytes.size()) + " of " +
                              std::to_string(kFrameHeaderBytes) + " bytes");
  }
  const uint8_t* h = bytes.data();
  if (LoadLe32(h + kOffMagic) != kFrameMagic) return Status::Corruption("bad magic");
  FrameHeader header;
  header.version = LoadLe16(h + kOffVersion);
  if (header.version != kProtocolVersion) {
    return Status::Unsupported("unsupported protocol version " + std::to_string(header.version) +
                               " (this peer speaks " + std::to_string(kProtocolVersion) + ")");
  }
  header.flags = LoadLe16(h + kOffFlags);
  if ((header.flags & ~kKnownFrameFlags) != 0) {
    return Status::Corruption("reserved frame flag bits set: " + Hex16(header.flags));
  }
  if (LoadLe16(h + kOffReserved) != 0) {
    return Status::Corruption("nonzero reserved frame header field");
  }
  const uint16_t type = LoadLe16(h + kOffType);
  if (!IsKnownMessageType(type)) {
    return Status::Corruption("unknown message type " + Hex16(type));
  }
  header.type = static_cast<MessageType>(type);
  header.request_id = LoadLe64(h + kOffRequestId);
  header.body_length = LoadLe32(h + kOffBodyLength);
  if (header.body_length > limits.max_body_bytes) {
    return Status::OutOfRange(std::string(MessageTypeName(header.type)) + " body of " +
                              std::to_string(header.body_length) +
                              " bytes exceeds max_body_bytes " +
                              std::to_string(limits.max_body_bytes));
  }
  return header;
}

std::optional<uint64_t> PeekRequestId(std::span<const uint8_t> bytes) {
  if (bytes.size() < kFrameHeaderBytes) return std::nullopt;
  if (LoadLe32(bytes.data() + kOffMagic) != kFrameMagic) return std::nullopt;
  return LoadLe64(bytes.data() + kOffRequestId);
}

Result<FrameView> DecodeFrame(std::span<const uint8_t> bytes, const ProtocolLimits& limits) {
  KVAULT_ASSIGN_OR_RETURN(FrameHeader header, DecodeFrameHeader(bytes, limits));
  const size_t total = kFrameHeaderBytes + static_cast<size_t>(header.body_length);
  if (bytes.size() < total) {
    return Status::Corruption(
        "truncated frame body: " + std::to_string(bytes.size() - kFrameHeaderBytes) + " of " +
        std::to_string(header.body_length) + " bytes");
  }
  if (bytes.size() > total) {
    return Status::Corruption(std::to_string(bytes.size() - total) +
                              " trailing bytes after the frame");
  }
  return FrameView{header, bytes.subspan(kFrameHeaderBytes, header.body_length)};
}

Status FinishFrame(MessageType type, uint64_t request_id, const ProtocolLimits& limits,
                   size_t frame_start, std::vector<uint8_t>* out) {
  const size_t body = out->size() - frame_start - kFrameHeaderBytes;
  if (body > limits.max_body_bytes) {
    out->resize(frame_start);
    return Status::OutOfRange(std::string(MessageTypeName(type)) + " body of " +
                              std::to_string(body) + " bytes exceeds max_body_bytes " +
                              std::to_string(limits.max_body_bytes));
  }
  FrameHeader header;
  header.type = type;
  header.request_id = request_id;
  header.body_length = static_cast<uint32_t>(body);
  EncodeFrameHeader(header, out->data() + frame_start);
  return Status::Ok();
}

}  // namespace kvault::transport
