// SPDX-License-Identifier: GPL-2.0

//! Replay planner: what is applied, what is skipped and why, what is refused.

use rapilog_format::descriptor::fields as descriptor_fields;
use rapilog_format::test_helpers::{
    compact_geometry, disk, model_disk, pattern, replay_into, RegionImage,
};
use rapilog_format::{
    marker_area, plan_replay, ActiveSuperblock, Crc32c, DiskMarker, LoadError, MarkerState,
    MarkerWriter, ReplayRefusal, ReplayWrite, Replayer, SkipCounts, SoftwareCrc32c, SuperblockCopy,
    SuperblockError, DESCRIPTOR_BYTES, SUPERBLOCK_BYTES,
};

fn writes(region: &[u8]) -> Vec<(u64, u64, Vec<u8>)> {
    let image_disk = ActiveSuperblock::load(region, SoftwareCrc32c)
        .unwrap()
        .superblock
        .disk;
    plan_replay(region, &image_disk, SoftwareCrc32c)
        .unwrap()
        .map(|w: ReplayWrite<'_>| (w.seq, w.sector, w.data.to_vec()))
        .collect()
}

fn skipped(region: &[u8]) -> SkipCounts {
    let image_disk = ActiveSuperblock::load(region, SoftwareCrc32c)
        .unwrap()
        .superblock
        .disk;
    let mut plan = plan_replay(region, &image_disk, SoftwareCrc32c).unwrap();
    plan.by_ref().for_each(drop);
    plan.report().skipped
}

/// Rewrites a field of a published descriptor and reseals its checksum, as
/// a buggy writer would produce.
fn forge_descriptor(
    image: &mut RegionImage,
    slot: u32,
    field: rapilog_format::field::Field,
    value: u64,
) {
    let range = image
        .active()
        .superblock
        .geometry
        .descriptor_range(slot)
        .unwrap();
    let bytes = &mut image.bytes_mut()[range];
    bytes[field.range()].copy_from_slice(&value.to_le_bytes()[..field.size]);
    let crc = SoftwareCrc32c.checksum(&bytes[..60]);
    bytes[60..64].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn empty_region_applies_nothing() {
    let image = RegionImage::small();
    assert!(writes(image.bytes()).is_empty());
    assert_eq!(
        skipped(image.bytes()),
        SkipCounts {
            empty: 4,
            ..SkipCounts::default()
        }
    );
}

#[test]
fn records_come_back_in_order_with_their_bytes() {
    let mut image = RegionImage::small();
    let a = pattern(1, 1024);
    let b = pattern(2, 512);
    image.append(10, &a).unwrap();
    image.append(11, &b).unwrap();
    assert_eq!(writes(image.bytes()), vec![(0, 10, a), (1, 11, b)]);
}

#[test]
fn overlapping_records_newest_wins_on_the_disk() {
    let mut image = RegionImage::small();
    image.append(4, &pattern(1, 1024)).unwrap();
    image.append(5, &pattern(2, 512)).unwrap();
    let mut disk_bytes = model_disk(64);
    let report = replay_into(image.bytes(), &image.disk(), &mut disk_bytes).unwrap();
    assert_eq!(report.records_applied, 2);
    assert_eq!(&disk_bytes[4 * 512..5 * 512], &pattern(1, 1024)[..512]);
    assert_eq!(&disk_bytes[5 * 512..6 * 512], &pattern(2, 512)[..]);
}

#[test]
fn torn_record_does_not_hide_the_next_one() {
    let data = pattern(7, 1024);
    // Tear the payload at every 64th byte and the descriptor at every byte.
    for payload_bytes in (0..=1024).step_by(64) {
        for descriptor_bytes in 0..DESCRIPTOR_BYTES {
            let mut image = RegionImage::small();
            image
                .append_torn(20, &data, payload_bytes, descriptor_bytes)
                .unwrap();
            image.append(30, &pattern(8, 512)).unwrap();
            let got = writes(image.bytes());
            assert_eq!(
                got,
                vec![(1, 30, pattern(8, 512))],
                "payload {payload_bytes} descriptor {descriptor_bytes}"
            );
        }
    }
}

#[test]
fn fully_published_descriptor_over_a_partial_payload_is_caught() {
    // Breaks the protocol (descriptor before payload) on purpose: the payload
    // checksum still keeps garbage off the disk.
    let mut image = RegionImage::small();
    image
        .append_torn(20, &pattern(7, 1024), 1000, DESCRIPTOR_BYTES)
        .unwrap();
    assert!(writes(image.bytes()).is_empty());
    assert_eq!(skipped(image.bytes()).bad_payload_checksum, 1);
}

#[test]
fn payload_bit_flip_is_skipped_and_counted() {
    let mut image = RegionImage::small();
    let r = image.append(3, &pattern(1, 512)).unwrap();
    image.append(4, &pattern(2, 512)).unwrap();
    let geometry = image.active().superblock.geometry;
    let payload = geometry.payload_range(r.ring_offset, r.length).unwrap();
    image.flip_bit(payload.start * 8 + 1000);
    assert_eq!(writes(image.bytes()), vec![(1, 4, pattern(2, 512))]);
    assert_eq!(skipped(image.bytes()).bad_payload_checksum, 1);
}

#[test]
fn records_below_the_durable_tail_are_stale() {
    let mut image = RegionImage::small();
    image.append(1, &pattern(1, 512)).unwrap();
    image.append(2, &pattern(2, 512)).unwrap();
    image.append(3, &pattern(3, 512)).unwrap();
    image.advance_tail_through(1);
    assert_eq!(writes(image.bytes()), vec![(2, 3, pattern(3, 512))]);
    // Window 2..6: slot 2 holds seq 2; slots 3 empty; slots 0 and 1 hold
    // seqs 0 and 1, which are other laps for seqs 4 and 5.
    assert_eq!(
        skipped(image.bytes()),
        SkipCounts {
            empty: 1,
            stale: 2,
            ..SkipCounts::default()
        }
    );
}

#[test]
fn reused_slots_and_ring_never_resurrect_old_records() {
    let mut image = RegionImage::small();
    for i in 0..20u64 {
        let r = image
            .append(i, &pattern(i, 512 * (1 + i as usize % 2)))
            .unwrap();
        image.advance_tail_through(r.seq);
    }
    assert!(writes(image.bytes()).is_empty());
    let s = skipped(image.bytes());
    assert_eq!(s.stale, 4);
}

#[test]
fn other_epoch_is_never_applied() {
    let mut image = RegionImage::small();
    image.append(5, &pattern(1, 512)).unwrap();
    image.update_superblock(SUPERBLOCK_BYTES, |sb| sb.epoch = sb.epoch.wrapping_add(1));
    assert!(writes(image.bytes()).is_empty());
    assert_eq!(skipped(image.bytes()).wrong_epoch, 1);
}

#[test]
fn wrong_disk_is_refused() {
    let mut image = RegionImage::small();
    image.append(5, &pattern(1, 512)).unwrap();
    let mine = image.disk();
    let refusal = |target| plan_replay(image.bytes(), &target, SoftwareCrc32c).err();
    assert_eq!(
        refusal(disk("other-disk", 64, 512)),
        Some(ReplayRefusal::DiskIdMismatch)
    );
    assert_eq!(
        refusal(rapilog_format::DiskIdentity {
            sectors: 65,
            ..mine
        }),
        Some(ReplayRefusal::DiskSizeMismatch {
            region: 64,
            target: 65
        })
    );
    assert_eq!(
        refusal(rapilog_format::DiskIdentity {
            block_bytes: 4096,
            ..mine
        }),
        Some(ReplayRefusal::BlockSizeMismatch {
            region: 512,
            target: 4096
        })
    );
    assert!(refusal(mine).is_none());
}

#[test]
fn bad_magic_version_and_truncation_are_refused() {
    let image = RegionImage::small();
    let target = image.disk();
    let mut bad = image.bytes().to_vec();
    bad[0] ^= 0xFF;
    bad[SUPERBLOCK_BYTES + 8] = 9;
    assert_eq!(
        plan_replay(&bad, &target, SoftwareCrc32c).err(),
        Some(ReplayRefusal::Load(LoadError::NoValidCopy {
            first: SuperblockError::BadMagic,
            second: SuperblockError::UnsupportedVersion(9),
        }))
    );
    let short = &image.bytes()[..image.bytes().len() - 512];
    assert!(matches!(
        plan_replay(short, &target, SoftwareCrc32c).err(),
        Some(ReplayRefusal::Load(LoadError::RegionTruncated { .. }))
    ));
}

#[test]
fn record_past_the_end_of_the_disk_is_skipped() {
    // The small image's disk: 64 sectors, data area 0..56.
    let mut image = RegionImage::small();
    image.append(63, &pattern(1, 1024)).unwrap();
    image.append(54, &pattern(2, 1024)).unwrap(); // ends exactly at the data area's end
    assert_eq!(writes(image.bytes()), vec![(1, 54, pattern(2, 1024))]);
    assert_eq!(skipped(image.bytes()).beyond_disk, 1);
    forge_descriptor(&mut image, 1, descriptor_fields::SECTOR, u64::MAX - 1);
    assert_eq!(skipped(image.bytes()).beyond_disk, 2);
}

#[test]
fn replay_never_writes_into_the_marker_area() {
    let mut image = RegionImage::new(
        compact_geometry(8, 8192, 2048),
        disk("test-disk", 64, 512),
        0x3A7,
    );
    let target = image.disk();
    let area = marker_area(&target).unwrap();
    assert_eq!((area.first_sector, area.sectors), (56, 8));
    // Acknowledged records that reach into the marker area (as an older,
    // marker-less writer could have made them): straddling its start, on
    // the marker record itself, on the last sector of the disk.
    image.append(55, &pattern(1, 1024)).unwrap();
    image.append(56, &pattern(2, 512)).unwrap();
    image.append(60, &pattern(3, 2048)).unwrap();
    image.append(63, &pattern(4, 512)).unwrap();
    // The last sector of the data area is applied.
    image.append(55, &pattern(5, 512)).unwrap();
    let mut disk_bytes = model_disk(64);
    let marker = DiskMarker {
        state: MarkerState::Live,
        epoch: image.active().superblock.epoch,
        region_phys: 0x6000_0000,
        region_bytes: image.bytes().len() as u64,
        generation: 3,
        written_at_unix_secs: 1_800_000_000,
        writer: MarkerWriter::Module,
    };
    marker.encode_area(&mut disk_bytes[56 * 512..], SoftwareCrc32c);
    let before = disk_bytes.clone();
    let report = replay_into(image.bytes(), &target, &mut disk_bytes).unwrap();
    assert_eq!(report.records_applied, 1);
    assert_eq!(report.skipped.beyond_disk, 4, "{:?}", report.skipped);
    assert_eq!(disk_bytes[55 * 512..56 * 512], pattern(5, 512)[..]);
    assert!(
        disk_bytes[56 * 512..] == before[56 * 512..],
        "replay wrote into the marker area"
    );
    assert_eq!(
        DiskMarker::decode(&disk_bytes[56 * 512..], SoftwareCrc32c),
        Ok(Some(marker))
    );
    assert_eq!(disk_bytes[..55 * 512], before[..55 * 512]);
}

#[test]
fn disk_without_room_for_the_marker_area_is_refused() {
    // 15 sectors: less than twice the 8-sector marker area.
    let image = RegionImage::new(compact_geometry(4, 2048, 1024), disk("tiny", 15, 512), 9);
    assert_eq!(
        plan_replay(image.bytes(), &image.disk(), SoftwareCrc32c).err(),
        Some(ReplayRefusal::DiskTooSmall {
            sectors: 15,
            block_bytes: 512
        })
    );
    let image = RegionImage::new(compact_geometry(4, 2048, 1024), disk("min", 16, 512), 9);
    let plan = plan_replay(image.bytes(), &image.disk(), SoftwareCrc32c).unwrap();
    assert_eq!(plan.data_sectors(), 8);
}

#[test]
fn impossible_descriptors_are_malformed() {
    let cases = [
        (descriptor_fields::LENGTH, 0),
        (descriptor_fields::LENGTH, 100),
        (descriptor_fields::LENGTH, 1536),
        (descriptor_fields::RING_OFFSET, 100),
        (descriptor_fields::RING_OFFSET, 1536),
        (descriptor_fields::RING_OFFSET, u64::MAX - 511),
        (descriptor_fields::FLAGS, 1),
        (descriptor_fields::MAGIC, 0),
    ];
    for (field, value) in cases {
        let mut image = RegionImage::small();
        image.append(8, &pattern(1, 1024)).unwrap();
        forge_descriptor(&mut image, 0, field, value);
        assert!(writes(image.bytes()).is_empty(), "{} = {value}", field.name);
        assert_eq!(
            skipped(image.bytes()).malformed,
            1,
            "{} = {value}",
            field.name
        );
    }
    // A record of another slot's sequence number.
    let mut image = RegionImage::small();
    image.append(8, &pattern(1, 512)).unwrap();
    forge_descriptor(&mut image, 0, descriptor_fields::SEQ, 1);
    assert_eq!(skipped(image.bytes()).malformed, 1);
}

#[test]
fn records_misaligned_for_the_disk_block_are_malformed() {
    let geometry = compact_geometry(4, 32768, 8192);
    let mut image = RegionImage::new(geometry, disk("4kn", 1024, 4096), 3);
    image.append(8, &pattern(1, 4096)).unwrap();
    image.append(9, &pattern(2, 4096)).unwrap();
    image.append(16, &pattern(3, 1024)).unwrap();
    image.append(24, &pattern(4, 8192)).unwrap();
    let got: Vec<_> = writes(image.bytes())
        .into_iter()
        .map(|(seq, sector, _)| (seq, sector))
        .collect();
    assert_eq!(got, vec![(0, 8), (3, 24)]);
    assert_eq!(skipped(image.bytes()).malformed, 2);
}

#[test]
fn maximum_record_replays() {
    let mut image = RegionImage::small();
    let max = image.active().superblock.geometry.max_record_bytes as usize;
    image.append(0, &pattern(1, max)).unwrap();
    image.append(2, &pattern(2, max)).unwrap();
    assert_eq!(writes(image.bytes()).len(), 2);
    assert!(image.append(4, &pattern(3, 512)).unwrap_err().is_full());
}

#[test]
fn replaying_twice_gives_the_same_disk() {
    let mut image = RegionImage::small();
    image.append(4, &pattern(1, 1024)).unwrap();
    image.append(5, &pattern(2, 512)).unwrap();
    image.append_torn(6, &pattern(3, 512), 100, 10).unwrap();
    let mut once = model_disk(64);
    replay_into(image.bytes(), &image.disk(), &mut once).unwrap();
    let mut twice = once.clone();
    replay_into(image.bytes(), &image.disk(), &mut twice).unwrap();
    assert_eq!(once, twice);
}

#[test]
fn recording_the_replay_empties_the_window() {
    let mut image = RegionImage::small();
    image.append(4, &pattern(1, 1024)).unwrap();
    image.append_torn(6, &pattern(3, 512), 512, 10).unwrap();
    let target = image.disk();
    let region = image.bytes().to_vec();
    let mut plan = plan_replay(&region, &target, SoftwareCrc32c).unwrap();
    assert!(plan.replayed_superblock(Replayer::Rescue, 1, 2).is_none());
    assert_eq!(plan.by_ref().count(), 1);
    let update = plan
        .replayed_superblock(Replayer::Rescue, 1_700_000_000, 1500)
        .unwrap();
    assert_eq!(update.copy, image.active().copy.other());
    assert_eq!(update.superblock.durable_tail, 4);
    let mut encoded = [0u8; SUPERBLOCK_BYTES];
    update.superblock.encode(&mut encoded, SoftwareCrc32c);
    let mut replayed = region.clone();
    replayed[update.copy.range()].copy_from_slice(&encoded);
    let loaded = ActiveSuperblock::load(&replayed, SoftwareCrc32c).unwrap();
    assert_eq!(loaded, update);
    let last = loaded.superblock.last_replay;
    assert_eq!(
        (last.replayer, last.from_seq, last.duration_us),
        (Replayer::Rescue, 0, 1500)
    );
    assert_eq!(last.report.records_applied, 1);
    assert_eq!(last.report.skipped.bad_descriptor_checksum, 1);
    assert!(writes(&replayed).is_empty());
}

#[test]
fn torn_tail_update_falls_back_to_the_older_tail() {
    for cut in [1, 32, 200, 508, 511] {
        let mut image = RegionImage::small();
        image.append(1, &pattern(1, 512)).unwrap();
        image.append(2, &pattern(2, 512)).unwrap();
        let before = image.active().copy;
        // The crash tears the update that would mark record 0 durable.
        image.update_superblock(cut, |sb| sb.durable_tail = 1);
        let loaded = ActiveSuperblock::load(image.bytes(), SoftwareCrc32c).unwrap();
        assert_eq!(loaded.copy, before, "cut {cut}");
        assert_eq!(writes(image.bytes()).len(), 2, "cut {cut}");
    }
}

#[test]
fn either_copy_may_be_the_torn_one() {
    for copy in [SuperblockCopy::First, SuperblockCopy::Second] {
        let mut image = RegionImage::small();
        image.append(1, &pattern(1, 512)).unwrap();
        // Move the active copy to `copy.other()`, so the next update goes to `copy`.
        while image.active().copy != copy.other() {
            image.update_superblock(SUPERBLOCK_BYTES, |_| {});
        }
        image.update_superblock(100, |sb| sb.durable_tail = 1);
        assert_eq!(
            ActiveSuperblock::load(image.bytes(), SoftwareCrc32c)
                .unwrap()
                .copy,
            copy.other()
        );
        assert_eq!(writes(image.bytes()).len(), 1);
    }
}

#[test]
fn generation_wrap_keeps_the_newer_copy() {
    let mut image = RegionImage::small();
    image.update_superblock(SUPERBLOCK_BYTES, |sb| sb.generation = u64::MAX - 1);
    image.append(1, &pattern(1, 512)).unwrap();
    image.update_superblock(SUPERBLOCK_BYTES, |_| {});
    assert_eq!(image.active().superblock.generation, u64::MAX);
    image.update_superblock(SUPERBLOCK_BYTES, |sb| sb.durable_tail = 1);
    let loaded = ActiveSuperblock::load(image.bytes(), SoftwareCrc32c).unwrap();
    assert_eq!(
        (loaded.superblock.generation, loaded.superblock.durable_tail),
        (0, 1)
    );
    assert!(writes(image.bytes()).is_empty());
}
