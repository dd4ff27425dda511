// SPDX-License-Identifier: GPL-2.0

//! The write path: a bio becomes a record in the region and completes.
//!
//! 1. Reserve the record's slot and ring space, in sequence order, under the
//!    lock; if the ring is full, wait until writeback frees space (never
//!    drop). During an orderly stop the write waits for the drain instead,
//!    and after it goes straight to the disk (`lifecycle`). Once the log
//!    disk has failed for `dead_disk_ms` the write fails with EIO instead,
//!    waiting or not (`dead_disk`).
//! 2. Open a write window over the payload and the descriptor, copy the
//!    bio's data in and checksum what landed in the region (in one pass
//!    where the CPU's best CRC-32C is the `crc32` instruction: `sys::copy_crc`).
//! 3. Publish: write barrier, then the descriptor (FORMAT.md).
//! 4. Under the lock, mark the record published and index it for reads.
//! 5. Complete the bio: flush and FUA included, the region is the
//!    durability domain (see `device`).
//!
//! An empty write (a flush) completes at once: every write completed
//! before it is in the region. While writes go straight to the disk (after
//! an orderly stop's drain) it goes to the disk too ([`flush`]).

#![deny(unsafe_code)]

use crate::device::Device;
use crate::format::{Reservation, ReserveError, DESCRIPTOR_BYTES};
use crate::live::Admission;
use crate::stats;
use crate::sys::bio::{Bio, Status};
use crate::sys::crc32c::KernelCrc32c;
use crate::sys::region::PublishError;

/// Why steps 2 and 3 failed. Each is a bug (the geometry was validated at
/// load, a bio never exceeds `max_hw_sectors`): the record is abandoned
/// and the write fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FillError {
    /// The reservation's payload lies outside the ring.
    PayloadOutsideRing,
    /// The reservation's slot lies outside the descriptor table.
    DescriptorOutsideTable,
    /// The write window could not be opened.
    Window,
    /// The bio's data is not the size of its record.
    BioSize,
    /// The descriptor did not fit its slot.
    DescriptorSize,
}

impl core::fmt::Display for FillError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::PayloadOutsideRing => "payload outside the ring",
            Self::DescriptorOutsideTable => "descriptor outside the table",
            Self::Window => "cannot map the region",
            Self::BioSize => "bio size does not match its record",
            Self::DescriptorSize => "descriptor does not fit its slot",
        })
    }
}

/// What step 1 admitted a write as.
enum Admitted {
    /// A record in the region.
    Record(Reservation),
    /// A write straight to the disk (after an orderly stop's drain).
    WriteThrough,
    /// None: the log disk is dead (`dead_disk`).
    DiskDead,
}

/// Handles an empty write bio: a flush (PREFLUSH without data).
pub(crate) fn flush(dev: &Device, bio: Bio) {
    stats::add(&dev.stats().flushes, 1);
    if dev.lock_live().admission == Admission::WriteThrough {
        // Writes go to the disk now, into its cache: the flush must reach
        // it too.
        bio.remap(dev.backing());
    } else {
        // Every completed write is in the region.
        bio.end(Status::Ok);
    }
}

/// Handles a write bio with data.
pub(crate) fn write(dev: &Device, bio: Bio) {
    let bytes = bio.bytes();
    let sector = bio.sector();
    if bio.is_preflush() || bio.is_fua() {
        stats::add(&dev.stats().flushes, 1);
    }
    let reservation = match reserve(dev, bytes, sector) {
        Ok(Admitted::Record(r)) => r,
        Ok(Admitted::WriteThrough) => {
            // The region is clean and unused until resume: the disk
            // completes the write, flush and FUA included.
            stats::add(&dev.stats().writes_through, 1);
            bio.remap(dev.backing());
            return;
        }
        Ok(Admitted::DiskDead) => {
            dev.write_error(format_args!(
                "{bytes} bytes at sector {sector}: the log disk has failed for longer than \
                 dead_disk_ms={} ms; acknowledged writes stay in the region and drain when \
                 it is back (`rapilogctl status`)",
                dev.config().dead_disk_ms
            ));
            bio.end(Status::IoError);
            return;
        }
        Err(e) => {
            dev.write_error(format_args!("{bytes} bytes at sector {sector}: {e}"));
            bio.end(Status::IoError);
            return;
        }
    };
    if let Err(why) = fill(dev, &bio, &reservation, sector) {
        dev.lock_live().abandon(&reservation);
        dev.write_error(format_args!("{bytes} bytes at sector {sector}: {why}"));
        bio.end(Status::IoError);
        return;
    }
    let payload_offset = dev.geometry().ring_offset + reservation.ring_offset;
    let published = dev.lock_live().publish(&reservation, payload_offset);
    match published {
        Ok(new_dirty_period) => {
            if new_dirty_period {
                // Writeback may be asleep with no deadline: give it one.
                dev.work().notify_one();
            }
        }
        Err(e) => {
            // Cannot happen: the index has room for every live record
            // (`Live::new`). If it did, writeback and reads, which
            // follow the index, would miss the record: the write must
            // not be acknowledged. (A replay may still apply it, which
            // a failed write allows.)
            dev.write_error(format_args!("indexing sector {sector}: {e}"));
            bio.end(Status::IoError);
            return;
        }
    }
    stats::add(&dev.stats().writes, 1);
    stats::add(&dev.stats().write_bytes, u64::from(bytes));
    bio.end(Status::Ok);
}

/// Step 1: reserves space, waiting for writeback while the ring is full
/// or over the power-fail dirty bound, and after a power-fail signal
/// until service resumes (a false alarm) or for good; not at all once
/// the log disk is dead.
fn reserve(dev: &Device, bytes: u32, sector: u64) -> Result<Admitted, ReserveError> {
    let mut live = dev.lock_live();
    let mut throttled = false;
    loop {
        match live.admission {
            Admission::Buffered => {}
            Admission::Held => {
                dev.space_freed().wait(&mut live);
                continue;
            }
            Admission::WriteThrough => return Ok(Admitted::WriteThrough),
        }
        if live.disk.is_dead() {
            // Writeback wakes waiting writers when it declares the disk
            // dead: none waits longer than `dead_disk_ms` (plus one
            // disk operation) for space that may never come.
            live.disk.refused += 1;
            return Ok(Admitted::DiskDead);
        }
        if dev.powerfail().holds_writes() {
            // A power-fail signal came: not admitted until the machine
            // has outlived it (`powerfail`, which wakes us), if ever;
            // the drain may already be complete.
            dev.space_freed().wait(&mut live);
            continue;
        }
        let admitted = dev
            .powerfail()
            .admits(live.ring.used_bytes(), u64::from(bytes));
        if admitted {
            match live.reserve(dev.ring(), bytes, sector) {
                Ok(reservation) => return Ok(Admitted::Record(reservation)),
                Err(e) if !e.is_full() => return Err(e),
                Err(_) => {}
            }
        }
        // Over the dirty bound, or the ring is full: writeback frees space.
        if !throttled {
            stats::add(&dev.stats().throttled, 1);
            throttled = true;
        }
        live.waiting_writers += 1;
        dev.work().notify_one();
        dev.space_freed().wait(&mut live);
        live.waiting_writers -= 1;
    }
}

/// Steps 2 and 3: copies the payload in and publishes the descriptor,
/// in one write window (`Region::publish`).
fn fill(dev: &Device, bio: &Bio, reservation: &Reservation, sector: u64) -> Result<(), FillError> {
    let payload = dev
        .geometry()
        .payload_range(reservation.ring_offset, reservation.length)
        .ok_or(FillError::PayloadOutsideRing)?;
    let descriptor = dev
        .geometry()
        .descriptor_range(reservation.slot)
        .ok_or(FillError::DescriptorOutsideTable)?;
    // The epoch cannot change while this record is live (`Device::epoch`).
    let record = (*reservation, dev.epoch(), sector);
    dev.region()
        .publish(payload, descriptor, bio, record, descriptor_bytes)
        .map_err(|e| match e {
            PublishError::Window(_) => FillError::Window,
            PublishError::Payload(_) => FillError::BioSize,
            PublishError::Descriptor(_) => FillError::DescriptorSize,
        })
}

/// The descriptor of record `(reservation, epoch, sector)` whose payload
/// has CRC-32C `checksum`. Runs inside the record's write window, so it gets
/// plain data and nothing that could sleep (`sys::region`).
fn descriptor_bytes(
    (reservation, epoch, sector): (Reservation, u64, u64),
    checksum: u32,
) -> [u8; DESCRIPTOR_BYTES] {
    let mut bytes = [0u8; DESCRIPTOR_BYTES];
    reservation
        .descriptor(epoch, sector, checksum)
        .encode(&mut bytes, KernelCrc32c);
    bytes
}
