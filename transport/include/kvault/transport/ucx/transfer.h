#pragma once
// The vocabulary of the data plane's transfers (DESIGN.md §8): the server moves bytes between
// its own memory and memory a client registered, by one-sided GET (store: client -> server) and
// PUT (load: server -> client). Plain value types; thread-compatible.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string_view>
#include <vector>

#include "kvault/common/status.h"

namespace kvault::transport {

// A connected peer of a TransferEngine (from TransferEngine::Connect). Never reused.
using PeerId = uint64_t;
// A memory region registered with a TransferEngine. Never reused.
using RegionId = uint64_t;

enum class TransferOp : uint8_t {
  kGet,  // copy remote [remote_address, +length) into local [local, +length)
  kPut,  // copy local [local, +length) into remote [remote_address, +length)
};

struct Transfer {
  TransferOp op = TransferOp::kGet;
  PeerId peer = 0;
  // Server-side bytes: the destination of a GET, the source of a PUT. Inside memory registered
  // with the engine (used without further work; sub-ranges of a region are fine) or anywhere
  // else (UCX registers it on the fly, which costs time on first use). Must stay valid and
  // untouched by the caller until the batch completes.
  void* local = nullptr;
  // An address inside the client's registered region (as the client sees it).
  uint64_t remote_address = 0;
  size_t length = 0;
  // Index into TransferBatch::remote_keys: the sealed key of the client region that holds
  // [remote_address, +length).
  uint32_t remote_key = 0;
};

// Where the client's bytes of a GET lie when they are mapped into this process
// (TransferBatch::copy_mapped). Valid during the call only.
struct MappedRemote {
  std::span<const uint8_t> bytes;  // as they are mapped here
  // When >= 0, a file that holds the same bytes at `file_offset`, which the copier reads instead
  // of `bytes` (pread): the bytes are not in use again, and reading them through the mapping
  // would map them into this process for nothing (MappedResidency::Admit). A short read means
  // the client cut its memory short.
  int file = -1;
  uint64_t file_offset = 0;
};

struct TransferBatch {
  // Distinct sealed remote keys (UcxMemory::PackRemoteKey) the transfers refer to by index; a
  // request usually has one per client region, shared by all its blocks.
  std::vector<std::vector<uint8_t>> remote_keys;
  std::vector<Transfer> transfers;
  // Transfers not finished by then fail with a deadline-exceeded status (see
  // IsDeadlineExceeded); a batch that arrives after it fails whole without being started. Required:
  // the default (the clock's epoch) fails every transfer with InvalidArgument.
  std::chrono::steady_clock::time_point deadline;
  // Optional: called on the thread driving the engine with the index of each GET as soon as its
  // bytes are in local memory (before the batch's callback, never for a transfer that fails).
  // Lets the caller work on the first blocks while later ones still move. Keep it short and
  // never block in it.
  std::function<void(size_t index)> on_arrival;
  // Optional, for GETs: when a GET's remote bytes are mapped into this process (the client's
  // UCX-allocated memory under the posix or sysv shared-memory transport; UCX's rkey_ptr), the
  // engine posts no UCX request for it and calls this instead, at once, on the thread driving
  // the engine, with the GET's index and where the client's bytes [remote_address, +length) lie
  // (MappedRemote). It must copy them into the GET's local bytes, and may work on them on the
  // way (hash each piece while it is in cache); what it returns is the GET's status. The GET is
  // then complete and on_arrival is not called for it. GETs over other transports move through
  // UCX as usual. The client may write its bytes meanwhile, as during any GET: work on the copy,
  // never on the client's bytes twice. A copy not started by the batch's deadline fails with a
  // deadline-exceeded status instead. With TransferEngine::Submit it may run on any thread that
  // drives the engine (its progress thread or a caller of Run): touch nothing it uses until the
  // batch's callback.
  std::function<Status(size_t index, const MappedRemote& remote)> copy_mapped;
};

// Called exactly once per batch with one status per transfer, in order. Runs on the thread driving
// the engine (its progress thread, or a caller inside TransferEngine::Run): keep it short and
// never block in it. Calling Submit from it is fine; Run, Connect and Disconnect wait for the
// worker and would deadlock.
using TransferCallback = std::function<void(std::vector<Status> statuses)>;

// Deadline expiry is reported as kUnavailable with this message prefix until kvault's
// StatusCode gains a dedicated code; test for it with IsDeadlineExceeded().
inline constexpr std::string_view kDeadlineExceededPrefix = "deadline exceeded";

inline bool IsDeadlineExceeded(const Status& status) {
  return status.code() == StatusCode::kUnavailable &&
         std::string_view(status.message()).substr(0, kDeadlineExceededPrefix.size()) ==
             kDeadlineExceededPrefix;
}

}  // namespace kvault::transport
