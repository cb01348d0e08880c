#pragma once
// For the tests that store KV in a real kvaultd (tests/integration, tests/gpu): a client of it,
// the digest of an f16 namespace of a test model, synthetic objects stored under keys, and
// memory of the test's own to register.

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "kvault/client.h"
#include "kvault/common/auth.h"
#include "kvault/common/block_key.h"
#include "kvault/common/result.h"
#include "kvault/common/synthetic_block.h"

namespace kvault::testing {

// A client's configuration for `server` (HOST:PORT) logging in as `tenant` with `token`.
inline ClientConfig TenantClientConfig(const std::string& server, const std::string& tenant,
                                       const std::string& token) {
  ClientConfig config;
  config.server = server;
  config.tenant = tenant;
  config.token = token;
  return config;
}

// Writes a tenants file (mode 0600, as kvaultd wants it) with one tenant, `name`, whose token is
// `token`, without a quota.
inline void WriteOneTenantFile(const std::filesystem::path& file, const std::string& name,
                               const std::string& token) {
  std::ofstream f(file);
  f << "tenants:\n  - name: " << name << "\n    token_sha256: " << HexEncode(TokenHash(token))
    << "\n    quota_bytes: 0\n";
  f.close();
  std::filesystem::permissions(
      file, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
}

// Page-aligned memory of the test, as an engine's own buffer would be (for RegisterMemory),
// filled with 0xEE. Owns it; not copyable.
struct OwnMemory {
  explicit OwnMemory(size_t bytes) : size(bytes) {
    data = static_cast<uint8_t*>(std::aligned_alloc(4096, bytes));
    std::memset(data, 0xEE, bytes);
  }
  ~OwnMemory() { std::free(data); }
  OwnMemory(const OwnMemory&) = delete;
  OwnMemory& operator=(const OwnMemory&) = delete;
  std::span<uint8_t> at(size_t offset, size_t n) const { return {data + offset, n}; }
  // True when every byte is `value`.
  bool All(uint8_t value) const {
    return std::all_of(data, data + size, [&](uint8_t b) { return b == value; });
  }
  uint8_t* data;
  size_t size;
};

// NamespaceDigest of the f16 namespace of `model` with the given shape. A digest that fails
// fails the test and gives the zero key.
inline BlockKey TestNamespaceDigest(const std::string& model, uint32_t num_layers,
                                    uint32_t kv_heads, uint32_t head_dim, uint32_t block_tokens) {
  Namespace ns;
  ns.model_id = model;
  ns.num_layers = num_layers;
  ns.kv_heads = kv_heads;
  ns.head_dim = head_dim;
  ns.dtype = "f16";
  ns.block_tokens = block_tokens;
  Result<BlockKey> digest = NamespaceDigest(ns);
  EXPECT_TRUE(digest.ok()) << digest.status().ToString();
  return digest.ok() ? *digest : BlockKey{};
}

// A client of the kvaultd at `server` (HOST:PORT) with the default config, or with these UCX
// transports (UCX_TLS syntax); null, with the test failed, when it cannot connect.
inline std::unique_ptr<Client> ConnectOrFail(const std::string& server,
                                             const std::string& ucx_transports = "") {
  ClientConfig config;
  config.server = server;
  if (!ucx_transports.empty()) config.ucx_transports = ucx_transports;
  Result<std::unique_ptr<Client>> c = Client::Connect(config);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? std::move(*c) : nullptr;
}

// Stores a synthetic object with `payload` bytes of payload under each of `keys`, all written into
// one region allocated from `client` and left in `region` (which keeps the bytes for the test to
// compare with). Waits up to 30 s; any failure fails the test.
inline void StoreSyntheticObjects(Client& client, const std::vector<BlockKey>& keys,
                                  uint64_t payload, MemoryRegion& region) {
  const uint64_t object = SyntheticObjectBytes(payload);
  Result<MemoryRegion> allocated = client.AllocateMemory(object * keys.size());
  ASSERT_TRUE(allocated.ok()) << allocated.status().ToString();
  region = std::move(*allocated);
  std::vector<std::span<const uint8_t>> sources;
  for (size_t i = 0; i < keys.size(); ++i) {
    std::span<uint8_t> bytes = region.bytes().subspan(i * object, object);
    ASSERT_TRUE(WriteSyntheticBlock(keys[i], payload, bytes).ok());
    sources.push_back(bytes);
  }
  StoreHandle h = client.Store(keys, sources);
  ASSERT_TRUE(h.Wait(Clock::now() + std::chrono::seconds(30)).ok());
  ASSERT_EQ(h.ok_count(), keys.size());
}

// Polls LookupPrefix until every key is a hit in `tier` (a mover may take blocks there after the
// store); false when that does not happen within `timeout`.
inline bool WaitUntilAllInTier(Client& client, const std::vector<BlockKey>& keys, Tier tier,
                               std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    const LookupResult r = client.LookupPrefix(keys);
    bool all = r.status.ok() && r.leading_hits == keys.size();
    for (Tier t : r.tiers) all = all && t == tier;
    if (all) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

}  // namespace kvault::testing
