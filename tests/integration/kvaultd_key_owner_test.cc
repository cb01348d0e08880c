// A client may only name its own memory. The remote key a client sends carries its owner's pid
// (the envelope, transport/src/ucx/envelope.h), and with shared memory the daemon attaches that
// process's segments. An authenticated client that sends another process's key (seen on the wire,
// guessed, or from a process it controls) must not make the daemon read or write the other
// process's memory: on one host the daemon learns which process is at the other end of each
// control connection and refuses keys of any other process.
//
// The victim is this test binary re-executed (KVAULT_KEY_OWNER_CHILD set): a real libkvault
// client that allocates memory, writes a secret object into it without storing it, stores a
// control object from the same region itself, and prints its remote key. The attacker is this
// process, speaking the protocol over a raw connection with a UCX worker of its own.

#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <string>
#include <thread>

#include "binary_run.h"
#include "daemon_process.h"
#include "kvault/client.h"
#include "kvault/common/checksum.h"
#include "kvault/common/synthetic_block.h"
#include "kvault/transport/ucx/ucx_context.h"
#include "kvault/transport/ucx/ucx_memory.h"
#include "kvault/transport/ucx/ucx_worker.h"
#include "raw_connection.h"

namespace kvault::testing {
namespace {

using namespace std::chrono_literals;
using transport::WireStatus;

constexpr uint64_t kPayload = 64 << 10;
constexpr const char* kTransports = "posix,cma";

BlockKey KeyOf(uint8_t tag) {
  BlockKey k{};
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(tag + i * 3);
  return k;
}
const BlockKey kSecret = KeyOf(0x51);   // the victim writes it, never stores it
const BlockKey kControl = KeyOf(0x71);  // the victim stores it itself
const BlockKey kOwn = KeyOf(0x91);      // the attacker's own object

std::string Hex(std::span<const uint8_t> bytes) {
  std::string out;
  char b[3];
  for (uint8_t v : bytes) {
    std::snprintf(b, sizeof b, "%02x", v);
    out += b;
  }
  return out;
}

// `key` (a sealed remote key, transport/src/ucx/envelope.h) claiming pid namespace `ns` instead:
// the remote-key header's field at payload offset 24, and the envelope's XXH3-64 at offset 12.
std::vector<uint8_t> WithNamespace(std::vector<uint8_t> key, uint64_t ns) {
  constexpr size_t kPayload = 20;
  if (key.size() < kPayload + 32) return key;
  std::memcpy(key.data() + kPayload + 24, &ns, sizeof(ns));
  const uint64_t sum = Checksum64(std::span(key).subspan(kPayload));
  std::memcpy(key.data() + 12, &sum, sizeof(sum));
  return key;
}

std::vector<uint8_t> Unhex(const std::string& hex) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

// The victim: prints "KEY <hex> ADDR <address> CONTROL <ok|why>", then waits for stdin to close.
TEST(KvaultdKeyOwnerChild, HoldsASecret) {
  const char* server = std::getenv("KVAULT_KEY_OWNER_CHILD");
  if (server == nullptr) GTEST_SKIP() << "runs only as the child of kvaultd_key_owner_test";
  ClientConfig config;
  config.server = server;
  config.ucx_transports = kTransports;
  auto c = Client::Connect(config);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  const uint64_t object = SyntheticObjectBytes(kPayload);
  Result<MemoryRegion> region = (*c)->AllocateMemory(2 * object);
  ASSERT_TRUE(region.ok()) << region.status().ToString();
  ASSERT_TRUE(WriteSyntheticBlock(kSecret, kPayload, region->bytes().first(object)).ok());
  const std::span<uint8_t> control = region->bytes().subspan(object, object);
  ASSERT_TRUE(WriteSyntheticBlock(kControl, kPayload, control).ok());
  const std::span<const uint8_t> sources[] = {control};
  StoreHandle stored = (*c)->Store(std::span(&kControl, 1), sources);
  const Status s =
      stored.Wait(Clock::now() + 20s).ok() ? stored.key_status(0) : Status::Unavailable("no reply");
  std::printf("KEY %s ADDR %llu CONTROL %s\n", Hex(region->remote_key()).c_str(),
              static_cast<unsigned long long>(reinterpret_cast<uintptr_t>(region->data())),
              s.ok() ? "ok" : "failed");
  std::fflush(stdout);
  char byte;
  while (::read(STDIN_FILENO, &byte, 1) > 0) {
  }
}

// The victim child (KvaultdKeyOwnerChild.HoldsASecret) of a test: started by Start(), killed and
// reaped on destruction.
class Victim {
 public:
  explicit Victim(std::string server) : server_(std::move(server)) {}
  Victim(const Victim&) = delete;
  Victim& operator=(const Victim&) = delete;
  ~Victim() {
    if (stdin_fd_ >= 0) ::close(stdin_fd_);
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  // Forks and runs the child, then reads its key and secret's address; the child's own store
  // (the positive control) must have succeeded.
  void Start() {
    int out[2], in[2];
    ASSERT_EQ(::pipe(out), 0);
    ASSERT_EQ(::pipe(in), 0);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(out[1], STDOUT_FILENO);
      ::dup2(in[0], STDIN_FILENO);
      ::close(out[0]);
      ::close(in[1]);
      ::setenv("KVAULT_KEY_OWNER_CHILD", server_.c_str(), 1);
      const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
      ::execl(self.c_str(), self.c_str(), "--gtest_filter=KvaultdKeyOwnerChild.HoldsASecret",
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(out[1]);
    ::close(in[0]);
    stdin_fd_ = in[1];
    std::string seen;
    char buf[4096];
    const auto until = std::chrono::steady_clock::now() + 30s;
    while (seen.find("CONTROL") == std::string::npos || seen.back() != '\n') {
      if (std::chrono::steady_clock::now() > until) break;
      const ssize_t r = ::read(out[0], buf, sizeof buf);
      if (r <= 0) break;
      seen.append(buf, static_cast<size_t>(r));
    }
    ::close(out[0]);
    const size_t at = seen.find("KEY ");
    ASSERT_NE(at, std::string::npos) << seen;
    std::istringstream line(seen.substr(at));
    std::string word, key_hex, control;
    unsigned long long address = 0;
    line >> word >> key_hex >> word >> address >> word >> control;
    // Positive control: the key works for its owner.
    ASSERT_EQ(control, "ok") << seen;
    key_ = Unhex(key_hex);
    address_ = address;
  }

  pid_t pid() const { return pid_; }
  const std::vector<uint8_t>& key() const { return key_; }
  uint64_t address() const { return address_; }

 private:
  std::string server_;
  pid_t pid_ = -1;
  int stdin_fd_ = -1;
  std::vector<uint8_t> key_;
  uint64_t address_ = 0;
};

class KvaultdKeyOwnerTest : public BinaryTest {
 protected:
  KvaultdKeyOwnerTest() : BinaryTest("kvaultd") {}
};

// The attacker's side of the control plane: Hello with its own worker, Auth, then requests.
class Attacker {
 public:
  explicit Attacker(uint16_t port) : conn_(port) {}

  // Logs in with a UCX worker of its own over `transports`. With `claim_pid`, the worker address
  // it announces names that process instead of this one wherever it holds this one's pid (UCX
  // 1.13: the cma entry), resealed so that the envelope still holds. With `serve`, the worker is
  // progressed while a request waits (emulated transfers are then served by this process).
  void Start(const std::string& transports = kTransports, pid_t claim_pid = 0, bool serve = false) {
    serve_ = serve;
    transport::UcxContextOptions ucx;
    ucx.transports = transports;
    Result<transport::UcxContext> context = transport::UcxContext::Create(ucx);
    ASSERT_TRUE(context.ok()) << context.status().ToString();
    context_.emplace(std::move(*context));
    Result<transport::UcxWorker> worker = transport::UcxWorker::Create(*context_);
    ASSERT_TRUE(worker.ok()) << worker.status().ToString();
    worker_.emplace(std::move(*worker));
    std::vector<uint8_t> address = worker_->address();
    if (claim_pid > 0) {
      ASSERT_GT(ClaimPid(address, claim_pid), 0u) << "no pid in the address";
    }
    ASSERT_TRUE(conn_.connected());
    ASSERT_TRUE(conn_.Login("", "", address, &*worker_));
  }

  // Stores `key` from [address, address + length) of the memory `remote_key` names.
  WireStatus Store(const std::vector<uint8_t>& remote_key, const BlockKey& key, uint64_t address,
                   uint64_t length) {
    transport::Store store;
    store.remote_key = remote_key;
    store.entries.push_back({key, address, length});
    if (!conn_.SendMessage(store, next_id_++)) return WireStatus::kInternal;
    std::atomic<bool> replied{false};
    std::thread progress;
    if (serve_) {
      progress = std::thread([&] {
        while (!replied.load()) worker_->Progress();
      });
    }
    auto reply = conn_.ReadMessage(20s);
    replied = true;
    if (progress.joinable()) progress.join();
    if (!reply || !std::holds_alternative<transport::StoreReply>(reply->first)) {
      return WireStatus::kInternal;
    }
    const auto& statuses = std::get<transport::StoreReply>(reply->first).statuses;
    return statuses.size() == 1 ? statuses[0] : WireStatus::kInternal;
  }

  transport::UcxContext& context() { return *context_; }

 private:
  RawConnection conn_;
  std::optional<transport::UcxContext> context_;
  std::optional<transport::UcxWorker> worker_;
  uint64_t next_id_ = 3;  // after Login's
  bool serve_ = false;

  // Rewrites each little-endian copy of this process's pid in the sealed worker `address` to
  // `pid` and reseals it (the envelope's XXH3-64 at offset 12 over the payload at offset 20);
  // returns how many were rewritten.
  static size_t ClaimPid(std::vector<uint8_t>& address, pid_t pid) {
    constexpr size_t kPayload = 20;
    const pid_t self = ::getpid();
    size_t n = 0;
    for (size_t i = kPayload; i + sizeof(pid_t) <= address.size(); ++i) {
      if (std::memcmp(address.data() + i, &self, sizeof(pid_t)) == 0) {
        std::memcpy(address.data() + i, &pid, sizeof(pid_t));
        ++n;
      }
    }
    const uint64_t sum = Checksum64(std::span(address).subspan(kPayload));
    std::memcpy(address.data() + 12, &sum, sizeof(sum));
    return n;
  }
};

TEST_F(KvaultdKeyOwnerTest, AnotherProcessesKeyIsRefusedAndItsMemoryNeverRead) {
  // A short transfer deadline: the forged key below can only be served by the attacker's own
  // worker, which nobody progresses.
  DaemonProcess d(dir_, {"--storage.host_capacity", "64MiB", "--storage.nvme_capacity", "0",
                         "--ucx.transports", kTransports, "--limits.io_timeout", "2s"});
  ASSERT_TRUE(d.ok()) << d.Stderr();

  Victim victim(d.server());
  ASSERT_NO_FATAL_FAILURE(victim.Start());
  const std::vector<uint8_t>& victim_key = victim.key();
  const uint64_t address = victim.address();
  const uint64_t object = SyntheticObjectBytes(kPayload);

  Attacker attacker(d.control_port());
  ASSERT_NO_FATAL_FAILURE(attacker.Start());
  // Positive control: the attacker's own memory and key are served.
  Result<transport::UcxMemory> own = transport::UcxMemory::Allocate(attacker.context(), object);
  ASSERT_TRUE(own.ok()) << own.status().ToString();
  ASSERT_TRUE(WriteSyntheticBlock(
                  kOwn, kPayload,
                  std::span(static_cast<uint8_t*>(own->address()), static_cast<size_t>(object)))
                  .ok());
  Result<std::vector<uint8_t>> own_key = own->PackRemoteKey();
  ASSERT_TRUE(own_key.ok()) << own_key.status().ToString();
  EXPECT_EQ(attacker.Store(*own_key, kOwn, reinterpret_cast<uint64_t>(own->address()), object),
            WireStatus::kOk)
      << d.Stderr();

  // The victim's key from the attacker's connection: refused, the secret never read.
  EXPECT_EQ(attacker.Store(victim_key, kSecret, address, object), WireStatus::kTransferFailed)
      << d.Stderr();
  // The same key claiming another pid namespace, where the pid cannot be checked: it loses its
  // shared-memory entries, so only the attacker's own endpoint could serve it (and does not).
  const std::vector<uint8_t> forged = WithNamespace(victim_key, 0x1234567890abcdefull);
  ASSERT_NE(forged, victim_key);
  EXPECT_EQ(attacker.Store(forged, kSecret, address, object), WireStatus::kTransferFailed)
      << d.Stderr();
  ClientConfig config;
  config.server = d.server();
  config.data_plane = false;
  auto observer = Client::Connect(config);
  ASSERT_TRUE(observer.ok()) << observer.status().ToString();
  const BlockKey looked_up[] = {kSecret, kControl, kOwn};
  const LookupResult hits = (*observer)->LookupPrefix(std::span(&looked_up[0], 1));
  ASSERT_TRUE(hits.status.ok()) << hits.status.ToString();
  EXPECT_EQ(hits.leading_hits, 0u) << "the daemon read the victim's secret";
  for (size_t i = 1; i < 3; ++i) {
    const LookupResult control_hit = (*observer)->LookupPrefix(std::span(&looked_up[i], 1));
    EXPECT_EQ(control_hit.leading_hits, 1u) << "object " << i << " was not stored";
  }
  EXPECT_NE(d.Stderr().find("remote key"), std::string::npos) << d.Stderr();
}

// The worker address in Hello is the client's word too. UCX 1.13's cma transport reaches a peer's
// memory through the pid in the address's cma entry, so an address naming another process's pid,
// with a key whose region sits at the same virtual address as that process's secret, would have
// the daemon read the secret with process_vm_readv. It must not: the daemon's reads are served by
// the announcing process's own memory (UCX 1.13 moves RMA over checked shared-memory keys or
// through the peer's worker, never over cma), so the attacker only ever stores its own bytes.
TEST_F(KvaultdKeyOwnerTest, AWorkerAddressNamingAnotherProcessReadsOnlyTheSendersMemory) {
  // Default transports: what a daemon runs with unless told otherwise.
  DaemonProcess d(dir_, {"--storage.host_capacity", "64MiB", "--storage.nvme_capacity", "0",
                         "--limits.io_timeout", "5s"});
  ASSERT_TRUE(d.ok()) << d.Stderr();
  Victim victim(d.server());
  ASSERT_NO_FATAL_FAILURE(victim.Start());
  const uint64_t object = SyntheticObjectBytes(kPayload);

  // The attacker's own memory at the victim's secret's virtual address, holding its own object.
  const uintptr_t page_size = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t first = victim.address() & ~(page_size - 1);
  const size_t span = static_cast<size_t>(victim.address() + object - first);
  void* mapped = ::mmap(reinterpret_cast<void*>(first), span, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  ASSERT_EQ(mapped, reinterpret_cast<void*>(first)) << "the victim's address is taken here";
  struct Unmap {
    void* at;
    size_t n;
    ~Unmap() { ::munmap(at, n); }
  } unmap{mapped, span};
  uint8_t* const same_address = reinterpret_cast<uint8_t*>(victim.address());
  ASSERT_TRUE(WriteSyntheticBlock(kOwn, kPayload, std::span(same_address, object)).ok());

  Attacker attacker(d.control_port());
  ASSERT_NO_FATAL_FAILURE(attacker.Start("cma,tcp", victim.pid(), /*serve=*/true));
  Result<transport::UcxMemory> region =
      transport::UcxMemory::Map(attacker.context(), same_address, object);
  ASSERT_TRUE(region.ok()) << region.status().ToString();
  Result<std::vector<uint8_t>> key = region->PackRemoteKey();
  ASSERT_TRUE(key.ok()) << key.status().ToString();

  // Positive control: the forged endpoint works, and what it reads is the attacker's object.
  EXPECT_EQ(attacker.Store(*key, kOwn, victim.address(), object), WireStatus::kOk) << d.Stderr();
  // The same range under the secret's key: the bytes read are still the attacker's (another
  // key's object), so the store is refused and the secret never lands.
  EXPECT_NE(attacker.Store(*key, kSecret, victim.address(), object), WireStatus::kOk) << d.Stderr();
  ClientConfig config;
  config.server = d.server();
  config.data_plane = false;
  auto observer = Client::Connect(config);
  ASSERT_TRUE(observer.ok()) << observer.status().ToString();
  EXPECT_EQ((*observer)->LookupPrefix(std::span(&kSecret, 1)).leading_hits, 0u)
      << "the daemon read the victim's secret";
  EXPECT_EQ((*observer)->LookupPrefix(std::span(&kOwn, 1)).leading_hits, 1u);
}

// Another process's worker address. Whatever worker the announced address names serves the
// GETs and PUTs UCX emulates with messages, from and into its own memory, and an address can be
// rebuilt from public facts (pid, descriptor numbers, ports). So the daemon sends a token to the
// announced worker and moves no block data until the client returns it, which only the worker's
// owner can. Here the other worker lives in this process with its own context, progressed by a
// thread as a client's would be, holding a secret in memory it registered.
TEST_F(KvaultdKeyOwnerTest, AnotherWorkersAddressCannotBeProvenSoNothingMoves) {
  DaemonProcess d(dir_, {"--storage.host_capacity", "64MiB", "--storage.nvme_capacity", "0",
                         "--limits.io_timeout", "3s"});
  ASSERT_TRUE(d.ok()) << d.Stderr();
  Result<transport::UcxContext> context = transport::UcxContext::Create({});
  ASSERT_TRUE(context.ok()) << context.status().ToString();
  Result<transport::UcxWorker> worker = transport::UcxWorker::Create(*context);
  ASSERT_TRUE(worker.ok()) << worker.status().ToString();
  Result<std::unique_ptr<transport::WorkerProofMailbox>> mailbox =
      transport::WorkerProofMailbox::Attach(*worker);
  ASSERT_TRUE(mailbox.ok()) << mailbox.status().ToString();
  const uint64_t object = SyntheticObjectBytes(kPayload);
  std::vector<uint8_t> secret(object);
  ASSERT_TRUE(WriteSyntheticBlock(kSecret, kPayload, secret).ok());
  Result<transport::UcxMemory> region =
      transport::UcxMemory::Map(*context, secret.data(), secret.size());
  ASSERT_TRUE(region.ok()) << region.status().ToString();
  Result<std::vector<uint8_t>> packed = region->PackRemoteKey();
  ASSERT_TRUE(packed.ok()) << packed.status().ToString();
  // A namespace nobody can check: the key reaches the memory only through the worker it names.
  const std::vector<uint8_t> key = WithNamespace(*packed, 0x1234567890abcdefull);
  std::atomic<bool> stop{false};
  std::thread progress([&] {
    while (!stop.load()) worker->Progress();
  });
  struct Join {
    std::atomic<bool>& stop;
    std::thread& thread;
    ~Join() {
      stop = true;
      thread.join();
    }
  } join{stop, progress};
  auto store = [&](RawConnection& conn) {
    transport::Store request;
    request.remote_key = key;
    request.entries.push_back({kSecret, reinterpret_cast<uint64_t>(secret.data()), object});
    if (!conn.SendMessage(request, 7)) return WireStatus::kInternal;
    auto reply = conn.ReadMessage(20s);
    if (!reply) return WireStatus::kInternal;
    if (const auto* error = std::get_if<transport::ErrorReply>(&reply->first)) return error->status;
    if (!std::holds_alternative<transport::StoreReply>(reply->first)) return WireStatus::kInternal;
    return std::get<transport::StoreReply>(reply->first).statuses.at(0);
  };
  auto token_for = [&](uint64_t session) {
    return (*mailbox)->Wait(session, std::chrono::steady_clock::now() + 10s);
  };
  ClientConfig config;
  config.server = d.server();
  config.data_plane = false;
  auto observer = Client::Connect(config);
  ASSERT_TRUE(observer.ok()) << observer.status().ToString();

  // The attacker announces the other worker and authenticates: its token goes to that worker.
  // Unproven, the store is refused; a guess is refused, and the store still is.
  RawConnection attacker(d.control_port());
  ASSERT_TRUE(attacker.Login("", "", worker->address()));
  EXPECT_TRUE(token_for(attacker.session_id()).ok()) << "the token reached the worker";
  EXPECT_EQ(store(attacker), WireStatus::kUnauthenticated);
  EXPECT_EQ(attacker.ProveWorker({}), WireStatus::kUnauthenticated);
  EXPECT_EQ(store(attacker), WireStatus::kUnauthenticated);
  EXPECT_EQ((*observer)->LookupPrefix(std::span(&kSecret, 1)).leading_hits, 0u)
      << "the daemon read the other worker's memory";

  // Positive control: the worker's owner returns its token, and the same store is served.
  RawConnection owner(d.control_port());
  ASSERT_TRUE(owner.Login("", "", worker->address()));
  const Result<std::array<uint8_t, 32>> token = token_for(owner.session_id());
  ASSERT_TRUE(token.ok()) << token.status().ToString();
  EXPECT_EQ(owner.ProveWorker(*token), WireStatus::kOk);
  EXPECT_EQ(store(owner), WireStatus::kOk) << d.Stderr();
  EXPECT_EQ((*observer)->LookupPrefix(std::span(&kSecret, 1)).leading_hits, 1u);
}

}  // namespace
}  // namespace kvault::testing
