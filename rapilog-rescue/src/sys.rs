// SPDX-License-Identifier: GPL-2.0

//! The only `unsafe` code of the crate: the crash kernel's last steps, which
//! std does not offer (sync(2), tcdrain(3), reboot(2)). The replay's own
//! system calls (mmap, block-device ioctls, mknod) are in `rapilog_replay::sys`.

use std::io;

/// Flushes every file system buffer (sync(2)).
pub fn sync_all() {
    // SAFETY: sync takes no arguments and cannot fail.
    unsafe { libc::sync() }
}

/// Waits until what was written to stdout and stderr has left the terminal
/// (the serial console), so kernel messages printed next (the reboot's) do
/// not cut into the report: the kernel writes the console directly, while
/// a process's output waits in the tty's buffer. Not a terminal: no-op.
pub fn drain_console() {
    for fd in [libc::STDOUT_FILENO, libc::STDERR_FILENO] {
        // SAFETY: tcdrain takes a file descriptor only; a descriptor that is
        // not a terminal fails with ENOTTY, which is fine.
        unsafe { libc::tcdrain(fd) };
    }
}

/// Restarts the machine at once (reboot(2) with `RB_AUTOBOOT`). Returns only
/// on failure (e.g. not root).
pub fn reboot() -> io::Error {
    // SAFETY: reboot with RB_AUTOBOOT takes no pointers; on success it does
    // not return.
    unsafe { libc::reboot(libc::RB_AUTOBOOT) };
    io::Error::last_os_error()
}
