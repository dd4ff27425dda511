"""make deb: the Debian packages hold what an administrator needs, where Debian
expects it, and work.

The module-scoped fixture runs packaging/build-deb.sh for the default kernel
(what `make deb` runs): about 11 s when the packaging chroot and cargo's
target directory exist, about 4 minutes from nothing (debootstrap of the
trixie chroot, debhelper/lintian/cargo, cargo vendor, the release build). So
every run checks the packages of the tree as it is. The binaries are built
against trixie's glibc, so they run, and rapilog-tools is installed and
purged, inside that trixie chroot, never on the host.
Needs root (chroot); without it the tests fail with that reason, never skip.
"""
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]
LIB = TOP / "kernels" / "lib.sh"


def lib(expr: str) -> str:
    """The value of a shell expression after sourcing kernels/lib.sh."""
    return subprocess.run(["bash", "-c", f'source "{LIB}"; echo {expr}'], check=True,
                          capture_output=True, text=True).stdout.strip()


KREL = lib("$DEFAULT_KREL")
CACHE = Path(lib("$RAPILOG_CACHE"))
ROOT = CACHE / "debbuild" / "root"
OUT = CACHE / "deb"


def in_chroot(script: str, check: bool = True, stock_modules: Path | None = None) -> subprocess.CompletedProcess:
    """Runs script with sh in the packaging chroot (kernels/lib.sh's run_in_chroot).
    stock_modules: a lib/modules/KREL tree bound at /usr/lib/modules/KREL there,
    as if linux-image-KREL were installed (in a private mount namespace)."""
    cmd = f'source "{LIB}"; run_in_chroot "{ROOT}" sh -c {shlex.quote(script)}'
    if stock_modules:
        target = ROOT / "usr/lib/modules" / KREL
        cmd = (f'set -e; mkdir -p "{target}"; trap \'umount "{target}" 2>/dev/null; rmdir "{target}"\' EXIT;'
               f' mount --bind "{stock_modules}" "{target}"; {cmd}')
        cmd = f"unshare --mount --propagation private -- bash -c {shlex.quote(cmd)}"
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True)
    if check:
        assert r.returncode == 0, f"in the chroot: {script}\n{r.stdout}\n{r.stderr}"
    return r


@pytest.fixture(scope="module")
def debs():
    if os.geteuid() != 0:
        pytest.fail("make deb needs root (debootstrap, chroot): run the host tests as root")
    r = subprocess.run([str(TOP / "packaging" / "build-deb.sh"), KREL], capture_output=True, text=True)
    assert r.returncode == 0, f"packaging/build-deb.sh failed:\n{r.stderr[-4000:]}"
    version = subprocess.run([str(TOP / "packaging" / "version.sh")], check=True,
                             capture_output=True, text=True).stdout.strip()
    tools = OUT / f"rapilog-tools_{version}_amd64.deb"
    module = OUT / f"rapilog-modules-{KREL}_{version}_amd64.deb"
    source = OUT / f"rapilog-source_{version}_all.deb"
    changes = OUT / f"rapilog_{version}_amd64.changes"
    for f in (tools, module, source, changes, OUT / f"rapilog_{version}_amd64.buildinfo"):
        assert f.is_file(), f"{f} missing after the build; build-deb.sh said:\n{r.stderr[-2000:]}"
    return {"version": version, "tools": tools, "module": module, "source": source, "changes": changes}


def contents(deb: Path) -> dict[str, tuple[str, str]]:
    """dpkg-deb -c: path (without ./) -> (mode string, owner/group)."""
    out = subprocess.run(["dpkg-deb", "-c", str(deb)], check=True, capture_output=True, text=True).stdout
    files = {}
    for line in out.splitlines():
        mode, owner, _size, _date, _time, path = line.split(None, 5)
        files[path.removeprefix("./").rstrip("/")] = (mode, owner)
    return files


def field(deb: Path, name: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), name], check=True,
                          capture_output=True, text=True).stdout.strip()


def control_file(deb: Path, name: str) -> str:
    return subprocess.run(["dpkg-deb", "-I", str(deb), name], check=True,
                          capture_output=True, text=True).stdout


EXEC, DATA = "-rwxr-xr-x", "-rw-r--r--"


def test_tools_files_and_modes(debs):
    files = contents(debs["tools"])
    expected = {
        "usr/sbin/rapilogctl": EXEC,
        "usr/sbin/rapilog-arm": EXEC,
        "usr/lib/rapilog/rapilog-rescue": EXEC,
        "usr/lib/rapilog/build-initramfs": EXEC,
        "usr/lib/rapilog/build-rescue-initramfs": EXEC,
        "usr/lib/systemd/system/rapilog.service": DATA,
        "usr/lib/systemd/system/rapilog-crash.service": DATA,
        "etc/rapilog/rapilog.conf": DATA,
        "etc/kernel/postinst.d/zz-rapilog": EXEC,
        "etc/kernel/postrm.d/zz-rapilog": EXEC,
        "usr/share/man/man8/rapilogctl.8.gz": DATA,
        "usr/share/man/man8/rapilogctl-plan.8.gz": DATA,
        "usr/share/man/man8/rapilogctl-status.8.gz": DATA,
        "usr/share/man/man8/rapilog-arm.8.gz": DATA,
        "usr/share/bash-completion/completions/rapilogctl": DATA,
        "usr/share/zsh/vendor-completions/_rapilogctl": DATA,
        "usr/share/fish/vendor_completions.d/rapilogctl.fish": DATA,
        "usr/share/doc/rapilog-tools/copyright": DATA,
    }
    for path, mode in expected.items():
        assert path in files, f"{path} not in {debs['tools'].name}"
        assert files[path] == (mode, "root/root"), f"{path}: {files[path]}"
    assert "var/lib/rapilog" in files
    # Docs: README and docs/*.md (compressed or not, as dh_compress decides).
    docs = {p.split("/")[-1].removesuffix(".gz") for p in files if p.startswith("usr/share/doc/rapilog-tools/")}
    for doc in ["README.md", "install.md", "configuration.md", "design.md", "crash-kernel.md"]:
        assert doc in docs, f"{doc} not in /usr/share/doc/rapilog-tools: {sorted(docs)}"
    # One man page per rapilogctl command.
    pages = {p for p in files if p.startswith("usr/share/man/man8/rapilogctl-")}
    assert len(pages) >= 10, pages


def test_tools_control(debs):
    tools = debs["tools"]
    assert field(tools, "Package") == "rapilog-tools"
    assert field(tools, "Version") == debs["version"]
    assert field(tools, "Architecture") == "amd64"
    depends = field(tools, "Depends")
    for dep in ["libc6", "kexec-tools", "busybox-static", "cpio", "kmod"]:
        assert re.search(rf"(^|, ){dep}\b", depends), f"{dep} not in Depends: {depends}"
    assert field(tools, "Built-Using").startswith("glibc (= ")
    conffiles = control_file(tools, "conffiles").split()
    assert "/etc/rapilog/rapilog.conf" in conffiles, conffiles
    assert "/etc/kernel/postinst.d/zz-rapilog" in conffiles, conffiles
    postinst = control_file(tools, "postinst")
    for unit in ["rapilog.service", "rapilog-crash.service"]:
        assert f"deb-systemd-helper enable '{unit}'" in postinst
    # Enabled, not started at installation (the region needs a reboot first).
    assert "deb-systemd-invoke start" not in postinst and "deb-systemd-invoke restart" not in postinst


def test_module_package(debs, tmp_path):
    module = debs["module"]
    files = contents(module)
    ko = f"usr/lib/modules/{KREL}/updates/rapilog.ko"
    assert files.get(ko) == (DATA, "root/root"), files
    assert field(module, "Package") == f"rapilog-modules-{KREL}"
    depends = field(module, "Depends")
    assert depends.split(" | ")[0] == f"linux-image-{KREL}", depends
    assert "rapilog-modules" in field(module, "Provides")
    for script in ["postinst", "postrm"]:
        assert f"depmod -a {KREL}" in control_file(module, script), script
    # The packaged module still fits the stock kernel (stripped of debug
    # information only): its symbols and vermagic, as make test's module-check.
    subprocess.run(["dpkg-deb", "-x", str(module), str(tmp_path)], check=True)
    r = subprocess.run([str(TOP / "tests" / "check-module.sh"), KREL, str(tmp_path / ko)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert subprocess.run(["modinfo", "-F", "vermagic", str(tmp_path / ko)], check=True, capture_output=True,
                          text=True).stdout.startswith(KREL + " ")


def test_source_package(debs, tmp_path):
    """rapilog-source: the module's sources as the repository has them (the
    same Kbuild builds them), the builder and its helpers, the three kernel
    hooks; its maintainer scripts rebuild on upgrade and clean up on removal.
    Building with it on a fresh system: make source-test (tests/source/)."""
    source = debs["source"]
    assert field(source, "Package") == "rapilog-source"
    assert field(source, "Architecture") == "all"
    depends = field(source, "Depends")
    for dep in ["python3", "apt", "kmod", "binutils"]:
        assert re.search(rf"(^|, ){dep}\b", depends), f"{dep} not in Depends: {depends}"
    files = contents(source)
    expected = {
        "usr/sbin/rapilog-build-module": EXEC,
        "usr/lib/rapilog-source/kernel-env": EXEC,
        "usr/lib/rapilog-source/rust-artifacts": EXEC,
        "etc/kernel/postinst.d/rapilog-source": EXEC,
        "etc/kernel/header_postinst.d/rapilog-source": EXEC,
        "etc/kernel/postrm.d/rapilog-source": EXEC,
        "usr/src/rapilog/Kbuild": DATA,
        "usr/src/rapilog/VERSION": DATA,
        "usr/src/rapilog/rapilog-blk/Kbuild": DATA,
        "usr/src/rapilog/rapilog-blk/rapilog_blk.rs": DATA,
        "usr/src/rapilog/rapilog-blk/sys/helpers.c": DATA,
        "usr/src/rapilog/rapilog-format/src/lib.rs": DATA,
        "usr/share/man/man8/rapilog-build-module.8.gz": DATA,
    }
    for path, mode in expected.items():
        assert files.get(path) == (mode, "root/root"), f"{path}: {files.get(path)}"
    # Every file of the module's tree the repository tracks, and nothing built.
    tracked = subprocess.run(["git", "-C", str(TOP), "ls-files", "Kbuild", "rapilog-blk", "rapilog-format/src"],
                             check=True, capture_output=True, text=True).stdout.split()
    shipped = {p.removeprefix("usr/src/rapilog/") for p, (mode, _) in files.items()
               if p.startswith("usr/src/rapilog/") and not mode.startswith("d")}
    assert shipped - {"VERSION"} == set(tracked), shipped.symmetric_difference(tracked)
    subprocess.run(["dpkg-deb", "-x", str(source), str(tmp_path)], check=True)
    assert (tmp_path / "usr/src/rapilog/VERSION").read_text().strip() == debs["version"]
    # The helpers run with the system's interpreters, not through env.
    assert (tmp_path / "usr/lib/rapilog-source/kernel-env").read_text().startswith("#!/usr/bin/python3\n")
    assert (tmp_path / "usr/lib/rapilog-source/rust-artifacts").read_text().startswith("#!/bin/bash\n")
    r = subprocess.run([str(tmp_path / "usr/lib/rapilog-source/kernel-env"), "apt", "--help"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "--headers" in r.stdout, r.stderr
    conffiles = control_file(source, "conffiles").split()
    assert "/etc/kernel/postinst.d/rapilog-source" in conffiles, conffiles
    assert "rapilog-build-module --no-install" in control_file(source, "postinst")
    assert "rapilog-build-module --remove" in control_file(source, "prerm")
    assert "rm -rf /var/lib/rapilog-source" in control_file(source, "postrm")


def test_lintian_clean(debs):
    r = in_chroot(f"cd /build/src && lintian --allow-root --fail-on error,warning {debs['changes'].name}", check=False)
    assert r.returncode == 0, f"lintian:\n{r.stdout}\n{r.stderr}"
    assert not re.search(r"^[EW]: ", r.stdout, re.M), r.stdout


def test_installed_in_trixie(debs):
    """apt installs rapilog-tools in the trixie chroot: the binaries run, the
    conffile and the enabled units are there, the drop-in writer escapes; then
    it is purged."""
    deb = f"/build/src/{debs['tools'].name}"
    in_chroot(f"apt-get install -y -q {deb} >/tmp/rapilog-apt.log 2>&1 || {{ tail -20 /tmp/rapilog-apt.log; exit 1; }}")
    try:
        r = in_chroot("rapilogctl --help && rapilogctl --version && rapilog-arm --help >/dev/null"
                      " && /usr/lib/rapilog/rapilog-rescue --help >/dev/null"
                      " && dpkg-query -W -f='${Conffiles}\\n' rapilog-tools"
                      " && ls /etc/systemd/system/local-fs.target.wants /etc/systemd/system/multi-user.target.wants")
        assert "Usage: rapilogctl" in r.stdout
        assert f"rapilogctl {debs['version'].split('+')[0]}" in r.stdout
        assert "/etc/rapilog/rapilog.conf" in r.stdout
        assert "rapilog.service" in r.stdout and "rapilog-crash.service" in r.stdout
        r = in_chroot("ldd /usr/lib/rapilog/rapilog-rescue 2>&1 || true")
        assert "statically linked" in r.stdout, r.stdout
        # plan --apply from the installed binary, on a fixture machine.
        iomem = ("00001000-0009ffff : System RAM\n00100000-7ffdffff : System RAM\n"
                 "  01000000-01e02fff : Kernel code\n7ffe0000-7fffffff : Reserved\n")
        r = in_chroot(f"d=$(mktemp -d) && printf '{iomem}' >$d/iomem && echo 'root=/dev/vda1' >$d/cmdline"
                      " && echo 'MemTotal: 2097000 kB' >$d/meminfo"
                      " && rapilogctl plan --iomem $d/iomem --cmdline $d/cmdline --meminfo $d/meminfo"
                      " --bandwidth 500 --apply --root $d/root >/dev/null && cat $d/root/etc/default/grub.d/rapilog.cfg"
                      " && rm -rf $d")
        line = [ln for ln in r.stdout.splitlines() if ln.startswith("GRUB_CMDLINE_LINUX_DEFAULT=")]
        # memmap=SIZE\\\$PHYS: the shell makes it \$ in grub.cfg, GRUB a plain $.
        want = (r'GRUB_CMDLINE_LINUX_DEFAULT="\$GRUB_CMDLINE_LINUX_DEFAULT '
                r'memmap=\d+M\\\\\\\$0x[0-9a-f]+ crashkernel=256M panic=10"')
        assert len(line) == 1 and re.fullmatch(want, line[0]), r.stdout
        # The kernel postinst hook, as for a newly installed KREL (the stock
        # modules bound in): the rescue initramfs where rapilog.conf says,
        # with the packaged static rapilog-rescue and the disk drivers.
        guest = subprocess.run([str(TOP / "qemu-scripts" / "fetch-kernel.sh"), KREL], check=True,
                               capture_output=True, text=True).stdout.strip()
        img = f"/var/lib/rapilog/rescue-initrd-{KREL}.img"
        r = in_chroot(f"/etc/kernel/postinst.d/zz-rapilog {KREL} && zcat {img} | cpio -t --quiet",
                      stock_modules=Path(guest) / "root/lib/modules" / KREL)
        listing = r.stdout.split()
        for member in ["init", "sbin/rapilog-rescue", "bin/busybox"]:
            assert member in listing, f"{member} not in {img}: {r.stdout}"
        assert any(m.endswith("/virtio_blk.ko") for m in listing), listing
    finally:
        in_chroot("apt-get purge -y -q rapilog-tools >/dev/null")
    r = in_chroot("ls /etc/rapilog /usr/sbin/rapilogctl /var/lib/rapilog 2>&1; true")
    assert r.stdout.count("No such file") == 3, r.stdout
