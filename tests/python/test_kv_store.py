"""kvault.KvStore and KvBlockCodec over numpy KV shaped [layers, 2, tokens, kv_heads, head_dim]."""

import numpy as np
import pytest

import kvault

LAYERS, HEADS, DIM, BLOCK = 2, 2, 8, 4


def make_kv(tokens, seed=0, dtype=np.float16):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((LAYERS, 2, tokens, HEADS, DIM)).astype(dtype)


def store(client, ns, codec="raw", dtype="float16"):
    return kvault.KvStore(client, LAYERS, HEADS, DIM, dtype=dtype, block_tokens=BLOCK,
                          codec=codec, ns_digest=ns, staging_bytes=1 << 20)


def test_raw_round_trip_is_byte_exact(client, ns):
    kv = make_kv(22, seed=1)  # 5 full blocks and a tail
    tokens = list(range(22))
    keys = kvault.chain_keys(ns, tokens, BLOCK)
    assert len(keys) == 5
    s = store(client, ns)
    w = s.store_blocks(kv, keys)
    assert w.ok and w.leading_ok == 5 and len(w) == 5

    hit = client.lookup(keys, lease=True)
    assert hit.leading_hits == 5
    out = np.zeros_like(kv)
    r = s.load_blocks(hit.lease, keys[:hit.leading_hits], out)
    assert r.ok and r.leading_ok == 5
    assert np.array_equal(out[:, :, :20], kv[:, :, :20])
    assert not out[:, :, 20:].any()  # the partial tail is not stored
    client.release_lease(hit.lease)


def test_first_block_and_layer_range(client, ns):
    kv = make_kv(12, seed=2)
    keys = kvault.chain_keys(ns, list(range(50, 62)), BLOCK)
    s = store(client, ns)
    assert s.store_blocks(kv, keys[:1]).ok
    w = s.store_blocks(kv, keys, first_block=1)  # block 0 is taken as stored
    assert w.leading_ok == 3
    assert client.lookup(keys).leading_hits == 3

    out = np.zeros_like(kv)
    r = s.load_blocks(None, keys, out, layers=(1, 1))
    assert r.leading_ok == 3
    assert np.array_equal(out[1], kv[1])
    assert not out[0].any()  # layer 0 untouched


def test_fp8_decodes_like_the_local_codec(client, ns):
    kv = make_kv(8, seed=3)
    keys = kvault.chain_keys(ns, list(range(8)), BLOCK)
    s = store(client, ns, codec="fp8")
    assert s.store_blocks(kv, keys).leading_ok == 2
    out = np.zeros_like(kv)
    assert s.load_blocks(None, keys, out).leading_ok == 2

    codec = kvault.KvBlockCodec(LAYERS, HEADS, DIM, block_tokens=BLOCK, codec="fp8", ns_digest=ns)
    local = np.zeros_like(kv)
    for i, key in enumerate(keys):
        codec.decode(codec.encode(kv, i, key), i, key, local)
    assert np.array_equal(out, local)  # the same bytes as a second, local decode
    x, y = kv.astype(np.float32), out.astype(np.float32)
    assert np.linalg.norm(y - x) / np.linalg.norm(x) < 0.1  # and close to the input
    assert not np.array_equal(out, kv)  # lossy


def test_bfloat16_bits_round_trip(client, ns):
    bits = np.random.default_rng(4).integers(0, 0x7F00, size=(LAYERS, 2, 8, HEADS, DIM),
                                             dtype=np.uint16)
    keys = kvault.chain_keys(ns, list(range(8)), BLOCK)
    s = store(client, ns, dtype="bfloat16")
    assert s.store_blocks(bits, keys).leading_ok == 2
    out = np.zeros_like(bits)
    assert s.load_blocks(None, keys, out).leading_ok == 2
    assert np.array_equal(out, bits)


def test_load_miss_leaves_kv_untouched(client, ns):
    s = store(client, ns)
    # Positive control: blocks stored through the same KvStore load back byte-exact.
    kv = make_kv(8, seed=6)
    stored = kvault.chain_keys(ns, list(range(800, 808)), BLOCK)
    assert s.store_blocks(kv, stored).leading_ok == 2
    hit = np.full_like(kv, 7.0)
    r = s.load_blocks(None, stored, hit)
    assert r.ok and r.leading_ok == 2
    assert [st.code for st in r.statuses] == ["ok", "ok"]
    assert np.array_equal(hit, kv)

    # Keys never stored: both miss, and the KV keeps every value it had.
    keys = kvault.chain_keys(ns, list(range(900, 908)), BLOCK)
    out = np.full((LAYERS, 2, 8, HEADS, DIM), 7.0, dtype=np.float16)
    r = s.load_blocks(None, keys, out)
    assert r.ok and r.leading_ok == 0
    assert [st.code for st in r.statuses] == ["not_found", "not_found"]
    assert (out == 7.0).all()


def test_bad_shapes_and_dtypes_raise_value_error(client, ns):
    s = store(client, ns)
    keys = kvault.chain_keys(ns, list(range(8)), BLOCK)
    good = make_kv(8)
    with pytest.raises(ValueError, match="shaped"):
        s.store_blocks(good[:, :, :, :1], keys)
    with pytest.raises(ValueError, match="shaped"):
        s.store_blocks(good.reshape(LAYERS, 2, 8, HEADS * DIM), keys)
    with pytest.raises(ValueError, match="dtype"):
        s.store_blocks(good.astype(np.float32), keys)
    with pytest.raises(ValueError, match="contiguous"):
        s.store_blocks(make_kv(16)[:, :, ::2], keys)
    with pytest.raises(ValueError, match="numpy"):
        s.store_blocks(good.tolist(), keys)
    with pytest.raises(ValueError, match="tokens"):
        s.store_blocks(make_kv(7), keys)  # 2 keys need 8 tokens
    ro = make_kv(8)
    ro.flags.writeable = False
    assert s.store_blocks(ro, keys).ok  # a source may be read-only
    with pytest.raises(ValueError, match="writable"):
        s.load_blocks(None, keys, ro)
    with pytest.raises(kvault.InvalidArgumentError):
        store(client, ns, codec="no-such-codec")
    with pytest.raises(ValueError, match="dtype"):
        store(client, ns, dtype="float32")
    with pytest.raises(ValueError, match="layer"):
        s.load_blocks(None, keys, make_kv(8), layers=(2, 1))


def test_codec_rejects_another_key(ns):
    kv = make_kv(4)
    codec = kvault.KvBlockCodec(LAYERS, HEADS, DIM, block_tokens=BLOCK, codec="raw", ns_digest=ns)
    keys = kvault.chain_keys(ns, [1, 2, 3, 4, 5, 6, 7, 8], BLOCK)
    obj = codec.encode(kv, 0, keys[0])
    assert len(obj) == codec.object_bytes(0) and obj.dtype == np.uint8
    with pytest.raises(kvault.CorruptionError):
        codec.decode(obj, 0, keys[1], np.zeros_like(kv))
    obj[-1] ^= 1
    with pytest.raises(kvault.CorruptionError):
        codec.decode(obj, 0, keys[0], np.zeros_like(kv))


def test_codec_rejects_block_indexes_past_the_kv_or_overflowing(ns):
    # Block 2**63 of 4 tokens ends at 2**65 + 4, which wraps to token 4 in uint64: unchecked, it
    # encoded and decoded block 0.
    kv = make_kv(2 * BLOCK, seed=5)
    codec = kvault.KvBlockCodec(LAYERS, HEADS, DIM, block_tokens=BLOCK, codec="raw", ns_digest=ns)
    key = kvault.chain_keys(ns, list(range(BLOCK)), BLOCK)[0]
    last = codec.encode(kv, 1, key)  # the last block of kv: fine
    for index in (2**63, 2**62, 2**64 - 1, 2):
        with pytest.raises(kvault.InvalidArgumentError, match="block"):
            codec.encode(kv, index, key)
        with pytest.raises(kvault.InvalidArgumentError, match="block"):
            codec.decode(last, index, key, np.zeros_like(kv))
        if index != 2:  # a layer range has no KV to lie past
            with pytest.raises(kvault.InvalidArgumentError, match="overflows"):
                codec.layer_range(index, 0, 1)
    out = np.zeros_like(kv)
    codec.decode(last, 1, key, out)
    assert np.array_equal(out[:, :, BLOCK:], kv[:, :, BLOCK:])
    assert not out[:, :, :BLOCK].any()
