// MemorySocket: a client on this host hands its memory over through the real Unix socket and the
// handle it gets redeems exactly that memory, with the probe it sent; a request with anything
// but a process's memory file, or no descriptor, or bytes that are not a request, is refused
// with a reason and issues nothing; the socket file is replaced when stale, refused when live or
// not a socket, and removed on shutdown. Each refusal beside a positive control. What would
// stall or fill the socket, and its gate: memory_socket_gate_test.cc.
#include "control/memory_socket.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "kvault/transport/local/memory_handover.h"
#include "kvault/transport/local/process_memory.h"
#include "kvault/transport/local/shared_memory_file.h"
#include "memory_socket_fixture.h"
#include "sleeping_child.h"

namespace kvault::server {
namespace {

using transport::Bytes32;

const uint64_t kValue = 0x0102030405060708;

TEST_F(MemorySocketTest, AClientsHandleRedeemsExactlyItsMemory) {
  Result<std::unique_ptr<MemorySocket>> socket =
      MemorySocket::Start(path_, &handles_, kGateProgram);
  ASSERT_TRUE(socket.ok()) << socket.status().ToString();
  struct stat st {};
  ASSERT_EQ(stat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0666u);

  HandingChild child(path_);
  ASSERT_TRUE(child.ok());
  std::optional<HandedOverMemory> handed = handles_.Redeem(child.handle());
  ASSERT_TRUE(handed.has_value());
  EXPECT_TRUE(handed->memory->Probe(handed->probe_address, handed->probe).ok());
  EXPECT_EQ(handed->connection.client, SomeConnection().client);
  EXPECT_EQ(handed->connection.server, SomeConnection().server);
  transport::ProcessMemory* memory = &*handed->memory;
  uint64_t seen = 0;
  ASSERT_TRUE(memory
                  ->Read(reinterpret_cast<uintptr_t>(&kValue),
                         std::span<uint8_t>(reinterpret_cast<uint8_t*>(&seen), 8))
                  .ok());
  EXPECT_EQ(seen, kValue);
  // Written through the handle, read back: the child's memory, not a copy.
  const uint64_t fresh = 0xfeedface;
  uint64_t slot = 0;
  const uint64_t at = reinterpret_cast<uintptr_t>(&slot);
  ASSERT_TRUE(
      memory->Write(at, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(&fresh), 8))
          .ok());
  uint64_t back = 0;
  ASSERT_TRUE(memory->Read(at, std::span<uint8_t>(reinterpret_cast<uint8_t*>(&back), 8)).ok());
  EXPECT_EQ(back, fresh);
  EXPECT_EQ(slot, 0u);  // this process's slot is untouched

  socket->reset();
  EXPECT_NE(access(path_.c_str(), F_OK), 0) << "the socket file is removed on shutdown";
}

// Without a path the socket gets a fresh directory of its own under /tmp, which other users may
// enter but not write, and which goes away with the socket.
TEST_F(MemorySocketTest, WithoutAPathItLivesInAFreshDirectoryRemovedOnShutdown) {
  Result<std::unique_ptr<MemorySocket>> socket = MemorySocket::Start("", &handles_, kGateProgram);
  ASSERT_TRUE(socket.ok()) << socket.status().ToString();
  const std::string path = (*socket)->path();
  const std::string directory = path.substr(0, path.rfind('/'));
  EXPECT_EQ(directory.rfind("/tmp/kvaultd-", 0), 0u) << path;
  EXPECT_EQ(path.substr(directory.size()), "/memory.sock");
  struct stat st {};
  ASSERT_EQ(stat(directory.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0755u);
  EXPECT_EQ(st.st_uid, geteuid());
  HandingChild child(path);
  EXPECT_TRUE(child.ok());
  Result<std::unique_ptr<MemorySocket>> second = MemorySocket::Start("", &handles_, kGateProgram);
  ASSERT_TRUE(second.ok());
  EXPECT_NE((*second)->path(), path);  // each its own
  socket->reset();
  EXPECT_NE(access(path.c_str(), F_OK), 0);
  EXPECT_NE(access(directory.c_str(), F_OK), 0);
}

TEST_F(MemorySocketTest, ARequestWithoutAProcesssMemoryFileIsRefusedAndIssuesNothing) {
  Result<std::unique_ptr<MemorySocket>> socket =
      MemorySocket::Start(path_, &handles_, kGateProgram);
  ASSERT_TRUE(socket.ok()) << socket.status().ToString();
  uint8_t probe_bytes[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
  transport::HandOverRequest request;
  request.probe_address = reinterpret_cast<uintptr_t>(probe_bytes);
  std::copy(std::begin(probe_bytes), std::end(probe_bytes), request.probe.begin());
  request.client_end = SomeConnection().client;
  request.server_end = SomeConnection().server;
  const auto bytes = transport::EncodeHandOverRequest(request);

  auto expect_refused = [&](std::span<const uint8_t> sent, int fd, std::string_view needle) {
    Result<transport::HandOverReply> reply = RawHandOver(path_, sent, fd);
    ASSERT_TRUE(reply.ok()) << needle << ": " << reply.status().ToString();
    EXPECT_NE(reply->status, transport::WireStatus::kOk) << needle;
    EXPECT_EQ(reply->handle, Bytes32{});
    EXPECT_NE(reply->message.find(needle), std::string::npos) << reply->message;
  };
  const std::string file = path_ + ".file";
  std::ofstream(file) << "not memory";
  UniqueFd regular(open(file.c_str(), O_RDWR | O_CLOEXEC));
  expect_refused(bytes, regular.get(), "not a process's memory file");
  expect_refused(bytes, -1, "exactly one descriptor");
  // This process's own memory, handed to a server in this same process: refused as its own.
  UniqueFd own(open("/proc/self/mem", O_RDWR | O_CLOEXEC));
  expect_refused(bytes, own.get(), "own");
  // An epoll descriptor: refused by its name, before its fdinfo is read (reading that takes a
  // lock the sender could hold).
  UniqueFd epoll(epoll_create1(EPOLL_CLOEXEC));
  expect_refused(bytes, epoll.get(), "not a process's memory file");
  std::array<uint8_t, transport::kHandOverRequestBytes> garbage{};
  expect_refused(garbage, regular.get(), "magic");
  unlink(file.c_str());
  EXPECT_EQ(handles_.pending(), 0u);

  // A child's memory file is taken whatever probe comes with it; the probe is read back by
  // whoever redeems the handle, and a wrong one shows then.
  SleepingChild child;
  UniqueFd child_mem(open(child.MemoryFile().c_str(), O_RDWR));
  transport::HandOverRequest wrong = request;
  wrong.probe[0] ^= 0xff;
  for (const transport::HandOverRequest& sent : {wrong, request}) {
    Result<transport::HandOverReply> reply =
        RawHandOver(path_, transport::EncodeHandOverRequest(sent), child_mem.get());
    ASSERT_TRUE(reply.ok()) << reply.status().ToString();
    ASSERT_EQ(reply->status, transport::WireStatus::kOk) << reply->message;
    std::optional<HandedOverMemory> handed = handles_.Redeem(reply->handle);
    ASSERT_TRUE(handed.has_value());
    const Status probed = handed->memory->Probe(handed->probe_address, handed->probe);
    if (sent == wrong) {
      EXPECT_EQ(probed.code(), StatusCode::kInvalidArgument) << probed.ToString();
    } else {
      EXPECT_TRUE(probed.ok()) << probed.ToString();  // positive control
    }
  }
}

// A region of this process's memory (a sealed memfd mapped here) handed over through the socket:
// its handle redeems that very file, with the base, length and connection sent and this process
// as the sender, only as a region; redeemed as a process's memory it is not taken, and stays.
TEST_F(MemorySocketTest, ARegionsHandleRedeemsItsFileOnlyAsARegion) {
  Result<std::unique_ptr<MemorySocket>> socket =
      MemorySocket::Start(path_, &handles_, kGateProgram);
  ASSERT_TRUE(socket.ok()) << socket.status().ToString();
  constexpr size_t kBytes = 3 * 4096 + 100;
  Result<transport::SharedMemoryFile> file = transport::SharedMemoryFile::Create(kBytes);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  auto* mapped = static_cast<uint8_t*>(file->address());
  for (size_t i = 0; i < kBytes; ++i) mapped[i] = static_cast<uint8_t>(i * 7 + 1);
  const uint64_t base = reinterpret_cast<uintptr_t>(mapped);
  Result<Bytes32> handle = transport::HandOverRegion(ThisProcessAt(path_), base, kBytes,
                                                     file->descriptor(), InTenSeconds());
  ASSERT_TRUE(handle.ok()) << handle.status().ToString();
  EXPECT_FALSE(handles_.Redeem(*handle).has_value());  // not a process's memory
  EXPECT_EQ(handles_.pending(), 1u);                   // and not spent
  std::optional<HandedOverMemory> handed = handles_.Redeem(*handle, HandedOverKind::kRegion);
  ASSERT_TRUE(handed.has_value());  // positive control
  EXPECT_EQ(handles_.pending(), 0u);
  EXPECT_FALSE(handed->memory.has_value());
  ASSERT_TRUE(handed->region.has_value());
  EXPECT_EQ(handed->region->base, base);
  EXPECT_EQ(handed->region->file.length(), kBytes);
  EXPECT_EQ(handed->sender_pid, static_cast<uint32_t>(getpid()));
  EXPECT_EQ(handed->sender_uid, static_cast<uint32_t>(geteuid()));
  EXPECT_EQ(handed->connection.client, SomeConnection().client);
  EXPECT_EQ(handed->connection.server, SomeConnection().server);
  std::vector<uint8_t> seen(kBytes);
  ASSERT_TRUE(handed->region->file.Read(0, seen).ok());
  EXPECT_TRUE(std::equal(seen.begin(), seen.end(), mapped));
  // Written through the file, seen here: this process's memory, not a copy.
  const std::array<uint8_t, 3> fresh = {0xab, 0xcd, 0xef};
  ASSERT_TRUE(handed->region->file.Write(kBytes - 3, fresh).ok());
  EXPECT_TRUE(std::equal(fresh.begin(), fresh.end(), mapped + kBytes - 3));
}

// A region file that could shrink or grow (a memfd never sealed), or that is shorter than the
// region, is refused with the reason and issues nothing; a sealed one of the region's length is
// taken (positive control).
TEST_F(MemorySocketTest, AnUnsealedOrShortRegionFileIsRefusedAndIssuesNothing) {
  Result<std::unique_ptr<MemorySocket>> socket =
      MemorySocket::Start(path_, &handles_, kGateProgram);
  ASSERT_TRUE(socket.ok()) << socket.status().ToString();
  constexpr size_t kBytes = 2 * 4096;
  UniqueFd unsealed(memfd_create("kvault-unsealed", MFD_CLOEXEC));
  ASSERT_GE(unsealed.get(), 0) << std::strerror(errno);
  ASSERT_EQ(ftruncate(unsealed.get(), kBytes), 0);
  void* at = mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_SHARED, unsealed.get(), 0);
  ASSERT_NE(at, MAP_FAILED) << std::strerror(errno);
  const Status refused =
      transport::HandOverRegion(ThisProcessAt(path_), reinterpret_cast<uintptr_t>(at), kBytes,
                                unsealed.get(), InTenSeconds())
          .status();
  munmap(at, kBytes);
  EXPECT_EQ(refused.code(), StatusCode::kInvalidArgument) << refused.ToString();
  EXPECT_NE(refused.message().find("sealed"), std::string::npos) << refused.ToString();
  EXPECT_EQ(handles_.pending(), 0u);

  Result<transport::SharedMemoryFile> sealed = transport::SharedMemoryFile::Create(kBytes);
  ASSERT_TRUE(sealed.ok()) << sealed.status().ToString();
  const uint64_t base = reinterpret_cast<uintptr_t>(sealed->address());
  const Status too_short = transport::HandOverRegion(ThisProcessAt(path_), base, kBytes + 1,
                                                     sealed->descriptor(), InTenSeconds())
                               .status();
  EXPECT_EQ(too_short.code(), StatusCode::kInvalidArgument) << too_short.ToString();
  EXPECT_NE(too_short.message().find("fewer than"), std::string::npos) << too_short.ToString();
  EXPECT_EQ(handles_.pending(), 0u);
  Result<Bytes32> handle = transport::HandOverRegion(ThisProcessAt(path_), base, kBytes,
                                                     sealed->descriptor(), InTenSeconds());
  ASSERT_TRUE(handle.ok()) << handle.status().ToString();
  EXPECT_TRUE(handles_.Redeem(*handle, HandedOverKind::kRegion).has_value());
}

// The client hands over only to the listener the daemon announced: at the right path, a
// listener with another pid gets nothing (and issues nothing), while the same child expecting
// this process is served.
TEST_F(MemorySocketTest, AListenerThatIsNotTheAnnouncedDaemonGetsNothing) {
  Result<std::unique_ptr<MemorySocket>> socket =
      MemorySocket::Start(path_, &handles_, kGateProgram);
  ASSERT_TRUE(socket.ok()) << socket.status().ToString();
  {
    HandingChild wrong(path_, /*server_pid=*/1);
    EXPECT_FALSE(wrong.ok());
  }
  EXPECT_EQ(handles_.pending(), 0u);
  HandingChild right(path_);  // positive control
  EXPECT_TRUE(right.ok());
  EXPECT_EQ(handles_.pending(), 1u);
}

TEST_F(MemorySocketTest, AStaleSocketFileIsReplacedALiveOneOrAFileIsNot) {
  {  // A socket file nobody listens at any more, as a killed daemon leaves it.
    UniqueFd stale(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    const sockaddr_un addr = AddressOf(path_);
    ASSERT_EQ(bind(stale.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
  }
  Result<std::unique_ptr<MemorySocket>> first = MemorySocket::Start(path_, &handles_, kGateProgram);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  const Status live = MemorySocket::Start(path_, &handles_, kGateProgram).status();
  EXPECT_EQ(live.code(), StatusCode::kUnavailable) << live.ToString();
  EXPECT_NE(live.message().find("another server"), std::string::npos) << live.ToString();
  HandingChild child(path_);  // the first still serves
  EXPECT_TRUE(child.ok());
  first->reset();

  std::ofstream(path_) << "a file";
  const Status not_socket = MemorySocket::Start(path_, &handles_, kGateProgram).status();
  EXPECT_EQ(not_socket.code(), StatusCode::kInvalidArgument) << not_socket.ToString();
  std::string content;
  std::getline(std::ifstream(path_), content);
  EXPECT_EQ(content, "a file");  // left alone
  unlink(path_.c_str());
  EXPECT_EQ(MemorySocket::Start("relative.sock", &handles_, kGateProgram).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(
      MemorySocket::Start("/tmp/" + std::string(120, 'x'), &handles_, kGateProgram).status().code(),
      StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvault::server
