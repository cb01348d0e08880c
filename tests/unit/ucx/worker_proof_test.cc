// Worker proofs (transport/ucx/worker_proof.h): the bytes, the mailbox, and a server's engine
// sending a proof to a client's agent over each transport.

#include "kvault/transport/ucx/worker_proof.h"

#include <gtest/gtest.h>

#include <thread>

#include "kvault/transport/ucx/transfer_engine.h"
#include "kvault/transport/ucx/ucx_agent.h"
#include "ucx_test_util.h"

namespace kvault::transport {
namespace {

using namespace std::chrono_literals;

WorkerProof Proof(uint64_t session, uint8_t seed) {
  WorkerProof p;
  p.session_id = session;
  for (size_t i = 0; i < p.token.size(); ++i) p.token[i] = static_cast<uint8_t>(seed + 7 * i);
  return p;
}

TEST(WorkerProofBytes, RoundTripAndExactLength) {
  const WorkerProof p = Proof(0x0102030405060708ull, 9);
  const auto bytes = EncodeWorkerProof(p);
  EXPECT_EQ(bytes[0], 0x08);  // session id little-endian first
  EXPECT_EQ(bytes[8], 9);     // then the token
  EXPECT_EQ(DecodeWorkerProof(bytes), p);
  EXPECT_FALSE(DecodeWorkerProof(std::span(bytes).first(39)).has_value());
  std::vector<uint8_t> longer(bytes.begin(), bytes.end());
  longer.push_back(0);
  EXPECT_FALSE(DecodeWorkerProof(longer).has_value());
}

class WorkerProofMailboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Result<UcxContext> context = UcxContext::Create({});
    ASSERT_TRUE(context.ok()) << context.status().ToString();
    context_.emplace(std::move(*context));
    Result<UcxWorker> worker = UcxWorker::Create(*context_);
    ASSERT_TRUE(worker.ok()) << worker.status().ToString();
    worker_.emplace(std::move(*worker));
    Result<std::unique_ptr<WorkerProofMailbox>> mailbox = WorkerProofMailbox::Attach(*worker_);
    ASSERT_TRUE(mailbox.ok()) << mailbox.status().ToString();
    mailbox_ = std::move(*mailbox);
  }
  void TearDown() override { mailbox_.reset(); }

  std::optional<UcxContext> context_;
  std::optional<UcxWorker> worker_;
  std::unique_ptr<WorkerProofMailbox> mailbox_;
};

TEST_F(WorkerProofMailboxTest, KeepsProofsBySessionOnceAndDropsGarbage) {
  mailbox_->Deliver(EncodeWorkerProof(Proof(5, 1)));
  mailbox_->Deliver(EncodeWorkerProof(Proof(6, 2)));
  const std::vector<uint8_t> garbage(39, 0xAB);
  mailbox_->Deliver(garbage);  // not a proof: ignored
  EXPECT_FALSE(mailbox_->Take(7).has_value());
  EXPECT_EQ(mailbox_->Take(6), Proof(6, 2).token);
  EXPECT_FALSE(mailbox_->Take(6).has_value());  // taken once
  EXPECT_EQ(mailbox_->Take(5), Proof(5, 1).token);
}

TEST_F(WorkerProofMailboxTest, ClearDropsEveryProofAndLaterOnesAreKept) {
  mailbox_->Deliver(EncodeWorkerProof(Proof(5, 1)));
  mailbox_->Clear();
  EXPECT_FALSE(mailbox_->Take(5).has_value());
  mailbox_->Deliver(EncodeWorkerProof(Proof(5, 2)));  // the same session id, a new handshake
  EXPECT_EQ(mailbox_->Take(5), Proof(5, 2).token);
}

TEST_F(WorkerProofMailboxTest, KeepsOnlyTheLatestProofs) {
  for (uint64_t s = 1; s <= WorkerProofMailbox::kKeptProofs + 1; ++s) {
    mailbox_->Deliver(EncodeWorkerProof(Proof(s, static_cast<uint8_t>(s))));
  }
  EXPECT_FALSE(mailbox_->Take(1).has_value());  // the oldest went
  EXPECT_TRUE(mailbox_->Take(WorkerProofMailbox::kKeptProofs + 1).has_value());
  EXPECT_TRUE(mailbox_->Take(2).has_value());
}

TEST_F(WorkerProofMailboxTest, WaitEndsAtItsDeadlineOrWhenTheProofArrives) {
  const auto start = std::chrono::steady_clock::now();
  Result<std::array<uint8_t, 32>> none = mailbox_->Wait(3, start + 50ms);
  ASSERT_FALSE(none.ok());
  EXPECT_TRUE(IsDeadlineExceeded(none.status())) << none.status().ToString();
  EXPECT_GE(std::chrono::steady_clock::now() - start, 50ms);

  std::thread later([&] {
    std::this_thread::sleep_for(20ms);
    mailbox_->Deliver(EncodeWorkerProof(Proof(3, 4)));
  });
  Result<std::array<uint8_t, 32>> got = mailbox_->Wait(3, std::chrono::steady_clock::now() + 10s);
  later.join();
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, Proof(3, 4).token);
}

// The engine's Connect with a proof reaches the agent whose address it was given, over each
// transport; a Connect without one sends nothing.
class WorkerProofOverUcxTest : public testing::EngineAndAgentTest {};

TEST_P(WorkerProofOverUcxTest, ConnectSendsTheProofToTheAddressedWorker) {
  const WorkerProof proof = Proof(42, 17);
  Result<PeerId> peer = engine_->Connect(agent_->worker_address(), std::nullopt, proof);
  ASSERT_TRUE(peer.ok()) << peer.status().ToString();
  Result<std::array<uint8_t, 32>> got =
      agent_->AwaitWorkerProof(42, std::chrono::steady_clock::now() + 10s);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, proof.token);
  // The fixture's own Connect (no proof) sent none for any other session.
  Result<std::array<uint8_t, 32>> none =
      agent_->AwaitWorkerProof(43, std::chrono::steady_clock::now() + 100ms);
  EXPECT_FALSE(none.ok());
}

INSTANTIATE_TEST_SUITE_P(Transports, WorkerProofOverUcxTest,
                         ::testing::Values("tcp", "posix,cma", "sysv,cma"), [](const auto& info) {
                           std::string name = info.param;
                           for (char& c : name) {
                             if (c == ',') c = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace kvault::transport
