// The ucx_perftest baseline of `kvault-bench store`: UCP tag-matching bandwidth (tag_bw) between
// two processes on loopback over the same UCX transports as the daemon. The client prints a table
// whose last row is
//   Final:   <iters> <lat p50> <lat avg> <lat overall> <bw avg> <bw overall> <rate avg> <rate
//   overall>
// with latencies in usec, bandwidth in MB/s (MB = 2^20 bytes) and rates in msg/s; the overall
// bandwidth is the figure used.
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <sstream>

#include "store_bench.h"

namespace kvault::bench::store_bench {

Result<double> ParsePerftestBandwidth(const std::string& output) {
  std::istringstream lines(output);
  std::string line;
  std::optional<double> found;
  while (std::getline(lines, line)) {
    std::istringstream words(line);
    std::string first;
    words >> first;
    if (first != "Final:") continue;
    std::vector<double> numbers;
    std::string word;
    while (words >> word) {
      char* end = nullptr;
      const double v = std::strtod(word.c_str(), &end);
      if (end == word.c_str() || *end != '\0') break;
      numbers.push_back(v);
    }
    if (numbers.size() >= 8) found = numbers[5];
  }
  if (!found || *found <= 0) {
    return Status::Corruption("no \"Final:\" line with a bandwidth in ucx_perftest's output");
  }
  return *found;
}

namespace {

// One server + client pair; returns the client's overall MB/s.
Result<double> RunOnce(const Config& c, uint64_t message_bytes, uint64_t iterations) {
  KVAULT_ASSIGN_OR_RETURN(uint16_t port, FreeLoopbackPort());
  const uint64_t warmup = std::max<uint64_t>(10, iterations / 10);
  std::vector<std::string> test = {"-t", "tag_bw",
                                   "-s", std::to_string(message_bytes),
                                   "-n", std::to_string(iterations),
                                   "-w", std::to_string(warmup),
                                   "-p", std::to_string(port)};
  ChildProcess::Options server_options;
  server_options.argv = {c.perftest};
  server_options.argv.insert(server_options.argv.end(), test.begin(), test.end());
  server_options.env = {"UCX_TLS=" + c.transports};
  server_options.stdout_file = "/dev/null";
  KVAULT_ASSIGN_OR_RETURN(std::unique_ptr<ChildProcess> server,
                          ChildProcess::Start(server_options));
  // The server prints "Waiting for connection..." once it listens, but into a buffered pipe, and
  // a probe connection would be taken for the client: watch the kernel's socket table instead.
  bool listening = false;
  for (int i = 0; i < 1000 && !listening; ++i) {
    if (!server->running()) break;
    listening = PortListening(port);
    if (!listening) ::usleep(10'000);
  }
  if (!listening) {
    return Status::Unavailable("ucx_perftest server (UCX_TLS=" + c.transports +
                               ") did not listen on port " + std::to_string(port));
  }
  ChildProcess::Options client_options = server_options;
  client_options.stdout_file.clear();  // a pipe: the figures are read from it
  client_options.argv = {c.perftest, "127.0.0.1"};
  client_options.argv.insert(client_options.argv.end(), test.begin(), test.end());
  KVAULT_ASSIGN_OR_RETURN(std::unique_ptr<ChildProcess> client,
                          ChildProcess::Start(client_options));
  Result<std::string> output = client->ReadAll(120);
  const std::optional<int> code = client->Wait(output.ok() ? 10 : 0);
  server->Wait(5);  // it exits after the test; the destructor kills it otherwise
  if (!output.ok()) return output.status().WithContext("ucx_perftest client");
  if (code != 0) {
    return Status::IoError("ucx_perftest client exited with " +
                           (code ? std::to_string(*code) : std::string("a signal")) + ": " +
                           output->substr(output->size() > 400 ? output->size() - 400 : 0));
  }
  return ParsePerftestBandwidth(*output);
}

}  // namespace

Result<PerftestRun> PreparePerftest(const Config& c, uint64_t block_bytes,
                                    uint64_t message_bytes) {
  if (!CanExecute(c.perftest)) {
    return Status::Unavailable("cannot run " + c.perftest + " (Debian package ucx-utils)");
  }
  PerftestRun run;
  run.block_bytes = block_bytes;
  run.message_bytes = message_bytes;
  // Each run moves about perftest_bytes, at least 100 and at most 100,000 messages; with --ops
  // (short test runs) the count follows the window instead.
  const uint64_t target = c.ops > 0 ? c.ops : c.perftest_bytes / message_bytes;
  run.iterations = std::clamp<uint64_t>(target, c.ops > 0 ? 10 : 100, 100000);
  return run;
}

Status RunPerftestOnce(const Config& c, PerftestRun& run) {
  KVAULT_ASSIGN_OR_RETURN(double mbps, RunOnce(c, run.message_bytes, run.iterations));
  run.run_mbps.push_back(mbps);
  run.mbps = Median(run.run_mbps);
  run.gbps = run.mbps * 1048576.0 / 1e9;
  return Status::Ok();
}

}  // namespace kvault::bench::store_bench
