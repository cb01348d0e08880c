// DataMover's defaults (data_mover.h): RunInOrder runs the whole batch first, then the arrivals;
// AttachProcess and AttachRegion are unsupported.

#include "core/data_mover.h"

#include <utility>

namespace kvault::server {

std::vector<Status> DataMover::RunInOrder(transport::TransferBatch batch,
                                          const std::function<void(size_t)>& arrived) {
  batch.on_arrival = nullptr;
  std::vector<transport::TransferOp> ops;
  ops.reserve(batch.transfers.size());
  for (const transport::Transfer& t : batch.transfers) ops.push_back(t.op);
  std::vector<uint8_t> copied(ops.size(), 0);  // handed to the copier: not an arrival
  if (batch.copy_mapped) {
    batch.copy_mapped = [copy = std::move(batch.copy_mapped), &copied](
                            size_t i, const transport::MappedRemote& remote) {
      copied[i] = 1;
      return copy(i, remote);
    };
  }
  std::vector<Status> statuses = Run(std::move(batch));
  for (size_t i = 0; i < statuses.size(); ++i) {
    if (statuses[i].ok() && ops[i] == transport::TransferOp::kGet && copied[i] == 0) arrived(i);
  }
  return statuses;
}

Result<transport::PeerId> DataMover::AttachProcess(transport::ProcessMemory, uint32_t) {
  return Status::Unsupported("this data plane cannot copy client process memory");
}

Status DataMover::AttachRegion(transport::PeerId, uint64_t, transport::RegionFile) {
  return Status::Unsupported("this data plane cannot copy client process memory");
}

}  // namespace kvault::server
