// SPDX-License-Identifier: GPL-2.0

//! Claiming the region, with one clear kernel-log line per refusal, and
//! choosing its layout.

#![deny(unsafe_code)]

use kernel::prelude::*;

use crate::config::Config;
use crate::format::{Geometry, SECTOR_BYTES};
use crate::kernel_display::Memmap;
use crate::sys::region::{ClaimError, Region};

/// Largest record, hence largest bio the device accepts (bigger ones are
/// split by the block layer). 128 KiB keeps a record and its descriptor
/// within one CPU's write-window slot (`sys::region`); writeback merges
/// records into larger disk writes anyway.
const MAX_RECORD_BYTES: u64 = 128 * 1024;

/// Records are page multiples so that a 4 KiB-aligned write stays aligned.
const RECORD_ALIGN: u64 = 4096;

/// Checks and claims `region=` and maps it. Writes nothing.
pub(crate) fn claim(config: &Config) -> Result<Region> {
    let spec = config.region;
    Region::claim(spec.phys, spec.size, config.protect).map_err(|e| {
        match e {
            ClaimError::SystemRam => pr_err!(
                "region={spec} refused: that range is usable RAM; reserve it at boot with {}\n",
                Memmap(spec)
            ),
            ClaimError::Claimed => pr_err!(
                "region={spec} refused: it overlaps a range claimed by someone else \
                 (see /proc/iomem); is another rapilog or pmem using it?\n"
            ),
            ClaimError::NotReserved { phys } => pr_err!(
                "region={spec} refused: {phys:#x} is not reserved memory (no \"Reserved\" range \
                 of /proc/iomem covers it); reserve the region at boot with {}\n",
                Memmap(spec)
            ),
            ClaimError::DirectMapped { phys } => pr_err!(
                "region={spec} refused: the kernel's direct map maps {phys:#x}, a writable alias \
                 that cannot be protected; reserve the region at boot with {}\n",
                Memmap(spec)
            ),
            ClaimError::NoMemory => pr_err!("region={spec}: cannot map it (out of memory)\n"),
            ClaimError::Map(why) => pr_err!("region={spec}: cannot map it: {why}\n"),
        }
        match e {
            ClaimError::Claimed => EBUSY,
            ClaimError::NoMemory | ClaimError::Map(_) => ENOMEM,
            _ => EINVAL,
        }
    })
}

/// The layout the driver formats a region of `region_bytes` with, for a
/// disk with `block_bytes` logical blocks: the format's standard layout with
/// records of up to 128 KiB, smaller in a small region (at most half the
/// ring, as the format requires).
pub(crate) fn geometry(config: &Config, region_bytes: usize, block_bytes: u32) -> Result<Geometry> {
    let spec = config.region;
    let bytes = region_bytes as u64;
    let align = RECORD_ALIGN.max(u64::from(block_bytes));
    // The standard layout's ring does not depend on the record size; ask
    // with the smallest one to learn it.
    let ring = Geometry::standard(bytes, SECTOR_BYTES)
        .map(|g| g.ring_bytes)
        .unwrap_or(0);
    let max_record = MAX_RECORD_BYTES.min(ring / 2) / align * align;
    let geometry = u32::try_from(max_record)
        .ok()
        .filter(|&m| m > 0)
        .and_then(|m| Geometry::standard(bytes, m).ok());
    geometry.ok_or_else(|| {
        pr_err!(
            "region={spec} refused: too small for the format (a ring of at least {} KiB is needed)\n",
            2 * align / 1024
        );
        EINVAL
    })
}
