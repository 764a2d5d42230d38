"""Fixtures for the consumer-group user-feature tests (lag API, `sluice groups`, the
ML worker-queue example).

The broker is a Sluice process started like the client suite starts it (binary from SLUICE_BIN,
default target/release/sluice; CARGO_TARGET_DIR honoured: `sluice_bin` and `free_port` are
imported from tests/clients), but with the HTTP API on (lag endpoints) and settings that keep
group tests fast. These tests always need Sluice itself (the HTTP API is Sluice's), so
KAFKA_BOOTSTRAP is ignored.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CLIENTS = REPO_ROOT / "tests" / "clients"
sys.path.insert(0, str(CLIENTS))

from helpers import free_port  # noqa: E402  (tests/clients/helpers.py)

_spec = importlib.util.spec_from_file_location("sluice_clients_conftest", CLIENTS / "conftest.py")
_clients = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_clients)
sluice_bin = _clients.sluice_bin

START_TIMEOUT_S = 20.0


class Broker:
    """A Sluice broker child process with Kafka and HTTP listeners on free loopback ports."""

    def __init__(self, sets: dict[str, str]):
        self.tmp = tempfile.mkdtemp(prefix="sluice-groups-")
        self.port = free_port()
        self.http_port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.http = f"127.0.0.1:{self.http_port}"
        self.sets = sets
        self.log_path = Path(self.tmp) / "broker.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        binary = sluice_bin()
        if not binary.exists():
            pytest.fail(f"Sluice binary not found at {binary}; build it or set SLUICE_BIN")
        cmd = [str(binary), "broker", "--listen", self.bootstrap, "--advertised", self.bootstrap,
               "--data-dir", str(Path(self.tmp) / "data"), "--http", self.http, "--node-id", "1"]
        for k, v in self.sets.items():
            cmd += ["--set", f"{k}={v}"]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if "listening on" in self.log():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"sluice broker did not start\n{self.log()[-4000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
        self._log.close()

    def cli(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """Runs `sluice ARGS --bootstrap-server THIS` and returns the completed process."""
        p = subprocess.run([str(sluice_bin()), *args, "--bootstrap-server", self.bootstrap],
                           capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"sluice {' '.join(args)} failed ({p.returncode}):\n"
                                 f"{p.stdout}\n{p.stderr}")
        return p


FAST_GROUPS = {
    "group.initial.rebalance.delay.ms": "0",
    "group.min.session.timeout.ms": "1000",
    "num.partitions": "1",
}


@pytest.fixture(scope="module")
def broker():
    b = Broker(FAST_GROUPS)
    b.start()
    try:
        yield b
    finally:
        b.stop()
        if not os.environ.get("SLUICE_KEEP_DATA"):
            shutil.rmtree(b.tmp, ignore_errors=True)
