"""The QEMU process: disks, the command line, start (paused, then `cont`
once console, QMP and agent are attached), and the ways it stops (kill,
quit, reboot, reset, power button, NMI).
"""

from __future__ import annotations

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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .agent import AGENT_PORT_NAME
from .config import EXIT_TIMEOUT, QEMU, SCRIPTS, scaled
from .errors import GuestDied, GuestError
from .images import ROOT_INIT, ROOTFS_SERIAL, build_initramfs, build_rootfs, fetch_kernel, rootfs_module_index
from .memory import parse_size

if TYPE_CHECKING:
    from .guest import Guest


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


class QemuProcessMixin:
    """The QEMU process of a Guest: its command line (from the Guest's
    options), start/stop, and the threads that read its sockets (the
    readers are ConsoleMixin's, QMPMixin's and AgentMixin's)."""

    def _init_process(self) -> None:
        self.kdir: Path | None = None
        self.proc: subprocess.Popen | None = None
        self._run_dir: str | None = None
        self._threads: list[threading.Thread] = []
        self._socks: list[socket.socket] = []
        self._starts = 0
        self._t0 = time.monotonic()  # QEMU start (for relative timestamps)

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
        for nic in getattr(self, "nics", []):
            cmd += nic.qemu_args(vdev)
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

    def _threads_alive(self) -> bool:
        return any(t.is_alive() for t in self._threads)

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
