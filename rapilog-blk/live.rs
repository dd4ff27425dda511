// SPDX-License-Identifier: GPL-2.0

//! The state writers, readers and writeback share, under one lock: ring
//! accounting, the dirty-extent index and what each live record is.
//!
//! The lock is held only for bookkeeping (reserve, publish, look up,
//! release) and for copying record bytes into a read; never while a
//! record's payload is copied in, so writers on several CPUs fill their
//! records concurrently.

use kernel::alloc::{flags::GFP_KERNEL, KVVec};
use kernel::prelude::*;
use kernel::time::{Delta, Instant, Monotonic};

use crate::format::{
    Extent, ExtentIndex, Geometry, IndexError, Reservation, ReserveError, RingGeometry, RingState,
    SECTOR_BYTES,
};

/// Where a live record is in its life.
#[derive(Clone, Copy)]
pub(crate) enum Stage {
    /// Space reserved; the writer is copying the payload in.
    Filling,
    /// Descriptor written and indexed: readable, and due for writeback.
    Published(Instant<Monotonic>),
    /// The writer gave up on it (cannot happen with a valid geometry): no
    /// descriptor, nothing to write back, but its space must be freed.
    Abandoned,
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

/// The shared state.
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
    /// A drain was requested: writeback is due until the tail reaches this.
    pub(crate) drain_to: u64,
    /// Unload has begun: writeback drains everything and stops.
    pub(crate) stopping: bool,
    /// What happens to new writes.
    pub(crate) admission: Admission,
    /// A chore for the writeback thread, until it takes it.
    pub(crate) chore: Option<Chore>,
    /// The outcome of the last chore taken.
    pub(crate) chore_done: Option<Result>,
}

impl Live {
    /// Empty state for a freshly formatted region whose first record gets
    /// sequence number `first_seq`.
    pub(crate) fn new(geometry: &Geometry, first_seq: u64) -> Result<Self> {
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
            stopping: false,
            admission: Admission::Buffered,
            chore: None,
            chore_done: None,
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

    /// The oldest live record, if any.
    pub(crate) fn oldest(&self) -> Option<&Record> {
        if self.ring.live_records() == 0 {
            return None;
        }
        self.record(self.ring.tail_seq())
    }

    /// How long the oldest published record has waited for writeback.
    pub(crate) fn oldest_age(&self) -> Option<Delta> {
        match self.oldest()?.stage {
            Stage::Published(at) => Some(at.elapsed()),
            _ => None,
        }
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
        // Cannot fail: `last` is live (taken from this state by writeback).
        let _ = self.ring.release_through(last);
    }
}
