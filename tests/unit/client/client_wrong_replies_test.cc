// Replies that decode but do not answer the request: one result fewer than keys (Lookup, Store,
// Load, Delete, GpuExport), leading_hits past the keys, a daemon of a newer protocol version, a
// Pong with another payload. The client turns each into an error for the caller and never reports
// results for keys the daemon did not answer. Each beside the same call against a daemon that
// answers correctly.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "fake_server.h"
#include "kvault/client.h"

namespace kvault {
namespace {

using std::chrono::milliseconds;
using testing::FakeServer;

std::vector<BlockKey> Keys(size_t n) { return testing::NumberedKeys(n); }

bool Contains(const Status& s, const std::string& text) {
  return s.message().find(text) != std::string::npos;
}

ClientConfig ConfigFor(const std::string& address, bool data_plane) {
  ClientConfig c;
  c.server = address;
  c.data_plane = data_plane;
  c.connect_timeout = milliseconds(2000);
  c.request_timeout = milliseconds(1000);
  c.reconnect_backoff = milliseconds(0);
  c.client_name = "wrong-replies-test";
  return c;
}

// Connects the fixture, or returns from the test when that failed or was skipped.
#define CONNECT(mode)                       \
  do {                                      \
    ASSERT_NO_FATAL_FAILURE(Connect(mode)); \
    if (IsSkipped()) return;                \
  } while (false)

// A client with a data plane (for Store and Load) and a registered region of 64 KiB.
class ClientWrongReplies : public ::testing::Test {
 protected:
  void Connect(FakeServer::Mode mode) {
    server_ = std::make_unique<FakeServer>(mode);
    Result<std::unique_ptr<Client>> client =
        Client::Connect(ConfigFor(server_->address(), /*data_plane=*/true));
    // Only a UCX that cannot start here skips; a worker proof that failed is a failure.
    if (!client.ok() && client.status().message().find("UCX") != std::string::npos &&
        client.status().message().find("worker proof") == std::string::npos) {
      GTEST_SKIP() << "UCX unavailable: " << client.status().ToString();
    }
    ASSERT_TRUE(client.ok()) << client.status().ToString();
    client_ = std::move(*client);
    buffer_.assign(64 * 1024, 0);
    Result<MemoryRegion> region = client_->RegisterMemory(buffer_.data(), buffer_.size());
    ASSERT_TRUE(region.ok()) << region.status().ToString();
    region_ = std::move(*region);
  }

  // Stores keys.size() blocks of 1 KiB from the region.
  StoreHandle StoreEach(const std::vector<BlockKey>& keys) {
    sources_.clear();
    for (size_t i = 0; i < keys.size(); ++i) sources_.push_back({buffer_.data() + i * 1024, 1024});
    return client_->Store(keys, sources_);
  }

  // Loads keys.size() blocks of up to 1 KiB into the region.
  LoadHandle LoadEach(const std::vector<BlockKey>& keys) {
    destinations_.clear();
    for (size_t i = 0; i < keys.size(); ++i) {
      destinations_.push_back({{buffer_.data() + 8192 + i * 1024, 1024}});
    }
    return client_->Load(Lease{}, keys, destinations_);
  }

  std::unique_ptr<FakeServer> server_;
  std::vector<uint8_t> buffer_;
  std::vector<std::span<const uint8_t>> sources_;
  std::vector<LoadDestination> destinations_;
  std::unique_ptr<Client> client_;
  MemoryRegion region_;  // after client_: destroyed first
};

// --- One result fewer than keys ---

TEST_F(ClientWrongReplies, LookupWithATierPerKeyIsAnswered) {
  CONNECT(FakeServer::Mode::kServe);
  LookupResult r = client_->LookupPrefix(Keys(3), {.want_lease = true});
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.leading_hits, 2u);
  EXPECT_EQ(r.tiers, (std::vector<Tier>{Tier::kHost, Tier::kHost, Tier::kNone}));
  EXPECT_TRUE(r.lease.valid());
}

TEST_F(ClientWrongReplies, LookupReplyOneTierShortIsCorruptionWithNoHitsAndNoLease) {
  CONNECT(FakeServer::Mode::kShortReplies);
  LookupResult r = client_->LookupPrefix(Keys(3), {.want_lease = true});
  EXPECT_EQ(r.status.code(), StatusCode::kCorruption);
  EXPECT_TRUE(Contains(r.status, "lookup_reply has 2 results for 3 keys")) << r.status.ToString();
  EXPECT_EQ(r.leading_hits, 0u);
  EXPECT_TRUE(r.tiers.empty());
  EXPECT_FALSE(r.lease.valid());  // the daemon granted lease 99 in that reply: not reported
  // The reply was well-formed: the connection stays up, and an answer to a request of the right
  // size is still taken (a Ping here).
  EXPECT_TRUE(client_->Ping().ok());
  EXPECT_EQ(server_->connections(), 1);
}

TEST_F(ClientWrongReplies, StoreWithAStatusPerKeyIsAnswered) {
  CONNECT(FakeServer::Mode::kServe);
  StoreHandle h = StoreEach(Keys(3));
  ASSERT_TRUE(h.Wait().ok()) << h.Wait().ToString();
  EXPECT_EQ(h.ok_count(), 3u);
  EXPECT_EQ(h.leading_ok(), 3u);
}

TEST_F(ClientWrongReplies, StoreReplyOneStatusShortFailsEveryKeyWithCorruption) {
  CONNECT(FakeServer::Mode::kShortReplies);
  StoreHandle h = StoreEach(Keys(3));
  const Status s = h.Wait();
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_TRUE(Contains(s, "store_reply has 2 results for 3 keys")) << s.ToString();
  EXPECT_FALSE(h.refused());  // sent and answered, not refused before sending
  EXPECT_TRUE(h.Settled());
  EXPECT_EQ(h.ok_count(), 0u);  // not even the two keys the reply said were stored
  EXPECT_EQ(h.leading_ok(), 0u);
  for (size_t i = 0; i < h.size(); ++i) {
    EXPECT_EQ(h.key_status(i).code(), StatusCode::kCorruption) << "key " << i;
  }
}

TEST_F(ClientWrongReplies, LoadWithAnOutcomePerKeyIsAnswered) {
  CONNECT(FakeServer::Mode::kServe);
  LoadHandle h = LoadEach(Keys(3));
  ASSERT_TRUE(h.Wait().ok()) << h.Wait().ToString();
  for (size_t i = 0; i < h.size(); ++i) {
    EXPECT_EQ(h.key_status(i).code(), StatusCode::kNotFound) << "key " << i;  // the fake's misses
  }
}

TEST_F(ClientWrongReplies, LoadReplyOneOutcomeShortFailsEveryKeyWithCorruption) {
  CONNECT(FakeServer::Mode::kShortReplies);
  LoadHandle h = LoadEach(Keys(3));
  const Status s = h.Wait();
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_TRUE(Contains(s, "load_reply has 2 results for 3 keys")) << s.ToString();
  EXPECT_FALSE(h.refused());
  EXPECT_TRUE(h.Settled());
  for (size_t i = 0; i < h.size(); ++i) {
    EXPECT_EQ(h.key_status(i).code(), StatusCode::kCorruption) << "key " << i;
    EXPECT_EQ(h.object_size(i), 0u) << "key " << i;
  }
}

TEST_F(ClientWrongReplies, DeleteWithAStatusPerKeyIsAnswered) {
  CONNECT(FakeServer::Mode::kServe);
  Result<std::vector<Status>> r = client_->Delete(Keys(3));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 3u);
  for (const Status& s : *r) EXPECT_EQ(s.code(), StatusCode::kNotFound);
}

TEST_F(ClientWrongReplies, DeleteReplyOneStatusShortIsCorruption) {
  CONNECT(FakeServer::Mode::kShortReplies);
  Result<std::vector<Status>> r = client_->Delete(Keys(3));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kCorruption);
  EXPECT_TRUE(Contains(r.status(), "delete_reply has 2 results for 3 keys"))
      << r.status().ToString();
}

// A lease of the current session, as a Lookup would have granted it (the short mode answers no
// Lookup properly).
Lease LeaseOf(const Client& client) {
  Lease lease;
  lease.id = 99;
  lease.session = client.session_id();
  lease.expiry = Clock::now() + milliseconds(1000);
  return lease;
}

TEST_F(ClientWrongReplies, GpuExportWithAnEntryPerKeyIsAnswered) {
  CONNECT(FakeServer::Mode::kServeGpuExport);
  Result<std::vector<GpuBlockExport>> r = client_->ExportGpuBlocks(LeaseOf(*client_), Keys(2));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 2u);
  for (const GpuBlockExport& e : *r) EXPECT_EQ(e.status.code(), StatusCode::kNotFound);
}

TEST_F(ClientWrongReplies, GpuExportReplyOneEntryShortIsCorruption) {
  CONNECT(FakeServer::Mode::kShortReplies);
  Result<std::vector<GpuBlockExport>> r = client_->ExportGpuBlocks(LeaseOf(*client_), Keys(2));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kCorruption);
  EXPECT_TRUE(Contains(r.status(), "gpu_export_reply has 1 results for 2 keys"))
      << r.status().ToString();
}

// --- leading_hits past the keys ---

// The decoder refuses such a LookupReply (leading_hits over its tiers) before the client's own
// check sees it: the frame is undecodable, so the connection is dropped, as docs/protocol.md §2
// says of any frame the client cannot decode. The next call connects again.
TEST_F(ClientWrongReplies, LookupReplyWithLeadingHitsPastTheKeysFailsAndDropsTheConnection) {
  CONNECT(FakeServer::Mode::kTooManyHits);
  LookupResult r = client_->LookupPrefix(Keys(3), {.want_lease = true});
  EXPECT_EQ(r.status.code(), StatusCode::kUnavailable);
  EXPECT_TRUE(Contains(r.status, "undecodable lookup_reply")) << r.status.ToString();
  EXPECT_TRUE(Contains(r.status, "leading_hits 4 exceeds the 3 keys")) << r.status.ToString();
  EXPECT_EQ(r.leading_hits, 0u);
  EXPECT_TRUE(r.tiers.empty());
  EXPECT_FALSE(r.lease.valid());
  EXPECT_FALSE(client_->connected());

  EXPECT_TRUE(client_->Ping().ok());  // a new session on a new connection
  EXPECT_EQ(server_->connections(), 2);
}

// --- Protocol version ---

TEST(ClientWrongVersion, DaemonOfTheSameVersionIsAccepted) {
  FakeServer server(FakeServer::Mode::kServe);
  Result<std::unique_ptr<Client>> client =
      Client::Connect(ConfigFor(server.address(), /*data_plane=*/false));
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  EXPECT_EQ(server.requests(transport::MessageType::kAuth), 1);
}

TEST(ClientWrongVersion, DaemonOfANewerVersionIsRefusedBeforeAuth) {
  FakeServer server(FakeServer::Mode::kNewerVersion);
  Result<std::unique_ptr<Client>> client =
      Client::Connect(ConfigFor(server.address(), /*data_plane=*/false));
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), StatusCode::kUnsupported);
  const std::string expected = "hello with kvaultd at " + server.address() +
                               ": the daemon speaks protocol version " +
                               std::to_string(transport::kProtocolVersion + 1) + ", this client " +
                               std::to_string(transport::kProtocolVersion);
  EXPECT_TRUE(Contains(client.status(), expected)) << client.status().ToString();
  // The token's proof never went to a daemon the client cannot talk to.
  EXPECT_EQ(server.requests(transport::MessageType::kAuth), 0);
}

// --- Pong payload ---

TEST(ClientWrongPong, PongWithThePingsPayloadIsARoundTrip) {
  FakeServer server(FakeServer::Mode::kServe);
  Result<std::unique_ptr<Client>> client =
      Client::Connect(ConfigFor(server.address(), /*data_plane=*/false));
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  Result<std::chrono::nanoseconds> rtt = (*client)->Ping();
  ASSERT_TRUE(rtt.ok()) << rtt.status().ToString();
  EXPECT_GT(rtt->count(), 0);
}

TEST(ClientWrongPong, PongWithAnotherPayloadIsCorruption) {
  FakeServer server(FakeServer::Mode::kWrongPong);
  Result<std::unique_ptr<Client>> client =
      Client::Connect(ConfigFor(server.address(), /*data_plane=*/false));
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  Result<std::chrono::nanoseconds> rtt = (*client)->Ping();
  ASSERT_FALSE(rtt.ok());
  EXPECT_EQ(rtt.status().code(), StatusCode::kCorruption);
  EXPECT_TRUE(Contains(rtt.status(), "pong: payload differs from the ping's"))
      << rtt.status().ToString();
  // Other requests are still answered.
  LookupResult r = (*client)->LookupPrefix(Keys(3));
  EXPECT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.leading_hits, 2u);
}

}  // namespace
}  // namespace kvault
