// Key builders (block_key.h, vllm_block_hash.h): namespace digests, kvault's chained keys,
// SGLang page hashes and vLLM sha256_cbor block hashes, all as 32-byte `bytes`.

#include <pybind11/stl.h>

#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "kvault/common/vllm_block_hash.h"
#include "py_common.h"

namespace kvault::python {
namespace {

// A str or bytes value as the bytes the namespace encoding hashes (str as UTF-8).
std::string ToText(py::handle obj, const std::string& what) {
  if (py::isinstance<py::str>(obj)) return obj.cast<std::string>();
  if (py::isinstance<py::bytes>(obj)) return std::string(obj.cast<py::bytes>());
  Invalid(what + " must be a str or bytes");
}

// The namespace's dtype field: numpy-style names are spelled as DTypeName spells them (so that a
// Python caller's "float16" gives the digest a C++ caller's "f16" gives); other names are kept
// as given (the field is an open string).
std::string NamespaceDType(const std::string& dtype) {
  if (dtype == "float16") return std::string(DTypeName(DType::kF16));
  if (dtype == "bfloat16") return std::string(DTypeName(DType::kBF16));
  if (std::optional<DType> d = ParseDType(dtype)) return std::string(DTypeName(*d));
  return dtype;
}

Namespace MakeNamespace(const std::string& model_id, uint32_t num_layers, uint32_t kv_heads,
                        uint32_t head_dim, const std::string& dtype, uint32_t block_tokens,
                        const std::string& tenant, const std::string& model_revision,
                        uint32_t tp_rank, uint32_t tp_size, uint32_t pp_rank, uint32_t pp_size,
                        py::handle extra_keys) {
  Namespace ns;
  ns.tenant = tenant;
  ns.model_id = model_id;
  ns.model_revision = model_revision;
  ns.num_layers = num_layers;
  ns.kv_heads = kv_heads;
  ns.head_dim = head_dim;
  ns.dtype = NamespaceDType(dtype);
  ns.block_tokens = block_tokens;
  ns.tp_rank = tp_rank;
  ns.tp_size = tp_size;
  ns.pp_rank = pp_rank;
  ns.pp_size = pp_size;
  if (!extra_keys.is_none()) {
    py::object items = py::isinstance<py::dict>(extra_keys)
                           ? py::reinterpret_borrow<py::dict>(extra_keys).attr("items")()
                           : py::reinterpret_borrow<py::object>(extra_keys);
    for (py::handle item : items) {
      py::tuple pair;
      try {
        pair = py::tuple(py::reinterpret_borrow<py::object>(item));
      } catch (const py::error_already_set&) {
        Invalid("extra_keys must be a dict or a sequence of (name, value) pairs");
      }
      if (pair.size() != 2)
        Invalid("extra_keys must be a dict or a sequence of (name, value) pairs");
      ns.extra_keys.push_back(
          {ToText(pair[0], "extra key name"), ToText(pair[1], "extra key value")});
    }
  }
  return ns;
}

// One element of vLLM's extra_keys, as vLLM builds it: int, str, bytes or a tuple of those.
// Nesting deeper than this is refused (as by the C ABI): a list that holds itself would
// otherwise recurse until the stack overflows.
constexpr int kMaxExtraKeyDepth = 16;

VllmExtraKey ToExtraKey(py::handle obj, int depth = 0) {
  if (depth > kMaxExtraKeyDepth) {
    Invalid("vLLM extra keys nest more than " + std::to_string(kMaxExtraKeyDepth) + " levels");
  }
  if (py::isinstance<py::bool_>(obj)) Invalid("vLLM extra keys cannot be bool");
  if (py::isinstance<py::int_>(obj)) {
    try {
      return VllmExtraKey(obj.cast<int64_t>());
    } catch (const py::cast_error&) {
      Invalid("vLLM extra key integers must fit in 64-bit signed");
    }
  }
  if (py::isinstance<py::str>(obj)) return VllmExtraKey(obj.cast<std::string>());
  if (py::isinstance<py::bytes>(obj) || py::isinstance<py::bytearray>(obj) ||
      py::isinstance<py::memoryview>(obj)) {
    BufferRef b(obj, /*writable=*/false, "extra key");
    return VllmExtraKey(VllmExtraKey::Bytes(b.data(), b.data() + b.size()));
  }
  if (py::isinstance<py::tuple>(obj) || py::isinstance<py::list>(obj)) {
    VllmExtraKey::List list;
    for (py::handle item : obj) list.push_back(ToExtraKey(item, depth + 1));
    return VllmExtraKey(std::move(list));
  }
  Invalid("vLLM extra keys must be int, str, bytes or tuples of those, not " +
          std::string(py::str(py::type::of(obj).attr("__name__"))));
}

// extra_keys of one block: None or a tuple (list) of extra keys.
std::optional<VllmExtraKeys> ToExtraKeys(py::handle obj) {
  if (obj.is_none()) return std::nullopt;
  if (!py::isinstance<py::tuple>(obj) && !py::isinstance<py::list>(obj)) {
    Invalid("extra_keys must be None or a tuple");
  }
  VllmExtraKeys keys;
  for (py::handle item : obj) keys.push_back(ToExtraKey(item));
  return keys;
}

// A binding that takes MakeNamespace's arguments (ns_args in BindKeys) and returns
// body(the Namespace they describe).
template <typename Body>
auto NamespaceFunction(Body body) {
  return [body](const std::string& model_id, uint32_t num_layers, uint32_t kv_heads,
                uint32_t head_dim, const std::string& dtype, uint32_t block_tokens,
                const std::string& tenant, const std::string& model_revision, uint32_t tp_rank,
                uint32_t tp_size, uint32_t pp_rank, uint32_t pp_size, py::handle extra_keys) {
    return body(MakeNamespace(model_id, num_layers, kv_heads, head_dim, dtype, block_tokens, tenant,
                              model_revision, tp_rank, tp_size, pp_rank, pp_size, extra_keys));
  };
}

py::list Keys(Result<std::vector<BlockKey>> r) {
  ThrowIfError(r.status());
  return KeyList(*r);
}

}  // namespace

void BindKeys(py::module_& m) {
  const auto ns_args = [] {
    return std::make_tuple(py::arg("model_id"), py::arg("num_layers"), py::arg("kv_heads"),
                           py::arg("head_dim"), py::arg("dtype"), py::arg("block_tokens"),
                           py::kw_only(), py::arg("tenant") = "", py::arg("model_revision") = "",
                           py::arg("tp_rank") = 0, py::arg("tp_size") = 1, py::arg("pp_rank") = 0,
                           py::arg("pp_size") = 1, py::arg("extra_keys") = py::none());
  };
  std::apply(
      [&](auto... args) {
        m.def("namespace_digest", NamespaceFunction([](const Namespace& ns) {
                Result<BlockKey> d = NamespaceDigest(ns);
                ThrowIfError(d.status());
                return KeyBytes(*d);
              }),
              args...,
              "SHA-256 of the namespace's canonical encoding (docs/keys.md): the digest that seeds "
              "chain_keys. dtype 'float16'/'f16' or 'bfloat16'/'bf16'; extra_keys a dict or "
              "(name, value) pairs (LoRA id, cache salt, ...).");
        m.def("namespace_encoding", NamespaceFunction([](const Namespace& ns) {
                Result<std::vector<uint8_t>> e = CanonicalEncoding(ns);
                ThrowIfError(e.status());
                return py::bytes(reinterpret_cast<const char*>(e->data()), e->size());
              }),
              args..., "The canonical, versioned bytes namespace_digest hashes.");
      },
      ns_args());

  m.def(
      "next_block_key",
      [](py::handle parent, py::handle tokens) {
        const BlockKey p = ToKey(parent, "parent");
        const std::vector<uint32_t> t = ToTokens(tokens);
        BlockKey key;
        {
          py::gil_scoped_release release;
          key = NextBlockKey(p, t);
        }
        return KeyBytes(key);
      },
      py::arg("parent"), py::arg("tokens"),
      "SHA-256(parent || tokens as u32 little-endian): one step of the chain.");

  m.def(
      "chain_keys",
      [](py::handle ns_digest, py::handle tokens, uint32_t block_tokens) {
        const BlockKey ns = ToKey(ns_digest, "ns_digest");
        const std::vector<uint32_t> t = ToTokens(tokens);
        std::optional<Result<std::vector<BlockKey>>> r;
        {
          py::gil_scoped_release release;
          r.emplace(ChainBlockKeys(ns, t, block_tokens));
        }
        return Keys(std::move(*r));
      },
      py::arg("ns_digest"), py::arg("tokens"), py::arg("block_tokens"),
      "Keys of the full blocks of tokens: key_0 = SHA-256(ns_digest || block 0), key_i = "
      "SHA-256(key_{i-1} || block i), tokens as u32 LE. A partial tail gets no key.");

  m.def(
      "sglang_page_hashes",
      [](py::handle tokens, uint32_t page_size, py::handle prior) {
        const std::vector<uint32_t> t = ToTokens(tokens);
        std::optional<BlockKey> p;
        if (!prior.is_none()) p = ToKey(prior, "prior");
        std::optional<Result<std::vector<BlockKey>>> r;
        {
          py::gil_scoped_release release;
          r.emplace(SglangPageHashes(t, page_size, p));
        }
        return Keys(std::move(*r));
      },
      py::arg("tokens"), py::arg("page_size"), py::arg("prior") = py::none(),
      "SGLang's radix-cache page hashes: SHA-256(parent || page tokens as u32 LE), parent = the "
      "previous page's hash, `prior` (or nothing) for page 0. bytes.hex() gives SGLang's form.");

  m.attr("VLLM_DEFAULT_NONE_HASH_SEED") = std::string(kVllmDefaultNoneHashSeed);
  m.def(
      "vllm_none_hash", [](const std::string& seed) { return KeyBytes(VllmNoneHash(seed)); },
      py::arg("seed") = std::string(kVllmDefaultNoneHashSeed),
      "vLLM's NONE_HASH under sha256_cbor: SHA-256(cbor(seed)); seed = PYTHONHASHSEED when set.");
  m.def(
      "vllm_block_hash_input",
      [](py::handle parent, py::handle tokens, py::handle extra_keys) {
        const std::vector<uint8_t> b =
            VllmBlockHashInput(ToKey(parent, "parent"), ToTokens(tokens), ToExtraKeys(extra_keys));
        return py::bytes(reinterpret_cast<const char*>(b.data()), b.size());
      },
      py::arg("parent"), py::arg("tokens"), py::arg("extra_keys") = py::none(),
      "The canonical CBOR of (parent, tuple(tokens), extra_keys) that vLLM hashes.");
  m.def(
      "vllm_hash_block_tokens",
      [](py::handle parent, py::handle tokens, py::handle extra_keys) {
        return KeyBytes(VllmHashBlockTokens(ToKey(parent, "parent"), ToTokens(tokens),
                                            ToExtraKeys(extra_keys)));
      },
      py::arg("parent"), py::arg("tokens"), py::arg("extra_keys") = py::none(),
      "vLLM's hash_block_tokens with sha256_cbor.");
  m.def(
      "vllm_block_hashes",
      [](py::handle none_hash, py::handle tokens, uint32_t block_size, py::handle extra_keys) {
        const BlockKey none = ToKey(none_hash, "none_hash");
        const std::vector<uint32_t> t = ToTokens(tokens);
        std::vector<std::optional<VllmExtraKeys>> per_block;
        if (!extra_keys.is_none()) {
          for (py::handle e : extra_keys) per_block.push_back(ToExtraKeys(e));
        }
        std::optional<Result<std::vector<BlockKey>>> r;
        {
          py::gil_scoped_release release;
          r.emplace(VllmBlockHashes(none, t, block_size, per_block));
        }
        return Keys(std::move(*r));
      },
      py::arg("none_hash"), py::arg("tokens"), py::arg("block_size"),
      py::arg("extra_keys") = py::none(),
      "Hashes of the full blocks of tokens as vLLM's request block hasher computes them. "
      "extra_keys: None, or one entry (None or a tuple) per full block.");
}

}  // namespace kvault::python
