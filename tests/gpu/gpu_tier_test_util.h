#pragma once
// Shared by gpu_tier_test.cc and gpu_ipc_reader.cc: self-checking payloads (the bytes are a pure
// function of a seed, so any process can regenerate and compare them), the device check behind
// the visible skips, and the command line that carries a GpuIpcExport to the reader process.

#include <cuda_runtime.h>

#include <charconv>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "kvault/kernels/gpu_ipc.h"

namespace kvault::storage::gpu_test {

using kernels::GpuIpcExport;

// True when the CUDA runtime reports at least one device.
inline bool HasCudaDevice() {
  int count = 0;
  const bool ok = cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
  cudaGetLastError();
  return ok;
}

inline uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The payload of `seed`: a SplitMix64 stream, little-endian, truncated to out.size().
inline void FillPayload(uint64_t seed, std::span<uint8_t> out) {
  uint64_t state = seed;
  for (size_t i = 0; i < out.size(); i += 8) {
    uint64_t word = SplitMix64(state);
    for (size_t b = 0; b < 8 && i + b < out.size(); ++b, word >>= 8) {
      out[i + b] = static_cast<uint8_t>(word);
    }
  }
}

// Index of the first byte of `got` that differs from the payload of `seed`, or nullopt.
inline std::optional<size_t> FirstMismatch(uint64_t seed, std::span<const uint8_t> got) {
  uint64_t state = seed;
  for (size_t i = 0; i < got.size(); i += 8) {
    uint64_t word = SplitMix64(state);
    for (size_t b = 0; b < 8 && i + b < got.size(); ++b, word >>= 8) {
      if (got[i + b] != static_cast<uint8_t>(word)) return i + b;
    }
  }
  return std::nullopt;
}

inline std::string ToHex(std::span<const uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s;
  for (uint8_t b : bytes) {
    s += kDigits[b >> 4];
    s += kDigits[b & 15];
  }
  return s;
}

// Parses exactly out.size() bytes of hex; false on any other input.
inline bool FromHex(std::string_view hex, std::span<uint8_t> out) {
  if (hex.size() != out.size() * 2) return false;
  for (size_t i = 0; i < out.size(); ++i) {
    unsigned value = 0;
    const char* first = hex.data() + 2 * i;
    auto [end, ec] = std::from_chars(first, first + 2, value, 16);
    if (ec != std::errc() || end != first + 2) return false;
    out[i] = static_cast<uint8_t>(value);
  }
  return true;
}

inline bool ParseU64(std::string_view text, uint64_t& value) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  return ec == std::errc() && end == text.data() + text.size();
}

// The reader's command line:
//   gpu_ipc_reader POOL_HANDLE_HEX DEVICE_UUID_HEX POOL_BYTES (OFFSET LENGTH SEED)...
// It copies each block to the host through one GpuIpcImporter and compares it with the payload
// of SEED. Its exit status:
inline constexpr int kReaderMatch = 0;       // every block equals its payload
inline constexpr int kReaderMismatch = 1;    // some block differs from its payload
inline constexpr int kReaderSetupError = 2;  // bad arguments, no device, a failed CUDA call
inline constexpr int kReaderRejected = 3;    // the importer refused a block (InvalidArgument)
inline constexpr int kReaderPoolReopen = 4;  // the importer opened the pool more than once

}  // namespace kvault::storage::gpu_test
