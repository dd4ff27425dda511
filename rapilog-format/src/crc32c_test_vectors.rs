// SPDX-License-Identifier: GPL-2.0

//! Shared CRC-32C check vectors.
//!
//! Any [`Crc32c`] implementation used with this crate (the kernel's, the
//! software one) must pass [`verify`]. The kernel module runs it once at load,
//! before it trusts its checksum to read or write the region: a mismatch
//! there means every record would look corrupt, or worse, garbage would look
//! valid to the other side.

use super::crc32c::Crc32c;

/// One input with its standard CRC-32C.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestVector {
    /// The bytes to checksum.
    pub input: &'static [u8],
    /// Their standard CRC-32C.
    pub crc: u32,
}

const ZEROS: [u8; 32] = [0; 32];
const ONES: [u8; 32] = [0xFF; 32];
const ASCENDING: [u8; 32] = {
    let mut bytes = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        bytes[i] = i as u8;
        i += 1;
    }
    bytes
};
const DESCENDING: [u8; 32] = {
    let mut bytes = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        bytes[i] = 31 - i as u8;
        i += 1;
    }
    bytes
};

/// The vectors: the customary check string, the four 32-byte patterns of
/// RFC 3720 (iSCSI) appendix B.4, and a few short inputs.
pub const VECTORS: &[TestVector] = &[
    TestVector {
        input: b"",
        crc: 0x0000_0000,
    },
    TestVector {
        input: b"a",
        crc: 0xC1D0_4330,
    },
    TestVector {
        input: b"123456789",
        crc: 0xE306_9283,
    },
    TestVector {
        input: b"The quick brown fox jumps over the lazy dog",
        crc: 0x2262_0404,
    },
    TestVector {
        input: &ZEROS,
        crc: 0x8A91_36AA,
    },
    TestVector {
        input: &ONES,
        crc: 0x62A8_AB43,
    },
    TestVector {
        input: &ASCENDING,
        crc: 0x46DD_794E,
    },
    TestVector {
        input: &DESCENDING,
        crc: 0x113F_DB5C,
    },
];

/// Checks `crc` against every vector, both in one call and split in two
/// (which exercises the continuation form of [`Crc32c::update`]).
///
/// Returns the index in [`VECTORS`] of the first vector that fails.
pub fn verify<C: Crc32c>(crc: &C) -> Result<(), usize> {
    for (index, vector) in VECTORS.iter().enumerate() {
        let half = vector.input.len() / 2;
        let (head, tail) = vector.input.split_at(half);
        let split = crc.update(crc.update(0, head), tail);
        if crc.checksum(vector.input) != vector.crc || split != vector.crc {
            return Err(index);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::crc32c::SoftwareCrc32c;
    use super::*;

    #[test]
    fn software_passes() {
        assert_eq!(verify(&SoftwareCrc32c), Ok(()));
    }

    struct Broken;
    impl Crc32c for Broken {
        fn update(&self, crc: u32, bytes: &[u8]) -> u32 {
            SoftwareCrc32c.update(crc, bytes) ^ u32::from(bytes.len() > 40)
        }
    }

    #[test]
    fn broken_is_caught() {
        assert_eq!(verify(&Broken), Err(3));
    }
}
