#pragma once
// Tenant authentication primitives: the challenge-response of the control plane's hello
// (DESIGN.md §8). The server keeps only SHA-256(token) per tenant; at hello it sends a fresh random
// nonce and the client answers with
//
//   proof = HMAC-SHA256(key = SHA-256(token), message = "kvault-auth-v1" || nonce)
//
// so the token never crosses the wire and a recorded proof is useless for another nonce. The
// context string is fixed-length, so the concatenation is unambiguous; it also separates these
// proofs from any other use of the same key.
//
// Note: the stored hash is itself enough to compute proofs, so a tenants file is a secret (mode
// 0600); hashing only keeps the original token, which clients hold, from being recovered from it.
//
// Pure functions over OpenSSL; thread-safe.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "kvault/common/result.h"

namespace kvault {

inline constexpr size_t kAuthDigestBytes = 32;
inline constexpr size_t kAuthNonceBytes = 32;
// The HMAC context prefixes; part of the protocol: changing one is a new protocol version.
inline constexpr std::string_view kAuthContext = "kvault-auth-v1";
inline constexpr std::string_view kServerProofContext = "kvault-server-proof-v1";

// A SHA-256 token hash or an HMAC-SHA256 proof.
using AuthDigest = std::array<uint8_t, kAuthDigestBytes>;
// A server challenge.
using AuthNonce = std::array<uint8_t, kAuthNonceBytes>;

// A fresh challenge of 32 bytes from OpenSSL's CSPRNG (RAND_bytes). Unavailable when the generator
// fails (it is not seeded); the caller must then refuse the hello, never fall back.
Result<AuthNonce> NewAuthChallenge();

// SHA-256 of the token's bytes; equals `printf %s "$TOKEN" | sha256sum`.
AuthDigest TokenHash(std::string_view token);

// The proof for `nonce` (any length; the server's nonces are kAuthNonceBytes) under a token hash.
AuthDigest AuthProof(const AuthDigest& token_hash, std::span<const uint8_t> nonce);

// True when `proof` is exactly AuthProof(token_hash, nonce). The comparison takes the same time
// wherever the bytes differ (CRYPTO_memcmp). False for a proof of the wrong length and for a nonce
// that is not kAuthNonceBytes long (a server never issues one).
bool VerifyAuthProof(const AuthDigest& token_hash, std::span<const uint8_t> nonce,
                     std::span<const uint8_t> proof);

// The server's proof, answering a client's `client_proof` for `nonce`: shows that the server
// knows the token hash too (so a process that took the server's port cannot make one), and
// vouches for what it announced about its memory socket: its process id and user id (as it
// sees them) and the path. HMAC-SHA256 keyed by the token hash over kServerProofContext, the
// nonce, the client's proof, the pid and the uid (u32 little-endian each), then the path's bytes.
AuthDigest ServerProof(const AuthDigest& token_hash, std::span<const uint8_t> nonce,
                       std::span<const uint8_t> client_proof, uint32_t server_pid,
                       uint32_t server_uid, std::string_view memory_socket);

// True when `server_proof` is exactly ServerProof(...) of the same arguments, compared as
// VerifyAuthProof does.
bool VerifyServerProof(const AuthDigest& token_hash, std::span<const uint8_t> nonce,
                       std::span<const uint8_t> client_proof, uint32_t server_pid,
                       uint32_t server_uid, std::string_view memory_socket,
                       std::span<const uint8_t> server_proof);

// True when `a` and `b` hold the same bytes, in a time that does not depend on where they differ
// (CRYPTO_memcmp): for comparing secrets. False when the lengths differ.
bool ConstantTimeEqual(std::span<const uint8_t> a, std::span<const uint8_t> b);

// Lower-case hex of `bytes` (config files, docs). Never pass it a hash to a log.
std::string HexEncode(std::span<const uint8_t> bytes);

// Parses exactly 64 hex digits (either case) into a digest. InvalidArgument naming the problem
// (length or the position of the first non-hex character) without echoing the input.
Result<AuthDigest> ParseDigestHex(std::string_view hex);

}  // namespace kvault
