// DataPlanes (data_planes.h).

#include "core/data_planes.h"

#include <utility>

#include "core/process_data_mover.h"

namespace kvault::server {

DataMover* DataPlanes::MoverOf(transport::PeerId peer) const {
  return (peer & ProcessDataMover::kPeerBit) != 0 ? process_ : ucx_;
}

Result<transport::PeerId> DataPlanes::Connect(
    std::span<const uint8_t> worker_address,
    const std::optional<transport::ControlConnection>& connection,
    const transport::WorkerProof& proof) {
  if (ucx_ == nullptr) return Status::Unsupported("this server has no UCX data plane");
  return ucx_->Connect(worker_address, connection, proof);
}

Result<transport::PeerId> DataPlanes::AttachProcess(transport::ProcessMemory memory, uint32_t uid) {
  if (process_ == nullptr) return Status::Unsupported("the process-memory data plane is off");
  return process_->AttachProcess(std::move(memory), uid);
}

Status DataPlanes::AttachRegion(transport::PeerId peer, uint64_t base, transport::RegionFile file) {
  DataMover* mover = MoverOf(peer);
  if (mover == nullptr) return Status::Unsupported("the process-memory data plane is off");
  return mover->AttachRegion(peer, base, std::move(file));
}

void DataPlanes::Disconnect(transport::PeerId peer) {
  if (DataMover* mover = MoverOf(peer)) mover->Disconnect(peer);
}

std::vector<Status> DataPlanes::Run(transport::TransferBatch batch) {
  DataMover* mover = batch.transfers.empty() ? nullptr : MoverOf(batch.transfers[0].peer);
  if (mover == nullptr) {
    return std::vector<Status>(batch.transfers.size(),
                               Status::Unavailable("the peer's data plane is off"));
  }
  return mover->Run(std::move(batch));
}

std::vector<Status> DataPlanes::RunInOrder(transport::TransferBatch batch,
                                           const std::function<void(size_t)>& arrived) {
  DataMover* mover = batch.transfers.empty() ? nullptr : MoverOf(batch.transfers[0].peer);
  if (mover == nullptr) {
    return std::vector<Status>(batch.transfers.size(),
                               Status::Unavailable("the peer's data plane is off"));
  }
  return mover->RunInOrder(std::move(batch), arrived);
}

void DataPlanes::ForgetRemoteKey(transport::PeerId peer, std::span<const uint8_t> remote_key) {
  if (DataMover* mover = MoverOf(peer)) mover->ForgetRemoteKey(peer, remote_key);
}

}  // namespace kvault::server
