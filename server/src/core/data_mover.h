#pragma once
// DataMover: the service core's view of the data plane (DESIGN.md §8). The core decides which
// bytes move where; a DataMover moves them between the server's memory and memory a client
// registered, by one-sided GET (store) and PUT (load). kvaultd uses UcxDataMover (UCX's
// TransferEngine); unit tests of the core use a fake that copies within one process.
//
// Thread-safety: implementations are called from many control-plane threads at once.

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <vector>

#include "kvault/common/result.h"
#include "kvault/transport/local/process_memory.h"
#include "kvault/transport/local/region_file.h"
#include "kvault/transport/ucx/control_connection.h"
#include "kvault/transport/ucx/transfer.h"
#include "kvault/transport/ucx/worker_proof.h"

namespace kvault::server {

class DataMover {
 public:
  virtual ~DataMover() = default;

  // Connects to a client's data-plane worker (the address from its Hello) and sends it `proof`
  // (transport/ucx/worker_proof.h), which the client returns on its control connection to show
  // the worker is its own; `connection` is its control connection when known, against which the
  // remote keys it sends are checked. InvalidArgument or Corruption for malformed bytes;
  // Unavailable when unreachable.
  virtual Result<transport::PeerId> Connect(
      std::span<const uint8_t> worker_address,
      const std::optional<transport::ControlConnection>& connection,
      const transport::WorkerProof& proof) = 0;

  // Connects a client process on this host by the memory it handed over, for the
  // process-memory data plane (transport/local/process_memory.h): the server then copies
  // straight to and from that memory, and no worker proof is needed. Unsupported when this mover
  // has no such data plane (the default). `uid`: the user who handed it over (its regions count
  // against that user's share).
  virtual Result<transport::PeerId> AttachProcess(transport::ProcessMemory memory, uint32_t uid);

  // Adds one region of an attached process's memory (AttachProcess): the file whose bytes
  // [0, file.length()) the process maps at `base`; transfers that lie wholly inside the region
  // then copy through the file (transport/local/region_file.h). NotFound for a peer this mover
  // does not know; Unsupported when the peer's mover has no such data plane (the default, and a
  // UCX peer's); the mover's own refusals (ProcessDataMover::AttachRegion).
  virtual Status AttachRegion(transport::PeerId peer, uint64_t base, transport::RegionFile file);

  // Forgets a peer; its transfers still in flight fail. Unknown ids are ignored.
  virtual void Disconnect(transport::PeerId peer) = 0;

  // Runs every transfer of `batch` and returns one status per transfer, in order, once all have
  // completed or failed; never later than shortly after batch.deadline (late transfers fail, see
  // transport::IsDeadlineExceeded). A failed transfer fails only itself.
  virtual std::vector<Status> Run(transport::TransferBatch batch) = 0;
  // As Run, and calls `arrived(i)` on the calling thread for each GET i whose bytes are in
  // place, in index order, skipping failed transfers and GETs it handed to batch.copy_mapped
  // (whose copier saw the bytes; copy_mapped, if set, also runs on the calling thread). An
  // implementation that can calls it while later transfers still move, so work on the bytes
  // overlaps the transfer; this default calls it after Run. `batch.on_arrival` is the mover's
  // own and is replaced.
  virtual std::vector<Status> RunInOrder(transport::TransferBatch batch,
                                         const std::function<void(size_t)>& arrived);

  // Forgets what the mover derived from the sealed `remote_key` of `peer` (an unpacked key, and
  // with shared memory its mapping of the client's region; for a process, a region attached
  // with the key's base and length): the client is about to deregister
  // that memory, and a later registration may pack to the same bytes. Transfers already running
  // keep their key until they finish; every Run that starts after this call unpacks the bytes
  // afresh. Unknown peers and keys are ignored. Returns without waiting for transfers.
  virtual void ForgetRemoteKey(transport::PeerId peer, std::span<const uint8_t> remote_key) = 0;
};

}  // namespace kvault::server
