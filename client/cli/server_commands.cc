// kvault status and kvault stats: a daemon's health and counters, through libkvault.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <variant>

#include "commands.h"
#include "kvault/client.h"
#include "kvault/common/cli_args.h"
#include "kvault/common/file_io.h"

namespace kvault::cli {
namespace {

constexpr const char* kStatusUsage =
    "Usage: kvault status --server HOST:PORT [--tenant T --token-file F] [--timeout-ms N]\n"
    "                     [--tls] [--tls-ca-file PEM]\n"
    "Prints the daemon's health (ping round trip), each tier's used and capacity bytes and\n"
    "blocks, and its key counters. --token-file holds the tenant's token (trailing newline\n"
    "ignored); without one the empty token is proved (single-tenant daemons accept it).\n"
    "--timeout-ms bounds connecting and each request (default 2000).\n"
    "--tls speaks TLS to a daemon with tls.cert_file set and verifies its certificate against\n"
    "the system's CAs, or those of --tls-ca-file (which implies --tls).\n"
    "Exit codes: 0 healthy, 1 the daemon is unreachable, silent or refuses, 2 bad usage.\n";

constexpr const char* kStatsUsage =
    "Usage: kvault stats --server HOST:PORT [--json] [--tenant T --token-file F]\n"
    "                    [--timeout-ms N] [--tls] [--tls-ca-file PEM]\n"
    "Prints every entry of the daemon's Stats reply, in its order: one 'name value' line each,\n"
    "or with --json one JSON object {\"name\": value, ...}. Options as for kvault status.\n"
    "Exit codes: 0 ok, 1 the daemon is unreachable, silent or refuses, 2 bad usage.\n";

int Usage(const char* command, const Status& s) {
  // One pointer to --help, unless the message carries its own.
  if (s.message().find("--help") != std::string::npos) {
    std::fprintf(stderr, "kvault %s: %s\n", command, s.message().c_str());
  } else {
    std::fprintf(stderr, "kvault %s: %s (try kvault %s --help)\n", command, s.message().c_str(),
                 command);
  }
  return kExitUsage;
}

int Unreachable(const char* command, const Status& s) {
  std::fprintf(stderr, "kvault %s: %s\n", command, s.ToString().c_str());
  return kExitFailure;
}

// Parses the common flags into a config. Usage errors only.
Result<ClientConfig> ParseCommon(const std::vector<std::string>& args, bool* json) {
  KVAULT_ASSIGN_OR_RETURN(
      CliArgs a,
      CliArgs::Parse(args, {"server", "tenant", "token-file", "timeout-ms", "tls-ca-file"},
                     {"json", "tls"}));
  KVAULT_RETURN_IF_ERROR(a.RejectPositional());
  if (!a.Has("server")) return Status::InvalidArgument("--server HOST:PORT is required");
  if (json != nullptr) {
    *json = a.Has("json");
  } else if (a.Has("json")) {
    return Status::InvalidArgument("--json is an option of kvault stats");
  }
  ClientConfig config;
  config.server = *a.Get("server");
  config.tenant = a.GetOr("tenant", "");
  config.client_name = "kvault-cli";
  config.data_plane = false;
  config.tls_ca_file = a.GetOr("tls-ca-file", "");
  config.tls = a.Has("tls") || !config.tls_ca_file.empty();
  // A CA file that cannot be read is bad input (exit 2), found before connecting.
  if (!config.tls_ca_file.empty()) {
    KVAULT_RETURN_IF_ERROR(ReadWholeFile(config.tls_ca_file, 16 << 20).status());
  }
  KVAULT_ASSIGN_OR_RETURN(uint64_t timeout, a.GetUint("timeout-ms", 2000, 1, 3'600'000));
  config.connect_timeout = config.request_timeout = std::chrono::milliseconds(timeout);
  if (std::optional<std::string> path = a.Get("token-file")) {
    KVAULT_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, ReadWholeFile(*path, 64 * 1024));
    std::string token(bytes.begin(), bytes.end());
    while (!token.empty() &&
           (token.back() == '\n' || token.back() == '\r' || token.back() == ' ')) {
      token.pop_back();
    }
    config.token = std::move(token);
  }
  KVAULT_RETURN_IF_ERROR(config.Validate());
  return config;
}

std::string Bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  int u = 0;
  while (b >= 1024.0 && u < 5) {
    b /= 1024.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.2f %s", b, units[u]);
  return buf;
}

std::string ValueText(const ServerStat& s) {
  char buf[40];
  if (const uint64_t* u = std::get_if<uint64_t>(&s.value)) {
    std::snprintf(buf, sizeof(buf), "%llu", static_cast<unsigned long long>(*u));
  } else {
    std::snprintf(buf, sizeof(buf), "%.17g", std::get<double>(s.value));
  }
  return buf;
}

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

// A tier's figures out of "<tier>.<field>" (what kvaultd sends) or "tier_<tier>_<field>".
struct TierFigures {
  std::optional<double> used, capacity, blocks;
};

bool SplitTierStat(const std::string& name, std::string* tier, std::string* field) {
  const size_t dot = name.find('.');
  if (dot != std::string::npos) {
    *tier = name.substr(0, dot);
    *field = name.substr(dot + 1);
    return *tier != "store" && *tier != "daemon";
  }
  if (name.rfind("tier_", 0) == 0) {
    const size_t sep = name.find('_', 5);
    if (sep == std::string::npos) return false;
    *tier = name.substr(5, sep - 5);
    *field = name.substr(sep + 1);
    return true;
  }
  return false;
}

}  // namespace

int ServerStatus(const std::vector<std::string>& args) {
  if (WantsHelp(args)) {
    std::fputs(kStatusUsage, stdout);
    return kExitOk;
  }
  Result<ClientConfig> config = ParseCommon(args, nullptr);
  if (!config.ok()) return Usage("status", config.status());
  Result<std::unique_ptr<Client>> client = Client::Connect(*config);
  if (!client.ok()) return Unreachable("status", client.status());
  Result<std::chrono::nanoseconds> rtt = (*client)->Ping();
  if (!rtt.ok()) return Unreachable("status", rtt.status());
  Result<std::vector<ServerStat>> stats = (*client)->Stats();
  if (!stats.ok()) return Unreachable("status", stats.status());

  std::map<std::string, TierFigures> tiers;
  std::map<std::string, const ServerStat*> by_name;
  for (const ServerStat& s : *stats) {
    by_name.emplace(s.name, &s);
    std::string tier, field;
    if (!SplitTierStat(s.name, &tier, &field)) continue;
    if (field == "used_bytes") tiers[tier].used = s.AsDouble();
    if (field == "capacity_bytes") tiers[tier].capacity = s.AsDouble();
    if (field == "blocks") tiers[tier].blocks = s.AsDouble();
  }
  auto find = [&](const char* a, const char* b) -> const ServerStat* {
    auto it = by_name.find(a);
    if (it == by_name.end()) it = by_name.find(b);
    return it == by_name.end() ? nullptr : it->second;
  };
  const ServerStat* draining = find("daemon.draining", "draining");
  const bool is_draining = draining != nullptr && draining->AsDouble() != 0.0;
  std::printf("kvaultd %s: %s, ping %.3f ms, session %llu\n", config->server.c_str(),
              is_draining ? "draining" : "healthy", rtt->count() / 1e6,
              static_cast<unsigned long long>((*client)->session_id()));
  if (tiers.empty()) {
    std::printf("tiers: none reported\n");
  } else {
    std::printf("%-8s %14s %14s %7s %12s\n", "tier", "used", "capacity", "use", "blocks");
    for (const auto& [name, t] : tiers) {
      char use[16] = "-";
      if (t.used && t.capacity && *t.capacity > 0) {
        std::snprintf(use, sizeof(use), "%.1f%%", 100.0 * *t.used / *t.capacity);
      }
      std::printf("%-8s %14s %14s %7s %12s\n", name.c_str(), t.used ? Bytes(*t.used).c_str() : "-",
                  t.capacity ? Bytes(*t.capacity).c_str() : "-", use,
                  t.blocks ? std::to_string(static_cast<uint64_t>(*t.blocks)).c_str() : "-");
    }
  }
  const char* counters[][2] = {
      {"store.lookups_total", "lookups_total"},
      {"store.hit_blocks_total", "hit_blocks_total"},
      {"store.miss_blocks_total", "miss_blocks_total"},
      {"store.commits_total", "commits_total"},
      {"store.committed_bytes_total", "committed_bytes_total"},
      {"store.rejected_corrupt_writes_total", "rejected_corrupt_writes_total"},
      {"store.rejected_no_space_total", "rejected_no_space_total"},
      {"store.leases_granted_total", "leases_granted_total"},
      {"store.deletes_total", "deletes_total"},
  };
  bool header = false;
  for (const auto& c : counters) {
    const ServerStat* s = find(c[0], c[1]);
    if (s == nullptr) continue;
    if (!header) std::printf("counters:\n");
    header = true;
    std::printf("  %-32s %s\n", c[1], ValueText(*s).c_str());
  }
  const ServerStat* hits = find("store.hit_blocks_total", "hit_blocks_total");
  const ServerStat* misses = find("store.miss_blocks_total", "miss_blocks_total");
  if (hits != nullptr && misses != nullptr && hits->AsDouble() + misses->AsDouble() > 0) {
    std::printf("  %-32s %.4f\n", "block_hit_ratio",
                hits->AsDouble() / (hits->AsDouble() + misses->AsDouble()));
  }
  return kExitOk;
}

int ServerStats(const std::vector<std::string>& args) {
  if (WantsHelp(args)) {
    std::fputs(kStatsUsage, stdout);
    return kExitOk;
  }
  bool json = false;
  Result<ClientConfig> config = ParseCommon(args, &json);
  if (!config.ok()) return Usage("stats", config.status());
  Result<std::unique_ptr<Client>> client = Client::Connect(*config);
  if (!client.ok()) return Unreachable("stats", client.status());
  Result<std::vector<ServerStat>> stats = (*client)->Stats();
  if (!stats.ok()) return Unreachable("stats", stats.status());
  if (json) {
    std::string out = "{";
    for (size_t i = 0; i < stats->size(); ++i) {
      const ServerStat& s = (*stats)[i];
      if (i > 0) out += ",";
      out += JsonString(s.name) + ":";
      const double* d = std::get_if<double>(&s.value);
      out += d != nullptr && !std::isfinite(*d) ? "null" : ValueText(s);
    }
    std::printf("%s}\n", out.c_str());
    return kExitOk;
  }
  size_t width = 0;
  for (const ServerStat& s : *stats) width = std::max(width, s.name.size());
  for (const ServerStat& s : *stats) {
    std::printf("%-*s %s\n", static_cast<int>(width), s.name.c_str(), ValueText(s).c_str());
  }
  return kExitOk;
}

}  // namespace kvault::cli
