// The device-memory engine cache of `kvault-bench paged` (paged_bench_memory.h): the CUDA kernels
// and the copies StorePaged / LoadPaged make on device memory, each stage alone. Compiles without
// CUDA (kernels/cuda_runtime.h then answers Unsupported, and MakeCudaMemory Unavailable).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>

#include "kvault/common/block_format.h"
#include "kvault/kernels/cuda_codec.h"
#include "kvault/kernels/cuda_runtime.h"
#include "paged_bench_memory.h"
#include "report.h"

namespace kvault::bench::paged {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

constexpr uint64_t kAlign = 256;  // device payload slots start on this boundary
uint64_t AlignUp(uint64_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

// One cache in device memory: a buffer per layer, and a view of the whole sequence whose tables
// (layer bases, engine block ids) live on the device too, as the kernels need.
struct DeviceCache {
  std::vector<kernels::DeviceBuffer> layers;
  kernels::DeviceBuffer tables;
  kernels::PagedKvView view;
};

Status Allocate(const PagedKvCache& shape, DeviceCache& d, PagedKvCache& out) {
  out = shape;
  const size_t layer_bytes = shape.LayerElements() * sizeof(uint16_t);
  std::vector<uint16_t*> bases;
  for (uint32_t l = 0; l < shape.num_layers; ++l) {
    KVAULT_ASSIGN_OR_RETURN(kernels::DeviceBuffer layer,
                            kernels::DeviceBuffer::Allocate(layer_bytes));
    bases.push_back(reinterpret_cast<uint16_t*>(layer.data()));
    out.tensors.push_back(layer.data());
    d.layers.push_back(std::move(layer));
  }
  std::vector<int32_t> ids(shape.engine_num_blocks);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(i);
  kernels::PagedKvViewStorage storage;
  KVAULT_RETURN_IF_ERROR(kernels::MakePagedKvView(
      shape.layout, shape.dtype, shape.num_layers, shape.kv_heads, shape.head_dim,
      shape.engine_block_tokens, shape.engine_num_blocks, bases, ids, d.view, storage));
  const size_t base_bytes = storage.layer_bases.size() * sizeof(uint16_t*);
  const size_t id_bytes = storage.page_ids.size() * sizeof(int32_t);
  KVAULT_ASSIGN_OR_RETURN(d.tables, kernels::DeviceBuffer::Allocate(base_bytes + id_bytes));
  KVAULT_RETURN_IF_ERROR(
      kernels::CopySync(d.tables.data(), storage.layer_bases.data(), base_bytes));
  KVAULT_RETURN_IF_ERROR(
      kernels::CopySync(d.tables.data() + base_bytes, storage.page_ids.data(), id_bytes));
  d.view.layer_bases = reinterpret_cast<uint16_t* const*>(d.tables.data());
  d.view.page_ids = reinterpret_cast<const int32_t*>(d.tables.data() + base_bytes);
  return Status::Ok();
}

class CudaMemory final : public PagedMemory {
 public:
  explicit CudaMemory(const KvBlockCodec& codec) : codec_(codec) {}

  Status Init(const Config& c) {
    config_ = c;
    KVAULT_ASSIGN_OR_RETURN(stream_, kernels::CudaStream::Create());
    const PagedKvCache shape = DescribeCache(c, MemoryKind::kCuda);
    KVAULT_RETURN_IF_ERROR(Allocate(shape, source_device_, source_));
    KVAULT_RETURN_IF_ERROR(Allocate(shape, loaded_device_, loaded_));
    PagedKvCache reference;
    KVAULT_RETURN_IF_ERROR(Allocate(shape, reference_device_, reference));
    KVAULT_RETURN_IF_ERROR(
        FillSource(c, [&](uint32_t layer, uint64_t offset, const uint16_t* src, size_t n) {
          return kernels::CopySync(source_device_.layers[layer].data() + offset * sizeof(uint16_t),
                                   src, n * sizeof(uint16_t));
        }));
    for (uint32_t i = 0; i < c.blocks; ++i) {
      stride_ = std::max(stride_, AlignUp(codec_.ObjectBytes(i) - codec_.HeaderBytes()));
    }
    KVAULT_ASSIGN_OR_RETURN(payloads_, kernels::DeviceBuffer::Allocate(stride_ * c.blocks));
    return Status::Ok();
  }

  void* stream() const override { return stream_.handle(); }

  Status EncodeStages(std::span<const BlockKey> keys, std::span<const std::span<uint8_t>> objects,
                      uint32_t wave, StageSeconds& t) override {
    PinOnce(objects.front().data(), objects.back().data() + objects.back().size());
    const uint32_t header = codec_.HeaderBytes();
    double start = Now();
    KVAULT_RETURN_IF_ERROR(ForEachLaunch(keys.size(), wave, [&](size_t begin, size_t end) {
      Result<BlockDescriptor> d = codec_.Descriptor(begin, keys[begin]);
      if (!d.ok()) return d.status();
      return kernels::CudaEncodeBlocks(
          source_device_.view, begin * config_.block_tokens, static_cast<uint32_t>(end - begin), *d,
          payloads_.data() + begin * stride_, stride_, stream_.handle());
    }));
    KVAULT_RETURN_IF_ERROR(stream_.Synchronize());
    t.encode.push_back(Now() - start);
    start = Now();
    for (size_t i = 0; i < keys.size(); ++i) {
      KVAULT_RETURN_IF_ERROR(kernels::CopyAsync(objects[i].data() + header,
                                                payloads_.data() + i * stride_,
                                                objects[i].size() - header, stream_.handle()));
    }
    KVAULT_RETURN_IF_ERROR(stream_.Synchronize());
    for (size_t i = 0; i < keys.size(); ++i) {  // what the pipeline's host does after the copy
      KVAULT_ASSIGN_OR_RETURN(BlockDescriptor d, codec_.Descriptor(i, keys[i]));
      KVAULT_ASSIGN_OR_RETURN(BlockGeometry g, ComputeGeometry(d));
      WriteBlockHeader(d, g, objects[i]);
      SealBlockObject(objects[i]);
    }
    t.to_host.push_back(Now() - start);
    return Status::Ok();
  }

  Status DecodeStages(std::span<const BlockKey> keys,
                      std::span<const std::span<const uint8_t>> objects, uint32_t wave,
                      StageSeconds& t) override {
    PinOnce(objects.front().data(), objects.back().data() + objects.back().size());
    const uint32_t header = codec_.HeaderBytes();
    double start = Now();
    for (size_t i = 0; i < keys.size(); ++i) {  // verified on the host, as the pipeline does
      KVAULT_RETURN_IF_ERROR(codec_.VerifyObject(objects[i], i, keys[i]).status());
      KVAULT_RETURN_IF_ERROR(kernels::CopyAsync(payloads_.data() + i * stride_,
                                                objects[i].data() + header,
                                                objects[i].size() - header, stream_.handle()));
    }
    KVAULT_RETURN_IF_ERROR(stream_.Synchronize());
    t.to_device.push_back(Now() - start);
    start = Now();
    KVAULT_RETURN_IF_ERROR(ForEachLaunch(keys.size(), wave, [&](size_t begin, size_t end) {
      Result<BlockDescriptor> d = codec_.Descriptor(begin, keys[begin]);
      if (!d.ok()) return d.status();
      return kernels::CudaDecodeBlocks(
          payloads_.data() + begin * stride_, stride_, static_cast<uint32_t>(end - begin), *d,
          reference_device_.view, begin * config_.block_tokens, stream_.handle());
    }));
    KVAULT_RETURN_IF_ERROR(stream_.Synchronize());
    t.decode.push_back(Now() - start);
    return Status::Ok();
  }

  Status Synchronize() override { return stream_.Synchronize(); }

  // Zeroes on the stream LoadPaged runs on, so the zeroing is ordered before its decodes.
  Status ClearLoaded() override {
    const std::vector<uint8_t> zeros(loaded_.LayerElements() * sizeof(uint16_t), 0);
    for (auto& layer : loaded_device_.layers) {
      KVAULT_RETURN_IF_ERROR(
          kernels::CopyAsync(layer.data(), zeros.data(), zeros.size(), stream_.handle()));
    }
    return stream_.Synchronize();
  }

  Result<std::string> LoadedVsReference() override {
    const size_t bytes = loaded_.LayerElements() * sizeof(uint16_t);
    std::vector<uint8_t> a(bytes), b(bytes);
    for (size_t l = 0; l < loaded_device_.layers.size(); ++l) {
      KVAULT_RETURN_IF_ERROR(kernels::CopySync(a.data(), loaded_device_.layers[l].data(), bytes));
      KVAULT_RETURN_IF_ERROR(
          kernels::CopySync(b.data(), reference_device_.layers[l].data(), bytes));
      const auto at = std::mismatch(a.begin(), a.end(), b.begin());
      if (at.first != a.end()) {
        return "layer " + std::to_string(l) + ", byte " + std::to_string(at.first - a.begin());
      }
    }
    return std::string();
  }

  Result<double> PinnedHostToDeviceBytesPerSecond() override {
    // As many bytes as the sequence holds at fp16: the copy LoadPaged would make without a codec.
    const size_t bytes = size_t{config_.blocks} * config_.layers * 2 * config_.block_tokens *
                         config_.kv_heads * config_.head_dim * sizeof(uint16_t);
    std::vector<uint8_t> host(bytes, 1);
    KVAULT_ASSIGN_OR_RETURN(kernels::HostPinning pinned,
                            kernels::HostPinning::Pin(host.data(), host.size()));
    KVAULT_ASSIGN_OR_RETURN(kernels::DeviceBuffer device, kernels::DeviceBuffer::Allocate(bytes));
    std::vector<double> rates;
    for (int i = 0; i < 4; ++i) {  // the first is a warm-up
      const double start = Now();
      KVAULT_RETURN_IF_ERROR(kernels::CopyAsync(device.data(), host.data(), bytes, stream()));
      KVAULT_RETURN_IF_ERROR(stream_.Synchronize());
      if (i > 0) rates.push_back(bytes / std::max(Now() - start, 1e-9));
    }
    return Median(rates);
  }

 private:
  // Page-locks [begin, end) the first time it is seen (the registered regions of a codec's run),
  // as the pipeline does its staging: best effort, copies from memory that cannot be locked
  // (already registered, a limit) are slower but correct, and the run says so.
  void PinOnce(const uint8_t* begin, const uint8_t* end) {
    if (pinned_.count(begin) != 0) return;
    Result<kernels::HostPinning> pin =
        kernels::HostPinning::Pin(const_cast<uint8_t*>(begin), end - begin);
    if (!pin.ok()) {
      std::fprintf(stderr, "  note: registered memory not page-locked (%s); copies are slower\n",
                   pin.status().ToString().c_str());
      pinned_.emplace(begin, kernels::HostPinning());
      return;
    }
    pinned_.emplace(begin, std::move(*pin));
  }

  // Calls launch(begin, end) for the kernel launches the pipeline makes: per wave of `wave`
  // blocks, block 0 alone (its descriptor may differ: sink tokens), the rest of a wave at once.
  template <typename Launch>
  static Status ForEachLaunch(size_t blocks, uint32_t wave, Launch&& launch) {
    for (size_t first = 0; first < blocks; first += wave) {
      const size_t end = std::min<size_t>(first + wave, blocks);
      size_t begin = first;
      if (begin == 0) {
        KVAULT_RETURN_IF_ERROR(launch(size_t{0}, size_t{1}));
        begin = 1;
      }
      if (begin < end) KVAULT_RETURN_IF_ERROR(launch(begin, end));
    }
    return Status::Ok();
  }

  const KvBlockCodec& codec_;
  Config config_;
  kernels::CudaStream stream_;
  DeviceCache source_device_, loaded_device_, reference_device_;
  kernels::DeviceBuffer payloads_;  // one slot of stride_ bytes per block
  uint64_t stride_ = 0;
  std::map<const uint8_t*, kernels::HostPinning> pinned_;
};

}  // namespace

Result<std::unique_ptr<PagedMemory>> MakeCudaMemory(const Config& c, const KvBlockCodec& codec) {
  if (!kernels::CudaAvailable()) {
    return Status::Unavailable("--memory cuda needs a CUDA device and a build with CUDA");
  }
  auto memory = std::make_unique<CudaMemory>(codec);
  KVAULT_RETURN_IF_ERROR(memory->Init(c));
  return std::unique_ptr<PagedMemory>(std::move(memory));
}

}  // namespace kvault::bench::paged
