// Runs the real `kvault-bench storage` with a tiny configuration (a few seconds): its table, its
// JSON, its targets, the scratch directory it must remove, and its refusals of bad usage.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "binary_run.h"

namespace {

namespace fs = std::filesystem;
using kvault::testing::BinaryRun;
using kvault::testing::Slurp;

double NumberAfter(const std::string& doc, const std::string& key) {
  return kvault::testing::JsonNumber(doc, key);
}

int Count(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

bool HaveFio() { return std::system("command -v fio >/dev/null 2>&1") == 0; }

class KvaultBenchStorageTest : public kvault::testing::BinaryTest {
 protected:
  KvaultBenchStorageTest() : BinaryTest("kvault-bench") {}
  void SetUp() override {
    BinaryTest::SetUp();
    fs::create_directories(dir_ / "scratch");
  }
};

TEST_F(KvaultBenchStorageTest, TinyRunPrintsTableJsonAndTargets) {
  const fs::path json = dir_ / "storage.json";
  // LRU: the bench's output does not depend on the policy, and LRU is always there.
  BinaryRun r =
      Run("storage --policy lru --sizes 64K,1M --reps 2 --host-bytes 4M --host-capacity 16M "
          "--nvme-bytes 8M --fio-bytes 8M --fio-seconds 1 --read-slices 2 --chain-keys 100 "
          "--chain-lookups 50 "
          "--dir " +
          (dir_ / "scratch").string() + " --json " + json.string());
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  for (const char* text :
       {"tier", "block", "op/s", "p50 us", "p99 us", "baseline", "x base", "memcpy", "lookup",
        "chain lookup, 100 keys all in host, 100 lookups in 2 rounds", "VmRSS",
        "Targets (issue 3):", "host put 1M >= 0.5x memcpy", "host read 1M >= 0.5x memcpy",
        "nvme sustained write 1M >= 0.6x fio seq write",
        "nvme random read 1M >= 0.6x fio random read", "chain lookup (100 keys) p99 <= 50 us",
        "host tier peak RSS <= cap + 64 MiB + 128 B/block"}) {
    EXPECT_NE(r.out.find(text), std::string::npos) << text << "\n" << r.out;
  }
  const std::string doc = Slurp(json);
  for (const char* field :
       {"\"benchmark\": \"storage\"", "\"filesystem\"", "\"direct_io\"", "\"put_vs_memcpy\"",
        "\"read_vs_memcpy\"", "\"lookup\"", "\"ops_per_s\"", "\"p50_us\"", "\"p99_us\"",
        "\"chain_lookup\"", "\"leased\"", "\"rss_bytes\"", "\"hwm_bytes\"", "\"bound_bytes\"",
        "\"indexed_blocks\"", "\"targets\"", "\"pass\""}) {
    EXPECT_NE(doc.find(field), std::string::npos) << field << "\n" << doc;
  }
  // The chain lookup's figures are medians over --reps rounds, each round's p99 listed.
  const size_t rounds = doc.find("\"round_p99_us\": [");
  ASSERT_NE(rounds, std::string::npos) << doc;
  const std::string list = doc.substr(rounds, doc.find(']', rounds) - rounds);
  EXPECT_EQ(std::count(list.begin(), list.end(), ','), 1) << list;
  EXPECT_GT(NumberAfter(doc, "memcpy_gbps"), 0) << doc;
  EXPECT_GT(NumberAfter(doc, "put_gbps"), 0) << doc;
  EXPECT_GT(NumberAfter(doc, "rss_bytes"), 0) << doc;
#ifdef KVAULT_HAVE_ROCKSDB
  for (const char* field : {"\"sustained_put_gbps\"", "\"flush_sync_s\"", "\"recover_ms\"",
                            "\"write_vs_fio\"", "\"read_vs_fio\""}) {
    EXPECT_NE(doc.find(field), std::string::npos) << field << "\n" << doc;
  }
  EXPECT_GT(NumberAfter(doc, "sustained_put_gbps"), 0) << doc;
  EXPECT_NE(r.out.find("nvme tier (layout blob files"), std::string::npos) << r.out;
  if (HaveFio()) {
    EXPECT_NE(r.out.find("fio seq write 1M"), std::string::npos) << r.out;
    EXPECT_GT(NumberAfter(doc, "seq_write_gbps"), 0) << doc;
    EXPECT_GT(NumberAfter(doc, "rand_read_gbps"), 0) << doc;
    // The reads ran in 2 slices, each between two fio random reads.
    EXPECT_NE(r.out.find("nvme reads paired with fio random reads"), std::string::npos) << r.out;
    const size_t slices = doc.find("\"read_slices\": [");
    ASSERT_NE(slices, std::string::npos) << doc;
    const std::string first = doc.substr(slices, doc.find(']', slices) - slices);
    EXPECT_EQ(Count(first, "\"fio_after_gbps\""), 2) << first;
    EXPECT_GT(NumberAfter(first, "fio_before_gbps"), 0) << first;
    EXPECT_GT(NumberAfter(doc, "read_base_gbps"), 0) << doc;
  } else {
    EXPECT_NE(r.out.find("no fio baseline"), std::string::npos) << r.out;
  }
#else
  EXPECT_NE(r.out.find("nvme tier not measured"), std::string::npos) << r.out;
#endif
  // The scratch directory is gone: only what the test made remains.
  EXPECT_TRUE(fs::is_empty(dir_ / "scratch"));
}

TEST_F(KvaultBenchStorageTest, RejectsBadUsageWithExitCode2) {
  const char* cases[][2] = {
      {"storage --sizes 0", "--sizes"},
      {"storage --sizes 64Q", "--sizes"},
      {"storage --tiers disk", "--tiers"},
      {"storage --tiers host,host", "--tiers names host twice"},
      {"storage --tiers nvme,host,nvme", "--tiers names nvme twice"},
      {"storage --nvme-layout tree", "--nvme-layout"},
      {"storage --nvme-gc-age-cutoff 2", "--nvme-gc-age-cutoff"},
      {"storage --nvme-gc-min-garbage 1.5", "--nvme-gc-min-garbage"},
      {"storage --nvme-gc-min-garbage x", "--nvme-gc-min-garbage"},
      {"storage --policy nosuch", "--policy"},
      {"storage --reps 0", "--reps"},
      {"storage --read-slices 65", "--read-slices"},
      {"storage --read-slices -1", "--read-slices"},
      {"storage --host-bytes 64M --host-capacity 32M", "--host-capacity"},
      {"storage --frobnicate 1", "unknown option"},
      {"storage extra", "unexpected argument"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c[0]);
    BinaryRun r = Run(c[0]);
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_NE(r.err.find(c[1]), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("kvault-bench storage:"), std::string::npos) << r.err;
  }
  // Positive control: both tiers, in either order, pass the --tiers check (the run is then
  // refused by a later one).
  BinaryRun tiers = Run("storage --tiers nvme,host --host-bytes 64M --host-capacity 32M");
  EXPECT_EQ(tiers.exit_code, 2);
  EXPECT_NE(tiers.err.find("--host-capacity must be at least"), std::string::npos) << tiers.err;
  BinaryRun help = Run("storage --help");  // positive control
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("--nvme-bytes"), std::string::npos);
  EXPECT_NE(help.out.find("--host-capacity"), std::string::npos);
  BinaryRun usage = Run("--help");
  EXPECT_NE(usage.out.find("kvault-bench storage"), std::string::npos) << usage.out;
}

}  // namespace
