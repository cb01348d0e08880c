// TransferEngine against a client in another process that sends a forged remote key: a copy of its
// genuine key whose posix entry names another descriptor of its own. The server must refuse such a
// key before UCX maps what it names, with a clear status for that batch, and go on serving the
// same client's genuine key. The test binary re-executes itself as the client (fork + exec, so the
// child starts UCX from a clean slate).
//
// Child protocol over a socketpair: the child sends its worker address, its genuine key, the
// forged key and the genuine region's address and length, then waits for any message.

#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <ucp/api/ucp.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "kvault/common/little_endian.h"
#include "kvault/transport/ucx/transfer_engine.h"
#include "kvault/transport/ucx/ucx_agent.h"
#include "kvault/transport/ucx/ucx_remote_key.h"
#include "ucx/envelope.h"
#include "ucx_test_util.h"

namespace kvault::transport {
namespace {

using testing::FillPattern;
using testing::FirstMismatch;
using testing::RecvMessage;
using testing::SendMessage;
using testing::WaitBatch;
using Clock = std::chrono::steady_clock;

constexpr const char* kChildFlag = "--forged-key-child=";
// The region the forged key claims, in the client's address space (never used by the client).
constexpr uint64_t kForgedBase = 0x100000000;
constexpr size_t kForgedBytes = 64 * 1024;

// ---- the child (client) side ------------------------------------------------------------------

// The descriptor the forged key names: "file:<path>" opens `path` read-only; "sealed" makes a
// memfd of kForgedBytes, opened read-write but sealed against writes (F_SEAL_WRITE, and
// F_SEAL_SEAL), which no process may map writable. -1 on failure (reported).
int ForgedDescriptor(const std::string& what) {
  if (what.rfind("file:", 0) == 0) {
    const int fd = open(what.c_str() + 5, O_RDONLY | O_CLOEXEC);
    if (fd < 0) std::perror("child: open the file read-only");
    return fd;
  }
  if (what == "sealed") {
    const int fd = memfd_create("forged-key-sealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0 || ftruncate(fd, kForgedBytes) != 0 ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
      std::perror("child: sealed memfd");
      return -1;
    }
    return fd;
  }
  std::fprintf(stderr, "child: unknown descriptor kind %s\n", what.c_str());
  return -1;
}

// spec: "<fd>:<drop to nobody 0|1>:<what>" (what: as ForgedDescriptor).
int RunChild(const std::string& spec) {
  const size_t a = spec.find(':');
  const int fd = std::stoi(spec.substr(0, a));
  const bool drop = spec.substr(a + 1, 1) == "1";
  const std::string what = spec.substr(a + 3);
  if (drop && (setgroups(0, nullptr) != 0 || setresgid(65534, 65534, 65534) != 0 ||
               setresuid(65534, 65534, 65534) != 0)) {
    std::perror("child: drop to nobody");
    return 2;
  }
  const int named = ForgedDescriptor(what);
  if (named < 0) return 3;
  UcxAgentOptions options;
  options.context.transports = "posix,cma";
  options.context.name = "forged-key-client";
  Result<std::unique_ptr<UcxAgent>> agent = UcxAgent::Create(options);
  if (!agent.ok()) return 4;
  int rc = 0;
  {
    Result<RegisteredRegion> region = (*agent)->AllocateMemory(kForgedBytes);
    if (!region.ok()) return 5;
    Result<std::span<const uint8_t>> payload = Open(EnvelopeKind::kRemoteKey, region->remote_key);
    if (!payload.ok()) return 6;
    std::vector<uint8_t> forged(payload->begin(), payload->end());
    StoreLe64(forged.data(), kForgedBase);
    StoreLe64(forged.data() + 8, kForgedBytes);
    const uint64_t md_map = LoadLe64(forged.data() + kRemoteKeyHeaderBytes);
    size_t at = kRemoteKeyHeaderBytes + 9;  // md_map, memory type
    bool forged_posix = false;
    for (int i = 0; i < __builtin_popcountll(md_map); ++i) {
      const size_t size = forged[at];
      uint8_t* entry = forged.data() + at + 1;
      if (size == 24 || size == 32) {  // posix: seg_id (flags | fd << 30 | pid), address, length
        const uint64_t flags = LoadLe64(entry) & (uint64_t{0xF} << 60);
        StoreLe64(entry,
                  flags | (static_cast<uint64_t>(named) << 30) | static_cast<uint64_t>(getpid()));
        StoreLe64(entry + 8, kForgedBase);
        StoreLe64(entry + 16, kForgedBytes);
        forged_posix = true;
      }
      at += 1 + size;
    }
    Result<std::vector<uint8_t>> sealed = Seal(EnvelopeKind::kRemoteKey, forged);
    if (!forged_posix || !sealed.ok()) return 7;
    std::vector<uint8_t> where(16);
    StoreLe64(where.data(), region->remote_address());
    StoreLe64(where.data() + 8, kForgedBytes);
    std::vector<uint8_t> done;
    if (!SendMessage(fd, (*agent)->worker_address()) || !SendMessage(fd, region->remote_key) ||
        !SendMessage(fd, *sealed) || !SendMessage(fd, where) || !RecvMessage(fd, done)) {
      rc = 8;
    }
  }
  agent->reset();
  return rc;
}

// ---- the parent (server) side -----------------------------------------------------------------

bool IsUcx113() {
  unsigned major = 0, minor = 0, release = 0;
  ucp_get_version(&major, &minor, &release);
  return major == 1 && minor == 13;
}

// What the server saw: the attack (`forged`, one batch through the forged key) and the positive
// control (a PUT of a pattern through the genuine key, then a GET of it back into `back`).
struct Outcome {
  bool started = false;
  int wait_status = 0;
  std::vector<Status> forged, put, get;
  std::vector<uint8_t> back;
};

class ForgedKeyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!IsUcx113()) GTEST_SKIP() << "the hold recognizes UCX 1.13's keys only";
    TransferEngineOptions options;
    options.context.transports = "posix,cma";
    options.context.name = "forged-key-server";
    Result<std::unique_ptr<TransferEngine>> engine = TransferEngine::Create(options);
    if (!engine.ok() && engine.status().code() == StatusCode::kUnavailable) {
      GTEST_SKIP() << "posix,cma unavailable: " << engine.status().ToString();
    }
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    engine_ = std::move(*engine);
  }

  // Starts a client naming `what` (as ForgedDescriptor), as nobody when `drop`; submits `op` of
  // `attack` through the forged key, then the positive control; stops the client.
  Outcome Run(const std::string& what, bool drop, TransferOp op, std::span<uint8_t> attack) {
    Outcome out;
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
      ADD_FAILURE() << "socketpair: " << std::strerror(errno);
      return out;
    }
    const std::string arg =
        std::string(kChildFlag) + std::to_string(fds[1]) + ":" + (drop ? "1:" : "0:") + what;
    const pid_t child = fork();
    if (child == 0) {  // only async-signal-safe calls until exec
      fcntl(fds[1], F_SETFD, 0);
      execl("/proc/self/exe", "forged_key_test", arg.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    close(fds[1]);
    if (child < 0) {
      ADD_FAILURE() << "fork: " << std::strerror(errno);
      close(fds[0]);
      return out;
    }
    timeval tv{10, 0};
    setsockopt(fds[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    std::vector<uint8_t> address, genuine, forged, where;
    out.started = RecvMessage(fds[0], address) && RecvMessage(fds[0], genuine) &&
                  RecvMessage(fds[0], forged) && RecvMessage(fds[0], where) && where.size() == 16;
    if (out.started) {
      Result<PeerId> peer = engine_->Connect(address);
      if (peer.ok()) {
        TransferBatch batch;
        batch.remote_keys.push_back(forged);
        batch.transfers.push_back(
            Transfer{op, *peer, attack.data(), kForgedBase, attack.size(), 0});
        batch.deadline = Clock::now() + std::chrono::seconds(3);
        out.forged = WaitBatch(engine_->Submit(std::move(batch)));
        std::vector<uint8_t> sent(kForgedBytes);
        out.back.assign(kForgedBytes, 0);
        FillPattern(sent.data(), sent.size(), 5);
        for (auto [o, buffer, statuses] : {std::tuple{TransferOp::kPut, &sent, &out.put},
                                           std::tuple{TransferOp::kGet, &out.back, &out.get}}) {
          TransferBatch control;
          control.remote_keys.push_back(genuine);
          control.transfers.push_back(
              Transfer{o, *peer, buffer->data(), LoadLe64(where.data()), buffer->size(), 0});
          control.deadline = Clock::now() + std::chrono::seconds(3);
          *statuses = WaitBatch(engine_->Submit(std::move(control)));
        }
        (void)engine_->Disconnect(*peer);
      } else {
        ADD_FAILURE() << peer.status().ToString();
      }
    }
    (void)SendMessage(fds[0], std::vector<uint8_t>{'Q'});
    close(fds[0]);
    waitpid(child, &out.wait_status, 0);
    return out;
  }

  // The batch through the forged key failed with InvalidArgument naming `why`; the genuine key
  // took a PUT and gave it back with a GET.
  static void ExpectRefusedWhileGenuineWorks(const Outcome& out, const std::string& why) {
    ASSERT_TRUE(out.started) << "the client did not start (exit status " << out.wait_status << ")";
    ASSERT_EQ(out.forged.size(), 1u);
    EXPECT_EQ(out.forged[0].code(), StatusCode::kInvalidArgument) << out.forged[0].ToString();
    EXPECT_NE(out.forged[0].message().find(why), std::string::npos) << out.forged[0].ToString();
    ASSERT_EQ(out.put.size(), 1u);
    EXPECT_TRUE(out.put[0].ok()) << out.put[0].ToString();
    ASSERT_EQ(out.get.size(), 1u);
    EXPECT_TRUE(out.get[0].ok()) << out.get[0].ToString();
    EXPECT_EQ(FirstMismatch(out.back.data(), out.back.size(), 5), -1);
  }

  std::unique_ptr<TransferEngine> engine_;
};

// The audit's proof of concept: a client names, as its posix segment, a descriptor it opened
// read-only of a file it may not write (a root-owned 0644 file when the test runs as root; the
// client then runs as nobody). UCX would map that file read-write with the server's credentials,
// and a PUT (a Load) wrote into it. Now the server refuses the key: the PUT fails with
// InvalidArgument and the file is unchanged, on tmpfs (refused because the descriptor is
// read-only) and on a disk file system (also no shared-memory segment).
TEST_F(ForgedKeyTest, AFileTheClientMayOnlyReadIsNeverWritten) {
  const bool drop = geteuid() == 0;
  if (!drop) std::printf("[ note ] not root: the client keeps this test's uid\n");
  for (const char* parent : {"/dev/shm", "/var/tmp"}) {
    SCOPED_TRACE(parent);
    std::string dir = std::string(parent) + "/kvault-rofile-XXXXXX";
    ASSERT_NE(mkdtemp(dir.data()), nullptr) << std::strerror(errno);
    ASSERT_EQ(chmod(dir.c_str(), 0755), 0);  // the client (nobody) may look inside
    const std::string victim = dir + "/victim.bin";
    const std::vector<uint8_t> original(kForgedBytes, 'A');
    {
      const int fd = open(victim.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
      ASSERT_GE(fd, 0) << std::strerror(errno);
      ASSERT_EQ(write(fd, original.data(), original.size()), static_cast<ssize_t>(original.size()));
      close(fd);
    }
    char message[] = "PWNED-BY-A-READ-ONLY-DESCRIPTOR";
    const Outcome out = Run("file:" + victim, drop, TransferOp::kPut,
                            std::span(reinterpret_cast<uint8_t*>(message), sizeof(message) - 1));
    std::vector<uint8_t> now(kForgedBytes + 1);
    const int fd = open(victim.c_str(), O_RDONLY | O_CLOEXEC);
    const ssize_t got = fd >= 0 ? read(fd, now.data(), now.size()) : -1;
    if (fd >= 0) close(fd);
    unlink(victim.c_str());
    rmdir(dir.c_str());
    ExpectRefusedWhileGenuineWorks(out, std::string(parent) == "/dev/shm"
                                            ? "not open for reading and writing"
                                            : "not on tmpfs or hugetlbfs");
    ASSERT_EQ(got, static_cast<ssize_t>(kForgedBytes));
    now.resize(kForgedBytes);
    EXPECT_TRUE(now == original) << "the file the client could only read was written: "
                                 << std::string(now.begin(), now.begin() + 32);
  }
}

// A memfd sealed against writes passes every check on who owns it and how the client opened it,
// yet no process may map it writable, the server's UCX included: UCX 1.13 then fails the attach
// inside ucp_ep_rkey_unpack and crashed the server in its own error path. Now the server tries
// the writable mapping first and refuses the key: a Store (GET) and a Load (PUT) through it fail
// with InvalidArgument, and the server goes on serving the client's genuine key.
TEST_F(ForgedKeyTest, ASegmentNoOneMayMapWritableIsRefusedNotACrash) {
  for (const TransferOp op : {TransferOp::kGet, TransferOp::kPut}) {
    SCOPED_TRACE(op == TransferOp::kGet ? "GET" : "PUT");
    std::vector<uint8_t> buffer(4096, 'x');
    const Outcome out = Run("sealed", false, op, buffer);
    ExpectRefusedWhileGenuineWorks(out, "sealed against writes");
  }
}

}  // namespace
}  // namespace kvault::transport

int main(int argc, char** argv) {
  return kvault::transport::testing::RunTestsOrChild(argc, argv, kvault::transport::kChildFlag,
                                                     kvault::transport::RunChild);
}
