#!/usr/bin/env python3
"""Turns the recorded frames in tests/soak/frames/ into seed inputs for the fuzz corpora.

    python3 tests/soak/make_seeds.py

Writes fuzz/corpus/<target>/seed-*: request_header (raw frames), request_body (api index,
version offset, flags, body), frame (max byte + length-prefixed frames), record_batch and
record_batch-like recovery segments (the record batches found inside Produce frames).
"""

import hashlib
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")

# Order of sluice_protocol::api::SUPPORTED (only used to pick byte 0 of request_body seeds;
# if the table changes the seeds just map to other APIs, which is harmless).
SUPPORTED = [0, 1, 2, 3, 18, 19, 20, 22, 23, 32, 37, 60, 10, 11, 14, 12, 13, 8, 9, 16, 15, 42, 47, 33, 44]
# (api key, min version) and the first flexible version (request header v2) per API.
MIN_VERSION = {0: 3, 1: 4}
FLEXIBLE = {0: 9, 1: 12, 2: 6, 3: 9, 18: 3, 19: 5, 20: 4, 22: 2, 23: 4, 32: 4, 37: 2, 60: 0,
            10: 3, 11: 6, 14: 4, 12: 4, 13: 4, 8: 8, 9: 6, 16: 3, 15: 5, 42: 2, 47: 0, 33: 2, 44: 1}

_CRC_TABLE = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    _CRC_TABLE.append(c)


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def frames():
    d = os.path.join(HERE, "frames")
    for name in sorted(os.listdir(d)):
        if name.endswith(".bin"):
            with open(os.path.join(d, name), "rb") as f:
                yield name, f.read()


def header_len(fr):
    key, ver = struct.unpack(">hh", fr[:4])
    n = 8
    (cid_len,) = struct.unpack(">h", fr[8:10])
    n += 2 + max(cid_len, 0)
    if ver >= FLEXIBLE.get(key, 99) and not (key == 18 and ver < 3):
        n += 1  # empty tagged fields
    return n


def batches_in(buf):
    """Record batches (magic 2, valid CRC) found anywhere in buf."""
    out, i = [], 0
    while i + 61 <= len(buf):
        if buf[i + 16] == 2:
            (length,) = struct.unpack(">i", buf[i + 8 : i + 12])
            end = i + 12 + length
            if 49 <= length and end <= len(buf):
                (crc,) = struct.unpack(">I", buf[i + 17 : i + 21])
                if crc32c(buf[i + 21 : end]) == crc:
                    out.append(buf[i:end])
                    i = end
                    continue
        i += 1
    return out


def write(target, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + hashlib.sha1(data).hexdigest()[:16]), "wb") as f:
        f.write(data)


def main():
    all_batches = []
    for name, fr in frames():
        key, ver = struct.unpack(">hh", fr[:4])
        write("request_header", fr)
        write("frame", bytes([255]) + struct.pack(">i", len(fr)) + fr)
        if key in SUPPORTED:
            idx = SUPPORTED.index(key)
            write("request_body", bytes([idx, ver - MIN_VERSION.get(key, 0), 1]) + fr[header_len(fr):])
        if key == 0:
            all_batches += batches_in(fr)
    offset = 0
    segment = b""
    for b in all_batches:
        write("record_batch", b"\x00" + b)
        (delta,) = struct.unpack(">i", b[23:27])
        patched = struct.pack(">q", offset) + b[8:]
        segment += patched
        offset += delta + 1
    if segment:
        # flags 0: no clean marker, no extra files; then one flag with recovery point + clean.
        write("recovery", b"\x00" + segment)
        write("recovery", bytes([1 | 2]) + struct.pack(">H", offset // 2) + segment)
        write("recovery", bytes([8]) + segment[: len(segment) - 7])
    print(f"seeds written; {len(all_batches)} record batches, segment of {len(segment)} bytes")


if __name__ == "__main__":
    main()
