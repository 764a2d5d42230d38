"""scripts/compat counts a client program's exit status, not only what it printed.

    python -m pytest tests/compat      (a few seconds; no broker, no clients)

Fake client programs (python -c) print PASS/FAIL lines and then exit, crash, or hang; the
scenario results that scripts/compat's run_client() derives from them are checked.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_compat():
    loader = importlib.machinery.SourceFileLoader("sluice_compat_script", str(ROOT / "scripts" / "compat"))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


@pytest.fixture()
def compat(tmp_path, monkeypatch):
    mod = load_compat()
    monkeypatch.setattr(mod, "RESULTS", tmp_path)
    monkeypatch.setenv("COMPAT_CLIENT_TIMEOUT_S", "3")
    return mod


def run(compat, body: str, scenarios=("a", "b")) -> dict:
    # run_client appends BOOTSTRAP and the scenario names to the command, as for a real client.
    prog = "import os, sys, time, signal, subprocess\n" + body
    return compat.run_client("fake", [sys.executable, "-c", prog], "127.0.0.1:1", list(scenarios), "test")


def statuses(res: dict) -> dict:
    return {s: v["status"] for s, v in res["scenarios"].items()}


def test_all_pass_exit_0(compat):
    res = run(compat, "print('VERSION fake 1'); print('PASS a ok'); print('PASS b ok'); sys.exit(0)")
    assert statuses(res) == {"a": "PASS", "b": "PASS"}
    assert res["rc"] == 0 and not res["timed_out"] and res["exit_problem"] == ""
    assert res["version"] == "1"


def test_one_fail_exit_1_keeps_the_other_pass(compat):
    res = run(compat, "print('PASS a ok'); print('FAIL b broke'); sys.exit(1)")
    assert statuses(res) == {"a": "PASS", "b": "FAIL"}
    assert res["exit_problem"] == ""


def test_pass_then_nonzero_exit_fails_every_scenario(compat):
    res = run(compat, "print('PASS a ok'); print('PASS b ok'); sys.exit(3)")
    assert statuses(res) == {"a": "FAIL", "b": "FAIL"}
    assert "printed PASS but client exited 3" in res["scenarios"]["a"]["detail"]
    assert "(printed: ok)" in res["scenarios"]["a"]["detail"]


def test_pass_then_uncaught_exception_fails(compat):
    # An uncaught exception exits 1 (Python, Java) without a FAIL line.
    res = run(compat, "print('PASS a ok', flush=True); raise RuntimeError('boom')", scenarios=("a",))
    assert statuses(res) == {"a": "FAIL"}
    assert "exited 1 without printing FAIL" in res["scenarios"]["a"]["detail"]


def test_pass_then_killed_by_signal_fails(compat):
    res = run(compat, "print('PASS a ok', flush=True); os.kill(os.getpid(), signal.SIGKILL)", scenarios=("a",))
    assert statuses(res) == {"a": "FAIL"}
    assert "signal 9" in res["scenarios"]["a"]["detail"]


def test_pass_then_hang_times_out_and_kills_children(compat, tmp_path):
    # The client prints PASS, starts a child that holds stdout open (as the Java program's CLI
    # and Connect child JVMs do), and hangs: the timeout must fail the scenario, come back in
    # about the timeout, and kill the child too.
    pidfile = tmp_path / "child.pid"
    body = (f"c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            f"open({str(pidfile)!r}, 'w').write(str(c.pid))\n"
            "print('PASS a ok', flush=True)\n"
            "time.sleep(60)\n")
    t0 = time.time()
    res = run(compat, body, scenarios=("a", "b"))
    assert time.time() - t0 < 20
    assert res["timed_out"]
    assert statuses(res) == {"a": "FAIL", "b": "FAIL"}
    assert "timed out after 3s" in res["scenarios"]["a"]["detail"]
    assert "timed out after 3s" in res["scenarios"]["b"]["detail"]
    child = int(pidfile.read_text())
    deadline = time.time() + 5
    while time.time() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        # a killed child not yet reaped by its (dead) parent's reaper is a zombie: gone enough
        try:
            if Path(f"/proc/{child}/stat").read_text().split()[2] == "Z":
                break
        except OSError:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the client's child {child} survived the timeout")


def test_missing_scenario_fails_but_exit_0_keeps_printed_pass(compat):
    res = run(compat, "print('PASS a ok'); sys.exit(0)")
    assert statuses(res) == {"a": "PASS", "b": "FAIL"}
    assert "no result" in res["scenarios"]["b"]["detail"]


def test_matrix_reports_the_exit_problem(compat, capsys):
    res = run(compat, "print('PASS a ok'); print('PASS b ok'); sys.exit(3)")
    failed = compat.print_matrix({"broker_version": "x", "date": "d", "clients": {"fake": res}})
    out = capsys.readouterr().out
    assert failed == 2
    assert "fake: client exited 3 without printing FAIL" in out
    assert "0 passed, 2 failed" in out
