// kvault-bench: benchmarks that print a table and JSON, each figure beside an in-run baseline.
#include <cstdio>
#include <string>
#include <vector>

#include "codec_bench.h"
#include "compare_bench.h"
#include "kvault/common/log.h"
#include "paged_bench.h"
#include "signal_cleanup.h"
#include "storage_bench.h"
#include "store_bench.h"
#include "trace_bench.h"

namespace {

constexpr const char* kUsage = R"(kvault-bench: kvault's benchmarks

Usage:
  kvault-bench codec [options]   codec accuracy, size and speed (kvault-bench codec --help)
  kvault-bench storage [options] storage tier put, lookup and read (kvault-bench storage --help)
  kvault-bench trace [options]   eviction hit ratio on a request trace vs LRU and Belady
  kvault-bench store [options]   kvaultd lookup, store and load vs redis-server and ucx_perftest
  kvault-bench compare [options] codecs side by side on a trace against kvaultd, beside raw
  kvault-bench paged [options]   StorePaged / LoadPaged end to end vs their stages alone
  kvault-bench --help

Every throughput figure is printed beside a baseline measured in the same run.
)";

}  // namespace

int main(int argc, char** argv) {
  // First, before any thread starts: a run stopped by SIGTERM/SIGINT/SIGHUP kills its children and
  // removes its scratch directories.
  kvault::bench::InstallSignalCleanup();
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::fputs(kUsage, args.empty() ? stderr : stdout);
    return args.empty() ? 2 : 0;
  }
  std::vector<std::string> rest(args.begin() + 1, args.end());
  // The in-process store logs only what needs attention (warnings, errors) over the tables.
  kvault::SetLogLevel(kvault::LogLevel::kWarn);
  if (args[0] == "codec") return kvault::bench::RunCodecBench(rest);
  if (args[0] == "storage") return kvault::bench::RunStorageBench(rest);
  if (args[0] == "trace") return kvault::bench::RunTraceBench(rest);
  if (args[0] == "store") return kvault::bench::RunStoreBench(rest);
  if (args[0] == "compare") return kvault::bench::RunCompareBench(rest);
  if (args[0] == "paged") return kvault::bench::RunPagedBench(rest);
  std::fprintf(stderr, "kvault-bench: unknown workload '%s' (try --help)\n", args[0].c_str());
  return 2;
}
