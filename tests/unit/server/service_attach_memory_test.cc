// Service::OnAttachMemory in-process, with real handed-over memory (a child's memory file) and a
// real ProcessDataMover behind DataPlanes: the memory attaches only to the session whose control
// connection it was handed over for, never when it is kvaultd's own (a thread's memory file
// passes Adopt's pid check; the canary does not read back elsewhere), and not after a failed
// worker proof; each refusal beside the positive control that attaches. HelloReply and the
// server proof name the socket, pid and uid.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

#include "core/data_planes.h"
#include "core/memory_handles.h"
#include "core/process_data_mover.h"
#include "kvault/common/synthetic_block.h"
#include "kvault/transport/local/region_file.h"
#include "kvault/transport/local/shared_memory_file.h"
#include "service_test_fixture.h"
#include "sleeping_child.h"

namespace kvault::server::service_test {
namespace {

// The same bytes at the same address in this process and in a forked child.
const std::array<uint8_t, 16> kProbeBytes = {0x10, 0x21, 0x32, 0x43, 0x54, 0x65, 0x76, 0x87,
                                             0x98, 0xa9, 0xba, 0xcb, 0xdc, 0xed, 0xfe, 0x0f};

// The control connection of the sessions of these tests (set by hand: there is no socket).
transport::ControlConnection TheConnection() {
  return {transport::TcpEnd::V4({127, 0, 0, 1}, 7400), transport::TcpEnd::V4({127, 0, 0, 1}, 4321)};
}

class ServiceAttachMemoryTest : public ServiceTest {
 protected:
  static constexpr const char* kSocket = "/tmp/kvaultd-test/memory.sock";

  void SetUp() override {
    ServiceTest::SetUp();
    ServiceOptions options;
    options.memory_handles = &handles_;
    options.memory_socket = kSocket;
    service_ = std::make_unique<Service>(*store_, *tenants_, &planes_, nullptr, options);
  }

  // The memory file at `path`, handed over with the probe of kProbeBytes, for `connection`, by
  // process `sender` (0: unknown).
  transport::Bytes32 HandOver(const std::string& path,
                              const transport::ControlConnection& connection = TheConnection(),
                              pid_t sender = 0) {
    UniqueFd fd(open(path.c_str(), O_RDWR | O_CLOEXEC));
    Result<transport::ProcessMemory> memory = transport::ProcessMemory::Adopt(&fd);
    EXPECT_TRUE(memory.ok()) << memory.status().ToString();
    if (!memory.ok()) return {};
    Result<transport::Bytes32> handle = handles_.Issue(
        HandedOverMemory{.memory = std::move(*memory),
                         .probe_address = reinterpret_cast<uintptr_t>(kProbeBytes.data()),
                         .probe = kProbeBytes,
                         .region = std::nullopt,
                         .connection = connection,
                         .sender_pid = static_cast<uint32_t>(sender)},
        1000);
    EXPECT_TRUE(handle.ok());
    return handle.ok() ? *handle : transport::Bytes32{};
  }

  // A region: `file` (mapped at the same address here and in a child forked after it was made),
  // handed over by process `sender` for `connection`, at `base` (0: where the file is mapped).
  transport::Bytes32 HandOverRegion(
      const transport::SharedMemoryFile& file, pid_t sender,
      const transport::ControlConnection& connection = TheConnection(), uint64_t base = 0) {
    UniqueFd fd(fcntl(file.descriptor(), F_DUPFD_CLOEXEC, 0));
    Result<transport::RegionFile> region = transport::RegionFile::Adopt(&fd, file.length());
    EXPECT_TRUE(region.ok()) << region.status().ToString();
    if (!region.ok()) return {};
    const uint64_t mapped = reinterpret_cast<uintptr_t>(file.address());
    Result<transport::Bytes32> handle = handles_.Issue(
        HandedOverMemory{.memory = std::nullopt,
                         .probe_address = 0,
                         .probe = {},
                         .region = HandedOverRegion{.file = std::move(*region),
                                                    .base = base != 0 ? base : mapped},
                         .connection = connection,
                         .sender_pid = static_cast<uint32_t>(sender)},
        1000);
    EXPECT_TRUE(handle.ok());
    return handle.ok() ? *handle : transport::Bytes32{};
  }

  // Stores the synthetic block of `key`, written at the start of `file`; its StoreReply status.
  WireStatus StoreFrom(Session& s, const transport::SharedMemoryFile& file, const BlockKey& key) {
    const uint64_t bytes = SyntheticObjectBytes(8192);
    EXPECT_LE(bytes, file.length());
    EXPECT_TRUE(WriteSyntheticBlock(
                    key, 8192, std::span<uint8_t>(static_cast<uint8_t*>(file.address()), bytes))
                    .ok());
    transport::Store store;
    store.remote_key = {9};
    store.entries.push_back({key, reinterpret_cast<uintptr_t>(file.address()), bytes});
    const Message m = service_->Handle(s, store);
    const auto* reply = std::get_if<transport::StoreReply>(&m);
    EXPECT_NE(reply, nullptr);
    return reply != nullptr && reply->statuses.size() == 1 ? reply->statuses[0]
                                                           : WireStatus::kInternal;
  }

  // An authenticated session of team-a on TheConnection(), its UCX worker not proven.
  std::unique_ptr<Session> Authenticated() {
    auto s = service_->OpenSession();
    s->connection = TheConnection();
    const Message m = Login(*s, "team-a", "token-a", /*prove=*/false);
    EXPECT_TRUE(std::holds_alternative<transport::AuthReply>(m));
    return s;
  }

  WireStatus Attach(Session& s, const transport::Bytes32& handle, std::string* message = nullptr) {
    const Message m = service_->Handle(s, transport::AttachMemory{handle});
    const auto* reply = std::get_if<transport::AttachMemoryReply>(&m);
    EXPECT_NE(reply, nullptr);
    if (reply == nullptr) return WireStatus::kInternal;
    if (message != nullptr) *message = reply->message;
    return reply->status;
  }

  MemoryHandles handles_;
  ProcessDataMover process_;
  DataPlanes planes_{&mover_, &process_};
};

TEST_F(ServiceAttachMemoryTest, TheServerProofVouchesForTheSocketPidAndUid) {
  auto s = service_->OpenSession();
  transport::Hello hello;
  hello.tenant = "team-a";
  const Message m = service_->Handle(*s, hello);
  const auto& hr = std::get<transport::HelloReply>(m);
  EXPECT_EQ(hr.memory_socket, kSocket);
  EXPECT_EQ(hr.server_pid, static_cast<uint32_t>(getpid()));
  EXPECT_EQ(hr.server_uid, static_cast<uint32_t>(geteuid()));
  transport::Auth auth;
  const AuthDigest proof = AuthProof(TokenHash("token-a"), hr.nonce);
  std::copy(proof.begin(), proof.end(), auth.proof.begin());
  const auto ar = std::get<transport::AuthReply>(service_->Handle(*s, auth));
  EXPECT_TRUE(VerifyServerProof(TokenHash("token-a"), hr.nonce, auth.proof, hr.server_pid,
                                hr.server_uid, hr.memory_socket, ar.server_proof));
  EXPECT_FALSE(VerifyServerProof(TokenHash("token-b"), hr.nonce, auth.proof, hr.server_pid,
                                 hr.server_uid, hr.memory_socket, ar.server_proof));
}

TEST_F(ServiceAttachMemoryTest, MemoryAttachesOnlyTheSessionItWasHandedOverFor) {
  SleepingChild child;
  auto s = Authenticated();
  transport::ControlConnection other = TheConnection();
  other.client.port = 9999;
  std::string message;
  EXPECT_EQ(Attach(*s, HandOver(child.MemoryFile(), other), &message),
            WireStatus::kInvalidArgument);
  EXPECT_NE(message.find("another control connection"), std::string::npos) << message;
  EXPECT_EQ(handles_.pending(), 0u);  // spent
  EXPECT_FALSE(s->memory_attached);
  // Positive control: handed over for this session's connection.
  EXPECT_EQ(Attach(*s, HandOver(child.MemoryFile()), &message), WireStatus::kOk) << message;
  EXPECT_TRUE(s->memory_attached);
  ASSERT_TRUE(s->peer.has_value());
  EXPECT_NE(*s->peer & ProcessDataMover::kPeerBit, 0u);
  EXPECT_FALSE(s->unproven_peer.has_value());  // the UCX endpoint the Auth opened is dropped
}

TEST_F(ServiceAttachMemoryTest, KvaultdsOwnMemoryIsRefused) {
  // A thread's memory file is this process's memory under another number than its pid.
  std::mutex mu;
  std::condition_variable cv;
  pid_t tid = 0;
  bool opened = false;
  std::thread thread([&] {
    std::unique_lock lock(mu);
    tid = static_cast<pid_t>(syscall(SYS_gettid));
    cv.notify_all();
    cv.wait(lock, [&] { return opened; });
  });
  transport::Bytes32 own;
  {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return tid != 0; });
    own = HandOver("/proc/" + std::to_string(tid) + "/mem");
    opened = true;
    cv.notify_all();
  }
  thread.join();
  auto s = Authenticated();
  std::string message;
  EXPECT_EQ(Attach(*s, own, &message), WireStatus::kInvalidArgument);
  EXPECT_NE(message.find("kvaultd's own"), std::string::npos) << message;
  SleepingChild child;  // positive control
  EXPECT_EQ(Attach(*s, HandOver(child.MemoryFile()), &message), WireStatus::kOk) << message;
}

TEST_F(ServiceAttachMemoryTest, NoMemoryAttachesAfterAFailedWorkerProof) {
  SleepingChild child;
  auto s = Authenticated();
  const Message proven = service_->Handle(*s, transport::ProveWorker{});
  EXPECT_EQ(std::get<transport::ProveWorkerReply>(proven).status, WireStatus::kUnauthenticated);
  const transport::Bytes32 handle = HandOver(child.MemoryFile());
  std::string message;
  EXPECT_EQ(Attach(*s, handle, &message), WireStatus::kInvalidArgument);
  EXPECT_NE(message.find("worker proof failed"), std::string::npos) << message;
  EXPECT_EQ(handles_.pending(), 1u);  // not spent
  // Positive control: a new handshake starts over, and the same handle attaches.
  ASSERT_TRUE(std::holds_alternative<transport::AuthReply>(
      Login(*s, "team-a", "token-a", /*prove=*/false)));
  EXPECT_EQ(Attach(*s, handle, &message), WireStatus::kOk) << message;
}

// A region joins a session only after the memory of the process that handed it over, for the
// session's connection: before, from another process (this one maps the same file at the same
// address) or for another connection it is refused, the session unchanged and its transfers
// still through the memory file; then it attaches, and a store from inside it moves through it.
TEST_F(ServiceAttachMemoryTest, ARegionAttachesOnlyAfterItsSendersMemoryOnItsConnection) {
  Result<transport::SharedMemoryFile> file = transport::SharedMemoryFile::Create(64 << 10);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  SleepingChild child;  // maps the file where this process does
  auto s = Authenticated();
  std::string message;
  EXPECT_EQ(Attach(*s, HandOverRegion(*file, child.pid()), &message), WireStatus::kInvalidArgument);
  EXPECT_NE(message.find("after the process's memory"), std::string::npos) << message;
  EXPECT_FALSE(s->memory_attached);
  EXPECT_FALSE(s->peer.has_value());
  ASSERT_EQ(Attach(*s, HandOver(child.MemoryFile(), TheConnection(), child.pid()), &message),
            WireStatus::kOk)
      << message;
  const transport::PeerId peer = s->peer.value_or(0);

  EXPECT_EQ(Attach(*s, HandOverRegion(*file, getpid()), &message), WireStatus::kInvalidArgument);
  EXPECT_NE(message.find("another process"), std::string::npos) << message;
  transport::ControlConnection other = TheConnection();
  other.client.port = 9999;
  EXPECT_EQ(Attach(*s, HandOverRegion(*file, child.pid(), other), &message),
            WireStatus::kInvalidArgument);
  EXPECT_NE(message.find("another control connection"), std::string::npos) << message;
  EXPECT_EQ(handles_.pending(), 0u);  // refused regions are spent
  EXPECT_TRUE(s->memory_attached);
  EXPECT_EQ(s->peer, peer);
  EXPECT_EQ(StoreFrom(*s, *file, Key(1)), WireStatus::kOk);
  EXPECT_EQ(process_.region_copies(), 0u);  // through the child's memory file

  // Positive control: from the child, for this connection.
  EXPECT_EQ(Attach(*s, HandOverRegion(*file, child.pid()), &message), WireStatus::kOk) << message;
  EXPECT_EQ(s->peer, peer);
  EXPECT_EQ(StoreFrom(*s, *file, Key(2)), WireStatus::kOk);
  EXPECT_EQ(process_.region_copies(), 1u);
  EXPECT_EQ(LookupKeys(*s, {Key(1), Key(2)}, /*lease=*/false).leading_hits, 2u);
}

// A region that overlaps one the session has (at the same base, or a page on) is refused, and so
// is the session's 65th (kMaxRegions) beside the 63 that attach after the first (positive
// control); the session keeps its memory and its first region, through which a store still goes.
TEST_F(ServiceAttachMemoryTest, AnOverlappingRegionOrOneTooManyIsRefused) {
  Result<transport::SharedMemoryFile> file = transport::SharedMemoryFile::Create(64 << 10);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  Result<transport::SharedMemoryFile> page = transport::SharedMemoryFile::Create(4096);
  ASSERT_TRUE(page.ok()) << page.status().ToString();
  SleepingChild child;  // maps both files where this process does
  auto s = Authenticated();
  std::string message;
  ASSERT_EQ(Attach(*s, HandOver(child.MemoryFile(), TheConnection(), child.pid()), &message),
            WireStatus::kOk)
      << message;
  const transport::PeerId peer = s->peer.value_or(0);
  ASSERT_EQ(Attach(*s, HandOverRegion(*file, child.pid()), &message), WireStatus::kOk) << message;
  const uint64_t first = reinterpret_cast<uintptr_t>(file->address());
  for (const uint64_t base : {first, first + 4096}) {
    EXPECT_EQ(Attach(*s, HandOverRegion(*file, child.pid(), TheConnection(), base), &message),
              WireStatus::kInvalidArgument);
    EXPECT_NE(message.find("overlaps"), std::string::npos) << message;
  }
  // Far from the first and from each other; the bases need not be mapped.
  const uint64_t far = uint64_t{1} << 40;
  for (uint64_t i = 1; i < ProcessDataMover::kMaxRegions; ++i) {
    ASSERT_EQ(
        Attach(*s, HandOverRegion(*page, child.pid(), TheConnection(), far + i * 8192), &message),
        WireStatus::kOk)
        << i << ": " << message;
  }
  EXPECT_EQ(Attach(*s, HandOverRegion(*page, child.pid(), TheConnection(), far), &message),
            WireStatus::kResourceExhausted);
  EXPECT_NE(message.find("64 regions"), std::string::npos) << message;
  EXPECT_EQ(handles_.pending(), 0u);
  EXPECT_TRUE(s->memory_attached);
  EXPECT_EQ(s->peer, peer);
  const uint64_t copies = process_.region_copies();
  EXPECT_EQ(StoreFrom(*s, *file, Key(1)), WireStatus::kOk);
  EXPECT_EQ(process_.region_copies(), copies + 1);  // through the first region
  EXPECT_EQ(LookupKeys(*s, {Key(1)}, /*lease=*/false).leading_hits, 1u);
}

}  // namespace
}  // namespace kvault::server::service_test
