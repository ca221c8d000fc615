# SPDX-License-Identifier: MIT
"""Helpers shared by the benchmarks: spawn a VMM, time a console marker."""
import os
import select
import signal
import statistics
import subprocess
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MINIVMM = os.path.join(ROOT, "minivmm")
GUEST = os.path.join(ROOT, "tests", "guest", "guest.elf")


def minivmm_argv(cpus, memory, cmdline, extra=()):
    return [MINIVMM, "--kernel", GUEST, "--cpus", str(cpus), "--memory", memory,
            "--cmdline", cmdline, *extra]


def qemu_argv(cpus, memory, cmdline, extra=()):
    return ["qemu-system-x86_64", "-M", "microvm,acpi=on", "-accel", "kvm",
            "-cpu", "host,-arch-capabilities", "-smp", str(cpus), "-m", memory,
            "-nographic", "-nodefaults", "-no-reboot", "-serial", "stdio",
            "-kernel", GUEST, "-append", cmdline, *extra]


def time_to_marker(argv, marker, timeout=30.0, on_marker=None):
    """Seconds from exec to the first output line containing `marker`."""
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    buf = b""
    try:
        while True:
            left = t0 + timeout - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"timeout waiting for {marker!r} from {argv[0]}")
            r, _, _ = select.select([p.stdout], [], [], left)
            if not r:
                continue
            chunk = os.read(p.stdout.fileno(), 65536)
            if not chunk:
                raise RuntimeError(f"{argv[0]} exited before {marker!r}: {buf[-500:]!r}")
            buf += chunk
            if marker.encode() in buf:
                dt = time.monotonic() - t0
                extra = on_marker(p) if on_marker else None
                return dt, extra
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def rss_kib(pid):
    """RSS split from /proc: anon+file (the VMM itself) and shmem (guest RAM memfds)."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                out[k] = int(v.split()[0])
    return out


def median(xs):
    return statistics.median(xs)
