"""Starting and stopping a throwaway Sluice broker for the soak test and the frame recorder."""

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sluice_bin():
    env = os.environ.get("SLUICE_BIN")
    if env:
        return env
    for p in ("target/release/sluice", "target/debug/sluice"):
        full = os.path.join(ROOT, p)
        if os.path.exists(full):
            return full
    raise RuntimeError("no sluice binary: set SLUICE_BIN or run `cargo build -p sluice`")


class Broker:
    """A broker process on free loopback ports with a temporary data dir."""

    def __init__(self, advertised_port=None, extra_args=()):
        self.port = free_port()
        self.http_port = free_port()
        self.data = tempfile.mkdtemp(prefix="sluice-soak-")
        self.log_path = os.path.join(self.data, "broker.log")
        args = [
            sluice_bin(), "broker",
            "--listen", f"127.0.0.1:{self.port}",
            "--http", f"127.0.0.1:{self.http_port}",
            "--data-dir", os.path.join(self.data, "d"),
            "--log-level", "warn",
            "--set", "num.partitions=1",
        ]
        if advertised_port:
            args += ["--advertised", f"127.0.0.1:{advertised_port}"]
        args += list(extra_args)
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        self._wait_ready()

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def _wait_ready(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode}: {self.tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("broker did not start listening")

    def alive(self):
        return self.proc.poll() is None

    def live(self):
        """GET /health/live; returns the HTTP status or None."""
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.http_port}/health/live", timeout=5
            ) as r:
                return r.status
        except Exception:  # noqa: BLE001 - any failure means "not live"
            return None

    def rss_kb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return -1

    def metrics(self):
        """GET /metrics as {sample name with labels: value}; {} when unreachable."""
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.http_port}/metrics", timeout=5
            ) as r:
                text = r.read().decode()
        except Exception:  # noqa: BLE001 - reported by the caller as missing figures
            return {}
        out = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            name, _, value = line.rpartition(" ")
            try:
                out[name] = float(value)
            except ValueError:
                continue
        return out

    def allocated_bytes(self):
        """jemalloc's allocated bytes from /metrics, or None when not exported."""
        for name, v in self.metrics().items():
            if name.startswith("sluice_allocator_allocated_bytes"):
                return int(v)
        return None

    def reserved_bytes(self):
        """Address space jemalloc holds (mapped + retained bytes from /metrics), or None. A
        huge up-front reservation shows here even when it costs no memory: with the kernel's
        overcommit on, jemalloc maps with MAP_NORESERVE, so reserving 100 GB for a lying array
        count succeeds instead of aborting, and the range is retained afterwards."""
        got = {}
        for name, v in self.metrics().items():
            for k in ("mapped", "retained"):
                if name.startswith(f"sluice_allocator_{k}_bytes"):
                    got[k] = int(v)
        return sum(got.values()) if len(got) == 2 else None

    def tail(self, n=4000):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def crash_reason(self):
        """The lines of the broker log that explain an abnormal exit (panic / abort)."""
        try:
            with open(self.log_path, "rb") as f:
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        keep = [
            line for line in text.splitlines()
            if "panicked at" in line or "memory allocation" in line or "ERROR" in line
            or "in kafka_protocol" in line or "kafka_protocol::" in line
        ]
        return "\n".join(keep[:12])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.data, ignore_errors=True)
