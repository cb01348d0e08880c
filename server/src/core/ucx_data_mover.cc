// UcxDataMover (ucx_data_mover.h).

#include "core/ucx_data_mover.h"

#include <utility>

namespace kvault::server {

UcxDataMover::UcxDataMover(std::vector<transport::TransferEngine*> engines)
    : engines_(std::move(engines)) {}

transport::TransferEngine& UcxDataMover::EngineOf(transport::PeerId peer) const {
  return *engines_[peer % engines_.size()];
}

Result<transport::TransferEngine*> UcxDataMover::Route(transport::TransferBatch& batch) const {
  const size_t n = engines_.size();
  if (batch.transfers.empty()) return engines_[0];
  const size_t index = batch.transfers[0].peer % n;
  for (transport::Transfer& t : batch.transfers) {
    if (t.peer % n != index) {
      return Status::InvalidArgument("a transfer batch names peers of different UCX workers");
    }
    t.peer /= n;
  }
  return engines_[index];
}

Result<transport::PeerId> UcxDataMover::Connect(
    std::span<const uint8_t> worker_address,
    const std::optional<transport::ControlConnection>& connection,
    const transport::WorkerProof& proof) {
  const size_t n = engines_.size();
  const size_t index = next_engine_.fetch_add(1) % n;
  KVAULT_ASSIGN_OR_RETURN(transport::PeerId local,
                          engines_[index]->Connect(worker_address, connection, proof));
  return local * n + index;
}

void UcxDataMover::Disconnect(transport::PeerId peer) {
  (void)EngineOf(peer).Disconnect(peer / engines_.size());
}

std::vector<Status> UcxDataMover::Run(transport::TransferBatch batch) {
  Result<transport::TransferEngine*> engine = Route(batch);
  if (!engine.ok()) return std::vector<Status>(batch.transfers.size(), engine.status());
  return (*engine)->Run(std::move(batch));
}

std::vector<Status> UcxDataMover::RunInOrder(transport::TransferBatch batch,
                                             const std::function<void(size_t)>& arrived) {
  Result<transport::TransferEngine*> engine = Route(batch);
  if (!engine.ok()) return std::vector<Status>(batch.transfers.size(), engine.status());
  return (*engine)->Run(std::move(batch), arrived);
}

void UcxDataMover::ForgetRemoteKey(transport::PeerId peer, std::span<const uint8_t> remote_key) {
  EngineOf(peer).ForgetRemoteKey(peer / engines_.size(), remote_key);
}

}  // namespace kvault::server
