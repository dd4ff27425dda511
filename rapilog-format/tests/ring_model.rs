// SPDX-License-Identifier: GPL-2.0

//! Space accounting under random reserve/release sequences: live records
//! never share a slot or a ring byte, payloads never wrap, and an empty ring
//! always accepts a maximum record.

use proptest::prelude::*;
use rapilog_format::test_helpers::compact_geometry;
use rapilog_format::{Reservation, ReserveError, RingGeometry, RingState};

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn live_reservations_never_overlap(
        slots in 1u32..10,
        ring_units in 2u64..40,
        ops in prop::collection::vec((any::<bool>(), 1u32..=40, any::<u8>()), 1..200),
    ) {
        let max_units = (ring_units / 2) as u32;
        let geometry = compact_geometry(slots, ring_units * 512, max_units * 512);
        let ring_geometry = RingGeometry::new(&geometry).unwrap();
        let mut ring = RingState::new(1000);
        let mut live: Vec<Reservation> = Vec::new();
        for (reserve, units, pick) in ops {
            if reserve {
                let length = units.min(max_units) * 512;
                match ring.reserve(&ring_geometry, length) {
                    Ok(r) => {
                        prop_assert_eq!(r.seq, ring.tail_seq() + live.len() as u64, "seq not consecutive");
                        prop_assert!(r.ring_offset + u64::from(r.length) <= ring_units * 512, "payload wraps");
                        prop_assert_eq!(r.ring_offset % 512, 0);
                        for other in &live {
                            prop_assert_ne!(other.slot, r.slot, "slot shared");
                            let disjoint = r.ring_offset + u64::from(r.length) <= other.ring_offset
                                || other.ring_offset + u64::from(other.length) <= r.ring_offset;
                            prop_assert!(disjoint, "ring bytes shared: {:?} {:?}", r, other);
                        }
                        live.push(r);
                    }
                    Err(ReserveError::SlotsFull) => prop_assert_eq!(live.len(), slots as usize),
                    Err(ReserveError::RingFull) => prop_assert!(!live.is_empty(), "empty ring refused a record"),
                    Err(e) => return Err(TestCaseError::fail(format!("unexpected {e:?}"))),
                }
            } else if !live.is_empty() {
                let through = usize::from(pick) % live.len();
                ring.release_through(&live[through]).unwrap();
                live.drain(..=through);
            }
            prop_assert_eq!(ring.live_records(), live.len() as u64);
            prop_assert!(ring.used_bytes() <= ring_units * 512);
        }
        // Drain, then a maximum record must fit.
        if let Some(last) = live.last() {
            ring.release_through(last).unwrap();
        }
        prop_assert!(ring.reserve(&ring_geometry, max_units * 512).is_ok());
    }
}
