#pragma once
// Where the engine cache of `kvault-bench paged` lives, and the stages that touch it
// (paged_bench.h): host memory with the CPU codecs (paged_bench_run.cc), device memory with the
// CUDA kernels and copies through page-locked staging (paged_bench_cuda.cc). Each holds three
// caches of the same shape: the source StorePaged reads (filled with realistic KV), the one
// LoadPaged writes, and the reference the stage-alone decode writes. Main thread only.

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kvault/common/block_key.h"
#include "kvault/common/result.h"
#include "kvault/kv_store.h"
#include "kvault/paged_kv.h"
#include "paged_bench.h"

namespace kvault::bench::paged {

// Seconds of each stage of one repetition, appended by the memory.
struct StageSeconds {
  std::vector<double> encode, to_host, to_device, decode;
};

class PagedMemory {
 public:
  virtual ~PagedMemory() = default;

  const PagedKvCache& source() const { return source_; }
  const PagedKvCache& loaded() const { return loaded_; }
  // The stream StorePaged and LoadPaged run on (GPU); nullptr for host memory.
  virtual void* stream() const = 0;

  // Store stages before the transfer: blocks 0.. of the source cache into the sealed objects
  // `objects` (registered memory) under `keys`. Host: encode. GPU: gather + encode on the device
  // (encode), then copy to host staging and seal (to_host).
  // `wave`: blocks per wave, as the pipeline cuts them (the GPU launches its kernels per wave).
  virtual Status EncodeStages(std::span<const BlockKey> keys,
                              std::span<const std::span<uint8_t>> objects, uint32_t wave,
                              StageSeconds& t) = 0;
  // Load stages after the transfer: the fetched objects into the reference cache. Host: verify
  // and decode (decode). GPU: verify and copy to the device (to_device), then decode and scatter
  // on the device (decode).
  virtual Status DecodeStages(std::span<const BlockKey> keys,
                              std::span<const std::span<const uint8_t>> objects, uint32_t wave,
                              StageSeconds& t) = 0;
  // Waits for what was queued on stream() (GPU: LoadPaged's decodes); host: nothing to wait for.
  virtual Status Synchronize() { return Status::Ok(); }
  // Zeroes the cache LoadPaged writes.
  virtual Status ClearLoaded() = 0;
  // Where the loaded cache first differs from the reference ("" when equal).
  virtual Result<std::string> LoadedVsReference() = 0;
  // Bytes per second of one large copy from page-locked host memory to the device (GPU: the
  // baseline of the 1.4x target); 0 for host memory.
  virtual Result<double> PinnedHostToDeviceBytesPerSecond() = 0;

 protected:
  PagedKvCache source_, loaded_;
};

// The engine cache's description for `c` (vLLM NHD, fp16, one tensor per layer, the sequence on
// engine blocks 0, 1, 2, ...), without tensors.
PagedKvCache DescribeCache(const Config& c, MemoryKind memory);
// One block of the realistic generator's KV, per layer and K/V: [layers][2][block_tokens *
// kv_heads * head_dim] fp16, copied into every block of a cache by the memories.
Result<std::vector<uint16_t>> RealisticBlock(const Config& c);
// Fills a source cache with RealisticBlock(c) in every block: calls copy(layer, element offset in
// that layer's tensor, source, element count) for each block, layer and K/V half, stopping at
// the first error.
Status FillSource(const Config& c,
                  const std::function<Status(uint32_t, uint64_t, const uint16_t*, size_t)>& copy);

Result<std::unique_ptr<PagedMemory>> MakeHostMemory(const Config& c, const KvBlockCodec& codec);
// Unavailable without a CUDA device (or in a build without CUDA).
Result<std::unique_ptr<PagedMemory>> MakeCudaMemory(const Config& c, const KvBlockCodec& codec);

}  // namespace kvault::bench::paged
