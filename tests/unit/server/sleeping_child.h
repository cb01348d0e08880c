#pragma once
// SleepingChild: a process forked from the test that does nothing until it is killed, so that
// its memory (a copy of the test's at the fork) can be handed over and read. Killed and reaped
// on destruction, whatever the test's outcome.

#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

namespace kvault::server {

class SleepingChild {
 public:
  SleepingChild() : pid_(fork()) {
    if (pid_ == 0) {
      for (;;) pause();
    }
  }
  ~SleepingChild() {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  SleepingChild(const SleepingChild&) = delete;
  SleepingChild& operator=(const SleepingChild&) = delete;

  pid_t pid() const { return pid_; }
  // Its memory file, /proc/<pid>/mem.
  std::string MemoryFile() const { return "/proc/" + std::to_string(pid_) + "/mem"; }

 private:
  const pid_t pid_;
};

}  // namespace kvault::server
