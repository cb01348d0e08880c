#include "kvault/common/synthetic_block.h"

#include <algorithm>
#include <cstring>

namespace kvault {
namespace {
constexpr uint32_t kHeadDim = 128;
constexpr uint32_t kMaxTokens = 256;
constexpr uint64_t kBytesPerLayerToken = 2ull * kHeadDim * 2;  // K and V, fp16

struct Shape {
  uint32_t layers;
  uint32_t tokens;
};

Shape ShapeFor(uint64_t min_payload_bytes) {
  const uint64_t units = std::max<uint64_t>(
      1, (min_payload_bytes + kBytesPerLayerToken - 1) / kBytesPerLayerToken);
  const uint64_t tokens = std::min<uint64_t>(units, kMaxTokens);
  const uint64_t layers = (units + tokens - 1) / tokens;
  return {static_cast<uint32_t>(std::min<uint64_t>(layers, UINT32_MAX)),
          static_cast<uint32_t>(tokens)};
}

// Payload bytes from the key: splitmix64 seeded with the key's first 8 bytes. Fp16 bit patterns
// with the exponent kept below infinity, so the data is also valid KV.
void FillPayload(const Digest32& key, std::span<uint8_t> payload) {
  uint64_t state;
  std::memcpy(&state, key.data(), sizeof state);
  size_t i = 0;
  while (i < payload.size()) {
    state += 0x9E3779B97F4A7C15ull;
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    z &= 0xBFFFBFFFBFFFBFFFull;  // clear each half's top exponent bit: finite fp16 values
    const size_t n = std::min<size_t>(8, payload.size() - i);
    std::memcpy(payload.data() + i, &z, n);
    i += n;
  }
}
}  // namespace

BlockDescriptor SyntheticDescriptor(const Digest32& key, uint64_t min_payload_bytes) {
  const Shape shape = ShapeFor(min_payload_bytes);
  BlockDescriptor d;
  d.key = key;
  d.layout.num_layers = shape.layers;
  d.layout.kv_heads = 1;
  d.layout.head_dim = kHeadDim;
  d.layout.block_tokens = shape.tokens;
  d.layout.dtype = DType::kF16;
  d.layers.assign(shape.layers, LayerCodec{});
  return d;
}

uint64_t SyntheticObjectBytes(uint64_t min_payload_bytes) {
  Result<BlockGeometry> g = ComputeGeometry(SyntheticDescriptor(Digest32{}, min_payload_bytes));
  return g.ok() ? g->total_bytes() : 0;
}

Status WriteSyntheticBlock(const Digest32& key, uint64_t min_payload_bytes,
                           std::span<uint8_t> out) {
  const BlockDescriptor d = SyntheticDescriptor(key, min_payload_bytes);
  Result<BlockGeometry> g = ComputeGeometry(d);
  if (!g.ok()) return g.status();
  if (out.size() != g->total_bytes()) {
    return Status::InvalidArgument("synthetic block: output is " + std::to_string(out.size()) +
                                   " bytes, the object is " + std::to_string(g->total_bytes()));
  }
  WriteBlockHeader(d, *g, out);
  FillPayload(key, out.subspan(g->header_bytes));
  SealBlockObject(out);
  return Status::Ok();
}

Result<std::vector<uint8_t>> MakeSyntheticBlock(const Digest32& key, uint64_t min_payload_bytes) {
  const uint64_t bytes = SyntheticObjectBytes(min_payload_bytes);
  if (bytes == 0) return Status::OutOfRange("synthetic block: too large");
  std::vector<uint8_t> object(bytes);
  KVAULT_RETURN_IF_ERROR(WriteSyntheticBlock(key, min_payload_bytes, object));
  return object;
}

bool IsSyntheticBlockFor(const Digest32& key, std::span<const uint8_t> object) {
  ParseOptions options;
  options.expected_key = &key;
  Result<BlockView> view = ParseBlockObject(object, options);
  if (!view.ok()) return false;
  std::vector<uint8_t> expected(view->payload.size());
  FillPayload(key, expected);
  return std::memcmp(expected.data(), view->payload.data(), expected.size()) == 0;
}

}  // namespace kvault
