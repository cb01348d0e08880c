// kvaultd's Prometheus metrics: the DESIGN.md §11 names after a refresh from a real BlockStore,
// counter semantics across refreshes, label hygiene, and `promtool check metrics` on the output.
#include "metrics/metrics.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "kvault/common/synthetic_block.h"
#include "kvault/storage/block_store.h"

namespace kvault::server {
namespace {

namespace fs = std::filesystem;
constexpr const char* kPromtool = "/usr/bin/promtool";

BlockKey KeyOf(uint8_t i) {
  BlockKey key{};
  for (size_t b = 0; b < key.size(); ++b) key[b] = static_cast<uint8_t>(i * 31 + b * 7 + 1);
  return key;
}

std::unique_ptr<storage::BlockStore> HostStore() {
  auto host = storage::HostTier::Create({.capacity_bytes = 8 << 20, .huge_pages = false});
  if (!host.ok()) return nullptr;
  storage::StoreTiers tiers;
  tiers.host = std::move(*host);
  auto store = storage::BlockStore::Create({}, std::move(tiers));
  return store.ok() ? std::move(*store) : nullptr;
}

// The value of the series written exactly as `series` (name and labels), or -1 when absent.
double ValueOf(const std::string& text, const std::string& series) {
  size_t pos = 0;
  while ((pos = text.find(series + " ", pos)) != std::string::npos) {
    if (pos == 0 || text[pos - 1] == '\n') {
      return std::stod(text.substr(pos + series.size() + 1));
    }
    pos += series.size();
  }
  return -1;
}

// Reports by visitor what a test tells it to.
class FakeCounters {
 public:
  void operator()(storage::CounterVisitor& v) const {
    for (const auto& [tier_name, value] : counters)
      v.Counter(tier_name.first, tier_name.second, value);
    for (const auto& [tier_name, value] : gauges) v.Gauge(tier_name.first, tier_name.second, value);
  }
  std::map<std::pair<std::string, std::string>, uint64_t> counters;
  std::map<std::pair<std::string, std::string>, double> gauges;
};

// Runs `promtool check metrics` on `text`; returns its exit code and what it printed.
std::pair<int, std::string> RunPromtool(const std::string& text) {
  const fs::path file =
      fs::temp_directory_path() / ("kvault_metrics_" + std::to_string(::getpid()) + ".txt");
  std::ofstream(file) << text;
  const std::string command =
      std::string(kPromtool) + " check metrics < '" + file.string() + "' 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return {-1, "popen failed"};
  std::string output;
  char buf[512];
  while (size_t n = std::fread(buf, 1, sizeof buf, pipe)) output.append(buf, n);
  const int status = ::pclose(pipe);
  fs::remove(file);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

TEST(MetricsTest, RequestSeriesExistFromTheStart) {
  Metrics m;
  m.ObserveRequest(RequestOp::kLookup, std::chrono::microseconds(120));
  m.ObserveRequest(RequestOp::kLookup, std::chrono::milliseconds(3));
  m.CountRejected(RejectReason::kTooLarge);
  m.ConnectionOpened();
  m.ConnectionOpened();
  m.ConnectionClosed();
  m.AddInflightBytes(4096);
  const std::string text = m.Serialize();
  for (size_t i = 0; i < kRequestOpCount; ++i) {
    const std::string op(RequestOpName(static_cast<RequestOp>(i)));
    EXPECT_GE(ValueOf(text, "kvault_request_duration_seconds_count{op=\"" + op + "\"}"), 0) << op;
  }
  for (size_t i = 0; i < kRejectReasonCount; ++i) {
    const std::string reason(RejectReasonName(static_cast<RejectReason>(i)));
    EXPECT_GE(ValueOf(text, "kvault_rejected_requests_total{reason=\"" + reason + "\"}"), 0)
        << reason;
  }
  EXPECT_EQ(ValueOf(text, "kvault_request_duration_seconds_count{op=\"lookup\"}"), 2);
  EXPECT_EQ(ValueOf(text, "kvault_request_duration_seconds_bucket{op=\"lookup\",le=\"0.00025\"}"),
            1);
  EXPECT_EQ(ValueOf(text, "kvault_request_duration_seconds_count{op=\"store\"}"), 0);
  EXPECT_EQ(ValueOf(text, "kvault_rejected_requests_total{reason=\"too_large\"}"), 1);
  EXPECT_EQ(ValueOf(text, "kvault_connections"), 1);
  EXPECT_EQ(ValueOf(text, "kvault_inflight_bytes"), 4096);
  EXPECT_EQ(RequestOpName(RequestOp::kPing), "ping");
  EXPECT_EQ(RejectReasonName(RejectReason::kUnsupported), "unsupported");
}

TEST(MetricsTest, RefreshFromARealStoreGivesTheDesignNames) {
  auto store = HostStore();
  ASSERT_NE(store, nullptr);
  std::vector<BlockKey> keys = {KeyOf(1), KeyOf(2), KeyOf(3)};
  uint64_t stored = 0;
  for (size_t i = 0; i < 2; ++i) {
    auto object = MakeSyntheticBlock(keys[i], 4096);
    ASSERT_TRUE(object.ok());
    ASSERT_TRUE(store->Put(7, keys[i], *object).ok());
    stored += object->size();
  }
  storage::LookupResult hit =
      store->Lookup(7, keys, {.lease_ttl = std::chrono::seconds(30), .touch = true});
  ASSERT_EQ(hit.leading_hits, 2u);
  auto pin = store->Pin(7, keys[0]);
  ASSERT_TRUE(pin.ok() && pin->has_value());
  const uint64_t loaded = (*pin)->bytes().size();

  Metrics m;
  m.RefreshFromStore(*store);
  const std::string text = m.Serialize();
  EXPECT_EQ(ValueOf(text, "kvault_store_lookups_total"), 1) << text;
  EXPECT_EQ(ValueOf(text, "kvault_store_hit_blocks_total"), 2);
  EXPECT_EQ(ValueOf(text, "kvault_store_miss_blocks_total"), 1);
  EXPECT_EQ(ValueOf(text, "kvault_store_stored_blocks_total"), 2);
  EXPECT_EQ(ValueOf(text, "kvault_store_stored_bytes_total"), static_cast<double>(stored));
  EXPECT_EQ(ValueOf(text, "kvault_store_loaded_bytes_total"), static_cast<double>(loaded));
  EXPECT_EQ(ValueOf(text, "kvault_store_active_leases"), 1);
  EXPECT_EQ(ValueOf(text, "kvault_store_rejected_writes_total{reason=\"corrupt\"}"), 0);
  EXPECT_EQ(ValueOf(text, "kvault_store_rejected_writes_total{reason=\"no_space\"}"), 0);
  EXPECT_EQ(ValueOf(text, "kvault_tier_capacity_bytes{tier=\"host\"}"), 8 << 20);
  EXPECT_EQ(ValueOf(text, "kvault_tier_used_bytes{tier=\"host\"}"), static_cast<double>(stored));
  EXPECT_GE(ValueOf(text, "kvault_tier_reserved_bytes{tier=\"host\"}"),
            static_cast<double>(stored));
  EXPECT_EQ(ValueOf(text, "kvault_tier_blocks{tier=\"host\"}"), 2);
  for (const char* name : {"kvault_tier_evictions_total", "kvault_tier_demotions_total",
                           "kvault_tier_promotions_total"}) {
    EXPECT_EQ(ValueOf(text, std::string(name) + "{tier=\"host\"}"), 0) << name;
  }
  // Every family has its HELP and TYPE.
  EXPECT_NE(text.find("# TYPE kvault_tier_used_bytes gauge"), std::string::npos);
  EXPECT_NE(text.find("# TYPE kvault_store_lookups_total counter"), std::string::npos);
  EXPECT_NE(text.find("# HELP kvault_store_hit_blocks_total Looked-up keys"), std::string::npos);
}

TEST(MetricsTest, CountersAdvanceByDeltasAndSurviveASourceRestart) {
  Metrics m;
  FakeCounters fake;
  fake.counters[{"", "lookups_total"}] = 5;
  fake.counters[{"nvme", "checksum_failures_total"}] = 2;
  fake.gauges[{"nvme", "used_bytes"}] = 100;
  m.RefreshFromCounters(fake);
  fake.counters[{"", "lookups_total"}] = 8;
  fake.gauges[{"nvme", "used_bytes"}] = 40;
  m.RefreshFromCounters(fake);
  std::string text = m.Serialize();
  EXPECT_EQ(ValueOf(text, "kvault_store_lookups_total"), 8);
  EXPECT_EQ(ValueOf(text, "kvault_tier_used_bytes{tier=\"nvme\"}"), 40);
  EXPECT_EQ(ValueOf(text, "kvault_checksum_failures_total{tier=\"nvme\"}"), 2);
  // A new store starts from 0: the exported counter keeps going up from where it was.
  fake.counters[{"", "lookups_total"}] = 3;
  m.RefreshFromCounters(fake);
  text = m.Serialize();
  EXPECT_EQ(ValueOf(text, "kvault_store_lookups_total"), 11);
  // A figure the mapping does not know yet still appears, under the rule.
  fake.counters[{"host", "future_things_total"}] = 4;
  m.RefreshFromCounters(fake);
  EXPECT_EQ(ValueOf(m.Serialize(), "kvault_tier_future_things_total{tier=\"host\"}"), 4);
}

TEST(MetricsTest, ClientMemoryFaultsFollowTheProcessCountAndNeverGoBack) {
  Metrics m;
  EXPECT_EQ(ValueOf(m.Serialize(), "kvault_client_memory_faults_total"), 0);
  m.RefreshClientMemoryFaults(2);
  EXPECT_EQ(ValueOf(m.Serialize(), "kvault_client_memory_faults_total"), 2);
  m.RefreshClientMemoryFaults(5);
  m.RefreshClientMemoryFaults(5);
  EXPECT_EQ(ValueOf(m.Serialize(), "kvault_client_memory_faults_total"), 5);
  m.RefreshClientMemoryFaults(1);  // a smaller figure is not a reset: the counter stays
  EXPECT_EQ(ValueOf(m.Serialize(), "kvault_client_memory_faults_total"), 5);
}

TEST(MetricsTest, MappedClientMemoryIsAGaugeAndItsDropsACounterThatNeverGoesBack) {
  Metrics m;
  EXPECT_EQ(ValueOf(m.Serialize(), "kvault_mapped_client_bytes"), 0);
  EXPECT_EQ(ValueOf(m.Serialize(), "kvault_mapped_client_dropped_bytes_total"), 0);
  m.RefreshMappedClientMemory(4 << 20, 2 << 20);
  EXPECT_EQ(ValueOf(m.Serialize(), "kvault_mapped_client_bytes"), 4 << 20);
  EXPECT_EQ(ValueOf(m.Serialize(), "kvault_mapped_client_dropped_bytes_total"), 2 << 20);
  m.RefreshMappedClientMemory(1 << 20, 1 << 20);  // the gauge follows; the counter stays
  EXPECT_EQ(ValueOf(m.Serialize(), "kvault_mapped_client_bytes"), 1 << 20);
  EXPECT_EQ(ValueOf(m.Serialize(), "kvault_mapped_client_dropped_bytes_total"), 2 << 20);
  m.RefreshMappedClientMemory(0, 6 << 20);
  EXPECT_EQ(ValueOf(m.Serialize(), "kvault_mapped_client_dropped_bytes_total"), 6 << 20);
}

TEST(MetricsTest, LabelsComeOnlyFromFixedSets) {
  auto store = HostStore();
  ASSERT_NE(store, nullptr);
  Metrics m;
  m.RefreshFromStore(*store);
  const std::string text = m.Serialize();
  const std::set<std::string> allowed = {"op", "reason", "tier", "le"};
  const std::regex label(R"(([a-zA-Z_][a-zA-Z0-9_]*)=")");
  std::istringstream lines(text);
  std::string line;
  size_t series = 0;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] == '#') continue;
    ++series;
    const size_t open = line.find('{');
    if (open == std::string::npos) continue;
    const std::string labels = line.substr(open, line.find('}') - open);
    for (std::sregex_iterator it(labels.begin(), labels.end(), label), end; it != end; ++it) {
      EXPECT_TRUE(allowed.count((*it)[1].str())) << line;
    }
  }
  EXPECT_GT(series, 50u);
}

TEST(MetricsTest, PromtoolAcceptsTheOutput) {
  if (::access(kPromtool, X_OK) != 0) GTEST_SKIP() << kPromtool << " is not installed";
  auto store = HostStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Put(1, KeyOf(9), *MakeSyntheticBlock(KeyOf(9), 1024)).ok());
  Metrics m;
  m.ObserveRequest(RequestOp::kStore, std::chrono::milliseconds(2));
  m.CountRejected(RejectReason::kUnauthenticated);
  // The nvme and gpu tiers' figures (as their VisitCounters report them) without RocksDB or CUDA.
  FakeCounters others;
  for (const char* name : {"puts_total", "reads_total", "erases_total", "checksum_failures_total",
                           "writes_rejected_capacity_total", "writes_rejected_disk_full_total",
                           "disk_full_events_total", "disk_full_recoveries_total",
                           "write_errors_total", "read_errors_total", "blob_gc_switches_total",
                           "evictions_total", "demotions_total", "promotions_total"}) {
    others.counters[{"nvme", name}] = 1;
  }
  for (const char* name : {"used_bytes", "capacity_bytes", "blocks", "disk_full", "hardware_crc32c",
                           "blob_gc_active"}) {
    others.gauges[{"nvme", name}] = 1;
  }
  for (const char* name :
       {"puts_total", "allocation_failures_total", "reads_total", "erases_total",
        "copied_in_bytes_total", "copied_out_bytes_total", "ipc_exports_total"}) {
    others.counters[{"gpu", name}] = 1;
  }
  for (const char* name : {"capacity_bytes", "used_bytes", "reserved_bytes", "blocks",
                           "free_ranges", "largest_free_bytes", "fragmentation_ratio"}) {
    others.gauges[{"gpu", name}] = 1;
  }
  m.RefreshFromStore(*store);
  m.RefreshFromCounters(others);

  const auto [exit_code, output] = RunPromtool(m.Serialize());
  EXPECT_EQ(exit_code, 0) << "promtool said:\n" << output;
  EXPECT_EQ(output, "") << "promtool said:\n" << output;
  // Negative control: the same pipeline fails a counter without _total.
  EXPECT_NE(RunPromtool("# HELP bad_count x\n# TYPE bad_count counter\nbad_count 1\n").first, 0);
}

}  // namespace
}  // namespace kvault::server
