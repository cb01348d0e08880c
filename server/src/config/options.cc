#include "config/options.h"

#include <algorithm>
#include <limits>

#include "config/value_parsers.h"
#include "kvault/common/cli_args.h"
#include "kvault/storage/eviction_policy.h"
#include "kvault/transport/protocol_limits.h"

namespace kvault::server {
namespace {

using std::chrono::milliseconds;

constexpr uint64_t kHourMs = uint64_t{3600} * 1000;

OptionDescriptor Option(std::string_view key, OptionType type, OptionField field,
                        std::string_view help, uint64_t min = 0, uint64_t max = UINT64_MAX,
                        std::vector<std::string> choices = {}) {
  return OptionDescriptor{key, type, field, help, min, max, std::move(choices)};
}

std::vector<OptionDescriptor> BuildOptions() {
  const std::vector<std::string> policies = storage::EvictionPolicyNames();
  const std::vector<std::string> log_levels = {"trace", "debug", "info", "warn", "error", "off"};
  // Each accessor is a captureless lambda, so the table holds plain function pointers.
  return {
      Option(
          "control.host", OptionType::kHost,
          +[](DaemonConfig& c) -> std::string& { return c.control.host; },
          "Address the control plane (binary protocol) listens on. A non-loopback address needs "
          "auth.tenants_file."),
      Option(
          "control.port", OptionType::kPort,
          +[](DaemonConfig& c) -> uint16_t& { return c.control.port; },
          "TCP port of the control plane; 0 picks a free port."),
      Option(
          "control.threads", OptionType::kCount,
          +[](DaemonConfig& c) -> uint32_t& { return c.control_threads; },
          "At most this many io threads serve the control plane, each with its own event "
          "loop, started as connections arrive: a connection gets a thread of its own while "
          "fewer than this many exist, then shares the one with the fewest connections. A "
          "request runs on the thread that read it, its storage work and its data-plane "
          "transfer included: while it waits (on the disk, or up to limits.io_timeout on a "
          "transfer whose client stopped answering), only connections sharing that thread "
          "wait too.",
          1, 256),
      Option(
          "control.busy_poll_us", OptionType::kCount,
          +[](DaemonConfig& c) -> uint32_t& { return c.control_busy_poll_us; },
          "After it has served something, an io thread keeps polling its connections for this "
          "many microseconds before it sleeps, so that a client's next request finds it awake "
          "(a wake-up costs both sides a system call and the request about 10-20 us). Only "
          "while the daemon has at most one open control connection per two usable cores: with "
          "more, a polling thread would take a core that a client needs. 0 = never poll.",
          0, 100000),
      Option(
          "http.host", OptionType::kHost,
          +[](DaemonConfig& c) -> std::string& { return c.http.host; },
          "Address of the HTTP endpoint (/metrics, /healthz, /readyz). It serves no tenant "
          "data, so any address is allowed."),
      Option(
          "http.port", OptionType::kPort, +[](DaemonConfig& c) -> uint16_t& { return c.http.port; },
          "TCP port of the HTTP endpoint; 0 picks a free port."),
      Option(
          "data_dir", OptionType::kPath,
          +[](DaemonConfig& c) -> std::string& { return c.data_dir; },
          "Directory of the nvme tier's RocksDB, created if missing. Relative to the "
          "working directory. Unused (and may be empty) without an nvme tier."),
      Option(
          "log_level", OptionType::kChoice,
          +[](DaemonConfig& c) -> std::string& { return c.log_level; },
          "Least severe log line written to stderr (one line per event: start, refusals, failed "
          "logins and transfers, nvme damage and disk full, stop). Never tokens or keys.",
          0, 0, log_levels),

      Option(
          "storage.host_capacity", OptionType::kSize,
          +[](DaemonConfig& c) -> uint64_t& { return c.storage.host_capacity_bytes; },
          "Capacity of the host RAM tier.", 1 * kMiB, uint64_t{1} << 50),
      Option(
          "storage.nvme_capacity", OptionType::kSize,
          +[](DaemonConfig& c) -> uint64_t& { return c.storage.nvme_capacity_bytes; },
          "Capacity of the nvme (RocksDB) tier under data_dir; 0 = no nvme tier, blocks evicted "
          "from host are dropped.",
          0, uint64_t{1} << 56),
      Option(
          "storage.gpu_capacity", OptionType::kSize,
          +[](DaemonConfig& c) -> uint64_t& { return c.storage.gpu_capacity_bytes; },
          "Capacity of the GPU memory tier; 0 = no gpu tier. Needs a CUDA build and a GPU.", 0,
          uint64_t{1} << 48),
      Option(
          "storage.gpu_device", OptionType::kCount,
          +[](DaemonConfig& c) -> uint32_t& { return c.storage.gpu_device; },
          "CUDA device ordinal of the gpu tier.", 0, 1023),
      Option(
          "storage.land_on_gpu", OptionType::kBool,
          +[](DaemonConfig& c) -> bool& { return c.storage.land_on_gpu; },
          "New blocks land in the gpu tier instead of host. Needs storage.gpu_capacity > 0."),
      Option(
          "storage.gpu_ipc_export", OptionType::kBool,
          +[](DaemonConfig& c) -> bool& { return c.storage.gpu_ipc_export; },
          "Authenticated clients on this host may get CUDA IPC handles of leased gpu-tier blocks "
          "and copy them device to device. A handle exposes the whole gpu pool, every tenant's "
          "blocks, to the client's process: enable only when every tenant on the node trusts the "
          "others. Needs storage.gpu_capacity > 0."),
      Option(
          "storage.policy", OptionType::kChoice,
          +[](DaemonConfig& c) -> std::string& { return c.storage.policy; },
          "Eviction policy of the gpu and host tiers (docs/eviction.md).", 0, 0, policies),
      Option(
          "storage.nvme_policy", OptionType::kChoice,
          +[](DaemonConfig& c) -> std::string& { return c.storage.nvme_policy; },
          "Eviction policy of the nvme tier.", 0, 0, policies),
      Option(
          "storage.promote_on_hit", OptionType::kBool,
          +[](DaemonConfig& c) -> bool& { return c.storage.promote_on_hit; },
          "A hit in a colder tier moves the block to the landing tier; false reads it in place."),
      Option(
          "storage.high_watermark", OptionType::kRatio,
          +[](DaemonConfig& c) -> double& { return c.storage.high_watermark; },
          "Fill fraction of a tier above which background demotion starts."),
      Option(
          "storage.low_watermark", OptionType::kRatio,
          +[](DaemonConfig& c) -> double& { return c.storage.low_watermark; },
          "Fill fraction at which background demotion stops; at most storage.high_watermark."),
      Option(
          "storage.mover_threads", OptionType::kCount,
          +[](DaemonConfig& c) -> uint32_t& { return c.storage.mover_threads; },
          "Background threads that demote and promote blocks; 0 = only writers move blocks.", 0,
          64),

      Option(
          "leases.default_ttl", OptionType::kDuration,
          +[](DaemonConfig& c) -> milliseconds& { return c.leases.default_ttl; },
          "Lease length when a lookup asks for a lease without giving a TTL.", 1, 24 * kHourMs),
      Option(
          "leases.max_ttl", OptionType::kDuration,
          +[](DaemonConfig& c) -> milliseconds& { return c.leases.max_ttl; },
          "Longest lease; longer requested TTLs are cut to this.", 1, 24 * kHourMs),

      Option(
          "auth.tenants_file", OptionType::kPath,
          +[](DaemonConfig& c) -> std::string& { return c.auth.tenants_file; },
          "Tenants YAML (names, token hashes, quotas). Empty = one default tenant without a token, "
          "allowed only on a loopback control.host."),
      Option(
          "tls.cert_file", OptionType::kPath,
          +[](DaemonConfig& c) -> std::string& { return c.tls.cert_file; },
          "PEM certificate chain of the control plane; empty = plain TCP. Needs tls.key_file."),
      Option(
          "tls.key_file", OptionType::kPath,
          +[](DaemonConfig& c) -> std::string& { return c.tls.key_file; },
          "PEM private key of tls.cert_file."),

      Option(
          "limits.max_connections", OptionType::kCount,
          +[](DaemonConfig& c) -> uint32_t& { return c.limits.max_connections; },
          "Concurrent control connections; further connections are refused.", 1, 1'000'000),
      Option(
          "limits.max_unauthenticated_per_peer", OptionType::kCount,
          +[](DaemonConfig& c) -> uint32_t& { return c.limits.max_unauthenticated_per_peer; },
          "Control connections from one IP address that have not authenticated yet; further "
          "connections from that address are refused, so one host cannot take every slot of "
          "limits.max_connections.",
          1, 1'000'000),
      Option(
          "limits.handshake_timeout", OptionType::kDuration,
          +[](DaemonConfig& c) -> milliseconds& { return c.limits.handshake_timeout; },
          "Time from accepting a control connection to its successful auth (TLS handshake, "
          "hello, auth); a connection that has not authenticated by then is closed.",
          1, kHourMs),
      Option(
          "limits.max_inflight_bytes_per_client", OptionType::kSize,
          +[](DaemonConfig& c) -> uint64_t& { return c.limits.max_inflight_bytes_per_client; },
          "Block bytes one connection may have in transfer at once, i.e. in one store or load "
          "(a connection runs one request at a time); a bigger request is refused whole with "
          "out_of_range and the connection is kept. At least limits.max_block_bytes.",
          4 * kKiB, uint64_t{1} << 48),
      Option(
          "limits.max_frame_bytes", OptionType::kSize,
          +[](DaemonConfig& c) -> uint64_t& { return c.limits.max_frame_bytes; },
          "Largest control frame body accepted; checked before anything is allocated.",
          transport::kMinBodyBytes, transport::kCeilingBodyBytes),
      Option(
          "limits.max_keys_per_request", OptionType::kCount,
          +[](DaemonConfig& c) -> uint32_t& { return c.limits.max_keys_per_request; },
          "Keys in one lookup, store, load or delete batch.", 1, transport::kCeilingKeysPerBatch),
      Option(
          "limits.max_block_bytes", OptionType::kSize,
          +[](DaemonConfig& c) -> uint64_t& { return c.limits.max_block_bytes; },
          "Largest block object stored.", 1 * kKiB, std::numeric_limits<uint32_t>::max()),
      Option(
          "limits.io_timeout", OptionType::kDuration,
          +[](DaemonConfig& c) -> milliseconds& { return c.limits.io_timeout; },
          "Deadline of every control-plane write, and of reading a whole frame once its first byte "
          "has arrived (a client that trickles bytes is cut off).",
          1, kHourMs),
      Option(
          "limits.idle_timeout", OptionType::kDuration,
          +[](DaemonConfig& c) -> milliseconds& { return c.limits.idle_timeout; },
          "How long a connection may sit idle between requests before it is closed.", 1,
          24 * kHourMs),
      Option(
          "limits.drain_timeout", OptionType::kDuration,
          +[](DaemonConfig& c) -> milliseconds& { return c.limits.drain_timeout; },
          "On SIGTERM, how long in-flight requests may finish; then the data-plane transfers "
          "still running are cut (their keys fail) and the connections closed. 0 = cut at once. "
          "A request waiting on the disk is not cut. Then, for at most as long again, the blocks "
          "only RAM holds are written to the nvme tier, so that a restart serves them.",
          0, kHourMs),

      Option(
          "ucx.transports", OptionType::kString,
          +[](DaemonConfig& c) -> std::string& { return c.ucx.transports; },
          "UCX transports of the data plane in UCX_TLS syntax (e.g. \"shm,tcp\"; the whole "
          "list optionally negated by one leading ^, e.g. \"^tcp\"); empty = UCX's default, "
          "or ^shm with a tenants file and data_plane.process_memory auto."),
      Option(
          "ucx.workers", OptionType::kCount,
          +[](DaemonConfig& c) -> uint32_t& { return c.ucx.workers; },
          "UCX workers of the data plane, each with its own progress thread; clients are "
          "spread over them as they connect, so transfers of different clients copy in "
          "parallel.",
          1, 64),
      Option("data_plane.process_memory", OptionType::kChoice,
             +[](DaemonConfig& c) -> std::string& { return c.data_plane.process_memory; },
             "on: copy the block bytes of clients on this host straight from and to their memory "
             "(the /proc/self/mem each client hands over at data_plane.memory_socket); other "
             "clients use UCX. off: UCX for all. auto: on with a tenants file, where UCX then "
             "also leaves out its shared-memory transports unless ucx.transports is set; off "
             "without one.",
             0, 0, {"auto", "on", "off"}),
      Option(
          "data_plane.memory_socket", OptionType::kPath,
          +[](DaemonConfig& c) -> std::string& { return c.data_plane.memory_socket; },
          "Unix socket where clients on this host hand over their memory for the "
          "process-memory data plane (mode 0666; a client still needs a valid Auth). Empty = "
          "memory.sock in a fresh directory /tmp/kvaultd-XXXXXX of the daemon's own, removed "
          "on exit. At most 107 bytes once made absolute; a socket file left by a killed "
          "daemon is replaced."),
      Option(
          "data_plane.mapped_client_bytes", OptionType::kSize,
          +[](DaemonConfig& c) -> uint64_t& { return c.data_plane.mapped_client_bytes; },
          "Most bytes of clients' memory the daemon keeps mapped (UCX's shared-memory "
          "transports map a local client's buffers, the process-memory plane the regions "
          "clients hand over; each page touched counts in the daemon's resident memory). Bytes "
          "a client uses again are copied through those mappings, within this bound (beyond "
          "it the pages touched least recently are unmapped; the client keeps them); bytes "
          "used once are read from the segment's or region's file instead.",
          2 * kMiB, 1024 * kGiB),
  };
}

template <typename T>
T* FieldOf(const OptionDescriptor& option, DaemonConfig& config) {
  const FieldAccess<T>* access = std::get_if<FieldAccess<T>>(&option.field);
  return access == nullptr ? nullptr : &(*access)(config);
}

Status TableBug(const OptionDescriptor& option) {
  return Status::Internal("option table: " + std::string(option.key) +
                          " has a field of the wrong type");
}

Status CheckUcxTransports(std::string_view text) {
  // UCX_TLS syntax (IsUcxTransportList), nothing else, so a typo cannot smuggle other syntax
  // through to UCX. Empty: UCX's default.
  if (IsUcxTransportList(text, /*allow_empty=*/true)) return Status::Ok();
  if (text.find('^', 1) != std::string_view::npos) {
    return Status::InvalidArgument(
        "'^' negates the whole list and goes only before its first name (UCX_TLS syntax, e.g. "
        "\"^tcp,cma\": every transport but these), got '" +
        std::string(text) + "'");
  }
  return Status::InvalidArgument(
      "expected comma-separated UCX transport names of [a-z0-9_] such as \"shm,tcp\", the "
      "whole list optionally negated by one leading '^' (\"^tcp\"), got '" +
      std::string(text) + "'");
}

}  // namespace

const std::vector<OptionDescriptor>& DaemonOptions() {
  static const std::vector<OptionDescriptor> options = BuildOptions();
  return options;
}

std::string FlagName(const OptionDescriptor& option) {
  std::string flag(option.key);
  std::replace(flag.begin(), flag.end(), '.', '-');
  std::replace(flag.begin(), flag.end(), '_', '-');
  return flag;
}

const OptionDescriptor* FindOption(std::string_view name) {
  for (const OptionDescriptor& option : DaemonOptions()) {
    if (option.key == name || FlagName(option) == name) return &option;
  }
  return nullptr;
}

std::string ValuePlaceholder(const OptionDescriptor& option) {
  switch (option.type) {
    case OptionType::kString:
      return "TEXT";
    case OptionType::kPath:
      return "PATH";
    case OptionType::kHost:
      return "HOST";
    case OptionType::kPort:
      return "PORT";
    case OptionType::kCount:
      return "N";
    case OptionType::kSize:
      return "SIZE";
    case OptionType::kDuration:
      return "DURATION";
    case OptionType::kRatio:
      return "FRACTION";
    case OptionType::kBool:
      return "true|false";
    case OptionType::kChoice: {
      std::string out;
      for (const std::string& c : option.choices) out += (out.empty() ? "" : "|") + c;
      return out;
    }
  }
  return "VALUE";
}

Status SetOption(const OptionDescriptor& option, std::string_view text, DaemonConfig& config) {
  switch (option.type) {
    case OptionType::kString:
    case OptionType::kPath:
    case OptionType::kHost:
    case OptionType::kChoice: {
      std::string* field = FieldOf<std::string>(option, config);
      if (field == nullptr) return TableBug(option);
      if (option.type == OptionType::kHost && !IsBindHost(text)) {
        return Status::InvalidArgument("expected an IP address or localhost, got '" +
                                       std::string(text) + "'");
      }
      if (option.type == OptionType::kChoice &&
          std::find(option.choices.begin(), option.choices.end(), text) == option.choices.end()) {
        return Status::InvalidArgument("expected one of " + ValuePlaceholder(option) + ", got '" +
                                       std::string(text) + "'");
      }
      if (option.key == "ucx.transports") KVAULT_RETURN_IF_ERROR(CheckUcxTransports(text));
      if (option.type == OptionType::kPath && text.find('\0') != std::string_view::npos) {
        return Status::InvalidArgument("a path cannot contain a NUL byte");
      }
      *field = std::string(text);
      return Status::Ok();
    }
    case OptionType::kPort: {
      uint16_t* field = FieldOf<uint16_t>(option, config);
      if (field == nullptr) return TableBug(option);
      KVAULT_ASSIGN_OR_RETURN(const uint64_t port, ParseBoundedUint(text, 0, 65535));
      *field = static_cast<uint16_t>(port);
      return Status::Ok();
    }
    case OptionType::kCount: {
      KVAULT_ASSIGN_OR_RETURN(const uint64_t n, ParseBoundedUint(text, option.min, option.max));
      if (uint32_t* f32 = FieldOf<uint32_t>(option, config)) {
        if (n > std::numeric_limits<uint32_t>::max()) return TableBug(option);
        *f32 = static_cast<uint32_t>(n);
      } else if (uint64_t* f64 = FieldOf<uint64_t>(option, config)) {
        *f64 = n;
      } else {
        return TableBug(option);
      }
      return Status::Ok();
    }
    case OptionType::kSize: {
      uint64_t* field = FieldOf<uint64_t>(option, config);
      if (field == nullptr) return TableBug(option);
      KVAULT_ASSIGN_OR_RETURN(const uint64_t bytes, ParseSize(text));
      if (bytes < option.min || bytes > option.max) {
        return Status::InvalidArgument("expected a size in " + FormatSize(option.min) + ".." +
                                       FormatSize(option.max) + ", got '" + std::string(text) +
                                       "'");
      }
      *field = bytes;
      return Status::Ok();
    }
    case OptionType::kDuration: {
      milliseconds* field = FieldOf<milliseconds>(option, config);
      if (field == nullptr) return TableBug(option);
      KVAULT_ASSIGN_OR_RETURN(const milliseconds d, ParseDuration(text));
      const uint64_t ms = static_cast<uint64_t>(d.count());
      if (ms < option.min || ms > option.max) {
        return Status::InvalidArgument(
            "expected a duration in " + FormatDuration(milliseconds(option.min)) + ".." +
            FormatDuration(milliseconds(option.max)) + ", got '" + std::string(text) + "'");
      }
      *field = d;
      return Status::Ok();
    }
    case OptionType::kRatio: {
      double* field = FieldOf<double>(option, config);
      if (field == nullptr) return TableBug(option);
      KVAULT_ASSIGN_OR_RETURN(*field, ParseRatio(text));
      return Status::Ok();
    }
    case OptionType::kBool: {
      bool* field = FieldOf<bool>(option, config);
      if (field == nullptr) return TableBug(option);
      KVAULT_ASSIGN_OR_RETURN(*field, ParseBool(text));
      return Status::Ok();
    }
  }
  return TableBug(option);
}

std::string OptionValueText(const OptionDescriptor& option, const DaemonConfig& config) {
  // The accessors take a mutable config; reading through one never writes.
  DaemonConfig& c = const_cast<DaemonConfig&>(config);
  return std::visit(
      [&](auto access) -> std::string {
        const auto& value = (*access)(c);
        using T = std::decay_t<decltype(value)>;
        if constexpr (std::is_same_v<T, std::string>) {
          return value;
        } else if constexpr (std::is_same_v<T, bool>) {
          return value ? "true" : "false";
        } else if constexpr (std::is_same_v<T, double>) {
          return FormatRatio(value);
        } else if constexpr (std::is_same_v<T, milliseconds>) {
          return FormatDuration(value);
        } else {
          return option.type == OptionType::kSize ? FormatSize(value) : std::to_string(value);
        }
      },
      option.field);
}

}  // namespace kvault::server
