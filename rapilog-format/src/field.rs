// SPDX-License-Identifier: GPL-2.0

//! Named byte ranges of an on-region structure, and little-endian access to them.
//!
//! Every on-region structure is described by a `const` table of [`Field`]s. The
//! encoders and decoders read and write through these tables, and a unit test
//! checks them against the tables in `FORMAT.md`, so the document and the code
//! cannot drift apart silently.
//!
//! All integers on the region are little-endian.

use core::ops::Range;

/// One field of an on-region structure: its name (as in `FORMAT.md`), its
/// offset from the start of the structure and its size, both in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// The field's name, as spelled in the `FORMAT.md` tables.
    pub name: &'static str,
    /// Offset of the first byte, from the start of the structure.
    pub offset: usize,
    /// Size in bytes.
    pub size: usize,
}

impl Field {
    /// The byte range the field occupies inside its structure.
    pub const fn range(&self) -> Range<usize> {
        self.offset..self.offset + self.size
    }
}

/// Reads an `N`-byte field. A field that does not fit `bytes` reads as zeros;
/// that cannot happen with the crate's own tables (a test checks every field
/// lies inside its structure), and returning zeros keeps this path panic-free.
fn read_array<const N: usize>(bytes: &[u8], field: Field) -> [u8; N] {
    bytes
        .get(field.range())
        .and_then(|b| <[u8; N]>::try_from(b).ok())
        .unwrap_or([0; N])
}

/// Reads a little-endian `u32` field.
pub(super) fn read_u32(bytes: &[u8], field: Field) -> u32 {
    u32::from_le_bytes(read_array(bytes, field))
}

/// Reads a little-endian `u64` field.
pub(super) fn read_u64(bytes: &[u8], field: Field) -> u64 {
    u64::from_le_bytes(read_array(bytes, field))
}

/// Reads a fixed-size byte-string field.
pub(super) fn read_bytes<const N: usize>(bytes: &[u8], field: Field) -> [u8; N] {
    read_array(bytes, field)
}

/// Writes `value` into `field`; a field that does not fit is left untouched
/// (impossible with the crate's own tables, see [`read_array`]).
pub(super) fn write_bytes(bytes: &mut [u8], field: Field, value: &[u8]) {
    if let Some(dst) = bytes.get_mut(field.range()) {
        if dst.len() == value.len() {
            dst.copy_from_slice(value);
        }
    }
}

/// Writes a little-endian `u32` field.
pub(super) fn write_u32(bytes: &mut [u8], field: Field, value: u32) {
    write_bytes(bytes, field, &value.to_le_bytes());
}

/// Writes a little-endian `u64` field.
pub(super) fn write_u64(bytes: &mut [u8], field: Field, value: u64) {
    write_bytes(bytes, field, &value.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Field = Field {
        name: "a",
        offset: 2,
        size: 4,
    };

    #[test]
    fn round_trip_and_out_of_range() {
        let mut buf = [0u8; 8];
        write_u32(&mut buf, A, 0x1234_5678);
        assert_eq!(buf, [0, 0, 0x78, 0x56, 0x34, 0x12, 0, 0]);
        assert_eq!(read_u32(&buf, A), 0x1234_5678);
        let far = Field {
            name: "far",
            offset: 6,
            size: 8,
        };
        assert_eq!(read_u64(&buf, far), 0);
        write_u64(&mut buf, far, u64::MAX);
        assert_eq!(buf, [0, 0, 0x78, 0x56, 0x34, 0x12, 0, 0]);
    }
}
