#pragma once
// DataPlanes: the DataMover kvaultd hands its Service, over UCX (UcxDataMover: clients that
// announced a worker) and over process memory (ProcessDataMover: clients on this host that
// handed their memory over). Each call goes to the mover that made the peer (by
// ProcessDataMover::kPeerBit). Either mover may be absent: its connects are Unsupported.
//
// Thread-safety: as the movers (all members may be called from many threads at once).

#include "core/data_mover.h"

namespace kvault::server {

class DataPlanes final : public DataMover {
 public:
  // Both, when set, must outlive this object.
  DataPlanes(DataMover* ucx, DataMover* process) : ucx_(ucx), process_(process) {}

  Result<transport::PeerId> Connect(std::span<const uint8_t> worker_address,
                                    const std::optional<transport::ControlConnection>& connection,
                                    const transport::WorkerProof& proof) override;
  Result<transport::PeerId> AttachProcess(transport::ProcessMemory memory, uint32_t uid) override;
  Status AttachRegion(transport::PeerId peer, uint64_t base, transport::RegionFile file) override;
  void Disconnect(transport::PeerId peer) override;
  std::vector<Status> Run(transport::TransferBatch batch) override;
  std::vector<Status> RunInOrder(transport::TransferBatch batch,
                                 const std::function<void(size_t)>& arrived) override;
  void ForgetRemoteKey(transport::PeerId peer, std::span<const uint8_t> remote_key) override;

 private:
  // The mover of `peer`, or null when that mover is absent.
  DataMover* MoverOf(transport::PeerId peer) const;

  DataMover* const ucx_;
  DataMover* const process_;
};

}  // namespace kvault::server
