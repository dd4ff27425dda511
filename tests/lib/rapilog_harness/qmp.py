"""QEMU's machine protocol (QMP) on a unix socket: commands with their
replies, and the asynchronous events (GUEST_PANICKED, RESET, SHUTDOWN, ...)
collected with host timestamps (qmp.log).
"""

from __future__ import annotations

import json
import socket
import threading
import time

from .config import CMD_TIMEOUT, QMP_TIMEOUT
from .errors import GuestDied, GuestError, QMPError
from .qemu import Disk


class QMPMixin:
    """QMP client and events. Part of Guest: shares self._cv, self._logs and
    self._t0, and uses running()/_threads_alive() and console_tail()."""

    def _init_qmp(self) -> None:
        self.events: list[dict] = []
        self._qmp_sock: socket.socket | None = None
        self._qmp_replies: dict[int, dict] = {}
        self._qmp_id = 0
        self._qmp_lock = threading.Lock()

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
