// `kvault status` and `kvault stats` against a real kvaultd, and against no daemon at all; what
// kvaultd itself prints on stdout.

#include <signal.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <thread>

#include "binary_run.h"
#include "daemon_process.h"
#include "kv_test_util.h"
#include "kvault/client.h"

namespace kvault::testing {
namespace {

class KvaultdCliTest : public BinaryTest {
 protected:
  KvaultdCliTest() : BinaryTest("kvault") {}
};

TEST_F(KvaultdCliTest, StatusAndStatsDescribeARunningDaemon) {
  DaemonProcess d(dir_, {"--storage.host_capacity", "64MiB"});
  ASSERT_TRUE(d.ok()) << d.Stderr();
  const BinaryRun status = Run("status --server " + d.server());
  EXPECT_EQ(status.exit_code, 0) << status.err;
  EXPECT_NE(status.out.find("host"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("nvme"), std::string::npos) << status.out;
  const BinaryRun stats = Run("stats --server " + d.server() + " --json");
  EXPECT_EQ(stats.exit_code, 0) << stats.err;
  EXPECT_NE(stats.out.find("\"host.capacity_bytes\""), std::string::npos) << stats.out;
  EXPECT_NE(stats.out.find("\"store.lookups_total\""), std::string::npos) << stats.out;
  // The capacity the daemon was started with is what it reports.
  const std::string key = "\"host.capacity_bytes\":";
  const size_t at = stats.out.find(key);
  ASSERT_NE(at, std::string::npos) << stats.out;
  EXPECT_EQ(std::strtod(stats.out.c_str() + at + key.size(), nullptr), 64.0 * 1024 * 1024);
}

// SIGHUP changes nothing: the daemon keeps serving, logs nothing more (UCX's own SIGHUP handler,
// which turns its debug logging on, never runs), and SIGTERM still stops it cleanly.
TEST_F(KvaultdCliTest, SighupIsIgnored) {
  DaemonProcess d(dir_, {});
  ASSERT_TRUE(d.ok()) << d.Stderr();
  ASSERT_EQ(Run("status --server " + d.server()).exit_code, 0);
  ASSERT_EQ(::kill(d.pid(), SIGHUP), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // let a handler run, if any
  // A client with a data plane: UCX in debug mode logs its endpoints.
  for (int i = 0; i < 2; ++i) {
    std::unique_ptr<Client> client = ConnectOrFail(d.server());
    ASSERT_NE(client, nullptr);
    EXPECT_TRUE(client->Ping(Clock::now() + std::chrono::seconds(10)).ok());
  }
  const std::string after = d.Stderr();
  EXPECT_EQ(after.find("UCX  DEBUG"), std::string::npos) << after;
  EXPECT_EQ(after.find("DEBUG"), std::string::npos) << after;
  EXPECT_EQ(d.Terminate(), 0) << d.Stderr();
}

// UCX transports "^shm" (what ucx.transports auto gives a daemon with a tenants file) open no
// shared-memory transport: kvaultd sets no option for them, so UCX has no "invalid
// configuration" to warn about on each worker; clients still reach the data plane (over TCP).
TEST_F(KvaultdCliTest, AnExclusionOfSharedMemoryStartsWithoutUcxWarnings) {
  DaemonProcess d(dir_, {"--ucx.transports", "^shm", "--storage.nvme_capacity", "0"});
  ASSERT_TRUE(d.ok()) << d.Stderr();
  std::unique_ptr<Client> client = ConnectOrFail(d.server());
  ASSERT_NE(client, nullptr);
  MemoryRegion region;
  const uint32_t tokens[1] = {3};
  StoreSyntheticObjects(*client, {NextBlockKey(BlockKey{}, tokens)}, 4096, region);
  EXPECT_EQ(d.Terminate(), 0);
  EXPECT_EQ(d.Stderr().find("invalid configuration"), std::string::npos) << d.Stderr();
}

// A daemon held to 2 keys per request still answers Stats with all its counters (the reply's
// entries once counted against the key batch, and the daemon closed the connection instead).
TEST_F(KvaultdCliTest, StatsWorksUnderASmallKeyBatchLimit) {
  DaemonProcess d(dir_, {"--limits-max-keys-per-request", "2"});
  ASSERT_TRUE(d.ok()) << d.Stderr();
  const BinaryRun stats = Run("stats --server " + d.server() + " --json");
  EXPECT_EQ(stats.exit_code, 0) << stats.err;
  EXPECT_NE(stats.out.find("\"store.lookups_total\""), std::string::npos) << stats.out;
  EXPECT_NE(stats.out.find("\"host.capacity_bytes\""), std::string::npos) << stats.out;
}

// A daemon without an nvme tier writes nothing under data_dir: it starts with data_dir empty, or
// in a working directory it cannot write, and creates no ./kvault-data.
TEST_F(KvaultdCliTest, ARamOnlyDaemonNeedsNoDataDirectory) {
  {
    DaemonProcess d(dir_, {"--storage.host_capacity", "64MiB", "--storage.nvme_capacity", "0",
                           "--data-dir", ""});
    ASSERT_TRUE(d.ok()) << d.Stderr();
    const BinaryRun status = Run("status --server " + d.server());
    EXPECT_EQ(status.exit_code, 0) << status.err;
  }
  {
    DaemonProcess d(dir_, {"--storage.host_capacity", "64MiB", "--storage.nvme_capacity", "0"});
    ASSERT_TRUE(d.ok()) << d.Stderr();
    EXPECT_FALSE(std::filesystem::exists(dir_ / "kvault-data"));
  }
  // Positive control: with an nvme tier the default data directory is made.
  DaemonProcess d(dir_, {"--storage.host_capacity", "64MiB"});
  ASSERT_TRUE(d.ok()) << d.Stderr();
  EXPECT_TRUE(std::filesystem::is_directory(dir_ / "kvault-data" / "nvme"));
}

// The ready line's control=HOST:PORT is what --server takes, an IPv6 host included.
TEST_F(KvaultdCliTest, StatusReachesAnIpv6DaemonAtTheReadyLinesAddress) {
  DaemonProcess d(dir_, {"--control.host", "::1", "--storage.host_capacity", "64MiB"});
  ASSERT_TRUE(d.ok()) << d.ready_line() << "\n" << d.Stderr();
  EXPECT_EQ(d.control_address(), "[::1]:" + std::to_string(d.control_port())) << d.ready_line();
  const BinaryRun status = Run("status --server " + d.control_address());
  EXPECT_EQ(status.exit_code, 0) << status.err;
  EXPECT_NE(status.out.find("host"), std::string::npos) << status.out;
}

// stdout holds the ready line and nothing else, also when a library prints: UCX logs its warnings
// to stdout, and a transport it does not have ("bogus_tl", next to shm, which serves) makes it
// warn. Those lines land on stderr. --help and --print-config still print to stdout.
TEST_F(KvaultdCliTest, StdoutIsOnlyTheReadyLineWhenUcxWarns) {
  const std::string out = (dir_ / "kvaultd.out").string(), err = (dir_ / "kvaultd.err").string();
  const std::string kvaultd = BinDir() + "/kvaultd";
  // Start, wait up to 30 s for the ready line, SIGTERM, and exit with the daemon's exit code.
  const std::string cmd = "cd '" + dir_.string() + "' && UCX_LOG_LEVEL=warn timeout 90 " + kvaultd +
                          " --control.port 0 --http.port 0 --storage.nvme_capacity 0 "
                          "--ucx.transports shm,bogus_tl >'" +
                          out + "' 2>'" + err +
                          "' & pid=$!; i=0; while [ $i -lt 300 ] && ! grep -q '^kvaultd ready ' '" +
                          out + "'; do sleep 0.1; i=$((i+1)); done; kill -TERM $pid; wait $pid";
  const int rc = std::system(cmd.c_str());
  const std::string stdout_text = Slurp(out), stderr_text = Slurp(err);
  EXPECT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 0) << rc << "\n" << stderr_text;
  EXPECT_EQ(stdout_text.rfind("kvaultd ready control=", 0), 0u) << stdout_text;
  EXPECT_EQ(std::count(stdout_text.begin(), stdout_text.end(), '\n'), 1) << stdout_text;
  EXPECT_TRUE(!stdout_text.empty() && stdout_text.back() == '\n') << stdout_text;
  EXPECT_EQ(stdout_text.find("UCX"), std::string::npos) << stdout_text;
  // The warning was provoked, and went to stderr.
  EXPECT_NE(stderr_text.find("bogus_tl"), std::string::npos) << stderr_text;

  for (const char* flag : {"--help", "--print-config"}) {
    const std::string run = kvaultd + " " + flag + " >'" + out + "' 2>'" + err + "'";
    const int code = std::system(run.c_str());
    EXPECT_TRUE(WIFEXITED(code) && WEXITSTATUS(code) == 0) << flag;
    EXPECT_NE(Slurp(out).find("ucx"), std::string::npos) << flag << ": " << Slurp(out);
    EXPECT_EQ(Slurp(err), "") << flag;
  }
}

// `kvaultd --memory-gate` is how kvaultd starts its memory gate; by hand, without the numbers and
// descriptors kvaultd gives it, it is bad usage: exit 2, one line saying so, nothing served.
TEST_F(KvaultdCliTest, TheMemoryGateByHandIsBadUsage) {
  const std::string kvaultd = BinDir() + "/kvaultd";
  // Each: the arguments, then what descriptors 3 and 4 are (closed, or not sockets).
  for (const std::string args :
       {"--memory-gate 3<&- 4<&-", "--memory-gate 2000 1 3<&- 4<&-",
        "--memory-gate x 1 info 3<&- 4<&-", "--memory-gate 2000 0 info 3<&- 4<&-",
        "--memory-gate 2000 1 loud 3<&- 4<&-", "--memory-gate 2000 1 info 3<&- 4<&-",
        "--memory-gate 2000 1 info 3</dev/null 4</dev/null"}) {
    const int rc = std::system(
        ("cd '" + dir_.string() + "' && " + kvaultd + " " + args + " >out 2>err").c_str());
    EXPECT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 2) << args << ": " << rc;
    EXPECT_NE(Slurp(dir_ / "err").find("started by kvaultd itself"), std::string::npos) << args;
  }
  // Positive control: the same program with its ordinary flags runs (and prints its help).
  const int rc =
      std::system(("'" + kvaultd + "' --help >'" + (dir_ / "out").string() + "'").c_str());
  EXPECT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 0);
  EXPECT_NE(Slurp(dir_ / "out").find("--memory-gate"), std::string::npos);
}

TEST_F(KvaultdCliTest, NoDaemonIsOneClearLineAndExitOne) {
  const BinaryRun status = Run("status --server 127.0.0.1:1 --timeout-ms 500");
  EXPECT_EQ(status.exit_code, 1);
  EXPECT_NE(status.err.find("127.0.0.1:1"), std::string::npos) << status.err;
  const BinaryRun stats = Run("stats --server 127.0.0.1:1");
  EXPECT_EQ(stats.exit_code, 1);
  const BinaryRun usage = Run("stats");
  EXPECT_EQ(usage.exit_code, 2);
}

// A TLS CA file or token file that does not exist is bad input (exit 2), found before connecting;
// with readable files the same command fails only to reach the daemon (exit 1).
TEST_F(KvaultdCliTest, AMissingCaOrTokenFileIsBadInput) {
  const std::string missing = "/nonexistent/kvault-cli-test.pem";
  for (const char* command : {"status", "stats"}) {
    SCOPED_TRACE(command);
    for (const std::string& flag : {std::string("--tls-ca-file"), std::string("--token-file")}) {
      const BinaryRun bad = Run(std::string(command) + " --server 127.0.0.1:1 --timeout-ms 300 " +
                                flag + " " + missing);
      EXPECT_EQ(bad.exit_code, 2) << flag << "\n" << bad.err;
      EXPECT_NE(bad.err.find(missing), std::string::npos) << flag << "\n" << bad.err;
      const BinaryRun readable =
          Run(std::string(command) + " --server 127.0.0.1:1 --timeout-ms 300 " + flag +
              " /etc/hostname");
      EXPECT_EQ(readable.exit_code, 1) << flag << "\n" << readable.err;
    }
  }
}

}  // namespace
}  // namespace kvault::testing
