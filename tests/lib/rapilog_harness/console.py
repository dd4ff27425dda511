"""The guest's kernel console (ttyS0 on a QEMU socket chardev): a reader
thread collects its lines with host timestamps (console.log) and tests wait
for regexes over them.
"""

from __future__ import annotations

import re
import socket
import time

from .config import CMD_TIMEOUT, PARTIAL_SETTLE_S
from .errors import GuestDied, GuestError


class ConsoleMixin:
    """The kernel console. Part of Guest: shares self._cv (one condition for
    every reader thread and waiter), self._logs, self._t0, and uses
    running()/_threads_alive() of QemuProcessMixin."""

    def _init_console(self) -> None:
        # console: complete lines (host time, text) + the partial last line
        self.console: list[tuple[float, str]] = []
        self._console_partial = ""
        # When the incomplete last line last grew (time.monotonic()).
        self._console_partial_at = 0.0

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
            return "\n".join(line for _, line in self.console[since:]) + (
                "\n" + self._console_partial if self._console_partial else "")

    def console_tail(self, n: int = 40) -> str:
        with self._cv:
            lines = [line for _, line in self.console[-n:]]
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

