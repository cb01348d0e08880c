// Every message survives encode -> frame -> decode unchanged, encodings are canonical, and the
// bytes match docs/protocol.md and docs/block_messages.md.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "kvault/common/little_endian.h"
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

TEST(MessageRoundTripTest, HelloReplyCarriesMemorySocketPidAndUid) {
  struct Case {
    std::string path;
    uint32_t pid;
    uint32_t uid;
  };
  constexpr uint32_t kMax32 = std::numeric_limits<uint32_t>::max();
  for (const Case& c :
       {Case{"", 0, 0}, Case{"/", 1, 0}, Case{"/run/kvault/memory.sock", 4242, 998},
        Case{"/" + std::string(kMaxMemorySocketPathBytes - 1, 'p'), kMax32, kMax32}}) {
    HelloReply reply;
    reply.nonce.fill(0x5A);
    reply.worker_address = {1, 2, 3};
    reply.memory_socket = c.path;
    reply.server_pid = c.pid;
    reply.server_uid = c.uid;
    const std::vector<uint8_t> frame = Encode(reply, 1);
    Result<FrameView> view = DecodeFrame(frame);
    ASSERT_TRUE(view.ok()) << view.status().ToString();
    // u16 server_version, nonce, blob worker_address (4 + 3), then the path as a string, then
    // u32 server_pid and u32 server_uid.
    constexpr size_t kSocketAt = 2 + 32 + 4 + 3;
    const size_t pid_at = kSocketAt + 2 + c.path.size();
    ASSERT_GE(view->body.size(), pid_at + 8);
    EXPECT_EQ(view->body[kSocketAt], c.path.size());
    EXPECT_EQ(LoadLe32(view->body.data() + pid_at), c.pid);
    EXPECT_EQ(LoadLe32(view->body.data() + pid_at + 4), c.uid);
    Result<Message> decoded = DecodeMessage(view->header.type, view->body);
    ASSERT_TRUE(decoded.ok()) << c.path << ": " << decoded.status().ToString();
    ASSERT_TRUE(std::holds_alternative<HelloReply>(*decoded));
    EXPECT_EQ(std::get<HelloReply>(*decoded).memory_socket, c.path);
    EXPECT_EQ(std::get<HelloReply>(*decoded).server_pid, c.pid);
    EXPECT_EQ(std::get<HelloReply>(*decoded).server_uid, c.uid);
    EXPECT_EQ(std::get<HelloReply>(*decoded), reply);
  }
}

TEST(MessageRoundTripTest, AuthIsTheProofAlone) {
  Auth auth;
  for (size_t i = 0; i < auth.proof.size(); ++i) auth.proof[i] = static_cast<uint8_t>(0x40 + i);
  const std::vector<uint8_t> frame = Encode(auth, 2);
  Result<FrameView> view = DecodeFrame(frame);
  ASSERT_TRUE(view.ok()) << view.status().ToString();
  EXPECT_EQ(std::vector<uint8_t>(view->body.begin(), view->body.end()),
            std::vector<uint8_t>(auth.proof.begin(), auth.proof.end()));
  Result<Message> decoded = DecodeMessage(view->header.type, view->body);
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(std::get<Auth>(*decoded), auth);
}

TEST(MessageRoundTripTest, AttachMemoryCarriesTheHandle) {
  Bytes32 pattern;
  for (size_t i = 0; i < pattern.size(); ++i) pattern[i] = static_cast<uint8_t>(0xE1 ^ (i * 7));
  Bytes32 ones;
  ones.fill(0xFF);
  for (const Bytes32& handle : {Bytes32{}, pattern, ones}) {
    const AttachMemory attach{handle};
    const std::vector<uint8_t> frame = Encode(attach, 3);
    Result<FrameView> view = DecodeFrame(frame);
    ASSERT_TRUE(view.ok()) << view.status().ToString();
    EXPECT_EQ(view->header.type, MessageType::kAttachMemory);
    // The handle is the whole body.
    EXPECT_EQ(std::vector<uint8_t>(view->body.begin(), view->body.end()),
              std::vector<uint8_t>(handle.begin(), handle.end()));
    Result<Message> decoded = DecodeMessage(view->header.type, view->body);
    ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
    ASSERT_TRUE(std::holds_alternative<AttachMemory>(*decoded));
    EXPECT_EQ(std::get<AttachMemory>(*decoded).handle, handle);
  }
}

TEST(MessageRoundTripTest, AttachMemoryReplyCarriesEveryStatus) {
  for (WireStatus status : testing::AllWireStatuses()) {
    const AttachMemoryReply reply{status, status == WireStatus::kOk ? "" : "why not"};
    const std::vector<uint8_t> frame = Encode(reply, 3);
    Result<FrameView> view = DecodeFrame(frame);
    ASSERT_TRUE(view.ok()) << view.status().ToString();
    EXPECT_EQ(view->header.type, MessageType::kAttachMemoryReply);
    EXPECT_EQ(view->body[0], static_cast<uint8_t>(status));
    Result<Message> decoded = DecodeMessage(view->header.type, view->body);
    ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
    ASSERT_TRUE(std::holds_alternative<AttachMemoryReply>(*decoded));
    EXPECT_EQ(std::get<AttachMemoryReply>(*decoded), reply);
    EXPECT_EQ(std::get<AttachMemoryReply>(*decoded).ToStatus().ok(), status == WireStatus::kOk);
  }
}

TEST(MessageRoundTripTest, AuthReplyCarriesEveryDataPlane) {
  Bytes32 proof;
  for (size_t i = 0; i < proof.size(); ++i) proof[i] = static_cast<uint8_t>(0x60 + i);
  for (DataPlane plane : {DataPlane::kNone, DataPlane::kUcx, DataPlane::kProcessMemory}) {
    const AuthReply reply{WireStatus::kOk, 0x1122334455667788ull, plane, proof, ""};
    const std::vector<uint8_t> frame = Encode(reply, 2);
    Result<FrameView> view = DecodeFrame(frame);
    ASSERT_TRUE(view.ok()) << view.status().ToString();
    // u8 status, u64 session_id, u8 data_plane, 32-byte server_proof, string message.
    ASSERT_EQ(view->body.size(), 1 + 8 + 1 + 32 + 2u);
    EXPECT_EQ(view->body[9], static_cast<uint8_t>(plane));
    EXPECT_EQ(std::vector<uint8_t>(view->body.begin() + 10, view->body.begin() + 42),
              std::vector<uint8_t>(proof.begin(), proof.end()));
    Result<Message> decoded = DecodeMessage(view->header.type, view->body);
    ASSERT_TRUE(decoded.ok()) << DataPlaneName(plane) << ": " << decoded.status().ToString();
    ASSERT_TRUE(std::holds_alternative<AuthReply>(*decoded));
    EXPECT_EQ(std::get<AuthReply>(*decoded).data_plane, plane);
    EXPECT_EQ(std::get<AuthReply>(*decoded).server_proof, proof);
    EXPECT_EQ(std::get<AuthReply>(*decoded), reply);
  }
}

// docs/block_messages.md §4.3, Store entry: key, address, length, then the parent key at offset 48.
TEST(MessageRoundTripTest, StoreEntryCarriesItsParentAtOffset48) {
  Store store;
  store.remote_key = {0xAB};
  BlockKey key;
  BlockKey parent;
  for (size_t i = 0; i < key.size(); ++i) {
    key[i] = static_cast<uint8_t>(i);
    parent[i] = static_cast<uint8_t>(0xC0 + i);
  }
  store.entries = {{key, 0x1122334455667788, 4096, parent}, {parent, 8, 16, BlockKey{}}};
  const std::vector<uint8_t> frame = Encode(store, 7);
  Result<FrameView> view = DecodeFrame(frame);
  ASSERT_TRUE(view.ok()) << view.status().ToString();
  // blob remote_key (4 + 1), count (4), 2 entries of kStoreEntryWireBytes (80).
  ASSERT_EQ(view->body.size(), 4 + 1 + 4 + 2 * kStoreEntryWireBytes);
  const uint8_t* first = view->body.data() + 9;
  EXPECT_EQ(std::vector<uint8_t>(first, first + 32), std::vector<uint8_t>(key.begin(), key.end()));
  EXPECT_EQ(LoadLe64(first + 32), 0x1122334455667788u);
  EXPECT_EQ(LoadLe64(first + 40), 4096u);
  EXPECT_EQ(std::vector<uint8_t>(first + 48, first + 80),
            std::vector<uint8_t>(parent.begin(), parent.end()));
  const uint8_t* second = first + kStoreEntryWireBytes;
  EXPECT_EQ(std::vector<uint8_t>(second + 48, second + 80), std::vector<uint8_t>(32, 0));
  Result<Message> decoded = DecodeMessage(view->header.type, view->body);
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(std::get<Store>(*decoded), store);
  // A body cut inside the last parent is refused, not read past.
  EXPECT_FALSE(DecodeMessage(view->header.type, view->body.first(view->body.size() - 1)).ok());
}

// docs/protocol.md §4.2, "Example" of Hello: a client without a UCX worker.
TEST(MessageRoundTripTest, HelloGoldenBytesMatchTheDocument) {
  Hello hello;
  hello.tenant = "acme";
  hello.client_name = "w1";
  const std::vector<uint8_t> expected = {
      0x4B, 0x56, 0x4C, 0x54, 0x03, 0x00, 0x01, 0x00,  // "KVLT", version 3, type 0x0001
      0x00, 0x00, 0x00, 0x00,                          // flags, reserved
      0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // request id 1
      0x10, 0x00, 0x00, 0x00,                          // body length 16
      0x03, 0x00,                                      // client_version 3
      0x04, 0x00, 'a',  'c',  'm',  'e',               // tenant "acme"
      0x02, 0x00, 'w',  '1',                           // client_name "w1"
      0x00, 0x00, 0x00, 0x00,                          // worker_address: 0 bytes
  };
  Result<std::vector<uint8_t>> frame = EncodeFrame(hello, 1);
  ASSERT_TRUE(frame.ok()) << frame.status().ToString();
  EXPECT_EQ(*frame, expected);
}

// docs/protocol.md §4.2, "Example" of HelloReply: a server that names its memory socket, its pid
// and its uid.
TEST(MessageRoundTripTest, HelloReplyGoldenBytesMatchTheDocument) {
  HelloReply reply;
  for (size_t i = 0; i < reply.nonce.size(); ++i) reply.nonce[i] = static_cast<uint8_t>(i);
  reply.memory_socket = "/run/kvault/mem.sock";
  reply.server_pid = 4242;
  reply.server_uid = 998;
  const std::vector<uint8_t> expected = {
      0x4B, 0x56, 0x4C, 0x54, 0x03, 0x00, 0x01, 0x80,  // "KVLT", version 3, type 0x8001
      0x00, 0x00, 0x00, 0x00,                          // flags, reserved
      0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // request id 1
      0x60, 0x00, 0x00, 0x00,                          // body length 96
      0x03, 0x00,                                      // server_version 3
      0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,  // nonce 00..1F
      0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F,  //
      0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17,  //
      0x18, 0x19, 0x1A, 0x1B, 0x1C, 0x1D, 0x1E, 0x1F,  //
      0x00, 0x00, 0x00, 0x00,                          // worker_address: 0 bytes
      0x14, 0x00, '/',  'r',  'u',  'n',  '/',  'k',   // memory_socket "/run/kvault/mem.sock"
      'v',  'a',  'u',  'l',  't',  '/',  'm',  'e',   //
      'm',  '.',  's',  'o',  'c',  'k',               //
      0x92, 0x10, 0x00, 0x00,                          // server_pid 4242
      0xE6, 0x03, 0x00, 0x00,                          // server_uid 998
      0x00, 0x00, 0x40, 0x00,                          // max_body_bytes 4 MiB
      0x00, 0x10, 0x00, 0x00,                          // max_keys_per_batch 4096
      0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00,  // max_block_object_bytes 64 MiB
      0x00, 0x01, 0x00, 0x00,                          // max_string_bytes 256
      0x00, 0x04, 0x00, 0x00,                          // max_remote_key_bytes 1024
      0x00, 0x20, 0x00, 0x00,                          // max_worker_address_bytes 8192
  };
  Result<std::vector<uint8_t>> frame = EncodeFrame(reply, 1);
  ASSERT_TRUE(frame.ok()) << frame.status().ToString();
  EXPECT_EQ(*frame, expected);
}

// docs/protocol.md §4.2, "Example" of Auth: the proof alone.
TEST(MessageRoundTripTest, AuthGoldenBytesMatchTheDocument) {
  Auth auth;
  auth.proof.fill(0x3C);
  const std::vector<uint8_t> expected = {
      0x4B, 0x56, 0x4C, 0x54, 0x03, 0x00, 0x02, 0x00,  // "KVLT", version 3, type 0x0002
      0x00, 0x00, 0x00, 0x00,                          // flags, reserved
      0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // request id 2
      0x20, 0x00, 0x00, 0x00,                          // body length 32
      0x3C, 0x3C, 0x3C, 0x3C, 0x3C, 0x3C, 0x3C, 0x3C,  // proof 3C x 32
      0x3C, 0x3C, 0x3C, 0x3C, 0x3C, 0x3C, 0x3C, 0x3C,  //
      0x3C, 0x3C, 0x3C, 0x3C, 0x3C, 0x3C, 0x3C, 0x3C,  //
      0x3C, 0x3C, 0x3C, 0x3C, 0x3C, 0x3C, 0x3C, 0x3C,  //
  };
  Result<std::vector<uint8_t>> frame = EncodeFrame(auth, 2);
  ASSERT_TRUE(frame.ok()) << frame.status().ToString();
  EXPECT_EQ(*frame, expected);
}

// docs/protocol.md §4.2, "Example" of AuthReply: session 77 gets the ucx data plane, with the
// server's proof.
TEST(MessageRoundTripTest, AuthReplyGoldenBytesMatchTheDocument) {
  AuthReply reply{WireStatus::kOk, 77, DataPlane::kUcx, {}, ""};
  for (size_t i = 0; i < reply.server_proof.size(); ++i) {
    reply.server_proof[i] = static_cast<uint8_t>(0x60 + i);
  }
  const std::vector<uint8_t> expected = {
      0x4B, 0x56, 0x4C, 0x54, 0x03, 0x00, 0x02, 0x80,  // "KVLT", version 3, type 0x8002
      0x00, 0x00, 0x00, 0x00,                          // flags, reserved
      0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // request id 2
      0x2C, 0x00, 0x00, 0x00,                          // body length 44
      0x00,                                            // status ok
      0x4D, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // session_id 77
      0x01,                                            // data_plane ucx
      0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67,  // server_proof 60..7F
      0x68, 0x69, 0x6A, 0x6B, 0x6C, 0x6D, 0x6E, 0x6F,  //
      0x70, 0x71, 0x72, 0x73, 0x74, 0x75, 0x76, 0x77,  //
      0x78, 0x79, 0x7A, 0x7B, 0x7C, 0x7D, 0x7E, 0x7F,  //
      0x00, 0x00,                                      // message ""
  };
  Result<std::vector<uint8_t>> frame = EncodeFrame(reply, 2);
  ASSERT_TRUE(frame.ok()) << frame.status().ToString();
  EXPECT_EQ(*frame, expected);
}

// docs/protocol.md §4.2, "Example" of AttachMemory and its replies.
TEST(MessageRoundTripTest, AttachMemoryGoldenBytesMatchTheDocument) {
  AttachMemory attach;
  for (size_t i = 0; i < attach.handle.size(); ++i) {
    attach.handle[i] = static_cast<uint8_t>(0xA0 + i);
  }
  const std::vector<uint8_t> request = {
      0x4B, 0x56, 0x4C, 0x54, 0x03, 0x00, 0x04, 0x00,  // "KVLT", version 3, type 0x0004
      0x00, 0x00, 0x00, 0x00,                          // flags, reserved
      0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // request id 3
      0x20, 0x00, 0x00, 0x00,                          // body length 32
      0xA0, 0xA1, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7,  // handle A0..BF
      0xA8, 0xA9, 0xAA, 0xAB, 0xAC, 0xAD, 0xAE, 0xAF,  //
      0xB0, 0xB1, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6, 0xB7,  //
      0xB8, 0xB9, 0xBA, 0xBB, 0xBC, 0xBD, 0xBE, 0xBF,  //
  };
  Result<std::vector<uint8_t>> frame = EncodeFrame(attach, 3);
  ASSERT_TRUE(frame.ok()) << frame.status().ToString();
  EXPECT_EQ(*frame, request);

  const std::vector<uint8_t> ok = {
      0x4B, 0x56, 0x4C, 0x54, 0x03, 0x00, 0x04, 0x80,  // "KVLT", version 3, type 0x8004
      0x00, 0x00, 0x00, 0x00,                          // flags, reserved
      0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // request id 3
      0x03, 0x00, 0x00, 0x00,                          // body length 3
      0x00,                                            // status ok
      0x00, 0x00,                                      // message ""
  };
  frame = EncodeFrame(AttachMemoryReply{}, 3);
  ASSERT_TRUE(frame.ok()) << frame.status().ToString();
  EXPECT_EQ(*frame, ok);

  const std::vector<uint8_t> refused = {
      0x4B, 0x56, 0x4C, 0x54, 0x03, 0x00, 0x04, 0x80,  // "KVLT", version 3, type 0x8004
      0x00, 0x00, 0x00, 0x00,                          // flags, reserved
      0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // request id 3
      0x11, 0x00, 0x00, 0x00,                          // body length 17
      0x01,                                            // status invalid_argument
      0x0E, 0x00, 'u',  'n',  'k',  'n',  'o',  'w',   // message "unknown handle"
      'n',  ' ',  'h',  'a',  'n',  'd',  'l',  'e',   //
  };
  frame = EncodeFrame(AttachMemoryReply{WireStatus::kInvalidArgument, "unknown handle"}, 3);
  ASSERT_TRUE(frame.ok()) << frame.status().ToString();
  EXPECT_EQ(*frame, refused);
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

// docs/block_messages.md §4.3, "Example": a Lookup of two keys with a lease.
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
      0x03, 0x00,                                      // version 3
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
      0x4B, 0x56, 0x4C, 0x54, 0x03, 0x00, 0x00, 0x80,  // "KVLT", version 3, type 0x8000
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

// docs/block_messages.md §4.3, "Example" of GpuExportReply: one exported block and one miss.
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
      0x4B, 0x56, 0x4C, 0x54, 0x03, 0x00, 0x15, 0x80,  // "KVLT", version 3, type 0x8015
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

// docs/block_messages.md §4.3, "Example" of ReleaseMemory and its reply.
TEST(MessageRoundTripTest, ReleaseMemoryGoldenBytesMatchTheDocument) {
  const std::vector<uint8_t> request = {
      0x4B, 0x56, 0x4C, 0x54, 0x03, 0x00, 0x16, 0x00,  // "KVLT", version 3, type 0x0016
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
      0x4B, 0x56, 0x4C, 0x54, 0x03, 0x00, 0x16, 0x80,  // "KVLT", version 3, type 0x8016
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

// MaxBodyBeforeAuth is exactly the body of the longest Hello the limits allow, under the default
// limits and smaller and larger ones: that Hello encodes, and no longer one does.
TEST(AllowedBeforeAuthTest, MaxBodyBeforeAuthIsTheLongestHello) {
  ProtocolLimits small;
  small.max_string_bytes = 16;
  small.max_worker_address_bytes = 64;
  ProtocolLimits large;
  large.max_worker_address_bytes = 1 << 20;
  for (const ProtocolLimits& limits : {ProtocolLimits{}, small, large}) {
    Hello hello;
    hello.tenant.assign(limits.max_string_bytes, 't');
    hello.client_name.assign(limits.max_string_bytes, 'c');
    hello.worker_address.assign(limits.max_worker_address_bytes, 1);
    Result<std::vector<uint8_t>> frame = EncodeFrame(hello, 1, limits);
    ASSERT_TRUE(frame.ok()) << frame.status().ToString();
    EXPECT_EQ(frame->size() - kFrameHeaderBytes, MaxBodyBeforeAuth(limits));
    hello.worker_address.push_back(1);
    EXPECT_FALSE(EncodeFrame(hello, 1, limits).ok());
  }
  EXPECT_EQ(MaxBodyBeforeAuth(ProtocolLimits{}), 2u + (2 + 256) * 2 + 4 + 8192);
}

}  // namespace
}  // namespace kvault::transport
