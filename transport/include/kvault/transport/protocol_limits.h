#pragma once
// ProtocolLimits: the input limits of the control-plane protocol (docs/protocol.md §3).
//
// Every decoder checks a size or count read from the wire against these limits, and against the
// bytes actually left in the frame, before it allocates anything. Every encoder checks the same
// limits, so a message that encodes also decodes under the same limits. The server works under
// its configured limits and announces them in HelloReply. A client encodes Hello and decodes
// HelloReply under the defaults, then encodes and decodes everything else under the server's.
// Plain value type; thread-compatible.

#include <cstdint>

#include "kvault/common/status.h"

namespace kvault::transport {

struct ProtocolLimits {
  // Largest frame body, in bytes. Bounds what one connection can make the peer buffer. Control
  // messages are small (a full Store batch of 4096 entries is about 321 KiB); raise it only with
  // max_keys_per_batch. Default 4 MiB.
  uint32_t max_body_bytes = 4u << 20;
  // Most keys or entries in one batch (Lookup, Store, Load, Delete and their replies); also the
  // most entries of a StatsReply. Bigger batches amortise round trips but hold a connection's
  // strand longer. Default 4096.
  uint32_t max_keys_per_batch = 4096;
  // Largest block object a message may describe: Store lengths, Load offsets and lengths,
  // LoadReply object sizes. Default 64 MiB (a 16-token block of a 70B model in raw bf16 is 5 MiB).
  uint64_t max_block_object_bytes = 64ull << 20;
  // Longest string: tenant and client names, stat names, status messages. Default 256.
  uint32_t max_string_bytes = 256;
  // Longest packed UCX remote key in Store and Load. Default 1024 (typical rkeys are 50-300).
  uint32_t max_remote_key_bytes = 1024;
  // Longest UCX worker address in Hello and HelloReply. Worker addresses list every transport of
  // the worker and grow with the number of network devices. Default 8192.
  uint32_t max_worker_address_bytes = 8192;

  // Returns OK when every field lies within [kMin*, kCeiling*] below, else InvalidArgument naming
  // the field. Decoders assume valid limits; HelloReply's decoder calls this on received limits.
  Status Validate() const;

  bool operator==(const ProtocolLimits&) const = default;
};

// Bounds of valid limits. The ceilings follow from the wire types (string lengths are u16) and
// from the block format (kMaxBlockObjectBytes in common/block_format.h); the floors rule out
// limits that would refuse every useful message.
inline constexpr uint32_t kMinBodyBytes = 1024;
inline constexpr uint32_t kCeilingBodyBytes = 64u << 20;
inline constexpr uint32_t kCeilingKeysPerBatch = 1u << 20;
inline constexpr uint64_t kCeilingBlockObjectBytes = 4ull << 30;
inline constexpr uint32_t kMinStringBytes = 16;
inline constexpr uint32_t kCeilingStringBytes = 65535;
inline constexpr uint32_t kCeilingRemoteKeyBytes = 65536;
inline constexpr uint32_t kCeilingWorkerAddressBytes = 1u << 20;

}  // namespace kvault::transport
