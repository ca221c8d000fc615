# SPDX-License-Identifier: MIT
"""TLS for live migration between two real minivmm processes over loopback
TCP: pre-shared keys and X.509 certificates (QEMU's file names), a
destination that refuses whoever lacks the credentials before it reads a
record, a man in the middle who changes a byte, and postcopy's second
connection. Every move is proved page by page (`verify`)."""
import os
import re
import subprocess
import threading

import pytest

from conftest import MINIVMM, Proc, Qmp, run_minivmm, scaled
from test_migrate import assert_source_running, check_moved, destination
from test_postcopy import Relay

STRAY = r"incoming migration: (\S+) (.*): not a migration source; still listening"


def psk_dir(path, user="qemu", key=None):
    path.mkdir()
    (path / "keys.psk").write_text(f"{user}:{key or os.urandom(32).hex()}\n")
    return str(path)


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}-key.pem", "-out", f"{name}-cert.pem", "-days", "2",
            "-subj", f"/CN={name}", cwd=d)


def make_cert(d, ca, name, san):
    ext = d / f"{name}.ext"
    ext.write_text(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}-key.pem", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}-cert.pem", "-CAkey",
            f"{ca}-key.pem", "-CAcreateserial", "-out", f"{name}-cert.pem", "-days", "2",
            "-extfile", str(ext), cwd=d)


@pytest.fixture
def x509(tmp_path):
    """src/ and dst/ with QEMU's file names, from one CA; rogue/ from another."""
    work = tmp_path / "pki"
    work.mkdir()
    make_ca(work, "ca")
    make_ca(work, "rogue-ca")
    make_cert(work, "ca", "server", "IP:127.0.0.1,DNS:localhost")
    make_cert(work, "ca", "client", "DNS:source")
    make_cert(work, "rogue-ca", "rogue", "DNS:source")
    dirs = {}
    for name, files in (("src", {"ca-cert.pem": "ca-cert.pem", "client-cert.pem": "client-cert.pem",
                                 "client-key.pem": "client-key.pem"}),
                        ("dst", {"ca-cert.pem": "ca-cert.pem", "server-cert.pem": "server-cert.pem",
                                 "server-key.pem": "server-key.pem"}),
                        ("rogue", {"ca-cert.pem": "ca-cert.pem", "client-cert.pem": "rogue-cert.pem",
                                   "client-key.pem": "rogue-key.pem"})):
        d = tmp_path / name
        d.mkdir()
        for dst_name, src_name in files.items():
            (d / dst_name).write_bytes((work / src_name).read_bytes())
        dirs[name] = str(d)
    return dirs


def source(guest_factory, tmp_path, cpus=2, memory="256M"):
    sock = str(tmp_path / "src.sock")
    # minivmm's own lines apart from the console: a failed first attempt
    # may print in the middle of a heartbeat line.
    g = guest_factory(cpus=cpus, memory=memory, cmdline="hb=50", extra=("--api-sock", sock),
                      merge_stderr=False)
    g.ready()
    g.command("fill 64M", r"^FILL done")
    return g, sock


def migrate_tls(sock, uri, creds, extra=()):
    return run_minivmm(["--api-sock", sock, "--migrate", uri, "--tls-creds", creds, *extra],
                       timeout=120)


def test_psk_migration(guest_factory, tmp_path):
    creds = psk_dir(tmp_path / "psk")
    src, sock = source(guest_factory, tmp_path)
    dst, uri, _ = destination(tmp_path, extra=("--tls-creds", creds, "-v"))
    try:
        r = migrate_tls(sock, uri, creds)
        assert r.returncode == 0, r.stderr
        check_moved(src, dst)
        assert re.search(r"authenticated \(psk, TLS1\.[23] ", dst.output()), dst.tail()
    finally:
        dst.kill()


def test_x509_migration(guest_factory, tmp_path, x509):
    src, sock = source(guest_factory, tmp_path)
    dst, uri, _ = destination(tmp_path, extra=("--tls-creds", x509["dst"], "-v"))
    try:
        r = migrate_tls(sock, uri, x509["src"])
        assert r.returncode == 0, r.stderr
        check_moved(src, dst)
        assert "authenticated (x509, TLS1." in dst.output(), dst.tail()
    finally:
        dst.kill()


def refused_then_served(guest_factory, tmp_path, dst_creds, bad_creds, good_creds, words):
    """A source without valid credentials fails and keeps its guest; the
    destination says why, read no record, and still serves the right one."""
    src, sock = source(guest_factory, tmp_path)
    dst, uri, _ = destination(tmp_path, extra=("--tls-creds", dst_creds) if dst_creds else ())
    try:
        args = ["--api-sock", sock, "--migrate", uri] + (["--tls-creds", bad_creds]
                                                         if bad_creds else [])
        r = run_minivmm(args, timeout=60)
        assert r.returncode == 1, r.stderr
        assert_source_running(src, sock)
        m, _ = dst.wait_for(STRAY, timeout=30)
        for w in words:
            assert w in m.group(2), m.group(0)
        assert dst.proc.poll() is None
        assert "HB " not in dst.output()
        r = (migrate_tls(sock, uri, good_creds) if good_creds else
             run_minivmm(["--api-sock", sock, "--migrate", uri], timeout=120))
        assert r.returncode == 0, r.stderr
        check_moved(src, dst)
    finally:
        dst.kill()


def test_wrong_psk_refused(guest_factory, tmp_path):
    good = psk_dir(tmp_path / "good")
    bad = psk_dir(tmp_path / "bad")
    refused_then_served(guest_factory, tmp_path, good, bad, good, ["TLS handshake failed"])


def test_unknown_psk_user_refused(guest_factory, tmp_path):
    good = psk_dir(tmp_path / "good")
    key = open(os.path.join(good, "keys.psk")).read().split(":")[1].strip()
    other = psk_dir(tmp_path / "other", user="mallory", key=key)
    refused_then_served(guest_factory, tmp_path, good, other, good, ["TLS handshake failed"])


def test_plaintext_source_refused(guest_factory, tmp_path):
    good = psk_dir(tmp_path / "good")
    refused_then_served(guest_factory, tmp_path, good, None, good, ["TLS handshake failed"])


def test_certificate_from_another_ca_refused(guest_factory, tmp_path, x509):
    refused_then_served(guest_factory, tmp_path, x509["dst"], x509["rogue"], x509["src"],
                        ["TLS handshake failed"])


def test_tls_source_to_plaintext_destination(guest_factory, tmp_path):
    """The other way round: the destination sees no minivmm stream and
    waits on; the source's handshake fails and its guest runs on."""
    good = psk_dir(tmp_path / "good")
    src, sock = source(guest_factory, tmp_path)
    dst, uri, _ = destination(tmp_path)
    try:
        r = migrate_tls(sock, uri, good)
        assert r.returncode == 1 and "TLS handshake failed" in r.stderr, r.stderr
        assert_source_running(src, sock)
        dst.wait_for(STRAY, timeout=30)
        assert dst.proc.poll() is None
    finally:
        dst.kill()


def test_destination_checks_the_hostname(guest_factory, tmp_path, x509):
    """The source checks the destination's certificate against the URI's
    host: 127.0.0.2 is not in it (127.0.0.1 and localhost are)."""
    src, sock = source(guest_factory, tmp_path)
    dst, uri, _ = destination(tmp_path, extra=("--tls-creds", x509["dst"]),
                              uri="tcp:0.0.0.0:0")
    try:
        port = uri.rsplit(":", 1)[1]
        r = migrate_tls(sock, f"tcp:127.0.0.2:{port}", x509["src"])
        assert r.returncode == 1 and "TLS handshake failed" in r.stderr, r.stderr
        assert_source_running(src, sock)
        r = migrate_tls(sock, f"tcp:localhost:{port}", x509["src"])
        assert r.returncode == 0, r.stderr
        check_moved(src, dst)
    finally:
        dst.kill()


class FlippingRelay(Relay):
    """Changes one byte of the source's stream once `after` bytes went by."""

    def __init__(self, target, after):
        self.after = after
        super().__init__(target)

    def _start_pumps(self, a, b):
        threading.Thread(target=self._flip, args=(a, b), daemon=True).start()
        threading.Thread(target=self._pump, args=(b, a), daemon=True).start()

    def _flip(self, x, y):
        seen, done = 0, False
        try:
            while True:
                data = bytearray(x.recv(65536))
                if not data:
                    break
                if not done and seen + len(data) > self.after:
                    data[self.after - seen] ^= 0x40
                    done = True
                seen += len(data)
                y.sendall(data)
        except OSError:
            pass


def kernel_has_tls():
    """Whether a TCP socket here takes the `tls` ULP, as minivmm tries after
    every handshake (Debian's kernel in the nested test VM: yes; these hosts'
    own kernels: no)."""
    import socket
    listener = socket.create_server(("127.0.0.1", 0))
    c = socket.create_connection(listener.getsockname())
    try:
        c.setsockopt(socket.SOL_TCP, 31, b"tls")      # TCP_ULP
        return True
    except OSError:
        return False
    finally:
        c.close()
        listener.close()


@pytest.mark.parametrize("layer", ["default", "ktls-off"])
def test_record_layer(guest_factory, tmp_path, layer):
    """After the handshake both ends move the record layer into the kernel
    where it has TLS, and keep it in GnuTLS where it has not or with the test
    failpoint ktls-off; each says which with -v, and the guest moves alike.
    Where the kernel has TLS both paths run here."""
    env = dict(os.environ, MINIVMM_FAILPOINTS="ktls-off") if layer == "ktls-off" else None
    where = "kernel TLS" if layer == "default" and kernel_has_tls() else "GnuTLS"
    creds = psk_dir(tmp_path / "psk")
    sock = str(tmp_path / "src.sock")
    src = guest_factory(cpus=2, memory="256M", cmdline="hb=50", env=env, merge_stderr=False,
                        extra=("--api-sock", sock, "-v"))
    src.ready()
    src.command("fill 64M", r"^FILL done")
    dst, uri, _ = destination(tmp_path, extra=("--tls-creds", creds, "-v"), env=env)
    try:
        r = migrate_tls(sock, uri, creds)
        assert r.returncode == 0, r.stderr
        check_moved(src, dst)
        assert re.search(r"authenticated \(psk, TLS1\.[23] [\w-]+, %s\)" % where,
                         dst.output()), dst.tail()
        err = "\n".join(l for l in src.err_lines if l)
        assert re.search(r": TLS \(psk, TLS1\.[23] [\w-]+, %s\)" % where, err), err
    finally:
        dst.kill()


def test_man_in_the_middle_changes_a_byte(guest_factory, tmp_path):
    """A byte changed on the way fails the record's authentication: the
    migration fails on both ends, the destination never runs the guest and
    the source keeps it."""
    good = psk_dir(tmp_path / "good")
    src, sock = source(guest_factory, tmp_path)
    dst, uri, _ = destination(tmp_path, extra=("--tls-creds", good))
    relay = FlippingRelay(uri[4:], after=4 << 20)
    try:
        r = migrate_tls(sock, relay.uri, good)
        assert r.returncode == 1, r.stderr
        assert_source_running(src, sock)
        assert dst.wait_exit(30) != 0
        assert "failed authentication" in dst.output(), dst.tail()
        assert "HB " not in dst.output()
    finally:
        relay.cut()
        dst.kill()


def test_postcopy_over_tls(guest_factory, tmp_path):
    """Both of postcopy's connections are TLS; requested pages come on the
    second one; every page verifies."""
    from test_postcopy import COMPLETE_DST
    from test_postcopy import destination as pc_destination
    from test_postcopy import source as pc_source
    creds = psk_dir(tmp_path / "psk")
    src, sock = pc_source(guest_factory, tmp_path, cpus=2, memory="512M")
    src.command("fill 128M", r"^FILL done")
    src.command("dirty 64M 0", r"^DIRTY started")
    dst, uri, _ = pc_destination(tmp_path, extra=("--tls-creds", creds))
    try:
        r = migrate_tls(sock, uri, creds, extra=("--postcopy",))
        assert r.returncode == 0, r.stderr
        assert "switched to postcopy" in r.stderr, r.stderr
        dst.wait_for(COMPLETE_DST, timeout=60, sink=dst.err_lines)
        err = "\n".join(l for l in dst.err_lines if l)
        assert "second connection from" in err and err.count("authenticated (psk") == 2, err
        check_moved(src, dst)
    finally:
        dst.kill()


def test_accept_backends_needs_an_authenticated_source(tmp_path):
    r = run_minivmm(["--incoming", "tcp:127.0.0.1:0", "--accept-backends"])
    assert r.returncode == 2
    assert "--accept-backends with --incoming tcp: needs --tls-creds" in r.stderr, r.stderr


def test_bad_tls_creds(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run_minivmm(["--incoming", "tcp:127.0.0.1:0", "--tls-creds", str(empty)])
    assert r.returncode == 2
    assert r.stderr.strip() == f"minivmm: TLS credentials: {empty} holds neither ca-cert.pem " \
                               "nor keys.psk", r.stderr


def psk_handshake(uri, user, key):
    """A TLS client with this pre-shared key (openssl): it shakes hands or
    fails to, then hangs up."""
    subprocess.run(["openssl", "s_client", "-connect", uri[len("tcp:"):], "-psk_identity", user,
                    "-psk", key, "-no_ign_eof"], stdin=subprocess.DEVNULL, capture_output=True,
                   timeout=scaled(20))


def test_psk_table_bounds(tmp_path):
    """keys.psk (docs/security.md, bounds): 64 users, names of up to 127 bytes,
    keys of up to 256 hex digits; a line past one of those is ignored (its user
    is unknown to the destination), and a file left with none is refused at start."""
    name127, name128 = "n" * 127, "m" * 128
    # A 580-byte line whose bytes past the 511th read "tail:KEY": a user of
    # its own if the reader took a long line in pieces.
    ignored = [(name128, "01" * 32), ("k260", "cd" * 130), ("k258", "ce" * 129),
               ("y" * 511 + "tail", "0e" * 32)]
    unknown = ignored[:3] + [("tail", "0e" * 32)]
    read = [(name127, "02" * 32), ("k256", "ab" * 128)]
    read += [(f"u{i}", f"{i:064x}") for i in range(3, 65)]          # the 64th user is u64
    late = ("late", "0f" * 32)
    d = tmp_path / "creds"
    d.mkdir()
    (d / "keys.psk").write_text("".join(f"{u}:{k}\n" for u, k in ignored + read + [late]))
    for user, key in (name127, read[0][1]), read[1], read[-1]:
        dst, uri, _ = destination(tmp_path, name=user[:8], extra=("--tls-creds", str(d), "-v"))
        try:
            if user == name127:         # the unknown ones first: each leaves it listening
                for u, k in unknown + [late]:
                    start = len(dst.lines)
                    psk_handshake(uri, u, k)
                    m, _ = dst.wait_for(STRAY, timeout=20, start=start)
                    assert "TLS handshake failed" in m.group(2), (u[:8], m.group(0))
            psk_handshake(uri, user, key)
            dst.wait_for(r"authenticated \(psk, ", timeout=20)
        finally:
            dst.kill()
    none = tmp_path / "none"
    none.mkdir()
    (none / "keys.psk").write_text("".join(f"{u}:{k}\n" for u, k in ignored))
    r = run_minivmm(["--incoming", "tcp:127.0.0.1:0", "--tls-creds", str(none)])
    assert r.returncode == 2 and r.stderr.strip() == \
        f"minivmm: TLS credentials: {none}/keys.psk: expected lines USERNAME:HEXKEY", r.stderr


def test_postcopy_recovery_over_tls(guest_factory, tmp_path):
    """The link cut mid-postcopy, then recovered: the recovery's connection
    is TLS too, and a stranger on the recovery address who cannot do the
    handshake is turned away while the destination waits for the source."""
    from test_postcopy import COMPLETE_DST, bogus_recovery, wait_status
    from test_postcopy import destination as pc_destination
    from test_postcopy import source as pc_source
    creds = psk_dir(tmp_path / "psk")
    src, ssock = pc_source(guest_factory, tmp_path, cpus=2, memory="512M")
    src.command("fill 32M", r"^FILL done")
    src.command("dirty 32M 0", r"^DIRTY started")
    dst, uri, dsock = pc_destination(tmp_path, extra=("--tls-creds", creds))
    relay = Relay(uri)
    q = Qmp(ssock)
    q.cmd("qmp_capabilities")
    q.cmd("migrate-set-parameters", {"max-bandwidth": 16 << 20})
    client = Proc([MINIVMM, "--api-sock", ssock, "--migrate", relay.uri, "--postcopy",
                   "--tls-creds", creds], stdin=subprocess.DEVNULL)
    try:
        q.event("MIGRATION", lambda e: e["data"]["status"] == "postcopy-active", timeout=60)
        relay.cut()
        q.event("MIGRATION", lambda e: e["data"]["status"] == "postcopy-paused")
        assert client.wait_exit(30) != 0
        wait_status(dsock, "postcopy-paused")
        recovery = bogus_recovery(dsock, b"\x16\x03\x01\x00\x05hello" * 4, "postcopy-recover")
        dst.wait_for(r"a connection to the recovery address: TLS handshake failed", timeout=30,
                     sink=dst.err_lines)
        relay2 = Relay(recovery)
        q.cmd("migrate-set-parameters", {"max-bandwidth": 0})
        c2 = Proc([MINIVMM, "--api-sock", ssock, "--migrate", relay2.uri, "--resume"],
                  stdin=subprocess.DEVNULL)
        assert c2.wait_exit(60) == 0, c2.tail() + "\n".join(l for l in dst.err_lines if l)
        check_moved(src, dst)
        dst.wait_for(COMPLETE_DST, timeout=30, sink=dst.err_lines)
    finally:
        client.kill()
        relay.cut()
        dst.kill()
