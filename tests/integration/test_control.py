# SPDX-License-Identifier: MIT
"""The control socket (docs/control-api.md) and client mode, against real VMs.

No fixed sleeps: every wait is for a reply, an event, EOF or a console
marker, with a timeout. "Nothing happens" is checked as a wait for the
thing that must not happen, with a short timeout that has to expire.
"""
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time

import pytest

from conftest import GUEST, MINIVMM, Qmp, run_minivmm, scaled

HB = re.compile(r"HB seq=(\d+)")


@pytest.fixture
def sockdir():
    # Short: a UNIX socket path must fit in 108 bytes, pytest's tmp_path may not.
    d = tempfile.mkdtemp(prefix="mvc", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def vm(guest_factory, sockdir):
    """A running VM with a heartbeat, its socket and -v (for the pause marker)."""
    path = os.path.join(sockdir, "vm.sock")
    g = guest_factory(cmdline="hb=50", extra=["--api-sock", path, "-v"])
    g.ready()
    return g, path


def status(q):
    r = q.cmd("query-status")
    assert "return" in r, r
    return r["return"]


def expect_no_line(g, pattern, timeout, start):
    with pytest.raises(AssertionError, match="timeout"):
        g.wait_for(pattern, timeout, start=start)


def seqs(g, end):
    with g.cond:
        lines = g.lines[:end + 1]
    return [int(m.group(1)) for l in lines if l and (m := HB.search(l))]


def one_error_line(r, *words):
    errs = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(errs) == 1 and errs[0].startswith("minivmm: "), r.stderr
    for w in words:
        assert w in errs[0], errs[0]
    return errs[0]


def test_greeting_capabilities_status(vm):
    _, path = vm
    q = Qmp(path)
    assert q.greeting == {"QMP": {"version": {"minivmm": "0.1.0"}, "capabilities": []}}
    assert q.cmd("qmp_capabilities") == {"return": {}}
    assert q.cmd("query-status", id=42) == \
        {"return": {"status": "running", "running": True}, "id": 42}
    v = q.cmd("query-version")["return"]
    assert v["minivmm"] == {"major": 0, "minor": 1, "micro": 0}
    names = {c["name"] for c in q.cmd("query-commands")["return"]}
    assert {"qmp_capabilities", "query-status", "stop", "cont", "quit"} <= names


def test_stop_cont_heartbeat(vm):
    g, path = vm
    q = Qmp(path)
    q.cmd("qmp_capabilities")
    g.wait_for(r"^HB seq=\d+", 5)
    assert q.cmd("stop") == {"return": {}}
    assert q.event("STOP")["data"] == {}
    # The marker is written after the vCPUs are parked, into the same pipe as
    # the console: everything the guest printed before the pause precedes it.
    _, p = g.wait_for(r"control: VM paused", 5)
    last = seqs(g, p)[-1]
    assert status(q) == {"status": "paused", "running": False}
    expect_no_line(g, r"HB seq=", 0.5, p + 1)      # ten heartbeat periods
    assert status(q) == {"status": "paused", "running": False}
    expect_no_line(g, r"HB seq=", 0.2, p + 1)
    assert q.cmd("stop") == {"return": {}}          # idempotent, no second event
    assert q.cmd("cont") == {"return": {}}
    assert q.event("RESUME")["data"] == {}
    assert not [e for e in q.events if e["event"] == "STOP"]
    m, _ = g.wait_for(r"HB seq=(\d+)", 5, start=p + 1)
    assert int(m.group(1)) == last + 1
    assert status(q)["status"] == "running"


def test_bad_requests_keep_the_connection(vm):
    g, path = vm
    q = Qmp(path)
    cases = [
        (b"{not json\n", "GenericError"),
        (b"[1, 2]\n", "GenericError"),
        (b"42\n", "GenericError"),
        (b"{}\n", "GenericError"),
        (b'{"execute": 7}\n', "GenericError"),
        (b'{"execute": "no-such-command"}\n', "CommandNotFound"),
        (b'{"execute": "stop", "arguments": {"bogus": 1}}\n', "GenericError"),
        (b'{"execute": "cont", "arguments": []}\n', "GenericError"),
        (b'{"execute": "quit", "extra": 1}\n', "GenericError"),
        (b"\xff\xfe\n", "GenericError"),
    ]
    for line, cls in cases:
        q.send(line)
        r = q.reply()
        assert r["error"]["class"] == cls, (line, r)
        assert r["error"]["desc"], r
    r = q.cmd("frobnicate", id="x1")
    assert r["id"] == "x1" and r["error"]["class"] == "CommandNotFound"
    q.send(b"\n   \n")                               # blank lines are ignored
    assert status(q)["status"] == "running"
    _, i = g.wait_for(r"^HB seq=\d+", 5, start=len(g.lines))
    g.wait_for(r"^HB seq=\d+", 5, start=i + 1)      # the guest never noticed


def test_overlong_line_disconnects(vm):
    _, path = vm
    q = Qmp(path)
    q.send(b"x" * 70000)
    r = q.reply()
    assert r["error"]["class"] == "GenericError" and "longer" in r["error"]["desc"]
    # Closed with our excess bytes unread: EOF or, as Linux says it, a reset.
    with pytest.raises((EOFError, ConnectionResetError)):
        q.reply()
    # A line just under the limit is fine, and the VM serves the next client.
    q2 = Qmp(path)
    pad = b" " * (65535 - 40)
    q2.send(pad + b'{"execute": "query-status"}\n')
    assert q2.reply()["return"]["status"] == "running"


def nested(levels):
    """A request `levels` deep as json-c counts them: the request object is
    the first level, the number at the bottom the last."""
    inner = '{"a": ' * (levels - 2) + "1" + "}" * (levels - 2)
    return ('{"execute": "query-status", "arguments": %s}\n' % inner).encode()


def test_json_nesting_bound(vm):
    """32 levels are parsed (and refused for what they say), 33 are a parse
    error; the connection stays either way (docs/security.md, bounds)."""
    _, path = vm
    q = Qmp(path)
    q.send(nested(32))
    r = q.reply()
    assert r["error"]["class"] == "GenericError" and "JSON" not in r["error"]["desc"], r
    q.send(nested(33))
    assert q.reply()["error"] == {"class": "GenericError",
                                  "desc": "JSON parse error, nesting too deep"}
    assert status(q)["status"] == "running"


def test_clients_in_turn_and_together(vm):
    _, path = vm
    for i in range(5):
        q = Qmp(path)
        assert status(q)["status"] == "running"
        if i % 2:
            q.send(b'{"execute": "query-')         # hang up mid-request
        q.close()
    a, b = Qmp(path), Qmp(path)
    a.cmd("stop")
    assert b.event("STOP") and a.event("STOP")
    assert status(b)["status"] == "paused"
    b.cmd("cont")
    assert a.event("RESUME") and b.event("RESUME")
    assert status(a)["status"] == "running"


def test_too_many_clients(vm):
    _, path = vm
    clients = [Qmp(path) for _ in range(8)]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    f = s.makefile("rb")
    assert "too many" in json.loads(f.readline())["error"]["desc"]
    assert f.readline() == b""
    clients.pop().close()
    # The VM sees that hang-up on its next loop turn, maybe after our
    # connect: retry (each try is a round trip) until the slot is free.
    deadline = time.monotonic() + scaled(5)
    while "QMP" not in (q := Qmp(path)).greeting:
        assert time.monotonic() < deadline, "slot never freed"
        q.close()
    assert status(q)["status"] == "running"
    assert all(status(q)["status"] == "running" for q in clients)


def test_slow_reader(vm):
    """Replies pile up while a client does not read; it still gets every one."""
    _, path = vm
    q = Qmp(path)
    n = 3000                        # ~600 KB of replies: more than a socket holds
    q.send(b"".join(b'{"execute": "query-commands", "id": %d}\n' % i for i in range(n)))
    for i in range(n):
        r = q.reply()
        assert r["id"] == i and r["return"], r
    assert status(q)["status"] == "running"


def test_client_that_never_reads_is_dropped(vm):
    _, path = vm
    q = Qmp(path)
    q.sock.settimeout(30)
    req = b'{"execute": "query-commands"}\n' * 1000
    with pytest.raises((BrokenPipeError, ConnectionResetError)):
        for _ in range(1000):       # ~200 MB of replies asked for, none read
            q.send(req)
    assert status(Qmp(path))["status"] == "running"


def test_event_timestamp(vm):
    _, path = vm
    q = Qmp(path)
    q.cmd("stop")
    ts = q.event("STOP")["timestamp"]
    assert ts["seconds"] > 1600000000 and 0 <= ts["microseconds"] < 1000000
    q.cmd("cont")


def test_socket_mode_and_quit(vm):
    g, path = vm
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    watcher = Qmp(path)
    q = Qmp(path)
    assert q.cmd("quit") == {"return": {}}
    ev = watcher.event("SHUTDOWN")
    assert ev["data"] == {"guest": False, "reason": "host-qmp-quit"}
    watcher.until_eof()
    q.until_eof()
    assert g.wait_exit() == 0
    assert not os.path.exists(path)


@pytest.mark.parametrize("how,reason,guest", [
    ("poweroff", "guest-shutdown", True),
    ("sigterm", "host-signal", False),
])
def test_shutdown_event(vm, how, reason, guest):
    g, path = vm
    q = Qmp(path)
    if how == "sigterm":
        g.proc.send_signal(signal.SIGTERM)
    else:
        g.send(how + "\n")
    ev = q.event("SHUTDOWN")
    assert ev["data"] == {"guest": guest, "reason": reason}
    q.until_eof()
    assert g.wait_exit() == 0
    assert not os.path.exists(path)


def test_client_status_and_quit(vm):
    g, path = vm
    r = run_minivmm(["--api-sock", path, "--status"])
    assert (r.returncode, r.stdout, r.stderr) == (0, "running\n", "")
    q = Qmp(path)
    q.cmd("stop")
    r = run_minivmm(["--api-sock", path, "--status"])
    assert (r.returncode, r.stdout) == (0, "paused\n")
    r = run_minivmm(["--api-sock", path, "--quit"])
    assert r.returncode == 0, r.stderr
    # --quit returns once the VM process is gone: it has an exit status now.
    assert g.proc.poll() == 0
    assert not os.path.exists(path)
    q.until_eof()
    r = run_minivmm(["--api-sock", path, "--status"])
    assert r.returncode == 2
    one_error_line(r, path)


def test_client_usage_errors(sockdir):
    r = run_minivmm(["--api-sock", os.path.join(sockdir, "none.sock"), "--status"])
    assert r.returncode == 2
    one_error_line(r, "none.sock")
    r = run_minivmm(["--status", "--kernel", GUEST])
    assert r.returncode == 2
    one_error_line(r, "--kernel")
    r = run_minivmm(["--status", "--quit"])
    assert r.returncode == 2
    one_error_line(r)
    env = dict(os.environ, XDG_RUNTIME_DIR=sockdir)
    r = run_minivmm(["--status"], env=env)
    assert r.returncode == 2
    one_error_line(r, "no running VM", sockdir)
    r = run_minivmm(["--name", "../x", "--status"], env=env)
    assert r.returncode == 2
    one_error_line(r, "--name")


def dead_pid():
    for pid in range(4194000, 4194300):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
    pytest.fail("no free pid found")


def stale_socket(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()


def test_default_socket_folder_two_vms(guest_factory, sockdir):
    env = dict(os.environ, XDG_RUNTIME_DIR=sockdir)
    folder = os.path.join(sockdir, "minivmm")
    os.mkdir(folder, 0o700)
    # Left by a VM killed with SIGKILL: swept when the next VM starts. A
    # stale named socket is only replaced by a VM of that name.
    stale_socket(os.path.join(folder, f"{dead_pid()}.sock"))
    stale_socket(os.path.join(folder, "gone.sock"))
    a = guest_factory(extra=["--name", "alpha"], env=env)
    b = guest_factory(env=env)
    a.ready()
    b.ready()
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert sorted(os.listdir(folder)) == sorted(["alpha.sock", f"{b.proc.pid}.sock",
                                                 "gone.sock"])
    r = run_minivmm(["--status"], env=env)
    assert r.returncode == 2
    one_error_line(r, "alpha", str(b.proc.pid), "--name")
    r = run_minivmm(["--name", "alpha", "--status"], env=env)
    assert (r.returncode, r.stdout) == (0, "running\n")
    # A second VM may not take a name that is in use.
    r = subprocess.run([MINIVMM, "--kernel", GUEST, "--name", "alpha"], env=env,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=scaled(20))
    assert r.returncode == 2
    one_error_line(r, "alpha.sock")
    assert run_minivmm(["--name", "alpha", "--quit"], env=env).returncode == 0
    assert a.wait_exit() == 0
    # Now only one is left: no name needed.
    r = run_minivmm(["--status"], env=env)
    assert (r.returncode, r.stdout) == (0, "running\n"), r.stderr
    assert run_minivmm(["--quit"], env=env).returncode == 0
    assert b.wait_exit() == 0
    assert os.listdir(folder) == ["gone.sock"]
    r = run_minivmm(["--status"], env=env)
    assert r.returncode == 2
    one_error_line(r, "no running VM")


def test_stale_socket_replaced(guest_factory, sockdir):
    path = os.path.join(sockdir, "stale.sock")
    stale_socket(path)              # the file stays, nobody listens
    g = guest_factory(extra=["--api-sock", path])
    g.ready()
    assert status(Qmp(path))["status"] == "running"
    # A live VM on the path is never replaced.
    r = run_minivmm(["--kernel", GUEST, "--api-sock", path])
    assert r.returncode == 2
    one_error_line(r, path)
    assert status(Qmp(path))["status"] == "running"
    assert run_minivmm(["--api-sock", path, "--quit"]).returncode == 0
    assert g.wait_exit() == 0


def test_path_that_is_not_a_socket(sockdir):
    path = os.path.join(sockdir, "file")
    with open(path, "w") as f:
        f.write("keep me")
    r = run_minivmm(["--kernel", GUEST, "--api-sock", path])
    assert r.returncode == 2
    one_error_line(r, "not a socket")
    assert open(path).read() == "keep me"


def test_ram_digest_does_not_block_the_loop(guest_factory, sockdir):
    """query-ram-digest reads all of RAM on a worker: meanwhile another
    client is answered, its `cont` waits until the digest is done (the VM
    stays paused for it), and the digest's client gets its answer, then its
    next request's."""
    path = os.path.join(sockdir, "d.sock")
    g = guest_factory(memory="2G", cmdline="hb=0 fill=1G", extra=["--api-sock", path])
    g.ready()
    g.wait_for(r"^FILL done", timeout=120)
    a, b = Qmp(path), Qmp(path)
    a.cmd("qmp_capabilities")
    b.cmd("qmp_capabilities")
    assert a.cmd("stop") == {"return": {}}
    got = {}

    def read_a():
        got["digest"] = a.reply()
        got["t_digest"] = time.monotonic()
        got["after"] = a.reply()
    import threading
    reader = threading.Thread(target=read_a)
    a.send(b'{"execute": "query-ram-digest", "id": "digest"}\n'
           b'{"execute": "query-status", "id": "after"}\n')
    reader.start()
    assert status(b)["status"] == "paused"              # answered while the digest runs
    t_b = time.monotonic()
    reader.join(scaled(60))
    assert got["digest"]["id"] == "digest" and len(got["digest"]["return"]["digest"]) == 8, got
    assert got["after"] == {"return": {"status": "paused", "running": False}, "id": "after"}
    assert t_b < got["t_digest"], "the other client waited for the digest"
    assert a.cmd("cont") == {"return": {}}
    assert status(a)["status"] == "running"
