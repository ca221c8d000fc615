#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Seed corpus for tests/fuzz/fuzz_stream.c, generated at build time (no
binary seeds in git): valid and nearly valid streams against the fuzzer's
guest_mem (1 MiB at 0, 256 KiB at 4 GiB), in raw and framed form."""
import os
import struct
import sys

RAM_SIZE = (1 << 20) + (256 << 10)
HIGH = 4 << 30


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def record(rtype, payload):
    hdr = struct.pack("<IIQ", rtype, 0, len(payload))
    return hdr + payload + struct.pack("<I", crc32c(hdr + payload))


def ram(pages):
    ents = b"".join(struct.pack("<Q", g | (1 if d is None else 0)) for g, d in pages)
    return struct.pack("<II", len(pages), 0) + ents + b"".join(d for _, d in pages if d)


def stream(batches):
    """[(type, payload)] of a whole stream with a correct end record."""
    recs = [(1, b"MINIVMM\n" + struct.pack("<HHIQQQQ", 1, 0, 0, 0, 0, 0, 0)),
            (2, b"machine-fdt")]
    present = zero = 0
    for pages in batches:
        present += sum(1 for _, d in pages if d)
        zero += sum(1 for _, d in pages if d is None)
        recs.append((3, ram(pages)))
        recs.append((9, b""))               # sync: answered once applied
    recs.append((5, b"state-fdt"))
    recs.append((6, struct.pack("<QQQQ", len(recs), present, zero, RAM_SIZE)))
    recs.append((7, b""))
    return recs


def raw(recs):
    return b"\0" + b"".join(record(t, p) for t, p in recs)


def framed(recs):
    return b"\1" + b"".join(struct.pack("<BH", t, len(p)) + p for t, p in recs)


def main(out):
    os.makedirs(out, exist_ok=True)
    page = bytes(range(256)) * 16
    seeds = {
        "empty-ram": stream([]),
        "zero-only": stream([[(0x1000, None), (HIGH, None)]]),
        "data": stream([[(0x2000, page), (HIGH + 0x1000, page), (0x2000, None)]]),
        "resend": stream([[(0x3000, page)], [(0x3000, None), (0x3000, page)]]),
    }
    for name, recs in seeds.items():
        for kind, fn in (("raw", raw), ("framed", framed)):
            with open(os.path.join(out, f"{kind}-{name}"), "wb") as f:
                f.write(fn(recs))


if __name__ == "__main__":
    main(sys.argv[1])
