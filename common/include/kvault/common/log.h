#pragma once
// Log: kvault's diagnostic lines, one per event, on stderr:
//
//   2026-11-26T23:40:01.123Z warn control: 127.0.0.1:51234: frame refused (malformed): bad magic
//
// Levels trace < debug < info < warn < error; `off` writes nothing. The level is process-wide
// (kvaultd sets it from its log_level option; the default is info). Each line is written with one
// write(2), so lines of different threads never interleave. At most kLogLinesPerSecond lines are
// written per second; the rest are counted and one line reports how many were dropped when
// writing resumes, so a flood of bad clients cannot fill a disk with log.
//
// Never log secrets or tenant data: tokens, token hashes, proofs, nonces, block keys, token ids.
//
// Thread-safety: every function is safe from any thread.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "kvault/common/result.h"

namespace kvault {

enum class LogLevel : uint8_t { kTrace, kDebug, kInfo, kWarn, kError, kOff };

inline constexpr uint32_t kLogLinesPerSecond = 200;

// "trace", "debug", "info", "warn", "error", "off"; InvalidArgument for anything else.
Result<LogLevel> ParseLogLevel(std::string_view name);
std::string_view LogLevelName(LogLevel level);

void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
// Whether a line of `level` would be written (build messages only when it is).
bool LogEnabled(LogLevel level);

// Writes one line (a newline in `message` is written as a space). `component` names the part
// ("control", "store", "nvme"). Precondition: level != kOff.
void Log(LogLevel level, std::string_view component, std::string_view message);

// Where lines go: a file descriptor (default 2, stderr). For tests.
void SetLogFd(int fd);

// Text from outside (a tenant name a client sent) made fit for a log line: bytes outside
// printable ASCII become '?', and past `max_bytes` it is cut with "...".
std::string LogSafe(std::string_view text, size_t max_bytes = 64);

}  // namespace kvault

// Evaluates `message` (anything convertible to std::string_view) only when `level` is enabled.
#define KVAULT_LOG(level, component, message)                                \
  do {                                                                       \
    if (::kvault::LogEnabled(level)) ::kvault::Log(level, component, message); \
  } while (false)
