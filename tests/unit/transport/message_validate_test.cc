// The rules of each message beyond its byte layout: the encoder refuses to send what breaks them
// and the decoder refuses to accept it (docs/protocol.md §4).
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "kvault/transport/messages.h"
#include "message_samples.h"

namespace kvault::transport {
namespace {

using testing::PatternKey;

constexpr uint64_t kMax64 = std::numeric_limits<uint64_t>::max();

// `m` breaks a rule: AppendFrame refuses it with `encode_code` and leaves the buffer alone, and
// its body (written without validation) decodes to `decode_code`. Both statuses mention
// `needle`.
template <typename M>
void ExpectBroken(const M& m, StatusCode encode_code, StatusCode decode_code,
                  const std::string& needle, const ProtocolLimits& limits = {}) {
  std::vector<uint8_t> out = {1, 2, 3};
  Status encoded = AppendFrame(m, 1, limits, &out);
  EXPECT_EQ(encoded.code(), encode_code) << encoded.ToString();
  EXPECT_NE(encoded.message().find(needle), std::string::npos) << encoded.ToString();
  EXPECT_EQ(out, (std::vector<uint8_t>{1, 2, 3}));

  std::vector<uint8_t> body;
  m.EncodeBody(&body);
  Result<M> decoded = M::DecodeBody(body, limits);
  ASSERT_FALSE(decoded.ok()) << needle;
  EXPECT_EQ(decoded.status().code(), decode_code) << decoded.status().ToString();
  EXPECT_NE(decoded.status().message().find(needle), std::string::npos)
      << decoded.status().ToString();
}

void ExpectInvalid(const auto& m, const std::string& needle) {
  ExpectBroken(m, StatusCode::kInvalidArgument, StatusCode::kCorruption, needle);
}

void ExpectOverLimit(const auto& m, const std::string& needle, const ProtocolLimits& limits) {
  ExpectBroken(m, StatusCode::kOutOfRange, StatusCode::kOutOfRange, needle, limits);
}

TEST(MessageValidateTest, Hello) {
  Hello h;
  h.client_version = 0;
  ExpectInvalid(h, "client_version");
}

TEST(MessageValidateTest, HelloReplyCarriesValidLimits) {
  HelloReply r;
  r.server_version = 0;
  ExpectInvalid(r, "server_version");
  r = {};
  r.limits.max_keys_per_batch = 0;
  ExpectInvalid(r, "max_keys_per_batch");
  r = {};
  r.limits.max_block_object_bytes = kCeilingBlockObjectBytes + 1;
  ExpectInvalid(r, "max_block_object_bytes");
}

TEST(MessageValidateTest, HelloReplyMemorySocket) {
  HelloReply r;
  for (const std::string& bad : {std::string("run/kvault.sock"), std::string("./kvault.sock"),
                                 std::string("~/kvault.sock"), std::string(" /kvault.sock")}) {
    r.memory_socket = bad;
    ExpectInvalid(r, "absolute path");
  }
  r.memory_socket = std::string("/run/kv\0ault.sock", 17);
  ExpectInvalid(r, "NUL");
  r.memory_socket = std::string("/run/kvault.sock\0", 17);
  ExpectInvalid(r, "NUL");
  // 108 bytes is over the limit, whatever max_string_bytes says.
  r.memory_socket = "/" + std::string(kMaxMemorySocketPathBytes, 's');
  ASSERT_EQ(r.memory_socket.size(), 108u);
  ProtocolLimits wide;
  wide.max_string_bytes = kCeilingStringBytes;
  ExpectOverLimit(r, "memory_socket", wide);
  ExpectOverLimit(r, "memory_socket", {});
  // Empty, "/" and 107 bytes are fine, even under a max_string_bytes below 107.
  ProtocolLimits narrow;
  narrow.max_string_bytes = kMinStringBytes;
  for (const std::string& good :
       {std::string(), std::string("/"), "/" + std::string(kMaxMemorySocketPathBytes - 1, 's')}) {
    r.memory_socket = good;
    r.server_pid = good.empty() ? 0 : 1;
    EXPECT_TRUE(r.Validate({}).ok()) << good;
    EXPECT_TRUE(r.Validate(narrow).ok()) << good;
    Result<std::vector<uint8_t>> frame = EncodeFrame(r, 1);
    ASSERT_TRUE(frame.ok()) << frame.status().ToString();
    Result<HelloReply> back =
        HelloReply::DecodeBody(std::span(*frame).subspan(kFrameHeaderBytes), narrow);
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(back->memory_socket, good);
  }
}

TEST(MessageValidateTest, HelloReplyServerPidAndUid) {
  constexpr uint32_t kMax32 = std::numeric_limits<uint32_t>::max();
  HelloReply r;
  // Without a memory socket both are 0.
  r.server_pid = 4242;
  ExpectInvalid(r, "server_pid");
  r.server_pid = 0;
  r.server_uid = 998;
  ExpectInvalid(r, "server_uid");
  r.server_pid = kMax32;
  r.server_uid = kMax32;
  ExpectInvalid(r, "server_pid");
  // With one, the pid is nonzero; any uid goes, root's 0 included.
  r.memory_socket = "/run/kvault/memory.sock";
  r.server_pid = 0;
  r.server_uid = 0;
  ExpectInvalid(r, "server_pid");
  r.server_uid = 998;
  ExpectInvalid(r, "server_pid");
  for (const auto& [pid, uid] :
       {std::pair<uint32_t, uint32_t>{1, 0}, {4242, 998}, {kMax32, kMax32}, {1, kMax32}}) {
    r.server_pid = pid;
    r.server_uid = uid;
    EXPECT_TRUE(r.Validate({}).ok()) << pid << " " << uid;
    Result<std::vector<uint8_t>> frame = EncodeFrame(r, 1);
    ASSERT_TRUE(frame.ok()) << frame.status().ToString();
    Result<HelloReply> back =
        HelloReply::DecodeBody(std::span(*frame).subspan(kFrameHeaderBytes), {});
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(*back, r);
  }
}

TEST(MessageValidateTest, AuthAcceptsAnyProof) {
  Auth auth;
  for (int fill : {0x00, 0x01, 0x80, 0xFF}) {
    auth.proof.fill(static_cast<uint8_t>(fill));
    EXPECT_TRUE(auth.Validate({}).ok());
    EXPECT_TRUE(EncodeFrame(auth, 1).ok());
  }
}

TEST(MessageValidateTest, AuthReplySessionIdMatchesStatus) {
  ExpectInvalid(AuthReply{WireStatus::kOk, 0, DataPlane::kNone, {}, ""}, "session_id");
  ExpectInvalid(AuthReply{WireStatus::kUnauthenticated, 5, DataPlane::kNone, {}, ""}, "session_id");
  ExpectInvalid(AuthReply{static_cast<WireStatus>(99), 0, DataPlane::kNone, {}, ""},
                "unknown wire status");
}

TEST(MessageValidateTest, AuthReplyDataPlaneIsKnown) {
  for (uint8_t bad : {3, 7, 255}) {
    ExpectInvalid(AuthReply{WireStatus::kOk, 1, static_cast<DataPlane>(bad), {}, ""}, "data_plane");
  }
  // process_memory stays decodable in an AuthReply, though a version-3 server never names it.
  for (DataPlane plane : {DataPlane::kNone, DataPlane::kUcx, DataPlane::kProcessMemory}) {
    EXPECT_TRUE(EncodeFrame(AuthReply{WireStatus::kOk, 1, plane, {}, ""}, 1).ok())
        << DataPlaneName(plane);
  }
}

TEST(MessageValidateTest, AuthReplyFailureHasNoDataPlane) {
  for (DataPlane plane : {DataPlane::kUcx, DataPlane::kProcessMemory}) {
    ExpectInvalid(AuthReply{WireStatus::kUnauthenticated, 0, plane, {}, ""}, "data_plane");
    ExpectInvalid(AuthReply{WireStatus::kInvalidArgument, 0, plane, {}, "data plane: x"},
                  "data_plane");
  }
  EXPECT_TRUE(
      EncodeFrame(AuthReply{WireStatus::kInvalidArgument, 0, DataPlane::kNone, {}, "data plane: x"},
                  1)
          .ok());
}

TEST(MessageValidateTest, AuthReplyServerProofOnlyWithOk) {
  // Any value with ok, all zero included.
  for (int fill : {0x00, 0x01, 0xFF}) {
    Bytes32 proof;
    proof.fill(static_cast<uint8_t>(fill));
    EXPECT_TRUE(EncodeFrame(AuthReply{WireStatus::kOk, 1, DataPlane::kUcx, proof, ""}, 1).ok())
        << fill;
  }
  // A non-ok reply with a nonzero proof, one bit anywhere, is refused both ways.
  for (size_t byte : {size_t{0}, size_t{13}, size_t{31}}) {
    Bytes32 proof{};
    proof[byte] = 0x80;
    ExpectInvalid(
        AuthReply{WireStatus::kInvalidArgument, 0, DataPlane::kNone, proof, "data plane: x"},
        "server_proof");
    ExpectInvalid(AuthReply{WireStatus::kUnavailable, 0, DataPlane::kNone, proof, ""},
                  "server_proof");
  }
  EXPECT_TRUE(
      EncodeFrame(AuthReply{WireStatus::kUnavailable, 0, DataPlane::kNone, {}, ""}, 1).ok());
}

TEST(MessageValidateTest, AttachMemory) {
  // Any handle is valid on the wire.
  for (int fill : {0x00, 0x5A, 0xFF}) {
    AttachMemory attach;
    attach.handle.fill(static_cast<uint8_t>(fill));
    EXPECT_TRUE(attach.Validate({}).ok());
    EXPECT_TRUE(EncodeFrame(attach, 3).ok());
  }
  // The reply: a known status, a message within max_string_bytes.
  ExpectInvalid(AttachMemoryReply{static_cast<WireStatus>(10), ""}, "unknown wire status");
  ExpectInvalid(AttachMemoryReply{static_cast<WireStatus>(255), "x"}, "unknown wire status");
  ProtocolLimits limits;
  limits.max_string_bytes = 16;
  ExpectOverLimit(AttachMemoryReply{WireStatus::kInvalidArgument, std::string(17, 'm')}, "message",
                  limits);
  EXPECT_TRUE(
      EncodeFrame(AttachMemoryReply{WireStatus::kInvalidArgument, std::string(16, 'm')}, 3, limits)
          .ok());
  for (WireStatus status : testing::AllWireStatuses()) {
    EXPECT_TRUE(EncodeFrame(AttachMemoryReply{status, ""}, 3).ok()) << static_cast<int>(status);
  }
}

TEST(MessageValidateTest, DataPlaneNames) {
  EXPECT_EQ(DataPlaneName(DataPlane::kNone), "none");
  EXPECT_EQ(DataPlaneName(DataPlane::kUcx), "ucx");
  EXPECT_EQ(DataPlaneName(DataPlane::kProcessMemory), "process_memory");
  EXPECT_EQ(DataPlaneName(static_cast<DataPlane>(7)), "unknown");
}

TEST(MessageValidateTest, LookupReplyIsConsistent) {
  ExpectInvalid(LookupReply{3, {WireTier::kGpu, WireTier::kGpu}, 0, 0}, "leading_hits 3");
  ExpectInvalid(LookupReply{2, {WireTier::kGpu, WireTier::kNone}, 0, 0}, "inside the leading");
  ExpectInvalid(LookupReply{1, {WireTier::kHost}, 5, 0}, "lease_ttl_ms");
  ExpectInvalid(LookupReply{1, {WireTier::kHost}, 0, 100}, "lease_ttl_ms");
  ExpectInvalid(LookupReply{0, {static_cast<WireTier>(4)}, 0, 0}, "unknown tier");
  // Hits after the first miss are allowed (and not leased).
  EXPECT_TRUE(EncodeFrame(LookupReply{0, {WireTier::kNone, WireTier::kHost}, 0, 0}, 1).ok());
}

TEST(MessageValidateTest, StoreEntries) {
  Store s;
  s.entries = {{PatternKey(1), 0, 1}};
  ExpectInvalid(s, "remote_key is empty");
  s.remote_key = {1};
  s.entries = {{PatternKey(1), 0, 1}, {PatternKey(2), 4096, 0}};
  ExpectInvalid(s, "entry 1: length is 0");
  s.entries = {{PatternKey(1), kMax64 - 10, 10}};
  EXPECT_TRUE(EncodeFrame(s, 1).ok());  // address + length = 2^64 - 1 still fits
  s.entries = {{PatternKey(1), kMax64 - 9, 10}};
  ExpectInvalid(s, "wraps");
  ProtocolLimits limits;
  limits.max_block_object_bytes = 1 << 20;
  s.entries = {{PatternKey(1), 0, (1 << 20) + 1}};
  ExpectOverLimit(s, "max_block_object_bytes", limits);
}

TEST(MessageValidateTest, LoadEntries) {
  Load l;
  l.remote_key = {1, 2};
  l.entries = {{PatternKey(1), 0, 0, 0, 0}};
  ExpectInvalid(l, "capacity is 0");
  l.entries = {{PatternKey(1), 0, 100, 0, 101}};
  ExpectInvalid(l, "length 101 exceeds capacity 100");
  l.entries = {{PatternKey(1), kMax64 - 50, 100, 0, 0}};
  ExpectInvalid(l, "wraps");
  ProtocolLimits limits;
  limits.max_block_object_bytes = 1 << 20;
  l.entries = {{PatternKey(1), 0, (1 << 20) + 1, 0, 0}};
  ExpectOverLimit(l, "capacity", limits);
  l.entries = {{PatternKey(1), 0, 1 << 20, (1 << 20) + 1, 0}};
  ExpectOverLimit(l, "offset", limits);
  l.entries = {{PatternKey(1), 0, 1 << 20, 1 << 20, 1 << 20}};
  EXPECT_TRUE(EncodeFrame(l, 1, limits).ok());
}

TEST(MessageValidateTest, LoadReplyObjectSize) {
  ProtocolLimits limits;
  limits.max_block_object_bytes = 4096;
  ExpectOverLimit(LoadReply{{{WireStatus::kOk, 4097}}}, "object_size", limits);
}

TEST(MessageValidateTest, ReleaseLeaseNeedsALease) { ExpectInvalid(ReleaseLease{0}, "lease_id"); }

TEST(MessageValidateTest, GpuExportNeedsALeaseAndAReplyThatFits) {
  const BlockKey k = PatternKey(5);
  ExpectInvalid(GpuExport{0, {k}}, "lease_id");
  EXPECT_EQ(GpuExportKeysPerRequest({}), ProtocolLimits{}.max_keys_per_batch);
  // A 1 KiB body holds a reply of 7 ok entries next to a message of 256 bytes: 4 + 7 x 101 + 258.
  ProtocolLimits tight;
  tight.max_body_bytes = kMinBodyBytes;
  ASSERT_EQ(GpuExportKeysPerRequest(tight), 7u);
  ExpectOverLimit(GpuExport{1, std::vector<BlockKey>(8, k)}, "gpu_export_reply fits", tight);
  EXPECT_TRUE(EncodeFrame(GpuExport{1, std::vector<BlockKey>(7, k)}, 1, tight).ok());
  GpuExportEntry full;
  full.pool_bytes = 1;
  full.length = 1;
  GpuExportReply reply;
  reply.entries.assign(7, full);
  reply.message.assign(tight.max_string_bytes, 'm');
  EXPECT_TRUE(EncodeFrame(reply, 1, tight).ok()) << "the bound is the reply's worst case";
  tight.max_string_bytes = kCeilingStringBytes;
  EXPECT_EQ(GpuExportKeysPerRequest(tight), 0u);
}

TEST(MessageValidateTest, GpuExportReplyEntries) {
  GpuExportEntry e;
  e.pool_bytes = 1 << 20;
  e.offset = 4096;
  e.length = 0;
  ExpectInvalid(GpuExportReply{{e}, ""}, "entry 0: length is 0");
  e.length = (1 << 20) - 4096 + 1;
  ExpectInvalid(GpuExportReply{{e}, ""}, "exceeds pool_bytes");
  e.offset = kMax64;
  e.length = 1;
  e.pool_bytes = kMax64;
  ExpectInvalid(GpuExportReply{{e}, ""}, "exceeds pool_bytes");
  ProtocolLimits limits;
  limits.max_block_object_bytes = 4096;
  e.offset = 0;
  e.length = 4097;
  ExpectOverLimit(GpuExportReply{{e}, ""}, "max_block_object_bytes", limits);
  limits.max_string_bytes = 16;
  ExpectOverLimit(GpuExportReply{{}, std::string(17, 'm')}, "message", limits);
  // An entry that is not ok has nothing but its status: its other fields would not be sent.
  GpuExportEntry miss{WireStatus::kNotFound};
  miss.length = 1;
  std::vector<uint8_t> out;
  const Status s = AppendFrame(GpuExportReply{{miss}, ""}, 1, {}, &out);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find("not ok"), std::string::npos) << s.ToString();
  EXPECT_TRUE(out.empty());
}

TEST(MessageValidateTest, ReleaseMemoryCarriesAKeyWithinTheLimit) {
  ExpectInvalid(ReleaseMemory{}, "remote_key is empty");
  ProtocolLimits limits;
  limits.max_remote_key_bytes = 8;
  ExpectOverLimit(ReleaseMemory{std::vector<uint8_t>(9, 1)}, "remote_key", limits);
  EXPECT_TRUE(EncodeFrame(ReleaseMemory{std::vector<uint8_t>(8, 1)}, 1, limits).ok());
  ExpectInvalid(ReleaseMemoryReply{static_cast<WireStatus>(40), ""}, "unknown wire status");
  limits.max_string_bytes = 16;
  ExpectOverLimit(ReleaseMemoryReply{WireStatus::kInternal, std::string(17, 'm')}, "message",
                  limits);
}

TEST(MessageValidateTest, StatsNamesAreNonEmpty) {
  ExpectInvalid(StatsReply{{{"", uint64_t{1}}}}, "entry 0 name is empty");
}

TEST(MessageValidateTest, ErrorReplyIsNeverOk) {
  ExpectInvalid(ErrorReply{WireStatus::kOk, "fine"}, "must not be ok");
  ExpectInvalid(ReleaseLeaseReply{static_cast<WireStatus>(12), ""}, "unknown wire status");
}

TEST(MessageValidateTest, BatchesOverTheLimit) {
  ProtocolLimits limits;
  limits.max_keys_per_batch = 2;
  const BlockKey k = PatternKey(4);
  ExpectOverLimit(Lookup{{k, k, k}, false, 0}, "keys", limits);
  ExpectOverLimit(Delete{{k, k, k}}, "keys", limits);
  ExpectOverLimit(StoreReply{{WireStatus::kOk, WireStatus::kOk, WireStatus::kOk}}, "statuses",
                  limits);
  ExpectOverLimit(LookupReply{0, {WireTier::kNone, WireTier::kNone, WireTier::kNone}, 0, 0},
                  "tiers", limits);
  Store s;
  s.remote_key = {1};
  s.entries.assign(3, StoreEntry{k, 0, 1});
  ExpectOverLimit(s, "entries", limits);
  // A StatsReply is bound by kMaxStatsEntries instead (StatsRepliesAreBoundByTheirOwnLimit...).
  StatsReply stats;
  stats.entries.assign(kMaxStatsEntries + 1, StatEntry{"a", 1.0});
  ExpectOverLimit(stats, "entries", limits);
  ExpectOverLimit(GpuExport{1, {k, k, k}}, "keys", limits);
  ExpectOverLimit(GpuExportReply{std::vector<GpuExportEntry>(3, {WireStatus::kNotFound}), ""},
                  "entries", limits);
}

// A session held to 2 keys per batch still carries every counter of a StatsReply: its bound is
// kMaxStatsEntries, not max_keys_per_batch. One entry more is refused on both sides.
TEST(MessageValidateTest, StatsRepliesAreBoundByTheirOwnLimitNotTheKeyBatch) {
  ProtocolLimits limits;
  limits.max_keys_per_batch = 2;
  StatsReply reply;
  for (uint32_t i = 0; i < 60; ++i) reply.entries.push_back({"store.c" + std::to_string(i), i});
  Result<std::vector<uint8_t>> frame = EncodeFrame(reply, 1, limits);
  ASSERT_TRUE(frame.ok()) << frame.status().ToString();
  Result<FrameView> view = DecodeFrame(*frame, limits);
  ASSERT_TRUE(view.ok());
  Result<StatsReply> back = StatsReply::DecodeBody(view->body, limits);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->entries.size(), 60u);

  StatsReply full;
  full.entries.assign(kMaxStatsEntries, StatEntry{"s", uint64_t{1}});
  EXPECT_TRUE(full.Validate(limits).ok());
  std::vector<uint8_t> body;
  full.entries.push_back(StatEntry{"s", uint64_t{1}});
  EXPECT_EQ(full.Validate(limits).code(), StatusCode::kOutOfRange);
  full.EncodeBody(&body);
  const Result<StatsReply> over = StatsReply::DecodeBody(body, limits);
  ASSERT_FALSE(over.ok());
  EXPECT_NE(over.status().message().find("stats entries"), std::string::npos)
      << over.status().ToString();
}

TEST(MessageValidateTest, BodyOverTheLimitIsRefusedWhole) {
  ProtocolLimits limits;
  limits.max_body_bytes = kMinBodyBytes;
  Lookup big;
  big.keys.assign(32, PatternKey(1));  // 9 + 1024 bytes
  std::vector<uint8_t> out = {9};
  Status s = AppendFrame(big, 1, limits, &out);
  EXPECT_EQ(s.code(), StatusCode::kOutOfRange);
  EXPECT_NE(s.message().find("max_body_bytes"), std::string::npos);
  EXPECT_EQ(out, std::vector<uint8_t>{9});
  big.keys.resize(31);
  EXPECT_TRUE(AppendFrame(big, 1, limits, &out).ok());
}

}  // namespace
}  // namespace kvault::transport
