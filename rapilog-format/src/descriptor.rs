// SPDX-License-Identifier: GPL-2.0

//! Record descriptors: one 64-byte entry per record, in slot `seq % slots` of
//! the descriptor table.
//!
//! The descriptor is what makes a record count. A writer copies the payload
//! first and writes the descriptor last; its own CRC-32C proves that all 64
//! bytes are in place, and the payload CRC-32C it carries proves the payload
//! is. A descriptor torn by a crash fails its checksum and the record is
//! ignored, without hiding any other record: each record's descriptor is at
//! a slot computed from its sequence number, not found by walking a log.

use super::crc32c::Crc32c;
use super::field::{self, Field};
use super::geometry::DESCRIPTOR_BYTES;

/// Descriptor magic: the bytes `"RLGD"` (little-endian `u32` 0x4447_4C52).
pub const DESCRIPTOR_MAGIC: u32 = u32::from_le_bytes(*b"RLGD");

const fn f(name: &'static str, offset: usize, size: usize) -> Field {
    Field { name, offset, size }
}

/// Descriptor fields, one constant each, in on-region order.
pub mod fields {
    use super::f;
    use super::Field;

    /// `"RLGD"`.
    pub const MAGIC: Field = f("magic", 0, 4);
    /// No flags are defined in version 1: must be zero.
    pub const FLAGS: Field = f("flags", 4, 4);
    /// Sequence number; the slot is `seq % descriptor_slots`.
    pub const SEQ: Field = f("seq", 8, 8);
    /// Epoch of the region when the record was written.
    pub const EPOCH: Field = f("epoch", 16, 8);
    /// Target position on the disk, in 512-byte sectors.
    pub const SECTOR: Field = f("sector", 24, 8);
    /// Payload position from the start of the ring, a multiple of 512.
    pub const RING_OFFSET: Field = f("ring_offset", 32, 8);
    /// Payload length in bytes, a non-zero multiple of 512.
    pub const LENGTH: Field = f("length", 40, 4);
    /// CRC-32C of the payload.
    pub const PAYLOAD_CHECKSUM: Field = f("payload_checksum", 44, 4);
    /// Zero; room for later versions.
    pub const RESERVED: Field = f("reserved", 48, 12);
    /// CRC-32C of bytes 0..60.
    pub const CHECKSUM: Field = f("checksum", 60, 4);

    /// All fields in order; they tile the 64-byte descriptor exactly.
    pub const ALL: &[Field] = &[
        MAGIC,
        FLAGS,
        SEQ,
        EPOCH,
        SECTOR,
        RING_OFFSET,
        LENGTH,
        PAYLOAD_CHECKSUM,
        RESERVED,
        CHECKSUM,
    ];
}

/// A decoded descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    /// Sequence number.
    pub seq: u64,
    /// Region epoch at write time.
    pub epoch: u64,
    /// Target sector (512-byte units).
    pub sector: u64,
    /// Payload offset in the ring.
    pub ring_offset: u64,
    /// Payload length in bytes.
    pub length: u32,
    /// CRC-32C of the payload.
    pub payload_checksum: u32,
}

/// Why a descriptor slot does not hold a usable descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DescriptorError {
    /// All zero: never written since format.
    Empty,
    /// Checksum mismatch: torn or corrupted.
    BadChecksum,
    /// Checksum fine but wrong magic or unknown flags.
    Malformed,
}

impl Descriptor {
    /// Encodes into `out`, checksum last.
    pub fn encode<C: Crc32c>(&self, out: &mut [u8; DESCRIPTOR_BYTES], crc: C) {
        use fields::*;
        out.fill(0);
        field::write_u32(out, MAGIC, DESCRIPTOR_MAGIC);
        field::write_u64(out, SEQ, self.seq);
        field::write_u64(out, EPOCH, self.epoch);
        field::write_u64(out, SECTOR, self.sector);
        field::write_u64(out, RING_OFFSET, self.ring_offset);
        field::write_u32(out, LENGTH, self.length);
        field::write_u32(out, PAYLOAD_CHECKSUM, self.payload_checksum);
        let checksum = crc.checksum(out.get(..CHECKSUM.offset).unwrap_or(&[]));
        field::write_u32(out, CHECKSUM, checksum);
    }

    /// Decodes one slot. Only the descriptor's own integrity is checked
    /// here; whether it belongs to the live window, the current epoch, and
    /// fits the geometry and the disk is the replayer's business.
    pub fn decode<C: Crc32c>(
        bytes: &[u8; DESCRIPTOR_BYTES],
        crc: C,
    ) -> Result<Self, DescriptorError> {
        use fields::*;
        if bytes.iter().all(|&b| b == 0) {
            return Err(DescriptorError::Empty);
        }
        let covered = bytes.get(..CHECKSUM.offset).unwrap_or(&[]);
        if crc.checksum(covered) != field::read_u32(bytes, CHECKSUM) {
            return Err(DescriptorError::BadChecksum);
        }
        if field::read_u32(bytes, MAGIC) != DESCRIPTOR_MAGIC || field::read_u32(bytes, FLAGS) != 0 {
            return Err(DescriptorError::Malformed);
        }
        Ok(Self {
            seq: field::read_u64(bytes, SEQ),
            epoch: field::read_u64(bytes, EPOCH),
            sector: field::read_u64(bytes, SECTOR),
            ring_offset: field::read_u64(bytes, RING_OFFSET),
            length: field::read_u32(bytes, LENGTH),
            payload_checksum: field::read_u32(bytes, PAYLOAD_CHECKSUM),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::crc32c::SoftwareCrc32c;
    use super::*;

    fn sample() -> Descriptor {
        Descriptor {
            seq: 0x0102_0304_0506_0708,
            epoch: 42,
            sector: 1 << 33,
            ring_offset: 4096,
            length: 8192,
            payload_checksum: 0xDEAD_BEEF,
        }
    }

    #[test]
    fn fields_tile_the_descriptor() {
        let mut next = 0;
        for field in fields::ALL {
            assert_eq!(field.offset, next, "{}", field.name);
            next = field.offset + field.size;
        }
        assert_eq!(next, DESCRIPTOR_BYTES);
    }

    #[test]
    fn round_trip_and_layout() {
        let mut out = [0xFFu8; DESCRIPTOR_BYTES];
        sample().encode(&mut out, SoftwareCrc32c);
        assert_eq!(&out[..4], b"RLGD");
        assert_eq!(out[8..16], 0x0102_0304_0506_0708u64.to_le_bytes());
        assert!(out[48..60].iter().all(|&b| b == 0));
        assert_eq!(Descriptor::decode(&out, SoftwareCrc32c), Ok(sample()));
    }

    #[test]
    fn empty_torn_and_malformed() {
        assert_eq!(
            Descriptor::decode(&[0; DESCRIPTOR_BYTES], SoftwareCrc32c),
            Err(DescriptorError::Empty)
        );
        let mut good = [0u8; DESCRIPTOR_BYTES];
        sample().encode(&mut good, SoftwareCrc32c);
        // A write torn at any byte (new prefix over an empty slot) never counts.
        for cut in 1..DESCRIPTOR_BYTES {
            let mut torn = [0u8; DESCRIPTOR_BYTES];
            torn[..cut].copy_from_slice(&good[..cut]);
            assert_eq!(
                Descriptor::decode(&torn, SoftwareCrc32c),
                Err(DescriptorError::BadChecksum),
                "cut {cut}"
            );
        }
        for (field, value) in [(fields::MAGIC, 0x1234), (fields::FLAGS, 1)] {
            let mut bad = good;
            field::write_u32(&mut bad, field, value);
            let crc = SoftwareCrc32c.checksum(&bad[..60]);
            field::write_u32(&mut bad, fields::CHECKSUM, crc);
            assert_eq!(
                Descriptor::decode(&bad, SoftwareCrc32c),
                Err(DescriptorError::Malformed)
            );
        }
    }
}
