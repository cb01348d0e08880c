// DataMover::RunInOrder's default (data_mover.h): the whole batch first, then the arrivals.

#include "core/data_mover.h"

#include <utility>

namespace kvault::server {

std::vector<Status> DataMover::RunInOrder(transport::TransferBatch batch,
                                          const std::function<void(size_t)>& arrived) {
  batch.on_arrival = nullptr;
  std::vector<transport::TransferOp> ops;
  ops.reserve(batch.transfers.size());
  for (const transport::Transfer& t : batch.transfers) ops.push_back(t.op);
  std::vector<Status> statuses = Run(std::move(batch));
  for (size_t i = 0; i < statuses.size(); ++i) {
    if (statuses[i].ok() && ops[i] == transport::TransferOp::kGet) arrived(i);
  }
  return statuses;
}

}  // namespace kvault::server
