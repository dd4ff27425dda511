// SPDX-License-Identifier: GPL-2.0

//! The disk marker against random input: what decodes as a marker, what
//! round-trips, and that the load decision never lets a live marker of
//! another epoch pass.

use proptest::prelude::*;
use rapilog_format::disk_marker::fields;
use rapilog_format::{
    check_marker, Crc32c, DiskMarker, MarkerError, MarkerState, MarkerVerdict, MarkerWriter,
    RegionEvidence, SoftwareCrc32c, MARKER_BYTES,
};

fn state() -> impl Strategy<Value = MarkerState> {
    prop_oneof![Just(MarkerState::Live), Just(MarkerState::Clean)]
}

fn writer() -> impl Strategy<Value = MarkerWriter> {
    prop_oneof![
        Just(MarkerWriter::Module),
        Just(MarkerWriter::ModuleDrain),
        Just(MarkerWriter::Rescue),
        Just(MarkerWriter::Tool),
        Just(MarkerWriter::AcceptedLoss),
    ]
}

fn marker() -> impl Strategy<Value = DiskMarker> {
    (
        state(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        writer(),
    )
        .prop_map(
            |(state, epoch, region_phys, region_bytes, generation, written_at, writer)| {
                DiskMarker {
                    state,
                    epoch,
                    region_phys,
                    region_bytes,
                    generation,
                    written_at_unix_secs: written_at,
                    writer,
                }
            },
        )
}

fn decoded() -> impl Strategy<Value = Result<Option<DiskMarker>, MarkerError>> {
    prop_oneof![
        Just(Ok(None)),
        marker().prop_map(|m| Ok(Some(m))),
        Just(Err(MarkerError::BadChecksum)),
        any::<u32>().prop_map(|v| Err(MarkerError::UnsupportedVersion(v))),
    ]
}

fn region() -> impl Strategy<Value = RegionEvidence> {
    prop_oneof![
        Just(RegionEvidence::NoRegionRecords),
        any::<u64>().prop_map(|epoch| RegionEvidence::Ours { epoch }),
    ]
}

/// Random bytes, often with the marker's magic and version in place, known
/// codes for state and writer, and sometimes a checksum that holds, so that
/// every check of the decoder is reached.
fn record() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(any::<u8>(), MARKER_BYTES),
        any::<u8>(),
    )
        .prop_map(|(mut b, mode)| {
            if mode & 1 != 0 {
                b[..8].copy_from_slice(b"RLMARKER");
            }
            if mode & 2 != 0 {
                b[8..12].copy_from_slice(&1u32.to_le_bytes());
            }
            if mode & 4 != 0 {
                let state = 1 + u32::from(b[100] & 1);
                let writer = 1 + u32::from(b[101] % 5);
                b[fields::STATE.range()].copy_from_slice(&state.to_le_bytes());
                b[fields::WRITER.range()].copy_from_slice(&writer.to_le_bytes());
            }
            if mode & 8 != 0 {
                let crc = SoftwareCrc32c.checksum(&b[..fields::CHECKSUM.offset]);
                b[fields::CHECKSUM.range()].copy_from_slice(&crc.to_le_bytes());
            }
            b
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn nothing_decodes_as_a_marker_unless_its_checksum_holds(bytes in record()) {
        let crc = SoftwareCrc32c.checksum(&bytes[..fields::CHECKSUM.offset]);
        let sealed = bytes[fields::CHECKSUM.range()] == crc.to_le_bytes();
        let headed = &bytes[..8] == b"RLMARKER" && bytes[8..12] == 1u32.to_le_bytes();
        let codes = |f: rapilog_format::field::Field, max: u32| {
            let v = u32::from_le_bytes(bytes[f.range()].try_into().unwrap());
            (1..=max).contains(&v)
        };
        let known = codes(fields::STATE, 2) && codes(fields::WRITER, 5);
        let decoded = DiskMarker::decode(&bytes, SoftwareCrc32c);
        prop_assert_eq!(
            matches!(decoded, Ok(Some(_))),
            headed && sealed && known,
            "{:?}",
            decoded
        );
    }

    #[test]
    fn encode_then_decode_gives_the_marker_back(m in marker(), filler in any::<u8>()) {
        let mut out = [filler; MARKER_BYTES];
        m.encode(&mut out, SoftwareCrc32c);
        prop_assert_eq!(DiskMarker::decode(&out, SoftwareCrc32c), Ok(Some(m)));
        prop_assert!(out[fields::RESERVED.range()].iter().all(|&b| b == 0));
    }

    #[test]
    fn any_flipped_bit_of_a_marker_is_caught(m in marker(), bit in 0..MARKER_BYTES * 8) {
        let mut out = [0u8; MARKER_BYTES];
        m.encode(&mut out, SoftwareCrc32c);
        out[bit / 8] ^= 1 << (bit % 8);
        // One flipped bit never yields another marker, nor "no marker".
        prop_assert!(DiskMarker::decode(&out, SoftwareCrc32c).is_err());
    }

    #[test]
    fn a_live_marker_of_another_epoch_never_proceeds(
        m in marker(),
        region_epoch in any::<u64>(),
        same in any::<bool>(),
    ) {
        let m = DiskMarker { state: MarkerState::Live, ..m };
        let region_epoch = if same { m.epoch } else { region_epoch };
        let ours = check_marker(Ok(Some(m)), RegionEvidence::Ours { epoch: region_epoch });
        prop_assert_eq!(ours == MarkerVerdict::Proceed, region_epoch == m.epoch);
        prop_assert!(
            check_marker(Ok(Some(m)), RegionEvidence::NoRegionRecords) != MarkerVerdict::Proceed
        );
    }

    #[test]
    fn the_decision_is_total_and_only_a_live_or_damaged_marker_alarms(
        marker in decoded(),
        region in region(),
    ) {
        let verdict = check_marker(marker, region);
        let alarming = match marker {
            Err(_) => true,
            Ok(Some(m)) if m.state == MarkerState::Live => match region {
                RegionEvidence::Ours { epoch } => epoch != m.epoch,
                RegionEvidence::NoRegionRecords => true,
            },
            Ok(_) => false,
        };
        prop_assert_eq!(verdict != MarkerVerdict::Proceed, alarming);
    }
}
