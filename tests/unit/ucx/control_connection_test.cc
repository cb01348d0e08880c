// Whose memory a key names: HoldsConnection on real loopback sockets (this process holds its
// end, a child that closed its copies does not, a missing process does not, nor does anyone a
// connection this network namespace does not have), TcpEnd's IPv4-mapped addresses, and
// WithoutSharedSegments on keys built in UCX 1.13's layout (posix and sysv entries dropped with
// their md_map bits, the rest kept in order).
#include "kvault/transport/ucx/control_connection.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <ucp/api/ucp.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "ucx/shared_segment_hold.h"

namespace kvault::transport {
namespace {

TcpEnd EndOf(const sockaddr_in& a) {
  std::array<uint8_t, 4> bytes;
  std::memcpy(bytes.data(), &a.sin_addr.s_addr, 4);
  return TcpEnd::V4(bytes, ntohs(a.sin_port));
}

// A loopback connection made in this process: the listener's accepted end (the "server") and
// the connecting end (the "client").
struct Loopback {
  Loopback() {
    listener = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t n = sizeof a;
    EXPECT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(listen(listener, 1), 0);
    EXPECT_EQ(getsockname(listener, reinterpret_cast<sockaddr*>(&a), &n), 0);
    client = socket(AF_INET, SOCK_STREAM, 0);
    EXPECT_EQ(connect(client, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    server = accept(listener, nullptr, nullptr);
    sockaddr_in local{}, remote{};
    n = sizeof local;
    EXPECT_EQ(getsockname(server, reinterpret_cast<sockaddr*>(&local), &n), 0);
    n = sizeof remote;
    EXPECT_EQ(getpeername(server, reinterpret_cast<sockaddr*>(&remote), &n), 0);
    connection = {EndOf(local), EndOf(remote)};
  }
  ~Loopback() {
    close(server);
    close(client);
    close(listener);
  }
  int listener = -1, client = -1, server = -1;
  ControlConnection connection;
};

// A child process that closed its copies of the loopback's sockets (with `own_network`, in a
// network namespace of its own, root only) and waits to be killed. ok(): the namespace was made.
class IdleChild {
 public:
  IdleChild(const Loopback& loop, bool own_network) {
    int ready[2];
    if (pipe(ready) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      close(loop.client);
      close(loop.server);
      close(loop.listener);
      char ok = !own_network || unshare(CLONE_NEWNET) == 0 ? 1 : 0;
      (void)!write(ready[1], &ok, 1);
      pause();
      _exit(0);
    }
    char ok = 0;
    ok_ = read(ready[0], &ok, 1) == 1 && ok == 1;
    close(ready[0]);
    close(ready[1]);
  }
  ~IdleChild() { Reap(); }
  void Reap() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -pid_;  // remembered, for asking about a process that is gone
  }
  uint32_t pid() const { return static_cast<uint32_t>(pid_ < 0 ? -pid_ : pid_); }
  bool ok() const { return ok_; }

 private:
  pid_t pid_ = 0;
  bool ok_ = false;
};

TEST(HoldsConnectionTest, OnlyTheProcessHoldingTheClientEndHoldsIt) {
  Loopback loop;
  EXPECT_EQ(HoldsConnection(static_cast<uint32_t>(getpid()), loop.connection), Holder::kYes);
  // A child that closed its copies shares the network namespace (the socket is in its table)
  // but holds no descriptor of it.
  IdleChild child(loop, /*own_network=*/false);
  ASSERT_TRUE(child.ok());
  EXPECT_EQ(HoldsConnection(child.pid(), loop.connection), Holder::kNo);
  child.Reap();
  EXPECT_EQ(HoldsConnection(child.pid(), loop.connection), Holder::kNo)
      << "a process that is gone holds nothing";
  EXPECT_EQ(HoldsConnection(0, loop.connection), Holder::kNo);
}

TEST(HoldsConnectionTest, AConnectionTheNamespaceDoesNotHaveIsHeldByNoOne) {
  Loopback loop;
  // Positive control: swapped ends describe the server's socket, which this process holds too.
  const ControlConnection swapped{loop.connection.client, loop.connection.server};
  EXPECT_EQ(HoldsConnection(static_cast<uint32_t>(getpid()), swapped), Holder::kYes);
  // A connection this network namespace does not have (a port nobody uses): closed, so no.
  ControlConnection nowhere = loop.connection;
  nowhere.client.port = static_cast<uint16_t>(loop.connection.client.port ^ 0x5555);
  EXPECT_EQ(HoldsConnection(static_cast<uint32_t>(getpid()), nowhere), Holder::kNo);
}

TEST(HoldsConnectionTest, AProcessOfAnotherNetworkNamespaceCannotBeTold) {
  Loopback loop;
  // A child in a network namespace of its own: its TCP table cannot have the connection, which
  // may reach it translated, so the answer is "unknown", not "no".
  IdleChild child(loop, /*own_network=*/true);
  if (!child.ok()) GTEST_SKIP() << "cannot create a network namespace here (needs root)";
  EXPECT_EQ(HoldsConnection(child.pid(), loop.connection), Holder::kUnknown);
}

TEST(HoldsConnectionTest, IPv6LoopbackConnectionsAreFoundInTcp6) {
  const int listener = socket(AF_INET6, SOCK_STREAM, 0);
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  socklen_t n = sizeof a;
  if (listener < 0 || bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    if (listener >= 0) close(listener);
    GTEST_SKIP() << "no IPv6 loopback here";
  }
  ASSERT_EQ(listen(listener, 1), 0);
  ASSERT_EQ(getsockname(listener, reinterpret_cast<sockaddr*>(&a), &n), 0);
  const int client = socket(AF_INET6, SOCK_STREAM, 0);
  ASSERT_EQ(connect(client, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  const int server = accept(listener, nullptr, nullptr);
  sockaddr_in6 local{}, remote{};
  n = sizeof local;
  ASSERT_EQ(getsockname(server, reinterpret_cast<sockaddr*>(&local), &n), 0);
  n = sizeof remote;
  ASSERT_EQ(getpeername(server, reinterpret_cast<sockaddr*>(&remote), &n), 0);
  auto end = [](const sockaddr_in6& s) {
    std::array<uint8_t, 16> bytes;
    std::memcpy(bytes.data(), &s.sin6_addr, 16);
    return TcpEnd::V6(bytes, ntohs(s.sin6_port));
  };
  const ControlConnection connection{end(local), end(remote)};
  EXPECT_TRUE(connection.client.ipv6);
  EXPECT_EQ(HoldsConnection(static_cast<uint32_t>(getpid()), connection), Holder::kYes);
  ControlConnection other = connection;
  other.client.port = static_cast<uint16_t>(other.client.port ^ 0x5555);
  EXPECT_EQ(HoldsConnection(static_cast<uint32_t>(getpid()), other), Holder::kNo);
  close(server);
  close(client);
  close(listener);
}

TEST(TcpEndTest, IPv4MappedAddressesAreIPv4) {
  const std::array<uint8_t, 16> mapped = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1};
  EXPECT_EQ(TcpEnd::V6(mapped, 80), TcpEnd::V4({127, 0, 0, 1}, 80));
  std::array<uint8_t, 16> loopback6{};
  loopback6[15] = 1;
  const TcpEnd v6 = TcpEnd::V6(loopback6, 80);
  EXPECT_TRUE(v6.ipv6);
  EXPECT_NE(v6, TcpEnd::V4({0, 0, 0, 1}, 80));
}

std::vector<uint8_t> Entry(size_t size, uint8_t fill) {
  std::vector<uint8_t> e(1 + size, fill);
  e[0] = static_cast<uint8_t>(size);
  return e;
}

TEST(WithoutSharedSegmentsTest, DropsPosixAndSysvEntriesAndTheirBits) {
  unsigned major = 0, minor = 0, release = 0;
  ucp_get_version(&major, &minor, &release);
  // md 0: posix (24 bytes), md 2: an empty entry (e.g. cma), md 5: sysv (12 bytes),
  // md 7: posix in a pid namespace (32 bytes), md 9: another transport's 8 bytes; then a
  // device-distance trailer.
  const uint64_t md_map = (1u << 0) | (1u << 2) | (1u << 5) | (1u << 7) | (1u << 9);
  std::vector<uint8_t> key(sizeof md_map);
  std::memcpy(key.data(), &md_map, sizeof md_map);
  key.push_back(0);  // host memory
  for (const auto& e :
       {Entry(24, 0xA1), Entry(0, 0), Entry(12, 0xB2), Entry(32, 0xC3), Entry(8, 0xD4)}) {
    key.insert(key.end(), e.begin(), e.end());
  }
  const std::vector<uint8_t> trailer = {1, 7, 8, 9};
  key.insert(key.end(), trailer.begin(), trailer.end());

  const std::vector<uint8_t> out = WithoutSharedSegments(key);
  if (!(major == 1 && minor == 13)) {
    EXPECT_EQ(out, key) << "other UCX versions keep the key";
    return;
  }
  uint64_t kept = 0;
  std::memcpy(&kept, out.data(), sizeof kept);
  EXPECT_EQ(kept, (uint64_t{1} << 2) | (uint64_t{1} << 9));
  std::vector<uint8_t> want(out.begin(), out.begin() + 9);
  for (const auto& e : {Entry(0, 0), Entry(8, 0xD4)}) want.insert(want.end(), e.begin(), e.end());
  want.insert(want.end(), trailer.begin(), trailer.end());
  EXPECT_EQ(out, want);
  // Positive control: a key without shared segments comes back unchanged.
  EXPECT_EQ(WithoutSharedSegments(out), out);
}

// A posix entry that names its segment by a path (UCX_POSIX_USE_PROC_LINK=n) is longer than the
// fixed sizes; it is dropped too (UCX would open whatever path it names), with and without the
// pid-namespace field. Positive control: an entry of another transport of the same length stays.
TEST(WithoutSharedSegmentsTest, DropsPosixEntriesNamedByAPath) {
  unsigned major = 0, minor = 0, release = 0;
  ucp_get_version(&major, &minor, &release);
  if (!(major == 1 && minor == 13)) GTEST_SKIP() << "the layout is UCX 1.13's";
  const std::string dir = "/tmp/some-fifo";
  auto path_entry = [&](size_t fixed) {
    std::vector<uint8_t> e(1 + fixed, 0);
    e[1] = 0x11;  // seg_id without the procfs flag (bit 63)
    e.insert(e.end(), dir.begin(), dir.end());
    e.push_back(0);
    e[0] = static_cast<uint8_t>(e.size() - 1);
    return e;
  };
  // A relative, non-printable path, and a /proc-named entry padded past its size: dropped too.
  std::vector<uint8_t> relative = Entry(24, 0);
  for (int c : {0x73, 0x65, 0x67, 0x80, 0}) relative.push_back(static_cast<uint8_t>(c));
  relative[0] = static_cast<uint8_t>(relative.size() - 1);
  std::vector<uint8_t> padded = Entry(40, 0x11);
  padded[8] = 0x80;  // the procfs flag, bit 63 of the little-endian seg_id
  const uint64_t md_map = (1u << 0) | (1u << 3) | (1u << 4) | (1u << 5) | (1u << 6);
  std::vector<uint8_t> key(sizeof md_map);
  std::memcpy(key.data(), &md_map, sizeof md_map);
  key.push_back(0);
  const std::vector<uint8_t> other = Entry(24 + dir.size() + 1, 0x41);  // not a path: kept
  for (const auto& e : {path_entry(24), path_entry(32), relative, padded, other}) {
    key.insert(key.end(), e.begin(), e.end());
  }
  const std::vector<uint8_t> out = WithoutSharedSegments(key);
  uint64_t kept = 0;
  std::memcpy(&kept, out.data(), sizeof kept);
  EXPECT_EQ(kept, uint64_t{1} << 6);
  std::vector<uint8_t> want(out.begin(), out.begin() + 9);
  want.insert(want.end(), other.begin(), other.end());
  EXPECT_EQ(out, want);
}

}  // namespace
}  // namespace kvault::transport
