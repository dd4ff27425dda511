"""Guest: one QEMU guest, composed of the parts in this package (thin mixins
over shared state: the reader threads of console, QMP and agent signal one
condition, self._cv, because a waiter for a command's answer must also wake
on a panic line of the console or a QMP event).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
from pathlib import Path

from .agent import AgentMixin
from .config import BOOT_TIMEOUT, DEFAULT_KREL, LOG_ROOT, ROOTFS_BOOT_TIMEOUT
from .console import ConsoleMixin
from .memory import GuestMemoryMixin, parse_size
from .network import Nic
from .qemu import Disk, QemuProcessMixin
from .qmp import QMPMixin


class Guest(QemuProcessMixin, ConsoleMixin, QMPMixin, AgentMixin, GuestMemoryMixin):
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
                 rootfs: bool | str | Path | list[str] | tuple[str, ...] | None = None,
                 nics: list[Nic] | None = None):
        """rootfs: boot the Debian rootfs image instead of staying in the
        busybox initramfs: True (default image for krel), a list of extra
        Debian packages (their own image), or the path of an image (raw or
        qcow2). It is attached through a per-guest qcow2 overlay in the log
        directory (tests never modify the cached image; restart() keeps the
        overlay) as a virtio disk with serial ROOTFS_SERIAL, and the initramfs
        switch_roots into it (qemu-scripts/guest/rapilog-root-init). files=,
        overlays= and load= apply to the rootfs; modules= is moot (every
        stock module is there). The agent and boot hooks are the same.

        nics: network interfaces (network.Nic, e.g. the two ends of
        network.loopback_link() for two guests); none by default.
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
        self.nics = list(nics or [])
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

        # Shared by the parts: one condition for every reader thread and
        # waiter (console lines, QMP replies and events, agent answers).
        self._cv = threading.Condition()
        self._init_process()
        self._init_console()
        self._init_qmp()
        self._init_agent()
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
