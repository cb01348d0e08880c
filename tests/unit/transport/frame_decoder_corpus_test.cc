// The seed corpus of the frame decoder fuzz harness (tests/fuzz/corpus/frame_decoder) holds small
// valid frames. This test keeps the committed files equal to what the encoder writes today; after
// a deliberate format change, regenerate them by running the disabled writer below:
//   build/tests/frame_decoder_corpus_test --gtest_also_run_disabled_tests
//   --gtest_filter='*WriteSeedCorpus'   (one command line)
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include "kvault/transport/local/memory_handover_wire.h"
#include "kvault/transport/messages.h"

namespace kvault::transport {
namespace {

namespace fs = std::filesystem;

fs::path CorpusDir() {
  return fs::path(__FILE__).parent_path() / ".." / ".." / "fuzz" / "corpus" / "frame_decoder";
}

BlockKey Key(uint8_t fill) {
  BlockKey k;
  k.fill(fill);
  return k;
}

std::vector<uint8_t> Frame(const auto& message, uint64_t request_id) {
  Result<std::vector<uint8_t>> f = EncodeFrame(message, request_id);
  EXPECT_TRUE(f.ok()) << f.status().ToString();
  return f.ok() ? *f : std::vector<uint8_t>{};
}

// File name -> bytes: one frame of most types, a stream of several frames, and the memory
// hand-over's request and replies (the harness decodes every input as those too).
std::vector<std::pair<std::string, std::vector<uint8_t>>> SeedFiles() {
  HelloReply hello_reply;
  hello_reply.nonce.fill(0xA5);
  hello_reply.worker_address = {1, 2, 3, 4};
  hello_reply.memory_socket = "/run/kvault/mem.sock";
  hello_reply.server_pid = 4242;
  hello_reply.server_uid = 998;
  Auth auth;
  auth.proof.fill(0x3C);
  Bytes32 server_proof;
  server_proof.fill(0x7E);
  AttachMemory attach;
  attach.handle.fill(0xC3);
  AuthReply auth_refused;
  auth_refused.status = WireStatus::kInvalidArgument;
  auth_refused.message = "data plane: worker address: bad magic";
  Store store;
  store.remote_key = {9, 8, 7};
  store.entries = {{Key(1), 0x1000, 4096}, {Key(2), 0x2000, 128, Key(1)}};
  Load load;
  load.lease_id = 5;
  load.remote_key = {9, 8, 7};
  load.entries = {{Key(1), 0x1000, 4096, 0, 0}, {Key(2), 0x2000, 64, 32, 64}};
  GpuExportReply gpu_export_reply;
  GpuExportEntry exported;
  exported.pool_handle.fill(0x6B);
  exported.device_uuid.fill(0x1D);
  exported.pool_bytes = 64 << 20;
  exported.offset = 8192;
  exported.length = 4096;
  gpu_export_reply.entries = {exported, {WireStatus::kNotFound}, {WireStatus::kLeaseExpired}};
  gpu_export_reply.message = "not this session's lease";
  StatsReply stats;
  stats.entries = {{"tier_host_used_bytes", uint64_t{1} << 30}, {"hit_ratio", 0.5}};

  HandOverRequest handover_request;
  handover_request.probe_address = 0x7FFC12345678;
  handover_request.probe.fill(0x5C);
  handover_request.client_end.address = {127, 0, 0, 1};
  handover_request.client_end.port = 51234;
  handover_request.server_end.address = {127, 0, 0, 1};
  handover_request.server_end.port = 7400;
  const auto request_bytes = EncodeHandOverRequest(handover_request);
  HandOverRequest handover_request6 = handover_request;  // over ::1
  for (TcpEnd* end : {&handover_request6.client_end, &handover_request6.server_end}) {
    end->ipv6 = true;
    end->address = {};
    end->address[15] = 1;
  }
  const auto request6_bytes = EncodeHandOverRequest(handover_request6);
  HandOverReply handover_ok;
  handover_ok.handle.fill(0x9E);

  std::vector<uint8_t> stream = Frame(Hello{kProtocolVersion, "acme", "worker", {0xEE}}, 1);
  for (const auto& f : {Frame(auth, 2), Frame(attach, 3),
                        Frame(Lookup{{Key(1), Key(2)}, true, 1000}, 4), Frame(Ping{42}, 5)}) {
    stream.insert(stream.end(), f.begin(), f.end());
  }
  return {
      {"hello.bin", Frame(Hello{kProtocolVersion, "acme", "worker", {0xEE, 0xFF}}, 1)},
      {"hello_reply.bin", Frame(hello_reply, 1)},
      {"auth.bin", Frame(auth, 2)},
      {"hello_reply_no_memory_socket.bin", Frame(HelloReply{}, 1)},
      {"auth_reply.bin",
       Frame(AuthReply{WireStatus::kOk, 77, DataPlane::kUcx, server_proof, ""}, 2)},
      {"auth_reply_process_memory.bin",
       Frame(AuthReply{WireStatus::kOk, 78, DataPlane::kProcessMemory, server_proof, ""}, 2)},
      {"auth_reply_refused.bin", Frame(auth_refused, 2)},
      {"prove_worker.bin", Frame(ProveWorker{auth.proof}, 3)},
      {"prove_worker_reply.bin", Frame(ProveWorkerReply{WireStatus::kOk, ""}, 3)},
      {"attach_memory.bin", Frame(attach, 3)},
      {"attach_memory_reply.bin", Frame(AttachMemoryReply{WireStatus::kOk, ""}, 3)},
      {"attach_memory_reply_refused.bin",
       Frame(AttachMemoryReply{WireStatus::kInvalidArgument, "unknown memory handle"}, 3)},
      {"lookup.bin", Frame(Lookup{{Key(1), Key(2), Key(3)}, true, 30000}, 3)},
      {"lookup_reply.bin",
       Frame(LookupReply{2, {WireTier::kGpu, WireTier::kNvme, WireTier::kNone}, 9, 30000}, 3)},
      {"store.bin", Frame(store, 4)},
      {"store_reply.bin", Frame(StoreReply{{WireStatus::kOk, WireStatus::kTransferFailed}}, 4)},
      {"load.bin", Frame(load, 5)},
      {"load_reply.bin",
       Frame(LoadReply{{{WireStatus::kOk, 4096}, {WireStatus::kNotFound, 0}}}, 5)},
      {"release_lease.bin", Frame(ReleaseLease{9}, 6)},
      {"delete_reply.bin", Frame(DeleteReply{{WireStatus::kOk, WireStatus::kNotFound}}, 7)},
      {"gpu_export.bin", Frame(GpuExport{5, {Key(1), Key(2), Key(3)}}, 10)},
      {"gpu_export_reply.bin", Frame(gpu_export_reply, 10)},
      {"release_memory.bin", Frame(ReleaseMemory{{9, 8, 7}}, 11)},
      {"stats_reply.bin", Frame(stats, 8)},
      {"error.bin", Frame(ErrorReply::Make(WireStatus::kUnauthenticated, "auth first"), 9)},
      {"stream.bin", stream},
      {"handover_request.bin", {request_bytes.begin(), request_bytes.end()}},
      {"handover_request_ipv6.bin", {request6_bytes.begin(), request6_bytes.end()}},
      {"handover_reply.bin", EncodeHandOverReply(handover_ok)},
      {"handover_reply_refused.bin",
       EncodeHandOverReply({WireStatus::kUnavailable, {}, "too many memory handles"})},
  };
}

TEST(FrameDecoderCorpusTest, CommittedSeedsMatchTheEncoder) {
  for (const auto& [name, bytes] : SeedFiles()) {
    std::ifstream in(CorpusDir() / name, std::ios::binary);
    ASSERT_TRUE(in) << "missing " << (CorpusDir() / name) << "; see this file's comment";
    const std::vector<uint8_t> committed{std::istreambuf_iterator<char>(in), {}};
    EXPECT_EQ(committed, bytes) << name << " is stale; see this file's comment";
  }
}

// Writes the seed files into the source tree. Disabled: run by hand only (see above).
TEST(FrameDecoderCorpusTest, DISABLED_WriteSeedCorpus) {
  fs::create_directories(CorpusDir());
  for (const auto& [name, bytes] : SeedFiles()) {
    std::ofstream out(CorpusDir() / name, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
    ASSERT_TRUE(out.good()) << name;
  }
}

}  // namespace
}  // namespace kvault::transport
