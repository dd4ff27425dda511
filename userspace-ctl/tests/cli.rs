// SPDX-License-Identifier: GPL-2.0

//! The `rapilogctl` executable against region images built by the format
//! crate's test helpers (valid, torn, corrupted, other disk), fixture
//! /proc and sysfs files, and fake `rapilog-arm` scripts: output, `--json`
//! documents and exit codes.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use rapilog_format::test_helpers::{compact_geometry, disk, model_disk, pattern, RegionImage};
use rapilog_format::{
    Crc32c, DiskMarker, MarkerState, MarkerWriter, SoftwareCrc32c, SUPERBLOCK_BYTES,
};
use serde_json::Value;

const DISK_ID: &str = "serial:rl-log";
const SECTORS: u64 = 64;

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("rapilogctl-test-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn join(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn ctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rapilogctl"))
        .args(args)
        .output()
        .expect("run rapilogctl")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exit code")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(o)))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A 4-slot region for DISK_ID (64 sectors): records at seq 0 (2 sectors
/// at 0), 1 (torn: never published), 2 (1 sector at 10), 3 (1 sector at 63).
fn scenario() -> RegionImage {
    let mut image = RegionImage::new(
        compact_geometry(4, 2048, 1024),
        disk(DISK_ID, SECTORS, 512),
        0xE90C,
    );
    image.append(0, &pattern(1, 1024)).unwrap();
    image.append_torn(4, &pattern(2, 512), 512, 40).unwrap();
    image.append(10, &pattern(3, 512)).unwrap();
    image
}

fn write(dir: &TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, bytes).unwrap();
    p
}

fn sector(disk: &[u8], n: usize, count: usize) -> &[u8] {
    &disk[n * 512..(n + count) * 512]
}

#[test]
fn help_documents_every_command_and_exit_code() {
    let o = ctl(&["--help"]);
    assert_eq!(code(&o), 0);
    let text = stdout(&o);
    for cmd in [
        "status",
        "inspect",
        "flush",
        "replay",
        "marker",
        "dump",
        "fence",
        "plan",
        "arm",
        "disarm",
        "skip-bad-record",
    ] {
        assert!(
            text.contains(&format!("\n  {cmd} ")),
            "{cmd} missing:\n{text}"
        );
        let sub = ctl(&[cmd, "--help"]);
        assert_eq!(code(&sub), 0, "{cmd} --help");
        assert!(stdout(&sub).contains("Usage: rapilogctl"), "{cmd}");
    }
    for line in [
        "0  done",
        "3  not a rapilog region",
        "4  refused",
        "7  the rapilog module is not loaded",
        "9  POSSIBLE LOSS",
        "77  needs root",
        "130  interrupted",
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }
    // clap's usage errors are exit 2.
    assert_eq!(code(&ctl(&["inspect", "--image", "a", "--mem", "0,4K"])), 2);
    assert_eq!(code(&ctl(&["bogus"])), 2);
}

#[test]
fn inspect_valid_region_human() {
    let dir = TempDir::new("inspect-human");
    let image = write(&dir, "r.img", scenario().bytes());
    let o = ctl(&["inspect", "--image", s(&image)]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    let text = stdout(&o);
    for needle in [
        "copy 0",
        "copy 1",
        "state       dirty   epoch 0xe90c",
        "disk        serial:rl-log   64 sectors",
        "last replay never",
        "live window 0..4 (4 slots)",
        "seq  slot  sector  length  desc crc  payload crc  decision  reason",
        "bad_descriptor_checksum",
        "summary     2 to apply (1.5 KiB), 2 skipped: 1 empty, 1 torn or bad descriptor",
    ] {
        assert!(text.contains(needle), "{needle:?} missing:\n{text}");
    }
    // The empty slot is listed only with --all.
    assert!(!text.contains(" empty\n"), "{text}");
    let all = stdout(&ctl(&["inspect", "--image", s(&image), "--all"]));
    assert!(
        all.lines()
            .any(|l| l.trim_start().starts_with('3') && l.ends_with("empty")),
        "{all}"
    );
}

#[test]
fn inspect_json_schema() {
    let dir = TempDir::new("inspect-json");
    let image = write(&dir, "r.img", scenario().bytes());
    let o = ctl(&["inspect", "--image", s(&image), "--json"]);
    assert_eq!(code(&o), 0);
    let v = json(&o);
    assert_eq!(v["schema"], "rapilogctl.inspect");
    assert_eq!(v["schema_version"], 1);
    assert!(v["error"].is_null());
    let copies = v["superblock_copies"].as_array().unwrap();
    assert_eq!(copies.len(), 2);
    assert_eq!(copies.iter().filter(|c| c["active"] == true).count(), 1);
    for c in copies {
        assert_eq!(c["valid"], true);
        assert_eq!(c["checksum"], "ok");
    }
    let sb = &v["superblock"];
    assert_eq!(sb["epoch"], "0xe90c");
    assert_eq!(sb["state"], "dirty");
    assert_eq!(sb["durable_tail"], 0);
    assert_eq!(sb["disk"]["id"], DISK_ID);
    assert_eq!(sb["disk"]["sectors"], SECTORS);
    assert_eq!(sb["disk"]["block_bytes"], 512);
    assert_eq!(sb["geometry"]["descriptor_slots"], 4);
    assert_eq!(sb["last_replay"]["by"], "never");
    assert_eq!(v["window"]["start"], 0);
    assert_eq!(v["window"]["end"], 4);
    let records = v["records"].as_array().unwrap();
    assert_eq!(records.len(), 3);
    let r0 = &records[0];
    assert_eq!(
        (
            r0["seq"].as_u64(),
            r0["sector"].as_u64(),
            r0["length"].as_u64()
        ),
        (Some(0), Some(0), Some(1024))
    );
    assert_eq!(
        (r0["descriptor_crc"].as_str(), r0["payload_crc"].as_str()),
        (Some("ok"), Some("ok"))
    );
    assert_eq!(
        (r0["decision"].as_str(), r0["reason"].is_null()),
        (Some("apply"), true)
    );
    assert_eq!(records[1]["decision"], "skip");
    assert_eq!(records[1]["reason"], "bad_descriptor_checksum");
    assert_eq!(records[1]["descriptor_crc"], "bad");
    assert_eq!(records[2]["sector"], 10);
    let sum = &v["summary"];
    assert_eq!(sum["slots"], 4);
    assert_eq!(sum["apply"], 2);
    assert_eq!(sum["apply_bytes"], 1536);
    assert_eq!(sum["skipped"]["empty"], 1);
    assert_eq!(sum["skipped"]["bad_descriptor_checksum"], 1);
    assert_eq!(sum["damaged"], 0);
    assert_eq!(sum["planner_agrees"], true);
    for key in [
        "malformed",
        "wrong_epoch",
        "stale",
        "bad_payload_checksum",
        "beyond_disk",
    ] {
        assert_eq!(sum["skipped"][key], 0, "{key}");
    }
}

#[test]
fn inspect_corrupted_payload_is_damage() {
    let dir = TempDir::new("inspect-corrupt");
    let mut region = scenario();
    let ring = region.active().superblock.geometry.ring_offset as usize;
    region.flip_bit(ring * 8 + 3); // first payload (seq 0)
    let image = write(&dir, "r.img", region.bytes());
    let o = ctl(&["inspect", "--image", s(&image), "--json"]);
    assert_eq!(code(&o), 1);
    let v = json(&o);
    assert_eq!(v["records"][0]["reason"], "bad_payload_checksum");
    assert_eq!(v["records"][0]["payload_crc"], "bad");
    assert_eq!(v["summary"]["damaged"], 1);
    assert_eq!(v["summary"]["apply"], 1);
    assert_eq!(v["summary"]["planner_agrees"], true);
    let text = stdout(&ctl(&["inspect", "--image", s(&image)]));
    assert!(text.contains("DAMAGED     1 record(s)"), "{text}");
}

#[test]
fn inspect_torn_superblock_uses_the_other_copy() {
    let dir = TempDir::new("inspect-torn-sb");
    let mut region = scenario();
    let before = region.active().copy;
    region.update_superblock(100, |sb| sb.durable_tail = 1);
    let image = write(&dir, "r.img", region.bytes());
    let v = json(&ctl(&["inspect", "--image", s(&image), "--json"]));
    let copies = v["superblock_copies"].as_array().unwrap();
    let active = copies.iter().find(|c| c["active"] == true).unwrap();
    let torn = copies.iter().find(|c| c["active"] == false).unwrap();
    let before = match before {
        rapilog_format::SuperblockCopy::First => 0,
        rapilog_format::SuperblockCopy::Second => 1,
    };
    assert_eq!(active["copy"], before);
    assert_eq!(v["superblock"]["copy"], before);
    assert_eq!(torn["valid"], false);
    assert_eq!(torn["checksum"], "bad");
    assert!(torn["error"].as_str().unwrap().contains("checksum"));
    assert_eq!(v["superblock"]["durable_tail"], 0);
}

#[test]
fn inspect_refuses_what_is_not_a_region() {
    let dir = TempDir::new("inspect-refuse");
    let zeros = write(&dir, "zeros.img", &vec![0u8; 8192]);
    let o = ctl(&["inspect", "--image", s(&zeros), "--json"]);
    assert_eq!(code(&o), 3);
    let v = json(&o);
    assert_eq!(v["schema"], "rapilogctl.inspect");
    assert!(
        v["error"].as_str().unwrap().contains("no valid superblock"),
        "{v}"
    );
    assert!(v["superblock"].is_null() && v["summary"].is_null());
    let o = ctl(&["inspect", "--image", s(&zeros)]);
    assert_eq!(code(&o), 3);
    assert!(
        stdout(&o).contains("REFUSED: not a usable rapilog region"),
        "{}",
        stdout(&o)
    );

    // Another format version in both copies.
    let mut region = scenario();
    for copy in [0usize, SUPERBLOCK_BYTES] {
        region.bytes_mut()[copy + 8..copy + 12].copy_from_slice(&2u32.to_le_bytes());
    }
    let v2 = write(&dir, "v2.img", region.bytes());
    let o = ctl(&["inspect", "--image", s(&v2)]);
    assert_eq!(code(&o), 3);
    assert!(
        stdout(&o).contains("unsupported format version 2"),
        "{}",
        stdout(&o)
    );

    // Truncated image.
    let short = write(&dir, "short.img", &scenario().bytes()[..2048]);
    assert_eq!(code(&ctl(&["inspect", "--image", s(&short)])), 3);

    // Missing file, no source: bad input.
    let o = ctl(&["inspect", "--image", s(&dir.join("nope.img")), "--json"]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("cannot read image"), "{}", stderr(&o));
    assert_eq!(json(&o)["schema"], "rapilogctl.error");
    assert_eq!(json(&o)["exit_code"], 2);
    assert_eq!(code(&ctl(&["inspect"])), 2);
    assert_eq!(code(&ctl(&["inspect", "--mem", "0x1000"])), 2);
}

#[test]
fn inspect_mem_reads_the_physical_range() {
    let dir = TempDir::new("inspect-mem");
    // A fake /dev/mem: the region at 0x3000, padded to a whole page.
    let mut mem = vec![0xAAu8; 0x3000];
    let mut region = scenario().into_bytes();
    region.resize(4096, 0);
    mem.extend_from_slice(&region);
    mem.extend_from_slice(&[0x55; 4096]);
    let dev = write(&dir, "mem", &mem);
    let o = ctl(&[
        "inspect",
        "--mem",
        "0x3000,4K",
        "--mem-device",
        s(&dev),
        "--json",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v = json(&o);
    assert!(
        v["source"].as_str().unwrap().contains("0x3000"),
        "{}",
        v["source"]
    );
    assert_eq!(v["summary"]["apply"], 2);
    // SIZE@ADDR works too; the wrong address is not a region.
    assert_eq!(
        code(&ctl(&[
            "inspect",
            "--mem",
            "4K@0x3000",
            "--mem-device",
            s(&dev)
        ])),
        0
    );
    assert_eq!(
        code(&ctl(&[
            "inspect",
            "--mem",
            "0x1000,4K",
            "--mem-device",
            s(&dev)
        ])),
        3
    );
}

struct ReplaySetup {
    dir: TempDir,
    image: PathBuf,
    disk: PathBuf,
    disk_before: Vec<u8>,
    region_before: Vec<u8>,
}

fn replay_setup(tag: &str, region: RegionImage) -> ReplaySetup {
    let dir = TempDir::new(tag);
    let region_before = region.into_bytes();
    let disk_before = model_disk(SECTORS);
    ReplaySetup {
        image: write(&dir, "r.img", &region_before),
        disk: write(&dir, "disk.img", &disk_before),
        dir,
        disk_before,
        region_before,
    }
}

#[test]
fn replay_dry_run_writes_nothing() {
    let t = replay_setup("replay-dry", scenario());
    let o = ctl(&[
        "replay",
        "--image",
        s(&t.image),
        "--disk",
        s(&t.disk),
        "--disk-id",
        DISK_ID,
        "--dry-run",
    ]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("dry run: verifying only"), "{text}");
    assert!(
        text.contains("would apply 2 record(s), 1536 bytes"),
        "{text}"
    );
    assert!(
        text.contains("report applied=2 bytes=1536 empty=1 bad_descriptor=1"),
        "{text}"
    );
    assert!(text.contains("region=dry-run exit=0"), "{text}");
    assert_eq!(fs::read(&t.disk).unwrap(), t.disk_before);
    assert_eq!(fs::read(&t.image).unwrap(), t.region_before);
    // JSON form.
    let o = ctl(&[
        "replay",
        "--image",
        s(&t.image),
        "--disk",
        s(&t.disk),
        "--disk-id",
        DISK_ID,
        "--dry-run",
        "--json",
    ]);
    let v = json(&o);
    assert_eq!(v["schema"], "rapilogctl.replay");
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["report"]["applied"], 2);
    assert_eq!(v["region_update"], "dry-run");
    assert_eq!(v["exit_code"], 0);
    assert_eq!(fs::read(&t.disk).unwrap(), t.disk_before);
}

#[test]
fn replay_writes_records_and_the_report() {
    let t = replay_setup("replay", scenario());
    let o = ctl(&[
        "replay",
        "--image",
        s(&t.image),
        "--disk",
        s(&t.disk),
        "--disk-id",
        DISK_ID,
    ]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("applied 2 record(s), 1536 bytes onto"),
        "{text}"
    );
    assert!(
        text.contains("report recorded in superblock copy"),
        "{text}"
    );
    let disk = fs::read(&t.disk).unwrap();
    assert_eq!(sector(&disk, 0, 2), &pattern(1, 1024)[..]);
    assert_eq!(sector(&disk, 10, 1), &pattern(3, 512)[..]);
    // The torn record never reaches the disk; nothing else changed.
    assert_eq!(sector(&disk, 4, 1), sector(&t.disk_before, 4, 1));
    assert_eq!(sector(&disk, 11, 53), sector(&t.disk_before, 11, 53));
    // The region is clean, with the tool's report.
    let v = json(&ctl(&["inspect", "--image", s(&t.image), "--json"]));
    assert_eq!(v["superblock"]["state"], "clean");
    assert_eq!(v["superblock"]["durable_tail"], 4);
    assert_eq!(v["superblock"]["last_replay"]["by"], "tool");
    assert_eq!(v["superblock"]["last_replay"]["report"]["applied"], 2);
    assert_eq!(v["summary"]["apply"], 0);
    // Again: nothing to do, region left as it was.
    let o = ctl(&[
        "replay",
        "--image",
        s(&t.image),
        "--disk",
        s(&t.disk),
        "--disk-id",
        DISK_ID,
        "--json",
    ]);
    assert_eq!(code(&o), 0);
    assert_eq!(json(&o)["region_update"], "already-clean");
    assert_eq!(fs::read(&t.disk).unwrap(), disk);
}

#[test]
fn replay_refuses_the_wrong_disk() {
    let t = replay_setup("replay-wrong", scenario());
    let unchanged = |t: &ReplaySetup| {
        assert_eq!(fs::read(&t.disk).unwrap(), t.disk_before);
        assert_eq!(fs::read(&t.image).unwrap(), t.region_before);
    };
    // Another identity.
    let o = ctl(&[
        "replay",
        "--image",
        s(&t.image),
        "--disk",
        s(&t.disk),
        "--disk-id",
        "serial:other",
    ]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("belongs to disk serial:rl-log"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("nothing written"));
    unchanged(&t);
    // A file has no identity: --disk-id is required.
    let o = ctl(&["replay", "--image", s(&t.image), "--disk", s(&t.disk)]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("--disk-id"), "{}", stderr(&o));
    unchanged(&t);
    // Another size.
    let small = write(&t.dir, "small.img", &model_disk(32));
    let o = ctl(&[
        "replay",
        "--image",
        s(&t.image),
        "--disk",
        s(&small),
        "--disk-id",
        DISK_ID,
        "--json",
    ]);
    assert_eq!(code(&o), 4);
    assert!(
        stderr(&o).contains("64 sectors, target has 32"),
        "{}",
        stderr(&o)
    );
    assert_eq!(json(&o)["exit_code"], 4);
    // Another block size.
    let o = ctl(&[
        "replay",
        "--image",
        s(&t.image),
        "--disk",
        s(&t.disk),
        "--disk-id",
        DISK_ID,
        "--block-bytes",
        "4096",
    ]);
    assert_eq!(code(&o), 4);
    unchanged(&t);
    // Even with nothing to apply, the named disk is checked.
    let empty = RegionImage::new(
        compact_geometry(4, 2048, 1024),
        disk(DISK_ID, SECTORS, 512),
        1,
    );
    let e = write(&t.dir, "empty.img", empty.bytes());
    assert_eq!(
        code(&ctl(&[
            "replay",
            "--image",
            s(&e),
            "--disk",
            s(&small),
            "--disk-id",
            DISK_ID
        ])),
        4
    );
    // No such disk.
    let o = ctl(&[
        "replay",
        "--image",
        s(&t.image),
        "--disk",
        s(&t.dir.join("nope")),
        "--disk-id",
        DISK_ID,
    ]);
    assert_eq!(code(&o), 4);
}

#[test]
fn replay_refuses_what_is_not_a_region() {
    let t = replay_setup("replay-bad-region", scenario());
    let junk = write(&t.dir, "junk.img", &pattern(9, 4096));
    let o = ctl(&[
        "replay",
        "--image",
        s(&junk),
        "--disk",
        s(&t.disk),
        "--disk-id",
        DISK_ID,
    ]);
    assert_eq!(code(&o), 3);
    assert!(stderr(&o).contains("no valid superblock"), "{}", stderr(&o));
    assert_eq!(fs::read(&t.disk).unwrap(), t.disk_before);
    assert_eq!(
        code(&ctl(&[
            "replay",
            "--image",
            s(&t.dir.join("nope")),
            "--disk",
            s(&t.disk),
            "--disk-id",
            DISK_ID
        ])),
        2
    );
}

#[test]
fn replay_skips_damaged_records_and_says_so() {
    let mut region = scenario();
    let ring = region.active().superblock.geometry.ring_offset as usize;
    region.flip_bit(ring * 8); // seq 0's payload
    let t = replay_setup("replay-damaged", region);
    let o = ctl(&[
        "replay",
        "--image",
        s(&t.image),
        "--disk",
        s(&t.disk),
        "--disk-id",
        DISK_ID,
    ]);
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    assert!(
        stdout(&o).contains("WARNING: 1 damaged record(s) not replayed"),
        "{}",
        stdout(&o)
    );
    let disk = fs::read(&t.disk).unwrap();
    assert_eq!(sector(&disk, 0, 2), sector(&t.disk_before, 0, 2));
    assert_eq!(sector(&disk, 10, 1), &pattern(3, 512)[..]);
}

#[test]
fn live_commands_fail_clearly() {
    let dir = TempDir::new("live");
    let sysfs = dir.join("sys");
    fs::create_dir_all(sysfs.join("block")).unwrap();
    for args in [
        &["status"][..],
        &["flush"],
        &["dump", "--out", "x"],
        &["inspect", "--live"],
        &["status", "--json"],
        &["skip-bad-record", "12"],
    ] {
        let mut all = vec!["--sysfs", s(&sysfs)];
        all.extend_from_slice(args);
        let o = ctl(&all);
        assert_eq!(code(&o), 7, "{args:?}");
        assert!(
            stderr(&o).contains("rapilog module is not loaded"),
            "{}",
            stderr(&o)
        );
        assert!(
            stdout(&o).is_empty() || json(&o)["exit_code"] == 7,
            "{args:?}: {}",
            stdout(&o)
        );
    }
    fs::create_dir_all(sysfs.join("module/rapilog")).unwrap();
    let o = ctl(&["--sysfs", s(&sysfs), "flush", "/dev/rapilog7"]);
    assert_eq!(code(&o), 7);
    assert!(
        stderr(&o).contains("no such rapilog device /dev/rapilog7"),
        "{}",
        stderr(&o)
    );
    // Module and device there, control device missing: 8.
    fs::create_dir_all(sysfs.join("block/rapilog0")).unwrap();
    let missing = dir.join("no-ctl");
    for args in [
        &["status"][..],
        &["flush"],
        &["dump", "--out", "x"],
        &["inspect", "--live"],
        &["fence"],
        &["skip-bad-record", "12"],
    ] {
        let mut all = vec!["--sysfs", s(&sysfs), "--control", s(&missing)];
        all.extend_from_slice(args);
        let o = ctl(&all);
        assert_eq!(code(&o), 8, "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("the control interface is missing"),
            "{}",
            stderr(&o)
        );
        assert!(stdout(&o).is_empty());
    }
    // A control device that does not answer the status ioctl (another
    // version's, here a plain file): 8, and a JSON error with --json.
    let other = write(&dir, "other-ctl", b"");
    let o = ctl(&[
        "--sysfs",
        s(&sysfs),
        "--control",
        s(&other),
        "status",
        "--json",
    ]);
    assert_eq!(code(&o), 8, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("does not answer the status ioctl")
            && stderr(&o).contains("another version"),
        "{}",
        stderr(&o)
    );
    assert_eq!(json(&o)["exit_code"], 8);
    // dump refuses to overwrite a file before touching the device.
    let existing = write(&dir, "existing.img", b"keep");
    let o = ctl(&[
        "--sysfs",
        s(&sysfs),
        "--control",
        s(&other),
        "dump",
        "--out",
        s(&existing),
    ]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("pass --force"), "{}", stderr(&o));
    assert_eq!(fs::read(&existing).unwrap(), b"keep");
    // Nothing says the interface is missing "yet" any more.
    for args in [
        &["--help"][..],
        &["status", "--help"],
        &["flush", "--help"],
        &["dump", "--help"],
    ] {
        assert!(!stdout(&ctl(args)).contains("yet"), "{args:?}");
    }
}

fn script(dir: &TempDir, name: &str, body: &str) -> PathBuf {
    let p = write(dir, name, format!("#!/bin/sh\n{body}\n").as_bytes());
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[test]
fn arm_and_disarm_run_the_script() {
    let dir = TempDir::new("arm");
    let log = dir.join("args");
    let ok = script(
        &dir,
        "ok",
        &format!("echo \"$@\" >> {}; echo \"rapilog-arm: did $*\"", s(&log)),
    );
    if rapilogctl::is_root() {
        let o = ctl(&["arm", "--arm-script", s(&ok), "--config", "/etc/x.conf"]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert!(
            stdout(&o).contains("rapilog-arm: did -c /etc/x.conf arm"),
            "{}",
            stdout(&o)
        );
        assert!(
            stdout(&o).contains("rapilogctl: arm: done"),
            "{}",
            stdout(&o)
        );
        let o = ctl(&["disarm", "--arm-script", s(&ok)]);
        assert_eq!(code(&o), 0);
        assert_eq!(
            fs::read_to_string(&log).unwrap(),
            "-c /etc/x.conf arm\ndisarm\n"
        );
        let bad = script(
            &dir,
            "bad",
            "echo 'rapilog-arm: no memory reserved' >&2; exit 1",
        );
        let o = ctl(&["arm", "--arm-script", s(&bad)]);
        assert_eq!(code(&o), 1);
        assert!(stderr(&o).contains("no memory reserved"), "{}", stderr(&o));
        let conf = script(&dir, "conf", "exit 2");
        assert_eq!(code(&ctl(&["arm", "--arm-script", s(&conf)])), 2);
        assert_eq!(
            code(&ctl(&["arm", "--arm-script", s(&dir.join("missing"))])),
            2
        );
    } else {
        assert_eq!(code(&ctl(&["arm", "--arm-script", s(&ok)])), 77);
    }
}

#[test]
fn arm_print_shows_the_units_kexec_command() {
    let dir = TempDir::new("arm-print");
    let conf = write(
        &dir,
        "rapilog.conf",
        b"REGION=64M@0x60000000\nBACKING=/dev/disk/by-id/virtio-rl-log\nKERNEL_RELEASE=7.3.4+deb13-amd64\n\
CRASH_KERNEL=/boot/vmlinuz-%r\nRESCUE_INITRD=/var/lib/rapilog/rescue-initrd-%r.img\nCRASH_CONSOLE=console=ttyS0,115200\n",
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kexec-tools-config/rapilog-arm");
    let o = ctl(&[
        "arm",
        "--print",
        "--arm-script",
        s(&script),
        "--config",
        s(&conf),
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        stdout(&o).trim(),
        "kexec -p /boot/vmlinuz-7.3.4+deb13-amd64 --initrd=/var/lib/rapilog/rescue-initrd-7.3.4+deb13-amd64.img \
--append=\"console=ttyS0,115200 nr_cpus=1 irqpoll reset_devices panic=10 rapilog.region=64M@0x60000000 \
rapilog.disk=/dev/disk/by-id/virtio-rl-log\""
    );
}

const IOMEM: &str = "\
00000000-00000fff : Reserved
00001000-0009fbff : System RAM
0009fc00-0009ffff : Reserved
000f0000-000fffff : Reserved
00100000-7ffdffff : System RAM
  01000000-01e02fff : Kernel code
  02000000-0246bfff : Kernel rodata
  02600000-0280a2ff : Kernel data
  02c88000-02ffffff : Kernel bss
7ffe0000-7fffffff : Reserved
b0000000-bfffffff : PCI MMCONFIG 0000 [bus 00-ff]
";

fn plan_fixture(dir: &TempDir, iomem: &str, cmdline: &str) -> Vec<String> {
    let sysfs = dir.join("sys");
    let vda = sysfs.join("block/vda");
    fs::create_dir_all(vda.join("queue")).unwrap();
    fs::write(vda.join("dev"), "253:0\n").unwrap();
    fs::write(vda.join("size"), "2097152\n").unwrap();
    fs::write(vda.join("serial"), "rl-log\n").unwrap();
    fs::write(vda.join("queue/logical_block_size"), "512\n").unwrap();
    fs::write(vda.join("queue/rotational"), "0\n").unwrap();
    vec![
        "--sysfs".into(),
        s(&sysfs).into(),
        "plan".into(),
        "--iomem".into(),
        s(&write(dir, "iomem", iomem.as_bytes())).into(),
        "--cmdline".into(),
        s(&write(dir, "cmdline", cmdline.as_bytes())).into(),
        "--meminfo".into(),
        s(&write(dir, "meminfo", b"MemTotal:        2097000 kB\n")).into(),
    ]
}

fn run_plan(base: &[String], extra: &[&str]) -> Output {
    let mut args: Vec<&str> = base.iter().map(String::as_str).collect();
    args.extend_from_slice(extra);
    ctl(&args)
}

#[test]
fn plan_from_fixture_files() {
    let dir = TempDir::new("plan");
    let base = plan_fixture(
        &dir,
        IOMEM,
        "BOOT_IMAGE=/vmlinuz root=/dev/vda1 console=ttyS0\n",
    );
    let o = run_plan(&base, &["--bandwidth", "500"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = stdout(&o);
    for needle in [
        "vda",
        "serial:rl-log",
        "At 500.0 MB/s (given with --bandwidth) the log disk writes 11.9 MiB (12500000 bytes) in 25 ms",
        "Add to the kernel command line:\n  memmap=12M$0x40000000 crashkernel=256M panic=10",
        r"memmap=12M\\\$0x40000000 crashkernel=256M panic=10",
        "Machine checks need nothing",
        "region=12M@0x40000000",
    ] {
        assert!(text.contains(needle), "{needle:?} missing:\n{text}");
    }
    let v = json(&run_plan(
        &base,
        &["--bandwidth", "500", "--hold-up-ms", "100", "--json"],
    ));
    assert_eq!(v["schema"], "rapilogctl.plan");
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["sizing"]["hold_up_ms"], 100);
    assert_eq!(v["sizing"]["dirty_bound_bytes"], 25_000_000);
    assert_eq!(v["bandwidth"]["source"], "given");
    assert_eq!(v["crashkernel"], "crashkernel=256M");
    assert_eq!(v["panic"], "panic=10");
    assert_eq!(v["remove"].as_array().unwrap().len(), 0);
    assert_eq!(v["disks"][0]["name"], "vda");
    let region = v["sizing"]["region_bytes"].as_u64().unwrap();
    let phys = v["placement"]["phys"].as_u64().unwrap();
    assert!(phys >= 0x0300_0000 && phys + region <= 0x7ffe_0000 && phys % (2 << 20) == 0);
    assert_eq!(v["memmap"], format!("memmap={}M${phys:#x}", region >> 20));
    // Without a bandwidth: assumed, with a warning.
    let v = json(&run_plan(&base, &["--json"]));
    assert_eq!(v["bandwidth"]["source"], "assumed");
    assert!(v["warnings"][0].as_str().unwrap().contains("--measure"));
}

#[test]
fn plan_keeps_an_existing_reservation_and_needs_root_for_addresses() {
    let dir = TempDir::new("plan-existing");
    let iomem = IOMEM.replace(
        "  02c88000-02ffffff : Kernel bss\n",
        "  02c88000-02ffffff : Kernel bss\n60000000-63ffffff : Reserved\n",
    );
    let base = plan_fixture(
        &dir,
        &iomem,
        "root=/dev/vda1 memmap=64M$0x60000000 crashkernel=256M panic=10\n",
    );
    let v = json(&run_plan(&base, &["--bandwidth", "500", "--json"]));
    assert_eq!(v["add"].as_array().unwrap().len(), 0, "{v}");
    assert_eq!(v["module_region"], "region=64M@0x60000000");
    assert_eq!(v["warnings"].as_array().unwrap().len(), 0, "{v}");
    let text = stdout(&run_plan(&base, &["--bandwidth", "500"]));
    assert!(
        text.contains("The kernel command line has everything already."),
        "{text}"
    );

    let dir = TempDir::new("plan-hidden");
    let base = plan_fixture(
        &dir,
        "00000000-00000000 : System RAM\n  00000000-00000000 : Kernel code\n",
        "quiet\n",
    );
    let o = run_plan(&base, &["--bandwidth", "500"]);
    assert_eq!(code(&o), 77);
    assert!(stderr(&o).contains("run plan as root"), "{}", stderr(&o));
    // Unreadable input, bad numbers, --measure without --disk: bad usage.
    assert_eq!(code(&ctl(&["plan", "--iomem", "/nonexistent/iomem"])), 2);
    assert_eq!(code(&run_plan(&base, &["--bandwidth", "-3"])), 2);
    assert_eq!(code(&run_plan(&base, &["--measure"])), 2);
}

#[test]
fn crc_helper_sanity() {
    // The test images are checksummed with the same CRC the CLI uses.
    assert_eq!(SoftwareCrc32c.checksum(b"123456789"), 0xE306_9283);
}

#[test]
fn plan_measure_never_touches_an_existing_file() {
    let dir = TempDir::new("plan-measure");
    let base = plan_fixture(&dir, IOMEM, "quiet\n");
    let disk = write(&dir, "disk.img", &model_disk(SECTORS));
    // An existing scratch file is refused and left as it was.
    let existing = write(&dir, "precious", b"keep me");
    let o = run_plan(
        &base,
        &["--disk", s(&disk), "--measure", "--scratch", s(&existing)],
    );
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("must not exist"), "{}", stderr(&o));
    assert_eq!(fs::read(&existing).unwrap(), b"keep me");
    // A new one is written, timed and removed (where O_DIRECT works).
    let scratch = dir.join("scratch");
    let o = run_plan(
        &base,
        &[
            "--disk",
            s(&disk),
            "--measure",
            "--scratch",
            s(&scratch),
            "--json",
        ],
    );
    if code(&o) == 0 {
        let v = json(&o);
        assert_eq!(v["bandwidth"]["source"], "measured-write");
        assert!(v["bandwidth"]["bytes_per_s"].as_u64().unwrap() > 0);
    } else {
        assert!(stderr(&o).contains("O_DIRECT"), "{}", stderr(&o));
    }
    assert!(!scratch.exists());
    // Read-only estimate from the disk itself: the disk is unchanged.
    let o = run_plan(&base, &["--disk", s(&disk), "--measure", "--json"]);
    if code(&o) == 0 {
        assert_eq!(json(&o)["bandwidth"]["source"], "estimated-from-read");
    }
    assert_eq!(fs::read(&disk).unwrap(), model_disk(SECTORS));
}

#[test]
fn replay_checks_a_block_devices_identity_in_sysfs() {
    // Any block device node will do: the identity check reads only its
    // device number and the (fake) sysfs, and refuses before opening it.
    let Some(node) = ["/dev/loop0", "/dev/vda", "/dev/sda"]
        .into_iter()
        .map(Path::new)
        .find(|p| {
            use std::os::unix::fs::FileTypeExt;
            fs::metadata(p).is_ok_and(|m| m.file_type().is_block_device())
        })
    else {
        return;
    };
    use std::os::unix::fs::MetadataExt;
    let rdev = fs::metadata(node).unwrap().rdev();
    let (major, minor) = (
        rapilog_replay::sys::dev_major(rdev),
        rapilog_replay::sys::dev_minor(rdev),
    );
    let t = replay_setup("replay-blockdev", scenario());
    let sysfs = t.dir.join("sys");
    let dev = sysfs.join("block/fakedisk");
    fs::create_dir_all(dev.join("queue")).unwrap();
    fs::write(dev.join("dev"), format!("{major}:{minor}\n")).unwrap();
    fs::write(dev.join("size"), format!("{SECTORS}\n")).unwrap();
    fs::write(dev.join("serial"), "another-disk\n").unwrap();
    let o = ctl(&[
        "--sysfs",
        s(&sysfs),
        "replay",
        "--image",
        s(&t.image),
        "--disk",
        s(node),
    ]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("is not the region's disk"), "{err}");
    assert!(
        err.contains("the region names serial:rl-log, the device has serial:another-disk"),
        "{err}"
    );
    assert!(err.contains("nothing written"), "{err}");
    // --disk-id must agree with the region even for a device.
    let o = ctl(&[
        "--sysfs",
        s(&sysfs),
        "replay",
        "--image",
        s(&t.image),
        "--disk",
        s(node),
        "--disk-id",
        "serial:x",
    ]);
    assert_eq!(code(&o), 4);
    // A device sysfs does not know is refused too.
    fs::write(dev.join("dev"), "1:99999\n").unwrap();
    let o = ctl(&[
        "--sysfs",
        s(&sysfs),
        "replay",
        "--image",
        s(&t.image),
        "--disk",
        s(node),
        "--dry-run",
    ]);
    assert_eq!(code(&o), 4);
    assert!(stderr(&o).contains("is not in"), "{}", stderr(&o));
    assert_eq!(fs::read(&t.image).unwrap(), t.region_before);
}

/// The marker area of the 64-sector test disk: sectors 56..64.
const MARKER_AT: usize = 56 * 512;

fn live_marker(epoch: u64) -> DiskMarker {
    DiskMarker {
        state: MarkerState::Live,
        epoch,
        region_phys: 0x6000_0000,
        region_bytes: 64 << 20,
        generation: 7,
        written_at_unix_secs: 1_800_000_000,
        writer: MarkerWriter::Module,
    }
}

fn marker_of(disk: &[u8], at: usize) -> DiskMarker {
    DiskMarker::decode(&disk[at..], SoftwareCrc32c)
        .unwrap()
        .expect("no marker")
}

#[test]
fn marker_shows_a_disk_images_marker_and_clears_it() {
    let dir = TempDir::new("marker");
    let mut bytes = model_disk(SECTORS);
    let live = live_marker(0xE90C);
    live.encode_area(&mut bytes[MARKER_AT..], SoftwareCrc32c);
    let disk = write(&dir, "disk.img", &bytes);

    let o = ctl(&["marker", s(&disk)]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    let text = stdout(&o);
    for needle in [
        "disk         ",
        "(64 sectors, 32.0 KiB, 512-byte blocks)",
        "marker area  sectors 56..64 (4.0 KiB); data area 56 sectors (28.0 KiB)",
        "marker       live, generation 7: region epoch 0xe90c (64.0 MiB at 0x60000000), written by module at 2027-01-15 08:00:00 UTC",
        "meaning      a region may hold acknowledged writes that are not on this disk",
    ] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }
    let v = json(&ctl(&["marker", s(&disk), "--json"]));
    assert_eq!(v["schema"], "rapilogctl.marker");
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["state"], "live");
    assert_eq!(v["area"]["first_sector"], 56);
    assert_eq!(v["data_sectors"], 56);
    assert_eq!(
        v["marker"],
        serde_json::json!({"state": "live", "epoch": "0xe90c", "region_phys": 0x6000_0000u64,
            "region_bytes": 64u64 << 20, "generation": 7, "written_at_unix": 1_800_000_000u64,
            "writer": "module"})
    );
    assert_eq!(v["clear"], Value::Null);
    assert_eq!(fs::read(&disk).unwrap(), bytes, "reading wrote");

    // --clear: clean, by the tool, generation + 1, same epoch and region.
    let o = ctl(&["marker", s(&disk), "--clear", "--json"]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    let v = json(&o);
    assert_eq!(v["clear"], "cleared");
    assert_eq!(v["written"]["state"], "clean");
    assert_eq!(v["written"]["writer"], "tool");
    let after = fs::read(&disk).unwrap();
    let clean = marker_of(&after, MARKER_AT);
    assert_eq!(clean.state, MarkerState::Clean);
    assert_eq!((clean.epoch, clean.generation), (live.epoch, 8));
    assert_eq!(clean.writer, MarkerWriter::Tool);
    assert!(after[MARKER_AT + 512..].iter().all(|&b| b == 0));
    assert_eq!(after[..MARKER_AT], bytes[..MARKER_AT], "data area changed");
    // Again: already clean, nothing written.
    let o = ctl(&["marker", s(&disk), "--clear"]);
    assert_eq!(code(&o), 0);
    assert!(
        stdout(&o).contains("already clean: nothing written"),
        "{}",
        stdout(&o)
    );
    assert_eq!(fs::read(&disk).unwrap(), after);
}

#[test]
fn marker_damaged_exits_9_until_cleared_and_no_marker_is_left_alone() {
    let dir = TempDir::new("marker-damaged");
    let mut bytes = model_disk(SECTORS);
    live_marker(5).encode_area(&mut bytes[MARKER_AT..], SoftwareCrc32c);
    bytes[MARKER_AT + 30] ^= 0x40;
    let disk = write(&dir, "disk.img", &bytes);
    let o = ctl(&["marker", s(&disk)]);
    assert_eq!(code(&o), 9, "{}{}", stdout(&o), stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("marker       DAMAGED: checksum mismatch"),
        "{text}"
    );
    assert!(text.contains("POSSIBLE LOSS"), "{text}");
    assert_eq!(
        json(&ctl(&["marker", s(&disk), "--json"]))["state"],
        "damaged"
    );
    let o = ctl(&["marker", s(&disk), "--clear"]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    let clean = marker_of(&fs::read(&disk).unwrap(), MARKER_AT);
    assert_eq!(
        (clean.state, clean.epoch, clean.generation),
        (MarkerState::Clean, 0, 1)
    );

    // No marker (filler, as a disk never fronted): nothing to clear.
    let plain = write(&dir, "plain.img", &model_disk(SECTORS));
    let o = ctl(&["marker", s(&plain), "--clear", "--json"]);
    assert_eq!(code(&o), 0);
    let v = json(&o);
    assert_eq!(
        (v["state"].as_str(), v["clear"].as_str()),
        (Some("none"), Some("nothing-to-clear"))
    );
    assert_eq!(fs::read(&plain).unwrap(), model_disk(SECTORS));

    // 4 KiB blocks: the same 8 sectors; 64 KiB blocks: the last block.
    let big = write(&dir, "big.img", &vec![0u8; 1 << 20]);
    let v = json(&ctl(&[
        "marker",
        s(&big),
        "--block-bytes",
        "4096",
        "--json",
    ]));
    assert_eq!(
        (
            v["area"]["first_sector"].as_u64(),
            v["area"]["sectors"].as_u64()
        ),
        (Some(2040), Some(8))
    );
    let v = json(&ctl(&[
        "marker",
        s(&big),
        "--block-bytes",
        "65536",
        "--json",
    ]));
    assert_eq!(
        (
            v["area"]["first_sector"].as_u64(),
            v["area"]["sectors"].as_u64()
        ),
        (Some(1920), Some(128))
    );
    // Too small for an area; a bad block size; a missing disk.
    let tiny = write(&dir, "tiny.img", &[0u8; 4096]);
    let v = json(&ctl(&["marker", s(&tiny), "--json"]));
    assert_eq!(
        (v["state"].as_str(), &v["area"]),
        (Some("no-area"), &Value::Null)
    );
    assert_eq!(code(&ctl(&["marker", s(&big), "--block-bytes", "1000"])), 2);
    let o = ctl(&["marker", s(&dir.join("missing.img")), "--json"]);
    assert_eq!(code(&o), 4);
    assert_eq!(json(&o)["schema"], "rapilogctl.error");
}

#[test]
fn replay_writes_a_live_marker_clean_and_leaves_one_of_another_epoch() {
    // scenario(): region epoch 0xE90C for DISK_ID, 64 sectors.
    let t = replay_setup("replay-marker", scenario());
    let mut bytes = t.disk_before.clone();
    live_marker(0xE90C).encode_area(&mut bytes[MARKER_AT..], SoftwareCrc32c);
    fs::write(&t.disk, &bytes).unwrap();
    let args = [
        "replay",
        "--image",
        s(&t.image),
        "--disk",
        s(&t.disk),
        "--disk-id",
        DISK_ID,
    ];
    let o = ctl(&[&args[..], &["--json"]].concat());
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    let v = json(&o);
    assert_eq!(v["marker"]["outcome"], "cleaned");
    assert_eq!(v["marker"]["found"]["state"], "live");
    assert_eq!(v["marker"]["written"]["writer"], "tool");
    assert!(v["report_line"]
        .as_str()
        .unwrap()
        .contains("marker=cleaned"));
    let after = fs::read(&t.disk).unwrap();
    let clean = marker_of(&after, MARKER_AT);
    assert_eq!(
        (clean.state, clean.writer, clean.generation),
        (MarkerState::Clean, MarkerWriter::Tool, 8)
    );
    assert_eq!(sector(&after, 10, 1), &pattern(3, 512)[..]);

    // A live marker of another epoch: the records are replayed, the marker
    // is left, exit 9.
    let t = replay_setup("replay-marker-other", scenario());
    let mut bytes = t.disk_before.clone();
    live_marker(0x1234).encode_area(&mut bytes[MARKER_AT..], SoftwareCrc32c);
    fs::write(&t.disk, &bytes).unwrap();
    let args = [
        "replay",
        "--image",
        s(&t.image),
        "--disk",
        s(&t.disk),
        "--disk-id",
        DISK_ID,
    ];
    let o = ctl(&args);
    assert_eq!(code(&o), 9, "{}{}", stdout(&o), stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("POSSIBLE LOSS OF ACKNOWLEDGED WRITES: the log disk's marker says it was fronted by region epoch 0x1234"), "{text}");
    assert!(
        text.contains("marker=possible-loss region=written exit=9"),
        "{text}"
    );
    let after = fs::read(&t.disk).unwrap();
    assert_eq!(after[MARKER_AT..], bytes[MARKER_AT..], "marker touched");
    assert_eq!(sector(&after, 10, 1), &pattern(3, 512)[..]);
    let v = json(&ctl(&["marker", s(&t.disk), "--json"]));
    assert_eq!(v["marker"]["epoch"], "0x1234");
}

#[test]
fn plan_apply_writes_a_grub_dropin_once() {
    let dir = TempDir::new("plan-apply");
    let base = plan_fixture(&dir, IOMEM, "root=/dev/vda1 quiet\n");
    let root = dir.join("root");
    let o = run_plan(
        &base,
        &["--bandwidth", "500", "--apply", "--root", s(&root)],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("now run update-grub"), "{}", stderr(&o));
    let path = root.join("etc/default/grub.d/rapilog.cfg");
    let text = fs::read_to_string(&path).unwrap();
    let line = text
        .lines()
        .find(|l| !l.starts_with('#'))
        .expect("an assignment");
    assert_eq!(
        line,
        r#"GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT memmap=12M\\\$0x40000000 crashkernel=256M panic=10""#
    );
    // Again: nothing changes.
    let o = run_plan(
        &base,
        &["--bandwidth", "500", "--apply", "--root", s(&root)],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("nothing to do"), "{}", stderr(&o));
    assert_eq!(fs::read_to_string(&path).unwrap(), text);
    // After the reboot the parameters are on the command line (and the
    // region reserved): the plan keeps them and the drop-in stays the same.
    let iomem = IOMEM.replace(
        "  02c88000-02ffffff : Kernel bss\n",
        "  02c88000-02ffffff : Kernel bss\n7f200000-7fdfffff : Reserved\n",
    );
    let after = plan_fixture(
        &dir,
        &iomem,
        "root=/dev/vda1 quiet memmap=12M$0x40000000 crashkernel=256M\n",
    );
    let o = run_plan(
        &after,
        &["--bandwidth", "500", "--apply", "--root", s(&root)],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("nothing to do"), "{}", stderr(&o));
    assert_eq!(fs::read_to_string(&path).unwrap(), text);
    // --grub-dropin PATH: the same file anywhere; --root needs --apply.
    let other = dir.join("elsewhere.cfg");
    let o = run_plan(&base, &["--bandwidth", "500", "--grub-dropin", s(&other)]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(fs::read_to_string(&other).unwrap(), text);
    assert_eq!(code(&run_plan(&base, &["--root", s(&root)])), 2);
}
