// Log lines: format, levels, one line per event, the per-second budget, and text from outside.
#include "kvault/common/log.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

namespace kvault {
namespace {

// Captures the lines written while it lives (through a pipe) and restores level and descriptor.
class CapturedLog {
 public:
  explicit CapturedLog(LogLevel level) : saved_level_(GetLogLevel()) {
    EXPECT_EQ(pipe(fds_), 0);
    SetLogFd(fds_[1]);
    SetLogLevel(level);
  }
  ~CapturedLog() {
    SetLogFd(2);
    SetLogLevel(saved_level_);
    close(fds_[0]);
    if (fds_[1] >= 0) close(fds_[1]);
  }
  // Everything written so far, split into lines (the writer side is closed first).
  std::vector<std::string> Lines() {
    SetLogFd(2);
    close(fds_[1]);
    fds_[1] = -1;
    std::string all;
    char buf[4096];
    for (ssize_t n; (n = read(fds_[0], buf, sizeof(buf))) > 0;) all.append(buf, n);
    std::vector<std::string> lines;
    size_t at = 0;
    for (size_t nl; (nl = all.find('\n', at)) != std::string::npos; at = nl + 1) {
      lines.push_back(all.substr(at, nl - at));
    }
    EXPECT_EQ(at, all.size()) << "a line without its newline";
    return lines;
  }

 private:
  int fds_[2] = {-1, -1};
  LogLevel saved_level_;
};

TEST(Log, LevelsParseByNameAndUnknownNamesAreRefused) {
  for (const char* name : {"trace", "debug", "info", "warn", "error", "off"}) {
    Result<LogLevel> level = ParseLogLevel(name);
    ASSERT_TRUE(level.ok()) << name;
    EXPECT_EQ(LogLevelName(*level), name);
  }
  Result<LogLevel> bad = ParseLogLevel("verbose");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("verbose"), std::string::npos);
}

TEST(Log, LinesBelowTheLevelAreNotWrittenAndMessagesAreNotBuilt) {
  CapturedLog log(LogLevel::kWarn);
  int built = 0;
  auto message = [&] {
    ++built;
    return std::string("built");
  };
  KVAULT_LOG(LogLevel::kInfo, "test", message());
  KVAULT_LOG(LogLevel::kWarn, "test", message());  // positive control
  KVAULT_LOG(LogLevel::kError, "test", message());
  EXPECT_EQ(built, 2);
  const std::vector<std::string> lines = log.Lines();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_NE(lines[0].find(" warn test: built"), std::string::npos) << lines[0];
  EXPECT_NE(lines[1].find(" error test: built"), std::string::npos) << lines[1];
}

TEST(Log, OffWritesNothing) {
  CapturedLog log(LogLevel::kOff);
  EXPECT_FALSE(LogEnabled(LogLevel::kError));
  Log(LogLevel::kError, "test", "not written");
  EXPECT_TRUE(log.Lines().empty());
}

TEST(Log, ALineIsATimestampLevelComponentAndOneLineOfMessage) {
  CapturedLog log(LogLevel::kTrace);
  Log(LogLevel::kInfo, "nvme", "first\nsecond\rthird");
  const std::vector<std::string> lines = log.Lines();
  ASSERT_EQ(lines.size(), 1u);
  const std::string& line = lines[0];
  // 2026-11-26T23:40:01.123Z
  ASSERT_GE(line.size(), 25u);
  EXPECT_EQ(line[4], '-');
  EXPECT_EQ(line[10], 'T');
  EXPECT_EQ(line[19], '.');
  EXPECT_EQ(line[23], 'Z');
  EXPECT_EQ(line.substr(24), " info nvme: first second third");
}

TEST(Log, OverTheBudgetLinesAreDroppedAndCountedOnce) {
  CapturedLog log(LogLevel::kInfo);
  // Wait for the start of a second so that the whole burst lands in one budget window.
  const auto second = [] {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  };
  const auto start = second();
  while (second() == start) usleep(1000);
  const uint32_t burst = kLogLinesPerSecond + 50;
  for (uint32_t i = 0; i < burst; ++i) Log(LogLevel::kInfo, "flood", std::to_string(i));
  const auto burst_second = second();
  while (second() == burst_second) usleep(1000);
  Log(LogLevel::kInfo, "after", "next second");
  const std::vector<std::string> lines = log.Lines();
  ASSERT_EQ(lines.size(), kLogLinesPerSecond + 2u);
  EXPECT_NE(lines[kLogLinesPerSecond].find("warn log: 50 lines dropped"), std::string::npos)
      << lines[kLogLinesPerSecond];
  EXPECT_NE(lines.back().find("after: next second"), std::string::npos) << lines.back();
}

TEST(Log, TextFromOutsideIsMadePrintableAndBounded) {
  EXPECT_EQ(LogSafe("team-a"), "team-a");
  EXPECT_EQ(LogSafe(std::string("a\nb\x01\xff", 5)), "a?b??");
  EXPECT_EQ(LogSafe(std::string(100, 'x'), 8), "xxxxxxxx...");
}

}  // namespace
}  // namespace kvault
