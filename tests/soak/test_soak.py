"""pytest entry point for the bad-input soak test: `.venv/bin/python -m pytest tests/soak`."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import soak  # noqa: E402


@pytest.mark.soak
def test_bad_input_soak():
    frames = int(os.environ.get("SOAK_FRAMES", "10000"))
    s = soak.run(frames_per_round=frames)
    for r in s["rounds"]:
        print(f"round {r['round']}: {r['frames']} frames, {r['answered']} answered, "
              f"{r['closed']} closed, {r['hung']} hung, {r['seconds']}s, rss {r['rss_kb']} kB")
    assert s["ok"], s.get("failure")
    # The answered+closed+hung split must account for every frame sent.
    for r in s["rounds"]:
        assert r["answered"] + r["closed"] + r["hung"] == r["frames"] == frames
