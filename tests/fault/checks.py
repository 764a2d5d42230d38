"""The fault harness's checks, as pure functions over recorded histories (unit-tested with
fabricated histories in test_checks.py), plus a reader of Kafka v2 record-batch segment files.

Values are "PRODUCER:SEQ" strings (e.g. "p2:1841"): SEQ increases in send order per producer.
"""

from __future__ import annotations

import struct
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Ack:
    """One acknowledged delivery: the broker said `value` is at `partition`/`offset`."""
    value: str
    partition: int
    offset: int
    t: float = 0.0  # time.monotonic() of the delivery callback
    sent_t: float = 0.0  # time.monotonic() of the produce() call


def parse_value(value: str) -> tuple[str, int]:
    producer, _, seq = value.rpartition(":")
    return producer, int(seq)


# -- data checks ---------------------------------------------------------------------------------

def check_lost(acks: list[Ack], log: dict[int, list[tuple[int, str]]]) -> dict:
    """Every acknowledged value must be in the final log, at the offset it was acknowledged at.

    `log`: {partition: [(offset, value), ...]} as read back from the beginning.
    Returns {"lost": [values nowhere in the log], "moved": [(value, partition, acked offset,
    what is at that offset now)]}."""
    present: set[str] = set()
    at: dict[tuple[int, int], str] = {}
    for p, recs in log.items():
        for off, v in recs:
            present.add(v)
            at[(p, off)] = v
    lost, moved = [], []
    seen_lost: set[str] = set()
    for a in acks:
        if a.value not in present:
            if a.value not in seen_lost:
                seen_lost.add(a.value)
                lost.append(a.value)
        elif at.get((a.partition, a.offset)) != a.value:
            moved.append((a.value, a.partition, a.offset, at.get((a.partition, a.offset))))
    return {"lost": lost, "moved": moved}


def check_duplicates(log: dict[int, list[tuple[int, str]]], resent: set[str]) -> dict:
    """Values present more than once. With idempotence none may be, except values that failed
    once and were sent again (`resent`), which may legitimately be written twice.
    Returns {"duplicates": {value: count} (violations), "resent_duplicates": {value: count}}."""
    count: dict[str, int] = defaultdict(int)
    for recs in log.values():
        for _, v in recs:
            count[v] += 1
    dups = {v: c for v, c in count.items() if c > 1 and v not in resent}
    ok = {v: c for v, c in count.items() if c > 1 and v in resent}
    return {"duplicates": dups, "resent_duplicates": ok}


def check_order(log: dict[int, list[tuple[int, str]]], acked: set[str], resent: set[str]) -> list:
    """A producer's acknowledged values on one partition appear in send (sequence) order.
    Values that were re-sent are exempt (a re-send comes after later sequence numbers).
    Returns [(partition, producer, previous seq, offset, seq)] for each step backwards."""
    out = []
    for p in sorted(log):
        last: dict[str, int] = {}
        for off, v in sorted(log[p]):
            if v not in acked or v in resent:
                continue
            prod, seq = parse_value(v)
            if prod in last and seq <= last[prod]:
                out.append((p, prod, last[prod], off, seq))
            last[prod] = max(seq, last.get(prod, seq))
    return out


class CommitMonitor:
    """Feeds successive readings of a group's committed offsets; records every backward move.

    A partition missing from a reading (no commit yet, or the coordinator could not say) is
    not a move; a reading of an offset lower than the highest seen before is."""

    def __init__(self):
        self.highest: dict[tuple[str, int], int] = {}
        self.regressions: list[tuple[float, str, int, int, int]] = []  # (t, topic, p, was, now)
        self.readings = 0

    def observe(self, t: float, offsets: dict[tuple[str, int], int]) -> None:
        self.readings += 1
        for tp, off in offsets.items():
            if off is None or off < 0:
                continue
            prev = self.highest.get(tp)
            if prev is not None and off < prev:
                self.regressions.append((t, tp[0], tp[1], prev, off))
            if prev is None or off > prev:
                self.highest[tp] = off


# -- segment files -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Batch:
    base_offset: int
    last_offset: int
    leader_epoch: int
    crc: int

    def key(self) -> tuple[int, int, int, int]:
        return (self.base_offset, self.last_offset, self.leader_epoch, self.crc)


BATCH_HEADER = struct.Struct(">qiibIhi")  # base, length, epoch, magic, crc, attributes, lastOffsetDelta


def parse_segment(data: bytes) -> list[Batch]:
    """The record batches of one `.log` segment (v2 format: baseOffset i64, batchLength i32,
    partitionLeaderEpoch i32, magic i8, crc u32, attributes i16, lastOffsetDelta i32, ...).
    Stops at the first incomplete batch (a torn tail) or zero padding. Raises ValueError on a
    magic other than 2."""
    out: list[Batch] = []
    pos = 0
    while pos + BATCH_HEADER.size <= len(data):
        base, length, epoch, magic, crc, _attrs, last_delta = BATCH_HEADER.unpack_from(data, pos)
        if length <= 0:
            break
        end = pos + 12 + length
        if end > len(data):
            break
        if magic != 2:
            raise ValueError(f"record batch at byte {pos} has magic {magic}, not 2")
        out.append(Batch(base, base + last_delta, epoch, crc))
        pos = end
    return out


def read_partition_dir(d: Path) -> list[Batch]:
    """All batches of a partition directory's segments, in base-offset order of the files."""
    batches: list[Batch] = []
    for f in sorted(d.glob("*.log"), key=lambda f: int(f.stem) if f.stem.isdigit() else -1):
        batches.extend(parse_segment(f.read_bytes()))
    return batches


def find_partition_dir(data_dir: Path, topic: str, partition: int) -> Path | None:
    """`<data dir>/<topic>-<p>/`, or the first such directory below the data dir."""
    name = f"{topic}-{partition}"
    direct = data_dir / name
    if direct.is_dir():
        return direct
    for d in data_dir.rglob(name):
        if d.is_dir():
            return d
    return None


def compare_replicas(batches: dict[int, list[Batch]], high_watermark: int) -> list[str]:
    """Replicas agree below the high watermark: each node's sequence of (base offset, last
    offset, leader epoch, CRC) of the batches that start below `high_watermark` is the same.
    Returns human-readable differences (empty: they agree)."""
    seqs = {n: [b.key() for b in bs if b.base_offset < high_watermark] for n, bs in batches.items()}
    problems: list[str] = []
    if not seqs:
        return ["no replica found"]
    ref_node = min(seqs)
    ref = seqs[ref_node]
    for n, seq in sorted(seqs.items()):
        if n == ref_node:
            continue
        if seq == ref:
            continue
        k = next((k for k, (a, b) in enumerate(zip(ref, seq)) if a != b), min(len(ref), len(seq)))
        a = ref[k] if k < len(ref) else None
        b = seq[k] if k < len(seq) else None
        problems.append(f"node {n} differs from node {ref_node} at batch #{k}: "
                        f"{b} vs {a} (batches {len(seq)} vs {len(ref)})")
    for n, seq in sorted(seqs.items()):
        covered = seq[-1][1] + 1 if seq else 0
        if high_watermark > 0 and covered < high_watermark:
            problems.append(f"node {n} holds offsets up to {covered}, below the high watermark "
                            f"{high_watermark}")
    return problems


def percentile(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    k = min(len(s) - 1, max(0, int(round(q * (len(s) - 1)))))
    return s[k]
