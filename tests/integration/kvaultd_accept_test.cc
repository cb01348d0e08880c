// kvaultd out of file descriptors: a connection it cannot accept (EMFILE) waits in the backlog
// while the accept thread retries every 50 ms instead of spinning on the failing accept, the
// connections already open are served meanwhile, and the waiting ones are served once
// descriptors return. The accept loop retried at once before, a core at 100% for as long as it
// lasted.

#include <sys/resource.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "binary_run.h"
#include "daemon_process.h"
#include "process_cpu.h"
#include "raw_connection.h"

namespace kvault::testing {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

// The lowest descriptor number `pid` does not use: with its limit there, no descriptor is left.
int LowestFreeDescriptor(pid_t pid) {
  std::set<int> used;
  for (const auto& e : fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) {
    used.insert(std::stoi(e.path().filename().string()));
  }
  int n = 0;
  while (used.count(n) != 0) ++n;
  return n;
}

// Sets `pid`'s soft limit of open files (its hard limit stays); false when the kernel refused.
bool SetSoftFileLimit(pid_t pid, const rlimit& current, rlim_t soft) {
  const rlimit value{soft, current.rlim_max};
  return prlimit(pid, RLIMIT_NOFILE, &value, nullptr) == 0;
}

class KvaultdAcceptTest : public BinaryTest {
 protected:
  KvaultdAcceptTest() : BinaryTest("kvaultd") {}
};

TEST_F(KvaultdAcceptTest, OutOfDescriptorsItWaitsToAcceptInsteadOfSpinning) {
  DaemonProcess d(dir_, {"--storage.nvme_capacity", "0"});
  ASSERT_TRUE(d.ok()) << d.Stderr();
  RawConnection served(d.control_port());
  ASSERT_TRUE(served.Login());
  rlimit before{};
  ASSERT_EQ(prlimit(d.pid(), RLIMIT_NOFILE, nullptr, &before), 0);
  // No descriptor left: the next accepts fail with EMFILE.
  ASSERT_TRUE(SetSoftFileLimit(d.pid(), before, LowestFreeDescriptor(d.pid())));
  std::vector<std::unique_ptr<RawConnection>> waiting;
  for (int i = 0; i < 4; ++i) waiting.push_back(std::make_unique<RawConnection>(d.control_port()));
  std::this_thread::sleep_for(200ms);  // the accept thread meets EMFILE
  const std::chrono::milliseconds cpu_before = CpuTime(d.pid());
  std::this_thread::sleep_for(1s);
  const std::chrono::milliseconds cpu = CpuTime(d.pid()) - cpu_before;
  EXPECT_LT(cpu, 300ms) << "the accept thread spins on the failing accept";
  EXPECT_NE(d.Stderr().find("accepting a connection failed"), std::string::npos) << d.Stderr();
  EXPECT_TRUE(served.Ping(7)) << "an open connection is served meanwhile";
  EXPECT_FALSE(waiting[0]->Readable());

  // Descriptors return: the waiting connections are accepted and served.
  ASSERT_EQ(prlimit(d.pid(), RLIMIT_NOFILE, &before, nullptr), 0);
  for (auto& c : waiting) EXPECT_TRUE(c->Ping(8));
  EXPECT_NE(d.Stderr().find("accepting connections again"), std::string::npos) << d.Stderr();
  EXPECT_EQ(d.Terminate(), 0) << d.Stderr();
}

}  // namespace
}  // namespace kvault::testing
