// SPDX-License-Identifier: GPL-2.0

//! Where things are inside the region.
//!
//! ```text
//! offset 0                superblock copy 0      (512 bytes)
//! offset 512              superblock copy 1      (512 bytes)
//! descriptor_offset       descriptor table       (descriptor_slots x 64 bytes)
//! ring_offset             data ring              (ring_bytes)
//! region_bytes            end
//! ```
//!
//! The table and the ring start on 512-byte boundaries (the formatter in
//! [`Geometry::standard`] uses 4096) and the ring is a whole number of
//! 512-byte units, so every payload starts sector-aligned and the kernel can
//! copy bio segments straight into it.

use core::ops::Range;

/// Size of one superblock copy.
pub const SUPERBLOCK_BYTES: usize = 512;

/// Offsets of the two superblock copies from the start of the region.
pub const SUPERBLOCK_OFFSETS: [usize; 2] = [0, SUPERBLOCK_BYTES];

/// Size of one descriptor.
pub const DESCRIPTOR_BYTES: usize = 64;

/// Alignment and size unit of the descriptor table, the ring and every
/// payload: one 512-byte sector.
pub const UNIT_BYTES: u64 = 512;

/// The descriptor table may not start before this offset (it would overlap
/// the superblocks).
pub const MIN_DESCRIPTOR_OFFSET: u64 = 2 * SUPERBLOCK_BYTES as u64;

/// Alignment used by [`Geometry::standard`]: a page, so the kernel can map
/// and protect the table and the ring separately.
const STANDARD_ALIGN: u64 = 4096;

/// Region bytes per descriptor slot in [`Geometry::standard`]: one slot per
/// 4 KiB lets the ring fill with 4 KiB writes before slots run out.
const STANDARD_BYTES_PER_SLOT: u64 = 4096;

/// Why a geometry is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeometryError {
    /// An offset or size is not a multiple of [`UNIT_BYTES`].
    Misaligned,
    /// The areas overlap or are out of order (superblocks, table, ring).
    Overlap,
    /// The ring ends past `region_bytes`.
    BeyondRegion,
    /// The descriptor table has no slot.
    NoSlots,
    /// `max_record_bytes` is zero, not a multiple of [`UNIT_BYTES`], or more
    /// than half the ring (see [`Geometry::max_record_bytes`]).
    BadMaxRecord,
    /// An end offset does not fit in 64 bits.
    Overflow,
}

impl core::fmt::Display for GeometryError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Misaligned => "offset or size not a multiple of 512 bytes",
            Self::Overlap => "superblocks, descriptor table and ring overlap or are out of order",
            Self::BeyondRegion => "ring ends past the end of the region",
            Self::NoSlots => "descriptor table has no slot",
            Self::BadMaxRecord => "maximum record size is zero, unaligned or over half the ring",
            Self::Overflow => "geometry offsets overflow",
        })
    }
}

impl core::error::Error for GeometryError {}

/// The layout of one region, as recorded in its superblock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Size of the region in bytes.
    pub region_bytes: u64,
    /// Offset of the descriptor table.
    pub descriptor_offset: u64,
    /// Number of descriptor slots: also the most records that can be live
    /// (reserved and not yet freed) at once.
    pub descriptor_slots: u32,
    /// Offset of the data ring.
    pub ring_offset: u64,
    /// Size of the data ring.
    pub ring_bytes: u64,
    /// Largest payload of one record. At most half the ring, so that an
    /// empty ring always has room for it wherever its head is (a record never
    /// wraps, see [`super::ring`]).
    pub max_record_bytes: u32,
}

fn aligned(value: u64) -> bool {
    value % UNIT_BYTES == 0
}

fn round_up(value: u64, align: u64) -> Option<u64> {
    value.checked_add(align - 1).map(|v| v / align * align)
}

impl Geometry {
    /// The formatter's default layout for a region of `region_bytes`: table
    /// at 4 KiB, one slot per 4 KiB of region, ring page-aligned after the
    /// table and running to the last whole page.
    pub fn standard(region_bytes: u64, max_record_bytes: u32) -> Result<Self, GeometryError> {
        let slots = u32::try_from(region_bytes / STANDARD_BYTES_PER_SLOT).unwrap_or(u32::MAX);
        let table_bytes = u64::from(slots)
            .checked_mul(DESCRIPTOR_BYTES as u64)
            .ok_or(GeometryError::Overflow)?;
        let ring_offset = STANDARD_ALIGN
            .checked_add(table_bytes)
            .and_then(|end| round_up(end, STANDARD_ALIGN))
            .ok_or(GeometryError::Overflow)?;
        let ring_bytes = region_bytes
            .checked_sub(ring_offset)
            .ok_or(GeometryError::BeyondRegion)?
            / STANDARD_ALIGN
            * STANDARD_ALIGN;
        let geometry = Self {
            region_bytes,
            descriptor_offset: STANDARD_ALIGN,
            descriptor_slots: slots,
            ring_offset,
            ring_bytes,
            max_record_bytes,
        };
        geometry.validate()?;
        Ok(geometry)
    }

    /// Checks the layout rules of the module docs and `FORMAT.md`.
    pub fn validate(&self) -> Result<(), GeometryError> {
        if self.descriptor_slots == 0 {
            return Err(GeometryError::NoSlots);
        }
        if !aligned(self.descriptor_offset)
            || !aligned(self.ring_offset)
            || !aligned(self.ring_bytes)
        {
            return Err(GeometryError::Misaligned);
        }
        let table_end = self.table_end().ok_or(GeometryError::Overflow)?;
        let ring_end = self
            .ring_offset
            .checked_add(self.ring_bytes)
            .ok_or(GeometryError::Overflow)?;
        if self.descriptor_offset < MIN_DESCRIPTOR_OFFSET || self.ring_offset < table_end {
            return Err(GeometryError::Overlap);
        }
        if ring_end > self.region_bytes {
            return Err(GeometryError::BeyondRegion);
        }
        let max = u64::from(self.max_record_bytes);
        if max == 0 || !aligned(max) || max > self.ring_bytes / 2 {
            return Err(GeometryError::BadMaxRecord);
        }
        Ok(())
    }

    /// End offset of the descriptor table.
    fn table_end(&self) -> Option<u64> {
        u64::from(self.descriptor_slots)
            .checked_mul(DESCRIPTOR_BYTES as u64)?
            .checked_add(self.descriptor_offset)
    }

    /// The slot a sequence number's descriptor lives in.
    pub fn slot_of(&self, seq: u64) -> u32 {
        // checked_rem: never divides by zero even on an unvalidated geometry;
        // the result is below descriptor_slots, so it fits in u32.
        seq.checked_rem(u64::from(self.descriptor_slots))
            .and_then(|slot| u32::try_from(slot).ok())
            .unwrap_or(0)
    }

    /// Byte range of descriptor `slot` inside the region, or `None` if the
    /// slot does not exist or the range does not fit in `usize`.
    pub fn descriptor_range(&self, slot: u32) -> Option<Range<usize>> {
        if slot >= self.descriptor_slots {
            return None;
        }
        let start = u64::from(slot)
            .checked_mul(DESCRIPTOR_BYTES as u64)?
            .checked_add(self.descriptor_offset)?;
        byte_range(start, DESCRIPTOR_BYTES as u64)
    }

    /// Byte range inside the region of a payload of `len` bytes at
    /// `ring_offset` in the ring, or `None` if it does not lie inside the
    /// ring or does not fit in `usize`.
    pub fn payload_range(&self, ring_offset: u64, len: u32) -> Option<Range<usize>> {
        let end = ring_offset.checked_add(u64::from(len))?;
        if end > self.ring_bytes {
            return None;
        }
        byte_range(self.ring_offset.checked_add(ring_offset)?, u64::from(len))
    }
}

/// `start..start + len` as a `usize` range, if it fits.
fn byte_range(start: u64, len: u64) -> Option<Range<usize>> {
    let end = start.checked_add(len)?;
    Some(usize::try_from(start).ok()?..usize::try_from(end).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Geometry {
        Geometry {
            region_bytes: 4096,
            descriptor_offset: 1024,
            descriptor_slots: 8,
            ring_offset: 1536,
            ring_bytes: 2048,
            max_record_bytes: 1024,
        }
    }

    #[test]
    fn small_is_valid() {
        assert_eq!(small().validate(), Ok(()));
    }

    #[test]
    fn each_rule() {
        let g = small();
        assert_eq!(
            Geometry {
                descriptor_slots: 0,
                ..g
            }
            .validate(),
            Err(GeometryError::NoSlots)
        );
        assert_eq!(
            Geometry {
                descriptor_offset: 1000,
                ..g
            }
            .validate(),
            Err(GeometryError::Misaligned)
        );
        assert_eq!(
            Geometry {
                ring_offset: 1537,
                ..g
            }
            .validate(),
            Err(GeometryError::Misaligned)
        );
        assert_eq!(
            Geometry {
                ring_bytes: 2047,
                ..g
            }
            .validate(),
            Err(GeometryError::Misaligned)
        );
        assert_eq!(
            Geometry {
                descriptor_offset: 512,
                ..g
            }
            .validate(),
            Err(GeometryError::Overlap)
        );
        assert_eq!(
            Geometry {
                descriptor_slots: 9,
                ..g
            }
            .validate(),
            Err(GeometryError::Overlap)
        );
        assert_eq!(
            Geometry {
                region_bytes: 3583,
                ..g
            }
            .validate(),
            Err(GeometryError::BeyondRegion)
        );
        assert_eq!(
            Geometry {
                max_record_bytes: 0,
                ..g
            }
            .validate(),
            Err(GeometryError::BadMaxRecord)
        );
        assert_eq!(
            Geometry {
                max_record_bytes: 1000,
                ..g
            }
            .validate(),
            Err(GeometryError::BadMaxRecord)
        );
        assert_eq!(
            Geometry {
                max_record_bytes: 1536,
                ..g
            }
            .validate(),
            Err(GeometryError::BadMaxRecord)
        );
        assert_eq!(
            Geometry {
                ring_offset: u64::MAX - 511,
                ..g
            }
            .validate(),
            Err(GeometryError::Overflow)
        );
        let huge = Geometry {
            descriptor_slots: u32::MAX,
            descriptor_offset: u64::MAX - 511,
            ..g
        };
        assert_eq!(huge.validate(), Err(GeometryError::Overflow));
    }

    #[test]
    fn ranges() {
        let g = small();
        assert_eq!(g.descriptor_range(0), Some(1024..1088));
        assert_eq!(g.descriptor_range(7), Some(1472..1536));
        assert_eq!(g.descriptor_range(8), None);
        assert_eq!(g.payload_range(0, 512), Some(1536..2048));
        assert_eq!(g.payload_range(1536, 512), Some(3072..3584));
        assert_eq!(g.payload_range(1536, 1024), None);
        assert_eq!(g.payload_range(u64::MAX, 1), None);
        assert_eq!(g.slot_of(17), 1);
        assert_eq!(
            Geometry {
                descriptor_slots: 0,
                ..g
            }
            .slot_of(17),
            0
        );
    }

    #[test]
    fn standard_64mib() {
        let g = Geometry::standard(64 << 20, 1 << 20).unwrap();
        assert_eq!(g.descriptor_offset, 4096);
        assert_eq!(g.descriptor_slots, 16384);
        assert_eq!(g.ring_offset, 4096 + (1 << 20));
        assert_eq!(g.ring_bytes, (64 << 20) - 4096 - (1 << 20));
        assert_eq!(g.ring_offset % 4096, 0);
        assert_eq!(
            Geometry::standard(8192, 512),
            Err(GeometryError::BadMaxRecord)
        );
        assert_eq!(
            Geometry::standard(4096, 512),
            Err(GeometryError::BeyondRegion)
        );
        assert_eq!(
            Geometry::standard(u64::MAX, 1 << 20)
                .unwrap()
                .descriptor_slots,
            u32::MAX
        );
    }
}
