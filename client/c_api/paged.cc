// The C ABI of kvault::PagedKvStore and its handles (kvault.h "Paged KV").

#include <span>

#include "internal.h"
#include "kvault/common/block_format.h"
#include "kvault/paged_kv.h"
#include "transfer_calls.h"

// Holds its client (declared first: destroyed after the store), so kvault_close may come first.
struct kvault_paged_store {
  std::shared_ptr<kvault::Client> client;
  std::unique_ptr<kvault::PagedKvStore> store;
};

// A paged store or load: one of the two handles is set (shared references to the transfer).
struct kvault_paged_transfer {
  kvault::PagedStoreHandle store;
  kvault::PagedLoadHandle load;
  bool is_load = false;
  kvault::PagedHandle& Handle() {
    return is_load ? static_cast<kvault::PagedHandle&>(load) : store;
  }
  const kvault::PagedHandle& Handle() const {
    return is_load ? static_cast<const kvault::PagedHandle&>(load) : store;
  }
};

namespace kvault::c_api {
namespace {

static_assert(KVAULT_LAYOUT_CONTIGUOUS == static_cast<int>(kernels::KvLayout::kContiguous));
static_assert(KVAULT_LAYOUT_VLLM_NHD == static_cast<int>(kernels::KvLayout::kVllmNhd));
static_assert(KVAULT_LAYOUT_VLLM_HND == static_cast<int>(kernels::KvLayout::kVllmHnd));
static_assert(KVAULT_LAYOUT_FLASHINFER_NHD == static_cast<int>(kernels::KvLayout::kFlashInferNhd));
static_assert(KVAULT_LAYOUT_FLASHINFER_HND == static_cast<int>(kernels::KvLayout::kFlashInferHnd));
static_assert(KVAULT_MEMORY_HOST == static_cast<int>(MemoryKind::kHost));
static_assert(KVAULT_MEMORY_CUDA == static_cast<int>(MemoryKind::kCuda));

Result<PagedKvOptions> ToPagedOptions(const char* fn, const kvault_paged_options& o) {
  KVAULT_RETURN_IF_ERROR(
      CheckStructSize(fn, "options", o.struct_size, sizeof(kvault_paged_options)));
  const kvault_paged_cache& c = o.cache;
  const int64_t memory = RawEnum(c.memory);
  const int64_t layout = RawEnum(c.layout);
  if (memory != KVAULT_MEMORY_HOST && memory != KVAULT_MEMORY_CUDA) {
    return Status::InvalidArgument(std::string(fn) + ": unknown cache.memory " +
                                   std::to_string(memory));
  }
  if (layout < KVAULT_LAYOUT_CONTIGUOUS || layout > KVAULT_LAYOUT_FLASHINFER_HND) {
    return Status::InvalidArgument(std::string(fn) + ": unknown cache.layout " +
                                   std::to_string(layout));
  }
  if (c.tensors == nullptr || c.num_tensors == 0) return Null(fn, "options->cache.tensors");
  // One tensor, or one per layer: never more than the block format's layers.
  KVAULT_RETURN_IF_ERROR(CheckCount(fn, "options->cache.num_tensors", c.num_tensors, kMaxLayers));
  if (o.codec == nullptr) return Null(fn, "options->codec");
  PagedKvOptions out;
  out.cache.memory = static_cast<MemoryKind>(memory);
  out.cache.layout = static_cast<kernels::KvLayout>(layout);
  KVAULT_ASSIGN_OR_RETURN(out.cache.dtype, DTypeFromC(fn, c.dtype));
  out.cache.num_layers = c.num_layers;
  out.cache.kv_heads = c.kv_heads;
  out.cache.head_dim = c.head_dim;
  out.cache.engine_block_tokens = c.engine_block_tokens;
  out.cache.engine_num_blocks = c.engine_num_blocks;
  out.cache.tensors.assign(c.tensors, c.tensors + c.num_tensors);
  for (size_t i = 0; i < c.num_tensors; ++i) {
    if (c.tensors[i] == nullptr) {
      return Status::InvalidArgument(std::string(fn) + ": options->cache.tensors[" +
                                     std::to_string(i) + "] is null");
    }
  }
  out.block_tokens = o.block_tokens;
  out.codec = o.codec;
  out.ns_digest = GetKey(o.ns_digest);
  out.staging_bytes = o.staging_bytes;
  out.pipeline_depth = o.pipeline_depth;
  out.gpu_ipc = o.gpu_ipc != 0;
  return out;
}

// The PagedSequence a C sequence describes; `keys` holds its keys (the pipeline copies both
// arrays before StorePaged / LoadPaged return).
Result<PagedSequence> ToSequence(const char* fn, const kvault_paged_sequence* s,
                                 std::vector<BlockKey>& keys) {
  if (s == nullptr) return Null(fn, "sequence");
  if (s->block_ids == nullptr && s->num_block_ids > 0) return Null(fn, "sequence->block_ids");
  if (s->keys == nullptr && s->num_keys > 0) return Null(fn, "sequence->keys");
  KVAULT_RETURN_IF_ERROR(CheckCount(fn, "sequence->num_keys", s->num_keys, kMaxTransferKeys));
  KVAULT_RETURN_IF_ERROR(
      CheckCount(fn, "sequence->num_block_ids", s->num_block_ids, kMaxTransferKeys));
  keys = CopyKeys(s->keys, s->num_keys);
  PagedSequence out;
  if (s->num_block_ids > 0) out.block_ids = std::span(s->block_ids, s->num_block_ids);
  out.num_tokens = s->num_tokens;
  out.keys = keys;
  return out;
}

// As kvault_store: input refused before anything started is the call's status.
Status Refused(const PagedHandle& handle) {
  if (!handle.refused()) return Status::Ok();
  return RefusedInput(handle.Wait(Deadline::min()));
}

// What kvault_store_paged and kvault_load_paged check and convert before they start.
struct PagedCall {
  std::vector<BlockKey> keys;  // backs sequence.keys
  PagedSequence sequence;
  std::optional<Deadline> deadline;
};

Status PreparePagedCall(const char* fn, const kvault_paged_store* store,
                        const kvault_paged_sequence* sequence, int64_t timeout_ms,
                        kvault_paged_transfer** transfer, PagedCall& call) {
  if (transfer == nullptr) return Null(fn, "transfer");
  *transfer = nullptr;
  if (store == nullptr) return Null(fn, "store");
  KVAULT_ASSIGN_OR_RETURN(call.sequence, ToSequence(fn, sequence, call.keys));
  KVAULT_ASSIGN_OR_RETURN(call.deadline, RequestDeadline(fn, timeout_ms));
  return Status::Ok();
}

// Hands `made` to the caller as `*transfer`, unless it refused its input.
Status Publish(std::unique_ptr<kvault_paged_transfer> made, kvault_paged_transfer** transfer) {
  KVAULT_RETURN_IF_ERROR(Refused(made->Handle()));
  *transfer = made.release();
  return Status::Ok();
}

}  // namespace
}  // namespace kvault::c_api

using kvault::Status;
using namespace kvault::c_api;  // NOLINT(google-build-using-namespace): this file's own helpers

extern "C" {

void kvault_paged_options_init(kvault_paged_options* options) noexcept {
  if (options == nullptr) return;
  const kvault::PagedKvOptions defaults;
  *options = kvault_paged_options{};
  options->struct_size = sizeof(kvault_paged_options);
  options->cache.memory = KVAULT_MEMORY_HOST;
  options->cache.layout = KVAULT_LAYOUT_VLLM_NHD;
  options->cache.dtype = KVAULT_DTYPE_F16;
  options->cache.engine_block_tokens = defaults.cache.engine_block_tokens;
  options->block_tokens = defaults.block_tokens;
  options->codec = "fp8";
  options->staging_bytes = defaults.staging_bytes;
  options->pipeline_depth = defaults.pipeline_depth;
  options->gpu_ipc = defaults.gpu_ipc ? 1 : 0;
}

kvault_status kvault_paged_store_create(kvault_client* client, const kvault_paged_options* options,
                                        kvault_paged_store** store) noexcept {
  return Guard("kvault_paged_store_create", [&]() -> Status {
    constexpr const char* kFn = "kvault_paged_store_create";
    if (store == nullptr) return Null(kFn, "store");
    *store = nullptr;
    if (client == nullptr) return Null(kFn, "client");
    if (options == nullptr) return Null(kFn, "options");
    KVAULT_ASSIGN_OR_RETURN(kvault::PagedKvOptions cpp, ToPagedOptions(kFn, *options));
    KVAULT_ASSIGN_OR_RETURN(std::unique_ptr<kvault::PagedKvStore> made,
                            kvault::PagedKvStore::Create(*client->client, cpp));
    *store = NewHandle<kvault_paged_store>(client->client, std::move(made));
    return Status::Ok();
  });
}

void kvault_paged_store_free(kvault_paged_store* store) noexcept { DeleteHandle(store); }

uint64_t kvault_paged_store_object_bytes(const kvault_paged_store* store, uint64_t index) noexcept {
  return GuardValue<uint64_t>(
      0, [&]() -> uint64_t { return store != nullptr ? store->store->ObjectBytes(index) : 0; });
}

kvault_status kvault_store_paged(kvault_paged_store* store, const kvault_paged_sequence* sequence,
                                 int skip_stored, void* stream, int64_t timeout_ms,
                                 kvault_paged_transfer** transfer) noexcept {
  return Guard("kvault_store_paged", [&]() -> Status {
    constexpr const char* kFn = "kvault_store_paged";
    PagedCall call;
    KVAULT_RETURN_IF_ERROR(PreparePagedCall(kFn, store, sequence, timeout_ms, transfer, call));
    kvault::PagedStoreOptions options;
    options.deadline = call.deadline;
    options.skip_stored = skip_stored != 0;
    options.stream = stream;
    auto made = std::make_unique<kvault_paged_transfer>();
    made->store = store->store->StorePaged(call.sequence, options);
    return Publish(std::move(made), transfer);
  });
}

kvault_status kvault_load_paged(kvault_paged_store* store, const kvault_lease* lease,
                                const kvault_paged_sequence* sequence, size_t blocks, void* stream,
                                uint32_t layers_per_wave, int64_t timeout_ms,
                                kvault_paged_transfer** transfer) noexcept {
  return Guard("kvault_load_paged", [&]() -> Status {
    constexpr const char* kFn = "kvault_load_paged";
    PagedCall call;
    KVAULT_RETURN_IF_ERROR(PreparePagedCall(kFn, store, sequence, timeout_ms, transfer, call));
    kvault::PagedLoadOptions options;
    options.deadline = call.deadline;
    options.stream = stream;
    options.layers_per_wave = layers_per_wave;
    auto made = std::make_unique<kvault_paged_transfer>();
    made->is_load = true;
    made->load = store->store->LoadPaged(lease != nullptr ? FromC(*lease) : kvault::Lease{},
                                         call.sequence, blocks, options);
    return Publish(std::move(made), transfer);
  });
}

kvault_status kvault_paged_transfer_wait(const kvault_paged_transfer* transfer,
                                         int64_t timeout_ms) noexcept {
  return WaitTransfer("kvault_paged_transfer_wait", transfer, timeout_ms);
}

int kvault_paged_transfer_poll(const kvault_paged_transfer* transfer) noexcept {
  return PollTransfer(transfer);
}

void kvault_paged_transfer_cancel(kvault_paged_transfer* transfer) noexcept {
  CancelTransfer(transfer);
}

size_t kvault_paged_transfer_size(const kvault_paged_transfer* transfer) noexcept {
  return GuardValue<size_t>(0, [&] { return transfer ? transfer->Handle().size() : 0; });
}

kvault_status kvault_paged_transfer_key_status(const kvault_paged_transfer* transfer, size_t i,
                                               char* message, size_t message_capacity) noexcept {
  return Guard("kvault_paged_transfer_key_status", [&]() -> Status {
    Status status;
    if (transfer == nullptr) {
      status = Null("kvault_paged_transfer_key_status", "transfer");
    } else if (i >= transfer->Handle().size()) {
      status = Status::OutOfRange("kvault_paged_transfer_key_status: block " + std::to_string(i) +
                                  " of " + std::to_string(transfer->Handle().size()));
    } else {
      status = transfer->Handle().key_status(i);
    }
    CopyMessage(status, message, message_capacity);
    return status;
  });
}

size_t kvault_paged_transfer_leading_ok(const kvault_paged_transfer* transfer) noexcept {
  return TransferLeadingOk(transfer);
}

size_t kvault_paged_transfer_skipped(const kvault_paged_transfer* transfer) noexcept {
  return GuardValue<size_t>(0, [&]() -> size_t {
    return transfer != nullptr && !transfer->is_load ? transfer->store.skipped() : 0;
  });
}

size_t kvault_paged_transfer_gpu_tier_blocks(const kvault_paged_transfer* transfer) noexcept {
  return GuardValue<size_t>(0, [&]() -> size_t {
    return transfer != nullptr && transfer->is_load ? transfer->load.gpu_tier_blocks() : 0;
  });
}

int kvault_paged_transfer_wait_source_released(const kvault_paged_transfer* transfer,
                                               int64_t timeout_ms) noexcept {
  return GuardValue(0, [&] {
    if (transfer == nullptr || transfer->is_load) return 1;
    return transfer->store.WaitSourceReleased(WaitDeadline(timeout_ms)) ? 1 : 0;
  });
}

kvault_status kvault_paged_transfer_wait_layer(const kvault_paged_transfer* transfer,
                                               uint32_t layer, int64_t timeout_ms) noexcept {
  return Guard("kvault_paged_transfer_wait_layer", [&]() -> Status {
    constexpr const char* kFn = "kvault_paged_transfer_wait_layer";
    if (transfer == nullptr) return Null(kFn, "transfer");
    if (!transfer->is_load) {
      return Status::InvalidArgument("kvault_paged_transfer_wait_layer: a store has no layers");
    }
    return transfer->load.WaitLayer(layer, WaitDeadline(timeout_ms));
  });
}

void* kvault_paged_transfer_layer_event(const kvault_paged_transfer* transfer,
                                        uint32_t layer) noexcept {
  return GuardValue<void*>(nullptr, [&]() -> void* {
    return transfer != nullptr && transfer->is_load ? transfer->load.layer_event(layer) : nullptr;
  });
}

void kvault_paged_transfer_free(kvault_paged_transfer* transfer) noexcept {
  DeleteHandle(transfer);
}

}  // extern "C"
