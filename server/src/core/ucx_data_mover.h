#pragma once
// UcxDataMover: the DataMover of kvaultd, over transport::TransferEngines (UCX one-sided GET/PUT,
// each engine a UCX worker with its own progress thread). Clients are spread over the engines
// round-robin as they connect; a peer id names its engine (id = engine's id * engines + index),
// and every request of a client runs on its engine. Thread-safe, as the engines.

#include <atomic>
#include <memory>
#include <vector>

#include "core/data_mover.h"
#include "kvault/transport/ucx/transfer_engine.h"

namespace kvault::server {

class UcxDataMover final : public DataMover {
 public:
  // The engines (at least one) must outlive the mover.
  explicit UcxDataMover(std::vector<transport::TransferEngine*> engines);

  Result<transport::PeerId> Connect(std::span<const uint8_t> worker_address,
                                    const std::optional<transport::ControlConnection>& connection,
                                    const transport::WorkerProof& proof) override;
  void Disconnect(transport::PeerId peer) override;
  std::vector<Status> Run(transport::TransferBatch batch) override;
  // Overlaps: `arrived` runs on the caller's thread for each GET as it lands, while later
  // transfers still move; GETs of mapped client memory go to batch.copy_mapped on the caller's
  // thread instead (TransferEngine::Run).
  std::vector<Status> RunInOrder(transport::TransferBatch batch,
                                 const std::function<void(size_t)>& arrived) override;
  void ForgetRemoteKey(transport::PeerId peer, std::span<const uint8_t> remote_key) override;

 private:
  // The engine of the batch's peer, with the transfers' peers rewritten to that engine's ids;
  // InvalidArgument when the transfers name peers of different engines.
  Result<transport::TransferEngine*> Route(transport::TransferBatch& batch) const;
  transport::TransferEngine& EngineOf(transport::PeerId peer) const;

  const std::vector<transport::TransferEngine*> engines_;
  std::atomic<size_t> next_engine_{0};
};

}  // namespace kvault::server
