// The bytes of the memory hand-over (docs/memory_handover.md): round trips, the canonical form of
// the request's connection ends, the document's worked example byte for byte, and every refusal
// of the decoders and of ValidateHandOverReply. The region request's:
// memory_handover_region_wire_test.cc.
#include "kvault/transport/local/memory_handover_wire.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "memory_handover_samples.h"
#include "message_samples.h"

namespace kvault::transport {
namespace {

using testing::AllWireStatuses;
using testing::ExpectRequestRefused;
using testing::kDoc6;
using testing::kLoopback6;
using testing::RequestBytes;
using testing::SampleRequest;
using testing::V4End;
using testing::V6End;

// Where each end starts in a request.
constexpr size_t kClientEndAt = 32;
constexpr size_t kServerEndAt = 51;

Bytes32 SampleHandle() {
  Bytes32 handle;
  for (size_t i = 0; i < handle.size(); ++i) handle[i] = static_cast<uint8_t>(0x40 + i);
  return handle;
}

// Both the header function and the whole-reply decoder refuse `bytes` with `code`.
void ExpectReplyRefused(const std::vector<uint8_t>& bytes, StatusCode code,
                        const std::string& needle) {
  Result<size_t> n = HandOverReplyMessageBytes(bytes);
  ASSERT_FALSE(n.ok()) << needle;
  EXPECT_EQ(n.status().code(), code) << n.status().ToString();
  EXPECT_NE(n.status().message().find(needle), std::string::npos) << n.status().ToString();
  Result<HandOverReply> r = DecodeHandOverReply(bytes);
  ASSERT_FALSE(r.ok()) << needle;
  EXPECT_EQ(r.status().code(), code) << r.status().ToString();
  EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status().ToString();
}

TEST(MemoryHandOverWireTest, RequestRoundTrips) {
  HandOverProbe ones;
  ones.fill(0xFF);
  std::array<uint8_t, 16> all_ones;
  all_ones.fill(0xFF);
  // ::ffff:0:0/96 with one bit off is a plain IPv6 address.
  std::array<uint8_t, 16> almost_mapped = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFE, 127, 0, 0, 1};
  const std::vector<TcpEnd> ends = {
      V4End({127, 0, 0, 1}, 7400), V4End({0, 0, 0, 0}, 1), V4End({255, 255, 255, 255}, 0xFFFF),
      V6End(kLoopback6, 7400),     V6End(kDoc6, 51234),    V6End(all_ones, 1),
      V6End(almost_mapped, 80),    V6End({}, 443),
  };
  for (uint64_t address : {uint64_t{1}, uint64_t{0x7FFC12345678}, ~uint64_t{0}}) {
    for (const HandOverProbe& probe : {HandOverProbe{}, SampleRequest().probe, ones}) {
      for (size_t i = 0; i < ends.size(); ++i) {
        const HandOverRequest request{address, probe, ends[i], ends[ends.size() - 1 - i]};
        const std::vector<uint8_t> bytes = RequestBytes(request);
        ASSERT_EQ(bytes.size(), kHandOverRequestBytes);
        Result<HandOverRequest> back = DecodeHandOverRequest(bytes);
        ASSERT_TRUE(back.ok()) << back.status().ToString();
        EXPECT_EQ(*back, request);
      }
    }
  }
}

// The encoder writes an IPv4-mapped IPv6 end as family 4, and an IPv4 end's bytes 4..15 as zero.
TEST(MemoryHandOverWireTest, RequestEndsAreWrittenCanonically) {
  const std::array<uint8_t, 16> mapped = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 127, 0, 0, 1};
  HandOverRequest request = SampleRequest();
  request.client_end = V6End(mapped, 51234);
  TcpEnd untidy = V4End({127, 0, 0, 1}, 7400);
  std::fill(untidy.address.begin() + 4, untidy.address.end(), 0xEE);
  request.server_end = untidy;
  const std::vector<uint8_t> bytes = RequestBytes(request);
  EXPECT_EQ(bytes, RequestBytes(SampleRequest()));
  EXPECT_EQ(bytes[kClientEndAt], 4);
  Result<HandOverRequest> back = DecodeHandOverRequest(bytes);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, SampleRequest());
}

TEST(MemoryHandOverWireTest, ReplyRoundTrips) {
  std::vector<HandOverReply> replies = {
      {WireStatus::kOk, SampleHandle(), ""},
      {WireStatus::kOk, Bytes32{1}, "kept for 10 s"},
      {WireStatus::kUnavailable, {}, "too many memory handles"},
      {WireStatus::kInvalidArgument, {}, std::string(kMaxHandOverMessageBytes, 'm')},
  };
  for (WireStatus s : AllWireStatuses()) {
    if (s != WireStatus::kOk) replies.push_back({s, {}, ""});
  }
  for (const HandOverReply& reply : replies) {
    ASSERT_TRUE(ValidateHandOverReply(reply).ok()) << WireStatusName(reply.status);
    const std::vector<uint8_t> bytes = EncodeHandOverReply(reply);
    ASSERT_EQ(bytes.size(), kHandOverReplyHeaderBytes + reply.message.size());
    Result<size_t> n = HandOverReplyMessageBytes(bytes);
    ASSERT_TRUE(n.ok()) << n.status().ToString();
    EXPECT_EQ(*n, reply.message.size());
    // The header alone says as much.
    Result<size_t> from_header =
        HandOverReplyMessageBytes(std::span(bytes).first(kHandOverReplyHeaderBytes));
    ASSERT_TRUE(from_header.ok());
    EXPECT_EQ(*from_header, reply.message.size());
    Result<HandOverReply> back = DecodeHandOverReply(bytes);
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(*back, reply);
  }
}

// docs/memory_handover.md, "Example": a request, the ok reply and a refusal.
TEST(MemoryHandOverWireTest, GoldenBytesMatchTheDocument) {
  const std::vector<uint8_t> request = {
      0x4B, 0x56, 0x4D, 0x48,                          // "KVMH"
      0x01, 0x00,                                      // version 1
      0x00, 0x00,                                      // reserved
      0x78, 0x56, 0x34, 0x12, 0xFC, 0x7F, 0x00, 0x00,  // probe_address 0x7FFC12345678
      0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17,  // probe 10..1F
      0x18, 0x19, 0x1A, 0x1B, 0x1C, 0x1D, 0x1E, 0x1F,  //
      0x04,                                            // client_end: family 4
      0x7F, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,  //   127.0.0.1, 12 zero bytes
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  //
      0x22, 0xC8,                                      //   port 51234
      0x04,                                            // server_end: family 4
      0x7F, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,  //   127.0.0.1, 12 zero bytes
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  //
      0xE8, 0x1C,                                      //   port 7400
  };
  ASSERT_EQ(request.size(), kHandOverRequestBytes);
  EXPECT_EQ(RequestBytes(SampleRequest()), request);
  Result<HandOverRequest> decoded = DecodeHandOverRequest(request);
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(*decoded, SampleRequest());

  const std::vector<uint8_t> ok = {
      0x4B, 0x56, 0x4D, 0x48,                          // "KVMH"
      0x01, 0x00,                                      // version 1
      0x00,                                            // status ok
      0x00,                                            // reserved
      0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47,  // handle 40..5F
      0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D, 0x4E, 0x4F,  //
      0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57,  //
      0x58, 0x59, 0x5A, 0x5B, 0x5C, 0x5D, 0x5E, 0x5F,  //
      0x00, 0x00,                                      // message: 0 bytes
  };
  EXPECT_EQ(EncodeHandOverReply({WireStatus::kOk, SampleHandle(), ""}), ok);

  std::vector<uint8_t> refused = {
      0x4B, 0x56, 0x4D, 0x48,  // "KVMH"
      0x01, 0x00,              // version 1
      0x08,                    // status unavailable
      0x00,                    // reserved
  };
  refused.resize(refused.size() + 32, 0x00);  // handle: 32 zero bytes
  for (uint8_t b : {0x04, 0x00, 0x62, 0x75, 0x73, 0x79}) refused.push_back(b);  // message "busy"
  ASSERT_EQ(refused.size(), kHandOverReplyHeaderBytes + 4);
  EXPECT_EQ(EncodeHandOverReply({WireStatus::kUnavailable, {}, "busy"}), refused);
  Result<HandOverReply> back = DecodeHandOverReply(refused);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->message, "busy");
}

TEST(MemoryHandOverWireTest, RequestOfAnotherLengthIsCorruption) {
  const std::vector<uint8_t> good = RequestBytes(SampleRequest());
  for (size_t n : {size_t{0}, size_t{4}, size_t{31}, size_t{51}, size_t{69}}) {
    ExpectRequestRefused(std::vector<uint8_t>(good.begin(), good.begin() + n),
                         StatusCode::kCorruption, std::to_string(n) + " bytes");
  }
  std::vector<uint8_t> longer = good;
  longer.push_back(0);
  ExpectRequestRefused(longer, StatusCode::kCorruption, "71 bytes");
  // The 32-byte request of an earlier draft (no connection ends), whole and well-formed as it
  // was, is refused by its length.
  const std::vector<uint8_t> draft(good.begin(), good.begin() + 32);
  ExpectRequestRefused(draft, StatusCode::kCorruption, "32 bytes, not 70");
}

TEST(MemoryHandOverWireTest, RequestEnds) {
  const std::vector<uint8_t> good = RequestBytes(SampleRequest());
  HandOverRequest six = SampleRequest();
  six.client_end = V6End(kDoc6, 51234);
  six.server_end = V6End(kLoopback6, 7400);
  const std::vector<uint8_t> good6 = RequestBytes(six);
  ASSERT_TRUE(DecodeHandOverRequest(good6).ok());
  for (const auto& [at, field] : {std::pair<size_t, std::string>{kClientEndAt, "client_end"},
                                  std::pair<size_t, std::string>{kServerEndAt, "server_end"}}) {
    // A family other than 4 and 6.
    for (uint8_t family : {0, 1, 2, 5, 10, 41, 0xFF}) {
      for (const std::vector<uint8_t>& base : {good, good6}) {
        std::vector<uint8_t> bad = base;
        bad[at] = family;
        ExpectRequestRefused(bad, StatusCode::kCorruption,
                             field + ": family " + std::to_string(family));
      }
    }
    // Family 4 with any nonzero byte after the 4 address bytes.
    for (size_t pad : {size_t{5}, size_t{10}, size_t{16}}) {
      std::vector<uint8_t> bad = good;
      bad[at + pad] = 0x01;
      ExpectRequestRefused(bad, StatusCode::kCorruption, field + ": family 4 with nonzero");
    }
    // Family 6 with an IPv4-mapped address: the same end has exactly one encoding, family 4.
    std::vector<uint8_t> mapped = good;
    mapped[at] = 6;
    std::fill(mapped.begin() + at + 1, mapped.begin() + at + 11, 0);
    mapped[at + 11] = 0xFF;
    mapped[at + 12] = 0xFF;
    mapped[at + 13] = 127;
    mapped[at + 14] = 0;
    mapped[at + 15] = 0;
    mapped[at + 16] = 1;
    ExpectRequestRefused(mapped, StatusCode::kCorruption, field + ": family 6 with an IPv4-mapped");
    std::vector<uint8_t> mapped_any = mapped;  // ::ffff:0.0.0.0 too
    std::fill(mapped_any.begin() + at + 13, mapped_any.begin() + at + 17, 0);
    ExpectRequestRefused(mapped_any, StatusCode::kCorruption, field + ": family 6 with an IPv4");
    // One bit off the prefix: a plain IPv6 end.
    std::vector<uint8_t> almost = mapped;
    almost[at + 12] = 0xFE;
    Result<HandOverRequest> plain = DecodeHandOverRequest(almost);
    ASSERT_TRUE(plain.ok()) << plain.status().ToString();
    const TcpEnd& end = at == kClientEndAt ? plain->client_end : plain->server_end;
    EXPECT_TRUE(end.ipv6);
    EXPECT_EQ(end.address[11], 0xFE);
    // Port 0, for either family.
    for (const std::vector<uint8_t>& base : {good, good6}) {
      std::vector<uint8_t> zero_port = base;
      zero_port[at + 17] = 0;
      zero_port[at + 18] = 0;
      ExpectRequestRefused(zero_port, StatusCode::kInvalidArgument, field + ": port is 0");
    }
    // The structure is checked before the port.
    std::vector<uint8_t> both = good;
    both[at] = 5;
    both[at + 17] = 0;
    both[at + 18] = 0;
    ExpectRequestRefused(both, StatusCode::kCorruption, field + ": family 5");
  }
  // The ends are checked in field order: a bad client_end is reported before a bad server_end.
  std::vector<uint8_t> both_bad = good;
  both_bad[kClientEndAt + 17] = 0;
  both_bad[kClientEndAt + 18] = 0;
  both_bad[kServerEndAt] = 9;
  ExpectRequestRefused(both_bad, StatusCode::kInvalidArgument, "client_end: port is 0");
  // Every message names the request.
  std::vector<uint8_t> bad = good;
  bad[kServerEndAt] = 9;
  ExpectRequestRefused(bad, StatusCode::kCorruption, "memory hand-over request: server_end");
}

TEST(MemoryHandOverWireTest, RequestHeaderFields) {
  const std::vector<uint8_t> good = RequestBytes(SampleRequest());
  for (size_t at = 0; at < 4; ++at) {
    std::vector<uint8_t> bad = good;
    bad[at] ^= 0x20;
    ExpectRequestRefused(bad, StatusCode::kCorruption, "bad magic");
  }
  // "KVLT", the control protocol's magic, is not this one.
  std::vector<uint8_t> kvlt = good;
  kvlt[2] = 'L';
  kvlt[3] = 'T';
  ExpectRequestRefused(kvlt, StatusCode::kCorruption, "bad magic");
  for (uint16_t version : {0, 2, 0x100, 0xFFFF}) {
    std::vector<uint8_t> bad = good;
    bad[4] = static_cast<uint8_t>(version);
    bad[5] = static_cast<uint8_t>(version >> 8);
    bad[6] = 0xFF;  // the version is checked before the reserved field
    ExpectRequestRefused(bad, StatusCode::kUnsupported, "version " + std::to_string(version));
  }
  for (size_t at : {6, 7}) {
    std::vector<uint8_t> bad = good;
    bad[at] = 1;
    ExpectRequestRefused(bad, StatusCode::kCorruption, "reserved");
  }
  std::vector<uint8_t> zero = good;
  std::fill(zero.begin() + 8, zero.begin() + 16, 0);
  ExpectRequestRefused(zero, StatusCode::kInvalidArgument, "probe_address");
}

TEST(MemoryHandOverWireTest, ValidateReply) {
  const auto expect = [](const HandOverReply& reply, StatusCode code, const std::string& needle) {
    Status s = ValidateHandOverReply(reply);
    EXPECT_EQ(s.code(), code) << s.ToString();
    EXPECT_NE(s.message().find(needle), std::string::npos) << s.ToString();
  };
  expect({WireStatus::kOk, {}, ""}, StatusCode::kInvalidArgument, "handle");
  expect({WireStatus::kUnavailable, SampleHandle(), "busy"}, StatusCode::kInvalidArgument,
         "handle");
  expect({WireStatus::kInternal, Bytes32{0, 0, 0, 1}, ""}, StatusCode::kInvalidArgument, "handle");
  expect({static_cast<WireStatus>(10), {}, ""}, StatusCode::kInvalidArgument,
         "unknown wire status 10");
  expect({static_cast<WireStatus>(255), {}, ""}, StatusCode::kInvalidArgument,
         "unknown wire status 255");
  expect({WireStatus::kUnavailable, {}, std::string(kMaxHandOverMessageBytes + 1, 'm')},
         StatusCode::kOutOfRange, "257 bytes");
  EXPECT_TRUE(ValidateHandOverReply({WireStatus::kOk, SampleHandle(), ""}).ok());
  EXPECT_TRUE(ValidateHandOverReply({WireStatus::kUnavailable, {}, std::string(256, 'm')}).ok());
}

TEST(MemoryHandOverWireTest, ReplyHeaderFields) {
  const std::vector<uint8_t> ok = EncodeHandOverReply({WireStatus::kOk, SampleHandle(), ""});
  const std::vector<uint8_t> refused = EncodeHandOverReply({WireStatus::kUnavailable, {}, "busy"});
  for (size_t n : {size_t{0}, size_t{8}, kHandOverReplyHeaderBytes - 1}) {
    ExpectReplyRefused(std::vector<uint8_t>(ok.begin(), ok.begin() + n), StatusCode::kCorruption,
                       "truncated");
  }
  for (size_t at = 0; at < 4; ++at) {
    std::vector<uint8_t> bad = ok;
    bad[at] ^= 0x01;
    ExpectReplyRefused(bad, StatusCode::kCorruption, "bad magic");
  }
  for (uint16_t version : {0, 2, 0xFFFF}) {
    std::vector<uint8_t> bad = ok;
    bad[4] = static_cast<uint8_t>(version);
    bad[5] = static_cast<uint8_t>(version >> 8);
    ExpectReplyRefused(bad, StatusCode::kUnsupported, "version " + std::to_string(version));
  }
  std::vector<uint8_t> reserved = ok;
  reserved[7] = 0x80;
  ExpectReplyRefused(reserved, StatusCode::kCorruption, "reserved");
  // Status byte 10 (a gap), 36 (after the last), 255.
  for (uint8_t bad_status : {10, 36, 255}) {
    std::vector<uint8_t> bad = refused;
    bad[6] = bad_status;
    ExpectReplyRefused(bad, StatusCode::kCorruption, "unknown wire status");
  }
  // ok with an all-zero handle; not ok with a handle.
  std::vector<uint8_t> ok_without_handle = refused;
  ok_without_handle[6] = 0;
  ExpectReplyRefused(ok_without_handle, StatusCode::kCorruption, "handle");
  std::vector<uint8_t> refused_with_handle = ok;
  refused_with_handle[6] = static_cast<uint8_t>(WireStatus::kUnavailable);
  ExpectReplyRefused(refused_with_handle, StatusCode::kCorruption, "handle");
  std::vector<uint8_t> one_byte_handle = refused;
  one_byte_handle[39] = 1;
  ExpectReplyRefused(one_byte_handle, StatusCode::kCorruption, "handle");
}

TEST(MemoryHandOverWireTest, ReplyMessageLength) {
  // A length of 257 is refused from the header alone, before the message is read.
  for (uint16_t n : {uint16_t{kMaxHandOverMessageBytes + 1}, uint16_t{0xFFFF}}) {
    std::vector<uint8_t> header = EncodeHandOverReply({WireStatus::kUnavailable, {}, ""});
    header[40] = static_cast<uint8_t>(n);
    header[41] = static_cast<uint8_t>(n >> 8);
    ExpectReplyRefused(header, StatusCode::kOutOfRange, std::to_string(n) + " bytes");
    std::vector<uint8_t> whole = header;
    whole.resize(kHandOverReplyHeaderBytes + n, 'm');
    ExpectReplyRefused(whole, StatusCode::kOutOfRange, std::to_string(n) + " bytes");
  }
  // Exactly the limit is fine.
  const std::vector<uint8_t> longest =
      EncodeHandOverReply({WireStatus::kUnavailable, {}, std::string(256, 'm')});
  EXPECT_TRUE(DecodeHandOverReply(longest).ok());
}

TEST(MemoryHandOverWireTest, ReplyWithTrailingOrMissingBytes) {
  const std::vector<uint8_t> refused = EncodeHandOverReply({WireStatus::kUnavailable, {}, "busy"});
  std::vector<uint8_t> trailing = refused;
  trailing.push_back(0);
  Result<HandOverReply> r = DecodeHandOverReply(trailing);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kCorruption);
  EXPECT_NE(r.status().message().find("1 trailing bytes"), std::string::npos)
      << r.status().ToString();
  // The header alone still reads: the caller reads exactly the message after it.
  Result<size_t> n = HandOverReplyMessageBytes(trailing);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 4u);
  for (size_t cut = 1; cut <= 4; ++cut) {
    const std::vector<uint8_t> short_reply(refused.begin(), refused.end() - cut);
    Result<HandOverReply> s = DecodeHandOverReply(short_reply);
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.status().code(), StatusCode::kCorruption);
    EXPECT_NE(s.status().message().find(std::to_string(cut) + " bytes missing"), std::string::npos)
        << s.status().ToString();
  }
  // An ok reply followed by a message that its header does not announce.
  std::vector<uint8_t> ok = EncodeHandOverReply({WireStatus::kOk, SampleHandle(), ""});
  ok.push_back('x');
  EXPECT_EQ(DecodeHandOverReply(ok).status().code(), StatusCode::kCorruption);
}

}  // namespace
}  // namespace kvault::transport
