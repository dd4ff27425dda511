// SPDX-License-Identifier: GPL-2.0

//! Writeback's check of a live record before any of its batch goes to the
//! disk: the record's descriptor, read back from the descriptor table, must
//! be the one the writer published, and the payload in the ring must match
//! the checksum that descriptor carries.
//!
//! Replay has always checked this (FORMAT.md, recovery rule 3): a record
//! corrupted in the region (a flipped bit, a stray DMA from a device no
//! IOMMU fences) is skipped and reported. Without the same check in the
//! running kernel, writeback would copy the corruption onto the log disk,
//! advance the tail past it and free its space, and the evidence would be
//! gone. With it, writeback never writes a record it cannot verify.
//!
//! The check is by the descriptor *in the region*, not by what the writer
//! remembers, because the region is what a crash kernel replays: a record
//! whose descriptor no longer holds is one replay would skip too.
//!
//! One pass over the payload: the caller computes its CRC-32C (in the
//! kernel straight from region memory, which is never borrowed as a slice)
//! through `payload_checksum`, only once the descriptor has passed.
//!
//! The two halves are also available apart, for a writer of the disk that
//! checks a payload as it copies it: [`check_descriptor`] gives the
//! [`PublishedPayload`] (where the payload lies, the CRC-32C published for
//! it), and [`PublishedPayload::verify`] judges a CRC-32C computed later,
//! of the region or of a copy of it.

use core::ops::Range;

use super::crc32c::Crc32c;
use super::descriptor::{fields, Descriptor};
use super::field;
use super::geometry::{Geometry, DESCRIPTOR_BYTES};

/// What the writer published for a live record, as the driver keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpectedRecord {
    /// Sequence number.
    pub seq: u64,
    /// The region's epoch.
    pub epoch: u64,
    /// Target sector (512-byte units).
    pub sector: u64,
    /// Payload offset from the start of the ring.
    pub ring_offset: u64,
    /// Payload length in bytes.
    pub length: u32,
}

/// Why a record failed the check; [`RecordFault::code`] is its code in the
/// control interface's status block (`bad_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordFault {
    /// The payload does not match the CRC-32C its descriptor carries.
    PayloadChecksum {
        /// The descriptor's `payload_checksum`.
        expected: u32,
        /// CRC-32C of the payload as it is in the region now.
        found: u32,
    },
    /// The descriptor fails its own checksum (corrupted, or zeroed).
    DescriptorChecksum {
        /// The descriptor's stored `checksum`.
        expected: u32,
        /// CRC-32C of its bytes 0..60 as they are now.
        found: u32,
    },
    /// The descriptor is intact but is not the one published for this
    /// record: wrong magic or flags, or another seq, epoch, sector, ring
    /// offset or length (or a payload outside the ring).
    DescriptorMismatch,
}

impl RecordFault {
    /// Code in the status block: 1 payload checksum, 2 descriptor
    /// checksum, 3 descriptor mismatch (0 is "none").
    pub const fn code(self) -> u32 {
        match self {
            Self::PayloadChecksum { .. } => 1,
            Self::DescriptorChecksum { .. } => 2,
            Self::DescriptorMismatch => 3,
        }
    }

    /// The checksums compared, `(expected, found)`; zero for a mismatch,
    /// which compares fields.
    pub const fn checksums(self) -> (u32, u32) {
        match self {
            Self::PayloadChecksum { expected, found }
            | Self::DescriptorChecksum { expected, found } => (expected, found),
            Self::DescriptorMismatch => (0, 0),
        }
    }

    /// The fault from its status-block code and checksums; `None` for 0
    /// or an unknown code.
    pub const fn from_code(code: u32, expected: u32, found: u32) -> Option<Self> {
        match code {
            1 => Some(Self::PayloadChecksum { expected, found }),
            2 => Some(Self::DescriptorChecksum { expected, found }),
            3 => Some(Self::DescriptorMismatch),
            _ => None,
        }
    }
}

impl core::fmt::Display for RecordFault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::PayloadChecksum { expected, found } => write!(
                f,
                "payload CRC-32C {found:#010x}, its descriptor says {expected:#010x}"
            ),
            Self::DescriptorChecksum { expected, found } => write!(
                f,
                "descriptor CRC-32C {found:#010x}, it says {expected:#010x} (descriptor corrupted)"
            ),
            Self::DescriptorMismatch => {
                f.write_str("its descriptor is intact but not the one published for it")
            }
        }
    }
}

/// Where a record's payload lies in the region and the CRC-32C its
/// published descriptor carries for it: what [`check_descriptor`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedPayload {
    /// The payload's bytes in the region (`geometry.payload_range`).
    pub range: Range<usize>,
    /// The descriptor's `payload_checksum`.
    pub checksum: u32,
}

impl PublishedPayload {
    /// Judges `found`, the CRC-32C of the payload's bytes as read now (from
    /// the region, or of a copy just taken of them).
    pub fn verify(&self, found: u32) -> Result<(), RecordFault> {
        if found != self.checksum {
            return Err(RecordFault::PayloadChecksum {
                expected: self.checksum,
                found,
            });
        }
        Ok(())
    }
}

/// Checks the descriptor half of [`check_record`]: `descriptor` (the bytes
/// of slot `geometry.slot_of(expected.seq)`) must pass its own checksum and
/// be the one published for `expected`, and its payload must lie in the
/// ring. The payload itself is not read.
pub fn check_descriptor<C: Crc32c>(
    geometry: &Geometry,
    descriptor: &[u8; DESCRIPTOR_BYTES],
    expected: &ExpectedRecord,
    crc: C,
) -> Result<PublishedPayload, RecordFault> {
    let covered = descriptor.get(..fields::CHECKSUM.offset).unwrap_or(&[]);
    let stored = field::read_u32(descriptor, fields::CHECKSUM);
    let computed = crc.checksum(covered);
    if computed != stored {
        return Err(RecordFault::DescriptorChecksum {
            expected: stored,
            found: computed,
        });
    }
    // The checksum holds, so an error here is magic or flags (an all-zero
    // slot fails the checksum above: CRC-32C of zeros is not zero).
    let d = Descriptor::decode(descriptor, &crc).map_err(|_| RecordFault::DescriptorMismatch)?;
    let published = Descriptor {
        payload_checksum: d.payload_checksum,
        ..expected_descriptor(expected)
    };
    if d != published {
        return Err(RecordFault::DescriptorMismatch);
    }
    let range = geometry
        .payload_range(d.ring_offset, d.length)
        .ok_or(RecordFault::DescriptorMismatch)?;
    Ok(PublishedPayload {
        range,
        checksum: d.payload_checksum,
    })
}

/// Checks the record `expected` against its descriptor slot's bytes
/// `descriptor` (slot `geometry.slot_of(expected.seq)`) and its payload.
///
/// `payload_checksum(range)` returns the CRC-32C of the region bytes in
/// `range` (the payload, as `geometry.payload_range` gives it), or `None`
/// if it cannot read them; it is called at most once, and only when the
/// descriptor holds.
pub fn check_record<C: Crc32c>(
    geometry: &Geometry,
    descriptor: &[u8; DESCRIPTOR_BYTES],
    expected: &ExpectedRecord,
    crc: C,
    payload_checksum: impl FnOnce(Range<usize>) -> Option<u32>,
) -> Result<(), RecordFault> {
    let payload = check_descriptor(geometry, descriptor, expected, crc)?;
    let found = payload_checksum(payload.range.clone()).ok_or(RecordFault::DescriptorMismatch)?;
    payload.verify(found)
}

fn expected_descriptor(e: &ExpectedRecord) -> Descriptor {
    Descriptor {
        seq: e.seq,
        epoch: e.epoch,
        sector: e.sector,
        ring_offset: e.ring_offset,
        length: e.length,
        payload_checksum: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::super::crc32c::SoftwareCrc32c;
    use super::super::field;
    use super::*;

    const GEOMETRY: Geometry = Geometry {
        region_bytes: 64 << 10,
        descriptor_offset: 4096,
        descriptor_slots: 16,
        max_record_bytes: 8192,
        ring_offset: 8192,
        ring_bytes: 56 << 10,
    };

    struct Fixture {
        region: Vec<u8>,
        expected: ExpectedRecord,
        descriptor: [u8; DESCRIPTOR_BYTES],
    }

    /// Record 21 (slot 5) of 4 KiB at ring offset 4096, published.
    fn fixture() -> Fixture {
        let mut region = vec![0u8; GEOMETRY.region_bytes as usize];
        let expected = ExpectedRecord {
            seq: 21,
            epoch: 0xE90C,
            sector: 800,
            ring_offset: 4096,
            length: 4096,
        };
        let payload = GEOMETRY.payload_range(4096, 4096).unwrap();
        for (i, b) in region[payload.clone()].iter_mut().enumerate() {
            *b = (i * 7 + 3) as u8;
        }
        let mut descriptor = [0u8; DESCRIPTOR_BYTES];
        Descriptor {
            payload_checksum: SoftwareCrc32c.checksum(&region[payload]),
            ..expected_descriptor(&expected)
        }
        .encode(&mut descriptor, SoftwareCrc32c);
        Fixture {
            region,
            expected,
            descriptor,
        }
    }

    fn check(f: &Fixture) -> Result<(), RecordFault> {
        check_record(
            &GEOMETRY,
            &f.descriptor,
            &f.expected,
            SoftwareCrc32c,
            |range| f.region.get(range).map(|p| SoftwareCrc32c.checksum(p)),
        )
    }

    #[test]
    fn a_published_record_passes() {
        assert_eq!(check(&fixture()), Ok(()));
    }

    #[test]
    fn any_flipped_payload_byte_is_a_payload_fault_with_both_checksums() {
        let good = fixture();
        let range = GEOMETRY.payload_range(4096, 4096).unwrap();
        let expected = field::read_u32(&good.descriptor, fields::PAYLOAD_CHECKSUM);
        for at in [range.start, range.start + 1000, range.end - 1] {
            let mut f = fixture();
            f.region[at] ^= 0x01;
            let found = SoftwareCrc32c.checksum(&f.region[range.clone()]);
            assert_eq!(
                check(&f),
                Err(RecordFault::PayloadChecksum { expected, found }),
                "byte {at}"
            );
            assert_ne!(expected, found);
        }
        // Bytes outside the payload (the neighbouring record) do not count.
        let mut f = fixture();
        f.region[range.end] ^= 0xFF;
        f.region[range.start - 1] ^= 0xFF;
        assert_eq!(check(&f), Ok(()));
    }

    #[test]
    fn a_corrupted_or_zeroed_descriptor_is_a_descriptor_fault_and_the_payload_is_not_read() {
        for byte in [0, 9, 44, 59, 60, 63] {
            let mut f = fixture();
            f.descriptor[byte] ^= 0x10;
            let r = check_record(
                &GEOMETRY,
                &f.descriptor,
                &f.expected,
                SoftwareCrc32c,
                |_| panic!("payload read although the descriptor failed"),
            );
            assert!(
                matches!(r, Err(RecordFault::DescriptorChecksum { expected, found }) if expected != found),
                "byte {byte}: {r:?}"
            );
        }
        let mut f = fixture();
        f.descriptor = [0; DESCRIPTOR_BYTES];
        assert!(matches!(
            check(&f),
            Err(RecordFault::DescriptorChecksum { .. })
        ));
    }

    #[test]
    fn an_intact_descriptor_of_something_else_is_a_mismatch() {
        let changes: [fn(&mut ExpectedRecord); 5] = [
            |e| e.seq += 16, // same slot, another lap
            |e| e.epoch ^= 1,
            |e| e.sector += 8,
            |e| e.ring_offset += 512,
            |e| e.length = 512,
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut f = fixture();
            change(&mut f.expected);
            assert_eq!(
                check(&f),
                Err(RecordFault::DescriptorMismatch),
                "change {i}"
            );
        }
        // Valid checksum over a wrong magic.
        let mut f = fixture();
        field::write_u32(&mut f.descriptor, fields::MAGIC, 0x1234);
        let crc = SoftwareCrc32c.checksum(&f.descriptor[..60]);
        field::write_u32(&mut f.descriptor, fields::CHECKSUM, crc);
        assert_eq!(check(&f), Err(RecordFault::DescriptorMismatch));
        // A payload the caller cannot read.
        let f = fixture();
        let r = check_record(
            &GEOMETRY,
            &f.descriptor,
            &f.expected,
            SoftwareCrc32c,
            |_| None,
        );
        assert_eq!(r, Err(RecordFault::DescriptorMismatch));
    }

    #[test]
    fn the_descriptor_half_gives_the_payload_and_judges_a_later_checksum() {
        let f = fixture();
        let payload =
            check_descriptor(&GEOMETRY, &f.descriptor, &f.expected, SoftwareCrc32c).unwrap();
        assert_eq!(payload.range, GEOMETRY.payload_range(4096, 4096).unwrap());
        let good = SoftwareCrc32c.checksum(&f.region[payload.range.clone()]);
        assert_eq!(payload.checksum, good);
        assert_eq!(payload.verify(good), Ok(()));
        assert_eq!(
            payload.verify(good ^ 4),
            Err(RecordFault::PayloadChecksum {
                expected: good,
                found: good ^ 4
            })
        );
        // The same faults as the whole check, without reading the payload.
        let mut bad = fixture();
        bad.descriptor[9] ^= 0x10;
        assert!(matches!(
            check_descriptor(&GEOMETRY, &bad.descriptor, &bad.expected, SoftwareCrc32c),
            Err(RecordFault::DescriptorChecksum { .. })
        ));
        let mut other = fixture();
        other.expected.sector += 8;
        assert_eq!(
            check_descriptor(
                &GEOMETRY,
                &other.descriptor,
                &other.expected,
                SoftwareCrc32c
            ),
            Err(RecordFault::DescriptorMismatch)
        );
    }

    #[test]
    fn codes_round_trip() {
        for fault in [
            RecordFault::PayloadChecksum {
                expected: 1,
                found: 2,
            },
            RecordFault::DescriptorChecksum {
                expected: 3,
                found: 4,
            },
            RecordFault::DescriptorMismatch,
        ] {
            let (e, f) = fault.checksums();
            assert_eq!(RecordFault::from_code(fault.code(), e, f), Some(fault));
        }
        assert_eq!(RecordFault::from_code(0, 1, 2), None);
        assert_eq!(RecordFault::from_code(9, 1, 2), None);
    }
}
