"""Quick CI run of the SIGKILL crash harness: 3 cycles in each flush mode.

Needs the broker binary ($SLUICE_BIN, default target/release/sluice) and confluent-kafka.
The full run is `crash_harness.py --cycles 20 [--flush-messages-1]`.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import crash_harness  # noqa: E402


@pytest.fixture(autouse=True)
def _need_binary():
    if not crash_harness.sluice_bin().exists():
        pytest.skip(f"broker binary {crash_harness.sluice_bin()} not built (set SLUICE_BIN)")


@pytest.mark.parametrize("flush_one", [False, True], ids=["os-flush", "flush-messages-1"])
def test_sigkill_loses_no_acknowledged_message(flush_one: bool) -> None:
    seed = random.randrange(1 << 30)
    try:
        crash_harness.run(cycles=3, flush_one=flush_one, seed=seed, keep=False, quiet=True)
    except crash_harness.Violation as v:
        pytest.fail(f"seed {seed}: {v}")
