#pragma once
// Session messages: the handshake (Hello, Auth, ProveWorker, AttachMemory), Stats, Ping and the
// ErrorReply a server sends for a request it cannot decode or refuses. docs/protocol.md §4 gives
// the bytes of each body, docs/authentication.md §6 the handshake.
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

// The server's challenge, the client's and the server's proofs, a memory handle.
using Bytes32 = std::array<uint8_t, 32>;

// Client -> server, first frame of a connection; a later Hello restarts the handshake. It offers
// the UCX worker at `worker_address`; the HelloReply names the server's memory socket and the
// server's pid and uid. The Auth proves the client's token, and the AuthReply proves the server's
// (server_proof) and names the data plane: the UCX worker, or none. Only after checking the
// server's proof, and that the memory socket's listener has the announced pid and uid, may a
// client on the same host hand over its memory on the memory socket (memory_handover_wire.h) and
// redeem the handle it got with AttachMemory, which moves the session to the process_memory data
// plane (docs/authentication.md §6, docs/memory_handover.md).
struct Hello {
  static constexpr MessageType kType = MessageType::kHello;
  // Highest protocol version the client speaks; >= 1.
  uint16_t client_version = kProtocolVersion;
  // Tenant whose token the client will prove; empty for the default tenant.
  std::string tenant;
  // Free text for the server's logs ("vllm-worker-3").
  std::string client_name;
  // The client's UCX worker address, so the server can open an endpoint to it; may be empty
  // when the client moves no block data (a stats tool) or counts on handing over its memory
  // (then its session has no data plane until AttachMemory succeeds).
  std::vector<uint8_t> worker_address;

  Status Validate(const ProtocolLimits& limits) const;
  void EncodeBody(std::vector<uint8_t>* out) const;
  static Result<Hello> DecodeBody(std::span<const uint8_t> body, const ProtocolLimits& limits);
  bool operator==(const Hello&) const = default;
};

// The most entries a StatsReply carries, whatever the session's max_keys_per_batch (a daemon held
// to a few keys per request still answers Stats with all its counters).
inline constexpr uint32_t kMaxStatsEntries = 4096;

// The longest HelloReply::memory_socket: sizeof(sockaddr_un::sun_path) - 1, so that the path and
// its terminating NUL fit a Unix socket address.
inline constexpr size_t kMaxMemorySocketPathBytes = 107;

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
  // Absolute path of the server's Unix socket where a client on the same host may hand over its
  // memory after a successful Auth (docs/memory_handover.md); empty = the server offers no
  // process_memory plane. The AuthReply's server_proof covers it.
  // Empty, or starts with '/' and holds no NUL byte (else InvalidArgument); at most
  // kMaxMemorySocketPathBytes (else OutOfRange).
  std::string memory_socket;
  // The server process's id and effective user id as it sees them (getpid, geteuid); the client
  // compares them with the credentials (SO_PEERCRED) of whoever listens at memory_socket before
  // it hands anything over, so memory never goes to another listener at that path (another
  // mount namespace, another pid namespace: there the numbers differ and the client keeps to
  // UCX). The AuthReply's server_proof covers both. Both 0 when memory_socket is empty (else
  // InvalidArgument); server_pid nonzero when it is not (else InvalidArgument). uid 0 is valid.
  uint32_t server_pid = 0;
  uint32_t server_uid = 0;
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
  // and checked in common/ (AuthProof), carried here as opaque bytes.
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
  kProcessMemory = 2,  // the server copies to and from the memory the client handed over; set
                       // only by a successful AttachMemory, never named by a version-3
                       // AuthReply (still decodable there); no ProveWorker is needed
};

// Stable name of a data plane for logs: "none", "ucx", "process_memory"; "unknown" for a value
// outside the enum.
std::string_view DataPlaneName(DataPlane plane);

// Server -> client: kOk, a session id, the session's data plane and the server's proof; or, when
// the proof matched but the offered data plane is unusable, that failure's code with session id
// 0, data plane kNone and an all-zero server_proof (the connection stays unauthenticated; the
// server may close it). A wrong proof is answered with an ErrorReply instead.
struct AuthReply {
  static constexpr MessageType kType = MessageType::kAuthReply;
  WireStatus status = WireStatus::kOk;
  // Identifies the session in the server's logs; nonzero when status is kOk, else 0.
  uint64_t session_id = 0;
  // How the session's block bytes move; kNone unless status is kOk. A version-3 server names
  // kNone or kUcx here: kProcessMemory comes only from AttachMemory (the decoder still accepts
  // it; docs/protocol.md §4.6).
  DataPlane data_plane = DataPlane::kNone;
  // When status is kOk: ServerProof(SHA-256(token), the HelloReply's nonce, the Auth's proof,
  // the HelloReply's server_pid, server_uid and memory_socket)
  // (common/include/kvault/common/auth.h), showing that the server knows the token too and
  // vouching for what it announced about its memory socket. The client checks it
  // (VerifyServerProof) before it hands any memory over. Any value on the wire when status is kOk;
  // all zero otherwise (else InvalidArgument).
  Bytes32 server_proof{};
  // Why authentication failed; empty on success. <= max_string_bytes.
  std::string message;

  // StatusFromWire(status, message).
  Status ToStatus() const { return StatusFromWire(status, message); }
  Status Validate(const ProtocolLimits& limits) const;
  void EncodeBody(std::vector<uint8_t>* out) const;
  static Result<AuthReply> DecodeBody(std::span<const uint8_t> body, const ProtocolLimits& limits);
  bool operator==(const AuthReply&) const = default;
};

// Client -> server, only after an AuthReply with data_plane kUcx and no successful AttachMemory:
// the token the server sent through its UCX endpoint to the Hello's worker address
// (transport/ucx/worker_proof.h). It shows that the worker the address names belongs to this
// client; until it arrives, the server moves no block data for the session. A kProcessMemory or
// kNone session has no worker to prove.
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

// Client -> server, after a successful Auth: the handle the server's memory socket issued for
// this client's memory (HandOverReply::handle, docs/memory_handover.md). Redeeming it spends the
// handle, whatever the reply. Any value is valid on the wire.
struct AttachMemory {
  static constexpr MessageType kType = MessageType::kAttachMemory;
  Bytes32 handle{};

  Status Validate(const ProtocolLimits& limits) const;
  void EncodeBody(std::vector<uint8_t>* out) const;
  static Result<AttachMemory> DecodeBody(std::span<const uint8_t> body,
                                         const ProtocolLimits& limits);
  bool operator==(const AttachMemory&) const = default;
};

// Server -> client: kOk when the session's block bytes now move through that memory (data plane
// kProcessMemory; the server drops the UCX endpoint the Auth opened, and no ProveWorker is
// needed), else why not: kUnsupported (the server has no process_memory plane),
// kInvalidArgument (an unknown, expired or spent handle, a handle whose connection ends differ
// from this session's, a probe that no longer reads back, memory that is the server's own, a
// session attached already), or the probe read's own code (kUnavailable for an exited process).
// On failure the session keeps the data plane its AuthReply named.
struct AttachMemoryReply {
  static constexpr MessageType kType = MessageType::kAttachMemoryReply;
  WireStatus status = WireStatus::kOk;
  // Why the memory was not attached; empty on success. <= max_string_bytes.
  std::string message;

  // StatusFromWire(status, message).
  Status ToStatus() const { return StatusFromWire(status, message); }
  Status Validate(const ProtocolLimits& limits) const;
  void EncodeBody(std::vector<uint8_t>* out) const;
  static Result<AttachMemoryReply> DecodeBody(std::span<const uint8_t> body,
                                              const ProtocolLimits& limits);
  bool operator==(const AttachMemoryReply&) const = default;
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
