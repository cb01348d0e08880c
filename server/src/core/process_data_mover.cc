// ProcessDataMover (process_data_mover.h).

#include "core/process_data_mover.h"

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
    if (t.op == transport::TransferOp::kGet) {
      statuses[i] = client->memory.Read(
          t.remote_address, std::span<uint8_t>(static_cast<uint8_t*>(t.local), t.length));
      if (statuses[i].ok()) arrived(i);
    } else {
      statuses[i] = client->memory.Write(
          t.remote_address,
          std::span<const uint8_t>(static_cast<const uint8_t*>(t.local), t.length));
    }
  }
  return statuses;
}

}  // namespace kvault::server
