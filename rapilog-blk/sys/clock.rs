// SPDX-License-Identifier: GPL-2.0

//! Wall-clock time and randomness, for what the driver records in the
//! region (replay times, format epochs).

use kernel::bindings;

/// Seconds since the Unix epoch (wall clock; 0 before it was set).
pub(crate) fn unix_seconds() -> u64 {
    // SAFETY: Reads the timekeeping core; no requirements.
    let secs = unsafe { bindings::ktime_get_real_seconds() };
    u64::try_from(secs).unwrap_or(0)
}

/// A random 64-bit value from the kernel's CRNG.
pub(crate) fn random_u64() -> u64 {
    // SAFETY: No requirements; may be called any time after boot.
    unsafe { bindings::get_random_u64() }
}
