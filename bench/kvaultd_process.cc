// Starting the kvaultd under test (kvaultd_process.h).
#include "kvaultd_process.h"

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#include "kvault/common/auth.h"
#include "kvault/storage/host_tier.h"

namespace kvault::bench {

uint64_t MaxBlockBytesFitting(uint64_t host_capacity, uint64_t limit) {
  // The class grows with the size (never shrinks): the largest fitting size, by bisection over
  // [0, limit]; class(0) = 0 always fits.
  if (storage::HostTierClassBytes(limit) <= host_capacity) return limit;
  uint64_t fits = 0, too_big = limit;
  while (too_big - fits > 1) {
    const uint64_t mid = fits + (too_big - fits) / 2;
    (storage::HostTierClassBytes(mid) <= host_capacity ? fits : too_big) = mid;
  }
  return fits;
}

Result<RunningKvaultd> StartKvaultd(const KvaultdLaunch& launch) {
  namespace fs = std::filesystem;
  const std::string bin =
      launch.binary.empty() ? store_bench::ExecutableDir() + "/kvaultd" : launch.binary;
  store_bench::ChildProcess::Options o;
  o.argv = {bin,
            "--control.port",
            "0",
            "--http.port",
            "0",
            "--data-dir",
            (fs::path(launch.scratch) / "kvault-data").string(),
            "--storage-nvme-capacity",
            "0",
            "--storage-host-capacity",
            std::to_string(launch.host_capacity),
            "--limits-max-block-bytes",
            std::to_string(launch.max_block_bytes),
            "--log-level",
            "warn"};
  if (!launch.transports.empty()) {
    o.argv.insert(o.argv.end(), {"--ucx-transports", launch.transports});
  }
  if (!launch.process_memory.empty()) {
    o.argv.insert(o.argv.end(), {"--data-plane-process-memory", launch.process_memory});
  }
  if (!launch.token.empty()) {
    const fs::path tenants = fs::path(launch.scratch) / "tenants.yaml";
    std::ofstream f(tenants);
    f << "tenants:\n  - name: " << kBenchTenant
      << "\n    token_sha256: " << HexEncode(TokenHash(launch.token))
      << "\n    quota_bytes: 0\n    store_stats: true\n";
    f.close();
    if (!f) return Status::IoError("cannot write " + tenants.string());
    fs::permissions(tenants, fs::perms::owner_read | fs::perms::owner_write);
    o.argv.insert(o.argv.end(), {"--auth-tenants-file", tenants.string()});
  }
  if (launch.gpu_capacity > 0) {
    o.argv.insert(o.argv.end(),
                  {"--storage.gpu_capacity", std::to_string(launch.gpu_capacity),
                   "--storage.land_on_gpu", "true", "--storage.gpu_ipc_export", "true"});
  }
  o.dir = launch.scratch;
  o.stderr_file = (fs::path(launch.scratch) / "kvaultd.err").string();
  RunningKvaultd d;
  d.log_path = o.stderr_file;
  KVAULT_ASSIGN_OR_RETURN(d.process, store_bench::ChildProcess::Start(o));
  Result<std::string> ready = d.process->ReadLineWith("kvaultd ready ", 30);
  if (!ready.ok()) {
    std::ifstream log(o.stderr_file);
    std::string text(std::istreambuf_iterator<char>(log), {});
    if (text.size() > 600) text = "..." + text.substr(text.size() - 600);
    // The tail of the log travels in the message: the caller may remove the scratch directory.
    return Status::Unavailable("kvaultd (" + bin +
                               ") did not get ready: " + ready.status().message() +
                               "; the end of its log " + o.stderr_file + ":\n" + text);
  }
  d.ready_line = *ready;
  const size_t at = ready->find("control=");
  if (at == std::string::npos) return Status::Corruption("kvaultd ready line: " + *ready);
  d.server = ready->substr(at + 8, ready->find(' ', at) - at - 8);
  return d;
}

Result<std::unique_ptr<Client>> ConnectToKvaultd(const std::string& server,
                                                 const std::string& transports,
                                                 const std::string& client_name,
                                                 uint64_t registered_staging_bytes,
                                                 const std::string& token) {
  ClientConfig config;
  if (!token.empty()) {
    config.tenant = kBenchTenant;
    config.token = token;
  }
  config.registered_staging_bytes = registered_staging_bytes;
  config.server = server;
  config.ucx_transports = transports;
  config.client_name = client_name;
  config.request_timeout = std::chrono::seconds(30);
  config.connect_timeout = std::chrono::seconds(10);
  return Client::Connect(config);
}

namespace {

// Nanoseconds on a CPU of every live thread of `pid`, or nullopt when a schedstat is missing.
std::optional<double> SchedstatSeconds(pid_t pid) {
  std::error_code ec;
  std::filesystem::directory_iterator tasks("/proc/" + std::to_string(pid) + "/task", ec);
  if (ec) return std::nullopt;
  unsigned long long ns = 0;
  for (const auto& task : tasks) {
    std::ifstream f(task.path() / "schedstat");
    unsigned long long on_cpu = 0;
    if (!(f >> on_cpu)) return std::nullopt;
    ns += on_cpu;
  }
  return static_cast<double>(ns) / 1e9;
}

}  // namespace

std::optional<double> ReadProcCpuSeconds(pid_t pid, CpuSource& source) {
  if (source != CpuSource::kStat) {
    // A thread that exits between listing and reading is retried once before giving up.
    for (int attempt = 0; attempt < 2; ++attempt) {
      if (std::optional<double> precise = SchedstatSeconds(pid)) {
        source = CpuSource::kSchedstat;
        return precise;
      }
    }
    if (source == CpuSource::kSchedstat) return std::nullopt;
  }
  source = CpuSource::kStat;
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(f)), {});
  // The command name (field 2) is in parentheses and may hold spaces: fields count from the last
  // ')'. utime and stime are fields 14 and 15, in clock ticks.
  const size_t close = text.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream rest(text.substr(close + 1));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::strtoull(field.c_str(), nullptr, 10);
    if (i == 15) stime = std::strtoull(field.c_str(), nullptr, 10);
  }
  if (!rest) return std::nullopt;
  const long ticks = ::sysconf(_SC_CLK_TCK);
  return static_cast<double>(utime + stime) / static_cast<double>(ticks > 0 ? ticks : 100);
}

}  // namespace kvault::bench
