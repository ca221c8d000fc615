# SPDX-License-Identifier: MIT
"""Postcopy live migration over real loopback TCP between two real minivmm
processes: the destination runs the guest before all of its memory has
arrived and fetches missing pages through userfaultfd; the source serves
them. Every test proves the guest's memory page by page (`verify`) after
the move, and that the guest ran on without a gap."""
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

from conftest import MINIVMM, TIME_FACTOR, Proc, Qmp, run_minivmm, scaled
from test_migrate import LISTEN, check_moved


def source(guest_factory, tmp_path, name="src", cpus=2, memory="512M"):
    """The test guest with its control socket, minivmm's own lines on a
    stderr of their own (err_lines): after the switch the source may have
    things to say while the guest's last line is half printed."""
    sock = str(tmp_path / f"{name}.sock")
    g = guest_factory(cpus=cpus, memory=memory, cmdline="hb=50", extra=("--api-sock", sock),
                      merge_stderr=False)
    g.ready()
    if TIME_FACTOR > 1:
        # Emulated CPUs: a destination starved by busy vCPUs is slow, not gone.
        q = Qmp(sock)
        q.cmd("qmp_capabilities")
        q.cmd("migrate-set-parameters", {"stall-timeout": int(scaled(10) * 1000)})
        q.close()
    return g, sock


def err_text(proc):
    with proc.cond:
        return "\n".join(l for l in proc.err_lines if l is not None)
COMPLETE_DST = r"postcopy complete: all of RAM in (\d+) ms after GO \((\d+) pages placed, (\d+) faults"


def destination(tmp_path, name="dst", extra=(), env=None):
    """A destination with -v on its own stderr (err_lines), apart from the
    guest's console, so its postcopy lines can be waited for."""
    sock = str(tmp_path / f"{name}.sock")
    e = dict(os.environ, **(env or {}))
    d = Proc([MINIVMM, "--incoming", "tcp:127.0.0.1:0", "--api-sock", sock, "-v", *extra],
             env=e, merge_stderr=False)
    m, _ = d.wait_for(LISTEN, timeout=10, sink=d.err_lines)
    return d, m.group(1), sock


def migrate_postcopy(sock, uri, mode="", timeout=120, extra=()):
    flag = "--postcopy" + (f"={mode}" if mode else "")
    return run_minivmm(["--api-sock", sock, "--migrate", uri, flag, *extra], timeout=timeout)


def postcopy_figures(stderr):
    m = re.search(r"migrate: completed: .* postcopy (\d+) ms \((\d+) pages pushed, (\d+) "
                  r"requested in (\d+) requests, fault p50 (\d+) us p99 (\d+) us, blocked "
                  r"(\d+) ms\)", stderr)
    assert m, stderr
    return [int(x) for x in m.groups()]


@pytest.mark.parametrize("cpus", [1, 2, 4])
def test_postcopy_dirtying_guest(guest_factory, tmp_path, cpus):
    """A guest rewriting 512 MiB at full speed on every vCPU across the
    switch: pages it rewrote after they were sent must be dropped at the
    destination and fetched again, or `verify` fails (and the heartbeat
    with it)."""
    # 512 MiB on real CPUs; in the nested test VM (emulated, 1 CPU for all
    # vCPUs) 128 MiB keeps the suite within CI's time.
    size, memory = ("512M", "1G") if TIME_FACTOR == 1 else ("128M", "512M")
    src, ssock = source(guest_factory, tmp_path, cpus=cpus, memory=memory)
    src.command(f"fill {size}", r"^FILL done")
    src.command(f"dirty {size} 0", r"^DIRTY started")
    dst, uri, dsock = destination(tmp_path)
    try:
        r = migrate_postcopy(ssock, uri)
        assert r.returncode == 0, (r.stderr[-2000:], err_text(src), err_text(dst))
        assert "migrate: switched to postcopy: after the first pass" in r.stderr, r.stderr
        t, pushed, requested, nreq, p50, p99, blocked = postcopy_figures(r.stderr)
        assert pushed + requested > 0, r.stderr
        check_moved(src, dst)
        m, _ = dst.wait_for(COMPLETE_DST, timeout=30, sink=dst.err_lines)
        assert int(m.group(2)) > 0
        qd = Qmp(dsock)
        qd.cmd("qmp_capabilities")
        info = qd.cmd("query-migrate")["return"]
        assert info["status"] == "completed", info
        assert info["postcopy"]["pages-needed"] > 0, info
        dst.send("stats\n")
        m, _ = dst.wait_for(r"^STATS .*pages_dirtied=(\d+)", timeout=10)
        assert int(m.group(1)) > 0
    finally:
        dst.kill()


def test_postcopy_idle_guest(guest_factory, tmp_path):
    """A guest that only prints heartbeats: the switch happens after the
    first pass all the same, and whatever it wrote arrives."""
    src, ssock = source(guest_factory, tmp_path, cpus=2, memory="256M")
    src.command("fill 64M", r"^FILL done")
    dst, uri, dsock = destination(tmp_path)
    try:
        r = migrate_postcopy(ssock, uri)
        assert r.returncode == 0, r.stderr
        assert "switched to postcopy" in r.stderr, r.stderr
        check_moved(src, dst)
        dst.wait_for(COMPLETE_DST, timeout=30, sink=dst.err_lines)
    finally:
        dst.kill()


def slow_postcopy(guest_factory, tmp_path, dst_env=None, bandwidth=16 << 20):
    """A guest rewriting 32 MiB, a push held to `bandwidth` so postcopy lasts
    a second or two, the migration started in the background. Returns the
    pieces once the source says postcopy-active."""
    src, ssock = source(guest_factory, tmp_path, cpus=2, memory="512M")
    src.command("fill 32M", r"^FILL done")
    src.command("dirty 32M 0", r"^DIRTY started")
    dst, uri, dsock = destination(tmp_path, env=dst_env)
    q = Qmp(ssock)
    q.cmd("qmp_capabilities")
    q.cmd("migrate-set-parameters", {"max-bandwidth": bandwidth})
    client = Proc([MINIVMM, "--api-sock", ssock, "--migrate", uri, "--postcopy"],
                  stdin=subprocess.DEVNULL)
    ev = q.event("MIGRATION", lambda e: e["data"]["status"] == "postcopy-active", timeout=60)
    assert ev["data"]["postcopy"]["switch-reason"] == "after the first pass", ev
    return src, ssock, dst, dsock, q, client


def test_source_killed_after_switch(guest_factory, tmp_path):
    """The source dies while the destination still lacks pages: the
    destination says postcopy-paused and why, answers its control socket,
    and still stops cleanly when told (no vCPU left hanging on a page)."""
    src, ssock, dst, dsock, q, client = slow_postcopy(guest_factory, tmp_path)
    try:
        os.kill(src.proc.pid, signal.SIGKILL)
        m, _ = dst.wait_for(r"postcopy paused: the connection to the source broke; (\d+) pages "
                            r"are still at the source", timeout=30, sink=dst.err_lines)
        assert int(m.group(1)) > 0
        qd = Qmp(dsock)
        qd.cmd("qmp_capabilities")
        info = qd.cmd("query-migrate")["return"]
        assert info["status"] == "postcopy-paused", info
        assert "connection to the source broke" in info["error-desc"], info
        assert client.wait_exit(30) != 0
        qd.cmd("quit")
        assert dst.wait_exit(30) is not None
    finally:
        client.kill()
        dst.kill()


def test_cancel_after_switch_is_refused(guest_factory, tmp_path):
    """migrate_cancel after the switch would lose the guest: refused, saying
    why; the migration then completes and every page verifies."""
    src, ssock, dst, dsock, q, client = slow_postcopy(guest_factory, tmp_path)
    try:
        r = q.cmd("migrate_cancel")
        assert "error" in r and "switched to postcopy" in r["error"]["desc"], r
        q.cmd("migrate-set-parameters", {"max-bandwidth": 0})
        assert client.wait_exit(60) == 0, client.tail()
        check_moved(src, dst)
    finally:
        client.kill()
        dst.kill()


def test_destination_asking_outside_ram(guest_factory, tmp_path):
    """A destination that asks for pages that are not guest RAM gets none of
    them (logged at the source, ten lines at most) and everything it should."""
    src, ssock = source(guest_factory, tmp_path, cpus=2, memory="256M")
    src.command("fill 64M", r"^FILL done")
    src.command("dirty 32M 0", r"^DIRTY started")
    dst, uri, dsock = destination(tmp_path,
                                  env={"MINIVMM_FAILPOINTS": "dst-postcopy-bad-request"})
    try:
        r = migrate_postcopy(ssock, uri)
        assert r.returncode == 0, r.stderr
        assert re.search(r"asked for 0x4000000000000, which is not a page of guest RAM: refused",
                         err_text(src)), err_text(src)
        assert re.search(r"asked for 0x1, which is not a page of guest RAM: refused",
                         err_text(src)), err_text(src)
        # Twelve asked for in one record: ten lines, not one a request.
        assert err_text(src).count("which is not a page of guest RAM: refused") == 10, \
            err_text(src)
        check_moved(src, dst)
    finally:
        dst.kill()


def test_destination_killed_before_switch(guest_factory, tmp_path):
    """Before the switch a postcopy migration is a precopy one: the
    destination dying leaves the source running, every page intact."""
    from test_migrate import assert_source_running
    src, ssock = source(guest_factory, tmp_path, cpus=2, memory="512M")
    src.command("fill 128M", r"^FILL done")
    src.command("dirty 64M 0", r"^DIRTY started")
    dst, uri, _ = destination(tmp_path, env={"MINIVMM_FAILPOINTS": "dst-kill-bulk"})
    try:
        r = migrate_postcopy(ssock, uri)
        assert r.returncode == 1, r.stderr
        assert dst.wait_exit(30) == -signal.SIGKILL
        assert_source_running(src, ssock)
    finally:
        dst.kill()


def test_auto_switches_when_precopy_cannot_converge(guest_factory, tmp_path):
    """--postcopy=auto: a guest dirtying faster than the (capped) link gets
    postcopy, with the reason in the client's lines and the events, and
    its vCPUs are never throttled."""
    src, ssock = source(guest_factory, tmp_path, cpus=2, memory="512M")
    src.command("fill 128M", r"^FILL done")
    src.command("dirty 128M 0", r"^DIRTY started")
    q = Qmp(ssock)
    q.cmd("qmp_capabilities")
    q.cmd("migrate-set-parameters", {"max-bandwidth": 128 << 20, "downtime-limit": 50})
    dst, uri, dsock = destination(tmp_path)
    try:
        r = migrate_postcopy(ssock, uri, mode="auto")
        assert r.returncode == 0, r.stderr + err_text(src) + err_text(dst)
        assert re.search(r"switched to postcopy: auto: the guest dirties \d+ MB/s, more than "
                         r"half the \d+ MB/s sent", r.stderr), r.stderr
        ev = q.event("MIGRATION", lambda e: e["data"]["status"] == "postcopy-active")
        assert ev["data"]["postcopy"]["switch-reason"].startswith("auto:")
        ev = q.event("MIGRATION", lambda e: e["data"]["status"] == "completed")
        assert ev["data"]["cpu-throttle-percentage"] == 0, ev
        check_moved(src, dst)
    finally:
        dst.kill()


def test_auto_stays_precopy_when_it_converges(guest_factory, tmp_path):
    src, ssock = source(guest_factory, tmp_path, cpus=2, memory="256M")
    src.command("fill 64M", r"^FILL done")
    dst, uri, dsock = destination(tmp_path)
    try:
        r = migrate_postcopy(ssock, uri, mode="auto")
        assert r.returncode == 0, r.stderr
        assert "postcopy" not in r.stderr, r.stderr
        check_moved(src, dst)
    finally:
        dst.kill()


def test_postcopy_interface_errors(guest_factory, tmp_path):
    src, ssock = source(guest_factory, tmp_path, cpus=1, memory="128M")
    q = Qmp(ssock)
    q.cmd("qmp_capabilities")
    r = q.cmd("migrate-start-postcopy")
    assert "postcopy-ram first" in r["error"]["desc"], r
    r = q.cmd("migrate-set-capabilities", {"capabilities": [{"capability": "bogus", "state": True}]})
    assert "not known" in r["error"]["desc"], r
    assert q.cmd("migrate-set-capabilities", {"capabilities": [
        {"capability": "postcopy-ram", "state": True}]}) == {"return": {}}
    assert q.cmd("query-migrate-capabilities")["return"] == [
        {"capability": "postcopy-ram", "state": True}]
    r = q.cmd("migrate-start-postcopy")
    assert "no precopy migration is running" in r["error"]["desc"], r
    r = q.cmd("migrate-set-parameters", {"postcopy-start": "later"})
    assert "postcopy-start must be" in r["error"]["desc"], r
    q.cmd("migrate-set-parameters", {"postcopy-start": "auto"})
    assert q.cmd("query-migrate-parameters")["return"]["postcopy-start"] == "auto"
    r = run_minivmm(["--api-sock", ssock, "--migrate", f"file:{tmp_path}/snap", "--postcopy"])
    assert r.returncode == 2 and "--postcopy goes with a live migration" in r.stderr, r.stderr
    r = run_minivmm(["--api-sock", ssock, "--migrate", "tcp:127.0.0.1:1", "--postcopy=bogus"])
    assert r.returncode == 2 and "--postcopy='bogus'" in r.stderr, r.stderr


class Relay:
    """A TCP relay between the source and the destination, so a test can cut
    the link (both connections closed at once) without killing either side."""

    def __init__(self, target):
        host, port = target.split(":")[-2:]
        self.target = (host, int(port))
        self.lsock = socket.create_server(("127.0.0.1", 0))
        self.uri = f"tcp:127.0.0.1:{self.lsock.getsockname()[1]}"
        self.socks = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        """Every connection (the source opens two: pages, requested pages)."""
        while True:
            try:
                a, _ = self.lsock.accept()
            except OSError:
                return
            b = socket.create_connection(self.target)
            self.socks += [a, b]
            self._start_pumps(a, b)

    def _start_pumps(self, a, b):
        """a: from the source, b: to the destination."""
        for x, y in ((a, b), (b, a)):
            threading.Thread(target=self._pump, args=(x, y), daemon=True).start()

    @staticmethod
    def _pump(x, y):
        try:
            while True:
                data = x.recv(65536)
                if not data:
                    break
                y.sendall(data)
        except OSError:
            pass

    def cut(self):
        try:
            self.lsock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.lsock.close()
        for s in self.socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


def wait_status(sock, status, timeout=30):
    q = Qmp(sock)
    q.cmd("qmp_capabilities")
    deadline = time.monotonic() + scaled(timeout)
    while True:
        info = q.cmd("query-migrate")["return"]
        if info.get("status") == status:
            q.close()
            return info
        assert time.monotonic() < deadline, (status, info)
        time.sleep(0.02)            # polling a status with a deadline, not a sleep to sync


def recover(dsock, ssock, q, cuts_left):
    """migrate-recover at the destination, `--migrate URI --resume` at the
    source, through a new relay; cut that one too while cuts are left."""
    qd = Qmp(dsock)
    qd.cmd("qmp_capabilities")
    r = qd.cmd("migrate-recover", {"uri": "tcp:127.0.0.1:0"})
    assert "return" in r, r
    relay = Relay(r["return"]["uri"])
    if not cuts_left:
        q.cmd("migrate-set-parameters", {"max-bandwidth": 0})
    client = Proc([MINIVMM, "--api-sock", ssock, "--migrate", relay.uri, "--resume"],
                  stdin=subprocess.DEVNULL)
    if cuts_left:
        wait_status(dsock, "postcopy-active")
        relay.cut()
        assert client.wait_exit(30) != 0
        wait_status(ssock, "postcopy-paused")
        wait_status(dsock, "postcopy-paused")
        return recover(dsock, ssock, q, cuts_left - 1)
    assert client.wait_exit(60) == 0, client.tail()
    return client


def bogus_recovery(dsock, garbage=b"GET / HTTP/1.0\r\n\r\n" * 4, then="postcopy-paused"):
    """Something that is not the source connects to the recovery address and
    sends garbage: the destination stays paused, ready for the real one (with
    TLS it never gets past the handshake: still listening, `postcopy-recover`).
    Returns the recovery address."""
    qd = Qmp(dsock)
    qd.cmd("qmp_capabilities")
    r = qd.cmd("migrate-recover", {"uri": "tcp:127.0.0.1:0"})
    port = int(r["return"]["uri"].rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(garbage)
    wait_status(dsock, then)
    return r["return"]["uri"]


def lying_recovery(ssock, src, pages, why):
    """Something that is not the destination on the address a resume goes to:
    it answers the source's resume (its session and all) with a page list for
    `pages` pages. The source refuses it with one line `why`, and stays paused
    with every page it has."""
    from test_incoming import REC_HEADER, record
    lsock = socket.create_server(("127.0.0.1", 0))
    lsock.settimeout(scaled(30))
    client = Proc([MINIVMM, "--api-sock", ssock, "--migrate",
                   f"tcp:127.0.0.1:{lsock.getsockname()[1]}", "--resume"],
                  stdin=subprocess.DEVNULL)
    try:
        conn, _ = lsock.accept()
        with conn:
            conn.settimeout(scaled(30))
            data = b""
            while len(data) < 68 + 28:          # the header and the resume records
                chunk = conn.recv(4096)
                assert chunk, data
                data += chunk
            assert struct.unpack("<I", data[:4])[0] == REC_HEADER, data
            session = struct.unpack("<Q", data[68 + 16:68 + 24])[0]
            bitmap = bytes((pages + 63) // 64 * 8)
            conn.sendall(record(10, struct.pack("<QQQ", pages, 0, session) + bitmap))
            assert client.wait_exit(30) != 0, client.tail()
    finally:
        client.kill()
        lsock.close()
    wait_status(ssock, "postcopy-paused")
    assert err_text(src).count(why) == 1, err_text(src)


@pytest.mark.parametrize("cuts", [1, 2, "bogus", "lying"])
def test_link_cut_mid_postcopy_and_recovered(guest_factory, tmp_path, cuts):
    """The link breaks mid-postcopy (the relay is cut): both sides go to
    postcopy-paused and keep what they have; migrate-recover plus a resume
    over a new link finish the move with every page verified. Cut twice:
    the second break, on the recovered link, is survived the same way; a
    stranger on the recovery address is turned away; a page list that is
    not exactly this machine's RAM (docs/security.md, bounds) is refused."""
    src, ssock = source(guest_factory, tmp_path, cpus=2, memory="512M")
    src.command("fill 32M", r"^FILL done")
    src.command("dirty 32M 0", r"^DIRTY started")
    dst, uri, dsock = destination(tmp_path)
    relay = Relay(uri)
    q = Qmp(ssock)
    q.cmd("qmp_capabilities")
    q.cmd("migrate-set-parameters", {"max-bandwidth": 16 << 20})
    client = Proc([MINIVMM, "--api-sock", ssock, "--migrate", relay.uri, "--postcopy"],
                  stdin=subprocess.DEVNULL)
    try:
        q.event("MIGRATION", lambda e: e["data"]["status"] == "postcopy-active", timeout=60)
        relay.cut()
        ev = q.event("MIGRATION", lambda e: e["data"]["status"] == "postcopy-paused")
        assert "pages are only here" in ev["data"]["error-desc"], ev
        assert client.wait_exit(30) != 0
        info = wait_status(dsock, "postcopy-paused")
        assert "connection to the source broke" in info["error-desc"], info
        # The source refuses a plain migrate and a cancel while paused.
        r = q.cmd("migrate", {"uri": uri})
        assert "paused" in r["error"]["desc"], r
        if cuts == "bogus":
            bogus_recovery(dsock)
        if cuts == "lying":
            pages = (512 << 20) // 4096
            lying_recovery(ssock, src, pages + 64, "the destination answered with a "
                           f"postcopy record of {24 + (pages + 64) // 8} bytes, not its page list")
            # One page short: a bitmap of the same size, its count wrong.
            lying_recovery(ssock, src, pages - 1, "the destination's page list is not for "
                           "this migration")
        recover(dsock, ssock, q, 1 if cuts == 2 else 0)
        check_moved(src, dst)
        dst.wait_for(COMPLETE_DST, timeout=30, sink=dst.err_lines)
    finally:
        client.kill()
        relay.cut()
        dst.kill()


def test_start_postcopy_during_the_first_pass(guest_factory, tmp_path):
    """migrate-start-postcopy at any moment of precopy, here in the middle of
    the first pass: the switch comes at once, and the pages the pass had not
    reached are fetched after it like any other."""
    src, ssock = source(guest_factory, tmp_path, cpus=2, memory="512M")
    src.command("fill 128M", r"^FILL done")
    src.command("dirty 16M 0", r"^DIRTY started")
    dst, uri, dsock = destination(tmp_path)
    q = Qmp(ssock)
    q.cmd("qmp_capabilities")
    q.cmd("migrate-set-capabilities", {"capabilities": [
        {"capability": "postcopy-ram", "state": True}]})
    q.cmd("migrate-set-parameters", {"max-bandwidth": 64 << 20, "postcopy-start": "manual"})
    try:
        assert q.cmd("migrate", {"uri": uri}) == {"return": {}}
        q.event("MIGRATION", lambda e: e["data"]["status"] == "setup")
        assert q.cmd("migrate-start-postcopy") == {"return": {}}
        ev = q.event("MIGRATION", lambda e: e["data"]["status"] == "postcopy-active")
        pc = ev["data"]["postcopy"]
        assert pc["switch-reason"] == "migrate-start-postcopy", pc
        assert pc["pages-needed"] > (16 << 20) // 4096, pc    # more than the dirty set
        q.cmd("migrate-set-parameters", {"max-bandwidth": 0})
        ev = q.event("MIGRATION", lambda e: e["data"]["status"] == "completed", timeout=60)
        assert ev["data"]["postcopy"]["postcopy-time"] > 0
        check_moved(src, dst)
    finally:
        dst.kill()
