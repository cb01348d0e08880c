#pragma once
// `kvault-bench store`: the daemon measured through libkvault against baselines run in the same
// process tree: redis-server (SET/GET of the same objects through hiredis, one connection per
// thread), ucx_perftest tag_bw (same sizes, same UCX transports, loopback) and the daemon's own
// host-tier capacity (resident memory). docs/daemon.md ("Store benchmark") explains the method.
//
// Files: store_bench.cc (flags, order of the phases, timed windows), store_bench_process.cc
// (child processes, free ports, /proc), store_bench_kvault.cc (kvaultd, lookups, store/load),
// store_bench_redis.cc (redis-server, SET/GET), store_bench_perftest.cc (ucx_perftest) and
// store_bench_report.cc (table, JSON, targets).
// Not thread-safe unless a declaration says otherwise: the main thread drives every phase and
// starts the worker threads of each timed window itself.

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kvault/client.h"
#include "kvault/common/result.h"
#include "report.h"

namespace kvault::bench {

// Returns the process exit code (0 ok, 2 bad usage, 1 failure).
int RunStoreBench(const std::vector<std::string>& args);

namespace store_bench {

// kAllocate: memory the client allocates through UCX (AllocateMemory, shared memory the daemon
// copies to and from). kRegister: memory the bench allocates itself and registers
// (RegisterMemory), as an engine's own buffers would be; the client stages requests on it through
// its own shared memory (ClientConfig::registered_staging_bytes). kRegisterDirect: the same memory
// with staging off, so that UCX moves it.
enum class ClientMemory { kAllocate, kRegister, kRegisterDirect };

struct Config {
  std::string server;                 // --server HOST:PORT; empty: start kvaultd
  std::string json_path;              // --json FILE; empty: no JSON
  std::vector<uint64_t> sizes;        // block payload bytes (default 64 KiB, 1 MiB, 4 MiB)
  std::vector<uint32_t> concurrency;  // worker threads (default 1, 4)
  double seconds = 0.5;               // length of one timed window (when ops == 0)
  uint64_t ops = 0;                   // operations per timed window, all threads together; 0: time
  uint32_t reps = 3;                  // timed windows per figure (medians reported)
  uint32_t warmup = 1;                // untimed windows before them, for kvault and redis alike
  std::string transports = "posix,cma";  // UCX_TLS of kvaultd, the clients and ucx_perftest
  bool process_memory = false;  // --data-plane process-memory: the started kvaultd copies directly
  uint64_t host_capacity = 256ull << 20;  // host tier of the started kvaultd
  uint64_t pool_bytes = 384ull << 20;  // objects a store window may write (time mode), all threads
  uint32_t chain_keys = 1000;
  uint32_t lookups = 2000;                 // timed chain lookups
  uint64_t perftest_bytes = 512ull << 20;  // bytes moved by one ucx_perftest run
  std::string kvaultd;                     // path; empty: next to this binary
  std::string redis = "redis-server";      // "none" skips the redis baseline
  std::string perftest = "ucx_perftest";   // "none" skips the perftest baseline
  bool keep = false;                       // keep the scratch directory (daemon and redis logs)
  // Where the workers' objects and destinations live (--client-memory).
  ClientMemory memory = ClientMemory::kAllocate;
};

// "allocate", "register" or "register-direct" (--client-memory).
inline const char* ClientMemoryName(const Config& c) {
  switch (c.memory) {
    case ClientMemory::kRegister:
      return "register";
    case ClientMemory::kRegisterDirect:
      return "register-direct";
    default:
      return "allocate";
  }
}

// One timed window: all threads start together; it ends when every thread has stopped.
struct Window {
  double seconds = 0;  // first thread start to last thread end
  uint64_t ops = 0, bytes = 0, failures = 0;
  std::string first_failure;  // what the first failed operation said
};

// What a worker's step did.
enum class Step { kOk, kFailed, kDone };
// Step function of worker `thread` for its `index`-th operation of the window; sets `bytes` moved
// and, on kFailed, `why`.
using StepFn =
    std::function<Step(uint32_t thread, uint64_t index, uint64_t& bytes, std::string& why)>;
// Runs `threads` workers until `seconds` passed (0: no time limit) or each did `ops_per_thread`
// steps (0: no count limit) or returned kDone.
Window RunWindow(uint32_t threads, double seconds, uint64_t ops_per_thread, const StepFn& step);

// Medians over the timed windows of one operation.
struct Throughput {
  double gbps = 0, ops_per_s = 0;  // object bytes (1e9) and operations per second
  uint64_t ops = 0, failures = 0;  // summed over the windows
  std::string first_failure;
  std::vector<double> window_gbps;
};
// Medians over `windows`; the failures of `untimed` (warm-up windows) are counted too, since a
// failed operation anywhere means the figures do not measure a working store.
Throughput Summarize(const std::vector<Window>& windows, const std::vector<Window>& untimed = {});

// The ucx_perftest baseline of one row.
struct PerftestRun {
  uint64_t block_bytes = 0;    // the row's block payload size
  uint64_t message_bytes = 0;  // = its object size
  uint64_t iterations = 0;
  double mbps = 0;  // MB/s as ucx_perftest prints them (MB = 2^20 bytes): median of the runs
  double gbps = 0;  // the same in 1e9 bytes per second
  std::vector<double> run_mbps;  // in order: run i follows the row's load-hot window i
};

// One (block size, concurrency) measurement.
struct Row {
  uint64_t block_bytes = 0, object_bytes = 0;
  uint32_t concurrency = 0;
  uint64_t store_objects = 0, load_objects = 0;  // distinct objects per store window / load set
  Throughput kvault_store, kvault_load;
  // Loads of one object per thread, again and again: the source stays in cache as the one
  // buffer ucx_perftest resends does, so this is the figure comparable with ucx_perftest.
  Throughput kvault_load_hot;
  std::optional<Throughput> redis_set, redis_get;  // absent without a redis baseline
  // ucx_perftest at the row's object size, one run right after each load-hot window (absent
  // without that baseline), so that each run sees the machine its kvault windows saw.
  std::optional<PerftestRun> perftest;
};

struct Lookup {
  uint32_t keys = 0, lookups = 0;              // lookups: timed calls per round
  double p50_us = 0, p99_us = 0, mean_us = 0;  // medians over the rounds (--reps)
  std::vector<double> round_p99_us;            // each round's p99
};

struct Memory {
  pid_t pid = 0;
  uint64_t max_rss_bytes = 0;                    // largest VmRSS sampled during the store windows
  uint64_t max_anon_bytes = 0;                   // largest RssAnon then (the daemon's own memory)
  uint64_t max_shmem_bytes = 0;                  // largest RssShmem then (mapped client buffers)
  uint64_t hwm_bytes = 0;                        // VmHWM at the end of the run (the lifetime peak)
  uint64_t capacity_bytes = 0, bound_bytes = 0;  // host tier; capacity + 128 MiB
};

struct Results {
  std::string server;
  bool started_daemon = false;
  std::string daemon_version;  // the ready line
  Lookup lookup;
  std::vector<Row> rows;
  std::optional<Memory> memory;
  RegisteredStagingStats staging;  // the clients' requests on registered memory, all rows
  std::string redis_note, perftest_note, memory_note;  // why a baseline is missing
};

// ---- store_bench_process.cc ----

// A child process started with fork/exec: stdout to a pipe the caller reads (or to a file),
// stderr to a file, killed (SIGKILL) if this process dies first, killed and reaped by the
// destructor. Thread-compatible.
class ChildProcess {
 public:
  struct Options {
    std::vector<std::string> argv;  // argv[0] is searched in PATH when it has no '/'
    std::vector<std::string> env;   // "NAME=value" added to (or replacing in) this environment
    std::string dir;                // working directory; empty: this one's
    std::string stdout_file;        // empty: a pipe read with ReadLine/ReadAll
    std::string stderr_file;        // empty: /dev/null
  };
  // Unavailable when the program cannot be run (checked before fork).
  static Result<std::unique_ptr<ChildProcess>> Start(const Options& options);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  // The next line of stdout that contains `needle` (lines without it are skipped), within
  // `timeout_s`. Unavailable on timeout or end of output.
  Result<std::string> ReadLineWith(const std::string& needle, double timeout_s);
  // Everything until stdout closes, within `timeout_s` (DeadlineExceeded as Unavailable).
  Result<std::string> ReadAll(double timeout_s);
  // Waits up to `timeout_s` for the exit; returns the exit code (-1: a signal), or nullopt when
  // it is still running.
  std::optional<int> Wait(double timeout_s);
  // SIGTERM, up to `grace_s` for the exit, then SIGKILL. Idempotent.
  void Stop(double grace_s);
  bool running();

 private:
  ChildProcess(pid_t pid, int out_fd) : pid_(pid), out_fd_(out_fd) {}
  pid_t pid_;
  int out_fd_;  // -1 when stdout went to a file
  std::string buffered_;
  int exit_code_ = -1;
  bool reaped_ = false;
};

// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then closed).
Result<uint16_t> FreeLoopbackPort();
// Whether a TCP socket (IPv4 or IPv6) listens on `port` on this host (/proc/net/tcp*).
bool PortListening(uint16_t port);
// Memory figures of /proc/<pid>/status in bytes; 0 when unreadable.
struct ProcMemory {
  uint64_t rss = 0;    // VmRSS: resident now
  uint64_t hwm = 0;    // VmHWM: the largest VmRSS so far
  uint64_t anon = 0;   // RssAnon: private memory (heap, the host tier's arena)
  uint64_t shmem = 0;  // RssShmem: shared memory, e.g. clients' memory mapped (UCX posix, regions)
};
ProcMemory ReadProcMemory(pid_t pid);
// The directory of this executable.
std::string ExecutableDir();
// Whether `program` (a path, or a name searched in PATH) is executable.
bool CanExecute(const std::string& program);

// Samples a process's memory every 20 ms on its own thread between Start and Stop; keeps the
// largest of each figure (hwm: the VmHWM of the last sample). Thread-safe.
class RssSampler {
 public:
  explicit RssSampler(pid_t pid);
  ~RssSampler();
  void Start();
  void Stop();
  ProcMemory peak() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// ---- store_bench_kvault.cc ----

// The daemon under test: started by the benchmark, or an address given with --server.
class KvaultSide {
 public:
  // Starts kvaultd in `scratch` (unless c.server is set) and checks a client can connect.
  static Result<std::unique_ptr<KvaultSide>> Create(const Config& c, const std::string& scratch);
  ~KvaultSide();
  const std::string& server() const { return server_; }
  bool started() const { return daemon_ != nullptr; }
  pid_t daemon_pid() const { return daemon_ ? daemon_->pid() : 0; }
  const std::string& ready_line() const { return ready_line_; }

  // Stores a chain of c.chain_keys small blocks, then times c.lookups LookupPrefix calls.
  Result<Lookup> MeasureLookup(const Config& c);

  // Sets up a row: deletes the last row's objects and closes its clients, then `threads`
  // workers, each with a new Client and a region (Client::AllocateMemory) holding its share
  // of the row's distinct objects (row.store_objects of them in all; the first row.load_objects
  // form the load set). Fills row.object_bytes, store_objects, load_objects.
  Status PrepareRow(const Config& c, uint64_t block_bytes, uint32_t threads, Row& row);
  // One timed store window: each thread stores its objects one at a time (one request in flight
  // per thread) until the window ends or its objects run out; then, untimed, the objects are
  // deleted again so that the next window stores them afresh.
  Window StoreWindow(const Config& c);
  // Untimed: stores the load set.
  Status StoreLoadSet();
  // One timed load window: each thread loads load-set objects round-robin (with `hot`, its first
  // one every time) into two alternating destinations. Afterwards the last object in each
  // destination is verified byte for byte; Corruption when one is wrong.
  Result<Window> LoadWindow(const Config& c, bool hot = false);
  // Object j of thread t's share (valid until the next PrepareRow): the redis side's values.
  const uint8_t* Object(uint32_t thread, uint64_t j) const;
  uint64_t objects_per_thread() const { return objects_per_thread_; }
  uint64_t load_per_thread() const { return load_per_thread_; }
  // Stops the daemon (SIGTERM, then SIGKILL).
  void Stop();
  // How the workers' requests on registered memory were staged, all rows so far.
  RegisteredStagingStats staging() const;

 private:
  struct Worker;
  KvaultSide() = default;
  RegisteredStagingStats closed_staging_;  // of the workers of earlier rows
  std::string server_, ready_line_;
  std::unique_ptr<ChildProcess> daemon_;
  std::vector<std::unique_ptr<Worker>> workers_;
  uint64_t object_bytes_ = 0, objects_per_thread_ = 0, load_per_thread_ = 0;
};

// ---- store_bench_redis.cc ----

// redis-server on a free loopback port with persistence off, and SET/GET windows through hiredis.
class RedisSide {
 public:
  // Unavailable when redis-server cannot run or the build has no hiredis.
  static Result<std::unique_ptr<RedisSide>> Create(const Config& c, const std::string& scratch);
  ~RedisSide();
  // Opens `threads` connections for a row whose values are `object_bytes` long.
  Status Prepare(uint32_t threads, uint64_t object_bytes);
  // One timed SET window over keys [0, count) of each thread (values: `object(t, j)`), or a GET
  // window over keys [0, count), which must have been set. The first GET reply of every thread
  // is compared with the value set.
  Window SetWindow(const Config& c, uint64_t count,
                   const std::function<const uint8_t*(uint32_t, uint64_t)>& object);
  Window GetWindow(const Config& c, uint64_t count,
                   const std::function<const uint8_t*(uint32_t, uint64_t)>& object);
  // Untimed: SETs keys [0, count) of each thread.
  Status Fill(uint64_t count, const std::function<const uint8_t*(uint32_t, uint64_t)>& object);
  void Stop();

  struct Connection;  // one hiredis context (store_bench_redis.cc)

 private:
  RedisSide() = default;
  uint16_t port_ = 0;
  uint64_t object_bytes_ = 0;
  std::unique_ptr<ChildProcess> server_;
  std::vector<std::unique_ptr<Connection>> connections_;
};

// ---- store_bench_perftest.cc ----

// The ucx_perftest baseline of one row, before its runs: `ucx_perftest -t tag_bw -s
// <message_bytes>` with the iteration count each run will use. Unavailable when ucx_perftest
// cannot run.
Result<PerftestRun> PreparePerftest(const Config& c, uint64_t block_bytes, uint64_t message_bytes);
// One run (a server and a client process on loopback, UCX_TLS=c.transports): appends its MB/s
// to run.run_mbps and updates the medians. Unavailable / IoError when it fails.
Status RunPerftestOnce(const Config& c, PerftestRun& run);
// The overall bandwidth (MB/s) of ucx_perftest's "Final:" line; Corruption when absent.
Result<double> ParsePerftestBandwidth(const std::string& output);

// ---- store_bench_report.cc ----

void PrintReport(const Config& c, const Results& r);
Json ReportJson(const Config& c, const Results& r);

// "64KiB", "1MiB", or plain bytes.
std::string SizeName(uint64_t bytes);

}  // namespace store_bench
}  // namespace kvault::bench
