// CudaMeasureCodec (cuda_bench.h): device-side timing of the CUDA codec against a D2D memcpy.

#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "cuda/codec_common.cuh"
#include "cuda/cuda_status.cuh"
#include "kvault/kernels/cuda_bench.h"
#include "kvault/kernels/cuda_codec.h"
#include "kvault/kernels/kv_view.h"
#include "kvault/kernels/reference_codec.h"

namespace kvault::kernels {
namespace {

using namespace cuda_detail;  // CudaStatus, kThreads, FromF32, KVAULT_LAUNCH's helpers

// Owns one device allocation.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    if (ptr_ != nullptr) cudaFree(ptr_);
  }
  Status Allocate(size_t bytes, const char* what) {
    return CudaStatus(cudaMalloc(&ptr_, std::max<size_t>(bytes, 1)), what);
  }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }

 private:
  void* ptr_ = nullptr;
};

class StreamAndEvents {
 public:
  ~StreamAndEvents() {
    if (start != nullptr) cudaEventDestroy(start);
    if (stop != nullptr) cudaEventDestroy(stop);
    if (stream != nullptr) cudaStreamDestroy(stream);
  }
  Status Create() {
    KVAULT_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking),
                                "bench: stream");
    KVAULT_CUDA_RETURN_IF_ERROR(cudaEventCreate(&start), "bench: event");
    return CudaStatus(cudaEventCreate(&stop), "bench: event");
  }
  cudaStream_t stream = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;
};

__device__ __forceinline__ uint32_t Hash32(uint64_t x) {
  x ^= x >> 33;
  x *= 0xFF51AFD7ED558CCDull;
  x ^= x >> 33;
  x *= 0xC4CEB9FE1A85EC53ull;
  x ^= x >> 33;
  return static_cast<uint32_t>(x);
}

struct FillArgs {
  uint16_t* data;
  uint64_t count;
  uint64_t seed;
  uint32_t head_dim;
};

// Synthetic KV: approximately normal values (sum of four uniforms), a few outlier channels at
// 15x and 40x, and a per-token gain. Element i of a tensor whose innermost dim is head_dim.
template <bool kBf16>
__global__ void __launch_bounds__(cuda_detail::kThreads)
    FillKvKernel(const __grid_constant__ FillArgs a) {
  const uint64_t step = uint64_t{gridDim.x} * cuda_detail::kThreads;
  for (uint64_t i = blockIdx.x * uint64_t{cuda_detail::kThreads} + threadIdx.x; i < a.count;
       i += step) {
    const uint32_t h = Hash32(a.seed * 0x9E3779B97F4A7C15ull + i);
    const uint32_t h2 = Hash32(a.seed * 0xD1B54A32D192ED03ull + i);
    const float sum = static_cast<float>((h & 0xFFFFu) + (h >> 16) + (h2 & 0xFFFFu) + (h2 >> 16));
    const float u = (sum / 65536.0f - 2.0f) * 1.7320508f;  // zero mean, unit variance
    const uint32_t channel = static_cast<uint32_t>(i % a.head_dim);
    const uint64_t row = i / a.head_dim;
    float gain = 1.0f + static_cast<float>(row % 13) / 13.0f;
    if (channel % 41 == 7) gain *= 15.0f;
    if (channel % 97 == 3) gain *= 40.0f;
    a.data[i] = static_cast<uint16_t>(FromF32<kBf16>(u * gain));
  }
}

cudaError_t LaunchFill(const FillArgs& args, bool bf16) {
  const dim3 grid(1024);
  if (bf16) {
    KVAULT_LAUNCH(grid, 0, nullptr, args, FillKvKernel<true>);
  } else {
    KVAULT_LAUNCH(grid, 0, nullptr, args, FillKvKernel<false>);
  }
  return cudaGetLastError();
}

double Median(std::vector<float> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (static_cast<double>(v[n / 2 - 1]) + v[n / 2]);
}

// Runs `op` warmup + reps times on the stream; returns the median elapsed milliseconds.
template <typename Op>
Result<double> TimeOp(StreamAndEvents& se, uint32_t warmup, uint32_t reps, const Op& op) {
  for (uint32_t i = 0; i < warmup; ++i) KVAULT_RETURN_IF_ERROR(op());
  KVAULT_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(se.stream), "bench: warmup");
  std::vector<float> ms(reps);
  for (uint32_t i = 0; i < reps; ++i) {
    KVAULT_CUDA_RETURN_IF_ERROR(cudaEventRecord(se.start, se.stream), "bench: event record");
    KVAULT_RETURN_IF_ERROR(op());
    KVAULT_CUDA_RETURN_IF_ERROR(cudaEventRecord(se.stop, se.stream), "bench: event record");
    KVAULT_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(se.stop), "bench: run");
    KVAULT_CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms[i], se.start, se.stop), "bench: timing");
  }
  return Median(std::move(ms));
}

// Copies block `block`'s KV out of the device cache ([layers][2][tokens][heads][dim]).
Status ReadBlockKv(const std::vector<uint16_t*>& layer_tensors, const BlockLayout& l,
                   uint32_t pages, int32_t page, std::vector<uint16_t>& out) {
  const uint64_t page_elems = uint64_t{l.block_tokens} * l.kv_heads * l.head_dim;
  out.resize(page_elems * 2 * l.num_layers);
  for (uint32_t layer = 0; layer < l.num_layers; ++layer) {
    for (uint32_t kv = 0; kv < 2; ++kv) {
      const uint16_t* src = layer_tensors[layer] + (uint64_t{kv} * pages + page) * page_elems;
      KVAULT_CUDA_RETURN_IF_ERROR(cudaMemcpy(out.data() + (uint64_t{layer} * 2 + kv) * page_elems,
                                             src, page_elems * 2, cudaMemcpyDeviceToHost),
                                  "bench: read back");
    }
  }
  return Status::Ok();
}

}  // namespace

Result<CudaCodecTiming> CudaMeasureCodec(const BlockDescriptor& descriptor,
                                         const CudaCodecBenchOptions& options) {
  Result<BlockGeometry> geometry_or = ComputeGeometry(descriptor);
  if (!geometry_or.ok()) {
    return Status::InvalidArgument("bench: invalid descriptor: " + geometry_or.status().message());
  }
  const BlockGeometry geometry = std::move(geometry_or).value();
  if (options.num_blocks == 0 || options.reps == 0) {
    return Status::InvalidArgument("bench: num_blocks and reps must be >= 1");
  }
  const BlockLayout& l = descriptor.layout;
  const uint32_t n = options.num_blocks;

  int device = 0;
  KVAULT_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device), "bench: no CUDA device");
  cudaDeviceProp prop{};
  KVAULT_CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, device), "bench: device properties");

  CudaCodecTiming t;
  t.device_name = prop.name;
  t.num_blocks = n;
  const uint64_t page_elems = uint64_t{l.block_tokens} * l.kv_heads * l.head_dim;
  const uint64_t layer_elems = 2 * uint64_t{n} * page_elems;
  t.kv_bytes = layer_elems * 2 * l.num_layers;
  t.payload_bytes = geometry.payload_bytes * n;
  t.moved_bytes = t.kv_bytes + t.payload_bytes;

  // Cache, page table, payloads.
  DeviceBuffer cache, bases_dev, ids_dev, payloads;
  KVAULT_RETURN_IF_ERROR(cache.Allocate(t.kv_bytes, "bench: KV cache"));
  std::vector<uint16_t*> layer_tensors(l.num_layers);
  for (uint32_t i = 0; i < l.num_layers; ++i)
    layer_tensors[i] = cache.as<uint16_t>() + i * layer_elems;
  const bool bf16 = l.dtype == DType::kBF16;
  KVAULT_CUDA_RETURN_IF_ERROR(LaunchFill(FillArgs{cache.as<uint16_t>(), layer_elems * l.num_layers,
                                                  options.seed, l.head_dim},
                                         bf16),
                              "bench: fill");

  std::vector<int32_t> ids(n);
  std::iota(ids.begin(), ids.end(), 0);
  std::mt19937_64 rng(options.seed);
  std::shuffle(ids.begin(), ids.end(), rng);
  PagedKvView view;
  PagedKvViewStorage storage;
  KVAULT_RETURN_IF_ERROR(MakePagedKvView(KvLayout::kVllmNhd, l.dtype, l.num_layers, l.kv_heads,
                                         l.head_dim, l.block_tokens, n, layer_tensors, ids, view,
                                         storage));
  KVAULT_RETURN_IF_ERROR(bases_dev.Allocate(sizeof(uint16_t*) * l.num_layers, "bench: bases"));
  KVAULT_RETURN_IF_ERROR(ids_dev.Allocate(sizeof(int32_t) * n, "bench: page ids"));
  KVAULT_CUDA_RETURN_IF_ERROR(cudaMemcpy(bases_dev.as<void>(), storage.layer_bases.data(),
                                         sizeof(uint16_t*) * l.num_layers, cudaMemcpyHostToDevice),
                              "bench: upload");
  KVAULT_CUDA_RETURN_IF_ERROR(cudaMemcpy(ids_dev.as<void>(), storage.page_ids.data(),
                                         sizeof(int32_t) * n, cudaMemcpyHostToDevice),
                              "bench: upload");
  view.layer_bases = bases_dev.as<uint16_t* const>();
  view.page_ids = ids_dev.as<const int32_t>();
  KVAULT_RETURN_IF_ERROR(payloads.Allocate(t.payload_bytes, "bench: payloads"));
  KVAULT_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize(), "bench: setup");

  StreamAndEvents se;
  KVAULT_RETURN_IF_ERROR(se.Create());
  const uint64_t stride = geometry.payload_bytes;

  // Reference bytes of a few blocks, taken before decode overwrites the cache.
  const std::vector<uint32_t> checked = {0, n / 2, n - 1};
  std::vector<std::vector<uint8_t>> reference_objects;
  if (options.verify) {
    for (uint32_t b : checked) {
      std::vector<uint16_t> src;
      KVAULT_RETURN_IF_ERROR(ReadBlockKv(layer_tensors, l, n, ids[b], src));
      KVAULT_ASSIGN_OR_RETURN(std::vector<uint8_t> object, ReferenceEncodeBlock(descriptor, src));
      reference_objects.push_back(std::move(object));
    }
  }

  auto encode = [&] {
    return CudaEncodeBlocks(view, 0, n, descriptor, payloads.as<uint8_t>(), stride, se.stream);
  };
  auto decode = [&] {
    return CudaDecodeBlocks(payloads.as<uint8_t>(), stride, n, descriptor, view, 0, se.stream);
  };
  KVAULT_ASSIGN_OR_RETURN(t.encode_ms, TimeOp(se, options.warmup, options.reps, encode));

  bool verified = options.verify;
  if (options.verify) {
    for (size_t c = 0; c < checked.size(); ++c) {
      std::vector<uint8_t> got(geometry.payload_bytes);
      KVAULT_CUDA_RETURN_IF_ERROR(
          cudaMemcpy(got.data(), payloads.as<uint8_t>() + checked[c] * stride, got.size(),
                     cudaMemcpyDeviceToHost),
          "bench: read back");
      const std::vector<uint8_t>& want = reference_objects[c];
      if (std::memcmp(got.data(), want.data() + geometry.header_bytes, got.size()) != 0) {
        verified = false;
      }
    }
  }

  KVAULT_ASSIGN_OR_RETURN(t.decode_ms, TimeOp(se, options.warmup, options.reps, decode));
  if (options.verify) {
    for (size_t c = 0; c < checked.size(); ++c) {
      KVAULT_ASSIGN_OR_RETURN(BlockView parsed, ParseBlockObject(reference_objects[c]));
      std::vector<uint16_t> want(page_elems * 2 * l.num_layers);
      KVAULT_RETURN_IF_ERROR(ReferenceDecodeBlock(parsed, want));
      std::vector<uint16_t> got;
      KVAULT_RETURN_IF_ERROR(ReadBlockKv(layer_tensors, l, n, ids[checked[c]], got));
      if (got != want) verified = false;
    }
  }
  t.verified = verified;
  if (options.verify && !verified) {
    return Status::Internal("bench: device codec output differs from the CPU reference");
  }

  // Baseline: a D2D copy that reads and writes moved_bytes in total.
  const uint64_t copy_bytes = t.moved_bytes / 2;
  DeviceBuffer copy_src, copy_dst;
  KVAULT_RETURN_IF_ERROR(copy_src.Allocate(copy_bytes, "bench: memcpy source"));
  KVAULT_RETURN_IF_ERROR(copy_dst.Allocate(copy_bytes, "bench: memcpy destination"));
  auto copy = [&] {
    return CudaStatus(cudaMemcpyAsync(copy_dst.as<void>(), copy_src.as<void>(), copy_bytes,
                                      cudaMemcpyDeviceToDevice, se.stream),
                      "bench: memcpy");
  };
  KVAULT_ASSIGN_OR_RETURN(t.memcpy_ms, TimeOp(se, options.warmup, options.reps, copy));

  auto gbps = [&](double ms) {
    return ms > 0 ? static_cast<double>(t.moved_bytes) / (ms * 1e6) : 0.0;
  };
  t.encode_gbps = gbps(t.encode_ms);
  t.decode_gbps = gbps(t.decode_ms);
  t.memcpy_gbps = gbps(t.memcpy_ms);
  t.encode_ratio = t.memcpy_gbps > 0 ? t.encode_gbps / t.memcpy_gbps : 0.0;
  t.decode_ratio = t.memcpy_gbps > 0 ? t.decode_gbps / t.memcpy_gbps : 0.0;
  return t;
}

}  // namespace kvault::kernels
