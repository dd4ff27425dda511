// SPDX-License-Identifier: GPL-2.0

//! The replay engine on in-memory regions and disks: what reaches the disk,
//! what is reported, what is recorded in the region, and what every failure
//! leaves behind.

mod common;

use std::cell::RefCell;
use std::io;
use std::rc::Rc;

use common::{mixed, Scenario, DISK_ID};
use rapilog_format::test_helpers::pattern;
use rapilog_format::{
    ActiveSuperblock, DiskId, DiskIdentity, DiskMarker, LossReason, MarkerError, MarkerState,
    MarkerWriter, RegionState, Replayer, SoftwareCrc32c, SuperblockCopy,
};
use rapilog_replay::engine::{
    describe_outcome, replay, report_fields, Failure, FailureKind, MarkerOutcome, OpenedTarget,
    Outcome, ReplayOptions, ReportWrite,
};
use rapilog_replay::region::MemoryRegion;
use rapilog_replay::target::{BlockTarget, MemoryDisk};

fn options() -> ReplayOptions {
    ReplayOptions {
        replayer: Replayer::Rescue,
        dry_run: false,
        expected_id: None,
    }
}

fn region_of(s: &Scenario) -> MemoryRegion {
    MemoryRegion {
        bytes: s.image.bytes().to_vec(),
        fail_writes: None,
    }
}

/// Runs a replay onto `disk` presented with the region's own size and
/// block size unless overridden. Returns the result and whether the disk
/// was asked for.
fn run(
    region: &mut MemoryRegion,
    disk: &mut MemoryDisk,
    options: &ReplayOptions,
    geometry: Option<(u64, u32)>,
) -> (Result<Outcome, Failure>, bool) {
    let shared = Rc::new(RefCell::new(std::mem::take(disk)));
    let mut opened = false;
    let result = replay(
        region,
        options,
        |wanted: &DiskIdentity, _log| {
            opened = true;
            // Asked by id alone (the region was refused): the disk's own size.
            let own = (shared.borrow().bytes.len() as u64 / 512, 512);
            let asked = (wanted.sectors, wanted.block_bytes);
            let (sectors, block_bytes) =
                geometry.unwrap_or(if wanted.sectors == 0 { own } else { asked });
            Ok(OpenedTarget {
                disk: Shared(Rc::clone(&shared)),
                sectors,
                block_bytes,
                description: "memory disk".into(),
            })
        },
        &mut |_| {},
    );
    *disk = shared.take();
    (result, opened)
}

struct Shared(Rc<RefCell<MemoryDisk>>);

impl BlockTarget for Shared {
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.borrow_mut().read_at(buf, offset)
    }
    fn write_at(&mut self, data: &[u8], offset: u64) -> io::Result<()> {
        self.0.borrow_mut().write_at(data, offset)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.borrow_mut().flush()
    }
}

/// Compares two disks, naming the first differing sector.
#[track_caller]
fn assert_same(actual: &[u8], expected: &[u8], what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    if let Some(at) = actual.iter().zip(expected).position(|(a, b)| a != b) {
        panic!(
            "{what}: first difference at byte {at} (sector {})",
            at / 512
        );
    }
}

fn memory_disk(bytes: &[u8]) -> MemoryDisk {
    MemoryDisk {
        bytes: bytes.to_vec(),
        ..Default::default()
    }
}

fn load(region: &MemoryRegion) -> ActiveSuperblock {
    ActiveSuperblock::load(&region.bytes, SoftwareCrc32c).unwrap()
}

#[test]
fn applies_every_published_record_and_records_the_report() {
    let (s, ranges) = mixed();
    let mut region = region_of(&s);
    let before = load(&region);
    let mut disk = memory_disk(&s.disk_before);
    let (result, opened) = run(&mut region, &mut disk, &options(), None);
    let outcome = result.unwrap();
    assert!(opened);
    assert_same(
        &disk.bytes,
        &s.expected,
        "disk differs from what the writer acknowledged",
    );
    assert_eq!(
        disk.writes,
        ranges
            .iter()
            .map(|&(sector, len)| (sector * 512, len))
            .collect::<Vec<_>>(),
        "writes not in sequence order"
    );
    assert_eq!(disk.flushes, 1);
    let r = outcome.report;
    assert_eq!((r.records_applied, r.bytes_applied), (4, 2048 + 512 * 3));
    assert_eq!(r.skipped.bad_descriptor_checksum, 1);
    // window 1..9: seqs 6 and 7 never written, slot of seq 8 holds seq 0
    assert_eq!((r.skipped.empty, r.skipped.stale), (2, 1));
    assert_eq!(outcome.exit_code(), 0);

    // The report is in the superblock: the older copy, generation + 1.
    let ReportWrite::Written(next) = outcome.report_write else {
        panic!("report not written: {:?}", outcome.report_write)
    };
    let after = load(&region);
    assert_eq!(after, next);
    assert_eq!(after.copy, before.copy.other());
    assert_eq!(
        after.superblock.generation,
        before.superblock.generation + 1
    );
    let sb = after.superblock;
    assert_eq!(sb.state, RegionState::Clean);
    assert_eq!(sb.durable_tail, outcome.window.end);
    assert_eq!(sb.last_replay.replayer, Replayer::Rescue);
    assert_eq!(sb.last_replay.from_seq, before.superblock.durable_tail);
    assert_eq!(sb.last_replay.report, r);
    assert_eq!(sb.last_replay.duration_us, outcome.duration_us);
    assert!(sb.last_replay.finished_at_unix_secs > 1_700_000_000);
    // Only the superblock copy changed in the region.
    let range = after.copy.range();
    assert_same(
        &region.bytes[..range.start],
        &s.image.bytes()[..range.start],
        "region",
    );
    assert_same(
        &region.bytes[range.end..],
        &s.image.bytes()[range.end..],
        "region",
    );

    let text = describe_outcome(&outcome).join("\n");
    assert!(
        text.contains("applied 4 record(s), 3584 bytes onto memory disk"),
        "{text}"
    );
    assert!(text.contains("1 torn or bad descriptor"), "{text}");
    let fields = report_fields(&outcome);
    assert!(
        fields.starts_with("applied=4 bytes=3584 empty=2 bad_descriptor=1 malformed=0"),
        "{fields}"
    );
    assert!(fields.ends_with("region=written exit=0"), "{fields}");
}

#[test]
fn replaying_again_changes_nothing() {
    let (s, _) = mixed();
    let mut region = region_of(&s);
    let mut disk = memory_disk(&s.disk_before);
    run(&mut region, &mut disk, &options(), None).0.unwrap();
    let region_once = region.bytes.clone();
    let disk_once = disk.bytes.clone();
    let mut disk = memory_disk(&disk_once);
    let (result, opened) = run(&mut region, &mut disk, &options(), None);
    let outcome = result.unwrap();
    assert!(opened, "the disk is opened for its marker");
    assert!(disk.writes.is_empty() && disk.flushes == 0, "disk written");
    assert_eq!(outcome.report.records_applied, 0);
    assert_eq!(outcome.report_write, ReportWrite::AlreadyClean);
    assert_same(
        &region.bytes,
        &region_once,
        "the first replay's report was overwritten",
    );
    assert_same(&disk.bytes, &disk_once, "disk");
    let text = describe_outcome(&outcome).join("\n");
    assert!(
        text.contains("already clean") && text.contains("Rescue, 4 record(s)"),
        "{text}"
    );
}

#[test]
fn torn_record_is_never_written_and_never_hides_the_next() {
    let mut s = Scenario::new(512);
    s.write(1, 512, 10);
    for descriptor_bytes in [0, 1, 32, 63] {
        s.torn(8, 1024, 11, descriptor_bytes);
    }
    s.write(9, 512, 12); // overlaps the torn record's range
    let mut region = region_of(&s);
    let mut disk = memory_disk(&s.disk_before);
    let outcome = run(&mut region, &mut disk, &options(), None).0.unwrap();
    assert_same(&disk.bytes, &s.expected, "disk");
    // sector 8 keeps its old content
    assert_eq!(
        disk.bytes[8 * 512..9 * 512],
        s.disk_before[8 * 512..9 * 512]
    );
    assert_eq!(outcome.report.records_applied, 2);
    // descriptor prefix of 0 bytes is an empty slot; the others are torn
    assert_eq!(outcome.report.skipped.bad_descriptor_checksum, 3);
    // the tear with no descriptor byte, and the two slots never used
    assert_eq!(outcome.report.skipped.empty, 3);
    assert_eq!(
        outcome.exit_code(),
        0,
        "torn records are expected at a crash"
    );
}

#[test]
fn corrupted_payload_is_skipped_reported_and_never_written() {
    let mut s = Scenario::new(512);
    s.write(0, 512, 20);
    let bad = s.write(40, 1024, 21);
    s.write(50, 512, 22);
    let at = s.payload_offset(bad) + 700;
    s.image.bytes_mut()[at] ^= 0x10;
    // Expected: everything except the damaged record.
    let mut expected = s.expected.clone();
    expected[40 * 512..42 * 512].copy_from_slice(&s.disk_before[40 * 512..42 * 512]);
    let mut region = region_of(&s);
    let mut disk = memory_disk(&s.disk_before);
    let outcome = run(&mut region, &mut disk, &options(), None).0.unwrap();
    assert_same(&disk.bytes, &expected, "disk");
    assert_eq!(outcome.report.skipped.bad_payload_checksum, 1);
    assert_eq!(outcome.report.records_applied, 2);
    assert_eq!(
        outcome.exit_code(),
        1,
        "damaged acknowledged data must show in the exit code"
    );
    let text = describe_outcome(&outcome).join("\n");
    assert!(text.contains("WARNING: 1 damaged record(s)"), "{text}");
    // and the region records it
    assert_eq!(
        load(&region)
            .superblock
            .last_replay
            .report
            .skipped
            .bad_payload_checksum,
        1
    );
}

#[test]
fn corrupted_descriptor_is_skipped() {
    let mut s = Scenario::new(512);
    let bad = s.write(3, 512, 30);
    s.write(4, 512, 31);
    let at = s.descriptor_offset(bad) + 24; // the sector field
    s.image.bytes_mut()[at] ^= 0x01;
    let mut expected = s.expected.clone();
    expected[3 * 512..4 * 512].copy_from_slice(&s.disk_before[3 * 512..4 * 512]);
    let mut region = region_of(&s);
    let mut disk = memory_disk(&s.disk_before);
    let outcome = run(&mut region, &mut disk, &options(), None).0.unwrap();
    assert_same(&disk.bytes, &expected, "disk");
    assert_eq!(outcome.report.skipped.bad_descriptor_checksum, 1);
}

#[test]
fn four_kib_blocks() {
    let mut s = Scenario::new(4096);
    s.write(8, 4096, 40);
    s.write(0, 8192, 41);
    s.write(240, 4096, 42); // the last block of the data area
    let mut region = region_of(&s);
    let mut disk = memory_disk(&s.disk_before);
    let outcome = run(&mut region, &mut disk, &options(), None).0.unwrap();
    assert_same(&disk.bytes, &s.expected, "disk");
    assert_eq!(outcome.report.records_applied, 3);
}

#[test]
fn wrapped_ring_with_the_tail_behind() {
    let mut s = Scenario::new(512);
    let mut last = 0;
    for i in 0..20u64 {
        let len = [512, 1024, 2048][i as usize % 3];
        last = s.write(i * 7 % 200, len, 100 + i);
        if i % 4 == 3 {
            s.write_back_through(last - 1);
        }
    }
    let mut region = region_of(&s);
    let mut disk = memory_disk(&s.disk_before);
    let outcome = run(&mut region, &mut disk, &options(), None).0.unwrap();
    assert_same(&disk.bytes, &s.expected, "disk");
    assert!(outcome.window.start > 0 && outcome.window.contains(&last));
}

#[test]
fn idle_region_is_marked_clean_and_its_disk_only_gets_the_marker() {
    let s = Scenario::new(512); // formatted, dirty, no records
    let mut region = region_of(&s);
    let mut before = s.disk_before.clone();
    let live = put_marker(&mut before, live_marker(&s, 4));
    let mut disk = memory_disk(&before);
    let (result, opened) = run(&mut region, &mut disk, &options(), None);
    let outcome = result.unwrap();
    assert!(opened, "the disk is needed for its marker");
    assert_eq!(outcome.report.records_applied, 0);
    assert!(matches!(outcome.report_write, ReportWrite::Written(_)));
    assert_eq!(load(&region).superblock.state, RegionState::Clean);
    // The marker area is the only thing written, then flushed.
    assert_eq!(disk.writes, vec![(MARKER_AT, 4096)]);
    assert_eq!(disk.flushes, 1);
    let clean = marker_on(&disk.bytes).unwrap().unwrap();
    assert_eq!(
        clean,
        live.cleaned(MarkerWriter::Rescue, clean.written_at_unix_secs)
    );
    assert_same(
        &disk.bytes[..MARKER_AT as usize],
        &before[..MARKER_AT as usize],
        "data area",
    );
}

#[test]
fn idle_region_without_its_disk_still_finishes_and_says_the_marker_was_not_checked() {
    let s = Scenario::new(512);
    let mut region = MemoryRegion {
        bytes: s.image.bytes().to_vec(),
        fail_writes: None,
    };
    let outcome = replay(
        &mut region,
        &options(),
        |_: &DiskIdentity, _: &mut dyn FnMut(&str)| -> Result<OpenedTarget<MemoryDisk>, Failure> {
            Err(Failure::new(
                FailureKind::Disk,
                "no disk has identity serial:rl-log",
            ))
        },
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(outcome.target, None);
    assert!(matches!(outcome.marker, MarkerOutcome::NotChecked { .. }));
    assert_eq!(outcome.exit_code(), 0);
    assert_eq!(load(&region).superblock.state, RegionState::Clean);
    let text = describe_outcome(&outcome).join("\n");
    assert!(
        text.contains("WARNING: the log disk's loss marker was not checked (no disk has identity"),
        "{text}"
    );
    assert!(report_fields(&outcome).contains("marker=not-checked"));
}

#[test]
fn dry_run_writes_nothing_anywhere() {
    let (s, _) = mixed();
    let mut region = region_of(&s);
    let mut disk = memory_disk(&s.disk_before);
    let opts = ReplayOptions {
        dry_run: true,
        ..options()
    };
    let (result, opened) = run(&mut region, &mut disk, &opts, None);
    let outcome = result.unwrap();
    assert!(opened, "a dry run still checks the disk");
    assert_eq!(outcome.report.records_applied, 4);
    assert_eq!(outcome.report_write, ReportWrite::DryRun);
    assert!(disk.writes.is_empty() && disk.flushes == 0);
    assert_same(&region.bytes, s.image.bytes(), "region");
    assert!(report_fields(&outcome).contains("region=dry-run"));
}

fn assert_refused(
    s: &Scenario,
    options: &ReplayOptions,
    geometry: Option<(u64, u32)>,
    kind: FailureKind,
    needle: &str,
) -> bool {
    let mut region = region_of(s);
    let mut disk = memory_disk(&s.disk_before);
    let (result, opened) = run(&mut region, &mut disk, options, geometry);
    let failure = result.unwrap_err();
    assert_eq!(failure.kind, kind, "{}", failure.message);
    assert!(failure.message.contains(needle), "{}", failure.message);
    assert!(
        failure.message.contains("nothing written"),
        "{}",
        failure.message
    );
    assert!(disk.writes.is_empty() && disk.flushes == 0, "disk written");
    assert_same(&disk.bytes, &s.disk_before, "disk");
    assert_same(&region.bytes, s.image.bytes(), "region written");
    opened
}

#[test]
fn region_of_another_disk_is_refused_before_any_write() {
    let (s, _) = mixed();
    let other = ReplayOptions {
        expected_id: DiskId::new(b"serial:rl-other"),
        ..options()
    };
    // The configured disk is opened only to read its marker (it has none).
    assert_refused(
        &s,
        &other,
        None,
        FailureKind::Disk,
        "belongs to disk serial:rl-log but the configuration names disk serial:rl-other",
    );
    // Same id, wrong size or block size: refused by the planner.
    assert!(assert_refused(
        &s,
        &options(),
        Some((255, 512)),
        FailureKind::Disk,
        "256 sectors, target has 255"
    ));
    assert!(assert_refused(
        &s,
        &options(),
        Some((256, 4096)),
        FailureKind::Disk,
        "512-byte blocks, target has 4096"
    ));
    // Naming the right disk is fine.
    let same = ReplayOptions {
        expected_id: DiskId::new(DISK_ID.as_bytes()),
        ..options()
    };
    let mut region = region_of(&s);
    let mut disk = memory_disk(&s.disk_before);
    run(&mut region, &mut disk, &same, None).0.unwrap();
    assert_same(&disk.bytes, &s.expected, "disk");
}

#[test]
fn region_without_a_superblock_is_refused() {
    let (mut s, _) = mixed();
    s.image.bytes_mut()[..1024].fill(0);
    assert!(!assert_refused(
        &s,
        &options(),
        None,
        FailureKind::Region,
        "no valid superblock"
    ));
    let (mut s, _) = mixed();
    // both copies torn
    s.image.bytes_mut()[100] ^= 1;
    s.image.bytes_mut()[612] ^= 1;
    assert!(!assert_refused(
        &s,
        &options(),
        None,
        FailureKind::Region,
        "checksum mismatch"
    ));
}

#[test]
fn disk_write_error_leaves_the_region_for_another_replay() {
    let (s, _) = mixed();
    let mut region = region_of(&s);
    let mut disk = memory_disk(&s.disk_before);
    disk.fail_write = Some(2);
    let failure = run(&mut region, &mut disk, &options(), None).0.unwrap_err();
    assert_eq!(failure.kind, FailureKind::DiskIo);
    assert!(
        failure.message.contains("at sector 30"),
        "{}",
        failure.message
    );
    assert!(
        failure.message.contains("replay again"),
        "{}",
        failure.message
    );
    assert_same(
        &region.bytes,
        s.image.bytes(),
        "region changed after a failed replay",
    );
    // Replaying again onto the partly written disk gives the full result.
    let mut disk = memory_disk(&disk.bytes);
    run(&mut region, &mut disk, &options(), None).0.unwrap();
    assert_same(&disk.bytes, &s.expected, "disk");
}

#[test]
fn flush_error_leaves_the_region_for_another_replay() {
    let (s, _) = mixed();
    let mut region = region_of(&s);
    let mut disk = memory_disk(&s.disk_before);
    disk.fail_flush = true;
    let failure = run(&mut region, &mut disk, &options(), None).0.unwrap_err();
    assert_eq!(failure.kind, FailureKind::DiskIo);
    assert!(
        failure.message.starts_with("flushing memory disk failed"),
        "{}",
        failure.message
    );
    assert_same(&region.bytes, s.image.bytes(), "region");
}

#[test]
fn report_write_error_is_its_own_failure() {
    let (s, _) = mixed();
    let mut region = region_of(&s);
    region.fail_writes = Some(io::ErrorKind::PermissionDenied);
    let mut disk = memory_disk(&s.disk_before);
    let failure = run(&mut region, &mut disk, &options(), None).0.unwrap_err();
    assert_eq!(failure.kind, FailureKind::Report);
    assert!(
        failure.message.contains("disk replayed and flushed"),
        "{}",
        failure.message
    );
    assert_same(&disk.bytes, &s.expected, "disk");
    assert_eq!(disk.flushes, 1);
}

#[test]
fn report_goes_to_the_older_copy_whichever_it_is() {
    for updates in 0..3 {
        let mut s = Scenario::new(512);
        s.write(2, 512, 50);
        for _ in 0..updates {
            s.image.update_superblock(512, |_| {});
        }
        let before = s.image.active().copy;
        let mut region = region_of(&s);
        let mut disk = memory_disk(&s.disk_before);
        run(&mut region, &mut disk, &options(), None).0.unwrap();
        let after = load(&region).copy;
        assert_eq!(after, before.other());
        assert!(matches!(
            after,
            SuperblockCopy::First | SuperblockCopy::Second
        ));
        assert_eq!(disk.bytes[2 * 512..3 * 512], pattern(50, 512)[..]);
    }
}

/// The marker area of the scenarios' 256-sector disk: its last 8 sectors.
const MARKER_AT: u64 = 248 * 512;

/// A live marker for the scenario's region epoch.
fn live_marker(s: &Scenario, generation: u64) -> DiskMarker {
    DiskMarker {
        state: MarkerState::Live,
        epoch: s.image.active().superblock.epoch,
        region_phys: 0x6000_0000,
        region_bytes: s.image.bytes().len() as u64,
        generation,
        written_at_unix_secs: 1_800_000_000,
        writer: MarkerWriter::Module,
    }
}

/// Writes `marker` into the marker area of `disk`; returns it.
fn put_marker(disk: &mut [u8], marker: DiskMarker) -> DiskMarker {
    marker.encode_area(&mut disk[MARKER_AT as usize..], SoftwareCrc32c);
    marker
}

fn marker_on(disk: &[u8]) -> Result<Option<DiskMarker>, MarkerError> {
    DiskMarker::decode(&disk[MARKER_AT as usize..], SoftwareCrc32c)
}

#[test]
fn live_marker_is_written_clean_after_the_records_are_flushed() {
    let (s, ranges) = mixed();
    let mut region = region_of(&s);
    let mut before = s.disk_before.clone();
    let live = put_marker(&mut before, live_marker(&s, 41));
    let mut disk = memory_disk(&before);
    let outcome = run(&mut region, &mut disk, &options(), None).0.unwrap();
    // The records, in order, then the whole marker area.
    let mut expected_writes: Vec<_> = ranges
        .iter()
        .map(|&(sector, len)| (sector * 512, len))
        .collect();
    expected_writes.push((MARKER_AT, 4096));
    assert_eq!(disk.writes, expected_writes);
    assert_eq!(disk.flushes, 2, "records flushed, then the marker");
    let clean = marker_on(&disk.bytes).unwrap().unwrap();
    assert_eq!(clean.state, MarkerState::Clean);
    assert_eq!((clean.epoch, clean.generation), (live.epoch, 42));
    assert_eq!(clean.writer, MarkerWriter::Rescue);
    assert!(clean.written_at_unix_secs > 1_700_000_000);
    assert_eq!(
        (clean.region_phys, clean.region_bytes),
        (live.region_phys, live.region_bytes)
    );
    assert_eq!(
        outcome.marker,
        MarkerOutcome::Cleaned {
            before: live,
            after: clean
        }
    );
    assert_same(
        &disk.bytes[..MARKER_AT as usize],
        &s.expected[..MARKER_AT as usize],
        "data area",
    );
    assert!(disk.bytes[MARKER_AT as usize + 512..]
        .iter()
        .all(|&b| b == 0));
    assert_eq!(outcome.exit_code(), 0);
    assert!(report_fields(&outcome).contains(" marker=cleaned region=written exit=0"));
    let text = describe_outcome(&outcome).join("\n");
    assert!(
        text.contains("log disk marker: live for region epoch 0xe90c -> clean (generation 42)"),
        "{text}"
    );
    // rapilogctl's replays record themselves as the tool.
    let mut region = region_of(&s);
    let mut disk = memory_disk(&before);
    let tool = ReplayOptions {
        replayer: Replayer::Tool,
        ..options()
    };
    run(&mut region, &mut disk, &tool, None).0.unwrap();
    assert_eq!(
        marker_on(&disk.bytes).unwrap().unwrap().writer,
        MarkerWriter::Tool
    );
    // Again: the marker is clean already, nothing is written.
    let mut disk = memory_disk(&disk.bytes);
    let (result, _) = run(&mut region, &mut disk, &options(), None);
    let again = result.unwrap();
    assert!(disk.writes.is_empty() && disk.flushes == 0);
    assert!(matches!(again.marker, MarkerOutcome::AlreadyClean(_)));
}

#[test]
fn disk_without_a_marker_is_left_without_one() {
    let (s, _) = mixed();
    let mut region = region_of(&s);
    let mut disk = memory_disk(&s.disk_before);
    let outcome = run(&mut region, &mut disk, &options(), None).0.unwrap();
    assert_eq!(outcome.marker, MarkerOutcome::Absent);
    assert_same(&disk.bytes, &s.expected, "disk");
    assert!(report_fields(&outcome).contains(" marker=none "));
}

#[test]
fn live_marker_with_no_region_records_is_a_possible_loss_and_nothing_is_written() {
    let configured = ReplayOptions {
        expected_id: DiskId::new(DISK_ID.as_bytes()),
        ..options()
    };
    // The region wiped (no superblock), or holding another disk's records.
    let (mut wiped, _) = mixed();
    wiped.image.bytes_mut()[..1024].fill(0);
    let other = Scenario::with("serial:rl-other", 256, 512);
    for (s, needle) in [
        (&wiped, "no valid superblock"),
        (
            &other,
            "belongs to disk serial:rl-other but the configuration names disk serial:rl-log",
        ),
    ] {
        let mut before = s.disk_before.clone();
        put_marker(&mut before, live_marker(s, 3));
        let epoch = live_marker(s, 3).epoch;
        let mut region = region_of(s);
        let mut disk = memory_disk(&before);
        let (result, opened) = run(&mut region, &mut disk, &configured, None);
        let failure = result.unwrap_err();
        assert!(opened);
        assert_eq!(
            failure.kind,
            FailureKind::PossibleLoss,
            "{}",
            failure.message
        );
        assert_eq!(failure.kind.exit_code(), 9);
        let m = &failure.message;
        assert!(
            m.starts_with("POSSIBLE LOSS OF ACKNOWLEDGED WRITES: "),
            "{m}"
        );
        assert!(
            m.contains(&LossReason::LiveRegionMissing { epoch }.to_string()),
            "{m}"
        );
        assert!(m.contains(needle) && m.contains("nothing written"), "{m}");
        assert!(m.contains("rapilogctl marker DISK --clear"), "{m}");
        assert!(disk.writes.is_empty() && disk.flushes == 0, "disk written");
        assert_same(&disk.bytes, &before, "disk");
        assert_same(&region.bytes, s.image.bytes(), "region");

        // A clean marker: the plain refusal.
        let mut before = s.disk_before.clone();
        put_marker(
            &mut before,
            live_marker(s, 3).cleaned(MarkerWriter::ModuleDrain, 5),
        );
        let mut disk = memory_disk(&before);
        let failure = run(&mut region, &mut disk, &configured, None)
            .0
            .unwrap_err();
        assert_ne!(
            failure.kind,
            FailureKind::PossibleLoss,
            "{}",
            failure.message
        );
        assert!(failure.message.contains(needle), "{}", failure.message);
    }
    // Without a configured disk nothing says which disk to look at.
    let mut region = region_of(&wiped);
    let mut disk = memory_disk(&wiped.disk_before);
    let (result, opened) = run(&mut region, &mut disk, &options(), None);
    assert_eq!(result.unwrap_err().kind, FailureKind::Region);
    assert!(!opened);
}

#[test]
fn live_marker_of_another_epoch_or_damaged_is_reported_and_left_as_it_is() {
    let (s, _) = mixed();
    type Damage = fn(&mut [u8], &Scenario);
    let other_epoch: Damage = |d, s| {
        put_marker(
            d,
            DiskMarker {
                epoch: 0x1234,
                ..live_marker(s, 9)
            },
        );
    };
    let flipped: Damage = |d, s| {
        put_marker(d, live_marker(s, 9));
        d[MARKER_AT as usize + 100] ^= 1;
    };
    let cases = [
        (
            other_epoch,
            LossReason::LiveEpochMismatch {
                marker_epoch: 0x1234,
                region_epoch: 0xE90C,
            },
        ),
        (flipped, LossReason::MarkerDamaged),
    ];
    for (damage, reason) in cases {
        let mut before = s.disk_before.clone();
        damage(&mut before, &s);
        let mut region = region_of(&s);
        let mut disk = memory_disk(&before);
        let outcome = run(&mut region, &mut disk, &options(), None).0.unwrap();
        // The region's records still reach the disk: they are this disk's.
        assert_same(
            &disk.bytes[..MARKER_AT as usize],
            &s.expected[..MARKER_AT as usize],
            "data area",
        );
        assert_same(
            &disk.bytes[MARKER_AT as usize..],
            &before[MARKER_AT as usize..],
            "marker area",
        );
        assert!(
            matches!(outcome.marker, MarkerOutcome::PossibleLoss { reason: r, .. } if r == reason),
            "{:?}",
            outcome.marker
        );
        assert_eq!(outcome.exit_code(), 9);
        let fields = report_fields(&outcome);
        assert!(
            fields.ends_with("marker=possible-loss region=written exit=9"),
            "{fields}"
        );
        let text = describe_outcome(&outcome).join("\n");
        assert!(
            text.contains(&format!("POSSIBLE LOSS OF ACKNOWLEDGED WRITES: {reason}")),
            "{text}"
        );
        assert!(text.contains("is left as it is"), "{text}");
    }
}

#[test]
fn dry_run_reads_the_marker_and_writes_nothing() {
    let (s, _) = mixed();
    let mut before = s.disk_before.clone();
    put_marker(&mut before, live_marker(&s, 2));
    let mut region = region_of(&s);
    let mut disk = memory_disk(&before);
    let opts = ReplayOptions {
        dry_run: true,
        ..options()
    };
    let outcome = run(&mut region, &mut disk, &opts, None).0.unwrap();
    assert!(matches!(outcome.marker, MarkerOutcome::WouldClean(_)));
    assert!(disk.writes.is_empty() && disk.flushes == 0);
    assert_same(&disk.bytes, &before, "disk");
    assert!(report_fields(&outcome).contains("marker=would-clean region=dry-run"));
}

#[test]
fn marker_read_or_write_errors_leave_the_region_for_another_replay() {
    let (s, _) = mixed();
    let mut before = s.disk_before.clone();
    put_marker(&mut before, live_marker(&s, 2));
    // Unreadable: nothing written at all.
    let mut region = region_of(&s);
    let mut disk = memory_disk(&before);
    disk.fail_read = true;
    let failure = run(&mut region, &mut disk, &options(), None).0.unwrap_err();
    assert_eq!(failure.kind, FailureKind::DiskIo);
    assert!(
        failure
            .message
            .contains("reading the loss marker of memory disk failed"),
        "{}",
        failure.message
    );
    assert!(
        failure.message.ends_with("nothing written"),
        "{}",
        failure.message
    );
    assert!(disk.writes.is_empty());
    // The marker write fails after the 4 records: the region stays as it
    // was, and replaying again completes both.
    let mut disk = memory_disk(&before);
    disk.fail_write = Some(4);
    let failure = run(&mut region, &mut disk, &options(), None).0.unwrap_err();
    assert_eq!(failure.kind, FailureKind::DiskIo);
    assert!(
        failure
            .message
            .contains("writing the clean loss marker to memory disk failed"),
        "{}",
        failure.message
    );
    assert!(
        failure.message.contains("replay again"),
        "{}",
        failure.message
    );
    assert_same(&region.bytes, s.image.bytes(), "region");
    let mut disk = memory_disk(&disk.bytes);
    run(&mut region, &mut disk, &options(), None).0.unwrap();
    assert_eq!(
        marker_on(&disk.bytes).unwrap().unwrap().state,
        MarkerState::Clean
    );
    assert_same(
        &disk.bytes[..MARKER_AT as usize],
        &s.expected[..MARKER_AT as usize],
        "data area",
    );
}
