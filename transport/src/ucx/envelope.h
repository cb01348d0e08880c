#pragma once
// The envelope around UCX blobs that travel through the control plane (worker addresses, packed
// remote keys). UCX parses those blobs with no length argument, so bytes from a peer are never
// handed to UCX until the envelope proves they are whole and unaltered:
//
//   offset size  field
//   0      4     magic, little-endian: "KVWA" (worker address) or "KVRK" (remote key)
//   4      2     version, little-endian, 1
//   6      2     reserved, 0
//   8      4     payload length in bytes, little-endian, 1..kMaxEnvelopePayload
//   12     8     XXH3-64 of the payload, little-endian
//   20     n     payload: for a worker address, the bytes UCX produced; for a remote key, a
//                32-byte key header (below), then the bytes UCX produced
//
// Remote-key header: region base address (u64 LE), region length (u64 LE), owner's pid (u32 LE),
// reserved 0 (u32), owner's pid-namespace id (u64 LE: PidNamespaceId(), host and pid namespace,
// 0 if unknown). The bounds let the initiator refuse ranges outside the region; the owner lets it
// refuse a key whose process is gone before UCX tries to attach its shared memory, and check
// that the key's shared segments are the owner's own (SharedSegmentHold).
//
// Thread-safe: pure functions.

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "kvault/common/result.h"

namespace kvault::transport {

enum class EnvelopeKind : uint32_t {
  kWorkerAddress = 0x4157564b,  // "KVWA"
  kRemoteKey = 0x4b52564b,      // "KVRK"
};

inline constexpr size_t kEnvelopeHeaderBytes = 20;
inline constexpr uint32_t kMaxEnvelopePayload = 64 * 1024;
// Bytes of the remote-key header in front of the UCX bytes of a remote key.
inline constexpr size_t kRemoteKeyHeaderBytes = 32;

// Which pids a process sees, as a number: HostPidNamespace of this kernel's boot id
// (/proc/sys/kernel/random/boot_id) and the inode of this process's pid namespace; 0 when either
// cannot be read. Processes with the same non-zero value run on the same host (booted kernel)
// and see the same pids. The inode alone would not do: the initial pid namespace has the same
// inode on every Linux host, so a client on another host would look local.
uint64_t PidNamespaceId();
// The pure part of PidNamespaceId: a 64-bit mix of the boot id's text and the namespace inode;
// 0 when the boot id is empty or the inode is 0.
uint64_t HostPidNamespace(std::string_view boot_id, uint64_t namespace_inode);

// Wraps `payload` (1..kMaxEnvelopePayload bytes, else InvalidArgument).
Result<std::vector<uint8_t>> Seal(EnvelopeKind kind, std::span<const uint8_t> payload);

// Returns the payload inside `bytes` (a view into it). InvalidArgument when the bytes are too
// short, carry another kind's magic, an unknown version or a length that does not match;
// Corruption when the checksum does not match.
Result<std::span<const uint8_t>> Open(EnvelopeKind kind, std::span<const uint8_t> bytes);

}  // namespace kvault::transport
