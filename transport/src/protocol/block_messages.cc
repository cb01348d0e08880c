// Bodies of Lookup, Store, Load, ReleaseLease, Delete, GpuExport, ReleaseMemory and their replies
// (docs/block_messages.md §4.3).
// Each decoder reads its fields in the order its encoder writes them.
#include "kvault/transport/block_messages.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <string>

#include "kvault/common/little_endian.h"
#include "wire_io.h"

namespace kvault::transport {
namespace {

using wire::CheckBlob;
using wire::CheckCount;
using wire::CheckKnownStatus;
using wire::CheckStatusBody;
using wire::CheckString;
using wire::FinishDecode;
using wire::WireReader;
using wire::WireWriter;
using wire::WriteStatusBody;

constexpr size_t kKeyBytes = 32;
static_assert(kStoreEntryWireBytes == kKeyBytes + 8 + 8 + kKeyBytes);
constexpr size_t kLoadEntryBytes = kKeyBytes + 8 + 8 + 8 + 8;
constexpr size_t kLoadOutcomeBytes = 1 + 8;

bool Wraps(uint64_t address, uint64_t size) {
  return size > std::numeric_limits<uint64_t>::max() - address;
}

std::string Entry(const char* what, size_t i) {
  return std::string(what) + " " + std::to_string(i);
}

Status CheckRemoteKey(const std::vector<uint8_t>& rkey, const ProtocolLimits& limits) {
  if (rkey.empty()) return Status::InvalidArgument("remote_key is empty");
  return CheckBlob(rkey.size(), limits.max_remote_key_bytes, "remote_key", "max_remote_key_bytes");
}

static_assert(sizeof(BlockKey) == kKeyBytes, "keys are stored back to back");

void WriteKeys(WireWriter& w, const std::vector<BlockKey>& keys) {
  w.Count(keys.size());
  w.Raw(std::span(reinterpret_cast<const uint8_t*>(keys.data()), keys.size() * kKeyBytes));
}

// count x u8 enum values, each cast from its byte (the caller's Validate checks the range).
template <typename Enum>
void WriteBytesOf(WireWriter& w, const std::vector<Enum>& values) {
  static_assert(sizeof(Enum) == 1);
  w.Count(values.size());
  w.Raw(std::span(reinterpret_cast<const uint8_t*>(values.data()), values.size()));
}

template <typename Enum>
std::vector<Enum> ReadBytesOf(WireReader& r, const ProtocolLimits& limits, std::string_view what) {
  static_assert(sizeof(Enum) == 1);
  const uint32_t n = r.Count(limits.max_keys_per_batch, 1, what);
  const std::span<const uint8_t> bytes = r.Take(n);
  std::vector<Enum> values(bytes.size());
  if (!bytes.empty()) std::memcpy(values.data(), bytes.data(), bytes.size());
  return values;
}

// Fixed-size opaque bytes through the reader's checked u64 reads (8 bytes each, in order).
template <size_t N>
void ReadRaw(WireReader& r, std::array<uint8_t, N>& out) {
  static_assert(N % 8 == 0);
  for (size_t i = 0; i < N; i += 8) StoreLe64(out.data() + i, r.U64());
}

std::vector<BlockKey> ReadKeys(WireReader& r, const ProtocolLimits& limits) {
  const uint32_t n = r.Count(limits.max_keys_per_batch, kKeyBytes, "keys");
  const std::span<const uint8_t> bytes = r.Take(size_t{n} * kKeyBytes);
  std::vector<BlockKey> keys(bytes.size() / kKeyBytes);
  if (!bytes.empty()) std::memcpy(keys.data(), bytes.data(), bytes.size());
  return keys;
}

void WriteStatuses(WireWriter& w, const std::vector<WireStatus>& statuses) {
  WriteBytesOf(w, statuses);
}

std::vector<WireStatus> ReadStatuses(WireReader& r, const ProtocolLimits& limits) {
  return ReadBytesOf<WireStatus>(r, limits, "statuses");
}

Status CheckStatuses(const std::vector<WireStatus>& statuses, const ProtocolLimits& limits) {
  KVAULT_RETURN_IF_ERROR(CheckCount(statuses.size(), limits, "statuses"));
  for (size_t i = 0; i < statuses.size(); ++i) {
    KVAULT_RETURN_IF_ERROR(CheckKnownStatus(statuses[i], Entry("status", i)));
  }
  return Status::Ok();
}

}  // namespace

std::string_view WireTierName(WireTier tier) {
  switch (tier) {
    case WireTier::kNone:
      return "none";
    case WireTier::kGpu:
      return "gpu";
    case WireTier::kHost:
      return "host";
    case WireTier::kNvme:
      return "nvme";
  }
  return "unknown";
}

// --- Lookup: u8 want_lease, u32 lease_ttl_ms, u32 count, count x 32-byte key.

Status Lookup::Validate(const ProtocolLimits& limits) const {
  return CheckCount(keys.size(), limits, "keys");
}

void Lookup::EncodeBody(std::vector<uint8_t>* out) const {
  WireWriter w(out);
  w.Bool(want_lease);
  w.U32(lease_ttl_ms);
  WriteKeys(w, keys);
}

Result<Lookup> Lookup::DecodeBody(std::span<const uint8_t> body, const ProtocolLimits& limits) {
  WireReader r(body);
  Lookup m;
  m.want_lease = r.Bool("want_lease");
  m.lease_ttl_ms = r.U32();
  m.keys = ReadKeys(r, limits);
  return FinishDecode(r, std::move(m), limits, "lookup");
}

// --- LookupReply: u32 leading_hits, u64 lease_id, u32 lease_ttl_ms, u32 count, count x u8 tier.

Status LookupReply::Validate(const ProtocolLimits& limits) const {
  KVAULT_RETURN_IF_ERROR(CheckCount(tiers.size(), limits, "tiers"));
  if (leading_hits > tiers.size()) {
    return Status::InvalidArgument("leading_hits " + std::to_string(leading_hits) +
                                   " exceeds the " + std::to_string(tiers.size()) + " keys");
  }
  for (size_t i = 0; i < tiers.size(); ++i) {
    if (static_cast<uint8_t>(tiers[i]) > static_cast<uint8_t>(WireTier::kNvme)) {
      return Status::InvalidArgument(Entry("tier", i) + ": unknown tier " +
                                     std::to_string(static_cast<int>(tiers[i])));
    }
    if (i < leading_hits && tiers[i] == WireTier::kNone) {
      return Status::InvalidArgument(Entry("tier", i) + " is none inside the leading hits");
    }
  }
  if ((lease_id == 0) != (lease_ttl_ms == 0)) {
    return Status::InvalidArgument("lease_ttl_ms must be nonzero exactly when lease_id is");
  }
  return Status::Ok();
}

void LookupReply::EncodeBody(std::vector<uint8_t>* out) const {
  WireWriter w(out);
  w.U32(leading_hits);
  w.U64(lease_id);
  w.U32(lease_ttl_ms);
  WriteBytesOf(w, tiers);
}

Result<LookupReply> LookupReply::DecodeBody(std::span<const uint8_t> body,
                                            const ProtocolLimits& limits) {
  WireReader r(body);
  LookupReply m;
  m.leading_hits = r.U32();
  m.lease_id = r.U64();
  m.lease_ttl_ms = r.U32();
  m.tiers = ReadBytesOf<WireTier>(r, limits, "tiers");
  return FinishDecode(r, std::move(m), limits, "lookup_reply");
}

// --- Store: blob remote_key, u32 count, count x (32-byte key, u64 address, u64 length, 32-byte
// parent).

Status Store::Validate(const ProtocolLimits& limits) const {
  KVAULT_RETURN_IF_ERROR(CheckRemoteKey(remote_key, limits));
  KVAULT_RETURN_IF_ERROR(CheckCount(entries.size(), limits, "entries"));
  for (size_t i = 0; i < entries.size(); ++i) {
    const StoreEntry& e = entries[i];
    if (e.length == 0) return Status::InvalidArgument(Entry("entry", i) + ": length is 0");
    if (e.length > limits.max_block_object_bytes) {
      return Status::OutOfRange(Entry("entry", i) + ": length " + std::to_string(e.length) +
                                " exceeds max_block_object_bytes " +
                                std::to_string(limits.max_block_object_bytes));
    }
    if (Wraps(e.address, e.length)) {
      return Status::InvalidArgument(Entry("entry", i) + ": address + length wraps around");
    }
  }
  return Status::Ok();
}

void Store::EncodeBody(std::vector<uint8_t>* out) const {
  WireWriter w(out);
  w.Blob(remote_key);
  w.Count(entries.size());
  for (const StoreEntry& e : entries) {
    w.Raw(e.key);
    w.U64(e.address);
    w.U64(e.length);
    w.Raw(e.parent);
  }
}

Result<Store> Store::DecodeBody(std::span<const uint8_t> body, const ProtocolLimits& limits) {
  WireReader r(body);
  Store m;
  m.remote_key = r.Blob(limits.max_remote_key_bytes, "remote_key");
  const uint32_t n = r.Count(limits.max_keys_per_batch, kStoreEntryWireBytes, "entries");
  m.entries.reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    StoreEntry e;
    e.key = r.Bytes32();
    e.address = r.U64();
    e.length = r.U64();
    e.parent = r.Bytes32();
    m.entries.push_back(e);
  }
  return FinishDecode(r, std::move(m), limits, "store");
}

// --- StoreReply: u32 count, count x u8 status.

Status StoreReply::Validate(const ProtocolLimits& limits) const {
  return CheckStatuses(statuses, limits);
}

void StoreReply::EncodeBody(std::vector<uint8_t>* out) const {
  WireWriter w(out);
  WriteStatuses(w, statuses);
}

Result<StoreReply> StoreReply::DecodeBody(std::span<const uint8_t> body,
                                          const ProtocolLimits& limits) {
  WireReader r(body);
  StoreReply m;
  m.statuses = ReadStatuses(r, limits);
  return FinishDecode(r, std::move(m), limits, "store_reply");
}

// --- Load: u64 lease_id, blob remote_key, u32 count,
// count x (32-byte key, u64 address, u64 capacity, u64 offset, u64 length).

Status Load::Validate(const ProtocolLimits& limits) const {
  KVAULT_RETURN_IF_ERROR(CheckRemoteKey(remote_key, limits));
  KVAULT_RETURN_IF_ERROR(CheckCount(entries.size(), limits, "entries"));
  const uint64_t max = limits.max_block_object_bytes;
  for (size_t i = 0; i < entries.size(); ++i) {
    const LoadEntry& e = entries[i];
    // Messages are built only on failure: this runs for every entry of every Load.
    auto over = [&](const char* field, uint64_t value) {
      std::string text = Entry("entry", i);
      text += std::string(": ") + field + " " + std::to_string(value);
      text += " exceeds max_block_object_bytes " + std::to_string(max);
      return Status::OutOfRange(text);
    };
    if (e.capacity == 0) return Status::InvalidArgument(Entry("entry", i) + ": capacity is 0");
    if (e.capacity > max) return over("capacity", e.capacity);
    if (e.offset > max) return over("offset", e.offset);
    if (e.length > e.capacity) {
      return Status::InvalidArgument(Entry("entry", i) + ": length " + std::to_string(e.length) +
                                     " exceeds capacity " + std::to_string(e.capacity));
    }
    if (Wraps(e.address, e.capacity)) {
      return Status::InvalidArgument(Entry("entry", i) + ": address + capacity wraps around");
    }
  }
  return Status::Ok();
}

void Load::EncodeBody(std::vector<uint8_t>* out) const {
  WireWriter w(out);
  w.U64(lease_id);
  w.Blob(remote_key);
  w.Count(entries.size());
  for (const LoadEntry& e : entries) {
    w.Raw(e.key);
    w.U64(e.address);
    w.U64(e.capacity);
    w.U64(e.offset);
    w.U64(e.length);
  }
}

Result<Load> Load::DecodeBody(std::span<const uint8_t> body, const ProtocolLimits& limits) {
  WireReader r(body);
  Load m;
  m.lease_id = r.U64();
  m.remote_key = r.Blob(limits.max_remote_key_bytes, "remote_key");
  const uint32_t n = r.Count(limits.max_keys_per_batch, kLoadEntryBytes, "entries");
  m.entries.reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    LoadEntry e;
    e.key = r.Bytes32();
    e.address = r.U64();
    e.capacity = r.U64();
    e.offset = r.U64();
    e.length = r.U64();
    m.entries.push_back(e);
  }
  return FinishDecode(r, std::move(m), limits, "load");
}

// --- LoadReply: u32 count, count x (u8 status, u64 object_size).

Status LoadReply::Validate(const ProtocolLimits& limits) const {
  KVAULT_RETURN_IF_ERROR(CheckCount(outcomes.size(), limits, "outcomes"));
  for (size_t i = 0; i < outcomes.size(); ++i) {
    KVAULT_RETURN_IF_ERROR(CheckKnownStatus(outcomes[i].status, Entry("outcome", i)));
    if (outcomes[i].object_size > limits.max_block_object_bytes) {
      return Status::OutOfRange(
          Entry("outcome", i) + ": object_size " + std::to_string(outcomes[i].object_size) +
          " exceeds max_block_object_bytes " + std::to_string(limits.max_block_object_bytes));
    }
  }
  return Status::Ok();
}

void LoadReply::EncodeBody(std::vector<uint8_t>* out) const {
  WireWriter w(out);
  w.Count(outcomes.size());
  for (const LoadOutcome& o : outcomes) {
    w.U8(static_cast<uint8_t>(o.status));
    w.U64(o.object_size);
  }
}

Result<LoadReply> LoadReply::DecodeBody(std::span<const uint8_t> body,
                                        const ProtocolLimits& limits) {
  WireReader r(body);
  LoadReply m;
  const uint32_t n = r.Count(limits.max_keys_per_batch, kLoadOutcomeBytes, "outcomes");
  m.outcomes.reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    LoadOutcome o;
    o.status = static_cast<WireStatus>(r.U8());
    o.object_size = r.U64();
    m.outcomes.push_back(o);
  }
  return FinishDecode(r, std::move(m), limits, "load_reply");
}

// --- ReleaseLease: u64 lease_id.

Status ReleaseLease::Validate(const ProtocolLimits&) const {
  if (lease_id == 0) return Status::InvalidArgument("lease_id must be nonzero");
  return Status::Ok();
}

void ReleaseLease::EncodeBody(std::vector<uint8_t>* out) const { WireWriter(out).U64(lease_id); }

Result<ReleaseLease> ReleaseLease::DecodeBody(std::span<const uint8_t> body,
                                              const ProtocolLimits& limits) {
  WireReader r(body);
  ReleaseLease m;
  m.lease_id = r.U64();
  return FinishDecode(r, m, limits, "release_lease");
}

// --- ReleaseLeaseReply: u8 status, string message.

Status ReleaseLeaseReply::Validate(const ProtocolLimits& limits) const {
  return CheckStatusBody(status, message, limits);
}

void ReleaseLeaseReply::EncodeBody(std::vector<uint8_t>* out) const {
  WriteStatusBody(status, message, out);
}

Result<ReleaseLeaseReply> ReleaseLeaseReply::DecodeBody(std::span<const uint8_t> body,
                                                        const ProtocolLimits& limits) {
  return wire::DecodeStatusBody<ReleaseLeaseReply>(body, limits, "release_lease_reply");
}

// --- Delete: u32 count, count x 32-byte key.

Status Delete::Validate(const ProtocolLimits& limits) const {
  return CheckCount(keys.size(), limits, "keys");
}

void Delete::EncodeBody(std::vector<uint8_t>* out) const {
  WireWriter w(out);
  WriteKeys(w, keys);
}

Result<Delete> Delete::DecodeBody(std::span<const uint8_t> body, const ProtocolLimits& limits) {
  WireReader r(body);
  Delete m;
  m.keys = ReadKeys(r, limits);
  return FinishDecode(r, std::move(m), limits, "delete");
}

// --- DeleteReply: u32 count, count x u8 status.

Status DeleteReply::Validate(const ProtocolLimits& limits) const {
  return CheckStatuses(statuses, limits);
}

void DeleteReply::EncodeBody(std::vector<uint8_t>* out) const {
  WireWriter w(out);
  WriteStatuses(w, statuses);
}

Result<DeleteReply> DeleteReply::DecodeBody(std::span<const uint8_t> body,
                                            const ProtocolLimits& limits) {
  WireReader r(body);
  DeleteReply m;
  m.statuses = ReadStatuses(r, limits);
  return FinishDecode(r, std::move(m), limits, "delete_reply");
}

// --- GpuExport: u64 lease_id, u32 count, count x 32-byte key.

uint32_t GpuExportKeysPerRequest(const ProtocolLimits& limits) {
  const uint64_t fixed = 4 + 2 + uint64_t{limits.max_string_bytes};  // count, message
  if (limits.max_body_bytes <= fixed) return 0;
  const uint64_t fit = (limits.max_body_bytes - fixed) / kGpuExportOkEntryBytes;
  return static_cast<uint32_t>(std::min<uint64_t>(limits.max_keys_per_batch, fit));
}

Status GpuExport::Validate(const ProtocolLimits& limits) const {
  if (lease_id == 0) return Status::InvalidArgument("lease_id must be nonzero");
  KVAULT_RETURN_IF_ERROR(CheckCount(keys.size(), limits, "keys"));
  const uint32_t most = GpuExportKeysPerRequest(limits);
  if (keys.size() > most) {
    return Status::OutOfRange(std::to_string(keys.size()) + " keys exceed the " +
                              std::to_string(most) +
                              " whose gpu_export_reply fits in max_body_bytes");
  }
  return Status::Ok();
}

void GpuExport::EncodeBody(std::vector<uint8_t>* out) const {
  WireWriter w(out);
  w.U64(lease_id);
  WriteKeys(w, keys);
}

Result<GpuExport> GpuExport::DecodeBody(std::span<const uint8_t> body,
                                        const ProtocolLimits& limits) {
  WireReader r(body);
  GpuExport m;
  m.lease_id = r.U64();
  m.keys = ReadKeys(r, limits);
  return FinishDecode(r, std::move(m), limits, "gpu_export");
}

// --- GpuExportReply: u32 count, count x (u8 status, and when it is ok: 64-byte pool handle,
// 16-byte device uuid, u64 pool_bytes, u64 offset, u32 length), string message.

Status GpuExportReply::Validate(const ProtocolLimits& limits) const {
  KVAULT_RETURN_IF_ERROR(CheckCount(entries.size(), limits, "entries"));
  if (const uint32_t most = GpuExportKeysPerRequest(limits); entries.size() > most) {
    return Status::OutOfRange(std::to_string(entries.size()) + " entries exceed the " +
                              std::to_string(most) + " a gpu_export request may carry");
  }
  for (size_t i = 0; i < entries.size(); ++i) {
    const GpuExportEntry& e = entries[i];
    KVAULT_RETURN_IF_ERROR(CheckKnownStatus(e.status, Entry("entry", i)));
    if (e.status != WireStatus::kOk) {
      // The encoding drops these fields, so they must hold nothing to drop.
      if (!(e == GpuExportEntry{e.status})) {
        return Status::InvalidArgument(Entry("entry", i) +
                                       ": export fields set on an entry that is not ok");
      }
      continue;
    }
    if (e.length == 0) return Status::InvalidArgument(Entry("entry", i) + ": length is 0");
    if (e.length > limits.max_block_object_bytes) {
      return Status::OutOfRange(Entry("entry", i) + ": length " + std::to_string(e.length) +
                                " exceeds max_block_object_bytes " +
                                std::to_string(limits.max_block_object_bytes));
    }
    if (e.offset > e.pool_bytes || e.length > e.pool_bytes - e.offset) {
      return Status::InvalidArgument(Entry("entry", i) + ": offset " + std::to_string(e.offset) +
                                     " + length " + std::to_string(e.length) +
                                     " exceeds pool_bytes " + std::to_string(e.pool_bytes));
    }
  }
  return CheckString(message, limits.max_string_bytes, "message");
}

void GpuExportReply::EncodeBody(std::vector<uint8_t>* out) const {
  WireWriter w(out);
  w.Count(entries.size());
  for (const GpuExportEntry& e : entries) {
    w.U8(static_cast<uint8_t>(e.status));
    if (e.status != WireStatus::kOk) continue;
    w.Raw(e.pool_handle);
    w.Raw(e.device_uuid);
    w.U64(e.pool_bytes);
    w.U64(e.offset);
    w.U32(e.length);
  }
  w.String(message);
}

Result<GpuExportReply> GpuExportReply::DecodeBody(std::span<const uint8_t> body,
                                                  const ProtocolLimits& limits) {
  WireReader r(body);
  GpuExportReply m;
  // Each entry takes at least its status byte; the count is checked against that before the
  // vector is sized, and every ok entry's further bytes are checked as they are read. No request
  // carries more keys than GpuExportKeysPerRequest, so no reply has more entries: a 1-byte entry
  // becomes a ~112-byte GpuExportEntry, and that bound keeps the reply's memory small.
  const uint32_t n =
      r.Count(GpuExportKeysPerRequest(limits), 1, "entries", "the keys a gpu_export may carry");
  m.entries.reserve(n);
  for (uint32_t i = 0; i < n && r.ok(); ++i) {
    GpuExportEntry e;
    e.status = static_cast<WireStatus>(r.U8());
    if (e.status == WireStatus::kOk) {
      ReadRaw(r, e.pool_handle);
      ReadRaw(r, e.device_uuid);
      e.pool_bytes = r.U64();
      e.offset = r.U64();
      e.length = r.U32();
    }
    m.entries.push_back(e);
  }
  m.message = r.String(limits.max_string_bytes, "message");
  return FinishDecode(r, std::move(m), limits, "gpu_export_reply");
}

// --- ReleaseMemory: blob remote_key.

Status ReleaseMemory::Validate(const ProtocolLimits& limits) const {
  return CheckRemoteKey(remote_key, limits);
}

void ReleaseMemory::EncodeBody(std::vector<uint8_t>* out) const {
  WireWriter(out).Blob(remote_key);
}

Result<ReleaseMemory> ReleaseMemory::DecodeBody(std::span<const uint8_t> body,
                                                const ProtocolLimits& limits) {
  WireReader r(body);
  ReleaseMemory m;
  m.remote_key = r.Blob(limits.max_remote_key_bytes, "remote_key");
  return FinishDecode(r, std::move(m), limits, "release_memory");
}

// --- ReleaseMemoryReply: u8 status, string message.

Status ReleaseMemoryReply::Validate(const ProtocolLimits& limits) const {
  return CheckStatusBody(status, message, limits);
}

void ReleaseMemoryReply::EncodeBody(std::vector<uint8_t>* out) const {
  WriteStatusBody(status, message, out);
}

Result<ReleaseMemoryReply> ReleaseMemoryReply::DecodeBody(std::span<const uint8_t> body,
                                                          const ProtocolLimits& limits) {
  return wire::DecodeStatusBody<ReleaseMemoryReply>(body, limits, "release_memory_reply");
}

}  // namespace kvault::transport
