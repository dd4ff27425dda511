// SPDX-License-Identifier: GPL-2.0

//! Dirty-extent index: which sectors of the disk have newer data in the ring
//! than on the disk, and in which record.
//!
//! Reads consult it to serve the newest data: [`ExtentIndex::lookup`] splits
//! a read into pieces "from record R at offset o" and "from the disk".
//!
//! The index is a sorted array of non-overlapping [`Extent`]s in storage the
//! caller provides, so it never allocates; an update that changes the
//! number of extents shifts the rest of the array (`copy_within`), linear
//! in the extents after it (up to twice the live records). A rewrite over
//! older data only, the log-page case, replaces in place and shifts at most
//! once: an index of thousands of extents made every such write shift it
//! out and back, which under TCG cost hundreds of microseconds.
//!
//! # Newest wins, in any insertion order
//!
//! Writers finish out of order, so record N+1 may be inserted before N.
//! [`ExtentIndex::insert`] compares sequence numbers, not arrival: a record
//! only takes the sectors where nothing newer is indexed. The index is thus
//! always "for each sector, the newest live record covering it".
//!
//! # Capacity
//!
//! With `n` live records (inserted, not yet retired, distinct sequence
//! numbers) the index holds at most `2n - 1` extents: the newest-record map
//! can only change value at one of the `2n` range ends. Storage for
//! `2 x descriptor_slots` extents therefore never runs out. An insert that
//! would not fit returns [`IndexError::Full`] and changes nothing; the peak
//! during an insert never exceeds the larger of the counts before and after.

use core::ops::DerefMut;

/// A run of sectors whose newest data is in one record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extent {
    /// First sector (512-byte units).
    pub sector: u64,
    /// Number of sectors, at least 1.
    pub sectors: u64,
    /// Sequence number of the record.
    pub seq: u64,
    /// Caller's handle for the record (e.g. its ring offset or seq).
    pub record: u64,
    /// Offset of `sector` inside the record's payload, in sectors.
    pub record_offset: u64,
}

impl Extent {
    /// One past the last sector.
    pub fn end(&self) -> u64 {
        self.sector.saturating_add(self.sectors)
    }
}

/// A piece of a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece {
    /// Read `sectors` sectors from `record`, starting `record_offset`
    /// sectors into its payload.
    Record {
        /// Disk sector the piece starts at.
        sector: u64,
        /// Length in sectors.
        sectors: u64,
        /// Sequence number of the record.
        seq: u64,
        /// The caller's record handle.
        record: u64,
        /// Offset into the record's payload, in sectors.
        record_offset: u64,
    },
    /// Read `sectors` sectors from the disk at `sector`.
    Disk {
        /// Disk sector the piece starts at.
        sector: u64,
        /// Length in sectors.
        sectors: u64,
    },
}

/// Why an update was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexError {
    /// The storage cannot hold the result; nothing was changed.
    Full,
    /// Zero sectors.
    EmptyRange,
    /// `sector + sectors` overflows.
    RangeOverflow,
}

impl core::fmt::Display for IndexError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Full => "extent index full",
            Self::EmptyRange => "empty sector range",
            Self::RangeOverflow => "sector range overflows",
        })
    }
}

impl core::error::Error for IndexError {}

/// The index, over caller-provided storage: anything that derefs to a
/// mutable slice of extents (`&mut [Extent]`, or an owned buffer the
/// kernel allocates once, so the device can own the index).
#[derive(Debug)]
pub struct ExtentIndex<S> {
    storage: S,
    /// Extents in use: `storage[..len]`, sorted by sector, non-overlapping.
    len: usize,
}

impl<S: DerefMut<Target = [Extent]>> ExtentIndex<S> {
    /// An empty index using `storage` (whose contents are ignored).
    pub fn new(storage: S) -> Self {
        Self { storage, len: 0 }
    }

    /// Gives the storage back.
    pub fn into_storage(self) -> S {
        self.storage
    }

    /// Most extents the storage holds.
    pub fn capacity(&self) -> usize {
        self.storage.len()
    }

    /// Extents in use.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no sector is dirty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The extents, sorted by sector.
    pub fn extents(&self) -> &[Extent] {
        self.storage.get(..self.len).unwrap_or(&[])
    }

    fn get(&self, index: usize) -> Option<Extent> {
        self.extents().get(index).copied()
    }

    fn set(&mut self, index: usize, extent: Extent) {
        if let Some(slot) = self
            .storage
            .get_mut(..self.len)
            .and_then(|live| live.get_mut(index))
        {
            *slot = extent;
        }
    }

    /// Inserts `extent` at `index`, shifting the rest right. The caller has
    /// checked there is room.
    fn insert_at(&mut self, index: usize, extent: Extent) {
        if let Some(tail) = self.storage.get_mut(index..=self.len) {
            let moved = tail.len() - 1;
            tail.copy_within(0..moved, 1);
            if let Some(first) = tail.first_mut() {
                *first = extent;
                self.len += 1;
            }
        }
    }

    /// Keeps the extents of `storage[from..to]` for which `keep` holds,
    /// closing the gap; returns the new end of that range.
    fn retain_range(&mut self, from: usize, to: usize, keep: impl Fn(&Extent) -> bool) -> usize {
        let mut write = from;
        for read in from..to {
            if let Some(extent) = self.get(read) {
                if keep(&extent) {
                    self.set(write, extent);
                    write += 1;
                }
            }
        }
        let removed = to - write;
        if removed > 0 {
            if let Some(live) = self.storage.get_mut(..self.len) {
                live.copy_within(to.., write);
            }
            self.len -= removed;
        }
        write
    }

    /// Indexes record `record` (sequence number `seq`) as covering
    /// `sectors` sectors from `sector`, wherever nothing newer is indexed.
    pub fn insert(
        &mut self,
        sector: u64,
        sectors: u64,
        seq: u64,
        record: u64,
    ) -> Result<(), IndexError> {
        if sectors == 0 {
            return Err(IndexError::EmptyRange);
        }
        let end = sector
            .checked_add(sectors)
            .ok_or(IndexError::RangeOverflow)?;
        let piece = |from: u64, to: u64| Extent {
            sector: from,
            sectors: to - from,
            seq,
            record,
            record_offset: from - sector,
        };
        let first = self.extents().partition_point(|x| x.end() <= sector);
        let overlapping = self
            .extents()
            .get(first..)
            .unwrap_or(&[])
            .partition_point(|x| x.sector < end);
        let last = first + overlapping;
        let older = |x: &Extent| x.seq < seq;

        // One older extent strictly around the new range: split it in three.
        if let (1, Some(around)) = (overlapping, self.get(first)) {
            if older(&around) && around.sector < sector && around.end() > end {
                if self.len + 2 > self.capacity() {
                    return Err(IndexError::Full);
                }
                let right = Extent {
                    sector: end,
                    sectors: around.end() - end,
                    record_offset: around.record_offset + (end - around.sector),
                    ..around
                };
                self.set(
                    first,
                    Extent {
                        sectors: sector - around.sector,
                        ..around
                    },
                );
                self.insert_at(first + 1, piece(sector, end));
                self.insert_at(first + 2, right);
                return Ok(());
            }
        }

        // Dry run: older extents wholly inside go, a new piece fills each gap
        // between the newer ones. Older extents across an edge get trimmed.
        let inside = |x: &Extent| x.sector >= sector && x.end() <= end;
        let window = self.extents().get(first..last).unwrap_or(&[]);
        let removed = window.iter().filter(|x| older(x) && inside(x)).count();
        let only_older = window.iter().all(older);
        let mut gaps = 0;
        let mut cursor = sector;
        for x in window.iter().filter(|x| !older(x)) {
            if x.sector > cursor {
                gaps += 1;
            }
            cursor = cursor.max(x.end());
        }
        if cursor < end {
            gaps += 1;
        }
        if self.len - removed + gaps > self.capacity() {
            return Err(IndexError::Full);
        }

        for index in first..last {
            let Some(x) = self.get(index) else { continue };
            if !older(&x) || inside(&x) {
                continue;
            }
            if x.sector < sector {
                self.set(
                    index,
                    Extent {
                        sectors: sector - x.sector,
                        ..x
                    },
                );
            } else {
                let cut = end - x.sector;
                self.set(
                    index,
                    Extent {
                        sector: end,
                        sectors: x.sectors - cut,
                        record_offset: x.record_offset + cut,
                        ..x
                    },
                );
            }
        }

        // The common case, a rewrite over older data only (a log page
        // rewritten at every commit): the new piece takes the place of the
        // first extent it covers whole, so the array shifts once, and only
        // if more than one goes, instead of out and back in.
        if removed > 0 && only_older {
            if let Some(at) = (first..last).find(|&i| self.get(i).is_some_and(|x| inside(&x))) {
                self.set(at, piece(sector, end));
                self.retain_range(at + 1, last, |x| !(older(x) && inside(x)));
                return Ok(());
            }
        }
        let last = self.retain_range(first, last, |x| !(older(x) && inside(x)));

        // Fill the gaps, left to right; each insert shifts the rest.
        let mut index = first;
        let mut window_end = last;
        let mut cursor = sector;
        while index < window_end {
            let Some(x) = self.get(index) else { break };
            if x.sector >= end {
                break;
            }
            if !older(&x) {
                if x.sector > cursor {
                    self.insert_at(index, piece(cursor, x.sector));
                    index += 1;
                    window_end += 1;
                }
                cursor = cursor.max(x.end());
            }
            index += 1;
        }
        if cursor < end {
            self.insert_at(index, piece(cursor, end));
        }
        Ok(())
    }

    /// Drops every extent of records with sequence number `<= seq`: their
    /// data is on the disk now (writeback completed in sequence order).
    pub fn retire_through(&mut self, seq: u64) {
        let len = self.len;
        self.retain_range(0, len, |x| x.seq > seq);
    }

    /// Splits the read of `sectors` sectors at `sector` into pieces, in disk
    /// order, that together cover it exactly. A range running past `u64`
    /// is cut at `u64::MAX`.
    pub fn lookup(&self, sector: u64, sectors: u64) -> Lookup<'_> {
        let extents = self.extents();
        let first = extents.partition_point(|x| x.end() <= sector);
        Lookup {
            extents: extents.get(first..).unwrap_or(&[]),
            cursor: sector,
            end: sector.saturating_add(sectors),
        }
    }
}

/// Iterator over the [`Piece`]s of a read; see [`ExtentIndex::lookup`].
#[derive(Debug, Clone)]
pub struct Lookup<'a> {
    /// Extents not yet passed, starting with the first ending after `cursor`.
    extents: &'a [Extent],
    cursor: u64,
    end: u64,
}

impl Iterator for Lookup<'_> {
    type Item = Piece;

    fn next(&mut self) -> Option<Piece> {
        if self.cursor >= self.end {
            return None;
        }
        let start = self.cursor;
        match self.extents.first() {
            Some(x) if x.sector < self.end => {
                if x.sector > start {
                    self.cursor = x.sector;
                    return Some(Piece::Disk {
                        sector: start,
                        sectors: x.sector - start,
                    });
                }
                let stop = x.end().min(self.end);
                self.cursor = stop;
                if stop >= x.end() {
                    self.extents = self.extents.get(1..).unwrap_or(&[]);
                }
                Some(Piece::Record {
                    sector: start,
                    sectors: stop - start,
                    seq: x.seq,
                    record: x.record,
                    record_offset: x.record_offset + (start - x.sector),
                })
            }
            _ => {
                self.cursor = self.end;
                Some(Piece::Disk {
                    sector: start,
                    sectors: self.end - start,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(
        index: &ExtentIndex<&mut [Extent]>,
        sector: u64,
        sectors: u64,
    ) -> ([Option<Piece>; 8], usize) {
        let mut out = [None; 8];
        let mut n = 0;
        for (slot, piece) in out.iter_mut().zip(index.lookup(sector, sectors)) {
            *slot = Some(piece);
            n += 1;
        }
        (out, n)
    }

    /// A record piece; the tests use `seq * 100` as the record handle.
    fn rec(sector: u64, sectors: u64, seq: u64, record_offset: u64) -> Option<Piece> {
        Some(Piece::Record {
            sector,
            sectors,
            seq,
            record: seq * 100,
            record_offset,
        })
    }

    fn disk(sector: u64, sectors: u64) -> Option<Piece> {
        Some(Piece::Disk { sector, sectors })
    }

    #[test]
    fn split_in_three_and_lookup() {
        let mut storage = [Extent::default(); 8];
        let mut index = ExtentIndex::new(&mut storage[..]);
        index.insert(10, 10, 1, 100).unwrap();
        index.insert(14, 2, 2, 200).unwrap();
        assert_eq!(index.len(), 3);
        let (p, n) = pieces(&index, 8, 14);
        assert_eq!(n, 5);
        assert_eq!(
            p[..5],
            [
                disk(8, 2),
                rec(10, 4, 1, 0),
                rec(14, 2, 2, 0),
                rec(16, 4, 1, 6),
                disk(20, 2)
            ]
        );
        let (p, n) = pieces(&index, 15, 2);
        assert_eq!(p[..n], [rec(15, 1, 2, 1), rec(16, 1, 1, 6)]);
    }

    #[test]
    fn older_insert_fills_only_gaps() {
        let mut storage = [Extent::default(); 8];
        let mut index = ExtentIndex::new(&mut storage[..]);
        index.insert(12, 2, 5, 500).unwrap();
        index.insert(16, 2, 6, 600).unwrap();
        index.insert(10, 10, 4, 400).unwrap();
        let (p, n) = pieces(&index, 10, 10);
        assert_eq!(
            p[..n],
            [
                rec(10, 2, 4, 0),
                rec(12, 2, 5, 0),
                rec(14, 2, 4, 4),
                rec(16, 2, 6, 0),
                rec(18, 2, 4, 8)
            ]
        );
        index.retire_through(5);
        let (p, n) = pieces(&index, 10, 10);
        assert_eq!(p[..n], [disk(10, 6), rec(16, 2, 6, 0), disk(18, 2)]);
    }

    #[test]
    fn newer_insert_trims_edges_and_removes_inside() {
        let mut storage = [Extent::default(); 8];
        let mut index = ExtentIndex::new(&mut storage[..]);
        index.insert(0, 4, 1, 100).unwrap();
        index.insert(4, 2, 2, 200).unwrap();
        index.insert(6, 4, 3, 300).unwrap();
        index.insert(2, 6, 4, 400).unwrap();
        let (p, n) = pieces(&index, 0, 10);
        assert_eq!(p[..n], [rec(0, 2, 1, 0), rec(2, 6, 4, 0), rec(8, 2, 3, 2)]);
        assert_eq!(index.len(), 3);
    }

    #[test]
    fn rewrites_take_the_place_of_what_they_cover() {
        // A log page rewritten at every commit, between other extents, at
        // full capacity: each rewrite replaces, it never needs a free slot.
        let mut storage = [Extent::default(); 4];
        let mut index = ExtentIndex::new(&mut storage[..]);
        index.insert(0, 8, 1, 100).unwrap();
        index.insert(8, 16, 2, 200).unwrap();
        index.insert(24, 8, 3, 300).unwrap();
        index.insert(40, 8, 4, 400).unwrap();
        for seq in 5..10 {
            index.insert(8, 16, seq, seq * 100).unwrap();
        }
        // Two neighbours at once become one extent.
        index.insert(24, 24, 10, 1000).unwrap();
        let (p, n) = pieces(&index, 0, 48);
        assert_eq!(
            p[..n],
            [rec(0, 8, 1, 0), rec(8, 16, 9, 0), rec(24, 24, 10, 0)]
        );
        assert_eq!(index.len(), 3);
    }

    #[test]
    fn full_changes_nothing() {
        let mut storage = [Extent::default(); 2];
        let mut index = ExtentIndex::new(&mut storage[..]);
        index.insert(0, 10, 1, 100).unwrap();
        assert_eq!(index.insert(4, 2, 2, 200), Err(IndexError::Full));
        assert_eq!(
            index.extents(),
            &[Extent {
                sector: 0,
                sectors: 10,
                seq: 1,
                record: 100,
                record_offset: 0
            }]
        );
        index.insert(10, 2, 2, 200).unwrap();
        assert_eq!(index.insert(20, 2, 3, 300), Err(IndexError::Full));
        // Replacing both extents needs no extra room.
        index.insert(0, 12, 3, 300).unwrap();
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn bad_ranges_and_edges() {
        let mut storage = [Extent::default(); 4];
        let mut index = ExtentIndex::new(&mut storage[..]);
        assert_eq!(index.insert(0, 0, 1, 1), Err(IndexError::EmptyRange));
        assert_eq!(
            index.insert(u64::MAX, 1, 1, 1),
            Err(IndexError::RangeOverflow)
        );
        index.insert(u64::MAX - 1, 1, 1, 100).unwrap();
        let (p, n) = pieces(&index, u64::MAX - 2, 10);
        assert_eq!(p[..n], [disk(u64::MAX - 2, 1), rec(u64::MAX - 1, 1, 1, 0)]);
        assert_eq!(pieces(&index, 5, 0).1, 0);
    }
}
