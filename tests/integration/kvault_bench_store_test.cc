// Runs the real `kvault-bench store` with tiny sizes and operation counts (a few seconds): it
// starts kvaultd and redis-server, runs ucx_perftest, prints its table and JSON with every figure
// positive, and leaves neither processes nor its scratch directory behind.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "binary_run.h"

namespace {

namespace fs = std::filesystem;
using kvault::testing::AllNumbers;
using kvault::testing::BinaryRun;
using kvault::testing::ExpectContainsAll;
using kvault::testing::Have;
using kvault::testing::Slurp;

class KvaultBenchStoreTest : public kvault::testing::BinaryTest {
 protected:
  KvaultBenchStoreTest() : BinaryTest("kvault-bench") {}

  // Runs `prefix kvault-bench args` with TMPDIR=<dir_>/tmp (where the scratch directory goes);
  // the exit status of the shell command line (124: `timeout` stopped it).
  BinaryRun RunInTmp(const std::string& prefix, const std::string& args) const {
    fs::create_directories(dir_ / "tmp");
    const std::string cmd = "cd '" + dir_.string() + "' && TMPDIR='" + (dir_ / "tmp").string() +
                            "' " + prefix + " " + kvault::testing::BinDir() + "/kvault-bench " +
                            args + " >" + (dir_ / "out").string() + " 2>" + (dir_ / "err").string();
    const int rc = std::system(cmd.c_str());
    return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, Slurp(dir_ / "out"), Slurp(dir_ / "err")};
  }
};

TEST_F(KvaultBenchStoreTest, TinyRunPrintsEveryFigureBesideItsBaseline) {
  if (!fs::exists(fs::path(KVAULT_BIN_DIR) / "kvaultd")) GTEST_SKIP() << "kvaultd was not built";
  const bool redis = Have("redis-server");
  const bool perftest = Have("ucx_perftest");
  const fs::path json = dir_ / "store.json";
  BinaryRun r =
      Run("store --sizes 4KiB,64KiB --concurrency 1,2 --ops 16 --reps 2 "
          "--chain-keys 50 --lookups 20 --host-capacity 16MiB --transports tcp --json " +
          json.string());
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;

  ExpectContainsAll(r.out, {"Chain lookup: 50 keys",
                            "2 rounds of 20 timed",
                            "medians of 2 timed windows (16 ops each) after 1 untimed warm-up",
                            "p50",
                            "p99",
                            "block",
                            "thr",
                            "kvault GB/s",
                            "kvault op/s",
                            "redis GB/s",
                            "x redis",
                            "ucx_perftest GB/s",
                            "x perftest",
                            "store",
                            "load",
                            "load-hot",
                            "Daemon memory",
                            "VmHWM",
                            "Targets (not asserted):",
                            "lookup p99 (50-key chain) <= 250 us",
                            "daemon VmHWM <= host capacity + 128 MiB"});
  EXPECT_EQ(r.out.find("WARNING"), std::string::npos) << r.out;

  const std::string doc = Slurp(json);
  ExpectContainsAll(
      doc, {"\"benchmark\": \"store\"", "\"started_daemon\": true", "\"transports\": \"tcp\"",
            "\"concurrency_model\"", "\"lookup\"", "\"rows\"", "\"kvault_store\"",
            "\"kvault_load\"", "\"memory\"", "\"targets\"", "\"warmup_windows\": 1"});
  // The lookup figures are medians over --reps rounds, each round's p99 listed.
  const size_t rounds = doc.find("\"round_p99_us\": [");
  ASSERT_NE(rounds, std::string::npos) << doc;
  const std::string list = doc.substr(rounds, doc.find(']', rounds) - rounds);
  EXPECT_EQ(std::count(list.begin(), list.end(), ','), 1) << list;
  std::vector<std::string> positive = {
      "p50_us",    "p99_us", "kvault_store_gbps", "kvault_load_gbps", "kvault_load_hot_gbps",
      "ops_per_s", "gbps",   "max_rss_bytes",     "hwm_bytes",        "bound_bytes"};
  if (redis) {
    positive.insert(positive.end(), {"redis_set_gbps", "redis_get_gbps", "store_vs_redis_set",
                                     "load_vs_redis_get"});
  } else {
    EXPECT_NE(r.out.find("no redis baseline"), std::string::npos) << r.out;
  }
  if (perftest) {
    positive.insert(positive.end(),
                    {"perftest_mbps", "perftest_gbps", "load_vs_perftest", "load_hot_vs_perftest"});
  } else {
    EXPECT_NE(r.out.find("no ucx_perftest baseline"), std::string::npos) << r.out;
  }
  for (const std::string& key : positive) {
    const std::vector<double> values = AllNumbers(doc, key);
    EXPECT_FALSE(values.empty()) << key << "\n" << doc;
    for (double v : values) EXPECT_GT(v, 0) << key << "\n" << doc;
  }
  // 2 sizes x 2 concurrencies, each with its store, load and load-hot figures.
  EXPECT_EQ(AllNumbers(doc, "kvault_store_gbps").size(), 4u) << doc;
  EXPECT_EQ(AllNumbers(doc, "kvault_load_hot_gbps").size(), 4u) << doc;
  EXPECT_EQ(AllNumbers(doc, "failures").size(), redis ? 20u : 12u) << doc;
  if (perftest) {  // every one-client row has its own ucx_perftest runs, paired with its windows
    EXPECT_EQ(AllNumbers(doc, "perftest_mbps").size(), 2u) << doc;
    EXPECT_NE(r.out.find("64KiB x1 ("), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("64KiB x2 ("), std::string::npos) << "one stream beside two clients";
  }
  for (double f : AllNumbers(doc, "failures")) EXPECT_EQ(f, 0) << doc;

  // The daemon was stopped and reaped, and the scratch directory removed.
  const std::vector<double> pid = AllNumbers(doc, "daemon_pid");
  ASSERT_EQ(pid.size(), 1u) << doc;
  EXPECT_NE(::kill(static_cast<pid_t>(pid[0]), 0), 0);
  const std::string marker = "scratch ";
  const size_t at = r.out.find(marker);
  ASSERT_NE(at, std::string::npos) << r.out;
  const std::string scratch =
      r.out.substr(at + marker.size(), r.out.find('\n', at) - at - marker.size());
  EXPECT_FALSE(fs::exists(scratch)) << scratch;
}

// --client-memory register and register-direct: the same windows from memory the benchmark
// registers itself, staged through the clients' pools or moved by UCX; every store and load
// succeeds (loads are checked byte for byte), and the run says which memory it used and how many
// requests were staged (all of them with register, none with register-direct).
TEST_F(KvaultBenchStoreTest, RegisteredClientMemoryStoresAndLoads) {
  if (!fs::exists(fs::path(KVAULT_BIN_DIR) / "kvaultd")) GTEST_SKIP() << "kvaultd was not built";
  const fs::path json = dir_ / "register.json";
  for (const std::string memory : {"register", "register-direct"}) {
    for (const char* transports : {"tcp", "posix,cma"}) {
      SCOPED_TRACE(memory + " over " + transports);
      BinaryRun r = Run("store --client-memory " + memory +
                        " --sizes 64KiB --concurrency 1,2 --ops 16 --reps 1 --chain-keys 10 "
                        "--lookups 10 --host-capacity 16MiB --redis none --perftest none "
                        "--transports " +
                        transports + " --json " + json.string());
      ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
      EXPECT_NE(r.out.find("client memory " + memory + ","), std::string::npos) << r.out;
      EXPECT_NE(r.out.find("client staging of registered memory"), std::string::npos) << r.out;
      EXPECT_EQ(r.out.find("WARNING"), std::string::npos) << r.out;
      const std::string doc = Slurp(json);
      EXPECT_NE(doc.find("\"client_memory\": \"" + memory + "\""), std::string::npos) << doc;
      for (double f : AllNumbers(doc, "failures")) EXPECT_EQ(f, 0) << doc;
      for (double g : AllNumbers(doc, "kvault_load_gbps")) EXPECT_GT(g, 0) << doc;
      const std::vector<double> staged = AllNumbers(doc, "staged_requests");
      const std::vector<double> direct = AllNumbers(doc, "direct_requests");
      ASSERT_EQ(staged.size(), 1u) << doc;
      ASSERT_EQ(direct.size(), 1u) << doc;
      if (memory == "register") {
        EXPECT_GT(staged[0], 0) << doc;
        EXPECT_EQ(direct[0], 0) << "64 KiB requests always fit a client's pool\n" << doc;
      } else {
        EXPECT_EQ(staged[0], 0) << doc;
        EXPECT_EQ(direct[0], 0) << "staging off: nothing is counted\n" << doc;
      }
    }
  }
}

// A host capacity that is not one of the host arena's size classes (50 MiB lies between the 48
// and 56 MiB classes): the started kvaultd gets the largest block limit whose class fits, rather
// than min(capacity, 64 MiB), which it would refuse, and the run completes.
TEST_F(KvaultBenchStoreTest, AHostCapacityBetweenSizeClassesStartsTheDaemon) {
  if (!fs::exists(fs::path(KVAULT_BIN_DIR) / "kvaultd")) GTEST_SKIP() << "kvaultd was not built";
  const fs::path json = dir_ / "odd.json";
  BinaryRun r =
      Run("store --sizes 64KiB --concurrency 1 --ops 16 --reps 1 --warmup 0 --chain-keys 10 "
          "--lookups 10 --host-capacity 50MiB --redis none --perftest none "
          "--json " +
          json.string());
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.out.find("WARNING"), std::string::npos) << r.out;
  const std::string doc = Slurp(json);
  for (double f : AllNumbers(doc, "failures")) EXPECT_EQ(f, 0) << doc;
  for (double g : AllNumbers(doc, "kvault_load_gbps")) EXPECT_GT(g, 0) << doc;
}

TEST_F(KvaultBenchStoreTest, RejectsBadUsageWithExitCode2) {
  const char* cases[][2] = {
      {"store --sizes 0", "--sizes"},
      {"store --sizes 64Q", "--sizes"},
      {"store --concurrency 0", "--concurrency"},
      {"store --seconds 1 --ops 10", "exclude each other"},
      {"store --ops 10 --pool-bytes 1MiB", "no effect with --ops"},
      // A store window would end after 2 objects per thread.
      {"store --pool-bytes 1", "holds fewer than 8 objects of the largest size per thread"},
      {"store --sizes 1MiB --concurrency 4 --pool-bytes 31MiB", "give at least"},
      {"store --ops 10 --perftest-bytes 1MiB", "no effect with --ops"},
      {"store --seconds fast", "--seconds"},
      {"store --transports 'tcp;rm'", "--transports"},
      {"store --transports ,,", "--transports takes UCX_TLS transport names"},
      {"store --transports ''", "--transports takes UCX_TLS transport names"},
      {"store --transports tcp:aux", "--transports takes UCX_TLS transport names"},
      {"store --kvaultd nan", "--kvaultd nan: not an executable file"},
      {"store --kvaultd /tmp", "--kvaultd /tmp: not an executable file"},
      {"store --redis -1", "--redis -1: not an executable file"},
      {"store --perftest /nonexistent", "--perftest /nonexistent: not an executable file"},
      {"store --server nohost", "--server"},
      {"store --client-memory shared", "--client-memory"},
      {"store --data-plane shm", "--data-plane takes ucx or process-memory"},
      {"store --server 127.0.0.1:1 --data-plane process-memory", "--data-plane is for"},
      {"store --warmup x", "--warmup"},
      {"store --warmup 101", "--warmup"},
      {"store --sizes 8MiB --host-capacity 16MiB", "--host-capacity"},
      {"store --frobnicate 1", "unknown option"},
      {"store extra", "unexpected argument"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c[0]);
    BinaryRun r = Run(c[0]);
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_NE(r.err.find(c[1]), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("kvault-bench store:"), std::string::npos) << r.err;
  }
  // Positive control: a negated transport list and executable programs pass (a later check
  // refuses the run); the programs are not looked at with --redis none / --perftest none or, for
  // --kvaultd, with --server.
  for (const char* args :
       {"store --transports ^tcp,cma --kvaultd /bin/true --redis /bin/true --perftest /bin/true "
        "--sizes 8MiB --host-capacity 16MiB",
        "store --redis none --perftest none --sizes 8MiB --host-capacity 16MiB",
        "store --server 127.0.0.1:1 --kvaultd nan --client-memory shared"}) {
    SCOPED_TRACE(args);
    BinaryRun r = Run(args);
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_EQ(r.err.find("not an executable file"), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("--transports"), std::string::npos) << r.err;
  }
  BinaryRun help = Run("store --help");  // positive control
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("--concurrency"), std::string::npos);
  EXPECT_NE(help.out.find("--transports"), std::string::npos);
  EXPECT_NE(help.out.find("--client-memory"), std::string::npos);
  EXPECT_NE(help.out.find("--data-plane"), std::string::npos);
  EXPECT_NE(help.out.find("--warmup"), std::string::npos);
  BinaryRun usage = Run("--help");
  EXPECT_NE(usage.out.find("kvault-bench store"), std::string::npos) << usage.out;
}

// SIGTERM in the middle of a run: the daemon it started is killed and the scratch directory
// removed before the benchmark dies of the signal.
TEST_F(KvaultBenchStoreTest, SigtermKillsTheDaemonAndRemovesTheScratchDirectory) {
  if (!fs::exists(fs::path(KVAULT_BIN_DIR) / "kvaultd")) GTEST_SKIP() << "kvaultd was not built";
  BinaryRun r = RunInTmp("timeout -s TERM 4",
                         "store --redis none --perftest none --sizes 64KiB --concurrency 1 "
                         "--seconds 60 --chain-keys 50 --lookups 20 --host-capacity 16MiB");
  EXPECT_EQ(r.exit_code, 124) << r.out << r.err;  // timeout's code: the signal stopped it
  EXPECT_NE(r.err.find("stopped by signal 15"), std::string::npos) << r.err;
  EXPECT_TRUE(fs::is_empty(dir_ / "tmp")) << "a scratch directory was left behind";
  // kvaultd's --data-dir lies in the scratch directory: no process names it any more. ("tm[p]"
  // keeps the shell running pgrep, whose command line holds the pattern, from matching.)
  const std::string pgrep = "pgrep -f '" + dir_.string() + "/tm[p]/' >/dev/null";
  EXPECT_NE(std::system(pgrep.c_str()), 0) << "a kvaultd outlived the benchmark";
}

// A relative --kvaultd names a file from the directory the benchmark runs in, although the
// daemon runs in the scratch directory.
TEST_F(KvaultBenchStoreTest, ARelativeKvaultdPathIsRunFromTheBenchmarksDirectory) {
  if (!fs::exists(fs::path(KVAULT_BIN_DIR) / "kvaultd")) GTEST_SKIP() << "kvaultd was not built";
  fs::create_directories(dir_ / "daemon");
  fs::create_symlink(fs::path(KVAULT_BIN_DIR) / "kvaultd", dir_ / "daemon" / "kvaultd");
  BinaryRun r = RunInTmp("",
                         "store --kvaultd daemon/kvaultd --redis none --perftest none "
                         "--sizes 64KiB --concurrency 1 --reps 1 --seconds 0.1 "
                         "--chain-keys 50 --lookups 20 --host-capacity 16MiB");
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("64KiB    1     store"), std::string::npos) << r.out;
}

// A kvaultd that never gets ready: exit code 1 with the end of its log, and no scratch directory
// left behind.
TEST_F(KvaultBenchStoreTest, ADaemonThatDoesNotGetReadyLeavesNoScratchDirectory) {
  BinaryRun r = RunInTmp("", "store --kvaultd /bin/true --redis none --perftest none");
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("did not get ready"), std::string::npos) << r.err;
  EXPECT_TRUE(fs::is_empty(dir_ / "tmp")) << "a scratch directory was left behind";
}

}  // namespace
