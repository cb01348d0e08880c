#pragma once
// Cleanup when kvault-bench is stopped by SIGTERM, SIGINT or SIGHUP: the child processes it
// started are killed (SIGKILL) and reaped, the scratch directories it registered are removed, and
// the process then dies of the same signal. InstallSignalCleanup blocks those signals in every
// thread and takes them on a thread of its own, so the cleanup is ordinary code (no
// async-signal-safety needed) and no benchmark loop has to poll a flag. Thread-safe.

#include <sys/types.h>

#include <string>

namespace kvault::bench {

// Called by main() before any thread starts (threads inherit the blocked signals); once.
void InstallSignalCleanup();

// `path` (a directory) is removed, with everything in it, if a signal stops the run. Registering
// a path twice registers it once; unregistering an unknown path does nothing.
void RegisterScratchDir(const std::string& path);
void UnregisterScratchDir(const std::string& path);

// `pid` (a child of this process, not yet reaped) is killed and reaped if a signal stops the run.
// Unregister it when it has been reaped, before its pid can be reused.
void RegisterChild(pid_t pid);
void UnregisterChild(pid_t pid);

// Unblocks the signals InstallSignalCleanup blocked, so that a child started from this process
// gets its own default handling. Async-signal-safe: for a child between fork and exec.
void UnblockCleanupSignals();

}  // namespace kvault::bench
