// Bodies of Hello, HelloReply, Auth, AuthReply, ProveWorker, ProveWorkerReply, AttachMemory,
// AttachMemoryReply, Stats, StatsReply, Ping, Pong and ErrorReply (docs/protocol.md §4.2, §4.4,
// §4.5). Each decoder reads its fields in the order its encoder
// writes them.
#include "kvault/transport/session_messages.h"

#include <string>
#include <string_view>

#include "wire_io.h"

namespace kvault::transport {
namespace {

using wire::CheckBlob;
using wire::CheckKnownStatus;
using wire::CheckStatusBody;
using wire::CheckString;
using wire::FinishDecode;
using wire::WireReader;
using wire::WireWriter;
using wire::WriteStatusBody;

// Bytes a StatsReply entry takes at least: empty name length, kind, value.
constexpr size_t kMinStatEntryBytes = 2 + 1 + 8;
constexpr uint8_t kStatU64 = 0;
constexpr uint8_t kStatF64 = 1;

// A status message cut to the limit, so that an error can always be reported.
std::string Truncated(std::string_view message, const ProtocolLimits& limits) {
  return std::string(message.substr(0, limits.max_string_bytes));
}

Status MemorySocketTooLong(size_t bytes) {
  return Status::OutOfRange("memory_socket of " + std::to_string(bytes) +
                            " bytes exceeds kMaxMemorySocketPathBytes " +
                            std::to_string(kMaxMemorySocketPathBytes));
}

}  // namespace

// --- Hello: u16 client_version, string tenant, string client_name, blob worker_address.

Status Hello::Validate(const ProtocolLimits& limits) const {
  if (client_version == 0) return Status::InvalidArgument("client_version must be >= 1");
  KVAULT_RETURN_IF_ERROR(CheckString(tenant, limits.max_string_bytes, "tenant"));
  KVAULT_RETURN_IF_ERROR(CheckString(client_name, limits.max_string_bytes, "client_name"));
  return CheckBlob(worker_address.size(), limits.max_worker_address_bytes, "worker_address",
                   "max_worker_address_bytes");
}

void Hello::EncodeBody(std::vector<uint8_t>* out) const {
  WireWriter w(out);
  w.U16(client_version);
  w.String(tenant);
  w.String(client_name);
  w.Blob(worker_address);
}

Result<Hello> Hello::DecodeBody(std::span<const uint8_t> body, const ProtocolLimits& limits) {
  WireReader r(body);
  Hello m;
  m.client_version = r.U16();
  m.tenant = r.String(limits.max_string_bytes, "tenant");
  m.client_name = r.String(limits.max_string_bytes, "client_name");
  m.worker_address = r.Blob(limits.max_worker_address_bytes, "worker_address");
  return FinishDecode(r, std::move(m), limits, "hello");
}

// --- HelloReply: u16 server_version, 32-byte nonce, blob worker_address, string memory_socket
// (<= kMaxMemorySocketPathBytes whatever max_string_bytes says), u32 server_pid,
// u32 server_uid, then the limits:
// u32 max_body_bytes, u32 max_keys_per_batch, u64 max_block_object_bytes, u32 max_string_bytes,
// u32 max_remote_key_bytes, u32 max_worker_address_bytes.

Status HelloReply::Validate(const ProtocolLimits& limits) const {
  if (server_version == 0) return Status::InvalidArgument("server_version must be >= 1");
  KVAULT_RETURN_IF_ERROR(CheckBlob(worker_address.size(), limits.max_worker_address_bytes,
                                   "worker_address", "max_worker_address_bytes"));
  if (memory_socket.size() > kMaxMemorySocketPathBytes) {
    return MemorySocketTooLong(memory_socket.size());
  }
  if (!memory_socket.empty() && memory_socket.front() != '/') {
    return Status::InvalidArgument("memory_socket must be an absolute path");
  }
  if (memory_socket.find('\0') != std::string::npos) {
    return Status::InvalidArgument("memory_socket holds a NUL byte");
  }
  if (memory_socket.empty()) {
    if (server_pid != 0) {
      return Status::InvalidArgument("server_pid must be 0 when memory_socket is empty");
    }
    if (server_uid != 0) {
      return Status::InvalidArgument("server_uid must be 0 when memory_socket is empty");
    }
  } else if (server_pid == 0) {
    return Status::InvalidArgument("server_pid must be nonzero when memory_socket is set");
  }
  return this->limits.Validate().WithContext("announced limits");
}

void HelloReply::EncodeBody(std::vector<uint8_t>* out) const {
  WireWriter w(out);
  w.U16(server_version);
  w.Raw(nonce);
  w.Blob(worker_address);
  w.String(memory_socket);
  w.U32(server_pid);
  w.U32(server_uid);
  w.U32(limits.max_body_bytes);
  w.U32(limits.max_keys_per_batch);
  w.U64(limits.max_block_object_bytes);
  w.U32(limits.max_string_bytes);
  w.U32(limits.max_remote_key_bytes);
  w.U32(limits.max_worker_address_bytes);
}

Result<HelloReply> HelloReply::DecodeBody(std::span<const uint8_t> body,
                                          const ProtocolLimits& limits) {
  WireReader r(body);
  HelloReply m;
  m.server_version = r.U16();
  m.nonce = r.Bytes32();
  m.worker_address = r.Blob(limits.max_worker_address_bytes, "worker_address");
  const uint16_t socket_bytes = r.U16();
  if (r.ok() && socket_bytes > kMaxMemorySocketPathBytes) {
    return MemorySocketTooLong(socket_bytes).WithContext("hello_reply");
  }
  const std::span<const uint8_t> socket = r.Take(socket_bytes);
  m.memory_socket.assign(socket.begin(), socket.end());
  m.server_pid = r.U32();
  m.server_uid = r.U32();
  m.limits.max_body_bytes = r.U32();
  m.limits.max_keys_per_batch = r.U32();
  m.limits.max_block_object_bytes = r.U64();
  m.limits.max_string_bytes = r.U32();
  m.limits.max_remote_key_bytes = r.U32();
  m.limits.max_worker_address_bytes = r.U32();
  return FinishDecode(r, std::move(m), limits, "hello_reply");
}

// --- Auth: 32-byte proof.

Status Auth::Validate(const ProtocolLimits&) const { return Status::Ok(); }

void Auth::EncodeBody(std::vector<uint8_t>* out) const { WireWriter(out).Raw(proof); }

Result<Auth> Auth::DecodeBody(std::span<const uint8_t> body, const ProtocolLimits& limits) {
  WireReader r(body);
  Auth m;
  m.proof = r.Bytes32();
  return FinishDecode(r, m, limits, "auth");
}

// --- ProveWorker: 32-byte token.

Status ProveWorker::Validate(const ProtocolLimits&) const { return Status::Ok(); }

void ProveWorker::EncodeBody(std::vector<uint8_t>* out) const { WireWriter(out).Raw(token); }

Result<ProveWorker> ProveWorker::DecodeBody(std::span<const uint8_t> body,
                                            const ProtocolLimits& limits) {
  WireReader r(body);
  ProveWorker m;
  m.token = r.Bytes32();
  return FinishDecode(r, m, limits, "prove_worker");
}

// --- ProveWorkerReply: u8 status, string message.

Status ProveWorkerReply::Validate(const ProtocolLimits& limits) const {
  return CheckStatusBody(status, message, limits);
}

void ProveWorkerReply::EncodeBody(std::vector<uint8_t>* out) const {
  WriteStatusBody(status, message, out);
}

Result<ProveWorkerReply> ProveWorkerReply::DecodeBody(std::span<const uint8_t> body,
                                                      const ProtocolLimits& limits) {
  return wire::DecodeStatusBody<ProveWorkerReply>(body, limits, "prove_worker_reply");
}

// --- AttachMemory: 32-byte handle (any value).

Status AttachMemory::Validate(const ProtocolLimits&) const { return Status::Ok(); }

void AttachMemory::EncodeBody(std::vector<uint8_t>* out) const { WireWriter(out).Raw(handle); }

Result<AttachMemory> AttachMemory::DecodeBody(std::span<const uint8_t> body,
                                              const ProtocolLimits& limits) {
  WireReader r(body);
  AttachMemory m;
  m.handle = r.Bytes32();
  return FinishDecode(r, m, limits, "attach_memory");
}

// --- AttachMemoryReply: u8 status, string message.

Status AttachMemoryReply::Validate(const ProtocolLimits& limits) const {
  return CheckStatusBody(status, message, limits);
}

void AttachMemoryReply::EncodeBody(std::vector<uint8_t>* out) const {
  WriteStatusBody(status, message, out);
}

Result<AttachMemoryReply> AttachMemoryReply::DecodeBody(std::span<const uint8_t> body,
                                                        const ProtocolLimits& limits) {
  return wire::DecodeStatusBody<AttachMemoryReply>(body, limits, "attach_memory_reply");
}

// --- AuthReply: u8 status, u64 session_id, u8 data_plane, 32-byte server_proof (all zero unless
// status is ok), string message.

std::string_view DataPlaneName(DataPlane plane) {
  switch (plane) {
    case DataPlane::kNone:
      return "none";
    case DataPlane::kUcx:
      return "ucx";
    case DataPlane::kProcessMemory:
      return "process_memory";
  }
  return "unknown";
}

Status AuthReply::Validate(const ProtocolLimits& limits) const {
  KVAULT_RETURN_IF_ERROR(CheckKnownStatus(status, "status"));
  if ((status == WireStatus::kOk) != (session_id != 0)) {
    return Status::InvalidArgument("session_id must be nonzero exactly when status is ok");
  }
  if (DataPlaneName(data_plane) == "unknown") {
    return Status::InvalidArgument("data_plane: unknown data plane " +
                                   std::to_string(static_cast<int>(data_plane)));
  }
  if (status != WireStatus::kOk && data_plane != DataPlane::kNone) {
    return Status::InvalidArgument("data_plane must be none when status is not ok, not " +
                                   std::string(DataPlaneName(data_plane)));
  }
  if (status != WireStatus::kOk && server_proof != Bytes32{}) {
    return Status::InvalidArgument("server_proof must be all zero when status is not ok");
  }
  return CheckString(message, limits.max_string_bytes, "message");
}

void AuthReply::EncodeBody(std::vector<uint8_t>* out) const {
  WireWriter w(out);
  w.U8(static_cast<uint8_t>(status));
  w.U64(session_id);
  w.U8(static_cast<uint8_t>(data_plane));
  w.Raw(server_proof);
  w.String(message);
}

Result<AuthReply> AuthReply::DecodeBody(std::span<const uint8_t> body,
                                        const ProtocolLimits& limits) {
  WireReader r(body);
  AuthReply m;
  m.status = static_cast<WireStatus>(r.U8());
  m.session_id = r.U64();
  m.data_plane = static_cast<DataPlane>(r.U8());
  m.server_proof = r.Bytes32();
  m.message = r.String(limits.max_string_bytes, "message");
  return FinishDecode(r, std::move(m), limits, "auth_reply");
}

// --- Stats: empty body.

Status Stats::Validate(const ProtocolLimits&) const { return Status::Ok(); }

void Stats::EncodeBody(std::vector<uint8_t>*) const {}

Result<Stats> Stats::DecodeBody(std::span<const uint8_t> body, const ProtocolLimits& limits) {
  WireReader r(body);
  return FinishDecode(r, Stats{}, limits, "stats");
}

// --- StatsReply: u32 count, then per entry: string name, u8 kind (0 = u64, 1 = f64), u64 value.

Status StatsReply::Validate(const ProtocolLimits& limits) const {
  if (entries.size() > kMaxStatsEntries) {
    return Status::OutOfRange("entries: " + std::to_string(entries.size()) +
                              " exceeds kMaxStatsEntries " + std::to_string(kMaxStatsEntries));
  }
  for (size_t i = 0; i < entries.size(); ++i) {
    const std::string& name = entries[i].name;
    if (!name.empty() && name.size() <= limits.max_string_bytes) continue;
    const std::string field = "entry " + std::to_string(i) + " name";
    if (name.empty()) return Status::InvalidArgument(field + " is empty");
    return CheckString(name, limits.max_string_bytes, field);
  }
  return Status::Ok();
}

void StatsReply::EncodeBody(std::vector<uint8_t>* out) const {
  WireWriter w(out);
  w.Count(entries.size());
  for (const StatEntry& e : entries) {
    w.String(e.name);
    if (const auto* u = std::get_if<uint64_t>(&e.value)) {
      w.U8(kStatU64);
      w.U64(*u);
    } else {
      w.U8(kStatF64);
      w.F64(std::get<double>(e.value));
    }
  }
}

Result<StatsReply> StatsReply::DecodeBody(std::span<const uint8_t> body,
                                          const ProtocolLimits& limits) {
  WireReader r(body);
  StatsReply m;
  const uint32_t n =
      r.Count(kMaxStatsEntries, kMinStatEntryBytes, "stats entries", "kMaxStatsEntries");
  m.entries.reserve(n);
  for (uint32_t i = 0; i < n && r.ok(); ++i) {
    StatEntry e;
    e.name = r.String(limits.max_string_bytes, "stat name");
    const uint8_t kind = r.U8();
    if (kind == kStatU64) {
      e.value = r.U64();
    } else if (kind == kStatF64) {
      e.value = r.F64();
    } else if (r.ok()) {
      return Status::Corruption("stats_reply: entry " + std::to_string(i) +
                                ": unknown value kind " + std::to_string(kind));
    }
    m.entries.push_back(std::move(e));
  }
  return FinishDecode(r, std::move(m), limits, "stats_reply");
}

// --- Ping and Pong: u64 payload.

Status Ping::Validate(const ProtocolLimits&) const { return Status::Ok(); }

void Ping::EncodeBody(std::vector<uint8_t>* out) const { WireWriter(out).U64(payload); }

Result<Ping> Ping::DecodeBody(std::span<const uint8_t> body, const ProtocolLimits& limits) {
  WireReader r(body);
  Ping m;
  m.payload = r.U64();
  return FinishDecode(r, m, limits, "ping");
}

Status Pong::Validate(const ProtocolLimits&) const { return Status::Ok(); }

void Pong::EncodeBody(std::vector<uint8_t>* out) const { WireWriter(out).U64(payload); }

Result<Pong> Pong::DecodeBody(std::span<const uint8_t> body, const ProtocolLimits& limits) {
  WireReader r(body);
  Pong m;
  m.payload = r.U64();
  return FinishDecode(r, m, limits, "pong");
}

// --- ErrorReply: u8 status (not ok), string message.

ErrorReply ErrorReply::FromStatus(const Status& status, const ProtocolLimits& limits) {
  if (status.ok())
    return Make(WireStatus::kInternal, "error reply built from an OK status", limits);
  return Make(ToWireStatus(status.code()), status.message(), limits);
}

ErrorReply ErrorReply::Make(WireStatus code, std::string_view message,
                            const ProtocolLimits& limits) {
  ErrorReply e;
  e.status = code == WireStatus::kOk ? WireStatus::kInternal : code;
  e.message = Truncated(message, limits);
  return e;
}

Status ErrorReply::Validate(const ProtocolLimits& limits) const {
  KVAULT_RETURN_IF_ERROR(CheckStatusBody(status, message, limits));
  if (status == WireStatus::kOk) return Status::InvalidArgument("status must not be ok");
  return Status::Ok();
}

void ErrorReply::EncodeBody(std::vector<uint8_t>* out) const {
  WriteStatusBody(status, message, out);
}

Result<ErrorReply> ErrorReply::DecodeBody(std::span<const uint8_t> body,
                                          const ProtocolLimits& limits) {
  return wire::DecodeStatusBody<ErrorReply>(body, limits, "error");
}

}  // namespace kvault::transport
