// KvBlockCodec and KvStore (kv_store.h).

#include "kvault/kv_store.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <utility>

#include "kvault/kernels/cpu_codec.h"
#include "kvault/kernels/sequence_codec.h"

namespace kvault {
namespace {

constexpr uint64_t kStagingAlignment = 64;
// The checksum field of a block header (docs/block_format.md §2): bytes [16, 24).
constexpr size_t kChecksumOffset = 16;
constexpr size_t kChecksumBytes = 8;

uint64_t AlignUp(uint64_t n) {
  return (n + kStagingAlignment - 1) / kStagingAlignment * kStagingAlignment;
}

kernels::PagedKvView ShapeView(const KvBlockFormat& f) {
  kernels::PagedKvView v;
  v.dtype = f.dtype;
  v.num_layers = f.num_layers;
  v.kv_heads = f.kv_heads;
  v.head_dim = f.head_dim;
  return v;
}

Status CheckShape(const KvBlockFormat& f, const kernels::PagedKvView& view) {
  if (view.num_layers != f.num_layers || view.kv_heads != f.kv_heads ||
      view.head_dim != f.head_dim || view.dtype != f.dtype) {
    return Status::InvalidArgument("KV view shape differs from the block format");
  }
  return Status::Ok();
}

}  // namespace

// --- KvBlockCodec ---

Result<KvBlockCodec> KvBlockCodec::Create(const KvBlockFormat& format) {
  if (format.block_tokens == 0) return Status::InvalidArgument("block_tokens must be positive");
  KVAULT_ASSIGN_OR_RETURN(kernels::CodecSpec spec, kernels::ParseCodecSpec(format.codec));
  if (spec.sink_tokens > format.block_tokens) {
    return Status::InvalidArgument("sink tokens (" + std::to_string(spec.sink_tokens) +
                                   ") exceed block_tokens");
  }
  KvBlockCodec codec(format, std::move(spec));
  // Blocks 0 (with sink tokens) and 1 (without) cover every descriptor this format makes. The
  // block format reports some shapes it cannot hold as OutOfRange (num_layers, kv_heads,
  // block_tokens past its limits, an object over 4 GiB); here each is a bad argument.
  for (uint64_t index : {0, 1}) {
    Result<BlockDescriptor> d = codec.Descriptor(index, BlockKey{});
    const Status shape = d.ok() ? ComputeGeometry(*d).status() : d.status();
    if (!shape.ok()) return Status::InvalidArgument(shape.message());
  }
  return codec;
}

Result<uint64_t> KvBlockCodec::FirstToken(uint64_t index, uint64_t tokens) const {
  const uint64_t block = format_.block_tokens;
  // Block `index` ends at (index + 1) * block, which fits in uint64 when index < max / block.
  const bool fits = index < std::numeric_limits<uint64_t>::max() / block;
  if (fits && (index + 1) * block <= tokens) return index * block;
  const std::string what = "block " + std::to_string(index) + " of " + std::to_string(block);
  if (!fits) return Status::InvalidArgument(what + " tokens: its token range overflows uint64");
  return Status::InvalidArgument(what + " tokens lies past the " + std::to_string(tokens) +
                                 " tokens of the KV");
}

Result<BlockDescriptor> KvBlockCodec::Descriptor(uint64_t index, const BlockKey& key) const {
  KVAULT_ASSIGN_OR_RETURN(const uint64_t first,
                          FirstToken(index, std::numeric_limits<uint64_t>::max()));
  const uint64_t tokens = first + format_.block_tokens;
  return kernels::SequenceBlockDescriptor(ShapeView(format_), tokens, spec_, format_.block_tokens,
                                          index, format_.ns_digest, key);
}

uint64_t KvBlockCodec::ObjectBytes(uint64_t index) const {
  Result<BlockDescriptor> d = Descriptor(index, BlockKey{});
  if (!d.ok()) return 0;
  Result<BlockGeometry> g = ComputeGeometry(*d);
  return g.ok() ? g->total_bytes() : 0;
}

uint32_t KvBlockCodec::HeaderBytes() const {
  return kBlockFixedHeaderBytes + kBlockLayerEntryBytes * format_.num_layers;
}

Status KvBlockCodec::Encode(const kernels::PagedKvView& view, uint64_t index, const BlockKey& key,
                            std::span<uint8_t> out) const {
  KVAULT_RETURN_IF_ERROR(CheckShape(format_, view));
  KVAULT_ASSIGN_OR_RETURN(const uint64_t first, FirstToken(index, view.tokens()));
  KVAULT_ASSIGN_OR_RETURN(BlockDescriptor d, Descriptor(index, key));
  return kernels::EncodeBlockCpu(view, first, d, out);
}

Result<BlockView> KvBlockCodec::VerifyObject(std::span<const uint8_t> object, uint64_t index,
                                             const BlockKey& key) const {
  ParseOptions parse;
  parse.expected_key = &key;
  KVAULT_ASSIGN_OR_RETURN(BlockView block, ParseBlockObject(object, parse));
  const BlockLayout& l = block.descriptor.layout;
  if (l.num_layers != format_.num_layers || l.kv_heads != format_.kv_heads ||
      l.head_dim != format_.head_dim || l.dtype != format_.dtype ||
      l.block_tokens != format_.block_tokens || (index > 0 && l.sink_tokens != 0)) {
    return Status::Corruption("block " + std::to_string(index) +
                              ": object does not fit its position and the block format");
  }
  return block;
}

Result<BlockView> KvBlockCodec::VerifyOwnObject(std::span<const uint8_t> object, uint64_t index,
                                                const BlockKey& key) const {
  KVAULT_ASSIGN_OR_RETURN(BlockView block, VerifyObject(object, index, key));
  const size_t header = std::min<size_t>(HeaderBytes(), object.size());
  Status own = VerifyHeader(object.first(header), index, key);
  if (!own.ok()) {
    return Status::Corruption("block " + std::to_string(index) +
                              ": stored object was written by another codec (" + own.message() +
                              ")");
  }
  return block;
}

Status KvBlockCodec::Decode(std::span<const uint8_t> object, uint64_t index, const BlockKey& key,
                            const kernels::PagedKvView& view) const {
  KVAULT_RETURN_IF_ERROR(CheckShape(format_, view));
  KVAULT_ASSIGN_OR_RETURN(const uint64_t first, FirstToken(index, view.tokens()));
  KVAULT_ASSIGN_OR_RETURN(BlockView block, VerifyObject(object, index, key));
  return kernels::DecodeBlockCpu(block, view, first);
}

Result<ByteRange> KvBlockCodec::LayerRange(uint64_t index, uint32_t first, uint32_t count) const {
  if (count == 0 || first >= format_.num_layers || count > format_.num_layers - first) {
    return Status::InvalidArgument("layer range [" + std::to_string(first) + ", +" +
                                   std::to_string(count) + ") outside " +
                                   std::to_string(format_.num_layers) + " layers");
  }
  KVAULT_ASSIGN_OR_RETURN(BlockDescriptor d, Descriptor(index, BlockKey{}));
  KVAULT_ASSIGN_OR_RETURN(BlockGeometry g, ComputeGeometry(d));
  const uint64_t begin = g.layer_offsets[first];
  const uint64_t end =
      first + count < format_.num_layers ? g.layer_offsets[first + count] : g.payload_bytes;
  return ByteRange{g.header_bytes + begin, end - begin};
}

Status KvBlockCodec::VerifyHeader(std::span<const uint8_t> header, uint64_t index,
                                  const BlockKey& key) const {
  KVAULT_ASSIGN_OR_RETURN(BlockDescriptor d, Descriptor(index, key));
  KVAULT_ASSIGN_OR_RETURN(BlockGeometry g, ComputeGeometry(d));
  if (header.size() != g.header_bytes) {
    return Status::InvalidArgument("header of " + std::to_string(header.size()) +
                                   " bytes, expected " + std::to_string(g.header_bytes));
  }
  // WriteBlockHeader writes only the header bytes of the object it is given.
  std::vector<uint8_t> expected(g.header_bytes);
  WriteBlockHeader(d, g, expected);
  if (std::memcmp(header.data(), expected.data(), kChecksumOffset) != 0 ||
      std::memcmp(header.data() + kChecksumOffset + kChecksumBytes,
                  expected.data() + kChecksumOffset + kChecksumBytes,
                  g.header_bytes - kChecksumOffset - kChecksumBytes) != 0) {
    return Status::Corruption("block " + std::to_string(index) +
                              ": stored header differs from this format's (codec, shape or key)");
  }
  return Status::Ok();
}

Result<BlockDescriptor> KvBlockCodec::LayerDescriptor(uint64_t index, const BlockKey& key,
                                                      uint32_t first, uint32_t count) const {
  KVAULT_RETURN_IF_ERROR(LayerRange(index, first, count).status());
  KVAULT_ASSIGN_OR_RETURN(BlockDescriptor d, Descriptor(index, key));
  BlockDescriptor part = d;
  part.layout.num_layers = count;
  part.layers.assign(d.layers.begin() + first, d.layers.begin() + first + count);
  return part;
}

Status KvBlockCodec::DecodeLayers(std::span<const uint8_t> header, std::span<const uint8_t> layers,
                                  uint64_t index, const BlockKey& key, uint32_t first,
                                  uint32_t count, const kernels::PagedKvView& view) const {
  KVAULT_RETURN_IF_ERROR(CheckShape(format_, view));
  KVAULT_ASSIGN_OR_RETURN(const uint64_t first_token, FirstToken(index, view.tokens()));
  KVAULT_ASSIGN_OR_RETURN(ByteRange range, LayerRange(index, first, count));
  if (layers.size() != range.length) {
    return Status::InvalidArgument("layer decode: range has the wrong size");
  }
  KVAULT_RETURN_IF_ERROR(VerifyHeader(header, index, key));
  BlockView part;
  KVAULT_ASSIGN_OR_RETURN(part.descriptor, LayerDescriptor(index, key, first, count));
  KVAULT_ASSIGN_OR_RETURN(part.geometry, ComputeGeometry(part.descriptor));
  part.payload = layers;
  kernels::PagedKvView sub = view;
  sub.num_layers = count;
  sub.layer_bases = view.layer_bases + first;
  return kernels::DecodeBlockCpu(part, sub, first_token);
}

// --- KvStore ---

Result<std::unique_ptr<KvStore>> KvStore::Create(Client& client, const KvStoreOptions& options) {
  KVAULT_ASSIGN_OR_RETURN(KvBlockCodec codec, KvBlockCodec::Create(options.format));
  const uint64_t largest = std::max(codec.ObjectBytes(0), codec.ObjectBytes(1));
  if (options.staging_bytes < AlignUp(largest)) {
    return Status::InvalidArgument("staging_bytes " + std::to_string(options.staging_bytes) +
                                   " cannot hold one block object of " + std::to_string(largest) +
                                   " bytes");
  }
  std::unique_ptr<KvStore> store(new KvStore(client, std::move(codec), options.staging_bytes));
  KVAULT_RETURN_IF_ERROR(store->Staging().status());
  return store;
}

KvStore::KvStore(Client& client, KvBlockCodec codec, size_t staging_bytes)
    : client_(client), codec_(std::move(codec)), staging_bytes_(staging_bytes) {}

void KvStore::RetireStaging() {
  client_.RetireMemory(std::move(staging_));
  staging_ = MemoryRegion();
}

Result<MemoryRegion*> KvStore::Staging() {
  if (!staging_.valid()) {
    KVAULT_ASSIGN_OR_RETURN(staging_, client_.AllocateMemory(staging_bytes_));
  }
  return &staging_;
}

KvTransferResult KvStore::StoreBlocks(const kernels::PagedKvView& view,
                                      std::span<const BlockKey> keys,
                                      std::optional<Deadline> deadline, size_t first_block) {
  std::lock_guard<std::mutex> lock(mu_);
  KvTransferResult out;
  out.key_status.assign(keys.size(), Status::Unavailable("not attempted"));
  auto fail_from = [&](size_t i, const Status& s) {
    for (; i < keys.size(); ++i) out.key_status[i] = s;
    out.status = s;
  };
  if (first_block > keys.size()) {
    fail_from(0, Status::InvalidArgument("first_block " + std::to_string(first_block) +
                                         " is past the " + std::to_string(keys.size()) + " keys"));
    return out;
  }
  for (size_t i = 0; i < first_block; ++i) out.key_status[i] = Status::Ok();
  size_t next = first_block;
  while (next < keys.size()) {
    Result<MemoryRegion*> staging = Staging();
    if (!staging.ok()) {
      fail_from(next, staging.status());
      break;
    }
    uint8_t* base = (*staging)->data();
    std::vector<std::span<const uint8_t>> sources;
    uint64_t used = 0;
    const size_t first = next;
    for (; next < keys.size(); ++next) {
      const uint64_t bytes = codec_.ObjectBytes(next);
      if (used + bytes > (*staging)->size()) break;
      std::span<uint8_t> object(base + used, bytes);
      Status encoded = codec_.Encode(view, next, keys[next], object);
      if (!encoded.ok()) {
        fail_from(next, encoded.WithContext("block " + std::to_string(next)));
        break;
      }
      sources.push_back(object);
      used = AlignUp(used + bytes);
    }
    if (sources.empty()) break;
    // keys are one sequence's chain: each block's parent is the one before it.
    const std::vector<BlockKey> parents = ChainParents(keys.first(first + sources.size()), first);
    StoreHandle handle = client_.Store(keys.subspan(first, sources.size()), sources,
                                       StoreOptions{.deadline = deadline, .parents = parents});
    const Status waited = handle.Wait();
    for (size_t j = 0; j < sources.size(); ++j) out.key_status[first + j] = handle.key_status(j);
    if (!waited.ok()) {
      // The daemon may still read the staging region: never refill it; take a fresh one.
      if (!handle.Settled()) RetireStaging();
      fail_from(first + sources.size(), waited);
      break;
    }
    if (!out.status.ok()) break;  // an encode error ended the sequence
  }
  while (out.leading_ok < keys.size() && out.key_status[out.leading_ok].ok()) ++out.leading_ok;
  return out;
}

KvTransferResult KvStore::LoadBlocks(const Lease& lease, std::span<const BlockKey> keys,
                                     const kernels::PagedKvView& view,
                                     std::optional<std::pair<uint32_t, uint32_t>> layers,
                                     std::optional<Deadline> deadline) {
  std::lock_guard<std::mutex> lock(mu_);
  KvTransferResult out;
  out.key_status.assign(keys.size(), Status::Unavailable("not attempted"));
  auto fail_from = [&](size_t i, const Status& s) {
    for (; i < keys.size(); ++i) out.key_status[i] = s;
    out.status = s;
  };
  Status shape = CheckShape(codec_.format(), view);
  if (!shape.ok()) {
    fail_from(0, shape);
    return out;
  }
  const uint32_t header_bytes = codec_.HeaderBytes();
  size_t next = 0;
  while (next < keys.size()) {
    Result<MemoryRegion*> staging = Staging();
    if (!staging.ok()) {
      fail_from(next, staging.status());
      break;
    }
    uint8_t* base = (*staging)->data();
    // Whole objects: one entry per key. A layer range: two per key, the header and the range.
    std::vector<LoadDestination> dests;
    std::vector<BlockKey> wave_keys;
    uint64_t used = 0;
    const size_t first = next;
    for (; next < keys.size(); ++next) {
      if (!layers) {
        const uint64_t bytes = codec_.ObjectBytes(next);
        if (used + bytes > (*staging)->size()) break;
        dests.push_back({{base + used, bytes}, 0, 0});
        wave_keys.push_back(keys[next]);
        used = AlignUp(used + bytes);
        continue;
      }
      Result<ByteRange> range = codec_.LayerRange(next, layers->first, layers->second);
      if (!range.ok()) {
        fail_from(next, range.status());
        break;
      }
      const uint64_t bytes = AlignUp(header_bytes) + range->length;
      if (used + bytes > (*staging)->size()) break;
      dests.push_back({{base + used, header_bytes}, 0, header_bytes});
      dests.push_back(
          {{base + used + AlignUp(header_bytes), range->length}, range->offset, range->length});
      wave_keys.push_back(keys[next]);
      wave_keys.push_back(keys[next]);
      used = AlignUp(used + bytes);
    }
    if (wave_keys.empty()) break;
    const size_t per_key = layers ? 2 : 1;
    const size_t count = wave_keys.size() / per_key;
    LoadHandle handle = client_.Load(lease, wave_keys, dests, LoadOptions{deadline});
    const Status waited = handle.Wait();
    if (!waited.ok()) {
      // The daemon may still write it: the load is unsettled, or it settled because the
      // connection was lost (handles.h), which a failed wait cannot tell apart from a reply.
      RetireStaging();
      fail_from(first, waited);
      break;
    }
    for (size_t j = 0; j < count; ++j) {
      const size_t i = first + j;
      Status s = handle.key_status(j * per_key);
      if (s.ok() && layers) s = handle.key_status(j * per_key + 1);
      if (s.ok()) {
        if (!layers) {
          const uint64_t size = std::min<uint64_t>(handle.object_size(j), dests[j].buffer.size());
          s = codec_.Decode(dests[j].buffer.first(size), i, keys[i], view);
        } else {
          s = codec_.DecodeLayers(dests[2 * j].buffer, dests[2 * j + 1].buffer, i, keys[i],
                                  layers->first, layers->second, view);
        }
      }
      out.key_status[i] = s;
    }
    if (!out.status.ok()) break;
  }
  while (out.leading_ok < keys.size() && out.key_status[out.leading_ok].ok()) ++out.leading_ok;
  return out;
}

}  // namespace kvault
