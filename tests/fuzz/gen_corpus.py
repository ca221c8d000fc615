#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Seeds of the virtqueue, snapshot and state fuzz targets, in the input
formats their files describe (tests/fuzz/fuzz_{virtqueue,snapshot,state}.c).
Run by hand when a format changes; the output is checked in:

    tests/fuzz/gen_corpus.py virtqueue tests/fuzz/corpus/virtqueue
    tests/fuzz/gen_corpus.py snapshot  tests/fuzz/corpus/snapshot
    tests/fuzz/gen_corpus.py state     tests/fuzz/corpus/state

The state seeds are the device-state records of the snapshots in
tests/compat (every format version), behind the target's settings and form
bytes, as they are and (1.3) as lists of nodes and properties. Regression
inputs (regress-*) are not generated here: they stay as they were found."""
import lzma
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_seeds import crc32c, record  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write(out, name, data):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)


# ---- virtqueue -------------------------------------------------------------

A_DESC, A_AVAIL, A_USED, A_IND0, A_IND1, A_DATA = 0x10000, 0x20000, 0x30000, 0x40000, 0x50000, 0x60000
AREAS = {"data": 0, "desc": 1, "ind0": 2, "ind1": 3, "used": 4, "avail": 5}
NEXT, WRITE, INDIRECT = 1, 2, 4


def cdesc(area, off, length, flags=0, nxt=0):
    """A compact descriptor: `area` names a base (or ("special", k, off))."""
    if area == "special":
        sel, ob = 0xE0 | off[0], off[1] >> 2
    elif area == "end":                   # RAM0 - off
        sel, ob = 0xC0 | (off >> 2) >> 8, (off >> 2) & 0xFF
    else:
        assert off % 4 == 0 and off < 0x20000
        sel, ob = AREAS[area] << 5 | (off >> 2) >> 8, (off >> 2) & 0xFF
    if length < 0x8000:
        code = length
    else:                                 # 2^k exactly: (0xffffffff >> (32 - k)) + 1
        k = length.bit_length() - 1
        assert length == 1 << k
        code = 0x8000 | 0x20 | (32 - k)
    return struct.pack("<BBHBB", sel, ob, code, flags, nxt)


def rdesc(addr, length, flags=0, nxt=0):
    return struct.pack("<QIHH", addr, length, flags, nxt)


def table(descs, fill=0, template=b""):
    t = bytes([len(descs)]) + b"".join(descs) + bytes([fill])
    return t + (template if fill else b"")


def vq(mode, size_log2, avail, heads, main=(), ind0=(), ind1=(), data=b"", start=0,
       aflags=0, used_event=0, raw=False, addrs=None, main_fill=0, main_template=b"", regs=()):
    out = bytes([mode | (4 if raw else 0), size_log2]) + struct.pack("<H", avail)
    if mode & 3 == 0:
        out += struct.pack("<H", start)
    out += struct.pack("<HH", aflags, used_event)
    if addrs:
        out += struct.pack("<III", *addrs)
    if mode & 3:    # a device: register accesses (offset, length, write, value)
        out += bytes([len(regs)]) + b"".join(
            struct.pack("<BBI", off >> 2, {1: 0, 2: 1, 4: 2, 8: 3}[length] | (4 if w else 0) | (off & 3) << 3, v)
            for off, length, w, v in regs)
    out += bytes([len(heads)]) + b"".join(struct.pack("<H" if raw else "<B", h) for h in heads)
    out += table(list(main), main_fill, main_template) + table(list(ind0)) + table(list(ind1))
    return out + data


def blk_hdr(rtype, sector):
    return struct.pack("<IIQ", rtype, 0, sector)


def blk_data(*hdrs):
    """Request headers at data offsets 0, 0x100, 0x200, ..."""
    return b"".join(h.ljust(0x100, b"\0") for h in hdrs)


def gen_virtqueue(out):
    seeds = {}
    simple = [cdesc("data", 0, 16, NEXT, 1), cdesc("data", 0x1000, 512, WRITE | NEXT, 2),
              cdesc("data", 0x2000, 1, WRITE)]
    seeds["walk-simple"] = vq(0, 4, 2, [0, 2], simple)
    seeds["walk-apart-unpop-event"] = vq(0x10 | 0x20, 4, 2, [0, 2], simple, used_event=1)
    seeds["walk-used-over-avail"] = vq(0x40, 4, 1, [0], simple)
    seeds["walk-used-over-desc"] = vq(0x80, 4, 1, [0], simple)
    seeds["walk-addresses"] = vq(0xC0, 3, 1, [0], simple,
                                 addrs=(A_DATA + 0x8000, A_DATA + 0x9000, 0x80000000))
    seeds["walk-wrap"] = vq(0, 3, 3, [0, 2, 1], simple, start=0xFFFE)
    seeds["walk-jump"] = vq(0, 3, 1000, [0], simple)
    seeds["walk-loop"] = vq(0, 3, 1, [0], [cdesc("data", 0, 8, WRITE | NEXT, 1),
                                            cdesc("data", 8, 8, WRITE | NEXT, 0)])
    seeds["walk-bad-next"] = vq(0, 3, 1, [0], [cdesc("data", 0, 8, NEXT, 99)])
    seeds["walk-readable-after-writable"] = vq(0, 3, 1, [0], [cdesc("data", 0, 8, WRITE | NEXT, 1),
                                                               cdesc("data", 8, 8)])
    seeds["walk-indirect"] = vq(8, 3, 1, [0], [cdesc("ind0", 0, 48, INDIRECT)],
                                ind0=[cdesc("data", 0, 16, NEXT, 1),
                                      cdesc("data", 0x1000, 4096, WRITE | NEXT, 2),
                                      cdesc("data", 0x3000, 1, WRITE)])
    seeds["walk-indirect-nested"] = vq(8, 3, 1, [0], [cdesc("ind0", 0, 16, INDIRECT)],
                                       ind0=[cdesc("ind1", 0, 16, INDIRECT)],
                                       ind1=[cdesc("data", 0, 16)])
    seeds["walk-indirect-odd-length"] = vq(8, 3, 1, [0], [cdesc("ind0", 0, 24, INDIRECT)],
                                           ind0=[cdesc("data", 0, 16)])
    seeds["walk-indirect-unnegotiated"] = vq(0, 3, 1, [0], [cdesc("ind0", 0, 16, INDIRECT)],
                                             ind0=[cdesc("data", 0, 16)])
    seeds["walk-long-chain"] = vq(0, 10, 1, [0], main_fill=70,
                                  main_template=cdesc("data", 0, 64, WRITE | NEXT))
    seeds["walk-4gib"] = vq(0, 10, 1, [0], main_fill=33,
                            main_template=cdesc("special", (6, 0), 32 << 20, WRITE | NEXT))
    seeds["walk-outside"] = vq(0, 3, 4, [0, 1, 2, 3],
                               [cdesc("special", (0, 0x100), 0x100, WRITE),
                                cdesc("special", (1, 0x10), 0x100, WRITE),
                                cdesc("end", 0x10, 0x100, WRITE),
                                cdesc("special", (4, 0), 0x100, WRITE)])
    seeds["walk-raw"] = vq(0, 3, 2, [0, 1], [rdesc(A_DATA, 16, NEXT, 2), rdesc(A_DATA + 64, 64, WRITE),
                                             rdesc(A_DATA + 128, 1, WRITE)], raw=True)

    # virtio-blk: header, data, status; headers in the data area.
    def req(i, dlen, data_write):
        return [cdesc("data", 0x100 * i, 16, NEXT, 3 * i + 1),
                cdesc("data", 0x1000 + 0x1000 * i, dlen, (WRITE if data_write else 0) | NEXT, 3 * i + 2),
                cdesc("data", 0x8000 + 4 * i, 1, WRITE)]

    seeds["blk-read"] = vq(1, 4, 1, [0], req(0, 512, True), data=blk_data(blk_hdr(0, 3)))
    seeds["blk-write"] = vq(1, 4, 1, [0], req(0, 1024, False), data=blk_data(blk_hdr(1, 7)))
    seeds["blk-write-readonly"] = vq(1 | 0x20, 4, 1, [0], req(0, 512, False), data=blk_data(blk_hdr(1, 7)))
    seeds["blk-merged-reads"] = vq(1, 4, 3, [0, 3, 6], req(0, 512, True) + req(1, 512, True) + req(2, 512, True),
                                   data=blk_data(blk_hdr(0, 0), blk_hdr(0, 1), blk_hdr(0, 2)))
    seeds["blk-merged-writes"] = vq(1, 4, 2, [0, 3], req(0, 1024, False) + req(1, 512, False),
                                    data=blk_data(blk_hdr(1, 10), blk_hdr(1, 12)))
    seeds["blk-flush-getid"] = vq(1, 4, 2, [0, 3],
                                  [cdesc("data", 0, 16, NEXT, 1), cdesc("data", 0x8000, 1, WRITE),
                                   cdesc("data", 0, 0)] + req(1, 20, True),
                                  data=blk_data(blk_hdr(4, 0), blk_hdr(8, 0)))
    rng_ = struct.pack("<QII", 8, 16, 0)
    seeds["blk-discard"] = vq(1, 4, 1, [0], [cdesc("data", 0, 32, NEXT, 1), cdesc("data", 0x8000, 1, WRITE)],
                              data=(blk_hdr(11, 0) + rng_).ljust(0x100, b"\0"))
    seeds["blk-write-zeroes"] = vq(1, 4, 1, [0], [cdesc("data", 0, 32, NEXT, 1), cdesc("data", 0x8000, 1, WRITE)],
                                   data=(blk_hdr(13, 0) + rng_).ljust(0x100, b"\0"))
    seeds["blk-unsupported-short"] = vq(1, 4, 2, [0, 3], [cdesc("data", 0, 16, NEXT, 1), cdesc("data", 0x8000, 1, WRITE),
                                                          cdesc("data", 0, 0), cdesc("data", 0x100, 8, NEXT, 4),
                                                          cdesc("data", 0x8004, 1, WRITE)],
                                        data=blk_data(blk_hdr(99, 0), blk_hdr(0, 0)))
    seeds["blk-indirect-read"] = vq(1 | 8, 4, 1, [0], [cdesc("ind0", 0, 48, INDIRECT)],
                                    ind0=[cdesc("data", 0, 16, NEXT, 1), cdesc("data", 0x1000, 2048, WRITE | NEXT, 2),
                                          cdesc("data", 0x8000, 1, WRITE)],
                                    data=blk_data(blk_hdr(0, 500)))
    seeds["blk-regs-not-ready"] = vq(1, 4, 1, [0], req(0, 512, True), data=blk_data(blk_hdr(0, 3)),
                                     regs=[(0x044, 4, True, 0), (0x030, 4, True, 7), (0x038, 4, True, 4)])
    seeds["blk-regs-reads"] = vq(1, 4, 1, [0], req(0, 512, True), data=blk_data(blk_hdr(0, 3)),
                                 regs=[(0x001, 2, False, 0), (0x100, 8, False, 0), (0x120, 1, True, 5),
                                       (0x064, 4, True, 3), (0x050, 4, True, 0), (0x024, 4, True, 2),
                                       (0x020, 4, True, 1)])
    seeds["rng-regs-reset"] = vq(3, 3, 1, [0], [cdesc("data", 0, 16, WRITE)], regs=[(0x070, 4, True, 0)])
    # virtio-net: transmit (header + frame), receive (two buffers).
    frame = bytes(12) + bytes(range(60))
    seeds["net-tx"] = vq(2, 4, 2, [0, 1], [cdesc("data", 0, len(frame)), cdesc("data", 0, 12)], data=frame)
    seeds["net-rx"] = vq(2 | 0x20, 4, 3, [0, 1, 2], [cdesc("data", 0x1000, 1526, WRITE),
                                                    cdesc("data", 0x2000, 8, WRITE),
                                                    cdesc("data", 0x3000, 64, WRITE)],
                         data=bytes(12) + b"\xff" * 64)
    seeds["net-rx-more-buffers-than-frames"] = vq(2 | 0x20, 4, 3, [0, 1, 2], [cdesc("data", 0x1000, 1526, WRITE),
                                                                               cdesc("data", 0x2000, 1526, WRITE),
                                                                               cdesc("data", 0x3000, 1526, WRITE)],
                                                  data=bytes(12) + b"\xff" * 64)
    seeds["net-rx-event-idx"] = vq(2 | 0x20 | 0x10, 4, 2, [0, 1],
                                   [cdesc("data", 0x1000, 1526, WRITE), cdesc("data", 0x2000, 1526, WRITE)],
                                   data=bytes(12) + b"\xee" * 100)
    # virtio-rng: two buffers, one across a page boundary.
    seeds["rng"] = vq(3, 3, 2, [0, 1], [cdesc("data", 0xF00, 512, WRITE), cdesc("data", 0, 16, WRITE)])
    for name, data in seeds.items():
        write(out, name, data)


# ---- snapshot --------------------------------------------------------------

def fdt(tree):
    """A version-17 flattened device tree from {name: value or subtree}:
    ints become u32 cells, ("u64", v) 8 bytes, str NUL-terminated strings,
    bytes as they are."""
    strings, off = b"", {}

    def stroff(name):
        nonlocal strings
        if name not in off:
            off[name] = len(strings)
            strings += name.encode() + b"\0"
        return off[name]

    def pad(b):
        return b + bytes(-len(b) % 4)

    def node(name, items):
        s = struct.pack(">I", 1) + pad(name.encode() + b"\0")
        for k, v in items.items():
            if isinstance(v, dict):
                continue
            if isinstance(v, int):
                v = struct.pack(">I", v)
            elif isinstance(v, tuple):
                v = struct.pack(">Q", v[1])
            elif isinstance(v, str):
                v = v.encode() + b"\0"
            s += struct.pack(">III", 3, len(v), stroff(k)) + pad(v)
        for k, v in items.items():
            if isinstance(v, dict):
                s += node(k, v)
        return s + struct.pack(">I", 2)

    struct_blk = node("", tree) + struct.pack(">I", 9)
    rsv = bytes(16)
    hdr_len = 40
    off_rsv = hdr_len
    off_struct = off_rsv + len(rsv)
    off_strings = off_struct + len(struct_blk)
    total = off_strings + len(strings)
    hdr = struct.pack(">10I", 0xD00DFEED, total, off_struct, off_strings, off_rsv, 17, 16, 0,
                      len(strings), len(struct_blk))
    return hdr + rsv + struct_blk + strings


PAGE, CHUNK, RAM_OFF = 4096, 2 << 20, 2 << 20
# The target's two guest layouts: A one 4 MiB region; B 3 MiB + 4 KiB at 0 and 1 MiB at 4 GiB.
LAYOUTS = {"A": [4 << 20], "B": [(3 << 20) + PAGE, 1 << 20]}
ZERO_CRC = crc32c(bytes(PAGE))


def chunk_crcs(layout, pages):
    """CRC per chunk as ram_file.c defines it; pages: {RAM-area page: fill byte}."""
    crcs, base = [], 0
    for size in LAYOUTS[layout]:
        npages = size // PAGE
        per = CHUNK // PAGE
        for c in range(0, npages, per):
            pc = b"".join(struct.pack("<I", crc32c(bytes([pages[base // PAGE + p]]) * PAGE)
                                      if base // PAGE + p in pages else ZERO_CRC)
                          for p in range(c, min(c + per, npages)))
            crcs.append(crc32c(pc))
        base += -(-size // CHUNK) * CHUNK
    return crcs


def machine_fdt(ram, disks=False):
    m = {"version": 1, "arch": "x86_64", "vcpus": 1, "ram-size": ("u64", ram), "tsc-khz": 2000000}
    if disks:
        m["disk0"] = {"version": 1, "path": "/var/tmp/disk.img", "readonly": 0, "serial": "s1"}
        m["net0"] = {"version": 1, "tap": "tap0"}
        m["rng0"] = {"version": 1}
    m["vmgenid"] = {"version": 1, "addr": ("u64", 0xFF000), "gsi": 3, "id": bytes(range(16))}
    return fdt({"machine": m})


def state_fdt():
    return fdt({
        "vm": {"version": 1, "clock-ns": ("u64", 123456789), "realtime-ns": ("u64", 1 << 60),
               "tsc-khz": 2000000},
        "cpu0": {"version": 1, "msrs": {"version": 1, "10": ("u64", 5)}},
        "serial": {"version": 1, "ier": 1},
        "virtio0": {"version": 1, "queue0": {"version": 1}, "device": {"version": 1}},
    })


def snapshot(layout, pages, ws=True, crc_fix=False, lazy=False, raw=False, bad_crc=False, major=1,
             ram_off=RAM_OFF, meta_off=None, hdr_ram_length=None, index_extra=b"", ws_extra=b"",
             ws_count_delta=0, index=None, machine=None, state=None, present_delta=0, layout_flag=None):
    """A framed (or raw) fuzz_snapshot input for a whole valid file."""
    sizes = LAYOUTS[layout]
    ram_length = sum(-(-s // CHUNK) * CHUNK for s in sizes)
    ram_size = sum(sizes)
    crcs = chunk_crcs(layout, pages)
    if bad_crc:
        crcs[0] ^= 1
    if index is None:
        index = struct.pack("<I", CHUNK) + b"".join(struct.pack("<I", c) for c in crcs) + index_extra
    meta = [(2, machine_fdt(ram_size, disks=ws) if machine is None else machine), (4, index)]
    if ws:
        npages = ram_size // PAGE
        bits = bytearray((npages + 63) // 64 * 8)
        for p in [p for p in pages if p < npages][:3]:
            bits[p // 8] |= 1 << (p % 8)
        count = sum(bin(b).count("1") for b in bits)
        meta.append((13, struct.pack("<QQ", npages, count + ws_count_delta) + bytes(bits) + ws_extra))
    meta.append((5, state_fdt() if state is None else state))
    # Pages written as data count as present, zero-filled ones too (SEEK_DATA sees them).
    meta.append((6, struct.pack("<QQQQ", 1 + len(meta), len(pages) + present_delta,
                                ram_size // PAGE - len(pages), ram_size)))
    meta_len = sum(16 + len(p) + 4 for _, p in meta)
    if meta_off is None:
        meta_off = ram_off + ram_length
    hdr = b"MINIVMM\n" + struct.pack("<HHIQQQQ", major, 3, 1, ram_off,
                                      ram_length if hdr_ram_length is None else hdr_ram_length, meta_off, meta_len)
    if layout_flag is None:
        layout_flag = layout
    flags = (0 if raw else 1) | (2 if crc_fix else 0) | (4 if lazy else 0) | (8 if layout_flag == "B" else 0)
    page_list = bytes([len(pages)]) + b"".join(struct.pack("<HB", p, v) for p, v in pages.items())
    if raw:
        return bytes([flags]) + record(1, hdr) + page_list + b"".join(record(t, p) for t, p in meta)

    def frame(t, p):
        return struct.pack("<BH", t, len(p)) + p
    return bytes([flags]) + frame(1, hdr) + page_list + b"".join(frame(t, p) for t, p in meta)


def gen_snapshot(out):
    pages = {0: 0x11, 1: 0x22, 600: 0x33, 1023: 0x44}
    seeds = {
        "a-framed": snapshot("A", pages),
        "a-raw": snapshot("A", pages, raw=True),
        "a-lazy": snapshot("A", pages, lazy=True),
        "a-no-working-set": snapshot("A", pages, ws=False),
        "a-crc-fixed": snapshot("A", pages, crc_fix=True, bad_crc=True),
        "a-bad-crc": snapshot("A", pages, bad_crc=True),
        "a-empty": snapshot("A", {}),
        "a-zero-page-data": snapshot("A", {5: 0}),
        "a-index-short-area": snapshot("A", pages, hdr_ram_length=2 << 20),
        "a-index-odd-length": snapshot("A", pages, index_extra=b"\0"),
        "a-working-set-long": snapshot("A", pages, ws_extra=bytes(8)),
        "a-working-set-miscounted": snapshot("A", pages, ws_count_delta=1),
        "a-index-empty": snapshot("A", pages, index=b""),
        "a-in-layout-b": snapshot("A", pages, layout_flag="B"),
        "a-present-miscounted": snapshot("A", pages, present_delta=1),
        "a-machine-not-fdt": snapshot("A", pages, machine=b"not a device tree"),
        "a-state-not-fdt": snapshot("A", pages, state=b"not a device tree either"),
        "b-framed": snapshot("B", {0: 1, 768: 2, 1024: 3, 1279: 4}),
        "b-crc-fixed": snapshot("B", {3: 5, 1100: 6}, crc_fix=True, bad_crc=True),
        "b-raw": snapshot("B", {2: 9}, raw=True),
        "bad-major": snapshot("A", pages, major=2),
    }
    for name, data in seeds.items():
        write(out, name, data)


# ---- state -----------------------------------------------------------------

def compat_records(path):
    """{type: payload} of the records after a snapshot's RAM area."""
    d = lzma.open(path).read()
    _, _, hlen = struct.unpack_from("<IIQ", d, 0)
    meta_off = struct.unpack_from("<Q", d, 16 + 32)[0]
    recs, off = {}, meta_off
    while off < len(d):
        t, _, length = struct.unpack_from("<IIQ", d, off)
        recs[t] = d[off + 16:off + 16 + length]
        off += 16 + length + 4
        if t == 6:
            break
    return recs


def fdt_ops(blob):
    """An FDT as fuzz_state.c's list of nodes and properties (form 1)."""
    off_struct, off_strings = struct.unpack_from(">II", blob, 8)
    size_struct = struct.unpack_from(">I", blob, 36)[0]
    out, o, depth = b"", off_struct, 0
    while o < off_struct + size_struct:
        tag = struct.unpack_from(">I", blob, o)[0]
        o += 4
        if tag == 1:                          # begin node
            end = blob.index(b"\0", o)
            name = blob[o:end]
            if depth:                         # the harness makes the root
                out += bytes([0, len(name)]) + name
            depth += 1
            o = (end + 1 + 3) & ~3
        elif tag == 2:                        # end node
            depth -= 1
            if depth:
                out += bytes([1, 0])
        elif tag == 3:                        # property
            length, nameoff = struct.unpack_from(">II", blob, o)
            o += 8
            name = blob[off_strings + nameoff:blob.index(b"\0", off_strings + nameoff)]
            out += bytes([2, len(name)]) + name + struct.pack("<H", length) + blob[o:o + length]
            o = (o + length + 3) & ~3
        elif tag == 9:
            break
    return out


def gen_state(out):
    # fuzz_state.c's first byte: bit 0 two vCPUs (else one), bits 1-2 how
    # many virtio devices vmstate_load sees, the rest fake-KVM behaviour;
    # second byte: 0 the FDT as it is, 1 a list the harness builds one from.
    for version in ("v1.0", "v1.1", "v1.2", "v1.3"):
        for kind, flags in (("plain", 0x01), ("devices", 0x04)):
            path = os.path.join(ROOT, "tests", "compat", version, kind + ".snap.xz")
            state = compat_records(path)[5]
            write(out, f"{kind}-{version}", bytes([flags, 0]) + state)
            if version == "v1.3":
                write(out, f"{kind}-{version}-built", bytes([flags, 1]) + fdt_ops(state))
    write(out, "small", bytes([0x02, 0]) + state_fdt())
    write(out, "small-built", bytes([0x02, 1]) + fdt_ops(state_fdt()))


def main():
    what, out = sys.argv[1], sys.argv[2]
    {"virtqueue": gen_virtqueue, "snapshot": gen_snapshot, "state": gen_state}[what](out)


if __name__ == "__main__":
    main()
