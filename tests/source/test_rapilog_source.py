"""rapilog-source on a pristine Debian 13 system: the module built on the
server for a kernel that has no prebuilt rapilog-modules package, and the
refusal when apt cannot install a kernel's compiler set (issue 20).

`make source-test` (tests/source/run.sh), and the `module-source` phase of
`make test`. The system is a debootstrap of trixie (tests/source/fresh-trixie.sh,
made once) under an overlay that each run starts afresh, with the Debian
archive as its only package source. Steps, in order (one fixture, so they
run as a server would go through them):

1. `apt install ./rapilog-source_*.deb` from `make deb`.
2. A kernel whose compiler set apt cannot install (the sid kernel's own
   .config, which names rustc 1.97.1, on this trixie system):
   rapilog-build-module refuses with one line and exit status 2; its kernel
   hook prints it and exits 0.
3. `apt install -t trixie-backports linux-headers-KREL`: the headers' hook runs
   inside dpkg, cannot install the compilers, says what to run, and the
   installation succeeds.
4. `rapilog-build-module KREL`: installs the exact compiler set, downloads
   linux-source, regenerates the Rust artifacts, builds and installs
   rapilog.ko; tests/check-module.sh checks its symbols against the stock
   Module.symvers and its vermagic against a stock module.
5. A second run has nothing to do; nor has any run while the prebuilt
   rapilog-modules-KREL package is installed.
6. `--remove`, then the headers reinstalled: the hook itself builds the
   module inside dpkg (compilers installed now, linux-source downloaded
   without the dpkg lock), as it will for every later kernel.
7. `apt purge rapilog-source`: the module, the artifacts it added to the
   headers, its state, scratch space and log are gone.

KREL is OTHER_KREL (default 7.2.12+deb13-amd64: a trixie-backports kernel
whose module package is not installed here). Needs root; never skips.
"""
from __future__ import annotations

import glob
import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]
LIB = TOP / "kernels" / "lib.sh"


def lib(expr: str) -> str:
    return subprocess.run(["bash", "-c", f'source "{LIB}"; echo {expr}'], check=True,
                          capture_output=True, text=True).stdout.strip()


CACHE = Path(lib("$RAPILOG_CACHE"))
KREL = os.environ.get("OTHER_KREL") or "7.2.12+deb13-amd64"
# A kernel whose compiler set trixie's apt cannot install: sid's (rustc 1.97.1).
SID_KREL = os.environ.get("SID_KREL") or "7.2.13+deb14-amd64"
TIMINGS: dict[str, float] = {}


class System:
    """The overlay of the pristine trixie tree, and commands run in it."""

    def __init__(self, root: Path):
        self.root = root

    def run(self, script: str, check: bool = True, timeout: float = 3600) -> subprocess.CompletedProcess:
        cmd = f'source "{LIB}"; run_in_chroot "{self.root}" bash -c {shlex.quote(script)}'
        t0 = time.monotonic()
        r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=timeout)
        took = time.monotonic() - t0
        print(f"--- [{took:.0f} s, exit {r.returncode}] {script}\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
        if check:
            assert r.returncode == 0, f"in the fresh trixie system: {script}\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
        return r


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("needs root (debootstrap, overlay mount, chroot): run as root")
    version = subprocess.run([str(TOP / "packaging" / "version.sh")], check=True,
                             capture_output=True, text=True).stdout.strip()
    debs = glob.glob(str(CACHE / "deb" / f"rapilog-source_{version}_all.deb"))
    assert len(debs) == 1, f"no rapilog-source_{version}_all.deb in {CACHE / 'deb'}: run make deb first"
    base = subprocess.run([str(TOP / "tests" / "source" / "fresh-trixie.sh")], capture_output=True, text=True)
    assert base.returncode == 0, base.stderr
    lower = base.stdout.strip().splitlines()[-1]
    # The overlay's upper layer holds what the test installs (about 2 GB while
    # the Rust artifacts are made); on the cache's disk, not in /tmp.
    scratch = CACHE / "source-test"
    if scratch.exists():
        subprocess.run(["bash", "-c", f'source "{LIB}"; release_mounts "{scratch}"'], check=True)
        shutil.rmtree(scratch)
    root = scratch / "root"
    for d in ("upper", "work", "root"):
        (scratch / d).mkdir(parents=True)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={lower},upperdir={scratch / 'upper'},workdir={scratch / 'work'}", str(root)],
                   check=True)
    try:
        (root / "root/debs").mkdir(parents=True, exist_ok=True)
        shutil.copy(debs[0], root / "root/debs")
        yield System(root)
    finally:
        subprocess.run(["bash", "-c", f'source "{LIB}"; release_mounts "{scratch}"'], check=True)
        shutil.rmtree(scratch, ignore_errors=True)
        print("timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in TIMINGS.items()))


def timed(name: str, system: System, script: str, check: bool = True) -> subprocess.CompletedProcess:
    t0 = time.monotonic()
    r = system.run(script, check=check)
    TIMINGS[name] = time.monotonic() - t0
    return r


def test_1_install_rapilog_source(system):
    system.run("apt-get update -q >/dev/null")
    timed("install rapilog-source", system,
          "DEBIAN_FRONTEND=noninteractive apt-get install -y -q /root/debs/rapilog-source_*.deb")
    r = system.run("rapilog-build-module --help; ls /usr/src/rapilog /etc/kernel/*/rapilog-source")
    assert "rapilog-build-module" in r.stdout
    for f in ["Kbuild", "VERSION", "rapilog-blk", "rapilog-format",
              "/etc/kernel/postinst.d/rapilog-source", "/etc/kernel/header_postinst.d/rapilog-source",
              "/etc/kernel/postrm.d/rapilog-source"]:
        assert f in r.stdout, f"{f} missing: {r.stdout}"


def test_2_refusal_names_kernel_compilers_and_offer(system):
    """The sid kernel's real .config (from its linux-headers package, as
    kernel-env.py fetched it) on this trixie system: rustc 1.97.1 is not in
    apt's reach, so one line, exit status 2, and nothing installed."""
    configs = sorted((CACHE / "archive" / "configs").glob(f"{SID_KREL}_*.config"))
    if not configs:
        subprocess.run(["python3", str(TOP / "kernels" / "kernel-env.py"), "derive", SID_KREL],
                       check=True, capture_output=True)
        configs = sorted((CACHE / "archive" / "configs").glob(f"{SID_KREL}_*.config"))
    assert configs, f"no .config of {SID_KREL} fetched"
    want = re.search(r'^CONFIG_RUSTC_VERSION_TEXT="rustc (\S+)', configs[-1].read_text(), re.M).group(1)
    hdr = system.root / f"usr/src/linux-headers-{SID_KREL}"
    hdr.mkdir(parents=True)
    shutil.copy(configs[-1], hdr / ".config")
    try:
        r = system.run(f"rapilog-build-module {SID_KREL}", check=False)
        assert r.returncode == 2, r
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1, f"not one line: {r.stderr}"
        msg = lines[0]
        assert SID_KREL in msg and f"rustc {want}" in msg, msg
        # What apt here offers: trixie's rustc (1.85.1+dfsg1-...).
        assert re.search(r"apt offers rustc [^;]*1\.85\.1\+dfsg1", msg), msg
        assert "gcc-16" in msg, msg
        # Nothing was installed on the way to the refusal.
        assert system.run("dpkg-query -W rustc 2>&1 || true").stdout.count("no packages found") == 1
        # The kernel hook (what runs inside dpkg): exit 0, the reason printed.
        r = system.run(f"/etc/kernel/header_postinst.d/rapilog-source {SID_KREL}", check=False)
        assert r.returncode == 0, r
        assert f"rustc {want}" in r.stderr and "rapilog will not load" in r.stderr, r.stderr
    finally:
        shutil.rmtree(hdr)


def test_3_headers_hook_inside_dpkg_says_what_to_run(system):
    r = timed("install linux-headers (hook: packages missing)", system,
              "DEBIAN_FRONTEND=noninteractive apt-get install -y -q -t trixie-backports "
              f"linux-headers-{KREL} 2>&1")
    assert f"run 'rapilog-build-module {KREL}'" in r.stdout, r.stdout[-3000:]
    assert "rustc=1.85.1" in r.stdout, r.stdout[-3000:]
    assert not (system.root / f"usr/lib/modules/{KREL}/extra/rapilog.ko").exists()


def test_4_builder_installs_compilers_and_builds(system, tmp_path):
    r = timed("rapilog-build-module (compilers, linux-source, artifacts, module)", system,
              f"rapilog-build-module {KREL}")
    for step in ["installing the compiler set", "downloading linux-source-", "regenerating the Rust artifacts",
                 "building rapilog.ko", f"installed /usr/lib/modules/{KREL}/extra/rapilog.ko"]:
        assert step in r.stdout, f"no '{step}' in:\n{r.stdout}"
    r = system.run("rustc --version; bindgen --version; dpkg-query -W linux-source-7.2 2>&1 || true;"
                   " ls /var/cache/rapilog-source 2>/dev/null | wc -l")
    assert "rustc 1.85.1" in r.stdout and "bindgen 0.71.1" in r.stdout
    assert "no packages found matching linux-source" in r.stdout, "linux-source is downloaded, not installed"
    assert r.stdout.strip().endswith("0"), "the scratch space is removed after the build"
    ko = system.root / f"usr/lib/modules/{KREL}/extra/rapilog.ko"
    hdr = system.root / f"usr/src/linux-headers-{KREL}"
    r = subprocess.run([str(TOP / "tests" / "check-module.sh"), KREL, str(ko)], capture_output=True, text=True,
                       env={**os.environ, "KDIR": str(hdr)})
    print(r.stdout, r.stderr)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok: vermagic" in r.stdout


def test_5_second_run_has_nothing_to_do(system):
    r = system.run(f"rapilog-build-module {KREL}")
    assert "already" in r.stdout, r.stdout


def test_5b_prebuilt_module_package_wins(system):
    """With rapilog-modules-KREL installed (make deb KREL=KREL; installed with
    --force-depends: its linux-image dependency is beside the point here),
    the builder has nothing to do and the hook says nothing."""
    version = subprocess.run([str(TOP / "packaging" / "version.sh")], check=True,
                             capture_output=True, text=True).stdout.strip()
    deb = CACHE / "deb" / f"rapilog-modules-{KREL}_{version}_amd64.deb"
    assert deb.is_file(), f"{deb} missing: tests/source/run.sh builds it (make deb KREL={KREL})"
    shutil.copy(deb, system.root / "root/debs")
    system.run(f"dpkg --force-depends -i /root/debs/{deb.name} >/dev/null 2>&1")
    try:
        r = system.run(f"rapilog-build-module {KREL}")
        assert f"rapilog-modules-{KREL} provides the module" in r.stdout and "nothing to build" in r.stdout, r
        r = system.run(f"/etc/kernel/postinst.d/rapilog-source {KREL} /boot/vmlinuz-{KREL}")
        assert r.stdout == "" and r.stderr == "", r
        assert "provides the module" in system.run("tail -n 1 /var/log/rapilog-build-module.log").stdout
    finally:
        system.run(f"dpkg -r rapilog-modules-{KREL} >/dev/null")
    assert (system.root / f"usr/lib/modules/{KREL}/extra/rapilog.ko").exists()


def test_6_hook_builds_inside_dpkg(system):
    system.run(f"rapilog-build-module --remove {KREL}")
    hdr = system.root / f"usr/src/linux-headers-{KREL}"
    assert not (hdr / "rust/libkernel.rmeta").exists(), "--remove leaves the artifacts it added"
    assert not (system.root / f"usr/lib/modules/{KREL}/extra/rapilog.ko").exists()
    r = timed("reinstall linux-headers (hook builds inside dpkg)", system,
              f"DEBIAN_FRONTEND=noninteractive apt-get install -y -q --reinstall linux-headers-{KREL} 2>&1")
    assert "regenerating the Rust artifacts" in r.stdout, r.stdout[-3000:]
    assert f"installed /usr/lib/modules/{KREL}/extra/rapilog.ko" in r.stdout, r.stdout[-3000:]
    r = subprocess.run([str(TOP / "tests" / "check-module.sh"), KREL,
                        str(system.root / f"usr/lib/modules/{KREL}/extra/rapilog.ko")],
                       capture_output=True, text=True, env={**os.environ, "KDIR": str(hdr)})
    assert r.returncode == 0, r.stdout + r.stderr
    # Every run is in the log, the refusal of step 2 included.
    log = system.run("cat /var/log/rapilog-build-module.log").stdout
    assert f"{SID_KREL}: cannot build rapilog" in log, log
    assert log.count(f"{KREL}: installed /usr/lib/modules/{KREL}/extra/rapilog.ko") == 2, log


def test_7_removing_rapilog_source_removes_what_it_built(system):
    hdr = system.root / f"usr/src/linux-headers-{KREL}"
    r = system.run("DEBIAN_FRONTEND=noninteractive apt-get purge -y -q rapilog-source 2>&1")
    assert not (system.root / f"usr/lib/modules/{KREL}/extra/rapilog.ko").exists(), r.stdout
    assert not (hdr / "rust/libkernel.rmeta").exists(), r.stdout
    assert (hdr / "Module.symvers").exists(), "the headers package's own files stay"
    for gone in ["var/lib/rapilog-source", "var/cache/rapilog-source", "var/log/rapilog-build-module.log",
                 "usr/src/rapilog", "etc/kernel/header_postinst.d/rapilog-source"]:
        assert not (system.root / gone).exists(), gone
