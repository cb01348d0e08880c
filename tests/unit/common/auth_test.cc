// Tenant auth primitives: token hash, challenge, the client's and the server's proofs and their
// constant-time checks, hex.
#include "kvault/common/auth.h"

#include <gtest/gtest.h>

#include <cctype>
#include <cstdint>
#include <set>
#include <span>
#include <string>
#include <vector>

namespace kvault {
namespace {

// A worked example computed outside kvault with the command line tools:
//   H=$(printf %s "correct horse battery staple" | sha256sum | cut -d' ' -f1)
//   { printf %s kvault-auth-v1; printf 000102...1f | xxd -r -p; } |
//     openssl dgst -sha256 -mac HMAC -macopt hexkey:$H
constexpr std::string_view kToken = "correct horse battery staple";
constexpr std::string_view kTokenHashHex =
    "c4bbcb1fbec99d65bf59d85c8cb62ee2db963f0fe106f483d9afa73bd4e39a8a";
constexpr std::string_view kProofHex =
    "a405f0cabc885fdd292d9b0491a3537f1c3eaa3a8f94e802bd62cc9882b2a36f";

AuthNonce CountingNonce() {
  AuthNonce n;
  for (size_t i = 0; i < n.size(); ++i) n[i] = static_cast<uint8_t>(i);
  return n;
}

TEST(AuthTest, WorkedExampleMatchesOpenSslCommandLine) {
  const AuthDigest hash = TokenHash(kToken);
  EXPECT_EQ(HexEncode(hash), kTokenHashHex);
  const AuthDigest proof = AuthProof(hash, CountingNonce());
  EXPECT_EQ(HexEncode(proof), kProofHex);
  EXPECT_TRUE(VerifyAuthProof(hash, CountingNonce(), proof));
}

TEST(AuthTest, WrongProofNonceOrHashIsRejected) {
  const AuthDigest hash = TokenHash(kToken);
  const AuthNonce nonce = CountingNonce();
  const AuthDigest proof = AuthProof(hash, nonce);
  ASSERT_TRUE(VerifyAuthProof(hash, nonce, proof));  // positive control

  for (size_t byte : {size_t{0}, size_t{17}, size_t{31}}) {
    AuthDigest bad = proof;
    bad[byte] ^= 0x01;
    EXPECT_FALSE(VerifyAuthProof(hash, nonce, bad)) << "flipped proof byte " << byte;
  }
  AuthNonce other_nonce = nonce;
  other_nonce[5] ^= 0x80;
  EXPECT_FALSE(VerifyAuthProof(hash, other_nonce, proof));
  EXPECT_FALSE(VerifyAuthProof(TokenHash("correct horse battery stapler"), nonce, proof));
  // Lengths the server never issues or accepts.
  EXPECT_FALSE(VerifyAuthProof(hash, nonce, std::span<const uint8_t>(proof).first(31)));
  EXPECT_FALSE(VerifyAuthProof(hash, std::span<const uint8_t>(nonce).first(16), proof));
  EXPECT_FALSE(VerifyAuthProof(hash, nonce, {}));
}

// The server's proof (AuthReply::server_proof), a worked example computed independently:
//   python3 -c 'import hmac, hashlib, struct; k = hashlib.sha256(b"secret").digest();
//     m = b"kvault-server-proof-v1" + bytes(range(32)) + bytes(range(32, 64))
//       + struct.pack("<II", 4242, 998) + b"/tmp/kvaultd-abc/memory.sock";
//     print(hmac.new(k, m, hashlib.sha256).hexdigest())'
constexpr std::string_view kServerProofToken = "secret";
constexpr uint32_t kServerProofPid = 4242;
constexpr uint32_t kServerProofUid = 998;
constexpr std::string_view kServerProofSocket = "/tmp/kvaultd-abc/memory.sock";
constexpr std::string_view kServerProofHex =
    "1a5f255d9eacc2faea1d687aa5014b94b10b38a7fcb83111854a1ef7d9476ca7";

AuthDigest CountingClientProof() {
  AuthDigest p;
  for (size_t i = 0; i < p.size(); ++i) p[i] = static_cast<uint8_t>(0x20 + i);
  return p;
}

TEST(AuthTest, ServerProofWorkedExampleMatchesPythonHmac) {
  EXPECT_EQ(kServerProofContext, "kvault-server-proof-v1");
  const AuthDigest hash = TokenHash(kServerProofToken);
  const AuthDigest proof = ServerProof(hash, CountingNonce(), CountingClientProof(),
                                       kServerProofPid, kServerProofUid, kServerProofSocket);
  EXPECT_EQ(HexEncode(proof), kServerProofHex);
  EXPECT_TRUE(VerifyServerProof(hash, CountingNonce(), CountingClientProof(), kServerProofPid,
                                kServerProofUid, kServerProofSocket, proof));
}

TEST(AuthTest, ServerProofIsBoundToEveryInput) {
  const AuthDigest hash = TokenHash(kServerProofToken);
  const AuthNonce nonce = CountingNonce();
  const AuthDigest client = CountingClientProof();
  const uint32_t pid = kServerProofPid;
  const uint32_t uid = kServerProofUid;
  const std::string path(kServerProofSocket);
  const AuthDigest proof = ServerProof(hash, nonce, client, pid, uid, path);
  ASSERT_TRUE(VerifyServerProof(hash, nonce, client, pid, uid, path, proof));  // positive control

  for (size_t byte : {size_t{0}, size_t{17}, size_t{31}}) {
    AuthNonce n = nonce;
    n[byte] ^= 0x01;
    EXPECT_FALSE(VerifyServerProof(hash, n, client, pid, uid, path, proof))
        << "nonce byte " << byte;
    AuthDigest c = client;
    c[byte] ^= 0x01;
    EXPECT_FALSE(VerifyServerProof(hash, nonce, c, pid, uid, path, proof))
        << "client proof byte " << byte;
    AuthDigest p = proof;
    p[byte] ^= 0x01;
    EXPECT_FALSE(VerifyServerProof(hash, nonce, client, pid, uid, path, p))
        << "proof byte " << byte;
  }
  // Another pid or uid: each bit position of each byte, 0, and the two swapped.
  for (int bit = 0; bit < 32; bit += 7) {
    const uint32_t flip = uint32_t{1} << bit;
    EXPECT_FALSE(VerifyServerProof(hash, nonce, client, pid ^ flip, uid, path, proof))
        << "pid bit " << bit;
    EXPECT_FALSE(VerifyServerProof(hash, nonce, client, pid, uid ^ flip, path, proof))
        << "uid bit " << bit;
  }
  EXPECT_FALSE(VerifyServerProof(hash, nonce, client, 0, uid, path, proof));
  EXPECT_FALSE(VerifyServerProof(hash, nonce, client, pid, 0, path, proof));
  EXPECT_FALSE(VerifyServerProof(hash, nonce, client, uid, pid, path, proof));
  for (size_t at : {size_t{0}, size_t{5}, path.size() - 1}) {
    std::string other = path;
    other[at] = static_cast<char>(other[at] ^ 0x01);
    EXPECT_FALSE(VerifyServerProof(hash, nonce, client, pid, uid, other, proof))
        << "path byte " << at;
  }
  // A path cut short, lengthened, or empty (a server without a memory socket) is another path.
  EXPECT_FALSE(
      VerifyServerProof(hash, nonce, client, pid, uid, path.substr(0, path.size() - 1), proof));
  EXPECT_FALSE(VerifyServerProof(hash, nonce, client, pid, uid, path + "x", proof));
  EXPECT_FALSE(VerifyServerProof(hash, nonce, client, pid, uid, "", proof));
  EXPECT_FALSE(VerifyServerProof(hash, nonce, client, 0, 0, "", proof));
  // Another token.
  EXPECT_FALSE(VerifyServerProof(TokenHash("secreT"), nonce, client, pid, uid, path, proof));
  // The client's own proof is never a server proof, nor the reverse.
  EXPECT_FALSE(VerifyServerProof(hash, nonce, client, pid, uid, path, AuthProof(hash, nonce)));
  EXPECT_FALSE(VerifyAuthProof(hash, nonce, proof));
  // Wrong lengths: never true, and never a crash.
  const std::span<const uint8_t> n(nonce);
  const std::span<const uint8_t> c(client);
  const std::span<const uint8_t> p(proof);
  EXPECT_FALSE(VerifyServerProof(hash, n.first(31), c, pid, uid, path, p));
  EXPECT_FALSE(VerifyServerProof(hash, n, c.first(31), pid, uid, path, p));
  EXPECT_FALSE(VerifyServerProof(hash, n, c, pid, uid, path, p.first(31)));
  EXPECT_FALSE(VerifyServerProof(hash, {}, c, pid, uid, path, p));
  EXPECT_FALSE(VerifyServerProof(hash, n, {}, pid, uid, path, p));
  EXPECT_FALSE(VerifyServerProof(hash, n, c, pid, uid, path, {}));
  const std::vector<uint8_t> longer_nonce(33, 0);
  EXPECT_FALSE(VerifyServerProof(hash, longer_nonce, c, pid, uid, path, p));
  std::vector<uint8_t> longer_proof(proof.begin(), proof.end());
  longer_proof.push_back(0);
  EXPECT_FALSE(VerifyServerProof(hash, n, c, pid, uid, path, longer_proof));
}

TEST(AuthTest, ConstantTimeEqualComparesEveryByteAndTheLength) {
  const std::vector<uint8_t> a = {1, 2, 3, 4};
  EXPECT_TRUE(ConstantTimeEqual(a, std::vector<uint8_t>{1, 2, 3, 4}));  // positive control
  for (size_t i = 0; i < a.size(); ++i) {
    std::vector<uint8_t> b = a;
    b[i] ^= 0x80;
    EXPECT_FALSE(ConstantTimeEqual(a, b)) << "byte " << i;
  }
  EXPECT_FALSE(ConstantTimeEqual(a, std::vector<uint8_t>{1, 2, 3}));
  EXPECT_TRUE(ConstantTimeEqual({}, {}));
}

TEST(AuthTest, ProofIsBoundToTheContextString) {
  // A plain HMAC of the nonce under the same key (openssl dgst as above, without the prefix) is a
  // different value: a proof cannot be confused with another use of the same key.
  const AuthDigest hash = TokenHash(kToken);
  EXPECT_NE(HexEncode(AuthProof(hash, CountingNonce())),
            "d754a838e5ce813cb800e8261f850f653c7df5ecb8256d0b18e849800cd9829d");
  EXPECT_NE(AuthProof(hash, {}), AuthProof(hash, CountingNonce()));
}

TEST(AuthTest, ChallengesAreFreshRandomBytes) {
  std::set<AuthNonce> seen;
  for (int i = 0; i < 64; ++i) {
    auto n = NewAuthChallenge();
    ASSERT_TRUE(n.ok()) << n.status().ToString();
    EXPECT_TRUE(seen.insert(*n).second);
  }
}

TEST(AuthTest, HexRoundTripsAndRejectsBadInput) {
  auto parsed = ParseDigestHex(kTokenHashHex);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(*parsed, TokenHash(kToken));
  std::string upper(kTokenHashHex);
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  ASSERT_TRUE(ParseDigestHex(upper).ok());
  EXPECT_EQ(*ParseDigestHex(upper), *parsed);

  EXPECT_EQ(ParseDigestHex(kTokenHashHex.substr(1)).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseDigestHex("").status().code(), StatusCode::kInvalidArgument);
  std::string bad(kTokenHashHex);
  bad[10] = 'g';
  auto r = ParseDigestHex(bad);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("character 11"), std::string::npos) << r.status().ToString();
  // The error never echoes the (secret) input.
  EXPECT_EQ(r.status().message().find(bad.substr(0, 10)), std::string::npos);
  EXPECT_EQ(HexEncode(std::vector<uint8_t>{0x00, 0xab, 0xff}), "00abff");
}

}  // namespace
}  // namespace kvault
