// Client (client.h): requests built from the caller's arguments, replies turned into results.
// Connection management and the region table are in client_core.cc.

#include "kvault/client.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <random>
#include <utility>

#include "client_core.h"
#include "op_state.h"
#include "staged_transfer.h"

namespace kvault {

using client_internal::ClientCore;
using client_internal::Link;
using client_internal::OpState;
using client_internal::RegionRecord;
using client_internal::StagedLoad;
using client_internal::StagedSources;
using client_internal::StagingAlignUp;
using client_internal::StagingPool;

namespace {

Tier FromWire(transport::WireTier t) {
  switch (t) {
    case transport::WireTier::kGpu:
      return Tier::kGpu;
    case transport::WireTier::kHost:
      return Tier::kHost;
    case transport::WireTier::kNvme:
      return Tier::kNvme;
    default:
      return Tier::kNone;
  }
}

std::string Where(const void* p, size_t n) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%zu bytes at %p", n, p);
  return buf;
}

// The most entries one request may carry under the daemon's limits: its batch limit, and what
// fits in one body next to the rkey (a small header of counts and ids).
size_t EntriesPerRequest(const transport::ProtocolLimits& limits, size_t remote_key_bytes,
                         size_t entry_bytes) {
  const size_t fixed = 8 + 4 + remote_key_bytes + 4;
  const size_t by_body =
      limits.max_body_bytes > fixed ? (limits.max_body_bytes - fixed) / entry_bytes : 0;
  return std::max<size_t>(1, std::min<size_t>(limits.max_keys_per_batch, by_body));
}

// InvalidArgument when `keys` are more than one Lookup or Delete may carry under the daemon's
// limits (each is one request: its max_keys_per_batch, or fewer when the keys would not fit in
// a frame body). Checked before encoding, which would refuse them with OutOfRange.
Status CheckOneRequest(const char* what, size_t keys, const transport::ProtocolLimits& limits) {
  const size_t most = EntriesPerRequest(limits, 0, sizeof(BlockKey));
  if (keys <= most) return Status::Ok();
  return Status::InvalidArgument(std::string(what) + ": " + std::to_string(keys) +
                                 " keys, at most " + std::to_string(most) +
                                 " per call under the daemon's limits (max_keys_per_batch)");
}

// Indices of one request: same region, at most `per_request` of them, in key order.
struct Part {
  std::shared_ptr<RegionRecord> region;
  std::vector<size_t> indices;
};

// Groups keys by the region their memory lies in (first-seen order) and cuts each group to the
// request size; a staged region's parts also to the bytes one request may stage (staged_bytes(i)
// each). Returns InvalidArgument naming the first span outside every region.
template <typename SpanAt, typename StagedBytes>
Result<std::vector<Part>> PlanParts(ClientCore& core, size_t count, SpanAt span_at,
                                    StagedBytes staged_bytes,
                                    const transport::ProtocolLimits& limits, size_t entry_bytes,
                                    const char* what) {
  std::vector<Part> groups;
  std::map<const RegionRecord*, size_t> group_of;
  for (size_t i = 0; i < count; ++i) {
    const auto [p, n] = span_at(i);
    if (p == nullptr || n == 0) {
      return Status::InvalidArgument(std::string(what) + " " + std::to_string(i) + " is empty");
    }
    std::shared_ptr<RegionRecord> region = core.FindRegion(p, n);
    if (!region) {
      return Status::InvalidArgument(std::string(what) + " " + std::to_string(i) + " (" +
                                     Where(p, n) + ") is not inside a registered memory region");
    }
    auto [it, fresh] = group_of.emplace(region.get(), groups.size());
    if (fresh) groups.push_back(Part{region, {}});
    groups[it->second].indices.push_back(i);
  }
  std::vector<Part> parts;
  for (Part& g : groups) {
    // A staged request names the pool's key instead, which may be longer than the region's.
    const size_t key_bytes = g.region->region.remote_key.size() + (g.region->staged ? 256 : 0);
    const size_t per = EntriesPerRequest(limits, key_bytes, entry_bytes);
    const uint64_t budget = g.region->staged ? core.staging().part_bytes() : UINT64_MAX;
    Part part{g.region, {}};
    uint64_t bytes = 0;
    for (size_t i : g.indices) {
      const uint64_t b = StagingAlignUp(staged_bytes(i));
      if (!part.indices.empty() && (part.indices.size() == per || bytes + b > budget)) {
        parts.push_back(std::move(part));
        part = Part{g.region, {}};
        bytes = 0;
      }
      part.indices.push_back(i);
      bytes += b;
    }
    if (!part.indices.empty()) parts.push_back(std::move(part));
  }
  return parts;
}

template <typename Reply>
Status CheckCount(const Reply&, size_t got, size_t want) {
  if (got == want) return Status::Ok();
  return Status::Corruption(std::string(transport::MessageTypeName(Reply::kType)) + " has " +
                            std::to_string(got) + " results for " + std::to_string(want) + " keys");
}

}  // namespace

std::string_view TierName(Tier tier) {
  switch (tier) {
    case Tier::kNone:
      return "none";
    case Tier::kGpu:
      return "gpu";
    case Tier::kHost:
      return "host";
    case Tier::kNvme:
      return "nvme";
  }
  return "unknown";
}

double ServerStat::AsDouble() const {
  return std::holds_alternative<uint64_t>(value) ? static_cast<double>(std::get<uint64_t>(value))
                                                 : std::get<double>(value);
}

// --- MemoryRegion ---

MemoryRegion::~MemoryRegion() = default;
uint8_t* MemoryRegion::data() const {
  return record_ ? static_cast<uint8_t*>(record_->region.memory.address()) : nullptr;
}
size_t MemoryRegion::size() const { return record_ ? record_->region.memory.length() : 0; }
bool MemoryRegion::Contains(const void* p, size_t n) const {
  return record_ && record_->Contains(p, n);
}
const std::vector<uint8_t>& MemoryRegion::remote_key() const {
  static const std::vector<uint8_t> kNone;
  return record_ ? record_->region.remote_key : kNone;
}

// --- Client ---

Client::Client(std::unique_ptr<ClientCore> core) : core_(std::move(core)) {}
Client::~Client() = default;

Result<std::unique_ptr<Client>> Client::Connect(const ClientConfig& config) {
  KVAULT_RETURN_IF_ERROR(config.Validate());
  const Deadline deadline = Clock::now() + config.connect_timeout;
  KVAULT_ASSIGN_OR_RETURN(HostPort address, ParseHostPort(config.server));
  std::shared_ptr<transport::UcxAgent> agent;
  if (config.data_plane) {
    transport::UcxAgentOptions options;
    options.context.transports = config.ucx_transports;
    options.context.name = "kvault-client";
    Result<std::unique_ptr<transport::UcxAgent>> created = transport::UcxAgent::Create(options);
    if (!created.ok()) return created.status().WithContext("starting the UCX agent");
    agent = std::move(*created);
  }
  auto core = std::make_unique<ClientCore>(config, std::move(address), std::move(agent));
  KVAULT_ASSIGN_OR_RETURN(Link link, core->Acquire(deadline));
  (void)link;
  return std::unique_ptr<Client>(new Client(std::move(core)));
}

Result<MemoryRegion> Client::RegisterMemory(void* ptr, size_t len) {
  if (ptr == nullptr || len == 0) {
    return Status::InvalidArgument("RegisterMemory: null pointer or zero length");
  }
  if (!core_->agent()) return Status::Unsupported("RegisterMemory: client has no data plane");
  KVAULT_ASSIGN_OR_RETURN(transport::RegisteredRegion region,
                          core_->agent()->RegisterMemory(ptr, len));
  return MemoryRegion(core_->Adopt(std::move(region), core_->staging().capacity() > 0));
}

Result<MemoryRegion> Client::AllocateMemory(size_t len) {
  if (len == 0) return Status::InvalidArgument("AllocateMemory: zero length");
  if (!core_->agent()) return Status::Unsupported("AllocateMemory: client has no data plane");
  KVAULT_ASSIGN_OR_RETURN(std::shared_ptr<client_internal::RegionRecord> shared,
                          core_->AllocateShared(len));
  if (shared != nullptr) return MemoryRegion(std::move(shared));
  KVAULT_ASSIGN_OR_RETURN(transport::RegisteredRegion region, core_->agent()->AllocateMemory(len));
  return MemoryRegion(core_->Adopt(std::move(region)));
}

void Client::RetireMemory(MemoryRegion region) { core_->Retire(std::move(region)); }

LookupResult Client::LookupPrefix(std::span<const BlockKey> keys, const LookupOptions& options) {
  LookupResult out;
  const Deadline deadline = core_->DeadlineOr(options.deadline);
  Result<Link> link = core_->Acquire(deadline);
  if (!link.ok()) {
    out.status = link.status();
    return out;
  }
  out.status = CheckOneRequest("lookup", keys.size(), link->conn->limits());
  if (!out.status.ok()) return out;
  transport::Lookup request;
  request.keys.assign(keys.begin(), keys.end());
  request.want_lease = options.want_lease;
  request.lease_ttl_ms = static_cast<uint32_t>(
      std::clamp<int64_t>(options.lease_ttl.count(), 0, std::numeric_limits<uint32_t>::max()));
  const Deadline sent = Clock::now();
  Result<transport::Message> reply = link->conn->CallSync(request, deadline);
  if (!reply.ok()) {
    out.status = reply.status();
    return out;
  }
  const auto& r = std::get<transport::LookupReply>(*reply);
  Status counted = CheckCount(r, r.tiers.size(), keys.size());
  if (!counted.ok() || r.leading_hits > keys.size()) {
    out.status =
        counted.ok() ? Status::Corruption("lookup_reply: leading_hits over key count") : counted;
    return out;
  }
  out.leading_hits = r.leading_hits;
  out.tiers.reserve(r.tiers.size());
  for (transport::WireTier t : r.tiers) out.tiers.push_back(FromWire(t));
  if (r.lease_id != 0) {
    out.lease.id = r.lease_id;
    out.lease.session = link->session;
    out.lease.expiry = sent + std::chrono::milliseconds(r.lease_ttl_ms);
  }
  return out;
}

std::vector<BlockKey> ChainParents(std::span<const BlockKey> keys, size_t first) {
  std::vector<BlockKey> parents(keys.size() > first ? keys.size() - first : 0);
  for (size_t i = 0; i < parents.size(); ++i) {
    if (first + i > 0) parents[i] = keys[first + i - 1];
  }
  return parents;
}

StoreHandle Client::Store(std::span<const BlockKey> keys,
                          std::span<const std::span<const uint8_t>> sources,
                          const StoreOptions& options) {
  const Deadline deadline = core_->DeadlineOr(options.deadline);
  auto fail = [&](const Status& s) { return StoreHandle(OpState::Failed(keys.size(), s)); };
  if (keys.size() != sources.size()) {
    return fail(Status::InvalidArgument("store: " + std::to_string(keys.size()) + " keys but " +
                                        std::to_string(sources.size()) + " sources"));
  }
  if (!options.parents.empty() && options.parents.size() != keys.size()) {
    return fail(Status::InvalidArgument("store: " + std::to_string(keys.size()) + " keys but " +
                                        std::to_string(options.parents.size()) + " parents"));
  }
  if (!core_->agent()) return fail(Status::Unsupported("store: client has no data plane"));
  Result<Link> link = core_->Acquire(deadline);
  // No connection is the transfer's outcome, not a refusal of its input.
  if (!link.ok()) return StoreHandle(OpState::Failed(keys.size(), link.status(), false));
  const transport::ProtocolLimits limits = link->conn->limits();
  for (size_t i = 0; i < sources.size(); ++i) {
    if (sources[i].size() > limits.max_block_object_bytes) {
      return fail(Status::InvalidArgument("store: source " + std::to_string(i) + " of " +
                                          std::to_string(sources[i].size()) +
                                          " bytes is over the daemon's object limit of " +
                                          std::to_string(limits.max_block_object_bytes)));
    }
  }
  Result<std::vector<Part>> parts = PlanParts(
      *core_, sources.size(),
      [&](size_t i) {
        return std::pair<const void*, size_t>(sources[i].data(), sources[i].size());
      },
      [&](size_t i) { return uint64_t{sources[i].size()}; }, limits,
      transport::kStoreEntryWireBytes, "store: source");
  if (!parts.ok()) return fail(parts.status());

  auto state = std::make_shared<OpState>(keys.size());
  state->ExpectParts(parts->size());
  for (Part& part : *parts) {
    std::optional<StagedSources> staged;
    if (part.region->staged && link->data_plane != transport::DataPlane::kProcessMemory) {
      staged = StageSources(core_->staging(), sources, part.indices);
      core_->staging().CountRequest(staged.has_value());
    }
    transport::Store request;
    request.remote_key =
        staged ? staged->chunk->region().region.remote_key : part.region->region.remote_key;
    request.entries.reserve(part.indices.size());
    for (size_t k = 0; k < part.indices.size(); ++k) {
      const size_t i = part.indices[k];
      const std::span<const uint8_t> source = staged ? staged->staged[k] : sources[i];
      request.entries.push_back({keys[i], reinterpret_cast<uint64_t>(source.data()), source.size(),
                                 options.parents.empty() ? BlockKey{} : options.parents[i]});
    }
    std::shared_ptr<StagingPool::Chunk> chunk = staged ? staged->chunk : nullptr;
    auto indices = std::make_shared<std::vector<size_t>>(std::move(part.indices));
    link->conn->Call(
        request, deadline,
        [state, indices](Result<transport::Message> reply) {
          if (!reply.ok()) return state->PartDone(*indices, reply.status(), {}, {});
          const auto& r = std::get<transport::StoreReply>(*reply);
          Status counted = CheckCount(r, r.statuses.size(), indices->size());
          if (!counted.ok()) return state->PartDone(*indices, counted, {}, {});
          std::vector<Status> per_key;
          per_key.reserve(r.statuses.size());
          for (transport::WireStatus s : r.statuses)
            per_key.push_back(transport::StatusFromWire(s));
          state->PartDone(*indices, Status::Ok(), per_key, {});
        },
        // The region (or the chunk) stays registered until the daemon is done with it.
        [state, region = part.region, chunk](bool) { state->PartSettled(); });
  }
  return StoreHandle(std::move(state));
}

LoadHandle Client::Load(const Lease& lease, std::span<const BlockKey> keys,
                        std::span<const LoadDestination> destinations, const LoadOptions& options) {
  const Deadline deadline = core_->DeadlineOr(options.deadline);
  auto fail = [&](const Status& s) { return LoadHandle(OpState::Failed(keys.size(), s)); };
  if (keys.size() != destinations.size()) {
    return fail(Status::InvalidArgument("load: " + std::to_string(keys.size()) + " keys but " +
                                        std::to_string(destinations.size()) + " destinations"));
  }
  if (!core_->agent()) return fail(Status::Unsupported("load: client has no data plane"));
  for (size_t i = 0; i < destinations.size(); ++i) {
    const LoadDestination& d = destinations[i];
    if (d.length > d.buffer.size()) {
      return fail(Status::InvalidArgument("load: destination " + std::to_string(i) + " asks for " +
                                          std::to_string(d.length) + " bytes into a buffer of " +
                                          std::to_string(d.buffer.size())));
    }
  }
  Result<Link> link = core_->Acquire(deadline);
  if (!link.ok()) return LoadHandle(OpState::Failed(keys.size(), link.status(), false));
  const transport::ProtocolLimits limits = link->conn->limits();
  // No object is larger than the daemon's limit, so no load writes past that many bytes of a
  // buffer: a larger buffer is offered as its first max_block_object_bytes (what the wire allows).
  std::vector<LoadDestination> wanted(destinations.begin(), destinations.end());
  for (size_t i = 0; i < wanted.size(); ++i) {
    LoadDestination& d = wanted[i];
    if (d.offset > limits.max_block_object_bytes || d.length > limits.max_block_object_bytes) {
      return fail(Status::InvalidArgument("load: destination " + std::to_string(i) +
                                          " asks for bytes past the daemon's object limit of " +
                                          std::to_string(limits.max_block_object_bytes)));
    }
    if (d.buffer.size() > limits.max_block_object_bytes) {
      d.buffer = d.buffer.first(limits.max_block_object_bytes);
    }
  }
  Result<std::vector<Part>> parts = PlanParts(
      *core_, wanted.size(),
      [&](size_t i) {
        return std::pair<const void*, size_t>(wanted[i].buffer.data(), wanted[i].buffer.size());
      },
      [&](size_t i) {
        const LoadDestination& d = wanted[i];
        return d.length != 0 ? d.length : uint64_t{d.buffer.size()};
      },
      limits, 64, "load: destination");
  if (!parts.ok()) return fail(parts.status());
  // A lease of an earlier session means nothing to this one: load without it.
  const uint64_t lease_id = lease.valid() && lease.session == link->session ? lease.id : 0;

  auto state = std::make_shared<OpState>(keys.size());
  state->ExpectParts(parts->size());
  for (Part& part : *parts) {
    std::shared_ptr<const StagedLoad> staged;
    if (part.region->staged && link->data_plane != transport::DataPlane::kProcessMemory) {
      std::optional<StagedLoad> made = StagedLoad::Make(core_->staging(), wanted, part.indices);
      core_->staging().CountRequest(made.has_value());
      if (made) staged = std::make_shared<const StagedLoad>(std::move(*made));
    }
    transport::Load request;
    request.lease_id = lease_id;
    request.remote_key =
        staged ? staged->region().region.remote_key : part.region->region.remote_key;
    request.entries.reserve(part.indices.size());
    for (size_t k = 0; k < part.indices.size(); ++k) {
      const size_t i = part.indices[k];
      const LoadDestination& d = staged ? staged->staged(k) : wanted[i];
      request.entries.push_back({keys[i], reinterpret_cast<uint64_t>(d.buffer.data()),
                                 d.buffer.size(), d.offset, d.length});
    }
    auto indices = std::make_shared<std::vector<size_t>>(std::move(part.indices));
    link->conn->Call(
        request, deadline,
        // A staged part's bytes reach the caller's buffers before its keys are done, and never
        // once the operation is done without them (cancelled, past its deadline): the buffers
        // are the caller's again as soon as it settles, which the settled callback below may
        // already have reported.
        [state, indices, staged](Result<transport::Message> reply) {
          if (!reply.ok()) return state->PartDone(*indices, reply.status(), {}, {});
          const auto& r = std::get<transport::LoadReply>(*reply);
          Status counted = CheckCount(r, r.outcomes.size(), indices->size());
          if (!counted.ok()) return state->PartDone(*indices, counted, {}, {});
          std::vector<Status> per_key;
          std::vector<uint64_t> sizes;
          per_key.reserve(r.outcomes.size());
          sizes.reserve(r.outcomes.size());
          for (const transport::LoadOutcome& o : r.outcomes) {
            per_key.push_back(transport::StatusFromWire(o.status));
            sizes.push_back(o.object_size);
          }
          if (!staged) return state->PartDone(*indices, Status::Ok(), per_key, sizes);
          state->PartCopiedOut(*indices, per_key, sizes, [&] { staged->CopyOut(per_key, sizes); });
        },
        // Unanswered, the daemon may still write the chunk: it never goes back to the pool. (The
        // caller's own buffers of a direct part are the caller's again: handles.h.)
        [state, region = part.region, staged](bool daemon_done) {
          if (staged && !daemon_done) staged->RetireChunk();
          state->PartSettled();
        });
  }
  return LoadHandle(std::move(state));
}

Status Client::ReleaseLease(const Lease& lease, std::optional<Deadline> deadline) {
  if (!lease.valid()) return Status::InvalidArgument("release_lease: no lease");
  const Deadline d = core_->DeadlineOr(deadline);
  KVAULT_ASSIGN_OR_RETURN(Link link, core_->Acquire(d));
  if (lease.session != link.session) {
    return transport::StatusFromWire(transport::WireStatus::kLeaseExpired,
                                     "the lease belongs to an earlier, lost session");
  }
  transport::ReleaseLease request;
  request.lease_id = lease.id;
  KVAULT_ASSIGN_OR_RETURN(transport::Message reply, link.conn->CallSync(request, d));
  return std::get<transport::ReleaseLeaseReply>(reply).ToStatus();
}

Result<std::vector<Status>> Client::Delete(std::span<const BlockKey> keys,
                                           std::optional<Deadline> deadline) {
  const Deadline d = core_->DeadlineOr(deadline);
  KVAULT_ASSIGN_OR_RETURN(Link link, core_->Acquire(d));
  KVAULT_RETURN_IF_ERROR(CheckOneRequest("delete", keys.size(), link.conn->limits()));
  transport::Delete request;
  request.keys.assign(keys.begin(), keys.end());
  KVAULT_ASSIGN_OR_RETURN(transport::Message reply, link.conn->CallSync(request, d));
  const auto& r = std::get<transport::DeleteReply>(reply);
  KVAULT_RETURN_IF_ERROR(CheckCount(r, r.statuses.size(), keys.size()));
  std::vector<Status> out;
  out.reserve(r.statuses.size());
  for (transport::WireStatus s : r.statuses) out.push_back(transport::StatusFromWire(s));
  return out;
}

static_assert(std::tuple_size_v<decltype(kernels::GpuIpcExport::pool_handle)> ==
              transport::kGpuPoolHandleBytes);
static_assert(std::tuple_size_v<decltype(kernels::GpuIpcExport::device_uuid)> ==
              transport::kGpuDeviceUuidBytes);

Result<std::vector<GpuBlockExport>> Client::ExportGpuBlocks(const Lease& lease,
                                                            std::span<const BlockKey> keys,
                                                            std::optional<Deadline> deadline) {
  if (!lease.valid()) {
    return Status::InvalidArgument("export_gpu_blocks: no lease (take one with LookupPrefix)");
  }
  const Deadline d = core_->DeadlineOr(deadline);
  KVAULT_ASSIGN_OR_RETURN(Link link, core_->Acquire(d));
  const uint32_t most = transport::GpuExportKeysPerRequest(link.conn->limits());
  if (keys.size() > most) {
    return Status::InvalidArgument("export_gpu_blocks: " + std::to_string(keys.size()) +
                                   " keys, at most " + std::to_string(most) +
                                   " per call under the daemon's limits");
  }
  std::vector<GpuBlockExport> out(keys.size());
  if (lease.session != link.session) {
    const Status expired = transport::StatusFromWire(
        transport::WireStatus::kLeaseExpired, "the lease belongs to an earlier, lost session");
    for (GpuBlockExport& e : out) e.status = expired;
    return out;
  }
  transport::GpuExport request;
  request.lease_id = lease.id;
  request.keys.assign(keys.begin(), keys.end());
  KVAULT_ASSIGN_OR_RETURN(transport::Message reply, link.conn->CallSync(request, d));
  const auto& r = std::get<transport::GpuExportReply>(reply);
  KVAULT_RETURN_IF_ERROR(CheckCount(r, r.entries.size(), keys.size()));
  for (size_t i = 0; i < out.size(); ++i) {
    const transport::GpuExportEntry& e = r.entries[i];
    if (e.status == transport::WireStatus::kOk) {
      out[i].block = {e.pool_handle, e.device_uuid, e.pool_bytes, e.offset, e.length};
    } else if (e.status == transport::WireStatus::kNotFound) {
      out[i].status = transport::StatusFromWire(e.status, "not in the daemon's gpu tier");
    } else {
      out[i].status = transport::StatusFromWire(e.status, r.message);
    }
  }
  return out;
}

Result<std::vector<ServerStat>> Client::Stats(std::optional<Deadline> deadline) {
  const Deadline d = core_->DeadlineOr(deadline);
  KVAULT_ASSIGN_OR_RETURN(Link link, core_->Acquire(d));
  KVAULT_ASSIGN_OR_RETURN(transport::Message reply, link.conn->CallSync(transport::Stats{}, d));
  std::vector<ServerStat> out;
  for (const transport::StatEntry& e : std::get<transport::StatsReply>(reply).entries) {
    out.push_back(ServerStat{e.name, e.value});
  }
  return out;
}

Result<std::chrono::nanoseconds> Client::Ping(std::optional<Deadline> deadline) {
  const Deadline d = core_->DeadlineOr(deadline);
  KVAULT_ASSIGN_OR_RETURN(Link link, core_->Acquire(d));
  transport::Ping request;
  request.payload = std::random_device{}();
  const Deadline t0 = Clock::now();
  KVAULT_ASSIGN_OR_RETURN(transport::Message reply, link.conn->CallSync(request, d));
  const auto rtt = Clock::now() - t0;
  if (std::get<transport::Pong>(reply).payload != request.payload) {
    return Status::Corruption("pong: payload differs from the ping's");
  }
  return std::chrono::duration_cast<std::chrono::nanoseconds>(rtt);
}

RegisteredStagingStats Client::registered_staging() const {
  StagingPool& pool = core_->staging();
  return {pool.capacity(), pool.staged_requests(), pool.direct_requests(), pool.retired_bytes()};
}

bool Client::connected() const { return core_->connected(); }
uint64_t Client::session_id() const { return core_->session_id(); }
const ClientConfig& Client::config() const { return core_->config(); }

}  // namespace kvault
