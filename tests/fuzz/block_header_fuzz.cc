// libFuzzer harness for ParseBlockObject (DESIGN.md §14): any byte string must parse or return
// Corruption without reading outside the input, and an accepted object must be self-consistent.
// Built with -fsanitize=fuzzer,address,undefined by tests/fuzz/CMakeLists.txt.

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "kvault/common/block_format.h"

namespace {

using kvault::BlockView;
using kvault::ParseOptions;
using kvault::Result;
using kvault::StatusCode;

void Require(bool condition) {
  if (!condition) std::abort();
}

// Reads every byte of every section, checks that the sections tile the payload in order, and
// checks that the writer reproduces the header it was parsed from (the parser accepts only
// canonical headers).
void CheckAccepted(const BlockView& view, std::span<const uint8_t> bytes) {
  const auto& d = view.descriptor;
  const auto& g = view.geometry;
  Require(g.total_bytes() == bytes.size());
  Require(view.payload.data() == bytes.data() + g.header_bytes);
  Require(view.payload.size() == g.payload_bytes);
  const uint8_t* next = view.payload.data();
  uint32_t sum = 0;
  for (uint32_t layer = 0; layer < d.layout.num_layers; ++layer) {
    for (int kv = 0; kv < 2; ++kv) {
      const std::span<const uint8_t> section = view.Section(layer, kv);
      Require(section.data() == next);
      Require(section.size() % kvault::kSectionAlignment == 0);
      for (uint8_t b : section) sum += b;
      next += section.size();
    }
  }
  Require(next == bytes.data() + bytes.size());
  volatile uint32_t sink = sum;
  (void)sink;

  std::vector<uint8_t> rebuilt(bytes.size());
  kvault::WriteBlockHeader(d, g, rebuilt);
  Require(std::memcmp(rebuilt.data(), bytes.data(), 16) == 0);
  Require(std::memcmp(rebuilt.data() + 24, bytes.data() + 24, g.header_bytes - 24) == 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> bytes(data, size);

  // Checksum off first: a mutated object almost never carries a valid checksum, and this is the
  // path that lets the fuzzer reach Section() on structurally valid headers.
  ParseOptions inspect;
  inspect.verify_checksum = false;
  Result<BlockView> loose = kvault::ParseBlockObject(bytes, inspect);
  if (loose.ok()) {
    CheckAccepted(*loose, bytes);
  } else {
    Require(loose.status().code() == StatusCode::kCorruption);
  }

  if (loose.ok()) {
    // Sealing a structurally valid object makes it verify.
    std::vector<uint8_t> sealed(bytes.begin(), bytes.end());
    kvault::SealBlockObject(sealed);
    Result<BlockView> resealed = kvault::ParseBlockObject(sealed);
    Require(resealed.ok());
    Require(resealed->descriptor.layers == loose->descriptor.layers);
  }

  Result<BlockView> strict = kvault::ParseBlockObject(bytes);
  if (strict.ok()) {
    Require(loose.ok());
    Require(strict->checksum == loose->checksum);
    CheckAccepted(*strict, bytes);
    // A key that differs from the stored one is always refused.
    kvault::Digest32 other = strict->descriptor.key;
    other[0] ^= 0xFF;
    ParseOptions keyed;
    keyed.expected_key = &other;
    Result<BlockView> wrong = kvault::ParseBlockObject(bytes, keyed);
    Require(!wrong.ok() && wrong.status().code() == StatusCode::kCorruption);
  } else {
    Require(strict.status().code() == StatusCode::kCorruption);
    // With the structure accepted, only the checksum can have failed.
    if (loose.ok())
      Require(strict.status().message().find("checksum mismatch") != std::string::npos);
  }
  return 0;
}
