"""What the harness raises: every error is a GuestError."""


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
