#pragma once
// FakeServer: a tiny in-test kvaultd stand-in on 127.0.0.1:<ephemeral> that speaks the real
// control-plane protocol (transport/ messages) and misbehaves on request. It accepts connections
// one after another on its own thread; each connection runs the handshake (unless kSilent) and
// then answers requests the way its Mode says. No data plane: Store and Load are answered
// without moving bytes. A Hello that announces a UCX worker gets the worker proof a daemon sends
// (a TransferEngine of the fake's own sends the token after Auth; ProveWorker checks it), so a
// client with a data plane connects as it would to kvaultd. OfferMemorySocket makes the handshake
// name a memory socket (docs/authentication.md §6) with a right or a wrong server proof.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "kvault/common/auth.h"
#include "kvault/transport/frame_reader.h"
#include "kvault/transport/messages.h"
#include "kvault/transport/ucx/transfer_engine.h"

namespace kvault::testing {

// n keys, key i filled with the byte i + 1.
inline std::vector<BlockKey> NumberedKeys(size_t n) {
  std::vector<BlockKey> keys(n);
  for (size_t i = 0; i < n; ++i) keys[i].fill(static_cast<uint8_t>(i + 1));
  return keys;
}

class FakeServer {
 public:
  enum class Mode {
    kSilent,          // accepts and reads, never answers anything (not even Hello)
    kServe,           // answers everything with canned replies
    kIgnoreRequests,  // handshake, then reads requests and never answers
    kCloseOnRequest,  // handshake, then closes the socket on the first request
    kGarbage,         // handshake, then answers the first request with non-protocol bytes
    kWrongId,         // handshake, then answers with a request id nobody sent
    kCloseAfterOne,   // serves one request after the handshake, then closes
    kServeHits,       // like kServe, but every Load entry is a hit of `capacity` bytes, answered
                      // kLoadDelay late (no bytes move: the client copies out whatever its
                      // staging holds)
    kRefuseRequests,  // handshake, then answers every request at once with an invalid_argument
                      // ErrorReply
    kServeGpuExport,  // like kServe, and GpuExport (which kServe leaves unanswered) is answered
                      // with one not_found entry per key
    kShortReplies,    // like kServeGpuExport, but every Lookup, Store, Load, Delete and GpuExport
                      // reply has one result fewer than the request has keys (well-formed bytes)
    kTooManyHits,     // like kServe, but a LookupReply says leading_hits = keys + 1 (bytes patched
                      // after encoding: the encoder refuses such a reply)
    kNewerVersion,    // HelloReply with server_version kProtocolVersion + 1; nothing else differs
    kWrongPong,       // like kServe, but a Pong carries the Ping's payload + 1
  };

  static constexpr std::chrono::milliseconds kLoadDelay{20};

  explicit FakeServer(Mode mode, std::string token = "",
                      transport::ProtocolLimits limits = transport::ProtocolLimits{})
      : mode_(mode), token_(std::move(token)), limits_(limits) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    ::listen(listen_fd_, 16);
    socklen_t len = sizeof(addr);
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Run(); });
  }

  ~FakeServer() {
    stop_.store(true);
    thread_.join();
    ::close(listen_fd_);
  }

  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  int connections() const { return connections_.load(); }
  int requests(transport::MessageType type) const {
    std::lock_guard<std::mutex> lock(mu_);
    int n = 0;
    for (transport::MessageType t : seen_) n += t == type;
    return n;
  }
  // Every request type received, in arrival order.
  std::vector<transport::MessageType> seen() const {
    std::lock_guard<std::mutex> lock(mu_);
    return seen_;
  }
  // The remote keys of the ReleaseMemory requests received, in order.
  std::vector<std::vector<uint8_t>> released_keys() const {
    std::lock_guard<std::mutex> lock(mu_);
    return released_;
  }
  transport::Hello last_hello() const {
    std::lock_guard<std::mutex> lock(mu_);
    return hello_;
  }
  // Every Hello received, in arrival order.
  std::vector<transport::Hello> hellos() const {
    std::lock_guard<std::mutex> lock(mu_);
    return hellos_;
  }

  // From the next Hello on, the HelloReply names `path` as the daemon's memory socket, with this
  // process's pid and effective uid, and the AuthReply carries a server proof over them
  // (ServerProof with the fake's token, as kvaultd computes it) when `correct_proof`, or that
  // proof with one bit flipped otherwise. The fake itself never listens at `path`.
  void OfferMemorySocket(std::string path, bool correct_proof) {
    std::lock_guard<std::mutex> lock(mu_);
    offer_ = MemorySocketOffer{std::move(path), correct_proof};
  }

 private:
  struct MemorySocketOffer {
    std::string path;
    bool correct_proof = true;
  };

  // Waits up to 20 ms for fd to become readable; false when stopping.
  bool WaitReadable(int fd) {
    while (!stop_.load()) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 20) > 0) return true;
    }
    return false;
  }

  void Run() {
    while (WaitReadable(listen_fd_)) {
      const int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) continue;
      connections_.fetch_add(1);
      Serve(fd);
      ::close(fd);
    }
  }

  static void Send(int fd, const std::vector<uint8_t>& bytes) {
    size_t off = 0;
    while (off < bytes.size()) {
      const ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return;
      off += static_cast<size_t>(n);
    }
  }

  template <typename M>
  void Reply(int fd, const M& m, uint64_t id) {
    Result<std::vector<uint8_t>> frame = transport::EncodeFrame(m, id, limits_);
    if (frame.ok()) Send(fd, *frame);
  }

  void Serve(int fd) {
    transport::FrameReader reader;
    bool authed = false;
    int served = 0;
    uint8_t buf[4096];
    while (WaitReadable(fd)) {
      const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) return;
      std::span<const uint8_t> data(buf, static_cast<size_t>(n));
      while (!data.empty()) {
        Result<size_t> used = reader.Feed(data);
        if (!used.ok()) return;
        data = data.subspan(*used);
        if (!reader.frame_ready()) continue;
        transport::Frame f = reader.TakeFrame();
        Result<transport::Message> m = transport::DecodeMessage(
            f.header.type, f.body, authed ? limits_ : transport::ProtocolLimits{});
        if (!m.ok()) return;
        {
          std::lock_guard<std::mutex> lock(mu_);
          seen_.push_back(f.header.type);
        }
        if (mode_ == Mode::kSilent) continue;
        const uint64_t id = f.header.request_id;
        if (auto* hello = std::get_if<transport::Hello>(&*m)) {
          {
            std::lock_guard<std::mutex> lock(mu_);
            hello_ = *hello;
            hellos_.push_back(*hello);
          }
          transport::HelloReply r;
          if (mode_ == Mode::kNewerVersion) r.server_version = transport::kProtocolVersion + 1;
          r.nonce.fill(0x5A);
          r.limits = limits_;
          if (const std::optional<MemorySocketOffer> offer = Offer()) {
            r.memory_socket = offer->path;
            r.server_pid = static_cast<uint32_t>(::getpid());
            r.server_uid = static_cast<uint32_t>(::geteuid());
          }
          Reply(fd, r, id);
          continue;
        }
        if (auto* auth = std::get_if<transport::Auth>(&*m)) {
          AuthNonce nonce;
          nonce.fill(0x5A);
          if (!VerifyAuthProof(TokenHash(token_), nonce, auth->proof)) {
            Reply(fd,
                  transport::ErrorReply::Make(transport::WireStatus::kUnauthenticated,
                                              "unknown tenant or wrong token"),
                  id);
            continue;
          }
          authed = true;
          transport::AuthReply r;
          r.session_id = 100 + connections_.load();
          if (const std::optional<MemorySocketOffer> offer = Offer()) {
            const AuthDigest proof = ServerProof(TokenHash(token_), nonce, auth->proof,
                                                 static_cast<uint32_t>(::getpid()),
                                                 static_cast<uint32_t>(::geteuid()), offer->path);
            std::copy(proof.begin(), proof.end(), r.server_proof.begin());
            if (!offer->correct_proof) r.server_proof[0] ^= 0x01;
          }
          Reply(fd, r, id);
          SendWorkerProof(r.session_id);
          continue;
        }
        if (auto* prove = std::get_if<transport::ProveWorker>(&*m)) {
          transport::ProveWorkerReply r;
          if (!ConstantTimeEqual(prove->token, worker_token_)) {
            r.status = transport::WireStatus::kUnauthenticated;
            r.message = "the token does not match";
          }
          Reply(fd, r, id);
          continue;
        }
        switch (mode_) {
          case Mode::kIgnoreRequests:
            continue;
          case Mode::kCloseOnRequest:
            return;
          case Mode::kGarbage:
            Send(fd, std::vector<uint8_t>(64, 0xEE));
            continue;
          case Mode::kWrongId:
            Reply(fd, transport::Pong{}, id + 1000);
            continue;
          case Mode::kCloseAfterOne:
            if (served++ == 1) return;
            break;
          case Mode::kRefuseRequests:
            Reply(fd,
                  transport::ErrorReply::Make(transport::WireStatus::kInvalidArgument,
                                              "refused by the fake daemon"),
                  id);
            continue;
          default:
            break;
        }
        Answer(fd, *m, id);
      }
    }
  }

  // Sends a fresh token to the worker the last Hello announced, as kvaultd does after Auth.
  void SendWorkerProof(uint64_t session_id) {
    const std::vector<uint8_t> address = last_hello().worker_address;
    if (address.empty()) return;
    if (!engine_) {
      Result<std::unique_ptr<transport::TransferEngine>> engine =
          transport::TransferEngine::Create({});
      if (!engine.ok()) return;  // the client's wait for the token then fails the connect
      engine_ = std::move(*engine);
    }
    transport::WorkerProof proof;
    proof.session_id = session_id;
    for (size_t i = 0; i < proof.token.size(); ++i) {
      proof.token[i] = static_cast<uint8_t>(session_id * 31 + i);
    }
    worker_token_ = proof.token;
    (void)engine_->Connect(address, std::nullopt, proof);
  }

  std::optional<MemorySocketOffer> Offer() const {
    std::lock_guard<std::mutex> lock(mu_);
    return offer_;
  }

  // How many results a reply carries for a request of `keys` keys.
  size_t Results(size_t keys) const {
    return mode_ == Mode::kShortReplies && keys > 0 ? keys - 1 : keys;
  }

  void Answer(int fd, const transport::Message& m, uint64_t id) {
    if (auto* ping = std::get_if<transport::Ping>(&m)) {
      Reply(fd, transport::Pong{mode_ == Mode::kWrongPong ? ping->payload + 1 : ping->payload}, id);
    } else if (auto* lookup = std::get_if<transport::Lookup>(&m)) {
      transport::LookupReply r;
      const size_t keys = Results(lookup->keys.size());
      const size_t hits = std::min<size_t>(2, keys);
      r.leading_hits = static_cast<uint32_t>(hits);
      for (size_t i = 0; i < keys; ++i) {
        r.tiers.push_back(i < hits ? transport::WireTier::kHost : transport::WireTier::kNone);
      }
      if (lookup->want_lease && hits > 0) {
        r.lease_id = 99;
        r.lease_ttl_ms = 1000;
      }
      if (mode_ == Mode::kTooManyHits) {
        Result<std::vector<uint8_t>> frame = transport::EncodeFrame(r, id, limits_);
        if (!frame.ok()) return;
        // The body starts with leading_hits (u32 little-endian, docs/block_messages.md §4.3).
        const uint32_t over = static_cast<uint32_t>(keys + 1);
        for (size_t b = 0; b < 4; ++b) {
          (*frame)[transport::kFrameHeaderBytes + b] = static_cast<uint8_t>(over >> (8 * b));
        }
        Send(fd, *frame);
        return;
      }
      Reply(fd, r, id);
    } else if (auto* store = std::get_if<transport::Store>(&m)) {
      transport::StoreReply r;
      r.statuses.assign(Results(store->entries.size()), transport::WireStatus::kOk);
      Reply(fd, r, id);
    } else if (auto* load = std::get_if<transport::Load>(&m)) {
      transport::LoadReply r;
      if (mode_ == Mode::kServeHits) std::this_thread::sleep_for(kLoadDelay);
      for (size_t i = 0; i < Results(load->entries.size()); ++i) {
        const transport::LoadEntry& e = load->entries[i];
        r.outcomes.push_back(mode_ == Mode::kServeHits
                                 ? transport::LoadOutcome{transport::WireStatus::kOk, e.capacity}
                                 : transport::LoadOutcome{transport::WireStatus::kNotFound, 0});
      }
      Reply(fd, r, id);
    } else if (auto* del = std::get_if<transport::Delete>(&m)) {
      transport::DeleteReply r;
      r.statuses.assign(Results(del->keys.size()), transport::WireStatus::kNotFound);
      Reply(fd, r, id);
    } else if (auto* gpu = std::get_if<transport::GpuExport>(&m)) {
      if (mode_ != Mode::kServeGpuExport && mode_ != Mode::kShortReplies) return;
      transport::GpuExportReply r;
      r.entries.assign(Results(gpu->keys.size()),
                       transport::GpuExportEntry{transport::WireStatus::kNotFound});
      Reply(fd, r, id);
    } else if (std::holds_alternative<transport::ReleaseLease>(m)) {
      Reply(fd, transport::ReleaseLeaseReply{}, id);
    } else if (auto* release = std::get_if<transport::ReleaseMemory>(&m)) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        released_.push_back(release->remote_key);
      }
      Reply(fd, transport::ReleaseMemoryReply{}, id);
    } else if (std::holds_alternative<transport::Stats>(m)) {
      transport::StatsReply r;
      r.entries = {{"host.used_bytes", uint64_t{1024}},
                   {"host.capacity_bytes", uint64_t{4096}},
                   {"store.hit_ratio", 0.5}};
      Reply(fd, r, id);
    }
  }

  const Mode mode_;
  const std::string token_;
  const transport::ProtocolLimits limits_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  mutable std::mutex mu_;
  std::vector<transport::MessageType> seen_;
  std::vector<std::vector<uint8_t>> released_;
  transport::Hello hello_;
  std::vector<transport::Hello> hellos_;
  std::optional<MemorySocketOffer> offer_;
  // Used by the server thread only; the engine goes after the thread is joined.
  std::unique_ptr<transport::TransferEngine> engine_;
  std::array<uint8_t, 32> worker_token_{};
  std::thread thread_;
};

// A free loopback port (bound, then released): connecting to it is refused.
inline uint16_t UnusedPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

}  // namespace kvault::testing
