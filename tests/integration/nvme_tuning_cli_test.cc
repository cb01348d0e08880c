// The nvme_tuning tool as a user runs it: --help, refusals of bad usage with exit code 2, and a
// tiny real measurement that prints its table.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "binary_run.h"

namespace {

namespace fs = std::filesystem;
using kvault::testing::BinaryRun;

class NvmeTuningCliTest : public kvault::testing::BinaryTest {
 protected:
  NvmeTuningCliTest() : BinaryTest("nvme_tuning") {}
  void SetUp() override {
    if (!fs::exists(fs::path(KVAULT_BIN_DIR) / "nvme_tuning")) {
      GTEST_SKIP() << "nvme_tuning is not built (no RocksDB in this build)";
    }
    BinaryTest::SetUp();
  }
};

TEST_F(NvmeTuningCliTest, HelpDocumentsEveryOption) {
  BinaryRun r = Run("--help");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* flag : {"--dir", "--capacity-mib", "--churn-mib", "--sizes", "--configs",
                           "--read-seconds", "--repeat", "--json", "--no-fio"}) {
    EXPECT_NE(r.out.find(flag), std::string::npos) << flag;
  }
}

TEST_F(NvmeTuningCliTest, BadUsageIsRefusedWithExitCode2) {
  const std::string dir = " --dir " + (dir_ / "db").string();
  for (const auto& [args, says] : std::initializer_list<std::pair<std::string, std::string>>{
           {"", "--dir DIR is required"},
           {dir + " --sizes 5", "needs a k or m suffix"},
           {dir + " --configs foo", "unknown configuration 'foo'"},
           {dir + " --capacity-mib abc", "--capacity-mib"},
           {dir + " --nope", "--nope"}}) {
    BinaryRun r = Run(args);
    EXPECT_EQ(r.exit_code, 2) << args;
    EXPECT_NE(r.err.find(says), std::string::npos) << args << ": " << r.err;
  }
}

TEST_F(NvmeTuningCliTest, TinyMeasurementPrintsItsTable) {
  BinaryRun r = Run("--dir " + (dir_ / "db").string() +
                    " --capacity-mib 16 --churn-mib 8 --sizes 256k --configs blob --read-seconds 1"
                    " --no-fio --json " + (dir_ / "t.json").string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("blob"), std::string::npos) << r.out;
  EXPECT_NE(kvault::testing::Slurp(dir_ / "t.json").find("\"churn_mibps\""), std::string::npos);
}

}  // namespace
