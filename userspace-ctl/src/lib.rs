// SPDX-License-Identifier: GPL-2.0

//! rapilogctl: the administrator's view of rapilog.
//!
//! The binary (`src/main.rs`) is a thin clap front end; everything it does
//! is here, so that it can be tested without a machine running rapilog:
//!
//! - [`inspect`]: decode a region (image file or physical memory) with the
//!   shared format crate: both superblock copies, every record of the live
//!   window with the replay decision, a summary; [`inspect::Inspection`] is
//!   also the `--json` document.
//! - [`replay`]: `rapilogctl replay`, through the replay engine the crash
//!   kernel's rescue program runs too ([`rapilog_replay::engine::replay`]).
//! - [`marker`]: `rapilogctl marker DISK [--clear]`, the log disk's loss
//!   marker, read offline and cleared after a possible loss is dealt with.
//! - [`plan`]: boot parameters (`memmap=`, `crashkernel=`) and a region
//!   size from the machine's memory map and the log disk's bandwidth.
//! - [`grub`]: `plan --apply | --grub-dropin`, the boot parameters as a
//!   GRUB drop-in, escaped for the shell and for GRUB's parser.
//! - [`arm`]: `rapilog-arm arm|disarm`, the script the systemd unit uses.
//! - [`live`]: the live commands (`status`, `flush`, `dump`, `inspect
//!   --live`, `fence`) over the driver's control device `/dev/rapilog-ctl`;
//!   [`status`] turns its status block into a verdict, a table and JSON.
//! - [`sys`]: the `ioctl(2)` and signal handler they need (`unsafe`, tiny).
//!
//! Every failure is an [`Error`] whose [`Code`] is the process exit code.

#![deny(unsafe_code)]

pub mod arm;
pub mod grub;
pub mod inspect;
pub mod live;
pub mod marker;
pub mod plan;
pub mod replay;
pub mod status;
pub mod sys;
pub mod units;

use std::fmt;

/// Process exit codes, as documented in `rapilogctl --help` and README.md.
///
/// 0..=6 and 9 mean the same as `rapilog-rescue`'s exit codes, so a replay
/// gives the same code whichever of the two ran it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// 0: done.
    Ok = 0,
    /// 1: the operation failed, or finished but found damaged records
    /// (acknowledged data may be lost).
    Failed = 1,
    /// 2: bad usage or bad input (arguments, files, configuration).
    Usage = 2,
    /// 3: not a rapilog region (no valid superblock, unknown format
    /// version, truncated).
    Region = 3,
    /// 4: refused: the disk is not the region's (identity, size, block
    /// size), or cannot be found.
    Disk = 4,
    /// 5: writing or flushing the disk failed during a replay.
    DiskIo = 5,
    /// 6: the disk was replayed, but the report could not be recorded in
    /// the region.
    Report = 6,
    /// 7: the rapilog module is not loaded, or no such rapilog device.
    NoDevice = 7,
    /// 8: the control interface (`/dev/rapilog-ctl`) is missing or of
    /// another version.
    Unsupported = 8,
    /// 9: the log disk's loss marker says acknowledged writes may have been
    /// lost (a `live` marker whose region is gone, or a damaged marker).
    PossibleLoss = 9,
    /// 77: needs root.
    NotRoot = 77,
    /// 130: interrupted (SIGINT/SIGTERM) while waiting; nothing is lost.
    Interrupted = 130,
}

impl Code {
    /// The numeric exit code.
    pub const fn value(self) -> i32 {
        self as i32
    }
}

/// The exit codes, for `--help` and README.md (one line each).
pub const EXIT_CODES: &str = "\
Exit codes:
   0  done
   1  failed, or done but damaged records found (acknowledged data may be lost)
   2  bad usage or bad input (arguments, files, configuration)
   3  not a rapilog region: no valid superblock, unknown format version, truncated
   4  refused: not the region's disk (identity, size, block size), or disk not found
   5  replay: writing or flushing the disk failed (region left as it was)
   6  replay: disk replayed, but the report could not be recorded in the region
   7  the rapilog module is not loaded, or no such rapilog device
   8  the control interface (/dev/rapilog-ctl) is missing or of another version
   9  POSSIBLE LOSS: the log disk's marker says acknowledged writes may have been lost
  77  needs root (/dev/mem, kexec, block devices, CAP_SYS_ADMIN on the control device)
 130  interrupted (Ctrl-C) while waiting; nothing is lost
0..6 and 9 mean the same as rapilog-rescue's exit codes.";

/// A failure: its exit code and one line saying what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// Exit code.
    pub code: Code,
    /// The message, one line, no prefix.
    pub message: String,
}

impl Error {
    /// A failure with `code`.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// A failure to open or read `what`: 77 for permission errors, else `code`.
    pub fn io(code: Code, what: &str, e: &std::io::Error) -> Self {
        let code = if e.kind() == std::io::ErrorKind::PermissionDenied {
            Code::NotRoot
        } else {
            code
        };
        Self::new(code, format!("{what}: {e}"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<rapilog_replay::Failure> for Error {
    fn from(f: rapilog_replay::Failure) -> Self {
        use rapilog_replay::FailureKind as K;
        let code = match f.kind {
            K::Usage => Code::Usage,
            K::Region => Code::Region,
            K::Disk => Code::Disk,
            K::DiskIo => Code::DiskIo,
            K::Report => Code::Report,
            K::PossibleLoss => Code::PossibleLoss,
        };
        Self::new(code, f.message)
    }
}

/// Whether the process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    #[allow(unsafe_code)]
    unsafe {
        libc::geteuid() == 0
    }
}
