// kvault.PagedKvCache, kvault.PagedKvStore and its handles (paged_kv.h): an engine's paged KV
// cache in host numpy arrays or CUDA memory (raw device pointers), stored and loaded by block
// ids.

#include <pybind11/stl.h>

#include <algorithm>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "kvault/paged_kv.h"
#include "py_common.h"
#include "py_tensor_like.h"

namespace kvault::python {
namespace {

MemoryKind ParseMemory(const std::string& name) {
  if (name == "host" || name == "cpu") return MemoryKind::kHost;
  if (name == "cuda" || name == "gpu") return MemoryKind::kCuda;
  Invalid("memory must be 'host' or 'cuda', got '" + name + "'");
}

kernels::KvLayout ParseLayout(const std::string& name) {
  for (kernels::KvLayout l :
       {kernels::KvLayout::kContiguous, kernels::KvLayout::kVllmNhd, kernels::KvLayout::kVllmHnd,
        kernels::KvLayout::kFlashInferNhd, kernels::KvLayout::kFlashInferHnd}) {
    if (name == kernels::KvLayoutName(l)) return l;
  }
  Invalid(
      "layout must be one of 'vllm-nhd', 'vllm-hnd', 'flashinfer-nhd', 'flashinfer-hnd', "
      "'contiguous'; got '" +
      name + "'");
}

// A raw pointer from an int, an object with data_ptr() (a torch tensor) or one with
// __cuda_array_interface__. Host numpy arrays are taken before this, so the error names what
// `memory` accepts: a numpy array only for host memory.
void* ToPointer(py::handle obj, MemoryKind memory, const std::string& what) {
  py::object value = py::reinterpret_borrow<py::object>(obj);
  if (py::hasattr(obj, "data_ptr")) {
    value = obj.attr("data_ptr")();
  } else if (py::hasattr(obj, "__cuda_array_interface__")) {
    // {"data": (pointer, read_only), ...}; anything else falls through to the refusal below.
    const py::object interface = obj.attr("__cuda_array_interface__");
    if (py::isinstance<py::dict>(interface) && interface.contains("data")) {
      const py::object data = interface["data"];
      if (py::isinstance<py::tuple>(data) && py::len(data) >= 1) value = data[py::int_(0)];
    }
  }
  if (!py::isinstance<py::int_>(value) || py::isinstance<py::bool_>(value)) {
    if (memory == MemoryKind::kHost) {
      Invalid(what + " must be a numpy array, an integer pointer or a tensor with data_ptr()");
    }
    Invalid(
        what + " must be device memory with memory='cuda': an integer device pointer, a " +
        "tensor with data_ptr() or an object with __cuda_array_interface__" +
        (py::isinstance<py::array>(obj) ? " (a numpy array is host memory: memory='host')" : ""));
  }
  const auto address = static_cast<uintptr_t>(ToUint64(value, what));
  if (address == 0) Invalid(what + " is a null pointer");
  return reinterpret_cast<void*>(address);
}

// A cudaStream_t from an int (0 = the default stream) or an object with `cuda_stream`
// (torch.cuda.Stream).
void* ToStream(py::handle obj) {
  if (obj.is_none()) return nullptr;
  py::object value = py::reinterpret_borrow<py::object>(obj);
  if (py::hasattr(obj, "cuda_stream")) value = obj.attr("cuda_stream");
  if (!py::isinstance<py::int_>(value)) {
    Invalid("stream must be an integer cudaStream_t or an object with .cuda_stream");
  }
  return reinterpret_cast<void*>(static_cast<uintptr_t>(ToUint64(value, "stream")));
}

std::vector<int32_t> ToBlockIds(py::handle obj) {
  constexpr const char* kWhat = "block_ids must be a 1-D sequence of integers in [0, 2**31)";
  const py::array arr = AsVector(obj, kWhat);
  std::vector<int32_t> ids(static_cast<size_t>(arr.size()));
  if (ids.empty()) return ids;
  if (arr.dtype().kind() != 'i' && arr.dtype().kind() != 'u') Invalid(kWhat);
  auto a = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(arr);
  if (!a) Invalid(kWhat);
  for (size_t i = 0; i < ids.size(); ++i) {
    const int64_t v = a.data()[i];
    if (v < 0 || v > std::numeric_limits<int32_t>::max()) Invalid(kWhat);
    ids[i] = static_cast<int32_t>(v);
  }
  return ids;
}

// kvault.PagedKvCache: the cache description plus the host arrays it points into.
struct PyPagedCache {
  PagedKvCache cache;
  std::vector<py::object> arrays;  // the arrays and tensors (not bare pointers), kept alive
};

PyPagedCache MakeCache(const std::string& memory, const std::string& layout,
                       const std::string& dtype, uint32_t num_layers, uint32_t kv_heads,
                       uint32_t head_dim, uint32_t engine_block_tokens, uint32_t engine_num_blocks,
                       py::handle tensors) {
  PyPagedCache out;
  PagedKvCache& c = out.cache;
  c.memory = ParseMemory(memory);
  c.layout = ParseLayout(layout);
  c.dtype = ParseDTypeArg(dtype);
  c.num_layers = num_layers;
  c.kv_heads = kv_heads;
  c.head_dim = head_dim;
  c.engine_block_tokens = engine_block_tokens;
  c.engine_num_blocks = engine_num_blocks;
  if (num_layers == 0 || kv_heads == 0 || head_dim == 0 || engine_block_tokens == 0 ||
      engine_num_blocks == 0) {
    Invalid(
        "num_layers, kv_heads, head_dim, engine_block_tokens and engine_num_blocks must be "
        "positive");
  }
  // One tensor (all layers stacked) or a list of num_layers tensors.
  std::vector<py::object> items;
  if (py::isinstance<py::list>(tensors) || py::isinstance<py::tuple>(tensors)) {
    for (py::handle t : tensors) items.push_back(py::reinterpret_borrow<py::object>(t));
  } else {
    items.push_back(py::reinterpret_borrow<py::object>(tensors));
  }
  if (items.size() != 1 && items.size() != num_layers) {
    Invalid("tensors must be one tensor of all layers or num_layers (" +
            std::to_string(num_layers) + ") tensors, got " + std::to_string(items.size()));
  }
  const uint64_t want_elements =
      c.LayerElements() * (items.size() == 1 ? uint64_t{num_layers} : uint64_t{1});
  for (size_t i = 0; i < items.size(); ++i) {
    const std::string what = "tensors[" + std::to_string(i) + "]";
    if (c.memory == MemoryKind::kHost && py::isinstance<py::array>(items[i])) {
      py::array a = CheckKvArray(items[i], c.dtype, /*writable=*/true, what.c_str());
      if (static_cast<uint64_t>(a.size()) != want_elements) {
        Invalid(what + " has " + std::to_string(a.size()) + " elements; the cache description (" +
                kernels::KvLayoutName(c.layout) + ") needs " + std::to_string(want_elements) +
                (items.size() == 1 && num_layers > 1 ? " (all layers stacked)" : " per layer"));
      }
      CheckArrayLayout(a, c, items.size() == 1 && num_layers > 1, what);
      c.tensors.push_back(const_cast<void*>(a.data()));
      out.arrays.push_back(a);
    } else {
      CheckTensorLike(items[i], c, items.size() == 1 && num_layers > 1, want_elements, what);
      c.tensors.push_back(ToPointer(items[i], c.memory, what));
      // A tensor dropped by the caller must not be freed while the store writes into it.
      if (!py::isinstance<py::int_>(items[i])) out.arrays.push_back(items[i]);
    }
  }
  return out;
}

// The Python PagedKvStore: the C++ store, the cache arrays it points into and the client it
// references, destroyed store first. Calls copy `store` (so a concurrent close() cannot destroy
// it under them while the GIL is released).
struct PyPagedStore {
  PyPagedStore() = default;
  PyPagedStore(PyPagedStore&&) = default;
  PyPagedStore& operator=(PyPagedStore&&) = delete;
  // Dropped without close(): the store's wait for its running transfer happens without the GIL.
  ~PyPagedStore() { Close(); }

  std::shared_ptr<Client> client;
  py::object cache;                      // the PyPagedCache (its arrays and tensors)
  std::shared_ptr<PagedKvStore> store;   // null once closed
  std::shared_ptr<PagedKvStore> closer;  // the same store, until a Close has returned

  std::shared_ptr<PagedKvStore> Get() const {
    if (!store) Invalid("PagedKvStore is closed");
    return store;
  }
  // Closes the store (PagedKvStore::Close: whatever other calls still hold it, the engine's
  // tensors are no longer used once this returns, also for a second caller while the first still
  // waits), the GIL released meanwhile.
  void Close() {
    store.reset();
    std::shared_ptr<PagedKvStore> s = closer;
    if (!s) return;
    {
      py::gil_scoped_release release;
      s->Close();
    }
    closer.reset();  // with the GIL: `s` still holds the store
    py::gil_scoped_release release;
    s.reset();  // frees the staging (unless a call still holds the store), without the GIL
  }
};

// A paged handle. The pipeline copies the sequence (block ids, keys) when the call is made, so
// the handle holds nothing else; the cache arrays are held by the PagedKvStore, which waits for
// its transfers when destroyed.
template <typename H>
struct PyPagedHandle {
  H handle;
  uint32_t num_layers = 0;  // of the store's cache (wait_layer's range)
};

Status PagedDoneStatus(const PagedHandle& h) {
  if (!h.Poll()) return Status::Unavailable("in flight");
  return h.Wait(Deadline::min());
}

template <typename H>
py::class_<PyPagedHandle<H>> BindPagedHandle(py::module_& m, const char* name, const char* doc) {
  using P = PyPagedHandle<H>;
  py::class_<P> c(m, name, doc);
  c.def(
       "wait",
       [](const P& self, std::optional<double> timeout_s, bool check) {
         const Deadline deadline = WaitDeadline(timeout_s);
         {
           py::gil_scoped_release release;
           (void)self.handle.Wait(deadline);
         }
         if (!self.handle.Poll()) return false;
         if (check) ThrowIfError(self.handle.Wait(Deadline::min()));
         return true;
       },
       py::arg("timeout_s") = py::none(), py::arg("check") = true,
       "Blocks (GIL released) until done or timeout_s. True when done, False at the timeout. "
       "With check, a transfer that stopped raises its kvault.Error; per-block outcomes are in "
       "key_status()/statuses.")
      .def("poll", [](const P& self) { return self.handle.Poll(); })
      .def(
          "cancel", [](P& self) { self.handle.Cancel(); },
          "Stops before the next wave; unfinished blocks get Unavailable ('cancelled').")
      .def_property_readonly("status", [](const P& self) { return PagedDoneStatus(self.handle); })
      .def("__len__", [](const P& self) { return self.handle.size(); })
      .def(
          "key_status",
          [](const P& self, size_t i) {
            if (i >= self.handle.size()) throw py::index_error("block index out of range");
            return self.handle.key_status(i);
          },
          py::arg("i"))
      .def_property_readonly("statuses",
                             [](const P& self) {
                               std::vector<Status> out;
                               for (size_t i = 0; i < self.handle.size(); ++i) {
                                 out.push_back(self.handle.key_status(i));
                               }
                               return out;
                             })
      .def_property_readonly("leading_ok", [](const P& self) { return self.handle.leading_ok(); });
  return c;
}

}  // namespace

void BindPaged(py::module_& m) {
  py::class_<PyPagedCache>(m, "PagedKvCache",
                           "An engine's paged KV cache: memory 'host' (numpy arrays) or 'cuda' "
                           "(integer device pointers, e.g. tensor.data_ptr()), its layout and "
                           "shape. tensors: one per layer, or one holding all layers stacked.")
      .def(py::init(&MakeCache), py::kw_only(), py::arg("memory") = "host",
           py::arg("layout") = "vllm-nhd", py::arg("dtype") = "float16", py::arg("num_layers"),
           py::arg("kv_heads"), py::arg("head_dim"), py::arg("engine_block_tokens"),
           py::arg("engine_num_blocks"), py::arg("tensors"))
      .def_property_readonly(
          "memory",
          [](const PyPagedCache& c) { return std::string(MemoryKindName(c.cache.memory)); })
      .def_property_readonly(
          "layout", [](const PyPagedCache& c) { return kernels::KvLayoutName(c.cache.layout); })
      .def_property_readonly("num_layers", [](const PyPagedCache& c) { return c.cache.num_layers; })
      .def_property_readonly("layer_elements",
                             [](const PyPagedCache& c) { return c.cache.LayerElements(); });

  BindPagedHandle<PagedStoreHandle>(m, "PagedStoreHandle", "A StorePaged in progress.")
      .def_property_readonly(
          "skipped",
          [](const PyPagedHandle<PagedStoreHandle>& self) { return self.handle.skipped(); },
          "Leading blocks found already stored (skip_stored) and not sent again.")
      .def(
          "wait_source_released",
          [](const PyPagedHandle<PagedStoreHandle>& self, std::optional<double> timeout_s) {
            const Deadline deadline = WaitDeadline(timeout_s);
            py::gil_scoped_release release;
            return self.handle.WaitSourceReleased(deadline);
          },
          py::arg("timeout_s") = py::none(),
          "Blocks (GIL released) until the engine's blocks are no longer read; True then.");

  BindPagedHandle<PagedLoadHandle>(m, "PagedLoadHandle", "A LoadPaged in progress.")
      .def(
          "wait_layer",
          [](const PyPagedHandle<PagedLoadHandle>& self, uint32_t layer,
             std::optional<double> timeout_s, bool check) {
            const Deadline deadline = WaitDeadline(timeout_s);
            if (layer >= self.num_layers) {
              Invalid("layer " + std::to_string(layer) + " is out of range (the cache has " +
                      std::to_string(self.num_layers) + " layers)");
            }
            Status s;
            {
              py::gil_scoped_release release;
              s = self.handle.WaitLayer(layer, deadline);
            }
            if (s.ok()) return true;
            if (!self.handle.Poll()) return false;  // the timeout passed first
            s = self.handle.WaitLayer(layer, Deadline::min());
            if (s.ok()) return true;
            if (check) ThrowIfError(s);
            return false;
          },
          py::arg("layer"), py::arg("timeout_s") = py::none(), py::arg("check") = true,
          "Blocks (GIL released) until layer's KV is written (host) or queued on the load's "
          "stream (cuda). True when ready; False at the timeout; when the transfer ended without "
          "it, raises its error (check) or returns False.")
      .def(
          "layer_event",
          [](const PyPagedHandle<PagedLoadHandle>& self, uint32_t layer) {
            return reinterpret_cast<uintptr_t>(self.handle.layer_event(layer));
          },
          py::arg("layer"),
          "The cudaEvent_t recorded after layer's decode, as an integer (0 on the host path).")
      .def_property_readonly(
          "gpu_tier_blocks",
          [](const PyPagedHandle<PagedLoadHandle>& self) { return self.handle.gpu_tier_blocks(); },
          "Leading blocks decoded straight from the daemon's gpu tier through CUDA IPC (cuda "
          "memory, with a lease, from a daemon that exports its gpu tier); final once the "
          "transfer is done, and then at most leading_ok. 0 on the host path.");

  py::class_<PyPagedStore>(m, "PagedKvStore",
                           "Stores and loads an engine's paged KV cache by block ids, quantizing "
                           "on the way out and dequantizing on the way in. Transfers run one at a "
                           "time on the store's own thread; calls return handles at once.")
      .def(py::init([](const PyClient& client, py::object cache, uint32_t block_tokens,
                       std::string codec, py::handle ns_digest, size_t staging_bytes,
                       uint32_t pipeline_depth, bool gpu_ipc) {
             if (!py::isinstance<PyPagedCache>(cache)) {
               Invalid("cache must be a kvault.PagedKvCache, got " +
                       std::string(py::str(py::type::of(cache).attr("__name__"))));
             }
             const PyPagedCache& c = cache.cast<const PyPagedCache&>();
             PagedKvOptions o;
             o.cache = c.cache;
             o.block_tokens = block_tokens;
             o.codec = std::move(codec);
             if (!ns_digest.is_none()) o.ns_digest = ToKey(ns_digest, "ns_digest");
             o.staging_bytes = staging_bytes;
             o.pipeline_depth = pipeline_depth;
             o.gpu_ipc = gpu_ipc;
             auto out = std::make_unique<PyPagedStore>();
             out->client = client.Get();
             out->cache = std::move(cache);
             std::optional<Result<std::unique_ptr<PagedKvStore>>> s;
             {
               py::gil_scoped_release release;
               s.emplace(PagedKvStore::Create(*out->client, o));
             }
             ThrowIfError(s->status());
             out->store = std::move(**s);
             out->closer = out->store;
             return out;
           }),
           py::arg("client"), py::kw_only(), py::arg("cache"), py::arg("block_tokens") = 256,
           py::arg("codec") = "fp8", py::arg("ns_digest") = py::none(),
           py::arg("staging_bytes") = size_t{64} << 20, py::arg("pipeline_depth") = 2,
           py::arg("gpu_ipc") = true)
      .def(
          "object_bytes",
          [](const PyPagedStore& self, uint64_t index) { return self.Get()->ObjectBytes(index); },
          py::arg("index") = 0)
      .def(
          "close", [](PyPagedStore& self) { self.Close(); },
          "Cancels what has not started, waits (GIL released) for the rest, frees the staging.")
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__", [](PyPagedStore& self, py::args) { self.Close(); })
      .def(
          "store_paged",
          [](const PyPagedStore& self, py::handle block_ids, uint64_t num_tokens, py::handle keys,
             bool skip_stored, py::handle stream, std::optional<double> timeout_ms) {
            std::shared_ptr<PagedKvStore> store = self.Get();
            const std::vector<int32_t> ids = ToBlockIds(block_ids);
            const std::vector<BlockKey> chain = ToKeys(keys);
            PagedStoreOptions o;
            o.skip_stored = skip_stored;
            o.stream = ToStream(stream);
            o.deadline = RequestDeadline(timeout_ms);
            PagedSequence s{ids, num_tokens, chain};
            PyPagedHandle<PagedStoreHandle> h;
            {
              py::gil_scoped_release release;
              h.handle = store->StorePaged(s, o);
              store.reset();  // the last reference when close() ran meanwhile: no GIL held
            }
            ThrowIfRefused(h.handle);
            return h;
          },
          py::arg("block_ids"), py::arg("num_tokens"), py::arg("keys"),
          py::arg("skip_stored") = true, py::arg("stream") = 0, py::arg("timeout_ms") = py::none(),
          "Stores the full blocks of a sequence (its engine block ids, in token order) that have "
          "a key; with skip_stored the chain's leading hits are skipped. Keep the engine's "
          "blocks unchanged until wait_source_released().")
      .def(
          "load_paged",
          [](const PyPagedStore& self, py::handle lease, py::handle block_ids, uint64_t num_tokens,
             py::handle keys, size_t blocks, py::handle stream, uint32_t layers_per_wave,
             std::optional<double> timeout_ms) {
            std::shared_ptr<PagedKvStore> store = self.Get();
            const Lease l = ToLease(lease);
            const std::vector<int32_t> ids = ToBlockIds(block_ids);
            const std::vector<BlockKey> chain = ToKeys(keys);
            PagedLoadOptions o;
            o.stream = ToStream(stream);
            o.layers_per_wave = layers_per_wave;
            o.deadline = RequestDeadline(timeout_ms);
            PagedSequence s{ids, num_tokens, chain};
            PyPagedHandle<PagedLoadHandle> h;
            h.num_layers = store->options().cache.num_layers;
            {
              py::gil_scoped_release release;
              h.handle = store->LoadPaged(l, s, blocks, o);
              store.reset();  // the last reference when close() ran meanwhile: no GIL held
            }
            ThrowIfRefused(h.handle);
            return h;
          },
          py::arg("lease"), py::arg("block_ids"), py::arg("num_tokens"), py::arg("keys"),
          py::arg("blocks"), py::arg("stream") = 0, py::arg("layers_per_wave") = 0,
          py::arg("timeout_ms") = py::none(),
          "Loads blocks [0, blocks) of a sequence (normally lookup's leading hits, with its "
          "lease; lease may be None) into the engine's blocks, layer wave by layer wave.");
}

}  // namespace kvault::python
