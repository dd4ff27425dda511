// SPDX-License-Identifier: GPL-2.0

//! Writing the region's metadata - superblock updates and formatting -
//! through write windows, in the order FORMAT.md prescribes.

#![deny(unsafe_code)]

use kernel::alloc::{flags::GFP_KERNEL, KVVec};
use kernel::prelude::*;

use crate::format::{
    format_metadata, ActiveSuperblock, DiskIdentity, FormatError, Geometry, SuperblockCopy,
    SUPERBLOCK_BYTES,
};
use crate::sys::crc32c::KernelCrc32c;
use crate::sys::region::Region;

/// Writes `sb` into its copy (`sb.copy`). The caller made it with
/// `next_update()` and makes it current only once this returned: the other
/// copy stays valid throughout.
pub(crate) fn write_superblock(region: &Region, sb: &ActiveSuperblock) -> Result {
    let mut bytes = [0u8; SUPERBLOCK_BYTES];
    sb.superblock.encode(&mut bytes, KernelCrc32c);
    region.write(sb.copy.range(), &bytes).map_err(|_| EINVAL)
}

/// Formats the region for `disk` with `geometry` under `epoch`: the
/// metadata is built in ordinary memory by the format crate and copied in
/// the order of FORMAT.md (superblocks zeroed, table, copy 1, copy 0), so a
/// crash midway leaves no valid superblock rather than a misleading one.
pub(crate) fn format(
    region: &Region,
    geometry: Geometry,
    disk: DiskIdentity,
    epoch: u64,
) -> Result<ActiveSuperblock> {
    let table = usize::try_from(geometry.descriptor_offset).map_err(|_| EINVAL)?
        ..usize::try_from(geometry.ring_offset).map_err(|_| EINVAL)?;
    let mut image = KVVec::from_elem(0u8, table.end, GFP_KERNEL)?;
    let active =
        format_metadata(&mut image, geometry, disk, epoch, KernelCrc32c).map_err(|e| match e {
            FormatError::Geometry(_) | FormatError::RegionTooSmall | FormatError::BadDisk => EINVAL,
        })?;
    let copies = SuperblockCopy::First.range().start..SuperblockCopy::Second.range().end;
    region.zero(copies).map_err(|_| EINVAL)?;
    let steps = [
        table,
        SuperblockCopy::Second.range(),
        SuperblockCopy::First.range(),
    ];
    for range in steps {
        let src = image.get(range.clone()).ok_or(EINVAL)?;
        region.write(range, src).map_err(|_| EINVAL)?;
    }
    Ok(active)
}
