// Every way a received body can be wrong: truncation at every byte, trailing bytes, counts and
// lengths over the limits (refused before any allocation), bad enum and bool bytes.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <vector>

#include "kvault/common/little_endian.h"
#include "kvault/transport/messages.h"
#include "message_samples.h"

// Records the largest single allocation while tracking is on, so that a test can prove that a
// decoder refused a count before reserving memory for it.
namespace {
std::atomic<bool> g_tracking{false};
std::atomic<size_t> g_largest{0};
}  // namespace

void* operator new(size_t n) {
  if (g_tracking.load(std::memory_order_relaxed)) {
    size_t seen = g_largest.load(std::memory_order_relaxed);
    while (n > seen && !g_largest.compare_exchange_weak(seen, n)) {
    }
  }
  void* p = std::malloc(n == 0 ? 1 : n);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
// GCC sees the replaced operator new inlined next to free() and warns of a mismatch; both sides
// are the replacements above and below, so the pairing is right.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

namespace kvault::transport {
namespace {

using testing::SampleMessages;

// The largest allocation made while `fn` runs.
template <typename Fn>
size_t LargestAllocation(Fn fn) {
  g_largest = 0;
  g_tracking = true;
  fn();
  g_tracking = false;
  return g_largest;
}

std::vector<uint8_t> BodyOf(const Message& m) {
  std::vector<uint8_t> frame;
  EXPECT_TRUE(AppendMessageFrame(m, 1, {}, &frame).ok());
  return {frame.begin() + kFrameHeaderBytes, frame.end()};
}

std::vector<uint8_t> U32(uint32_t v) {
  std::vector<uint8_t> b(4);
  StoreLe32(b.data(), v);
  return b;
}

std::vector<uint8_t> Concat(std::initializer_list<std::vector<uint8_t>> parts) {
  std::vector<uint8_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

void ExpectRefused(MessageType type, const std::vector<uint8_t>& body, StatusCode code,
                   const std::string& needle, const ProtocolLimits& limits = {}) {
  Result<Message> m = DecodeMessage(type, body, limits);
  ASSERT_FALSE(m.ok()) << MessageTypeName(type);
  EXPECT_EQ(m.status().code(), code) << MessageTypeName(type) << ": " << m.status().ToString();
  EXPECT_NE(m.status().message().find(needle), std::string::npos)
      << MessageTypeName(type) << ": " << m.status().ToString();
  // The status names the message type.
  EXPECT_EQ(m.status().message().rfind(std::string(MessageTypeName(type)), 0), 0u)
      << m.status().ToString();
}

TEST(MessageDecodeErrorsTest, TruncationAtEveryByteOffset) {
  for (const Message& m : SampleMessages()) {
    std::vector<uint8_t> frame;
    ASSERT_TRUE(AppendMessageFrame(m, 99, {}, &frame).ok());
    const MessageType type = TypeOf(m);
    for (size_t n = 0; n < frame.size(); ++n) {
      const std::span<const uint8_t> prefix = std::span(frame).first(n);
      Result<FrameView> view = DecodeFrame(prefix);
      ASSERT_FALSE(view.ok()) << MessageTypeName(type) << " at " << n;
      EXPECT_EQ(view.status().code(), StatusCode::kCorruption);
      if (n < kFrameHeaderBytes) continue;
      // The body alone, cut at the same place.
      Result<Message> body = DecodeMessage(type, prefix.subspan(kFrameHeaderBytes));
      ASSERT_FALSE(body.ok()) << MessageTypeName(type) << " body cut at " << n - kFrameHeaderBytes;
      EXPECT_EQ(body.status().code(), StatusCode::kCorruption) << body.status().ToString();
    }
  }
}

TEST(MessageDecodeErrorsTest, TrailingBytes) {
  for (const Message& m : SampleMessages()) {
    std::vector<uint8_t> body = BodyOf(m);
    body.push_back(0);
    ExpectRefused(TypeOf(m), body, StatusCode::kCorruption, "1 trailing bytes");
  }
}

// Each message with a count, as (type, bytes before the count, bytes per item).
struct CountedBody {
  MessageType type;
  std::vector<uint8_t> before_count;
  size_t item_bytes;
  // The count's bound under `limits`, and how the refusal names it: max_keys_per_batch but for
  // the replies with bounds of their own.
  uint32_t (*limit)(const ProtocolLimits& limits) = [](const ProtocolLimits& l) {
    return l.max_keys_per_batch;
  };
  const char* limit_name = "max_keys_per_batch";
};

std::vector<CountedBody> CountedBodies() {
  const std::vector<uint8_t> rkey = Concat({U32(1), {0xAB}});
  return {
      {MessageType::kLookup, {1, 0, 0, 0, 0}, 32},
      {MessageType::kLookupReply, std::vector<uint8_t>(16, 0), 1},
      {MessageType::kStore, rkey, 48},
      {MessageType::kStoreReply, {}, 1},
      {MessageType::kLoad, Concat({std::vector<uint8_t>(8, 0), rkey}), 64},
      {MessageType::kLoadReply, {}, 9},
      {MessageType::kDelete, {}, 32},
      {MessageType::kDeleteReply, {}, 1},
      {MessageType::kGpuExport, {1, 0, 0, 0, 0, 0, 0, 0}, 32},
      {MessageType::kGpuExportReply,
       {},
       1,
       &GpuExportKeysPerRequest,
       "the keys a gpu_export may carry"},
      {MessageType::kStatsReply,
       {},
       11,
       [](const ProtocolLimits&) { return kMaxStatsEntries; },
       "kMaxStatsEntries"},
  };
}

TEST(MessageDecodeErrorsTest, CountsOverTheLimitAreOutOfRange) {
  ProtocolLimits limits;
  limits.max_keys_per_batch = 4;
  for (const CountedBody& c : CountedBodies()) {
    const uint32_t over = c.limit(limits) + 1;
    for (uint32_t count : {over, 0xFFFFFFFFu}) {
      // Enough bytes for the count to be otherwise plausible: the limit alone refuses it.
      std::vector<uint8_t> body = Concat({c.before_count, U32(count)});
      body.resize(body.size() + over * c.item_bytes, 0);
      ExpectRefused(c.type, body, StatusCode::kOutOfRange, std::string("exceed ") + c.limit_name,
                    limits);
    }
  }
}

TEST(MessageDecodeErrorsTest, CountsBeyondTheBodyAreRefusedBeforeAllocating) {
  ProtocolLimits limits;
  limits.max_keys_per_batch = kCeilingKeysPerBatch;
  for (const CountedBody& c : CountedBodies()) {
    // The most items the bound allows, but bytes for none of them.
    const std::vector<uint8_t> body =
        Concat({c.before_count, U32(c.limit(limits)), {0, 0, 0, 0, 0, 0, 0, 0}});
    Status status;
    const size_t largest = LargestAllocation([&] {
      Result<Message> m = DecodeMessage(c.type, body, limits);
      status = m.status();
    });
    EXPECT_EQ(status.code(), StatusCode::kCorruption) << status.ToString();
    EXPECT_NE(status.message().find("truncated"), std::string::npos) << status.ToString();
    // A million items would need megabytes; only status text and small fields were allocated.
    EXPECT_LT(largest, 1024u) << MessageTypeName(c.type);
  }
}

TEST(MessageDecodeErrorsTest, LengthsOverTheLimitOrBeyondTheBodyAllocateNothing) {
  ProtocolLimits limits;
  limits.max_worker_address_bytes = kCeilingWorkerAddressBytes;
  limits.max_remote_key_bytes = kCeilingRemoteKeyBytes;
  limits.max_string_bytes = kCeilingStringBytes;
  struct Case {
    MessageType type;
    std::vector<uint8_t> body;
    StatusCode code;
  };
  const std::vector<Case> cases = {
      // Hello: version, tenant length 0xFFFF with 3 bytes.
      {MessageType::kHello, {1, 0, 0xFF, 0xFF, 'a', 'b', 'c'}, StatusCode::kCorruption},
      // Hello: empty strings, worker address length 2^20 (the ceiling) with 1 byte.
      {MessageType::kHello, Concat({{1, 0, 0, 0, 0, 0}, U32(1u << 20), {7}}),
       StatusCode::kCorruption},
      // Hello: worker address length over the ceiling.
      {MessageType::kHello, Concat({{1, 0, 0, 0, 0, 0}, U32(0xFFFFFFFF)}), StatusCode::kOutOfRange},
      // Store: remote key of 4 GiB.
      {MessageType::kStore, Concat({U32(0xFFFFFFFF), U32(0)}), StatusCode::kOutOfRange},
      // Load: remote key at the ceiling, body of 12 bytes.
      {MessageType::kLoad, Concat({std::vector<uint8_t>(8, 0), U32(65536)}),
       StatusCode::kCorruption},
      // ReleaseMemory: remote key at the ceiling, none of it present.
      {MessageType::kReleaseMemory, U32(65536), StatusCode::kCorruption},
      // ReleaseMemory: remote key of 4 GiB.
      {MessageType::kReleaseMemory, U32(0xFFFFFFFF), StatusCode::kOutOfRange},
      // ErrorReply: message of 65535 bytes announced, 0 present.
      {MessageType::kError, {3, 0xFF, 0xFF}, StatusCode::kCorruption},
  };
  for (const Case& c : cases) {
    Status status;
    const size_t largest = LargestAllocation([&] {
      Result<Message> m = DecodeMessage(c.type, c.body, limits);
      status = m.status();
    });
    EXPECT_EQ(status.code(), c.code) << status.ToString();
    EXPECT_LT(largest, 1024u) << MessageTypeName(c.type);
  }
}

TEST(MessageDecodeErrorsTest, StringsAndBytesOverTheirLimits) {
  ProtocolLimits limits;
  limits.max_string_bytes = 16;
  limits.max_remote_key_bytes = 8;
  limits.max_worker_address_bytes = 8;
  Hello long_tenant;
  long_tenant.tenant = std::string(17, 't');
  ExpectRefused(MessageType::kHello, BodyOf(long_tenant), StatusCode::kOutOfRange, "tenant",
                limits);
  Hello long_address;
  long_address.worker_address.assign(9, 1);
  ExpectRefused(MessageType::kHello, BodyOf(long_address), StatusCode::kOutOfRange,
                "worker_address", limits);
  Store store;
  store.remote_key.assign(9, 1);
  ExpectRefused(MessageType::kStore, BodyOf(store), StatusCode::kOutOfRange, "remote_key", limits);
  ExpectRefused(MessageType::kReleaseMemory, BodyOf(ReleaseMemory{store.remote_key}),
                StatusCode::kOutOfRange, "remote_key", limits);
  ExpectRefused(MessageType::kReleaseMemoryReply,
                BodyOf(ReleaseMemoryReply{WireStatus::kInternal, std::string(17, 'm')}),
                StatusCode::kOutOfRange, "message", limits);
  ExpectRefused(MessageType::kAttachMemoryReply,
                BodyOf(AttachMemoryReply{WireStatus::kInvalidArgument, std::string(17, 'm')}),
                StatusCode::kOutOfRange, "message", limits);
  ExpectRefused(MessageType::kAuthReply,
                BodyOf(AuthReply{
                    WireStatus::kInvalidArgument, 0, DataPlane::kNone, {}, std::string(17, 'm')}),
                StatusCode::kOutOfRange, "message", limits);
  ExpectRefused(MessageType::kError,
                BodyOf(ErrorReply::Make(WireStatus::kInternal, "0123456789abcdefg")),
                StatusCode::kOutOfRange, "message", limits);
  StatsReply stats;
  stats.entries = {{std::string(17, 's'), uint64_t{1}}};
  ExpectRefused(MessageType::kStatsReply, BodyOf(stats), StatusCode::kOutOfRange, "stat name",
                limits);
}

TEST(MessageDecodeErrorsTest, BadEnumAndBoolBytes) {
  // AuthReply: status byte 10 (a gap between 9 and 32), 36 (after the last), 255.
  for (uint8_t bad : {10, 31, 36, 255}) {
    std::vector<uint8_t> body =
        BodyOf(AuthReply{WireStatus::kUnauthenticated, 0, DataPlane::kNone, {}, ""});
    body[0] = bad;
    ExpectRefused(MessageType::kAuthReply, body, StatusCode::kCorruption, "unknown wire status");
    std::vector<uint8_t> error = BodyOf(ErrorReply::Make(WireStatus::kInternal, "x"));
    error[0] = bad;
    ExpectRefused(MessageType::kError, error, StatusCode::kCorruption, "unknown wire status");
    std::vector<uint8_t> store = BodyOf(StoreReply{{WireStatus::kOk, WireStatus::kOk}});
    store[5] = bad;
    ExpectRefused(MessageType::kStoreReply, store, StatusCode::kCorruption, "status 1");
    std::vector<uint8_t> del = BodyOf(DeleteReply{{WireStatus::kOk}});
    del[4] = bad;
    ExpectRefused(MessageType::kDeleteReply, del, StatusCode::kCorruption, "status 0");
    std::vector<uint8_t> load = BodyOf(LoadReply{{{WireStatus::kOk, 1}}});
    load[4] = bad;
    ExpectRefused(MessageType::kLoadReply, load, StatusCode::kCorruption, "outcome 0");
    std::vector<uint8_t> gpu = BodyOf(GpuExportReply{{{WireStatus::kNotFound}}, ""});
    gpu[4] = bad;
    ExpectRefused(MessageType::kGpuExportReply, gpu, StatusCode::kCorruption, "entry 0");
    std::vector<uint8_t> release = BodyOf(ReleaseMemoryReply{});
    release[0] = bad;
    ExpectRefused(MessageType::kReleaseMemoryReply, release, StatusCode::kCorruption,
                  "unknown wire status");
    std::vector<uint8_t> attach = BodyOf(AttachMemoryReply{});
    attach[0] = bad;
    ExpectRefused(MessageType::kAttachMemoryReply, attach, StatusCode::kCorruption,
                  "unknown wire status");
  }
  // LookupReply: tier 4 is unknown.
  std::vector<uint8_t> lookup_reply = BodyOf(LookupReply{0, {WireTier::kNone}, 0, 0});
  lookup_reply.back() = 4;
  ExpectRefused(MessageType::kLookupReply, lookup_reply, StatusCode::kCorruption, "unknown tier");
  // Lookup: want_lease must be 0 or 1.
  std::vector<uint8_t> lookup = BodyOf(Lookup{});
  lookup[0] = 2;
  ExpectRefused(MessageType::kLookup, lookup, StatusCode::kCorruption, "want_lease");
  // StatsReply: value kind 2.
  std::vector<uint8_t> stats = BodyOf(StatsReply{{{"a", uint64_t{1}}}});
  stats[4 + 2 + 1] = 2;
  ExpectRefused(MessageType::kStatsReply, stats, StatusCode::kCorruption, "value kind");
  // ErrorReply: status ok is not an error.
  std::vector<uint8_t> error = BodyOf(ErrorReply::Make(WireStatus::kInternal, ""));
  error[0] = 0;
  ExpectRefused(MessageType::kError, error, StatusCode::kCorruption, "must not be ok");
}

TEST(MessageDecodeErrorsTest, AuthReplyDataPlaneByte) {
  // Offset 9, after the status and the session id.
  constexpr size_t kDataPlaneAt = 1 + 8;
  const std::vector<uint8_t> ok = BodyOf(AuthReply{WireStatus::kOk, 5, DataPlane::kUcx, {}, ""});
  ASSERT_EQ(ok.size(), 1 + 8 + 1 + 32 + 2u);
  ASSERT_EQ(ok[kDataPlaneAt], 1);
  for (uint8_t bad : {3, 7, 255}) {
    std::vector<uint8_t> body = ok;
    body[kDataPlaneAt] = bad;
    ExpectRefused(MessageType::kAuthReply, body, StatusCode::kCorruption,
                  "unknown data plane " + std::to_string(bad));
  }
  // A failed Auth that names a data plane.
  std::vector<uint8_t> failed =
      BodyOf(AuthReply{WireStatus::kUnauthenticated, 0, DataPlane::kNone, {}, ""});
  failed[kDataPlaneAt] = static_cast<uint8_t>(DataPlane::kProcessMemory);
  ExpectRefused(MessageType::kAuthReply, failed, StatusCode::kCorruption, "data_plane");
  // A version-1 body (no data plane byte) is misread, never accepted: here the message length's
  // low byte is taken for the data plane and the rest is short.
  const std::vector<uint8_t> v1 = {0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  ExpectRefused(MessageType::kAuthReply, v1, StatusCode::kCorruption, "truncated");
}

TEST(MessageDecodeErrorsTest, AuthReplyServerProof) {
  // Offset 10, after the data plane; 32 bytes.
  constexpr size_t kProofAt = 1 + 8 + 1;
  const std::vector<uint8_t> failed =
      BodyOf(AuthReply{WireStatus::kUnavailable, 0, DataPlane::kNone, {}, "busy"});
  ASSERT_EQ(failed.size(), kProofAt + 32 + 2 + 4);
  for (size_t byte : {size_t{0}, size_t{31}}) {
    std::vector<uint8_t> body = failed;
    body[kProofAt + byte] = 0x01;
    ExpectRefused(MessageType::kAuthReply, body, StatusCode::kCorruption, "server_proof");
  }
  // With ok, any proof decodes, and to exactly those bytes.
  std::vector<uint8_t> ok = BodyOf(AuthReply{WireStatus::kOk, 5, DataPlane::kUcx, {}, ""});
  for (size_t i = 0; i < 32; ++i) ok[kProofAt + i] = static_cast<uint8_t>(0xC0 + i);
  Result<Message> m = DecodeMessage(MessageType::kAuthReply, ok);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  const Bytes32& proof = std::get<AuthReply>(*m).server_proof;
  EXPECT_EQ(std::vector<uint8_t>(proof.begin(), proof.end()),
            std::vector<uint8_t>(ok.begin() + kProofAt, ok.begin() + kProofAt + 32));
}

TEST(MessageDecodeErrorsTest, AttachMemoryIsExactly32Bytes) {
  const std::vector<uint8_t> body = BodyOf(AttachMemory{});
  ASSERT_EQ(body.size(), 32u);
  for (size_t n : {size_t{0}, size_t{16}, size_t{31}}) {
    ExpectRefused(MessageType::kAttachMemory, std::vector<uint8_t>(n, 0x11),
                  StatusCode::kCorruption, "truncated");
  }
  ExpectRefused(MessageType::kAttachMemory, std::vector<uint8_t>(33, 0x11), StatusCode::kCorruption,
                "1 trailing bytes");
  // An empty message is still a string: a status byte alone is truncated.
  ExpectRefused(MessageType::kAttachMemoryReply, {0}, StatusCode::kCorruption, "truncated");
}

TEST(MessageDecodeErrorsTest, EarlierHandshakeBodiesAreRefused) {
  // A version-2 Hello ends with a u32 client_pid: four trailing bytes now.
  Hello hello;
  hello.tenant = "acme";
  hello.client_name = "w";
  hello.worker_address = {0xEE};
  const std::vector<uint8_t> v3 = BodyOf(hello);
  ASSERT_EQ(v3.size(), 2 + 6 + 3 + 5u);
  ExpectRefused(MessageType::kHello, Concat({v3, U32(4242)}), StatusCode::kCorruption,
                "4 trailing bytes");
  // An Auth of the withdrawn draft of version 3 carried a 32-byte memory_handle after the proof:
  // 32 trailing bytes now.
  Auth auth;
  auth.proof.fill(0x3C);
  const std::vector<uint8_t> auth_body = BodyOf(auth);
  ASSERT_EQ(auth_body.size(), 32u);
  ExpectRefused(MessageType::kAuth, Concat({auth_body, std::vector<uint8_t>(32, 0xA0)}),
                StatusCode::kCorruption, "32 trailing bytes");
  // A version-2 AuthReply has no server_proof: whatever is misread, it is never accepted.
  const std::vector<uint8_t> v2_reply = {0, 5, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0};
  ExpectRefused(MessageType::kAuthReply, v2_reply, StatusCode::kCorruption, "truncated");
  // A version-2 HelloReply has no memory_socket, server_pid or server_uid: ten bytes short,
  // whatever is misread on the way.
  const std::vector<uint8_t> reply = BodyOf(HelloReply{});
  const std::vector<uint8_t> v2(reply.begin(), reply.end() - 10);
  Result<Message> m = DecodeMessage(MessageType::kHelloReply, v2);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), StatusCode::kCorruption) << m.status().ToString();
  // A HelloReply of an earlier draft of version 3 had no server_pid and server_uid: eight bytes
  // short, with or without a memory socket.
  HelloReply local;
  local.memory_socket = "/run/k.sock";
  local.server_pid = 4242;
  local.server_uid = 998;
  for (const std::vector<uint8_t>& body : {reply, BodyOf(local)}) {
    const std::vector<uint8_t> draft(body.begin(), body.end() - 8);
    ExpectRefused(MessageType::kHelloReply, draft, StatusCode::kCorruption, "truncated");
  }
}

TEST(MessageDecodeErrorsTest, HelloReplyMemorySocket) {
  // u16 server_version, nonce, empty worker_address, then the memory_socket string.
  constexpr size_t kSocketAt = 2 + 32 + 4;
  HelloReply reply;
  reply.memory_socket = "/run/k.sock";
  reply.server_pid = 4242;
  reply.server_uid = 998;
  const std::vector<uint8_t> ok = BodyOf(reply);
  ASSERT_EQ(ok[kSocketAt], reply.memory_socket.size());
  ASSERT_EQ(ok[kSocketAt + 2], '/');

  std::vector<uint8_t> relative = ok;
  relative[kSocketAt + 2] = 'r';
  ExpectRefused(MessageType::kHelloReply, relative, StatusCode::kCorruption, "absolute path");
  std::vector<uint8_t> nul = ok;
  nul[kSocketAt + 4] = 0;
  ExpectRefused(MessageType::kHelloReply, nul, StatusCode::kCorruption, "NUL");

  // A length over kMaxMemorySocketPathBytes is out of range, even under a larger
  // max_string_bytes, and before anything is allocated.
  ProtocolLimits limits;
  limits.max_string_bytes = kCeilingStringBytes;
  for (uint16_t n : {uint16_t{kMaxMemorySocketPathBytes + 1}, uint16_t{0xFFFF}}) {
    std::vector<uint8_t> body(ok.begin(), ok.begin() + kSocketAt);
    body.push_back(static_cast<uint8_t>(n));
    body.push_back(static_cast<uint8_t>(n >> 8));
    body.push_back('/');
    body.resize(body.size() + n - 1, 's');
    body.insert(body.end(), ok.end() - 36, ok.end());  // server_pid, server_uid, the limits
    Status status;
    const size_t largest = LargestAllocation(
        [&] { status = DecodeMessage(MessageType::kHelloReply, body, limits).status(); });
    EXPECT_EQ(status.code(), StatusCode::kOutOfRange) << status.ToString();
    EXPECT_NE(status.message().find("memory_socket"), std::string::npos) << status.ToString();
    EXPECT_EQ(status.message().rfind("hello_reply", 0), 0u) << status.ToString();
    EXPECT_LT(largest, 1024u);
  }
  // The longest path decodes.
  reply.memory_socket = "/" + std::string(kMaxMemorySocketPathBytes - 1, 's');
  EXPECT_TRUE(DecodeMessage(MessageType::kHelloReply, BodyOf(reply)).ok());
}

TEST(MessageDecodeErrorsTest, HelloReplyServerPidAndUid) {
  // u16 server_version, nonce, empty worker_address, memory_socket, then u32 server_pid and
  // u32 server_uid.
  constexpr size_t kSocketAt = 2 + 32 + 4;
  const auto set_u32 = [](std::vector<uint8_t>* body, size_t at, uint32_t v) {
    for (int i = 0; i < 4; ++i) (*body)[at + i] = static_cast<uint8_t>(v >> (8 * i));
  };
  // No memory socket: a nonzero pid or uid is refused.
  const std::vector<uint8_t> none = BodyOf(HelloReply{});
  constexpr size_t kNonePidAt = kSocketAt + 2;
  ASSERT_TRUE(DecodeMessage(MessageType::kHelloReply, none).ok());
  for (uint32_t v : {uint32_t{1}, uint32_t{4242}, uint32_t{0xFFFFFFFF}}) {
    std::vector<uint8_t> pid = none;
    set_u32(&pid, kNonePidAt, v);
    ExpectRefused(MessageType::kHelloReply, pid, StatusCode::kCorruption, "server_pid");
    std::vector<uint8_t> uid = none;
    set_u32(&uid, kNonePidAt + 4, v);
    ExpectRefused(MessageType::kHelloReply, uid, StatusCode::kCorruption, "server_uid");
  }
  // With a memory socket: pid 0 is refused, whatever the uid; uid 0 is fine.
  HelloReply local;
  local.memory_socket = "/run/k.sock";
  local.server_pid = 4242;
  local.server_uid = 998;
  const std::vector<uint8_t> ok = BodyOf(local);
  const size_t pid_at = kSocketAt + 2 + local.memory_socket.size();
  ASSERT_EQ(LoadLe32(ok.data() + pid_at), 4242u);
  ASSERT_EQ(LoadLe32(ok.data() + pid_at + 4), 998u);
  for (uint32_t uid : {uint32_t{0}, uint32_t{998}}) {
    std::vector<uint8_t> zero_pid = ok;
    set_u32(&zero_pid, pid_at, 0);
    set_u32(&zero_pid, pid_at + 4, uid);
    ExpectRefused(MessageType::kHelloReply, zero_pid, StatusCode::kCorruption, "server_pid");
  }
  std::vector<uint8_t> root = ok;
  set_u32(&root, pid_at + 4, 0);
  Result<Message> m = DecodeMessage(MessageType::kHelloReply, root);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(std::get<HelloReply>(*m).server_pid, 4242u);
  EXPECT_EQ(std::get<HelloReply>(*m).server_uid, 0u);
}

TEST(MessageDecodeErrorsTest, GpuExportReplyEntriesAreReadByTheirStatus) {
  // Only an ok entry carries the 100 export bytes: a not_found followed by them is misread as
  // a not_found and a message, and then refused, never taken for an export.
  GpuExportEntry ok;
  ok.pool_bytes = 4096;
  ok.length = 4096;
  std::vector<uint8_t> body = BodyOf(GpuExportReply{{ok}, ""});
  ASSERT_EQ(body.size(), 4 + kGpuExportOkEntryBytes + 2);
  body[4] = static_cast<uint8_t>(WireStatus::kNotFound);
  ExpectRefused(MessageType::kGpuExportReply, body, StatusCode::kCorruption, "");
  // An ok entry cut inside its export bytes is truncated.
  std::vector<uint8_t> cut = BodyOf(GpuExportReply{{ok}, ""});
  cut.resize(4 + 1 + 70);
  ExpectRefused(MessageType::kGpuExportReply, cut, StatusCode::kCorruption, "truncated");
  // A request without a lease.
  std::vector<uint8_t> no_lease = BodyOf(GpuExport{1, {BlockKey{}}});
  no_lease[0] = 0;
  ExpectRefused(MessageType::kGpuExport, no_lease, StatusCode::kCorruption, "lease_id");
}

// A GpuExportReply has no more entries than a GpuExport may carry keys: a small body of 1-byte
// not_found entries cannot make the receiver build a hundred times its size in entries.
TEST(MessageDecodeErrorsTest, GpuExportRepliesAreBoundByTheKeysARequestCarries) {
  ProtocolLimits limits;
  limits.max_body_bytes = 64 << 10;
  const uint32_t most = GpuExportKeysPerRequest(limits);
  ASSERT_LT(most, limits.max_keys_per_batch);
  auto body_of = [](uint32_t n) {
    std::vector<uint8_t> body = U32(n);
    body.insert(body.end(), n, static_cast<uint8_t>(WireStatus::kNotFound));
    body.insert(body.end(), {0, 0});  // empty message
    return body;
  };
  Result<Message> at_most = DecodeMessage(MessageType::kGpuExportReply, body_of(most), limits);
  ASSERT_TRUE(at_most.ok()) << at_most.status().ToString();
  EXPECT_EQ(std::get<GpuExportReply>(*at_most).entries.size(), most);
  ExpectRefused(MessageType::kGpuExportReply, body_of(most + 1), StatusCode::kOutOfRange,
                "the keys a gpu_export may carry", limits);
  GpuExportReply over;
  over.entries.assign(most + 1, GpuExportEntry{WireStatus::kNotFound});
  EXPECT_EQ(over.Validate(limits).code(), StatusCode::kOutOfRange);
}

TEST(MessageDecodeErrorsTest, ReleaseMemoryNeedsAKey) {
  // An empty remote key is a bad value, not a truncation.
  ExpectRefused(MessageType::kReleaseMemory, U32(0), StatusCode::kCorruption,
                "remote_key is empty");
  // A key shorter than its length.
  ExpectRefused(MessageType::kReleaseMemory, Concat({U32(4), {1, 2, 3}}), StatusCode::kCorruption,
                "truncated");
}

TEST(MessageDecodeErrorsTest, RandomBytesNeverCrash) {
  // A cheap in-process complement to the fuzz harness: deterministic garbage of every size.
  std::vector<MessageType> types;
  for (const Message& m : SampleMessages()) types.push_back(TypeOf(m));
  uint64_t state = 0x9E3779B97F4A7C15ull;
  for (int round = 0; round < 2000; ++round) {
    std::vector<uint8_t> body(static_cast<size_t>(round % 97));
    for (uint8_t& b : body) {
      state ^= state << 13;
      state ^= state >> 7;
      state ^= state << 17;
      b = static_cast<uint8_t>(state);
    }
    for (MessageType type : types) {
      Result<Message> r = DecodeMessage(type, body);
      if (r.ok()) {
        std::vector<uint8_t> again;
        EXPECT_TRUE(AppendMessageFrame(*r, 1, {}, &again).ok());
      }
    }
  }
}

}  // namespace
}  // namespace kvault::transport
