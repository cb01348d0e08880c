// kvault.KvBlockCodec and kvault.KvStore (kv_store.h) over numpy KV shaped
// [layers, 2, tokens, kv_heads, head_dim] (the contiguous layout).

#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <utility>

#include "kvault/kv_store.h"
#include "py_common.h"

namespace kvault::python {
namespace {

KvBlockFormat MakeFormat(uint32_t num_layers, uint32_t kv_heads, uint32_t head_dim,
                         const std::string& dtype, uint32_t block_tokens, std::string codec,
                         py::handle ns_digest) {
  KvBlockFormat f;
  f.num_layers = num_layers;
  f.kv_heads = kv_heads;
  f.head_dim = head_dim;
  f.dtype = ParseDTypeArg(dtype);
  f.block_tokens = block_tokens;
  f.codec = std::move(codec);
  if (!ns_digest.is_none()) f.ns_digest = ToKey(ns_digest, "ns_digest");
  return f;
}

std::string ShapeText(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    s += (i ? ", " : "") + std::to_string(a.shape(i));
  }
  return s + (a.ndim() == 1 ? ",)" : ")");
}

// A numpy KV array checked against the format and viewed as a PagedKvView (kContiguous).
struct KvArray {
  py::array array;
  uint64_t tokens = 0;
  kernels::PagedKvView view;
  kernels::PagedKvViewStorage storage;
};

KvArray ViewKv(py::handle kv, const KvBlockFormat& f, bool writable) {
  KvArray out;
  if (!py::isinstance<py::array>(kv)) Invalid("kv must be a numpy array");
  const py::array a = py::reinterpret_borrow<py::array>(kv);
  if (a.ndim() != 5 || a.shape(0) != f.num_layers || a.shape(1) != 2 || a.shape(3) != f.kv_heads ||
      a.shape(4) != f.head_dim) {
    Invalid("kv must be shaped [layers=" + std::to_string(f.num_layers) +
            ", 2, tokens, kv_heads=" + std::to_string(f.kv_heads) +
            ", head_dim=" + std::to_string(f.head_dim) + "], got " + ShapeText(a));
  }
  if (a.shape(2) == 0 || a.shape(2) > std::numeric_limits<uint32_t>::max()) {
    Invalid("kv must hold between 1 and 2**32 - 1 tokens, got " + std::to_string(a.shape(2)));
  }
  out.array = CheckKvArray(kv, f.dtype, writable, "kv");
  out.tokens = static_cast<uint64_t>(a.shape(2));
  uint16_t* base = static_cast<uint16_t*>(const_cast<void*>(a.data()));
  const int32_t page = 0;
  ThrowIfError(kernels::MakePagedKvView(kernels::KvLayout::kContiguous, f.dtype, f.num_layers,
                                        f.kv_heads, f.head_dim, static_cast<uint32_t>(out.tokens),
                                        1, std::span<uint16_t* const>(&base, 1),
                                        std::span<const int32_t>(&page, 1), out.view, out.storage));
  return out;
}

// InvalidArgument unless `kv` holds blocks [0, blocks) in full (KvBlockCodec::FirstToken).
void CheckBlocks(const KvArray& kv, const KvBlockCodec& codec, uint64_t blocks) {
  if (blocks > 0) ThrowIfError(codec.FirstToken(blocks - 1, kv.tokens).status());
}

// The Python KvStore: the C++ store and the client it references.
struct PyKvStore {
  std::shared_ptr<Client> client;  // declared first: outlives `store`
  std::unique_ptr<KvStore> store;
};

KvTransferResult Checked(KvTransferResult r, bool check) {
  if (check) ThrowIfError(r.status);
  return r;
}

}  // namespace

void BindKvStore(py::module_& m) {
  py::class_<KvTransferResult>(m, "TransferResult",
                               "The outcome of a KvStore transfer: a request-level status, one "
                               "status per key and the leading run of successful keys.")
      .def_readonly("status", &KvTransferResult::status)
      .def_readonly("statuses", &KvTransferResult::key_status)
      .def_readonly("leading_ok", &KvTransferResult::leading_ok)
      .def_property_readonly("ok", [](const KvTransferResult& r) { return r.status.ok(); })
      .def("__len__", [](const KvTransferResult& r) { return r.key_status.size(); })
      .def("__repr__", [](const KvTransferResult& r) {
        return "kvault.TransferResult(leading_ok=" + std::to_string(r.leading_ok) + "/" +
               std::to_string(r.key_status.size()) + ", status=" + r.status.ToString() + ")";
      });

  py::class_<KvBlockCodec>(m, "KvBlockCodec",
                           "One block of host KV <-> one sealed block object with the CPU "
                           "codecs. Pure (no client); thread-safe.")
      .def(py::init([](uint32_t num_layers, uint32_t kv_heads, uint32_t head_dim,
                       const std::string& dtype, uint32_t block_tokens, std::string codec,
                       py::handle ns_digest) {
             Result<KvBlockCodec> c = KvBlockCodec::Create(MakeFormat(
                 num_layers, kv_heads, head_dim, dtype, block_tokens, std::move(codec), ns_digest));
             ThrowIfError(c.status());
             return std::move(*c);
           }),
           py::arg("num_layers"), py::arg("kv_heads"), py::arg("head_dim"),
           py::arg("dtype") = "float16", py::arg("block_tokens") = 16, py::arg("codec") = "fp8",
           py::arg("ns_digest") = py::none())
      .def("object_bytes", &KvBlockCodec::ObjectBytes, py::arg("index") = 0,
           "Bytes of block index's object (block 0 may differ: sink tokens).")
      .def_property_readonly("header_bytes", &KvBlockCodec::HeaderBytes)
      .def_property_readonly("codec", [](const KvBlockCodec& c) { return c.format().codec; })
      .def_property_readonly("block_tokens",
                             [](const KvBlockCodec& c) { return c.format().block_tokens; })
      .def(
          "encode",
          [](const KvBlockCodec& c, py::handle kv, uint64_t index, py::handle key,
             py::handle out) -> py::object {
            KvArray v = ViewKv(kv, c.format(), /*writable=*/false);
            ThrowIfError(c.FirstToken(index, v.tokens).status());
            const BlockKey k = ToKey(key);
            py::object result = py::reinterpret_borrow<py::object>(out);
            if (out.is_none()) {
              result = py::array_t<uint8_t>(static_cast<py::ssize_t>(c.ObjectBytes(index)));
            }
            BufferRef dst(result, /*writable=*/true, "out");
            Status s;
            {
              py::gil_scoped_release release;
              s = c.Encode(v.view, index, k, dst.bytes());
            }
            ThrowIfError(s);
            return result;
          },
          py::arg("kv"), py::arg("index"), py::arg("key"), py::arg("out") = py::none(),
          "Encodes block index of kv under key into a sealed object: into `out` (exactly "
          "object_bytes(index) bytes) or a new numpy uint8 array. Returns it.")
      .def(
          "decode",
          [](const KvBlockCodec& c, py::handle object, uint64_t index, py::handle key,
             py::handle kv) {
            KvArray v = ViewKv(kv, c.format(), /*writable=*/true);
            ThrowIfError(c.FirstToken(index, v.tokens).status());
            const BlockKey k = ToKey(key);
            BufferRef src(object, /*writable=*/false, "object");
            Status s;
            {
              py::gil_scoped_release release;
              s = c.Decode(src.bytes(), index, k, v.view);
            }
            ThrowIfError(s);
          },
          py::arg("object"), py::arg("index"), py::arg("key"), py::arg("kv"),
          "Verifies a whole object and decodes it into block index of kv (CorruptionError when "
          "it does not verify; nothing is written then).")
      .def(
          "layer_range",
          [](const KvBlockCodec& c, uint64_t index, uint32_t first, uint32_t count) {
            Result<ByteRange> r = c.LayerRange(index, first, count);
            ThrowIfError(r.status());
            return std::make_pair(r->offset, r->length);
          },
          py::arg("index"), py::arg("first"), py::arg("count"),
          "(offset, length) of the object bytes holding layers [first, first + count).");

  py::class_<PyKvStore>(m, "KvStore",
                        "A KvBlockCodec bound to a client and a reused staging region: encodes "
                        "full blocks of numpy KV ([layers, 2, tokens, kv_heads, head_dim], "
                        "float16 or bfloat16 bits) and stores them; loads and decodes them back. "
                        "Calls run one at a time.")
      .def(py::init([](const PyClient& client, uint32_t num_layers, uint32_t kv_heads,
                       uint32_t head_dim, const std::string& dtype, uint32_t block_tokens,
                       std::string codec, py::handle ns_digest, size_t staging_bytes) {
             KvStoreOptions o;
             o.format = MakeFormat(num_layers, kv_heads, head_dim, dtype, block_tokens,
                                   std::move(codec), ns_digest);
             o.staging_bytes = staging_bytes;
             auto out = std::make_unique<PyKvStore>();
             out->client = client.Get();
             std::optional<Result<std::unique_ptr<KvStore>>> s;
             {
               py::gil_scoped_release release;
               s.emplace(KvStore::Create(*out->client, o));
             }
             ThrowIfError(s->status());
             out->store = std::move(**s);
             return out;
           }),
           py::arg("client"), py::arg("num_layers"), py::arg("kv_heads"), py::arg("head_dim"),
           py::arg("dtype") = "float16", py::arg("block_tokens") = 16, py::arg("codec") = "fp8",
           py::arg("ns_digest") = py::none(), py::arg("staging_bytes") = size_t{64} << 20)
      .def_property_readonly(
          "codec", [](const PyKvStore& s) -> const KvBlockCodec& { return s.store->codec(); },
          py::return_value_policy::copy)
      .def(
          "store_blocks",
          [](PyKvStore& self, py::handle kv, py::handle keys_obj, size_t first_block,
             std::optional<double> timeout_ms, bool check) {
            const KvBlockFormat& f = self.store->codec().format();
            KvArray v = ViewKv(kv, f, /*writable=*/false);
            const std::vector<BlockKey> keys = ToKeys(keys_obj);
            CheckBlocks(v, self.store->codec(), keys.size());
            const std::optional<Deadline> deadline = RequestDeadline(timeout_ms);
            KvTransferResult r;
            {
              py::gil_scoped_release release;
              r = self.store->StoreBlocks(v.view, keys, deadline, first_block);
            }
            return Checked(std::move(r), check);
          },
          py::arg("kv"), py::arg("keys"), py::arg("first_block") = 0,
          py::arg("timeout_ms") = py::none(), py::arg("check") = true,
          "Encodes blocks [first_block, len(keys)) of kv and stores them under keys (GIL "
          "released). Blocks before first_block are taken as stored. With check, a request-level "
          "failure raises; per-key outcomes are in the TransferResult.")
      .def(
          "load_blocks",
          [](PyKvStore& self, py::handle lease_obj, py::handle keys_obj, py::handle kv,
             std::optional<std::pair<uint32_t, uint32_t>> layers, std::optional<double> timeout_ms,
             bool check) {
            const KvBlockFormat& f = self.store->codec().format();
            const Lease lease = ToLease(lease_obj);
            const std::vector<BlockKey> keys = ToKeys(keys_obj);
            KvArray v = ViewKv(kv, f, /*writable=*/true);
            CheckBlocks(v, self.store->codec(), keys.size());
            const std::optional<Deadline> deadline = RequestDeadline(timeout_ms);
            KvTransferResult r;
            {
              py::gil_scoped_release release;
              r = self.store->LoadBlocks(lease, keys, v.view, layers, deadline);
            }
            return Checked(std::move(r), check);
          },
          py::arg("lease"), py::arg("keys"), py::arg("kv"), py::arg("layers") = py::none(),
          py::arg("timeout_ms") = py::none(), py::arg("check") = true,
          "Loads the blocks of keys (lease may be None) and decodes block i into tokens "
          "[i * block_tokens, (i + 1) * block_tokens) of kv; layers=(first, count) fetches only "
          "those layers. Blocks that fail are not written. GIL released.");
}

}  // namespace kvault::python
