#pragma once
// Block object format v1 (docs/block_format.md documents every byte).
//
// One object per block: a fixed 112-byte header, a 16-byte entry per layer, then the payload.
// The payload is layer-major; each layer holds a K section then a V section, each padded to a
// multiple of 16 bytes. The byte layout of a section is owned here (SectionLayoutFor) so that the
// parser can check an object's consistency without knowing how codecs compute their codes.
// All integers are little-endian. The checksum is XXH3-64 (seed 0) over the header with the
// checksum field skipped, then the payload. The block key is inside the header, so an object
// stored under another key fails verification.
//
// Everything here is a pure function of its arguments: thread-safe.

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "kvault/common/checksum.h"
#include "kvault/common/dtype.h"
#include "kvault/common/result.h"

namespace kvault {

using Digest32 = std::array<uint8_t, 32>;

inline constexpr uint32_t kBlockMagic = 0x4F42564B;  // bytes "KVBO"
inline constexpr uint16_t kBlockFormatVersion = 1;
inline constexpr uint32_t kBlockFixedHeaderBytes = 112;
inline constexpr uint32_t kBlockLayerEntryBytes = 16;
inline constexpr uint32_t kSectionAlignment = 16;

// Limits checked before any size arithmetic; they bound every product below 2^50.
inline constexpr uint32_t kMaxLayers = 1024;
inline constexpr uint32_t kMaxKvHeads = 1024;
inline constexpr uint32_t kMaxHeadDim = 1024;
inline constexpr uint32_t kMaxBlockTokens = 65536;
inline constexpr uint32_t kMaxSinkTokens = 65535;  // the header stores a u16
inline constexpr uint64_t kMaxBlockObjectBytes = 4ull << 30;

// Codec ids as stored on disk and on the wire. Never renumber.
enum class CodecId : uint8_t { kRaw = 0, kFp8 = 1, kInt8 = 2, kInt4 = 3, kInt2 = 4 };
inline constexpr uint8_t kCodecFlagRotate = 0x01;

// "raw", "fp8", "int8", "int4", "int2".
const char* CodecName(CodecId id);
// Bits per code: 16 for raw (the source dtype), 8, 8, 4, 2.
uint32_t CodecBits(CodecId id);
// True for the asymmetric grouped codecs (int4, int2), the only ones that take a group size.
inline bool IsGroupedCodec(CodecId id) { return id == CodecId::kInt4 || id == CodecId::kInt2; }

// How one section (the K or the V of one layer) is encoded.
struct SectionCodec {
  CodecId codec = CodecId::kRaw;
  bool rotate = false;  // randomized Hadamard rotation over head_dim (not with raw)
  uint16_t group = 0;   // int4/int2: tokens per group for K, channels per group for V; else 0
  bool operator==(const SectionCodec&) const = default;
};

struct LayerCodec {
  SectionCodec k;
  SectionCodec v;
  bool operator==(const LayerCodec&) const = default;
};

// Shape of the KV a block holds.
struct BlockLayout {
  uint32_t num_layers = 0;
  uint32_t kv_heads = 0;
  uint32_t head_dim = 0;      // multiple of 8
  uint32_t block_tokens = 0;  // tokens in this block (a partial tail block is allowed)
  DType dtype = DType::kF16;
  uint32_t sink_tokens = 0;  // leading tokens of this block stored raw (<= block_tokens)
  bool operator==(const BlockLayout&) const = default;
};

// Everything the header says except sizes and checksum.
struct BlockDescriptor {
  Digest32 ns_digest{};
  Digest32 key{};
  BlockLayout layout;
  std::vector<LayerCodec> layers;  // one per layout.num_layers
};

// Byte layout of one section, relative to the section start:
//   [sink: sink_tokens x kv_heads x head_dim source elements]  (lossy codecs only)
//   [codes][params][zero padding to 16]
struct SectionLayout {
  uint64_t sink_bytes = 0;
  uint64_t code_bytes = 0;
  uint64_t param_bytes = 0;
  uint64_t padded_bytes = 0;  // total, a multiple of kSectionAlignment
};

// Section layout for a validated codec and layout. `is_key` selects the K grouping for int4/int2
// (per channel over token groups) versus the V grouping (per token over channel groups).
SectionLayout SectionLayoutFor(const SectionCodec& codec, bool is_key, const BlockLayout& layout);

// Sizes and offsets of a whole object.
struct BlockGeometry {
  uint32_t header_bytes = 0;
  uint64_t payload_bytes = 0;
  std::vector<uint64_t> layer_offsets;  // from payload start
  std::vector<SectionLayout> k_sections, v_sections;
  uint64_t total_bytes() const { return header_bytes + payload_bytes; }
};

// Checks limits and codec rules (group only for int4/int2 and >= 1, no rotation on raw, head_dim
// a multiple of 8, rotation needs a power-of-two head_dim, sink <= block_tokens). Returns
// InvalidArgument naming the offending field, or OutOfRange for a size past the limits.
Status ValidateDescriptor(const BlockDescriptor& descriptor);

// Validates, then computes sizes. Result is OutOfRange if the object would exceed
// kMaxBlockObjectBytes.
Result<BlockGeometry> ComputeGeometry(const BlockDescriptor& descriptor);

// Writes the header (checksum field zero) into the first geometry.header_bytes of `object`.
// Precondition: object.size() == geometry.total_bytes(), geometry from ComputeGeometry.
void WriteBlockHeader(const BlockDescriptor& descriptor, const BlockGeometry& geometry,
                      std::span<uint8_t> object);

// Computes the checksum over a complete object and stores it in the header.
// Precondition: a header written by WriteBlockHeader and a filled payload.
void SealBlockObject(std::span<uint8_t> object);

// Seals an object whose payload is produced in order, hashing each part while it is still in
// cache: construct from the written header, Update() with consecutive payload parts from the
// first byte to the last, then Seal(). Gives the same checksum as SealBlockObject. Not
// thread-safe (one writer).
class BlockSealer {
 public:
  // `header`: the first header_bytes of the object, as WriteBlockHeader wrote them.
  explicit BlockSealer(std::span<const uint8_t> header);
  void Update(std::span<const uint8_t> payload_part);
  uint64_t Digest() const;
  // Stores the checksum in the object's header.
  void Seal(std::span<uint8_t> object) const;

 private:
  Checksum64Stream stream_;
};

// The checksum of an object (§6) over consecutive parts of it from its first byte, header
// included: for checking an object while it arrives, each part hashed while still in cache.
// After the whole object, Digest() equals the checksum ParseBlockObject computes (the stored
// checksum field is skipped wherever the parts split). Not thread-safe (one writer).
class BlockChecksumStream {
 public:
  void Update(std::span<const uint8_t> part);
  // Copies `from` into `to` and hashes what was written, as Update(to) after the copy would, in
  // pieces small enough that each is hashed while it is still in the L1 cache: one pass over
  // memory instead of two. Only bytes of `to` are hashed, so a writer changing `from` meanwhile
  // cannot make the digest disagree with the copy. Precondition: equal sizes, no overlap.
  void CopyAndUpdate(std::span<const uint8_t> from, std::span<uint8_t> to);
  uint64_t Digest() const { return stream_.Digest(); }
  // Bytes passed to Update so far.
  uint64_t bytes() const { return offset_; }

 private:
  Checksum64Stream stream_;
  uint64_t offset_ = 0;
};

// A parsed, verified object. Spans point into the caller's buffer.
struct BlockView {
  BlockDescriptor descriptor;
  BlockGeometry geometry;
  uint64_t checksum = 0;
  std::span<const uint8_t> payload;
  // Bytes of one section; kv 0 = K, 1 = V. Precondition: layer < num_layers, kv < 2.
  std::span<const uint8_t> Section(uint32_t layer, int kv) const;
};

struct ParseOptions {
  bool verify_checksum = true;             // false only for inspection of damaged objects
  const Digest32* expected_key = nullptr;  // when set, a different key is Corruption
  // When set: the checksum of exactly these bytes as the caller computed it while they arrived
  // (BlockChecksumStream over the whole object). It is compared with the stored checksum instead
  // of hashing the object again. Only for bytes nobody can have changed since they were hashed.
  std::optional<uint64_t> computed_checksum;
};

// Parses and verifies an object. Never reads outside `bytes`. Returns Corruption for a bad magic,
// truncated or oversized object, inconsistent lengths or offsets, nonzero reserved bytes, a
// checksum mismatch or an unexpected key; InvalidArgument/OutOfRange text from ValidateDescriptor
// is reported as Corruption too (a stored object must always be valid).
Result<BlockView> ParseBlockObject(std::span<const uint8_t> bytes,
                                   const ParseOptions& options = {});

// Bits per KV element the object spends, including metadata and padding:
// 8 * payload_bytes / (layers * 2 * block_tokens * kv_heads * head_dim).
double BitsPerElement(const BlockGeometry& geometry, const BlockLayout& layout);

}  // namespace kvault
