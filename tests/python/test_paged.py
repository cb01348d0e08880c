"""kvault.PagedKvStore on host memory: an engine's paged KV cache (numpy arrays) stored and loaded
by block ids. The expected KV is gathered here with numpy indexing per layout, independently of
kvault's view arithmetic."""

import gc
import weakref

import numpy as np
import pytest

import kvault

if not hasattr(kvault, "PagedKvStore"):
    pytest.skip("kvault was built without PagedKvStore", allow_module_level=True)

LAYERS, HEADS, DIM = 2, 3, 8
ENGINE_BLOCK, ENGINE_BLOCKS = 4, 16
BLOCK = 8  # kvault block = 2 engine blocks

# Per-layer tensor shape of each paged layout (kv_view.h).
SHAPES = {
    "vllm-nhd": (2, ENGINE_BLOCKS, ENGINE_BLOCK, HEADS, DIM),
    "vllm-hnd": (2, ENGINE_BLOCKS, HEADS, ENGINE_BLOCK, DIM),
    "flashinfer-nhd": (ENGINE_BLOCKS, 2, ENGINE_BLOCK, HEADS, DIM),
    "flashinfer-hnd": (ENGINE_BLOCKS, 2, HEADS, ENGINE_BLOCK, DIM),
}


def gather(layout, layer_tensor, block_ids, tokens):
    """The sequence's KV of one layer as [2, tokens, heads, dim]."""
    out = np.empty((2, tokens, HEADS, DIM), dtype=layer_tensor.dtype)
    for t in range(tokens):
        b, slot = block_ids[t // ENGINE_BLOCK], t % ENGINE_BLOCK
        for kv in range(2):
            if layout == "vllm-nhd":
                out[kv, t] = layer_tensor[kv, b, slot]
            elif layout == "vllm-hnd":
                out[kv, t] = layer_tensor[kv, b, :, slot]
            elif layout == "flashinfer-nhd":
                out[kv, t] = layer_tensor[b, kv, slot]
            else:
                out[kv, t] = layer_tensor[b, kv, :, slot]
    return out


def cache(layout, tensors):
    return kvault.PagedKvCache(memory="host", layout=layout, dtype="float16", num_layers=LAYERS,
                               kv_heads=HEADS, head_dim=DIM, engine_block_tokens=ENGINE_BLOCK,
                               engine_num_blocks=ENGINE_BLOCKS, tensors=tensors)


def paged_store(client, c, ns, codec="raw", **options):
    return kvault.PagedKvStore(client, cache=c, block_tokens=BLOCK, codec=codec, ns_digest=ns,
                               staging_bytes=1 << 20, pipeline_depth=2, **options)


def random_layers(layout, seed):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(SHAPES[layout]).astype(np.float16) for _ in range(LAYERS)]


SRC_IDS = [3, 7, 1, 9, 12, 0]  # 24 token slots
DST_IDS = [5, 2, 11, 4, 15, 8]
TOKENS = 22  # 2 full kvault blocks of 8 and a tail


@pytest.mark.parametrize("layout", list(SHAPES))
def test_host_round_trip_raw_is_byte_exact(client, ns, layout):
    src = random_layers(layout, seed=1)
    token_ids = list(range(1000, 1000 + TOKENS))
    keys = kvault.chain_keys(ns, token_ids, BLOCK)
    assert len(keys) == 2
    with paged_store(client, cache(layout, src), ns) as store:
        put = store.store_paged(SRC_IDS, TOKENS, keys)
        assert put.wait_source_released(timeout_s=30)
        assert put.wait(timeout_s=30)
        assert len(put) == 2 and put.leading_ok == 2 and put.skipped == 0
        assert all(s.ok for s in put.statuses)

        # A second store of the same chain finds both blocks stored and skips them.
        again = store.store_paged(SRC_IDS, TOKENS, keys)
        assert again.wait(timeout_s=30)
        assert again.skipped == 2 and again.leading_ok == 2

    hit = client.lookup(keys, lease=True)
    assert hit.leading_hits == 2
    dst = [np.zeros(SHAPES[layout], dtype=np.float16) for _ in range(LAYERS)]
    # gpu_ipc=False (every block through host staging) is accepted; host memory never uses IPC.
    with paged_store(client, cache(layout, dst), ns, gpu_ipc=False) as store:
        get = store.load_paged(hit.lease, DST_IDS, TOKENS, keys, hit.leading_hits,
                               layers_per_wave=1)
        for layer in range(LAYERS):
            assert get.wait_layer(layer, timeout_s=30)
            assert get.layer_event(layer) == 0  # host path: no CUDA event
        assert get.wait(timeout_s=30)
        assert get.leading_ok == 2
        assert get.gpu_tier_blocks == 0  # host memory never reads the gpu tier
    client.release_lease(hit.lease)

    full = 2 * BLOCK
    for layer in range(LAYERS):
        want = gather(layout, src[layer], SRC_IDS, full)
        got = gather(layout, dst[layer], DST_IDS, full)
        assert np.array_equal(got.view(np.uint16), want.view(np.uint16))
    # Engine blocks outside the loaded prefix are untouched.
    untouched = [b for b in range(ENGINE_BLOCKS) if b not in DST_IDS[:full // ENGINE_BLOCK]]
    for layer in range(LAYERS):
        for b in untouched:
            blk = dst[layer][:, b] if layout.startswith("vllm") else dst[layer][b]
            assert not blk.any()


def test_stacked_tensor_and_fp8_match_local_codec(client, ns):
    layout = "vllm-nhd"
    src = np.random.default_rng(2).standard_normal((LAYERS, *SHAPES[layout])).astype(np.float16)
    keys = kvault.chain_keys(ns, list(range(TOKENS)), BLOCK)
    with paged_store(client, cache(layout, src), ns, codec="fp8") as store:
        assert store.store_paged(SRC_IDS, TOKENS, keys, skip_stored=False).wait(timeout_s=30)
    dst = np.zeros_like(src)
    with paged_store(client, cache(layout, dst), ns, codec="fp8") as store:
        get = store.load_paged(None, DST_IDS, TOKENS, keys, 2)
        assert get.wait(timeout_s=30) and get.leading_ok == 2

    # The same blocks through the CPU codec over the contiguous layout.
    full = 2 * BLOCK
    contiguous = np.stack([gather(layout, src[i], SRC_IDS, full) for i in range(LAYERS)])
    codec = kvault.KvBlockCodec(LAYERS, HEADS, DIM, block_tokens=BLOCK, codec="fp8",
                                ns_digest=ns)
    local = np.zeros_like(contiguous)
    for i, key in enumerate(keys):
        codec.decode(codec.encode(contiguous, i, key), i, key, local)
    got = np.stack([gather(layout, dst[i], DST_IDS, full) for i in range(LAYERS)])
    assert np.array_equal(got.view(np.uint16), local.view(np.uint16))


def test_contiguous_layout(client, ns):
    tokens = 16
    src = np.random.default_rng(3).standard_normal((LAYERS, 2, tokens, HEADS, DIM)).astype(
        np.float16)
    keys = kvault.chain_keys(ns, list(range(tokens)), BLOCK)

    def contiguous_cache(t):
        return kvault.PagedKvCache(memory="host", layout="contiguous", num_layers=LAYERS,
                                   kv_heads=HEADS, head_dim=DIM, engine_block_tokens=tokens,
                                   engine_num_blocks=1, tensors=t)

    with kvault.PagedKvStore(client, cache=contiguous_cache(src), block_tokens=BLOCK,
                             codec="raw", ns_digest=ns) as store:
        assert store.store_paged([0], tokens, keys).wait(timeout_s=30)
    dst = np.zeros_like(src)
    with kvault.PagedKvStore(client, cache=contiguous_cache(dst), block_tokens=BLOCK,
                             codec="raw", ns_digest=ns) as store:
        assert store.load_paged(None, [0], tokens, keys, 2).wait(timeout_s=30)
    assert np.array_equal(dst, src)


def test_contiguous_cache_of_more_than_one_engine_block_is_refused_at_creation(client, ns):
    # [LAYERS, 2, 16, HEADS, DIM] described as 2 engine blocks of 8 tokens: the element count
    # fits, but a contiguous cache is one block; unchecked, every store and load failed later.
    src = np.zeros((LAYERS, 2, 16, HEADS, DIM), dtype=np.float16)

    def contiguous_cache(block_tokens, num_blocks):
        return kvault.PagedKvCache(memory="host", layout="contiguous", num_layers=LAYERS,
                                   kv_heads=HEADS, head_dim=DIM, engine_block_tokens=block_tokens,
                                   engine_num_blocks=num_blocks, tensors=src)

    with pytest.raises(kvault.InvalidArgumentError, match="engine_num_blocks must be 1, got 2"):
        kvault.PagedKvStore(client, cache=contiguous_cache(8, 2), block_tokens=BLOCK, codec="raw",
                            ns_digest=ns)
    with kvault.PagedKvStore(client, cache=contiguous_cache(16, 1), block_tokens=BLOCK,
                             codec="raw", ns_digest=ns) as store:  # the same tensor as 1 block
        keys = kvault.chain_keys(ns, list(range(7000, 7016)), BLOCK)
        assert store.store_paged([0], 16, keys).wait(timeout_s=30)


def test_pointer_errors_name_what_the_memory_kind_accepts():
    def make(memory, tensors):
        return kvault.PagedKvCache(memory=memory, layout="vllm-nhd", num_layers=LAYERS,
                                   kv_heads=HEADS, head_dim=DIM, engine_block_tokens=ENGINE_BLOCK,
                                   engine_num_blocks=ENGINE_BLOCKS, tensors=tensors)

    host = [np.zeros(SHAPES["vllm-nhd"], dtype=np.float16) for _ in range(LAYERS)]
    with pytest.raises(ValueError, match="device memory") as cuda_error:
        make("cuda", host)
    assert "numpy array is host memory" in str(cuda_error.value)
    assert "must be a numpy array" not in str(cuda_error.value)
    with pytest.raises(ValueError, match="must be a numpy array, an integer pointer"):
        make("host", ["not a tensor"] * LAYERS)
    # An int that is no address: InvalidArgumentError naming the tensor, not a RuntimeError.
    for address in [-1, 2**64]:
        with pytest.raises(kvault.InvalidArgumentError, match=r"tensors\[0\] must be an int in"):
            make("cuda", [address] * LAYERS)
    assert make("host", host) is not None  # positive control

    # A malformed __cuda_array_interface__ is refused with the same error, not pybind11's
    # RuntimeError; a well-formed one gives its pointer (the cache is only described here).
    class Interface:
        def __init__(self, interface):
            self.__cuda_array_interface__ = interface

    for bad in [None, [], {}, {"data": None}, {"data": ()}, {"data": [1]}, {"data": ("x", False)}]:
        with pytest.raises(kvault.InvalidArgumentError, match="must be device memory"):
            make("cuda", [Interface(bad)] * LAYERS)
    assert make("cuda", [Interface({"data": (4096, False)})] * LAYERS) is not None
    # With its shape (C order), an interface lies in memory as that shape: it must be the
    # layout's physical order; explicit C-order strides are fine, others are not.
    nhd, hnd = SHAPES["vllm-nhd"], SHAPES["vllm-hnd"]
    c_strides = [s for s in np.zeros(nhd, dtype=np.float16).strides]
    ok = {"data": (4096, False), "shape": nhd, "typestr": "<f2", "strides": c_strides}
    assert make("cuda", [Interface(ok)] * LAYERS) is not None
    with pytest.raises(ValueError, match="lies in memory as"):
        make("cuda", [Interface({"data": (4096, False), "shape": hnd, "typestr": "<f2"})] * LAYERS)
    with pytest.raises(ValueError, match="C-contiguous"):
        make("cuda", [Interface(dict(ok, strides=c_strides[:-1] + [4]))] * LAYERS)
    with pytest.raises(ValueError, match="read-only"):
        make("cuda", [Interface(dict(ok, data=(4096, True)))] * LAYERS)


def test_tensor_like_objects_are_checked_and_kept_alive():
    """An object with torch's attributes is checked against the cache description (device,
    dtype, contiguity, size), and the cache keeps it alive: a tensor the caller dropped is not
    freed under the store."""
    elements = int(np.prod(SHAPES["vllm-nhd"]))

    class Device:
        def __init__(self, kind):
            self.type = kind

    class Tensor:  # what kvault reads of a torch.Tensor
        def __init__(self, device="cpu", dtype="torch.float16", strides=None, numel=elements,
                     shape=SHAPES["vllm-nhd"]):
            self.buffer = np.zeros(SHAPES["vllm-nhd"], dtype=np.float16)
            self.device = Device(device)
            self.dtype = dtype
            self.shape = shape
            self.strides = strides or [s // 2 for s in self.buffer.strides]  # in elements
            self.count = numel

        def data_ptr(self):
            return self.buffer.ctypes.data

        def stride(self):
            return tuple(self.strides)

        def numel(self):
            return self.count

        def element_size(self):
            return 2

    def make(memory, tensors):
        return kvault.PagedKvCache(memory=memory, layout="vllm-nhd", num_layers=LAYERS,
                                   kv_heads=HEADS, head_dim=DIM, engine_block_tokens=ENGINE_BLOCK,
                                   engine_num_blocks=ENGINE_BLOCKS, tensors=tensors)

    with pytest.raises(ValueError, match="on device 'cuda'"):
        make("host", [Tensor(device="cuda") for _ in range(LAYERS)])
    with pytest.raises(ValueError, match="on device 'cpu'"):
        make("cuda", [Tensor() for _ in range(LAYERS)])
    with pytest.raises(ValueError, match="dtype torch.float32"):
        make("host", [Tensor(dtype="torch.float32") for _ in range(LAYERS)])
    dense = [s // 2 for s in np.zeros(SHAPES["vllm-nhd"], dtype=np.float16).strides]
    sliced = dense[:-1] + [2]  # every other element of the last dimension
    with pytest.raises(ValueError, match="dense"):
        make("host", [Tensor(strides=sliced) for _ in range(LAYERS)])
    # A permuted view of memory in the layout's order is fine: accepted.
    shape = list(SHAPES["vllm-nhd"])
    permuted = Tensor(shape=shape[:2] + [shape[3], shape[2], shape[4]],
                      strides=dense[:2] + [dense[3], dense[2], dense[4]])
    assert make("host", [permuted] * LAYERS) is not None
    # An NHD-looking tensor over HND memory (vLLM's HND cache): refused as vllm-nhd, accepted as
    # vllm-hnd, the order it lies in.
    hnd = [s // 2 for s in np.zeros(SHAPES["vllm-hnd"], dtype=np.float16).strides]
    looks_nhd = Tensor(strides=[hnd[0], hnd[1], hnd[3], hnd[2], hnd[4]])
    with pytest.raises(ValueError, match="lies in memory as"):
        make("host", [looks_nhd] * LAYERS)
    assert kvault.PagedKvCache(memory="host", layout="vllm-hnd", num_layers=LAYERS,
                               kv_heads=HEADS, head_dim=DIM, engine_block_tokens=ENGINE_BLOCK,
                               engine_num_blocks=ENGINE_BLOCKS,
                               tensors=[looks_nhd] * LAYERS) is not None
    assert make("host", [Tensor(dtype="torch.int16") for _ in range(LAYERS)]) is not None
    with pytest.raises(ValueError, match="bytes"):
        make("host", [Tensor(numel=elements - 1) for _ in range(LAYERS)])
    tensors = [Tensor() for _ in range(LAYERS)]  # positive control
    alive = [weakref.ref(t) for t in tensors]
    c = make("host", tensors)
    del tensors
    gc.collect()
    assert all(r() is not None for r in alive), "the cache let a tensor it points into go"
    del c
    gc.collect()
    assert all(r() is None for r in alive)


def test_arrays_in_another_byte_order_or_unaligned_are_refused():
    good = [np.zeros(SHAPES["vllm-nhd"], dtype=np.float16) for _ in range(LAYERS)]
    assert cache("vllm-nhd", good) is not None  # positive control
    with pytest.raises(ValueError, match="byte order"):
        cache("vllm-nhd", [g.astype(">f2") for g in good])
    n = int(np.prod(SHAPES["vllm-nhd"]))
    unaligned = [np.frombuffer(bytearray(2 * n + 1), dtype=np.float16, offset=1)
                 .reshape(SHAPES["vllm-nhd"]) for _ in range(LAYERS)]
    assert not unaligned[0].flags.aligned
    with pytest.raises(ValueError, match="aligned"):
        cache("vllm-nhd", unaligned)


def test_load_of_a_miss(client, ns):
    keys = kvault.chain_keys(ns, list(range(5000, 5000 + TOKENS)), BLOCK)
    dst = [np.zeros(SHAPES["vllm-nhd"], dtype=np.float16) for _ in range(LAYERS)]
    with paged_store(client, cache("vllm-nhd", dst), ns) as store:
        get = store.load_paged(None, DST_IDS, TOKENS, keys, 2)
        assert get.wait(timeout_s=30)
        assert get.leading_ok == 0 and get.key_status(0).code == "not_found"
    assert not any(d.any() for d in dst)


def test_bad_cache_and_sequence(client, ns):
    good = [np.zeros(SHAPES["vllm-nhd"], dtype=np.float16) for _ in range(LAYERS)]
    with pytest.raises(ValueError, match="layout"):
        cache("vllm", good)
    with pytest.raises(ValueError, match="elements"):
        cache("vllm-nhd", [np.zeros((2, 8, ENGINE_BLOCK, HEADS, DIM), dtype=np.float16)] * 2)
    with pytest.raises(ValueError, match="dtype"):
        cache("vllm-nhd", [g.astype(np.float32) for g in good])
    with pytest.raises(ValueError, match="tensors"):
        cache("vllm-nhd", good[:1] * 3)
    with pytest.raises(ValueError, match="contiguous"):
        cache("vllm-nhd", [np.zeros((2, ENGINE_BLOCKS, ENGINE_BLOCK, HEADS, 2 * DIM),
                                    dtype=np.float16)[..., ::2] for _ in range(LAYERS)])
    with pytest.raises(ValueError, match="memory"):
        kvault.PagedKvCache(memory="tpu", num_layers=1, kv_heads=1, head_dim=8,
                            engine_block_tokens=4, engine_num_blocks=1, tensors=[1])
    # A numpy array of the right size in another layout's shape would scramble the KV: refused
    # (the shape of a C-contiguous array is its memory order), as is a flat one.
    with pytest.raises(kvault.InvalidArgumentError, match="lies in memory as"):
        cache("vllm-hnd", good)
    with pytest.raises(kvault.InvalidArgumentError, match="lies in memory as"):
        cache("vllm-nhd", [g.reshape(-1) for g in good])
    assert cache("vllm-nhd", [g.reshape((1,) + g.shape) for g in good]) is not None
    # Device memory (a CuPy, numba or PyCUDA array: __cuda_array_interface__, no data_ptr) for
    # a host cache is refused; the host codec would read it on the CPU and crash.
    class DeviceArray:
        __cuda_array_interface__ = {"data": (4096, False), "shape": SHAPES["vllm-nhd"],
                                    "typestr": "<f2", "version": 3}

    with pytest.raises(kvault.InvalidArgumentError, match="device memory"):
        cache("vllm-nhd", [DeviceArray()] * LAYERS)
    # A store over something that is not a PagedKvCache: InvalidArgumentError, not pybind11's.
    with pytest.raises(kvault.InvalidArgumentError, match="must be a kvault.PagedKvCache"):
        kvault.PagedKvStore(client, cache={}, block_tokens=BLOCK, codec="raw", ns_digest=ns)
    keys = kvault.chain_keys(ns, list(range(TOKENS)), BLOCK)
    with paged_store(client, cache("vllm-nhd", good), ns) as store:
        with pytest.raises(ValueError, match="block_ids"):
            store.store_paged([-1, 2], TOKENS, keys)
        # Input refused before anything starts raises at the call, with the status text.
        with pytest.raises(kvault.InvalidArgumentError, match="outside the cache"):
            store.store_paged([ENGINE_BLOCKS, 1, 2, 3, 4, 5], TOKENS, keys)
        with pytest.raises(kvault.InvalidArgumentError, match="engine blocks of .* cannot hold"):
            store.load_paged(None, [1], TOKENS, keys, 2)  # 1 block cannot hold 22 tokens
        # More blocks than keys, however many: refused without allocating for them.
        for blocks in [len(keys) + 1, 2**63]:
            with pytest.raises(kvault.InvalidArgumentError, match="blocks asked"):
                store.load_paged(None, DST_IDS, TOKENS, keys, blocks)
        # A handle's layer index is still checked (positive control: a valid load runs).
        ok = store.load_paged(None, DST_IDS, TOKENS, keys, 0)
        assert ok.wait(timeout_s=30)
        with pytest.raises(ValueError, match="out of range"):
            ok.wait_layer(LAYERS, check=False)
        with pytest.raises(kvault.InvalidArgumentError, match="stream"):
            store.store_paged(SRC_IDS, TOKENS, keys, stream=-1)
    with pytest.raises(kvault.InvalidArgumentError):
        kvault.PagedKvStore(client, cache=cache("vllm-nhd", good), block_tokens=6)  # not 4k
    store.close()
    with pytest.raises(ValueError, match="closed"):
        store.store_paged(SRC_IDS, TOKENS, keys)
