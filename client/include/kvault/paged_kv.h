#pragma once
// StorePaged / LoadPaged (DESIGN.md §9, docs/client.md "Paged KV"): move an inference engine's
// paged KV cache to and from kvaultd, quantizing on the way out and dequantizing on the way in.
//
//   auto paged = kvault::PagedKvStore::Create(*client, {.cache = cache, .block_tokens = 256,
//                                                       .codec = "fp8", .ns_digest = ns});
//   kvault::PagedStoreHandle s = (*paged)->StorePaged(sequence, {.stream = stream});
//   ...
//   kvault::LookupResult hit = client->LookupPrefix(keys, {.want_lease = true});
//   kvault::PagedLoadHandle l = (*paged)->LoadPaged(hit.lease, sequence, hit.leading_hits,
//                                                   {.stream = stream});
//   for (uint32_t layer = 0; layer < layers; ++layer) {
//     l.WaitLayer(layer);          // layer's KV is written (host) or queued on `stream` (GPU)
//     RunAttention(layer);
//   }
//
// The cache is device memory (MemoryKind::kCuda: gather + encode and decode + scatter run as CUDA
// kernels, staged through page-locked host memory) or host memory (kHost: the CPU codecs, what
// CI tests). Both write the same bytes: the CPU reference's (docs/codecs.md).
//
// A kvault block spans block_tokens / engine_block_tokens engine blocks. Only full kvault blocks
// are stored. Transfers run in waves through `pipeline_depth` staging buffers: while the daemon
// moves one wave, the next is encoded (store) or the previous one decoded (load). Staging memory
// is bounded by staging_bytes (host, page-locked) plus as much device memory on the GPU path.
//
// Calls return at once; a PagedKvStore runs its transfers one at a time, in call order, on its
// own thread. Thread-safety: PagedKvStore and the handles are thread-safe. The Client must
// outlive the PagedKvStore; destroying the store cancels what has not started and waits for the
// rest.

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvault/client.h"
#include "kvault/common/block_key.h"
#include "kvault/common/dtype.h"
#include "kvault/common/result.h"
#include "kvault/handles.h"
#include "kvault/kernels/kv_view.h"

namespace kvault {

namespace client_internal {
class PagedOpState;
class PagedPipeline;
}  // namespace client_internal

enum class MemoryKind : uint8_t { kHost = 0, kCuda = 1 };
// "host", "cuda".
std::string_view MemoryKindName(MemoryKind kind);

// The engine's KV cache, as the engine allocated it.
struct PagedKvCache {
  MemoryKind memory = MemoryKind::kHost;
  // vLLM flash (NHD, HND), FlashInfer (NHD, HND) or contiguous; see kernels/kv_view.h.
  kernels::KvLayout layout = kernels::KvLayout::kVllmNhd;
  DType dtype = DType::kF16;  // kF16 or kBF16
  uint32_t num_layers = 0;
  uint32_t kv_heads = 0;
  uint32_t head_dim = 0;
  // Tokens per engine block (vLLM block_size, FlashInfer page_size). For kContiguous: the
  // tensor's token capacity, with engine_num_blocks = 1 (else Create fails) and block ids {0}.
  uint32_t engine_block_tokens = 16;
  // Blocks in the cache: every block id must be below it.
  uint32_t engine_num_blocks = 0;
  // num_layers pointers (one tensor per layer), or one pointer to all layers stacked with layer
  // i at i * LayerElements() 16-bit elements.
  std::vector<void*> tensors{};

  // 16-bit elements of one layer: 2 * engine_num_blocks * engine_block_tokens * kv_heads *
  // head_dim.
  uint64_t LayerElements() const;
};

struct PagedKvOptions {
  PagedKvCache cache;
  // Tokens per kvault block: a multiple of cache.engine_block_tokens (any value for
  // kContiguous). Default 256.
  uint32_t block_tokens = 256;
  // Codec spec (docs/codecs.md). Default "fp8".
  std::string codec = "fp8";
  // Namespace digest written into every block header (keys.md).
  BlockKey ns_digest{};
  // Page-locked host staging in all, split into pipeline_depth buffers; each must hold one
  // block object. The GPU path allocates as much device memory for encoded payloads. 64 MiB.
  size_t staging_bytes = size_t{64} << 20;
  // Staging buffers (waves in flight at once); 2 = double buffering. At least 1.
  uint32_t pipeline_depth = 2;
  // GPU path: a load with a lease first asks the daemon for CUDA IPC descriptions of the blocks
  // in its gpu tier (Client::ExportGpuBlocks) and decodes the leading ones straight from there,
  // device to device; the rest (or all, when the daemon does not export: storage.gpu_ipc_export
  // off, another host, another GPU) go through host staging. Default true.
  bool gpu_ipc = true;
};

// One sequence of the engine.
struct PagedSequence {
  // The engine's block ids of the sequence, in token order (block ids of a vLLM request, the
  // page indices of a FlashInfer request). Must cover num_tokens.
  std::span<const int32_t> block_ids;
  uint64_t num_tokens = 0;
  // Key chain: keys[i] names tokens [i * block_tokens, (i + 1) * block_tokens). At least one
  // key per full block that is to be moved; extra keys are ignored.
  std::span<const BlockKey> keys;
};

struct PagedStoreOptions {
  // Bounds the whole transfer. Default: now + ClientConfig::request_timeout per wave.
  std::optional<Deadline> deadline{};
  // Look the chain up first (1,024 keys per lookup, fewer under a daemon that takes fewer) and
  // store only the blocks after its leading hits. A failed lookup stores everything. Default true.
  bool skip_stored = true;
  // GPU path: the cudaStream_t on which the engine produced the KV; encoding waits for the work
  // queued on it so far and never blocks it. Ignored for host memory.
  void* stream = nullptr;
};

struct PagedLoadOptions {
  // Bounds the whole transfer. Default: now + ClientConfig::request_timeout per wave.
  std::optional<Deadline> deadline{};
  // GPU path: the cudaStream_t on which copies to the device, decoding and scattering are
  // queued. Ignored for host memory.
  void* stream = nullptr;
  // Layers per wave; 0 = as many as fit one staging buffer. Smaller waves make the first
  // layers ready sooner.
  uint32_t layers_per_wave = 0;
};

// A paged transfer in progress. A cheap shared reference: copies observe the same transfer.
class PagedHandle {
 public:
  // An empty handle: done, status InvalidArgument ("empty handle").
  PagedHandle() = default;

  // Blocks until done or `deadline`. Returns the transfer's status: OK when every wave got the
  // daemon's answer (each block then has its own status), otherwise why it stopped (the blocks
  // it did not finish carry that status). Unavailable ("still in flight") when `deadline` passed
  // first; the handle stays in flight.
  Status Wait(Deadline deadline = Deadline::max()) const;
  bool Poll() const;
  // True when the call refused its input before the transfer started (Wait() says why); a
  // transfer that stopped later, however soon, is never refused(). True for an empty handle.
  bool refused() const;
  // Stops the transfer before its next wave; unfinished blocks get Unavailable ("cancelled").
  void Cancel();

  // Number of blocks the transfer covers (store: full blocks with a key; load: `blocks`).
  size_t size() const;
  // Block i's status: OK, NotFound (miss), IoError, Corruption, Unavailable (not attempted
  // because an earlier block failed, deadline, cancelled, ...). Before done: what its wave
  // already produced, else Unavailable ("in flight").
  Status key_status(size_t i) const;
  // Blocks [0, leading_ok) succeeded (stored or already stored; loaded and decoded).
  size_t leading_ok() const;

 protected:
  explicit PagedHandle(std::shared_ptr<client_internal::PagedOpState> state)
      : state_(std::move(state)) {}
  std::shared_ptr<client_internal::PagedOpState> state_;
  friend class PagedKvStore;
};

class PagedStoreHandle : public PagedHandle {
 public:
  PagedStoreHandle() = default;
  // Leading blocks found already stored (skip_stored) and not sent again.
  size_t skipped() const;
  // Blocks until the engine's KV is no longer read (every block encoded into staging) or
  // `deadline`; true when released. From then on the engine may reuse its blocks.
  bool WaitSourceReleased(Deadline deadline = Deadline::max()) const;

 private:
  using PagedHandle::PagedHandle;
  friend class PagedKvStore;
};

class PagedLoadHandle : public PagedHandle {
 public:
  PagedLoadHandle() = default;
  // Blocks until layer `layer` is ready for every block that loads, or the transfer ends, or
  // `deadline`. Host path: the KV of that layer is written. GPU path: its decode and scatter are
  // queued on the load's stream (work queued there afterwards sees the KV; other streams wait for
  // layer_event). Returns OK when the layer is ready, the transfer's status when it ended without
  // it, Unavailable ("still in flight") at the deadline. InvalidArgument for a layer out of range.
  // A layer reported ready is usable for the blocks that end within leading_ok(). Blocks past
  // leading_ok() hold no usable KV: with several layer waves, a later wave can find a block
  // missing (evicted meanwhile, without a lease) after an earlier wave wrote that block's and
  // later blocks' first layers; the engine recomputes them, as for any block past the prefix.
  Status WaitLayer(uint32_t layer, Deadline deadline = Deadline::max()) const;
  // GPU path: a cudaEvent_t recorded on the load's stream after layer `layer`'s decode, valid
  // after WaitLayer(layer) returned OK and while the handle lives. nullptr on the host path and
  // for a layer nothing was queued for (no block loaded).
  void* layer_event(uint32_t layer) const;
  // GPU path: leading blocks decoded straight from the daemon's gpu tier through CUDA IPC
  // (PagedKvOptions::gpu_ipc), without host staging; the others came through the staged path.
  // Final once the transfer is done (after Wait), and then at most leading_ok(); set before the
  // first layer is reported. 0 on the host path.
  size_t gpu_tier_blocks() const;

 private:
  using PagedHandle::PagedHandle;
  friend class PagedKvStore;
};

class PagedKvStore {
 public:
  // Validates the cache description and the codec against it (InvalidArgument), allocates and
  // registers the staging memory (the Client's AllocateMemory; page-locked for CUDA where the
  // driver can), and on the GPU path the device staging (Unsupported in a build without CUDA,
  // Unavailable without a device).
  static Result<std::unique_ptr<PagedKvStore>> Create(Client& client,
                                                      const PagedKvOptions& options);
  // Close(), then frees the staging.
  ~PagedKvStore();
  PagedKvStore(const PagedKvStore&) = delete;
  PagedKvStore& operator=(const PagedKvStore&) = delete;

  // Finishes the transfers that have not started with Unavailable ("paged store closed"), waits
  // for the one running (the engine's KV is no longer read or written after it returns), and
  // finishes every later StorePaged and LoadPaged at once the same way. Idempotent; may be called
  // from any thread while others call StorePaged and LoadPaged.
  void Close();

  // Stores the full blocks of `sequence` that have a key, skipping the chain's leading hits
  // (options.skip_stored). The engine's KV must stay unchanged until WaitSourceReleased().
  // Input errors (block ids outside the cache or not covering the tokens, no keys) complete the
  // handle at once with InvalidArgument.
  PagedStoreHandle StorePaged(const PagedSequence& sequence, const PagedStoreOptions& options = {});

  // Loads blocks [0, blocks) of `sequence` (normally LookupPrefix's leading hits, with its lease)
  // into the engine's blocks, layer wave by layer wave. A block that fails is not written, and
  // neither is any block after it (only a prefix is useful). Input errors as StorePaged, and
  // InvalidArgument for more blocks than the sequence has full blocks with keys (that handle
  // holds at most keys.size() blocks, whatever `blocks` asked).
  PagedLoadHandle LoadPaged(const Lease& lease, const PagedSequence& sequence, size_t blocks,
                            const PagedLoadOptions& options = {});

  const PagedKvOptions& options() const;
  // Bytes of block `index`'s object under this store's codec (block 0 may differ: sink tokens).
  uint64_t ObjectBytes(uint64_t index) const;

 private:
  explicit PagedKvStore(std::unique_ptr<client_internal::PagedPipeline> pipeline);
  std::unique_ptr<client_internal::PagedPipeline> pipeline_;
};

}  // namespace kvault
