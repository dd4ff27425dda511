// SPDX-License-Identifier: GPL-2.0

//! Writeback planning: which bytes of a batch go to the disk, in how few
//! writes.
//!
//! A database's log rewrites its current page at every commit, so a batch
//! holds many records for the same sectors. Writing each record in turn
//! would cost the disk one write per commit, the very thing rapilog takes
//! off the commit path. Only the newest version of each sector matters, and
//! the dirty-extent index already knows it: writeback writes the index's
//! extents whose record is in the batch, in sector order, merging neighbours.
//!
//! # Why skipping older versions is safe
//!
//! For the batch `durable_tail ..= last`, writeback writes every extent with
//! `seq <= last`, flushes, then advances `durable_tail` past `last`. Each
//! sector the batch's records cover ends up in one of two states:
//!
//! - its newest live record is in the batch: that version is written, and
//!   it is the newest acknowledged data for the sector;
//! - a record after `last` covers it: nothing is written for it now, and
//!   that record stays in the region (it is past the new durable tail), so
//!   writeback writes it later and replay after a crash applies it.
//!
//! Either way the disk plus the records from `durable_tail` on, applied in
//! sequence order, give every sector its newest acknowledged data, at any
//! crash point: before the superblock update the old tail still covers the
//! whole batch, and replay rewrites it in order. The property tests in
//! `tests/writeback_plan.rs` check exactly this against a sector model.
//!
//! # Runs
//!
//! [`WritePlan`] cuts the chosen extents (sorted by sector, from the index)
//! into [`Run`]s: each run is one disk write of contiguous sectors, at most
//! `max_sectors` long (the bounce buffer), made of [`Extent`] pieces, each
//! copied from its record. An extent longer than a run is split.

use super::disk::SECTOR_BYTES;
use super::extent_index::Extent;

/// The extents writeback writes for a batch ending at record `last`: those
/// of the dirty-extent index whose newest record is in the batch (the index
/// holds live records only, so `seq <= last` means "in the batch"). Sorted
/// by sector, as the index keeps them.
pub fn batch_extents(index_extents: &[Extent], last: u64) -> impl Iterator<Item = Extent> + '_ {
    index_extents.iter().filter(move |e| e.seq <= last).copied()
}

/// Cuts extents into disk writes. Iterating yields [`Run`]s in sector order.
#[derive(Debug, Clone)]
pub struct WritePlan<'a> {
    extents: &'a [Extent],
    max_sectors: u64,
    /// Next extent to plan, and how many of its sectors earlier runs took.
    next: usize,
    taken: u64,
}

impl<'a> WritePlan<'a> {
    /// Plans `extents` (sorted by sector, non-overlapping, each at least one
    /// sector, as [`ExtentIndex::extents`](super::ExtentIndex::extents)
    /// gives them) into writes of at most `max_sectors` (at least 1).
    pub fn new(extents: &'a [Extent], max_sectors: u64) -> Self {
        Self {
            extents,
            max_sectors: max_sectors.max(1),
            next: 0,
            taken: 0,
        }
    }

    /// The part of the plan of `extents` that starts at `sector`: the runs
    /// [`WritePlan::new`] would give for the extents' sectors from `sector`
    /// on (an extent that starts before it is taken from `sector`). For a
    /// writer that stopped before a run, dropped extents from the list and
    /// goes on where it stopped: the runs it already wrote are not repeated.
    pub fn starting_at(extents: &'a [Extent], max_sectors: u64, sector: u64) -> Self {
        let next = extents.partition_point(|e| e.end() <= sector);
        let taken = extents
            .get(next)
            .map_or(0, |e| sector.saturating_sub(e.sector));
        Self {
            extents,
            max_sectors: max_sectors.max(1),
            next,
            taken,
        }
    }
}

/// Whether `piece` (of a run) is the whole payload of its record, which is
/// `record_bytes` long: then the CRC-32C of the piece as copied is the
/// record's own, and the copy can be checked against its descriptor
/// without reading the region again.
pub fn is_whole_record(piece: &Extent, record_bytes: u32) -> bool {
    piece.record_offset == 0
        && piece.sectors.checked_mul(u64::from(SECTOR_BYTES)) == Some(u64::from(record_bytes))
}

impl<'a> Iterator for WritePlan<'a> {
    type Item = Run<'a>;

    fn next(&mut self) -> Option<Run<'a>> {
        let first = self.extents.get(self.next)?;
        let mut run = Run {
            extents: self.extents,
            first: self.next,
            skip: self.taken,
            sector: first.sector + self.taken,
            sectors: 0,
        };
        let mut end = run.sector;
        while let Some(extent) = self.extents.get(self.next) {
            let piece_start = extent.sector + self.taken;
            if piece_start != end {
                break; // a gap: the run ends here
            }
            let left = extent.sectors - self.taken;
            let room = self.max_sectors - run.sectors;
            if left > room {
                // Split: the rest of this extent starts the next run.
                run.sectors += room;
                self.taken += room;
                return Some(run);
            }
            run.sectors += left;
            end = extent.end();
            self.next += 1;
            self.taken = 0;
            if run.sectors == self.max_sectors {
                break;
            }
        }
        Some(run)
    }
}

/// One disk write: `sectors` contiguous sectors from `sector` on.
#[derive(Debug, Clone, Copy)]
pub struct Run<'a> {
    extents: &'a [Extent],
    /// Index of its first extent, and how many sectors of that extent an
    /// earlier run wrote.
    first: usize,
    skip: u64,
    /// First sector.
    pub sector: u64,
    /// Length in sectors, 1 to the plan's `max_sectors`.
    pub sectors: u64,
}

impl<'a> Run<'a> {
    /// The run's pieces in sector order: each an extent clipped to the run
    /// (`sector`, `sectors` and `record_offset` adjusted), to be copied from
    /// its record into the write's buffer one after the other.
    pub fn pieces(&self) -> impl Iterator<Item = Extent> + 'a {
        let mut skip = self.skip;
        let mut left = self.sectors;
        self.extents[self.first..].iter().map_while(move |extent| {
            if left == 0 {
                return None;
            }
            let sectors = (extent.sectors - skip).min(left);
            let piece = Extent {
                sector: extent.sector + skip,
                sectors,
                record_offset: extent.record_offset + skip,
                ..*extent
            };
            skip = 0;
            left -= sectors;
            Some(piece)
        })
    }
}

/// Where a stretch of a record's payload is once a run was copied into its
/// buffer ([`Run::record_sources`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Bytes the run did not copy, read from the region.
    Region {
        /// Where they start in the payload.
        offset: usize,
        /// How many.
        len: usize,
    },
    /// Bytes the run copied, read from its buffer.
    Copy {
        /// Where they are in the buffer.
        at: usize,
        /// How many.
        len: usize,
    },
}

impl Run<'_> {
    /// Calls `f` with the stretches of record `seq`'s payload (`record_bytes`
    /// long) in payload order, each either where this run copied it in its
    /// buffer or, for the rest, in the region: the record's checksum can be
    /// computed over the bytes the run will write, as they are in the buffer.
    /// Stops at the first `None` from `f`; `None` also if the run's pieces
    /// of the record do not lie inside it in payload order (impossible for
    /// a plan of index extents).
    pub fn record_sources(
        &self,
        seq: u64,
        record_bytes: u32,
        mut f: impl FnMut(Source) -> Option<()>,
    ) -> Option<()> {
        let sector_bytes = u64::from(SECTOR_BYTES);
        let record_bytes = usize::try_from(record_bytes).ok()?;
        let mut done = 0usize;
        for piece in self.pieces().filter(|p| p.seq == seq) {
            let start = usize::try_from(piece.record_offset.checked_mul(sector_bytes)?).ok()?;
            let len = usize::try_from(piece.sectors.checked_mul(sector_bytes)?).ok()?;
            let at = usize::try_from((piece.sector - self.sector) * sector_bytes).ok()?;
            if start < done || start.checked_add(len)? > record_bytes {
                return None;
            }
            if start > done {
                f(Source::Region {
                    offset: done,
                    len: start - done,
                })?;
            }
            f(Source::Copy { at, len })?;
            done = start + len;
        }
        if done < record_bytes {
            f(Source::Region {
                offset: done,
                len: record_bytes - done,
            })?;
        }
        Some(())
    }
}

/// How long the writes one group keeps in flight may take at the disk's
/// measured bandwidth, in milliseconds ([`writes_in_flight`]).
pub const GROUP_MS: u64 = 500;

/// How many writes of up to `write_bytes` writeback keeps in flight at once
/// (1 to `max_writes`), given the disk's measured bandwidth
/// (`BandwidthEstimate::bytes_per_sec`, `None` before the first batch:
/// `max_writes`): as many as the disk writes in [`GROUP_MS`].
///
/// A disk that takes more than [`GROUP_MS`] for a write gains little
/// from a deeper queue, and pays for one: a group is waited for, and an
/// error seen, only once all of it is done, a `dmsetup suspend` or a hot
/// removal waits for all of it, and a failed group is written again whole.
/// A fast disk gets the full depth: its estimate, measured with the full
/// depth, stays high.
pub fn writes_in_flight(bytes_per_sec: Option<u64>, max_writes: usize, write_bytes: u64) -> usize {
    let max_writes = max_writes.max(1);
    let Some(bytes_per_sec) = bytes_per_sec else {
        return max_writes;
    };
    let budget = bytes_per_sec.saturating_mul(GROUP_MS) / 1000;
    let writes = budget / write_bytes.max(1);
    usize::try_from(writes)
        .unwrap_or(max_writes)
        .clamp(1, max_writes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extent(sector: u64, sectors: u64, seq: u64) -> Extent {
        Extent {
            sector,
            sectors,
            seq,
            record: seq * 1000,
            record_offset: 0,
        }
    }

    fn runs(extents: &[Extent], max: u64) -> Vec<(u64, u64, Vec<Extent>)> {
        WritePlan::new(extents, max)
            .map(|r| (r.sector, r.sectors, r.pieces().collect()))
            .collect()
    }

    #[test]
    fn no_extents_no_runs() {
        assert!(runs(&[], 8).is_empty());
    }

    #[test]
    fn neighbours_merge_into_one_write() {
        let e = [extent(0, 4, 1), extent(4, 2, 7), extent(6, 2, 3)];
        let r = runs(&e, 64);
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].0, r[0].1), (0, 8));
        assert_eq!(r[0].2, e.to_vec());
    }

    #[test]
    fn a_gap_ends_a_run() {
        let e = [extent(0, 4, 1), extent(5, 2, 2)];
        let r = runs(&e, 64);
        assert_eq!(
            r.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>(),
            [(0, 4), (5, 2)]
        );
    }

    #[test]
    fn a_plan_resumed_at_a_run_gives_the_same_runs_from_there() {
        let e = [
            extent(10, 10, 1),
            extent(20, 3, 2),
            extent(30, 2, 3),
            extent(32, 9, 4),
        ];
        let all = runs(&e, 4);
        for (k, run) in all.iter().enumerate() {
            let resumed: Vec<_> = WritePlan::starting_at(&e, 4, run.0)
                .map(|r| (r.sector, r.sectors, r.pieces().collect::<Vec<_>>()))
                .collect();
            assert_eq!(
                resumed,
                all[k..].to_vec(),
                "from run {k} at sector {}",
                run.0
            );
        }
        // Past the end, and before the start.
        assert_eq!(WritePlan::starting_at(&e, 4, 41).count(), 0);
        assert_eq!(WritePlan::starting_at(&e, 4, 0).count(), all.len());
        // After extents were dropped: from a sector inside a gap.
        let fewer = [extent(10, 10, 1), extent(32, 9, 4)];
        let r: Vec<_> = WritePlan::starting_at(&fewer, 4, 22)
            .map(|r| (r.sector, r.sectors))
            .collect();
        assert_eq!(r, [(32, 4), (36, 4), (40, 1)]);
    }

    fn sources(run: &Run<'_>, seq: u64, bytes: u32) -> Option<Vec<Source>> {
        let mut out = Vec::new();
        run.record_sources(seq, bytes, |s| {
            out.push(s);
            Some(())
        })?;
        Some(out)
    }

    #[test]
    fn a_record_copied_in_part_is_read_from_the_copy_where_the_run_copied_it() {
        // Record 1 covers sectors 0..12; record 2 (newer) overwrote 4..6,
        // so the index holds record 1 at 0..4 and 6..12.
        let e = [
            Extent {
                record_offset: 0,
                ..extent(0, 4, 1)
            },
            extent(4, 2, 2),
            Extent {
                record_offset: 6,
                ..extent(6, 6, 1)
            },
        ];
        let plan: Vec<_> = WritePlan::new(&e, 64).collect();
        assert_eq!(plan.len(), 1);
        let s = sources(&plan[0], 1, 12 * 512).unwrap();
        assert_eq!(
            s,
            [
                Source::Copy { at: 0, len: 2048 },
                Source::Region {
                    offset: 2048,
                    len: 1024
                },
                Source::Copy {
                    at: 3072,
                    len: 3072
                },
            ]
        );
        // Record 2 is whole in the run, record 3 is not in it at all.
        assert_eq!(
            sources(&plan[0], 2, 1024).unwrap(),
            [Source::Copy {
                at: 2048,
                len: 1024
            }]
        );
        assert_eq!(
            sources(&plan[0], 3, 512).unwrap(),
            [Source::Region {
                offset: 0,
                len: 512
            }]
        );
        // Split across runs of 5 sectors: each run copies part of record 1.
        let split: Vec<_> = WritePlan::new(&e, 5).collect();
        assert_eq!(
            sources(&split[0], 1, 12 * 512).unwrap(),
            [
                Source::Copy { at: 0, len: 2048 },
                Source::Region {
                    offset: 2048,
                    len: 4096
                },
            ]
        );
        assert_eq!(
            sources(&split[1], 1, 12 * 512).unwrap(),
            [
                Source::Region {
                    offset: 0,
                    len: 3072
                },
                Source::Copy { at: 512, len: 2048 },
                Source::Region {
                    offset: 5120,
                    len: 1024
                },
            ]
        );
        // A record shorter than its pieces claim: refused.
        assert_eq!(sources(&plan[0], 1, 8 * 512), None);
    }

    #[test]
    fn a_whole_record_is_a_piece_from_its_start_to_its_end() {
        let whole = extent(8, 8, 1);
        assert!(is_whole_record(&whole, 4096));
        assert!(!is_whole_record(&whole, 8192));
        let later = Extent {
            record_offset: 1,
            ..whole
        };
        assert!(!is_whole_record(&later, 4096));
        let short = extent(8, 7, 1);
        assert!(!is_whole_record(&short, 4096));
    }

    #[test]
    fn a_long_extent_is_split_with_its_record_offset() {
        let e = [extent(10, 10, 1), extent(20, 3, 2)];
        let r = runs(&e, 4);
        assert_eq!(
            r.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>(),
            [(10, 4), (14, 4), (18, 4), (22, 1)]
        );
        // The third run: the last 2 sectors of the first extent, the first
        // 2 of the second.
        let third = &r[2].2;
        assert_eq!(third.len(), 2);
        assert_eq!(
            (third[0].sector, third[0].sectors, third[0].record_offset),
            (18, 2, 8)
        );
        assert_eq!(
            (third[1].sector, third[1].sectors, third[1].record_offset),
            (20, 2, 0)
        );
        assert_eq!(
            (r[3].2[0].sector, r[3].2[0].sectors, r[3].2[0].record_offset),
            (22, 1, 2)
        );
    }

    #[test]
    fn runs_end_exactly_at_the_limit() {
        let e = [extent(0, 4, 1), extent(4, 4, 2), extent(8, 4, 3)];
        let r = runs(&e, 8);
        assert_eq!(
            r.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>(),
            [(0, 8), (8, 4)]
        );
    }

    #[test]
    fn writes_in_flight_follow_the_measured_bandwidth() {
        const MIB: u64 = 1 << 20;
        // Unmeasured: the full depth.
        assert_eq!(writes_in_flight(None, 8, MIB), 8);
        // A throttled 800 KB/s disk: one write at a time.
        assert_eq!(writes_in_flight(Some(800_000), 8, MIB), 1);
        assert_eq!(writes_in_flight(Some(0), 8, MIB), 1);
        // 4 MiB in half a second: four.
        assert_eq!(writes_in_flight(Some(8 * MIB), 8, MIB), 4);
        // Fast disks: capped.
        assert_eq!(writes_in_flight(Some(100_000_000), 8, MIB), 8);
        assert_eq!(writes_in_flight(Some(u64::MAX), 8, MIB), 8);
        // Degenerate arguments.
        assert_eq!(writes_in_flight(Some(u64::MAX), 0, 0), 1);
    }
}
