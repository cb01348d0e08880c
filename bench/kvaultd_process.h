#pragma once
// The kvaultd under test, started by a benchmark (`kvault-bench store`, `kvault-bench compare`):
// a child process on loopback with ports 0, no nvme tier and a given host tier, and its CPU time
// read from /proc. Not thread-safe (the benchmark's main thread starts and stops it).

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "kvault/client.h"
#include "kvault/common/result.h"
#include "store_bench.h"

namespace kvault::bench {

inline constexpr const char* kBenchTenant = "bench";

struct KvaultdLaunch {
  // The daemon binary; empty (default): kvaultd next to this executable.
  std::string binary;
  // Working directory of the daemon (must exist): its data directory is scratch/kvault-data and
  // its stderr goes to scratch/kvaultd.err.
  std::string scratch;
  // --storage-host-capacity in bytes. Default 256 MiB.
  uint64_t host_capacity = uint64_t{256} << 20;
  // --limits-max-block-bytes. Default 64 MiB.
  uint64_t max_block_bytes = uint64_t{64} << 20;
  // --ucx-transports (UCX_TLS syntax); empty (default): UCX's default.
  std::string transports;
  // --data-plane-process-memory (auto, on, off); empty (default): kvaultd's default.
  std::string process_memory;
  // Non-empty: the daemon serves one tenant, kBenchTenant, with this token (a tenants file in
  // scratch; store_stats on), as a daemon with tenants does; clients must present it. A client
  // attaches its memory (process_memory) only to a daemon that proved it knows a real token.
  // Default empty: the default tenant without a token.
  std::string token;
  // > 0: a gpu tier of this many bytes (--storage.gpu_capacity) where new blocks land and whose
  // blocks are exported through CUDA IPC (storage.land_on_gpu, storage.gpu_ipc_export). Default 0.
  uint64_t gpu_capacity = 0;
};

struct RunningKvaultd {
  std::unique_ptr<store_bench::ChildProcess> process;  // stopped and reaped when destroyed
  std::string server;                                  // control plane, HOST:PORT
  std::string ready_line;                              // "kvaultd ready control=... ..."
  std::string log_path;                                // its stderr
};

// The largest --limits-max-block-bytes, at most `limit`, that kvaultd accepts next to a host tier
// of `host_capacity` bytes: kvaultd holds a block in its host-arena size class
// (storage::HostTierClassBytes, up to 12.5% larger) and refuses a limit whose class is larger
// than the tier. Equal to `limit` when its class fits; 0 when no block does.
uint64_t MaxBlockBytesFitting(uint64_t host_capacity, uint64_t limit);

// Starts kvaultd (nvme tier off, log level warn) and waits up to 30 s for its ready line.
// Unavailable, with the tail of its log in the message (the log itself lives in the scratch
// directory, which the caller removes unless --keep), when it does not get ready; Corruption for a
// ready line without control=.
Result<RunningKvaultd> StartKvaultd(const KvaultdLaunch& launch);

// A client of the kvaultd under test at `server` (HOST:PORT), over `transports` (UCX_TLS syntax;
// empty: UCX's default). Requests time out after 30 s (a busy two-core machine can stall a large
// transfer for a while; a stall is still an error), connecting after 10 s. Requests on memory
// registered with RegisterMemory are staged through `registered_staging_bytes` (0: not staged).
// A non-empty `token` logs in as kBenchTenant (KvaultdLaunch::token).
Result<std::unique_ptr<Client>> ConnectToKvaultd(
    const std::string& server, const std::string& transports, const std::string& client_name,
    uint64_t registered_staging_bytes = ClientConfig{}.registered_staging_bytes,
    const std::string& token = {});

// Which measure ReadProcCpuSeconds used; both ends of a difference must use the same one.
enum class CpuSource : uint8_t { kUnset, kSchedstat, kStat };

// The process's CPU time so far, all threads, in seconds: the sum of its live threads'
// /proc/<pid>/task/*/schedstat (nanoseconds on a CPU), or utime + stime of /proc/<pid>/stat
// (10 ms clock ticks: a short run may read 0). `source` kUnset: schedstat where the kernel has
// it, and `source` says which was used; set: that measure only, so that a reading that could not
// get one (a thread gone mid-scan) fails instead of mixing the two. A long-lived daemon keeps
// its threads, so the schedstat sum misses nothing. nullopt when unreadable.
std::optional<double> ReadProcCpuSeconds(pid_t pid, CpuSource& source);

}  // namespace kvault::bench
