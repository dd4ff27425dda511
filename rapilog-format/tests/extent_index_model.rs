// SPDX-License-Identifier: GPL-2.0

//! The extent index against a naive model: one `Option<(seq, record,
//! offset)>` per sector, newest sequence number wins.

use proptest::prelude::*;
use rapilog_format::{Extent, ExtentIndex, Piece};

const SECTORS: u64 = 64;
const MAX_LIVE: usize = 12;

#[derive(Debug, Clone)]
enum Op {
    /// Insert the next record (its seq is drawn, not assigned in order, to
    /// model writers finishing out of order).
    Insert {
        sector: u64,
        sectors: u64,
        seq_jitter: u64,
    },
    Retire {
        fraction: u8,
    },
    Lookup {
        sector: u64,
        sectors: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..SECTORS, 1..=24u64, 0..6u64).prop_map(|(sector, sectors, seq_jitter)| Op::Insert { sector, sectors, seq_jitter }),
        1 => any::<u8>().prop_map(|fraction| Op::Retire { fraction }),
        3 => (0..SECTORS + 8, 0..=40u64).prop_map(|(sector, sectors)| Op::Lookup { sector, sectors }),
    ]
}

type Model = Vec<Option<(u64, u64, u64)>>;

fn model_insert(model: &mut Model, sector: u64, sectors: u64, seq: u64, record: u64) {
    for s in sector..sector + sectors {
        let slot = &mut model[s as usize];
        if slot.is_none_or(|(old, _, _)| old < seq) {
            *slot = Some((seq, record, s - sector));
        }
    }
}

/// Expands pieces into one entry per sector.
fn expand(pieces: impl Iterator<Item = Piece>, from: u64) -> Vec<Option<(u64, u64, u64)>> {
    let mut out = Vec::new();
    let mut next = from;
    for piece in pieces {
        match piece {
            Piece::Disk { sector, sectors } => {
                assert_eq!(sector, next, "pieces not contiguous");
                assert!(sectors > 0, "empty piece");
                out.extend((0..sectors).map(|_| None));
                next = sector + sectors;
            }
            Piece::Record {
                sector,
                sectors,
                seq,
                record,
                record_offset,
            } => {
                assert_eq!(sector, next, "pieces not contiguous");
                assert!(sectors > 0, "empty piece");
                out.extend((0..sectors).map(|i| Some((seq, record, record_offset + i))));
                next = sector + sectors;
            }
        }
    }
    out
}

fn check_invariants(index: &ExtentIndex<Vec<Extent>>, live: usize) -> Result<(), TestCaseError> {
    let extents = index.extents();
    for pair in extents.windows(2) {
        prop_assert!(
            pair[0].end() <= pair[1].sector,
            "overlap or disorder: {:?}",
            pair
        );
    }
    prop_assert!(extents.iter().all(|e| e.sectors > 0));
    if live > 0 {
        prop_assert!(
            extents.len() < 2 * live,
            "{} extents for {} live records",
            extents.len(),
            live
        );
    } else {
        prop_assert!(extents.is_empty());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn index_matches_per_sector_model(ops in prop::collection::vec(op(), 1..80)) {
        // Storage for 2 x MAX_LIVE extents: the documented bound says it
        // never fills while at most MAX_LIVE records are live.
        // Owned storage, as the kernel device would hold it.
        let mut index = ExtentIndex::new(vec![Extent::default(); 2 * MAX_LIVE]);
        let mut model: Model = vec![None; SECTORS as usize];
        let mut live: Vec<u64> = Vec::new();
        let mut next_seq = 100u64;
        let mut retired_through = 0u64;
        for op in ops {
            match op {
                Op::Insert { sector, sectors, seq_jitter } => {
                    if live.len() == MAX_LIVE {
                        continue;
                    }
                    // Distinct seqs, arriving slightly out of order.
                    let seq = next_seq - seq_jitter.min(next_seq - retired_through - 1);
                    if live.contains(&seq) {
                        next_seq += 1;
                        continue;
                    }
                    next_seq += 1;
                    let sectors = sectors.min(SECTORS - sector);
                    let record = seq * 10;
                    index.insert(sector, sectors, seq, record).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
                    model_insert(&mut model, sector, sectors, seq, record);
                    live.push(seq);
                }
                Op::Retire { fraction } => {
                    let Some(&max) = live.iter().max() else { continue };
                    let through = retired_through + (max - retired_through) * u64::from(fraction) / 255;
                    index.retire_through(through);
                    retired_through = retired_through.max(through);
                    live.retain(|&s| s > through);
                    for slot in model.iter_mut() {
                        if slot.is_some_and(|(seq, _, _)| seq <= through) {
                            *slot = None;
                        }
                    }
                }
                Op::Lookup { sector, sectors } => {
                    let got = expand(index.lookup(sector, sectors), sector);
                    prop_assert_eq!(got.len() as u64, sectors);
                    for (i, entry) in got.iter().enumerate() {
                        let s = sector + i as u64;
                        let want = model.get(s as usize).copied().flatten();
                        prop_assert_eq!(*entry, want, "sector {}", s);
                    }
                }
            }
            // Whole-disk comparison after every step.
            let whole = expand(index.lookup(0, SECTORS), 0);
            prop_assert_eq!(&whole, &model);
            check_invariants(&index, live.len())?;
        }
    }
}
