#include "kvault/common/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

namespace kvault {
namespace {

// Failure to hash means OpenSSL cannot work at all; no caller could recover or fall back safely.
[[noreturn]] void CryptoFailed(const char* what) {
  std::fprintf(stderr, "kvault: auth crypto unavailable: %s failed\n", what);
  std::abort();
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

Result<AuthNonce> NewAuthChallenge() {
  AuthNonce nonce;
  if (RAND_bytes(nonce.data(), static_cast<int>(nonce.size())) != 1) {
    return Status::Unavailable("RAND_bytes failed: no secure random source for the auth nonce");
  }
  return nonce;
}

AuthDigest TokenHash(std::string_view token) {
  AuthDigest out;
  unsigned int len = 0;
  if (EVP_Digest(token.data(), token.size(), out.data(), &len, EVP_sha256(), nullptr) != 1 ||
      len != out.size()) {
    CryptoFailed("EVP_Digest(SHA-256)");
  }
  return out;
}

namespace {

AuthDigest HmacSha256(const AuthDigest& key, const std::vector<uint8_t>& message) {
  AuthDigest out;
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), message.data(), message.size(),
           out.data(), &len) == nullptr ||
      len != out.size()) {
    CryptoFailed("HMAC-SHA256");
  }
  return out;
}

}  // namespace

AuthDigest AuthProof(const AuthDigest& token_hash, std::span<const uint8_t> nonce) {
  std::vector<uint8_t> message(kAuthContext.begin(), kAuthContext.end());
  message.insert(message.end(), nonce.begin(), nonce.end());
  return HmacSha256(token_hash, message);
}

AuthDigest ServerProof(const AuthDigest& token_hash, std::span<const uint8_t> nonce,
                       std::span<const uint8_t> client_proof, uint32_t server_pid,
                       uint32_t server_uid, std::string_view memory_socket) {
  std::vector<uint8_t> message(kServerProofContext.begin(), kServerProofContext.end());
  message.insert(message.end(), nonce.begin(), nonce.end());
  message.insert(message.end(), client_proof.begin(), client_proof.end());
  for (const uint32_t v : {server_pid, server_uid}) {
    for (int i = 0; i < 4; ++i) message.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  message.insert(message.end(), memory_socket.begin(), memory_socket.end());
  return HmacSha256(token_hash, message);
}

bool VerifyServerProof(const AuthDigest& token_hash, std::span<const uint8_t> nonce,
                       std::span<const uint8_t> client_proof, uint32_t server_pid,
                       uint32_t server_uid, std::string_view memory_socket,
                       std::span<const uint8_t> server_proof) {
  if (nonce.size() != kAuthNonceBytes || client_proof.size() != kAuthDigestBytes ||
      server_proof.size() != kAuthDigestBytes) {
    return false;
  }
  return ConstantTimeEqual(
      ServerProof(token_hash, nonce, client_proof, server_pid, server_uid, memory_socket),
      server_proof);
}

bool VerifyAuthProof(const AuthDigest& token_hash, std::span<const uint8_t> nonce,
                     std::span<const uint8_t> proof) {
  if (nonce.size() != kAuthNonceBytes || proof.size() != kAuthDigestBytes) return false;
  return ConstantTimeEqual(AuthProof(token_hash, nonce), proof);
}

bool ConstantTimeEqual(std::span<const uint8_t> a, std::span<const uint8_t> b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string HexEncode(std::span<const uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (uint8_t b : bytes) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0xf]);
  }
  return out;
}

Result<AuthDigest> ParseDigestHex(std::string_view hex) {
  if (hex.size() != 2 * kAuthDigestBytes) {
    return Status::InvalidArgument("a SHA-256 hash is 64 hex digits, got " +
                                   std::to_string(hex.size()) + " characters");
  }
  AuthDigest out;
  for (size_t i = 0; i < out.size(); ++i) {
    const int hi = HexValue(hex[2 * i]);
    const int lo = HexValue(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      const size_t bad = hi < 0 ? 2 * i : 2 * i + 1;
      return Status::InvalidArgument("a SHA-256 hash is 64 hex digits; character " +
                                     std::to_string(bad + 1) + " is not a hex digit");
    }
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return out;
}

}  // namespace kvault
