"""kvault.Client against a real kvaultd: connecting, errors, sealed objects through store,
lookup and load, handles, leases, delete, stats."""

import decimal
import socket
import time

import numpy as np
import pytest

import kvault

LAYERS, HEADS, DIM, BLOCK = 2, 2, 8, 4


def make_kv(tokens, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((LAYERS, 2, tokens, HEADS, DIM)).astype(np.float16)


def sealed_objects(ns, kv, keys, region, codec="raw"):
    """Encodes block i of kv under keys[i] into consecutive slices of region; returns them."""
    c = kvault.KvBlockCodec(LAYERS, HEADS, DIM, block_tokens=BLOCK, codec=codec, ns_digest=ns)
    out, at = [], 0
    for i, key in enumerate(keys):
        n = c.object_bytes(i)
        out.append(c.encode(kv, i, key, out=region.array[at:at + n]))
        at += n
    return c, out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connect_ping_stats(daemon):
    with kvault.Client(daemon.server, request_timeout_ms=2000) as c:
        assert c.connected and not c.closed
        assert c.session_id > 0
        assert c.server == daemon.server
        rtt = c.ping()
        assert 0 < rtt < 5
        stats = c.stats()
        assert isinstance(stats, dict) and stats
        assert all(isinstance(v, (int, float)) for v in stats.values())
    assert c.closed
    with pytest.raises(kvault.InvalidArgumentError, match="closed"):
        c.ping()


def test_connect_to_dead_port_raises_unavailable_quickly():
    port = free_port()
    t0 = time.monotonic()
    with pytest.raises(kvault.UnavailableError) as e:
        kvault.Client(f"127.0.0.1:{port}", connect_timeout_ms=2000)
    assert time.monotonic() - t0 < 2.5
    assert isinstance(e.value, kvault.Error)
    assert e.value.code == "unavailable"
    assert str(e.value)  # the status text, e.g. "cannot connect to ...: Connection refused"
    assert str(port) in str(e.value)


def test_bad_config_raises_value_error():
    with pytest.raises(kvault.InvalidArgumentError) as e:
        kvault.Client("no-port-here")
    assert isinstance(e.value, ValueError)
    with pytest.raises(ValueError):
        kvault.Client("127.0.0.1:1", connect_timeout_ms=0)


def test_sealed_objects_round_trip(client, ns):
    kv = make_kv(12, seed=1)
    keys = kvault.chain_keys(ns, list(range(12)), BLOCK)
    src = client.allocate(1 << 16)
    codec, objects = sealed_objects(ns, kv, keys, src)

    put = client.store(keys, objects)
    assert put.wait(timeout_s=10) is True
    assert put.poll() and put.status.ok
    assert put.wait_settled(timeout_s=5) and put.settled
    assert len(put) == 3 and put.leading_ok == 3 and put.ok_count == 3
    assert all(s.ok and s.code == "ok" for s in put.statuses)

    hit = client.lookup(keys, lease=True)
    assert hit.ok and hit.leading_hits == 3
    assert hit.tiers == ["host"] * 3
    assert hit.lease and hit.lease.valid and hit.lease.remaining_s > 0

    dst_array = np.zeros(1 << 16, dtype=np.uint8)
    dst = client.register(dst_array)
    n = [len(o) for o in objects]
    views = [dst_array[sum(n[:i]):sum(n[:i]) + n[i]] for i in range(3)]
    get = client.load(hit.lease, keys, views)
    assert get.wait(timeout_s=10)
    assert get.leading_ok == 3
    for i in range(3):
        assert get.object_size(i) == n[i]
        assert bytes(views[i]) == bytes(objects[i])
    # The loaded objects decode to the original KV (raw codec: byte-exact).
    out = np.zeros_like(kv)
    for i in range(3):
        codec.decode(views[i], i, keys[i], out)
    assert np.array_equal(out, kv)
    client.release_lease(hit.lease)
    with pytest.raises(kvault.NotFoundError):
        client.release_lease(hit.lease)
    del dst


def test_load_byte_range_and_too_small(client, ns):
    kv = make_kv(4, seed=2)
    keys = kvault.chain_keys(ns, [7, 7, 7, 7], BLOCK)
    region = client.allocate(1 << 14)
    codec, objects = sealed_objects(ns, kv, keys, region)
    assert client.store(keys, objects).wait(timeout_s=10)
    size = len(objects[0])
    offset, length = codec.layer_range(0, 1, 1)  # layer 1 only
    dst = region.array[size:size + length]
    get = client.load(None, keys, [(dst, offset, length)])
    assert get.wait(timeout_s=10) and get.key_status(0).ok
    assert bytes(dst) == bytes(objects[0][offset:offset + length])
    # A destination too small for the whole object: OutOfRange, with the size to retry with.
    small = region.array[2 * size:2 * size + 16]
    get = client.load(None, keys, [small])
    assert get.wait(timeout_s=10)
    assert get.key_status(0).code == "out_of_range"
    assert get.object_size(0) == size
    assert get.leading_ok == 0


def test_miss_on_unknown_chain_with_positive_control(client, ns):
    kv = make_kv(8, seed=3)
    stored = kvault.chain_keys(ns, list(range(100, 108)), BLOCK)
    region = client.allocate(1 << 14)
    _, objects = sealed_objects(ns, kv, stored, region)
    assert client.store(stored, objects).wait(timeout_s=10)

    unknown = kvault.chain_keys(ns, list(range(200, 208)), BLOCK)
    miss = client.lookup(unknown)
    assert miss.ok and miss.leading_hits == 0
    assert miss.tiers == ["none", "none"]
    assert not miss.lease

    hit = client.lookup(stored)  # positive control: same client, same daemon
    assert hit.leading_hits == 2

    # A chain whose first block is stored but not its second: one leading hit.
    mixed = client.lookup([stored[0], unknown[1]])
    assert mixed.leading_hits == 1 and mixed.tiers == ["host", "none"]

    get = client.load(None, unknown[:1], [region.array[8192:8192 + len(objects[0])]])
    assert get.wait(timeout_s=10)
    assert get.key_status(0).code == "not_found"
    assert get.object_size(0) == 0


def test_delete(client, ns):
    kv = make_kv(4, seed=4)
    keys = kvault.chain_keys(ns, [1, 2, 3, 4], BLOCK)
    region = client.allocate(1 << 12)
    _, objects = sealed_objects(ns, kv, keys, region)
    assert client.store(keys, objects).wait(timeout_s=10)
    assert client.lookup(keys).leading_hits == 1
    assert client.delete(keys) == [True]
    assert client.delete(keys) == [False]
    assert client.lookup(keys).leading_hits == 0


def test_store_input_errors(client, ns):
    """Input the call refuses before sending anything raises at the call (as the C ABI returns it
    as the call's status), with the status text; nothing is stored."""
    keys = kvault.chain_keys(ns, [1, 2, 3, 4], BLOCK)
    outside = np.zeros(256, dtype=np.uint8)  # never registered
    with pytest.raises(kvault.InvalidArgumentError, match="registered"):
        client.store(keys, [outside])
    with pytest.raises(kvault.InvalidArgumentError, match="1 keys but 2 sources"):
        client.store(keys, [outside, outside])
    with pytest.raises(kvault.InvalidArgumentError, match="1 keys but 0 destinations"):
        client.load(None, keys, [])
    assert client.lookup(keys).leading_hits == 0
    with pytest.raises(ValueError, match="32 bytes"):
        client.store([b"short"], [outside])
    with pytest.raises(ValueError, match="contiguous"):
        client.register(np.zeros((8, 8), dtype=np.uint8)[:, ::2])
    # Positive control: the same key from registered memory is stored; a handle's key index is
    # still checked.
    kv = make_kv(4, seed=11)
    region = client.allocate(1 << 13)
    _, objects = sealed_objects(ns, kv, keys, region)
    put = client.store(keys, objects)
    assert put.wait(timeout_s=10)
    assert client.lookup(keys).leading_hits == 1
    with pytest.raises(IndexError):
        put.key_status(5)


def test_store_with_chain_parents(client, ns):
    kv = make_kv(8, seed=6)
    keys = kvault.chain_keys(ns, list(range(300, 308)), BLOCK)
    region = client.allocate(1 << 14)
    _, objects = sealed_objects(ns, kv, keys, region)
    # One parent per key: the chain's first has none (all zero), the second follows the first.
    put = client.store(keys, objects, parents=[bytes(32), keys[0]])
    assert put.wait(timeout_s=10)
    assert client.lookup(keys).leading_hits == 2
    # Parents that are not one per key are refused before anything is sent.
    with pytest.raises(kvault.InvalidArgumentError, match="2 keys but 1 parents"):
        client.store(keys, objects, parents=[bytes(32)])
    with pytest.raises(ValueError, match="32 bytes"):
        client.store(keys, objects, parents=[b"short", keys[0]])


def test_keys_as_one_buffer(client, ns):
    """Keys may come as one bytes-like object of 32 * n bytes (bytes, a uint8 array, numpy S32 or
    V32 items); an array of numbers (token ids passed by mistake) or a ragged length is
    InvalidArgumentError."""
    kv = make_kv(8, seed=12)
    keys = kvault.chain_keys(ns, list(range(500, 508)), BLOCK)
    region = client.allocate(1 << 14)
    _, objects = sealed_objects(ns, kv, keys, region)
    assert client.store(keys, objects).wait(timeout_s=10)
    joined = b"".join(keys)
    assert client.lookup(joined).leading_hits == 2
    assert client.lookup(np.frombuffer(joined, np.uint8).reshape(2, 32)).leading_hits == 2
    assert client.lookup(np.array(keys[:2], dtype="S32")).leading_hits == 2
    assert client.lookup(np.frombuffer(joined, dtype="V32")).leading_hits == 2
    tokens = np.arange(500, 508, dtype=np.int64)  # 64 bytes: two "keys" if taken as bytes
    with pytest.raises(kvault.InvalidArgumentError, match="8-byte items"):
        client.lookup(tokens)
    with pytest.raises(kvault.InvalidArgumentError, match="32 \\* n bytes, got 33"):
        client.lookup(joined[:33])


def test_handles_poll_cancel_and_wait_timeouts(own_daemon, ns):
    kv = make_kv(4, seed=5)
    keys = kvault.chain_keys(ns, [9, 9, 9, 9], BLOCK)
    # No request deadline passes while the daemon is paused below.
    with kvault.Client(own_daemon.server, request_timeout_ms=120000) as client:
        region = client.allocate(1 << 13)
        _, objects = sealed_objects(ns, kv, keys, region)
        put = client.store(keys, objects)
        deadline = time.monotonic() + 10
        while not put.poll():  # poll never blocks
            assert time.monotonic() < deadline
            time.sleep(0.001)
        assert put.wait(timeout_s=0) is True  # done: a zero timeout is enough
        put.cancel()  # no effect once done
        assert not put.cancelled and put.status.ok
        assert put.wait_settled(timeout_s=5)

        # The daemon paused (SIGSTOP): a load of the stored block stays in flight.
        n = len(objects[0])
        dst = region.array[4096:4096 + n]
        dst[:] = 0xEE
        own_daemon.pause()
        get = client.load(None, keys, [dst])
        assert not get.poll()
        assert get.wait(timeout_s=0.05) is False  # the wait's timeout, not the transfer's end
        assert get.wait(timeout_s=0.05, check=True) is False  # nothing to raise yet
        assert not get.poll() and not get.cancelled
        assert get.status.code == "unavailable" and "in flight" in get.status.message
        assert get.key_status(0).message == "in flight"

        get.cancel()  # in flight: done at once, cancelled
        get.cancel()  # idempotent
        assert get.poll() and get.cancelled
        assert get.wait(timeout_s=0, check=False) is True
        assert get.status.code == "unavailable" and get.status.message == "cancelled"
        assert get.key_status(0).code == "unavailable"
        with pytest.raises(kvault.UnavailableError, match="cancelled"):
            get.wait(timeout_s=0)
        # The daemon was not told and has not answered: the destination is not free yet.
        assert not get.settled
        assert get.wait_settled(timeout_s=0.05) is False

        own_daemon.resume()
        assert get.wait_settled(timeout_s=30)
        assert get.cancelled and get.status.message == "cancelled"  # a late reply changes nothing
        assert client.ping() > 0


def test_region_views(client):
    region = client.allocate(4096)
    assert region.nbytes == len(region) == 4096 and region.address != 0
    a = region.array
    assert a.dtype == np.uint8 and a.shape == (4096,) and a.flags.writeable
    a[:4] = [1, 2, 3, 4]
    assert bytes(memoryview(region)[:4]) == b"\x01\x02\x03\x04"
    arr = np.arange(64, dtype=np.uint8)
    reg = client.register(arr)
    assert reg.nbytes == 64
    assert reg.address == arr.ctypes.data
    ro = client.register(b"read-only bytes")
    assert not ro.array.flags.writeable


def test_lookup_failure_is_a_miss(own_daemon, ns):
    c = kvault.Client(own_daemon.server, request_timeout_ms=1000, reconnect_backoff_ms=100)
    keys = kvault.chain_keys(ns, [1, 2, 3, 4], BLOCK)
    own_daemon.stop()
    miss = c.lookup(keys)
    assert miss.leading_hits == 0 and not miss.ok
    assert miss.status.code == "unavailable" and miss.status.message
    with pytest.raises(kvault.UnavailableError):
        c.lookup(keys, check=True)
    with pytest.raises(kvault.UnavailableError):
        c.ping()
    c.close()


@pytest.mark.parametrize("staging", [64 << 20, 0])
def test_registered_numpy_memory_is_staged_unless_turned_off(daemon, ns, staging):
    """store and load on register()ed numpy arrays: staged through the client's pool by default
    (the source may change once store() returns), moved by UCX directly with staging off; both
    byte-exact."""
    with kvault.Client(daemon.server, request_timeout_ms=10000,
                       registered_staging_bytes=staging) as c:
        kv = make_kv(12, seed=5 + staging % 7)
        keys = kvault.chain_keys(ns, [7, staging % 1000] + list(range(10)), BLOCK)
        src_array = np.zeros(1 << 16, dtype=np.uint8)
        src = c.register(src_array)
        _, objects = sealed_objects(ns, kv, keys, src)
        expected = [bytes(o) for o in objects]
        put = c.store(keys, objects)
        if staging:
            src_array[:] = 0x5A  # the sources were copied before store() returned
        assert put.wait(timeout_s=10) and put.leading_ok == 3

        dst_array = np.full(1 << 16, 0xEE, dtype=np.uint8)
        dst = c.register(dst_array)
        views = [dst_array[i * 8192:i * 8192 + 8192] for i in range(3)]
        get = c.load(None, keys, views)
        assert get.wait(timeout_s=10) and get.leading_ok == 3
        for i in range(3):
            n = get.object_size(i)
            assert bytes(views[i][:n]) == expected[i]
            assert (views[i][n:] == 0xEE).all()
        stats = c.registered_staging
        assert stats["pool_bytes"] == staging
        if staging:
            assert stats["staged_requests"] >= 2 and stats["direct_requests"] == 0
        else:
            assert stats["staged_requests"] == 0 and stats["direct_requests"] == 0
        del src, dst


YEAR_MS = 365 * 24 * 3600 * 1000


def test_config_timeouts_over_a_year_are_refused(daemon):
    """ClientConfig bounds every timeout by a year (as the C ABI does): past it a deadline used to
    overflow into an instant failure."""
    for field, value in [("connect_timeout", 2**62), ("request_timeout", 2**60),
                         ("stall_timeout", YEAR_MS + 1), ("reconnect_backoff", 2**63 - 1),
                         ("connect_timeout", float("nan")), ("request_timeout", -1),
                         ("stall_timeout", 2**64), ("reconnect_backoff", float("inf"))]:
        with pytest.raises(kvault.InvalidArgumentError, match=f"{field}_ms must be a number"):
            kvault.Client(daemon.server, **{f"{field}_ms": value})
    for value in [True, "1000", None]:
        with pytest.raises(kvault.InvalidArgumentError, match="connect_timeout_ms must be a number"):
            kvault.Client(daemon.server, connect_timeout_ms=value)
    # Positive control: a year each is accepted, and the client works.
    with kvault.Client(daemon.server, connect_timeout_ms=YEAR_MS, request_timeout_ms=YEAR_MS,
                       stall_timeout_ms=YEAR_MS, reconnect_backoff_ms=YEAR_MS) as c:
        assert c.ping() > 0


def test_a_request_timeout_of_zero_is_the_clients_default_as_in_c(daemon):
    """timeout_ms=0 means request_timeout_ms, as 0 does in the C ABI (it was a deadline of now:
    every call failed, a lookup as a silent full miss)."""
    with kvault.Client(daemon.server, request_timeout_ms=10000) as c:
        key = b"\x07" * 32
        assert c.ping(timeout_ms=0) > 0
        result = c.lookup([key], timeout_ms=0)
        assert result.status.ok, result.status
        assert result.leading_hits == 0
        # Other values are still checked: a negative one is refused.
        with pytest.raises(kvault.InvalidArgumentError, match="timeout_ms"):
            c.ping(timeout_ms=-1)


def test_lease_ttl_must_be_a_number_of_milliseconds_up_to_a_year(client):
    """lease_ttl_ms: NaN, infinities, negatives and values over a year are InvalidArgumentError
    (a float cast to int past its range is undefined); [0, a year] is fine."""
    key = b"\x05" * 32
    for ttl in [float("nan"), float("inf"), -float("inf"), -1, 1e300, 2.0**63, YEAR_MS + 1]:
        with pytest.raises(kvault.InvalidArgumentError, match="lease_ttl_ms"):
            client.lookup([key], lease=True, lease_ttl_ms=ttl)
    for ttl in [0, 1000, 1500.5, YEAR_MS]:
        assert client.lookup([key], lease=True, lease_ttl_ms=ttl, check=True).ok


def test_sizes_must_be_ints_in_range(daemon, client):
    """allocate(nbytes) and registered_staging_bytes take ints in [0, 2**64): anything else is an
    InvalidArgumentError naming the argument, not pybind11's TypeError."""
    for nbytes in [-1, 2**64, 1.5, "4096", True]:
        with pytest.raises(kvault.InvalidArgumentError, match="nbytes must be an int"):
            client.allocate(nbytes)
    assert client.allocate(4096).nbytes == 4096  # positive control
    for staging in [-1, 2**64, 0.5, decimal.Decimal("1.5"), np.float32(2.0)]:
        with pytest.raises(kvault.InvalidArgumentError, match="registered_staging_bytes must be"):
            kvault.Client(daemon.server, registered_staging_bytes=staging)
    # Integer-like objects (numpy integers) pass where ints do.
    assert client.allocate(np.uint32(4096)).nbytes == 4096
    with kvault.Client(daemon.server, connect_timeout_ms=np.int64(2000),
                       registered_staging_bytes=np.int64(1 << 20)) as c:
        assert c.ping() > 0


def test_request_timeout_ms_must_be_a_number_of_milliseconds_up_to_a_year(client):
    """A call's timeout_ms: NaN, infinities, negatives and values over a year are
    InvalidArgumentError, as in the C ABI (infinity was capped at ten years before); None, fractions
    and a year are fine."""
    for timeout in [float("nan"), float("inf"), -1, YEAR_MS + 1, 1e300]:
        with pytest.raises(kvault.InvalidArgumentError, match="timeout_ms"):
            client.ping(timeout_ms=timeout)
    for timeout in [None, 2000.5, YEAR_MS]:
        assert client.ping(timeout_ms=timeout) > 0


def test_load_destination_offset_and_length_must_fit_uint64(client):
    """A (buffer, offset[, length]) destination whose numbers are not ints in [0, 2**64) is an
    InvalidArgumentError naming it, not pybind11's RuntimeError."""
    region = client.allocate(4096)
    mv = memoryview(region)
    key = b"\x06" * 32
    bad = [((mv[:64], -1), "destination 0 offset"), ((mv[:64], 2**64), "destination 0 offset"),
           ((mv[:64], 1.5), "destination 0 offset"), ((mv[:64], 0, -1), "destination 0 length"),
           ((mv[:64], "0"), "destination 0 offset"), ((mv[:64], True), "destination 0 offset")]
    for destination, what in bad:
        with pytest.raises(kvault.InvalidArgumentError, match=what):
            client.load(None, [key], [destination])
    # Positive controls, ints and numpy integers: a miss.
    for destination in [(mv[:64], 0, 16), (mv[:64], np.uint64(8), np.int64(16))]:
        get = client.load(None, [key], [destination])
        assert get.wait(timeout_s=10) and get.key_status(0).code == "not_found"


def test_lookup_and_delete_of_more_keys_than_one_request_carries(client):
    """Lookup and delete are one request each: more keys than the daemon's max_keys_per_batch
    (4096 by default) are InvalidArgument, as client.h documents; 4096 pass."""
    keys = [i.to_bytes(32, "little") for i in range(4097)]
    assert client.lookup(keys[:4096], check=True).leading_hits == 0
    result = client.lookup(keys)
    assert result.status.code == "invalid_argument"
    assert "max_keys_per_batch" in result.status.message
    with pytest.raises(kvault.InvalidArgumentError, match="max_keys_per_batch"):
        client.lookup(keys, check=True)
    assert client.delete(keys[:4096]) == [False] * 4096
    with pytest.raises(kvault.InvalidArgumentError, match="max_keys_per_batch"):
        client.delete(keys)


def test_codec_shapes_the_block_format_cannot_hold_are_invalid_argument(ns):
    for layers, heads, what in [(0, HEADS, "num_layers"), (1025, HEADS, "num_layers"),
                                (LAYERS, 0, "kv_heads")]:
        with pytest.raises(kvault.InvalidArgumentError, match=what):
            kvault.KvBlockCodec(layers, heads, DIM, block_tokens=BLOCK, codec="raw", ns_digest=ns)
    assert kvault.KvBlockCodec(1024, HEADS, DIM, block_tokens=BLOCK, codec="raw", ns_digest=ns)
