# SPDX-License-Identifier: MIT
"""Debian's own kernels, as far as PLATFORM.md says they get on this host.

The uncompressed vmlinux, through PVH and through the 64-bit Linux boot
protocol, must reach `smpboot: Allowing N CPUs`, having printed our e820 map
and found our ACPI tables. A bzImage must decompress itself and start the kernel it
carries (its banner: Debian's decompressor prints nothing of its own).
The kernels come from `scripts/fetch-kernels` (run by scripts/setup); their
absence is a failure, not a skip.
"""
import os
import re

import pytest

from conftest import CACHE, MINIVMM, Proc, scaled

CMDLINE = "console=ttyS0 earlyprintk=serial,ttyS0,115200 clearcpuid=cx16 noxsave"
FLAVOURS = ["cloud", "generic"]


def kernel(flavour, name):
    path = os.path.join(CACHE, "kernels", flavour, name)
    if not os.path.exists(path):
        pytest.fail(f"{path} is missing: run scripts/fetch-kernels (or scripts/setup)")
    return path


def boot(path, cpus, protocol, memory="1G"):
    return Proc([MINIVMM, "--kernel", path, "--cpus", str(cpus), "--memory", memory,
                 "--boot", protocol, "--cmdline", CMDLINE], stdin=None)


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("protocol", ["pvh", "linux64"])
def test_vmlinux_to_smpboot(flavour, protocol):
    path = kernel(flavour, "vmlinux")
    cpus = 2
    vm = boot(path, cpus, protocol)
    try:
        vm.wait_for(r"smpboot: Allowing %d CPUs" % cpus, timeout=120)
        log = vm.output()
        # Our e820 map, as the kernel printed it.
        assert re.search(r"BIOS-e820: \[mem 0x0000000000000000-0x000000000009fbff\] usable", log), log
        assert re.search(r"BIOS-e820: \[mem 0x000000000009fc00-0x00000000000fffff\] reserved", log), log
        assert re.search(r"BIOS-e820: \[mem 0x0000000000100000-0x000000003fffffff\] usable", log), log
        # Our ACPI tables, found through our RSDP.
        for sig in ("RSDP", "XSDT", "FACP", "DSDT", "APIC"):
            assert re.search(r"ACPI: %s 0x[0-9A-F]+ .*MINVMM" % sig, log), (sig, log)
        assert "ACPI: RSDP 0x00000000000E0000" in log, log
    finally:
        vm.kill()


def test_bzimage_decompresses_and_boots():
    """The cloud bzImage (LZ4) through the 64-bit boot protocol: its
    decompressor runs at emulated speed (~90-120 s here) and then the kernel
    it unpacked prints its banner and our command line. Debian builds
    without CONFIG_X86_VERBOSE_BOOTUP, so the decompressor itself never
    prints "Decompressing Linux" (the string is not in the image): the
    banner is the first marker there is, and it proves our bzImage
    placement, 64-bit entry and boot_params."""
    vm = boot(kernel("cloud", "vmlinuz"), 1, "linux64")
    try:
        vm.wait_for(r"Linux version \S+-cloud-amd64", timeout=300)
        vm.wait_for(r"Command line: console=ttyS0 earlyprintk", timeout=30)
    finally:
        vm.kill()


def test_generic_bzimage_loads(tmp_path):
    """The generic bzImage is XZ-compressed: decompressing it at emulated
    speed takes over an hour here, so we check what we can in seconds: the
    loader accepts it, the VM is built (--paused keeps it from running) and
    its control socket answers."""
    from conftest import Qmp
    sock = str(tmp_path / "g.sock")
    vm = Proc([MINIVMM, "--kernel", kernel("generic", "vmlinuz"), "--memory", "256M",
               "--boot", "linux64", "--cmdline", CMDLINE, "--paused", "--api-sock", sock])
    try:
        import time
        deadline = time.monotonic() + scaled(20)
        while not os.path.exists(sock):
            assert vm.proc.poll() is None, vm.tail()
            assert time.monotonic() < deadline
            time.sleep(0.01)        # polling for the socket file, bounded
        q = Qmp(sock)
        q.cmd("qmp_capabilities")
        assert q.cmd("query-status")["return"]["status"] == "paused"
        assert q.cmd("quit") == {"return": {}}
        assert vm.wait_exit(20) == 0
    finally:
        vm.kill()
