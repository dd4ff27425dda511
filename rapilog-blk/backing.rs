// SPDX-License-Identifier: GPL-2.0

//! Opening the backing log disk, with one clear kernel-log line per refusal.
//!
//! The identity the region records for it is [`crate::disk_identity`]'s.

#![deny(unsafe_code)]

use kernel::prelude::*;
use kernel::str::BStr;

use crate::config::Config;
use crate::disk_identity;
use crate::format::disk::MAX_BLOCK_BYTES;
use crate::format::{DiskIdentity, SECTOR_BYTES};
use crate::kernel_display::Errno;
use crate::sys::backing::BackingDisk;

/// Smallest log disk accepted: anything smaller is a mistake, not a log.
const MIN_DISK_BYTES: u64 = 1 << 20;

/// Opens `backing=` read-write and exclusively and checks that it can hold
/// a log. Writes nothing.
pub(crate) fn open(config: &Config) -> Result<(BackingDisk, DiskIdentity)> {
    let path = BStr::from_bytes(&config.backing);
    let disk = BackingDisk::open(&config.backing).map_err(|e| {
        let why = match e {
            e if e == ENOENT => "no such file; give the log disk's path, e.g. /dev/disk/by-id/...",
            e if e == ENOTBLK => "not a block device",
            e if e == ENXIO || e == ENODEV => "no such device",
            e if e == EACCES || e == EROFS => "the disk is read-only",
            e if e == EBUSY => {
                "the disk is busy: claimed exclusively by someone else (mounted, swap, \
                 device-mapper, md, another rapilog...) or open for writing"
            }
            _ => "cannot open it",
        };
        pr_err!("backing={path} refused: {why} ({})\n", Errno(e));
        // kmod's insmod reports ENOENT as "Unknown symbol in module".
        if e == ENOENT {
            ENODEV
        } else {
            e
        }
    })?;
    let sectors = disk.sectors();
    let block_bytes = disk.logical_block_size();
    if !block_bytes.is_power_of_two() || !(SECTOR_BYTES..=MAX_BLOCK_BYTES).contains(&block_bytes) {
        pr_err!(
            "backing={path} refused: logical block size {block_bytes} is not supported \
             (a power of two from {SECTOR_BYTES} to {MAX_BLOCK_BYTES})\n"
        );
        return Err(EINVAL);
    }
    let bytes = sectors.saturating_mul(u64::from(SECTOR_BYTES));
    if bytes < MIN_DISK_BYTES {
        pr_err!(
            "backing={path} refused: {bytes} bytes is too small for a log disk (at least {} KiB)\n",
            MIN_DISK_BYTES / 1024
        );
        return Err(ENOSPC);
    }
    let (identity, _) = disk_identity::of(config, &disk, sectors, block_bytes)?;
    Ok((disk, identity))
}
