// The CUDA wave codec (paged_wave_codec.h): the engine's cache in device memory. Store waves are
// gathered and encoded by the CUDA kernels into device staging on a stream of the codec's own
// (after the work the engine queued so far), copied to page-locked host staging, and sealed on
// the host. Load waves are verified on the host, copied to device staging and decoded and
// scattered on the caller's stream. Block 0 (sink tokens) is always its own kernel batch.

#include <algorithm>
#include <string>
#include <utility>

#include "kvault/common/block_format.h"
#include "kvault/kernels/cuda_codec.h"
#include "kvault/kernels/cuda_runtime.h"
#include "kvault/kernels/gpu_ipc.h"
#include "paged_device_layout.h"
#include "paged_wave_codec.h"

namespace kvault::client_internal {
namespace {

using kernels::CudaEvent;
using kernels::CudaStream;
using kernels::DeviceBuffer;

class CudaWaveCodec final : public PagedWaveCodec {
 public:
  static Result<std::unique_ptr<PagedWaveCodec>> Create(const PagedKvCache& cache,
                                                        const KvBlockCodec& codec,
                                                        size_t staging_bytes, uint32_t buffers) {
    auto self = std::unique_ptr<CudaWaveCodec>(new CudaWaveCodec(cache, codec, buffers));
    KVAULT_ASSIGN_OR_RETURN(self->device_, kernels::CurrentDevice());
    KVAULT_ASSIGN_OR_RETURN(std::vector<uint16_t*> layers, CacheLayerPointers(cache));
    for (uint16_t* p : layers) {
      KVAULT_ASSIGN_OR_RETURN(bool on_device, kernels::IsDevicePointer(p));
      if (!on_device) {
        return Status::InvalidArgument(
            "paged cache: memory is cuda but a tensor is not device "
            "memory of the current device");
      }
    }
    self->layer_pointers_ = std::move(layers);
    KVAULT_ASSIGN_OR_RETURN(self->stream_, CudaStream::Create());
    KVAULT_ASSIGN_OR_RETURN(self->engine_ready_, CudaEvent::Create());
    KVAULT_ASSIGN_OR_RETURN(self->device_done_, CudaEvent::Create());
    self->slice_bytes_ = staging_bytes / buffers / kDeviceAlignment * kDeviceAlignment;
    KVAULT_ASSIGN_OR_RETURN(self->staging_, DeviceBuffer::Allocate(self->slice_bytes_ * buffers));
    for (uint32_t b = 0; b < buffers; ++b) {
      KVAULT_ASSIGN_OR_RETURN(CudaEvent e, CudaEvent::Create());
      self->staging_free_.push_back(std::move(e));
    }
    self->staging_recorded_.assign(buffers, 0);
    return std::unique_ptr<PagedWaveCodec>(std::move(self));
  }

  Status Bind(std::span<const int32_t> block_ids, uint64_t tokens) override {
    KVAULT_RETURN_IF_ERROR(kernels::SetDevice(device_));
    // The device tables below may still be read by the previous transfer's kernels.
    KVAULT_RETURN_IF_ERROR(Drain());
    kernels::PagedKvViewStorage storage;
    KVAULT_RETURN_IF_ERROR(
        MakeSequenceView(cache_, layer_pointers_, block_ids, tokens, view_, storage));
    const size_t base_bytes = storage.layer_bases.size() * sizeof(uint16_t*);
    const size_t id_bytes = storage.page_ids.size() * sizeof(int32_t);
    if (tables_.size() < base_bytes + id_bytes) {
      KVAULT_ASSIGN_OR_RETURN(tables_, DeviceBuffer::Allocate(base_bytes + id_bytes));
    }
    KVAULT_RETURN_IF_ERROR(kernels::CopyAsync(tables_.data(), storage.layer_bases.data(),
                                              base_bytes, stream_.handle()));
    KVAULT_RETURN_IF_ERROR(kernels::CopyAsync(tables_.data() + base_bytes, storage.page_ids.data(),
                                              id_bytes, stream_.handle()));
    // On the codec's own (non-blocking) stream, not cudaMemcpy's legacy default stream, which
    // would first wait for everything the engine queued on its blocking streams.
    KVAULT_RETURN_IF_ERROR(stream_.Synchronize());
    view_.layer_bases = reinterpret_cast<uint16_t* const*>(tables_.data());
    view_.page_ids = reinterpret_cast<const int32_t*>(tables_.data() + base_bytes);
    return Status::Ok();
  }

  Status BeginStore(void* stream) override {
    KVAULT_RETURN_IF_ERROR(engine_ready_.Record(stream));
    return engine_ready_.MakeStreamWait(stream_.handle());
  }

  Status Encode(uint64_t first, std::span<const BlockKey> keys,
                std::span<const std::span<uint8_t>> objects, uint32_t buffer) override {
    const uint32_t header = codec_.HeaderBytes();
    std::vector<uint64_t> payloads(keys.size());
    for (size_t i = 0; i < keys.size(); ++i) payloads[i] = objects[i].size() - header;
    const DeviceWaveLayout layout = LayOutDeviceWave(first, payloads);
    if (layout.total > slice_bytes_) {
      return Status::Internal("encode wave larger than its device staging");
    }
    uint8_t* device = staging_.data() + buffer * slice_bytes_;
    const uint32_t block_tokens = codec_.format().block_tokens;
    KVAULT_RETURN_IF_ERROR(ForEachBatch(first, keys.size(), [&](size_t begin, size_t end) {
      KVAULT_ASSIGN_OR_RETURN(BlockDescriptor d, codec_.Descriptor(first + begin, keys[begin]));
      return kernels::CudaEncodeBlocks(
          view_, (first + begin) * block_tokens, static_cast<uint32_t>(end - begin), d,
          device + layout.offsets[begin], layout.strides[begin], stream_.handle());
    }));
    for (size_t i = 0; i < keys.size(); ++i) {
      KVAULT_RETURN_IF_ERROR(kernels::CopyAsync(
          objects[i].data() + header, device + layout.offsets[i], payloads[i], stream_.handle()));
    }
    KVAULT_RETURN_IF_ERROR(stream_.Synchronize());
    for (size_t i = 0; i < keys.size(); ++i) {
      KVAULT_ASSIGN_OR_RETURN(BlockDescriptor d, codec_.Descriptor(first + i, keys[i]));
      KVAULT_ASSIGN_OR_RETURN(BlockGeometry g, ComputeGeometry(d));
      WriteBlockHeader(d, g, objects[i]);
      SealBlockObject(objects[i]);
    }
    return Status::Ok();
  }

  std::vector<Status> Decode(uint64_t first, std::span<const BlockKey> keys, uint32_t first_layer,
                             uint32_t layer_count, std::span<const StagedBlock> blocks,
                             uint32_t buffer, void* stream) override {
    // Verify on the host first: only the leading verified blocks reach the device.
    std::vector<Status> out;
    std::vector<std::span<const uint8_t>> payloads;
    const uint32_t header = codec_.HeaderBytes();
    for (size_t i = 0; i < blocks.size(); ++i) {
      const StagedBlock& b = blocks[i];
      if (!b.object.empty()) {
        // The device decodes with this codec's descriptor: the object must be this codec's.
        Result<BlockView> v = codec_.VerifyOwnObject(b.object, first + i, keys[i]);
        out.push_back(v.status());
        if (v.ok()) payloads.push_back(b.object.subspan(header));
      } else {
        out.push_back(codec_.VerifyHeader(b.header, first + i, keys[i]));
        if (out.back().ok()) payloads.push_back(b.layers);
      }
      if (!out.back().ok()) break;
    }
    Status queued = QueueDecode(first, keys, first_layer, layer_count, payloads, buffer, stream);
    // A failed copy or launch: nothing of this wave can be trusted on the device.
    if (!queued.ok()) return {queued};
    return out;
  }

  std::vector<Status> DecodeImported(uint64_t first, std::span<const BlockKey> keys,
                                     std::span<const kernels::GpuIpcExport> blocks,
                                     void* stream) override {
    std::vector<Status> out;
    if (!importer_) {
      Result<std::unique_ptr<kernels::GpuIpcImporter>> importer = kernels::GpuIpcImporter::Create();
      if (!importer.ok()) return {importer.status()};
      importer_ = std::move(*importer);
    }
    std::vector<uint8_t> head(codec_.HeaderBytes());
    for (size_t i = 0; i < blocks.size(); ++i) {
      out.push_back(ImportOne(first + i, keys[i], blocks[i], head, stream));
      if (!out.back().ok()) break;
    }
    // The exported bytes must not be read after this returns (the lease may end).
    Status done = device_done_.Record(stream);
    if (done.ok()) done = device_done_.Synchronize();
    device_done_recorded_ = true;
    if (!done.ok()) return {done};
    return out;
  }

  Result<PagedOpState::LayerEvents> MarkLayers(uint32_t, uint32_t count, void* stream) override {
    auto events = std::make_shared<std::vector<CudaEvent>>();
    for (uint32_t j = 0; j < count; ++j) {
      KVAULT_ASSIGN_OR_RETURN(CudaEvent e, CudaEvent::Create());
      KVAULT_RETURN_IF_ERROR(e.Record(stream));
      events->push_back(std::move(e));
    }
    return PagedOpState::LayerEvents(std::move(events));
  }

  Status ReleaseStaging(uint32_t buffer) override {
    if (!staging_recorded_[buffer]) return Status::Ok();
    return staging_free_[buffer].Synchronize();
  }

  Status Drain() override {
    KVAULT_RETURN_IF_ERROR(stream_.Synchronize());
    if (!device_done_recorded_) return Status::Ok();
    return device_done_.Synchronize();
  }

 private:
  CudaWaveCodec(const PagedKvCache& cache, const KvBlockCodec& codec, uint32_t buffers)
      : cache_(cache), codec_(codec), buffers_(buffers) {}

  Status QueueDecode(uint64_t first, std::span<const BlockKey> keys, uint32_t first_layer,
                     uint32_t layer_count, std::span<const std::span<uint8_t const>> payloads,
                     uint32_t buffer, void* stream) {
    if (payloads.empty()) return Status::Ok();
    std::vector<uint64_t> sizes(payloads.size());
    for (size_t i = 0; i < payloads.size(); ++i) sizes[i] = payloads[i].size();
    const DeviceWaveLayout layout = LayOutDeviceWave(first, sizes);
    if (layout.total > slice_bytes_) {
      return Status::Internal("decode wave larger than its device staging");
    }
    uint8_t* device = staging_.data() + buffer * slice_bytes_;
    for (size_t i = 0; i < payloads.size(); ++i) {
      KVAULT_RETURN_IF_ERROR(kernels::CopyAsync(device + layout.offsets[i], payloads[i].data(),
                                                payloads[i].size(), stream));
    }
    KVAULT_RETURN_IF_ERROR(staging_free_[buffer].Record(stream));
    staging_recorded_[buffer] = 1;
    kernels::PagedKvView sub = view_;
    sub.num_layers = layer_count;
    sub.layer_bases = view_.layer_bases + first_layer;
    const uint32_t block_tokens = codec_.format().block_tokens;
    KVAULT_RETURN_IF_ERROR(ForEachBatch(first, payloads.size(), [&](size_t begin, size_t end) {
      KVAULT_ASSIGN_OR_RETURN(BlockDescriptor d, codec_.LayerDescriptor(first + begin, keys[begin],
                                                                        first_layer, layer_count));
      return kernels::CudaDecodeBlocks(device + layout.offsets[begin], layout.strides[begin],
                                       static_cast<uint32_t>(end - begin), d, sub,
                                       (first + begin) * block_tokens, stream);
    }));
    KVAULT_RETURN_IF_ERROR(device_done_.Record(stream));
    device_done_recorded_ = true;
    return Status::Ok();
  }

  // One block of DecodeImported: map, check device and header, queue the decode.
  Status ImportOne(uint64_t index, const BlockKey& key, const kernels::GpuIpcExport& block,
                   std::vector<uint8_t>& head, void* stream) {
    KVAULT_ASSIGN_OR_RETURN(const int where, importer_->LocalDevice(block));
    if (where != device_) {
      return Status::Unsupported("gpu tier block lives on device " + std::to_string(where) +
                                 ", the cache on device " + std::to_string(device_));
    }
    if (block.length != codec_.ObjectBytes(index)) {
      return Status::Corruption("block " + std::to_string(index) + ": exported object of " +
                                std::to_string(block.length) + " bytes, expected " +
                                std::to_string(codec_.ObjectBytes(index)));
    }
    Result<const void*> mapped = importer_->Map(block);
    // Opening a pool selects its device; it is ours (checked above), but say so explicitly.
    KVAULT_RETURN_IF_ERROR(kernels::SetDevice(device_));
    KVAULT_RETURN_IF_ERROR(mapped.status());
    const auto* object = static_cast<const uint8_t*>(*mapped);
    // The codec's own stream (see Bind): the engine's queued work does not hold the read up.
    KVAULT_RETURN_IF_ERROR(kernels::CopyAsync(head.data(), object, head.size(), stream_.handle()));
    KVAULT_RETURN_IF_ERROR(stream_.Synchronize());
    KVAULT_RETURN_IF_ERROR(codec_.VerifyHeader(head, index, key));
    KVAULT_ASSIGN_OR_RETURN(BlockDescriptor d, codec_.Descriptor(index, key));
    KVAULT_ASSIGN_OR_RETURN(BlockGeometry g, ComputeGeometry(d));
    return kernels::CudaDecodeBlocks(object + head.size(), AlignDevice(g.payload_bytes), 1, d,
                                     view_, index * codec_.format().block_tokens, stream);
  }

  const PagedKvCache cache_;
  const KvBlockCodec& codec_;
  const uint32_t buffers_;
  std::unique_ptr<kernels::GpuIpcImporter> importer_;  // opened on the first gpu tier load
  int device_ = 0;
  std::vector<uint16_t*> layer_pointers_;
  CudaStream stream_;       // store: gather + encode + copy out
  CudaEvent engine_ready_;  // the engine's stream at BeginStore
  CudaEvent device_done_;   // the last queued decode
  bool device_done_recorded_ = false;
  uint64_t slice_bytes_ = 0;
  DeviceBuffer staging_;                 // buffers_ slices of slice_bytes_
  DeviceBuffer tables_;                  // the sequence's layer bases and page ids
  std::vector<CudaEvent> staging_free_;  // per host buffer: its copies to the device are done
  std::vector<uint8_t> staging_recorded_;
  kernels::PagedKvView view_;
};

}  // namespace

Result<std::unique_ptr<PagedWaveCodec>> MakeCudaWaveCodec(const PagedKvCache& cache,
                                                          const KvBlockCodec& codec,
                                                          size_t staging_bytes, uint32_t buffers) {
  return CudaWaveCodec::Create(cache, codec, staging_bytes, buffers);
}

}  // namespace kvault::client_internal
