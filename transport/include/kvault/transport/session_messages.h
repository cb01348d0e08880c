#pragma once
// Session messages: the handshake (Hello, Auth), Stats, Ping and the ErrorReply a server sends
// for a request it cannot decode or refuses. docs/protocol.md §4 gives the bytes of each body,
// §6 the handshake.
//
// Every message struct of this file and of block_messages.h has the same four members:
//   kType        its MessageType.
//   Validate     OK when the fields obey the protocol's rules and `limits`; otherwise
//                InvalidArgument naming the field for a bad value (an enum outside its range, a
//                zero that must not be), or OutOfRange for a string, byte field, count or size
//                over its limit. The encoder and the decoder both apply it, so whatever encodes
//                under some limits decodes under the same limits to an equal struct.
//   EncodeBody   appends the body (no frame header) to *out. Precondition: Validate(limits) is OK
//                for the limits the peer decodes with; AppendFrame (messages.h) checks it.
//   DecodeBody   decodes a complete body; never reads outside it and allocates only after a
//                count or length has been checked against its limit and the bytes left. Returns
//                Corruption for a truncated body, trailing bytes, a bad bool or enum byte, or a
//                value Validate refuses as InvalidArgument; OutOfRange for a count, length or
//                size over `limits`. The message names the message type and the field.
// Plain value types; thread-compatible. The functions are pure: thread-safe.

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "kvault/common/result.h"
#include "kvault/transport/frame.h"
#include "kvault/transport/protocol_limits.h"
#include "kvault/transport/wire_status.h"

namespace kvault::transport {

// The server's challenge and the client's proof.
using Bytes32 = std::array<uint8_t, 32>;

// Client -> server, first frame of a connection; a later Hello restarts the handshake. It offers
// the server two ways to move the session's block bytes (DataPlane): the UCX worker at
// `worker_address`, and the client process's own memory (`client_pid`). AuthReply says which one
// the server took.
struct Hello {
  static constexpr MessageType kType = MessageType::kHello;
  // Highest protocol version the client speaks; >= 1.
  uint16_t client_version = kProtocolVersion;
  // Tenant whose token the client will prove; empty for the default tenant.
  std::string tenant;
  // Free text for the server's logs ("vllm-worker-3").
  std::string client_name;
  // The client's UCX worker address, so the server can open an endpoint to it; may be empty
  // when the client moves no block data (a stats tool) or offers only `client_pid`.
  std::vector<uint8_t> worker_address;
  // The client's process id in its own pid namespace, or 0. A server on the same host may then
  // copy block bytes straight between its memory and the client's (its /proc/<pid>/mem)
  // once it has checked that this process holds the control connection; 0 = do not offer.
  uint32_t client_pid = 0;

  Status Validate(const ProtocolLimits& limits) const;
  void EncodeBody(std::vector<uint8_t>* out) const;
  static Result<Hello> DecodeBody(std::span<const uint8_t> body, const ProtocolLimits& limits);
  bool operator==(const Hello&) const = default;
};

// Server -> client: the challenge.
struct HelloReply {
  static constexpr MessageType kType = MessageType::kHelloReply;
  // The version the connection uses from the next frame on: min(client_version, the highest the
  // server speaks); >= 1.
  uint16_t server_version = kProtocolVersion;
  // Fresh random bytes for this Hello; the client's Auth proves its token over them.
  Bytes32 nonce{};
  // The server's UCX worker address; may be empty when the server has no data plane.
  std::vector<uint8_t> worker_address;
  // The limits the server decodes with; must satisfy ProtocolLimits::Validate.
  ProtocolLimits limits;

  Status Validate(const ProtocolLimits& limits) const;
  void EncodeBody(std::vector<uint8_t>* out) const;
  static Result<HelloReply> DecodeBody(std::span<const uint8_t> body, const ProtocolLimits& limits);
  bool operator==(const HelloReply&) const = default;
};

// Client -> server: the answer to the challenge.
struct Auth {
  static constexpr MessageType kType = MessageType::kAuth;
  // HMAC-SHA256 over the fixed context string and the nonce, keyed by SHA-256(token); computed
  // and checked in common/, carried here as opaque bytes.
  Bytes32 proof{};

  Status Validate(const ProtocolLimits& limits) const;
  void EncodeBody(std::vector<uint8_t>* out) const;
  static Result<Auth> DecodeBody(std::span<const uint8_t> body, const ProtocolLimits& limits);
  bool operator==(const Auth&) const = default;
};

// How a session's block bytes move (AuthReply::data_plane).
enum class DataPlane : uint8_t {
  kNone = 0,           // no data plane: the Hello offered none, or the server has none
  kUcx = 1,            // the server opened a UCX endpoint to the Hello's worker; the client must
                       // answer with ProveWorker before block requests move data
  kProcessMemory = 2,  // the server copies directly to and from the client process's memory
                       // (Hello::client_pid); no ProveWorker is needed
};

// Stable name of a data plane for logs: "none", "ucx", "process_memory"; "unknown" for a value
// outside the enum.
std::string_view DataPlaneName(DataPlane plane);

// Server -> client: kOk, a session id and the session's data plane; or, when the proof matched
// but the offered data plane is unusable, that failure's code with session id 0 and data plane
// kNone (the connection stays unauthenticated; the server may close it). A wrong proof is
// answered with an ErrorReply instead.
struct AuthReply {
  static constexpr MessageType kType = MessageType::kAuthReply;
  WireStatus status = WireStatus::kOk;
  // Identifies the session in the server's logs; nonzero when status is kOk, else 0.
  uint64_t session_id = 0;
  // How the session's block bytes move; kNone unless status is kOk.
  DataPlane data_plane = DataPlane::kNone;
  // Why authentication failed; empty on success. <= max_string_bytes.
  std::string message;

  // StatusFromWire(status, message).
  Status ToStatus() const { return StatusFromWire(status, message); }
  Status Validate(const ProtocolLimits& limits) const;
  void EncodeBody(std::vector<uint8_t>* out) const;
  static Result<AuthReply> DecodeBody(std::span<const uint8_t> body, const ProtocolLimits& limits);
  bool operator==(const AuthReply&) const = default;
};

// Client -> server, only after an AuthReply with data_plane kUcx: the token the server sent
// through its UCX endpoint to the Hello's worker address (transport/ucx/worker_proof.h). It shows
// that the worker the address names belongs to this client; until it arrives, the server moves
// no block data for the session. A kProcessMemory or kNone session has no worker to prove.
struct ProveWorker {
  static constexpr MessageType kType = MessageType::kProveWorker;
  Bytes32 token{};

  Status Validate(const ProtocolLimits& limits) const;
  void EncodeBody(std::vector<uint8_t>* out) const;
  static Result<ProveWorker> DecodeBody(std::span<const uint8_t> body,
                                        const ProtocolLimits& limits);
  bool operator==(const ProveWorker&) const = default;
};

// Server -> client: kOk when the token matches; kUnauthenticated when it does not (the session
// then has no data plane until a new Hello); kInvalidArgument when the session has no worker to
// prove (its data plane is not kUcx) or proved it already.
struct ProveWorkerReply {
  static constexpr MessageType kType = MessageType::kProveWorkerReply;
  WireStatus status = WireStatus::kOk;
  // Why the proof failed; empty on success. <= max_string_bytes.
  std::string message;

  // StatusFromWire(status, message).
  Status ToStatus() const { return StatusFromWire(status, message); }
  Status Validate(const ProtocolLimits& limits) const;
  void EncodeBody(std::vector<uint8_t>* out) const;
  static Result<ProveWorkerReply> DecodeBody(std::span<const uint8_t> body,
                                             const ProtocolLimits& limits);
  bool operator==(const ProveWorkerReply&) const = default;
};

// Client -> server: what `kvault stats` prints. Empty body.
struct Stats {
  static constexpr MessageType kType = MessageType::kStats;

  Status Validate(const ProtocolLimits& limits) const;
  void EncodeBody(std::vector<uint8_t>* out) const;
  static Result<Stats> DecodeBody(std::span<const uint8_t> body, const ProtocolLimits& limits);
  bool operator==(const Stats&) const = default;
};

// One named figure of a StatsReply: a counter or byte count (u64) or a ratio or rate (f64).
struct StatEntry {
  // Non-empty, <= max_string_bytes, e.g. "tier_host_used_bytes".
  std::string name;
  std::variant<uint64_t, double> value;
  bool operator==(const StatEntry&) const = default;
};

// Server -> client.
struct StatsReply {
  static constexpr MessageType kType = MessageType::kStatsReply;
  // In the server's order; at most max_keys_per_batch entries. Names are not checked for
  // uniqueness.
  std::vector<StatEntry> entries;

  Status Validate(const ProtocolLimits& limits) const;
  void EncodeBody(std::vector<uint8_t>* out) const;
  static Result<StatsReply> DecodeBody(std::span<const uint8_t> body, const ProtocolLimits& limits);
  bool operator==(const StatsReply&) const = default;
};

// Client -> server: liveness and round-trip time. Allowed before Auth.
struct Ping {
  static constexpr MessageType kType = MessageType::kPing;
  uint64_t payload = 0;  // echoed unchanged in Pong

  Status Validate(const ProtocolLimits& limits) const;
  void EncodeBody(std::vector<uint8_t>* out) const;
  static Result<Ping> DecodeBody(std::span<const uint8_t> body, const ProtocolLimits& limits);
  bool operator==(const Ping&) const = default;
};

// Server -> client: the reply to Ping.
struct Pong {
  static constexpr MessageType kType = MessageType::kPong;
  uint64_t payload = 0;

  Status Validate(const ProtocolLimits& limits) const;
  void EncodeBody(std::vector<uint8_t>* out) const;
  static Result<Pong> DecodeBody(std::span<const uint8_t> body, const ProtocolLimits& limits);
  bool operator==(const Pong&) const = default;
};

// Server -> client, in place of the reply to a request the server cannot decode or refuses
// (unknown version, bad body, not authenticated, draining). Carries the request id when the
// server could read it, else 0.
struct ErrorReply {
  static constexpr MessageType kType = MessageType::kError;
  WireStatus status = WireStatus::kInternal;  // never kOk
  std::string message;                        // <= max_string_bytes; may be empty

  // An ErrorReply for a non-OK `status`: its wire code and its message cut to
  // limits.max_string_bytes (so that it always encodes). An OK status gives kInternal.
  static ErrorReply FromStatus(const Status& status, const ProtocolLimits& limits = {});
  // The same, with a protocol-specific code (kUnsupportedVersion, kUnauthenticated, ...).
  static ErrorReply Make(WireStatus code, std::string_view message,
                         const ProtocolLimits& limits = {});
  // StatusFromWire(status, message).
  Status ToStatus() const { return StatusFromWire(status, message); }

  Status Validate(const ProtocolLimits& limits) const;
  void EncodeBody(std::vector<uint8_t>* out) const;
  static Result<ErrorReply> DecodeBody(std::span<const uint8_t> body, const ProtocolLimits& limits);
  bool operator==(const ErrorReply&) const = default;
};

}  // namespace kvault::transport
