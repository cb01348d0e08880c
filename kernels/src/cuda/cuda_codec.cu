// Host side of the CUDA codec (cuda_codec.h): validation, planning and dispatch.
//
// A batch is planned once per call: every section (layer x K/V) of the descriptor goes either to
// kernel A (vector_kernels.cu: raw, fp8, int8, int4/int2 V, and the sink tokens of int4/int2 K
// sections) or to kernel B (key_kernels.cu: the quantized tokens of int4/int2 K sections, one
// launch per distinct (codec, rotation, group)). Each launch covers every block of the batch and up
// to kMaxSectionsPerLaunch sections, whose table travels in the kernel parameters (no device
// allocation, no host-to-device copy, nothing shared between calls: thread-safe).
//
// Payloads that are not 16-byte aligned (pointer or stride) are staged through a stream-ordered
// temporary buffer and a 2D copy, so the kernels always use aligned vector accesses on the payload
// side. On the cache side 16-byte accesses are used when the strides are multiples of 8 elements
// and the layer base is aligned (checked per layer on the device), element accesses otherwise.

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "cuda/codec_kernels.cuh"
#include "cuda/cuda_status.cuh"
#include "cuda/team_plan.h"
#include "kvault/common/log.h"
#include "kvault/kernels/cuda_codec.h"
#include "kvault/kernels/rotation.h"

namespace kvault::kernels {
namespace {

using cuda_detail::BatchShape;
using cuda_detail::DeviceView;
using cuda_detail::KeyArgs;
using cuda_detail::kKeyDecodeTokens;
using cuda_detail::kKeySlots;
using cuda_detail::kMaxSectionsPerLaunch;
using cuda_detail::kThreads;
using cuda_detail::Rotation;
using cuda_detail::SectionEntry;
using cuda_detail::Team;
using cuda_detail::VectorArgs;

constexpr uint32_t kMaxGridY = 65535;

uint64_t CeilDiv(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

Status Invalid(const std::string& what) { return Status::InvalidArgument("CUDA codec: " + what); }

struct KeyClass {
  CodecId codec;
  bool rotate;
  uint16_t group;
  bool operator<(const KeyClass& o) const {
    return std::tie(codec, rotate, group) < std::tie(o.codec, o.rotate, o.group);
  }
};

struct Plan {
  BlockGeometry geometry;
  BatchShape shape{};
  DeviceView view{};
  Rotation rot{};
  bool bf16 = false;
  bool general_groups = false;          // some V section needs kernel A's shared scratch
  std::vector<SectionEntry> full;       // kernel A: whole sections
  std::vector<SectionEntry> sink_only;  // kernel A: sinks of int4/int2 K sections
  std::map<KeyClass, std::vector<SectionEntry>> keys;  // kernel B
};

// KVAULT_CUDA_VECTOR_LANES (a power of two, 1..32; read once) forces the lanes per vector of every
// kernel, within TeamFor's limits: a tuning knob for kvault-bench codec on other GPUs. Any other
// value is reported once (warn) and the measured splits stay.
std::optional<uint32_t> ForcedLanes() {
  static const std::optional<uint32_t> forced = []() -> std::optional<uint32_t> {
    Result<std::optional<uint32_t>> parsed =
        cuda_detail::ParseForcedLanes(std::getenv("KVAULT_CUDA_VECTOR_LANES"));
    if (parsed.ok()) return *parsed;
    KVAULT_LOG(LogLevel::kWarn, "cuda", parsed.status().message() + "; ignored");
    return std::nullopt;
  }();
  return forced;
}

// The team of one launch of kernel A (codec) or B (key_kernel).
Team LaunchTeam(uint32_t chunks, uint32_t codec, bool encode, bool key_kernel) {
  return cuda_detail::TeamFor(
      chunks, cuda_detail::PreferredChunksPerLane(static_cast<CodecId>(codec), encode, key_kernel),
      ForcedLanes());
}

SectionEntry MakeEntry(uint64_t offset, const SectionLayout& sl, const SectionCodec& c,
                       uint32_t layer, uint32_t kv) {
  SectionEntry e{};
  e.offset = static_cast<uint32_t>(offset);
  e.params_rel = static_cast<uint32_t>(sl.sink_bytes + sl.code_bytes);
  e.used_rel = static_cast<uint32_t>(sl.sink_bytes + sl.code_bytes + sl.param_bytes);
  e.meta = static_cast<uint16_t>(layer | (kv << 10) | ((c.rotate ? 1u : 0u) << 11) |
                                 (static_cast<uint32_t>(c.codec) << 12));
  e.group = c.group;
  return e;
}

// Everything checked before the first CUDA call; fills the plan.
Status ValidateAndPlan(const PagedKvView& view, uint64_t first_token, uint32_t num_blocks,
                       const BlockDescriptor& descriptor, const void* payloads,
                       uint64_t payload_stride, Plan& plan) {
  Result<BlockGeometry> geometry = ComputeGeometry(descriptor);
  if (!geometry.ok()) return Invalid("invalid descriptor: " + geometry.status().message());
  plan.geometry = std::move(geometry).value();
  const BlockLayout& l = descriptor.layout;
  if (view.num_layers != l.num_layers || view.kv_heads != l.kv_heads ||
      view.head_dim != l.head_dim || view.dtype != l.dtype) {
    return Invalid("view (" + std::to_string(view.num_layers) + " layers, " +
                   std::to_string(view.kv_heads) + " heads, dim " + std::to_string(view.head_dim) +
                   ", " + std::string(DTypeName(view.dtype)) + ") does not match the descriptor (" +
                   std::to_string(l.num_layers) + " layers, " + std::to_string(l.kv_heads) +
                   " heads, dim " + std::to_string(l.head_dim) + ", " +
                   std::string(DTypeName(l.dtype)) + ")");
  }
  if (view.layer_bases == nullptr || view.page_ids == nullptr) {
    return Invalid("view has no layer_bases or page_ids array");
  }
  if (view.page_tokens == 0) return Invalid("view has page_tokens 0");
  const int64_t d = l.head_dim;
  if (view.kv_stride <= 0 || view.page_stride < 0 || view.slot_stride <= 0 ||
      view.head_stride <= 0 || (l.kv_heads > 1 && view.head_stride < d) ||
      (view.page_tokens > 1 && view.slot_stride < d) || view.kv_stride < d) {
    return Invalid("bad view strides (kv " + std::to_string(view.kv_stride) + ", page " +
                   std::to_string(view.page_stride) + ", slot " + std::to_string(view.slot_stride) +
                   ", head " + std::to_string(view.head_stride) + ") for head_dim " +
                   std::to_string(d));
  }
  if (payload_stride < plan.geometry.payload_bytes) {
    return Invalid("payload_stride " + std::to_string(payload_stride) +
                   " is smaller than the payload of " +
                   std::to_string(plan.geometry.payload_bytes) + " bytes");
  }
  if (num_blocks > 0 && payloads == nullptr) return Invalid("payloads is null");
  const uint64_t tokens = view.tokens();
  const uint64_t span = uint64_t{num_blocks} * l.block_tokens;
  if (first_token > tokens || span > tokens - first_token) {
    return Invalid("tokens [" + std::to_string(first_token) + ", " +
                   std::to_string(first_token + span) + ") are outside the view's " +
                   std::to_string(tokens) + " tokens");
  }

  // Plan.
  const uint32_t chunks = l.head_dim / 8;
  plan.bf16 = l.dtype == DType::kBF16;
  plan.shape.first_token = first_token;
  plan.shape.payload_stride = payload_stride;
  plan.shape.num_blocks = num_blocks;
  plan.shape.block_tokens = l.block_tokens;
  plan.shape.kv_heads = l.kv_heads;
  plan.shape.head_dim = l.head_dim;
  plan.shape.sink_tokens = l.sink_tokens;
  plan.shape.chunks = chunks;
  plan.shape.log2_team = 0;  // per launch (TeamFor)

  plan.view.layer_bases = view.layer_bases;
  plan.view.page_ids = view.page_ids;
  plan.view.kv_stride = view.kv_stride;
  plan.view.page_stride = view.page_stride;
  plan.view.slot_stride = view.slot_stride;
  plan.view.head_stride = view.head_stride;
  plan.view.page_tokens = view.page_tokens;
  plan.view.vec_strides = (view.kv_stride % 8 == 0 && view.page_stride % 8 == 0 &&
                           view.slot_stride % 8 == 0 && view.head_stride % 8 == 0)
                              ? 1u
                              : 0u;

  bool any_rotate = false;
  for (uint32_t layer = 0; layer < l.num_layers; ++layer) {
    const LayerCodec& lc = descriptor.layers[layer];
    const uint64_t base = plan.geometry.layer_offsets[layer];
    for (uint32_t kv = 0; kv < 2; ++kv) {
      const SectionCodec& c = kv == 0 ? lc.k : lc.v;
      const SectionLayout& sl =
          kv == 0 ? plan.geometry.k_sections[layer] : plan.geometry.v_sections[layer];
      const uint64_t offset = base + (kv == 0 ? 0 : plan.geometry.k_sections[layer].padded_bytes);
      const SectionEntry e = MakeEntry(offset, sl, c, layer, kv);
      any_rotate = any_rotate || c.rotate;
      if (kv == 0 && IsGroupedCodec(c.codec)) {
        if (l.sink_tokens > 0) plan.sink_only.push_back(e);
        if (l.block_tokens > l.sink_tokens) {
          plan.keys[KeyClass{c.codec, c.rotate, c.group}].push_back(e);
        }
      } else {
        plan.full.push_back(e);
        if (kv == 1 && IsGroupedCodec(c.codec)) {
          const uint32_t g8 = c.group / 8u;
          const bool fast = c.group >= l.head_dim || (c.group % 8 == 0 && (g8 & (g8 - 1)) == 0);
          if (!fast) plan.general_groups = true;
        }
      }
    }
  }
  if (any_rotate) {
    const std::vector<float> signs = RotationSigns(l.head_dim);
    for (uint32_t i = 0; i < l.head_dim; ++i) {
      if (signs[i] < 0.0f) plan.rot.sign_bits[i / 32] |= 1u << (i % 32);
    }
    plan.rot.scale = RotationScale(l.head_dim);
  }
  return Status::Ok();
}

dim3 GridFor(uint64_t ctas_per_section, size_t sections, uint32_t num_blocks) {
  return dim3(static_cast<unsigned>(ctas_per_section * sections),
              std::min<uint32_t>(num_blocks, kMaxGridY), 1);
}

// Kernel A's grid: x = CTAs of a section, y = sections (<= kMaxSectionsPerLaunch), z = blocks
// (strided loop past 65535), so that a CTA finds its section and segment without dividing.
dim3 VectorGridFor(uint64_t ctas_per_section, size_t sections, uint32_t num_blocks) {
  return dim3(static_cast<unsigned>(ctas_per_section), static_cast<unsigned>(sections),
              std::min<uint32_t>(num_blocks, kMaxGridY));
}

// Kernel A's addressing constants (VectorArgs): division by kv_heads and page_tokens, and the
// (token, head) step between a team's vectors.
void PlanVectorAddressing(const BatchShape& s, const DeviceView& view, VectorArgs& args) {
  const uint32_t teams = static_cast<uint32_t>(kThreads) >> s.log2_team;
  args.div_heads = cuda_detail::MakeFastDivU32(s.kv_heads);
  args.div_page = cuda_detail::MakeFastDivU32(view.page_tokens);
  args.step_tokens = teams / s.kv_heads;
  args.step_heads = teams % s.kv_heads;
}

// Runs every kernel of a planned batch on `payloads` (16-byte aligned, stride a multiple of 16).
Status RunPlan(const Plan& plan, bool encode, uint8_t* payloads, uint64_t payload_stride,
               cudaStream_t stream) {
  const BatchShape& s = plan.shape;

  // Kernel A: one team per codec (TeamFor).
  // One launch per codec (the kernel is specialized on it) and per kMaxSectionsPerLaunch
  // sections; sink-only sections are plain copies (kRaw).
  std::map<uint32_t, std::vector<SectionEntry>> by_codec;
  for (const SectionEntry& e : plan.full) by_codec[cuda_detail::EntryCodec(e)].push_back(e);
  std::vector<std::tuple<uint32_t, bool, const std::vector<SectionEntry>*>> lists;
  for (const auto& [codec, list] : by_codec) lists.emplace_back(codec, false, &list);
  lists.emplace_back(cuda_detail::kRaw, true, &plan.sink_only);
  for (const auto& [codec, sink_only, list_ptr] : lists) {
    const std::vector<SectionEntry>& list = *list_ptr;
    const Team team = LaunchTeam(s.chunks, codec, encode, false);
    const int K = team.chunks_per_lane;
    BatchShape shape = s;
    shape.payload_stride = payload_stride;
    shape.log2_team = team.log2_team;
    const uint32_t per_cta = cuda_detail::VectorsPerCta(team.log2_team, K);
    const uint64_t sink_ctas = CeilDiv(uint64_t{s.sink_tokens} * s.kv_heads, per_cta);
    const uint64_t body_ctas =
        CeilDiv(uint64_t{s.block_tokens - s.sink_tokens} * s.kv_heads, per_cta);
    const uint64_t cps = sink_ctas + (sink_only ? 0 : body_ctas);
    if (list.empty() || cps == 0) continue;
    const bool grouped = codec == cuda_detail::kInt4 || codec == cuda_detail::kInt2;
    for (size_t first = 0; first < list.size(); first += kMaxSectionsPerLaunch) {
      const size_t count = std::min<size_t>(kMaxSectionsPerLaunch, list.size() - first);
      VectorArgs args{};
      args.view = plan.view;
      args.shape = shape;
      args.rot = plan.rot;
      args.payloads = payloads;
      args.ctas_per_section = static_cast<uint32_t>(cps);
      args.sink_ctas = static_cast<uint32_t>(sink_ctas);
      args.sink_only = sink_only ? 1u : 0u;
      args.num_sections = static_cast<uint32_t>(count);
      std::copy_n(list.begin() + static_cast<std::ptrdiff_t>(first), count, args.sections);
      PlanVectorAddressing(shape, plan.view, args);
      const dim3 grid = VectorGridFor(cps, count, s.num_blocks);
      const cudaError_t err =
          encode ? cuda_detail::LaunchEncodeVectors(args, plan.bf16, codec, K, grid,
                                                    plan.general_groups && grouped && !sink_only
                                                        ? cuda_detail::VectorScratchBytes(K)
                                                        : 0,
                                                    stream)
                 : cuda_detail::LaunchDecodeVectors(args, plan.bf16, codec, K, grid, stream);
      KVAULT_RETURN_IF_ERROR(
          cuda_detail::CudaStatus(err, encode ? "CUDA codec: encode (vector kernel)"
                                              : "CUDA codec: decode (vector kernel)"));
    }
  }

  // Kernel B, one class at a time, with its own team.
  const uint32_t quantized = s.block_tokens - s.sink_tokens;
  const Team team = LaunchTeam(s.chunks, cuda_detail::kInt4, encode, true);
  const int K = team.chunks_per_lane;
  BatchShape shape = s;
  shape.payload_stride = payload_stride;
  shape.log2_team = team.log2_team;
  const uint32_t teams = static_cast<uint32_t>(kThreads) >> team.log2_team;
  for (const auto& [cls, list] : plan.keys) {
    const uint32_t groups = static_cast<uint32_t>(CeilDiv(quantized, cls.group));
    const uint32_t n_max = std::min<uint32_t>(cls.group, quantized);
    KeyArgs args{};
    args.view = plan.view;
    args.shape = shape;
    args.rot = plan.rot;
    args.payloads = payloads;
    args.groups = groups;
    args.zero_pad = s.sink_tokens == 0 ? 1u : 0u;
    uint64_t items_per_section;
    uint32_t per_cta;
    if (encode) {
      const uint32_t slot_tokens = static_cast<uint32_t>(kKeySlots / K);
      uint32_t m = 1;
      while (m < teams && CeilDiv(n_max, m) > slot_tokens) m *= 2;
      args.teams_per_tile = m;
      args.tokens_per_team = static_cast<uint32_t>(CeilDiv(n_max, m));
      args.subs = static_cast<uint32_t>(CeilDiv(args.tokens_per_team, slot_tokens));
      items_per_section = uint64_t{s.kv_heads} * groups;  // tiles
      per_cta = teams / m;
    } else {
      args.teams_per_tile = 1;
      args.tokens_per_team = kKeyDecodeTokens;
      args.subs = static_cast<uint32_t>(CeilDiv(n_max, kKeyDecodeTokens));
      items_per_section = uint64_t{s.kv_heads} * groups * args.subs;
      per_cta = teams;
    }
    const uint64_t cps = CeilDiv(items_per_section, per_cta);
    args.ctas_per_section = static_cast<uint32_t>(cps);
    const int bits = static_cast<int>(CodecBits(cls.codec));
    for (size_t first = 0; first < list.size(); first += kMaxSectionsPerLaunch) {
      const size_t count = std::min<size_t>(kMaxSectionsPerLaunch, list.size() - first);
      args.num_sections = static_cast<uint32_t>(count);
      std::copy_n(list.begin() + static_cast<std::ptrdiff_t>(first), count, args.sections);
      const dim3 grid = GridFor(cps, count, s.num_blocks);
      const cudaError_t err =
          encode ? cuda_detail::LaunchEncodeKeys(args, plan.bf16, K, bits, grid, stream)
                 : cuda_detail::LaunchDecodeKeys(args, plan.bf16, K, bits, grid, stream);
      KVAULT_RETURN_IF_ERROR(cuda_detail::CudaStatus(
          err, encode ? "CUDA codec: encode (key kernel)" : "CUDA codec: decode (key kernel)"));
    }
  }
  return Status::Ok();
}

bool PayloadAligned(const void* payloads, uint64_t stride) {
  return ((reinterpret_cast<uintptr_t>(payloads) | stride) & 15u) == 0;
}

// Encodes into the aligned `tmp` (stride = payload bytes), then copies to the caller's layout.
Status StagedEncode(const Plan& plan, uint8_t* tmp, uint8_t* payloads, uint64_t payload_stride,
                    cudaStream_t st) {
  const uint64_t bytes = plan.geometry.payload_bytes;
  KVAULT_RETURN_IF_ERROR(RunPlan(plan, true, tmp, bytes, st));
  return cuda_detail::CudaStatus(
      cudaMemcpy2DAsync(payloads, payload_stride, tmp, bytes, bytes, plan.shape.num_blocks,
                        cudaMemcpyDeviceToDevice, st),
      "CUDA codec: copy of staged payloads");
}

// Copies the caller's payloads into the aligned `tmp`, then decodes from there.
Status StagedDecode(const Plan& plan, const uint8_t* payloads, uint64_t payload_stride,
                    uint8_t* tmp, cudaStream_t st) {
  const uint64_t bytes = plan.geometry.payload_bytes;
  KVAULT_CUDA_RETURN_IF_ERROR(
      cudaMemcpy2DAsync(tmp, bytes, payloads, payload_stride, bytes, plan.shape.num_blocks,
                        cudaMemcpyDeviceToDevice, st),
      "CUDA codec: copy of payloads to staging");
  return RunPlan(plan, false, tmp, bytes, st);
}

}  // namespace

bool CudaAvailable() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

Status CudaEncodeBlocks(const PagedKvView& view, uint64_t first_token, uint32_t num_blocks,
                        const BlockDescriptor& descriptor, uint8_t* payloads,
                        uint64_t payload_stride, void* stream) {
  Plan plan;
  KVAULT_RETURN_IF_ERROR(
      ValidateAndPlan(view, first_token, num_blocks, descriptor, payloads, payload_stride, plan));
  if (num_blocks == 0) return Status::Ok();
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  if (PayloadAligned(payloads, payload_stride)) {
    return RunPlan(plan, true, payloads, payload_stride, st);
  }
  // Stage through an aligned buffer, then scatter it to the caller's layout.
  const uint64_t bytes = plan.geometry.payload_bytes;
  void* tmp = nullptr;
  KVAULT_CUDA_RETURN_IF_ERROR(cudaMallocAsync(&tmp, bytes * num_blocks, st),
                              "CUDA codec: staging buffer");
  const Status status =
      StagedEncode(plan, static_cast<uint8_t*>(tmp), payloads, payload_stride, st);
  const Status freed = cuda_detail::CudaStatus(cudaFreeAsync(tmp, st), "CUDA codec: staging free");
  return status.ok() ? freed : status;
}

Status CudaDecodeBlocks(const uint8_t* payloads, uint64_t payload_stride, uint32_t num_blocks,
                        const BlockDescriptor& descriptor, const PagedKvView& view,
                        uint64_t first_token, void* stream) {
  Plan plan;
  KVAULT_RETURN_IF_ERROR(
      ValidateAndPlan(view, first_token, num_blocks, descriptor, payloads, payload_stride, plan));
  if (num_blocks == 0) return Status::Ok();
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  // The kernels only read payloads; the non-const pointer is an artifact of the shared args.
  uint8_t* in = const_cast<uint8_t*>(payloads);
  if (PayloadAligned(payloads, payload_stride)) {
    return RunPlan(plan, false, in, payload_stride, st);
  }
  const uint64_t bytes = plan.geometry.payload_bytes;
  void* tmp = nullptr;
  KVAULT_CUDA_RETURN_IF_ERROR(cudaMallocAsync(&tmp, bytes * num_blocks, st),
                              "CUDA codec: staging buffer");
  const Status status =
      StagedDecode(plan, payloads, payload_stride, static_cast<uint8_t*>(tmp), st);
  const Status freed = cuda_detail::CudaStatus(cudaFreeAsync(tmp, st), "CUDA codec: staging free");
  return status.ok() ? freed : status;
}

}  // namespace kvault::kernels
