# SPDX-License-Identifier: MIT
"""Helpers for the virtio benchmarks (blk, net): a VMM whose console is
scripted line by line, network namespaces with taps, host UDP endpoints
inside them. Every wait is for a console marker or a byte count, with a
timeout."""
import ctypes
import os
import re
import select
import signal
import socket
import struct
import subprocess
import threading
import time
import zlib

import common

CLONE_NEWNET = 0x40000000
if os.environ.get("MINIVMM"):           # compare another build
    common.MINIVMM = os.environ["MINIVMM"]
_libc = ctypes.CDLL(None, use_errno=True)


class VM:
    """minivmm or QEMU booting the test guest; console on stdin/stdout."""

    def __init__(self, argv, netns=None):
        if netns:
            argv = ["ip", "netns", "exec", netns, *argv]
        self.argv = argv
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        self.buf = b""
        self.lines = []

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise RuntimeError(f"timeout; last output:\n{self.tail()}")
        r, _, _ = select.select([self.p.stdout], [], [], left)
        if not r:
            return
        chunk = os.read(self.p.stdout.fileno(), 65536)
        if not chunk:
            raise RuntimeError(f"{self.argv[0]} exited; last output:\n{self.tail()}")
        self.buf += chunk
        *done, self.buf = self.buf.split(b"\n")
        self.lines += [l.decode("utf-8", "replace").rstrip("\r") for l in done]

    def wait_for(self, pattern, timeout=60.0, start=0):
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        i = start
        while True:
            while i < len(self.lines):
                m = rx.search(self.lines[i])
                if m:
                    return m
                i += 1
            self._fill(deadline)

    def command(self, cmd, pattern, timeout=120.0):
        start = len(self.lines)
        self.p.stdin.write(cmd.encode() + b"\n")
        self.p.stdin.flush()
        return self.wait_for(pattern, timeout, start)

    def tail(self, n=20):
        return "\n".join(self.lines[-n:] + [self.buf.decode("utf-8", "replace")])

    def close(self):
        if self.p.poll() is None:
            try:
                self.command("poweroff", r"^POWEROFF", timeout=5)
                self.p.wait(5)
            except (RuntimeError, OSError, subprocess.TimeoutExpired):
                pass
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGKILL)
        self.p.wait()


def boot(kind, cpus, memory, cmdline, minivmm_extra, qemu_extra, netns=None):
    if kind == "minivmm":
        argv = common.minivmm_argv(cpus, memory, cmdline, minivmm_extra)
    else:
        argv = common.qemu_argv(cpus, memory, cmdline,
                                ["-global", "virtio-mmio.force-legacy=false", *qemu_extra])
    vm = VM(argv, netns)
    try:
        vm.wait_for(r"^READY ", 30)
    except BaseException:
        vm.close()
        raise
    return vm


def ns_socket(ns, *args):
    """A socket created inside network namespace `ns` (setns() in a
    throwaway thread: it moves only the calling thread)."""
    box = {}

    def run():
        try:
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
            finally:
                os.close(fd)
            box["sock"] = socket.socket(*args)
        except Exception as e:      # noqa: BLE001 - re-raised below
            box["err"] = e
    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "err" in box:
        raise box["err"]
    return box["sock"]


class NetNS:
    """Namespace `name` with tap `tap` at 10.0.2.1/24; removed by close()."""

    def __init__(self, tap="mvbtap0"):
        self.name = f"mvbench{os.getpid()}"
        self.tap = tap
        self.host_ip = "10.0.2.1"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        try:
            for args in (["link", "set", "lo", "up"], ["tuntap", "add", tap, "mode", "tap"],
                         ["addr", "add", "10.0.2.1/24", "dev", tap],
                         ["link", "set", tap, "up"]):
                subprocess.run(["ip", "-n", self.name, *args], check=True, capture_output=True)
        except BaseException:
            self.close()
            raise

    def close(self):
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


class UdpReceiver:
    """Host UDP socket in a namespace receiving up to `size` bytes straight
    into one buffer (a per-datagram CRC in Python would be the bottleneck);
    bytes, first and last arrival times; crc() at the end."""

    def __init__(self, ns, host_ip, size):
        self.sock = ns_socket(ns, socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, 33, 256 << 20)   # SO_RCVBUFFORCE
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 << 20)
        self.sock.bind((host_ip, 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.buf = bytearray(size + 65536)
        self.bytes = 0
        self.t_first = self.t_last = None
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        view = memoryview(self.buf)
        while not self.stop:
            try:
                n = self.sock.recv_into(view[min(self.bytes, len(self.buf) - 65536):])
            except socket.timeout:
                continue
            except OSError:
                break
            now = time.monotonic()
            if self.t_first is None:
                self.t_first = now
            self.t_last = now
            self.bytes += n

    def wait_bytes(self, n, timeout):
        """Waits for n bytes, or until nothing arrived for 1 s, or timeout."""
        deadline = time.monotonic() + timeout
        while self.bytes < n and time.monotonic() < deadline:
            if self.t_last and time.monotonic() - self.t_last > 1.0:
                break
            time.sleep(0.01)        # polling a counter, not a fixed wait for an event
        return self.bytes

    def crc(self):
        return zlib.crc32(memoryview(self.buf)[:self.bytes])

    def close(self):
        self.stop = True
        self.thread.join(2)
        self.sock.close()


def udp_to_sink(ns, host_ip, guest_ip, nbytes, dgram=1472, burst=128):
    """Host -> guest sink (port 9) in bursts, each acknowledged through the
    guest's UDP echo (port 7) before the next; returns (bytes, crc, seconds)."""
    s = ns_socket(ns, socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host_ip, 0))
    s.settimeout(0.5)
    payload = os.urandom(dgram)
    sent = crc = probe = 0
    t0 = time.monotonic()
    try:
        while sent < nbytes:
            for _ in range(burst):
                if sent >= nbytes:
                    break
                chunk = payload[:min(dgram, nbytes - sent)]
                s.sendto(chunk, (guest_ip, 9))
                crc = zlib.crc32(chunk, crc)
                sent += len(chunk)
            probe += 1
            token = struct.pack("!Q", probe)
            for _ in range(20):
                s.sendto(token, (guest_ip, 7))
                try:
                    while s.recv(2048) != token:
                        pass
                    break
                except socket.timeout:
                    continue
            else:
                raise RuntimeError("no UDP echo from the guest")
        return sent, crc, time.monotonic() - t0
    finally:
        s.close()


def send_pattern_crc(nbytes):
    cycle = bytes(range(251))
    return zlib.crc32((cycle * (nbytes // 251 + 1))[:nbytes])
