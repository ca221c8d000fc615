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
# The test build (failpoints): only for set-up steps that need one.
MINIVMM_TEST = os.path.join(ROOT, "build", "minivmm-test")
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


class Qmp:
    """Minimal QMP client (minivmm and QEMU speak the same shape)."""

    def __init__(self, path, timeout=60.0):
        import json
        import socket
        self.json = json
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.005)       # the VMM is still starting: poll, bounded
        self.sock.settimeout(timeout)
        self.buf = b""
        self.events = []
        self.recv()
        self.cmd("qmp_capabilities")

    def recv(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return self.json.loads(line)

    def cmd(self, name, args=None):
        req = {"execute": name}
        if args is not None:
            req["arguments"] = args
        self.sock.sendall(self.json.dumps(req).encode() + b"\n")
        while True:
            m = self.recv()
            if "event" in m:
                self.events.append(m)
                continue
            return m

    def wait_migration_event(self, timeout=120.0):
        """minivmm: the MIGRATION event that ends it (a move closes the socket after)."""
        self.sock.settimeout(timeout)
        while True:
            for e in self.events:
                if e.get("event") == "MIGRATION" and \
                        e["data"]["status"] in ("completed", "failed", "cancelled"):
                    return e["data"]
            self.events.append(self.recv())

    def wait_migration(self, timeout=120.0):
        """Poll query-migrate until it ends; returns the final info."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self.cmd("query-migrate")["return"]
            if info.get("status") in ("completed", "failed", "cancelled"):
                return info
            time.sleep(0.002)
        raise RuntimeError("migration did not end")


def spawn(argv):
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def read_until(p, marker, timeout=60.0):
    """Read p's stdout until `marker` appears; returns the time it did."""
    buf = b""
    deadline = time.monotonic() + timeout
    while marker.encode() not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RuntimeError(f"timeout waiting for {marker!r}: {buf[-300:]!r}")
        r, _, _ = select.select([p.stdout], [], [], left)
        if r:
            chunk = os.read(p.stdout.fileno(), 65536)
            if not chunk:
                raise RuntimeError(f"exited before {marker!r}: {buf[-300:]!r}")
            buf += chunk
    return time.monotonic()


def kill(p):
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGKILL)
    p.wait()
