// MemorySocket: a client on this host hands its memory over through the real Unix socket and the
// handle it gets redeems exactly that memory, with the probe it sent; a request with anything
// but a process's memory file, or no descriptor, or bytes that are not a request, is refused
// with a reason and issues nothing; silent clients delay no one, and one user's cannot fill the
// socket; the socket file is replaced when stale, refused when live or not a socket, and removed
// on shutdown. Each refusal beside a positive control.
#include "control/memory_socket.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "kvault/transport/local/memory_handover.h"
#include "kvault/transport/local/process_memory.h"
#include "kvault/transport/local/shared_memory_file.h"
#include "sleeping_child.h"
#include "stalling_fuse.h"

namespace kvault::server {
namespace {

// The memory gate is kvaultd itself (`kvaultd --memory-gate`), built beside this test.
const std::string kGateProgram = std::string(KVAULT_BIN_DIR) + "/kvaultd";

using transport::Bytes32;

const uint64_t kValue = 0x0102030405060708;

std::string SocketPath(const std::string& name) {
  return "/tmp/kvault_msock_" + std::to_string(getpid()) + "_" + name;
}

sockaddr_un AddressOf(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

// The control connection the children of these tests name: any ends will do here (the service
// compares them, not the socket).
transport::ControlConnection SomeConnection() {
  return {transport::TcpEnd::V4({127, 0, 0, 1}, 7400), transport::TcpEnd::V4({127, 0, 0, 1}, 5555)};
}

// A child process that hands its memory over at `path`, to a listener it expects to be this
// process (or `server_pid`), and reports the handle (or its failure) through a pipe; it then
// waits to be killed, so the memory stays live.
class HandingChild {
 public:
  explicit HandingChild(const std::string& path, pid_t server_pid = getpid()) {
    int fds[2];
    EXPECT_EQ(pipe(fds), 0);
    const auto start = std::chrono::steady_clock::now();
    pid_ = fork();
    if (pid_ == 0) {
      close(fds[0]);
      // Read back by whoever redeems the handle: it stays, as the child does.
      static transport::HandOverProbe probe{};
      const transport::HandOverTarget target{path, static_cast<uint32_t>(server_pid),
                                             static_cast<uint32_t>(geteuid()), SomeConnection()};
      Result<Bytes32> handle = transport::HandOverOwnMemory(
          target, &probe, std::chrono::steady_clock::now() + std::chrono::seconds(10));
      std::array<uint8_t, 33> out{};
      out[0] = handle.ok() ? 1 : 0;
      if (handle.ok()) std::copy(handle->begin(), handle->end(), out.begin() + 1);
      (void)!write(fds[1], out.data(), out.size());
      for (;;) pause();
    }
    close(fds[1]);
    std::array<uint8_t, 33> in{};
    EXPECT_EQ(read(fds[0], in.data(), in.size()), 33);
    close(fds[0]);
    ok_ = in[0] == 1;
    std::copy(in.begin() + 1, in.end(), handle_.begin());
    took_ = std::chrono::steady_clock::now() - start;
  }
  ~HandingChild() {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  bool ok() const { return ok_; }
  const Bytes32& handle() const { return handle_; }
  // From fork to the child's report.
  std::chrono::steady_clock::duration took() const { return took_; }

 private:
  pid_t pid_ = -1;
  bool ok_ = false;
  Bytes32 handle_{};
  std::chrono::steady_clock::duration took_{};
};

// Sends `bytes` with `fd` attached (when >= 0) as a raw client and returns the decoded reply.
Result<transport::HandOverReply> RawHandOver(const std::string& path,
                                             std::span<const uint8_t> bytes, int fd) {
  UniqueFd sock(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  const sockaddr_un addr = AddressOf(path);
  if (connect(sock.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    return Status::Unavailable("connect");
  }
  if (transport::SendWithDescriptor(sock.get(), bytes, fd) != static_cast<ssize_t>(bytes.size())) {
    return Status::Unavailable("sendmsg");
  }
  std::vector<uint8_t> reply(1024);
  const ssize_t n = recv(sock.get(), reply.data(), reply.size(), 0);
  reply.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return transport::DecodeHandOverReply(reply);
}

// Whether a child's hand-over at `path` goes through within about 5 s (a gate may be starting).
bool EventuallyHandedOver(const std::string& path) {
  for (int attempt = 0; attempt < 100; ++attempt) {
    HandingChild child(path);
    if (child.ok()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

// This process, handing over at `path` to a listener in this same process.
transport::HandOverTarget ThisProcessAt(const std::string& path) {
  return {.socket_path = path,
          .server_pid = static_cast<uint32_t>(getpid()),
          .server_uid = static_cast<uint32_t>(geteuid()),
          .connection = SomeConnection()};
}

transport::HandOverDeadline InTenSeconds() {
  return std::chrono::steady_clock::now() + std::chrono::seconds(10);
}

class MemorySocketTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = SocketPath(::testing::UnitTest::GetInstance()->current_test_info()->name());
    unlink(path_.c_str());
  }
  void TearDown() override { unlink(path_.c_str()); }

  std::string path_;
  MemoryHandles handles_;
};

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

// A packet with no bytes can still carry descriptors, and a request may carry many: they are
// all taken and closed (in the gate, none leaks), and a reply says why.
TEST_F(MemorySocketTest, AnEmptyPacketsDescriptorsAreClosedNotLeaked) {
  Result<std::unique_ptr<MemorySocket>> socket =
      MemorySocket::Start(path_, &handles_, kGateProgram);
  ASSERT_TRUE(socket.ok()) << socket.status().ToString();
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
  std::error_code ec;
  const std::filesystem::path sent =
      std::filesystem::read_symlink("/proc/self/fd/" + std::to_string(fds[0]), ec);
  ASSERT_FALSE(ec) << ec.message();
  // Descriptors of the pipe open here and in the gate (where the descriptors clients send go).
  const std::string gate_fds = "/proc/" + std::to_string((*socket)->gate_pid()) + "/fd";
  auto copies_open = [&] {
    size_t copies = 0;
    for (const char* dir : {"/proc/self/fd", gate_fds.c_str()}) {
      for (const auto& entry : std::filesystem::directory_iterator(dir)) {
        std::error_code unreadable;
        copies += std::filesystem::read_symlink(entry.path(), unreadable) == sent ? 1 : 0;
      }
    }
    return copies;
  };
  for (int i = 0; i < 20; ++i) {
    Result<transport::HandOverReply> reply = RawHandOver(path_, {}, fds[0]);
    ASSERT_TRUE(reply.ok()) << reply.status().ToString();
    EXPECT_EQ(reply->status, transport::WireStatus::kInvalidArgument) << reply->message;
  }
  {  // A well-formed request carrying 40 copies: refused, every copy taken (none cut).
    transport::HandOverRequest request;
    request.probe_address = 0x1000;
    request.client_end = SomeConnection().client;
    request.server_end = SomeConnection().server;
    const auto bytes = transport::EncodeHandOverRequest(request);
    UniqueFd sock(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    const sockaddr_un addr = AddressOf(path_);
    ASSERT_EQ(connect(sock.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
    constexpr size_t kCopies = 40;
    const std::vector<int> copies(kCopies, fds[0]);
    alignas(cmsghdr) char control[CMSG_SPACE(kCopies * sizeof(int))] = {};
    iovec io{const_cast<uint8_t*>(bytes.data()), bytes.size()};
    msghdr msg{};
    msg.msg_iov = &io;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(kCopies * sizeof(int));
    std::memcpy(CMSG_DATA(c), copies.data(), kCopies * sizeof(int));
    ASSERT_EQ(sendmsg(sock.get(), &msg, 0), static_cast<ssize_t>(bytes.size()));
    std::vector<uint8_t> reply(1024);
    const ssize_t n = recv(sock.get(), reply.data(), reply.size(), 0);
    reply.resize(n > 0 ? static_cast<size_t>(n) : 0);
    Result<transport::HandOverReply> decoded = transport::DecodeHandOverReply(reply);
    ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
    EXPECT_NE(decoded->message.find("exactly one descriptor, not 40"), std::string::npos)
        << decoded->message;
  }
  EXPECT_GE(copies_open(), 2u);  // both ends here, at least
  close(fds[0]);
  close(fds[1]);
  size_t left = copies_open();
  for (int i = 0; i < 500 && left != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    left = copies_open();
  }
  EXPECT_EQ(left, 0u) << "descriptors of the pipe still open";
  HandingChild child(path_);  // positive control: still serving
  EXPECT_TRUE(child.ok());
}

// A descriptor whose close never returns (a file of a FUSE file system its sender serves and
// never answers) is refused, and its close waits in the gate: this process never holds it, the
// next client's memory is handed over all the same (positive control), and stopping the socket
// takes about a second (the gate is killed and not waited for), not forever.
TEST_F(MemorySocketTest, ADescriptorWhoseCloseNeverReturnsStallsOnlyTheGate) {
  StallingFuse fuse;
  if (const std::string why = fuse.Start(); !why.empty()) GTEST_SKIP() << why;
  Result<std::unique_ptr<MemorySocket>> socket =
      MemorySocket::Start(path_, &handles_, kGateProgram);
  ASSERT_TRUE(socket.ok()) << socket.status().ToString();
  UniqueFd file(fuse.OpenFile());
  ASSERT_GE(file.get(), 0) << std::strerror(errno);
  transport::HandOverRequest request;
  request.probe_address = 0x1000;
  request.client_end = SomeConnection().client;
  request.server_end = SomeConnection().server;
  Result<transport::HandOverReply> reply =
      RawHandOver(path_, transport::EncodeHandOverRequest(request), file.get());
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->status, transport::WireStatus::kInvalidArgument) << reply->message;
  EXPECT_NE(reply->message.find("not a process's memory file"), std::string::npos);
  for (int i = 0; i < 500 && fuse.stalled() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(fuse.stalled(), 1);  // the gate's close waits for an answer
  HandingChild child(path_);
  EXPECT_TRUE(child.ok());
  EXPECT_EQ(handles_.pending(), 1u);
  const pid_t gate = (*socket)->gate_pid();
  const auto start = std::chrono::steady_clock::now();
  socket->reset();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
  // The gate, killed, finishes dying once the file system is gone: reaped here.
  fuse.Abort();
  for (int i = 0; i < 500 && waitpid(gate, nullptr, WNOHANG) == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

// A region whose file is one of a FUSE file system that never answers is refused as not a memfd
// (F_GET_SEALS asks no file system), its close waits in the gate, and a sealed region handed
// over right after gets its handle within seconds (positive control).
TEST_F(MemorySocketTest, ARegionFileOfAStallingFileSystemIsRefusedWithoutHangingTheGate) {
  StallingFuse fuse;
  if (const std::string why = fuse.Start(); !why.empty()) GTEST_SKIP() << why;
  Result<std::unique_ptr<MemorySocket>> socket =
      MemorySocket::Start(path_, &handles_, kGateProgram);
  ASSERT_TRUE(socket.ok()) << socket.status().ToString();
  constexpr size_t kBytes = 4096;
  Result<transport::SharedMemoryFile> sealed = transport::SharedMemoryFile::Create(kBytes);
  ASSERT_TRUE(sealed.ok()) << sealed.status().ToString();
  const uint64_t base = reinterpret_cast<uintptr_t>(sealed->address());
  UniqueFd file(fuse.OpenFile());
  ASSERT_GE(file.get(), 0) << std::strerror(errno);
  const auto start = std::chrono::steady_clock::now();
  const Status refused =
      transport::HandOverRegion(ThisProcessAt(path_), base, kBytes, file.get(), InTenSeconds())
          .status();
  EXPECT_EQ(refused.code(), StatusCode::kInvalidArgument) << refused.ToString();
  EXPECT_NE(refused.message().find("not a memfd"), std::string::npos) << refused.ToString();
  EXPECT_EQ(handles_.pending(), 0u);
  for (int i = 0; i < 500 && fuse.stalled() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(fuse.stalled(), 1);  // the gate's close waits for an answer
  Result<Bytes32> handle = transport::HandOverRegion(ThisProcessAt(path_), base, kBytes,
                                                     sealed->descriptor(), InTenSeconds());
  ASSERT_TRUE(handle.ok()) << handle.status().ToString();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  std::optional<HandedOverMemory> handed = handles_.Redeem(*handle, HandedOverKind::kRegion);
  ASSERT_TRUE(handed.has_value());
  ASSERT_TRUE(handed->region.has_value());
  EXPECT_EQ(handed->region->base, base);
  const pid_t gate = (*socket)->gate_pid();
  socket->reset();
  // The gate, killed, finishes dying once the file system is gone: reaped here.
  fuse.Abort();
  for (int i = 0; i < 500 && waitpid(gate, nullptr, WNOHANG) == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

// A gate that dies is started again: a second later hand-overs go through once more.
TEST_F(MemorySocketTest, AGateThatDiesIsStartedAgain) {
  Result<std::unique_ptr<MemorySocket>> socket =
      MemorySocket::Start(path_, &handles_, kGateProgram);
  ASSERT_TRUE(socket.ok()) << socket.status().ToString();
  const pid_t first = (*socket)->gate_pid();
  ASSERT_GT(first, 0);
  ASSERT_EQ(kill(first, SIGKILL), 0);
  EXPECT_TRUE(EventuallyHandedOver(path_));
  EXPECT_GT((*socket)->gate_pid(), 0);
  EXPECT_NE((*socket)->gate_pid(), first);
}

// A gate that falls silent (here stopped with SIGSTOP; in earnest, stuck releasing what a client
// sent) is killed and replaced after kGateSilence: hand-overs go through again, to a new gate.
TEST_F(MemorySocketTest, AGateThatFallsSilentIsReplaced) {
  Result<std::unique_ptr<MemorySocket>> socket =
      MemorySocket::Start(path_, &handles_, kGateProgram);
  ASSERT_TRUE(socket.ok()) << socket.status().ToString();
  const pid_t first = (*socket)->gate_pid();
  ASSERT_GT(first, 0);
  ASSERT_EQ(kill(first, SIGSTOP), 0);
  const auto until = std::chrono::steady_clock::now() + kGateSilence + std::chrono::seconds(10);
  while ((*socket)->gate_pid() == first && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_NE((*socket)->gate_pid(), first);
  EXPECT_TRUE(EventuallyHandedOver(path_));
}

// Connections that say nothing hold up no one: a client's hand-over goes through while they
// wait (the io timeout is far beyond the client's deadline). One user cannot hold more than
// kMaxPendingPerUser of them: the next of that user is refused at once, and once they are gone
// that user is served again.
TEST_F(MemorySocketTest, SilentClientsDelayNoOneAndOneUserCannotFillTheSocket) {
  Result<std::unique_ptr<MemorySocket>> server =
      MemorySocket::Start(path_, &handles_, kGateProgram, std::chrono::seconds(60));
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  const sockaddr_un addr = AddressOf(path_);
  std::vector<UniqueFd> silent;
  for (int i = 0; i < 7; ++i) {
    silent.emplace_back(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    ASSERT_EQ(connect(silent.back().get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr),
              0);
  }
  {
    HandingChild child(path_);  // the eighth of this user
    EXPECT_TRUE(child.ok());
  }
  silent.emplace_back(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  ASSERT_EQ(connect(silent.back().get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
  {
    HandingChild refused(path_);  // a ninth: refused at once, not after 60 s (nor its 10 s)
    EXPECT_FALSE(refused.ok());
    EXPECT_LT(refused.took(), std::chrono::seconds(5));
  }
  silent.clear();
  EXPECT_TRUE(EventuallyHandedOver(path_));
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
