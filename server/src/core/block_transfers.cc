// Service::OnStore and Service::OnLoad (service.h): block bytes between the store and client
// memory, through the DataMover. The server never hands out its own memory: it GETs each stored
// object into a reservation and PUTs each loaded range from a pin.

#include <algorithm>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/arriving_objects.h"
#include "core/service.h"
#include "kvault/common/block_format.h"
#include "kvault/common/log.h"
#include "metrics/metrics.h"

namespace kvault::server {
namespace {

using transport::Message;
using transport::WireStatus;

WireStatus WireOf(const Status& status) { return transport::ToWireStatus(status.code()); }

// The entry's parent hint for the eviction policy: none when all zero, or when it names the
// entry itself.
storage::WriteOptions WriteOptionsOf(const transport::StoreEntry& e) {
  storage::WriteOptions options;
  constexpr BlockKey kNone{};
  if (e.parent != kNone && e.parent != e.key) options.parent = e.parent;
  return options;
}

// A stored object moves in chunks of this size, each hashed as soon as it arrives. Larger chunks
// mean fewer hand-offs (to the progress thread, to the copy helper): with 256 KiB, 1 MiB stores
// from mapped client memory ran 15-30% slower on the CI host, and no faster over CMA or TCP.
constexpr uint64_t kVerifyChunkBytes = 1 << 20;

transport::TransferBatch NewBatch(std::vector<uint8_t> remote_key,
                                  std::chrono::steady_clock::time_point deadline) {
  transport::TransferBatch batch;
  batch.remote_keys.push_back(std::move(remote_key));
  batch.deadline = deadline;
  return batch;
}

// Keeps the in-flight gauge right whatever path a request leaves by.
class InflightBytes {
 public:
  InflightBytes(Metrics* metrics, uint64_t bytes) : metrics_(metrics), bytes_(bytes) {
    if (metrics_ != nullptr) metrics_->AddInflightBytes(static_cast<int64_t>(bytes_));
  }
  ~InflightBytes() {
    if (metrics_ != nullptr) metrics_->AddInflightBytes(-static_cast<int64_t>(bytes_));
  }
  InflightBytes(const InflightBytes&) = delete;
  InflightBytes& operator=(const InflightBytes&) = delete;

 private:
  Metrics* metrics_;
  uint64_t bytes_;
};

// One warn line per request whose blocks failed to move: how many, and the first reason.
void LogFailedTransfers(const Session& session, std::string_view what,
                        const std::vector<Status>& statuses) {
  if (!LogEnabled(LogLevel::kWarn)) return;
  size_t failed = 0;
  const Status* first = nullptr;
  for (const Status& s : statuses) {
    if (s.ok()) continue;
    ++failed;
    if (first == nullptr) first = &s;
  }
  if (failed == 0) return;
  Log(LogLevel::kWarn, "transfer",
      SessionName(session) + ": " + std::string(what) + ": " + std::to_string(failed) + " of " +
          std::to_string(statuses.size()) + " blocks failed to move, first: " + first->ToString());
}

}  // namespace

Message Service::OnStore(Session& session, const transport::Store& request) {
  if (std::optional<Message> refused = RefuseUnprovenWorker(session)) return *refused;
  uint64_t total = 0;
  for (const transport::StoreEntry& e : request.entries) total += e.length;
  if (total > options_.max_request_bytes) {
    return Refuse(WireStatus::kOutOfRange, "store of " + std::to_string(total) +
                                               " bytes is over the per-request limit of " +
                                               std::to_string(options_.max_request_bytes));
  }
  transport::StoreReply reply;
  const bool movable = session.peer.has_value() && data_ != nullptr;
  reply.statuses.assign(request.entries.size(),
                        movable ? WireStatus::kOk : WireStatus::kTransferFailed);
  if (!movable) return reply;
  InflightBytes inflight(metrics_, total);
  const storage::TenantId tenant = session.tenant->id;
  // One deadline for the whole request, however many waves it takes: a client that stops
  // answering holds its io thread for one transfer_timeout, not one per wave.
  const auto deadline = std::chrono::steady_clock::now() + options_.transfer_timeout;

  // Reserve room for new objects (present ones are done already) and pull them in waves: when
  // the store has no room left for the next object, the wave reserved so far is transferred and
  // committed first, so its blocks become evictable and a batch larger than the tier still fits.
  std::vector<std::optional<storage::WriteReservation>> reservations(request.entries.size());
  std::vector<size_t> wave;  // entry indices reserved and not yet transferred
  auto run_wave = [&] {
    if (wave.empty()) return;
    transport::TransferBatch batch = NewBatch(request.remote_key, deadline);
    // Each object moves in chunks, hashed as they arrive (while later ones still move, or on the
    // way where the client's memory is mapped here), so Commit only compares checksums.
    ArrivingObjects arriving(wave.size());
    for (size_t w = 0; w < wave.size(); ++w) {
      const size_t i = wave[w];
      uint8_t* local = reservations[i]->bytes().data();
      const uint64_t length = request.entries[i].length;
      for (uint64_t at = 0; at < length; at += kVerifyChunkBytes) {
        transport::Transfer t;
        t.op = transport::TransferOp::kGet;
        t.peer = *session.peer;
        t.local = local + at;
        t.remote_address = request.entries[i].address + at;
        t.length = std::min(kVerifyChunkBytes, length - at);
        batch.transfers.push_back(t);
        arriving.Add(w, at, std::span<uint8_t>(local + at, t.length));
      }
    }
    batch.copy_mapped = [&](size_t c, const transport::MappedRemote& remote) {
      return arriving.CopyMapped(c, remote, copy_helper_);
    };
    const std::vector<Status> moved =
        data_->RunInOrder(std::move(batch), [&](size_t c) { arriving.Landed(c); });
    std::vector<Status> entry_moved(wave.size());
    for (size_t c = 0; c < moved.size(); ++c) {
      Status& s = entry_moved[arriving.owner(c)];
      if (s.ok() && !moved[c].ok()) s = moved[c];
    }
    LogFailedTransfers(session, "store", entry_moved);
    for (size_t w = 0; w < wave.size(); ++w) {
      const size_t i = wave[w];
      if (!entry_moved[w].ok()) {
        reservations[i]->Abort();
        reply.statuses[i] = WireStatus::kTransferFailed;
      } else {
        // Commit verifies the object (format, checksum, the key inside) before it is visible;
        // with every chunk hashed in order it only compares checksums, else it reads the object.
        const Status committed = arriving.complete(w, request.entries[i].length)
                                     ? reservations[i]->Commit(arriving.digest(w))
                                     : reservations[i]->Commit();
        if (!committed.ok()) {
          reply.statuses[i] = WireOf(committed);
          KVAULT_LOG(LogLevel::kWarn, "store",
                     SessionName(session) + ": object refused: " + committed.ToString());
        }
      }
      reservations[i].reset();
    }
    wave.clear();
  };
  // A key this request names again while its reservation for the key is still pending answers
  // as that entry does (the store reports the key "being written", which is kOk otherwise).
  std::map<BlockKey, size_t> reserved_for_key;
  std::vector<std::pair<size_t, size_t>> repeats;  // (entry, the entry reserved for its key)
  // Past the request's deadline nothing more moves: no room is taken (nor evicted) for an entry;
  // one already stored is kOk all the same.
  auto expired = [&](const transport::StoreEntry& e, size_t i) {
    if (std::chrono::steady_clock::now() < deadline) return false;
    storage::LookupOptions probe;
    probe.touch = false;
    probe.count = false;  // the daemon's own check, not a client's lookup
    const bool present = store_.Lookup(tenant, std::span(&e.key, 1), probe).leading_hits == 1;
    reply.statuses[i] = present ? WireStatus::kOk : WireStatus::kTransferFailed;
    return true;
  };
  for (size_t i = 0; i < request.entries.size(); ++i) {
    const transport::StoreEntry& e = request.entries[i];
    if (expired(e, i)) continue;
    storage::WriteOptions write = WriteOptionsOf(e);
    // A refusal for room is retried below after the wave frees some: only the last one counts.
    write.count_refusal = wave.empty();
    Result<std::optional<storage::WriteReservation>> reserved =
        store_.Reserve(tenant, e.key, e.length, write);
    if (!reserved.ok() && reserved.status().code() == StatusCode::kResourceExhausted &&
        !storage::IsTenantQuotaRefusal(reserved.status()) && !wave.empty()) {
      // Frees the room the wave held (its blocks become evictable). Not for a tenant's quota:
      // committing keeps the bytes charged to it, so a retry would only be refused again.
      run_wave();
      if (expired(e, i)) continue;
      write.count_refusal = true;
      reserved = store_.Reserve(tenant, e.key, e.length, write);
    }
    if (!reserved.ok()) {
      reply.statuses[i] = WireOf(reserved.status());
      if (metrics_ != nullptr && reserved.status().code() == StatusCode::kResourceExhausted) {
        metrics_->CountRejected(storage::IsTenantQuotaRefusal(reserved.status())
                                    ? RejectReason::kQuotaExceeded
                                    : RejectReason::kNoSpace);
      }
      continue;
    }
    if (!reserved->has_value()) {
      // Already stored, or being stored: kOk, unless by this request, whose copy may fail.
      if (auto mine = reserved_for_key.find(e.key);
          mine != reserved_for_key.end() && reservations[mine->second].has_value()) {
        repeats.emplace_back(i, mine->second);
      }
      continue;
    }
    reservations[i] = std::move(**reserved);
    reserved_for_key.insert_or_assign(e.key, i);
    wave.push_back(i);
  }
  run_wave();
  for (const auto& [repeat, first] : repeats) reply.statuses[repeat] = reply.statuses[first];
  return reply;
}

Message Service::OnLoad(Session& session, const transport::Load& request) {
  if (std::optional<Message> refused = RefuseUnprovenWorker(session)) return *refused;
  uint64_t asked = 0;
  for (const transport::LoadEntry& e : request.entries) asked += e.capacity;
  if (asked > options_.max_request_bytes) {
    return Refuse(WireStatus::kOutOfRange, "load into " + std::to_string(asked) +
                                               " bytes is over the per-request limit of " +
                                               std::to_string(options_.max_request_bytes));
  }
  transport::LoadReply reply;
  reply.outcomes.resize(request.entries.size());
  // A lease only keeps blocks from being evicted meanwhile: with an unknown, expired or another
  // session's lease the entries are served when present (docs/block_messages.md §4.3).
  if (!session.peer || data_ == nullptr) {
    for (transport::LoadOutcome& o : reply.outcomes) o.status = WireStatus::kTransferFailed;
    return reply;
  }
  InflightBytes inflight(metrics_, asked);
  const storage::TenantId tenant = session.tenant->id;

  std::vector<std::optional<storage::BlockPin>> pins(request.entries.size());
  transport::TransferBatch batch =
      NewBatch(request.remote_key, std::chrono::steady_clock::now() + options_.transfer_timeout);
  std::vector<size_t> batch_entry;
  for (size_t i = 0; i < request.entries.size(); ++i) {
    const transport::LoadEntry& e = request.entries[i];
    transport::LoadOutcome& outcome = reply.outcomes[i];
    Result<std::optional<storage::BlockPin>> pinned = store_.Pin(tenant, e.key);
    if (!pinned.ok()) {
      outcome.status = WireOf(pinned.status());
      continue;
    }
    if (!pinned->has_value()) {
      outcome.status = WireStatus::kNotFound;
      continue;
    }
    const std::span<const uint8_t> object = (*pinned)->bytes();
    outcome.object_size = object.size();
    const uint64_t length = e.length != 0               ? e.length
                            : e.offset <= object.size() ? object.size() - e.offset
                                                        : 0;
    if (e.offset > object.size() || length > object.size() - e.offset || length > e.capacity ||
        length == 0) {
      outcome.status = WireStatus::kOutOfRange;
      continue;
    }
    pins[i] = std::move(**pinned);
    transport::Transfer t;
    t.op = transport::TransferOp::kPut;
    t.peer = *session.peer;
    // The engine only reads a PUT's local bytes.
    t.local = const_cast<uint8_t*>(object.data() + e.offset);
    t.remote_address = e.address;
    t.length = length;
    batch.transfers.push_back(t);
    batch_entry.push_back(i);
  }
  if (batch.transfers.empty()) return reply;

  const std::vector<Status> moved = data_->Run(std::move(batch));
  for (size_t t = 0; t < batch_entry.size(); ++t) {
    if (!moved[t].ok()) reply.outcomes[batch_entry[t]].status = WireStatus::kTransferFailed;
  }
  LogFailedTransfers(session, "load", moved);
  return reply;
}

}  // namespace kvault::server
