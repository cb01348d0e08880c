#pragma once
// UcxDataMover: the DataMover of kvaultd, over transport::TransferEngine (UCX one-sided GET/PUT
// from a dedicated progress thread). Thread-safe, as the engine.

#include <memory>

#include "core/data_mover.h"
#include "kvault/transport/ucx/transfer_engine.h"

namespace kvault::server {

class UcxDataMover final : public DataMover {
 public:
  // `engine` must outlive the mover.
  explicit UcxDataMover(transport::TransferEngine& engine) : engine_(engine) {}

  Result<transport::PeerId> Connect(std::span<const uint8_t> worker_address) override;
  void Disconnect(transport::PeerId peer) override;
  std::vector<Status> Run(transport::TransferBatch batch) override;
  // Overlaps: the engine reports each GET as it lands and `arrived` runs on the caller's thread
  // while later transfers still move.
  std::vector<Status> RunInOrder(transport::TransferBatch batch,
                                 const std::function<void(size_t)>& arrived) override;
  void ForgetRemoteKey(transport::PeerId peer, std::span<const uint8_t> remote_key) override;

 private:
  transport::TransferEngine& engine_;
};

}  // namespace kvault::server
