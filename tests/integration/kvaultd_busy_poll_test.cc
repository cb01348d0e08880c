// kvaultd's busy polling (control.busy_poll_us): with one client on a machine with cores to
// spare, the io thread stays awake between that client's requests instead of sleeping in
// epoll_wait after each (counted as the daemon's voluntary context switches, against the same
// pings with polling off); with more connections than half the cores it sleeps again; and an
// idle daemon does not poll. The figures of a sleeping io thread are the best of up to three
// measurements (a shared machine's busy moments push them down).

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "binary_run.h"
#include "control/usable_cores.h"
#include "daemon_process.h"
#include "kv_test_util.h"
#include "kvault/client.h"
#include "process_cpu.h"

namespace kvault::testing {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr int kPings = 2000;
constexpr int kTries = 3;

// Voluntary context switches of every thread of `pid`: each time one slept.
uint64_t VoluntarySwitches(pid_t pid) {
  uint64_t total = 0;
  for (const auto& task : fs::directory_iterator("/proc/" + std::to_string(pid) + "/task")) {
    std::ifstream status(task.path() / "status");
    std::string line;
    while (std::getline(status, line)) {
      if (line.rfind("voluntary_ctxt_switches:", 0) == 0) total += std::stoull(line.substr(24));
    }
  }
  return total;
}

// The daemon's voluntary context switches per ping over kPings pings from `client`.
double SwitchesPerPing(const DaemonProcess& d, Client& client) {
  for (int i = 0; i < 50; ++i) EXPECT_TRUE(client.Ping().ok());  // warm
  const uint64_t before = VoluntarySwitches(d.pid());
  for (int i = 0; i < kPings; ++i) {
    Result<std::chrono::nanoseconds> rtt = client.Ping();
    if (!rtt.ok()) {
      ADD_FAILURE() << "ping " << i << ": " << rtt.status().ToString();
      break;
    }
  }
  const uint64_t after = VoluntarySwitches(d.pid());  // a thread that ended takes its count along
  return after > before ? static_cast<double>(after - before) / kPings : 0.0;
}

// The machine is shared: a busy moment preempts the io thread between pings, which then finds
// the next one waiting and does not sleep. So a figure that should be at least `threshold` (the
// io thread sleeps for every ping) is measured up to kTries times until it is, keeping the
// highest: a thread that does not sleep stays below every time.
template <typename Measure>
double HighestOf(double threshold, Measure measure) {
  double best = measure();
  for (int t = 1; t < kTries && best < threshold; ++t) best = std::max(best, measure());
  return best;
}

class KvaultdBusyPollTest : public BinaryTest {
 protected:
  KvaultdBusyPollTest() : BinaryTest("kvaultd") {}

  std::unique_ptr<DaemonProcess> Start(const std::string& name, std::vector<std::string> extra) {
    fs::create_directories(dir_ / name);
    std::vector<std::string> args = {"--storage.host_capacity", "64MiB", "--storage.nvme_capacity",
                                     "0"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto d = std::make_unique<DaemonProcess>(dir_ / name, args);
    EXPECT_TRUE(d->ok()) << d->Stderr();
    return d;
  }
};

TEST_F(KvaultdBusyPollTest, OneClientFindsTheIoThreadAwakeAndAnIdleDaemonDoesNotPoll) {
  const uint32_t cores = server::UsableCores();  // as the daemon counts them
  if (cores < 2) GTEST_SKIP() << "one usable core: kvaultd never polls there";
  // Control: polling off, the io thread sleeps after every ping (and wakes for the next).
  std::unique_ptr<DaemonProcess> off = Start("off", {"--control.busy_poll_us", "0"});
  ASSERT_TRUE(off->ok());
  std::unique_ptr<Client> off_client = ConnectOrFail(off->server());
  ASSERT_NE(off_client, nullptr);
  const double off_switches = HighestOf(0.8, [&] { return SwitchesPerPing(*off, *off_client); });
  EXPECT_GE(off_switches, 0.8) << "without polling every ping should wake the io thread";
  off_client.reset();
  off.reset();

  // Polling on: the io thread stays awake between one client's pings. 5 ms rather than the
  // default 200 us, so that a busy machine delaying the client now and then does not make the
  // thread sleep: this checks the mechanism, the benchmark the default.
  std::unique_ptr<DaemonProcess> on = Start("on", {"--control.busy_poll_us", "5000"});
  ASSERT_TRUE(on->ok());
  std::unique_ptr<Client> client = ConnectOrFail(on->server());
  ASSERT_NE(client, nullptr);
  // Measured once: the machine's busy moments push this figure down too (a preempted thread finds
  // the next ping waiting), so a retry could pass a mechanism that does not work.
  const double on_switches = SwitchesPerPing(*on, *client);
  EXPECT_LT(on_switches, 0.5) << "against " << off_switches << " per ping with polling off";

  // Idle, with the client still connected: after the last request the thread polls for 5 ms,
  // then sleeps; over a second the whole daemon uses next to no CPU.
  std::this_thread::sleep_for(200ms);
  const std::chrono::milliseconds cpu_before = CpuTime(on->pid());
  std::this_thread::sleep_for(1s);
  const std::chrono::milliseconds idle_cpu = CpuTime(on->pid()) - cpu_before;
  EXPECT_LT(idle_cpu, 150ms) << "an idle daemon must not spin";

  // Connections past one per two cores: polling would take a core a client needs, so the io
  // thread sleeps between pings again.
  std::vector<std::unique_ptr<Client>> others;
  for (uint32_t i = 0; i < cores / 2; ++i) {  // cores / 2 + 1 connections in all
    others.push_back(ConnectOrFail(on->server()));
    ASSERT_NE(others.back(), nullptr);
  }
  const double crowded_switches = HighestOf(0.8, [&] { return SwitchesPerPing(*on, *client); });
  EXPECT_GE(crowded_switches, 0.8)
      << "with " << others.size() + 1 << " connections on " << cores << " cores";
  std::printf(
      "daemon sleeps per ping: %.3f polling off, %.3f polling, %.3f with %zu connections "
      "on %u cores; idle CPU %lld ms over 1 s\n",
      off_switches, on_switches, crowded_switches, others.size() + 1, cores,
      static_cast<long long>(idle_cpu.count()));
}

}  // namespace
}  // namespace kvault::testing
