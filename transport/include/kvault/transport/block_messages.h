#pragma once
// Block messages: Lookup, Store, Load, ReleaseLease, Delete and their replies
// (docs/protocol.md §4). Each struct has the members kType, Validate, EncodeBody and DecodeBody
// whose contract session_messages.h states once.
//
// Keys are 32-byte block keys (common/block_key.h), scoped by the server to the authenticated
// tenant. A batch reply lists one result per request key, in request order; the decoder of a
// reply cannot know the request, so the caller checks that the counts match.
// Plain value types; thread-compatible. The functions are pure: thread-safe.

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
  bool operator==(const StoreEntry&) const = default;
};

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

}  // namespace kvault::transport
