// SPDX-License-Identifier: GPL-2.0

//! Writeback that writes only the newest version of each sector, checked
//! against a per-sector model at every crash point: whatever prefix of a
//! batch's writes reached the disk, the disk plus replay of the records
//! from the durable tail on holds every sector's newest acknowledged data.

use proptest::prelude::*;
use rapilog_format::{batch_extents, Extent, ExtentIndex, Source, WritePlan};

const SECTORS: u64 = 48;

/// What a sector holds: written by record `seq`, from `offset` sectors into
/// its payload; `None`: never written.
type Disk = Vec<Option<(u64, u64)>>;

#[derive(Debug, Clone, Copy)]
struct Record {
    sector: u64,
    sectors: u64,
}

/// The caller's handle the index stores for a record (the kernel stores
/// the payload's region offset; anything that identifies it will do).
fn handle(seq: u64) -> u64 {
    0x1000 + seq * 7
}

fn apply_record(disk: &mut Disk, seq: u64, r: &Record) {
    for i in 0..r.sectors {
        disk[(r.sector + i) as usize] = Some((seq, i));
    }
}

fn replay(disk: &mut Disk, records: &[Record], from: u64) {
    for (seq, r) in records.iter().enumerate().skip(from as usize) {
        apply_record(disk, seq as u64, r);
    }
}

#[derive(Debug, Clone)]
struct Case {
    records: Vec<Record>,
    /// Records before this one were written back earlier (not live).
    tail: u64,
    /// The batch is `tail ..= last`.
    last: u64,
    /// Order in which the live records were published (writers finish out
    /// of order; the index does not care).
    publish_order: Vec<usize>,
    max_sectors: u64,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec((0..SECTORS, 1..=12u64), 1..40),
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
        any::<u64>(),
        1..=20u64,
    )
        .prop_map(|(raw, a, b, shuffle_seed, max_sectors)| {
            let records: Vec<Record> = raw
                .into_iter()
                .map(|(sector, sectors)| Record {
                    sector,
                    sectors: sectors.min(SECTORS - sector),
                })
                .collect();
            let n = records.len();
            let tail = a.index(n) as u64;
            let last = tail + b.index(n - tail as usize) as u64;
            let mut publish_order: Vec<usize> = (tail as usize..n).collect();
            // A deterministic shuffle from the seed.
            let mut x = shuffle_seed | 1;
            for i in (1..publish_order.len()).rev() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                publish_order.swap(i, (x % (i as u64 + 1)) as usize);
            }
            Case {
                records,
                tail,
                last,
                publish_order,
                max_sectors,
            }
        })
}

/// The index of the live records, published in the case's order.
fn live_index(c: &Case) -> ExtentIndex<Vec<Extent>> {
    let mut index = ExtentIndex::new(vec![Extent::default(); 2 * c.records.len() + 1]);
    for &i in &c.publish_order {
        let r = c.records[i];
        index
            .insert(r.sector, r.sectors, i as u64, handle(i as u64))
            .unwrap();
    }
    index
}

/// The planned writes, each as its list of per-sector values, after
/// checking the shape of every run and piece.
fn planned_writes(c: &Case, index: &ExtentIndex<Vec<Extent>>) -> Vec<Vec<(u64, (u64, u64))>> {
    let chosen: Vec<Extent> = batch_extents(index.extents(), c.last).collect();
    let mut writes = Vec::new();
    for run in WritePlan::new(&chosen, c.max_sectors) {
        assert!(run.sectors >= 1 && run.sectors <= c.max_sectors, "{run:?}");
        let mut next = run.sector;
        let mut write = Vec::new();
        for piece in run.pieces() {
            assert_eq!(piece.sector, next, "pieces of a run must be contiguous");
            assert!(piece.sectors >= 1);
            assert!(
                piece.seq >= c.tail && piece.seq <= c.last,
                "piece outside the batch"
            );
            assert_eq!(
                piece.record,
                handle(piece.seq),
                "piece names the wrong record"
            );
            let r = c.records[piece.seq as usize];
            assert_eq!(
                piece.sector - r.sector,
                piece.record_offset,
                "piece copies from the wrong offset of its record"
            );
            assert!(piece.record_offset + piece.sectors <= r.sectors);
            for i in 0..piece.sectors {
                write.push((piece.sector + i, (piece.seq, piece.record_offset + i)));
            }
            next += piece.sectors;
        }
        assert_eq!(next, run.sector + run.sectors, "pieces do not fill the run");
        writes.push(write);
    }
    writes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_crash_point_replays_to_the_newest_data(c in case()) {
        let index = live_index(&c);
        let writes = planned_writes(&c, &index);

        let mut expected: Disk = vec![None; SECTORS as usize];
        replay(&mut expected, &c.records, 0);
        let mut before: Disk = vec![None; SECTORS as usize];
        for (seq, r) in c.records.iter().enumerate().take(c.tail as usize) {
            apply_record(&mut before, seq as u64, r);
        }

        // No sector is written twice in one batch.
        let mut seen = vec![false; SECTORS as usize];
        for &(s, _) in writes.iter().flatten() {
            prop_assert!(!seen[s as usize], "sector {} written twice", s);
            seen[s as usize] = true;
        }

        // A crash after k of the writes, before the superblock update: the
        // durable tail is still `tail`, replay applies the batch and after.
        let mut disk = before.clone();
        for k in 0..=writes.len() {
            let mut crashed = disk.clone();
            replay(&mut crashed, &c.records, c.tail);
            prop_assert_eq!(&crashed, &expected, "crash after {} of {} writes", k, writes.len());
            if let Some(w) = writes.get(k) {
                for &(s, v) in w {
                    disk[s as usize] = Some(v);
                }
            }
        }
        // After the flush and the superblock update: the tail is past the
        // batch, replay applies only the records after it.
        let mut crashed = disk.clone();
        replay(&mut crashed, &c.records, c.last + 1);
        prop_assert_eq!(&crashed, &expected, "crash after the superblock update");

        // What is written is exactly the sectors whose newest record is in
        // the batch, with that record's data.
        for s in 0..SECTORS as usize {
            let newest = expected[s].map(|(seq, _)| seq);
            let in_batch = newest.is_some_and(|seq| seq >= c.tail && seq <= c.last);
            prop_assert_eq!(seen[s], in_batch, "sector {}", s);
            if in_batch {
                prop_assert_eq!(disk[s], expected[s]);
            }
        }
    }
}

/// Per-sector values of the runs of `plan`.
fn sectors_of(plan: WritePlan<'_>) -> Vec<(u64, (u64, u64))> {
    let mut out = Vec::new();
    for run in plan {
        for piece in run.pieces() {
            for i in 0..piece.sectors {
                out.push((piece.sector + i, (piece.seq, piece.record_offset + i)));
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Writeback that finds a bad record while copying run `k` stops
    /// before that run, drops the record's extents and resumes the plan
    /// at the run's first sector: the writes before and after together are
    /// every chosen sector once, but the dropped record's from run `k` on.
    #[test]
    fn a_plan_resumed_after_dropping_a_record_writes_the_rest_once(
        c in case(),
        stop_at in any::<prop::sample::Index>(),
        drop_pick in any::<prop::sample::Index>(),
    ) {
        let index = live_index(&c);
        let chosen: Vec<Extent> = batch_extents(index.extents(), c.last).collect();
        let runs: Vec<_> = WritePlan::new(&chosen, c.max_sectors).collect();
        prop_assume!(!runs.is_empty());
        let k = stop_at.index(runs.len());
        let stop = runs[k].sector;
        let dropped = chosen[drop_pick.index(chosen.len())].seq;

        let mut written: Vec<(u64, (u64, u64))> = Vec::new();
        for run in &runs[..k] {
            for piece in run.pieces() {
                for i in 0..piece.sectors {
                    written.push((piece.sector + i, (piece.seq, piece.record_offset + i)));
                }
            }
        }
        let kept: Vec<Extent> = chosen.iter().copied().filter(|e| e.seq != dropped).collect();
        let resumed = sectors_of(WritePlan::starting_at(&kept, c.max_sectors, stop));
        prop_assert!(resumed.iter().all(|&(s, _)| s >= stop), "resumed before the stop");
        written.extend(resumed);

        let mut expected = sectors_of(WritePlan::new(&chosen, c.max_sectors));
        expected.retain(|&(s, (seq, _))| s < stop || seq != dropped);
        written.sort_unstable();
        prop_assert_eq!(written, expected);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// For every run and every record it copies from, the record's payload
    /// as `Run::record_sources` assembles it (stretches of the run's buffer
    /// and of the region, in order) is exactly the record's payload: each
    /// byte the run writes is read from the buffer where it was copied.
    #[test]
    fn record_sources_assemble_each_record_from_its_copy_and_the_region(c in case()) {
        let index = live_index(&c);
        let chosen: Vec<Extent> = batch_extents(index.extents(), c.last).collect();
        for run in WritePlan::new(&chosen, c.max_sectors) {
            // The run's buffer, per sector: (record, sector of its payload).
            let mut buffer = Vec::new();
            for piece in run.pieces() {
                for i in 0..piece.sectors {
                    buffer.push((piece.seq, piece.record_offset + i));
                }
            }
            let mut seqs: Vec<u64> = run.pieces().map(|p| p.seq).collect();
            seqs.sort_unstable();
            seqs.dedup();
            for seq in seqs {
                let r = c.records[seq as usize];
                let mut next = 0u64; // payload sectors assembled so far
                let mut copied = 0u64;
                let ok = run.record_sources(seq, (r.sectors * 512) as u32, |s| {
                    match s {
                        Source::Region { offset, len } => {
                            assert_eq!(offset as u64, next * 512);
                            next += len as u64 / 512;
                        }
                        Source::Copy { at, len } => {
                            for i in 0..len / 512 {
                                assert_eq!(buffer[at / 512 + i], (seq, next), "copy of the wrong bytes");
                                next += 1;
                            }
                            copied += len as u64 / 512;
                        }
                    }
                    Some(())
                });
                prop_assert!(ok.is_some());
                prop_assert_eq!(next, r.sectors, "record {} not covered", seq);
                let in_run = buffer.iter().filter(|&&(s, _)| s == seq).count() as u64;
                prop_assert_eq!(copied, in_run);
            }
        }
    }
}

/// A database log: each commit rewrites the log's current 16-sector page
/// and moves on every few commits. One batch of 40 commits is 40 records
/// but few writes.
#[test]
fn rewrites_of_a_log_page_become_one_write() {
    let records: Vec<Record> = (0..40u64)
        .map(|i| Record {
            sector: (i / 8) * 16,
            sectors: 16,
        })
        .collect();
    let c = Case {
        tail: 0,
        last: 39,
        publish_order: (0..40).collect(),
        max_sectors: 2048,
        records,
    };
    let index = live_index(&c);
    let writes = planned_writes(&c, &index);
    assert_eq!(writes.len(), 1, "five contiguous pages, one write");
    assert_eq!(writes[0].len(), 5 * 16);
    // Each page from its last rewrite.
    for page in 0..5u64 {
        assert_eq!(writes[0][(page * 16) as usize].1, (page * 8 + 7, 0));
    }
}
