# SPDX-License-Identifier: MIT
"""Live migration, destination side: `minivmm --incoming tcp:HOST:PORT` / `unix:PATH`.

A crafted stream (docs/migration-format.md, "Live migration stream") is fed
over a plain socket. The happy path converts a real snapshot file into a
stream, so the receiver is proved end to end without the sender. Every
hostile stream must end in a non-zero exit, exactly one `minivmm: ` error
line, no guest output, and (when the socket still works) an ERROR reply
carrying the same text.
"""
import os
import re
import socket
import struct
import subprocess

import pytest

from conftest import GUEST, MINIVMM, Proc, scaled
from test_snapshot import HB, digest, last_hb, save, wait_socket

(REC_HEADER, REC_MACHINE, REC_RAM, REC_RAM_INDEX, REC_STATE, REC_END, REC_GO, REC_REPLY,
 REC_SYNC) = range(1, 10)
REC_WORKING_SET = 13
REPLY_READY, REPLY_ERROR, REPLY_RUNNING, REPLY_SYNCED = 1, 2, 3, 4
PAGE = 4096
LISTEN = r"^minivmm: incoming migration: listening on (\S+)$"
CONNECTED = r"^minivmm: incoming migration: (second )?connection from (.+)$"
STRAY = r"^minivmm: warning: incoming migration: (\S+) (.*): not a migration source; still listening$"


# ---- the stream codec, written from the format document ----

def _crc_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


CRC_TABLE = _crc_table()


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    t = CRC_TABLE
    for b in data:
        crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def record(rtype, payload=b"", flags=0, length=None, bad_crc=False):
    hdr = struct.pack("<IIQ", rtype, flags, len(payload) if length is None else length)
    crc = crc32c(payload, crc32c(hdr))
    return hdr + payload + struct.pack("<I", crc ^ (1 if bad_crc else 0))


def header_payload(major=1, minor=0, flags=0, magic=b"MINIVMM\n"):
    return magic + struct.pack("<HHIQQQQ", major, minor, flags, 0, 0, 0, 0)


def ram_payload(pages, count=None, flags=0):
    """pages: [(gpa, data-or-None)]; None = a zero entry (bit 0)."""
    ents = b"".join(struct.pack("<Q", gpa | (1 if d is None else 0)) for gpa, d in pages)
    data = b"".join(d for _, d in pages if d is not None)
    return struct.pack("<II", len(pages) if count is None else count, flags) + ents + data


def end_payload(records, present, zero, ram_size):
    return struct.pack("<QQQQ", records, present, zero, ram_size)


def read_reply(sock):
    """One reply record, or None at EOF / connection reset."""
    def exact(n):
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf
    try:
        hdr = exact(16)
        if hdr is None:
            return None
        rtype, _, length = struct.unpack("<IIQ", hdr)
        assert rtype == REC_REPLY and length <= 8 + 1024, (rtype, length)
        payload, crc = exact(length), exact(4)
    except ConnectionResetError:
        return None
    assert struct.unpack("<I", crc)[0] == crc32c(payload, crc32c(hdr)), "reply CRC"
    code, tlen = struct.unpack("<II", payload[:8])
    assert tlen == length - 8
    return code, payload[8:8 + tlen].rstrip(b"\0").decode()


# ---- a snapshot file, parsed, and turned into a stream ----

class Snapshot:
    def __init__(self, path):
        data = path.read_bytes()
        self.data = data
        (self.major, self.minor, self.flags, self.ram_offset, self.ram_length,
         self.meta_offset, self.meta_length) = struct.unpack("<HHIQQQQ", data[24:64])
        off = self.meta_offset
        self.recs = {}
        for want in (REC_MACHINE, REC_RAM_INDEX, REC_STATE, REC_END):
            rtype, _, length = struct.unpack("<IIQ", data[off:off + 16])
            if rtype == REC_WORKING_SET and want == REC_STATE:     # optional, kept aside
                self.recs[rtype] = data[off + 16:off + 16 + length]
                off += 16 + length + 4
                rtype, _, length = struct.unpack("<IIQ", data[off:off + 16])
            assert rtype == want
            self.recs[rtype] = data[off + 16:off + 16 + length]
            off += 16 + length + 4
        self.ram_size = struct.unpack("<QQQQ", self.recs[REC_END])[3]
        assert self.ram_size <= 3 << 30, "one RAM region keeps this simple"

    def page(self, gpa):
        off = self.ram_offset + gpa
        return self.data[off:off + PAGE]

    def data_pages(self):
        zero = bytes(PAGE)
        return [g for g in range(0, self.ram_size, PAGE) if self.page(g) != zero]

    def zero_pages(self):
        zero = bytes(PAGE)
        return [g for g in range(0, self.ram_size, PAGE) if self.page(g) == zero]


class Stream:
    """Records in order, with the end record's counts kept as they are added."""

    def __init__(self, snap):
        self.snap = snap
        self.recs = []
        self.present = self.zero = 0

    def add(self, name, raw):
        self.recs.append((name, raw))
        return self

    def head(self, **kw):
        self.add("header", record(REC_HEADER, header_payload(**kw)))
        return self.add("machine", record(REC_MACHINE, self.snap.recs[REC_MACHINE]))

    def ram(self, pages, **kw):
        self.present += sum(1 for _, d in pages if d is not None)
        self.zero += sum(1 for _, d in pages if d is None)
        return self.add("ram", record(REC_RAM, ram_payload(pages, **kw)))

    def state(self, payload=None):
        return self.add("state", record(REC_STATE, self.snap.recs[REC_STATE]
                                        if payload is None else payload))

    def end(self, records=None, present=None, zero=None, ram_size=None):
        p = end_payload(len(self.recs) if records is None else records,
                        self.present if present is None else present,
                        self.zero if zero is None else zero,
                        self.snap.ram_size if ram_size is None else ram_size)
        return self.add("end", record(REC_END, p))

    def full_ram(self, batch=512):
        """The snapshot's RAM, plus resends that only come out right if the
        last copy wins and a zero entry really clears a page sent before."""
        snap = self.snap
        data, holes = snap.data_pages(), snap.zero_pages()
        junk = bytes([0xA5]) * PAGE
        d0, z0 = data[0], holes[-1]
        # A hole first sent with data, a data page first sent as zero and as junk.
        self.ram([(z0, junk), (d0, None), (d0, junk)] + [(g, None) for g in holes[:64]])
        for i in range(0, len(data), batch):
            self.ram([(g, snap.page(g)) for g in data[i:i + batch]])
        return self.ram([(z0, None)])

    def complete(self):
        return self.head().full_ram().state().end()

    def bytes(self):
        return b"".join(raw for _, raw in self.recs)


# ---- the destination process ----

class Dest(Proc):
    def __init__(self, uri="tcp:127.0.0.1:0", extra=(), timeout=None):
        env = dict(os.environ)
        if timeout is not None:
            env["MINIVMM_INCOMING_TIMEOUT"] = str(timeout)
        super().__init__([MINIVMM, "--incoming", uri, *extra], merge_stderr=False, env=env)
        m, _ = self.wait_for(LISTEN, timeout=10, sink=self.err_lines)
        self.bound = m.group(1)
        self.sock = None

    def connect(self):
        if self.bound.startswith("unix:"):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(30)
            s.connect(self.bound[5:])
        else:
            host, port = self.bound[4:].rsplit(":", 1)
            s = socket.create_connection((host, int(port)), timeout=scaled(30))
        self.sock = s
        return s

    def feed(self, data, close=True):
        """Send `data` (tolerating a destination that already gave up), then
        collect replies until the destination closes the connection."""
        s = self.sock or self.connect()
        try:
            s.sendall(data)
            if close:
                s.shutdown(socket.SHUT_WR)
        except OSError:         # reset or already gone: the replies tell the rest
            pass
        replies = []
        while True:
            r = read_reply(s)
            if r is None:
                return replies
            replies.append(r)

    def errors(self):
        with self.cond:
            return [l for l in self.err_lines if l is not None and l.strip()
                    and not re.match(LISTEN, l) and not re.match(CONNECTED, l)
                    and not re.match(STRAY, l)]


def ignored(dest, replies, words=(), ctx=""):
    """A connection that never started like a minivmm stream (a port scan, a
    health check): named with its address, dropped without a reply, and the
    destination still listens."""
    m, _ = dest.wait_for(STRAY, timeout=20, sink=dest.err_lines)
    for w in words:
        assert w in m.group(2), (ctx, m.group(0))
    assert replies == [], (ctx, replies)
    assert dest.proc.poll() is None, (ctx, dest.errors())
    assert any(re.match(CONNECTED, l) for l in dest.err_lines if l), ctx
    return m


def refused(dest, replies, words=(), status=2, reply=True, pattern=None, ctx=""):
    """Non-zero exit, one error line, no guest output, ERROR reply with that text."""
    rc = dest.wait_exit(20)
    errs = dest.errors()
    assert rc == status, (ctx, rc, errs)
    assert len(errs) == 1 and errs[0].startswith("minivmm: "), (ctx, errs)
    for w in words:
        assert w in errs[0], (ctx, errs[0])
    if pattern:
        assert re.search(pattern, errs[0]), (ctx, errs[0])
    assert dest.output() == "", "guest output from a refused stream: " + dest.output()
    if reply:
        assert replies and replies[-1] == (REPLY_ERROR, errs[0][len("minivmm: "):]), (ctx, replies)
    assert all(code != REPLY_RUNNING for code, _ in replies), (ctx, replies)
    return errs[0]


@pytest.fixture
def dest_factory():
    made = []

    def make(*a, **kw):
        d = Dest(*a, **kw)
        made.append(d)
        return d
    yield make
    for d in made:
        d.kill()
        if d.sock:
            d.sock.close()


@pytest.fixture(scope="module")
def snap(tmp_path_factory):
    """A running guest with a heartbeat, saved (a move) to a file."""
    tmp = tmp_path_factory.mktemp("incoming")
    sock = str(tmp / "src.sock")
    g = Proc([MINIVMM, "--kernel", GUEST, "--cpus", "2", "--memory", "64M",
              "--cmdline", "hb=50 fill=4M", "--api-sock", sock])
    try:
        g.wait_for(r"^FILL done", timeout=20)
        g.wait_for(HB, timeout=10)
        data, _, _ = save(sock, f"file:{tmp / 'snap'}")
        assert data["status"] == "completed"
        assert g.wait_exit(20) == 0
        seq, ns = last_hb(g)
    finally:
        g.kill()
    s = Snapshot(tmp / "snap")
    s.digest, s.hb_seq, s.hb_ns = data["ram-digest"], seq, ns
    return s


# ---- the happy path ----

def handover(d, stream):
    s = d.connect()
    s.sendall(stream.bytes())
    assert read_reply(s) == (REPLY_READY, "")
    assert d.output() == "", "the guest ran before GO"
    s.sendall(record(REC_GO))
    assert read_reply(s) == (REPLY_RUNNING, "")


def test_stream_restores_paused(snap, dest_factory, tmp_path):
    dsock = str(tmp_path / "d.sock")
    d = dest_factory(extra=("--paused", "--api-sock", dsock))
    assert re.match(r"tcp:127\.0\.0\.1:\d+$", d.bound)
    handover(d, Stream(snap).complete())
    q = wait_socket(d, dsock)
    q.cmd("qmp_capabilities")
    assert q.cmd("query-status")["return"]["status"] == "paused"
    assert digest(q) == snap.digest                 # page for page what was saved
    assert q.cmd("cont") == {"return": {}}
    m, _ = d.wait_for(HB, timeout=10)
    assert int(m.group(1)) == snap.hb_seq + 1       # the heartbeat goes on
    assert int(m.group(2)) >= snap.hb_ns            # kvmclock never goes back
    d.send("verify\n")
    m, _ = d.wait_for(r"^VERIFY (PASS|FAIL)", timeout=30)
    assert m.group(1) == "PASS", d.tail()
    d.send("poweroff\n")
    assert d.wait_exit(20) == 0
    assert d.errors() == []


def test_stream_over_unix_runs(snap, dest_factory, tmp_path):
    path = tmp_path / "mig.sock"
    d = dest_factory(uri=f"unix:{path}")
    assert d.bound == f"unix:{path}"
    handover(d, Stream(snap).complete())
    assert not path.exists()                        # one source only: the path is gone
    m, _ = d.wait_for(HB, timeout=10)
    assert int(m.group(1)) == snap.hb_seq + 1
    d.send("verify\n")
    m, _ = d.wait_for(r"^VERIFY (PASS|FAIL)", timeout=30)
    assert m.group(1) == "PASS", d.tail()
    d.send("poweroff\n")
    assert d.wait_exit(20) == 0


def test_sync_answered_in_order(snap, dest_factory, tmp_path):
    """A sync is answered once everything before it is in guest RAM, and counts
    as a record in the end totals; the guest then comes out whole."""
    st = Stream(snap).head()
    data = snap.data_pages()
    half = len(data) // 2
    st.ram([(g, snap.page(g)) for g in data[:half]]).add("sync", record(REC_SYNC))
    st.ram([(g, snap.page(g)) for g in data[half:]]).add("sync", record(REC_SYNC))
    dsock = str(tmp_path / "d.sock")
    d = dest_factory(extra=("--paused", "--api-sock", dsock))
    s = d.connect()
    raw = st.bytes()
    first = raw.index(record(REC_SYNC)) + len(record(REC_SYNC))
    s.sendall(raw[:first])
    assert read_reply(s) == (REPLY_SYNCED, "")
    s.sendall(raw[first:])
    assert read_reply(s) == (REPLY_SYNCED, "")
    s.sendall(st.state().end().recs[-2][1] + st.recs[-1][1])
    assert read_reply(s) == (REPLY_READY, "")
    s.sendall(record(REC_GO))
    assert read_reply(s) == (REPLY_RUNNING, "")
    q = wait_socket(d, dsock)
    q.cmd("qmp_capabilities")
    assert digest(q) == snap.digest


# ---- hostile input ----

def test_random_bytes(dest_factory):
    """Noise is no source: each connection is dropped, the destination listens on."""
    d = dest_factory()
    i = 0
    for seed in range(3):
        d.sock = None
        replies = d.feed(b"\xff" * 4 + os.urandom(64 + 1000 * seed))
        m, i = d.wait_for(STRAY, timeout=20, sink=d.err_lines, start=i)
        i += 1
        assert m.group(2) == "not a minivmm stream", m.group(0)
        assert replies == [] and d.proc.poll() is None, (replies, d.errors())


def test_not_a_stream_over_unix(dest_factory, tmp_path):
    d = dest_factory(uri=f"unix:{tmp_path / 'u.sock'}")
    ignored(d, d.feed(b"GET / HTTP/1.1\r\n"), ["before a whole stream header"])
    peer = [re.match(CONNECTED, l).group(2) for l in d.err_lines if l and re.match(CONNECTED, l)]
    assert peer and peer[0].startswith("pid "), peer


def truncation_points(stream):
    """(cut, what) for every record boundary and three places inside each record."""
    pos = 0
    for name, raw in stream.recs:
        yield pos, f"before {name}"
        for inside in (5, 16 + (len(raw) - 20) // 2, len(raw) - 1):
            yield pos + inside, f"inside {name} at {inside}"
        pos += len(raw)


def test_truncated_everywhere(snap, dest_factory):
    st = Stream(snap).head().ram([(0x1000, bytes([7]) * PAGE), (0x2000, None)]).state().end()
    full = st.bytes()
    for cut, what in truncation_points(st):
        d = dest_factory()
        if cut < 24:    # before the header's magic: not a source at all
            ignored(d, d.feed(full[:cut]), ["closed"], ctx=what)
            continue
        refused(d, d.feed(full[:cut]), status=1, pattern="connection closed|truncated", ctx=what)
    # Everything but GO: READY, then the destination gives up without running.
    d = dest_factory()
    replies = d.feed(full)
    refused(d, replies, ["waiting for the go record"], status=1)
    assert replies[0] == (REPLY_READY, "")


def test_stalls_time_out(snap, dest_factory):
    st = Stream(snap).complete()
    for data, words in ((b"", ["said nothing within the timeout"]),
                        (st.recs[0][1][:7], ["went silent before a whole stream header"])):
        d = dest_factory(timeout=1)     # silent or stalled before the magic: no source
        ignored(d, d.feed(data, close=False), words)
    d = dest_factory(timeout=1)
    refused(d, d.feed(st.recs[0][1], close=False), ["no data for 1 s", "machine"], status=1)
    d = dest_factory(timeout=1)                     # stalled inside a record
    refused(d, d.feed(st.bytes()[:68 + 100], close=False), status=1,
            pattern="no data|timed out|stalled|temporarily unavailable")
    d = dest_factory(timeout=1)                     # READY, and then no GO
    replies = d.feed(st.bytes(), close=False)
    refused(d, replies, ["no data for 1 s", "go record"], status=1)
    assert replies[0] == (REPLY_READY, "")


def test_bad_header(snap, dest_factory):
    machine = record(REC_MACHINE, snap.recs[REC_MACHINE])
    cases = [
        (record(REC_HEADER, header_payload(), bad_crc=True), ["CRC mismatch"]),
        (record(REC_HEADER, header_payload(major=2, minor=3)), ["version 2.3", "1.x"]),
        (record(REC_HEADER, header_payload(flags=1)), ["header flags 0x1"]),
        (record(REC_HEADER, header_payload()[:40]), ["not a minivmm stream"]),
    ]
    for data, words in cases:
        d = dest_factory()
        refused(d, d.feed(data), words)
    # Not even the start of a stream: someone else's protocol, left alone.
    for data in (record(REC_HEADER, header_payload(magic=b"NOTMINI\n")), machine[:64],
                 b"GET / HTTP/1.0\r\n\r\n" + b" " * 16):
        d = dest_factory()
        ignored(d, d.feed(data), ["not a minivmm stream"])


def test_stray_connections_then_the_source(snap, dest_factory):
    """A port scan, a health check and an HTTP probe before the source: each
    is named and dropped, and the source that comes after them is served."""
    d = dest_factory(timeout=1)
    host, port = d.bound[4:].rsplit(":", 1)
    socket.create_connection((host, int(port)), timeout=5).close()
    d.wait_for(r"closed without a word: not a migration source", timeout=10, sink=d.err_lines)
    held = socket.create_connection((host, int(port)), timeout=5)
    d.wait_for(r"said nothing within the timeout: not a migration source", timeout=10,
               sink=d.err_lines)
    held.close()
    http = socket.create_connection((host, int(port)), timeout=5)
    http.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    d.wait_for(r"not a minivmm stream: not a migration source", timeout=10, sink=d.err_lines)
    http.close()
    replies = d.feed(Stream(snap).complete().bytes(), close=False)
    assert replies and replies[0] == (REPLY_READY, ""), (replies, d.errors())
    peers = [re.match(CONNECTED, l).group(2) for l in d.err_lines if l and re.match(CONNECTED, l)]
    assert len(peers) == 4 and all(p.startswith("127.0.0.1:") for p in peers), peers


def test_records_out_of_order(snap, dest_factory):
    """A record refused by its header is sent without its payload: bytes the
    destination never reads would turn its close into a reset."""
    hdr = record(REC_HEADER, header_payload())
    machine = record(REC_MACHINE, snap.recs[REC_MACHINE])
    state = record(REC_STATE, snap.recs[REC_STATE])
    ram = record(REC_RAM, ram_payload([(0x1000, None)]))
    cases = [
        (hdr + ram[:16], ["type 3 (ram), expected machine"]),
        (hdr + record(14, b"x")[:16], ["type 14 (unknown)"]),
        (hdr + record(REC_SYNC)[:16], ["type 9 (sync), expected machine"]),
        (hdr + machine + record(REC_SYNC, b"x")[:16], ["sync record of 1 bytes exceeds"]),
        (hdr + machine + state + record(REC_SYNC)[:16], ["type 9 (sync), expected end"]),
        (hdr + machine + machine, ["unexpected machine record"]),
        (hdr + machine + hdr, ["unexpected header record"]),
        (hdr + machine + record(REC_RAM_INDEX, b"\0" * 8), ["unexpected ram-index record"]),
        (hdr + machine + record(REC_REPLY, struct.pack("<II", 1, 0)), ["unexpected reply record"]),
        (hdr + machine + ram + record(REC_GO), ["unexpected go record"]),
        (hdr + machine + ram + record(REC_END, end_payload(3, 0, 1, snap.ram_size)),
         ["unexpected end record"]),
        (hdr + machine + state + record(REC_GO)[:16], ["type 7 (go), expected end"]),
        (hdr + machine + state + state[:16], ["expected end"]),
    ]
    for data, words in cases:
        d = dest_factory()
        refused(d, d.feed(data), words, ctx=words[0])


def test_bad_postcopy_records(snap, dest_factory):
    """The switch to postcopy: its page list must fit this machine exactly,
    and only the state may follow it."""
    hdr = record(REC_HEADER, header_payload())
    machine = record(REC_MACHINE, snap.recs[REC_MACHINE])
    pages = snap.ram_size // PAGE
    bitmap = b"\0" * ((pages + 63) // 64 * 8)
    good = record(10, struct.pack("<QQQ", pages, 0, 7) + bitmap)
    cases = [
        (hdr + machine + record(10, b"x"), ["postcopy record of 1 bytes, too short"]),
        (hdr + machine + record(10, struct.pack("<QQQ", 1, 0, 7) + b"\0" * 8),
         [f"postcopy record for 1 pages in 32 bytes; the machine has {pages} pages"]),
        (hdr + machine + record(10, struct.pack("<QQQ", pages, 1, 7) + bitmap),
         ["its page list does not match its count"]),
        (hdr + machine + good + good, ["a second postcopy record"]),
        (hdr + machine + good + record(REC_RAM, ram_payload([(0x1000, None)])),
         ["a ram record after the postcopy record"]),
        (hdr + machine + record(11, struct.pack("<Q", 0x1000)), ["unexpected page-request record"]),
        (hdr + machine + record(12, struct.pack("<Q", 7)), ["unexpected resume record"]),
    ]
    for data, words in cases:
        d = dest_factory()
        refused(d, d.feed(data), words, ctx=words[0])


def test_bad_ram_batches(snap, dest_factory):
    page = bytes([1]) * PAGE
    ram_end = snap.ram_size
    bad = [
        ([(ram_end, page)], {}, ["outside guest RAM"]),
        ([(ram_end - PAGE, None), (ram_end, None)], {}, ["entry 1", "outside guest RAM"]),
        ([(0xD0000000, None)], {}, ["0xd0000000 is outside guest RAM"]),
        ([(0xFEE00000, page)], {}, ["outside guest RAM"]),
        ([(1 << 32, None)], {}, ["outside guest RAM"]),
        ([(0xFFFFFFFFFFFFF000, None)], {}, ["outside guest RAM"]),
        ([(0x1008, page)], {}, ["not page-aligned"]),
        ([(0x1002, None)], {}, ["not page-aligned"]),
        ([(0x1000, None)], {"count": 3}, ["3 entries do not fit"]),
        ([(0x1000, page)], {"count": 0}, ["need 8"]),
        ([(0x1000, None)] * 2, {"count": 4097}, ["4097 entries"]),
        ([(0x1000, None)], {"flags": 2}, ["unknown flags"]),
    ]
    for pages, kw, words in bad:
        d = dest_factory()
        st = Stream(snap).head().ram(pages, **kw)
        refused(d, d.feed(st.bytes()), words, ctx=words[0])
    for payload, words in ((b"\0" * 4, ["too short"]),
                           (ram_payload([(0x1000, None)]) + b"\0" * 8, ["need 16"]),
                           (ram_payload([(0x1000, page)])[:-1], ["need"])):
        d = dest_factory()
        st = Stream(snap).head().add("ram", record(REC_RAM, payload))
        refused(d, d.feed(st.bytes()), words)
    d = dest_factory()                              # a length past the bound: no allocation
    st = Stream(snap).head().add("ram", record(REC_RAM, length=(1 << 64) - 1)[:16])
    refused(d, d.feed(st.bytes()), ["exceeds"])


# Each type's bound (docs/migration-format.md), for the records a destination reads.
RECORD_BOUNDS = {
    "header": (REC_HEADER, 48),
    "machine": (REC_MACHINE, 1 << 20),
    "ram": (REC_RAM, 8 + 4096 * (8 + PAGE)),
    "postcopy": (10, 24 + (64 << 20)),
    "state": (REC_STATE, 64 << 20),
    "end": (REC_END, 32),
}


@pytest.mark.parametrize("name", RECORD_BOUNDS)
def test_record_bounds(snap, dest_factory, name):
    """One byte past its type's bound, a record is refused from its 16-byte
    header: the payload it announces is never sent, nor waited for."""
    rtype, bound = RECORD_BOUNDS[name]
    over = record(rtype, length=bound + 1)[:16]
    hdr = record(REC_HEADER, header_payload())
    machine = record(REC_MACHINE, snap.recs[REC_MACHINE])
    if name == "header":        # the magic first, or it is no source at all
        data = record(REC_HEADER, header_payload() + b"\0")
    else:
        before = {"machine": hdr, "end": hdr + machine + record(REC_STATE, snap.recs[REC_STATE])}
        data = before.get(name, hdr + machine) + over
    d = dest_factory()
    refused(d, d.feed(data, close=False),
            [f"{name} record of {bound + 1} bytes exceeds the {bound}-byte bound"], ctx=name)


def test_end_totals_checked(snap, dest_factory):
    for kw, words in (({"records": 3}, ["counts 3 records"]),
                      ({"present": 2}, ["data and"]),
                      ({"zero": 0}, ["zero pages"]),
                      ({"ram_size": snap.ram_size * 2}, ["bytes of RAM"])):
        d = dest_factory()
        st = Stream(snap).head().ram([(0x1000, None), (0x2000, bytes(PAGE))]).state().end(**kw)
        refused(d, d.feed(st.bytes()), words)
    d = dest_factory()
    st = Stream(snap).head().state().add("end", record(REC_END, b"\0" * 16))
    refused(d, d.feed(st.bytes()), ["end record of 16 bytes"])


def test_bad_machine_and_state(snap, dest_factory):
    d = dest_factory()
    st = Stream(snap).add("header", record(REC_HEADER, header_payload()))
    st.add("machine", record(REC_MACHINE, os.urandom(200)))
    refused(d, d.feed(st.bytes()))
    d = dest_factory()
    st = Stream(snap).head().state(os.urandom(300)).end()
    refused(d, d.feed(st.bytes()))
    d = dest_factory(extra=("--cpus", "1"))         # the stream says 2
    refused(d, d.feed(Stream(snap).head().bytes()), ["vCPU"])
    d = dest_factory()
    st = Stream(snap).head()
    st.recs[1] = ("machine", record(REC_MACHINE, snap.recs[REC_MACHINE], bad_crc=True))
    refused(d, d.feed(st.bytes()), ["CRC mismatch in machine record"])


def test_bad_uri_and_options(tmp_path):
    for args, words in ((["--incoming", "tcp:nohost"], ["tcp:"]),
                        (["--incoming", "tcp:127.0.0.1:0", "--lazy"], ["--lazy"])):
        r = subprocess.run([MINIVMM, *args], capture_output=True, text=True, timeout=scaled(10))
        errs = [l for l in r.stderr.splitlines() if l.strip()]
        assert r.returncode == 2 and len(errs) == 1, r.stderr
        assert all(w in errs[0] for w in words), errs
    env = dict(os.environ, MINIVMM_INCOMING_TIMEOUT="soon")
    r = subprocess.run([MINIVMM, "--incoming", "tcp:127.0.0.1:0"], capture_output=True,
                       text=True, timeout=scaled(10), env=env)
    assert r.returncode == 2 and "MINIVMM_INCOMING_TIMEOUT" in r.stderr


def test_unix_path_never_clobbered(tmp_path, dest_factory):
    """`--incoming unix:PATH` takes PATH only if nothing is there or a stale
    socket is: a regular file stays as it was, a live listener is left alone."""
    f = tmp_path / "precious"
    f.write_bytes(b"keep me")
    r = subprocess.run([MINIVMM, "--incoming", f"unix:{f}"], capture_output=True, text=True,
                       timeout=scaled(10))
    errs = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 2 and len(errs) == 1 and "not a socket" in errs[0], r.stderr
    assert f.read_bytes() == b"keep me"
    live = dest_factory(uri=f"unix:{tmp_path / 'live.sock'}")
    r = subprocess.run([MINIVMM, "--incoming", live.bound], capture_output=True, text=True,
                       timeout=scaled(10))
    assert r.returncode == 2 and "listening there already" in r.stderr, r.stderr
    assert live.proc.poll() is None and os.path.exists(live.bound[5:])
    # ...and it is still the destination: a real (here, bad) stream ends it.
    refused(live, live.feed(record(REC_HEADER, header_payload(major=9))), ["version 9"])
    stale = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(stale))
    s.close()                                   # bound, never listened: stale
    d = dest_factory(uri=f"unix:{stale}")
    assert d.bound == f"unix:{stale}"


# ---- crafted records with valid CRCs: the stream and the file paths ----

def fdt_edit(blob, edit):
    """An FDT changed through its source form (dtc), as an attacker would."""
    dts = subprocess.run(["dtc", "-q", "-I", "dtb", "-O", "dts", "-"], input=blob,
                         capture_output=True, check=True).stdout.decode()
    new = edit(dts)
    assert new != dts, "the edit changed nothing"
    return subprocess.run(["dtc", "-q", "-I", "dts", "-O", "dtb", "-"], input=new.encode(),
                          capture_output=True, check=True).stdout


def huge_ram(snap):
    """The machine record asking for 1 TiB: possible in the format, more than
    this host has (so refused before anything is allocated)."""
    return fdt_edit(snap.recs[REC_MACHINE],
                    lambda dts: re.sub(r"ram-size = <[^>]*>", "ram-size = <0x100 0x00>", dts))


def test_stream_ram_bigger_than_host(snap, dest_factory):
    d = dest_factory()
    st = Stream(snap).add("header", record(REC_HEADER, header_payload()))
    st.add("machine", record(REC_MACHINE, huge_ram(snap)))
    refused(d, d.feed(st.bytes()), ["more than this host has"])


def crafted_file(snap, path, header=None, **replace):
    """The snapshot with some of its metadata records replaced, every CRC
    valid and the header's lengths made to match: only the contents lie.
    A record given as a number is its 16-byte header alone, announcing that
    many bytes; `header` changes the header's fields (flags, ram_offset,
    ram_length, meta_offset, meta_length). Written sparse, as minivmm writes
    it: a zero page is a hole (a restore counts the pages with data)."""
    recs = {REC_MACHINE: snap.recs[REC_MACHINE], REC_RAM_INDEX: snap.recs[REC_RAM_INDEX],
            REC_STATE: snap.recs[REC_STATE], REC_END: snap.recs[REC_END]}
    if REC_WORKING_SET in snap.recs:
        recs[REC_WORKING_SET] = snap.recs[REC_WORKING_SET]
    recs.update({globals()[k]: v for k, v in replace.items()})
    order = (REC_MACHINE, REC_RAM_INDEX, REC_WORKING_SET, REC_STATE, REC_END)
    meta = b"".join(record(t, length=recs[t])[:16] if isinstance(recs[t], int)
                    else record(t, recs[t]) for t in order if t in recs)
    h = dict(flags=snap.flags, ram_offset=snap.ram_offset, ram_length=snap.ram_length,
             meta_offset=snap.meta_offset, meta_length=len(meta))
    h.update(header or {})
    hdr = record(REC_HEADER, b"MINIVMM\n" + struct.pack(
        "<HHIQQQQ", snap.major, snap.minor, h["flags"], h["ram_offset"], h["ram_length"],
        h["meta_offset"], h["meta_length"]))
    with open(path, "wb") as f:
        f.write(hdr + snap.data[len(hdr):snap.ram_offset])
        for g in snap.data_pages():
            f.seek(snap.ram_offset + g)
            f.write(snap.page(g))
        f.seek(snap.meta_offset)
        f.write(meta)
    return path


# Bad files, each with the one line that refuses it (after "minivmm: PATH: "),
# from --inspect and from --incoming file: alike.
LAYOUT = "snapshot layout is inconsistent (file truncated or corrupt)"
INDEX = "RAM index does not match the RAM area"
CRAFTED = {
    "end-empty": (dict(REC_END=b""), "the end record has 0 bytes, expected 32"),
    "end-short": (dict(REC_END=b"\x01" * 8), "the end record has 8 bytes, expected 32"),
    "end-31": (dict(REC_END=bytes(31)), "the end record has 31 bytes, expected 32"),
    "end-long": (dict(REC_END=bytes(40)), "end record of 40 bytes exceeds the 32-byte bound"),
    "end-counts": (dict(REC_END=struct.pack("<QQQQ", 99, 1, 1, 64 << 20)),
                   "end record counts 99 records, found 5"),
    "ram-index-short": (dict(REC_RAM_INDEX=bytes(4)), INDEX),
    "ram-index-odd": (dict(REC_RAM_INDEX=bytes(131)), INDEX),
    "state-garbage": (dict(REC_STATE=b"\xd0\x0d\xfe\xed" + bytes(296)),
                      "device state is corrupt (not a version 17 flattened device tree)"),
    "machine-garbage": (dict(REC_MACHINE=bytes(200)),
                        "device state is corrupt (not a version 17 flattened device tree)"),
    # The layout (docs/security.md, bounds): refused when opened.
    "not-file-layout": (dict(header=dict(flags=0)), LAYOUT),
    "ram-unaligned": (dict(header=dict(ram_offset=(2 << 20) + 512)), LAYOUT),
    "ram-over-records": (dict(header=dict(ram_length=(64 << 20) + 4096)), LAYOUT),
    "ram-wraps": (dict(header=dict(ram_offset=(1 << 64) - 4096, ram_length=8192)), LAYOUT),
    "records-past-end": (dict(header=dict(meta_offset=1 << 40)), LAYOUT),
    "records-run-past-end": (dict(header=dict(meta_length=1 << 20)), LAYOUT),
    "ram-index-one-chunk-less": (dict(header=dict(ram_length=62 << 20)), INDEX),
    "ram-index-one-crc-more": (dict(REC_RAM_INDEX=bytes(4 + 4 * 33)), INDEX),
    "ram-index-one-crc-less": (dict(REC_RAM_INDEX=bytes(4 + 4 * 31)), INDEX),
    "working-set-past-bound": (dict(REC_WORKING_SET=16 + (64 << 20) + 1),
                               f"working-set record of {16 + (64 << 20) + 1} bytes exceeds "
                               f"the {16 + (64 << 20)}-byte bound"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED) + ["ram-too-big"])
def test_crafted_snapshot_file(snap, tmp_path, case):
    """Every bad file is refused by --inspect and by --incoming file: with
    exit 2 and one line saying why; no crash (ASan would say: make
    integration-san), no guest output."""
    assert snap.ram_offset == 2 << 20 and snap.ram_length == 64 << 20, "the cases assume it"
    repl, why = (dict(REC_MACHINE=huge_ram(snap)), None) if case == "ram-too-big" \
        else CRAFTED[case]
    f = crafted_file(snap, tmp_path / case, **repl)
    for args in (["--inspect", f"file:{f}"], ["--incoming", f"file:{f}"]):
        r = subprocess.run([MINIVMM, *args], stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=scaled(20))
        if case == "ram-too-big" and args[0] == "--inspect":
            # A file from a bigger host is a good file to look at.
            assert r.returncode == 0 and "1048576 MiB RAM" in r.stdout, r.stderr
            continue
        errs = [l for l in r.stderr.splitlines() if l.strip()]
        assert r.returncode == 2, (case, args[0], r.returncode, r.stderr)
        assert len(errs) == 1 and errs[0].startswith("minivmm: "), (case, args[0], errs)
        assert why is None or errs[0].endswith(why), (case, args[0], errs[0])
        if args[0] == "--incoming":
            assert "HB " not in r.stdout, r.stdout


def test_crafted_file_unchanged_restores(snap, tmp_path):
    """The crafting itself is sound: the same records rewritten restore, and
    the guest goes on."""
    f = crafted_file(snap, tmp_path / "same")
    r = subprocess.run([MINIVMM, "--inspect", f"file:{f}"], capture_output=True, text=True,
                       timeout=scaled(20))
    assert r.returncode == 0, r.stderr
    p = Proc([MINIVMM, "--incoming", f"file:{f}"])
    try:
        m, _ = p.wait_for(HB, timeout=10)
        assert int(m.group(1)) == snap.hb_seq + 1, p.tail()
    finally:
        p.kill()
