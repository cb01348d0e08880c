// Frame header, whole-frame decoding, message type numbers and protocol limits
// (docs/protocol.md §2, §3).
#include "kvault/transport/frame.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "kvault/transport/protocol_limits.h"

namespace kvault::transport {
namespace {

// Byte offsets of docs/protocol.md §2.1, written out here rather than borrowed from the
// implementation so that a moved field fails these tests.
constexpr size_t kMagicAt = 0;
constexpr size_t kVersionAt = 4;
constexpr size_t kTypeAt = 6;
constexpr size_t kFlagsAt = 8;
constexpr size_t kReservedAt = 10;
constexpr size_t kRequestIdAt = 12;
constexpr size_t kBodyLengthAt = 20;

std::vector<uint8_t> Header(MessageType type, uint64_t request_id, uint32_t body_length) {
  std::vector<uint8_t> bytes(kFrameHeaderBytes);
  EncodeFrameHeader({kProtocolVersion, type, 0, request_id, body_length}, bytes.data());
  return bytes;
}

TEST(FrameHeaderTest, GoldenBytesMatchTheDocument) {
  // docs/protocol.md §2.1, "Example".
  const std::vector<uint8_t> expected = {
      0x4B, 0x56, 0x4C, 0x54,                          // "KVLT"
      0x03, 0x00,                                      // version 3
      0x12, 0x00,                                      // type 0x0012 = load
      0x00, 0x00,                                      // flags
      0x00, 0x00,                                      // reserved
      0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,  // request id 0x0102030405060708
      0x40, 0x01, 0x00, 0x00,                          // body length 320
  };
  EXPECT_EQ(Header(MessageType::kLoad, 0x0102030405060708ull, 320), expected);
  ASSERT_EQ(expected.size(), kFrameHeaderBytes);
  EXPECT_EQ(expected[kMagicAt], 'K');
  EXPECT_EQ(expected[kVersionAt], 3);
  EXPECT_EQ(expected[kTypeAt], 0x12);
  EXPECT_EQ(expected[kFlagsAt], 0);
  EXPECT_EQ(expected[kReservedAt], 0);
  EXPECT_EQ(expected[kRequestIdAt], 0x08);
  EXPECT_EQ(expected[kBodyLengthAt], 0x40);
}

TEST(FrameHeaderTest, RoundTripsAwkwardValues) {
  for (uint64_t id : {uint64_t{0}, uint64_t{1}, ~uint64_t{0}, uint64_t{1} << 63}) {
    for (uint32_t length : {0u, 1u, 4u << 20}) {
      const std::vector<uint8_t> bytes = Header(MessageType::kPong, id, length);
      Result<FrameHeader> h = DecodeFrameHeader(bytes);
      ASSERT_TRUE(h.ok()) << h.status().ToString();
      EXPECT_EQ(h->version, kProtocolVersion);
      EXPECT_EQ(h->type, MessageType::kPong);
      EXPECT_EQ(h->flags, 0);
      EXPECT_EQ(h->request_id, id);
      EXPECT_EQ(h->body_length, length);
    }
  }
}

TEST(FrameHeaderTest, IgnoresBytesAfterTheHeader) {
  std::vector<uint8_t> bytes = Header(MessageType::kPing, 7, 8);
  bytes.resize(100, 0xEE);
  EXPECT_TRUE(DecodeFrameHeader(bytes).ok());
}

TEST(FrameHeaderTest, TruncatedAtEveryLength) {
  const std::vector<uint8_t> bytes = Header(MessageType::kPing, 7, 8);
  for (size_t n = 0; n < kFrameHeaderBytes; ++n) {
    Result<FrameHeader> h = DecodeFrameHeader(std::span(bytes).first(n));
    ASSERT_FALSE(h.ok()) << n;
    EXPECT_EQ(h.status().code(), StatusCode::kCorruption) << n;
  }
}

TEST(FrameHeaderTest, RefusesBadMagic) {
  for (size_t i = 0; i < 4; ++i) {
    std::vector<uint8_t> bytes = Header(MessageType::kPing, 7, 8);
    bytes[kMagicAt + i] ^= 0x20;  // "kVLT", "KvLT", ...
    Result<FrameHeader> h = DecodeFrameHeader(bytes);
    ASSERT_FALSE(h.ok());
    EXPECT_EQ(h.status().code(), StatusCode::kCorruption);
    EXPECT_NE(h.status().message().find("magic"), std::string::npos);
  }
}

TEST(FrameHeaderTest, OtherVersionsAreUnsupportedAndOnlyThey) {
  // 1 and 2 are the earlier versions (docs/protocol.md §8): refused like any other.
  for (uint16_t version : {0, 1, 2, 4, 0x100, 0x200, 0x300, 0xFFFF}) {
    std::vector<uint8_t> bytes = Header(MessageType::kHello, 7, 8);
    bytes[kVersionAt] = static_cast<uint8_t>(version);
    bytes[kVersionAt + 1] = static_cast<uint8_t>(version >> 8);
    // A future version may use the flags and type differently: the version is checked first.
    bytes[kFlagsAt] = 0xFF;
    bytes[kTypeAt] = 0x77;
    Result<FrameHeader> h = DecodeFrameHeader(bytes);
    ASSERT_FALSE(h.ok());
    EXPECT_EQ(h.status().code(), StatusCode::kUnsupported) << version;
    EXPECT_NE(h.status().message().find("version " + std::to_string(version)), std::string::npos);
    // The server can still name the request in its ErrorReply.
    EXPECT_EQ(PeekRequestId(bytes), 7u);
  }
}

TEST(FrameHeaderTest, RefusesReservedFlagBitsAndReservedField) {
  for (int bit = 0; bit < 16; ++bit) {
    std::vector<uint8_t> bytes = Header(MessageType::kPing, 7, 8);
    bytes[kFlagsAt + bit / 8] = static_cast<uint8_t>(1 << (bit % 8));
    Result<FrameHeader> h = DecodeFrameHeader(bytes);
    ASSERT_FALSE(h.ok()) << bit;
    EXPECT_EQ(h.status().code(), StatusCode::kCorruption);
    EXPECT_NE(h.status().message().find("flag"), std::string::npos);
  }
  for (size_t i = 0; i < 2; ++i) {
    std::vector<uint8_t> bytes = Header(MessageType::kPing, 7, 8);
    bytes[kReservedAt + i] = 0x01;
    Result<FrameHeader> h = DecodeFrameHeader(bytes);
    ASSERT_FALSE(h.ok());
    EXPECT_EQ(h.status().code(), StatusCode::kCorruption);
    EXPECT_NE(h.status().message().find("reserved"), std::string::npos);
  }
}

TEST(FrameHeaderTest, RefusesEveryUnknownTypeAndAcceptsEveryKnownOne) {
  int known = 0;
  for (uint32_t raw = 0; raw <= 0xFFFF; ++raw) {
    std::vector<uint8_t> bytes = Header(MessageType::kPing, 7, 8);
    bytes[kTypeAt] = static_cast<uint8_t>(raw);
    bytes[kTypeAt + 1] = static_cast<uint8_t>(raw >> 8);
    Result<FrameHeader> h = DecodeFrameHeader(bytes);
    EXPECT_EQ(h.ok(), IsKnownMessageType(static_cast<uint16_t>(raw))) << raw;
    if (h.ok()) {
      ++known;
      EXPECT_EQ(static_cast<uint16_t>(h->type), raw);
    } else {
      EXPECT_EQ(h.status().code(), StatusCode::kCorruption);
      EXPECT_NE(h.status().message().find("unknown message type"), std::string::npos);
    }
  }
  EXPECT_EQ(known, 27);  // the types of docs/protocol.md §4.1
}

TEST(FrameHeaderTest, BodyLengthLimit) {
  ProtocolLimits limits;
  limits.max_body_bytes = 4096;
  EXPECT_TRUE(DecodeFrameHeader(Header(MessageType::kStore, 1, 4096), limits).ok());
  for (uint32_t length : {4097u, 0xFFFFFFFFu}) {
    Result<FrameHeader> h = DecodeFrameHeader(Header(MessageType::kStore, 1, length), limits);
    ASSERT_FALSE(h.ok());
    EXPECT_EQ(h.status().code(), StatusCode::kOutOfRange);
    EXPECT_NE(h.status().message().find("max_body_bytes"), std::string::npos);
  }
  // The default limit is 4 MiB.
  EXPECT_TRUE(DecodeFrameHeader(Header(MessageType::kStore, 1, 4u << 20)).ok());
  EXPECT_FALSE(DecodeFrameHeader(Header(MessageType::kStore, 1, (4u << 20) + 1)).ok());
}

TEST(FrameHeaderTest, PeekRequestIdNeedsMagicAndWholeHeader) {
  std::vector<uint8_t> bytes = Header(MessageType::kPing, 0xABCDEF, 8);
  EXPECT_EQ(PeekRequestId(bytes), 0xABCDEFu);
  EXPECT_EQ(PeekRequestId(std::span(bytes).first(kFrameHeaderBytes - 1)), std::nullopt);
  bytes[0] = 'X';
  EXPECT_EQ(PeekRequestId(bytes), std::nullopt);
}

TEST(DecodeFrameTest, NeedsExactlyOneFrame) {
  std::vector<uint8_t> bytes = Header(MessageType::kPing, 3, 8);
  for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<uint8_t>(i));
  Result<FrameView> f = DecodeFrame(bytes);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->header.request_id, 3u);
  EXPECT_EQ(f->body.data(), bytes.data() + kFrameHeaderBytes);
  EXPECT_EQ(f->body.size(), 8u);

  for (size_t n = 0; n < bytes.size(); ++n) {
    Result<FrameView> t = DecodeFrame(std::span(bytes).first(n));
    ASSERT_FALSE(t.ok()) << n;
    EXPECT_EQ(t.status().code(), StatusCode::kCorruption) << n;
  }
  bytes.push_back(0);
  Result<FrameView> trailing = DecodeFrame(bytes);
  ASSERT_FALSE(trailing.ok());
  EXPECT_EQ(trailing.status().code(), StatusCode::kCorruption);
  EXPECT_NE(trailing.status().message().find("trailing"), std::string::npos);
}

TEST(FinishFrameTest, RefusesAnOversizedBodyAndRestoresTheBuffer) {
  ProtocolLimits limits;
  limits.max_body_bytes = 1024;
  std::vector<uint8_t> out = {1, 2, 3};
  out.resize(3 + kFrameHeaderBytes + 1025, 0);
  Status s = FinishFrame(MessageType::kLookup, 9, limits, 3, &out);
  EXPECT_EQ(s.code(), StatusCode::kOutOfRange);
  EXPECT_EQ(out, (std::vector<uint8_t>{1, 2, 3}));

  out.resize(3 + kFrameHeaderBytes + 1024, 0);
  ASSERT_TRUE(FinishFrame(MessageType::kLookup, 9, limits, 3, &out).ok());
  Result<FrameView> f = DecodeFrame(std::span(out).subspan(3), limits);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->header.type, MessageType::kLookup);
  EXPECT_EQ(f->header.body_length, 1024u);
}

TEST(MessageTypeTest, NamesAndReplyNumbers) {
  EXPECT_EQ(MessageTypeName(MessageType::kHello), "hello");
  EXPECT_EQ(MessageTypeName(MessageType::kReleaseLeaseReply), "release_lease_reply");
  EXPECT_EQ(MessageTypeName(MessageType::kGpuExport), "gpu_export");
  EXPECT_EQ(MessageTypeName(MessageType::kGpuExportReply), "gpu_export_reply");
  EXPECT_EQ(static_cast<uint16_t>(MessageType::kGpuExport), 0x0015);
  EXPECT_EQ(ReplyTypeFor(MessageType::kGpuExport), MessageType::kGpuExportReply);
  EXPECT_EQ(MessageTypeName(MessageType::kReleaseMemory), "release_memory");
  EXPECT_EQ(MessageTypeName(MessageType::kReleaseMemoryReply), "release_memory_reply");
  EXPECT_EQ(static_cast<uint16_t>(MessageType::kReleaseMemory), 0x0016);
  EXPECT_EQ(ReplyTypeFor(MessageType::kReleaseMemory), MessageType::kReleaseMemoryReply);
  EXPECT_EQ(MessageTypeName(MessageType::kAttachMemory), "attach_memory");
  EXPECT_EQ(MessageTypeName(MessageType::kAttachMemoryReply), "attach_memory_reply");
  EXPECT_EQ(static_cast<uint16_t>(MessageType::kAttachMemory), 0x0004);
  EXPECT_EQ(static_cast<uint16_t>(MessageType::kAttachMemoryReply), 0x8004);
  EXPECT_EQ(ReplyTypeFor(MessageType::kAttachMemory), MessageType::kAttachMemoryReply);
  EXPECT_TRUE(IsKnownMessageType(0x0004));
  EXPECT_TRUE(IsKnownMessageType(0x8004));
  EXPECT_FALSE(IsKnownMessageType(0x0005));
  EXPECT_EQ(MessageTypeName(MessageType::kError), "error");
  EXPECT_EQ(MessageTypeName(static_cast<MessageType>(0x1234)), "unknown");
  EXPECT_EQ(ReplyTypeFor(MessageType::kLookup), MessageType::kLookupReply);
  EXPECT_EQ(ReplyTypeFor(MessageType::kPing), MessageType::kPong);
  EXPECT_FALSE(IsReply(MessageType::kStore));
  EXPECT_TRUE(IsReply(MessageType::kStoreReply));
  EXPECT_TRUE(IsReply(MessageType::kError));
  // Every request's reply number is itself a known type.
  for (uint32_t raw = 0; raw < 0x8000; ++raw) {
    if (!IsKnownMessageType(static_cast<uint16_t>(raw))) continue;
    EXPECT_TRUE(
        IsKnownMessageType(static_cast<uint16_t>(ReplyTypeFor(static_cast<MessageType>(raw)))))
        << raw;
  }
}

TEST(ProtocolLimitsTest, DefaultsAreValidAndDocumented) {
  const ProtocolLimits limits;
  EXPECT_TRUE(limits.Validate().ok());
  EXPECT_EQ(limits.max_body_bytes, 4u << 20);
  EXPECT_EQ(limits.max_keys_per_batch, 4096u);
  EXPECT_EQ(limits.max_block_object_bytes, 64ull << 20);
  EXPECT_EQ(limits.max_string_bytes, 256u);
  EXPECT_EQ(limits.max_remote_key_bytes, 1024u);
  EXPECT_EQ(limits.max_worker_address_bytes, 8192u);
}

TEST(ProtocolLimitsTest, ValidateNamesTheField) {
  auto refused = [](ProtocolLimits l, const char* field) {
    Status s = l.Validate();
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << field;
    EXPECT_NE(s.message().find(field), std::string::npos) << s.ToString();
  };
  ProtocolLimits l;
  l.max_body_bytes = kMinBodyBytes - 1;
  refused(l, "max_body_bytes");
  l = {};
  l.max_body_bytes = kCeilingBodyBytes + 1;
  refused(l, "max_body_bytes");
  l = {};
  l.max_keys_per_batch = 0;
  refused(l, "max_keys_per_batch");
  l = {};
  l.max_block_object_bytes = kCeilingBlockObjectBytes + 1;
  refused(l, "max_block_object_bytes");
  l = {};
  l.max_string_bytes = kCeilingStringBytes + 1;
  refused(l, "max_string_bytes");
  l = {};
  l.max_remote_key_bytes = 0;
  refused(l, "max_remote_key_bytes");
  l = {};
  l.max_worker_address_bytes = kCeilingWorkerAddressBytes + 1;
  refused(l, "max_worker_address_bytes");
}

}  // namespace
}  // namespace kvault::transport
