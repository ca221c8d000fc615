# SPDX-License-Identifier: MIT
"""virtio-blk, virtio-net and virtio-rng end to end: the test guest's polling
drivers (tests/guest/{virtio,blk,net,rng}.c) against real minivmm devices, with
the host checking what arrived: image bytes, tap traffic in a network namespace.

Console words are the contract in docs/test-guest.md. Every wait is a marker
with a timeout; namespaces (and the taps in them) are removed even on failure.
"""
import ctypes
import os
import shutil
import socket
import struct
import subprocess
import threading
import time
import zlib

import pytest

import conftest
from conftest import GUEST, Guest, Proc

SECTOR = 512
K_MIX = 0xD6E8FEB86659FD93
K_STEP = 0x9E3779B97F4A7C15
M64 = (1 << 64) - 1
PAT_CYCLE = 251                     # net send: byte k of the stream is k % 251
CLONE_NEWNET = 0x40000000


def sector_pattern(sector, seed):
    """What `blk write N SECTOR COUNT SEED` puts in one sector."""
    base = ((sector << 32) | seed) * K_MIX
    return struct.pack("<64Q", *[(base + i * K_STEP) & M64 for i in range(1, 65)])


def blk_pattern(sector, count, seed):
    return b"".join(sector_pattern(s, seed) for s in range(sector, sector + count))


def send_pattern(nbytes):
    cycle = bytes(range(PAT_CYCLE))
    return (cycle * (nbytes // PAT_CYCLE + 1))[:nbytes]


def make_image(tmp_path, name, size, fill=None):
    path = tmp_path / name
    with open(path, "wb") as f:
        if fill is None:
            f.truncate(size)
        else:
            f.write(fill(size))
    return str(path)


def read_at(path, offset, length):
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


# ---- guests ----

class VGuest(Guest):
    """minivmm with devices, optionally inside a network namespace."""

    def __init__(self, extra=(), netns=None, memory="256M", cmdline="hb=0", cpus=1):
        argv = [conftest.MINIVMM, "--kernel", GUEST, "--cpus", str(cpus), "--memory", memory,
                "--cmdline", cmdline, *extra]
        if netns:
            argv = ["ip", "netns", "exec", netns, *argv]
        Proc.__init__(self, argv)

    def devices(self):
        start = len(self.lines)
        self.send("devices\n")
        m, end = self.wait_for(r"^DEVICES n=(\d+)", 10, start=start)
        devs = []
        for line in self.lines[start:end]:
            if line and line.startswith("DEV "):
                devs.append(dict(kv.split("=", 1) for kv in line.split()[1:]))
        assert len(devs) == int(m.group(1)), self.tail()
        return devs


@pytest.fixture
def vguest():
    made = []

    def make(*a, **kw):
        g = VGuest(*a, **kw)
        made.append(g)
        g.ready()
        return g
    yield make
    for g in made:
        g.kill()


# ---- network namespaces ----

_libc = ctypes.CDLL(None, use_errno=True)


def ns_socket(ns, *args):
    """A socket created inside network namespace `ns` (from a throwaway thread:
    setns() moves only the calling thread)."""
    box = {}

    def run():
        try:
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
            finally:
                os.close(fd)
            box["sock"] = socket.socket(*args)
        except Exception as e:          # noqa: BLE001 - re-raised below
            box["err"] = e
    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "err" in box:
        raise box["err"]
    return box["sock"]


class NetNS:
    """A namespace with taps tapN (10.0.(2+N).1/24 on the host side)."""

    def __init__(self, ntaps=1):
        self.name = f"mvt{os.getpid()}_{id(self) & 0xffff:x}"
        self.taps = []
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        try:
            self.ip("link", "set", "lo", "up")
            for i in range(ntaps):
                tap = f"mvtap{i}"
                self.ip("tuntap", "add", tap, "mode", "tap")
                self.ip("addr", "add", f"10.0.{2 + i}.1/24", "dev", tap)
                self.ip("link", "set", tap, "up")
                self.taps.append(tap)
        except BaseException:
            self.close()
            raise

    def ip(self, *args):
        subprocess.run(["ip", "-n", self.name, *args], check=True, capture_output=True)

    def host_ip(self, i=0):
        return f"10.0.{2 + i}.1"

    def close(self):
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


@pytest.fixture
def netns_factory():
    made = []

    def make(ntaps=1):
        ns = NetNS(ntaps)
        made.append(ns)
        return ns
    yield make
    for ns in made:
        ns.close()


def ping(ns, ip, count=3):
    """The host pings the guest from inside the namespace: `ping` if installed,
    else the same with a raw ICMP socket."""
    if shutil.which("ping"):
        # -w: wait for all `count` replies until a deadline (with -W alone, ping
        # gives up on late replies once one came back, 2x its RTT later).
        deadline = int(conftest.scaled(10))
        r = subprocess.run(["ip", "netns", "exec", ns, "ping", "-c", str(count), "-i", "0.2",
                            "-w", str(deadline), ip], capture_output=True, text=True,
                           timeout=deadline + 20)
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"{count} received" in r.stdout, r.stdout
        return
    s = ns_socket(ns, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.settimeout(conftest.scaled(2))
    try:
        for seq in range(1, count + 1):
            payload = b"minivmm-ping-%d" % seq
            hdr = struct.pack("!BBHHH", 8, 0, 0, 0x4d56, seq)
            csum = inet_csum(hdr + payload)
            s.sendto(struct.pack("!BBHHH", 8, 0, csum, 0x4d56, seq) + payload, (ip, 0))
            while True:
                data, _ = s.recvfrom(2048)
                icmp = data[(data[0] & 15) * 4:]
                if icmp[0] == 0 and struct.unpack("!HH", icmp[4:8]) == (0x4d56, seq):
                    assert icmp[8:] == payload
                    break
    finally:
        s.close()


def inet_csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff


def udp_to_sink(ns, host_ip, guest_ip, nbytes, dgram=1400, burst=64):
    """Host -> guest: `nbytes` to the guest's UDP sink (port 9), `burst`
    datagrams at a time, each burst followed by a probe to the echo port (7)
    whose reply proves the burst was taken (so nothing is dropped for lack of
    receive buffers). Returns (bytes, crc, seconds)."""
    s = ns_socket(ns, socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host_ip, 0))
    s.settimeout(0.5)
    sent, crc, probe = 0, 0, 0
    t0 = time.monotonic()
    try:
        while sent < nbytes:
            for _ in range(burst):
                if sent >= nbytes:
                    break
                chunk = os.urandom(min(dgram, nbytes - sent))
                s.sendto(chunk, (guest_ip, 9))
                crc = zlib.crc32(chunk, crc)
                sent += len(chunk)
            probe += 1
            token = struct.pack("!Q", probe)
            for _ in range(20):
                s.sendto(token, (guest_ip, 7))
                try:
                    while s.recv(2048) != token:
                        pass
                    break
                except socket.timeout:
                    continue
            else:
                raise AssertionError("no UDP echo from the guest")
        return sent, crc, time.monotonic() - t0
    finally:
        s.close()


class UdpReceiver:
    """A host UDP socket in the namespace counting bytes and the CRC of what
    arrives, in arrival order."""

    def __init__(self, ns, host_ip, port=0):
        self.sock = ns_socket(ns, socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)    # SO_RCVBUFFORCE
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
        self.sock.bind((host_ip, port))
        self.port = self.sock.getsockname()[1]
        self.bytes, self.dgrams, self.crc = 0, 0, 0
        self.cond = threading.Condition()
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.sock.settimeout(0.2)
        self.thread.start()

    def _run(self):
        while not self.stop:
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            with self.cond:
                self.bytes += len(d)
                self.dgrams += 1
                self.crc = zlib.crc32(d, self.crc)
                self.cond.notify_all()

    def wait_bytes(self, n, timeout):
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.bytes < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
            return self.bytes, self.crc

    def close(self):
        self.stop = True
        self.thread.join(2)
        self.sock.close()


def net_stats(g, i=0):
    m = g.command(f"net stats {i}", r"^NETSTATS i=%d .*sink_bytes=(\d+) sink_dgrams=(\d+) "
                  r"sink_crc=([0-9a-f]{8})" % i)
    return int(m.group(1)), int(m.group(2)), int(m.group(3), 16)


# ---- virtio-blk ----

def test_no_devices(vguest):
    g = vguest()
    assert g.devices() == []
    g.command("blk info 0", r"^ERR no blk 0")
    assert g.poweroff() == 0


def test_blk_guest_write_host_reads(vguest, tmp_path):
    img = make_image(tmp_path, "d0.img", 8 << 20)
    g = vguest(extra=["--disk", img])
    devs = g.devices()
    assert [d["type"] for d in devs] == ["blk"] and devs[0]["base"] == "0xd0000000"
    m = g.command("blk info 0", r"^BLK i=0 sectors=(\d+) ro=(\d) serial=(\S*) flush=(\d)")
    assert m.groups() == (str((8 << 20) // SECTOR), "0", "", "1")
    g.command("blk write 0 100 300 7", r"^BLK write ok$")
    g.command("blk flush 0", r"^BLK flush ok$")
    # 300 sectors, then an unaligned odd one far away
    g.command("blk write 0 16383 1 99", r"^BLK write ok$")
    assert read_at(img, 100 * SECTOR, 300 * SECTOR) == blk_pattern(100, 300, 7)
    assert read_at(img, 16383 * SECTOR, SECTOR) == sector_pattern(16383, 99)
    assert read_at(img, 0, 100 * SECTOR) == bytes(100 * SECTOR)       # untouched
    assert read_at(img, 400 * SECTOR, SECTOR) == bytes(SECTOR)
    assert g.command("blk verify 0 100 300 7", r"^BLK verify (\w+)").group(1) == "PASS"
    m = g.command("blk verify 0 100 300 8", r"^BLK verify FAIL bad=(\d+) first=(\d+)")
    assert m.groups() == ("300", "100")
    assert g.poweroff() == 0


def test_blk_host_writes_guest_reads(vguest, tmp_path):
    """Host data reaches the guest: CRCs agree, also past the guest's 16 MiB
    arena (several chunks of many requests each)."""
    size = 40 << 20
    img = make_image(tmp_path, "d0.img", size, fill=os.urandom)
    g = vguest(extra=["--disk", img])
    for sector, count in ((0, 1), (7, 9), (1000, 2048), (4096, 70000)):
        want = zlib.crc32(read_at(img, sector * SECTOR, count * SECTOR))
        m = g.command(f"blk read 0 {sector} {count}", r"^BLK read ok crc=([0-9a-f]{8})",
                      timeout=60)
        assert int(m.group(1), 16) == want, (sector, count)
    # the host rewrites a sector: the guest's verify pinpoints it
    g.command("blk write 0 50 10 3", r"^BLK write ok$")
    with open(img, "r+b") as f:
        f.seek(55 * SECTOR + 17)
        f.write(b"X")
    m = g.command("blk verify 0 50 10 3", r"^BLK verify FAIL bad=(\d+) first=(\d+)")
    assert m.groups() == ("1", "55")
    assert g.poweroff() == 0


def test_blk_out_of_range(vguest, tmp_path):
    img = make_image(tmp_path, "d0.img", 1 << 20)
    g = vguest(extra=["--disk", img])
    g.command("blk read 0 2047 1", r"^BLK read ok ")
    g.command("blk read 0 2047 2", r"^BLK read err status=1$")
    g.command("blk write 0 2048 1 1", r"^BLK write err status=1$")
    assert os.path.getsize(img) == 1 << 20
    g.command("blk read 0 0 1", r"^BLK read ok ")        # still alive
    assert g.poweroff() == 0


def test_blk_three_disks(vguest, tmp_path):
    imgs = [make_image(tmp_path, f"d{i}.img", (2 + i) << 20, fill=os.urandom) for i in range(3)]
    extra = []
    for i, img in enumerate(imgs):
        extra += ["--disk", f"{img},serial=disk-{i}"]
    g = vguest(extra=extra)
    devs = g.devices()
    assert [(d["type"], d["unit"]) for d in devs] == [("blk", "0"), ("blk", "1"), ("blk", "2")]
    for i, img in enumerate(imgs):
        m = g.command(f"blk info {i}", r"^BLK i=%d sectors=(\d+) ro=0 serial=(\S*) " % i)
        assert m.groups() == (str(((2 + i) << 20) // SECTOR), f"disk-{i}")
        n = ((2 + i) << 20) // SECTOR
        m = g.command(f"blk read {i} 0 {n}", r"^BLK read ok crc=([0-9a-f]{8})")
        assert int(m.group(1), 16) == zlib.crc32(open(img, "rb").read())
    # writes land in the right image only
    before = [open(p, "rb").read() for p in imgs]
    g.command("blk write 1 8 4 42", r"^BLK write ok$")
    after = [open(p, "rb").read() for p in imgs]
    assert after[0] == before[0] and after[2] == before[2]
    assert after[1][8 * SECTOR:12 * SECTOR] == blk_pattern(8, 4, 42)
    assert after[1][:8 * SECTOR] == before[1][:8 * SECTOR]
    assert after[1][12 * SECTOR:] == before[1][12 * SECTOR:]
    assert g.poweroff() == 0


def test_blk_readonly(vguest, tmp_path):
    img = make_image(tmp_path, "ro.img", 1 << 20, fill=os.urandom)
    orig = open(img, "rb").read()
    g = vguest(extra=["--disk", f"{img},readonly,serial=RO-1"])
    m = g.command("blk info 0", r"^BLK i=0 sectors=\d+ ro=(\d) serial=(\S*) .*discard=(\d) "
                  r"wzeroes=(\d)")
    assert m.groups() == ("1", "RO-1", "0", "0")
    g.command("blk write 0 0 8 1", r"^BLK write err status=1$")
    g.command("blk zero 0 0 8", r"^BLK zero err status=[12]$")
    g.command("blk discard 0 0 8", r"^BLK discard err status=[12]$")
    m = g.command("blk read 0 0 2048", r"^BLK read ok crc=([0-9a-f]{8})")
    assert int(m.group(1), 16) == zlib.crc32(orig)
    assert g.poweroff() == 0
    assert open(img, "rb").read() == orig


def test_blk_serial_max_length(vguest, tmp_path):
    img = make_image(tmp_path, "s.img", 1 << 20)
    serial = "ABCDEFGHIJ0123456789"             # 20 bytes: no NUL in GET_ID's answer
    g = vguest(extra=["--disk", f"{img},serial={serial}"])
    m = g.command("blk info 0", r"^BLK i=0 .*serial=(\S*) ")
    assert m.group(1) == serial
    assert g.poweroff() == 0


def test_blk_discard_and_write_zeroes(vguest, tmp_path):
    img = make_image(tmp_path, "z.img", 4 << 20, fill=lambda n: b"\xaa" * n)
    g = vguest(extra=["--disk", img])
    m = g.command("blk info 0", r"^BLK i=0 .*discard=(\d) wzeroes=(\d)")
    assert m.groups() == ("1", "1")
    g.command("blk zero 0 16 8", r"^BLK zero ok$")
    g.command("blk discard 0 64 64", r"^BLK discard ok$")
    data = open(img, "rb").read()
    assert data[16 * SECTOR:24 * SECTOR] == bytes(8 * SECTOR)
    assert data[:16 * SECTOR] == b"\xaa" * (16 * SECTOR)
    assert data[24 * SECTOR:64 * SECTOR] == b"\xaa" * (40 * SECTOR)
    # minivmm discards by punching a hole: the range reads back as zeroes
    assert data[64 * SECTOR:128 * SECTOR] == bytes(64 * SECTOR)
    assert data[128 * SECTOR:] == b"\xaa" * (len(data) - 128 * SECTOR)
    m = g.command("blk read 0 16 8", r"^BLK read ok crc=([0-9a-f]{8})")
    assert int(m.group(1), 16) == zlib.crc32(bytes(8 * SECTOR))
    g.command(f"blk zero 0 {(4 << 20) // SECTOR - 1} 2", r"^BLK zero err status=1$")
    assert g.poweroff() == 0


def test_blk_bench_command(vguest, tmp_path):
    img = make_image(tmp_path, "b.img", 16 << 20)
    g = vguest(extra=["--disk", img])
    for mode, op in (("seq", "write"), ("seq", "read"), ("rand", "read"), ("rand", "write")):
        m = g.command(f"blk bench 0 {mode} {op} 4M 4K 16",
                      r"^BLKBENCH i=0 mode=(\w+) op=(\w+) bs=4096 qd=16 bytes=(\d+) ns=(\d+) "
                      r"iops=(\d+) mbps=(\d+)", timeout=60)
        assert m.group(1, 2, 3) == (mode, op, str(4 << 20))
        assert int(m.group(5)) > 0
    g.command("blk bench 0 seq read 4M 4K 1000", r"^ERR bad bench size")
    assert g.poweroff() == 0


def test_fill_all_with_devices(vguest, tmp_path):
    """The drivers' DMA pool is not part of the workload area: `fill all` and
    `verify` still pass while the rings and buffers are in use."""
    img = make_image(tmp_path, "f.img", 4 << 20)
    g = vguest(extra=["--disk", img, "--rng"], cpus=2)
    g.command("blk write 0 0 2048 5", r"^BLK write ok$")
    g.command("fill all", r"^FILL done ", timeout=60)
    g.command("blk verify 0 0 2048 5", r"^BLK verify PASS$")
    g.command("rng 4096", r"^RNG bytes=4096 ")
    assert g.command("verify", r"^VERIFY (\w+)", timeout=60).group(1) == "PASS"
    assert g.poweroff() == 0


# ---- virtio-rng ----

def test_rng(vguest):
    g = vguest(extra=["--rng"])
    assert [d["type"] for d in g.devices()] == ["rng"]
    reads = []
    for _ in range(2):
        m = g.command("rng 65536", r"^RNG bytes=65536 distinct=(\d+) hex=([0-9a-f]{32})$")
        assert int(m.group(1)) >= 250
        reads.append(m.group(2))
    assert reads[0] != reads[1]
    m = g.command("rng 100000", r"^RNG bytes=100000 distinct=(\d+) ")   # several buffers
    assert int(m.group(1)) == 256
    assert g.poweroff() == 0


# ---- virtio-net ----

def test_net_ping_and_udp(vguest, netns_factory):
    ns = netns_factory()
    g = vguest(extra=["--net", f"tap={ns.taps[0]},mac=52:54:00:12:34:56"], netns=ns.name,
               cmdline="hb=0 ip=10.0.2.15")
    m = g.command("net info", r"^NET i=0 mac=(\S+) ip=(\S+)$")
    assert m.groups() == ("52:54:00:12:34:56", "10.0.2.15")
    ping(ns.name, "10.0.2.15")

    # host -> guest: a few MiB into the sink, flow-controlled by echo probes
    nbytes, crc, _ = udp_to_sink(ns.name, ns.host_ip(), "10.0.2.15", 3 << 20)
    sink_bytes, dgrams, sink_crc = net_stats(g)
    assert (sink_bytes, sink_crc) == (nbytes, crc)
    assert dgrams == -(-nbytes // 1400)

    # guest -> host: the pattern arrives whole and in order
    rx = UdpReceiver(ns.name, ns.host_ip())
    try:
        total = 4 << 20
        m = g.command(f"net send {ns.host_ip()} {rx.port} {total}",
                      r"^NETSEND bytes=(\d+) dgrams=(\d+) ns=(\d+) mbps=(\d+)", timeout=60)
        assert int(m.group(1)) == total
        got, crc = rx.wait_bytes(total, timeout=conftest.scaled(20))
    finally:
        rx.close()
    assert got == total
    assert crc == zlib.crc32(send_pattern(total))
    assert rx.dgrams == int(m.group(2)) == -(-total // 1472)

    # small datagrams too, and clearing the sink
    g.command("net clear", r"^NET cleared$")
    nbytes, crc, _ = udp_to_sink(ns.name, ns.host_ip(), "10.0.2.15", 10000, dgram=1)
    assert net_stats(g)[::2] == (10000, crc)
    assert g.poweroff() == 0


def test_net_send_unreachable(vguest, netns_factory):
    ns = netns_factory()
    g = vguest(extra=["--net", f"tap={ns.taps[0]}"], netns=ns.name)
    g.command("net send 10.0.2.77 9 1000", r"^NETSEND err=arp$", timeout=20)
    ping(ns.name, "10.0.2.15", count=1)       # default address, still answering
    assert g.poweroff() == 0


def test_net_two_nics(vguest, netns_factory):
    ns = netns_factory(ntaps=2)
    g = vguest(extra=["--net", f"tap={ns.taps[0]}", "--net", f"tap={ns.taps[1]}"],
               netns=ns.name, cmdline="hb=0 ip=10.0.2.20,10.0.3.30")
    devs = g.devices()
    assert [(d["type"], d["unit"]) for d in devs] == [("net", "0"), ("net", "1")]
    start = len(g.lines)
    g.send("net info\n")
    m0, _ = g.wait_for(r"^NET i=0 mac=(\S+) ip=10\.0\.2\.20$", start=start)
    m1, _ = g.wait_for(r"^NET i=1 mac=(\S+) ip=10\.0\.3\.30$", start=start)
    assert m0.group(1) != m1.group(1)
    ping(ns.name, "10.0.2.20")
    ping(ns.name, "10.0.3.30")
    nbytes, crc, _ = udp_to_sink(ns.name, ns.host_ip(1), "10.0.3.30", 256 << 10)
    assert net_stats(g, 1)[::2] == (nbytes, crc)
    assert net_stats(g, 0)[0] == 0
    rx = UdpReceiver(ns.name, ns.host_ip(0))
    try:
        g.command(f"net send {ns.host_ip(0)} {rx.port} 100000", r"^NETSEND bytes=100000 ")
        assert rx.wait_bytes(100000, 10) == (100000, zlib.crc32(send_pattern(100000)))
    finally:
        rx.close()
    assert g.poweroff() == 0


def test_disk_net_rng_together(vguest, netns_factory, tmp_path):
    ns = netns_factory()
    img = make_image(tmp_path, "all.img", 2 << 20)
    g = vguest(extra=["--rng", "--net", f"tap={ns.taps[0]}", "--disk", f"{img},serial=all"],
               netns=ns.name, cpus=2)
    devs = g.devices()     # disks first, then NICs, then rng, whatever the flag order
    assert [d["type"] for d in devs] == ["blk", "net", "rng"]
    assert [d["base"] for d in devs] == ["0xd0000000", "0xd0001000", "0xd0002000"]
    g.command("blk write 0 0 64 11", r"^BLK write ok$")
    ping(ns.name, "10.0.2.15")
    g.command("rng 1000", r"^RNG bytes=1000 ")
    nbytes, crc, _ = udp_to_sink(ns.name, ns.host_ip(), "10.0.2.15", 512 << 10)
    assert net_stats(g)[::2] == (nbytes, crc)
    g.command("blk verify 0 0 64 11", r"^BLK verify PASS$")
    assert g.poweroff() == 0
    assert read_at(img, 0, 64 * SECTOR) == blk_pattern(0, 64, 11)


def test_net_rx_ring_overflow_recovers(vguest, netns_factory, tmp_path):
    """While the guest is busy elsewhere (a blk benchmark: nobody polls the
    NIC), the host floods it: the device runs out of receive buffers, stops
    taking frames from the tap, and must take them again once the guest
    posts buffers (event-index kick)."""
    ns = netns_factory()
    img = make_image(tmp_path, "busy.img", 16 << 20)
    g = vguest(extra=["--disk", img, "--net", f"tap={ns.taps[0]}"], netns=ns.name)
    ping(ns.name, "10.0.2.15", count=1)          # ARP settled on both sides
    start = len(g.lines)
    g.send("blk bench 0 rand read 32M 4K 1\n")
    g.wait_for(r"^blk bench", start=start)      # the echo: the command has started
    s = ns_socket(ns.name, socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((ns.host_ip(), 0))
        for i in range(3000):
            s.sendto(struct.pack("!I", i) * 25, ("10.0.2.15", 9))
        g.wait_for(r"^BLKBENCH i=0 mode=rand", timeout=120, start=start)
        # an echo answered means every frame queued before it was taken
        s.settimeout(1)
        for _ in range(20):
            s.sendto(b"probe", ("10.0.2.15", 7))
            try:
                if s.recv(100) == b"probe":
                    break
            except socket.timeout:
                pass
        else:
            raise AssertionError("the guest no longer answers after the flood")
    finally:
        s.close()
    got = net_stats(g)[1]
    assert 256 <= got < 3000, got       # the ring ran dry: the tap dropped some
    g.command("net clear", r"^NET cleared$")
    nbytes, crc, _ = udp_to_sink(ns.name, ns.host_ip(), "10.0.2.15", 1 << 20)
    assert net_stats(g)[::2] == (nbytes, crc)
    assert g.poweroff() == 0
