#pragma once
// DaemonConfig: everything kvaultd is configured with (DESIGN.md §8). The defaults below are the
// only defaults: the option table (options.h) reads them from a default-constructed DaemonConfig
// for --help and docs, so the two cannot drift. Every field is one YAML key and one flag; the key
// is given in brackets. Plain value type; thread-compatible.

#include <chrono>
#include <cstdint>
#include <string>

#include "kvault/common/status.h"

namespace kvault::server {

inline constexpr uint64_t kKiB = uint64_t{1} << 10;
inline constexpr uint64_t kMiB = uint64_t{1} << 20;
inline constexpr uint64_t kGiB = uint64_t{1} << 30;

// A TCP listening address. `host` is an IP literal (v4 or v6) or "localhost"; port 0 asks the
// kernel for a free port (the bound port is then reported by the listener).
struct ListenAddress {
  std::string host;
  uint16_t port = 0;
};

struct StorageConfig {
  // [storage.host_capacity] RAM tier cap. Default 1 GiB. Must hold at least one largest block.
  uint64_t host_capacity_bytes = 1 * kGiB;
  // [storage.nvme_capacity] RocksDB tier cap under data_dir; 0 = no nvme tier (evicted blocks from
  // host are dropped). Default 8 GiB.
  uint64_t nvme_capacity_bytes = 8 * kGiB;
  // [storage.gpu_capacity] device-memory tier cap; 0 = no gpu tier. Default 0. Needs a CUDA build.
  uint64_t gpu_capacity_bytes = 0;
  // [storage.gpu_device] CUDA device ordinal of the gpu tier. Default 0.
  uint32_t gpu_device = 0;
  // [storage.land_on_gpu] new blocks land in the gpu tier instead of host. Default off; needs
  // gpu_capacity > 0.
  bool land_on_gpu = false;
  // [storage.gpu_ipc_export] authenticated clients on this host may ask for CUDA IPC handles of
  // leased blocks in the gpu tier and copy them device to device (docs/block_messages.md,
  // GpuExport). A handle maps the whole gpu pool, every tenant's blocks included, into the client's
  // process, so enable it only when every tenant on the node trusts the others. Default off; needs
  // gpu_capacity > 0.
  bool gpu_ipc_export = false;
  // [storage.policy] eviction policy of the gpu and host tiers. Default "prefix".
  std::string policy = "prefix";
  // [storage.nvme_policy] eviction policy of the nvme tier. Default "lru".
  std::string nvme_policy = "lru";
  // [storage.promote_on_hit] a hit in a colder tier moves the block up. Default on.
  bool promote_on_hit = true;
  // [storage.high_watermark] / [storage.low_watermark] background demotion starts above high x
  // capacity and stops under low x capacity; 0 < low <= high <= 1. Defaults 0.95 and 0.90.
  double high_watermark = 0.95;
  double low_watermark = 0.90;
  // [storage.mover_threads] background demotion/promotion threads; 0 = movement only in writers.
  // Default 1.
  uint32_t mover_threads = 1;
};

struct LeaseConfig {
  // [leases.default_ttl] lease length when a lookup asks for one without a TTL. Default 30 s.
  std::chrono::milliseconds default_ttl = std::chrono::seconds(30);
  // [leases.max_ttl] longer requested TTLs are cut to this. Default 10 min.
  std::chrono::milliseconds max_ttl = std::chrono::minutes(10);
};

struct AuthConfig {
  // [auth.tenants_file] tenants YAML (docs/config.md). Empty = single default tenant without a
  // token, which is only allowed when control.host is a loopback address. Default empty.
  std::string tenants_file;
};

struct TlsConfig {
  // [tls.cert_file] / [tls.key_file] PEM certificate chain and private key of the control plane.
  // Both or neither; empty = plain TCP. Default empty.
  std::string cert_file;
  std::string key_file;
};

struct LimitsConfig {
  // [limits.max_connections] concurrent control connections; more are refused. Default 1024.
  uint32_t max_connections = 1024;
  // [limits.max_unauthenticated_per_peer] control connections from one IP address that have not
  // authenticated yet; more from that address are refused, so one host cannot take every slot of
  // max_connections. Default 64: room for the clients of one host connecting at the same moment.
  uint32_t max_unauthenticated_per_peer = 64;
  // [limits.handshake_timeout] time from accepting a control connection to its successful Auth
  // (TLS handshake, Hello, Auth); a connection that has not authenticated by then is closed.
  // Default 5 s.
  std::chrono::milliseconds handshake_timeout = std::chrono::seconds(5);
  // [limits.max_inflight_bytes_per_client] block bytes one connection may have in transfer at
  // once, i.e. in one Store or Load (a connection handles one request at a time); a bigger
  // request is refused whole with out_of_range, the connection kept. Default 1 GiB. At least
  // max_block_bytes.
  uint64_t max_inflight_bytes_per_client = 1 * kGiB;
  // [limits.max_frame_bytes] largest control frame body accepted, checked before allocation
  // (ProtocolLimits::max_body_bytes). Default 4 MiB: a full batch of 4096 stores is about 321 KiB.
  uint64_t max_frame_bytes = 4 * kMiB;
  // [limits.max_keys_per_request] keys in one lookup/store/load/delete batch
  // (ProtocolLimits::max_keys_per_batch). Default 4096.
  uint32_t max_keys_per_request = 4096;
  // [limits.max_block_bytes] largest block object stored (ProtocolLimits::max_block_object_bytes,
  // BlockStoreOptions::max_object_bytes). Default 64 MiB; at most 4 GiB - 1.
  uint64_t max_block_bytes = 64 * kMiB;
  // [limits.io_timeout] deadline of every control-plane write, and of reading a whole frame once
  // its first byte has arrived. Default 30 s.
  std::chrono::milliseconds io_timeout = std::chrono::seconds(30);
  // [limits.idle_timeout] how long a connection may sit idle between requests. Default 10 min.
  std::chrono::milliseconds idle_timeout = std::chrono::minutes(10);
  // [limits.drain_timeout] on SIGTERM, how long in-flight requests may finish; then the daemon
  // cuts the data-plane transfers still running (a client that stopped answering would otherwise
  // hold it until io_timeout) and closes the connections. Writing the blocks only RAM holds to the
  // nvme tier afterwards takes at most as long again. Default 30 s; 0 = cut at once.
  std::chrono::milliseconds drain_timeout = std::chrono::seconds(30);
};

struct UcxConfig {
  // [ucx.transports] UCX transports of the data plane (the UCX_TLS syntax: "shm,tcp", "rc,sm");
  // empty = UCX's own choice, or "^shm" with a tenants file and data_plane.process_memory auto
  // (ChooseDataPlanes). Default empty.
  std::string transports;
  // [ucx.workers] UCX workers, each driven by its own progress thread; clients are spread over
  // them as they connect. Default 2.
  uint32_t workers = 2;
};

struct DataPlaneConfig {
  // [data_plane.process_memory] auto, on or off. On: copy the block bytes of clients on this
  // host straight from and to their own memory (the /proc/self/mem each hands over at
  // memory_socket); others use UCX. Auto: on when auth.tenants_file is set, and UCX then leaves
  // out its shared-memory transports unless ucx.transports names them
  // (transport/process_memory.md). Default auto.
  std::string process_memory = "auto";
  // [data_plane.memory_socket] the Unix socket where local clients hand their memory over; at
  // most 107 bytes once made absolute. Empty = memory.sock in a fresh directory of the daemon's
  // own under /tmp (/tmp/kvaultd-XXXXXX, as ssh-agent does), removed on exit. Default empty.
  std::string memory_socket;
  // [data_plane.mapped_client_bytes] most bytes of clients' memory kept mapped in the daemon's
  // page tables (transport::MappedResidency): UCX's shared-memory transports map a local
  // client's buffers, and the process-memory plane maps the regions clients hand over; every
  // page a transfer touched there counts in the daemon's resident memory. Bytes a client uses
  // again go through those mappings, within this bound (the pages touched least recently are
  // dropped beyond it); bytes used once are read from the segment's or region's file instead.
  // Default 64 MiB.
  uint64_t mapped_client_bytes = 64 * kMiB;
};

struct DaemonConfig {
  // [control.host] / [control.port] the control plane (binary protocol). Default 127.0.0.1:7400.
  ListenAddress control{"127.0.0.1", 7400};
  // [control.threads] the most io threads of the control plane, started as connections arrive,
  // one per connection until there are this many (ControlServerOptions::threads). A request runs
  // on the thread that read it, its storage work and its wait for the data plane included, so a
  // connection with a thread of its own is never held up by another's request. Default 64.
  uint32_t control_threads = 64;
  // [control.busy_poll_us] after it has served something, an io thread keeps polling its
  // connections for this many microseconds before it sleeps, so a client's next request finds it
  // awake (no wake-up on either side). Only while the daemon has at most one open connection per
  // two usable cores: with more, a polling thread would take a core from the clients.
  // Default 200; 0 = never poll.
  uint32_t control_busy_poll_us = 200;
  // [http.host] / [http.port] /metrics, /healthz, /readyz. Default 127.0.0.1:7401.
  ListenAddress http{"127.0.0.1", 7401};
  // [data_dir] where the nvme tier keeps its RocksDB. Relative paths are relative to the working
  // directory. Default ./kvault-data.
  std::string data_dir = "./kvault-data";
  // [log_level] trace, debug, info, warn, error or off. Default info.
  std::string log_level = "info";

  StorageConfig storage;
  LeaseConfig leases;
  AuthConfig auth;
  TlsConfig tls;
  LimitsConfig limits;
  UcxConfig ucx;
  DataPlaneConfig data_plane;
};

// Cross-field and file checks that single values cannot express: TLS files both or neither and
// readable, the tenants file readable, a non-loopback control bind only with a tenants file,
// control and http on different ports, watermark and TTL order, block size within the tier and
// in-flight limits, land_on_gpu and gpu_ipc_export only with a gpu tier. InvalidArgument naming
// the key(s) otherwise.
Status ValidateDaemonConfig(const DaemonConfig& config);

}  // namespace kvault::server
