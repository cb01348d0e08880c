"""Blocking calls release the GIL: another Python thread runs Python code while they wait.

Each test makes the blocking call's prompt return *depend* on Python code in a second thread, so
a call that held the GIL could not return early: it would sit out its full (long) timeout and the
test would fail on the result, not on a close timing margin.
"""

import socket
import threading
import time

import numpy as np
import pytest

import kvault


def test_connect_releases_the_gil():
    # A listener that accepts the client's connection and closes it, in Python. Connect then
    # fails at once (the connection was lost); if Connect held the GIL, the listener could not
    # close it and Connect would only fail at its 30 s handshake timeout.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    accepted = threading.Event()

    def serve():
        conn, _ = listener.accept()
        accepted.set()
        conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    t0 = time.monotonic()
    with pytest.raises(kvault.UnavailableError):
        kvault.Client(f"127.0.0.1:{port}", connect_timeout_ms=30000)
    elapsed = time.monotonic() - t0
    t.join(5)
    listener.close()
    assert accepted.is_set()
    assert elapsed < 15, f"Connect waited {elapsed:.1f} s: the listener thread could not run"


def test_wait_releases_the_gil(own_daemon, ns):
    # The daemon is paused, so a store stays in flight; the main thread waits on it (up to 60 s)
    # and a second Python thread cancels it. Only a wait that released the GIL returns early.
    with kvault.Client(own_daemon.server, request_timeout_ms=120000) as c:
        codec = kvault.KvBlockCodec(2, 2, 8, block_tokens=4, codec="raw", ns_digest=ns)
        keys = kvault.chain_keys(ns, [1, 2, 3, 4], 4)
        kv = np.ones((2, 2, 4, 2, 8), dtype=np.float16)
        region = c.allocate(4096)
        obj = codec.encode(kv, 0, keys[0], out=region.array[:codec.object_bytes(0)])
        own_daemon.pause()
        handle = c.store(keys, [obj])
        about_to_wait = threading.Event()

        def cancel_soon():
            about_to_wait.wait(10)
            time.sleep(0.2)  # let the main thread enter wait()
            handle.cancel()

        t = threading.Thread(target=cancel_soon, daemon=True)
        t.start()
        about_to_wait.set()
        t0 = time.monotonic()
        done = handle.wait(timeout_s=60, check=False)
        elapsed = time.monotonic() - t0
        t.join(5)
        assert done, "the wait timed out: the cancelling thread could not run"
        assert handle.cancelled
        assert handle.status.code == "unavailable" and "cancel" in handle.status.message
        assert elapsed < 30
        with pytest.raises(kvault.UnavailableError, match="cancel"):
            handle.wait()
        own_daemon.resume()
        assert handle.wait_settled(timeout_s=30)


def test_lookup_from_many_threads(client, ns):
    keys = kvault.chain_keys(ns, list(range(64)), 4)
    errors, hits = [], []

    def run():
        try:
            for _ in range(20):
                hits.append(client.lookup(keys, check=True).leading_hits)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert hits == [0] * 160
