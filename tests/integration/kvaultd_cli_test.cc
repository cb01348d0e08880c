// `kvault status` and `kvault stats` against a real kvaultd, and against no daemon at all.

#include "binary_run.h"
#include "daemon_process.h"

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

// The ready line's control=HOST:PORT is what --server takes, an IPv6 host included.
TEST_F(KvaultdCliTest, StatusReachesAnIpv6DaemonAtTheReadyLinesAddress) {
  DaemonProcess d(dir_, {"--control.host", "::1", "--storage.host_capacity", "64MiB"});
  ASSERT_TRUE(d.ok()) << d.ready_line() << "\n" << d.Stderr();
  EXPECT_EQ(d.control_address(), "[::1]:" + std::to_string(d.control_port())) << d.ready_line();
  const BinaryRun status = Run("status --server " + d.control_address());
  EXPECT_EQ(status.exit_code, 0) << status.err;
  EXPECT_NE(status.out.find("host"), std::string::npos) << status.out;
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

}  // namespace
}  // namespace kvault::testing
