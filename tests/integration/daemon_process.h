#pragma once
// A real kvaultd process for integration tests: started in a scratch directory with ports 0,
// its ready line parsed for the bound ports, stopped with SIGTERM or killed with SIGKILL, and
// always killed when the test ends (also on a failed assertion).

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "binary_run.h"

namespace kvault::testing {

class DaemonProcess {
 public:
  // Starts KVAULT_BIN_DIR/kvaultd with `args` (plus --control.port 0 --http.port 0 unless given)
  // in `dir`, and waits up to 20 s for its ready line. Check ok() afterwards.
  DaemonProcess(const std::filesystem::path& dir, std::vector<std::string> args) : dir_(dir) {
    Start(std::move(args));
  }
  ~DaemonProcess() { Kill(); }
  DaemonProcess(const DaemonProcess&) = delete;
  DaemonProcess& operator=(const DaemonProcess&) = delete;

  bool ok() const { return control_port_ != 0; }
  uint16_t control_port() const { return control_port_; }
  uint16_t http_port() const { return http_port_; }
  const std::string& ready_line() const { return ready_line_; }
  pid_t pid() const { return pid_; }
  std::string server() const { return "127.0.0.1:" + std::to_string(control_port_); }
  // HOST:PORT of the control plane as the ready line gives it ("[::1]:7400" for IPv6).
  std::string control_address() const { return AddressAfter("control="); }

  // SIGTERM, then waits up to `bound` for the exit. Returns the exit code, 128 + the signal when
  // it died of one, or -1 when it did not exit in time (it is then killed).
  int Terminate(std::chrono::milliseconds bound = std::chrono::seconds(60)) {
    if (pid_ <= 0) return -1;
    ::kill(pid_, SIGTERM);
    return Reap(bound);
  }

  // SIGKILL and reap.
  void Kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    Reap(std::chrono::seconds(10));
  }

  // What the daemon wrote to stderr so far.
  std::string Stderr() const {
    std::ifstream f(dir_ / "kvaultd.err");
    return std::string(std::istreambuf_iterator<char>(f), {});
  }

 private:
  void Start(std::vector<std::string> args) {
    auto has = [&](const std::string& flag) {
      for (const std::string& a : args) {
        if (a.rfind(flag, 0) == 0) return true;
      }
      return false;
    };
    if (!has("--control.port")) args.insert(args.end(), {"--control.port", "0"});
    if (!has("--http.port")) args.insert(args.end(), {"--http.port", "0"});
    int out[2];
    if (::pipe(out) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(out[1], STDOUT_FILENO);
      const int err = ::open((dir_ / "kvaultd.err").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(err, STDERR_FILENO);
      ::close(out[0]);
      if (::chdir(dir_.c_str()) != 0) ::_exit(127);
      const std::string bin = BinDir() + "/kvaultd";
      std::vector<char*> argv = {const_cast<char*>(bin.c_str())};
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(bin.c_str(), argv.data());
      ::_exit(127);
    }
    ::close(out[1]);
    // Read the first line, 20 s at most.
    std::string line;
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (line.find('\n') == std::string::npos && std::chrono::steady_clock::now() < until) {
      pollfd p{out[0], POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char buf[512];
      const ssize_t n = ::read(out[0], buf, sizeof buf);
      if (n <= 0) break;
      line.append(buf, static_cast<size_t>(n));
    }
    ::close(out[0]);
    ready_line_ = line.substr(0, line.find('\n'));
    control_port_ = PortAfter("control=");
    http_port_ = PortAfter("http=");
  }

  // The HOST:PORT after `key` in the ready line; empty when there is none.
  std::string AddressAfter(const std::string& key) const {
    if (ready_line_.rfind("kvaultd ready ", 0) != 0) return "";
    const size_t at = ready_line_.find(key);
    if (at == std::string::npos) return "";
    const size_t begin = at + key.size();
    return ready_line_.substr(begin, ready_line_.find(' ', begin) - begin);
  }

  // The port of AddressAfter(key): after its last colon, so an IPv6 host's colons do not count.
  uint16_t PortAfter(const std::string& key) const {
    const std::string address = AddressAfter(key);
    const size_t colon = address.rfind(':');
    if (colon == std::string::npos) return 0;
    return static_cast<uint16_t>(std::atoi(address.c_str() + colon + 1));
  }

  int Reap(std::chrono::milliseconds bound) {
    const auto until = std::chrono::steady_clock::now() + bound;
    int status = 0;
    while (true) {
      const pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) break;
      if (r < 0) {
        pid_ = -1;
        return -1;
      }
      if (std::chrono::steady_clock::now() >= until) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        pid_ = -1;
        return -1;
      }
      ::usleep(10'000);
    }
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status)
           : WIFSIGNALED(status) ? 128 + WTERMSIG(status)
                                 : -1;
  }

  std::filesystem::path dir_;
  pid_t pid_ = -1;
  std::string ready_line_;
  uint16_t control_port_ = 0;
  uint16_t http_port_ = 0;
};

// Kills `*d` (SIGKILL, as a crash would) and starts a daemon in `dir` with `args` on the control
// port `*d` had, so that its clients reconnect to the same address. Check (*d)->ok() afterwards.
inline void RestartOnSamePort(std::unique_ptr<DaemonProcess>* d, const std::filesystem::path& dir,
                              std::vector<std::string> args) {
  const uint16_t port = (*d)->control_port();
  (*d)->Kill();
  args.insert(args.end(), {"--control.port", std::to_string(port)});
  *d = std::make_unique<DaemonProcess>(dir, std::move(args));
}

}  // namespace kvault::testing
