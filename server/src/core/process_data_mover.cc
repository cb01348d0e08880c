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
      "the process-memory data plane connects by process id, not by UCX "
      "worker address");
}

Result<transport::PeerId> ProcessDataMover::ConnectProcess(
    uint32_t pid, const transport::ControlConnection& connection) {
  const std::string who = "process " + std::to_string(pid);
  // Opened first: the pidfd and the memory then name one process, and the connection is checked
  // against it. Alive after the check, the pid named that process throughout (a pid is reused
  // only once its process has exited and been reaped).
  KVAULT_ASSIGN_OR_RETURN(transport::ProcessMemory memory, transport::ProcessMemory::Open(pid));
  switch (transport::HoldsConnection(pid, connection)) {
    case transport::Holder::kYes:
      break;
    case transport::Holder::kNo:
      return Status::InvalidArgument(who + " does not hold this control connection");
    case transport::Holder::kUnknown:
      return Status::Unsupported("cannot tell whether " + who +
                                 " holds this control connection (another network namespace, "
                                 "or its descriptors are not readable here)");
  }
  if (memory.Exited()) return Status::NotFound(who + " has exited");
  KVAULT_RETURN_IF_ERROR(memory.CheckAccess());
  const transport::PeerId peer = kPeerBit | next_.fetch_add(1);
  std::lock_guard lock(mu_);
  peers_.emplace(peer, std::make_shared<const transport::ProcessMemory>(std::move(memory)));
  return peer;
}

void ProcessDataMover::Disconnect(transport::PeerId peer) {
  std::lock_guard lock(mu_);
  peers_.erase(peer);
}

std::shared_ptr<const transport::ProcessMemory> ProcessDataMover::Find(
    transport::PeerId peer) const {
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
  std::shared_ptr<const transport::ProcessMemory> memory = Find(peer);
  if (memory == nullptr) {
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
    if (std::chrono::steady_clock::now() >= batch.deadline) {
      statuses[i] = Status::Unavailable(std::string(transport::kDeadlineExceededPrefix) +
                                        ": transfer not started before the batch's deadline");
      continue;
    }
    if (t.op == transport::TransferOp::kGet) {
      statuses[i] = memory->Read(t.remote_address,
                                 std::span<uint8_t>(static_cast<uint8_t*>(t.local), t.length));
      if (statuses[i].ok()) arrived(i);
    } else {
      statuses[i] =
          memory->Write(t.remote_address,
                        std::span<const uint8_t>(static_cast<const uint8_t*>(t.local), t.length));
    }
  }
  return statuses;
}

}  // namespace kvault::server
