# SPDX-License-Identifier: MIT
"""Debian's own Linux, booted to a shell and used end to end.

The cloud kernel (bzImage, 64-bit boot protocol) with an initramfs of
Debian's busybox-static and the kernel's own virtio modules (tests/linux/
build), `--cpus 2`: its init (tests/linux/init) reads and writes the
virtio-blk disk, brings virtio-net up on a tap and talks to the host, reads
virtio-rng, keeps a RAM-resident file whose checksum it knows, and prints a
counter every 100 ms. While it runs it is migrated live over TCP and saved to
a file and restored; the counter must go on without a gap, the disk and RAM
checksums must hold and the network must answer again. poweroff, reboot and a
panic (panic=-1) end minivmm with status 0.

These need a CPU that runs guest kernel mode for real: the nested test VM
(scripts/nested; scripts/test runs them there) or a VT-x/AMD-V host. KVM on
PVM emulates guest kernel mode and Linux stops at its first XRSTOR
(test_linux_boot.py covers what it reaches there), so on PVM they are skipped
with that reason.
"""
import hashlib
import os
import re
import socket

import pytest

from conftest import MINIVMM, Proc, debian_kernel, linux_initramfs, run_minivmm, scaled
from test_virtio import NetNS, ns_socket, ping

pytestmark = pytest.mark.skipif(
    os.path.exists("/sys/module/kvm_pvm"),
    reason="KVM on PVM emulates guest kernel mode: Linux stops at its first XRSTOR here "
           "(PLATFORM.md); these run in the nested test VM (scripts/test does that) or on "
           "a VT-x/AMD-V host")

GUEST_IP, HOST_IP = "10.0.2.15", "10.0.2.1"
WRITE_OFF, WRITE_LEN = 1 << 20, 1 << 20
DISK_SIZE = 4 << 20
COUNT = r"^COUNT (\d+)$"
LISTEN = r"minivmm: incoming migration: listening on (\S+)"
CMDLINE = ("console=ttyS0 quiet panic=-1 "
           f"e2e.ip={GUEST_IP}/24 e2e.host={HOST_IP} e2e.write={WRITE_OFF}:{WRITE_LEN}")


@pytest.fixture(scope="module")
def initramfs():
    return linux_initramfs("build")


@pytest.fixture(scope="module")
def kernel():
    return debian_kernel("cloud")


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class Linux(Proc):
    """minivmm booting the end-to-end guest, in network namespace `ns`."""

    def __init__(self, ns, argv):
        super().__init__(["ip", "netns", "exec", ns.name, MINIVMM, *argv])

    def e2e(self, what, timeout=30.0, start=0):
        m, _ = self.wait_for(r"^E2E (?:FAIL .*|%s)" % what, timeout, start=start)
        assert not m.group(0).startswith("E2E FAIL"), self.tail()
        return m

    def counts(self):
        return [int(m.group(1)) for m in (re.match(COUNT, l) for l in self.output().splitlines())
                if m]


class Setup:
    """A namespace with a tap, a disk image of random bytes, and the paths."""

    def __init__(self, tmp_path, kernel, initramfs):
        self.ns = NetNS(1)
        self.tap = self.ns.taps[0]
        self.disk = str(tmp_path / "disk.img")
        with open(self.disk, "wb") as f:
            f.write(os.urandom(DISK_SIZE))
        self.disk_sha = sha256_file(self.disk)
        self.kernel, self.initramfs, self.tmp = kernel, initramfs, tmp_path
        self.procs = []

    def boot(self, name="src", extra=()):
        argv = ["--kernel", self.kernel, "--initrd", self.initramfs, "--cpus", "2",
                "--memory", "256M", "--cmdline", CMDLINE, "--rng",
                "--api-sock", str(self.tmp / f"{name}.sock"),
                "--disk", self.disk, "--net", f"tap={self.tap}", *extra]
        g = Linux(self.ns, argv)
        self.procs.append(g)
        return g

    def incoming(self, uri, name="dst"):
        # The destination names the disk and tap itself: --accept-backends on
        # tcp: needs an authenticated (TLS) source.
        g = Linux(self.ns, ["--incoming", uri, "--disk", self.disk, "--net", f"tap={self.tap}",
                            "--api-sock", str(self.tmp / f"{name}.sock")])
        self.procs.append(g)
        return g

    def sock(self, name):
        return str(self.tmp / f"{name}.sock")

    def http_get(self, path):
        s = ns_socket(self.ns.name, socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(scaled(10))
        try:
            s.connect((GUEST_IP, 80))
            s.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        finally:
            s.close()
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200"), head
        return body.decode().strip()

    def close(self):
        for p in self.procs:
            p.kill()
        self.ns.close()


@pytest.fixture
def e2e(tmp_path, kernel, initramfs):
    s = Setup(tmp_path, kernel, initramfs)
    yield s
    s.close()


def boot_ready(s, g):
    """Wait for the guest's report of every device; returns the RAM blob's
    checksum. Checks each line against what the host knows."""
    assert g.e2e(r"CPUS (\d+)", timeout=60).group(1) == "2"
    m = g.e2e(r"DISK read bytes=(\d+) sha256=(\w+)")
    assert (int(m.group(1)), m.group(2)) == (DISK_SIZE, s.disk_sha)
    m = g.e2e(r"DISK wrote offset=(\d+) bytes=(\d+) sha256=(\w+)")
    assert (int(m.group(1)), int(m.group(2))) == (WRITE_OFF, WRITE_LEN)
    with open(s.disk, "rb") as f:         # O_DIRECT + fsync in the guest: on the image now
        f.seek(WRITE_OFF)
        assert hashlib.sha256(f.read(WRITE_LEN)).hexdigest() == m.group(3)
    m = g.e2e(r"RNG current=(\S+) hex=(\w*)")
    assert m.group(1).startswith("virtio_rng"), m.group(0)
    assert len(m.group(2)) == 64 and m.group(2) != "0" * 64, m.group(0)
    assert g.e2e(r"NET up ip=(\S+) ping=(\w+)").groups() == (GUEST_IP, "ok")
    blob = g.e2e(r"MEM blob bytes=\d+ sha256=(\w+)").group(1)
    g.e2e("READY")
    g.wait_for(COUNT, timeout=10)
    return blob


def check_guest(s, g, blob):
    """After a move: the disk reads as the host has it, the RAM blob is
    intact, the network answers both ways and the RNG still gives bytes."""
    start = len(g.lines)
    g.send("check\n")
    m = g.e2e(r"CHECK disk=(\w+) mem=(\w+)", start=start)
    assert m.groups() == (sha256_file(s.disk), "ok"), m.group(0)
    ping(s.ns.name, GUEST_IP)
    assert s.http_get("/blob") == blob
    start = len(g.lines)
    g.send("ping\n")
    g.e2e("PING ok", start=start)
    start = len(g.lines)
    g.send("rng\n")
    assert len(g.e2e(r"RNG hex=(\w+)", start=start).group(1)) == 64


def joined_counts(src, dst):
    """COUNT numbers over the move: the source's console followed by the
    destination's (the guest may have been frozen halfway through a line)."""
    guest_out = "".join(l for l in dst.output().splitlines(keepends=True)
                        if not l.startswith("minivmm: "))
    joined = src.output() + ("" if src.partial_tail else "\n") + guest_out
    return [int(x) for x in re.findall(r"^COUNT (\d+)$", joined, re.M)]


def assert_no_gap(src, dst, min_after=10):
    """The counter went on across the move with every number once, and kept
    going on the destination for at least `min_after` more lines."""
    before = src.counts()
    dst.wait_for(r"^COUNT %d$" % (before[-1] + min_after), timeout=30)
    seqs = joined_counts(src, dst)
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs[-40:]


def test_boot_devices_and_poweroff(e2e):
    g = e2e.boot()
    blob = boot_ready(e2e, g)
    ping(e2e.ns.name, GUEST_IP)
    assert e2e.http_get("/blob") == blob
    first = g.counts()[-1]
    g.wait_for(r"^COUNT %d$" % (first + 10), timeout=10)
    seqs = g.counts()
    assert seqs == list(range(len(seqs))), seqs
    g.send("poweroff\n")
    assert g.wait_exit(30) == 0


def test_live_migration(e2e):
    src = e2e.boot()
    blob = boot_ready(e2e, src)
    dst = e2e.incoming("tcp:127.0.0.1:0")
    uri = dst.wait_for(LISTEN, timeout=10)[0].group(1)
    r = run_minivmm(["--api-sock", e2e.sock("src"), "--migrate", uri], timeout=120)
    assert r.returncode == 0, r.stderr
    assert "completed" in r.stderr, r.stderr
    assert src.wait_exit(30) == 0
    assert_no_gap(src, dst)
    check_guest(e2e, dst, blob)
    dst.send("poweroff\n")
    assert dst.wait_exit(30) == 0


def test_snapshot_and_restore(e2e):
    src = e2e.boot()
    blob = boot_ready(e2e, src)
    snap = str(e2e.tmp / "linux.snap")
    r = run_minivmm(["--api-sock", e2e.sock("src"), "--migrate", f"file:{snap}"], timeout=120)
    assert r.returncode == 0, r.stderr + src.tail()
    assert src.wait_exit(30) == 0
    dst = e2e.incoming(f"file:{snap}")
    assert_no_gap(src, dst)
    check_guest(e2e, dst, blob)
    dst.send("poweroff\n")
    assert dst.wait_exit(30) == 0


@pytest.mark.parametrize("how,said", [("poweroff", "guest powered off"),
                                      ("reboot", "guest reset"),
                                      ("panic", "guest reset")])
def test_guest_ends_the_vm(e2e, how, said):
    """poweroff, reboot and a panic with panic=-1 (Linux reboots at once)
    each end minivmm with status 0, saying which it was."""
    g = e2e.boot(extra=("-v",))
    g.e2e("READY", timeout=60)
    g.wait_for(COUNT, timeout=10)
    g.send(how + "\n")
    # Not anchored: the line may follow guest output that did not end its line.
    g.wait_for(r"minivmm: %s" % said, timeout=30)
    assert g.wait_exit(30) == 0
