"""Unit tests of the harness's checks with fabricated histories: each check must pass on a
clean history and fail on the violation it exists for. No cluster needed."""

from __future__ import annotations

import struct
import sys
import zlib
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from checks import (Ack, Batch, CommitMonitor, check_duplicates, check_lost,  # noqa: E402
                    check_order, compare_replicas, find_partition_dir, parse_segment, percentile,
                    read_partition_dir)


def clean_history():
    """Two producers, two partitions, every value acknowledged where it is."""
    log = {
        0: [(0, "p1:1"), (1, "p2:1"), (2, "p1:3"), (3, "p2:2")],
        1: [(0, "p1:2"), (1, "p2:3"), (2, "p1:4")],
    }
    acks = [Ack(v, p, off) for p, recs in log.items() for off, v in recs]
    return acks, log


# -- lost ----------------------------------------------------------------------------------------

def test_lost_clean():
    acks, log = clean_history()
    assert check_lost(acks, log) == {"lost": [], "moved": []}


def test_lost_value_detected():
    acks, log = clean_history()
    log[1] = [r for r in log[1] if r[1] != "p2:3"]  # truncated away after being acknowledged
    res = check_lost(acks, log)
    assert res["lost"] == ["p2:3"]


def test_value_at_other_offset_detected():
    acks, log = clean_history()
    # p1:4 is in the log, but not at offset 2 where it was acknowledged
    log[1] = [(0, "p1:2"), (1, "p2:3"), (2, "p9:1"), (3, "p1:4")]
    res = check_lost(acks, log)
    assert res["lost"] == []
    assert res["moved"] == [("p1:4", 1, 2, "p9:1")]


# -- duplicates ----------------------------------------------------------------------------------

def test_duplicates_clean():
    _, log = clean_history()
    assert check_duplicates(log, set())["duplicates"] == {}


def test_duplicate_detected():
    _, log = clean_history()
    log[0].append((4, "p1:3"))
    assert check_duplicates(log, set())["duplicates"] == {"p1:3": 2}


def test_duplicate_across_partitions_detected():
    _, log = clean_history()
    log[1].append((3, "p2:1"))
    assert check_duplicates(log, set())["duplicates"] == {"p2:1": 2}


def test_duplicate_of_resent_value_allowed():
    _, log = clean_history()
    log[0].append((4, "p1:3"))
    res = check_duplicates(log, {"p1:3"})
    assert res["duplicates"] == {}
    assert res["resent_duplicates"] == {"p1:3": 2}


# -- order ---------------------------------------------------------------------------------------

def test_order_clean():
    acks, log = clean_history()
    assert check_order(log, {a.value for a in acks}, set()) == []


def test_reordered_detected():
    acks, log = clean_history()
    # p1:3 before p1:1 on partition 0
    log[0] = [(0, "p1:3"), (1, "p2:1"), (2, "p1:1"), (3, "p2:2")]
    acks = [Ack(v, 0, off) for off, v in log[0]] + [Ack(v, 1, off) for off, v in log[1]]
    viol = check_order(log, {a.value for a in acks}, set())
    assert viol == [(0, "p1", 3, 2, 1)]


def test_order_of_resent_value_exempt():
    acks, log = clean_history()
    log[0] = [(0, "p1:3"), (1, "p2:1"), (2, "p1:1"), (3, "p2:2")]
    assert check_order(log, {a.value for a in acks}, {"p1:1"}) == []


def test_order_unordered_input_sorted_by_offset():
    log = {0: [(2, "p1:3"), (0, "p1:1"), (1, "p1:2")]}
    assert check_order(log, {"p1:1", "p1:2", "p1:3"}, set()) == []


# -- committed offsets ---------------------------------------------------------------------------

def test_commits_forward_only():
    m = CommitMonitor()
    m.observe(1.0, {("t", 0): 5, ("t", 1): 0})
    m.observe(2.0, {("t", 0): 5, ("t", 1): 7})
    m.observe(3.0, {("t", 0): 9})           # p1 missing: not a move
    m.observe(4.0, {("t", 0): -1001})        # no offset: not a move
    assert m.regressions == []
    assert m.highest == {("t", 0): 9, ("t", 1): 7}


def test_commit_going_backwards_detected():
    m = CommitMonitor()
    m.observe(1.0, {("t", 0): 5})
    m.observe(2.0, {("t", 0): 10})
    m.observe(3.0, {("t", 0): 8})
    m.observe(4.0, {("t", 0): 9})
    assert m.regressions == [(3.0, "t", 0, 10, 8), (4.0, "t", 0, 10, 9)]


# -- segment files and replica agreement ---------------------------------------------------------

def make_batch(base: int, count: int, epoch: int, payload: bytes = b"x") -> bytes:
    """A v2 record batch (header fields the parser reads; records are opaque bytes)."""
    attrs, last_delta = 0, count - 1
    after_crc = (struct.pack(">hiqqqhii", attrs, last_delta, 0, 0, -1, -1, -1, count) + payload)
    crc = zlib.crc32(after_crc) & 0xFFFFFFFF  # any 32-bit value works for the parser
    body = struct.pack(">ibI", epoch, 2, crc) + after_crc
    return struct.pack(">qi", base, len(body)) + body


def test_parse_segment_reads_batches_and_stops_at_torn_tail():
    data = make_batch(0, 3, 1) + make_batch(3, 2, 1) + make_batch(5, 1, 2)
    bs = parse_segment(data + make_batch(6, 4, 2)[:30])  # torn last batch
    assert [(b.base_offset, b.last_offset, b.leader_epoch) for b in bs] == [(0, 2, 1), (3, 4, 1), (5, 5, 2)]
    assert parse_segment(data + b"\0" * 64) == bs  # zero padding ends the log


def test_parse_segment_rejects_old_magic():
    bad = bytearray(make_batch(0, 1, 0))
    bad[16] = 1
    with pytest.raises(ValueError):
        parse_segment(bytes(bad))


def test_read_partition_dir_orders_segments(tmp_path: Path):
    d = tmp_path / "data" / "t-0"
    d.mkdir(parents=True)
    (d / "00000000000000000000.log").write_bytes(make_batch(0, 2, 0) + make_batch(2, 2, 0))
    (d / "00000000000000000004.log").write_bytes(make_batch(4, 1, 1))
    (d / "00000000000000000000.index").write_bytes(b"\0" * 100)
    assert find_partition_dir(tmp_path / "data", "t", 0) == d
    assert find_partition_dir(tmp_path, "t", 0) == d  # found below the data dir too
    assert find_partition_dir(tmp_path, "t", 1) is None
    assert [b.base_offset for b in read_partition_dir(d)] == [0, 2, 4]


def replicas(n=3):
    common = [Batch(0, 2, 0, 111), Batch(3, 5, 0, 222), Batch(6, 6, 1, 333)]
    return {i: list(common) for i in range(1, n + 1)}


def test_replicas_agree():
    assert compare_replicas(replicas(), 7) == []


def test_replicas_agree_below_hw_only():
    r = replicas()
    r[2].append(Batch(7, 9, 1, 444))  # above the high watermark: not compared
    r[3].append(Batch(7, 8, 2, 555))
    assert compare_replicas(r, 7) == []


def test_diverging_crc_detected():
    r = replicas()
    r[3][1] = Batch(3, 5, 0, 999)
    probs = compare_replicas(r, 7)
    assert len(probs) == 1 and "node 3" in probs[0] and "#1" in probs[0]


def test_diverging_epoch_detected():
    r = replicas()
    r[2][2] = Batch(6, 6, 2, 333)
    assert any("node 2" in p for p in compare_replicas(r, 7))


def test_diverging_batch_boundaries_detected():
    r = replicas()
    r[2][1:2] = [Batch(3, 4, 0, 222), Batch(5, 5, 0, 223)]
    assert any("node 2" in p for p in compare_replicas(r, 7))


def test_missing_batches_below_hw_detected():
    r = replicas()
    r[3] = r[3][:2]  # replica 3 lacks offset 6 although the high watermark is 7
    probs = compare_replicas(r, 7)
    assert any("node 3" in p for p in probs)


def test_percentile():
    assert percentile([], 0.5) is None
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([1.0, 5.0], 1.0) == 5.0
