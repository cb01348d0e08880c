#include "nvme/crc32c_override.h"

#include <dlfcn.h>
#include <nmmintrin.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <random>
#include <vector>

namespace rocksdb::crc32c {
uint32_t Extend(uint32_t crc, const char* data, size_t n);
}  // namespace rocksdb::crc32c

namespace kvault::storage::nvme {
namespace {

using ExtendFn = uint32_t (*)(uint32_t, const char*, size_t);

constexpr const char* kExtendSymbol = "_ZN7rocksdb6crc32c6ExtendEjPKcm";

// RocksDB's own function, found behind this definition in the symbol search order.
ExtendFn LibraryExtend() {
  static const ExtendFn fn = reinterpret_cast<ExtendFn>(dlsym(RTLD_NEXT, kExtendSymbol));
  return fn;
}

// The CRC32 instruction has a latency of 3 cycles and a throughput of 1, so three independent
// streams over three consecutive stripes of kStripe bytes run about 3x faster than one. With
// f(s, d) the CRC state after data d from state s, f(s, d) = f(s, zeros) ^ f(0, d) (CRC is linear),
// and f(s, kStripe zeros) = Shift(s), a fixed linear map applied with four byte tables. So
// f(s, A B C) = Shift(Shift(f(s, A)) ^ f(0, B)) ^ f(0, C).
constexpr size_t kStripe = 1024;

__attribute__((target("sse4.2"))) uint64_t Crc64Words(uint64_t c, const char* data, size_t n) {
  for (size_t i = 0; i < n; i += 8) {
    uint64_t word;
    std::memcpy(&word, data + i, 8);
    c = _mm_crc32_u64(c, word);
  }
  return c;
}

struct ShiftTables {
  uint32_t byte[4][256];
};

// Tables of the map s -> f(s, kStripe zero bytes), built from its action on the 32 basis states.
__attribute__((target("sse4.2"))) ShiftTables BuildShiftTables() {
  static const char kZeros[kStripe] = {};
  uint32_t column[32];
  for (int bit = 0; bit < 32; ++bit) {
    column[bit] = static_cast<uint32_t>(Crc64Words(uint64_t{1} << bit, kZeros, kStripe));
  }
  ShiftTables t{};
  for (int k = 0; k < 4; ++k) {
    for (uint32_t b = 0; b < 256; ++b) {
      uint32_t v = 0;
      for (int bit = 0; bit < 8; ++bit) {
        if (b & (1u << bit)) v ^= column[8 * k + bit];
      }
      t.byte[k][b] = v;
    }
  }
  return t;
}

const ShiftTables& Tables() {
  static const ShiftTables tables = BuildShiftTables();
  return tables;
}

uint32_t Shift(const ShiftTables& t, uint32_t s) {
  return t.byte[0][s & 0xFF] ^ t.byte[1][(s >> 8) & 0xFF] ^ t.byte[2][(s >> 16) & 0xFF] ^
         t.byte[3][s >> 24];
}

__attribute__((target("sse4.2"))) uint32_t HardwareExtend(uint32_t crc, const char* data,
                                                          size_t n) {
  uint64_t c = crc ^ 0xFFFFFFFFu;
  while (n > 0 && (reinterpret_cast<uintptr_t>(data) & 7) != 0) {
    c = _mm_crc32_u8(static_cast<uint32_t>(c), static_cast<uint8_t>(*data++));
    --n;
  }
  if (n >= 3 * kStripe) {
    const ShiftTables& t = Tables();
    while (n >= 3 * kStripe) {
      uint64_t a = c, b = 0, d = 0;
      for (size_t i = 0; i < kStripe; i += 8) {
        uint64_t wa, wb, wd;
        std::memcpy(&wa, data + i, 8);
        std::memcpy(&wb, data + kStripe + i, 8);
        std::memcpy(&wd, data + 2 * kStripe + i, 8);
        a = _mm_crc32_u64(a, wa);
        b = _mm_crc32_u64(b, wb);
        d = _mm_crc32_u64(d, wd);
      }
      const uint32_t ab = Shift(t, static_cast<uint32_t>(a)) ^ static_cast<uint32_t>(b);
      c = Shift(t, ab) ^ static_cast<uint32_t>(d);
      data += 3 * kStripe;
      n -= 3 * kStripe;
    }
  }
  const size_t words = n / 8 * 8;
  c = Crc64Words(c, data, words);
  data += words;
  n -= words;
  while (n > 0) {
    c = _mm_crc32_u8(static_cast<uint32_t>(c), static_cast<uint8_t>(*data++));
    --n;
  }
  return static_cast<uint32_t>(c) ^ 0xFFFFFFFFu;
}

// CRC-32C one bit at a time (reflected polynomial 0x82F63B78): the fallback of last resort.
uint32_t BitwiseExtend(uint32_t crc, const char* data, size_t n) {
  uint32_t c = crc ^ 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) {
    c ^= static_cast<uint8_t>(data[i]);
    for (int bit = 0; bit < 8; ++bit) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
  }
  return c ^ 0xFFFFFFFFu;
}

std::atomic<bool> g_hardware{false};
std::once_flag g_once;
std::string g_description;

bool MatchesLibrary(ExtendFn library) {
  // CRC-32C check value of "123456789" (RFC 3720 / iSCSI).
  if (HardwareExtend(0, "123456789", 9) != 0xE3069283u) return false;
  std::mt19937_64 rng(20261126);
  // Lengths up to 16 KiB: the three-stripe path (3 KiB blocks), its tail and the short path.
  std::vector<char> buf(16384 + 7);
  for (char& b : buf) b = static_cast<char>(rng());
  for (int i = 0; i < 200; ++i) {
    const size_t off = rng() % 8, len = rng() % 16384;
    const uint32_t seed = static_cast<uint32_t>(rng());
    if (HardwareExtend(seed, buf.data() + off, len) != library(seed, buf.data() + off, len)) {
      return false;
    }
  }
  return true;
}

}  // namespace

std::string EnableHardwareCrc32c() {
  std::call_once(g_once, [] {
    const ExtendFn library = LibraryExtend();
    if (library == nullptr || library == &rocksdb::crc32c::Extend) {
      g_description = "software (RocksDB's CRC32C symbol was not found)";
    } else if (!__builtin_cpu_supports("sse4.2")) {
      g_description = "software (this CPU has no SSE4.2)";
    } else if (!MatchesLibrary(library)) {
      g_description = "software (the hardware CRC32C disagreed with RocksDB's)";
    } else {
      (void)Tables();
      g_hardware.store(true, std::memory_order_release);
      g_description = "hardware (SSE4.2), verified against RocksDB's own";
    }
  });
  return g_description;
}

bool HardwareCrc32cActive() { return g_hardware.load(std::memory_order_acquire); }

}  // namespace kvault::storage::nvme

// The definition RocksDB's calls bind to. Until EnableHardwareCrc32c() has verified the hardware
// path, and on CPUs without SSE4.2, it forwards to RocksDB's own function.
namespace rocksdb::crc32c {
__attribute__((visibility("default"))) uint32_t Extend(uint32_t crc, const char* data, size_t n) {
  namespace nvme = kvault::storage::nvme;
  if (nvme::g_hardware.load(std::memory_order_relaxed)) return nvme::HardwareExtend(crc, data, n);
  const nvme::ExtendFn library = nvme::LibraryExtend();
  if (library != nullptr && library != &Extend) return library(crc, data, n);
  return nvme::BitwiseExtend(crc, data, n);  // no RocksDB in this process: never on a hot path
}
}  // namespace rocksdb::crc32c
