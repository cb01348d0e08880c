// Runs the real `kvault-bench trace` on the Mooncake synthetic trace: the LRU replay through the
// BlockStore and the Belady simulation must reproduce the independent reference figures of
// shared/traces/README.md, and bad usage is refused with exit code 2.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "binary_run.h"

namespace {

namespace fs = std::filesystem;
using kvault::testing::BinaryRun;
using kvault::testing::JsonNumber;
using kvault::testing::Slurp;

// The trace lives beside the repository (../shared/traces); skip visibly where it is absent.
fs::path SyntheticTrace() {
  for (fs::path p : {fs::path(KVAULT_SOURCE_DIR) / "bench" / "traces",
                     fs::path(KVAULT_SOURCE_DIR) / ".." / "shared" / "traces"}) {
    if (fs::exists(p / "synthetic_trace.jsonl")) return p / "synthetic_trace.jsonl";
  }
  return {};
}

class KvaultBenchTraceTest : public kvault::testing::BinaryTest {
 protected:
  KvaultBenchTraceTest() : BinaryTest("kvault-bench") {}
  BinaryRun Trace(const std::string& args) const { return Run("trace " + args); }
};

TEST_F(KvaultBenchTraceTest, ReproducesTheReferenceLruAndBeladyFigures) {
  const fs::path trace = SyntheticTrace();
  if (trace.empty()) GTEST_SKIP() << "bench/traces/synthetic_trace.jsonl is missing";
  const fs::path json = dir_ / "trace.json";
  BinaryRun r =
      Trace("--trace " + trace.string() + " --capacity-fraction 0.1 --json " + json.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("belady (offline)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("lru (store)"), std::string::npos) << r.out;
  const std::string doc = Slurp(json);
  EXPECT_EQ(JsonNumber(doc, "capacity_blocks"), 4392) << doc;
  // shared/traces/README.md: synthetic at 10% is LRU 26.0%, Belady 50.6%.
  EXPECT_NEAR(JsonNumber(doc, "lru_hit_ratio"), 0.260, 0.0005) << doc;
  EXPECT_NEAR(JsonNumber(doc, "belady_hit_ratio"), 0.506, 0.0005) << doc;
  const double policy = JsonNumber(doc, "hit_ratio");
  EXPECT_GE(policy, 0.0);
  EXPECT_LE(policy, JsonNumber(doc, "belady_hit_ratio") + 1e-9) << "nothing beats the optimum";
}

TEST_F(KvaultBenchTraceTest, RealPayloadsMoveThroughHostAndNvme) {
  const fs::path trace = SyntheticTrace();
  if (trace.empty()) GTEST_SKIP() << "bench/traces/synthetic_trace.jsonl is missing";
  const fs::path json = dir_ / "tiers.json";
  BinaryRun r = Trace("--trace " + trace.string() +
                      " --capacity-blocks 200 --tiers host,nvme --block-bytes 16384 --policy lru"
                      " --dir " +
                      (dir_ / "db").string() + " --json " + json.string());
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  const std::string doc = Slurp(json);
  EXPECT_GT(JsonNumber(doc, "nvme_hits"), 0) << doc;
  EXPECT_GT(JsonNumber(doc, "demotions"), 0) << doc;
  EXPECT_GT(JsonNumber(doc, "bytes_read"), 0) << doc;
  // With a colder tier behind it, the store hits at least as often as host-only LRU would.
  EXPECT_GE(JsonNumber(doc, "hit_ratio"), 0.0);
  // Each replay's database directory is removed when the replay ends.
  ASSERT_TRUE(fs::exists(dir_ / "db"));
  EXPECT_TRUE(fs::is_empty(dir_ / "db")) << "a replay left its nvme database behind";
}

TEST_F(KvaultBenchTraceTest, BadUsageIsRefusedClearly) {
  BinaryRun none = Trace("--capacity-blocks 10");
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_NE(none.err.find("--trace"), std::string::npos) << none.err;
  BinaryRun both = Trace("--trace x --capacity-blocks 10 --capacity-fraction 0.1");
  EXPECT_EQ(both.exit_code, 2);
  EXPECT_NE(both.err.find("exactly one"), std::string::npos) << both.err;
  BinaryRun policy = Trace("--trace x --capacity-blocks 10 --policy nope");
  EXPECT_EQ(policy.exit_code, 2);
  EXPECT_NE(policy.err.find("lru"), std::string::npos) << "lists the accepted policies";
  const fs::path bad = dir_ / "bad.jsonl";
  std::ofstream(bad) << "{\"timestamp\": 1, \"hash_ids\": [1, 2]}\n{\"timestamp\": oops}\n";
  BinaryRun parse = Trace("--trace " + bad.string() + " --capacity-blocks 10");
  EXPECT_EQ(parse.exit_code, 2);
  EXPECT_NE(parse.err.find(":2:"), std::string::npos) << "names the line: " << parse.err;
  // A host tier of 2^30 blocks of 64 MiB (64 PiB) is refused before anything is mapped; one of
  // 10 MiB passes that check (and fails on the missing trace).
  BinaryRun huge = Trace("--trace x --capacity-blocks 1073741824 --block-bytes 67108864");
  EXPECT_EQ(huge.exit_code, 2);
  EXPECT_NE(huge.err.find("GiB of memory; this machine has"), std::string::npos) << huge.err;
  BinaryRun small = Trace("--trace " + (dir_ / "missing.jsonl").string() +
                          " --capacity-blocks 10 --block-bytes 1048576");
  EXPECT_EQ(small.exit_code, 2);
  EXPECT_EQ(small.err.find("of memory"), std::string::npos) << small.err;
  EXPECT_NE(small.err.find("missing.jsonl"), std::string::npos) << small.err;
  // A trace with no block to replay (an empty file, or requests without hash_ids) is refused,
  // not replayed into a table of zeros.
  const fs::path empty = dir_ / "empty.jsonl";
  std::ofstream(empty) << "";
  BinaryRun nothing = Trace("--trace " + empty.string() + " --capacity-blocks 10");
  EXPECT_EQ(nothing.exit_code, 2);
  EXPECT_NE(nothing.err.find("no request with a block"), std::string::npos) << nothing.err;
  // Options of the nvme tier without one are refused, not ignored; with it, they pass this check
  // (and the missing trace fails).
  for (const std::string nvme_only : {"--nvme-capacity-blocks 100", "--dir /tmp"}) {
    BinaryRun host_only = Trace("--trace x --capacity-blocks 10 " + nvme_only);
    EXPECT_EQ(host_only.exit_code, 2);
    EXPECT_NE(host_only.err.find("needs --tiers host,nvme"), std::string::npos) << host_only.err;
    BinaryRun with_nvme = Trace("--trace " + (dir_ / "missing.jsonl").string() +
                                " --capacity-blocks 10 --tiers host,nvme " + nvme_only);
    EXPECT_EQ(with_nvme.err.find("needs --tiers"), std::string::npos) << with_nvme.err;
  }
  BinaryRun help = Trace("--help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("--capacity-fraction"), std::string::npos);
}

}  // namespace
