"""Fixtures for the log-lifecycle tests (compaction, retention, DeleteRecords, topic configs).

The broker is the client suite's `Broker` (tests/clients/conftest.py, imported, not copied:
binary from SLUICE_BIN, default target/release/sluice, CARGO_TARGET_DIR honoured; `.restart()`
keeps the data dir and port), started with fast maintenance loops so retention and the cleaner
act within a fraction of a second:

    --set log.retention.check.interval.ms=200 --set log.cleaner.backoff.ms=200
    --set log.cleaner.min.compaction.lag.ms=0   (the default, but as a static broker config)

These tests rely on those settings, so KAFKA_BOOTSTRAP is ignored: they always start Sluice.

Fixtures: `broker` (one per module; use unique topic names), `fresh_broker` (one per test, for
tests that restart it), `topic` (a fresh name).
"""

from __future__ import annotations

import gc
import importlib.util
import os
import signal
import sys
import uuid
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CLIENTS = REPO_ROOT / "tests" / "clients"
sys.path.insert(0, str(CLIENTS))

_spec = importlib.util.spec_from_file_location("sluice_clients_conftest", CLIENTS / "conftest.py")
_clients = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_clients)
ClientBroker = _clients.Broker

FAST_LIFECYCLE = {
    "log.retention.check.interval.ms": "200",
    "log.cleaner.backoff.ms": "200",
    # Kafka's default, set explicitly: topics then report min.compaction.lag.ms with source
    # STATIC_BROKER_CONFIG (test_configs checks the sources of broker-level synonyms).
    "log.cleaner.min.compaction.lag.ms": "0",
}


def _new_broker() -> ClientBroker:
    saved = os.environ.pop("KAFKA_BOOTSTRAP", None)  # always a Sluice child process
    try:
        return ClientBroker(extra_sets=FAST_LIFECYCLE)
    finally:
        if saved is not None:
            os.environ["KAFKA_BOOTSTRAP"] = saved


def _broker_fixture():
    b = _new_broker()
    try:
        b.start()
        unknown = [line for line in b.log().splitlines() if "unknown broker config" in line]
        if unknown:
            # An older binary ignores the fast-loop settings and every wait here times out.
            pytest.fail(f"{_clients.sluice_bin()} ignores settings these tests need (rebuild it): {unknown}")
        yield b
    finally:
        gc.collect()  # librdkafka handles reachable only through cycles go before the broker
        b.cleanup()


@pytest.fixture(scope="module")
def broker():
    """One broker shared by all tests of a module."""
    yield from _broker_fixture()


@pytest.fixture
def fresh_broker():
    """A broker of its own, for a test that restarts it."""
    yield from _broker_fixture()


@pytest.fixture
def topic(request) -> str:
    """A topic name unique to this test run."""
    base = request.node.name.split("[")[0].removeprefix("test_").replace("_", "-")[:30]
    return f"lc-{base}-{uuid.uuid4().hex[:10]}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the tail of the Sluice log to the report of a failing test."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when != "call" or not rep.failed:
        return
    for name in ("broker", "fresh_broker"):
        b = item.funcargs.get(name) if hasattr(item, "funcargs") else None
        if isinstance(b, ClientBroker):
            rep.sections.append((f"sluice log tail ({b.bootstrap})", b.log()[-4000:]))


@pytest.fixture(autouse=True)
def _broker_survives(request):
    """Fail (at teardown) the test during which the shared broker died, then revive it."""
    yield
    if "broker" not in request.fixturenames:
        return
    b = request.getfixturevalue("broker")
    if b.proc is None or b.proc.poll() is None:
        return
    code = b.proc.returncode
    log = b.log()[-4000:]
    b._terminate(signal.SIGKILL)
    b.start()
    pytest.fail(f"sluice broker exited with {code} during this test (restarted for the next)\n{log}")
