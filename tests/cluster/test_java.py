"""The Java client (kafka-clients, the compat suite's program in tests/compat/java) against a
3-node cluster, bootstrapped from one node: produce/consume, the AdminClient, a consumer group
with two members and a restart, group administration, and error cases. Builds the program the
way `scripts/compat` does (Maven + javac; cached after the first run). Runs against Sluice and
against the reference Kafka alike.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ["produce_consume", "admin", "group", "admin_groups", "errors"]


def java_command() -> list[str]:
    loader = importlib.machinery.SourceFileLoader("sluice_compat", str(ROOT / "scripts" / "compat"))
    spec = importlib.util.spec_from_loader("sluice_compat", loader)
    compat = importlib.util.module_from_spec(spec)
    loader.exec_module(compat)
    return compat.setup_java()


@pytest.mark.skipif(shutil.which("java") is None and shutil.which("apt-get") is None,
                    reason="no Java and no way to install it")
def test_java_client_against_the_cluster(cluster):
    cmd = java_command()
    bs = cluster.node(cluster.ids()[1]).bootstrap
    p = subprocess.run(cmd + [bs] + SCENARIOS, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=600)
    lines = [l for l in p.stdout.splitlines() if l.startswith(("PASS", "FAIL", "VERSION"))]
    print("\n" + "\n".join(lines))
    passed = {l.split()[1] for l in lines if l.startswith("PASS")}
    assert p.returncode == 0 and passed == set(SCENARIOS), p.stdout[-3000:]
