# SPDX-License-Identifier: MIT
"""Debian's Linux restored from a snapshot is a new copy that knows the time.

Debian's generic kernel (its vmgenid driver is built in; the cloud kernel has
none) with tests/linux/init-clone: Linux's vmgenid driver binds the VMGENCTR
device; one snapshot is restored twice, 10 s after the save, once with the
default clock policy of a file (realtime) and once with --clock=continue.
Each copy has a new generation ID in guest memory (read by the guest through
/dev/mem), Linux reseeded its RNG for the fork (the GED notification reached
the driver), the wall clock is within 1 s of the host's with realtime and
about 10 s behind with continue, and no soft lockup or unstable clocksource
was reported.

Like test_linux_e2e.py these need a CPU that runs guest kernel mode for real:
the nested test VM or a VT-x/AMD-V host; on PVM they are skipped.
"""
import os
import re
import time

import pytest

from conftest import MINIVMM, Proc, debian_kernel, linux_initramfs, run_minivmm
from test_generation import qmp_id
from test_snapshot import save, wait_socket

pytestmark = pytest.mark.skipif(
    os.path.exists("/sys/module/kvm_pvm"),
    reason="KVM on PVM emulates guest kernel mode: Linux stops at its first XRSTOR here "
           "(PLATFORM.md); these run in the nested test VM (scripts/test does that) or on "
           "a VT-x/AMD-V host")

GENID_ADDR = 0xFF000    # arch/x86/layout.h LAYOUT_VMGENID; checked against --inspect
GAP = 10.0              # seconds between the save and the restores
CMDLINE = f"console=ttyS0 quiet panic=-1 e2e.genid={GENID_ADDR}"


@pytest.fixture(scope="module")
def initramfs():
    return linux_initramfs("build-clone")


@pytest.fixture(scope="module")
def kernel():
    return debian_kernel("generic")


class Linux(Proc):
    def e2e(self, what, timeout=30.0):
        m, _ = self.wait_for(r"^E2E (?:ERR .*|%s)" % what, timeout)
        assert not m.group(0).startswith("E2E ERR"), self.tail()
        return m

    def ask(self, cmd, what, timeout=30.0):
        m = self.command(cmd, r"^E2E (?:ERR .*|%s)" % what, timeout)
        assert not m.group(0).startswith("E2E ERR"), self.tail()
        return m

    def clock_offset(self):
        """Guest wall clock minus host wall clock, bounded by the round trip:
        (low, high) such that the true offset lies between them."""
        t0 = time.time()
        g = float(self.ask("now", r"NOW (\d+\.\d+)").group(1))
        t1 = time.time()
        return g - t1, g - t0

    def genid(self):
        h = self.ask("genid", r"GENID ([0-9a-f]*)").group(1)
        assert len(h) == 32 and h != "0" * 32, h
        return h

    def log(self):
        m = self.ask("log", r"LOG fork=(\d+) lockup=(\d+) unstable=(\d+) ged=(\d+)")
        return tuple(int(x) for x in m.groups())


def qmp_genid(sock):
    return qmp_id(sock).replace("-", "")


def restore(tmp_path, snap, name, extra=()):
    sock = str(tmp_path / f"{name}.sock")
    d = Linux([MINIVMM, "--incoming", f"file:{snap}", "--api-sock", sock, "-v", *extra])
    wait_socket(d, sock).close()
    return d, sock


def test_restores_are_new_copies_on_time(tmp_path, kernel, initramfs):
    sock = str(tmp_path / "src.sock")
    g = Linux([MINIVMM, "--kernel", kernel, "--initrd", initramfs, "--cpus", "2",
               "--memory", "256M", "--cmdline", CMDLINE, "--rng", "--api-sock", sock])
    procs = [g]
    try:
        assert g.e2e(r"VMGENID bound=(\w+)", timeout=120).group(1) == "yes", g.tail()
        g.e2e("READY")
        lo, hi = g.clock_offset()
        assert lo - 1 <= 0 <= hi + 1, (lo, hi)            # booted on the host's time
        id0 = g.genid()
        assert qmp_genid(sock) == id0
        assert g.log() == (0, 0, 0, 0)

        snap = tmp_path / "linux.snap"
        data, _, _ = save(sock, f"file:{snap}", timeout=120)
        assert data["status"] == "completed"
        saved = time.monotonic()
        assert g.wait_exit(30) == 0
        r = run_minivmm(["--inspect", f"file:{snap}"])
        m = re.search(r"^  vmgenid ([0-9a-f-]{36}) at 0x([0-9a-f]+), notified on GSI \d+$",
                      r.stdout, re.M)
        assert m and m.group(1).replace("-", "") == id0, r.stdout
        assert int(m.group(2), 16) == GENID_ADDR
        time.sleep(max(0.0, saved + GAP - time.monotonic()))    # the subject: time passes

        ids = [id0]
        for policy in ("default", "continue"):
            extra = ("--clock=continue",) if policy == "continue" else ()
            d, dsock = restore(tmp_path, snap, policy, extra)
            procs.append(d)
            lo, hi = d.clock_offset()
            behind = time.monotonic() - saved
            if policy == "continue":
                # Guest time stood still from the save to this restore.
                assert -behind - 1 <= lo and hi <= -GAP + 1, (lo, hi, behind)
            else:
                assert lo - 1 <= 0 <= hi + 1, (lo, hi)
                assert re.search(r"guest clock: [\d.]+ s forward", d.output()), d.tail()
            gid = d.genid()
            assert gid not in ids, (gid, ids)
            assert qmp_genid(dsock) == gid
            ids.append(gid)
            # One GED interrupt, whose notification reached Linux's vmgenid
            # driver, which reseeded the RNG; the clock's jump alarmed no watchdog.
            assert d.log() == (1, 0, 0, 1), d.tail()
            assert not re.search(r"soft lockup|clocksource.*unstable", d.output()), d.tail()
            d.send("poweroff\n")
            assert d.wait_exit(30) == 0
    finally:
        for p in procs:
            p.kill()
