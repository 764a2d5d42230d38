"""Fixtures for Sluice's real-client compatibility suite.

Broker selection:
- KAFKA_BOOTSTRAP=host:port  use that external broker (e.g. scripts/kafka-reference). Tests
  that restart or kill the broker are skipped, unless KAFKA_REF_DIR names the directory the
  reference Kafka was started on (scripts/kafka-reference start PORT DIR): then the restart
  tests stop/kill and start that Kafka through scripts/kafka-reference.
- otherwise start the Sluice binary from SLUICE_BIN (default target/release/sluice, relative
  to the repository root; CARGO_TARGET_DIR is honoured) as
  `sluice broker --listen 127.0.0.1:PORT --advertised 127.0.0.1:PORT --data-dir TMP
  --http off --node-id 1` and wait for its `listening on` log line.

Fixtures: `broker` (one per test module, shared by its tests: use unique topic names),
`fresh_broker` (one per test, for tests that restart it), `topic` (a fresh name).
"""

from __future__ import annotations

import gc
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from helpers import free_port, wait_port

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 20.0


def sluice_bin() -> Path:
    env = os.environ.get("SLUICE_BIN")
    if env:
        p = Path(env)
        return p if p.is_absolute() else REPO_ROOT / p
    target = os.environ.get("CARGO_TARGET_DIR")
    base = Path(target) if target else REPO_ROOT / "target"
    if not base.is_absolute():
        base = REPO_ROOT / base
    return base / "release" / "sluice"


class Broker:
    """A broker under test: a Sluice child process, or an external Kafka."""

    def __init__(self, *, extra_sets: dict[str, str] | None = None):
        self.external = os.environ.get("KAFKA_BOOTSTRAP")
        self.ref_dir = os.environ.get("KAFKA_REF_DIR")
        self.extra_sets = dict(extra_sets or {})
        self.proc: subprocess.Popen | None = None
        self._tmp: str | None = None
        self.data_dir: Path | None = None
        self.log_path: Path | None = None
        self._log_file = None
        self.starts = 0
        if self.external:
            self.bootstrap = self.external
            self.port = int(self.external.rsplit(":", 1)[1])
        else:
            self._tmp = tempfile.mkdtemp(prefix="sluice-clients-")
            self.data_dir = Path(self._tmp) / "data"
            self.port = free_port()
            self.bootstrap = f"127.0.0.1:{self.port}"

    # -- control ---------------------------------------------------------------------------
    @property
    def controllable(self) -> bool:
        return not self.external or bool(self.ref_dir)

    def command(self) -> list[str]:
        cmd = [
            str(sluice_bin()),
            "broker",
            "--listen", self.bootstrap,
            "--advertised", self.bootstrap,
            "--data-dir", str(self.data_dir),
            "--http", "off",
            "--node-id", "1",
        ]
        for k, v in self.extra_sets.items():
            cmd += ["--set", f"{k}={v}"]
        return cmd

    def start(self) -> None:
        if self.external:
            if self.ref_dir and subprocess.run(
                [str(REPO_ROOT / "scripts" / "kafka-reference"), "status", self.ref_dir]
            ).returncode != 0:
                self._reference("start", str(self.port), self.ref_dir)
                wait_port(self.port, 60)
            return
        binary = sluice_bin()
        if not binary.exists():
            pytest.fail(
                f"Sluice binary not found at {binary}; build it (cargo build --release) "
                "or set SLUICE_BIN, or point KAFKA_BOOTSTRAP at a running broker"
            )
        self.starts += 1
        self.log_path = Path(self._tmp) / f"broker-{self.starts}.log"
        self._log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            self.command(),
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "info")},
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if "listening on" in self.log():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        code = self.proc.poll()
        log = self.log()
        self._terminate(signal.SIGKILL)
        why = f"exited with {code}" if code is not None else f"no 'listening on' in {START_TIMEOUT_S}s"
        pytest.fail(f"sluice broker {why}\ncommand: {' '.join(self.command())}\n--- log ---\n{log[-6000:]}")

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM and wait; returns the exit code (SIGKILL after `timeout`)."""
        if self.external:
            if self.ref_dir:
                self._reference("stop", self.ref_dir)
            return 0
        return self._terminate(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL: no chance to flush or close anything."""
        if self.external:
            if not self.ref_dir:
                pytest.skip("cannot kill an external broker")
            pid = int((Path(self.ref_dir) / "kafka.pid").read_text().strip())
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            (Path(self.ref_dir) / "kafka.pid").unlink(missing_ok=True)
            return
        self._terminate(signal.SIGKILL)

    def restart(self) -> int | None:
        """Graceful stop (SIGTERM) and start again on the same data dir and port."""
        code = self.stop()
        self.start()
        return code

    def cleanup(self) -> None:
        if not self.external:
            self._terminate(signal.SIGKILL)
            if self._tmp and not os.environ.get("SLUICE_KEEP_DATA"):
                shutil.rmtree(self._tmp, ignore_errors=True)

    # -- helpers ---------------------------------------------------------------------------
    def log(self) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def _terminate(self, sig: int, timeout: float = 20.0) -> int | None:
        proc, self.proc = self.proc, None
        code = None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(sig)
                try:
                    code = proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
                    code = "hung: needed SIGKILL"
            else:
                code = proc.returncode
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return code

    def _reference(self, *args: str) -> None:
        subprocess.run(
            [str(REPO_ROOT / "scripts" / "kafka-reference"), *args],
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=180,
        )


def _broker_fixture(request, **kw):
    b = Broker(**kw)
    try:
        b.start()
        yield b
    finally:
        # Let client handles still reachable only through cycles (librdkafka admin futures)
        # go before their broker does, so they do not log reconnect attempts later on.
        gc.collect()
        b.cleanup()


@pytest.fixture(scope="module")
def broker(request):
    """One broker shared by all tests of a module."""
    yield from _broker_fixture(request)


@pytest.fixture
def fresh_broker(request):
    """A broker of its own for a test that stops/kills it."""
    if os.environ.get("KAFKA_BOOTSTRAP") and not os.environ.get("KAFKA_REF_DIR"):
        pytest.skip("restart tests need a broker this suite controls (unset KAFKA_BOOTSTRAP or set KAFKA_REF_DIR)")
    yield from _broker_fixture(request)


@pytest.fixture
def topic(request) -> str:
    """A topic name unique to this test run."""
    base = request.node.name.split("[")[0].removeprefix("test_").replace("_", "-")[:30]
    return f"t-{base}-{uuid.uuid4().hex[:10]}"




@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the tail of the Sluice log to the report of a failing test."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when != "call" or not rep.failed:
        return
    for name in ("broker", "fresh_broker"):
        b = item.funcargs.get(name) if hasattr(item, "funcargs") else None
        if isinstance(b, Broker) and not b.external:
            rep.sections.append((f"sluice log tail ({b.bootstrap})", b.log()[-4000:]))


@pytest.fixture(autouse=True)
def _broker_survives(request):
    """Fail (at teardown) the test during which a shared Sluice broker died, then revive it
    so the rest of the module can still run."""
    yield
    if "broker" not in request.fixturenames:
        return
    b = request.getfixturevalue("broker")
    if b.external or b.proc is None or b.proc.poll() is None:
        return
    code = b.proc.returncode
    log = b.log()[-4000:]
    b._terminate(signal.SIGKILL)
    b.start()
    pytest.fail(f"sluice broker exited with {code} during this test (restarted for the next)\n{log}")
