// SPDX-License-Identifier: GPL-2.0

//! What differs between the kernel crates of the kernels rapilog builds for,
//! so that the rest of the driver is written once.
//!
//! The kernel's Rust API is not stable: 7.3 changed the barrier functions
//! (`smp_mb(Write)` names the ordering) and added errno codes and
//! `Delta::as_millis_ceil` that 7.2 lacks. `rapilog-blk/Kbuild` passes
//! `--cfg rapilog_kernel_7_2` when building against a 7.2 kernel; only this
//! file looks at it. (Differences in unsafe bindings, if any, belong in the
//! `sys` file that uses them.)

use kernel::error::Error;
use kernel::time::Delta;

#[cfg(not(rapilog_kernel_7_2))]
pub(crate) use kernel::sync::barrier::{smp_mb, Write};

/// 7.2's barriers take no ordering argument: `smp_mb(Write)` is its
/// `smp_wmb()`.
#[cfg(rapilog_kernel_7_2)]
pub(crate) struct Write;

/// A write memory barrier (`smp_wmb()`), spelled as 7.3 spells it.
#[cfg(rapilog_kernel_7_2)]
pub(crate) fn smp_mb(_: Write) {
    kernel::sync::barrier::smp_wmb();
}

/// `EUCLEAN` ("Structure needs cleaning").
pub(crate) fn euclean() -> Error {
    #[cfg(not(rapilog_kernel_7_2))]
    return kernel::error::code::EUCLEAN;
    #[cfg(rapilog_kernel_7_2)]
    return Error::from_errno(-(kernel::bindings::EUCLEAN as i32));
}

/// `ESTALE` ("Stale file handle").
pub(crate) fn estale() -> Error {
    #[cfg(not(rapilog_kernel_7_2))]
    return kernel::error::code::ESTALE;
    #[cfg(rapilog_kernel_7_2)]
    return Error::from_errno(-(kernel::bindings::ESTALE as i32));
}

/// `d` in milliseconds, rounded up (7.3's `Delta::as_millis_ceil`).
pub(crate) fn millis_ceil(d: Delta) -> i64 {
    const NSEC_PER_MSEC: i64 = 1_000_000;
    let ns = d.as_nanos();
    ns / NSEC_PER_MSEC + i64::from(ns % NSEC_PER_MSEC > 0)
}
