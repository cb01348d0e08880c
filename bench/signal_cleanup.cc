// Cleanup on SIGTERM / SIGINT / SIGHUP (signal_cleanup.h).
#include "signal_cleanup.h"

#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <set>
#include <thread>

namespace kvault::bench {
namespace {

struct Registry {
  std::mutex mu;
  std::set<std::string> dirs;  // guarded by mu
  std::set<pid_t> children;    // guarded by mu
};

Registry& TheRegistry() {
  static Registry* registry = new Registry;  // never destroyed: the cleanup thread outlives main
  return *registry;
}

sigset_t CleanupSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  return set;
}

[[noreturn]] void WaitAndCleanUp() {
  const sigset_t set = CleanupSignals();
  int sig = 0;
  while (::sigwait(&set, &sig) != 0) {
  }
  Registry& r = TheRegistry();
  r.mu.lock();  // never unlocked: nothing registers or unregisters once the cleanup has begun
  for (pid_t pid : r.children) ::kill(pid, SIGKILL);
  for (pid_t pid : r.children) {
    while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  for (const std::string& dir : r.dirs) {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  std::fprintf(stderr,
               "kvault-bench: stopped by signal %d (%s); %zu child process(es) killed, %zu scratch "
               "director%s removed\n",
               sig, ::strsignal(sig), r.children.size(), r.dirs.size(),
               r.dirs.size() == 1 ? "y" : "ies");
  std::fflush(stderr);
  // Die of the same signal, so that the parent sees how the run ended.
  ::signal(sig, SIG_DFL);
  sigset_t one;
  sigemptyset(&one);
  sigaddset(&one, sig);
  ::pthread_sigmask(SIG_UNBLOCK, &one, nullptr);
  ::raise(sig);
  ::_exit(128 + sig);
}

}  // namespace

void InstallSignalCleanup() {
  const sigset_t set = CleanupSignals();
  ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
  TheRegistry();
  std::thread(WaitAndCleanUp).detach();
}

void RegisterScratchDir(const std::string& path) {
  Registry& r = TheRegistry();
  std::lock_guard<std::mutex> lock(r.mu);
  r.dirs.insert(path);
}

void UnregisterScratchDir(const std::string& path) {
  Registry& r = TheRegistry();
  std::lock_guard<std::mutex> lock(r.mu);
  r.dirs.erase(path);
}

void RegisterChild(pid_t pid) {
  Registry& r = TheRegistry();
  std::lock_guard<std::mutex> lock(r.mu);
  r.children.insert(pid);
}

void UnregisterChild(pid_t pid) {
  Registry& r = TheRegistry();
  std::lock_guard<std::mutex> lock(r.mu);
  r.children.erase(pid);
}

void UnblockCleanupSignals() {
  const sigset_t set = CleanupSignals();
  ::pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
}

}  // namespace kvault::bench
