// SPDX-License-Identifier: GPL-2.0

//! The kernel's CRC-32C (hardware accelerated where the CPU has it) behind
//! the format crate's [`Crc32c`] trait.

use kernel::ffi::c_void;

use super::helpers::rapilog_cpu_has_crc32;
use crate::format::Crc32c;

// `crc32c()` is exported by lib/crc but not part of the kernel crate's
// bindings; this is its prototype from include/linux/crc32.h:
// `u32 crc32c(u32 crc, const void *p, size_t len);`
extern "C" {
    fn crc32c(crc: u32, p: *const c_void, len: usize) -> u32;
}

/// The kernel's `crc32c()`.
pub(crate) struct KernelCrc32c;

impl Crc32c for KernelCrc32c {
    fn update(&self, crc: u32, bytes: &[u8]) -> u32 {
        // Short input (a descriptor on every write): the kernel's own
        // one-stream loop, inline, without the call. Checked at load with
        // the format crate's test vectors, like the kernel's.
        // SAFETY: Reads the boot CPU's feature bits only.
        if bytes.len() < super::copy_crc::ONE_STREAM_MAX && unsafe { rapilog_cpu_has_crc32() } {
            // SAFETY: The CPU has SSE4.2; `bytes` is readable for its length.
            return !unsafe { super::copy_crc::crc_one_stream(!crc, bytes.as_ptr(), bytes.len()) };
        }
        // The kernel's function is the raw register update (no inversions);
        // the format crate's values are standard CRC-32C (see its crc32c module).
        // SAFETY: `bytes` is valid for reads of `bytes.len()` bytes for the
        // duration of the call, and `crc32c` only reads them.
        !unsafe { crc32c(!crc, bytes.as_ptr().cast(), bytes.len()) }
    }
}

/// The raw CRC-32C register (no inversions) after `len` bytes at `ptr`,
/// from `crc`: the kernel's `crc32c()` itself.
///
/// # Safety
///
/// `ptr` must be valid for reads of `len` bytes for the duration of the call.
pub(super) unsafe fn update_raw(crc: u32, ptr: *const u8, len: usize) -> u32 {
    // SAFETY: The caller guarantees `ptr` is readable for `len` bytes.
    unsafe { crc32c(crc, ptr.cast(), len) }
}

/// As [`update_raw`], for the pages writeback checks one at a time: with
/// `inline` (`rapilog_cpu_copy_crc()`: where this CPU's best CRC-32C is the
/// `crc32` instruction), `copy_crc`'s three-stream loop, without the call
/// and the FPU section that `crc32c()` costs per page; otherwise (the
/// kernel's AVX-512 CRC is faster) `crc32c()`.
///
/// # Safety
///
/// `ptr` must be valid for reads of `len` bytes; with `inline`, the CPU
/// has SSE4.2.
pub(super) unsafe fn update_raw_per_page(
    crc: u32,
    ptr: *const u8,
    len: usize,
    inline: bool,
) -> u32 {
    let (crc, done) = if inline {
        // SAFETY: The caller's contract, which is `copy_crc::crc`'s.
        unsafe { super::copy_crc::crc(crc, ptr, len) }
    } else {
        (crc, 0)
    };
    // SAFETY: `done <= len`: the rest is inside the caller's bytes.
    unsafe { update_raw(crc, ptr.add(done), len - done) }
}

/// Standard CRC-32C of `len` bytes at `ptr`, for region memory that is only
/// ever accessed through raw pointers (see `region`).
///
/// # Safety
///
/// `ptr` must be valid for reads of `len` bytes for the duration of the call.
pub(super) unsafe fn checksum_raw(ptr: *const u8, len: usize) -> u32 {
    // SAFETY: The caller guarantees `ptr` is readable for `len` bytes.
    !unsafe { crc32c(!0, ptr.cast(), len) }
}
