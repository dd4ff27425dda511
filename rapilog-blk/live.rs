// SPDX-License-Identifier: GPL-2.0

//! The state writers, readers and writeback share, under one lock
//! (`Device::lock_live`; who takes it, and in which order with the others:
//! `device`, Locking): ring accounting, the dirty-extent index and what
//! each live record is.
//!
//! The lock is held only for bookkeeping (reserve, publish, look up,
//! release); never while a record's payload is copied in, so writers on
//! several CPUs fill their records concurrently, nor (normally) while a
//! read copies record bytes out: see [`Live::freed`].
//!
//! # Where writeback is
//!
//! Writeback handles records in sequence order from [`Live::written_to`]
//! on: it checks each one (`format::check_descriptor`, and its payload
//! as it is copied for the disk) and writes those that
//! pass ([`Stage::Written`]); one that fails is [`Stage::Bad`] and is never
//! written. The tail (`ring.tail_seq()`) follows only over handled records
//! that need nothing more (written, skipped, abandoned), so it stops at the
//! oldest bad record: that is the record writeback holds at
//! ([`Live::held`]), kept in the region with everything after it until an
//! administrator skips it ([`Live::skip_held`]). Records between the tail
//! and `written_to` other than bad ones are already durable on the disk:
//! a drain wrote them past the held record.

#![deny(unsafe_code)]

use kernel::alloc::{flags::GFP_KERNEL, KVVec};
use kernel::prelude::*;
use kernel::time::{Delta, Instant, Monotonic};

use crate::dead_disk::DiskHealth;
use crate::format::control::HeldRecord;
use crate::format::{
    Extent, ExtentIndex, Geometry, IndexError, RecordFault, Reservation, ReserveError,
    RingGeometry, RingState, SECTOR_BYTES,
};

/// Where a live record is in its life.
#[derive(Clone, Copy)]
pub(crate) enum Stage {
    /// Space reserved; the writer is copying the payload in.
    Filling,
    /// Descriptor written and indexed: readable, and due for writeback.
    Published(Instant<Monotonic>),
    /// Checked, written back and flushed; kept only because the tail is
    /// held at an older bad record (a drain writes past it).
    Written,
    /// Failed writeback's check: never written to the disk, reads of the
    /// sectors it is newest for fail, and the tail stops at it until an
    /// administrator skips it. With when it was found, µs since load.
    Bad(RecordFault, u64),
    /// A bad record an administrator skipped: nothing to write; freed with
    /// the next batch.
    Skipped,
    /// The writer gave up on it (cannot happen with a valid geometry): no
    /// descriptor, nothing to write back, but its space must be freed.
    Abandoned,
}

impl Stage {
    /// Nothing is left to do for the record but free its space.
    fn releasable(self) -> bool {
        matches!(self, Self::Written | Self::Skipped | Self::Abandoned)
    }
}

/// What happens to a new write (see `lifecycle`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Normal service: the write becomes a record in the region.
    Buffered,
    /// An orderly stop is draining the ring: the write waits, unacknowledged.
    Held,
    /// The ring is drained and the region clean for an orderly stop: the
    /// write goes straight to the disk.
    WriteThrough,
}

/// A change of the region's metadata that only the writeback thread makes,
/// because it owns the superblock and the marker (`Writeback`), asked for
/// by `lifecycle` and answered in [`Live::chore_done`].
#[derive(Clone, Copy)]
pub(crate) enum Chore {
    /// The ring is drained: mark the region, then the disk's marker, clean.
    MarkClean,
    /// Service resumes: format the region afresh, mark the disk `Live`,
    /// buffer writes again.
    Restart,
}

/// A live record: reserved and not yet freed.
#[derive(Clone, Copy)]
pub(crate) struct Record {
    /// Its space in the ring.
    pub(crate) reservation: Reservation,
    /// Where it goes on the disk.
    pub(crate) sector: u64,
    /// Its stage.
    pub(crate) stage: Stage,
}

/// The shared state, always under `Device::lock_live`.
pub(crate) struct Live {
    /// Slots and ring space, reserved at the head, freed at the tail.
    pub(crate) ring: RingState,
    /// Newest record per dirty sector; an extent's `record` handle is the
    /// region offset of its record's payload.
    pub(crate) index: ExtentIndex<KVVec<Extent>>,
    /// Live records by slot (`seq % slots`).
    records: KVVec<Option<Record>>,
    /// Bytes published and not yet written back.
    pub(crate) dirty_bytes: u64,
    /// Writers waiting for space.
    pub(crate) waiting_writers: u32,
    /// A drain was requested: writeback is due until `written_to` reaches this.
    pub(crate) drain_to: u64,
    /// Writeback has handled (checked, and written or found bad) every
    /// record below this; the next batch starts here. `tail <= written_to
    /// <= head`.
    pub(crate) written_to: u64,
    /// The oldest bad record: writeback holds at it (module docs).
    pub(crate) held: Option<HeldRecord>,
    /// An administrator asked to skip the held record with this sequence
    /// number; the writeback thread does it between batches.
    pub(crate) skip_request: Option<u64>,
    /// Unload has begun: writeback drains everything and stops.
    pub(crate) stopping: bool,
    /// What happens to new writes.
    pub(crate) admission: Admission,
    /// A chore for the writeback thread, until it takes it.
    pub(crate) chore: Option<Chore>,
    /// The outcome of the last chore taken.
    pub(crate) chore_done: Option<Result>,
    /// Whether the log disk is failing, and dead (`dead_disk`): new writes
    /// then fail whatever the admission.
    pub(crate) disk: DiskHealth,
    /// How many times ring space was freed ([`Live::release_through`]) or
    /// the ring emptied ([`Live::reset`]): the generation of the ring's
    /// free space. It protects reads that copy record bytes **outside**
    /// the lock (`read_path`): a published record's bytes never change
    /// while it is live, and its space can be reused (written by a new
    /// record) only after a writer reserved it, under the lock, after a
    /// release that changed this counter, under the lock too. So a read
    /// that looked a record up under the lock, noted `freed`, copied
    /// without the lock and then finds `freed` unchanged under the lock
    /// again copied the record's bytes, untorn: any reuse of the space
    /// would have been ordered after a change of `freed` that the second
    /// look (which follows the copy in the lock's order) would see. A read
    /// that finds it changed looks up again (the index may have moved on).
    pub(crate) freed: u64,
}

impl Live {
    /// Empty state for a freshly formatted region whose first record gets
    /// sequence number `first_seq`; `dead_disk_ms` as configured.
    pub(crate) fn new(geometry: &Geometry, first_seq: u64, dead_disk_ms: u32) -> Result<Self> {
        let slots = geometry.descriptor_slots as usize;
        // Inserting records in sequence order adds at most two extents each
        // (one split in three), and the index's contents do not depend on
        // insertion order, so 2 x slots + 1 extents never run out.
        let extents = KVVec::from_elem(Extent::default(), 2 * slots + 1, GFP_KERNEL)?;
        let records = KVVec::from_elem(None, slots, GFP_KERNEL)?;
        Ok(Self {
            ring: RingState::new(first_seq),
            index: ExtentIndex::new(extents),
            records,
            dirty_bytes: 0,
            waiting_writers: 0,
            drain_to: 0,
            written_to: first_seq,
            held: None,
            skip_request: None,
            stopping: false,
            admission: Admission::Buffered,
            chore: None,
            chore_done: None,
            disk: DiskHealth::new(dead_disk_ms),
            freed: 0,
        })
    }

    /// Empties the state for a region formatted afresh whose first record
    /// gets sequence number `first_seq`, keeping the allocations. Only while
    /// no record is live (the ring was drained).
    pub(crate) fn reset(&mut self, first_seq: u64) {
        self.ring = RingState::new(first_seq);
        self.index.retire_through(u64::MAX);
        for slot in self.records.iter_mut() {
            *slot = None;
        }
        self.dirty_bytes = 0;
        self.drain_to = 0;
        self.written_to = first_seq;
        self.held = None;
        self.skip_request = None;
        self.freed = self.freed.wrapping_add(1);
    }

    fn slot_mut(&mut self, seq: u64) -> Option<&mut Option<Record>> {
        let slots = self.records.len() as u64;
        let slot = usize::try_from(seq.checked_rem(slots)?).ok()?;
        self.records.get_mut(slot)
    }

    /// The live record with sequence number `seq`.
    pub(crate) fn record(&self, seq: u64) -> Option<&Record> {
        let slots = self.records.len() as u64;
        let slot = usize::try_from(seq.checked_rem(slots)?).ok()?;
        self.records
            .get(slot)?
            .as_ref()
            .filter(|r| r.reservation.seq == seq)
    }

    /// Reserves space for `length` bytes going to `sector`.
    pub(crate) fn reserve(
        &mut self,
        ring: &RingGeometry,
        length: u32,
        sector: u64,
    ) -> Result<Reservation, ReserveError> {
        let reservation = self.ring.reserve(ring, length)?;
        if let Some(slot) = self.slot_mut(reservation.seq) {
            *slot = Some(Record {
                reservation,
                sector,
                stage: Stage::Filling,
            });
        }
        Ok(reservation)
    }

    /// Marks a filled record published and indexes it. Returns whether
    /// writeback should be woken (the record starts a new dirty period).
    pub(crate) fn publish(
        &mut self,
        reservation: &Reservation,
        payload_offset: u64,
    ) -> Result<bool, IndexError> {
        let Some(Some(record)) = self.slot_mut(reservation.seq) else {
            return Err(IndexError::EmptyRange);
        };
        record.stage = Stage::Published(Instant::now());
        let sector = record.sector;
        let sectors = u64::from(reservation.length) / u64::from(SECTOR_BYTES);
        let was_clean = self.dirty_bytes == 0;
        self.dirty_bytes += u64::from(reservation.length);
        self.index
            .insert(sector, sectors, reservation.seq, payload_offset)?;
        Ok(was_clean)
    }

    /// Marks a reserved record abandoned (its writer failed).
    pub(crate) fn abandon(&mut self, reservation: &Reservation) {
        if let Some(Some(record)) = self.slot_mut(reservation.seq) {
            record.stage = Stage::Abandoned;
        }
    }

    /// The oldest record writeback has not handled yet, if any.
    pub(crate) fn oldest_unhandled(&self) -> Option<&Record> {
        if self.written_to >= self.ring.next_seq() {
            return None;
        }
        self.record(self.written_to)
    }

    /// How long the oldest record writeback has not handled yet has waited
    /// (`None` if there is none, or it is still being filled).
    pub(crate) fn oldest_age(&self) -> Option<Delta> {
        match self.oldest_unhandled()?.stage {
            Stage::Published(at) => Some(at.elapsed()),
            _ => None,
        }
    }

    /// Whether the newest data of a sector, in record `seq`, is a bad
    /// record's (reads must not return it).
    pub(crate) fn is_bad(&self, seq: u64) -> bool {
        self.record(seq)
            .is_some_and(|r| matches!(r.stage, Stage::Bad(..)))
    }

    /// Marks `record` bad (it failed writeback's check) and makes it the
    /// held record if it is the oldest bad one. Returns the held record.
    pub(crate) fn mark_bad(
        &mut self,
        record: &Record,
        fault: RecordFault,
        found_at_us: u64,
    ) -> Option<HeldRecord> {
        let seq = record.reservation.seq;
        if let Some(Some(r)) = self.slot_mut(seq) {
            r.stage = Stage::Bad(fault, found_at_us);
        }
        if self.held.is_none_or(|h| seq < h.seq) {
            self.held = Some(HeldRecord {
                seq,
                sector: record.sector,
                length: record.reservation.length,
                fault,
                found_at_us,
            });
        }
        self.held
    }

    /// Marks the published records of `from..to` written back (they are
    /// durable on the disk); returns how many.
    pub(crate) fn mark_written(&mut self, from: u64, to: u64) -> u64 {
        let (mut count, mut bytes) = (0, 0);
        for seq in from..to {
            if let Some(Some(r)) = self.slot_mut(seq) {
                if r.reservation.seq == seq && matches!(r.stage, Stage::Published(_)) {
                    r.stage = Stage::Written;
                    bytes += u64::from(r.reservation.length);
                    count += 1;
                }
            }
        }
        self.dirty_bytes = self.dirty_bytes.saturating_sub(bytes);
        self.written_to = self.written_to.max(to);
        count
    }

    /// The last record the tail may pass now: the one before the first
    /// record from the tail on that still needs something (not handled
    /// yet, or bad). `None` if that is the tail itself.
    pub(crate) fn releasable(&self) -> Option<Reservation> {
        let mut seq = self.ring.tail_seq();
        let mut last = None;
        while seq < self.written_to {
            match self.record(seq) {
                Some(r) if r.stage.releasable() => last = Some(r.reservation),
                _ => break,
            }
            seq += 1;
        }
        last
    }

    /// Whether a drain up to `target` (exclusive) is over: every record
    /// below it is written back or bad, and the tail has followed as far
    /// as it can (to `target`, or to the held record if that is older), so
    /// the superblock says so too.
    pub(crate) fn drained_to(&self, target: u64) -> bool {
        let tail_can_reach = self.held.map_or(target, |h| h.seq.min(target));
        self.written_to >= target && self.ring.tail_seq() >= tail_can_reach
    }

    /// Skips the held record if it is `seq` and the tail has reached it
    /// (between batches, always): it is never written, its data is dropped
    /// from reads (its sectors read what the disk and newer records hold),
    /// and the next bad record, if any, becomes the held one. Returns the
    /// skipped record.
    pub(crate) fn skip_held(&mut self, seq: u64) -> Option<HeldRecord> {
        let held = self.held.filter(|h| h.seq == seq)?;
        if self.ring.tail_seq() != seq {
            return None;
        }
        let record = self.slot_mut(seq)?.as_mut()?;
        if record.reservation.seq != seq || !matches!(record.stage, Stage::Bad(..)) {
            return None;
        }
        record.stage = Stage::Skipped;
        self.dirty_bytes = self.dirty_bytes.saturating_sub(u64::from(held.length));
        // Every record below `seq` is freed, so these are its extents only.
        self.index.retire_through(seq);
        self.held = None;
        for next in seq + 1..self.written_to {
            if let Some(r) = self.record(next) {
                if let Stage::Bad(fault, found_at_us) = r.stage {
                    self.held = Some(HeldRecord {
                        seq: next,
                        sector: r.sector,
                        length: r.reservation.length,
                        fault,
                        found_at_us,
                    });
                    break;
                }
            }
        }
        Some(held)
    }

    /// Frees every record up to and including `last` once writeback made
    /// them durable and recorded that in the superblock.
    pub(crate) fn release_through(&mut self, last: &Reservation) {
        let mut seq = self.ring.tail_seq();
        while seq <= last.seq {
            if let Some(slot) = self.slot_mut(seq) {
                if let Some(record) = slot.take() {
                    if let Stage::Published(_) = record.stage {
                        self.dirty_bytes = self
                            .dirty_bytes
                            .saturating_sub(u64::from(record.reservation.length));
                    }
                }
            }
            seq += 1;
        }
        self.index.retire_through(last.seq);
        // Before any writer can reserve the space (under this lock).
        self.freed = self.freed.wrapping_add(1);
        // Cannot fail: `last` is live (taken from this state by writeback).
        let _ = self.ring.release_through(last);
    }
}
