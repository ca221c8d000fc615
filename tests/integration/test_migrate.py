# SPDX-License-Identifier: MIT
"""Live migration over real loopback TCP (and unix sockets) between two real
minivmm processes: the guest moves while it runs and never notices, except
for the pause; every failure leaves the source running as before."""
import os
import re
import signal
import socket
import struct
import threading
import time

import pytest

from conftest import GUEST, MINIVMM, Proc, Qmp, guest_with_socket, run_minivmm, scaled

HB = r"^HB seq=(\d+) ns=(\d+)"
LISTEN = r"minivmm: incoming migration: listening on (\S+)"


source = guest_with_socket


def destination(tmp_path, name="dst", extra=(), env=None, uri="tcp:127.0.0.1:0"):
    sock = str(tmp_path / f"{name}.sock")
    e = dict(os.environ, **(env or {}))
    d = Proc([MINIVMM, "--incoming", uri, "--api-sock", sock, *extra], env=e)
    m, _ = d.wait_for(LISTEN, timeout=10)
    return d, m.group(1), sock


def hb_seqs(proc):
    return [int(m.group(1)) for m in (re.match(HB, l) for l in proc.output().splitlines()) if m]


def migrate(sock, uri, timeout=120):
    return run_minivmm(["--api-sock", sock, "--migrate", uri], timeout=timeout)


def console_across(src, dst):
    """The guest's console over the move: the source's output, then the
    destination's without the destination's own messages ("listening on
    ..."), which are not part of a line the guest was halfway through."""
    guest_out = "".join(l for l in dst.output().splitlines(keepends=True)
                        if not l.startswith("minivmm: "))
    return src.output() + ("" if src.partial_tail else "\n") + guest_out


def check_moved(src, dst, timeout=30):
    """The source exited 0; the destination runs the guest on from where it
    was. The guest may be frozen halfway through printing a heartbeat line:
    its console output is the source's followed by the destination's, so the
    sequence is checked on the two joined. The guest's clock (kvmclock, in
    each heartbeat) never goes back across the move, and every page the
    guest wrote verifies (there must be some: a guest that wrote nothing
    verifies trivially)."""
    assert src.wait_exit(30) == 0
    dst.wait_for(HB, timeout=timeout)
    joined = console_across(src, dst)
    beats = [(int(a), int(b)) for a, b in re.findall(r"HB seq=(\d+) ns=(\d+)\n", joined + "\n")]
    seqs = [s for s, _ in beats]
    before = hb_seqs(src)
    assert before and seqs[-1] > before[-1], (before[-3:], seqs[-3:])
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), (seqs, src.output()[-200:],
                                                               dst.output()[:200])
    clock = [ns for _, ns in beats]
    assert clock == sorted(clock), "the guest's clock went back: %s" % clock[-10:]
    dst.send("verify\n")
    m, _ = dst.wait_for(r"^VERIFY (PASS|FAIL) pages=(\d+)", timeout=60)
    assert m.group(1) == "PASS", dst.tail()
    assert int(m.group(2)) > 0, "nothing to verify: the test must write first"


@pytest.mark.parametrize("cpus", [1, 2, 4])
def test_migrate_idle(guest_factory, tmp_path, cpus):
    src, ssock = source(guest_factory, tmp_path, cpus=cpus, memory="256M")
    src.command("fill 64M", r"^FILL done")
    dst, uri, _ = destination(tmp_path)
    try:
        r = migrate(ssock, uri)
        assert r.returncode == 0, r.stderr
        assert "completed" in r.stderr
        # An idle guest fits the default limit (300 ms) with room to spare.
        downtime = int(re.search(r"downtime (\d+) ms", r.stderr).group(1))
        assert downtime <= 300, r.stderr
        check_moved(src, dst)
        dst.send("poweroff\n")
        assert dst.wait_exit(20) == 0
    finally:
        dst.kill()


def test_ram_digest_equal_at_switch(guest_factory, tmp_path):
    """Stopped source: what arrives is exactly what was there, page for page."""
    src, ssock = source(guest_factory, tmp_path, memory="512M")
    src.command("fill 100M", r"^FILL done")
    q = Qmp(ssock)
    q.cmd("qmp_capabilities")
    assert q.cmd("stop") == {"return": {}}
    want = q.cmd("query-ram-digest")["return"]
    dst, uri, dsock = destination(tmp_path, extra=("--paused",))
    try:
        r = migrate(ssock, uri)
        assert r.returncode == 0, r.stderr
        assert src.wait_exit(30) == 0
        qd = Qmp(dsock)
        qd.cmd("qmp_capabilities")
        got = qd.cmd("query-ram-digest")["return"]
        assert got["digest"] == want["digest"]
        assert got["chunks"] == want["chunks"]
        qd.cmd("cont")
        dst.wait_for(HB, timeout=10)
    finally:
        dst.kill()


def test_ram_digest_equal_live(guest_factory, tmp_path):
    """A guest dirtying memory at full speed on both vCPUs, migrated live:
    the source kept paused (--keep-source-paused) and the destination
    started --paused hold, page for page, the same RAM."""
    src, ssock = source(guest_factory, tmp_path, cpus=2, memory="512M")
    src.command("fill 128M", r"^FILL done")
    src.command("dirty 64M 0", r"^DIRTY started")
    dst, uri, dsock = destination(tmp_path, extra=("--paused",))
    try:
        r = run_minivmm(["--api-sock", ssock, "--migrate", uri, "--keep-source-paused"],
                        timeout=120)
        assert r.returncode == 0, r.stderr
        qs, qd = Qmp(ssock), Qmp(dsock)
        qs.cmd("qmp_capabilities")
        qd.cmd("qmp_capabilities")
        assert qs.cmd("query-status")["return"]["status"] == "postmigrate"
        want = qs.cmd("query-ram-digest")["return"]
        got = qd.cmd("query-ram-digest")["return"]
        assert got["pages-present"] > 0
        assert got["chunks"] == want["chunks"]
        assert got["digest"] == want["digest"]
        qs.cmd("quit")
        assert src.wait_exit(30) == 0
        qd.cmd("cont")
        dst.wait_for(HB, timeout=10)
        m = dst.command("verify", r"^VERIFY (PASS|FAIL) pages=(\d+)", timeout=60)
        assert m.group(1) == "PASS" and int(m.group(2)) > 0
    finally:
        dst.kill()


@pytest.mark.parametrize("ring", ["4096", "0"])
def test_migrate_while_dirtying_full_speed(guest_factory, tmp_path, ring):
    """256 MiB dirtied at full speed on every vCPU converges with the defaults
    (auto-converge), over the dirty ring and over the bitmap."""
    src, ssock = source(guest_factory, tmp_path, cpus=2, memory="1G",
                        extra=("--dirty-ring", ring))
    src.command("fill 256M", r"^FILL done")
    src.command("dirty 256M 0", r"^DIRTY started")
    dst, uri, _ = destination(tmp_path)
    try:
        r = migrate(ssock, uri)
        assert r.returncode == 0, r.stderr
        m = re.search(r"downtime (\d+) ms", r.stderr)
        assert m, r.stderr
        check_moved(src, dst, timeout=30)
        dst.send("stats\n")
        m, _ = dst.wait_for(r"^STATS .*pages_dirtied=(\d+)", timeout=10)
        assert int(m.group(1)) > 0
    finally:
        dst.kill()


def test_back_and_forth_five_times(guest_factory, tmp_path):
    src, ssock = source(guest_factory, tmp_path, cpus=2, memory="256M")
    src.command("fill 64M", r"^FILL done")
    src.command("dirty 32M 50", r"^DIRTY started")
    cur, csock = src, ssock
    procs = []
    try:
        for hop in range(5):
            dst, uri, dsock = destination(tmp_path, name=f"hop{hop}")
            procs.append(dst)
            r = migrate(csock, uri)
            assert r.returncode == 0, (hop, r.stderr)
            check_moved(cur, dst)
            cur, csock = dst, dsock
        cur.send("poweroff\n")
        assert cur.wait_exit(20) == 0
    finally:
        for p in procs:
            p.kill()


def test_unix_socket(guest_factory, tmp_path):
    src, ssock = source(guest_factory, tmp_path, memory="128M")
    src.command("fill 16M", r"^FILL done")
    dst, uri, _ = destination(tmp_path, uri=f"unix:{tmp_path / 'mig.sock'}")
    try:
        assert uri.startswith("unix:")
        r = migrate(ssock, uri)
        assert r.returncode == 0, r.stderr
        check_moved(src, dst)
    finally:
        dst.kill()


# ---- failures: the source resumes as if nothing happened ----

def assert_source_running(src, ssock, status=("failed",)):
    q = Qmp(ssock)
    q.cmd("qmp_capabilities")
    info = q.cmd("query-migrate")["return"]
    assert info["status"] in status, info
    assert q.cmd("query-status")["return"]["status"] == "running"
    start = len(src.lines)
    m, _ = src.wait_for(HB, timeout=5, start=start)            # the heartbeat goes on
    m = src.command("verify", r"^VERIFY PASS pages=(\d+)", timeout=60)
    assert int(m.group(1)) > 0, "nothing to verify: the test must write first"
    return info


@pytest.mark.parametrize("phase", ["dst-kill-bulk", "dst-kill-rounds", "dst-kill-final",
                                   "dst-kill-before-ready", "dst-error-before-ready"])
def test_destination_dies_source_resumes(guest_factory, tmp_path, phase):
    src, ssock = source(guest_factory, tmp_path, cpus=2, memory="512M")
    src.command("fill 128M", r"^FILL done")
    src.command("dirty 64M 0", r"^DIRTY started")
    q = Qmp(ssock)
    q.cmd("qmp_capabilities")
    # 64 MiB of dirty pages would go in one pause of ~50 ms: ask for less, so there are rounds.
    q.cmd("migrate-set-parameters", {"downtime-limit": 5})
    dst, uri, _ = destination(tmp_path, env={"MINIVMM_FAILPOINTS": phase})
    try:
        r = migrate(ssock, uri)
        assert r.returncode == 1, r.stderr
        assert len([l for l in r.stderr.splitlines() if l.startswith("minivmm: ")]) == 1
        rc = dst.wait_exit(30)
        if phase.startswith("dst-kill"):
            assert rc == -signal.SIGKILL, rc                    # the failpoint fired
        else:
            assert rc == 2 and f"failpoint {phase}" in dst.output(), (rc, dst.tail())
            # It failed after setting up its control socket: no stale socket left.
            assert not os.path.exists(tmp_path / "dst.sock")
        assert "HB " not in dst.output()                       # never ran the guest
        info = assert_source_running(src, ssock)
        assert info.get("error-desc")
    finally:
        dst.kill()


def test_keep_source_paused(guest_factory, tmp_path):
    """--keep-source-paused: the source stays, paused for inspection, and can
    never run the guest again; the destination runs it."""
    src, ssock = source(guest_factory, tmp_path, memory="256M")
    src.command("fill 32M", r"^FILL done")
    dst, uri, _ = destination(tmp_path)
    try:
        r = run_minivmm(["--api-sock", ssock, "--migrate", uri, "--keep-source-paused"],
                        timeout=120)
        assert r.returncode == 0, r.stderr
        assert re.search(r"completed: .*downtime \d+ ms", r.stderr), r.stderr
        dst.wait_for(HB, timeout=10)
        assert src.proc.poll() is None                  # still there
        q = Qmp(ssock)
        q.cmd("qmp_capabilities")
        assert q.cmd("query-status")["return"] == {"status": "postmigrate", "running": False}
        assert q.cmd("query-migrate")["return"]["status"] == "completed"
        err = q.cmd("cont")
        assert "migrated away" in err["error"]["desc"], err
        err = q.cmd("migrate", {"uri": f"file:{tmp_path / 'again'}"})
        assert "migrated away" in err["error"]["desc"], err
        start = len(src.lines)
        with pytest.raises(AssertionError):             # never runs here again
            src.wait_for(HB, timeout=1.0, start=start)
        q.cmd("quit")
        assert src.wait_exit(20) == 0
        dst.send("verify\n")
        m, _ = dst.wait_for(r"^VERIFY (PASS|FAIL)", timeout=60)
        assert m.group(1) == "PASS"
        r = run_minivmm(["--api-sock", ssock, "--status", "--keep-source-paused"])
        assert r.returncode == 2 and "goes with --migrate" in r.stderr
    finally:
        dst.kill()


def filled_pair(guest_factory, tmp_path, params):
    """A source with 256 MiB filled, a destination, and the source's control
    socket with these migrate parameters set."""
    src, ssock = source(guest_factory, tmp_path, memory="512M")
    src.command("fill 256M", r"^FILL done")
    dst, uri, _ = destination(tmp_path)
    q = Qmp(ssock)
    q.cmd("qmp_capabilities")
    q.cmd("migrate-set-parameters", params)
    return src, ssock, dst, uri, q


def test_cancel(guest_factory, tmp_path):
    # ~30 s for 256 MiB at this rate: the cancel surely comes first.
    src, ssock, dst, uri, q = filled_pair(guest_factory, tmp_path, {"max-bandwidth": 8 << 20})
    try:
        assert q.cmd("migrate", {"uri": uri}) == {"return": {}}
        q.event("MIGRATION", lambda e: e["data"]["status"] == "setup")
        assert q.cmd("migrate_cancel") == {"return": {}}
        q.event("MIGRATION", lambda e: e["data"]["status"] in ("cancelled", "failed"),
                timeout=20)
        assert dst.wait_exit(30) != 0
        assert "HB " not in dst.output()
        assert_source_running(src, ssock, status=("cancelled",))
    finally:
        dst.kill()


def test_cancel_with_stalled_destination(guest_factory, tmp_path):
    """A cancel does not wait for the stall timeout: the source cuts the
    connection it is blocked on and resumes at once."""
    src, ssock, dst, uri, q = filled_pair(guest_factory, tmp_path, {"stall-timeout": 600000})
    try:
        os.kill(dst.proc.pid, signal.SIGSTOP)           # connects (backlog), never reads
        assert q.cmd("migrate", {"uri": uri}) == {"return": {}}
        q.event("MIGRATION", lambda e: e["data"]["status"] == "setup", timeout=20)
        # Wait until the sender is stuck: socket buffers full, no progress.
        deadline, last, since = time.monotonic() + scaled(20), -1, time.monotonic()
        while time.monotonic() - since < 0.5:
            assert time.monotonic() < deadline, "the sender never blocked"
            sent = q.cmd("query-migrate")["return"]["ram"]["transferred"]
            if sent != last:
                last, since = sent, time.monotonic()
            time.sleep(0.05)
        assert last > 0
        t0 = time.monotonic()
        assert q.cmd("migrate_cancel") == {"return": {}}
        q.event("MIGRATION", lambda e: e["data"]["status"] == "cancelled", timeout=20)
        assert time.monotonic() - t0 < 5
        os.kill(dst.proc.pid, signal.SIGCONT)
        assert dst.wait_exit(30) != 0
        assert "HB " not in dst.output()
        assert_source_running(src, ssock, status=("cancelled",))
    finally:
        if dst.proc.poll() is None:
            os.kill(dst.proc.pid, signal.SIGCONT)
        dst.kill()


def test_stalled_destination(guest_factory, tmp_path):
    src, ssock, dst, uri, q = filled_pair(guest_factory, tmp_path, {"stall-timeout": 1000})
    try:
        os.kill(dst.proc.pid, signal.SIGSTOP)
        r = migrate(ssock, uri, timeout=60)
        assert r.returncode == 1, r.stderr
        assert_source_running(src, ssock)
    finally:
        if dst.proc.poll() is None:
            os.kill(dst.proc.pid, signal.SIGCONT)
        dst.kill()


def test_never_past_the_downtime_limit(guest_factory, tmp_path):
    """A limit no switchover can meet (1 ms: the fixed cost alone is ~2 ms):
    the migration throttles the vCPUs all the way, then fails saying why,
    instead of switching over past the limit; the guest runs on here."""
    src, ssock, dst, uri, q = filled_pair(guest_factory, tmp_path, {"downtime-limit": 1})
    try:
        r = migrate(ssock, uri)
        assert r.returncode == 1, r.stderr
        assert "did not converge" in r.stderr and "downtime limit of 1 ms" in r.stderr, r.stderr
        assert dst.wait_exit(30) != 0
        assert "HB " not in dst.output()
        info = assert_source_running(src, ssock)
    finally:
        dst.kill()


def test_bad_uri_and_second_migrate(guest_factory, tmp_path):
    src, ssock = source(guest_factory, tmp_path, memory="128M")
    src.command("fill 16M", r"^FILL done")
    r = migrate(ssock, "tcp:127.0.0.1")
    assert r.returncode == 1 and "tcp:" in r.stderr
    r = migrate(ssock, "tcp:127.0.0.1:1")                     # nobody listens
    assert r.returncode == 1 and "connect" in r.stderr
    assert_source_running(src, ssock)
    assert src.poweroff() == 0


def test_disk_and_net_change_hands(tmp_path):
    """A guest with a disk and a NIC moves; the destination, in the same
    network namespace, takes over the same tap name after GO and the image
    lock after the source drops it. The host pings the guest before and
    after, and a stream of UDP to the guest's sink goes on."""
    from test_virtio import NetNS, blk_pattern, ping, udp_to_sink, net_stats
    ns = NetNS(1)
    img = tmp_path / "disk.img"
    with open(img, "wb") as f:
        f.truncate(16 << 20)
    tap = ns.taps[0]
    ssock, dsock = str(tmp_path / "s.sock"), str(tmp_path / "d.sock")
    src = Proc(["ip", "netns", "exec", ns.name, MINIVMM, "--kernel", GUEST, "--cpus", "2",
                "--memory", "256M", "--cmdline", "hb=50 ip=10.0.2.15", "--api-sock", ssock,
                "--disk", str(img), "--net", f"tap={tap},mac=52:54:00:00:00:01"])
    dst = None
    try:
        src.wait_for(r"^READY ", timeout=10)
        src.command("fill 16M", r"^FILL done")
        src.send("blk write 0 100 32 7\n")
        src.wait_for(r"^BLK write ok$", timeout=20)
        ping(ns.name, "10.0.2.15")
        sent1, _, _ = udp_to_sink(ns.name, ns.host_ip(), "10.0.2.15", 1 << 20)
        dst = Proc(["ip", "netns", "exec", ns.name, MINIVMM, "--incoming", "tcp:127.0.0.1:0",
                    "--api-sock", dsock, "--disk", str(img), "--net", f"tap={tap}"])
        m, _ = dst.wait_for(LISTEN, timeout=10)
        r = run_minivmm(["--api-sock", ssock, "--migrate", m.group(1)], timeout=120)
        assert r.returncode == 0, r.stderr
        check_moved(src, dst)
        ping(ns.name, "10.0.2.15")                       # the same tap, now the destination's
        sent2, _, _ = udp_to_sink(ns.name, ns.host_ip(), "10.0.2.15", 1 << 20)
        sink_bytes, _, _ = net_stats(dst)
        assert sink_bytes == sent1 + sent2               # the sink's count came along too
        dst.send("blk verify 0 100 32 7\n")
        m, _ = dst.wait_for(r"^BLK verify (\w+)", timeout=20)
        assert m.group(1) == "PASS", dst.tail()
        dst.send("blk write 0 300 8 9\n")
        dst.wait_for(r"^BLK write ok$", timeout=20)
        with open(img, "rb") as f:
            f.seek(300 * 512)
            assert f.read(8 * 512) == blk_pattern(300, 8, 9)
    finally:
        src.kill()
        if dst:
            dst.kill()
        ns.close()


class UdpStream:
    """Host -> guest sink through the tap, in bursts each followed by an echo
    probe, on a thread until stopped: a stream that keeps going while the
    guest changes hands. Records when each probe came back."""

    def __init__(self, ns, host_ip, guest_ip, burst=16, dgram=1400):
        from test_virtio import ns_socket
        self.sock = ns_socket(ns, socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host_ip, 0))
        self.sock.settimeout(0.05)
        self.dst, self.burst, self.dgram = guest_ip, burst, dgram
        self.sent = 0
        self.acks = []                  # monotonic times of answered probes
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def probe(self, token):
        deadline = time.monotonic() + scaled(10)
        while time.monotonic() < deadline and not self.stop.is_set():
            try:
                self.sock.sendto(token, (self.dst, 7))
                while self.sock.recv(2048) != token:
                    pass
                return True
            except OSError:             # timeout, or the tap between owners
                continue
        return False

    def run(self):
        n = 0
        while not self.stop.is_set():
            for _ in range(self.burst):
                try:
                    self.sent += self.sock.sendto(b"\x5a" * self.dgram, (self.dst, 9))
                except OSError:
                    pass
            n += 1
            if not self.probe(struct.pack("!Q", n)):
                return
            self.acks.append(time.monotonic())

    def close(self):
        self.stop.set()
        self.thread.join(20)
        self.sock.close()


@pytest.mark.parametrize("postcopy", [False, True], ids=["precopy", "postcopy"])
def test_disk_and_net_in_use_during_migration(tmp_path, postcopy):
    """While the guest reads its disk (the VMM writes guest RAM under the
    migration) and the host streams UDP to it through the tap, the guest
    moves: every read verifies on either side, and the stream goes on when
    the destination takes over the same tap name. In postcopy the device
    threads at the destination fault on pages still at the source too."""
    from test_virtio import NetNS, blk_pattern, net_stats
    ns = NetNS(1)
    sectors = 131072                                      # 64 MiB
    img = tmp_path / "disk.img"
    img.write_bytes(blk_pattern(0, sectors, 7))
    tap = ns.taps[0]
    ssock = str(tmp_path / "s.sock")
    src = Proc(["ip", "netns", "exec", ns.name, MINIVMM, "--kernel", GUEST, "--cpus", "2",
                "--memory", "256M", "--cmdline", "hb=50 ip=10.0.2.15", "--api-sock", ssock,
                "--disk", str(img), "--net", f"tap={tap},mac=52:54:00:00:00:01"])
    dst = stream = None
    try:
        src.wait_for(r"^READY ", timeout=10)
        src.command("fill 64M", r"^FILL done")
        dst = Proc(["ip", "netns", "exec", ns.name, MINIVMM, "--incoming", "tcp:127.0.0.1:0",
                    "--disk", str(img), "--net", f"tap={tap}"])
        m, _ = dst.wait_for(LISTEN, timeout=10)
        q = Qmp(ssock)
        q.cmd("qmp_capabilities")
        # ~0.3 s of precopy for the stream to go on through; a read's 16 MiB of
        # buffers still fit the default downtime at this rate, so the switch
        # does not wait for the guest to stop reading.
        q.cmd("migrate-set-parameters", {"max-bandwidth": 256 << 20})
        stream = UdpStream(ns.name, ns.host_ip(), "10.0.2.15")
        deadline = time.monotonic() + scaled(10)
        while len(stream.acks) < 3:
            assert time.monotonic() < deadline, "no UDP echo before the migration"
            time.sleep(0.01)
        # Reads back to back for longer than the migration lasts, so one is
        # almost surely in flight at the switch: its data must not be lost.
        # (The source's unread console input does not move; what it took does.)
        src.send("".join(f"blk verify 0 0 {sectors} 7\n" for _ in range(2000)))
        src.wait_for(r"^BLK verify", timeout=20)          # the reads are under way
        t0 = time.monotonic()
        r = run_minivmm(["--api-sock", ssock, "--migrate", m.group(1)] +
                        (["--postcopy"] if postcopy else []), timeout=120)
        t1 = time.monotonic()
        assert r.returncode == 0, r.stderr
        assert ("switched to postcopy" in r.stderr) == postcopy, r.stderr
        # The guest came with part of a queued command in its UART FIFO: end it.
        dst.send("\n")
        check_moved(src, dst)
        deadline = time.monotonic() + scaled(10)
        while not stream.acks or stream.acks[-1] < t1 + 0.5:
            assert time.monotonic() < deadline, "the stream stopped at the switch"
            time.sleep(0.01)
        assert any(t0 < t < t1 for t in stream.acks), "no echo while the migration ran"
        stream.close()
        joined = console_across(src, dst)
        results = list(re.finditer(r"^BLK verify (\w+)$", joined, re.M))
        assert results and {m.group(1) for m in results} == {"PASS"}, joined[-2000:]
        dst.send(f"blk verify 0 0 {sectors} 7\n")
        m, _ = dst.wait_for(r"^BLK verify (\w+)", timeout=20)
        assert m.group(1) == "PASS"
        sink_bytes, _, _ = net_stats(dst)
        assert 0 < sink_bytes <= stream.sent             # what arrived was counted, on both sides
    finally:
        if stream:
            stream.close()
        src.kill()
        if dst:
            dst.kill()
        ns.close()
