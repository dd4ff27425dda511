// SPDX-License-Identifier: GPL-2.0

//! The replay planner: from the bytes of a region, the writes that bring the
//! target disk up to date.
//!
//! # Rules
//!
//! 1. Load the superblock (newer valid copy) and refuse the region if it
//!    names another disk, or another size or block size.
//! 2. Visit every sequence number of the live window
//!    `durable_tail .. durable_tail + descriptor_slots`, in order, each at
//!    its slot `seq % descriptor_slots`.
//! 3. Apply a slot's record only if its descriptor checksum holds, its epoch
//!    is the superblock's, its `seq` is exactly the one visited, its length
//!    and ring offset fit the geometry, it is aligned to the disk's logical
//!    blocks and lies inside the disk's data area (the disk minus its marker
//!    area, [`super::disk_marker`]: replay never writes the marker), and its
//!    payload matches the payload checksum. Anything else is skipped and
//!    counted by reason (a record past the data area as beyond the disk).
//!
//! Writes come out in sequence order, so where records overlap the newest
//! wins, exactly as when they were written. Nothing is written for a slot
//! that fails any check, so a torn record N never hides record N+1 and never
//! reaches the disk itself. Replaying twice yields the same writes, hence the
//! same disk.
//!
//! Records below the durable tail are on the disk already; their slots may
//! hold newer records or leftovers, which rule 3 rejects by `seq`.

use core::ops::Range;

use super::crc32c::Crc32c;
use super::descriptor::{Descriptor, DescriptorError};
use super::disk::{DiskIdentity, SECTOR_BYTES};
use super::disk_marker::marker_area;
use super::geometry::{DESCRIPTOR_BYTES, UNIT_BYTES};
use super::replay_report::{LastReplay, ReplayReport, Replayer};
use super::superblock::{ActiveSuperblock, LoadError, RegionState};

/// Why a region is refused as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayRefusal {
    /// The superblock cannot be loaded (bad magic or version, both copies
    /// torn, bad geometry, region smaller than recorded).
    Load(LoadError),
    /// The region belongs to another disk.
    DiskIdMismatch,
    /// Same id but another size: refuse rather than guess.
    DiskSizeMismatch {
        /// Sectors recorded in the region.
        region: u64,
        /// Sectors of the target.
        target: u64,
    },
    /// Same id but another logical block size.
    BlockSizeMismatch {
        /// Block size recorded in the region.
        region: u32,
        /// Block size of the target.
        target: u32,
    },
    /// The disk is smaller than twice its marker area, so it has no data
    /// area records could target ([`super::disk_marker::marker_area`]).
    DiskTooSmall {
        /// Sectors of the disk.
        sectors: u64,
        /// Its logical block size.
        block_bytes: u32,
    },
}

impl core::fmt::Display for ReplayRefusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Load(e) => write!(f, "{e}"),
            Self::DiskIdMismatch => f.write_str("region belongs to another disk"),
            Self::DiskSizeMismatch { region, target } => {
                write!(f, "region's disk has {region} sectors, target has {target}")
            }
            Self::BlockSizeMismatch { region, target } => {
                write!(
                    f,
                    "region's disk has {region}-byte blocks, target has {target}"
                )
            }
            Self::DiskTooSmall {
                sectors,
                block_bytes,
            } => write!(
                f,
                "disk of {sectors} sectors ({block_bytes}-byte blocks) is too small for a data \
                 area and the marker area at its end (at least twice the marker area is needed)"
            ),
        }
    }
}

impl core::error::Error for ReplayRefusal {}

impl From<LoadError> for ReplayRefusal {
    fn from(e: LoadError) -> Self {
        Self::Load(e)
    }
}

/// One write to apply: `data` goes to the disk at 512-byte sector `sector`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayWrite<'r> {
    /// Sequence number of the record.
    pub seq: u64,
    /// Target sector (512-byte units), aligned to the disk's logical block.
    pub sector: u64,
    /// The payload, checksum verified: a non-zero whole number of logical
    /// blocks, inside the disk's data area.
    pub data: &'r [u8],
}

/// Why one slot of the window was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    Empty,
    BadDescriptorChecksum,
    Malformed,
    WrongEpoch,
    Stale,
    BadPayloadChecksum,
    BeyondDisk,
}

/// Checks `region` against `target` and returns the plan: an iterator over
/// the writes to apply, in sequence order.
///
/// `region` must start at the region's first byte; it may be longer than the
/// region (an image file with padding). Nothing is read until iteration.
pub fn plan_replay<'r, C: Crc32c>(
    region: &'r [u8],
    target: &DiskIdentity,
    crc: C,
) -> Result<ReplayPlan<'r, C>, ReplayRefusal> {
    let active = ActiveSuperblock::load(region, &crc)?;
    let disk = &active.superblock.disk;
    if disk.id != target.id {
        return Err(ReplayRefusal::DiskIdMismatch);
    }
    if disk.sectors != target.sectors {
        return Err(ReplayRefusal::DiskSizeMismatch {
            region: disk.sectors,
            target: target.sectors,
        });
    }
    if disk.block_bytes != target.block_bytes {
        return Err(ReplayRefusal::BlockSizeMismatch {
            region: disk.block_bytes,
            target: target.block_bytes,
        });
    }
    let data_sectors = marker_area(disk)
        .ok_or(ReplayRefusal::DiskTooSmall {
            sectors: disk.sectors,
            block_bytes: disk.block_bytes,
        })?
        .data_sectors();
    Ok(ReplayPlan {
        region,
        active,
        data_sectors,
        crc,
        visited: 0,
        report: ReplayReport::default(),
    })
}

/// The writes of one replay, yielded in sequence order, with the running
/// [`ReplayReport`].
///
/// The iterator visits each slot once, so it ends after at most
/// `descriptor_slots` steps whatever the region holds.
#[derive(Debug)]
pub struct ReplayPlan<'r, C> {
    region: &'r [u8],
    active: ActiveSuperblock,
    /// Records must end at or before this sector: the data area's end.
    data_sectors: u64,
    crc: C,
    /// Slots of the window visited so far.
    visited: u32,
    report: ReplayReport,
}

impl<'r, C: Crc32c> ReplayPlan<'r, C> {
    /// The superblock the plan is based on.
    pub fn superblock(&self) -> &ActiveSuperblock {
        &self.active
    }

    /// Size of the disk's data area in 512-byte sectors: records ending
    /// after it are skipped as beyond the disk.
    pub fn data_sectors(&self) -> u64 {
        self.data_sectors
    }

    /// The sequence numbers examined: the live window.
    pub fn window(&self) -> Range<u64> {
        self.active.superblock.live_window()
    }

    /// Whether every slot of the window has been visited.
    pub fn is_finished(&self) -> bool {
        self.visited >= self.active.superblock.geometry.descriptor_slots
    }

    /// Counts so far; final once [`Self::is_finished`].
    pub fn report(&self) -> ReplayReport {
        self.report
    }

    /// The superblock update that records a finished replay: the tail moves
    /// past the whole window (so a later replay finds nothing to do), the
    /// state becomes clean and the report is kept. Write it to `copy` only
    /// after every write is applied *and flushed* to the disk. `None` until
    /// the plan is finished.
    pub fn replayed_superblock(
        &self,
        replayer: Replayer,
        finished_at_unix_secs: u64,
        duration_us: u64,
    ) -> Option<ActiveSuperblock> {
        if !self.is_finished() {
            return None;
        }
        let window = self.window();
        let mut next = self.active.next_update();
        next.superblock.durable_tail = window.end;
        next.superblock.head_hint = window.end;
        next.superblock.state = RegionState::Clean;
        next.superblock.last_replay = LastReplay {
            replayer,
            from_seq: window.start,
            finished_at_unix_secs,
            duration_us,
            report: self.report,
        };
        Some(next)
    }

    /// Applies rule 3 of the module docs to sequence number `seq`.
    fn examine(&self, seq: u64) -> Result<ReplayWrite<'r>, Skip> {
        let sb = &self.active.superblock;
        let geometry = &sb.geometry;
        let slot = geometry.slot_of(seq);
        let bytes = geometry
            .descriptor_range(slot)
            .and_then(|range| self.region.get(range))
            .and_then(|b| <&[u8; DESCRIPTOR_BYTES]>::try_from(b).ok())
            .ok_or(Skip::Malformed)?;
        let descriptor = Descriptor::decode(bytes, &self.crc).map_err(|e| match e {
            DescriptorError::Empty => Skip::Empty,
            DescriptorError::BadChecksum => Skip::BadDescriptorChecksum,
            DescriptorError::Malformed => Skip::Malformed,
        })?;
        if descriptor.epoch != sb.epoch {
            return Err(Skip::WrongEpoch);
        }
        if descriptor.seq != seq {
            // Same slot, another lap: an older record (normal) or, if the
            // newest superblock copy was lost, a newer one. Either way it is
            // not the record this slot holds for `seq`.
            return Err(if geometry.slot_of(descriptor.seq) == slot {
                Skip::Stale
            } else {
                Skip::Malformed
            });
        }
        let length = u64::from(descriptor.length);
        let ring_aligned = descriptor.ring_offset % UNIT_BYTES == 0;
        if length == 0
            || length % UNIT_BYTES != 0
            || descriptor.length > geometry.max_record_bytes
            || !ring_aligned
        {
            return Err(Skip::Malformed);
        }
        let disk = &sb.disk;
        let sectors = length / u64::from(SECTOR_BYTES);
        if descriptor.sector % disk.block_sectors() != 0 || sectors % disk.block_sectors() != 0 {
            return Err(Skip::Malformed);
        }
        let end = descriptor
            .sector
            .checked_add(sectors)
            .ok_or(Skip::BeyondDisk)?;
        // The marker area is never a record's target: writing it would
        // overwrite the disk's loss marker.
        if end > self.data_sectors {
            return Err(Skip::BeyondDisk);
        }
        let data = geometry
            .payload_range(descriptor.ring_offset, descriptor.length)
            .and_then(|range| self.region.get(range))
            .ok_or(Skip::Malformed)?;
        if self.crc.checksum(data) != descriptor.payload_checksum {
            return Err(Skip::BadPayloadChecksum);
        }
        Ok(ReplayWrite {
            seq,
            sector: descriptor.sector,
            data,
        })
    }

    fn count(&mut self, skip: Skip) {
        let s = &mut self.report.skipped;
        let counter = match skip {
            Skip::Empty => &mut s.empty,
            Skip::BadDescriptorChecksum => &mut s.bad_descriptor_checksum,
            Skip::Malformed => &mut s.malformed,
            Skip::WrongEpoch => &mut s.wrong_epoch,
            Skip::Stale => &mut s.stale,
            Skip::BadPayloadChecksum => &mut s.bad_payload_checksum,
            Skip::BeyondDisk => &mut s.beyond_disk,
        };
        *counter = counter.saturating_add(1);
    }
}

impl<'r, C: Crc32c> Iterator for ReplayPlan<'r, C> {
    type Item = ReplayWrite<'r>;

    fn next(&mut self) -> Option<ReplayWrite<'r>> {
        while !self.is_finished() {
            // Cannot overflow: the superblock decoder checked that
            // durable_tail + descriptor_slots fits in 64 bits.
            let seq = self
                .active
                .superblock
                .durable_tail
                .saturating_add(u64::from(self.visited));
            self.visited = self.visited.saturating_add(1);
            match self.examine(seq) {
                Ok(write) => {
                    let r = &mut self.report;
                    r.records_applied = r.records_applied.saturating_add(1);
                    r.bytes_applied = r.bytes_applied.saturating_add(write.data.len() as u64);
                    return Some(write);
                }
                Err(skip) => self.count(skip),
            }
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let slots = self.active.superblock.geometry.descriptor_slots;
        let left = slots.saturating_sub(self.visited);
        (0, usize::try_from(left).ok())
    }
}
