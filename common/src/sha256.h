#pragma once
// SHA-256 through OpenSSL's EVP interface, for the key builders (block_key.cc,
// vllm_block_hash.cc). The digest is fetched once per process (an implicit fetch on every call
// costs more than hashing a 16-token block); a context is reused across messages. Failure here
// means OpenSSL cannot hash at all, which no caller can recover from: the process aborts.
//
// Thread-safety: one Sha256 per thread (thread-compatible).

#include <openssl/evp.h>

#include <cstddef>
#include <cstdint>

#include "kvault/common/block_key.h"

namespace kvault::common_internal {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(const uint8_t* data, size_t size);
  void Update(const BlockKey& key) { Update(key.data(), key.size()); }
  // Writes the digest and re-arms the context for the next message.
  BlockKey Finish();

 private:
  void Reset();
  EVP_MD_CTX* ctx_;
};

}  // namespace kvault::common_internal
