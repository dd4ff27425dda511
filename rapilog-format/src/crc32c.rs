// SPDX-License-Identifier: GPL-2.0

//! CRC-32C (Castagnoli), the checksum of every on-region structure.
//!
//! The crate never computes a checksum on its own: every function that needs
//! one takes a [`Crc32c`] implementation, so the kernel module can plug in the
//! kernel's accelerated `crc32c()` while the rescue program and the CLI use
//! [`SoftwareCrc32c`]. Both must agree on [`super::crc32c_test_vectors`].
//!
//! # Conventions
//!
//! Values are *standard* CRC-32C values (reflected polynomial `0x82F63B78`,
//! initial value `!0`, final xor `!0`), i.e. what iSCSI, ext4 metadata_csum's
//! checker tools and `crc32c` libraries print: `"123456789"` gives
//! `0xE3069283`.
//!
//! The kernel's `u32 crc32c(u32 crc, const void *p, size_t len)` is the *raw*
//! register update: no initial inversion, no final xor. The two relate by
//!
//! ```text
//! standard(data)            == !crc32c_kernel(!0, data, len)
//! Crc32c::update(c, data)   == !crc32c_kernel(!c, data, len)
//! ```
//!
//! so a kernel implementation of [`Crc32c::update`] is
//! `!crc32c(!crc, data.as_ptr(), data.len())`.

/// A CRC-32C implementation.
///
/// `update` continues a standard CRC-32C value over more bytes, so that
/// `update(update(0, a), b) == update(0, a ++ b)`, and `update(0, x)` is the
/// standard CRC-32C of `x`. Payloads that arrive in pieces (bio segments) can
/// therefore be checksummed piece by piece.
pub trait Crc32c {
    /// Continues the standard CRC-32C value `crc` over `bytes`.
    fn update(&self, crc: u32, bytes: &[u8]) -> u32;

    /// The standard CRC-32C of `bytes`.
    fn checksum(&self, bytes: &[u8]) -> u32 {
        self.update(0, bytes)
    }
}

impl<T: Crc32c + ?Sized> Crc32c for &T {
    fn update(&self, crc: u32, bytes: &[u8]) -> u32 {
        (**self).update(crc, bytes)
    }
}

/// Reversed Castagnoli polynomial.
const POLYNOMIAL: u32 = 0x82F6_3B78;

/// Byte-at-a-time lookup table, built at compile time.
const TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut index = 0;
    while index < 256 {
        let mut crc = index as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ POLYNOMIAL
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[index] = crc;
        index += 1;
    }
    table
};

/// Table-driven software CRC-32C: the reference implementation, used by the
/// rescue program, the CLI and the tests.
///
/// It processes one byte per table lookup (a few hundred MB/s), which replays
/// a 64 MiB region in well under a second; the kernel uses its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SoftwareCrc32c;

impl Crc32c for SoftwareCrc32c {
    fn update(&self, crc: u32, bytes: &[u8]) -> u32 {
        let mut register = !crc;
        for &byte in bytes {
            // The index is masked to 0..=255, so the lookup cannot go out of bounds.
            let index = ((register ^ u32::from(byte)) & 0xFF) as usize;
            register = TABLE[index] ^ (register >> 8);
        }
        !register
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_value() {
        assert_eq!(SoftwareCrc32c.checksum(b"123456789"), 0xE306_9283);
        assert_eq!(SoftwareCrc32c.checksum(b""), 0);
    }

    #[test]
    fn incremental_equals_one_shot() {
        let data: [u8; 100] = core::array::from_fn(|i| (i * 7) as u8);
        let whole = SoftwareCrc32c.checksum(&data);
        for split in 0..=data.len() {
            let (a, b) = data.split_at(split);
            let crc = SoftwareCrc32c.update(SoftwareCrc32c.checksum(a), b);
            assert_eq!(crc, whole, "split at {split}");
        }
    }

    /// The raw-register form used by the kernel's `crc32c()`, computed from
    /// the table, to pin down the documented relation between the two.
    fn kernel_style(seed: u32, bytes: &[u8]) -> u32 {
        !SoftwareCrc32c.update(!seed, bytes)
    }

    #[test]
    fn kernel_convention() {
        // standard(data) == !crc32c_kernel(!0, data); with seed !0 the raw form
        // of "123456789" is the well-known 0x1CF96D7C (= !0xE3069283).
        assert_eq!(kernel_style(!0, b"123456789"), 0x1CF9_6D7C);
        assert_eq!(!kernel_style(!0, b"123456789"), 0xE306_9283);
    }
}
