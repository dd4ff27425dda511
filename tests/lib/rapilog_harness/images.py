"""What a guest boots: the stock kernel, the busybox initramfs, the Debian
rootfs image, rapilog.ko and the modules.* indexes for the rootfs. Each
runs one of the repository's scripts (kernels/, qemu-scripts/) and is
cached: in .cache/ by the script, and per process here.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from .config import CACHE, DEFAULT_KREL, REPO, ROOTFS_BUILD_TIMEOUT, SCRIPTS
from .errors import GuestError

def pinned_krels() -> list[str]:
    """Every kernel pinned in kernels/*.env (KREL taken from the file name)."""
    return sorted(p.name[: -len(".env")] for p in (REPO / "kernels").glob("*.env"))


def _run_script(args: list[str], timeout: float | None = None) -> str:
    try:
        p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise GuestError(f"{' '.join(map(shlex.quote, args))} did not finish within {timeout:.0f} s:\n"
                         f"{e.stderr or ''}")
    if p.returncode != 0:
        raise GuestError(f"{' '.join(map(shlex.quote, args))} failed (rc {p.returncode}):\n{p.stderr}")
    return p.stdout.strip().splitlines()[-1]


def build_module(krel: str = DEFAULT_KREL) -> Path:
    """rapilog.ko for krel (Kbuild rebuilds only what changed); $RAPILOG_KO
    names a prebuilt one instead."""
    return Path(os.environ.get("RAPILOG_KO") or _run_script([str(REPO / "kernels/build-module.sh"), krel]))


def fetch_kernel(krel: str = DEFAULT_KREL) -> Path:
    """Cache directory of the stock kernel (vmlinuz, root/lib/modules/KREL)."""
    return Path(_run_script([str(SCRIPTS / "fetch-kernel.sh"), krel]))


_initramfs_memo: dict[str, Path] = {}
_initramfs_lock = threading.Lock()


def build_initramfs(krel: str = DEFAULT_KREL, files: dict[str, str | Path] | None = None,
                    modules: list[str] | None = None, load: list[str] | None = None,
                    overlays: list[str | Path] | None = None) -> Path:
    """Build (once per process and set of options) an initramfs; return its path.

    files: {guest path: host path}; "KREL" in a guest path is replaced by the
    kernel release, so a module can go to /lib/modules/KREL/extra/x.ko and be
    loaded with `modprobe x`.
    """
    files = {k.replace("KREL", krel): str(Path(v).resolve()) for k, v in (files or {}).items()}
    for dst, src in files.items():
        if not os.path.exists(src):
            raise GuestError(f"file for the guest {dst}: {src} does not exist")
    args = ["-k", krel]
    for dst, src in sorted(files.items()):
        args += ["--add", f"{src}:{dst}"]
    if modules:
        args += ["--modules", ",".join(modules)]
    if load is not None:
        args += ["--load", ",".join(load)]
    for o in overlays or []:
        args += ["--overlay", str(Path(o).resolve())]
    # Key on the options and on the content of every input, so a rebuilt
    # rapilog.ko is picked up in the same process.
    h = hashlib.sha256(json.dumps(args).encode())
    for src in sorted(files.values()):
        for p in sorted(Path(src).rglob("*")) if os.path.isdir(src) else [Path(src)]:
            if p.is_file():
                st = p.stat()
                h.update(f"{p}:{st.st_size}:{st.st_mtime_ns}".encode())
    key = h.hexdigest()[:16]
    with _initramfs_lock:
        if key not in _initramfs_memo:
            out = CACHE / "guest" / krel / (f"initramfs-{key}.cpio" if len(args) > 2 else "initramfs.cpio")
            _initramfs_memo[key] = Path(_run_script([str(SCRIPTS / "build-initramfs.sh"), *args, "-o", str(out)]))
        return _initramfs_memo[key]


# --- Debian rootfs (qemu-scripts/build-rootfs.sh) ------------------------------------
ROOTFS_SERIAL = "rl-rootfs"  # virtio serial of the rootfs disk
ROOT_INIT = "/bin/rapilog-root-init"  # rdinit of the initramfs in rootfs mode
_rootfs_memo: dict[tuple, Path] = {}
_rootfs_lock = threading.Lock()


def build_rootfs(krel: str = DEFAULT_KREL, packages: list[str] | tuple[str, ...] | None = None) -> Path:
    """Path of the Debian rootfs image for krel (built on first use, cached in
    .cache/guest/KREL/; ~ROOTFS_BUILD_MEASURED_S from scratch).

    packages: more Debian packages on top of the default set (fio,
    e2fsprogs, kexec-tools, dmsetup, ndctl, ...); each set is its own image."""
    extra = tuple(sorted(set(packages or ())))
    for pk in extra:
        if not re.fullmatch(r"[a-z0-9][a-z0-9+.-]*", pk):
            raise ValueError(f"bad Debian package name {pk!r}")
    key = (krel, extra)
    with _rootfs_lock:
        if key not in _rootfs_memo:
            args = [str(SCRIPTS / "build-rootfs.sh"), "-k", krel]
            if extra:
                args += ["--packages", " ".join(extra)]
            _rootfs_memo[key] = Path(_run_script(args, ROOTFS_BUILD_TIMEOUT))
        return _rootfs_memo[key]


_modidx_lock = threading.Lock()


def rootfs_module_index(krel: str, mods: dict[str, str | Path]) -> Path:
    """modules.* indexes of the stock modules of krel plus `mods` ({guest path
    under /lib/modules/KREL/: host file or directory}), made by the host's
    depmod over a hard-linked copy of the stock tree (~12 s: it decompresses
    every stock .ko.xz; the rootfs's own depmod takes ~55 s under TCG).
    Returns a directory of modules.* files,
    cached by the modules' paths, sizes and mtimes."""
    prefix = f"/lib/modules/{krel}/"
    h = hashlib.sha256(krel.encode())
    for dst, src in sorted(mods.items()):
        if not dst.startswith(prefix):
            raise ValueError(f"{dst} is not under {prefix}")
        src = Path(src).resolve()
        for p in sorted(src.rglob("*")) if src.is_dir() else [src]:
            if p.is_file():
                st = p.stat()
                h.update(f"{dst}:{p}:{st.st_size}:{st.st_mtime_ns}".encode())
    out = CACHE / "guest" / krel / f"modidx-{h.hexdigest()[:16]}"
    with _modidx_lock:
        if (out / ".done").exists():
            return out
        stock = fetch_kernel(krel) / "root" / "lib" / "modules" / krel
        tmp = Path(tempfile.mkdtemp(prefix=".modidx-", dir=CACHE / "guest" / krel))
        try:
            m = tmp / "lib" / "modules" / krel
            m.mkdir(parents=True)
            subprocess.run(["cp", "-al", str(stock / "kernel"), str(m / "kernel")], check=True)
            for f in stock.glob("modules.builtin*"):
                shutil.copy2(f, m / f.name)
            if (stock / "modules.order").exists():
                shutil.copy2(stock / "modules.order", m / "modules.order")
            for dst, src in mods.items():
                d = m / dst[len(prefix):]
                d.parent.mkdir(parents=True, exist_ok=True)
                if os.path.isdir(src):
                    shutil.copytree(src, d, dirs_exist_ok=True)
                else:
                    shutil.copy2(src, d)
            p = subprocess.run(["depmod", "-b", str(tmp), krel], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
            if p.returncode != 0:
                raise GuestError(f"depmod over the stock modules + {sorted(mods)} failed:\n{p.stdout}")
            if out.exists():
                shutil.rmtree(out)
            out.mkdir()
            for f in m.glob("modules.*"):
                if not f.name.startswith(("modules.builtin", "modules.order")):
                    shutil.copy2(f, out / f.name)
            (out / ".done").touch()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return out
