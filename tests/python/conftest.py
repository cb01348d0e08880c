"""Fixtures of the kvault Python module's tests: a real kvaultd on loopback.

The daemon is ${KVAULT_BIN_DIR}/kvaultd (CTest sets KVAULT_BIN_DIR and PYTHONPATH, see
CMakeLists.txt), started with ports 0 in a temporary data directory; its ready line gives the
bound ports. It is stopped with SIGTERM at teardown (SIGKILL if it does not exit), also when a
test fails.
"""

import os
import re
import select
import signal
import subprocess
import time
import uuid

import pytest

import kvault

READY = re.compile(r"^kvaultd ready control=(\S+):(\d+) http=(\S+):(\d+)")


class Daemon:
    """A kvaultd process on loopback."""

    def __init__(self, data_dir, *extra_args):
        bin_dir = os.environ.get("KVAULT_BIN_DIR")
        if not bin_dir:
            pytest.skip("KVAULT_BIN_DIR is not set (run through ctest)")
        os.makedirs(data_dir, exist_ok=True)
        self.data_dir = str(data_dir)
        self.stderr_path = os.path.join(self.data_dir, "kvaultd.err")
        args = [os.path.join(bin_dir, "kvaultd"), "--control.port", "0", "--http.port", "0",
                "--data-dir", self.data_dir, "--storage.nvme_capacity", "0",
                "--storage.host_capacity", "256MiB", "--limits.drain_timeout", "1s", *extra_args]
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err,
                                         cwd=self.data_dir)
        self.paused = False
        line = self._ready_line(20.0)
        m = READY.match(line)
        if not m:
            self.stop()
            raise RuntimeError(f"kvaultd did not get ready: {line!r}; stderr: {self.stderr()}")
        self.server = f"127.0.0.1:{m.group(2)}"

    def _ready_line(self, bound_s):
        buf = b""
        until = time.monotonic() + bound_s
        fd = self.proc.stdout.fileno()
        while b"\n" not in buf and time.monotonic() < until:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if not ready:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
        return buf.split(b"\n", 1)[0].decode(errors="replace")

    def stderr(self):
        with open(self.stderr_path, errors="replace") as f:
            return f.read()

    def pause(self):
        """SIGSTOP: the daemon accepts bytes into its socket buffers but answers nothing."""
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True
        # The signal is asynchronous: wait until every thread is stopped ('T' in /proc).
        until = time.monotonic() + 10
        while time.monotonic() < until:
            states = []
            for tid in os.listdir(f"/proc/{self.proc.pid}/task"):
                with open(f"/proc/{self.proc.pid}/task/{tid}/stat") as f:
                    states.append(f.read().rsplit(")", 1)[1].split()[0])
            if all(st in ("T", "t") for st in states):
                return
            time.sleep(0.01)
        raise RuntimeError("kvaultd did not stop on SIGSTOP")

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def stop(self):
        if self.proc.poll() is None:
            if self.paused:
                self.resume()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc.stdout.close()


@pytest.fixture(scope="session")
def daemon(tmp_path_factory):
    """One daemon shared by the session's tests (they use distinct namespaces)."""
    d = Daemon(tmp_path_factory.mktemp("kvaultd"))
    yield d
    d.stop()


@pytest.fixture
def own_daemon(tmp_path):
    """A daemon for one test that stops or pauses it."""
    d = Daemon(tmp_path / "kvaultd")
    yield d
    d.stop()


@pytest.fixture
def client(daemon):
    with kvault.Client(daemon.server) as c:
        yield c


@pytest.fixture
def ns():
    """A namespace digest no other test uses."""
    return kvault.namespace_digest(f"test-model-{uuid.uuid4()}", num_layers=2, kv_heads=2,
                                   head_dim=8, dtype="float16", block_tokens=4)
