// ProcessDataMover (process_data_mover.h).

#include "core/process_data_mover.h"

#include <unistd.h>

#include <chrono>
#include <string>
#include <utility>

namespace kvault::server {

Result<transport::PeerId> ProcessDataMover::Connect(
    std::span<const uint8_t>, const std::optional<transport::ControlConnection>&,
    const transport::WorkerProof&) {
  return Status::Unsupported(
      "the process-memory data plane connects by handed-over memory, not by UCX "
      "worker address");
}

Result<transport::PeerId> ProcessDataMover::AttachProcess(transport::ProcessMemory memory) {
  const transport::PeerId peer = kPeerBit | next_.fetch_add(1);
  auto entry = std::make_shared<Peer>(std::move(memory));
  std::lock_guard lock(mu_);
  peers_.emplace(peer, std::move(entry));
  return peer;
}

void ProcessDataMover::Disconnect(transport::PeerId peer) {
  std::shared_ptr<Peer> gone;
  {
    std::lock_guard lock(mu_);
    auto it = peers_.find(peer);
    if (it == peers_.end()) return;
    gone = std::move(it->second);
    peers_.erase(it);
  }
  gone->disconnected.store(true);  // a batch still running fails its remaining transfers
}

std::shared_ptr<ProcessDataMover::Peer> ProcessDataMover::Find(transport::PeerId peer) const {
  std::lock_guard lock(mu_);
  auto it = peers_.find(peer);
  return it == peers_.end() ? nullptr : it->second;
}

std::vector<Status> ProcessDataMover::Run(transport::TransferBatch batch) {
  return RunInOrder(std::move(batch), [](size_t) {});
}

std::vector<Status> ProcessDataMover::RunInOrder(transport::TransferBatch batch,
                                                 const std::function<void(size_t)>& arrived) {
  const size_t n = batch.transfers.size();
  if (n == 0) return {};
  if (batch.deadline == std::chrono::steady_clock::time_point{}) {
    return std::vector<Status>(n, Status::InvalidArgument("transfer batch has no deadline"));
  }
  // Every transfer of a batch names one client (a request's); others fail alone.
  const transport::PeerId peer = batch.transfers[0].peer;
  std::shared_ptr<Peer> client = Find(peer);
  if (client == nullptr) {
    return std::vector<Status>(
        n, Status::Unavailable("peer " + std::to_string(peer) + " is not connected"));
  }
  std::vector<Status> statuses(n);
  for (size_t i = 0; i < n; ++i) {
    const transport::Transfer& t = batch.transfers[i];
    if (t.peer != peer) {
      statuses[i] = Status::InvalidArgument("a transfer batch names more than one peer");
      continue;
    }
    if (client->disconnected.load()) {
      statuses[i] = Status::Unavailable("peer " + std::to_string(peer) + " was disconnected");
      continue;
    }
    if (std::chrono::steady_clock::now() >= batch.deadline) {
      statuses[i] = Status::Unavailable(std::string(transport::kDeadlineExceededPrefix) +
                                        ": transfer not started before the batch's deadline");
      continue;
    }
    statuses[i] = Copy(client->memory, t);
    if (statuses[i].ok() && t.op == transport::TransferOp::kGet) arrived(i);
  }
  return statuses;
}

Status ProcessDataMover::Copy(const transport::ProcessMemory& memory,
                              const transport::Transfer& t) {
  auto part = [&](uint64_t at, uint64_t length) {
    uint8_t* local = static_cast<uint8_t*>(t.local) + at;
    return t.op == transport::TransferOp::kGet
               ? memory.Read(t.remote_address + at, std::span<uint8_t>(local, length))
               : memory.Write(t.remote_address + at, std::span<const uint8_t>(local, length));
  };
  // Counts this copy while it runs; a helper is only worth waking while no other copy runs.
  struct Copying {
    explicit Copying(std::atomic<int>& n) : n(n), others(n.fetch_add(1)) {}
    ~Copying() { n.fetch_sub(1); }
    std::atomic<int>& n;
    const int others;
  } copying(copying_);
  if (t.length < kSplitBytes || copying.others != 0) return part(0, t.length);
  // The kernel copies page by page through a bounce page, taking the client's mmap lock for
  // each: two threads move about 1.4x what one does here (a scratch program: 1 MiB reads 2.5 ->
  // 3.5 GB/s, writes 2.6 -> 3.6). Under kSplitBytes waking the helper costs more than it saves.
  // Split at a page boundary of the client's addresses, so that no page is the two threads'.
  static const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  const uint64_t first = ((t.remote_address + t.length / 2) & ~(page - 1)) - t.remote_address;
  Status second;
  if (!helper_.TryStartTask([&] { second = part(first, t.length - first); })) {
    return part(0, t.length);
  }
  split_copies_.fetch_add(1, std::memory_order_relaxed);
  // The helper writes `second` and reads `t` and `part` until Wait returns, whatever happens here.
  struct AwaitHelper {
    CopyHelper& helper;
    ~AwaitHelper() { helper.Wait(); }
  };
  Status status;
  {
    AwaitHelper await{helper_};
    status = part(0, first);
  }
  return status.ok() ? second : status;
}

}  // namespace kvault::server
