#pragma once
// Helpers for the nvme tier tests (unit and integration): sealed block objects whose size and
// payload are functions of their key, so that any block read back can be checked without
// remembering what was written, and a temporary directory removed on destruction.

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "kvault/common/block_format.h"
#include "kvault/storage/counters.h"
#include "kvault/storage/nvme_tier.h"
#include "kvault/storage/scoped_key.h"

namespace kvault::storage::testing {

inline uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// A key determined by (tenant, stream, index); distinct triples give distinct keys.
inline ScopedKey TestKey(uint32_t tenant, uint64_t stream, uint64_t index) {
  ScopedKey key;
  key.tenant = tenant;
  uint64_t state = stream * 0x100000001B3ull ^ index;
  for (size_t i = 0; i < key.key.size(); i += 8) {
    uint64_t word = SplitMix64(state);
    for (size_t j = 0; j < 8; ++j) key.key[i + j] = static_cast<uint8_t>(word >> (8 * j));
  }
  return key;
}

// The object stored under `key`: raw f16 KV for 8 heads of dim 128 and 16 tokens, with between
// min_layers and max_layers layers (64 KiB each) chosen by the key, and a payload drawn from the
// key. Sealed: it verifies under `key` and under no other.
inline std::vector<uint8_t> ObjectFor(const ScopedKey& key, uint32_t min_layers = 1,
                                      uint32_t max_layers = 2) {
  BlockDescriptor d;
  d.key = key.key;
  for (size_t i = 0; i < d.ns_digest.size(); ++i) d.ns_digest[i] = static_cast<uint8_t>(i);
  d.layout = {min_layers + key.key[0] % (max_layers - min_layers + 1), 8, 128, 16, DType::kF16, 0};
  d.layers.assign(d.layout.num_layers, LayerCodec{});
  Result<BlockGeometry> geometry = ComputeGeometry(d);
  EXPECT_TRUE(geometry.ok()) << geometry.status().ToString();
  if (!geometry.ok()) return {};
  std::vector<uint8_t> object(geometry->total_bytes());
  WriteBlockHeader(d, *geometry, object);
  uint64_t state = key.tenant;
  for (size_t i = 0; i < key.key.size(); i += 8) {
    uint64_t word = 0;
    for (size_t j = 0; j < 8; ++j) word |= uint64_t{key.key[i + j]} << (8 * j);
    state ^= word;
  }
  for (size_t i = geometry->header_bytes; i < object.size(); i += 8) {
    uint64_t word = SplitMix64(state);
    for (size_t j = 0; j < 8 && i + j < object.size(); ++j) {
      object[i + j] = static_cast<uint8_t>(word >> (8 * j));
    }
  }
  SealBlockObject(object);
  return object;
}

// A tier in `dir` sized for tests: 64 MiB, 1 MiB memtables, 4 MiB blob files, a 1 MiB reserve,
// 2 background jobs; everything else the tier's default.
inline NvmeTierOptions SmallTierOptions(const std::string& dir) {
  NvmeTierOptions options;
  options.directory = dir;
  options.capacity_bytes = 64ull << 20;
  options.write_buffer_bytes = 1 << 20;
  options.blob_file_bytes = 4 << 20;
  options.reserve_bytes = 1 << 20;
  options.background_jobs = 2;
  return options;
}

// A fresh directory under the system temp directory, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "kvault-nvme-XXXXXX").string();
    if (::mkdtemp(pattern.data()) != nullptr) path_ = pattern;
    EXPECT_FALSE(path_.empty()) << "mkdtemp failed";
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Collects counters and gauges by name.
class CounterMap final : public CounterVisitor {
 public:
  void Counter(std::string_view tier, std::string_view name, uint64_t value) override {
    values[std::string(tier) + "/" + std::string(name)] = static_cast<double>(value);
  }
  void Gauge(std::string_view tier, std::string_view name, double value) override {
    values[std::string(tier) + "/" + std::string(name)] = value;
  }
  std::map<std::string, double> values;
};

template <typename TierT>
double CounterOf(const TierT& tier, const std::string& name) {
  CounterMap map;
  tier.VisitCounters(map);
  auto it = map.values.find("nvme/" + name);
  EXPECT_NE(it, map.values.end()) << "no counter " << name;
  return it == map.values.end() ? -1 : it->second;
}

// Test-name suffix of a value layout, for the suites parameterised over both.
inline std::string LayoutName(const ::testing::TestParamInfo<NvmeValueLayout>& info) {
  return info.param == NvmeValueLayout::kBlobFiles ? "BlobFiles" : "Inline";
}

}  // namespace kvault::storage::testing
