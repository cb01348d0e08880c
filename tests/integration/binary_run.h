#pragma once
// Running the built binaries from integration tests: a scratch directory per test, a command run
// through the shell with stdout and stderr captured to files there, and the exit code.

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>
#include <vector>

namespace kvault::testing {

namespace fs = std::filesystem;

struct BinaryRun {
  int exit_code = -1;
  std::string out, err;
};

inline std::string Slurp(const fs::path& p) {
  std::ifstream f(p);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// Where the built binaries are: $KVAULT_BIN_DIR when set (a build carried to another machine,
// as scripts/gpu-check.sh does), else the build's own bin/ directory.
inline std::string BinDir() {
  const char* env = std::getenv("KVAULT_BIN_DIR");
  return env != nullptr && *env != '\0' ? std::string(env) : std::string(KVAULT_BIN_DIR);
}

// The number after the first `"key": ` in a JSON text, or -1.
inline double JsonNumber(const std::string& doc, const std::string& key) {
  const std::string needle = "\"" + key + "\": ";
  const size_t at = doc.find(needle);
  if (at == std::string::npos) return -1;
  return std::strtod(doc.c_str() + at + needle.size(), nullptr);
}

// Every number that follows `"key": ` in a JSON text, in document order; -1 for a value that is
// not a number (null or text: not a figure).
inline std::vector<double> AllNumbers(const std::string& doc, const std::string& key) {
  std::vector<double> out;
  const std::string needle = "\"" + key + "\": ";
  for (size_t at = doc.find(needle); at != std::string::npos; at = doc.find(needle, at + 1)) {
    const char* start = doc.c_str() + at + needle.size();
    char* end = nullptr;
    const double v = std::strtod(start, &end);
    out.push_back(end == start ? -1 : v);
  }
  return out;
}

// Expects each of `needles` in `text`; a missing one is printed with the whole text.
inline void ExpectContainsAll(const std::string& text, std::initializer_list<const char*> needles) {
  for (const char* needle : needles) {
    EXPECT_NE(text.find(needle), std::string::npos) << needle << "\n" << text;
  }
}

// True when `program` is on PATH.
inline bool Have(const char* program) {
  return std::system((std::string("command -v ") + program + " >/dev/null 2>&1").c_str()) == 0;
}

// A fixture with a fresh directory under the system temp dir, removed after the test, and Run()
// for `KVAULT_BIN_DIR/<binary> <args>` executed from inside that directory.
class BinaryTest : public ::testing::Test {
 protected:
  explicit BinaryTest(std::string binary) : binary_(std::move(binary)) {}
  void SetUp() override {
    // A parameterized test's name holds a '/' ("Test/Param"): flatten it, so that TearDown
    // removes the whole directory rather than its last component.
    std::string test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::replace(test.begin(), test.end(), '/', '_');
    dir_ = fs::temp_directory_path() / (binary_ + "_" + std::to_string(::getpid()) + "_" + test);
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  BinaryRun Run(const std::string& args) const {
    const std::string cmd = "cd '" + dir_.string() + "' && " + BinDir() + "/" + binary_ + " " +
                            args + " >" + (dir_ / "out").string() + " 2>" + (dir_ / "err").string();
    const int rc = std::system(cmd.c_str());
    return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, Slurp(dir_ / "out"), Slurp(dir_ / "err")};
  }

  const std::string binary_;
  fs::path dir_;
};

}  // namespace kvault::testing
