#pragma once
// Codec spec strings: one string names the codec of every layer's K and V (docs/codecs.md).
//
//   spec    := segment ( ';' segment )*
//   segment := [ 'layers=' FIRST '-' LAST ':' ] term ( ',' term )*
//   term    := codec | 'k=' codec | 'v=' codec | option
//   codec   := ( 'raw' | 'fp8' | 'int8' | 'int4' | 'int2' ) ( ':' option )*
//   option  := 'g=' N | 'rot' | 'sink=' N
//
// The first segment is the default for every layer and has no `layers=`; later segments override
// an inclusive layer range (later ones win). A bare codec sets K and V; `k=`/`v=` set one side;
// each side is set exactly once per segment. Options after a codec apply to that codec; a bare
// `g=`/`rot` applies to every side of the segment that accepts it. int4/int2 default to g=64.
// `sink=N` (default segment only) stores the first N tokens of a sequence raw.
// Examples: "fp8", "k=int4,v=int2", "int2,g=32,rot,sink=4", "k=int4,v=int2;layers=0-1:int8".
//
// Thread-safe: value types and pure functions.

#include <string>
#include <string_view>
#include <vector>

#include "kvault/common/block_format.h"
#include "kvault/common/result.h"

namespace kvault::kernels {

inline constexpr uint16_t kDefaultGroup = 64;

struct LayerRangeOverride {
  uint32_t first = 0;
  uint32_t last = 0;  // inclusive
  LayerCodec codec;
  bool operator==(const LayerRangeOverride&) const = default;
};

struct CodecSpec {
  LayerCodec default_codec;
  std::vector<LayerRangeOverride> overrides;
  uint32_t sink_tokens = 0;

  // Canonical text form; parsing it gives an equal spec.
  std::string ToString() const;
  // Codec of every layer. OutOfRange unless num_layers is in 1..kMaxLayers (checked before
  // anything is allocated); InvalidArgument if an override names a layer >= num_layers.
  Result<std::vector<LayerCodec>> ResolveLayers(uint32_t num_layers) const;
  bool operator==(const CodecSpec&) const = default;
};

// Parses a spec. InvalidArgument with the offending term quoted for anything malformed: unknown
// codec or option, a side set twice or never, g outside 1..65535 or on a codec without groups,
// rot on raw, sink outside the default segment, an empty or reversed layer range.
Result<CodecSpec> ParseCodecSpec(std::string_view spec);

// Canonical text of one section codec, e.g. "int4:g=64:rot".
std::string SectionCodecToString(const SectionCodec& codec);

}  // namespace kvault::kernels
