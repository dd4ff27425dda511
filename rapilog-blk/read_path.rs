// SPDX-License-Identifier: GPL-2.0

//! The read path: the newest data wins, whether it is still in the region
//! or already on the disk.
//!
//! The dirty-extent index splits a read into pieces, each either a part of
//! one record or a stretch of the disk. The first piece is handled now and
//! the rest of the bio goes back to the block layer, to come back here as a
//! new bio once this call returns (the pattern of `bio_split_to_limits`:
//! one split bio per call, so the split pool can never run dry).
//!
//! - A record piece is copied from the region **without** the lock, so
//!   reads neither wait for writers' bookkeeping nor hold it up for the
//!   length of a copy. Writeback may free the record's ring space and a
//!   writer reuse it meanwhile; the read notes the ring's free-space
//!   generation (`Live::freed`, which says why this is sound) at the
//!   lookup and checks it under the lock after the copy. Unchanged: the
//!   bytes copied are the record's. Changed: the copy may be torn or
//!   another record's, so the read looks its sectors up again and copies
//!   again (the index may now send them to the disk or to a newer record).
//!   After [`RETRIES`] such tries (writeback freeing space during every
//!   one) the copy is made under the lock, so a read always finishes. A
//!   redone lookup that needs a split resubmits the bio instead (one split
//!   per call, below).
//! - A disk piece is passed to the backing disk. The disk holds the newest
//!   data there: the index dropped those sectors only after writeback made
//!   them durable, and a write that lands after the lookup is concurrent
//!   with this read, so either version is a correct answer.
//! - A piece whose newest data is a **bad record** (one that failed
//!   writeback's check, held in the region until an administrator skips
//!   it) fails with EIO. The region holds corrupted bytes there and the
//!   disk holds an older version; neither is what was acknowledged, so the
//!   read fails the way a disk's unreadable sector does, rather than hand
//!   back data that looks valid (a database that finds a bad checksum in
//!   its log may take it for the log's end and silently drop what follows).
//!   A newer write to those sectors makes them readable again; once the
//!   record is skipped they read what the disk holds.

#![deny(unsafe_code)]

use crate::device::Device;
use crate::format::{Piece, SECTOR_BYTES};
use crate::stats;
use crate::sys::bio::{Bio, Status};

/// Copies outside the lock that may be redone before one is made under it.
const RETRIES: u32 = 3;

/// Handles a read bio.
pub(crate) fn read(dev: &Device, bio: Bio) {
    let mut bio = bio;
    let mut tries = 0;
    loop {
        match read_once(dev, bio, tries > 0, tries >= RETRIES) {
            None => return,
            Some(again) => {
                stats::add(&dev.stats().reads_again, 1);
                bio = again;
                tries += 1;
            }
        }
    }
}

/// One lookup and the handling of the first piece; returns the bio (now
/// just that piece) if its copy out of the region must be redone.
/// `again`: a copy was redone already in this call, which may have split
/// the bio once; `locked`: copy under the lock (the last try).
fn read_once(dev: &Device, bio: Bio, again: bool, locked: bool) -> Option<Bio> {
    let sector = bio.sector();
    let sectors = u64::from(bio.bytes()) / u64::from(SECTOR_BYTES);
    let live = dev.lock_live();
    let Some(first) = live.index.lookup(sector, sectors).next() else {
        drop(live);
        bio.end(Status::Ok);
        return None;
    };
    let (piece_sectors, from_region) = match first {
        Piece::Disk { sectors, .. } => (sectors, None),
        Piece::Record {
            sectors,
            seq,
            record,
            record_offset,
            ..
        } => (
            sectors,
            Some((record + record_offset * u64::from(SECTOR_BYTES), seq)),
        ),
    };
    let mut bio = if piece_sectors < sectors {
        if again {
            // A second split in one call could wait on the split pool for
            // the first split, which only this call completes: the bio
            // comes back as a new call instead.
            drop(live);
            bio.resubmit();
            return None;
        }
        // `piece_sectors` < the bio's sector count, which fits in u32.
        match bio.split_front(piece_sectors as u32, dev.splits()) {
            Ok(front) => front,
            Err(bio) => {
                drop(live);
                bio.end(Status::IoError);
                return None;
            }
        }
    } else {
        bio
    };
    match from_region {
        None => {
            drop(live);
            stats::add(&dev.stats().reads_disk, 1);
            bio.remap(dev.backing());
            None
        }
        Some((_, seq)) if live.is_bad(seq) => {
            drop(live);
            stats::add(&dev.stats().reads_bad, 1);
            bio.end(Status::IoError);
            None
        }
        Some((offset, _)) => {
            let len = piece_sectors * u64::from(SECTOR_BYTES);
            let copy = |bio: &mut Bio| {
                usize::try_from(offset)
                    .ok()
                    .zip(usize::try_from(len).ok())
                    .is_some_and(|(offset, len)| {
                        bio.copy_from_region(0, dev.region(), offset, len).is_ok()
                    })
            };
            let copied = if locked {
                let copied = copy(&mut bio);
                drop(live);
                copied
            } else {
                let freed = live.freed;
                drop(live);
                let copied = copy(&mut bio);
                // The copy came first, then this look under the lock
                // (`Live::freed`).
                if dev.lock_live().freed != freed {
                    return Some(bio);
                }
                copied
            };
            stats::add(&dev.stats().reads_region, 1);
            bio.end(if copied { Status::Ok } else { Status::IoError });
            None
        }
    }
}
