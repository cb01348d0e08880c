// Every message survives encode -> frame -> decode unchanged, encodings are canonical, and the
// bytes match docs/protocol.md.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <set>
#include <vector>

#include "kvault/transport/messages.h"
#include "message_samples.h"

namespace kvault::transport {
namespace {

using testing::PatternKey;
using testing::SampleMessages;

std::vector<uint8_t> Encode(const Message& m, uint64_t request_id,
                            const ProtocolLimits& limits = {}) {
  std::vector<uint8_t> out;
  Status s = AppendMessageFrame(m, request_id, limits, &out);
  EXPECT_TRUE(s.ok()) << MessageTypeName(TypeOf(m)) << ": " << s.ToString();
  return out;
}

TEST(MessageRoundTripTest, SamplesCoverEveryType) {
  std::set<MessageType> types;
  for (const Message& m : SampleMessages()) types.insert(TypeOf(m));
  EXPECT_EQ(types.size(), std::variant_size_v<Message>);
}

TEST(MessageRoundTripTest, EverySampleRoundTripsCanonically) {
  uint64_t request_id = 0;
  for (const Message& m : SampleMessages()) {
    request_id = request_id * 6364136223846793005ull + 1442695040888963407ull;
    const std::vector<uint8_t> frame = Encode(m, request_id);
    Result<FrameView> view = DecodeFrame(frame);
    ASSERT_TRUE(view.ok()) << view.status().ToString();
    EXPECT_EQ(view->header.type, TypeOf(m));
    EXPECT_EQ(view->header.request_id, request_id);
    EXPECT_EQ(view->header.flags, 0);
    Result<Message> decoded = DecodeMessage(view->header.type, view->body);
    ASSERT_TRUE(decoded.ok()) << MessageTypeName(TypeOf(m)) << ": " << decoded.status().ToString();
    EXPECT_EQ(*decoded, m) << MessageTypeName(TypeOf(m));
    // The decoded message encodes to the same bytes: one encoding per message.
    EXPECT_EQ(Encode(*decoded, request_id), frame) << MessageTypeName(TypeOf(m));
  }
}

TEST(MessageRoundTripTest, HelloCarriesClientPid) {
  for (uint32_t pid : {0u, 1u, 4242u, 0x7FFFFFFFu, 0xFFFFFFFFu}) {
    Hello hello;
    hello.tenant = "acme";
    hello.client_name = "vllm-worker-3";
    hello.worker_address = {1, 2, 3};
    hello.client_pid = pid;
    const std::vector<uint8_t> frame = Encode(hello, 1);
    Result<FrameView> view = DecodeFrame(frame);
    ASSERT_TRUE(view.ok()) << view.status().ToString();
    Result<Message> decoded = DecodeMessage(view->header.type, view->body);
    ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
    ASSERT_TRUE(std::holds_alternative<Hello>(*decoded));
    EXPECT_EQ(std::get<Hello>(*decoded).client_pid, pid);
    EXPECT_EQ(std::get<Hello>(*decoded), hello);
  }
}

TEST(MessageRoundTripTest, AuthReplyCarriesEveryDataPlane) {
  for (DataPlane plane : {DataPlane::kNone, DataPlane::kUcx, DataPlane::kProcessMemory}) {
    const AuthReply reply{WireStatus::kOk, 0x1122334455667788ull, plane, ""};
    const std::vector<uint8_t> frame = Encode(reply, 2);
    Result<FrameView> view = DecodeFrame(frame);
    ASSERT_TRUE(view.ok()) << view.status().ToString();
    // u8 status, u64 session_id, u8 data_plane, string message.
    ASSERT_EQ(view->body.size(), 1 + 8 + 1 + 2u);
    EXPECT_EQ(view->body[9], static_cast<uint8_t>(plane));
    Result<Message> decoded = DecodeMessage(view->header.type, view->body);
    ASSERT_TRUE(decoded.ok()) << DataPlaneName(plane) << ": " << decoded.status().ToString();
    ASSERT_TRUE(std::holds_alternative<AuthReply>(*decoded));
    EXPECT_EQ(std::get<AuthReply>(*decoded).data_plane, plane);
    EXPECT_EQ(std::get<AuthReply>(*decoded), reply);
  }
}

// docs/protocol.md §4.2, "Example" of Hello: a local client that offers only its pid.
TEST(MessageRoundTripTest, HelloGoldenBytesMatchTheDocument) {
  Hello hello;
  hello.tenant = "acme";
  hello.client_name = "w1";
  hello.client_pid = 4242;
  const std::vector<uint8_t> expected = {
      0x4B, 0x56, 0x4C, 0x54, 0x02, 0x00, 0x01, 0x00,  // "KVLT", version 2, type 0x0001
      0x00, 0x00, 0x00, 0x00,                          // flags, reserved
      0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // request id 1
      0x14, 0x00, 0x00, 0x00,                          // body length 20
      0x02, 0x00,                                      // client_version 2
      0x04, 0x00, 'a',  'c',  'm',  'e',               // tenant "acme"
      0x02, 0x00, 'w',  '1',                           // client_name "w1"
      0x00, 0x00, 0x00, 0x00,                          // worker_address: 0 bytes
      0x92, 0x10, 0x00, 0x00,                          // client_pid 4242
  };
  Result<std::vector<uint8_t>> frame = EncodeFrame(hello, 1);
  ASSERT_TRUE(frame.ok()) << frame.status().ToString();
  EXPECT_EQ(*frame, expected);
}

// docs/protocol.md §4.2, "Example" of AuthReply: session 77 gets the process_memory data plane.
TEST(MessageRoundTripTest, AuthReplyGoldenBytesMatchTheDocument) {
  const std::vector<uint8_t> expected = {
      0x4B, 0x56, 0x4C, 0x54, 0x02, 0x00, 0x02, 0x80,  // "KVLT", version 2, type 0x8002
      0x00, 0x00, 0x00, 0x00,                          // flags, reserved
      0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // request id 2
      0x0C, 0x00, 0x00, 0x00,                          // body length 12
      0x00,                                            // status ok
      0x4D, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // session_id 77
      0x02,                                            // data_plane process_memory
      0x00, 0x00,                                      // message ""
  };
  Result<std::vector<uint8_t>> frame =
      EncodeFrame(AuthReply{WireStatus::kOk, 77, DataPlane::kProcessMemory, ""}, 2);
  ASSERT_TRUE(frame.ok()) << frame.status().ToString();
  EXPECT_EQ(*frame, expected);
}

TEST(MessageRoundTripTest, AppendFrameConcatenatesFrames) {
  std::vector<uint8_t> stream = {0xAA};
  ASSERT_TRUE(AppendFrame(Ping{1}, 10, {}, &stream).ok());
  ASSERT_TRUE(AppendFrame(Stats{}, 11, {}, &stream).ok());
  ASSERT_EQ(stream.size(), 1 + kFrameHeaderBytes + 8 + kFrameHeaderBytes);
  Result<FrameView> ping = DecodeFrame(std::span(stream).subspan(1, kFrameHeaderBytes + 8));
  ASSERT_TRUE(ping.ok());
  EXPECT_EQ(ping->header.request_id, 10u);
  Result<FrameView> stats = DecodeFrame(std::span(stream).subspan(1 + kFrameHeaderBytes + 8));
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->header.type, MessageType::kStats);
  EXPECT_EQ(stats->body.size(), 0u);
}

TEST(MessageRoundTripTest, DecodeFrameAsChecksTheType) {
  Result<std::vector<uint8_t>> frame = EncodeFrame(Pong{77}, 5);
  ASSERT_TRUE(frame.ok());
  Result<FrameView> view = DecodeFrame(*frame);
  ASSERT_TRUE(view.ok());
  Result<Pong> pong = DecodeFrameAs<Pong>(view->header, view->body);
  ASSERT_TRUE(pong.ok());
  EXPECT_EQ(pong->payload, 77u);
  Result<Ping> wrong = DecodeFrameAs<Ping>(view->header, view->body);
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), StatusCode::kCorruption);
  EXPECT_NE(wrong.status().message().find("expected ping, got pong"), std::string::npos);
}

TEST(MessageRoundTripTest, FullBatchesAtTheLimit) {
  ProtocolLimits limits;
  limits.max_keys_per_batch = 4096;
  Lookup lookup;
  for (uint32_t i = 0; i < limits.max_keys_per_batch; ++i) {
    lookup.keys.push_back(PatternKey(static_cast<uint8_t>(i)));
  }
  Result<std::vector<uint8_t>> frame = EncodeFrame(lookup, 1, limits);
  ASSERT_TRUE(frame.ok()) << frame.status().ToString();
  EXPECT_EQ(frame->size(), kFrameHeaderBytes + 9 + 32 * 4096);
  Result<FrameView> view = DecodeFrame(*frame, limits);
  ASSERT_TRUE(view.ok());
  Result<Lookup> back = Lookup::DecodeBody(view->body, limits);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, lookup);

  Load load;
  load.remote_key = {1, 2, 3};
  load.entries.assign(limits.max_keys_per_batch, LoadEntry{PatternKey(3), 4096, 64, 0, 64});
  Result<std::vector<uint8_t>> load_frame = EncodeFrame(load, 2, limits);
  ASSERT_TRUE(load_frame.ok()) << load_frame.status().ToString();
  Result<FrameView> load_view = DecodeFrame(*load_frame, limits);
  ASSERT_TRUE(load_view.ok());
  Result<Load> load_back = Load::DecodeBody(load_view->body, limits);
  ASSERT_TRUE(load_back.ok());
  EXPECT_EQ(*load_back, load);
}

TEST(MessageRoundTripTest, StatValuesKeepTheirExactBits) {
  const double nan = std::bit_cast<double>(0x7FF8DEADBEEF0001ull);
  StatsReply reply;
  reply.entries = {{"nan", nan}, {"neg_zero", -0.0}, {"max", std::numeric_limits<double>::max()}};
  Result<std::vector<uint8_t>> frame = EncodeFrame(reply, 1);
  ASSERT_TRUE(frame.ok());
  Result<StatsReply> back =
      StatsReply::DecodeBody(std::span(*frame).subspan(kFrameHeaderBytes), {});
  ASSERT_TRUE(back.ok());
  ASSERT_EQ(back->entries.size(), 3u);
  EXPECT_EQ(std::bit_cast<uint64_t>(std::get<double>(back->entries[0].value)),
            0x7FF8DEADBEEF0001ull);
  EXPECT_TRUE(std::signbit(std::get<double>(back->entries[1].value)));
  EXPECT_EQ(std::get<double>(back->entries[2].value), std::numeric_limits<double>::max());
  // A u64 stays a u64, even when a double would be equal.
  StatsReply ints;
  ints.entries = {{"one", uint64_t{1}}};
  Result<std::vector<uint8_t>> int_frame = EncodeFrame(ints, 1);
  ASSERT_TRUE(int_frame.ok());
  Result<StatsReply> int_back =
      StatsReply::DecodeBody(std::span(*int_frame).subspan(kFrameHeaderBytes), {});
  ASSERT_TRUE(int_back.ok());
  EXPECT_TRUE(std::holds_alternative<uint64_t>(int_back->entries[0].value));
}

// docs/protocol.md §4.3, "Example": a Lookup of two keys with a lease.
TEST(MessageRoundTripTest, LookupGoldenBytesMatchTheDocument) {
  Lookup lookup;
  BlockKey first;
  first.fill(0x11);
  BlockKey second;
  for (size_t i = 0; i < second.size(); ++i) second[i] = static_cast<uint8_t>(i);
  lookup.keys = {first, second};
  lookup.want_lease = true;
  lookup.lease_ttl_ms = 30000;

  std::vector<uint8_t> expected = {
      0x4B, 0x56, 0x4C, 0x54,                          // magic "KVLT"
      0x02, 0x00,                                      // version 2
      0x10, 0x00,                                      // type 0x0010 lookup
      0x00, 0x00, 0x00, 0x00,                          // flags, reserved
      0x2A, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // request id 42
      0x49, 0x00, 0x00, 0x00,                          // body length 73
      0x01,                                            // want_lease
      0x30, 0x75, 0x00, 0x00,                          // lease_ttl_ms 30000
      0x02, 0x00, 0x00, 0x00,                          // 2 keys
  };
  expected.insert(expected.end(), first.begin(), first.end());
  expected.insert(expected.end(), second.begin(), second.end());

  Result<std::vector<uint8_t>> frame = EncodeFrame(lookup, 42);
  ASSERT_TRUE(frame.ok());
  EXPECT_EQ(*frame, expected);
}

// docs/protocol.md §4.5, "Example": the ErrorReply to a frame of version 1.
TEST(MessageRoundTripTest, ErrorGoldenBytesMatchTheDocument) {
  const std::vector<uint8_t> expected = {
      0x4B, 0x56, 0x4C, 0x54, 0x02, 0x00, 0x00, 0x80,  // "KVLT", version 2, type 0x8000
      0x00, 0x00, 0x00, 0x00,                          // flags, reserved
      0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // request id 7
      0x06, 0x00, 0x00, 0x00,                          // body length 6
      0x20,                                            // status 32 unsupported_version
      0x03, 0x00, 'v',  '=',  '1',                     // message "v=1"
  };
  Result<std::vector<uint8_t>> frame =
      EncodeFrame(ErrorReply::Make(WireStatus::kUnsupportedVersion, "v=1"), 7);
  ASSERT_TRUE(frame.ok());
  EXPECT_EQ(*frame, expected);
}

// docs/protocol.md §4.3, "Example" of GpuExportReply: one exported block and one miss.
TEST(MessageRoundTripTest, GpuExportReplyGoldenBytesMatchTheDocument) {
  GpuExportEntry exported;
  for (size_t i = 0; i < exported.pool_handle.size(); ++i) {
    exported.pool_handle[i] = static_cast<uint8_t>(i);
  }
  for (size_t i = 0; i < exported.device_uuid.size(); ++i) {
    exported.device_uuid[i] = static_cast<uint8_t>(0xA0 + i);
  }
  exported.pool_bytes = 64 << 20;
  exported.offset = 0x10000;
  exported.length = 0x4000;
  const GpuExportReply reply{{exported, {WireStatus::kNotFound}}, ""};

  std::vector<uint8_t> expected = {
      0x4B, 0x56, 0x4C, 0x54, 0x02, 0x00, 0x15, 0x80,  // "KVLT", version 2, type 0x8015
      0x00, 0x00, 0x00, 0x00,                          // flags, reserved
      0x09, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // request id 9
      0x6C, 0x00, 0x00, 0x00,                          // body length 108
      0x02, 0x00, 0x00, 0x00,                          // 2 entries
      0x00,                                            // entry 0: ok
  };
  for (uint8_t b = 0; b < 64; ++b) expected.push_back(b);  // pool_handle 00 .. 3F
  for (uint8_t b = 0; b < 16; ++b) expected.push_back(static_cast<uint8_t>(0xA0 + b));
  for (uint8_t b : {0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00,  // pool_bytes 64 MiB
                    0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,  // offset 0x10000
                    0x00, 0x40, 0x00, 0x00,                          // length 0x4000
                    0x02,                                            // entry 1: not_found
                    0x00, 0x00}) {                                   // message ""
    expected.push_back(b);
  }
  Result<std::vector<uint8_t>> frame = EncodeFrame(reply, 9);
  ASSERT_TRUE(frame.ok()) << frame.status().ToString();
  EXPECT_EQ(*frame, expected);
}

// docs/protocol.md §4.3, "Example" of ReleaseMemory and its reply.
TEST(MessageRoundTripTest, ReleaseMemoryGoldenBytesMatchTheDocument) {
  const std::vector<uint8_t> request = {
      0x4B, 0x56, 0x4C, 0x54, 0x02, 0x00, 0x16, 0x00,  // "KVLT", version 2, type 0x0016
      0x00, 0x00, 0x00, 0x00,                          // flags, reserved
      0x0B, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // request id 11
      0x09, 0x00, 0x00, 0x00,                          // body length 9
      0x05, 0x00, 0x00, 0x00,                          // remote_key: 5 bytes
      0x4B, 0x56, 0x52, 0x4B, 0x01,                    //   4B 56 52 4B 01
  };
  Result<std::vector<uint8_t>> frame = EncodeFrame(ReleaseMemory{{0x4B, 0x56, 0x52, 0x4B, 1}}, 11);
  ASSERT_TRUE(frame.ok()) << frame.status().ToString();
  EXPECT_EQ(*frame, request);

  const std::vector<uint8_t> reply = {
      0x4B, 0x56, 0x4C, 0x54, 0x02, 0x00, 0x16, 0x80,  // "KVLT", version 2, type 0x8016
      0x00, 0x00, 0x00, 0x00,                          // flags, reserved
      0x0B, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // request id 11
      0x03, 0x00, 0x00, 0x00,                          // body length 3
      0x00,                                            // status ok
      0x00, 0x00,                                      // message ""
  };
  frame = EncodeFrame(ReleaseMemoryReply{}, 11);
  ASSERT_TRUE(frame.ok()) << frame.status().ToString();
  EXPECT_EQ(*frame, reply);
}

TEST(ErrorReplyTest, FromStatusMapsTheCodeAndCutsTheMessage) {
  ProtocolLimits limits;
  limits.max_string_bytes = 16;
  ErrorReply e = ErrorReply::FromStatus(Status::ResourceExhausted(std::string(100, 'x')), limits);
  EXPECT_EQ(e.status, WireStatus::kResourceExhausted);
  EXPECT_EQ(e.message, std::string(16, 'x'));
  EXPECT_TRUE(EncodeFrame(e, 1, limits).ok());
  EXPECT_EQ(e.ToStatus().code(), StatusCode::kResourceExhausted);

  ErrorReply from_ok = ErrorReply::FromStatus(Status::Ok());
  EXPECT_EQ(from_ok.status, WireStatus::kInternal);
  EXPECT_TRUE(EncodeFrame(from_ok, 1).ok());
}

TEST(AllowedBeforeAuthTest, OnlyHelloAuthAndPing) {
  for (uint32_t raw = 0; raw <= 0xFFFF; ++raw) {
    if (!IsKnownMessageType(static_cast<uint16_t>(raw))) continue;
    const auto type = static_cast<MessageType>(raw);
    const bool expected =
        type == MessageType::kHello || type == MessageType::kAuth || type == MessageType::kPing;
    EXPECT_EQ(AllowedBeforeAuth(type), expected) << MessageTypeName(type);
  }
}

}  // namespace
}  // namespace kvault::transport
