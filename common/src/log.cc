#include "kvault/common/log.h"

#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <string>

namespace kvault {
namespace {

constexpr std::array<std::string_view, 6> kNames = {"trace", "debug", "info",
                                                    "warn",  "error", "off"};

std::atomic<uint8_t> g_level{static_cast<uint8_t>(LogLevel::kInfo)};
std::atomic<int> g_fd{2};

// The per-second budget of lines (guarded by g_budget_mu).
std::mutex g_budget_mu;
int64_t g_second = -1;
uint32_t g_written = 0;
uint64_t g_dropped = 0;

void WriteAll(int fd, const std::string& line) {
  size_t at = 0;
  while (at < line.size()) {
    const ssize_t n = ::write(fd, line.data() + at, line.size() - at);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // nowhere to write: the line is lost, nothing else is
    at += static_cast<size_t>(n);
  }
}

// "2026-11-26T23:40:01.123Z" (UTC).
std::string Timestamp(std::chrono::system_clock::time_point now) {
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  const std::time_t seconds = static_cast<std::time_t>(ms / 1000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char buf[32];
  const size_t n = std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &utc);
  char out[48];
  std::snprintf(out, sizeof(out), "%.*s.%03dZ", static_cast<int>(n), buf,
                static_cast<int>(ms % 1000));
  return out;
}

std::string Line(std::string_view stamp, LogLevel level, std::string_view component,
                 std::string_view message) {
  std::string line;
  line.reserve(stamp.size() + component.size() + message.size() + 12);
  line.append(stamp).append(" ").append(LogLevelName(level)).append(" ");
  line.append(component).append(": ");
  for (char c : message) line.push_back(c == '\n' || c == '\r' ? ' ' : c);
  line.push_back('\n');
  return line;
}

}  // namespace

Result<LogLevel> ParseLogLevel(std::string_view name) {
  for (size_t i = 0; i < kNames.size(); ++i) {
    if (kNames[i] == name) return static_cast<LogLevel>(i);
  }
  return Status::InvalidArgument("unknown log level '" + std::string(name) +
                                 "' (trace, debug, info, warn, error, off)");
}

std::string_view LogLevelName(LogLevel level) {
  const size_t i = static_cast<size_t>(level);
  return i < kNames.size() ? kNames[i] : "?";
}

void SetLogLevel(LogLevel level) { g_level.store(static_cast<uint8_t>(level)); }

LogLevel GetLogLevel() { return static_cast<LogLevel>(g_level.load()); }

bool LogEnabled(LogLevel level) {
  return level != LogLevel::kOff && static_cast<uint8_t>(level) >= g_level.load();
}

void SetLogFd(int fd) { g_fd.store(fd); }

std::string LogSafe(std::string_view text, size_t max_bytes) {
  std::string out;
  for (char c : text.substr(0, max_bytes)) out.push_back(c >= 0x20 && c < 0x7f ? c : '?');
  if (text.size() > max_bytes) out += "...";
  return out;
}

void Log(LogLevel level, std::string_view component, std::string_view message) {
  if (!LogEnabled(level)) return;
  const auto now = std::chrono::system_clock::now();
  const int64_t second =
      std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  uint64_t dropped_before = 0;
  {
    std::lock_guard<std::mutex> lock(g_budget_mu);
    if (second != g_second) {
      g_second = second;
      g_written = 0;
      dropped_before = g_dropped;
      g_dropped = 0;
    }
    if (g_written >= kLogLinesPerSecond) {
      ++g_dropped;
      return;
    }
    g_written += dropped_before > 0 ? 2 : 1;
  }
  const std::string stamp = Timestamp(now);
  const int fd = g_fd.load();
  if (dropped_before > 0) {
    WriteAll(fd, Line(stamp, LogLevel::kWarn, "log",
                      std::to_string(dropped_before) + " lines dropped (over " +
                          std::to_string(kLogLinesPerSecond) + " a second)"));
  }
  WriteAll(fd, Line(stamp, level, component, message));
}

}  // namespace kvault
