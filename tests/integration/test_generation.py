# SPDX-License-Identifier: MIT
"""Restores that are safe to clone: the VM generation ID and the guest clock
policy, with the test guest (Debian's Linux: test_linux_clone.py).

A boot and every restore of a snapshot make a new ID; a live migration keeps
it. The guest reads it where its DSDT says (console `genid`), the control
socket reports it (query-vm-generation-id) and --inspect shows the saved one:
all three must agree. With --clock=realtime (the default for file:) the
guest's kvmclock jumps by the real time since the save; with continue it
goes on from where it stopped."""
import re
import time

import pytest

from conftest import Qmp, guest_with_socket, run_minivmm, scaled
from test_migrate import destination, migrate
from test_snapshot import HB, last_hb, restore, save, wait_socket

GENID = r"^GENID ([0-9a-f-]{36}) addr=0x([0-9a-f]+)"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def guest_id(proc):
    m = proc.command("genid", GENID)
    assert m.group(1) != "00000000-0000-0000-0000-000000000000"
    return m.group(1)


def qmp_id(sock):
    q = Qmp(sock)
    q.cmd("qmp_capabilities")
    r = q.cmd("query-vm-generation-id")
    q.close()
    assert "return" in r, r
    return r["return"]["guid"]


def inspect_id(snap):
    r = run_minivmm(["--inspect", f"file:{snap}"])
    assert r.returncode == 0, r.stderr
    m = re.search(r"^  vmgenid (%s) at 0x([0-9a-f]+), notified on GSI (\d+)$" % UUID, r.stdout,
                  re.M)
    assert m, r.stdout
    return m.group(1)


def test_boot_makes_a_new_id_seen_alike_everywhere(guest_factory, tmp_path):
    a, asock = guest_with_socket(guest_factory, tmp_path, "a", cpus=1, memory="64M")
    b, bsock = guest_with_socket(guest_factory, tmp_path, "b", cpus=1, memory="64M")
    ida, idb = guest_id(a), guest_id(b)
    assert ida != idb
    assert qmp_id(asock) == ida and qmp_id(bsock) == idb
    assert a.poweroff() == 0 and b.poweroff() == 0


def test_each_restore_is_a_new_copy(guest_factory, tmp_path):
    """A checkpoint, restored twice side by side (eagerly, and lazily through
    userfaultfd, where the ID's page comes in on first touch): three
    machines, three IDs. --inspect shows the saved one, which the source
    still has."""
    g, sock = guest_with_socket(guest_factory, tmp_path, cpus=2, memory="128M")
    g.command("fill 16M", r"^FILL done")
    saved = guest_id(g)
    snap = tmp_path / "snap"
    data, _, _ = save(sock, f"file:{snap}", checkpoint=True)
    assert data["status"] == "completed"
    assert inspect_id(snap) == saved
    copies = []
    try:
        for name, extra in (("c1", ()), ("c2", ("--lazy",))):
            d, dsock = restore(snap, tmp_path, name=name, extra=extra)
            wait_socket(d, dsock).close()
            d.wait_for(HB, timeout=10)
            copies.append((d, dsock))
        ids = [guest_id(d) for d, _ in copies]
        assert len({saved, *ids}) == 3, (saved, ids)
        for (d, dsock), gid in zip(copies, ids):
            assert qmp_id(dsock) == gid
            assert d.command("verify", r"^VERIFY (PASS|FAIL)").group(1) == "PASS", d.tail()
        assert guest_id(g) == saved                 # the source keeps its own
    finally:
        for d, _ in copies:
            d.kill()


def test_live_migration_keeps_the_id(guest_factory, tmp_path):
    g, sock = guest_with_socket(guest_factory, tmp_path, cpus=2, memory="128M")
    before = guest_id(g)
    d, uri, dsock = destination(tmp_path)
    try:
        r = migrate(sock, uri)
        assert r.returncode == 0, r.stderr
        assert g.wait_exit(30) == 0
        d.wait_for(HB, timeout=10)
        assert guest_id(d) == before
        assert qmp_id(dsock) == before
    finally:
        d.kill()


GAP = 3.0       # seconds between the save and the restore


@pytest.mark.parametrize("policy", [None, "continue", "realtime"])
def test_clock_policy(guest_factory, tmp_path, policy):
    """The guest's heartbeat carries its kvmclock. Saved, then restored GAP
    seconds later: with realtime (the default for a file) the clock has
    jumped by at least GAP, with continue by (much) less than GAP."""
    g, sock = guest_with_socket(guest_factory, tmp_path, cpus=2, memory="64M",
                                cmdline="hb=100")
    g.wait_for(HB, timeout=5)
    snap = tmp_path / "snap"
    data, _, _ = save(sock, f"file:{snap}")
    assert data["status"] == "completed" and g.wait_exit(20) == 0
    saved_at = time.monotonic()
    seq_src, ns_src = last_hb(g)
    time.sleep(GAP)             # the subject of the test, not a synchronisation
    extra = ("-v",) + ((f"--clock={policy}",) if policy else ())
    d, dsock = restore(snap, tmp_path, extra=extra)
    try:
        m, _ = d.wait_for(HB, timeout=10)
        gap = time.monotonic() - saved_at
        jump = (int(m.group(2)) - ns_src) / 1e9
        assert int(m.group(1)) == seq_src + 1
        if policy == "continue":
            assert 0 <= jump < 1.0, (jump, gap)
            assert "guest clock:" not in d.output()
        else:
            assert GAP <= jump <= gap + 1.0, (jump, gap)
            assert re.search(r"minivmm: guest clock: [\d.]+ s forward, the real time since "
                             r"the save \(--clock=realtime\)", d.output()), d.tail()
        # The clock runs on at its rate afterwards: heartbeats 100 ms apart.
        m2, _ = d.wait_for(r"^HB seq=%d ns=(\d+)" % (seq_src + 11), timeout=10)
        assert 0.5 <= (int(m2.group(1)) - int(m.group(2))) / 1e9 <= scaled(5)
    finally:
        d.kill()


@pytest.mark.parametrize("args,said", [
    (["--clock=realtime"], "--clock go with --incoming"),
    (["--incoming", "file:/nonexistent", "--clock=later"], "--clock=later: unknown policy"),
])
def test_clock_flag_errors(args, said):
    r = run_minivmm(["--kernel", "/dev/null", *args] if "--incoming" not in args else args)
    assert r.returncode == 2
    assert said in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
