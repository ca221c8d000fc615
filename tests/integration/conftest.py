# SPDX-License-Identifier: MIT
"""Shared harness for integration tests: real minivmm processes on /dev/kvm.

Every wait is for a marker on the console with a timeout, never a fixed sleep.
Timeouts are written for native speed; MINIVMM_TIME_FACTOR (set by
scripts/nested, where everything is emulated) scales every wait made through
this harness (Proc, Qmp, run_minivmm, scaled()). A watchdog dumps the kernel
stacks of a test's processes and kills them when the test runs past
MINIVMM_TEST_WATCHDOG seconds (default 300), so a stuck test fails and says
where it was stuck instead of hanging the run.
"""
import faulthandler
import io
import os
import re
import signal
import subprocess
import threading
import time

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
# MINIVMM=path runs another build (make integration-san: the ASan+UBSan one).
MINIVMM = os.environ.get("MINIVMM") or os.path.join(ROOT, "minivmm")
# Failpoints exist only in test builds: a test that arms one (MINIVMM_FAILPOINTS
# in the environment it passes) runs build/minivmm-test instead of ./minivmm;
# another MINIVMM (the ASan+UBSan build) is a test build already.
FAILPOINT_VMM = MINIVMM if os.environ.get("MINIVMM") else os.path.join(ROOT, "build",
                                                                        "minivmm-test")
GUEST = os.path.join(ROOT, "tests", "guest", "guest.elf")
CACHE = os.environ.get("MINIVMM_CACHE", os.path.expanduser("~/.cache/minivmm"))
TIME_FACTOR = float(os.environ.get("MINIVMM_TIME_FACTOR") or 1)
NESTED = os.environ.get("MINIVMM_NESTED_GUEST") == "1"


def scaled(seconds):
    """A timeout written for native speed, stretched for slower hosts."""
    return seconds * TIME_FACTOR


# Not scaled: the slowest test takes ~60 s in the nested VM and ~40 s natively
# (PVM), and a stuck test must not eat the nested run's time limit.
WATCHDOG = float(os.environ.get("MINIVMM_TEST_WATCHDOG") or 300)


def _descendants(root):
    """Every process below `root`, children before grandchildren."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        for c in children.get(todo.pop(0), []):
            out.append(c)
            todo.append(c)
    return out


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError as e:
        return f"({e.strerror})"


def _thread_cpu(t):
    """utime + stime of a thread, in clock ticks."""
    try:
        with open(f"{t}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, ValueError, IndexError):
        return -1


def _stacks_report(pids):
    """Each process's command line and, per thread, its state, the CPU time
    it used in the last second (spinning or waiting?), its system call and
    kernel stack: where a stuck minivmm (or its kernel) is."""
    threads = {}
    for pid in pids:
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                threads[(pid, int(tid))] = _thread_cpu(f"/proc/{pid}/task/{tid}")
        except OSError:
            pass
    time.sleep(1)       # sampling CPU time over a second, not synchronising
    out = io.StringIO()
    for pid in pids:
        cmd = _read(f"/proc/{pid}/cmdline").replace("\0", " ")
        out.write(f"--- pid {pid}: {cmd}\n")
        for (p, tid), cpu0 in sorted(threads.items()):
            if p != pid:
                continue
            t = f"/proc/{pid}/task/{tid}"
            state = next((l for l in _read(f"{t}/status").splitlines()
                          if l.startswith("State:")), "State: ?")
            cpu1 = _thread_cpu(t)
            busy = f"{cpu1 - cpu0} ticks in 1 s" if cpu0 >= 0 and cpu1 >= 0 else "gone"
            out.write(f"  tid {tid} {_read(f'{t}/comm')} {state.split(None, 1)[-1]} ({busy}) "
                      f"syscall={_read(f'{t}/syscall').split(' ')[0]} "
                      f"wchan={_read(f'{t}/wchan')}\n")
            for line in _read(f"{t}/stack").splitlines():
                out.write(f"    {line}\n")
    return out.getvalue()


@pytest.fixture(autouse=True)
def watchdog(request):
    """Fail a test that runs past WATCHDOG seconds: note where its processes
    and our own threads are stuck, kill the processes (so that its waits end
    with EOF and the run goes on), and report it all as the test's failure.
    Nothing is printed from the timer's thread: pytest's output capture is
    not meant to be switched from there (it hung once)."""
    fired = {}

    def bite():
        pids = _descendants(os.getpid())
        report = (f"watchdog: {request.node.nodeid} still running after {WATCHDOG:.0f} s; "
                  f"its processes:\n" + _stacks_report(pids))
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        tb = io.StringIO()
        try:
            import tempfile
            with tempfile.TemporaryFile("w+") as f:
                faulthandler.dump_traceback(file=f, all_threads=True)
                f.seek(0)
                tb.write(f.read())
        except OSError:
            pass
        fired["report"] = report + "\npytest's threads:\n" + tb.getvalue()

    timer = threading.Timer(WATCHDOG, bite)
    timer.daemon = True
    timer.start()
    yield
    timer.cancel()
    if fired:
        pytest.fail(fired["report"], pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Remember whether each phase passed, for free_tmp_when_nested."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def pytest_runtest_logreport(report):
    """A failure's details at once, not only in the summary at the end: a
    run cut short later (the nested VM's limits) still shows why."""
    if report.failed:
        print(f"\n---- {report.nodeid} ({report.when}) failed:\n{report.longreprtext}\n----",
              flush=True)


@pytest.fixture(autouse=True)
def free_tmp_when_nested(request):
    """In the nested test VM /tmp is RAM, and pytest keeps every test's
    tmp_path (snapshots, disk images: gigabytes by the end of the run) for
    the whole session: a test that passed gives its files back."""
    yield
    rep = getattr(request.node, "rep_call", None)
    path = getattr(request.node, "funcargs", {}).get("tmp_path")
    if NESTED and rep is not None and rep.passed and path is not None:
        import shutil
        shutil.rmtree(path, ignore_errors=True)


class Proc:
    """A process whose stdout+stderr lines are collected by a reader thread."""

    def __init__(self, argv, stdin=subprocess.PIPE, env=None, merge_stderr=True):
        if env and env.get("MINIVMM_FAILPOINTS"):
            argv = [FAILPOINT_VMM if a == MINIVMM else a for a in argv]
        self.argv = argv
        self.lines = []
        self.err_lines = []
        self.partial_tail = False
        self.cond = threading.Condition()
        self.proc = subprocess.Popen(
            argv, stdin=stdin, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
            env=env, start_new_session=True)
        self._readers = [threading.Thread(target=self._read, args=(self.proc.stdout, self.lines),
                                          daemon=True)]
        if not merge_stderr:
            self._readers.append(threading.Thread(target=self._read,
                                                  args=(self.proc.stderr, self.err_lines),
                                                  daemon=True))
        for r in self._readers:
            r.start()

    def _read(self, stream, sink):
        buf = b""
        while True:
            chunk = stream.read1(65536) if hasattr(stream, "read1") else stream.read(4096)
            if not chunk:
                break
            buf += chunk
            *done, buf = buf.split(b"\n")
            with self.cond:
                sink.extend(l.decode("utf-8", "replace").rstrip("\r") for l in done)
                self.cond.notify_all()
        with self.cond:
            if buf:
                sink.append(buf.decode("utf-8", "replace"))
                self.partial_tail = True        # the last line had no newline
            sink.append(None)       # EOF marker
            self.cond.notify_all()

    def output(self):
        with self.cond:
            return "\n".join(l for l in self.lines if l is not None)

    def wait_for(self, pattern, timeout=10.0, start=0, sink=None):
        """Wait for a line matching regex `pattern`; return (match, index)."""
        sink = self.lines if sink is None else sink
        rx = re.compile(pattern)
        timeout = scaled(timeout)
        deadline = time.monotonic() + timeout
        i = start
        with self.cond:
            while True:
                while i < len(sink):
                    line = sink[i]
                    if line is None:
                        raise AssertionError(
                            f"EOF before /{pattern}/; exit {self.proc.poll()}; output:\n"
                            + self.tail())
                    m = rx.search(line)
                    if m:
                        return m, i
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timeout ({timeout}s) waiting for /{pattern}/; "
                                         f"output:\n" + self.tail())
                self.cond.wait(left)

    def tail(self, n=40):
        with self.cond:
            return "\n".join(l for l in self.lines[-n:] if l is not None)

    def send(self, text):
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def command(self, cmd, pattern, timeout=30.0):
        """Type a console command; the first matching line after it."""
        start = len(self.lines)
        self.send(cmd + "\n")
        m, _ = self.wait_for(pattern, timeout, start=start)
        return m

    def wait_exit(self, timeout=10.0):
        timeout = scaled(timeout)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after {timeout}s; output:\n" + self.tail())
        for r in self._readers:
            r.join(5)
        return rc

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


class Guest(Proc):
    """minivmm booting the test guest."""

    def __init__(self, cpus=1, memory="256M", cmdline="hb=0", extra=(), **kw):
        argv = [MINIVMM, "--kernel", GUEST, "--cpus", str(cpus), "--memory", memory,
                "--cmdline", cmdline, *extra]
        super().__init__(argv, **kw)

    def ready(self, timeout=10.0):
        m, _ = self.wait_for(r"^READY cpus=(\d+) mem=(\d+)", timeout)
        return int(m.group(1)), int(m.group(2))

    def poweroff(self, timeout=10.0):
        self.send("poweroff\n")
        self.wait_for(r"^POWEROFF", timeout)
        return self.wait_exit(timeout)


@pytest.fixture
def guest_factory():
    made = []

    def make(*a, **kw):
        g = Guest(*a, **kw)
        made.append(g)
        return g
    yield make
    for g in made:
        g.kill()


def guest_with_socket(guest_factory, tmp_path, name="src", cpus=2, memory="512M",
                      cmdline="hb=50", extra=()):
    """A booted test guest (READY seen) with its control socket at tmp_path/name.sock."""
    sock = str(tmp_path / f"{name}.sock")
    g = guest_factory(cpus=cpus, memory=memory, cmdline=cmdline,
                      extra=("--api-sock", sock, *extra))
    g.ready()
    return g, sock


def debian_kernel(flavour):
    """The bzImage of Debian's `flavour` kernel (cloud, generic) that scripts/fetch-kernels
    downloaded."""
    path = os.path.join(CACHE, "kernels", flavour, "vmlinuz")
    if not os.path.exists(path):
        pytest.fail(f"{path} is missing: run scripts/fetch-kernels (or scripts/setup)")
    return path


def linux_initramfs(builder):
    """The cpio that tests/linux/BUILDER makes (and caches): its path."""
    r = subprocess.run([os.path.join(ROOT, "tests", "linux", builder)], capture_output=True,
                       text=True, timeout=scaled(120))
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def run_minivmm(args, timeout=20, **kw):
    """Run minivmm to completion; returns CompletedProcess (stdout+stderr text)."""
    return subprocess.run([MINIVMM, *args], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=scaled(timeout), **kw)


class Qmp:
    """A line-oriented QMP client for tests: replies in order, events kept aside."""

    def __init__(self, path, timeout=20.0):
        import json
        import socket
        self._json = json
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(scaled(timeout))
        self.sock.connect(path)
        self.buf = b""
        self.events = []
        self.greeting = self.recv()

    def recv_line(self, timeout=None):
        if timeout is not None:
            self.sock.settimeout(scaled(timeout))
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("control socket closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def recv(self, timeout=None):
        return self._json.loads(self.recv_line(timeout))

    def send(self, data):
        self.sock.sendall(data)

    def reply(self):
        """The next reply, keeping events aside."""
        while True:
            msg = self.recv()
            if "event" in msg:
                self.events.append(msg)
                continue
            return msg

    def cmd(self, name, args=None, **extra):
        req = {"execute": name, **extra}
        if args is not None:
            req["arguments"] = args
        self.send(self._json.dumps(req).encode() + b"\n")
        return self.reply()

    def event(self, name, pred=lambda e: True, timeout=20.0):
        """The first event `name` matching `pred`, received already or within `timeout`."""
        deadline = time.monotonic() + scaled(timeout)
        while True:
            for i, e in enumerate(self.events):
                if e["event"] == name and pred(e):
                    return self.events.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {name} event within {timeout}s; got {self.events}")
            msg = self.recv(timeout=left / TIME_FACTOR)
            assert "event" in msg, f"a reply nobody asked for: {msg}"
            self.events.append(msg)

    def until_eof(self):
        """Read events until the VM closes the connection."""
        try:
            while True:
                msg = self.recv()
                assert "event" in msg, msg
                self.events.append(msg)
        except EOFError:
            pass

    def close(self):
        self.sock.close()
