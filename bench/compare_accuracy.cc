// Codec accuracy of `kvault-bench compare` (compare_bench.h): the payload library encoded and
// decoded block by block with the stored format, measured as `kvault-bench codec` measures.
#include "compare_bench.h"
#include "kvault/common/block_format.h"
#include "kvault/kernels/codec_spec.h"
#include "kvault/kv_store.h"

namespace kvault::bench::compare {

Result<CodecAccuracy> MeasureCodecAccuracy(const BlockShape& shape, const std::string& spec,
                                           const PayloadLibrary& library) {
  KVAULT_ASSIGN_OR_RETURN(kernels::CodecSpec parsed, kernels::ParseCodecSpec(spec));
  KVAULT_ASSIGN_OR_RETURN(KvBlockCodec codec,
                          KvBlockCodec::Create({.num_layers = shape.layers,
                                                .kv_heads = kKvHeads,
                                                .head_dim = kHeadDim,
                                                .dtype = DType::kF16,
                                                .block_tokens = shape.block_tokens,
                                                .codec = spec,
                                                .ns_digest = {}}));
  CodecAccuracy a;
  a.spec = parsed.ToString();
  a.sink_tokens = parsed.sink_tokens;
  a.first_object_bytes = codec.ObjectBytes(0);
  a.object_bytes = codec.ObjectBytes(1);

  // Contiguous views over the library and its decoded copy.
  kernels::KvTensor& out = a.decoded;
  out.shape = library.kv().shape;
  out.data.assign(library.kv().data.size(), 0);
  const kernels::KvShape& s = out.shape;
  uint16_t* in_base = const_cast<uint16_t*>(library.kv().data.data());  // read only
  uint16_t* out_base = out.data.data();
  const int32_t page = 0;
  kernels::PagedKvView in_view, out_view;
  kernels::PagedKvViewStorage in_storage, out_storage;
  KVAULT_RETURN_IF_ERROR(kernels::MakePagedKvView(kernels::KvLayout::kContiguous, s.dtype, s.layers,
                                                  s.kv_heads, s.head_dim, s.tokens, 1,
                                                  {&in_base, 1}, {&page, 1}, in_view, in_storage));
  KVAULT_RETURN_IF_ERROR(kernels::MakePagedKvView(
      kernels::KvLayout::kContiguous, s.dtype, s.layers, s.kv_heads, s.head_dim, s.tokens, 1,
      {&out_base, 1}, {&page, 1}, out_view, out_storage));
  const std::vector<BlockKey> keys = ChainKeys(BlockKey{}, std::vector<uint64_t>(library.blocks()));
  uint64_t payload = 0;
  std::vector<uint8_t> object;
  for (uint32_t b = 0; b < library.blocks(); ++b) {
    object.assign(codec.ObjectBytes(b), 0);
    KVAULT_RETURN_IF_ERROR(codec.Encode(in_view, b, keys[b], object));
    KVAULT_ASSIGN_OR_RETURN(BlockView v, ParseBlockObject(object));
    payload += v.geometry.payload_bytes;
    KVAULT_RETURN_IF_ERROR(codec.Decode(object, b, keys[b], out_view));
  }
  const double elements = static_cast<double>(library.kv().data.size());
  a.bits_per_element = 8.0 * static_cast<double>(payload) / elements;
  a.compression_ratio = a.bits_per_element > 0 ? 16.0 / a.bits_per_element : 0;

  kernels::AccuracyOptions options;
  options.sink_positions = kernels::SinkPositions(library.options());
  KVAULT_ASSIGN_OR_RETURN(a.report,
                          kernels::MeasureAccuracy(library.kv(), out, library.queries(), options));
  return a;
}

}  // namespace kvault::bench::compare
