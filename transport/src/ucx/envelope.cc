#include "ucx/envelope.h"

#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

#include "kvault/common/checksum.h"
#include "kvault/common/little_endian.h"

namespace kvault::transport {
namespace {

constexpr uint16_t kVersion = 1;

const char* KindName(EnvelopeKind kind) {
  return kind == EnvelopeKind::kWorkerAddress ? "worker address" : "remote key";
}

}  // namespace

uint64_t HostPidNamespace(std::string_view boot_id, uint64_t namespace_inode) {
  if (boot_id.empty() || namespace_inode == 0) return 0;
  std::vector<uint8_t> bytes(boot_id.begin(), boot_id.end());
  bytes.resize(bytes.size() + 8);
  StoreLe64(bytes.data() + boot_id.size(), namespace_inode);
  const uint64_t id = Checksum64(bytes);
  return id == 0 ? 1 : id;  // 0 means "unknown"
}

uint64_t PidNamespaceId() {
  struct stat st {};
  if (stat("/proc/self/ns/pid", &st) != 0) return 0;
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string boot_id;
  if (!std::getline(in, boot_id)) return 0;
  return HostPidNamespace(boot_id, static_cast<uint64_t>(st.st_ino));
}

Result<std::vector<uint8_t>> Seal(EnvelopeKind kind, std::span<const uint8_t> payload) {
  if (payload.empty() || payload.size() > kMaxEnvelopePayload) {
    return Status::InvalidArgument(std::string(KindName(kind)) + " of " +
                                   std::to_string(payload.size()) + " bytes cannot be sealed");
  }
  std::vector<uint8_t> out(kEnvelopeHeaderBytes + payload.size());
  StoreLe32(out.data(), static_cast<uint32_t>(kind));
  StoreLe16(out.data() + 4, kVersion);
  StoreLe16(out.data() + 6, 0);
  StoreLe32(out.data() + 8, static_cast<uint32_t>(payload.size()));
  StoreLe64(out.data() + 12, Checksum64(payload));
  std::copy(payload.begin(), payload.end(), out.begin() + kEnvelopeHeaderBytes);
  return out;
}

Result<std::span<const uint8_t>> Open(EnvelopeKind kind, std::span<const uint8_t> bytes) {
  const std::string name = KindName(kind);
  if (bytes.size() < kEnvelopeHeaderBytes) {
    return Status::InvalidArgument(name + ": " + std::to_string(bytes.size()) +
                                   " bytes is shorter than the envelope header");
  }
  if (LoadLe32(bytes.data()) != static_cast<uint32_t>(kind)) {
    return Status::InvalidArgument(name + ": bad magic (not a packed " + name + ")");
  }
  if (LoadLe16(bytes.data() + 4) != kVersion) {
    return Status::InvalidArgument(name + ": unknown envelope version " +
                                   std::to_string(LoadLe16(bytes.data() + 4)));
  }
  const uint32_t length = LoadLe32(bytes.data() + 8);
  if (length == 0 || length > kMaxEnvelopePayload ||
      length != bytes.size() - kEnvelopeHeaderBytes) {
    return Status::InvalidArgument(
        name + ": payload length " + std::to_string(length) + " does not match the " +
        std::to_string(bytes.size() - kEnvelopeHeaderBytes) + " bytes received");
  }
  std::span<const uint8_t> payload = bytes.subspan(kEnvelopeHeaderBytes);
  if (Checksum64(payload) != LoadLe64(bytes.data() + 12)) {
    return Status::Corruption(name + ": checksum mismatch");
  }
  return payload;
}

}  // namespace kvault::transport
