#pragma once
// Valid messages with awkward values (empty and full-length fields, extreme integers, every enum
// value), one or more per message type. Shared by the transport tests.

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "kvault/transport/messages.h"

namespace kvault::transport::testing {

inline BlockKey PatternKey(uint8_t seed) {
  BlockKey k{};
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(seed + 37 * i);
  return k;
}

inline std::vector<uint8_t> PatternBytes(size_t n, uint8_t seed) {
  std::vector<uint8_t> b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(seed ^ (i * 131));
  return b;
}

// Every known WireStatus value.
inline std::vector<WireStatus> AllWireStatuses() {
  std::vector<WireStatus> all;
  for (int raw = 0; raw < 256; ++raw) {
    if (IsKnownWireStatus(static_cast<uint8_t>(raw))) all.push_back(static_cast<WireStatus>(raw));
  }
  return all;
}

// At least one sample of every message type, valid under the default limits.
inline std::vector<Message> SampleMessages() {
  constexpr uint64_t kMax64 = std::numeric_limits<uint64_t>::max();
  const ProtocolLimits defaults;
  std::vector<Message> out;

  Hello full;
  full.client_version = 0xFFFF;
  full.tenant = std::string(defaults.max_string_bytes, '\0');
  for (size_t i = 0; i < full.tenant.size(); ++i) full.tenant[i] = static_cast<char>(255 - i);
  full.client_name = "";
  full.worker_address = PatternBytes(defaults.max_worker_address_bytes, 0x5A);
  out.emplace_back(full);
  Hello plain;
  plain.tenant = "acme";
  plain.client_name = "vllm-worker-3";
  out.emplace_back(plain);

  HelloReply hr;
  hr.server_version = 1;
  for (size_t i = 0; i < hr.nonce.size(); ++i) hr.nonce[i] = static_cast<uint8_t>(0xF0 ^ i);
  hr.worker_address = PatternBytes(301, 0x11);
  hr.memory_socket = "/" + std::string(kMaxMemorySocketPathBytes - 1, 's');
  hr.server_pid = std::numeric_limits<uint32_t>::max();
  hr.server_uid = std::numeric_limits<uint32_t>::max();
  hr.limits.max_body_bytes = kCeilingBodyBytes;
  hr.limits.max_keys_per_batch = 1;
  hr.limits.max_block_object_bytes = kCeilingBlockObjectBytes;
  hr.limits.max_string_bytes = kMinStringBytes;
  hr.limits.max_remote_key_bytes = kCeilingRemoteKeyBytes;
  hr.limits.max_worker_address_bytes = 1;
  out.emplace_back(hr);
  out.emplace_back(HelloReply{});
  HelloReply local;  // a server that offers the memory hand-over and no worker
  local.memory_socket = "/run/kvault/memory.sock";
  local.server_pid = 1;  // a daemon that is its pid namespace's init, running as root
  local.server_uid = 0;
  out.emplace_back(local);

  Auth auth;
  auth.proof.fill(0xFF);
  out.emplace_back(auth);
  Auth counting;
  for (size_t i = 0; i < counting.proof.size(); ++i)
    counting.proof[i] = static_cast<uint8_t>(7 * i);
  out.emplace_back(counting);
  out.emplace_back(Auth{});
  Bytes32 ones;
  ones.fill(0xFF);
  Bytes32 server_proof;
  for (size_t i = 0; i < server_proof.size(); ++i) {
    server_proof[i] = static_cast<uint8_t>(0x80 ^ (i * 11));
  }
  out.emplace_back(AuthReply{WireStatus::kOk, kMax64, DataPlane::kUcx, server_proof, ""});
  out.emplace_back(AuthReply{WireStatus::kOk, 1, DataPlane::kProcessMemory, ones, ""});
  out.emplace_back(AuthReply{WireStatus::kOk, 2, DataPlane::kNone, Bytes32{}, ""});
  out.emplace_back(AuthReply{WireStatus::kUnauthenticated, 0, DataPlane::kNone, Bytes32{},
                             "proof does not match"});
  ProveWorker prove;
  for (size_t i = 0; i < prove.token.size(); ++i) prove.token[i] = static_cast<uint8_t>(3 * i);
  out.emplace_back(prove);
  out.emplace_back(ProveWorker{});
  out.emplace_back(ProveWorkerReply{});
  out.emplace_back(ProveWorkerReply{WireStatus::kUnauthenticated, "token does not match"});
  AttachMemory attach;
  for (size_t i = 0; i < attach.handle.size(); ++i) {
    attach.handle[i] = static_cast<uint8_t>(0xE1 ^ (i * 7));
  }
  out.emplace_back(attach);
  out.emplace_back(AttachMemory{});
  out.emplace_back(AttachMemory{ones});
  out.emplace_back(AttachMemoryReply{});
  out.emplace_back(AttachMemoryReply{WireStatus::kInvalidArgument, "unknown memory handle"});
  out.emplace_back(
      AttachMemoryReply{WireStatus::kUnavailable, std::string(defaults.max_string_bytes, 'u')});

  Lookup lookup;
  lookup.keys = {PatternKey(1), BlockKey{}, PatternKey(255)};
  lookup.want_lease = true;
  lookup.lease_ttl_ms = 0xFFFFFFFF;
  out.emplace_back(lookup);
  out.emplace_back(Lookup{});

  LookupReply lr;
  lr.leading_hits = 2;
  lr.tiers = {WireTier::kGpu, WireTier::kNvme, WireTier::kNone, WireTier::kHost};
  lr.lease_id = kMax64;
  lr.lease_ttl_ms = 1;
  out.emplace_back(lr);
  out.emplace_back(LookupReply{});

  Store store;
  store.remote_key = {0x00};
  store.entries = {
      {PatternKey(7), kMax64 - defaults.max_block_object_bytes, defaults.max_block_object_bytes},
      {PatternKey(8), 0, 1, PatternKey(7)}};
  out.emplace_back(store);

  out.emplace_back(StoreReply{AllWireStatuses()});
  out.emplace_back(StoreReply{});

  Load load;
  load.lease_id = 0;
  load.remote_key = PatternBytes(defaults.max_remote_key_bytes, 0x33);
  load.entries = {
      {PatternKey(9), 0x7F0000001000, defaults.max_block_object_bytes,
       defaults.max_block_object_bytes, 0},
      {PatternKey(10), kMax64 - 4096, 4096, 128, 4096},
      {PatternKey(11), 0, 1, 0, 1},
  };
  out.emplace_back(load);

  LoadReply lor;
  for (WireStatus s : AllWireStatuses()) lor.outcomes.push_back({s, 0});
  lor.outcomes.push_back({WireStatus::kOk, defaults.max_block_object_bytes});
  lor.outcomes.push_back({WireStatus::kOutOfRange, 1});
  out.emplace_back(lor);

  out.emplace_back(ReleaseLease{kMax64});
  out.emplace_back(ReleaseLeaseReply{WireStatus::kOk, ""});
  out.emplace_back(ReleaseLeaseReply{WireStatus::kLeaseExpired, "lease 17 expired"});

  out.emplace_back(Delete{{BlockKey{}}});
  out.emplace_back(DeleteReply{{WireStatus::kOk, WireStatus::kNotFound}});

  out.emplace_back(GpuExport{kMax64, {PatternKey(12), BlockKey{}, PatternKey(13)}});
  out.emplace_back(GpuExport{1, {}});

  GpuExportReply ger;
  for (WireStatus s : AllWireStatuses()) {
    if (s != WireStatus::kOk) ger.entries.push_back({s});
  }
  GpuExportEntry exported;
  for (size_t i = 0; i < exported.pool_handle.size(); ++i) {
    exported.pool_handle[i] = static_cast<uint8_t>(0xC3 ^ (i * 29));
  }
  for (size_t i = 0; i < exported.device_uuid.size(); ++i) {
    exported.device_uuid[i] = static_cast<uint8_t>(0x5E + i);
  }
  exported.pool_bytes = kMax64;
  exported.length = static_cast<uint32_t>(defaults.max_block_object_bytes);
  exported.offset = kMax64 - exported.length;
  ger.entries.push_back(exported);
  GpuExportEntry smallest;  // at the pool's start, one byte, the rest zero
  smallest.pool_bytes = 1;
  smallest.length = 1;
  ger.entries.insert(ger.entries.begin() + 2, smallest);
  ger.message = "gpu export is disabled on this daemon";
  out.emplace_back(ger);
  out.emplace_back(GpuExportReply{});

  out.emplace_back(ReleaseMemory{{0x00}});
  out.emplace_back(ReleaseMemory{PatternBytes(defaults.max_remote_key_bytes, 0x6D)});
  out.emplace_back(ReleaseMemoryReply{WireStatus::kOk, ""});
  out.emplace_back(
      ReleaseMemoryReply{WireStatus::kInternal, std::string(defaults.max_string_bytes, 'r')});

  out.emplace_back(Stats{});
  StatsReply sr;
  sr.entries = {{"tier_host_used_bytes", uint64_t{0}},
                {"tier_host_capacity_bytes", kMax64},
                {"hit_ratio", 0.25},
                {"negative_zero", -0.0},
                {"infinity", std::numeric_limits<double>::infinity()},
                {"denormal", std::numeric_limits<double>::denorm_min()},
                {std::string(defaults.max_string_bytes, 'n'), 1.0}};
  out.emplace_back(sr);

  out.emplace_back(Ping{0});
  out.emplace_back(Pong{kMax64});
  out.emplace_back(ErrorReply{WireStatus::kUnsupportedVersion, "this server speaks version 3"});
  out.emplace_back(ErrorReply{WireStatus::kUnauthenticated, ""});
  return out;
}

}  // namespace kvault::transport::testing
