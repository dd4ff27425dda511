"""QEMU guest harness for rapilog tests (Python 3.11 stdlib only).

Boots the *unmodified* stock Debian kernel (fetched by
qemu-scripts/fetch-kernel.sh) with the busybox initramfs of
qemu-scripts/build-initramfs.sh under QEMU TCG (never KVM: nested KVM on this
machine kind crashes stock kernels), and drives it through a command agent on
a virtio-serial port that is separate from the kernel console.

    from guest import Guest, Disk

    with Guest("smoke", memmap="64M$0x60000000",
               disks=[Disk("log.img", serial="rl-log", size=64 << 20)],
               files={"/lib/modules/KREL/extra/rapilog.ko": "rapilog-blk/rapilog.ko"},
               ) as g:
        g.boot()                              # start() + wait_booted()
        print(g.check("uname -r"))            # raises CommandFailed on rc != 0
        rc, out = g.run("false")              # (rc, stdout+stderr)
        g.send("echo c > /proc/sysrq-trigger")  # fire and forget
        g.wait_console(r"Kernel panic")       # regex over the captured console

Logs go to .cache/test-logs/NAME/ (console.log with host timestamps per
line, agent.log, qmp.log, qemu.log, qemu-cmdline.txt) and are kept.

Timeouts are multiples of boot times measured on this machine (see
BOOT_MEASURED_S) and scale with $RAPILOG_TIMEOUT_SCALE (e.g. 3 on a slow CI).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "qemu-scripts"
CACHE = Path(os.environ.get("RAPILOG_CACHE", REPO / ".cache"))
LOG_ROOT = CACHE / "test-logs"
DEFAULT_KREL = os.environ.get("RAPILOG_KREL", "7.3.4+deb13-amd64")
QEMU = os.environ.get("RAPILOG_QEMU", "qemu-system-x86_64")
AGENT_PORT_NAME = "org.rapilog.agent"
# How long an incomplete console line must stay unchanged before a match
# reaching its end counts (wait_console).
PARTIAL_SETTLE_S = 1.0

# --- timeouts ------------------------------------------------------------------
# Boot-to-agent-ready, measured on this project's machine kind (2 cores, QEMU
# 10.0.2 TCG, -smp 2 -m 2G, memmap region, stock kernel + busybox initramfs;
# host seconds from QEMU start to the agent's READY line) on 2026-11-23 with
# qemu-scripts/measure-boot.py:
#   7.3.4+deb13-amd64   6.19 6.54 6.73 7.21 7.22 7.94  (median 6.97)
#     + intel-iommu     6.24 6.65 9.23; shared-file RAM 6.46 6.83 8.04
#     + "quiet"         5.38 5.56 5.79
#   7.2.13+deb14-amd64  8.05 8.27 8.68 9.76            (median 8.48)
# Timeouts derive from the slower kernel's median: 5x + 20 s.
BOOT_MEASURED_S = 8.5
TIMEOUT_SCALE = float(os.environ.get("RAPILOG_TIMEOUT_SCALE", "1") or 1)


def scaled(seconds: float) -> float:
    """A timeout in seconds, scaled by $RAPILOG_TIMEOUT_SCALE."""
    return seconds * TIMEOUT_SCALE


BOOT_TIMEOUT = scaled(5 * BOOT_MEASURED_S + 20)  # 62.5 s at scale 1
# Guest(rootfs=...): boot to agent ready with the Debian rootfs image
# (initramfs -> rapilog-root-init -> switch_root -> busybox init + rcS +
# agent), 7.3.4+deb13-amd64, same host seconds as above, measured 2026-11-23
# interleaved with initramfs boots while other guests loaded the host
# (load average 3.5-5.7 on 2 cores):
#   rootfs     10.30 14.92 15.37 15.66 18.16  (median 15.4; guest uptime 11.4)
#   initramfs   9.38  9.56 11.96 12.56 17.54  (median 12.0; uptime 6.8)
# and 11.1 12.3 14.2 s for the rootfs on a less loaded host: ~1.3-1.6x the
# initramfs (Debian's dynamically linked tools start slowly under TCG, on a
# cold page cache). The timeout derives from the loaded median: 5x + 20 s.
ROOTFS_BOOT_MEASURED_S = 15.4
ROOTFS_BOOT_TIMEOUT = scaled(5 * ROOTFS_BOOT_MEASURED_S + 20)  # 97 s at scale 1
# build-rootfs.sh from scratch (empty cache, kernel already fetched), measured
# 2026-11-23 with other guests running (load 4-5 on 2 cores): debootstrap
# 139 s (first stage: 73 MB of .debs from the Debian archive + extract 66 s;
# second stage with dpkg force-unsafe-io 73 s), modules + depmod +
# mkfs.ext4 -d 14 s: 152.8 s (an earlier one-stage run: 135.5 s). In a fresh
# clone at load ~3 (test_rootfs.py paying it): 84.5 s (debootstrap 73.8 s,
# pack 10.7 s). The timeout uses the slowest. The first Guest(rootfs=...) of
# a fresh checkout pays it; cached afterwards (~0.1 s); a change of the boot
# files only repacks (~15-25 s).
ROOTFS_BUILD_MEASURED_S = 152.8
ROOTFS_BUILD_TIMEOUT = scaled(5 * ROOTFS_BUILD_MEASURED_S + 120)  # 884 s: a hung download fails, not hangs
CMD_TIMEOUT = scaled(60)  # default for run()/check()
QMP_TIMEOUT = scaled(10)
EXIT_TIMEOUT = scaled(30)


# --- errors ----------------------------------------------------------------------
class GuestError(Exception):
    """The guest or QEMU did not behave (died, timed out, protocol error)."""


class GuestDied(GuestError):
    pass


class GuestRebooted(GuestError):
    pass


class GuestPanicked(GuestDied):
    """The kernel panicked (pvpanic event or "Kernel panic" on the console)."""


class CommandFailed(GuestError):
    def __init__(self, cmd: str, rc: int, output: str):
        self.cmd, self.rc, self.output = cmd, rc, output
        super().__init__(f"guest command failed (rc {rc}): {cmd}\n--- output ---\n{output}")


class CommandTimeout(GuestError):
    def __init__(self, cmd: str, timeout: float, output: str = ""):
        self.cmd, self.timeout, self.output = cmd, timeout, output
        super().__init__(f"guest command timed out after {timeout:.0f} s: {cmd}\n--- output ---\n{output}")


class QMPError(GuestError):
    pass


# --- helpers ---------------------------------------------------------------------
_SIZE = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(s: str | int) -> int:
    """'2G' -> 2147483648 (QEMU/kernel suffixes, powers of two)."""
    if isinstance(s, int):
        return s
    m = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)i?B?\s*", str(s), re.I)
    if not m:
        raise ValueError(f"bad size {s!r}")
    return int(m.group(1)) * _SIZE[m.group(2).upper()]


def parse_memmap(spec: str) -> tuple[int, int]:
    """'64M$0x60000000' -> (start, size) of a memmap=nn$ss reservation."""
    size, _, start = spec.partition("$")
    if not start:
        raise ValueError(f"memmap {spec!r}: expected SIZE$START")
    return int(start, 0), parse_size(size)


def q35_phys_to_offset(phys: int, ram_size: int) -> int:
    """Guest-physical address -> offset in the RAM backend file on q35.

    QEMU's pc_q35 puts all RAM below 4 GiB when ram_size < 0xb0000000 (2.75
    GiB); otherwise the first 2 GiB go below 4 GiB and the rest starts at
    4 GiB. The backend file holds below-4G RAM at offset 0 and the rest right
    after it. (Verified by tests/qemu/test_boot.py::test_ram_file_*.)
    """
    below = ram_size if ram_size < 0xB0000000 else 0x80000000
    if 0 <= phys < below:
        return phys
    if phys >= 1 << 32 and phys - (1 << 32) < ram_size - below:
        return phys - (1 << 32) + below
    raise ValueError(f"guest physical {phys:#x} is not RAM (ram {ram_size:#x}, below-4G {below:#x})")


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


@dataclass
class Disk:
    """A raw image file attached as virtio-blk.

    The guest finds it with `disk-by-serial SERIAL` (or /sys/block/*/serial).
    The file is created sparse with `size` bytes if it does not exist; a
    relative path is relative to the guest's log directory.
    iops: QEMU throttling (throttling.iops-total, 4 KiB iops-size): 200 ~ a
    10k rpm disk. QMP's block_set_io_throttle addresses it as id
    "ID/virtio-backend" (see Guest.set_throttle).
    """

    path: str | Path
    serial: str
    size: int | str | None = None
    id: str | None = None
    cache: str = "directsync"
    aio: str = "threads"
    iops: int | None = None
    iops_size: int = 4096
    readonly: bool = False
    extra: str = ""  # appended to -drive

    def qemu_id(self) -> str:
        return self.id or re.sub(r"[^A-Za-z0-9_-]", "_", self.serial)


@dataclass
class _Pending:
    cmd: str
    sent: float
    boots: int  # len(Guest.boots) when sent
    events: int  # len(Guest.events) when sent
    console: int  # len(Guest.console) when sent
    rc: int | None = None
    out: bytes = b""
    done: bool = False


class Guest:
    """One QEMU guest; use as a context manager (always kills QEMU on exit)."""

    def __init__(self, name: str = "guest", *, krel: str = DEFAULT_KREL, mem: str | int = "2G",
                 smp: int = 2, memmap: str | None = None, crashkernel: str | None = None,
                 append: str | list[str] = "", disks: list[Disk] | None = None,
                 iommu: bool = False, ram_file: bool | str | Path = False,
                 pvpanic: bool = False, panic_action: str = "none",
                 files: dict[str, str | Path] | None = None, modules: list[str] | None = None,
                 load: list[str] | None = None, overlays: list[str | Path] | None = None,
                 initramfs: str | Path | None = None, agent: str = "virtio",
                 no_reboot: bool = False, qemu_args: list[str] | None = None,
                 log_dir: str | Path | None = None, boot_timeout: float | None = None,
                 rootfs: bool | str | Path | list[str] | tuple[str, ...] | None = None):
        """rootfs: boot the Debian rootfs image instead of staying in the
        busybox initramfs: True (default image for krel), a list of extra
        Debian packages (their own image), or the path of an image (raw or
        qcow2). It is attached through a per-guest qcow2 overlay in the log
        directory (tests never modify the cached image; restart() keeps the
        overlay) as a virtio disk with serial ROOTFS_SERIAL, and the initramfs
        switch_roots into it (qemu-scripts/guest/rapilog-root-init). files=,
        overlays= and load= apply to the rootfs; modules= is moot (every
        stock module is there). The agent and boot hooks are the same.
        """
        self.name = re.sub(r"[^A-Za-z0-9_.+-]", "_", name)
        self.krel = krel
        self.mem = parse_size(mem)
        self.smp = smp
        self.memmap = memmap
        self.crashkernel = crashkernel
        self.append = append if isinstance(append, str) else " ".join(append)
        self.disks = list(disks or [])
        self.iommu = iommu
        self.pvpanic = pvpanic
        self.panic_action = panic_action
        self.files, self.modules, self.load, self.overlays = files, modules, load, overlays
        self.initramfs = Path(initramfs) if initramfs else None
        if agent not in ("virtio", "serial"):
            raise ValueError("agent: 'virtio' (virtio-serial port) or 'serial' (ttyS1)")
        self.agent = agent
        self.no_reboot = no_reboot
        self.qemu_args = list(qemu_args or [])
        if rootfs is False:
            rootfs = None
        if isinstance(rootfs, (list, tuple)):
            rootfs = tuple(rootfs)
        self.rootfs = rootfs
        self.rootfs_image: Path | None = None  # resolved at start()
        self.rootfs_overlay: Path | None = None
        self.boot_timeout = boot_timeout or (ROOTFS_BOOT_TIMEOUT if rootfs is not None else BOOT_TIMEOUT)
        self.log_dir = Path(log_dir) if log_dir else LOG_ROOT / self.name
        if self.log_dir.exists():
            shutil.rmtree(self.log_dir)
        self.log_dir.mkdir(parents=True)
        # Guest RAM in a shared file: True -> a tmpfs file removed by close();
        # a path -> that file, kept (reused content on the next start: the
        # memory survives a QEMU kill, like NVDIMM).
        self._ram_file_tmp = ram_file is True
        if ram_file is True:
            shm = Path("/dev/shm") if os.path.isdir("/dev/shm") else Path(tempfile.gettempdir())
            self.ram_file: Path | None = shm / f"rapilog-{self.name}-{os.getpid()}.ram"
        else:
            self.ram_file = Path(ram_file) if ram_file else None

        self.kdir: Path | None = None
        self.proc: subprocess.Popen | None = None
        self._run_dir: str | None = None
        self._cv = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._socks: list[socket.socket] = []
        self._starts = 0
        self._t0 = time.monotonic()  # QEMU start (for relative timestamps)
        # console: complete lines (host time, text) + the partial last line
        self.console: list[tuple[float, str]] = []
        self._console_partial = ""
        # When the incomplete last line last grew (time.monotonic()).
        self._console_partial_at = 0.0
        # QMP
        self.events: list[dict] = []
        self._qmp_sock: socket.socket | None = None
        self._qmp_replies: dict[int, dict] = {}
        self._qmp_id = 0
        self._qmp_lock = threading.Lock()
        # agent
        self._agent_sock: socket.socket | None = None
        self._agent_wlock = threading.Lock()
        self.boots: list[dict] = []  # READY announcements: boot_id, uptime, krel, t
        self._boot_cursor = 0
        self._pending: dict[str, _Pending] = {}
        self._req = 0
        self.ready_times: list[float] = []  # host seconds from (re)start to READY
        self._logs = {n: open(self.log_dir / n, "a", buffering=1, encoding="utf-8", errors="replace")
                      for n in ("console.log", "agent.log", "qmp.log")}

    # --- context manager ---------------------------------------------------------------
    def __enter__(self) -> "Guest":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Kill QEMU (if running), stop the I/O threads, keep the logs."""
        self.kill()
        if self._ram_file_tmp and self.ram_file:
            self.ram_file.unlink(missing_ok=True)
        for f in self._logs.values():
            try:
                f.close()
            except OSError:
                pass

    def __del__(self):
        try:
            if self.proc and self.proc.poll() is None:
                self.proc.kill()
        except Exception:
            pass

    # --- command line -------------------------------------------------------------------
    def kernel_cmdline(self) -> str:
        args = ["console=ttyS0,115200"]
        if self.memmap:
            args.append(f"memmap={self.memmap}")
        if self.crashkernel:
            args.append(f"crashkernel={self.crashkernel}")
        if self.iommu:
            args += ["intel_iommu=on", "iommu.strict=1"]
        if self.agent == "serial":
            args.append("rapilog.agent=/dev/ttyS1")
        if self.rootfs is not None:
            args += [f"rdinit={ROOT_INIT}", f"rapilog.root={ROOTFS_SERIAL}"]
        if self.append:
            args.append(self.append)
        return " ".join(args)

    def qemu_cmdline(self) -> list[str]:
        assert self.kdir and self._run_dir
        rd = self._run_dir
        vdev = ",disable-legacy=on,iommu_platform=on" if self.iommu else ""
        machine = "q35,accel=tcg"
        if self.iommu:
            machine += ",kernel-irqchip=split"
        if self.ram_file:
            machine += ",memory-backend=mem"
        cmd = [QEMU, "-name", f"rapilog-{self.name}", "-machine", machine, "-cpu", "max",
               "-smp", str(self.smp), "-m", f"{self.mem // (1 << 20)}M",
               "-nodefaults", "-no-user-config", "-display", "none", "-S",
               "-kernel", str(self.kdir / "vmlinuz"), "-initrd", str(self.initramfs),
               "-append", self.kernel_cmdline(),
               "-qmp", f"unix:{rd}/qmp.sock,server=on,wait=off",
               "-chardev", f"socket,id=con,path={rd}/console.sock,server=on,wait=off",
               "-serial", "chardev:con",
               "-chardev", f"socket,id=agent,path={rd}/agent.sock,server=on,wait=off"]
        if self.iommu:  # before the devices it translates
            cmd += ["-device", "intel-iommu,intremap=on,caching-mode=on"]
        if self.agent == "virtio":
            cmd += ["-device", f"virtio-serial-pci,id=vser{vdev}",
                    "-device", f"virtserialport,bus=vser.0,chardev=agent,name={AGENT_PORT_NAME}"]
        else:
            cmd += ["-serial", "chardev:agent"]
        if self.ram_file:
            cmd += ["-object", f"memory-backend-file,id=mem,size={self.mem},mem-path={self.ram_file},share=on"]
        for d in self.disks:
            p = Path(d.path)
            if not p.is_absolute():
                p = self.log_dir / p
            if not p.exists():
                if d.size is None:
                    raise GuestError(f"disk {p} does not exist and has no size")
                p.parent.mkdir(parents=True, exist_ok=True)
                with open(p, "wb") as f:
                    f.truncate(parse_size(d.size))
            did = d.qemu_id()
            drive = f"file={p},format=raw,if=none,id=drv-{did},cache={d.cache},aio={d.aio}"
            if d.iops:
                drive += f",throttling.iops-total={d.iops},throttling.iops-size={d.iops_size}"
            if d.readonly:
                drive += ",readonly=on"
            if d.extra:
                drive += "," + d.extra
            cmd += ["-drive", drive,
                    "-device", f"virtio-blk-pci,drive=drv-{did},id={did},serial={d.serial}{vdev}"]
        if self.rootfs_overlay:  # after the test's disks: they keep their vdX names
            cmd += ["-drive", f"file={self.rootfs_overlay},format=qcow2,if=none,id=drv-rootfs,"
                              f"cache=writeback,aio=threads,discard=unmap",
                    "-device", f"virtio-blk-pci,drive=drv-rootfs,id=rootfs,serial={ROOTFS_SERIAL}{vdev}"]
        if self.pvpanic:
            cmd += ["-device", "pvpanic-pci", "-action", f"panic={self.panic_action}"]
        if self.no_reboot:
            cmd += ["-action", "reboot=shutdown"]
        return cmd + self.qemu_args

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> "Guest":
        """Start QEMU (paused), attach console/QMP/agent, then let it run."""
        if self.proc and self.proc.poll() is None:
            raise GuestError("already running")
        if self.kdir is None:
            self.kdir = fetch_kernel(self.krel)
        if self.rootfs is not None:
            self._prepare_rootfs()
        if self.initramfs is None:
            if self.rootfs is not None:
                self.initramfs = self._rootfs_initramfs()
            else:
                self.initramfs = build_initramfs(self.krel, self.files, self.modules, self.load, self.overlays)
        self._run_dir = tempfile.mkdtemp(prefix="rapilog-qemu-")  # short: AF_UNIX path limit
        cmd = self.qemu_cmdline()
        self._starts += 1
        (self.log_dir / "qemu-cmdline.txt").open("a").write(" ".join(map(shlex.quote, cmd)) + "\n")
        for f in self._logs.values():
            f.write(f"===== QEMU start #{self._starts} at {time.strftime('%Y-%m-%d %H:%M:%S')} =====\n")
        self._qemu_log = open(self.log_dir / "qemu.log", "ab")
        # setpriv --pdeathsig: QEMU dies with the thread that started it, even
        # if the test process is SIGKILLed (no orphaned guests eating CPU).
        wrap = ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []
        self.proc = subprocess.Popen(wrap + cmd, stdin=subprocess.DEVNULL, stdout=self._qemu_log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self._t0 = time.monotonic()
        with self._cv:
            self._boot_cursor = len(self.boots)
        try:
            self._qmp_sock = self._connect("qmp.sock")
            self._agent_sock = self._connect("agent.sock")
            con = self._connect("console.sock")
            self._start_thread(self._qmp_reader, self._qmp_sock)
            self._start_thread(self._agent_reader, self._agent_sock)
            self._start_thread(self._console_reader, con)
            self.qmp("qmp_capabilities")
            self.qmp("cont")
        except BaseException:
            self.kill()
            raise
        return self

    def _prepare_rootfs(self) -> None:
        """Resolve the rootfs image and create this guest's overlay (once: a
        restart() keeps what the guest wrote, like a real disk)."""
        if self.rootfs_image is None:
            if self.rootfs is True:
                self.rootfs_image = build_rootfs(self.krel)
            elif isinstance(self.rootfs, tuple):
                self.rootfs_image = build_rootfs(self.krel, self.rootfs)
            else:
                self.rootfs_image = Path(self.rootfs).resolve()
                if not self.rootfs_image.is_file():
                    raise GuestError(f"rootfs image {self.rootfs_image} does not exist")
        if self.rootfs_overlay is None or not self.rootfs_overlay.exists():
            with open(self.rootfs_image, "rb") as f:
                fmt = "qcow2" if f.read(4) == b"QFI\xfb" else "raw"
            ov = self.log_dir / "rootfs-overlay.qcow2"
            p = subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(self.rootfs_image),
                                "-F", fmt, str(ov)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if p.returncode != 0:
                raise GuestError(f"qemu-img create of the rootfs overlay failed:\n{p.stdout}")
            self.rootfs_overlay = ov

    def _rootfs_initramfs(self) -> Path:
        """The busybox initramfs in root mode: rapilog-root-init as rdinit,
        ext4 among its modules, the test's files and overlays staged under
        /rootfs-add and /rootfs-overlay/N for rapilog-root-init to copy."""
        files = {f"/rootfs-add{k if k.startswith('/') else '/' + k}": v for k, v in (self.files or {}).items()}
        mdir = f"/lib/modules/{self.krel}/"
        mods = {k.replace("KREL", self.krel): v for k, v in (self.files or {}).items()}
        mods = {k: v for k, v in mods.items() if k.startswith(mdir)}
        if mods:
            for f in rootfs_module_index(self.krel, mods).iterdir():
                files[f"/rootfs-add{mdir}{f.name}"] = f
        for i, o in enumerate(self.overlays or []):
            files[f"/rootfs-overlay/{i:03d}"] = o
        files[ROOT_INIT] = SCRIPTS / "guest" / "rapilog-root-init"
        return build_initramfs(self.krel, files, list(self.modules or []) + ["ext4"], self.load)

    def boot(self, timeout: float | None = None) -> "Guest":
        """start() and wait_booted()."""
        self.start()
        self.wait_booted(timeout)
        return self

    def _connect(self, name: str) -> socket.socket:
        path = os.path.join(self._run_dir, name)
        deadline = time.monotonic() + scaled(20)
        while True:
            if self.proc.poll() is not None:
                raise GuestDied(f"QEMU exited with {self.proc.returncode} at start:\n{self.qemu_log_tail()}")
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(path)
                self._socks.append(s)
                return s
            except (FileNotFoundError, ConnectionRefusedError):
                s.close()
                if time.monotonic() > deadline:
                    raise GuestError(f"QEMU did not open {path}")
                time.sleep(0.02)

    def _start_thread(self, fn, sock) -> None:
        t = threading.Thread(target=fn, args=(sock,), daemon=True, name=f"{self.name}-{fn.__name__}")
        t.start()
        self._threads.append(t)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def qemu_log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join((self.log_dir / "qemu.log").read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def wait_booted(self, timeout: float | None = None) -> dict:
        """Wait for the next agent READY (after start(), a reboot or a reset).

        Returns {"boot_id", "uptime", "krel", "t"} (t: host seconds since
        QEMU start)."""
        timeout = timeout or self.boot_timeout
        deadline = time.monotonic() + timeout
        with self._cv:
            while len(self.boots) <= self._boot_cursor:
                if not self.running():
                    raise GuestDied(f"QEMU exited ({self.proc.returncode if self.proc else None}) before the agent "
                                    f"was ready\n{self.console_tail()}\n{self.qemu_log_tail()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise GuestError(f"guest not ready after {timeout:.0f} s\n{self.console_tail()}")
                self._cv.wait(min(left, 0.5))
            b = self.boots[self._boot_cursor]
            self._boot_cursor += 1
            return b

    def kill(self) -> None:
        """SIGKILL QEMU (a power cut: guest RAM is lost unless ram_file)."""
        if self.proc is not None:
            if self.proc.poll() is None:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self._teardown_io()

    def _teardown_io(self) -> None:
        for s in self._socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        self._socks.clear()
        for t in self._threads:
            t.join(timeout=5)
        self._threads.clear()
        if self._run_dir:
            shutil.rmtree(self._run_dir, ignore_errors=True)
            self._run_dir = None
        if getattr(self, "_qemu_log", None):
            self._qemu_log.close()
            self._qemu_log = None
        with self._cv:
            self._cv.notify_all()

    def wait_exit(self, timeout: float | None = None) -> int:
        """Wait for QEMU to exit by itself (poweroff, -no-reboot); its rc."""
        try:
            rc = self.proc.wait(timeout=timeout or EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise GuestError(f"QEMU still running after {timeout or EXIT_TIMEOUT:.0f} s")
        self._teardown_io()
        return rc

    def quit(self) -> None:
        """Stop QEMU through QMP (graceful for QEMU, abrupt for the guest)."""
        if self.running():
            try:
                self.qmp("quit")
            except GuestError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def restart(self, timeout: float | None = None) -> dict:
        """Kill QEMU and boot again with the same disks (and RAM file)."""
        self.kill()
        self.start()
        return self.wait_booted(timeout)

    def reboot(self, timeout: float | None = None) -> dict:
        """`reboot -f` inside the guest; wait for the agent of the next boot."""
        self.send("sync; reboot -f")
        return self.wait_booted(timeout)

    def reset(self, timeout: float | None = None) -> dict:
        """QMP system_reset (RAM kept, like a reset button); wait for the agent."""
        self.qmp("system_reset")
        return self.wait_booted(timeout)

    def powerdown(self) -> None:
        """ACPI power button press (KEY_POWER on "Power Button" if `button` is loaded)."""
        self.qmp("system_powerdown")

    def inject_nmi(self) -> None:
        """NMI to the guest (arrives on CPU 0)."""
        self.qmp("inject-nmi")

    # --- console ---------------------------------------------------------------------------
    def _console_reader(self, sock: socket.socket) -> None:
        log = self._logs["console.log"]
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            now = time.monotonic()
            if not data:
                with self._cv:
                    if self._console_partial:
                        self._add_console_line(now, self._console_partial, log)
                        self._console_partial = ""
                    self._cv.notify_all()
                return
            text = data.decode("utf-8", errors="replace").replace("\r", "")
            with self._cv:
                buf = self._console_partial + text
                *lines, self._console_partial = buf.split("\n")
                self._console_partial_at = now
                for line in lines:
                    self._add_console_line(now, line, log)
                self._cv.notify_all()

    def _add_console_line(self, now: float, line: str, log) -> None:
        self.console.append((now, line))
        log.write(f"[{time.strftime('%H:%M:%S')}.{int((time.time() % 1) * 1000):03d} "
                  f"+{now - self._t0:8.3f}] {line}\n")

    def console_mark(self) -> int:
        """Position in the console to pass as since= to wait_console()."""
        with self._cv:
            return len(self.console)

    def console_text(self, since: int = 0) -> str:
        with self._cv:
            return "\n".join(l for _, l in self.console[since:]) + (
                "\n" + self._console_partial if self._console_partial else "")

    def console_tail(self, n: int = 40) -> str:
        with self._cv:
            lines = [l for _, l in self.console[-n:]]
            if self._console_partial:
                lines.append(self._console_partial)
        return "--- console (last lines) ---\n" + "\n".join(lines)

    def wait_console(self, regex: str, timeout: float | None = None, since: int = 0) -> re.Match:
        """Wait for a console line (from line index `since`) matching regex.

        The incomplete last line (a prompt) matches too, but a match that
        reaches its end only once the line has stopped growing for
        PARTIAL_SETTLE_S: a pattern ending in `.*` must see the whole line,
        not the part of it that had arrived (test_powerfail once read a
        drain line cut at "powerfail_res")."""
        rx = re.compile(regex)
        timeout = timeout or CMD_TIMEOUT
        deadline = time.monotonic() + timeout
        i = since
        with self._cv:
            while True:
                while i < len(self.console):
                    m = rx.search(self.console[i][1])
                    if m:
                        return m
                    i += 1
                m = rx.search(self._console_partial)
                if m and (m.end() < len(self._console_partial)
                          or time.monotonic() - self._console_partial_at >= PARTIAL_SETTLE_S):
                    return m
                if not self.running() and not self._threads_alive():
                    raise GuestDied(f"QEMU exited; console never matched {regex!r}\n{self.console_tail()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise GuestError(f"console did not match {regex!r} within {timeout:.0f} s\n{self.console_tail()}")
                self._cv.wait(min(left, PARTIAL_SETTLE_S if m else 0.5))

    def _threads_alive(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    # --- QMP --------------------------------------------------------------------------------
    def _qmp_reader(self, sock: socket.socket) -> None:
        log = self._logs["qmp.log"]
        f = sock.makefile("rb")
        try:
            for raw in f:
                try:
                    msg = json.loads(raw)
                except ValueError:
                    continue
                t = time.monotonic() - self._t0
                log.write(f"+{t:8.3f} <- {raw.decode(errors='replace').strip()}\n")
                with self._cv:
                    if "event" in msg:
                        msg["host_t"] = t
                        self.events.append(msg)
                    elif "id" in msg:
                        self._qmp_replies[msg["id"]] = msg
                    self._cv.notify_all()
        except OSError:
            pass
        with self._cv:
            self._cv.notify_all()

    def qmp(self, cmd: str, args: dict | None = None, timeout: float | None = None, **kwargs):
        """Run a QMP command; return its "return" value, raise QMPError on error.

        Arguments as a dict or keywords (use args= for names with dashes)."""
        if self._qmp_sock is None:
            raise GuestError("QEMU not started")
        a = dict(args or {}, **kwargs)
        with self._qmp_lock:
            self._qmp_id += 1
            qid = self._qmp_id
            msg = {"execute": cmd, "id": qid}
            if a:
                msg["arguments"] = a
            data = json.dumps(msg)
            self._logs["qmp.log"].write(f"+{time.monotonic() - self._t0:8.3f} -> {data}\n")
            try:
                self._qmp_sock.sendall(data.encode() + b"\n")
            except OSError as e:
                raise GuestDied(f"QMP {cmd}: {e}")
        deadline = time.monotonic() + (timeout or QMP_TIMEOUT)
        with self._cv:
            while qid not in self._qmp_replies:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise GuestError(f"QMP {cmd}: no reply")
                if not self.running() and cmd != "quit":
                    raise GuestDied(f"QMP {cmd}: QEMU exited")
                self._cv.wait(min(left, 0.2))
            r = self._qmp_replies.pop(qid)
        if "error" in r:
            raise QMPError(f"QMP {cmd}: {r['error'].get('class')}: {r['error'].get('desc')}")
        return r.get("return")

    def event_mark(self) -> int:
        with self._cv:
            return len(self.events)

    def wait_event(self, name: str | tuple[str, ...], timeout: float | None = None, since: int = 0) -> dict:
        """Wait for a QMP event (e.g. "GUEST_PANICKED") at index >= since.

        Returns the event dict; host_t is its host time since QEMU start."""
        names = (name,) if isinstance(name, str) else tuple(name)
        timeout = timeout or CMD_TIMEOUT
        deadline = time.monotonic() + timeout
        i = since
        with self._cv:
            while True:
                while i < len(self.events):
                    if self.events[i]["event"] in names:
                        return self.events[i]
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise GuestError(f"no QMP event {names} within {timeout:.0f} s; events: "
                                     f"{[e['event'] for e in self.events[since:]]}\n{self.console_tail()}")
                if not self.running() and not self._threads_alive():
                    raise GuestDied(f"QEMU exited without event {names}")
                self._cv.wait(min(left, 0.5))

    def set_throttle(self, disk: Disk | str, iops: int, iops_size: int = 4096) -> None:
        """Change a disk's IOPS limit at run time (0 = unlimited)."""
        did = disk.qemu_id() if isinstance(disk, Disk) else disk
        args = {"id": f"{did}/virtio-backend", "bps": 0, "bps_rd": 0, "bps_wr": 0,
                "iops": iops, "iops_rd": 0, "iops_wr": 0}
        if iops:
            args["iops_size"] = iops_size
        self.qmp("block_set_io_throttle", args)

    # --- agent ------------------------------------------------------------------------------
    def _agent_reader(self, sock: socket.socket) -> None:
        log = self._logs["agent.log"]
        f = sock.makefile("rb")
        try:
            for raw in f:
                t = time.monotonic() - self._t0
                parts = raw.split()
                if not parts:
                    continue
                with self._cv:
                    if parts[0] == b"RAPILOG-AGENT" and len(parts) >= 5 and parts[1] == b"READY":
                        b = {"boot_id": parts[2].decode(), "uptime": float(parts[3]),
                             "krel": parts[4].decode(), "t": t}
                        self.boots.append(b)
                        self.ready_times.append(t)
                        log.write(f"+{t:8.3f} READY {b}\n")
                    elif len(parts) in (2, 3) and parts[0].decode(errors="replace") in self._pending \
                            and parts[1].lstrip(b"-").isdigit():
                        p = self._pending[parts[0].decode()]
                        try:
                            p.out = base64.b64decode(parts[2]) if len(parts) == 3 else b""
                        except ValueError:
                            p.out = b"<agent: undecodable output>"
                        p.rc = int(parts[1])
                        p.done = True
                        out = p.out.decode(errors="replace")
                        if len(out) > 4000:
                            out = out[:2000] + f"\n... [{len(p.out)} bytes] ...\n" + out[-2000:]
                        log.write(f"+{t:8.3f} <- {parts[0].decode()} rc={p.rc} "
                                  f"({t - (p.sent - self._t0):.3f} s)\n{out}"
                                  + ("" if out.endswith("\n") or not out else "\n"))
                    else:
                        log.write(f"+{t:8.3f} noise: {raw[:200]!r}\n")
                    self._cv.notify_all()
        except OSError:
            pass
        with self._cv:
            self._cv.notify_all()

    def _send(self, cmd: str, timeout: float) -> str:
        if self._agent_sock is None or not self.running():
            raise GuestDied("QEMU is not running")
        with self._cv:
            self._req += 1
            rid = f"r{self._starts}x{self._req}"
            self._pending[rid] = _Pending(cmd, time.monotonic(), len(self.boots), len(self.events),
                                          len(self.console))
        tmo = 0 if timeout <= 0 else max(1, math.ceil(timeout))
        self._logs["agent.log"].write(f"+{time.monotonic() - self._t0:8.3f} -> {rid} (timeout {tmo}) $ {cmd}\n")
        # The leading newline ends any partial line left on the channel.
        line = b"\n" + f"{rid} {tmo} ".encode() + base64.b64encode(cmd.encode()) + b"\n"
        with self._agent_wlock:
            try:
                self._agent_sock.sendall(line)
            except OSError as e:
                raise GuestDied(f"agent channel: {e}")
        return rid

    def send(self, cmd: str) -> str:
        """Send a command without waiting (e.g. one that panics the guest).

        Returns the request id; collect later with result(id)."""
        return self._send(cmd, 0)

    def result(self, rid: str, timeout: float | None = None) -> tuple[int, bytes]:
        """Wait for the answer to a request sent with send()."""
        timeout = timeout or CMD_TIMEOUT
        deadline = time.monotonic() + timeout
        with self._cv:
            p = self._pending[rid]
            while not p.done:
                if len(self.boots) > p.boots:
                    del self._pending[rid]
                    raise GuestRebooted(f"guest rebooted while running: {p.cmd}\n{self.console_tail()}")
                if not self.running():
                    del self._pending[rid]
                    raise GuestDied(f"QEMU exited while running: {p.cmd}\n{self.console_tail()}")
                if self._panicked_since(p.events, p.console):
                    del self._pending[rid]
                    raise GuestPanicked(f"guest kernel panicked while running: {p.cmd}\n{self.console_tail(60)}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CommandTimeout(p.cmd, timeout)
                self._cv.wait(min(left, 0.5))
            del self._pending[rid]
            return p.rc, p.out

    _PANIC_RX = re.compile(r"Kernel panic - not syncing")

    def _panicked_since(self, events: int, console: int) -> bool:
        """A panic reported after the given event/console positions (lock held)."""
        if any(e["event"] in ("GUEST_PANICKED", "GUEST_CRASHLOADED") for e in self.events[events:]):
            return True
        return any(self._PANIC_RX.search(l) for _, l in self.console[console:])

    def run_bytes(self, cmd: str, timeout: float | None = None) -> tuple[int, bytes]:
        """Run a shell script in the guest; (rc, stdout+stderr as bytes)."""
        timeout = timeout or CMD_TIMEOUT
        t = time.monotonic()
        rid = self._send(cmd, timeout)
        # the guest kills the script at `timeout`; allow for transport delays
        rc, out = self.result(rid, timeout + scaled(15))
        if rc == 137 and time.monotonic() - t >= timeout:
            raise CommandTimeout(cmd, timeout, out.decode(errors="replace"))
        return rc, out

    def run(self, cmd: str, timeout: float | None = None) -> tuple[int, str]:
        """Run a shell script in the guest; (rc, stdout+stderr as text)."""
        rc, out = self.run_bytes(cmd, timeout)
        return rc, out.decode(errors="replace")

    def check(self, cmd: str, timeout: float | None = None) -> str:
        """run(), raising CommandFailed (with the output) unless rc == 0."""
        rc, out = self.run(cmd, timeout)
        if rc != 0:
            raise CommandFailed(cmd, rc, out)
        return out

    def read_file(self, path: str, timeout: float | None = None) -> bytes:
        rc, out = self.run_bytes(f"cat {shlex.quote(path)}", timeout)
        if rc != 0:
            raise CommandFailed(f"cat {path}", rc, out.decode(errors="replace"))
        return out

    def write_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        """Small files only (the channel moves ~100 KB/s into the guest)."""
        b64 = base64.b64encode(data).decode()
        q = shlex.quote(path)
        self.check(f"base64 -d > {q} <<'EOF'\n{b64}\nEOF\nchmod {mode:o} {q}")

    # --- guest RAM from the host ------------------------------------------------------------
    def phys_offset(self, phys: int) -> int:
        return q35_phys_to_offset(phys, self.mem)

    def read_phys(self, phys: int, length: int) -> bytes:
        """Read guest-physical memory via the shared RAM file (ram_file=...)."""
        if not self.ram_file:
            raise GuestError("read_phys needs Guest(ram_file=True)")
        end = phys + length - 1
        if self.phys_offset(end) - self.phys_offset(phys) != length - 1:
            raise ValueError("range crosses a RAM hole")
        with open(self.ram_file, "rb") as f:
            return os.pread(f.fileno(), length, self.phys_offset(phys))

    def write_phys(self, phys: int, data: bytes) -> None:
        """Write guest-physical memory via the shared RAM file (ram_file=...)."""
        if not self.ram_file:
            raise GuestError("write_phys needs Guest(ram_file=True)")
        if data and self.phys_offset(phys + len(data) - 1) - self.phys_offset(phys) != len(data) - 1:
            raise ValueError("range crosses a RAM hole")
        with open(self.ram_file, "r+b") as f:
            os.pwrite(f.fileno(), data, self.phys_offset(phys))
