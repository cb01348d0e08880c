// Runs the real `kvault-bench codec` on a small shape: its table, its JSON, and its refusals.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace {

namespace fs = std::filesystem;

struct BenchRun {
  int exit_code = -1;
  std::string out, err;
};

std::string Slurp(const fs::path& p) {
  std::ifstream f(p);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

class KvaultBenchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("kvault_bench_test_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  BenchRun Run(const std::string& args) {
    const std::string cmd = std::string(KVAULT_BIN_DIR) + "/kvault-bench " + args + " >" +
                            (dir_ / "out").string() + " 2>" + (dir_ / "err").string();
    const int rc = std::system(cmd.c_str());
    return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, Slurp(dir_ / "out"), Slurp(dir_ / "err")};
  }

  fs::path dir_;
};

TEST_F(KvaultBenchTest, SmallRunPrintsTableAndJson) {
  const fs::path json = dir_ / "codec.json";
  BenchRun r =
      Run("codec --layers 2 --tokens 96 --block-tokens 32 --reps 1 --codecs "
          "'raw/fp8/k=int4,v=int2' --json " +
          json.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("enc GB/s"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("single-thread memcpy"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Plain-Gaussian control"), std::string::npos) << r.out;
  const std::string doc = Slurp(json);
  for (const char* field : {"\"bits_per_element\"", "\"encode_gbps\"", "\"decode_vs_baseline\"",
                            "\"attn_kl_mean\"", "\"top1_agreement\"", "\"k_sqnr_db\"",
                            "\"spec\": \"k=int4:g=64,v=int2:g=64\"", "\"gaussian\""}) {
    EXPECT_NE(doc.find(field), std::string::npos) << field << "\n" << doc;
  }
  // raw is lossless: its SQNR is the exact-match sentinel and its KL is zero.
  EXPECT_NE(doc.find("\"k_sqnr_db\": 999"), std::string::npos) << doc;
}

TEST_F(KvaultBenchTest, RejectsBadArgumentsWithExitCode2) {
  const char* cases[][2] = {
      {"codec --device tpu", "--device"},     {"codec --codecs int5", "int5"},
      {"codec --tokens 0", "--tokens"},       {"codec --frobnicate 1", "unknown option"},
      {"codec extra", "unexpected argument"}, {"nosuchworkload", "unknown workload"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c[0]);
    BenchRun r = Run(c[0]);
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_NE(r.err.find(c[1]), std::string::npos) << r.err;
  }
  BenchRun help = Run("codec --help");  // positive control
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("--device"), std::string::npos);
}

}  // namespace
