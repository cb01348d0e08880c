#pragma once
// Client-side codecs over host KV (DESIGN.md §6, §9): quantize a sequence's KV into block objects
// with the CPU codecs, store them, and load and dequantize them back, optionally one layer range.
//
//   KvBlockCodec  pure: one block <-> one sealed object (block_format.h) for a fixed shape and
//                 codec spec. No client, no I/O; immutable, so thread-safe.
//   KvStore       a KvBlockCodec bound to a Client and a bounded, reused staging region: encodes
//                 full blocks into staging and stores them; loads objects (or a layer range of
//                 each) into staging and decodes them into the caller's KV view.
//
// Host KV is described by kernels::PagedKvView (kv_view.h): the contiguous
// [layers][2][tokens][kv_heads][head_dim] form, or an engine's paged layout. Block i of a sequence
// is tokens [i * block_tokens, (i + 1) * block_tokens); only full blocks are stored (DESIGN.md §4)
// and block 0 carries the spec's sink tokens.

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "kvault/client.h"
#include "kvault/common/block_format.h"
#include "kvault/common/block_key.h"
#include "kvault/common/dtype.h"
#include "kvault/kernels/codec_spec.h"
#include "kvault/kernels/kv_view.h"

namespace kvault {

// The shape and codec of a model shard's blocks, as stored.
struct KvBlockFormat {
  uint32_t num_layers = 0;
  uint32_t kv_heads = 0;
  uint32_t head_dim = 0;  // a multiple of 8; a power of two for `rot`
  DType dtype = DType::kF16;
  uint32_t block_tokens = 16;
  // Codec spec (docs/codecs.md): "raw", "fp8", "int8", "k=int4,v=int2", "int2,g=32,rot,sink=4",
  // "k=int4,v=int2;layers=0-1:int8". Default "fp8".
  std::string codec = "fp8";
  // The namespace digest written into every block header (NamespaceDigest of the namespace the
  // keys were chained from).
  BlockKey ns_digest{};
};

// An object byte range: what a LoadDestination asks for.
struct ByteRange {
  uint64_t offset = 0;
  uint64_t length = 0;
};

class KvBlockCodec {
 public:
  // InvalidArgument for a bad spec, a spec that does not fit the shape, or a bad shape.
  static Result<KvBlockCodec> Create(const KvBlockFormat& format);

  const KvBlockFormat& format() const { return format_; }
  // Bytes of block `index`'s object (block 0 may differ: sink tokens); 0 for an index whose
  // tokens do not fit in uint64 (FirstToken).
  uint64_t ObjectBytes(uint64_t index) const;
  // Bytes of every object's header (fixed part plus one entry per layer).
  uint32_t HeaderBytes() const;

  // The first token of block `index` (index * block_tokens), after checking that the block's
  // tokens [first, first + block_tokens) end within `tokens`, the tokens a view or tensor holds:
  // InvalidArgument when they lie past them or their end does not fit in uint64. Every call
  // that takes a block index checks it here.
  Result<uint64_t> FirstToken(uint64_t index, uint64_t tokens) const;

  // Encodes block `index` of `view` under `key` into `out` (exactly ObjectBytes(index) bytes),
  // sealed. InvalidArgument for a view of another shape, a block past the view's tokens, or a
  // wrong `out` size.
  Status Encode(const kernels::PagedKvView& view, uint64_t index, const BlockKey& key,
                std::span<uint8_t> out) const;
  // Verifies a whole object (checksum, `key` inside, shape of this format and position `index`)
  // and decodes it into block `index` of `view`. Corruption when verification fails; nothing is
  // written then.
  Status Decode(std::span<const uint8_t> object, uint64_t index, const BlockKey& key,
                const kernels::PagedKvView& view) const;

  // The object bytes that hold layers [first, first + count) of block `index`. InvalidArgument
  // for an empty or out-of-range layer range.
  Result<ByteRange> LayerRange(uint64_t index, uint32_t first, uint32_t count) const;
  // Decodes layers [first, first + count) of block `index` from the object's header (its first
  // HeaderBytes()) and the bytes of LayerRange(index, first, count) into the same layers of
  // `view`. The header must equal, checksum aside, the one this codec writes for (index, key),
  // else Corruption (another codec, shape or key). A range cannot be checked against the
  // object's checksum; the daemon verifies whole objects when it stores and reads them.
  Status DecodeLayers(std::span<const uint8_t> header, std::span<const uint8_t> layers,
                      uint64_t index, const BlockKey& key, uint32_t first, uint32_t count,
                      const kernels::PagedKvView& view) const;

  // The pieces of Decode and DecodeLayers, for decoders that run elsewhere (the GPU):
  // The descriptor of block `index` under `key`; InvalidArgument when the block's token range
  // does not fit in uint64.
  Result<BlockDescriptor> Descriptor(uint64_t index, const BlockKey& key) const;
  // Parses and verifies a whole object (checksum, key, shape and position), as Decode does.
  Result<BlockView> VerifyObject(std::span<const uint8_t> object, uint64_t index,
                                 const BlockKey& key) const;
  // VerifyObject, and the object was written by this codec: its header is the one VerifyHeader
  // expects, else Corruption. For decoders that decode with this codec's descriptor rather than
  // the object's own (the GPU path): an object of another codec of the same size (int8 and fp8)
  // would otherwise decode into wrong KV.
  Result<BlockView> VerifyOwnObject(std::span<const uint8_t> object, uint64_t index,
                                    const BlockKey& key) const;
  // Checks a stored header against the one this codec writes for (index, key), checksum aside,
  // as DecodeLayers does: Corruption when it differs, InvalidArgument for a wrong size.
  Status VerifyHeader(std::span<const uint8_t> header, uint64_t index, const BlockKey& key) const;
  // The descriptor of the payload bytes LayerRange(index, first, count) returns: block `index`
  // reduced to those layers (decode it into a view whose layer_bases start at layer `first`).
  Result<BlockDescriptor> LayerDescriptor(uint64_t index, const BlockKey& key, uint32_t first,
                                          uint32_t count) const;

 private:
  KvBlockCodec(KvBlockFormat format, kernels::CodecSpec spec)
      : format_(std::move(format)), spec_(std::move(spec)) {}

  KvBlockFormat format_;
  kernels::CodecSpec spec_;
};

struct KvStoreOptions {
  KvBlockFormat format;
  // Registered staging memory, allocated once and reused; bounds the memory a transfer uses.
  // Blocks are moved in waves of what fits. Must hold at least one object. Default 64 MiB.
  size_t staging_bytes = size_t{64} << 20;
};

// The outcome of a KvStore transfer.
struct KvTransferResult {
  // OK when every wave got the daemon's answer; otherwise why one did not (its keys and all
  // later ones then carry that status).
  Status status;
  std::vector<Status> key_status;  // one per key
  // Keys [0, leading_ok) were stored or loaded (and decoded) successfully.
  size_t leading_ok = 0;
};

// Thread-safety: thread-safe; calls on one KvStore run one at a time (one staging region).
class KvStore {
 public:
  // `client` must outlive the KvStore. Errors from KvBlockCodec::Create and
  // Client::AllocateMemory; InvalidArgument when staging_bytes cannot hold one object.
  static Result<std::unique_ptr<KvStore>> Create(Client& client, const KvStoreOptions& options);

  const KvBlockCodec& codec() const { return codec_; }

  // Encodes blocks [first_block, keys.size()) of `view` and stores them under those keys; blocks
  // before first_block are taken as stored (typically LookupPrefix's leading hits: the daemon
  // holds them) and are neither encoded nor sent; their key_status is OK. The deadline bounds
  // the whole call (default: now + request_timeout per wave). InvalidArgument for every key when
  // first_block > keys.size().
  KvTransferResult StoreBlocks(const kernels::PagedKvView& view, std::span<const BlockKey> keys,
                               std::optional<Deadline> deadline = std::nullopt,
                               size_t first_block = 0);

  // Loads the blocks of `keys` (normally LookupPrefix's leading hits, with its lease) and decodes
  // block i into tokens [i * block_tokens, (i + 1) * block_tokens) of `view`. With `layers`,
  // only layers [first, first + count) are fetched and written; other layers are untouched.
  // A block that fails (miss, transfer, verification) is not written.
  KvTransferResult LoadBlocks(const Lease& lease, std::span<const BlockKey> keys,
                              const kernels::PagedKvView& view,
                              std::optional<std::pair<uint32_t, uint32_t>> layers = std::nullopt,
                              std::optional<Deadline> deadline = std::nullopt);

 private:
  KvStore(Client& client, KvBlockCodec codec, size_t staging_bytes);
  // The staging region, replaced when a transfer that may still touch it was abandoned.
  Result<MemoryRegion*> Staging();
  // Retires the staging region (a transfer that may still touch it was abandoned) through
  // Client::RetireMemory; the next call allocates another.
  void RetireStaging();

  Client& client_;
  const KvBlockCodec codec_;
  const size_t staging_bytes_;
  std::mutex mu_;
  MemoryRegion staging_;
};

}  // namespace kvault
