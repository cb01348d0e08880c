#pragma once
// PagedWaveCodec: the seam between the paged pipeline (paged_pipeline.h) and where the engine's
// KV lives. The pipeline decides waves, staging and transfers; a wave codec encodes blocks of the
// engine's cache into sealed objects in host staging, and decodes staged objects (or layer ranges
// of them) back into the cache. Two implementations: host memory with the CPU codecs
// (MakeHostWaveCodec) and device memory with the CUDA kernels (MakeCudaWaveCodec), which write
// the same bytes.
//
// Thread-safety: thread-compatible; the pipeline calls it from its one thread.

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "kvault/common/result.h"
#include "kvault/kernels/gpu_ipc.h"
#include "kvault/kv_store.h"
#include "kvault/paged_kv.h"
#include "paged_op_state.h"

namespace kvault::client_internal {

// Where one block of a load wave sits in host staging.
struct StagedBlock {
  // Whole object (all layers): `object` holds it and is verified with its checksum.
  // Otherwise `header` (the object's first HeaderBytes) and `layers` (LayerRange's bytes).
  std::span<const uint8_t> object;
  std::span<const uint8_t> header;
  std::span<const uint8_t> layers;
};

class PagedWaveCodec {
 public:
  virtual ~PagedWaveCodec() = default;

  // Targets the sequence whose engine blocks are `block_ids` for the calls that follow.
  // InvalidArgument for ids outside the cache or too few ids for `tokens`.
  virtual Status Bind(std::span<const int32_t> block_ids, uint64_t tokens) = 0;

  // Store: from now on reads of the cache see the work queued on `stream` so far (GPU); the
  // stream itself is never blocked.
  virtual Status BeginStore(void* stream) = 0;
  // Encodes blocks [first, first + keys.size()) into sealed objects: objects[i] has exactly
  // the codec's ObjectBytes(first + i) bytes, in host staging buffer `buffer`. Returns when
  // they are sealed.
  virtual Status Encode(uint64_t first, std::span<const BlockKey> keys,
                        std::span<const std::span<uint8_t>> objects, uint32_t buffer) = 0;

  // Load: decodes layers [first_layer, first_layer + layer_count) of blocks [first, first +
  // blocks.size()) from host staging buffer `buffer` into the cache, in block order, stopping at
  // the first block that fails verification. Returns one status per block attempted (the last
  // one failed when fewer than all are OK); blocks after it are untouched. GPU: the copies and
  // kernels are queued on `stream`.
  virtual std::vector<Status> Decode(uint64_t first, std::span<const BlockKey> keys,
                                     uint32_t first_layer, uint32_t layer_count,
                                     std::span<const StagedBlock> blocks, uint32_t buffer,
                                     void* stream) = 0;
  // Load straight from the daemon's gpu tier (CUDA IPC, Client::ExportGpuBlocks): decodes every
  // layer of blocks [first, first + blocks.size()) from the exported device memory on `stream`,
  // in block order, stopping at the first block that cannot be mapped, is on another device, or
  // whose header (read back from the device) is not this codec's for its key and position.
  // Returns one status per block attempted, as Decode. Returns when the decodes are done, so the
  // exported bytes are no longer read (the lease that keeps them may end). Host: Unsupported.
  virtual std::vector<Status> DecodeImported(uint64_t first, std::span<const BlockKey> keys,
                                             std::span<const kernels::GpuIpcExport> blocks,
                                             void* stream) = 0;
  // Layers [first_layer, first_layer + count) are complete: GPU records one new event per layer
  // on `stream` and returns them; host: null.
  virtual Result<PagedOpState::LayerEvents> MarkLayers(uint32_t first_layer, uint32_t count,
                                                       void* stream) = 0;
  // Waits until the device no longer reads host staging buffer `buffer` (GPU; host: no-op), so
  // that it can be refilled.
  virtual Status ReleaseStaging(uint32_t buffer) = 0;
  // Waits until every queued device operation of this codec is done (GPU; host: no-op).
  virtual Status Drain() = 0;
};

// The engine's cache in host memory: the CPU codecs.
Result<std::unique_ptr<PagedWaveCodec>> MakeHostWaveCodec(const PagedKvCache& cache,
                                                          const KvBlockCodec& codec);
// The engine's cache in device memory: the CUDA kernels, with `staging_bytes` of device staging
// split into `buffers` slices. Unsupported in a build without CUDA, Unavailable without a device.
Result<std::unique_ptr<PagedWaveCodec>> MakeCudaWaveCodec(const PagedKvCache& cache,
                                                          const KvBlockCodec& codec,
                                                          size_t staging_bytes, uint32_t buffers);

// One pointer per layer of `cache` (expanding a single stacked tensor), or one pointer for
// kContiguous. InvalidArgument for a wrong pointer count or a null pointer.
Result<std::vector<uint16_t*>> CacheLayerPointers(const PagedKvCache& cache);
// Builds the view of a sequence over `layer_pointers` (host or device addresses).
Status MakeSequenceView(const PagedKvCache& cache, std::span<uint16_t* const> layer_pointers,
                        std::span<const int32_t> block_ids, uint64_t tokens,
                        kernels::PagedKvView& view, kernels::PagedKvViewStorage& storage);

}  // namespace kvault::client_internal
