// The bytes of the memory hand-over (docs/memory_handover.md). Part of kvault_transport, like the
// other pure encoders, so that its users and its test need no UCX.
#include "kvault/transport/local/memory_handover_wire.h"

#include <algorithm>
#include <string>
#include <tuple>

#include "kvault/common/little_endian.h"

namespace kvault::transport {
namespace {

// "KVMH" as bytes 4B 56 4D 48; a region request's "KVMR".
constexpr std::array<uint8_t, 4> kMagic = {0x4B, 0x56, 0x4D, 0x48};
constexpr std::array<uint8_t, 4> kRegionMagic = {0x4B, 0x56, 0x4D, 0x52};

// Request offsets.
constexpr size_t kReqVersion = 4;
constexpr size_t kReqReserved = 6;
constexpr size_t kReqProbeAddress = 8;
constexpr size_t kReqProbe = 16;
constexpr size_t kReqClientEnd = 32;
constexpr size_t kReqServerEnd = 51;
static_assert(kReqProbe + sizeof(HandOverProbe) == kReqClientEnd);
static_assert(kReqClientEnd + kHandOverEndBytes == kReqServerEnd);
static_assert(kReqServerEnd + kHandOverEndBytes == kHandOverRequestBytes);

// Region request offsets (magic, version and reserved as above).
constexpr size_t kRegBase = 8;
constexpr size_t kRegLength = 16;
constexpr size_t kRegClientEnd = 24;
constexpr size_t kRegServerEnd = 43;
static_assert(kRegServerEnd + kHandOverEndBytes == kRegionRequestBytes);

// Offsets inside an end.
constexpr size_t kEndFamily = 0;
constexpr size_t kEndAddress = 1;
constexpr size_t kEndPort = 17;
static_assert(kEndPort + 2 == kHandOverEndBytes);
constexpr uint8_t kFamily4 = 4;
constexpr uint8_t kFamily6 = 6;

// ::ffff:0:0/96, the prefix of an IPv4-mapped IPv6 address.
constexpr std::array<uint8_t, 12> kV4MappedPrefix = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};

bool IsV4Mapped(std::span<const uint8_t> address16) {
  return std::equal(kV4MappedPrefix.begin(), kV4MappedPrefix.end(), address16.begin());
}

// Writes `end` in its canonical form at `out` (kHandOverEndBytes).
void StoreEnd(uint8_t* out, const TcpEnd& end) {
  std::fill_n(out, kHandOverEndBytes, uint8_t{0});
  if (end.ipv6 && !IsV4Mapped(end.address)) {
    out[kEndFamily] = kFamily6;
    std::copy(end.address.begin(), end.address.end(), out + kEndAddress);
  } else {
    out[kEndFamily] = kFamily4;
    const auto* v4 = end.ipv6 ? end.address.data() + kV4MappedPrefix.size() : end.address.data();
    std::copy_n(v4, 4, out + kEndAddress);
  }
  StoreLe16(out + kEndPort, end.port);
}

Result<TcpEnd> LoadEnd(std::span<const uint8_t> bytes, const char* field) {
  const std::span<const uint8_t> address = bytes.subspan(kEndAddress, 16);
  TcpEnd end;
  switch (bytes[kEndFamily]) {
    case kFamily4:
      if (!std::all_of(address.begin() + 4, address.end(), [](uint8_t b) { return b == 0; })) {
        return Status::Corruption(std::string(field) +
                                  ": family 4 with nonzero bytes after the IPv4 address");
      }
      break;
    case kFamily6:
      if (IsV4Mapped(address)) {
        return Status::Corruption(std::string(field) +
                                  ": family 6 with an IPv4-mapped address (send family 4)");
      }
      end.ipv6 = true;
      break;
    default:
      return Status::Corruption(std::string(field) + ": family " +
                                std::to_string(bytes[kEndFamily]) + " is neither 4 nor 6");
  }
  std::copy(address.begin(), address.end(), end.address.begin());
  end.port = LoadLe16(bytes.data() + kEndPort);
  if (end.port == 0) return Status::InvalidArgument(std::string(field) + ": port is 0");
  return end;
}

// Reply offsets.
constexpr size_t kRepVersion = 4;
constexpr size_t kRepStatus = 6;
constexpr size_t kRepReserved = 7;
constexpr size_t kRepHandle = 8;
constexpr size_t kRepMessageBytes = 40;
static_assert(kRepMessageBytes + 2 == kHandOverReplyHeaderBytes);

bool HasMagic(std::span<const uint8_t> bytes) {
  return std::equal(kMagic.begin(), kMagic.end(), bytes.begin());
}

bool AllZero(const Bytes32& bytes) {
  return std::all_of(bytes.begin(), bytes.end(), [](uint8_t b) { return b == 0; });
}

Status Unsupported(const char* what, uint16_t version) {
  return Status::Unsupported(std::string(what) + ": unsupported version " +
                             std::to_string(version) + " (this peer speaks " +
                             std::to_string(kHandOverVersion) + ")");
}

// The first 8 bytes of a request (magic, version, reserved) and its length.
void StoreRequestHeader(uint8_t* out, const std::array<uint8_t, 4>& magic) {
  std::copy(magic.begin(), magic.end(), out);
  StoreLe16(out + kReqVersion, kHandOverVersion);
  StoreLe16(out + kReqReserved, 0);
}

Status CheckRequestHeader(std::span<const uint8_t> bytes, size_t expected,
                          const std::array<uint8_t, 4>& magic, const char* what) {
  if (bytes.size() != expected) {
    return Status::Corruption(std::string(what) + ": " + std::to_string(bytes.size()) +
                              " bytes, not " + std::to_string(expected));
  }
  if (!std::equal(magic.begin(), magic.end(), bytes.begin())) {
    return Status::Corruption(std::string(what) + ": bad magic");
  }
  const uint16_t version = LoadLe16(bytes.data() + kReqVersion);
  if (version != kHandOverVersion) return Unsupported(what, version);
  if (LoadLe16(bytes.data() + kReqReserved) != 0) {
    return Status::Corruption(std::string(what) + ": nonzero reserved field");
  }
  return Status::Ok();
}

// Both ends of a request, checked in field order.
Status LoadEnds(std::span<const uint8_t> bytes, size_t client_at, size_t server_at,
                TcpEnd* client_end, TcpEnd* server_end, const char* what) {
  for (auto [at, field, end] : {std::tuple(client_at, "client_end", client_end),
                                std::tuple(server_at, "server_end", server_end)}) {
    Result<TcpEnd> loaded = LoadEnd(bytes.subspan(at, kHandOverEndBytes), field);
    if (!loaded.ok()) return loaded.status().WithContext(what);
    *end = *loaded;
  }
  return Status::Ok();
}

}  // namespace

std::array<uint8_t, kHandOverRequestBytes> EncodeHandOverRequest(const HandOverRequest& request) {
  std::array<uint8_t, kHandOverRequestBytes> out{};
  StoreRequestHeader(out.data(), kMagic);
  StoreLe64(out.data() + kReqProbeAddress, request.probe_address);
  std::copy(request.probe.begin(), request.probe.end(), out.begin() + kReqProbe);
  StoreEnd(out.data() + kReqClientEnd, request.client_end);
  StoreEnd(out.data() + kReqServerEnd, request.server_end);
  return out;
}

Result<HandOverRequest> DecodeHandOverRequest(std::span<const uint8_t> bytes) {
  constexpr const char* kWhat = "memory hand-over request";
  KVAULT_RETURN_IF_ERROR(CheckRequestHeader(bytes, kHandOverRequestBytes, kMagic, kWhat));
  HandOverRequest request;
  request.probe_address = LoadLe64(bytes.data() + kReqProbeAddress);
  if (request.probe_address == 0) {
    return Status::InvalidArgument(std::string(kWhat) + ": probe_address is 0");
  }
  std::copy_n(bytes.begin() + kReqProbe, request.probe.size(), request.probe.begin());
  KVAULT_RETURN_IF_ERROR(LoadEnds(bytes, kReqClientEnd, kReqServerEnd, &request.client_end,
                                  &request.server_end, kWhat));
  return request;
}

std::array<uint8_t, kRegionRequestBytes> EncodeRegionRequest(const RegionRequest& request) {
  std::array<uint8_t, kRegionRequestBytes> out{};
  StoreRequestHeader(out.data(), kRegionMagic);
  StoreLe64(out.data() + kRegBase, request.base);
  StoreLe64(out.data() + kRegLength, request.length);
  StoreEnd(out.data() + kRegClientEnd, request.client_end);
  StoreEnd(out.data() + kRegServerEnd, request.server_end);
  return out;
}

Result<RegionRequest> DecodeRegionRequest(std::span<const uint8_t> bytes) {
  constexpr const char* kWhat = "memory region request";
  KVAULT_RETURN_IF_ERROR(CheckRequestHeader(bytes, kRegionRequestBytes, kRegionMagic, kWhat));
  RegionRequest request;
  request.base = LoadLe64(bytes.data() + kRegBase);
  request.length = LoadLe64(bytes.data() + kRegLength);
  constexpr uint64_t kUserEnd = uint64_t{1} << 63;
  if (request.base == 0 || request.length == 0 || request.base >= kUserEnd ||
      request.length > kUserEnd - request.base) {
    return Status::InvalidArgument(std::string(kWhat) + ": base " + std::to_string(request.base) +
                                   " and length " + std::to_string(request.length) +
                                   " are not a nonempty range of user addresses");
  }
  KVAULT_RETURN_IF_ERROR(LoadEnds(bytes, kRegClientEnd, kRegServerEnd, &request.client_end,
                                  &request.server_end, kWhat));
  return request;
}

std::vector<uint8_t> EncodeMemoryRequest(const MemoryRequest& request) {
  if (const auto* region = std::get_if<RegionRequest>(&request)) {
    const auto bytes = EncodeRegionRequest(*region);
    return std::vector<uint8_t>(bytes.begin(), bytes.end());
  }
  const auto bytes = EncodeHandOverRequest(std::get<HandOverRequest>(request));
  return std::vector<uint8_t>(bytes.begin(), bytes.end());
}

Result<MemoryRequest> DecodeMemoryRequest(std::span<const uint8_t> bytes) {
  if (bytes.size() == kRegionRequestBytes) {
    KVAULT_ASSIGN_OR_RETURN(RegionRequest region, DecodeRegionRequest(bytes));
    return MemoryRequest(region);
  }
  KVAULT_ASSIGN_OR_RETURN(HandOverRequest hand_over, DecodeHandOverRequest(bytes));
  return MemoryRequest(hand_over);
}

Status ValidateHandOverReply(const HandOverReply& reply) {
  if (!IsKnownWireStatus(static_cast<uint8_t>(reply.status))) {
    return Status::InvalidArgument("status: unknown wire status " +
                                   std::to_string(static_cast<int>(reply.status)));
  }
  if ((reply.status == WireStatus::kOk) == AllZero(reply.handle)) {
    return Status::InvalidArgument("handle must be nonzero exactly when status is ok");
  }
  if (reply.message.size() > kMaxHandOverMessageBytes) {
    return Status::OutOfRange("message of " + std::to_string(reply.message.size()) +
                              " bytes exceeds kMaxHandOverMessageBytes " +
                              std::to_string(kMaxHandOverMessageBytes));
  }
  return Status::Ok();
}

std::vector<uint8_t> EncodeHandOverReply(const HandOverReply& reply) {
  std::vector<uint8_t> out(kHandOverReplyHeaderBytes + reply.message.size());
  std::copy(kMagic.begin(), kMagic.end(), out.begin());
  StoreLe16(out.data() + kRepVersion, kHandOverVersion);
  out[kRepStatus] = static_cast<uint8_t>(reply.status);
  out[kRepReserved] = 0;
  std::copy(reply.handle.begin(), reply.handle.end(), out.begin() + kRepHandle);
  StoreLe16(out.data() + kRepMessageBytes, static_cast<uint16_t>(reply.message.size()));
  std::copy(reply.message.begin(), reply.message.end(), out.begin() + kHandOverReplyHeaderBytes);
  return out;
}

Result<size_t> HandOverReplyMessageBytes(std::span<const uint8_t> header) {
  constexpr const char* kWhat = "memory hand-over reply";
  if (header.size() < kHandOverReplyHeaderBytes) {
    return Status::Corruption(std::string(kWhat) +
                              ": truncated header: " + std::to_string(header.size()) + " of " +
                              std::to_string(kHandOverReplyHeaderBytes) + " bytes");
  }
  if (!HasMagic(header)) return Status::Corruption(std::string(kWhat) + ": bad magic");
  const uint16_t version = LoadLe16(header.data() + kRepVersion);
  if (version != kHandOverVersion) return Unsupported(kWhat, version);
  if (header[kRepReserved] != 0) {
    return Status::Corruption(std::string(kWhat) + ": nonzero reserved byte");
  }
  HandOverReply fields;
  fields.status = static_cast<WireStatus>(header[kRepStatus]);
  std::copy_n(header.begin() + kRepHandle, fields.handle.size(), fields.handle.begin());
  if (Status s = ValidateHandOverReply(fields); !s.ok()) {
    return Status::Corruption(s.message()).WithContext(kWhat);
  }
  const size_t n = LoadLe16(header.data() + kRepMessageBytes);
  if (n > kMaxHandOverMessageBytes) {
    return Status::OutOfRange(std::string(kWhat) + ": message of " + std::to_string(n) +
                              " bytes exceeds kMaxHandOverMessageBytes " +
                              std::to_string(kMaxHandOverMessageBytes));
  }
  return n;
}

Result<HandOverReply> DecodeHandOverReply(std::span<const uint8_t> bytes) {
  KVAULT_ASSIGN_OR_RETURN(size_t n, HandOverReplyMessageBytes(bytes));
  const size_t total = kHandOverReplyHeaderBytes + n;
  if (bytes.size() != total) {
    const std::string how = bytes.size() < total
                                ? std::to_string(total - bytes.size()) + " bytes missing"
                                : std::to_string(bytes.size() - total) + " trailing bytes";
    return Status::Corruption("memory hand-over reply: " + how + " (the header announces a " +
                              std::to_string(n) + "-byte message)");
  }
  HandOverReply reply;
  reply.status = static_cast<WireStatus>(bytes[kRepStatus]);
  std::copy_n(bytes.begin() + kRepHandle, reply.handle.size(), reply.handle.begin());
  reply.message.assign(bytes.begin() + kHandOverReplyHeaderBytes, bytes.end());
  return reply;
}

}  // namespace kvault::transport
