// The CPU codec path (cpu_codec.h): validation, instruction-set dispatch, raw and sink copies,
// header and checksum. Lossy sections go to the AVX2/AVX-512 kernels (simd_sections.h); the
// scalar fallback gathers each section and runs the reference.
//
// This file is compiled for baseline x86-64: it must not call into the AVX translation units
// unless the CPU supports them.

#include "kvault/kernels/cpu_codec.h"

#include <cpuid.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "float_environment.h"
#include "kvault/kernels/reference_codec.h"
#include "kvault/kernels/rotation.h"
#include "simd/simd_sections.h"

namespace kvault::kernels {
namespace {

struct IsaSupport {
  bool avx2 = false;
  bool avx512 = false;
};

uint64_t ReadXcr0() {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (uint64_t{edx} << 32) | eax;
}

IsaSupport ProbeIsa() {
  IsaSupport s;
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return s;
  const bool fma = (ecx >> 12) & 1, osxsave = (ecx >> 27) & 1, avx = (ecx >> 28) & 1,
             f16c = (ecx >> 29) & 1;
  if (!osxsave || !avx) return s;
  const uint64_t xcr0 = ReadXcr0();
  if ((xcr0 & 0x6) != 0x6) return s;  // the OS saves XMM and YMM state
  if (__get_cpuid_max(0, nullptr) < 7) return s;
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  const bool avx2 = (ebx >> 5) & 1;
  s.avx2 = avx2 && fma && f16c;
  const bool avx512 = ((ebx >> 16) & 1) && ((ebx >> 17) & 1) && ((ebx >> 30) & 1) &&
                      ((ebx >> 31) & 1);                 // F, DQ, BW, VL
  s.avx512 = s.avx2 && avx512 && (xcr0 & 0xE6) == 0xE6;  // + opmask and ZMM state
  return s;
}

const IsaSupport& Support() {
  static const IsaSupport support = ProbeIsa();
  return support;
}

uint64_t RoundUp(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }
// A scratch region of n floats plus 16 floats of slack, in whole 64-byte lines.
uint64_t Slack(uint64_t n) { return RoundUp(n + 16, 16); }

Status CheckIsa(CpuIsa isa) {
  if (!CpuSupports(isa)) {
    return Status::Unsupported(std::string("CPU codec: this CPU does not support ") +
                               CpuIsaName(isa));
  }
  return Status::Ok();
}

// Validates the descriptor; every failure is InvalidArgument (cpu_codec.h).
Result<BlockGeometry> Geometry(const BlockDescriptor& d) {
  Result<BlockGeometry> g = ComputeGeometry(d);
  if (!g.ok())
    return Status::InvalidArgument("CPU codec: invalid descriptor: " + g.status().message());
  return g;
}

// Checks that the view matches the layout and covers [first_token, first_token + block_tokens),
// and returns the offset (in elements, from a layer/kv base) of every token of the block.
Result<std::vector<int64_t>> TokenOffsets(const PagedKvView& v, const BlockLayout& l,
                                          uint64_t first_token) {
  auto bad = [](const std::string& what) { return Status::InvalidArgument("CPU codec: " + what); };
  if (v.num_layers != l.num_layers || v.kv_heads != l.kv_heads || v.head_dim != l.head_dim) {
    return bad("view shape (layers " + std::to_string(v.num_layers) + ", kv heads " +
               std::to_string(v.kv_heads) + ", head dim " + std::to_string(v.head_dim) +
               ") differs from the block layout (" + std::to_string(l.num_layers) + ", " +
               std::to_string(l.kv_heads) + ", " + std::to_string(l.head_dim) + ")");
  }
  if (v.dtype != l.dtype) return bad("view dtype differs from the block layout");
  if (v.layer_bases == nullptr || v.page_tokens == 0 ||
      (v.num_pages > 0 && v.page_ids == nullptr)) {
    return bad("view has no layer bases or page table");
  }
  for (uint32_t i = 0; i < l.num_layers; ++i) {
    if (v.layer_bases[i] == nullptr) return bad("view layer " + std::to_string(i) + " is null");
  }
  const uint64_t tokens = v.tokens();
  if (first_token > tokens || l.block_tokens > tokens - first_token) {
    return bad("tokens [" + std::to_string(first_token) + ", " +
               std::to_string(first_token + l.block_tokens) + ") outside the view's " +
               std::to_string(tokens) + " tokens");
  }
  std::vector<int64_t> offsets(l.block_tokens);
  for (uint32_t t = 0; t < l.block_tokens; ++t) {
    const uint64_t token = first_token + t;
    const int32_t page = v.page_ids[token / v.page_tokens];
    if (page < 0) return bad("negative page id " + std::to_string(page));
    offsets[t] =
        int64_t{page} * v.page_stride + static_cast<int64_t>(token % v.page_tokens) * v.slot_stride;
  }
  return offsets;
}

// Per-call state shared by the sections of one block.
class BlockCodec {
 public:
  BlockCodec(const BlockDescriptor& d, const BlockGeometry& g, const PagedKvView& view,
             std::vector<int64_t> offsets, CpuIsa isa)
      : d_(d), g_(g), view_(view), offsets_(std::move(offsets)), isa_(isa) {
    const BlockLayout& l = d.layout;
    if (isa_ == CpuIsa::kScalar) {
      gather_.resize(uint64_t{l.block_tokens} * l.kv_heads * l.head_dim);
      return;
    }
    bool any_rotate = false;
    uint64_t key_buf_tokens = 0;
    const uint64_t quantized = l.block_tokens - l.sink_tokens;
    for (const LayerCodec& lc : d.layers) {
      any_rotate = any_rotate || lc.k.rotate || lc.v.rotate;
      if (lc.k.rotate && IsGroupedCodec(lc.k.codec)) {
        const uint64_t n = std::min<uint64_t>(lc.k.group, quantized);
        if (n * l.head_dim <= kMaxKeyBufFloats) key_buf_tokens = std::max(key_buf_tokens, n);
      }
    }
    if (any_rotate) {
      signs_ = RotationSigns(l.head_dim);
      rot_scale_ = RotationScale(l.head_dim);
    }
    // Scratch regions (simd_sections.h), each 64-byte aligned, with 16 floats of slack past its
    // logical size so that whole-chunk accesses stay inside. Zero-initialized: the signs are 0
    // past head_dim.
    const uint64_t stride = RoundUp(l.head_dim, 16);
    const uint64_t batch = simd::kHeadBatch;
    const uint64_t heads = std::max<uint64_t>(l.kv_heads, batch);
    const uint64_t sizes[8] = {batch * stride,           // vec
                               batch * stride,           // mn
                               batch * stride,           // mx
                               heads * stride,           // sf
                               heads * stride,           // zf
                               stride,                   // codes8 (bytes; generous)
                               key_buf_tokens * stride,  // key_buf
                               stride};                  // signs
    uint64_t total = 16;
    for (uint64_t s : sizes) total += Slack(s);
    scratch_ = std::make_unique<float[]>(total);
    float* p = scratch_.get();
    p += (16 - (reinterpret_cast<uintptr_t>(p) / 4) % 16) % 16;
    float* regions[8];
    for (int i = 0; i < 8; ++i) {
      regions[i] = p;
      p += Slack(sizes[i]);
    }
    job_.vec_stride = static_cast<uint32_t>(stride);
    job_.vec = regions[0];
    job_.mn = regions[1];
    job_.mx = regions[2];
    job_.sf = regions[3];
    job_.zf = regions[4];
    job_.codes8 = reinterpret_cast<uint8_t*>(regions[5]);
    job_.key_buf = regions[6];
    job_.key_buf_tokens = static_cast<uint32_t>(key_buf_tokens);
    if (any_rotate) std::memcpy(regions[7], signs_.data(), 4 * signs_.size());
    job_.signs = regions[7];
    job_.rot_scale = rot_scale_;
    job_.bf16 = l.dtype == DType::kBF16;
    job_.heads = l.kv_heads;
    job_.dim = l.head_dim;
    job_.sink = l.sink_tokens;
    job_.tokens = l.block_tokens;
    job_.token_offsets = offsets_.data();
    job_.head_stride = view.head_stride;
  }

  void Encode(uint32_t layer, int kv, uint8_t* out) {
    const SectionCodec& codec = kv == 0 ? d_.layers[layer].k : d_.layers[layer].v;
    const SectionLayout& sl = kv == 0 ? g_.k_sections[layer] : g_.v_sections[layer];
    uint16_t* base = Base(layer, kv);
    const BlockLayout& l = d_.layout;
    if (isa_ == CpuIsa::kScalar) {
      ForEachRun(base, 0, l.block_tokens, [&](uint64_t v, uint16_t* p, uint32_t n) {
        std::memcpy(&gather_[v * l.head_dim], p, 2 * l.head_dim * n);
      });
      ReferenceEncodeSection(gather_.data(), codec, kv == 0, l, out);
      return;
    }
    // Raw sections and sink tokens are copied verbatim.
    const uint32_t raw_tokens = codec.codec == CodecId::kRaw ? l.block_tokens : l.sink_tokens;
    ForEachRun(base, 0, raw_tokens, [&](uint64_t v, uint16_t* p, uint32_t n) {
      std::memcpy(out + 2 * v * l.head_dim, p, 2 * l.head_dim * n);
    });
    const uint64_t used = sl.sink_bytes + sl.code_bytes + sl.param_bytes;
    std::memset(out + used, 0, sl.padded_bytes - used);
    if (codec.codec == CodecId::kRaw || l.sink_tokens == l.block_tokens) return;
    simd::SectionJob job = Job(codec, kv == 0, base);
    job.codes_out = out + sl.sink_bytes;
    job.params_out = job.codes_out + sl.code_bytes;
    if (isa_ == CpuIsa::kAvx512) {
      simd::EncodeSectionAvx512(job);
    } else {
      simd::EncodeSectionAvx2(job);
    }
  }

  void Decode(uint32_t layer, int kv, const uint8_t* in) {
    const SectionCodec& codec = kv == 0 ? d_.layers[layer].k : d_.layers[layer].v;
    const SectionLayout& sl = kv == 0 ? g_.k_sections[layer] : g_.v_sections[layer];
    uint16_t* base = Base(layer, kv);
    const BlockLayout& l = d_.layout;
    if (isa_ == CpuIsa::kScalar) {
      ReferenceDecodeSection(in, codec, kv == 0, l, gather_.data());
      ForEachRun(base, 0, l.block_tokens, [&](uint64_t v, uint16_t* p, uint32_t n) {
        std::memcpy(p, &gather_[v * l.head_dim], 2 * l.head_dim * n);
      });
      return;
    }
    const uint32_t raw_tokens = codec.codec == CodecId::kRaw ? l.block_tokens : l.sink_tokens;
    ForEachRun(base, 0, raw_tokens, [&](uint64_t v, uint16_t* p, uint32_t n) {
      std::memcpy(p, in + 2 * v * l.head_dim, 2 * l.head_dim * n);
    });
    if (codec.codec == CodecId::kRaw || l.sink_tokens == l.block_tokens) return;
    simd::SectionJob job = Job(codec, kv == 0, base);
    job.codes_in = in + sl.sink_bytes;
    job.params_in = job.codes_in + sl.code_bytes;
    if (isa_ == CpuIsa::kAvx512) {
      simd::DecodeSectionAvx512(job);
    } else {
      simd::DecodeSectionAvx2(job);
    }
  }

 private:
  // Rotated key groups up to this many floats are kept between the two passes (256 KiB).
  static constexpr uint64_t kMaxKeyBufFloats = 64 * 1024;

  uint16_t* Base(uint32_t layer, int kv) const {
    return view_.layer_bases[layer] + (kv == 0 ? 0 : view_.kv_stride);
  }

  // Calls fn(index of the first vector within the block, pointer, vectors) over tokens [t0, t1),
  // every head, for runs of vectors that are contiguous in the view: a whole token when the
  // heads are adjacent (NHD layouts), else one vector.
  template <typename Fn>
  void ForEachRun(uint16_t* base, uint32_t t0, uint32_t t1, Fn fn) const {
    const uint32_t heads = d_.layout.kv_heads;
    const bool adjacent = view_.head_stride == static_cast<int64_t>(d_.layout.head_dim);
    for (uint32_t t = t0; t < t1; ++t) {
      uint16_t* token = base + offsets_[t];
      if (adjacent) {
        fn(uint64_t{t} * heads, token, heads);
        continue;
      }
      for (uint32_t h = 0; h < heads; ++h) {
        fn(uint64_t{t} * heads + h, token + static_cast<int64_t>(h) * view_.head_stride, 1u);
      }
    }
  }

  simd::SectionJob Job(const SectionCodec& codec, bool is_key, uint16_t* base) const {
    simd::SectionJob job = job_;
    job.codec = static_cast<uint8_t>(codec.codec);
    job.is_key = is_key;
    job.rotate = codec.rotate;
    job.group = codec.group;
    job.base = base;
    return job;
  }

  const BlockDescriptor& d_;
  const BlockGeometry& g_;
  const PagedKvView& view_;
  std::vector<int64_t> offsets_;
  CpuIsa isa_;
  std::vector<uint16_t> gather_;  // scalar path: one section, contiguous
  std::vector<float> signs_;
  float rot_scale_ = 0.0f;
  std::unique_ptr<float[]> scratch_;
  simd::SectionJob job_;
};

}  // namespace

CpuIsa DetectCpuIsa() {
  const IsaSupport& s = Support();
  if (s.avx512) return CpuIsa::kAvx512;
  if (s.avx2) return CpuIsa::kAvx2;
  return CpuIsa::kScalar;
}

bool CpuSupports(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kScalar:
      return true;
    case CpuIsa::kAvx2:
      return Support().avx2;
    case CpuIsa::kAvx512:
      return Support().avx512;
  }
  return false;
}

const char* CpuIsaName(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kScalar:
      return "scalar";
    case CpuIsa::kAvx2:
      return "avx2";
    case CpuIsa::kAvx512:
      return "avx512";
  }
  return "unknown";
}

Status EncodeBlockCpu(const PagedKvView& src, uint64_t first_token,
                      const BlockDescriptor& descriptor, std::span<uint8_t> out, CpuIsa isa) {
  const IeeeFloatScope ieee;
  KVAULT_RETURN_IF_ERROR(CheckIsa(isa));
  KVAULT_ASSIGN_OR_RETURN(BlockGeometry g, Geometry(descriptor));
  KVAULT_ASSIGN_OR_RETURN(std::vector<int64_t> offsets,
                          TokenOffsets(src, descriptor.layout, first_token));
  if (out.size() != g.total_bytes()) {
    return Status::InvalidArgument("CPU codec: output buffer holds " + std::to_string(out.size()) +
                                   " bytes, the block object needs " +
                                   std::to_string(g.total_bytes()));
  }
  WriteBlockHeader(descriptor, g, out);
  BlockCodec codec(descriptor, g, src, std::move(offsets), isa);
  uint8_t* payload = out.data() + g.header_bytes;
  // Each section is hashed right after it is written, while it is still in cache.
  BlockSealer sealer(out.first(g.header_bytes));
  for (uint32_t layer = 0; layer < descriptor.layout.num_layers; ++layer) {
    uint8_t* k = payload + g.layer_offsets[layer];
    uint8_t* v = k + g.k_sections[layer].padded_bytes;
    codec.Encode(layer, 0, k);
    sealer.Update({k, g.k_sections[layer].padded_bytes});
    codec.Encode(layer, 1, v);
    sealer.Update({v, g.v_sections[layer].padded_bytes});
  }
  sealer.Seal(out);
  return Status::Ok();
}

Status DecodeBlockCpu(const BlockView& block, const PagedKvView& dst, uint64_t first_token,
                      CpuIsa isa) {
  const IeeeFloatScope ieee;
  KVAULT_RETURN_IF_ERROR(CheckIsa(isa));
  const BlockDescriptor& d = block.descriptor;
  KVAULT_ASSIGN_OR_RETURN(BlockGeometry g, Geometry(d));
  // The kernels trust the section sizes; a hand-made view must agree with its descriptor.
  if (g.payload_bytes != block.payload.size() || g.layer_offsets != block.geometry.layer_offsets ||
      g.payload_bytes != block.geometry.payload_bytes) {
    return Status::InvalidArgument("CPU codec: block view geometry does not match its descriptor");
  }
  KVAULT_ASSIGN_OR_RETURN(std::vector<int64_t> offsets, TokenOffsets(dst, d.layout, first_token));
  BlockCodec codec(d, g, dst, std::move(offsets), isa);
  const uint8_t* payload = block.payload.data();
  for (uint32_t layer = 0; layer < d.layout.num_layers; ++layer) {
    const uint8_t* k = payload + g.layer_offsets[layer];
    codec.Decode(layer, 0, k);
    codec.Decode(layer, 1, k + g.k_sections[layer].padded_bytes);
  }
  return Status::Ok();
}

}  // namespace kvault::kernels
