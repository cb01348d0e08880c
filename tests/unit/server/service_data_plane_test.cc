// Service's data plane over a real BlockStore (service_test_fixture.h): large objects in chunks
// verified as they land, client memory mapped here copied (or read from its file) and hashed on
// the way, ReleaseMemory, and no data moving until the client's worker is proven.

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "core/service.h"
#include "service_test_fixture.h"

namespace kvault::server {
namespace {

using namespace service_test;

TEST_F(ServiceTest, LargeObjectsMoveInChunksVerifiedAsTheyLand) {
  auto s = LoggedIn("team-a", "token-a");
  const uint64_t payload = 2500 << 10;  // three chunks of at most 1 MiB
  const double used_before = StoreValue("host.reserved_bytes");
  // Positive control: two multi-chunk objects store and load back byte for byte.
  EXPECT_EQ(StoreKeys(*s, {Key(1), Key(2)}, payload), std::vector<WireStatus>(2, WireStatus::kOk));
  EXPECT_EQ(mover_.last_batch_transfers, 6u);  // chunked, not one GET per object
  std::vector<uint8_t> dst(objects_[1].size());
  EXPECT_EQ(LoadKey(*s, Key(2), dst).outcomes[0].status, WireStatus::kOk);
  EXPECT_EQ(dst, objects_[1]);

  // Damage past the first chunk.
  transport::Store store;
  store.remote_key = {9};
  std::vector<uint8_t> damaged = *MakeSyntheticBlock(Key(3), payload);
  damaged[damaged.size() - 5] ^= 0x01;
  store.entries.push_back({Key(3), reinterpret_cast<uint64_t>(damaged.data()), damaged.size()});
  Message m = service_->Handle(*s, store);
  EXPECT_EQ(std::get<transport::StoreReply>(m).statuses[0], WireStatus::kCorruption);
  EXPECT_EQ(LookupKeys(*s, {Key(3)}, false).leading_hits, 0u);

  // The second chunk of the first object fails: that object fails, the next one is stored.
  const double used_after_two = StoreValue("host.reserved_bytes");
  mover_.fail_transfer_at = 1;
  EXPECT_EQ(StoreKeys(*s, {Key(4), Key(5)}, payload),
            (std::vector<WireStatus>{WireStatus::kTransferFailed, WireStatus::kOk}));
  mover_.fail_transfer_at.reset();
  EXPECT_EQ(LookupKeys(*s, {Key(4)}, false).leading_hits, 0u);
  EXPECT_EQ(LookupKeys(*s, {Key(5)}, false).leading_hits, 1u);
  EXPECT_GT(used_after_two, used_before);
  EXPECT_EQ(StoreValue("host.reserved_bytes"), used_after_two + (used_after_two - used_before) / 2);
}

// Client memory mapped into the daemon: the service copies each chunk itself, with the copy
// helper taking half of the large ones, and hashes on the way; damage anywhere is still caught.
// With files (the parameter): bytes the client does not use again come with their segment's file,
// which the service reads instead of the mapping (halves split with the helper) and hashes the
// same way; a file cut short fails the transfer (not the object's verification) and leaves
// nothing reserved.
class MappedStoreTest : public ServiceTest, public ::testing::WithParamInterface<bool> {};

TEST_P(MappedStoreTest, MappedClientMemoryIsCopiedAndVerifiedOnTheWay) {
  mover_.mapped = true;
  mover_.mapped_file = GetParam();
  auto s = LoggedIn("team-a", "token-a");
  const uint64_t payload = 2500 << 10;  // three chunks of at most 1 MiB
  // Positive control: multi-chunk and small objects store through the copier and load back.
  EXPECT_EQ(StoreKeys(*s, {Key(1), Key(2), Key(3)}, payload),
            std::vector<WireStatus>(3, WireStatus::kOk));
  EXPECT_EQ(mover_.mapped_copies, 9u);
  std::vector<uint8_t> dst(objects_[1].size());
  EXPECT_EQ(LoadKey(*s, Key(2), dst).outcomes[0].status, WireStatus::kOk);
  EXPECT_EQ(dst, objects_[1]);
  EXPECT_EQ(StoreKeys(*s, {Key(4)}, 1000), std::vector<WireStatus>(1, WireStatus::kOk));

  // One flipped byte in the first half of a chunk (copied by this thread), in the second half
  // (the helper's), and in the last chunk: each object is refused, nothing is left reserved.
  const double used_before = StoreValue("host.reserved_bytes");
  for (uint64_t at : {uint64_t{1000}, uint64_t{(1 << 20) + (700 << 10)}, payload - 3}) {
    SCOPED_TRACE("damaged at " + std::to_string(at));
    transport::Store store;
    store.remote_key = {9};
    std::vector<uint8_t> damaged = *MakeSyntheticBlock(Key(5), payload);
    damaged[at] ^= 0x40;
    store.entries.push_back({Key(5), reinterpret_cast<uint64_t>(damaged.data()), damaged.size()});
    Message m = service_->Handle(*s, store);
    EXPECT_EQ(std::get<transport::StoreReply>(m).statuses[0], WireStatus::kCorruption);
    EXPECT_EQ(LookupKeys(*s, {Key(5)}, false).leading_hits, 0u);
    EXPECT_EQ(StoreValue("host.reserved_bytes"), used_before);
  }
  if (GetParam()) {
    mover_.cut_files = true;
    EXPECT_EQ(StoreKeys(*s, {Key(5)}, payload),
              std::vector<WireStatus>(1, WireStatus::kTransferFailed));
    EXPECT_EQ(LookupKeys(*s, {Key(5)}, false).leading_hits, 0u);
    EXPECT_EQ(StoreValue("host.reserved_bytes"), used_before);
    mover_.cut_files = false;
  }
  // And the undamaged object stores (the key was not poisoned by the refusals).
  EXPECT_EQ(StoreKeys(*s, {Key(5)}, payload), std::vector<WireStatus>(1, WireStatus::kOk));
  EXPECT_EQ(LookupKeys(*s, {Key(5)}, false).leading_hits, 1u);
}

INSTANTIATE_TEST_SUITE_P(CopiedOrRead, MappedStoreTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? std::string("ReadFromFiles")
                                             : std::string("CopiedFromTheMapping");
                         });

TEST_F(ServiceTest, ReleaseMemoryMakesTheSessionsMoverForgetTheKey) {
  Metrics metrics;
  Service service(*store_, *tenants_, &mover_, &metrics, ServiceOptions{});
  const transport::ReleaseMemory release{{0x4B, 0x56, 0x52, 0x4B, 9}};
  // Before auth: refused, and nothing is forgotten.
  auto fresh = service.OpenSession();
  Message m = service.Handle(*fresh, release);
  ASSERT_TRUE(std::holds_alternative<transport::ErrorReply>(m));
  EXPECT_EQ(std::get<transport::ErrorReply>(m).status, WireStatus::kUnauthenticated);
  EXPECT_TRUE(mover_.forgotten.empty());

  auto s = service.OpenSession();
  ASSERT_TRUE(std::holds_alternative<transport::AuthReply>(
      HelloAuth(service, *s, "team-a", "token-a", {1, 2, 3})));
  ASSERT_FALSE(mover_.proofs.empty());
  ASSERT_TRUE(std::holds_alternative<transport::ProveWorkerReply>(
      service.Handle(*s, transport::ProveWorker{mover_.proofs.back().token})));
  ASSERT_TRUE(s->peer.has_value());
  m = service.Handle(*s, release);
  ASSERT_TRUE(std::holds_alternative<transport::ReleaseMemoryReply>(m));
  EXPECT_EQ(std::get<transport::ReleaseMemoryReply>(m), transport::ReleaseMemoryReply{});
  ASSERT_EQ(mover_.forgotten.size(), 1u);
  EXPECT_EQ(mover_.forgotten[0].first, *s->peer);
  EXPECT_EQ(mover_.forgotten[0].second, release.remote_key);

  // A key the session never used is OK too (the mover ignores it), also while draining.
  service.SetDraining(true);
  m = service.Handle(*s, transport::ReleaseMemory{{7}});
  ASSERT_TRUE(std::holds_alternative<transport::ReleaseMemoryReply>(m));
  EXPECT_EQ(std::get<transport::ReleaseMemoryReply>(m).status, WireStatus::kOk);
  ASSERT_EQ(mover_.forgotten.size(), 2u);
  EXPECT_EQ(mover_.forgotten[1].second, std::vector<uint8_t>{7});
  EXPECT_NE(
      metrics.Serialize().find("kvault_request_duration_seconds_count{op=\"release_memory\"} 2"),
      std::string::npos);
}

TEST_F(ServiceTest, ReleaseMemoryWithoutADataPlaneIsOk) {
  auto s = service_->OpenSession();
  // No worker address: the session never connects a data-plane peer.
  ASSERT_TRUE(
      std::holds_alternative<transport::AuthReply>(HelloAuth(*service_, *s, "team-b", "token-b")));
  EXPECT_FALSE(s->peer.has_value());
  Message m = service_->Handle(*s, transport::ReleaseMemory{{1, 2}});
  ASSERT_TRUE(std::holds_alternative<transport::ReleaseMemoryReply>(m));
  EXPECT_TRUE(std::get<transport::ReleaseMemoryReply>(m).ToStatus().ok());
  EXPECT_TRUE(mover_.forgotten.empty());
}

// The worker a Hello announces is only the client's word: until the client returns the token
// sent to that worker, no block data moves for the session.
TEST_F(ServiceTest, NoDataMovesUntilTheWorkerIsProven) {
  auto s = service_->OpenSession();
  const Message auth = Login(*s, "team-a", "token-a", /*prove=*/false);
  ASSERT_EQ(std::get<transport::AuthReply>(auth).status, WireStatus::kOk);
  ASSERT_EQ(mover_.proofs.size(), 1u);
  const transport::WorkerProof sent = mover_.proofs[0];
  EXPECT_EQ(sent.session_id, s->id);
  EXPECT_NE(sent.token, decltype(sent.token){});  // random bytes, not zeros
  EXPECT_FALSE(s->peer.has_value());
  // Unproven: stores and loads are refused with a clear status, nothing is stored.
  const auto refusal = [&](const Message& request) {
    const Message m = service_->Handle(*s, request);
    const auto* error = std::get_if<transport::ErrorReply>(&m);
    return error == nullptr
               ? std::string("not refused")
               : std::string(transport::WireStatusName(error->status)) + ": " + error->message;
  };
  transport::Store store;
  store.remote_key = {9};
  store.entries.push_back({Key(1), 4096, 4096});
  transport::Load load;
  load.remote_key = {9};
  load.entries.push_back({Key(1), 4096, 4096, 0, 0});
  EXPECT_NE(refusal(store).find("unauthenticated: the announced UCX worker is not proven"),
            std::string::npos)
      << refusal(store);
  EXPECT_NE(refusal(load).find("not proven"), std::string::npos) << refusal(load);
  EXPECT_EQ(LookupKeys(*s, {Key(1)}, false).leading_hits, 0u);

  // A wrong token: refused, the worker is dropped, and the right one no longer helps.
  transport::ProveWorker wrong{sent.token};
  wrong.token[31] ^= 1;
  Message m = service_->Handle(*s, wrong);
  EXPECT_EQ(std::get<transport::ProveWorkerReply>(m).status, WireStatus::kUnauthenticated);
  EXPECT_EQ(mover_.disconnects, 1);
  m = service_->Handle(*s, transport::ProveWorker{sent.token});
  EXPECT_EQ(std::get<transport::ProveWorkerReply>(m).status, WireStatus::kInvalidArgument);
  EXPECT_NE(refusal(store).find("proof failed"), std::string::npos) << refusal(store);

  // Positive control: a new handshake with the right token moves data.
  ASSERT_EQ(std::get<transport::AuthReply>(Login(*s, "team-a", "token-a")).status, WireStatus::kOk);
  EXPECT_EQ(mover_.proofs.size(), 2u);
  EXPECT_NE(mover_.proofs[1].token, sent.token);  // fresh per handshake
  EXPECT_TRUE(s->peer.has_value());
  EXPECT_EQ(StoreKeys(*s, {Key(1)}), std::vector<WireStatus>{WireStatus::kOk});
  EXPECT_EQ(LookupKeys(*s, {Key(1)}, false).leading_hits, 1u);
  // Proving twice is refused and changes nothing.
  m = service_->Handle(*s, transport::ProveWorker{mover_.proofs[1].token});
  EXPECT_EQ(std::get<transport::ProveWorkerReply>(m).status, WireStatus::kInvalidArgument);
  EXPECT_EQ(StoreKeys(*s, {Key(2)}), std::vector<WireStatus>{WireStatus::kOk});
}

TEST_F(ServiceTest, ProveWorkerNeedsAuthAndAnAnnouncedWorker) {
  auto fresh = service_->OpenSession();
  Message m = service_->Handle(*fresh, transport::ProveWorker{});
  ASSERT_TRUE(std::holds_alternative<transport::ErrorReply>(m));
  EXPECT_EQ(std::get<transport::ErrorReply>(m).status, WireStatus::kUnauthenticated);

  auto s = service_->OpenSession();  // no worker address
  ASSERT_TRUE(
      std::holds_alternative<transport::AuthReply>(HelloAuth(*service_, *s, "team-b", "token-b")));
  EXPECT_TRUE(mover_.proofs.empty());
  m = service_->Handle(*s, transport::ProveWorker{});
  EXPECT_EQ(std::get<transport::ProveWorkerReply>(m).status, WireStatus::kInvalidArgument);
  EXPECT_NE(std::get<transport::ProveWorkerReply>(m).message.find("no worker"), std::string::npos);
}

TEST_F(ServiceTest, AWrongWorkerProofCountsAsUnauthenticated) {
  Metrics metrics;
  Service service(*store_, *tenants_, &mover_, &metrics, ServiceOptions{});
  const std::string series = "kvault_rejected_requests_total{reason=\"unauthenticated\"} 1";
  auto s = service.OpenSession();
  ASSERT_TRUE(std::holds_alternative<transport::AuthReply>(
      HelloAuth(service, *s, "team-a", "token-a", {1, 2, 3})));
  EXPECT_EQ(metrics.Serialize().find(series), std::string::npos);  // nothing counted yet
  Message m = service.Handle(*s, transport::ProveWorker{});
  EXPECT_EQ(std::get<transport::ProveWorkerReply>(m).status, WireStatus::kUnauthenticated);
  EXPECT_NE(metrics.Serialize().find(series), std::string::npos) << metrics.Serialize();
}

}  // namespace
}  // namespace kvault::server
