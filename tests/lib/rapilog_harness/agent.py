"""The command agent: a shell in the guest (qemu-scripts/guest/rapilog-agent)
on a virtio-serial port (or ttyS1), separate from the kernel console.

Host sends `ID TIMEOUT BASE64(script)`; the guest answers
`ID RC BASE64(stdout+stderr)`, and announces each boot with
`RAPILOG-AGENT READY BOOT_ID UPTIME KREL` (tests/README.md, "Agent
protocol"). Every command and answer goes to agent.log.
"""

from __future__ import annotations

import base64
import math
import re
import shlex
import socket
import threading
import time
from dataclasses import dataclass

from .config import CMD_TIMEOUT, scaled
from .errors import CommandFailed, CommandTimeout, GuestDied, GuestPanicked, GuestRebooted

AGENT_PORT_NAME = "org.rapilog.agent"


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


class AgentMixin:
    """Commands through the agent. Part of Guest: shares self._cv,
    self._logs, self._t0 and self._starts; a command fails at once when the
    guest reboots (self.boots), QEMU exits (running()), or the kernel panics
    (self.events, self.console); uses console_tail()."""

    def _init_agent(self) -> None:
        self._agent_sock: socket.socket | None = None
        self._agent_wlock = threading.Lock()
        self.boots: list[dict] = []  # READY announcements: boot_id, uptime, krel, t
        self._boot_cursor = 0
        self._pending: dict[str, _Pending] = {}
        self._req = 0
        self.ready_times: list[float] = []  # host seconds from (re)start to READY

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
        return any(self._PANIC_RX.search(line) for _, line in self.console[console:])

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
