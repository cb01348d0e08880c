// Runs the real `kvault-bench codec` on a small shape: its table, its JSON, and its refusals.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "binary_run.h"

namespace {

namespace fs = std::filesystem;
using kvault::testing::BinaryRun;
using kvault::testing::Slurp;

class KvaultBenchTest : public kvault::testing::BinaryTest {
 protected:
  KvaultBenchTest() : BinaryTest("kvault-bench") {}
};

TEST_F(KvaultBenchTest, SmallRunPrintsTableAndJson) {
  const fs::path json = dir_ / "codec.json";
  BinaryRun r =
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
      {"codec --device tpu", "--device"},
      {"codec --cuda-blocks 8", "needs --device cuda"},
      {"codec --codecs int5", "int5"},
      {"codec --tokens 0", "--tokens"},
      {"codec --frobnicate 1", "unknown option"},
      {"codec extra", "unexpected argument"},
      {"nosuchworkload", "unknown workload"},
      // Fewer tokens than a block: no whole block, placeholder figures.
      {"codec --tokens 1 --block-tokens 256", "must be at least --block-tokens"},
      {"codec --block-tokens 8192 --tokens 16", "must be at least --block-tokens"},
      // About 5 TiB of KV: more than any machine the tests run on.
      {"codec --tokens 1048576 --layers 128", "GiB of memory; this machine has"},
      // A --json file that cannot be written is refused before the run, in every mode.
      {"codec --json /nonexistent-dir/x.json", "no directory '/nonexistent-dir'"},
      {"codec --json /tmp", "names a directory"},
      {"storage --json /nonexistent-dir/x.json", "no directory '/nonexistent-dir'"},
      {"store --json /nonexistent-dir/x.json", "no directory '/nonexistent-dir'"},
      {"paged --json /nonexistent-dir/x.json", "no directory '/nonexistent-dir'"},
      {"trace --trace x.jsonl --capacity-blocks 1 --json /nonexistent-dir/x.json",
       "no directory '/nonexistent-dir'"},
      {"compare --trace x.jsonl --json /nonexistent-dir/x.json", "no directory '/nonexistent-dir'"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c[0]);
    BinaryRun r = Run(c[0]);
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_NE(r.err.find(c[1]), std::string::npos) << r.err;
  }
  BinaryRun help = Run("codec --help");  // positive control
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("--device"), std::string::npos);
  // Positive control: exactly one block of tokens is enough.
  BinaryRun one = Run("codec --layers 1 --tokens 32 --block-tokens 32 --reps 1 --codecs raw");
  EXPECT_EQ(one.exit_code, 0) << one.err;
}

}  // namespace
