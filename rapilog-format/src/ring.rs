// SPDX-License-Identifier: GPL-2.0

//! Writer-side space accounting: descriptor slots and ring bytes, reserved in
//! sequence order at the head and freed in sequence order at the tail.
//!
//! [`RingState`] is pure arithmetic; the kernel module keeps one behind its
//! own lock. It hands out [`Reservation`]s in strictly increasing sequence
//! order; the writers then fill them concurrently and out of order (see the
//! publication protocol in the crate docs).
//!
//! # Ring positions
//!
//! Head and tail are *logical* byte positions that only grow; the offset in
//! the ring is `position % ring_bytes`. Used space is `head - tail`, so
//! "full" and "empty" are never ambiguous. At 10 GB/s, 64-bit positions last
//! 58 years; running out is reported as [`ReserveError::Exhausted`].
//!
//! # No wrap inside a record
//!
//! A payload is always contiguous in the ring: if it does not fit between
//! the head and the end of the ring, the bytes up to the end are skipped and
//! the payload starts at ring offset 0. Replay can then hand the payload to
//! the disk as one slice and checksum it in one pass, and the writer copies
//! into one range. The cost is at most `max_record_bytes - 512` bytes per lap
//! (under 2% with the standard 1 MiB records in a 63 MiB ring). Because
//! `max_record_bytes <= ring_bytes / 2`, an empty ring always has room for
//! any record, so back-pressure can never deadlock.

use super::descriptor::Descriptor;
use super::geometry::{Geometry, GeometryError, UNIT_BYTES};

/// The part of a [`Geometry`] that space accounting needs, known valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingGeometry {
    slots: u32,
    ring_bytes: u64,
    max_record_bytes: u32,
}

impl RingGeometry {
    /// Takes the accounting parameters of a geometry after validating it.
    pub fn new(geometry: &Geometry) -> Result<Self, GeometryError> {
        geometry.validate()?;
        Ok(Self {
            slots: geometry.descriptor_slots,
            ring_bytes: geometry.ring_bytes,
            max_record_bytes: geometry.max_record_bytes,
        })
    }

    /// Number of descriptor slots: the most records that can be live at once.
    pub fn slots(&self) -> u32 {
        self.slots
    }

    /// Ring size in bytes.
    pub fn ring_bytes(&self) -> u64 {
        self.ring_bytes
    }

    /// Largest payload of one record.
    pub fn max_record_bytes(&self) -> u32 {
        self.max_record_bytes
    }
}

/// Space handed to one record: where its descriptor and payload go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    /// Sequence number of the record.
    pub seq: u64,
    /// Descriptor slot (`seq % slots`).
    pub slot: u32,
    /// Payload offset from the start of the ring (a multiple of 512).
    pub ring_offset: u64,
    /// Payload length in bytes.
    pub length: u32,
    /// Logical ring position just past the payload; freeing this record
    /// moves the tail here.
    pub end: u64,
}

impl Reservation {
    /// The descriptor to publish once the payload is in place.
    pub fn descriptor(&self, epoch: u64, sector: u64, payload_checksum: u32) -> Descriptor {
        Descriptor {
            seq: self.seq,
            epoch,
            sector,
            ring_offset: self.ring_offset,
            length: self.length,
            payload_checksum,
        }
    }
}

/// Why a reservation was not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReserveError {
    /// Zero-length records are refused: they would carry no data and make
    /// "empty" ambiguous.
    ZeroLength,
    /// The length is not a multiple of 512 bytes.
    Unaligned,
    /// The length exceeds `max_record_bytes`; the caller must split (the
    /// kernel caps its queue's `max_hw_sectors` so this does not happen).
    TooLarge,
    /// Every descriptor slot holds a live record: wait for writeback.
    SlotsFull,
    /// The ring has no room for this payload: wait for writeback.
    RingFull,
    /// Sequence numbers or ring positions ran out of 64 bits.
    Exhausted,
}

impl ReserveError {
    /// Whether waiting for writeback to free space can help.
    pub fn is_full(self) -> bool {
        matches!(self, Self::SlotsFull | Self::RingFull)
    }
}

impl core::fmt::Display for ReserveError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::ZeroLength => "zero-length record",
            Self::Unaligned => "record length not a multiple of 512 bytes",
            Self::TooLarge => "record larger than the maximum record size",
            Self::SlotsFull => "all descriptor slots are live",
            Self::RingFull => "data ring is full",
            Self::Exhausted => "sequence numbers or ring positions exhausted",
        })
    }
}

impl core::error::Error for ReserveError {}

/// Why a release was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseError {
    /// The reservation is not live (already freed, never handed out, or from
    /// another ring state): releasing it would corrupt the accounting.
    NotLive,
}

impl core::fmt::Display for ReleaseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("released record is not live")
    }
}

impl core::error::Error for ReleaseError {}

/// Head and tail of the slots and of the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingState {
    /// Sequence number of the next reservation.
    next_seq: u64,
    /// Oldest live sequence number (all below are freed).
    tail_seq: u64,
    /// Logical position where the next payload may start.
    head: u64,
    /// Logical position of the oldest live payload byte.
    tail: u64,
}

impl RingState {
    /// An empty ring whose first record gets sequence number `first_seq`:
    /// the superblock's durable tail after format or replay.
    pub const fn new(first_seq: u64) -> Self {
        Self {
            next_seq: first_seq,
            tail_seq: first_seq,
            head: 0,
            tail: 0,
        }
    }

    /// Sequence number the next reservation will get (the head hint).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Oldest live sequence number.
    pub fn tail_seq(&self) -> u64 {
        self.tail_seq
    }

    /// Records reserved and not yet freed.
    pub fn live_records(&self) -> u64 {
        self.next_seq.saturating_sub(self.tail_seq)
    }

    /// Ring bytes in use, skipped bytes at the end of a lap included.
    pub fn used_bytes(&self) -> u64 {
        self.head.saturating_sub(self.tail)
    }

    /// Reserves a slot and `length` payload bytes for the next record.
    ///
    /// On error nothing changes. [`ReserveError::SlotsFull`] and
    /// [`ReserveError::RingFull`] mean "wait for writeback and retry".
    pub fn reserve(
        &mut self,
        ring: &RingGeometry,
        length: u32,
    ) -> Result<Reservation, ReserveError> {
        if length == 0 {
            return Err(ReserveError::ZeroLength);
        }
        let len = u64::from(length);
        if len % UNIT_BYTES != 0 {
            return Err(ReserveError::Unaligned);
        }
        if length > ring.max_record_bytes {
            return Err(ReserveError::TooLarge);
        }
        // A slot is free only once the record that used it last is below
        // the tail; with in-order freeing that is exactly "fewer than
        // `slots` records live".
        if self.live_records() >= u64::from(ring.slots) {
            return Err(ReserveError::SlotsFull);
        }
        // The superblock must be able to hold any future tail with its
        // window (`tail + slots`) in 64 bits.
        let seq = self.next_seq;
        let next_seq = seq
            .checked_add(1)
            .filter(|next| next.checked_add(u64::from(ring.slots)).is_some())
            .ok_or(ReserveError::Exhausted)?;
        let offset = self
            .head
            .checked_rem(ring.ring_bytes)
            .ok_or(ReserveError::Exhausted)?;
        let fits_before_end = offset
            .checked_add(len)
            .is_some_and(|end| end <= ring.ring_bytes);
        let start = if fits_before_end {
            self.head
        } else {
            // Skip to the start of the next lap: records never wrap.
            self.head
                .checked_add(ring.ring_bytes - offset)
                .ok_or(ReserveError::Exhausted)?
        };
        let end = start.checked_add(len).ok_or(ReserveError::Exhausted)?;
        if end.saturating_sub(self.tail) > ring.ring_bytes {
            return Err(ReserveError::RingFull);
        }
        let ring_offset = start
            .checked_rem(ring.ring_bytes)
            .ok_or(ReserveError::Exhausted)?;
        let slot = seq
            .checked_rem(u64::from(ring.slots))
            .and_then(|slot| u32::try_from(slot).ok())
            .ok_or(ReserveError::Exhausted)?;
        self.next_seq = next_seq;
        self.head = end;
        Ok(Reservation {
            seq,
            slot,
            ring_offset,
            length,
            end,
        })
    }

    /// Frees `last` and every older live record.
    ///
    /// Call only once writeback has made them durable on the disk **and** a
    /// superblock copy with `durable_tail > last.seq` is completely written:
    /// from here on their slots and ring bytes may be overwritten, so the
    /// replayer must already know not to look for them.
    pub fn release_through(&mut self, last: &Reservation) -> Result<(), ReleaseError> {
        let live = self.tail_seq <= last.seq && last.seq < self.next_seq;
        if !live || last.end < self.tail || last.end > self.head {
            return Err(ReleaseError::NotLive);
        }
        self.tail_seq = last.seq.saturating_add(1);
        self.tail = last.end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 4 slots, 4 KiB ring, 2 KiB max record.
    fn geometry() -> RingGeometry {
        RingGeometry::new(&Geometry {
            region_bytes: 8192,
            descriptor_offset: 1024,
            descriptor_slots: 4,
            ring_offset: 4096,
            ring_bytes: 4096,
            max_record_bytes: 2048,
        })
        .unwrap()
    }

    #[test]
    fn refuses_bad_lengths() {
        let g = geometry();
        let mut ring = RingState::new(0);
        assert_eq!(ring.reserve(&g, 0), Err(ReserveError::ZeroLength));
        assert_eq!(ring.reserve(&g, 100), Err(ReserveError::Unaligned));
        assert_eq!(ring.reserve(&g, 2560), Err(ReserveError::TooLarge));
        assert_eq!(ring, RingState::new(0));
        let max = ring.reserve(&g, 2048).unwrap();
        assert_eq!(
            (max.seq, max.slot, max.ring_offset, max.end),
            (0, 0, 0, 2048)
        );
    }

    #[test]
    fn slots_full_then_freed() {
        let g = geometry();
        let mut ring = RingState::new(10);
        let r: [Reservation; 4] = core::array::from_fn(|_| ring.reserve(&g, 512).unwrap());
        assert_eq!(r.map(|r| r.slot), [2, 3, 0, 1]);
        assert_eq!(ring.reserve(&g, 512), Err(ReserveError::SlotsFull));
        assert!(ReserveError::SlotsFull.is_full());
        ring.release_through(&r[0]).unwrap();
        let next = ring.reserve(&g, 512).unwrap();
        assert_eq!((next.seq, next.slot), (14, 2));
    }

    #[test]
    fn wraps_without_splitting_a_record() {
        let g = geometry();
        let mut ring = RingState::new(0);
        let a = ring.reserve(&g, 1536).unwrap();
        let b = ring.reserve(&g, 1536).unwrap();
        assert_eq!((a.ring_offset, b.ring_offset), (0, 1536));
        // 1024 bytes left at the end; 1536 does not fit there and the start
        // of the ring is still used by `a`.
        assert_eq!(ring.reserve(&g, 1536), Err(ReserveError::RingFull));
        ring.release_through(&a).unwrap();
        let c = ring.reserve(&g, 1536).unwrap();
        assert_eq!((c.ring_offset, c.end), (0, 4096 + 1536));
        assert_eq!(ring.used_bytes(), 4096 + 1536 - 1536);
        // What fits at the end of the lap goes there.
        ring.release_through(&b).unwrap();
        let d = ring.reserve(&g, 512).unwrap();
        assert_eq!(d.ring_offset, 1536);
    }

    #[test]
    fn exactly_full_ring() {
        let g = geometry();
        let mut ring = RingState::new(0);
        let a = ring.reserve(&g, 2048).unwrap();
        let b = ring.reserve(&g, 2048).unwrap();
        assert_eq!(ring.used_bytes(), 4096);
        assert_eq!(ring.reserve(&g, 512), Err(ReserveError::RingFull));
        ring.release_through(&b).unwrap();
        assert_eq!((ring.used_bytes(), ring.live_records()), (0, 0));
        assert_eq!(ring.release_through(&a), Err(ReleaseError::NotLive));
        assert_eq!(ring.reserve(&g, 2048).unwrap().ring_offset, 0);
    }

    #[test]
    fn empty_ring_always_takes_a_max_record() {
        let g = geometry();
        for lead in 1..8u32 {
            let mut ring = RingState::new(0);
            let first = ring.reserve(&g, lead * 512 % 2048 + 512).unwrap();
            ring.release_through(&first).unwrap();
            assert!(ring.reserve(&g, 2048).is_ok(), "lead {lead}");
        }
    }

    #[test]
    fn release_validation() {
        let g = geometry();
        let mut ring = RingState::new(0);
        let a = ring.reserve(&g, 512).unwrap();
        let forged = Reservation { end: 1 << 40, ..a };
        assert_eq!(ring.release_through(&forged), Err(ReleaseError::NotLive));
        let future = Reservation { seq: 5, ..a };
        assert_eq!(ring.release_through(&future), Err(ReleaseError::NotLive));
        ring.release_through(&a).unwrap();
        assert_eq!(ring.release_through(&a), Err(ReleaseError::NotLive));
    }

    #[test]
    fn exhaustion_is_an_error_not_a_panic() {
        let g = geometry();
        let mut ring = RingState::new(u64::MAX - 2);
        assert_eq!(ring.reserve(&g, 512), Err(ReserveError::Exhausted));
        let mut ring = RingState {
            next_seq: 0,
            tail_seq: 0,
            head: u64::MAX - 100,
            tail: u64::MAX - 100,
        };
        assert_eq!(ring.reserve(&g, 512), Err(ReserveError::Exhausted));
    }

    #[test]
    fn huge_ring_does_not_overflow() {
        let g = RingGeometry::new(&Geometry {
            region_bytes: u64::MAX,
            descriptor_offset: 1024,
            descriptor_slots: 4,
            ring_offset: 1536,
            ring_bytes: u64::MAX / 512 * 512 - 1536,
            max_record_bytes: 1 << 20,
        })
        .unwrap();
        let end = g.ring_bytes() - 512;
        let mut ring = RingState {
            next_seq: 0,
            tail_seq: 0,
            head: end,
            tail: end,
        };
        // offset + length would overflow: the record goes to the next lap,
        // whose logical position no longer fits in 64 bits.
        assert_eq!(ring.reserve(&g, 1 << 20), Err(ReserveError::Exhausted));
        assert_eq!(ring.reserve(&g, 512).unwrap().ring_offset, end);
    }

    #[test]
    fn descriptor_from_reservation() {
        let g = geometry();
        let r = RingState::new(3).reserve(&g, 1024).unwrap();
        let d = r.descriptor(9, 77, 0xABCD);
        assert_eq!(
            (
                d.seq,
                d.epoch,
                d.sector,
                d.ring_offset,
                d.length,
                d.payload_checksum
            ),
            (3, 9, 77, 0, 1024, 0xABCD)
        );
    }
}
