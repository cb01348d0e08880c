// The C ABI of kvault::KvBlockCodec over contiguous host KV (kvault.h "Host block codec").

#include <span>

#include "internal.h"
#include "kvault/kernels/kv_view.h"
#include "kvault/kv_store.h"

struct kvault_block_codec {
  kvault::KvBlockCodec codec;
};

namespace kvault::c_api {

Result<DType> DTypeFromC(const char* function, const kvault_dtype& dtype) {
  const int64_t raw = RawEnum(dtype);
  if (raw == KVAULT_DTYPE_F16) return DType::kF16;
  if (raw == KVAULT_DTYPE_BF16) return DType::kBF16;
  return Status::InvalidArgument(std::string(function) + ": unknown dtype " + std::to_string(raw));
}

namespace {

// A view of the contiguous [layers][2][kv_tokens][heads][dim] host KV at `kv`.
Status ContiguousView(const char* function, const KvBlockCodec& codec, const uint16_t* kv,
                      uint32_t kv_tokens, kernels::PagedKvView& view,
                      kernels::PagedKvViewStorage& storage) {
  if (kv == nullptr) return Null(function, "kv");
  if (kv_tokens == 0) return Status::InvalidArgument(std::string(function) + ": kv_tokens is 0");
  const KvBlockFormat& f = codec.format();
  // The view type is shared with decode, which writes; encode only reads through it.
  uint16_t* base = const_cast<uint16_t*>(kv);
  const int32_t page = 0;
  return kernels::MakePagedKvView(kernels::KvLayout::kContiguous, f.dtype, f.num_layers, f.kv_heads,
                                  f.head_dim, kv_tokens, 1, std::span(&base, 1),
                                  std::span(&page, 1), view, storage);
}

// The checks and the view shared by encode and decode: `kv` holds kv_tokens tokens.
Status CodecCall(const char* fn, const kvault_block_codec* codec, const kvault_key* key,
                 const void* object, const uint16_t* kv, uint32_t kv_tokens,
                 kernels::PagedKvView& view, kernels::PagedKvViewStorage& storage) {
  if (codec == nullptr) return Null(fn, "codec");
  if (key == nullptr) return Null(fn, "key");
  if (object == nullptr) return Null(fn, "object");
  return ContiguousView(fn, codec->codec, kv, kv_tokens, view, storage);
}

}  // namespace
}  // namespace kvault::c_api

using kvault::Status;
using namespace kvault::c_api;  // NOLINT(google-build-using-namespace): this file's own helpers

extern "C" {

void kvault_block_format_init(kvault_block_format* format) noexcept {
  if (format == nullptr) return;
  const kvault::KvBlockFormat defaults;
  *format = kvault_block_format{};
  format->struct_size = sizeof(kvault_block_format);
  format->dtype = KVAULT_DTYPE_F16;
  format->block_tokens = defaults.block_tokens;
  format->codec = "fp8";
}

kvault_status kvault_block_codec_create(const kvault_block_format* format,
                                        kvault_block_codec** codec) noexcept {
  return Guard("kvault_block_codec_create", [&]() -> Status {
    constexpr const char* kFn = "kvault_block_codec_create";
    if (codec == nullptr) return Null(kFn, "codec");
    *codec = nullptr;
    if (format == nullptr) return Null(kFn, "format");
    KVAULT_RETURN_IF_ERROR(
        CheckStructSize(kFn, "format", format->struct_size, sizeof(kvault_block_format)));
    if (format->codec == nullptr) return Null(kFn, "format->codec");
    kvault::KvBlockFormat f;
    f.num_layers = format->num_layers;
    f.kv_heads = format->kv_heads;
    f.head_dim = format->head_dim;
    KVAULT_ASSIGN_OR_RETURN(f.dtype, DTypeFromC(kFn, format->dtype));
    f.block_tokens = format->block_tokens;
    f.codec = format->codec;
    f.ns_digest = GetKey(format->ns_digest);
    KVAULT_ASSIGN_OR_RETURN(kvault::KvBlockCodec made, kvault::KvBlockCodec::Create(f));
    *codec = NewHandle<kvault_block_codec>(std::move(made));
    return Status::Ok();
  });
}

void kvault_block_codec_free(kvault_block_codec* codec) noexcept { DeleteHandle(codec); }

uint64_t kvault_block_codec_object_bytes(const kvault_block_codec* codec, uint64_t index) noexcept {
  return GuardValue<uint64_t>(
      0, [&]() -> uint64_t { return codec != nullptr ? codec->codec.ObjectBytes(index) : 0; });
}

kvault_status kvault_block_codec_encode(const kvault_block_codec* codec, const uint16_t* kv,
                                        uint32_t kv_tokens, uint64_t index, const kvault_key* key,
                                        void* object, size_t object_bytes) noexcept {
  return Guard("kvault_block_codec_encode", [&]() -> Status {
    kvault::kernels::PagedKvView view;
    kvault::kernels::PagedKvViewStorage storage;
    KVAULT_RETURN_IF_ERROR(
        CodecCall("kvault_block_codec_encode", codec, key, object, kv, kv_tokens, view, storage));
    return codec->codec.Encode(view, index, GetKey(*key),
                               std::span(static_cast<uint8_t*>(object), object_bytes));
  });
}

kvault_status kvault_block_codec_decode(const kvault_block_codec* codec, const void* object,
                                        size_t object_bytes, uint64_t index, const kvault_key* key,
                                        uint16_t* kv, uint32_t kv_tokens) noexcept {
  return Guard("kvault_block_codec_decode", [&]() -> Status {
    kvault::kernels::PagedKvView view;
    kvault::kernels::PagedKvViewStorage storage;
    KVAULT_RETURN_IF_ERROR(
        CodecCall("kvault_block_codec_decode", codec, key, object, kv, kv_tokens, view, storage));
    return codec->codec.Decode(std::span(static_cast<const uint8_t*>(object), object_bytes), index,
                               GetKey(*key), view);
  });
}

}  // extern "C"
