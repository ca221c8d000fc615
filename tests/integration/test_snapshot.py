# SPDX-License-Identifier: MIT
"""file: snapshots: save a running guest, restore it with no command line,
and check that it carries on exactly: RAM digests equal, its own verify
passes, heartbeat and kvmclock continue. And every bad input refused."""
import os
import re
import subprocess

import pytest

from conftest import GUEST, MINIVMM, Proc, Qmp, guest_with_socket, run_minivmm, scaled

HB = r"^HB seq=(\d+) ns=(\d+)"


start_guest = guest_with_socket


def last_hb(proc):
    """The last heartbeat the guest began on `proc`, and the last time stamp it
    printed whole. A guest frozen halfway through a heartbeat line finishes
    that line where it is restored: that heartbeat counts as this one's."""
    seq = ns = None
    lines = proc.output().splitlines()
    tail = lines.pop() if lines and proc.partial_tail else ""
    for line in lines:
        m = re.match(HB, line)
        if m:
            seq, ns = int(m.group(1)), int(m.group(2))
    if seq is not None and tail and ("HB seq=".startswith(tail) or tail.startswith("HB seq=")):
        seq += 1
    return seq, ns


def save(sock, uri, checkpoint=False, timeout=60):
    """Ask for a snapshot; returns the final query-migrate."""
    q = Qmp(sock)
    q.cmd("qmp_capabilities")
    args = {"uri": uri}
    if checkpoint:
        args["checkpoint"] = True
    r = q.cmd("migrate", args)
    assert "return" in r, r
    ev = q.event("MIGRATION", lambda e: e["data"]["status"] in ("completed", "failed",
                                                                  "cancelled"),
                 timeout=timeout)
    info = None
    if checkpoint or ev["data"]["status"] != "completed":
        info = q.cmd("query-migrate")["return"]
    return ev["data"], info, q


def restore(snap, tmp_path, name="dst", extra=(), failpoints=None, merge_stderr=True):
    """merge_stderr=False: minivmm's own lines (err_lines) apart from the
    guest's console, for lines that may come in the middle of a guest's."""
    sock = str(tmp_path / f"{name}.sock")
    env = dict(os.environ, MINIVMM_FAILPOINTS=failpoints) if failpoints else None
    p = Proc([MINIVMM, "--incoming", f"file:{snap}", "--api-sock", sock, *extra], env=env,
             merge_stderr=merge_stderr)
    return p, sock


def wait_socket(proc, sock):
    """The control socket appears once the VM is built: poll for it (bounded),
    failing at once if the process died."""
    import subprocess as sp
    import time
    deadline = time.monotonic() + scaled(20)
    while not os.path.exists(sock):
        assert time.monotonic() < deadline, "no control socket"
        try:
            proc.proc.wait(0.02)
            raise AssertionError("minivmm exited: " + proc.tail())
        except sp.TimeoutExpired:
            pass
    return Qmp(sock)


def digest(q):
    r = q.cmd("query-ram-digest")
    assert "return" in r, r
    return r["return"]["digest"]


def test_save_restore_continues(guest_factory, tmp_path):
    g, sock = start_guest(guest_factory, tmp_path, cpus=2)
    g.command("fill 128M", r"^FILL done")
    g.command("dirty 64M 20", r"^DIRTY started")
    seq0, ns0 = g.wait_for(HB, timeout=5)[0].groups()
    snap = tmp_path / "snap"
    data, _, _ = save(sock, f"file:{snap}")
    assert data["status"] == "completed"
    assert g.wait_exit(20) == 0                     # a move: the source is gone
    seq_src, ns_src = last_hb(g)
    assert snap.exists() and not list(tmp_path.glob("snap.tmp-*"))
    # The file is never larger than RAM plus state.
    assert snap.stat().st_blocks * 512 <= (512 << 20) + (4 << 20)
    d, dsock = restore(snap, tmp_path, extra=("--paused",))
    try:
        q = wait_socket(d, dsock)
        q.cmd("qmp_capabilities")
        assert q.cmd("query-status")["return"]["status"] == "paused"
        assert digest(q) == data["ram-digest"]
        assert q.cmd("cont") == {"return": {}}
        m, _ = d.wait_for(HB, timeout=10)
        assert int(m.group(1)) == seq_src + 1          # the heartbeat goes on
        assert int(m.group(2)) >= ns_src               # kvmclock never goes back
        d.send("verify\n")
        m, _ = d.wait_for(r"^VERIFY (PASS|FAIL)", timeout=30)
        assert m.group(1) == "PASS", d.tail()
        d.send("stats\n")
        d.wait_for(r"^STATS ", timeout=10)             # the console still answers
        d.send("poweroff\n")
        assert d.wait_exit(20) == 0
    finally:
        d.kill()


@pytest.mark.parametrize("cpus", [1, 4])
def test_chain_of_three(guest_factory, tmp_path, cpus):
    g, sock = start_guest(guest_factory, tmp_path, cpus=cpus, memory="256M")
    g.command("fill 64M", r"^FILL done")
    g.command("dirty 32M 10", r"^DIRTY started")
    prev = g
    data, _, _ = save(sock, f"file:{tmp_path / 's0'}")
    assert data["status"] == "completed" and prev.wait_exit(20) == 0
    seq = last_hb(prev)[0]
    procs = []
    try:
        for i in range(1, 4):
            d, dsock = restore(tmp_path / f"s{i - 1}", tmp_path, name=f"d{i}")
            procs.append(d)
            m, _ = d.wait_for(HB, timeout=10)
            assert int(m.group(1)) == seq + 1
            d.send("verify\n")
            m, _ = d.wait_for(r"^VERIFY (PASS|FAIL)", timeout=30)
            assert m.group(1) == "PASS", d.tail()
            if i == 3:
                d.send("poweroff\n")
                assert d.wait_exit(20) == 0
                break
            wait_socket(d, dsock)
            data, _, _ = save(dsock, f"file:{tmp_path / f's{i}'}")
            assert data["status"] == "completed" and d.wait_exit(20) == 0
            seq = last_hb(d)[0]
    finally:
        for p in procs:
            p.kill()


def test_copy_without_holes_restores(guest_factory, tmp_path):
    """A snapshot copied without its holes (cp --sparse=never, scp, most
    downloads: zero pages become data) restores like the original, and its
    zero pages stay holes in guest RAM."""
    g, sock = start_guest(guest_factory, tmp_path, cpus=1)
    g.command("fill 32M", r"^FILL done")
    snap = tmp_path / "snap"
    data, _, _ = save(sock, f"file:{snap}")
    assert data["status"] == "completed"
    dense = tmp_path / "dense"
    subprocess.run(["cp", "--sparse=never", str(snap), str(dense)], check=True)
    assert dense.stat().st_blocks > 2 * snap.stat().st_blocks       # really no holes
    d, dsock = restore(dense, tmp_path, extra=("--paused",))
    try:
        q = wait_socket(d, dsock)
        q.cmd("qmp_capabilities")
        assert digest(q) == data["ram-digest"]
        assert q.cmd("cont") == {"return": {}}
        d.send("verify\n")
        m, _ = d.wait_for(r"^VERIFY (PASS|FAIL)", timeout=30)
        assert m.group(1) == "PASS", d.tail()
    finally:
        d.kill()


def test_checkpoint_keeps_source_running(guest_factory, tmp_path):
    g, sock = start_guest(guest_factory, tmp_path)
    g.command("fill 32M", r"^FILL done")
    data, info, _ = save(sock, f"file:{tmp_path / 'cp'}", checkpoint=True)
    assert data["status"] == "completed"
    start = len(g.lines)
    g.wait_for(HB, timeout=5, start=start)              # still running
    g.command("verify", r"^VERIFY PASS")
    d, _ = restore(tmp_path / "cp", tmp_path)
    try:
        d.wait_for(HB, timeout=10)
        d.send("verify\n")
        d.wait_for(r"^VERIFY PASS", timeout=30)
    finally:
        d.kill()
    assert g.poweroff() == 0


def rss_mib(proc):
    with open(f"/proc/{proc.proc.pid}/status") as f:
        return int(next(l for l in f if l.startswith("VmRSS:")).split()[1]) // 1024


def test_lazy_restore(guest_factory, tmp_path):
    """--lazy is lazy: right after the restore little of the 256 MiB the
    snapshot holds is resident; reading all of RAM (the digest) brings it in."""
    g, sock = start_guest(guest_factory, tmp_path, memory="1G")
    g.command("fill 256M", r"^FILL done")
    data, _, _ = save(sock, f"file:{tmp_path / 'lz'}")
    assert g.wait_exit(20) == 0
    d, dsock = restore(tmp_path / "lz", tmp_path, extra=("--lazy=mmap", "--paused"))
    try:
        q = wait_socket(d, dsock)
        q.cmd("qmp_capabilities")
        before = rss_mib(d)
        assert before < 64, f"{before} MiB resident right after a lazy restore"
        assert digest(q) == data["ram-digest"]
        assert rss_mib(d) - before >= 200, (before, rss_mib(d))
        q.cmd("cont")
        d.wait_for(HB, timeout=10)
        d.send("verify\n")
        m, _ = d.wait_for(r"^VERIFY (PASS|FAIL)", timeout=30)
        assert m.group(1) == "PASS"
    finally:
        d.kill()


def test_lazy_restore_survives_the_file_changing(guest_factory, tmp_path):
    """The file a --lazy restore maps is opened for writing and truncated
    while the guest runs: the writer is held (a read lease) until the
    guest's RAM is copied off the file, then goes on; the guest runs on,
    every page verifying, instead of dying of SIGBUS."""
    import time
    g, sock = start_guest(guest_factory, tmp_path, memory="512M")
    g.command("fill 128M", r"^FILL done")
    snap = tmp_path / "lz"
    save(sock, f"file:{snap}")
    assert g.wait_exit(20) == 0
    d, dsock = restore(snap, tmp_path, extra=("--lazy=mmap", "-v"))
    try:
        d.wait_for(HB, timeout=10)
        t0 = time.monotonic()
        with open(snap, "r+b") as f:            # held until the copy is done
            f.truncate(0)
            f.write(b"not a snapshot any more" * 100)
        assert time.monotonic() - t0 < scaled(20), "the writer waited for the lease to time out"
        d.wait_for(r"guest RAM taken off it", timeout=10)
        d.wait_for(HB, timeout=10, start=len(d.lines))
        m = d.command("verify", r"^VERIFY (PASS|FAIL) pages=(\d+)", timeout=60)
        assert m.group(1) == "PASS" and int(m.group(2)) >= 128 * 256, d.tail()
        assert d.proc.poll() is None
    finally:
        d.kill()


LAZY_DONE = (r"lazy restore: all of RAM in after (\d+) ms \((\d+) MiB pushed, (\d+) pages "
             r"placed by the push, (\d+) faults for (\d+) pages, p50 (\d+) us, p99 (\d+) us\)")


def test_lazy_uffd_restore_owns_its_ram(guest_factory, tmp_path):
    """--lazy=uffd: the RAM the push brings in is the VM's own: the digest
    matches the saved one, the snapshot can be overwritten at once (no
    lease held after the push), and the VM saves and restores again."""
    import time
    g, sock = start_guest(guest_factory, tmp_path, memory="1G")
    g.command("fill 256M", r"^FILL done")
    snap = tmp_path / "lz"
    data, _, _ = save(sock, f"file:{snap}")
    assert g.wait_exit(20) == 0
    d, dsock = restore(snap, tmp_path, extra=("--lazy=uffd", "--paused", "-v"),
                       merge_stderr=False)
    try:
        q = wait_socket(d, dsock)
        q.cmd("qmp_capabilities")
        m, _ = d.wait_for(LAZY_DONE, timeout=60, sink=d.err_lines)
        assert int(m.group(2)) >= 256, m.group(0)       # the filled 256 MiB pushed
        assert digest(q) == data["ram-digest"]
        t0 = time.monotonic()
        with open(snap, "r+b") as f:                    # nobody holds it now
            f.truncate(0)
        assert time.monotonic() - t0 < 2, "the push ended but the lease was kept"
        q.cmd("cont")
        d.wait_for(HB, timeout=10)
        m = d.command("verify", r"^VERIFY (PASS|FAIL) pages=(\d+)", timeout=60)
        assert m.group(1) == "PASS" and int(m.group(2)) >= 256 * 256, d.tail()
        again, _, _ = save(dsock, f"file:{tmp_path / 'again'}")
        assert d.wait_exit(20) == 0
    finally:
        d.kill()
    e, esock = restore(tmp_path / "again", tmp_path, name="e")
    try:
        e.wait_for(HB, timeout=10)
        m = e.command("verify", r"^VERIFY (PASS|FAIL) pages=(\d+)", timeout=60)
        assert m.group(1) == "PASS" and int(m.group(2)) >= 256 * 256, e.tail()
    finally:
        e.kill()


def test_lazy_uffd_faults_serve_the_guest(guest_factory, tmp_path):
    """The guest runs before its RAM is in: with the push held back until it
    has faulted 64 times (failpoint), its pages come through the fault
    thread, every one of them right (verify), and the push finishes the rest."""
    g, sock = start_guest(guest_factory, tmp_path, cpus=2, memory="512M")
    g.command("fill 128M", r"^FILL done")
    snap = tmp_path / "lz"
    save(sock, f"file:{snap}")
    assert g.wait_exit(20) == 0
    d, _ = restore(snap, tmp_path, extra=("--lazy=uffd", "-v"),
                   failpoints="lazy-push-after-faults", merge_stderr=False)
    try:
        d.wait_for(HB, timeout=10)
        m = d.command("verify", r"^VERIFY (PASS|FAIL) pages=(\d+)", timeout=60)
        assert m.group(1) == "PASS" and int(m.group(2)) >= 128 * 256, d.tail()
        m, _ = d.wait_for(LAZY_DONE, timeout=60, sink=d.err_lines)
        assert int(m.group(4)) >= 64 and int(m.group(5)) >= 64, m.group(0)
        d.wait_for(HB, timeout=10, start=len(d.lines))
        assert d.proc.poll() is None
    finally:
        d.kill()


WS_IN = r"lazy restore: working set of (\d+) pages \((\d+) MiB\) in before the guest runs"


def test_lazy_ws_prefetches_the_working_set(guest_factory, tmp_path):
    """The working set a snapshot records: the pages the guest faulted on
    after its last lazy restore (here: a `verify` of 128 MiB) and those it
    wrote while being saved. --lazy=ws brings them in before the guest runs,
    so the same `verify` after a restore of that snapshot takes far fewer
    faults than with --lazy=uffd on the same file; both pass."""
    g, sock = start_guest(guest_factory, tmp_path, cpus=2, memory="512M")
    g.command("fill 128M", r"^FILL done")
    save(sock, f"file:{tmp_path / 'a'}")
    assert g.wait_exit(20) == 0
    # A recording run: the push held back, every first touch faults.
    d, dsock = restore(tmp_path / "a", tmp_path, name="rec", extra=("--lazy=uffd", "-v"),
                       failpoints="lazy-push-hold", merge_stderr=False)
    try:
        m = d.command("verify", r"^VERIFY (PASS|FAIL) pages=(\d+)", timeout=60)
        assert m.group(1) == "PASS"
        save(dsock, f"file:{tmp_path / 'b'}")
        assert d.wait_exit(20) == 0
    finally:
        d.kill()
    r = run_minivmm(["--inspect", f"file:{tmp_path / 'b'}"])
    m = re.search(r"working set: (\d+) pages", r.stdout)
    assert m and int(m.group(1)) >= 128 * 256, r.stdout        # all that verify read
    faults = {"ws-pages": int(m.group(1))}
    for mode in ("uffd", "ws"):
        d, _ = restore(tmp_path / "b", tmp_path, name=mode, extra=(f"--lazy={mode}", "-v"),
                       merge_stderr=False)
        try:
            if mode == "ws":
                m, _ = d.wait_for(WS_IN, timeout=30, sink=d.err_lines)
                assert int(m.group(1)) >= 1024
            m = d.command("verify", r"^VERIFY (PASS|FAIL) pages=(\d+)", timeout=60)
            assert m.group(1) == "PASS" and int(m.group(2)) >= 128 * 256, d.tail()
            m, _ = d.wait_for(LAZY_DONE, timeout=60, sink=d.err_lines)
            faults[mode] = int(m.group(4))
        finally:
            d.kill()
    assert faults["ws"] * 10 <= faults["uffd"], faults


def test_inspect(guest_factory, tmp_path):
    g, sock = start_guest(guest_factory, tmp_path, cpus=2, memory="256M")
    g.command("fill 16M", r"^FILL done")
    save(sock, f"file:{tmp_path / 'i'}")
    g.wait_exit(20)
    r = run_minivmm(["--inspect", f"file:{tmp_path / 'i'}"])
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "minivmm stream 1.3" in out
    assert "2 vCPU(s), 256 MiB RAM" in out
    m = re.search(r"(\d+) pages present", out)
    assert m and int(m.group(1)) >= 16 * 256
    for node in ("vm ", "cpu0", "cpu1", "msrs"):
        assert node in out, out


def test_inspect_escapes_the_files_strings(guest_factory, tmp_path):
    """A snapshot's strings (here a disk's path and serial, saved as given) reach the
    user's terminal only escaped: no control sequence, no forged line, from --inspect
    or from a restore's refusals."""
    evil = "\x1b[2J\nFAKE LINE"
    img = tmp_path / f"d{evil}.img"
    with open(img, "wb") as f:
        f.truncate(8 << 20)
    g, sock = start_guest(guest_factory, tmp_path, memory="64M",
                          extra=("--disk", f"{img},serial=\x1b[31mS\r"))
    save(sock, f"file:{tmp_path / 'e'}")
    assert g.wait_exit(20) == 0
    # Bytes, not text: text mode would turn a CR into a newline.
    r = subprocess.run([MINIVMM, "--inspect", f"file:{tmp_path / 'e'}"], capture_output=True,
                       stdin=subprocess.DEVNULL, timeout=scaled(20))
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert b"\x1b" not in out and b"\r" not in out, out
    assert not [l for l in out.split(b"\n") if l.startswith(b"FAKE")], out
    shown = f"  virtio-blk {tmp_path}/d\\x1b[2J\\x0aFAKE LINE.img serial=\\x1b[31mS\\x0d"
    assert shown in out.decode().splitlines(), out
    # Unconfirmed, then gone: one line each, escaped.
    for args in ([], ["--accept-backends"]):
        if args:
            img.unlink()
        err = refused(["--incoming", f"file:{tmp_path / 'e'}", *args], ["\\x1b[2J\\x0aFAKE"])
        assert "\x1b" not in err, repr(err)


# ---- bad input: one clear line, non-zero exit, nothing half-restored ----

@pytest.fixture(scope="module")
def good_snapshot(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("good")
    sock = str(tmp / "s.sock")
    g = Proc([MINIVMM, "--kernel", GUEST, "--cpus", "4", "--memory", "64M",
              "--cmdline", "hb=0 fill=8M", "--api-sock", sock])
    try:
        g.wait_for(r"^FILL done", timeout=20)
        data, _, _ = save(sock, f"file:{tmp / 'good'}")
        assert data["status"] == "completed"
        assert g.wait_exit(20) == 0
    finally:
        g.kill()
    return tmp / "good"


def refused(args, words, timeout=20):
    r = run_minivmm(args, timeout=timeout)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    errs = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(errs) == 1 and errs[0].startswith("minivmm: "), r.stderr
    for w in words:
        assert w in errs[0], errs[0]
    assert "READY" not in r.stdout and "HB " not in r.stdout
    return errs[0]


def mutate(good, tmp_path, name, fn):
    data = bytearray(good.read_bytes())
    fn(data)
    p = tmp_path / name
    p.write_bytes(bytes(data))
    return p


def test_truncated(good_snapshot, tmp_path):
    size = good_snapshot.stat().st_size
    for cut in (0, 10, 60, size // 2, size - 1):
        p = mutate(good_snapshot, tmp_path, f"t{cut}", lambda d: d.__delitem__(slice(cut, None)))
        refused(["--incoming", f"file:{p}"], [])


def test_wrong_magic(good_snapshot, tmp_path):
    p = mutate(good_snapshot, tmp_path, "magic", lambda d: d.__setitem__(slice(16, 24), b"NOTMINI\n"))
    refused(["--incoming", f"file:{p}"], ["not a minivmm"])


def test_newer_major(good_snapshot, tmp_path):
    import struct
    import zlib  # noqa: F401  (CRC32C is not in zlib: rebuild the header CRC below)

    def bump(d):
        d[24:26] = struct.pack("<H", 2)
        d[16 + 48:16 + 48 + 4] = struct.pack("<I", crc32c(bytes(d[0:16 + 48])))
    p = mutate(good_snapshot, tmp_path, "major", bump)
    refused(["--incoming", f"file:{p}"], ["version 2", "1."])


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def test_flipped_bytes(good_snapshot, tmp_path):
    """A flipped byte anywhere that matters: header, RAM (eager CRC check),
    machine, state, end records."""
    size = good_snapshot.stat().st_size
    ram = 2 << 20
    spots = [20, 40, ram + 4096 * 3 + 17, size - 200, size - 5]
    for i, off in enumerate(spots):
        p = mutate(good_snapshot, tmp_path, f"f{i}", lambda d: d.__setitem__(off, d[off] ^ 0x20))
        refused(["--incoming", f"file:{p}"], [])


def test_backends_must_be_confirmed(guest_factory, tmp_path):
    img = tmp_path / "disk.img"
    with open(img, "wb") as f:
        f.truncate(8 << 20)
    g, sock = start_guest(guest_factory, tmp_path, memory="64M", extra=("--disk", str(img)))
    save(sock, f"file:{tmp_path / 'b'}")
    assert g.wait_exit(20) == 0
    err = refused(["--incoming", f"file:{tmp_path / 'b'}"], ["--accept-backends", str(img)])
    img2 = tmp_path / "other.img"
    with open(img2, "wb") as f:
        f.truncate(16 << 20)
    refused(["--incoming", f"file:{tmp_path / 'b'}", "--disk", str(img2)], ["sectors"])
    refused(["--incoming", f"file:{tmp_path / 'b'}", "--disk", str(tmp_path / "missing.img")],
            ["missing.img"])
    d = Proc([MINIVMM, "--incoming", f"file:{tmp_path / 'b'}", "--accept-backends"])
    try:
        d.send("verify\n")
        d.wait_for(r"^VERIFY PASS", timeout=20)
    finally:
        d.kill()
    assert err


def test_override_cannot_fit(good_snapshot):
    refused(["--incoming", f"file:{good_snapshot}", "--cpus", "2"], ["4 vCPU"])
    refused(["--incoming", f"file:{good_snapshot}", "--memory", "32M"], ["RAM"])


def test_full_disk_keeps_source_running(guest_factory, tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], check=True)
    try:
        g, sock = start_guest(guest_factory, tmp_path, memory="256M")
        g.command("fill 64M", r"^FILL done")
        data, info, _ = save(sock, f"file:{mnt / 'full'}")
        assert data["status"] == "failed"
        assert "No space" in info["error-desc"] or "space" in info["error-desc"]
        assert not any(mnt.iterdir())                  # nothing that looks complete
        g.command("verify", r"^VERIFY PASS")            # the source runs on
        start = len(g.lines)
        g.wait_for(HB, timeout=5, start=start)
        assert g.poweroff() == 0
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


def test_readonly_dir_and_second_migrate(guest_factory, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(ro)], check=True)
    try:
        g, sock = start_guest(guest_factory, tmp_path, memory="64M")
        g.command("fill 8M", r"^FILL done")
        data, info, q = save(sock, f"file:{ro / 'x'}")
        assert data["status"] == "failed" and info["error-desc"], info
        g.command("stats", r"^STATS ")
        # The failure left nothing behind: a second save, to a writable
        # place, works and the guest restores from it.
        data, _, _ = save(sock, f"file:{tmp_path / 'y'}")
        assert data["status"] == "completed", data
        assert g.wait_exit(20) == 0
        d, dsock = restore(tmp_path / "y", tmp_path)
        try:
            d.wait_for(HB, timeout=10)
            m = d.command("verify", r"^VERIFY (PASS|FAIL) pages=(\d+)", timeout=30)
            assert m.group(1) == "PASS" and int(m.group(2)) > 0
        finally:
            d.kill()
    finally:
        subprocess.run(["umount", "-l", str(ro)])


def test_second_migrate_refused_and_cancel(guest_factory, tmp_path):
    """Deterministic, with a failpoint that holds the save before its RAM
    pass: a second migrate is refused while the first runs; migrate_cancel
    ends the first, leaves no file, and the guest runs on."""
    import os as _os
    sock = str(tmp_path / "f.sock")
    g = guest_factory(cpus=1, memory="64M", cmdline="hb=50",
                      extra=("--api-sock", sock),
                      env=dict(_os.environ, MINIVMM_FAILPOINTS="src-save-stall"))
    g.ready()
    q = Qmp(sock)
    q.cmd("qmp_capabilities")
    assert q.cmd("migrate", {"uri": f"file:{tmp_path / 'one'}"}) == {"return": {}}
    r = q.cmd("migrate", {"uri": f"file:{tmp_path / 'two'}"})
    assert "error" in r and "in progress" in r["error"]["desc"], r
    assert q.cmd("migrate_cancel") == {"return": {}}
    q.event("MIGRATION", lambda e: e["data"]["status"] == "cancelled", timeout=20)
    assert not list(tmp_path.glob("one*")) and not (tmp_path / "two").exists()
    start = len(g.lines)
    g.wait_for(HB, timeout=5, start=start)
    g.command("verify", r"^VERIFY PASS")
    assert g.poweroff() == 0


def test_client_migrate_and_checkpoint(guest_factory, tmp_path):
    """The user's command: `minivmm --api-sock S --migrate file:/snap`."""
    g, sock = start_guest(guest_factory, tmp_path, memory="128M")
    g.command("fill 16M", r"^FILL done")
    r = run_minivmm(["--api-sock", sock, "--migrate", f"file:{tmp_path / 'cp'}",
                     "--checkpoint"], timeout=60)
    assert r.returncode == 0, r.stderr
    assert "completed" in r.stderr                      # plain progress lines (not a tty)
    g.command("verify", r"^VERIFY PASS")                # a checkpoint: still running
    r = run_minivmm(["--api-sock", sock, "--migrate", f"file:{tmp_path / 'mv'}"], timeout=60)
    assert r.returncode == 0, r.stderr
    assert g.wait_exit(20) == 0                         # a move: gone
    assert (tmp_path / "cp").exists() and (tmp_path / "mv").exists()
    # A failing destination: one error line, exit 1.
    g2, sock2 = start_guest(guest_factory, tmp_path, name="g2", memory="64M")
    r = run_minivmm(["--api-sock", sock2, "--migrate", f"file:{tmp_path}/no/such/dir/x"])
    assert r.returncode == 1
    errs = [l for l in r.stderr.splitlines() if l.startswith("minivmm: ")]
    assert len(errs) == 1 and "failed" in errs[0], r.stderr
    g2.command("stats", r"^STATS ")
    r = run_minivmm(["--api-sock", sock2, "--migrate", "ftp://x"])
    assert r.returncode == 1 and "unsupported" in r.stderr
    assert g2.poweroff() == 0


def test_disk_before_and_after(guest_factory, tmp_path):
    """Disk writes before the snapshot are on the image; after restore (with the
    image confirmed by --disk) the guest reads them back and writes more."""
    img = tmp_path / "d.img"
    with open(img, "wb") as f:
        f.truncate(16 << 20)
    g, sock = start_guest(guest_factory, tmp_path, memory="128M",
                          extra=("--disk", f"{img},serial=snapdisk"))
    g.command("blk write 0 10 64 5", r"^BLK write ok$")
    g.command("fill 16M", r"^FILL done")
    data, _, _ = save(sock, f"file:{tmp_path / 'd.snap'}")
    assert data["status"] == "completed" and g.wait_exit(20) == 0
    d = Proc([MINIVMM, "--incoming", f"file:{tmp_path / 'd.snap'}", "--disk", str(img)])
    try:
        d.send("blk verify 0 10 64 5\n")
        m, _ = d.wait_for(r"^BLK verify (\w+)", timeout=20)
        assert m.group(1) == "PASS", d.tail()
        d.send("blk write 0 200 8 9\n")
        d.wait_for(r"^BLK write ok$", timeout=20)
        d.send("blk info 0\n")
        d.wait_for(r"^BLK i=0 sectors=32768 ro=0 serial=snapdisk", timeout=20)
        d.send("verify\n")
        d.wait_for(r"^VERIFY PASS", timeout=30)
        d.send("poweroff\n")
        assert d.wait_exit(20) == 0
    finally:
        d.kill()
    # The second write reached the image: sector 200 carries seed 9's pattern.
    from test_virtio import blk_pattern
    with open(img, "rb") as f:
        f.seek(200 * 512)
        assert f.read(8 * 512) == blk_pattern(200, 8, 9)


def test_live_save_of_full_speed_dirtying_guest(guest_factory, tmp_path):
    """The guest keeps running (and dirtying at full speed) while RAM is
    written; pages are rewritten in place, so the file stays within RAM
    plus state, and the restored guest's own verify passes."""
    g, sock = start_guest(guest_factory, tmp_path, cpus=2, memory="256M")
    g.command("fill 128M", r"^FILL done")
    g.command("dirty 128M 0", r"^DIRTY started")
    data, info, _ = save(sock, f"file:{tmp_path / 'live'}", checkpoint=True)
    assert data["status"] == "completed"
    assert info["ram"]["dirty-sync-count"] >= 1, info      # it saved live, in rounds
    snap = tmp_path / "live"
    assert snap.stat().st_blocks * 512 <= (256 << 20) + (4 << 20)
    start = len(g.lines)
    g.wait_for(HB, timeout=5, start=start)                # the source runs on (checkpoint)
    d, _ = restore(snap, tmp_path)
    try:
        d.send("verify\n")
        m, _ = d.wait_for(r"^VERIFY (PASS|FAIL)", timeout=60)
        assert m.group(1) == "PASS", d.tail()
    finally:
        d.kill()
    assert g.poweroff() == 0
