"""Key builders against independent computations with hashlib (and cbor2 for vLLM)."""

import hashlib
import struct

import numpy as np
import pytest

import kvault


def u32le(tokens):
    return struct.pack(f"<{len(tokens)}I", *tokens)


def reference_chain(parent, tokens, block):
    keys = []
    for i in range(len(tokens) // block):
        parent = hashlib.sha256(parent + u32le(tokens[i * block:(i + 1) * block])).digest()
        keys.append(parent)
    return keys


NS = hashlib.sha256(b"some namespace").digest()
TOKENS = [1, 2, 3, 70000, 2**32 - 1, 0, 128000, 5, 9, 11, 13]


def test_chain_keys_match_hashlib():
    keys = kvault.chain_keys(NS, TOKENS, 4)
    assert keys == reference_chain(NS, TOKENS, 4)
    assert len(keys) == 2  # the partial tail (3 tokens) gets no key
    assert all(isinstance(k, bytes) and len(k) == 32 for k in keys)
    assert keys[0] == hashlib.sha256(NS + u32le(TOKENS[:4])).digest()


def test_chain_keys_accept_numpy_tokens():
    small = [1, 2, 3, 70000, 2**31 - 1, 0, 128000, 5]
    for dtype in (np.uint32, np.int64, np.int32, np.uint64):
        assert kvault.chain_keys(NS, np.array(small, dtype=dtype), 4) == \
            reference_chain(NS, small, 4)
    big = np.array(TOKENS[:8], dtype=np.uint32)  # ids up to 2**32 - 1
    assert kvault.chain_keys(NS, big, 4) == reference_chain(NS, TOKENS[:8], 4)
    assert kvault.chain_keys(NS, [], 4) == []
    assert kvault.chain_keys(NS, [1, 2, 3], 4) == []


def test_next_block_key_is_one_step():
    assert kvault.next_block_key(NS, TOKENS[:4]) == kvault.chain_keys(NS, TOKENS, 4)[0]


@pytest.mark.parametrize("bad", [[-1], [2**32], [1.5], "abc", [[1, 2]]])
def test_bad_tokens_raise_value_error(bad):
    with pytest.raises(ValueError):
        kvault.chain_keys(NS, bad, 1)


def test_bad_arguments():
    with pytest.raises(kvault.InvalidArgumentError) as e:
        kvault.chain_keys(NS, TOKENS, 0)
    assert "block_tokens" in str(e.value)
    assert e.value.code == "invalid_argument"
    with pytest.raises(ValueError, match="32 bytes"):
        kvault.chain_keys(NS[:31], TOKENS, 4)
    with pytest.raises(ValueError):
        kvault.chain_keys("not bytes", TOKENS, 4)


def test_sglang_page_hashes_match_hashlib():
    hashes = kvault.sglang_page_hashes(TOKENS, 4)
    want0 = hashlib.sha256(u32le(TOKENS[:4])).digest()  # page 0: no parent
    want1 = hashlib.sha256(want0 + u32le(TOKENS[4:8])).digest()
    assert hashes == [want0, want1]
    prior = hashlib.sha256(b"prior page").digest()
    assert kvault.sglang_page_hashes(TOKENS, 4, prior=prior) == reference_chain(prior, TOKENS, 4)
    with pytest.raises(ValueError):
        kvault.sglang_page_hashes(TOKENS, 0)


def ns_args(**over):
    args = dict(model_id="meta-llama/Llama-3.1-8B", num_layers=32, kv_heads=8, head_dim=128,
                dtype="float16", block_tokens=16)
    args.update(over)
    return args


def test_namespace_digest():
    d = kvault.namespace_digest(**ns_args())
    assert len(d) == 32
    enc = kvault.namespace_encoding(**ns_args())
    assert enc.startswith(b"KVNS\x01")
    assert d == hashlib.sha256(enc).digest()
    # numpy spelling and kvault's spelling of the dtype are the same namespace
    assert d == kvault.namespace_digest(**ns_args(dtype="f16"))
    assert d != kvault.namespace_digest(**ns_args(dtype="bfloat16"))
    assert d != kvault.namespace_digest(**ns_args(), tp_rank=1, tp_size=2)
    lora = kvault.namespace_digest(**ns_args(), extra_keys={"lora": "a", "cache_salt": "s"})
    assert lora != d
    assert lora == kvault.namespace_digest(**ns_args(),
                                           extra_keys=[("cache_salt", "s"), ("lora", "a")])
    with pytest.raises(kvault.InvalidArgumentError, match="model_id"):
        kvault.namespace_digest(**ns_args(model_id=""))
    with pytest.raises(ValueError):
        kvault.namespace_digest(**ns_args(), tp_rank=2, tp_size=2)


cbor2 = pytest.importorskip("cbor2")


def vllm_ref(parent, tokens, extra):
    return hashlib.sha256(cbor2.dumps((parent, tuple(tokens), extra), canonical=True)).digest()


def test_vllm_none_hash():
    for seed in ("0", "vllm-none-hash", "12345"):
        assert kvault.vllm_none_hash(seed) == \
            hashlib.sha256(cbor2.dumps(seed, canonical=True)).digest()
    assert kvault.vllm_none_hash() == kvault.vllm_none_hash(kvault.VLLM_DEFAULT_NONE_HASH_SEED)


@pytest.mark.parametrize("extra", [
    None,
    (),
    ("my-lora",),
    ("my-lora", ("mm-hash-1", -3), ("mm-hash-2", 5)),
    ("salt", b"\x00\x01prompt-embeds-digest", 2**40, -(2**40)),
])
def test_vllm_hash_block_tokens_matches_cbor2(extra):
    parent = kvault.vllm_none_hash("0")
    tokens = [0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1]
    assert kvault.vllm_block_hash_input(parent, tokens, extra) == \
        cbor2.dumps((parent, tuple(tokens), extra), canonical=True)
    assert kvault.vllm_hash_block_tokens(parent, tokens, extra) == vllm_ref(parent, tokens, extra)


def test_vllm_extra_keys_nesting_is_bounded():
    parent = kvault.vllm_none_hash("0")
    selfish = []
    selfish.append(selfish)  # a list that holds itself: refused, not a stack overflow
    with pytest.raises(ValueError, match="nest"):
        kvault.vllm_hash_block_tokens(parent, [1], (selfish,))
    deep = ("x",)
    for _ in range(20):
        deep = (deep,)
    with pytest.raises(ValueError, match="nest"):
        kvault.vllm_hash_block_tokens(parent, [1], (deep,))
    shallow = ("x",)
    for _ in range(10):
        shallow = (shallow,)
    assert kvault.vllm_hash_block_tokens(parent, [1], (shallow,)) == \
        vllm_ref(parent, [1], (shallow,))  # positive control


def test_vllm_block_hashes_chain():
    none_hash = kvault.vllm_none_hash("0")
    tokens = list(range(1000, 1037))  # 2 full blocks of 16 and a tail
    h0 = vllm_ref(none_hash, tokens[:16], None)
    h1 = vllm_ref(h0, tokens[16:32], None)
    assert kvault.vllm_block_hashes(none_hash, tokens, 16) == [h0, h1]
    extra = [("lora", "salt"), ("lora",)]
    e0 = vllm_ref(none_hash, tokens[:16], extra[0])
    e1 = vllm_ref(e0, tokens[16:32], extra[1])
    assert kvault.vllm_block_hashes(none_hash, tokens, 16, extra) == [e0, e1]
    with pytest.raises(kvault.InvalidArgumentError):
        kvault.vllm_block_hashes(none_hash, tokens, 16, [None])  # one extra per full block
    with pytest.raises(ValueError):
        kvault.vllm_hash_block_tokens(none_hash, tokens, (True,))  # cbor2 would write a bool
