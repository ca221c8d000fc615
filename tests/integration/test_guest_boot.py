# SPDX-License-Identifier: MIT
"""The test guest on minivmm: vCPU start-up, memory, console, poweroff, signals."""
import os
import signal
import subprocess

import pytest

from conftest import GUEST, Proc


@pytest.mark.parametrize("cpus", [1, 2, 4])
def test_boot_fill_verify_poweroff(guest_factory, cpus):
    g = guest_factory(cpus=cpus, memory="256M")
    ncpus, mem = g.ready()
    assert ncpus == cpus
    assert 240 <= mem <= 256
    g.command("fill 64M", r"^FILL done bytes=67108864 ")
    m = g.command("verify", r"^VERIFY (PASS|FAIL)")
    assert m.group(1) == "PASS", g.tail()
    assert g.poweroff() == 0


def test_memory_above_4g(guest_factory):
    """5 GiB: RAM runs 0-3 GiB and 4-6 GiB; `fill all` reaches above 4 GiB."""
    g = guest_factory(cpus=2, memory="5G")
    _, mem = g.ready()
    assert mem >= 5 * 1024 - 16, f"guest saw {mem} MiB"
    m = g.command("fill all", r"^FILL done bytes=(\d+) ", timeout=120)
    assert int(m.group(1)) > 4 << 30     # so the pattern lies above 4 GiB too
    m = g.command("verify", r"^VERIFY (PASS|FAIL) pages=(\d+)", timeout=120)
    assert m.group(1) == "PASS", g.tail()
    assert int(m.group(2)) * 4096 == int(g.output().split("FILL done bytes=")[1].split()[0])
    assert g.poweroff() == 0


def test_dirty_then_verify(guest_factory):
    g = guest_factory(cpus=2, memory="256M")
    g.ready()
    g.command("fill 128M", r"^FILL done")
    g.command("dirty 128M 0", r"^DIRTY started bytes=134217728")
    m = g.command("stats", r"^STATS .*pages_dirtied=(\d+)")
    g.command("stats", r"^STATS .*pages_dirtied=(?!%s\b)\d+" % m.group(1))  # still going
    m = g.command("verify", r"^VERIFY (PASS|FAIL)")
    assert m.group(1) == "PASS", g.tail()
    g.command("dirty stop", r"^DIRTY stopped")
    assert g.poweroff() == 0


def test_heartbeat_sequence(guest_factory):
    g = guest_factory(cmdline="console=ttyS0 hb=50")
    g.ready()
    seqs, times = [], []
    start = 0
    for _ in range(5):
        m, start = g.wait_for(r"^HB seq=(\d+) ns=(\d+)", timeout=5, start=start)
        seqs.append(int(m.group(1)))
        times.append(int(m.group(2)))
        start += 1
    assert seqs == list(range(seqs[0], seqs[0] + 5))
    assert all(b > a for a, b in zip(times, times[1:]))
    assert g.poweroff() == 0


def test_cmdline_workload_and_poweroff(guest_factory):
    """Work chosen on the kernel command line runs with no console input at all."""
    g = guest_factory(cpus=2, cmdline="fill=32M verify poweroff", stdin=subprocess.DEVNULL)
    g.ready()
    g.wait_for(r"^FILL done bytes=33554432")
    g.wait_for(r"^VERIFY PASS")
    g.wait_for(r"^POWEROFF")
    assert g.wait_exit() == 0


def test_stdin_eof_keeps_running(guest_factory):
    g = guest_factory(cmdline="hb=20", stdin=subprocess.DEVNULL)
    g.ready()
    g.wait_for(r"^HB seq=5 ")
    assert g.proc.poll() is None
    g.proc.send_signal(signal.SIGTERM)
    assert g.wait_exit() == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_shuts_down_cleanly(guest_factory, sig):
    g = guest_factory(cpus=2)
    g.ready()
    g.proc.send_signal(sig)
    assert g.wait_exit() == 0


def test_console_typed_commands(guest_factory):
    g = guest_factory()
    g.ready()
    g.command("bogus", r"^ERR ")
    g.command("help", r"fill")
    g.command("stats", r"^STATS .*uptime_ms=\d+")
    assert g.poweroff() == 0


def test_qemu_boots_the_same_guest():
    """The very same guest file under QEMU microvm: what the benchmarks rely on."""
    qemu = Proc(["qemu-system-x86_64", "-M", "microvm", "-accel", "kvm",
                 "-cpu", "host,-arch-capabilities", "-m", "256M", "-smp", "2",
                 "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
                 "-kernel", GUEST, "-append", "hb=0 fill=16M verify poweroff"],
                stdin=subprocess.DEVNULL)
    try:
        m, _ = qemu.wait_for(r"^READY cpus=(\d+)", timeout=30)
        assert m.group(1) == "2"
        qemu.wait_for(r"^VERIFY PASS", timeout=30)
        qemu.wait_for(r"^POWEROFF", timeout=10)
        assert qemu.wait_exit(30) == 0
    finally:
        qemu.kill()


@pytest.mark.parametrize("how", ["kbd", "triple"])
def test_guest_reset_ends_cleanly(guest_factory, how):
    """A reboot (i8042 reset line or triple fault) ends minivmm with status 0."""
    g = guest_factory(cpus=2, extra=("-v",))
    g.ready()
    g.send(f"reset {how}\n")
    g.wait_for(r"^RESET %s" % how)
    g.wait_for(r"minivmm: guest reset")
    assert g.wait_exit() == 0


def pvh_image(code, entry=0x100000):
    """A minimal PVH ELF: `code` loaded at `entry`, entered in 32-bit protected
    mode with paging off."""
    import struct
    note = struct.pack("<III", 4, 4, 18) + b"Xen\x00" + struct.pack("<I", entry)
    ehdr_size, phdr_size = 64, 56
    phoff, data_off = ehdr_size, 0x1000
    note_off = data_off + 0x100
    ehdr = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8) + struct.pack(
        "<HHIQQQIHHHHHH", 2, 62, 1, entry, phoff, 0, 0, ehdr_size, phdr_size, 2, 64, 0, 0)
    load = struct.pack("<IIQQQQQQ", 1, 7, data_off, entry, entry, len(code), len(code), 0x1000)
    pnote = struct.pack("<IIQQQQQQ", 4, 4, note_off, 0, 0, len(note), len(note), 4)
    img = bytearray(note_off + len(note))
    img[0:len(ehdr)] = ehdr
    img[phoff:phoff + 2 * phdr_size] = load + pnote
    img[data_off:data_off + len(code)] = code
    img[note_off:note_off + len(note)] = note
    return bytes(img)


def pvm_host():
    """KVM on PVM: guest kernel mode runs in KVM's instruction emulator."""
    return os.path.exists("/sys/module/kvm_pvm")


EMULATION_CASES = {
    # mov eax, 0xd0000000; jmp eax: fetching an instruction from the MMIO hole
    # (no RAM, no device there) is something KVM cannot emulate on any host:
    # VT-x, AMD-V with or without nested paging, and PVM.
    "mmio-fetch": (bytes.fromhex("b8000000d0ffe0"), "RIP 0xd0000000", None),
    # xrstor [rdi]: only PVM's emulator lacks it (PLATFORM.md); its bytes are
    # reported. Elsewhere the CPU runs it for real, so the case does not apply.
    "xrstor": (bytes.fromhex("0fae2f0f0b"), "RIP 0x100000", "0f ae 2f"),
}


@pytest.mark.parametrize("case", sorted(EMULATION_CASES))
def test_emulation_failure_exits_1(tmp_path, case):
    """An instruction KVM cannot emulate at CPL0: one line with vCPU, RIP and
    (where KVM has them) the instruction bytes, exit 1."""
    code, rip, insn = EMULATION_CASES[case]
    if case == "xrstor" and not pvm_host():
        pytest.skip("XRSTOR runs natively on VT-x/AMD-V (and nested SVM): only "
                    "PVM's emulator lacks it; mmio-fetch covers the path here")
    k = tmp_path / f"{case}.elf"
    k.write_bytes(pvh_image(code))
    from conftest import MINIVMM, scaled
    r = subprocess.run([MINIVMM, "--kernel", str(k)], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=scaled(20))
    assert r.returncode == 1, (r.returncode, r.stderr)
    errs = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(errs) == 1, r.stderr
    assert "vCPU 0: emulation failure" in errs[0] and rip in errs[0], errs[0]
    if insn:
        assert insn in errs[0], errs[0]
