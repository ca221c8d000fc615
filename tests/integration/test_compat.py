# SPDX-License-Identifier: MIT
"""Every stream format version this project has had, restored and received by
today's minivmm (docs/migration-format.md, "Compatibility promise").

tests/compat/vX.Y holds snapshot files saved by the minivmm and test guest of
format X.Y (scripts/compat-corpus makes them; MANIFEST.json says what each
holds). Each file found there is restored with today's minivmm (its disk and
NIC replaced with --disk/--net): the heartbeat goes on from where it stopped,
the guest's own verify passes over exactly the pages it had filled, the disk
and NIC still work, and --inspect prints what it printed when the file was
added. And every older version's own minivmm, built from git history
(build/compat/COMMIT), moves a guest into today's through a file it saves,
and the previous version's also live over TCP.
"""
import glob
import importlib.machinery
import importlib.util
import os
import re
import subprocess

import pytest

from conftest import MINIVMM, ROOT, Proc, scaled
from test_virtio import NetNS, ping

HB = r"^HB seq=(\d+) ns=(\d+)"
# The restore's refusals of a host that cannot run the saved vCPUs (a file carries the
# CPUID, XSAVE size and TSC rate of the host that saved it: docs/migration-format.md).
HOST_UNFIT = r"this host's KVM lacks|this host's KVM takes|KVM cannot scale it"


def _corpus_script():
    """scripts/compat-corpus as a module: one place for the corpus's layout,
    its compression and the builds of old versions."""
    loader = importlib.machinery.SourceFileLoader(
        "compat_corpus", os.path.join(ROOT, "scripts", "compat-corpus"))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


corpus = _corpus_script()
STORED = sorted(glob.glob(os.path.join(corpus.COMPAT, "v*", "*.snap.xz")),
                key=lambda p: (corpus.version_key(p.split(os.sep)[-2][1:]), p))


def entry_for(path):
    """The manifest's word on a stored file: a file it does not describe fails."""
    folder, name = os.path.split(path)
    version = os.path.basename(folder)[1:]
    entries = [e for e in corpus.manifests().get(version, {}).get("files", [])
               if e["snapshot"] == name]
    assert entries, f"{path}: not in {folder}/MANIFEST.json"
    return version, folder, entries[0]


def file_id(path):
    return os.path.relpath(path, corpus.COMPAT)


@pytest.mark.parametrize("path", STORED, ids=file_id)
def test_restore(path, tmp_path):
    version, folder, e = entry_for(path)
    snap = tmp_path / "snap"
    corpus.unpack(path, snap)
    argv = [MINIVMM, "--incoming", f"file:{snap}"]
    if "disk" in e:
        img = tmp_path / "disk.img"
        corpus.unpack(os.path.join(folder, e["disk"]["image"]), img)
        argv += ["--disk", str(img)]
    ns = NetNS(1) if "net" in e else None
    if ns:
        argv = ["ip", "netns", "exec", ns.name, *argv, "--net", f"tap={ns.taps[0]}"]
    p = Proc(argv)
    try:
        if refused_for_this_cpu(p, corpus.manifests()[version]["host"]):
            return
        m, _ = p.wait_for(HB, timeout=10)
        assert int(m.group(1)) == e["last_hb"] + 1, p.tail()       # it goes on where it was
        m = p.command("verify", r"^VERIFY (PASS|FAIL) pages=(\d+)", timeout=30)
        assert (m.group(1), int(m.group(2))) == ("PASS", e["pages"]), p.tail()
        if "disk" in e:
            m = p.command("blk verify 0 0 {sectors} {seed}".format(**e["disk"]),
                          r"^BLK verify (\w+)")
            assert m.group(1) == "PASS", p.tail()
        if ns:
            ping(ns.name, "10.0.2.15")
        with open(os.path.join(folder, e["inspect"])) as f:
            saved = re.search(r"^  vmgenid (\S+) at ", f.read(), re.M)
        if saved:               # since 1.3: a restore is a new copy, with a new ID
            m = p.command("genid", r"^GENID (\S+)")
            assert m.group(1) not in ("none", saved.group(1)), p.tail()
        p.wait_for(HB, timeout=10, start=len(p.lines))
        p.send("poweroff\n")
        assert p.wait_exit(20) == 0, p.tail()
    finally:
        p.kill()
        if ns:
            ns.close()


def refused_for_this_cpu(p, recorded):
    """A file carries the CPUID, XSAVE size and TSC rate of the host that saved it. On
    another kind of CPU (the nested test VM's emulated AMD one, another machine) whose
    KVM lacks some of it, a restore must be refused, by design, the way the user sees it:
    exit status 2 and one line naming what is missing, nothing run. True then; the
    version's files are still restored on this host by test_from_version[VERSION-file],
    made by that version's build here. On the kind of CPU that recorded the file (same
    /proc/cpuinfo flags) any refusal fails."""
    if corpus.host()["cpu-flags"] == recorded["cpu-flags"]:
        return False
    try:
        rc = p.proc.wait(scaled(10))
    except subprocess.TimeoutExpired:
        return False                            # running: restored after all
    out = [l for l in p.output().splitlines() if l]
    assert rc == 2 and len(out) == 1 and re.search(HOST_UNFIT, out[0]), (rc, p.tail())
    print(f"refused on this CPU ({corpus.host()['cpu']}; recorded on {recorded['cpu']}): "
          f"{out[0]}")
    return True


@pytest.mark.parametrize("path", STORED, ids=file_id)
def test_inspect(path, tmp_path):
    _, folder, e = entry_for(path)
    with open(os.path.join(folder, e["inspect"])) as f:
        expected = f.read()
    assert corpus.inspect(MINIVMM, path, str(tmp_path)) == expected


def test_every_version_has_files():
    """tests/compat has files of every format version up to this tree's own."""
    major, minor = corpus.version_key(corpus.current_version())
    have = corpus.manifests()
    missing = [f"{major}.{m}" for m in range(minor + 1) if not have.get(f"{major}.{m}")]
    assert not missing, (f"tests/compat lacks format version(s) {', '.join(missing)}: "
                         f"run scripts/compat-corpus VERSION for each")
    for v, man in have.items():
        for e in man["files"]:
            assert os.path.exists(os.path.join(corpus.COMPAT, f"v{v}", e["snapshot"])), e


def _round_trips():
    """(version, how) for every stored version below this tree's: "file" for each, and
    "tcp" (live) for the previous one too."""
    try:
        older = corpus.older_versions()
    except corpus.Error:
        return [("?", "tcp")]                   # the test itself says what is wrong
    trips = [(v, "file") for v, _ in older]
    return trips + [(older[-1][0], "tcp")] if older else trips


@pytest.mark.parametrize("version,how", _round_trips(), ids=lambda x: x)
def test_from_version(version, how, tmp_path):
    """A format version's own minivmm (built from git history: the commit in its
    manifest) moves its filled guest into today's: through a snapshot file it saves now,
    and, for the previous version, live over TCP. Made on this host, so unlike the stored
    files they fit any CPU. The guest carries on and the source exits 0."""
    try:
        commit = dict(corpus.older_versions())[version]
        tree = corpus.build(commit)
    except (corpus.Error, KeyError) as err:
        pytest.fail(f"compat-corpus: {err}", pytrace=False)
    old = os.path.join(tree, "minivmm")
    sock = str(tmp_path / "old.sock")
    src = Proc([old, "--kernel", os.path.join(tree, "tests", "guest", "guest.elf"),
                "--cpus", "2", "--memory", "128M", "--cmdline", "hb=100", "--api-sock", sock])
    procs = [src]
    try:
        src.wait_for(r"^READY ", timeout=10)
        m = src.command("fill 32M", r"^FILL done bytes=(\d+)", timeout=30)
        pages = int(m.group(1)) // 4096
        if how == "tcp":
            dst = Proc([MINIVMM, "--incoming", "tcp:127.0.0.1:0"])
            procs.append(dst)
            m, _ = dst.wait_for(r"incoming migration: listening on tcp:127\.0\.0\.1:(\d+)")
            uri = f"tcp:127.0.0.1:{m.group(1)}"
        else:
            uri = f"file:{tmp_path / 'prev.snap'}"
        r = subprocess.run([old, "--api-sock", sock, "--migrate", uri],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=scaled(60))
        assert r.returncode == 0, (f"format {version} source ({commit}): {r.stderr}\n"
                                   + (dst.tail() if how == "tcp" else ""))
        assert src.wait_exit(20) == 0, src.tail()
        seq = corpus.last_hb(src)[0]
        if how == "file":
            dst = Proc([MINIVMM, "--incoming", uri])
            procs.append(dst)
        m, _ = dst.wait_for(HB, timeout=10)
        assert int(m.group(1)) == seq + 1, dst.tail()
        m = dst.command("verify", r"^VERIFY (PASS|FAIL) pages=(\d+)", timeout=30)
        assert (m.group(1), int(m.group(2))) == ("PASS", pages), dst.tail()
        dst.send("poweroff\n")
        assert dst.wait_exit(20) == 0, dst.tail()
    finally:
        for p in procs:
            p.kill()
