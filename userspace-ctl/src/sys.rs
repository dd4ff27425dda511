// SPDX-License-Identifier: GPL-2.0

//! The two system calls the live commands need that `std` lacks: `ioctl(2)`
//! on the control device, and a SIGINT/SIGTERM handler that only sets a
//! flag (so `flush` can stop cleanly). The crate's only `unsafe` besides
//! `geteuid` in lib.rs.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};

/// `_IOC_SIZE` of an ioctl request (`include/uapi/asm-generic/ioctl.h`).
const fn ioc_size(request: u32) -> usize {
    ((request >> 16) & 0x3fff) as usize
}

/// `ioctl(file, request, buf)`: `buf` must be exactly `_IOC_SIZE(request)`
/// bytes (`_IOR` requests), or `None` for requests without an argument
/// (`_IO`, size 0). Returns the ioctl's result or its errno.
pub fn ioctl(file: &File, request: u32, buf: Option<&mut [u8]>) -> io::Result<i32> {
    let len = buf.as_ref().map_or(0, |b| b.len());
    if len != ioc_size(request) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "ioctl {request:#x}: argument of {len} bytes, the request says {}",
                ioc_size(request)
            ),
        ));
    }
    let arg: *mut u8 = buf.map_or(std::ptr::null_mut(), |b| b.as_mut_ptr());
    // By the `_IOC` convention (which the rapilog driver follows, FORMAT.md
    // "Control interface") the kernel accesses at most `_IOC_SIZE(request)`
    // bytes at `arg`.
    #[allow(unsafe_code)]
    // SAFETY: `file` keeps the descriptor open for the call; `arg` points to
    // a live, exclusively borrowed buffer of exactly that size, or is null
    // when the size is 0 (`_IO`: no argument).
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), request as _, arg) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_signal: libc::c_int) {
    // Async-signal-safe: one atomic store.
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// From now on SIGINT and SIGTERM set [`interrupted`] instead of killing
/// the process, and interrupt blocking system calls (no `SA_RESTART`): a
/// drain ioctl then returns `EINTR`.
pub fn catch_interrupts() -> io::Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        #[allow(unsafe_code)]
        // SAFETY: `sigaction` with a zeroed (then filled) struct whose
        // handler only does an atomic store (async-signal-safe).
        let rc = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Whether SIGINT or SIGTERM came since [`catch_interrupts`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_size_must_match_the_request() {
        use rapilog_format::control::{IOCTL_DRAIN, IOCTL_STATUS, STATUS_BYTES};
        assert_eq!(ioc_size(IOCTL_STATUS), STATUS_BYTES);
        assert_eq!(ioc_size(IOCTL_DRAIN), 0);
        let f = File::open("/dev/null").unwrap();
        let mut small = [0u8; 8];
        let e = ioctl(&f, IOCTL_STATUS, Some(&mut small)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(ioctl(&f, IOCTL_STATUS, None).is_err());
        // /dev/null knows no rapilog ioctl.
        let mut block = [0u8; STATUS_BYTES];
        let e = ioctl(&f, IOCTL_STATUS, Some(&mut block)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTTY));
    }
}
