// Sha256 (sha256.h).

#include "sha256.h"

#include <cstdio>
#include <cstdlib>

namespace kvault::common_internal {
namespace {

[[noreturn]] void Sha256Failed(const char* what) {
  std::fprintf(stderr, "kvault: SHA-256 unavailable: %s failed\n", what);
  std::abort();
}

const EVP_MD* Sha256Md() {
  static const EVP_MD* const md = [] {
    const EVP_MD* fetched = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    return fetched != nullptr ? fetched : EVP_sha256();
  }();
  return md;
}

}  // namespace

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  if (ctx_ == nullptr) Sha256Failed("EVP_MD_CTX_new");
  Reset();
}

Sha256::~Sha256() { EVP_MD_CTX_free(ctx_); }

void Sha256::Reset() {
  if (EVP_DigestInit_ex2(ctx_, Sha256Md(), nullptr) != 1) Sha256Failed("EVP_DigestInit_ex2");
}

void Sha256::Update(const uint8_t* data, size_t size) {
  if (size != 0 && EVP_DigestUpdate(ctx_, data, size) != 1) Sha256Failed("EVP_DigestUpdate");
}

BlockKey Sha256::Finish() {
  BlockKey out;
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx_, out.data(), &len) != 1 || len != out.size()) {
    Sha256Failed("EVP_DigestFinal_ex");
  }
  Reset();
  return out;
}

}  // namespace kvault::common_internal
