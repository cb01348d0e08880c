#pragma once
// Block messages: Lookup, Store, Load, ReleaseLease, Delete, GpuExport, ReleaseMemory and their
// replies (docs/block_messages.md §4.3). Each struct has the members kType, Validate, EncodeBody
// and DecodeBody whose contract session_messages.h states once.
//
// Keys are 32-byte block keys (common/block_key.h), scoped by the server to the authenticated
// tenant. A batch reply lists one result per request key, in request order; the decoder of a
// reply cannot know the request, so the caller checks that the counts match.
// Plain value types; thread-compatible. The functions are pure: thread-safe.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvault/common/block_key.h"
#include "kvault/common/result.h"
#include "kvault/transport/frame.h"
#include "kvault/transport/protocol_limits.h"
#include "kvault/transport/wire_status.h"

namespace kvault::transport {

// Where a looked-up block lives. Never renumber.
enum class WireTier : uint8_t { kNone = 0, kGpu = 1, kHost = 2, kNvme = 3 };
// "none", "gpu", "host", "nvme"; "unknown" otherwise.
std::string_view WireTierName(WireTier tier);

// Client -> server: how many leading keys are cached, and optionally a lease that keeps them
// readable until the Load.
struct Lookup {
  static constexpr MessageType kType = MessageType::kLookup;
  // A chain in prefix order; at most max_keys_per_batch (0 is allowed and hits nothing).
  std::vector<BlockKey> keys;
  // Ask for a lease on the leading hits.
  bool want_lease = false;
  // Requested lease lifetime in milliseconds; 0 = the server's default. The server may shorten
  // it. Carried but ignored without want_lease.
  uint32_t lease_ttl_ms = 0;

  Status Validate(const ProtocolLimits& limits) const;
  void EncodeBody(std::vector<uint8_t>* out) const;
  static Result<Lookup> DecodeBody(std::span<const uint8_t> body, const ProtocolLimits& limits);
  bool operator==(const Lookup&) const = default;
};

struct LookupReply {
  static constexpr MessageType kType = MessageType::kLookupReply;
  // Keys [0, leading_hits) are present; <= tiers.size(), and none of those tiers is kNone.
  uint32_t leading_hits = 0;
  // One per request key: where it lives, kNone for a miss. A key after the first miss may still
  // be present (and then is not leased).
  std::vector<WireTier> tiers;
  // The lease on the leading hits; 0 = none (not asked for, no hits, or refused).
  uint64_t lease_id = 0;
  // Milliseconds the lease stays valid from when the server sent the reply; 0 iff lease_id is 0.
  uint32_t lease_ttl_ms = 0;

  Status Validate(const ProtocolLimits& limits) const;
  void EncodeBody(std::vector<uint8_t>* out) const;
  static Result<LookupReply> DecodeBody(std::span<const uint8_t> body,
                                        const ProtocolLimits& limits);
  bool operator==(const LookupReply&) const = default;
};

// One block the server pulls from client memory.
struct StoreEntry {
  BlockKey key{};
  uint64_t address = 0;  // client virtual address of the block object, inside the rkey's region
  uint64_t length = 0;   // object bytes, 1..max_block_object_bytes; address + length < 2^64
  // The key of the block before this one in its chain, all zero for none (the chain's first
  // block, or not known): a hint that lets a prefix-aware policy evict chains from the tail.
  BlockKey parent{};
  bool operator==(const StoreEntry&) const = default;
};
// Bytes of one StoreEntry on the wire: key, address, length, parent.
inline constexpr size_t kStoreEntryWireBytes = 32 + 8 + 8 + 32;

// Client -> server: store these block objects; the server reads each with a UCX get through
// `remote_key` and verifies it before it becomes visible.
struct Store {
  static constexpr MessageType kType = MessageType::kStore;
  // The packed UCX rkey of the client's registered memory; 1..max_remote_key_bytes bytes.
  std::vector<uint8_t> remote_key;
  std::vector<StoreEntry> entries;  // at most max_keys_per_batch

  Status Validate(const ProtocolLimits& limits) const;
  void EncodeBody(std::vector<uint8_t>* out) const;
  static Result<Store> DecodeBody(std::span<const uint8_t> body, const ProtocolLimits& limits);
  bool operator==(const Store&) const = default;
};

// One status per Store entry: kOk (stored, or already present), kTransferFailed, kCorruption
// (the object failed verification), kResourceExhausted, ...
struct StoreReply {
  static constexpr MessageType kType = MessageType::kStoreReply;
  std::vector<WireStatus> statuses;  // at most max_keys_per_batch, each a known value

  Status Validate(const ProtocolLimits& limits) const;
  void EncodeBody(std::vector<uint8_t>* out) const;
  static Result<StoreReply> DecodeBody(std::span<const uint8_t> body, const ProtocolLimits& limits);
  bool operator==(const StoreReply&) const = default;
};

// One block (or byte range of it) the server pushes into client memory.
struct LoadEntry {
  BlockKey key{};
  uint64_t address = 0;   // client virtual address of the destination, inside the rkey's region
  uint64_t capacity = 0;  // destination bytes, 1..max_block_object_bytes;
                          // address + capacity < 2^64
  uint64_t offset = 0;    // first object byte to send, <= max_block_object_bytes
  uint64_t length = 0;    // bytes to send, 0 = from offset to the end of the object; when
                          // nonzero, <= capacity (so <= max_block_object_bytes)
  bool operator==(const LoadEntry&) const = default;
};

// Client -> server: push these objects, or ranges of them (a layer range for layer-wise loads),
// into client memory with UCX puts.
struct Load {
  static constexpr MessageType kType = MessageType::kLoad;
  // The lease from LookupReply that pins the keys, or 0 to load without one (a key evicted in
  // the meantime is then a kNotFound).
  uint64_t lease_id = 0;
  // The packed UCX rkey of the client's registered memory; 1..max_remote_key_bytes bytes.
  std::vector<uint8_t> remote_key;
  std::vector<LoadEntry> entries;  // at most max_keys_per_batch

  Status Validate(const ProtocolLimits& limits) const;
  void EncodeBody(std::vector<uint8_t>* out) const;
  static Result<Load> DecodeBody(std::span<const uint8_t> body, const ProtocolLimits& limits);
  bool operator==(const Load&) const = default;
};

// The result of one Load entry.
struct LoadOutcome {
  // kOk (bytes written), kNotFound (a miss, also when an expired lease let the block go),
  // kOutOfRange (the range lies outside the object or does not fit capacity), kTransferFailed,
  // kCorruption (the stored object failed verification and was dropped), ...
  WireStatus status = WireStatus::kOk;
  // The whole object's size when the server found it (also on kOutOfRange, so the client can
  // retry with room enough), else 0; <= max_block_object_bytes. On kOk the bytes written are
  // (length ? length : object_size - offset).
  uint64_t object_size = 0;
  bool operator==(const LoadOutcome&) const = default;
};

struct LoadReply {
  static constexpr MessageType kType = MessageType::kLoadReply;
  std::vector<LoadOutcome> outcomes;  // at most max_keys_per_batch

  Status Validate(const ProtocolLimits& limits) const;
  void EncodeBody(std::vector<uint8_t>* out) const;
  static Result<LoadReply> DecodeBody(std::span<const uint8_t> body, const ProtocolLimits& limits);
  bool operator==(const LoadReply&) const = default;
};

// Client -> server: the client is done with a lease before its expiry.
struct ReleaseLease {
  static constexpr MessageType kType = MessageType::kReleaseLease;
  uint64_t lease_id = 0;  // nonzero

  Status Validate(const ProtocolLimits& limits) const;
  void EncodeBody(std::vector<uint8_t>* out) const;
  static Result<ReleaseLease> DecodeBody(std::span<const uint8_t> body,
                                         const ProtocolLimits& limits);
  bool operator==(const ReleaseLease&) const = default;
};

// kOk, or kLeaseExpired for a lease that is unknown, expired or another session's.
struct ReleaseLeaseReply {
  static constexpr MessageType kType = MessageType::kReleaseLeaseReply;
  WireStatus status = WireStatus::kOk;
  std::string message;  // <= max_string_bytes; empty on success

  // StatusFromWire(status, message).
  Status ToStatus() const { return StatusFromWire(status, message); }
  Status Validate(const ProtocolLimits& limits) const;
  void EncodeBody(std::vector<uint8_t>* out) const;
  static Result<ReleaseLeaseReply> DecodeBody(std::span<const uint8_t> body,
                                              const ProtocolLimits& limits);
  bool operator==(const ReleaseLeaseReply&) const = default;
};

// Client -> server: drop these keys from every tier.
struct Delete {
  static constexpr MessageType kType = MessageType::kDelete;
  std::vector<BlockKey> keys;  // at most max_keys_per_batch

  Status Validate(const ProtocolLimits& limits) const;
  void EncodeBody(std::vector<uint8_t>* out) const;
  static Result<Delete> DecodeBody(std::span<const uint8_t> body, const ProtocolLimits& limits);
  bool operator==(const Delete&) const = default;
};

// One status per key: kOk (deleted) or kNotFound (was not there), ...
struct DeleteReply {
  static constexpr MessageType kType = MessageType::kDeleteReply;
  std::vector<WireStatus> statuses;  // at most max_keys_per_batch, each a known value

  Status Validate(const ProtocolLimits& limits) const;
  void EncodeBody(std::vector<uint8_t>* out) const;
  static Result<DeleteReply> DecodeBody(std::span<const uint8_t> body,
                                        const ProtocolLimits& limits);
  bool operator==(const DeleteReply&) const = default;
};

inline constexpr size_t kGpuPoolHandleBytes = 64;  // a cudaIpcMemHandle_t, opaque here
inline constexpr size_t kGpuDeviceUuidBytes = 16;  // a cudaUUID_t, opaque here
// Wire bytes of one GpuExportReply entry: the status byte, then, only when it is kOk, the handle,
// the UUID, pool_bytes, offset and length.
inline constexpr size_t kGpuExportOkEntryBytes =
    1 + kGpuPoolHandleBytes + kGpuDeviceUuidBytes + 8 + 8 + 4;

// Client -> server: CUDA IPC descriptions of blocks that sit in the server's gpu tier, for a
// process on the server's host that copies them device to device. Only for leased blocks: the
// lease keeps each block where the description says until it is released or expires.
struct GpuExport {
  static constexpr MessageType kType = MessageType::kGpuExport;
  // The lease from LookupReply that covers every key; nonzero.
  uint64_t lease_id = 0;
  // At most GpuExportKeysPerRequest(limits).
  std::vector<BlockKey> keys;

  Status Validate(const ProtocolLimits& limits) const;
  void EncodeBody(std::vector<uint8_t>* out) const;
  static Result<GpuExport> DecodeBody(std::span<const uint8_t> body, const ProtocolLimits& limits);
  bool operator==(const GpuExport&) const = default;
};

// Most keys one GpuExport may carry under `limits`: max_keys_per_batch, or fewer when a reply of
// that many kOk entries and a message of max_string_bytes would not fit in max_body_bytes (a
// reply entry is about three times a request key). 0 when not even one would.
uint32_t GpuExportKeysPerRequest(const ProtocolLimits& limits);

// The result of one GpuExport key. The fields after `status` are set exactly when it is kOk;
// they describe the block to kernels::GpuIpcImporter (kernels/gpu_ipc.h), which this module
// does not depend on.
struct GpuExportEntry {
  // kOk (exported), kNotFound (absent, another tenant's, or not in the gpu tier: load it the
  // ordinary way), kLeaseExpired (the lease is not this session's live lease), kUnsupported
  // (the server does not export, see the reply's message), kInvalidArgument (the lease does not
  // cover the key), kUnavailable, kInternal, ...
  WireStatus status = WireStatus::kOk;
  std::array<uint8_t, kGpuPoolHandleBytes> pool_handle{};  // the pool's cudaIpcMemHandle_t
  std::array<uint8_t, kGpuDeviceUuidBytes> device_uuid{};  // the GPU that holds the pool
  uint64_t pool_bytes = 0;  // size of the pool allocation; offset + length <= pool_bytes
  uint64_t offset = 0;      // the block object's first byte in the pool
  uint32_t length = 0;      // the block object's bytes, 1..max_block_object_bytes
  bool operator==(const GpuExportEntry&) const = default;
};

struct GpuExportReply {
  static constexpr MessageType kType = MessageType::kGpuExportReply;
  std::vector<GpuExportEntry> entries;  // one per request key; at most max_keys_per_batch
  // Why the entries that are neither kOk nor kNotFound failed, when the server has words for it
  // (export disabled, a lease of another session); empty otherwise. <= max_string_bytes.
  std::string message;

  Status Validate(const ProtocolLimits& limits) const;
  void EncodeBody(std::vector<uint8_t>* out) const;
  static Result<GpuExportReply> DecodeBody(std::span<const uint8_t> body,
                                           const ProtocolLimits& limits);
  bool operator==(const GpuExportReply&) const = default;
};

// Client -> server: the client is about to deregister the memory behind `remote_key`. The server
// forgets what it derived from those bytes (an unpacked key, its mapping of the memory) once the
// requests it already received are done, so that a later registration that packs to the same
// bytes is never taken for this one (docs/data_plane.md §7).
struct ReleaseMemory {
  static constexpr MessageType kType = MessageType::kReleaseMemory;
  // The packed UCX rkey the client sent in Store and Load; 1..max_remote_key_bytes bytes.
  std::vector<uint8_t> remote_key;

  Status Validate(const ProtocolLimits& limits) const;
  void EncodeBody(std::vector<uint8_t>* out) const;
  static Result<ReleaseMemory> DecodeBody(std::span<const uint8_t> body,
                                          const ProtocolLimits& limits);
  bool operator==(const ReleaseMemory&) const = default;
};

// kOk, also when the server held nothing for the key (it never saw it, or the session has no data
// plane).
struct ReleaseMemoryReply {
  static constexpr MessageType kType = MessageType::kReleaseMemoryReply;
  WireStatus status = WireStatus::kOk;
  std::string message;  // <= max_string_bytes; empty on success

  // StatusFromWire(status, message).
  Status ToStatus() const { return StatusFromWire(status, message); }
  Status Validate(const ProtocolLimits& limits) const;
  void EncodeBody(std::vector<uint8_t>* out) const;
  static Result<ReleaseMemoryReply> DecodeBody(std::span<const uint8_t> body,
                                               const ProtocolLimits& limits);
  bool operator==(const ReleaseMemoryReply&) const = default;
};

}  // namespace kvault::transport
