// The hardware CRC32C that replaces Debian librocksdb's software one: it must equal RocksDB's own
// function bit for bit, be what RocksDB actually calls once a tier is open, and keep a database
// readable across close and reopen (RocksDB checks CRC32C on its MANIFEST and blob records).
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "kvault/storage/nvme_tier.h"
#include "nvme/crc32c_override.h"
#include "nvme_test_util.h"
#include "store_test_util.h"

namespace rocksdb::crc32c {
uint32_t Extend(uint32_t crc, const char* data, size_t n);
}  // namespace rocksdb::crc32c

namespace kvault::storage {
namespace {

using ExtendFn = uint32_t (*)(uint32_t, const char*, size_t);

#if defined(KVAULT_HAVE_ROCKSDB)
TEST(NvmeCrc32c, EqualsRocksDbsOwnFunctionAndIsActive) {
  if (!__builtin_cpu_supports("sse4.2")) GTEST_SKIP() << "this CPU has no SSE4.2";
  const std::string how = nvme::EnableHardwareCrc32c();
  ASSERT_TRUE(nvme::HardwareCrc32cActive()) << how;
  auto library = reinterpret_cast<ExtendFn>(dlsym(RTLD_NEXT, "_ZN7rocksdb6crc32c6ExtendEjPKcm"));
  ASSERT_NE(library, nullptr);
  ASSERT_NE(library, &rocksdb::crc32c::Extend) << "the override must sit in front of RocksDB's";
  // The exported definition is the one RocksDB's calls bind to.
  auto bound = reinterpret_cast<ExtendFn>(dlsym(RTLD_DEFAULT, "_ZN7rocksdb6crc32c6ExtendEjPKcm"));
  EXPECT_EQ(bound, &rocksdb::crc32c::Extend);
  std::mt19937_64 rng(5);
  std::vector<char> buf(1 << 20);
  for (char& b : buf) b = static_cast<char>(rng());
  for (size_t len : {size_t{0}, size_t{1}, size_t{7}, size_t{8}, size_t{9}, size_t{4095},
                     size_t{65536}, buf.size() - 3}) {
    for (size_t off : {size_t{0}, size_t{1}, size_t{3}}) {
      const uint32_t seed = static_cast<uint32_t>(rng());
      EXPECT_EQ(rocksdb::crc32c::Extend(seed, buf.data() + off, len),
                library(seed, buf.data() + off, len))
          << "len " << len << " off " << off;
    }
  }
  EXPECT_EQ(rocksdb::crc32c::Extend(0, "123456789", 9), 0xE3069283u);
}

TEST(NvmeCrc32c, DatabaseWrittenWithItReopensAndReadsBack) {
  testing::TempDir dir;
  const BlockKey key = testing::KeyOf(42);
  const std::vector<uint8_t> object = testing::ObjectFor(key, 300000);
  {
    auto tier = NvmeTier::Open({.directory = dir.path(), .capacity_bytes = 64 << 20});
    ASSERT_TRUE(tier.ok()) << tier.status().ToString();
    ASSERT_TRUE((*tier)->Recover([](const ScopedKey&, TierSlot, uint32_t) {}).ok());
    ASSERT_TRUE((*tier)->Put({0, key}, object).ok());
  }  // close flushes: blob records and MANIFEST edits carry CRC32Cs computed by the override
  auto tier = NvmeTier::Open({.directory = dir.path(), .capacity_bytes = 64 << 20});
  ASSERT_TRUE(tier.ok()) << tier.status().ToString();
  int found = 0;
  ASSERT_TRUE((*tier)->Recover([&](const ScopedKey&, TierSlot, uint32_t) { ++found; }).ok());
  EXPECT_EQ(found, 1);
  std::vector<uint8_t> out(object.size());
  ASSERT_TRUE((*tier)->Read({0, key}, 0, object.size(), out).ok());
  EXPECT_EQ(out, object);
  testing::MapVisitor v;
  (*tier)->VisitCounters(v);
  EXPECT_EQ(v.Get("nvme.hardware_crc32c"), __builtin_cpu_supports("sse4.2") ? 1 : 0);
}
#else
TEST(NvmeCrc32c, NeedsRocksDb) { GTEST_SKIP() << "this build has no RocksDB"; }
#endif

}  // namespace
}  // namespace kvault::storage
