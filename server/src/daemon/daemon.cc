// Daemon (daemon.h): assembly and orderly shutdown of kvaultd's parts.

#include "daemon/daemon.h"

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <optional>
#include <string>

#include "config/derived_options.h"
#include "control/control_server.h"
#include "control/memory_socket.h"
#include "core/arriving_objects.h"
#include "core/data_planes.h"
#include "core/process_data_mover.h"
#include "core/service.h"
#include "core/ucx_data_mover.h"
#include "http/http_server.h"
#include "kvault/common/file_io.h"
#include "kvault/common/log.h"
#include "kvault/storage/block_store.h"
#include "kvault/storage/gpu_tier.h"
#include "kvault/storage/host_tier.h"
#include "kvault/storage/nvme_tier.h"
#include "kvault/transport/local/mapped_residency.h"
#include "kvault/transport/ucx/peer_memory_guard.h"
#include "kvault/transport/ucx/peer_trust.h"
#include "kvault/transport/ucx/transfer_engine.h"
#include "metrics/metrics.h"
#include "tenants/tenant_registry.h"

namespace kvault::server {

// Declared in the order they are built; destroyed in reverse (listeners before the store).
struct Daemon::Parts {
  DaemonConfig config;
  std::optional<TenantRegistry> tenants;
  std::unique_ptr<storage::BlockStore> store;
  // Counts the client pages the engines map; outlives them.
  std::unique_ptr<transport::MappedResidency> mapped_residency;
  std::vector<std::unique_ptr<transport::TransferEngine>> engines;
  std::unique_ptr<UcxDataMover> mover;
  std::unique_ptr<ProcessDataMover> process_mover;  // null with data_plane.process_memory off
  std::unique_ptr<MemoryHandles> memory_handles;    // null with process_mover
  std::unique_ptr<MemorySocket> memory_socket;      // null with process_mover
  std::unique_ptr<DataPlanes> data_planes;
  std::unique_ptr<Metrics> metrics;
  std::unique_ptr<Service> service;
  std::atomic<bool> serving{false};  // the store and the rest are up: /metrics may read them
  // Started before the store (see Start); declared after everything its metrics source reads,
  // so that a Start that fails stops it before they go.
  std::unique_ptr<HttpServer> http;
  std::unique_ptr<ControlServer> control;
  std::string tiers;
  bool shut_down = false;
};

namespace {

// "HOST:PORT", with an IPv6 literal in brackets ("[::1]:7400") as clients parse it.
std::string HostPort(const std::string& host, uint16_t port) {
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

Status WithPart(Status status, const std::string& part) {
  return status.ok() ? status : status.WithContext(part);
}

Result<std::unique_ptr<storage::BlockStore>> OpenStore(const DaemonConfig& c,
                                                       const TenantRegistry& tenants,
                                                       std::string& names,
                                                       std::span<uint8_t>& host_arena) {
  storage::StoreTiers tiers;
  if (c.storage.gpu_capacity_bytes > 0) {
    storage::GpuTierOptions gpu;
    gpu.device = static_cast<int>(c.storage.gpu_device);
    gpu.capacity_bytes = c.storage.gpu_capacity_bytes;
    Result<std::unique_ptr<storage::GpuTier>> tier = storage::GpuTier::Create(gpu);
    if (!tier.ok()) return WithPart(tier.status(), "gpu tier");
    tiers.gpu = std::move(*tier);
    names += "gpu,";
  }
  storage::HostTierOptions host;
  host.capacity_bytes = c.storage.host_capacity_bytes;
  Result<std::unique_ptr<storage::HostTier>> host_tier = storage::HostTier::Create(host);
  if (!host_tier.ok()) return WithPart(host_tier.status(), "host tier");
  host_arena = (*host_tier)->arena();
  tiers.host = std::move(*host_tier);
  names += "host";
  if (c.storage.nvme_capacity_bytes > 0) {
    storage::NvmeTierOptions nvme;
    nvme.directory = (std::filesystem::path(c.data_dir) / "nvme").string();
    nvme.capacity_bytes = c.storage.nvme_capacity_bytes;
    std::error_code ec;
    std::filesystem::create_directories(nvme.directory, ec);
    if (ec) return Status::IoError("data_dir " + c.data_dir + ": " + ec.message());
    Result<std::unique_ptr<storage::NvmeTier>> tier = storage::NvmeTier::Open(nvme);
    if (!tier.ok()) return WithPart(tier.status(), "nvme tier");
    tiers.nvme = std::move(*tier);
    names += ",nvme";
  }
  storage::BlockStoreOptions options = StoreOptionsFor(c);
  for (const Tenant& t : tenants.tenants()) {
    if (t.quota_bytes > 0) options.tenant_quota_bytes[t.id] = t.quota_bytes;
  }
  Result<std::unique_ptr<storage::BlockStore>> store =
      storage::BlockStore::Create(options, std::move(tiers));
  if (!store.ok()) return WithPart(store.status(), "block store");
  return store;
}

}  // namespace

Result<std::unique_ptr<Daemon>> Daemon::Start(const DaemonConfig& config) {
  KVAULT_RETURN_IF_ERROR(WithPart(ValidateDaemonConfig(config), "config"));
  const transport::ProtocolLimits limits = ProtocolLimitsFor(config);
  KVAULT_RETURN_IF_ERROR(WithPart(limits.Validate(), "limits"));
  auto p = std::make_unique<Parts>();
  p->config = config;
  // Connections, nvme files and the remote keys of local clients (each keeps its segment's file:
  // transport::UcxRemoteKey::segment_file) each hold a descriptor.
  RaiseOpenFileLimit();
  Result<TenantRegistry> tenants = TenantRegistry::Load(config.auth.tenants_file);
  if (!tenants.ok()) return WithPart(tenants.status(), "tenants");
  p->tenants.emplace(std::move(*tenants));

  // The HTTP port first: /healthz answers (and /readyz says 503) while the store opens, which
  // takes a while when the nvme tier rebuilds its index, so a liveness probe does not kill a
  // daemon that is recovering. /metrics reads the store once everything is up.
  p->metrics = std::make_unique<Metrics>();
  HttpServerOptions http;
  http.host = config.http.host;
  http.port = config.http.port;
  Parts* raw = p.get();
  Result<std::unique_ptr<HttpServer>> http_server = HttpServer::Start(http, [raw] {
    if (raw->serving.load(std::memory_order_acquire)) {
      raw->metrics->RefreshFromStore(*raw->store);
      raw->metrics->RefreshClientMemoryFaults(transport::PeerMemoryGuard::absorbed_total() +
                                              ArrivingObjects::cut_reads_total());
      raw->metrics->RefreshMappedClientMemory(raw->mapped_residency->resident_bytes(),
                                              raw->mapped_residency->dropped_bytes());
    }
    return raw->metrics->Serialize();
  });
  if (!http_server.ok()) return WithPart(http_server.status(), "http");
  p->http = std::move(*http_server);

  // data_dir is made by OpenStore, only when the nvme tier needs it: a daemon without one writes
  // nothing there (and may run where it cannot write, or with data_dir empty).
  std::span<uint8_t> host_arena;
  KVAULT_ASSIGN_OR_RETURN(p->store, OpenStore(config, *p->tenants, p->tiers, host_arena));

  const DataPlaneChoice planes = ChooseDataPlanes(config);
  if (!config.auth.tenants_file.empty() &&
      transport::ReachesLocalPeersThroughSharedMemory(planes.ucx_transports)) {
    KVAULT_LOG(LogLevel::kWarn, "kvaultd",
               "ucx.transports '" + planes.ucx_transports +
                   "' lets clients on this host reach the data plane through shared memory or "
                   "CMA, where UCX trusts the peer: a tenant's process on this host can crash "
                   "kvaultd and steer what it maps and writes (transport/ucx.md, \"Peers UCX "
                   "trusts\"). For tenants you do not trust, leave ucx.transports unset (local "
                   "clients then move data through process memory, others without shared "
                   "memory) or set it to tcp, and run kvaultd as a user of its own");
  }
  p->mapped_residency =
      std::make_unique<transport::MappedResidency>(config.data_plane.mapped_client_bytes);
  transport::TransferEngineOptions engine;
  engine.context.transports = planes.ucx_transports;
  engine.context.name = "kvaultd";
  engine.mapped_residency = p->mapped_residency.get();
  std::vector<transport::TransferEngine*> engines;
  for (uint32_t i = 0; i < std::max<uint32_t>(1, config.ucx.workers); ++i) {
    Result<std::unique_ptr<transport::TransferEngine>> created =
        transport::TransferEngine::Create(engine);
    if (!created.ok()) return WithPart(created.status(), "data plane (UCX)");
    // Blocks in the host tier are the sources of loads and the destinations of stores:
    // registered once, so transfers skip per-request registration. Never exposed to clients.
    Result<transport::RegionId> region =
        (*created)->RegisterMemory(host_arena.data(), host_arena.size());
    if (!region.ok()) return WithPart(region.status(), "data plane (registering the host tier)");
    engines.push_back(created->get());
    p->engines.push_back(std::move(*created));
  }
  p->mover = std::make_unique<UcxDataMover>(std::move(engines));
  if (planes.process_memory) {
    p->memory_handles = std::make_unique<MemoryHandles>();
    Result<std::unique_ptr<MemorySocket>> socket =
        MemorySocket::Start(planes.memory_socket, p->memory_handles.get(), "/proc/self/exe");
    if (socket.ok()) {
      p->memory_socket = std::move(*socket);
      p->process_mover = std::make_unique<ProcessDataMover>(p->mapped_residency.get());
    } else if (config.data_plane.process_memory == "on") {
      return WithPart(socket.status(), "data_plane.memory_socket");
    } else {
      KVAULT_LOG(LogLevel::kWarn, "kvaultd",
                 "no process-memory data plane (data_plane.memory_socket: " +
                     socket.status().ToString() + "); clients on this host use UCX");
      p->memory_handles.reset();
    }
  }
  p->data_planes = std::make_unique<DataPlanes>(p->mover.get(), p->process_mover.get());

  ServiceOptions service;
  service.limits = limits;
  service.default_lease_ttl = config.leases.default_ttl;
  service.max_lease_ttl = config.leases.max_ttl;
  service.transfer_timeout = config.limits.io_timeout;
  service.max_request_bytes = config.limits.max_inflight_bytes_per_client;
  service.gpu_ipc_export = config.storage.gpu_ipc_export;
  service.memory_handles = p->memory_handles.get();
  if (p->memory_socket) service.memory_socket = p->memory_socket->path();
  p->service = std::make_unique<Service>(*p->store, *p->tenants, p->data_planes.get(),
                                         p->metrics.get(), service);

  ControlServerOptions control;
  control.host = config.control.host;
  control.port = config.control.port;
  control.threads = config.control_threads;
  control.busy_poll = std::chrono::microseconds(config.control_busy_poll_us);
  control.max_connections = config.limits.max_connections;
  control.max_unauthenticated_per_peer = config.limits.max_unauthenticated_per_peer;
  control.handshake_timeout = config.limits.handshake_timeout;
  control.io_timeout = config.limits.io_timeout;
  control.idle_timeout = config.limits.idle_timeout;
  control.limits = limits;
  control.tls_cert_file = config.tls.cert_file;
  control.tls_key_file = config.tls.key_file;
  Result<std::unique_ptr<ControlServer>> control_server =
      ControlServer::Start(control, *p->service, p->metrics.get());
  if (!control_server.ok()) return WithPart(control_server.status(), "control");
  p->control = std::move(*control_server);
  p->serving.store(true, std::memory_order_release);
  p->http->SetReady(true);
  KVAULT_LOG(LogLevel::kInfo, "kvaultd",
             "serving: tiers " + p->tiers + " (host " +
                 std::to_string(config.storage.host_capacity_bytes >> 20) + " MiB, nvme " +
                 std::to_string(config.storage.nvme_capacity_bytes >> 20) + " MiB, gpu " +
                 std::to_string(config.storage.gpu_capacity_bytes >> 20) + " MiB), " +
                 std::to_string(p->tenants->size()) + " tenant(s), " + "up to " +
                 std::to_string(config.control_threads) + " control threads, " +
                 std::to_string(p->engines.size()) + " UCX worker(s), transports '" +
                 planes.ucx_transports + "', process memory for local clients " +
                 (p->memory_socket ? "on (" + p->memory_socket->path() + ")" : "off"));
  return std::unique_ptr<Daemon>(new Daemon(std::move(p)));
}

Daemon::Daemon(std::unique_ptr<Parts> parts) : parts_(std::move(parts)) {}

Daemon::~Daemon() { Shutdown(false); }

std::string Daemon::ReadyLine() const {
  const Parts& p = *parts_;
  return "kvaultd ready control=" + HostPort(p.config.control.host, p.control->port()) +
         " http=" + HostPort(p.config.http.host, p.http->port()) + " tiers=" + p.tiers +
         " tenants=" + std::to_string(p.tenants->size()) + " data_dir=" + p.config.data_dir +
         " tls=" + (p.control->tls() ? "on" : "off") +
         (p.memory_socket ? " memory_socket=" + p.memory_socket->path() : "");
}

namespace {

// A clean stop writes what only RAM holds to the nvme tier, within limits.drain_timeout, so
// that a restart serves it again (a block promoted to RAM by a hit left the nvme tier).
void PersistRamTiers(storage::BlockStore& store, std::chrono::milliseconds bound) {
  const storage::BlockStore::PersistReport r =
      store.PersistRamTiers(std::chrono::steady_clock::now() + bound);
  if (r.blocks == 0 && r.left_blocks == 0) return;
  char mib[32];
  std::snprintf(mib, sizeof(mib), "%.1f", static_cast<double>(r.bytes) / (1 << 20));
  KVAULT_LOG(LogLevel::kInfo, "kvaultd",
             "wrote " + std::to_string(r.blocks) + " block(s) (" + mib +
                 " MiB) held only in RAM to the nvme tier" +
                 (r.left_blocks > 0 ? "; " + std::to_string(r.left_blocks) +
                                          " left in RAM (limits.drain_timeout reached, the nvme "
                                          "tier full, or the blocks in use)"
                                    : ""));
}

}  // namespace

bool Daemon::Shutdown(bool drain) {
  Parts& p = *parts_;
  if (p.shut_down) return true;
  p.shut_down = true;
  p.http->SetReady(false);
  const bool drained = drain ? p.control->Drain(p.config.limits.drain_timeout) : false;
  p.control->Stop();  // closes connections: their sessions release leases
  p.control.reset();
  p.memory_socket.reset();  // no more hand-overs; the socket file is removed
  p.http->Stop();
  p.service.reset();
  p.data_planes.reset();
  p.process_mover.reset();
  p.memory_handles.reset();
  p.mover.reset();
  p.engines.clear();
  if (drain) PersistRamTiers(*p.store, p.config.limits.drain_timeout);
  p.store.reset();  // movers stop; the nvme tier flushes and closes
  return drained;
}

}  // namespace kvault::server
