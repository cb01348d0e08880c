// UcxDataMover (ucx_data_mover.h).

#include "core/ucx_data_mover.h"

#include <future>
#include <utility>

namespace kvault::server {

Result<transport::PeerId> UcxDataMover::Connect(std::span<const uint8_t> worker_address) {
  return engine_.Connect(worker_address);
}

void UcxDataMover::Disconnect(transport::PeerId peer) { (void)engine_.Disconnect(peer); }

std::vector<Status> UcxDataMover::Run(transport::TransferBatch batch) {
  return engine_.Submit(std::move(batch)).get();
}

void UcxDataMover::ForgetRemoteKey(transport::PeerId peer, std::span<const uint8_t> remote_key) {
  engine_.ForgetRemoteKey(peer, remote_key);
}

}  // namespace kvault::server
