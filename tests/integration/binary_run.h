#pragma once
// Running the built binaries from integration tests: a scratch directory per test, a command run
// through the shell with stdout and stderr captured to files there, and the exit code.

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

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

// The number after the first `"key": ` in a JSON text, or -1.
inline double JsonNumber(const std::string& doc, const std::string& key) {
  const std::string needle = "\"" + key + "\": ";
  const size_t at = doc.find(needle);
  if (at == std::string::npos) return -1;
  return std::strtod(doc.c_str() + at + needle.size(), nullptr);
}

// A fixture with a fresh directory under the system temp dir, removed after the test, and Run()
// for `KVAULT_BIN_DIR/<binary> <args>` executed from inside that directory.
class BinaryTest : public ::testing::Test {
 protected:
  explicit BinaryTest(std::string binary) : binary_(std::move(binary)) {}
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           (binary_ + "_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  BinaryRun Run(const std::string& args) const {
    const std::string cmd = "cd '" + dir_.string() + "' && " + std::string(KVAULT_BIN_DIR) + "/" +
                            binary_ + " " + args + " >" + (dir_ / "out").string() + " 2>" +
                            (dir_ / "err").string();
    const int rc = std::system(cmd.c_str());
    return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, Slurp(dir_ / "out"), Slurp(dir_ / "err")};
  }

  const std::string binary_;
  fs::path dir_;
};

}  // namespace kvault::testing
