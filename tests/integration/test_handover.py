# SPDX-License-Identifier: MIT
"""The handover of a live migration: READY, GO, RUNNING, and every way it
can go wrong between them. Exactly one copy of the guest runs, always: the
source resumes whenever the destination cannot have run the guest (gone
before GO, GO not sent, ERROR after GO), and stays paused, saying why, only
when it may have (no answer after GO), until the operator's
`cont {"force": true}`. Failpoints (vmm/failpoint.h) put each failure at its
exact phase; each test checks the failpoint fired (a SIGKILLed process
exits with -9)."""
import os
import signal
import subprocess

import pytest

from conftest import GUEST, MINIVMM, Proc, Qmp, run_minivmm
from test_migrate import HB, LISTEN, destination, migrate

KILLED = -signal.SIGKILL
WAITING_FOR_GO = r"incoming migration: READY sent, waiting for GO"


def source(guest_factory, tmp_path, failpoints=None, memory="256M", extra=()):
    sock = str(tmp_path / "src.sock")
    env = dict(os.environ, MINIVMM_FAILPOINTS=failpoints) if failpoints else None
    g = guest_factory(cpus=2, memory=memory, cmdline="hb=50",
                      extra=("--api-sock", sock, *extra), env=env)
    g.ready()
    g.command("fill 32M", r"^FILL done")
    return g, sock


def qmp(sock):
    q = Qmp(sock)
    q.cmd("qmp_capabilities")
    return q


def assert_runs(g, sock):
    """The guest runs here: status, a fresh heartbeat, every page verified."""
    assert qmp(sock).cmd("query-status")["return"]["status"] == "running"
    g.wait_for(HB, timeout=5, start=len(g.lines))
    m = g.command("verify", r"^VERIFY (PASS|FAIL) pages=(\d+)", timeout=60)
    assert m.group(1) == "PASS" and int(m.group(2)) > 0, g.tail()


def assert_never_ran(dst):
    assert "HB " not in dst.output(), dst.tail()


def assert_no_heartbeat(g, seconds=1.0):
    start = len(g.lines)
    with pytest.raises(AssertionError):
        g.wait_for(HB, timeout=seconds, start=start)


def test_destination_killed_after_go_strands_until_forced(guest_factory, tmp_path):
    """Killed after GO, before RUNNING: the guest may have run there, so the
    source stays paused and says so; `cont` refuses with the reason; `cont
    {"force": true}` takes the backends back and resumes."""
    src, ssock = source(guest_factory, tmp_path)
    dst, uri, _ = destination(tmp_path, env={"MINIVMM_FAILPOINTS": "dst-kill-after-go"})
    try:
        r = migrate(ssock, uri)
        assert r.returncode == 1, r.stderr
        assert "may run there" in r.stderr, r.stderr
        assert dst.wait_exit(30) == KILLED
        assert_never_ran(dst)
        q = qmp(ssock)
        assert q.cmd("query-status")["return"]["status"] == "paused"
        err = q.cmd("cont")
        assert "may run there" in err["error"]["desc"], err
        err = q.cmd("migrate", {"uri": f"file:{tmp_path / 'x'}"})
        assert "unconfirmed GO" in err["error"]["desc"], err
        assert_no_heartbeat(src)
        assert q.cmd("cont", {"force": True}) == {"return": {}}
        assert_runs(src, ssock)
    finally:
        dst.kill()


def test_attach_failure_after_go_source_takes_back(tmp_path):
    """The destination cannot take the disk and tap after GO and answers
    ERROR: the source locks its image again, reattaches its tap and
    resumes; the guest verifies, writes its disk and answers pings."""
    from test_virtio import NetNS, blk_pattern, ping
    ns = NetNS(1)
    img = tmp_path / "disk.img"
    img.write_bytes(bytes(16 << 20))
    tap = ns.taps[0]
    ssock = str(tmp_path / "src.sock")
    argv = ["--disk", str(img), "--net", f"tap={tap}"]
    src = Proc(["ip", "netns", "exec", ns.name, MINIVMM, "--kernel", GUEST, "--cpus", "2",
                "--memory", "256M", "--cmdline", "hb=50 ip=10.0.2.15", "--api-sock", ssock,
                *argv])
    dst = None
    try:
        src.wait_for(r"^READY ", timeout=10)
        src.command("fill 32M", r"^FILL done")
        ping(ns.name, "10.0.2.15")
        dst = Proc(["ip", "netns", "exec", ns.name, MINIVMM, "--incoming", "tcp:127.0.0.1:0",
                    *argv], env=dict(os.environ, MINIVMM_FAILPOINTS="dst-attach-fail-after-go"))
        uri = dst.wait_for(LISTEN, timeout=10)[0].group(1)
        r = migrate(ssock, uri)
        assert r.returncode == 1, r.stderr
        assert "refused the guest after GO" in r.stderr and "resumes here" in r.stderr, r.stderr
        assert dst.wait_exit(30) == 2
        assert "failpoint dst-attach-fail-after-go" in dst.output()
        assert_never_ran(dst)
        assert_runs(src, ssock)
        ping(ns.name, "10.0.2.15")                      # the tap is ours again
        src.command("blk write 0 200 16 3", r"^BLK write ok$", timeout=20)
        with open(img, "rb") as f:
            f.seek(200 * 512)
            assert f.read(16 * 512) == blk_pattern(200, 16, 3)
        other = run_minivmm(["--kernel", GUEST, "--disk", str(img), "--paused"])
        assert other.returncode == 2 and "in use" in other.stderr, other.stderr
    finally:
        src.kill()
        if dst:
            dst.kill()
        ns.close()


@pytest.mark.parametrize("lose", ["destination", "both"])
def test_disk_gone_after_go(guest_factory, tmp_path, lose):
    """A real attach failure after GO: each VM opens the image through its
    own symlink, and the test removes them while the source holds before GO
    (failpoint src-wait-peer-before-go gives the window, the destination's
    "waiting for GO" line says when). The destination cannot open its disk
    and answers ERROR. If the source's link is still there it takes the
    image back and resumes; if not, it cannot, so it stays paused saying
    why, until the link is back and `cont {"force": true}`."""
    img = tmp_path / "disk.img"
    img.write_bytes(bytes(4 << 20))
    slink, dlink = tmp_path / "src-disk", tmp_path / "dst-disk"
    slink.symlink_to(img)
    dlink.symlink_to(img)
    src, ssock = source(guest_factory, tmp_path, failpoints="src-wait-peer-before-go",
                        extra=("--disk", str(slink)))
    dst, uri, _ = destination(tmp_path, extra=("-v", "--disk", str(dlink)))
    client = subprocess.Popen([MINIVMM, "--api-sock", ssock, "--migrate", uri],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        dst.wait_for(WAITING_FOR_GO, timeout=60)
        dlink.unlink()
        if lose == "both":
            slink.unlink()
        _, err = client.communicate(timeout=120)
        assert client.returncode == 1, err
        assert "refused the guest after GO" in err, err
        assert dst.wait_exit(30) == 2
        assert_never_ran(dst)
        if lose == "both":
            assert "could not be taken back" in err, err
            q = qmp(ssock)
            assert q.cmd("query-status")["return"]["status"] == "paused"
            assert_no_heartbeat(src)
            err = q.cmd("cont", {"force": True})
            assert "cannot take the disks" in err["error"]["desc"], err
            slink.symlink_to(img)
            assert q.cmd("cont", {"force": True}) == {"return": {}}
        else:
            assert "resumes here" in err, err
        assert_runs(src, ssock)
        src.command("blk write 0 8 8 5", r"^BLK write ok$", timeout=20)
    finally:
        client.kill()
        dst.kill()


def test_go_not_sent_source_resumes(guest_factory, tmp_path):
    """Writing GO fails: it never arrived whole, so the destination cannot
    run the guest; the source resumes."""
    src, ssock = source(guest_factory, tmp_path, failpoints="src-go-write-fail")
    dst, uri, _ = destination(tmp_path)
    try:
        r = migrate(ssock, uri)
        assert r.returncode == 1, r.stderr
        assert "GO could not be sent" in r.stderr and "resumes here" in r.stderr, r.stderr
        assert_runs(src, ssock)
        assert dst.wait_exit(30) != 0
        assert_never_ran(dst)
    finally:
        dst.kill()


def test_destination_killed_between_ready_and_go(guest_factory, tmp_path):
    """The destination dies right after READY: the source sees it gone
    before it sends GO, and resumes."""
    src, ssock = source(guest_factory, tmp_path, failpoints="src-wait-peer-before-go")
    dst, uri, _ = destination(tmp_path, env={"MINIVMM_FAILPOINTS": "dst-kill-after-ready"})
    try:
        r = migrate(ssock, uri)
        assert r.returncode == 1, r.stderr
        assert "went away after READY, before GO" in r.stderr, r.stderr
        assert dst.wait_exit(30) == KILLED
        assert_never_ran(dst)
        assert_runs(src, ssock)
    finally:
        dst.kill()


def test_source_killed_before_go(guest_factory, tmp_path):
    """The source dies after READY, before GO: the destination never runs
    the guest (it is lost with its source, never duplicated)."""
    src, ssock = source(guest_factory, tmp_path, failpoints="src-kill-before-go")
    dst, uri, _ = destination(tmp_path)
    try:
        migrate(ssock, uri)
        assert src.wait_exit(30) == KILLED
        assert dst.wait_exit(30) != 0
        assert_never_ran(dst)
    finally:
        dst.kill()


@pytest.mark.parametrize("how", ["sigterm", "quit"])
def test_destination_told_to_quit_before_go(guest_factory, tmp_path, how):
    """SIGTERM or `quit` while the destination waits for GO gives the
    incoming migration up at once: ERROR to the source, which resumes; the
    destination exits 0 without running the guest."""
    src, ssock = source(guest_factory, tmp_path, failpoints="src-wait-peer-before-go")
    dst, uri, dsock = destination(tmp_path, extra=("-v",))
    client = subprocess.Popen([MINIVMM, "--api-sock", ssock, "--migrate", uri],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        dst.wait_for(WAITING_FOR_GO, timeout=60)
        if how == "sigterm":
            os.kill(dst.proc.pid, signal.SIGTERM)
        else:
            assert qmp(dsock).cmd("quit") == {"return": {}}
        assert dst.wait_exit(30) == 0
        assert "told to quit before GO" in dst.output()
        assert_never_ran(dst)
        _, err = client.communicate(timeout=60)
        assert client.returncode == 1, err
        assert "before GO" in err and "resumed here" in err, err
        assert_runs(src, ssock)
    finally:
        client.kill()
        dst.kill()


def test_destination_quit_after_running_is_an_ordinary_quit(guest_factory, tmp_path):
    """After RUNNING the destination is an ordinary VM: SIGTERM shuts it
    down cleanly (exit 0), having run the guest."""
    src, ssock = source(guest_factory, tmp_path)
    dst, uri, _ = destination(tmp_path)
    try:
        r = migrate(ssock, uri)
        assert r.returncode == 0, r.stderr
        assert src.wait_exit(30) == 0
        dst.wait_for(HB, timeout=30)
        os.kill(dst.proc.pid, signal.SIGTERM)
        assert dst.wait_exit(30) == 0
    finally:
        dst.kill()


# ---- disk data at the handover ----

class Ext4:
    """A real, block-backed ext4 (a loop mount), so that the page cache of a
    disk image can be dirty or clean (tmpfs pages are neither)."""

    def __init__(self, tmp_path, size=64 << 20):
        self.backing = tmp_path / "fs.img"
        with open(self.backing, "wb") as f:
            f.truncate(size)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(self.backing)], check=True)
        self.mnt = tmp_path / "mnt"
        self.mnt.mkdir()
        subprocess.run(["mount", "-o", "loop", str(self.backing), str(self.mnt)], check=True)

    def close(self):
        subprocess.run(["umount", "-l", str(self.mnt)], capture_output=True)


def dirty_pages(path):
    """Pages of `path` still in the page cache after every clean page was
    dropped: the ones not yet written to the disk. (drop_caches writes
    nothing back; mincore() says what is resident.)"""
    import ctypes
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("1")
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    size = os.path.getsize(path)
    pages = (size + 4095) // 4096
    vec = (ctypes.c_ubyte * pages)()
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, 1, 1, fd, 0)           # PROT_READ, MAP_SHARED
        assert addr not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()
        try:
            assert libc.mincore(ctypes.c_void_p(addr), ctypes.c_size_t(size), vec) == 0
        finally:
            libc.munmap(ctypes.c_void_p(addr), ctypes.c_size_t(size))
    finally:
        os.close(fd)
    return sum(v & 1 for v in vec)


@pytest.fixture
def ext4(tmp_path):
    fs = Ext4(tmp_path)
    yield fs
    fs.close()


def test_disks_flushed_before_ready(guest_factory, tmp_path, ext4):
    """What the guest wrote is on the disk before READY: while the
    destination waits for GO (the source held there by a failpoint), no page
    of the image is dirty, though the guest's writes were (a destination on
    another host, reading shared storage, would otherwise miss them). The
    pause's flush is reported."""
    img = ext4.mnt / "disk.img"
    img.write_bytes(bytes(8 << 20))
    os.sync()
    src, ssock = source(guest_factory, tmp_path, failpoints="src-wait-peer-before-go",
                        extra=("--disk", str(img)))
    src.command("blk write 0 64 256 9", r"^BLK write ok$", timeout=20)
    assert dirty_pages(img) > 0, "the guest's writes were not in the page cache: no test"
    dst, uri, _ = destination(tmp_path, extra=("-v", "--disk", str(img)))
    client = subprocess.Popen([MINIVMM, "--api-sock", ssock, "--migrate", uri],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        dst.wait_for(WAITING_FOR_GO, timeout=60)
        assert dirty_pages(img) == 0
        _, err = client.communicate(timeout=120)
        assert client.returncode == 0, err
        dst.wait_for(HB, timeout=30)
        m = dst.command("blk verify 0 64 256 9", r"^BLK verify (\w+)", timeout=30)
        assert m.group(1) == "PASS", dst.tail()
    finally:
        client.kill()
        dst.kill()


def test_snapshot_move_flushes_disks(guest_factory, tmp_path, ext4):
    """A snapshot move reports success only with the guest's disk writes on
    the disk."""
    img = ext4.mnt / "disk.img"
    img.write_bytes(bytes(8 << 20))
    os.sync()
    src, ssock = source(guest_factory, tmp_path, extra=("--disk", str(img)))
    src.command("blk write 0 64 256 9", r"^BLK write ok$", timeout=20)
    assert dirty_pages(img) > 0, "the guest's writes were not in the page cache: no test"
    r = migrate(ssock, f"file:{tmp_path / 'snap'}")
    assert r.returncode == 0, r.stderr
    assert src.wait_exit(30) == 0
    assert dirty_pages(img) == 0
