# SPDX-License-Identifier: MIT
"""Bad flags, bad files, no KVM: one clear line, exit 2, never a crash."""
import os
import shutil
import subprocess

import pytest

from conftest import GUEST, MINIVMM, run_minivmm, scaled


def assert_usage_error(r, words):
    assert r.returncode == 2, f"exit {r.returncode}\n{r.stdout}{r.stderr}"
    errs = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(errs) == 1, r.stderr
    assert errs[0].startswith("minivmm: ")
    for w in words:
        assert w in errs[0], errs[0]


@pytest.mark.parametrize("args,words", [
    (["--cpus", "0"], ["--cpus"]),
    (["--cpus", "65"], ["--cpus"]),
    (["--memory", "0"], ["--memory"]),
    (["--memory", "64T"], ["--memory"]),
    (["--memory", "12Q"], ["--memory"]),
    (["--boot", "bios"], ["--boot"]),
    (["--no-such-flag"], ["unknown option"]),
    (["--lazy=bogus"], ["--lazy=bogus"]),
    (["--postcopy"], ["--postcopy goes with --migrate"]),
    (["--resume"], ["--resume goes with --migrate"]),
    (["--postcopy=later"], ["--postcopy='later'"]),
])
def test_bad_flags(args, words):
    assert_usage_error(run_minivmm(["--kernel", GUEST, *args]), words)


RANGE = "must be a multiple of 4 KiB from 4 MiB to 1 TiB"


def host_limit():
    """RAM + swap in bytes, as sysinfo(2) counts them (what --memory is held to)."""
    with open("/proc/meminfo") as f:
        kib = {l.split(":")[0]: int(l.split()[1]) for l in f if l.split()[0] in
               ("MemTotal:", "SwapTotal:")}
    return (kib["MemTotal"] + kib["SwapTotal"]) << 10


def accepted(args):
    """The flags got past parsing: the missing kernel file is what is refused."""
    assert_usage_error(run_minivmm(["--kernel", "/nonexistent", *args]),
                       ["cannot open /nonexistent"])


@pytest.mark.parametrize("arg,words", [
    ("4092K", [RANGE]),                 # below 4 MiB
    ("4194305B", [RANGE]),              # 4 MiB and a byte: not whole pages
    ("1099511631872B", [RANGE]),        # 1 TiB and a page
    ("1025G", [RANGE]),
    ("1T", ["more than this host has"]),    # in range (else RANGE), past this host
])
def test_memory_bounds(arg, words):
    """docs/security.md, "Bounds on what comes from outside": 4 MiB..1 TiB and
    host RAM + swap, each past it one line and exit 2."""
    if arg == "1T" and host_limit() >= 1 << 40:
        pytest.skip("this host has 1 TiB or more")
    assert_usage_error(run_minivmm(["--kernel", GUEST, "--memory", arg]),
                       [f"--memory '{arg}'", *words])


def test_memory_lower_bound_passes():
    accepted(["--memory", "4M"])


def test_memory_past_host_ram_and_swap():
    host = host_limit()
    if host >= 1 << 40:
        pytest.skip("this host has 1 TiB or more: the 1 TiB bound comes first")
    over = host // 4096 * 4096 + 4096
    assert_usage_error(run_minivmm(["--kernel", GUEST, "--memory", f"{over}B"]),
                       ["more than this host has", f"({host >> 20} MiB)"])
    accepted(["--memory", f"{over - 4096}B"])


def test_cpus_bounds():
    for arg in ("0", "65", "-1"):
        assert_usage_error(run_minivmm(["--kernel", GUEST, "--cpus", arg]),
                           [f"--cpus '{arg}': expected a number from 1 to 64"])
    accepted(["--cpus", "1"])
    accepted(["--cpus", "64"])


def test_no_kernel_flag():
    assert_usage_error(run_minivmm(["--cpus", "1"]), ["--kernel"])


def test_help_and_version():
    r = run_minivmm(["--help"])
    assert r.returncode == 0 and "--kernel" in r.stdout and "--memory" in r.stdout
    r = run_minivmm(["--version"])
    assert r.returncode == 0 and r.stdout.startswith("minivmm ")


def test_missing_kernel_file(tmp_path):
    assert_usage_error(run_minivmm(["--kernel", str(tmp_path / "nope")]), ["nope"])


@pytest.mark.parametrize("cut", [0, 16, 63, 64, 200, 4096])
def test_truncated_kernel(tmp_path, cut):
    data = open(GUEST, "rb").read()
    k = tmp_path / "trunc.elf"
    k.write_bytes(data[:cut])
    assert_usage_error(run_minivmm(["--kernel", str(k)]), ["kernel"])


def test_garbage_kernel(tmp_path):
    k = tmp_path / "garbage"
    k.write_bytes(os.urandom(64 << 10))
    assert_usage_error(run_minivmm(["--kernel", str(k)]), ["kernel"])


def test_corrupted_elf_header(tmp_path):
    data = bytearray(open(GUEST, "rb").read())
    data[0x20:0x28] = (0x7fffffff00000000).to_bytes(8, "little")   # e_phoff far away
    k = tmp_path / "bad.elf"
    k.write_bytes(bytes(data))
    assert_usage_error(run_minivmm(["--kernel", str(k)]), ["kernel"])


def test_initrd_does_not_fit(tmp_path):
    initrd = tmp_path / "big.img"
    with open(initrd, "wb") as f:
        f.truncate(64 << 20)
    assert_usage_error(run_minivmm(["--kernel", GUEST, "--memory", "32M",
                                    "--initrd", str(initrd)]), ["initrd"])


def test_missing_initrd(tmp_path):
    assert_usage_error(run_minivmm(["--kernel", GUEST, "--initrd", str(tmp_path / "x")]),
                       ["x"])


def test_no_dev_kvm():
    """In a mount namespace whose /dev has no kvm node."""
    cmd = f"mount -t tmpfs none /dev && exec {MINIVMM} --kernel {GUEST}"
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", cmd],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=scaled(20))
    assert_usage_error(r, ["/dev/kvm"])


def test_dev_kvm_permission_denied():
    if not shutil.which("setpriv"):
        pytest.fail("setpriv (util-linux) is needed")
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        MINIVMM, "--kernel", GUEST], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=scaled(20))
    assert_usage_error(r, ["/dev/kvm"])
