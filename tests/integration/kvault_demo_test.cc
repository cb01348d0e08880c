// kvault demo against a real kvaultd: the end-to-end path of README's first command, with tiny
// sizes; and the demo's failure modes (unreachable daemon, bad usage).

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "binary_run.h"
#include "daemon_process.h"

namespace kvault::testing {
namespace {

class KvaultDemoTest : public BinaryTest {
 protected:
  KvaultDemoTest() : BinaryTest("kvault") {}

  // Tiny: 2 conversations x 3 turns of a 2-layer shard.
  BinaryRun RunDemo(const std::string& server, const std::string& extra = "") const {
    return Run("demo --server " + server +
               " --conversations 2 --turns 3 --layers 2 --block-tokens 16 --json demo.json " +
               extra);
  }
};

// A loopback port nothing listens on: bound by the kernel, then released.
uint16_t DeadPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    return 0;
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

TEST_F(KvaultDemoTest, RunsEndToEndAgainstARealDaemonAndVerifiesEveryLoadedBlock) {
  fs::create_directories(dir_ / "daemon");
  DaemonProcess daemon(dir_ / "daemon", {"--data_dir", (dir_ / "daemon" / "data").string()});
  ASSERT_TRUE(daemon.ok()) << "ready line: '" << daemon.ready_line() << "'\n" << daemon.Stderr();

  BinaryRun r = RunDemo(daemon.server());
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  for (const char* line : {"prefix hits", "bytes saved", "load latency", "lookup", "store",
                           "throughput", "accuracy", "verified"}) {
    EXPECT_NE(r.out.find(std::string("\n") + line), std::string::npos) << line << "\n" << r.out;
  }
  const std::string json = Slurp(dir_ / "demo.json");
  EXPECT_GT(JsonNumber(json, "hit_ratio"), 0.0) << json;
  EXPECT_EQ(JsonNumber(json, "first_turn_hits"), 0.0) << json;
  EXPECT_GT(JsonNumber(json, "verified_blocks"), 0.0) << json;
  EXPECT_EQ(JsonNumber(json, "verified_blocks"), JsonNumber(json, "hit_blocks")) << json;
  EXPECT_EQ(JsonNumber(json, "mismatched_blocks"), 0.0) << json;
  EXPECT_EQ(JsonNumber(json, "failed_load_blocks"), 0.0) << json;
  EXPECT_EQ(JsonNumber(json, "failed_store_blocks"), 0.0) << json;
  // fp8 stores a little over half the fp16 bytes.
  EXPECT_GT(JsonNumber(json, "compression_ratio"), 1.8) << json;
  EXPECT_GT(JsonNumber(json, "bytes_saved"), 0.0) << json;
  EXPECT_GT(JsonNumber(json, "load_p50_ms"), 0.0) << json;

  // The same seed again: every block is cached now, first turns included, and still verifies.
  BinaryRun again = RunDemo(daemon.server());
  ASSERT_EQ(again.exit_code, 0) << again.out << again.err;
  const std::string json2 = Slurp(dir_ / "demo.json");
  EXPECT_GT(JsonNumber(json2, "first_turn_hits"), 0.0) << json2;
  EXPECT_EQ(JsonNumber(json2, "hit_ratio"), 1.0) << json2;
  EXPECT_EQ(JsonNumber(json2, "mismatched_blocks"), 0.0) << json2;

  // Another codec lives in its own namespace: its first turns miss again, and it verifies.
  BinaryRun int4 = RunDemo(daemon.server(), "--codec k=int4,v=int2");
  ASSERT_EQ(int4.exit_code, 0) << int4.out << int4.err;
  const std::string json3 = Slurp(dir_ / "demo.json");
  EXPECT_EQ(JsonNumber(json3, "first_turn_hits"), 0.0) << json3;
  EXPECT_GT(JsonNumber(json3, "compression_ratio"), 3.0) << json3;

  EXPECT_EQ(daemon.Terminate(), 0) << daemon.Stderr();
}

TEST_F(KvaultDemoTest, UnreachableDaemonExitsOneWithOneClearLine) {
  const uint16_t port = DeadPort();
  ASSERT_NE(port, 0);
  BinaryRun r = RunDemo("127.0.0.1:" + std::to_string(port));
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("kvault demo: cannot reach kvaultd at 127.0.0.1:" + std::to_string(port)),
            std::string::npos)
      << r.err;
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "one line: " << r.err;
}

TEST_F(KvaultDemoTest, BadUsageExitsTwo) {
  EXPECT_EQ(Run("demo").exit_code, 2);                                    // no --server
  EXPECT_EQ(Run("demo --server 127.0.0.1:1 --turns 0").exit_code, 2);     // out of range
  EXPECT_EQ(Run("demo --server 127.0.0.1:1 --codec int3").exit_code, 2);  // bad spec
  EXPECT_EQ(Run("demo --server nonsense").exit_code, 2);                  // no port
  EXPECT_EQ(Run("demo --server 127.0.0.1:1 --frobnicate 1").exit_code, 2);
  BinaryRun help = Run("demo --help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("--codec SPEC"), std::string::npos) << help.out;
}

}  // namespace
}  // namespace kvault::testing
