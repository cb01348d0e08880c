// kvaultd: the kvault daemon (DESIGN.md §8). `kvaultd --help` documents every option.
//
// Starts a Daemon from defaults < --config FILE < flags, prints one line
// "kvaultd ready control=HOST:PORT http=HOST:PORT ..." on stdout, then serves until SIGTERM or
// SIGINT: it then drains (in-flight requests finish within limits.drain_timeout), closes the store
// and exits 0. Exit codes: 0 clean stop, 1 failed to start, 2 bad usage.

#include <signal.h>

#include <cstdio>
#include <string>
#include <vector>

#include "config/config_loader.h"
#include "kvault/common/log.h"
#include "daemon/daemon.h"

int main(int argc, char** argv) {
  using namespace kvault::server;
  const std::vector<std::string> args(argv + 1, argv + argc);
  kvault::Result<DaemonInvocation> invocation = LoadDaemonConfig(args);
  if (!invocation.ok()) {
    std::fprintf(stderr, "kvaultd: %s\n(kvaultd --help lists every option)\n",
                 invocation.status().ToString().c_str());
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

  // Block the stop signals before any thread starts, so every thread inherits the mask and
  // sigwait below is the one place they arrive.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  signal(SIGPIPE, SIG_IGN);

  // The options accept only the level names, so this parses.
  const kvault::Result<kvault::LogLevel> level = kvault::ParseLogLevel(invocation->config.log_level);
  kvault::SetLogLevel(level.ok() ? *level : kvault::LogLevel::kInfo);
  kvault::Result<std::unique_ptr<Daemon>> daemon = Daemon::Start(invocation->config);
  if (!daemon.ok()) {
    std::fprintf(stderr, "kvaultd: cannot start: %s\n", daemon.status().ToString().c_str());
    return 1;
  }
  std::printf("%s\n", (*daemon)->ReadyLine().c_str());
  std::fflush(stdout);

  int signal_number = 0;
  sigwait(&stop, &signal_number);
  KVAULT_LOG(kvault::LogLevel::kInfo, "kvaultd",
             std::string(signal_number == SIGTERM ? "SIGTERM" : "SIGINT") + " received, draining");
  const bool drained = (*daemon)->Shutdown(true);
  daemon->reset();
  KVAULT_LOG(kvault::LogLevel::kInfo, "kvaultd",
             drained ? "stopped" : "stopped (drain bound reached: requests still in flight were cut)");
  return 0;
}
