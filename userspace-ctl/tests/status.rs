// SPDX-License-Identifier: GPL-2.0

//! `rapilogctl status` without a device: synthetic status blocks encoded
//! with the format crate (as the driver encodes them), decoded, then the
//! verdict rules, the human table and the `rapilogctl.status` document.

use rapilog_format::control::{
    flags, FencePolicy, FenceState, HeldRecord, PowerFailState, ProtectMode, Status, Text,
    STATUS_BYTES,
};
use rapilog_format::test_helpers::{compact_geometry, disk, pattern, RegionImage};
use rapilog_format::{LossReason, MarkerState, RecordFault, SUPERBLOCK_BYTES};
use rapilogctl::status::{render, report, verdict, CrashKernel, Level};
use serde_json::Value;

/// A healthy device: window protection, fenced, power-fail armed, with
/// history, carrying a real superblock from a region image.
fn healthy() -> Status {
    let mut image = RegionImage::new(
        compact_geometry(16, 64 << 10, 8192),
        disk("serial:rl-log", 2048, 512),
        0xC0FFEE,
    );
    for i in 0..3 {
        image.append(i * 8, &pattern(i, 4096)).unwrap();
    }
    image.advance_tail_through(1);
    let mut superblock = [0u8; SUPERBLOCK_BYTES];
    superblock.copy_from_slice(&image.bytes()[..SUPERBLOCK_BYTES]);
    Status {
        region_phys: 0x6000_0000,
        region_bytes: 64 << 20,
        protect: ProtectMode::Window,
        next_seq: 3,
        tail_seq: 2,
        live_records: 1,
        used_bytes: 4096,
        dirty_bytes: 3 << 20,
        ring_bytes: 60 << 20,
        writeback_delay_ms: 1000,
        holdup_ms: 50,
        dirty_bound_bytes: 4 << 20,
        writeback_bandwidth: 100_000_000,
        writes: 300,
        write_bytes: 300 * 4096,
        flushes: 120,
        throttled: 2,
        reads_region: 5,
        reads_disk: 6,
        wb_ios: 4,
        wb_bytes: 8 << 20,
        wb_records: 2048,
        wb_flushes: 4,
        wb_busy_us: 2_000_000,
        uptime_us: 16_000_000,
        fence_state: FenceState::Fenced,
        fence_policy: FencePolicy::Warn,
        fence_devices: 5,
        powerfail_signals: 3,
        powerfail_state: PowerFailState::Armed,
        powerfail_resume_ms: 5000,
        backing: Text::new(b"/dev/disk/by-id/virtio-rl-log"),
        superblock,
        marker_state: MarkerState::Live.code(),
        marker_epoch: 0xC0FFEE,
        ..Status::default()
    }
}

/// `s` as the module reports it after loading with `accept_loss=1` over a
/// wiped region.
fn accepted_loss(mut s: Status) -> Status {
    let reason = LossReason::LiveRegionMissing { epoch: 0xBEEF };
    s.loss_accepted = 1;
    s.loss_reason = Text::from_display(&reason.brief());
    s
}

/// Through the bytes, as from the ioctl.
fn wire(s: &Status) -> Status {
    let mut block = [0u8; STATUS_BYTES];
    s.encode(&mut block);
    Status::decode(&block).unwrap()
}

fn doc(s: &Status, crash: CrashKernel) -> Value {
    serde_json::to_value(report(&wire(s), "rapilog0", "/dev/rapilog-ctl", crash)).unwrap()
}

#[test]
fn protected_when_every_protection_is_in_place() {
    let v = verdict(&wire(&healthy()), CrashKernel::Armed);
    assert_eq!(v.level, Level::Protected);
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    assert_eq!(
        v.line,
        "PROTECTED: crash kernel armed, IOMMU fenced, power-fail armed, 3.0 MiB dirty of 4.0 MiB bound"
    );
}

#[test]
fn each_rule_of_the_verdict() {
    type Change = fn(&mut Status);
    let cases: [(CrashKernel, Change, Level, &str); 9] = [
        (
            CrashKernel::NotArmed,
            |_| {},
            Level::AtRisk,
            "crash kernel not armed",
        ),
        (
            CrashKernel::Unsupported,
            |_| {},
            Level::AtRisk,
            "crash kernel not armed (this kernel has no kexec_crash_loaded)",
        ),
        (
            CrashKernel::Armed,
            |s| s.powerfail_state = PowerFailState::Failed,
            Level::AtRisk,
            "power-fail drain failed",
        ),
        (
            CrashKernel::Armed,
            |s| {
                s.fence_state = FenceState::Unfenced;
                s.fence_unfenced = 2;
            },
            Level::Degraded,
            "2 of 5 PCI devices unfenced",
        ),
        (
            CrashKernel::Armed,
            |s| s.fence_state = FenceState::Unchecked,
            Level::Degraded,
            "IOMMU fence not checked",
        ),
        (
            CrashKernel::Armed,
            |s| s.protect = ProtectMode::Off,
            Level::Degraded,
            "region write protection off",
        ),
        (
            CrashKernel::Armed,
            |s| {
                s.flags = flags::WRITEBACK_RETRYING;
                s.disk_errors = 3;
                s.last_disk_errno = 5;
            },
            Level::Degraded,
            "writeback retrying after disk errors (last EIO, Input/output error)",
        ),
        (
            CrashKernel::Armed,
            |s| s.write_errors = 1,
            Level::Degraded,
            "1 write failed",
        ),
        (
            CrashKernel::Armed,
            |s| {
                s.powerfail_state = PowerFailState::Off;
                s.powerfail_signals = 0;
            },
            Level::Degraded,
            "power-fail path off",
        ),
    ];
    for (crash, change, level, problem) in cases {
        let mut s = healthy();
        change(&mut s);
        let v = verdict(&wire(&s), crash);
        assert_eq!(v.level, level, "{problem}");
        assert_eq!(v.problems, vec![problem.to_string()]);
        let prefix = match level {
            Level::AtRisk => "AT RISK: ",
            _ => "DEGRADED: ",
        };
        assert_eq!(
            v.line,
            format!("{prefix}{problem} (3.0 MiB dirty of 4.0 MiB bound)")
        );
    }
    // Superblock unreadable.
    let mut s = healthy();
    s.superblock = [0; SUPERBLOCK_BYTES];
    assert_eq!(
        verdict(&wire(&s), CrashKernel::Armed).problems,
        vec!["region superblock unreadable"]
    );
}

#[test]
fn at_risk_problems_come_first_and_all_are_named() {
    // Today's driver: power-fail off, no bound; an unfenced machine, no crash kernel.
    let mut s = healthy();
    s.powerfail_state = PowerFailState::Off;
    s.powerfail_signals = 0;
    s.holdup_ms = 0;
    s.dirty_bound_bytes = 0;
    s.fence_state = FenceState::Unfenced;
    s.fence_devices = 6;
    s.fence_unfenced = 6;
    let v = verdict(&wire(&s), CrashKernel::NotArmed);
    assert_eq!(v.level, Level::AtRisk);
    assert_eq!(
        v.line,
        "AT RISK: crash kernel not armed; 6 of 6 PCI devices unfenced; power-fail path off (3.0 MiB dirty)"
    );
}

#[test]
fn table_shows_every_aspect() {
    let mut s = healthy();
    s.fence_state = FenceState::Unfenced;
    s.fence_unfenced = 2;
    s.unfenced_list = Text::new(b"0000:00:02.0 0000:00:03.0");
    s.disk_errors = 3;
    s.last_disk_errno = 5;
    s.flags = flags::WRITEBACK_RETRYING | flags::DRAINING;
    let r = report(
        &wire(&s),
        "rapilog0",
        "/dev/rapilog-ctl",
        CrashKernel::Armed,
    );
    let text = render(&r, false);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("DEGRADED: 2 of 5 PCI devices unfenced; writeback retrying"),
        "{text}"
    );
    for want in [
        "device        /dev/rapilog0 (/dev/rapilog-ctl), up 16.0 s, draining",
        "backing       /dev/disk/by-id/virtio-rl-log   disk id serial:rl-log, 1.0 MiB (512-byte blocks)",
        "region        64.0 MiB at 0x60000000   protect window (read-only except while a record is copied in)",
        "ring          4.0 KiB used (0.0%), 3.0 MiB dirty (5.0%) of 60.0 MiB; 1 record",
        "sequence      head 3   tail 2   durable tail 2",
        "writes        300 (1.2 MiB), 120 flushes absorbed, 2 throttled; reads: 5 from region, 6 from disk",
        "writeback     8.0 MiB in 4 writes (avg 2.0 MiB), 2048 records, 4 disk flushes; 4.0 MiB/s while busy, 512.0 KiB/s since load; delay 1000 ms",
        "errors        3 disk errors (last EIO, Input/output error), 0 failed writes; writeback retrying",
        "iommu fence   UNFENCED: 2 of 5 PCI devices can DMA into the region: 0000:00:02.0 0000:00:03.0 (policy warn)",
        "power-fail    armed on power_button, nmi; hold-up 50 ms, dirty bound 4.0 MiB, writeback bandwidth 95.4 MiB/s; resumes if still running 5000 ms after a signal, 0 false alarms",
        "crash kernel  armed: a panic boots it and it replays the region",
        "disk marker   live for region epoch 0xc0ffee (the log disk says this region may hold writes it lacks, until a clean drain)",
        "last replay   never (nothing replayed since the region was formatted)",
    ] {
        assert!(lines.contains(&want), "missing {want:?} in\n{text}");
    }
    assert!(!text.contains('\x1b'), "no colour when not asked");
    let coloured = render(&r, true);
    assert!(coloured.starts_with("\x1b[1;33mDEGRADED"), "{coloured}");
    // Every row's value starts in the same column.
    assert!(
        lines[1..]
            .iter()
            .all(|l| l.as_bytes().get(13) == Some(&b' ') && l.as_bytes()[14] != b' '),
        "{text}"
    );
}

#[test]
fn json_document_has_the_documented_schema() {
    let v = doc(&healthy(), CrashKernel::Armed);
    assert_eq!(v["schema"], "rapilogctl.status");
    assert_eq!(v["schema_version"], 1);
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    let mut want = vec![
        "schema",
        "schema_version",
        "device",
        "control",
        "verdict",
        "bad_record",
        "dead_disk",
        "backing",
        "region",
        "protect",
        "flags",
        "uptime_us",
        "ring",
        "io",
        "writeback",
        "errors",
        "fence",
        "power_fail",
        "crash_kernel",
        "marker",
        "superblock",
        "superblock_error",
    ];
    let mut got = keys.clone();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want);
    assert_eq!(v["verdict"]["level"], "protected");
    assert_eq!(v["device"], "rapilog0");
    assert_eq!(v["backing"], "/dev/disk/by-id/virtio-rl-log");
    assert_eq!(v["region"]["phys"], 0x6000_0000u64);
    assert_eq!(v["region"]["bytes"], 64u64 << 20);
    assert_eq!(v["protect"], "window");
    assert_eq!(v["ring"]["dirty_bytes"], 3u64 << 20);
    assert_eq!(v["ring"]["dirty_percent"], 5.0);
    assert_eq!(v["ring"]["head_seq"], 3);
    assert_eq!(v["ring"]["tail_seq"], 2);
    assert_eq!(v["ring"]["durable_tail"], 2);
    assert_eq!(v["io"]["writes"], 300);
    assert_eq!(v["io"]["flushes_absorbed"], 120);
    assert_eq!(v["writeback"]["average_io_bytes"], 2u64 << 20);
    assert_eq!(v["writeback"]["busy_bytes_per_s"], 4u64 << 20);
    assert_eq!(v["writeback"]["bytes_per_s_since_load"], 512u64 << 10);
    assert_eq!(v["errors"]["last_disk_error"], Value::Null);
    assert_eq!(v["fence"]["state"], "fenced");
    assert_eq!(v["fence"]["devices"], 5);
    assert_eq!(v["fence"]["unfenced_devices"], serde_json::json!([]));
    assert_eq!(v["power_fail"]["state"], "armed");
    assert_eq!(
        v["power_fail"]["signals"],
        serde_json::json!(["power_button", "nmi"])
    );
    assert_eq!(v["power_fail"]["resume_ms"], 5000);
    assert_eq!(v["power_fail"]["false_alarms"], 0);
    assert_eq!(
        v["crash_kernel"],
        serde_json::json!({"state": "armed", "armed": true})
    );
    assert_eq!(v["flags"]["draining"], false);
    assert_eq!(v["flags"]["writeback_held"], false);
    assert_eq!(v["bad_record"], Value::Null);
    assert_eq!(v["writeback"]["bad_records"], 0);
    assert_eq!(v["writeback"]["bad_records_skipped"], 0);
    assert_eq!(
        v["marker"],
        serde_json::json!({"state": "live", "epoch": "0xc0ffee", "loss_accepted": false, "loss_reason": null})
    );
    let sb = &v["superblock"];
    assert_eq!(sb["disk"]["id"], "serial:rl-log");
    assert_eq!(sb["epoch"], "0xc0ffee");
    assert_eq!(sb["durable_tail"], 2);
    assert_eq!(sb["last_replay"]["by"], "never");
    assert!(
        sb.get("copy").is_none(),
        "the status carries one superblock, no copy index"
    );
    assert_eq!(v["superblock_error"], Value::Null);

    // Without history: no division by zero, nulls where no rate exists.
    let mut idle = healthy();
    idle.wb_ios = 0;
    idle.wb_bytes = 0;
    idle.wb_busy_us = 0;
    idle.uptime_us = 0;
    idle.superblock = [0; SUPERBLOCK_BYTES];
    let v = doc(&idle, CrashKernel::Unsupported);
    assert_eq!(v["writeback"]["average_io_bytes"], Value::Null);
    assert_eq!(v["writeback"]["busy_bytes_per_s"], Value::Null);
    assert_eq!(v["writeback"]["bytes_per_s_since_load"], Value::Null);
    assert_eq!(v["superblock"], Value::Null);
    assert!(v["superblock_error"].is_string());
    assert_eq!(v["ring"]["durable_tail"], Value::Null);
    assert_eq!(v["crash_kernel"]["armed"], false);
    assert_eq!(v["verdict"]["level"], "at_risk");
}

#[test]
fn a_cut_list_of_unfenced_devices_says_so() {
    let mut s = healthy();
    s.fence_state = FenceState::Unfenced;
    s.fence_devices = 40;
    s.fence_unfenced = 40;
    let names: Vec<String> = (0..40).map(|i| format!("0000:00:{i:02x}.0")).collect();
    s.unfenced_list = Text::new(names.join(" ").as_bytes());
    let r = report(
        &wire(&s),
        "rapilog0",
        "/dev/rapilog-ctl",
        CrashKernel::Armed,
    );
    let last = r.fence.unfenced_devices.last().unwrap();
    assert!(last.ends_with("..."), "{last}");
    assert!(r.fence.unfenced_devices.len() < 40);
    let text = render(&r, false);
    assert!(
        text.contains("(list cut: the kernel log names them all) (policy warn)"),
        "{text}"
    );
}

#[test]
fn unfenced_list_and_crash_kernel_file() {
    let mut s = healthy();
    s.fence_state = FenceState::Unfenced;
    s.fence_unfenced = 3;
    s.unfenced_list = Text::new(b"0000:00:01.0 0000:00:02.0 0000:00:03.0");
    let v = doc(&s, CrashKernel::from_sysfs(Some("0\n")));
    assert_eq!(
        v["fence"]["unfenced_devices"],
        serde_json::json!(["0000:00:01.0", "0000:00:02.0", "0000:00:03.0"])
    );
    assert_eq!(v["crash_kernel"]["state"], "not_armed");
    assert_eq!(CrashKernel::from_sysfs(Some("1\n")), CrashKernel::Armed);
    assert_eq!(CrashKernel::from_sysfs(None), CrashKernel::Unsupported);
}

#[test]
fn a_possible_loss_accepted_at_load_is_the_worst_verdict_and_says_why() {
    // Every protection in place: still not PROTECTED.
    let s = wire(&accepted_loss(healthy()));
    let v = verdict(&s, CrashKernel::Armed);
    assert_eq!(v.level, Level::PossibleLoss);
    assert_eq!(
        v.line,
        "POSSIBLE LOSS: acknowledged writes may have been lost before this load, accepted with \
         accept_loss=1 (marker live for epoch 0xbeef; region holds no records of this disk \
         (wiped, cold boot or other machine)) (3.0 MiB dirty of 4.0 MiB bound)"
    );
    // Worse than AT RISK, and named before the other problems.
    let v = verdict(&s, CrashKernel::NotArmed);
    assert_eq!(v.level, Level::PossibleLoss);
    assert!(v.problems[0].starts_with("acknowledged writes may have been lost"));
    assert_eq!(v.problems[1], "crash kernel not armed");
    assert!(Level::PossibleLoss > Level::AtRisk);

    let r = report(&s, "rapilog0", "/dev/rapilog-ctl", CrashKernel::Armed);
    let text = render(&r, false);
    assert!(text.starts_with("POSSIBLE LOSS: "), "{text}");
    assert!(
        text.contains(
            "\nloss          accepted at load (accept_loss=1): marker live for epoch 0xbeef"
        ),
        "{text}"
    );
    assert!(render(&r, true).starts_with("\x1b[1;31mPOSSIBLE LOSS"));
    let v = doc(&s, CrashKernel::Armed);
    assert_eq!(v["verdict"]["level"], "possible_loss");
    assert_eq!(v["marker"]["loss_accepted"], true);
    assert_eq!(
        v["marker"]["loss_reason"],
        "marker live for epoch 0xbeef; region holds no records of this disk (wiped, cold boot or \
         other machine)"
    );
    // A module that reports no marker: no alarm, the row says so.
    let mut none = healthy();
    none.marker_state = 0;
    let r = report(
        &wire(&none),
        "rapilog0",
        "/dev/rapilog-ctl",
        CrashKernel::Armed,
    );
    assert_eq!(r.verdict.level, Level::Protected);
    assert!(render(&r, false).contains("disk marker   none reported by the module"));
    assert_eq!(r.marker.epoch, None);
}

/// `s` with writeback held at record 1201, whose payload failed its check
/// 4 s after load (the status says 16 s of uptime).
fn held(mut s: Status) -> Status {
    s.set_held_record(Some(HeldRecord {
        seq: 1201,
        sector: 160,
        length: 4096,
        fault: RecordFault::PayloadChecksum {
            expected: 0xA1B2_C3D4,
            found: 0x0102_0304,
        },
        found_at_us: 4_000_000,
    }));
    s.bad_records = 1;
    s
}

#[test]
fn a_held_bad_record_is_at_risk_and_named_everywhere() {
    // Every protection in place: a held record alone makes it AT RISK.
    let s = wire(&held(healthy()));
    let v = verdict(&s, CrashKernel::Armed);
    assert_eq!(v.level, Level::AtRisk);
    let problem = "writeback held at bad record seq 1201 (sectors 160..168, payload checksum \
                   mismatch): never written, the ring fills behind it; `rapilogctl \
                   skip-bad-record 1201` drops it";
    assert_eq!(v.problems, vec![problem.to_string()]);
    assert_eq!(
        v.line,
        format!("AT RISK: {problem} (3.0 MiB dirty of 4.0 MiB bound)")
    );
    // The table: a state word, a red row with both checksums, the count.
    let r = report(&s, "rapilog0", "/dev/rapilog-ctl", CrashKernel::Armed);
    let text = render(&r, false);
    assert!(
        text.contains("device        /dev/rapilog0 (/dev/rapilog-ctl), up 16.0 s, writeback held"),
        "{text}"
    );
    let row = text
        .lines()
        .find(|l| l.starts_with("bad record "))
        .unwrap_or_else(|| panic!("no bad record row in\n{text}"));
    for want in [
        "seq 1201, sectors 160..168 (4.0 KiB), payload checksum",
        "its descriptor says 0xa1b2c3d4, the region holds 0x01020304",
        "found 4.0 s after load, held for 12.0 s",
        "`rapilogctl skip-bad-record 1201` drops it",
    ] {
        assert!(row.contains(want), "{want:?} not in {row:?}");
    }
    assert!(text.contains("verification  1 record failed writeback's check since load, 0 skipped"));
    assert!(render(&r, true).contains("\x1b[1;31mseq 1201"));
    // JSON.
    let v = doc(&held(healthy()), CrashKernel::Armed);
    assert_eq!(v["flags"]["writeback_held"], true);
    assert_eq!(
        v["bad_record"],
        serde_json::json!({
            "seq": 1201, "sector": 160, "length": 4096, "reason": "payload_checksum",
            "expected_crc": "0xa1b2c3d4", "found_crc": "0x01020304",
            "found_at_us": 4_000_000, "held_for_us": 12_000_000,
        })
    );
    assert_eq!(v["writeback"]["bad_records"], 1);
    // A descriptor that is intact but not the record's has no checksums.
    let mut s = held(healthy());
    s.bad_reason = RecordFault::DescriptorMismatch.code();
    let v = doc(&s, CrashKernel::Armed);
    assert_eq!(v["bad_record"]["reason"], "descriptor_mismatch");
    assert_eq!(v["bad_record"]["expected_crc"], Value::Null);
}

#[test]
fn bad_records_found_and_skipped_leave_the_verdict_degraded() {
    let mut s = healthy();
    s.bad_records = 2;
    s.bad_skipped = 2;
    let v = verdict(&wire(&s), CrashKernel::Armed);
    assert_eq!(v.level, Level::Degraded);
    assert_eq!(
        v.problems,
        vec!["region corruption: 2 records failed writeback's check since load (2 skipped)"]
    );
    let text = render(
        &report(
            &wire(&s),
            "rapilog0",
            "/dev/rapilog-ctl",
            CrashKernel::Armed,
        ),
        false,
    );
    assert!(!text.contains("bad record "), "{text}");
    assert!(text.contains("verification  2 records failed writeback's check since load, 2 skipped"));
}

#[test]
fn false_alarms_and_the_resume_are_shown() {
    // After one false alarm the path is armed again: the verdict is as
    // before, the row and the document count it.
    let mut s = healthy();
    s.powerfail_false_alarms = 1;
    let r = report(
        &wire(&s),
        "rapilog0",
        "/dev/rapilog-ctl",
        CrashKernel::Armed,
    );
    assert_eq!(r.verdict.level, Level::Protected, "{:?}", r.verdict);
    let text = render(&r, false);
    assert!(
        text.contains(
            "power-fail    armed on power_button, nmi; hold-up 50 ms, dirty bound 4.0 MiB, \
             writeback bandwidth 95.4 MiB/s; resumes if still running 5000 ms after a signal, \
             1 false alarm\n"
        ),
        "{text}"
    );
    let v = doc(&s, CrashKernel::Armed);
    assert_eq!(v["power_fail"]["false_alarms"], 1);
    assert_eq!(v["power_fail"]["state"], "armed");

    // powerfail_resume_ms=0 (or poweroff, or a module from before the
    // resume): drained, writes held, no resume coming.
    s.powerfail_resume_ms = 0;
    s.powerfail_false_alarms = 0;
    s.powerfail_state = PowerFailState::Drained;
    s.flags = flags::WRITES_HELD;
    let text = render(
        &report(
            &wire(&s),
            "rapilog0",
            "/dev/rapilog-ctl",
            CrashKernel::Armed,
        ),
        false,
    );
    assert!(text.contains("up 16.0 s, writes held\n"), "{text}");
    assert!(
        text.contains(
            "power-fail    drained on power_button, nmi; hold-up 50 ms, dirty bound 4.0 MiB, \
             writeback bandwidth 95.4 MiB/s; no resume after a drain, 0 false alarms\n"
        ),
        "{text}"
    );
    assert_eq!(doc(&s, CrashKernel::Armed)["power_fail"]["resume_ms"], 0);

    // No signal armed: nothing about a drain.
    s.powerfail_signals = 0;
    s.powerfail_state = PowerFailState::Off;
    let text = render(
        &report(
            &wire(&s),
            "rapilog0",
            "/dev/rapilog-ctl",
            CrashKernel::Armed,
        ),
        false,
    );
    assert!(!text.contains("false alarm"), "{text}");
}

/// `s` after the log disk failed from 4 s after load on and was declared
/// dead at 6 s (`dead_disk_ms=2000`); the oldest unwritten record has
/// waited 11 s.
fn dead_disk(mut s: Status) -> Status {
    s.flags |= flags::DISK_DEAD | flags::WRITEBACK_RETRYING;
    s.dead_disk_ms = 2000;
    s.failing_since_us = 4_000_000;
    s.dead_since_us = 6_000_000;
    s.oldest_dirty_us = 11_000_000;
    s.writes_refused = 7;
    s.last_disk_errno = 5;
    s.disk_errors = 9;
    s
}

#[test]
fn a_dead_log_disk_is_at_risk_with_its_age_and_the_oldest_record() {
    let s = wire(&dead_disk(healthy()));
    let v = verdict(&s, CrashKernel::Armed);
    assert_eq!(v.level, Level::AtRisk);
    let problem = "log disk failing for 12.0 s (last EIO, Input/output error), new writes fail \
                   with EIO since 10.0 s ago (dead_disk_ms=2000; 7 writes refused); oldest \
                   unwritten record waiting for 11.0 s";
    assert_eq!(v.problems, vec![problem.to_string()], "{}", v.line);
    // The table: a state word and a red row.
    let r = report(&s, "rapilog0", "/dev/rapilog-ctl", CrashKernel::Armed);
    let text = render(&r, false);
    assert!(text.contains("up 16.0 s, log disk dead"), "{text}");
    let row = text
        .lines()
        .find(|l| l.starts_with("log disk "))
        .unwrap_or_else(|| panic!("no log disk row in\n{text}"));
    for want in [
        "failing for 12.0 s; dead for 10.0 s",
        "new writes fail with EIO (7 refused)",
        "oldest unwritten for 11.0 s",
    ] {
        assert!(row.contains(want), "{want:?} not in {row:?}");
    }
    // JSON.
    let v = doc(&dead_disk(healthy()), CrashKernel::Armed);
    assert_eq!(v["flags"]["disk_dead"], true);
    assert_eq!(
        v["dead_disk"],
        serde_json::json!({
            "deadline_ms": 2000, "dead": true, "failing_for_us": 12_000_000,
            "dead_for_us": 10_000_000, "oldest_unwritten_us": 11_000_000,
            "writes_refused": 7,
        })
    );
}

#[test]
fn a_failing_disk_not_yet_dead_is_degraded_and_says_when_writes_fail() {
    let mut s = dead_disk(healthy());
    s.flags &= !flags::DISK_DEAD;
    s.dead_since_us = 0;
    s.failing_since_us = 15_000_000;
    let v = verdict(&wire(&s), CrashKernel::Armed);
    assert_eq!(v.level, Level::Degraded);
    assert!(
        v.line.contains(
            "writeback retrying after disk errors for 1.0 s (new writes fail with EIO after \
             2.0 s) (last EIO"
        ),
        "{}",
        v.line
    );
    let v = doc(&s, CrashKernel::Armed);
    assert_eq!(v["dead_disk"]["dead"], false);
    assert_eq!(v["dead_disk"]["dead_for_us"], Value::Null);
    assert_eq!(v["dead_disk"]["failing_for_us"], 1_000_000);
    // A healthy disk: nothing failing, the deadline still shown.
    let mut s = healthy();
    s.dead_disk_ms = 30_000;
    let v = doc(&s, CrashKernel::Armed);
    assert_eq!(v["verdict"]["level"], "protected");
    assert_eq!(
        v["dead_disk"],
        serde_json::json!({
            "deadline_ms": 30_000, "dead": false, "failing_for_us": null,
            "dead_for_us": null, "oldest_unwritten_us": null, "writes_refused": 0,
        })
    );
}
