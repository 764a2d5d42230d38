"""Fixtures for the cluster suite.

`cluster`: one 3-node cluster per test module, chosen by CLUSTER_TARGET=sluice (default: the
binary in SLUICE_BIN, see cluster.py) or CLUSTER_TARGET=kafka (reference Apache Kafka through
scripts/kafka-reference). When a test fails, the last 80 lines of every node's log are attached
to its report.
"""

from __future__ import annotations

import gc
import os
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster import Cluster, ClusterError, make_cluster  # noqa: E402

LOG_TAIL_LINES = 80


def cluster_target() -> str:
    return (os.environ.get("CLUSTER_TARGET") or "sluice").lower()


@pytest.fixture(scope="module")
def cluster():
    c = None
    try:
        c = make_cluster(3)
    except ClusterError as e:
        why = str(e)
    if c is None:
        pytest.fail(why, pytrace=False)
    print(f"\n{c.target} cluster of {c.n} ready in {c.start_seconds:.1f}s: {c.bootstrap}")
    try:
        yield c
    finally:
        # Let client handles reachable only through cycles go before the brokers do.
        gc.collect()
        c.close()


@pytest.fixture
def topic(request) -> str:
    base = request.node.name.split("[")[0].removeprefix("test_").replace("_", "-")[:30]
    return f"t-{base}-{uuid.uuid4().hex[:8]}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failing test, attach (and so print) the tail of every node's log."""
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed or rep.when not in ("setup", "call"):
        return
    c = item.funcargs.get("cluster") if hasattr(item, "funcargs") else None
    if isinstance(c, Cluster):
        try:
            rep.sections.append((f"{c.target} cluster: last {LOG_TAIL_LINES} lines of each node's log",
                                 c.dump_logs(LOG_TAIL_LINES)))
        except Exception as e:  # noqa: BLE001 - never hide the real failure
            rep.sections.append(("cluster logs", f"could not read the logs: {e!r}"))


def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.cluster)
