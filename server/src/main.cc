// kvaultd: the kvault daemon (DESIGN.md §8). `kvaultd --help` documents every option.
//
// Starts a Daemon from defaults < --config FILE < flags, prints one line
// "kvaultd ready control=HOST:PORT http=HOST:PORT ..." on stdout (the only line there: what
// libraries print goes to stderr), then serves until SIGTERM or SIGINT: it then drains (in-flight
// requests finish within limits.drain_timeout), closes the store and exits 0. Exit codes: 0 clean
// stop, 1 failed to start, 2 bad usage.

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <string>
#include <vector>

#include "config/config_loader.h"
#include "control/memory_gate.h"
#include "daemon/daemon.h"
#include "kvault/common/log.h"

namespace {

// Writes all of `text` to `fd`, retrying short writes and EINTR; gives up on any other error (the
// reader is gone: nothing to tell it).
void WriteAll(int fd, const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

}  // namespace

int main(int argc, char** argv) {
  using namespace kvault::server;
  // The memory gate: a process kvaultd starts from its own program (control/memory_gate.h).
  if (argc > 1 && std::string(argv[1]) == kMemoryGateFlag) return MemoryGateMain(argc, argv);
  const std::vector<std::string> args(argv + 1, argv + argc);
  kvault::Result<DaemonInvocation> invocation = LoadDaemonConfig(args);
  if (!invocation.ok()) {
    // One pointer to --help, unless the message carries its own.
    const std::string message = invocation.status().ToString();
    std::fprintf(
        stderr, "kvaultd: %s\n%s", message.c_str(),
        message.find("--help") == std::string::npos ? "(kvaultd --help lists every option)\n" : "");
    return 2;
  }
  if (invocation->action == DaemonAction::kHelp) {
    std::fputs(DaemonHelpText("kvaultd").c_str(), stdout);
    return 0;
  }
  if (invocation->action == DaemonAction::kPrintConfig) {
    std::fputs(FormatConfigYaml(invocation->config).c_str(), stdout);
    return 0;
  }

  // stdout carries the ready line and nothing else (docs/daemon.md), but libraries write there
  // too (UCX logs its warnings to stdout). Before anything starts UCX, keep a private copy of
  // stdout for the ready line and point fd 1 at stderr, line-buffered, so that what they write
  // lands in the log. --help and --print-config above still print to stdout.
  const int ready_fd = ::fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
  if (::dup2(STDERR_FILENO, STDOUT_FILENO) < 0) {
    // No stderr to point at: drop library output rather than let it reach the ready-line reader.
    const int null_fd = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (null_fd >= 0 && null_fd != STDOUT_FILENO) {
      ::dup2(null_fd, STDOUT_FILENO);
      ::close(null_fd);
    }
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);

  // Block the stop signals before any thread starts, so every thread inherits the mask and
  // sigwait below is the one place they arrive.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  signal(SIGPIPE, SIG_IGN);
  // SIGHUP (a closing terminal, a reload habit) does nothing: blocked in every thread, it never
  // reaches the handler UCX installs for it, which would switch UCX's debug logging on.
  sigset_t hangup;
  sigemptyset(&hangup);
  sigaddset(&hangup, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &hangup, nullptr);

  // The options accept only the level names, so this parses.
  const kvault::Result<kvault::LogLevel> level =
      kvault::ParseLogLevel(invocation->config.log_level);
  kvault::SetLogLevel(level.ok() ? *level : kvault::LogLevel::kInfo);
  kvault::Result<std::unique_ptr<Daemon>> daemon = Daemon::Start(invocation->config);
  if (!daemon.ok()) {
    std::fprintf(stderr, "kvaultd: cannot start: %s\n", daemon.status().ToString().c_str());
    return 1;
  }
  // The one line on the real stdout, in one write. It stays open (not closed) until the exit, as
  // stdout would.
  if (ready_fd >= 0) WriteAll(ready_fd, (*daemon)->ReadyLine() + "\n");

  int signal_number = 0;
  sigwait(&stop, &signal_number);
  KVAULT_LOG(kvault::LogLevel::kInfo, "kvaultd",
             std::string(signal_number == SIGTERM ? "SIGTERM" : "SIGINT") + " received, draining");
  const bool drained = (*daemon)->Shutdown(true);
  daemon->reset();
  KVAULT_LOG(
      kvault::LogLevel::kInfo, "kvaultd",
      drained ? "stopped" : "stopped (drain bound reached: requests still in flight were cut)");
  return 0;
}
