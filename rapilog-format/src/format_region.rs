// SPDX-License-Identifier: GPL-2.0

//! Formatting: turning any bytes into an empty region for one disk.

use super::crc32c::Crc32c;
use super::disk::DiskIdentity;
use super::geometry::{Geometry, GeometryError, SUPERBLOCK_BYTES};
use super::replay_report::LastReplay;
use super::superblock::{ActiveSuperblock, RegionState, Superblock, SuperblockCopy};

/// Why a region was not formatted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatError {
    /// The geometry breaks a layout rule.
    Geometry(GeometryError),
    /// The geometry is larger than the bytes given.
    RegionTooSmall,
    /// The disk identity is implausible (zero size, bad block size).
    BadDisk,
}

impl core::fmt::Display for FormatError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Geometry(e) => write!(f, "bad geometry: {e}"),
            Self::RegionTooSmall => f.write_str("geometry is larger than the region"),
            Self::BadDisk => f.write_str("implausible disk size or block size"),
        }
    }
}

impl core::error::Error for FormatError {}

/// Formats `region` for `disk` under a new `epoch`.
///
/// `epoch` must differ from the epoch of anything the region held before
/// (the kernel uses a random 64-bit value): the descriptor table is zeroed
/// too, but the epoch is what keeps a leftover descriptor from ever being
/// taken for a current one if zeroing is interrupted.
///
/// Order, so that a crash midway leaves no valid superblock rather than a
/// misleading one: both copies are zeroed, then the table, then the second
/// copy is written with generation 0 and the first with generation 1. The
/// ring is left as it is; nothing in it counts without a descriptor.
///
/// Returns the active superblock (the first copy); the writer starts with
/// `RingState::new(0)`.
pub fn format_region<C: Crc32c>(
    region: &mut [u8],
    geometry: Geometry,
    disk: DiskIdentity,
    epoch: u64,
    crc: C,
) -> Result<ActiveSuperblock, FormatError> {
    geometry.validate().map_err(FormatError::Geometry)?;
    if !disk.is_valid() {
        return Err(FormatError::BadDisk);
    }
    if usize::try_from(geometry.region_bytes).map_or(true, |needed| needed > region.len()) {
        return Err(FormatError::RegionTooSmall);
    }
    format_metadata(region, geometry, disk, epoch, crc)
}

/// What [`format_region`] writes, given only the region's first
/// `geometry.ring_offset` bytes (superblocks, table and padding): for a
/// writer that maps the region piecewise, like the kernel module, which
/// formats a copy of that prefix and then copies it into the region.
/// `metadata` may be longer; bytes from `ring_offset` on are not touched.
pub fn format_metadata<C: Crc32c>(
    metadata: &mut [u8],
    geometry: Geometry,
    disk: DiskIdentity,
    epoch: u64,
    crc: C,
) -> Result<ActiveSuperblock, FormatError> {
    geometry.validate().map_err(FormatError::Geometry)?;
    if !disk.is_valid() {
        return Err(FormatError::BadDisk);
    }
    let table_start =
        usize::try_from(geometry.descriptor_offset).map_err(|_| FormatError::RegionTooSmall)?;
    let table_end =
        usize::try_from(geometry.ring_offset).map_err(|_| FormatError::RegionTooSmall)?;
    if table_end > metadata.len() {
        return Err(FormatError::RegionTooSmall);
    }
    let region = metadata;
    for copy in [SuperblockCopy::First, SuperblockCopy::Second] {
        if let Some(bytes) = region.get_mut(copy.range()) {
            bytes.fill(0);
        }
    }
    // Zero up to the ring: the table plus any alignment padding after it.
    if let Some(table) = region.get_mut(table_start..table_end) {
        table.fill(0);
    }
    let mut superblock = Superblock {
        generation: 0,
        epoch,
        state: RegionState::Clean,
        durable_tail: 0,
        head_hint: 0,
        geometry,
        disk,
        last_replay: LastReplay::default(),
    };
    let mut bytes = [0u8; SUPERBLOCK_BYTES];
    for (copy, generation) in [(SuperblockCopy::Second, 0), (SuperblockCopy::First, 1)] {
        superblock.generation = generation;
        superblock.encode(&mut bytes, &crc);
        if let Some(dst) = region.get_mut(copy.range()) {
            dst.copy_from_slice(&bytes);
        }
    }
    Ok(ActiveSuperblock {
        superblock,
        copy: SuperblockCopy::First,
    })
}

#[cfg(test)]
mod tests {
    use super::super::crc32c::SoftwareCrc32c;
    use super::super::disk::DiskId;
    use super::*;

    fn disk() -> DiskIdentity {
        DiskIdentity {
            id: DiskId::new(b"disk").unwrap(),
            sectors: 1 << 20,
            block_bytes: 512,
        }
    }

    #[test]
    fn metadata_prefix_formats_like_the_whole_region() {
        let geometry = Geometry::standard(256 * 1024, 4096).unwrap();
        let mut whole = [0xA5u8; 256 * 1024];
        let a = format_region(&mut whole, geometry, disk(), 7, SoftwareCrc32c).unwrap();
        let prefix_len = geometry.ring_offset as usize;
        let mut prefix = [0xA5u8; 256 * 1024];
        let b = format_metadata(
            &mut prefix[..prefix_len],
            geometry,
            disk(),
            7,
            SoftwareCrc32c,
        )
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(whole[..prefix_len], prefix[..prefix_len]);
        // The ring is left alone by both.
        assert!(whole[prefix_len..].iter().all(|&x| x == 0xA5));
        assert_eq!(
            format_metadata(
                &mut prefix[..prefix_len - 1],
                geometry,
                disk(),
                7,
                SoftwareCrc32c
            ),
            Err(FormatError::RegionTooSmall)
        );
        assert_eq!(
            format_region(&mut whole[..1024], geometry, disk(), 7, SoftwareCrc32c),
            Err(FormatError::RegionTooSmall)
        );
    }
}
