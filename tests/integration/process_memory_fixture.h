#pragma once
// What the process-memory tests of kvaultd share (kvaultd_process_memory_test.cc, the protocol
// and the daemon; kvaultd_process_memory_client_test.cc, libkvault): a fixture whose kvaultd
// serves one tenant, team-a, keys, and a client process forked before the daemon starts.

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "kv_test_util.h"

namespace kvault::testing {
namespace {

namespace fs = std::filesystem;

class KvaultdProcessMemoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("kvaultd_process_memory_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    WriteOneTenantFile(dir_ / "tenants.yaml", "team-a", "secret-a");
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::vector<std::string> TenantArgs() const {
    return {"--auth.tenants_file",
            (dir_ / "tenants.yaml").string(),
            "--storage.nvme_capacity",
            "0",
            "--log_level",
            "debug"};
  }

  fs::path dir_;
};

std::vector<BlockKey> Keys(size_t n, uint8_t seed) {
  std::vector<BlockKey> keys(n);
  for (size_t i = 0; i < n; ++i) {
    keys[i].fill(seed);
    keys[i][0] = static_cast<uint8_t>(i);
  }
  return keys;
}

// A client process forked now (while this process has one thread, before the daemon starts):
// as root it becomes nobody, a user other than the daemon's, and dumpable, as a process that
// user started would be; it then waits for the daemon's control port and exits with body(port)
// (0 when every check held, another code naming the one that failed).
class ForkedClient {
 public:
  explicit ForkedClient(const std::function<int(uint16_t)>& body) {
    int fds[2];
    EXPECT_EQ(pipe(fds), 0);
    pid_ = fork();
    if (pid_ == 0) {
      close(fds[1]);
      uint16_t port = 0;
      if (read(fds[0], &port, sizeof port) != sizeof port) _exit(100);
      if (geteuid() == 0 &&
          (syscall(SYS_setresgid, 65534, 65534, 65534) != 0 ||
           syscall(SYS_setresuid, 65534, 65534, 65534) != 0 || prctl(PR_SET_DUMPABLE, 1) != 0)) {
        _exit(101);
      }
      _exit(body(port));
    }
    close(fds[0]);
    port_pipe_ = fds[1];
  }
  ~ForkedClient() {
    if (port_pipe_ >= 0) close(port_pipe_);
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  // Hands the client `port` and waits for it (up to 60 s); its exit code, or -1.
  int Run(uint16_t port) {
    if (write(port_pipe_, &port, sizeof port) != static_cast<ssize_t>(sizeof port)) return -1;
    close(port_pipe_);
    port_pipe_ = -1;
    for (int i = 0; i < 6000; ++i) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return -1;
  }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int port_pipe_ = -1;
};

}  // namespace
}  // namespace kvault::testing
