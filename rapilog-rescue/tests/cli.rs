// SPDX-License-Identifier: GPL-2.0

//! The `rapilog-rescue` binary end to end: region images and a "physical
//! memory" file, disks as files (forced, or found through a fake sysfs),
//! output, exit codes, and that refusals write nothing.
//!
//! Never reboots: every run is either configured by flags (no reboot unless
//! `--reboot`) or by a command line file with `rapilog.reboot=0`, and the
//! host is not a crash kernel.

// Region images, disks and a fake sysfs: the helpers of rapilog-replay's own
// engine and discovery tests, which this binary's runs build on.
#[path = "../../rapilog-replay/tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{mixed, FakeSysfs, Scenario, TempDir, DISK_ID, DISK_SECTORS};
use rapilog_format::{
    ActiveSuperblock, DiskMarker, MarkerState, MarkerWriter, RegionState, Replayer, SoftwareCrc32c,
};

const BIN: &str = env!("CARGO_BIN_EXE_rapilog-rescue");

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn rescue(args: &[&str]) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(BIN).args(args).output().unwrap();
    let run = Run {
        code: status.code().expect("killed by a signal"),
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
    };
    for line in run.stdout.lines().chain(run.stderr.lines()) {
        assert!(
            line.starts_with("rapilog-rescue: ")
                || args.contains(&"--help")
                || args.contains(&"--list-disks"),
            "{line}"
        );
    }
    run
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

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

/// Writes the scenario's region image and disk into `dir`.
fn files(s: &Scenario, dir: &TempDir) -> (std::path::PathBuf, std::path::PathBuf) {
    let image = dir.join("region.img");
    let disk = dir.join("disk.img");
    std::fs::write(&image, s.image.bytes()).unwrap();
    std::fs::write(&disk, &s.disk_before).unwrap();
    (image, disk)
}

#[track_caller]
fn assert_failed(run: &Run, code: i32, needle: &str) {
    assert_eq!(
        run.code, code,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    let lines: Vec<_> = run.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "one failure line expected: {:?}",
        run.stderr
    );
    assert!(
        lines[0].starts_with(&format!("rapilog-rescue: FAILED (exit {code}): ")),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains(needle), "{}", lines[0]);
}

#[test]
fn replays_an_image_onto_a_forced_target() {
    let (s, _) = mixed();
    let dir = TempDir::new("cli-image");
    let (image, disk) = files(&s, &dir);
    let run = rescue(&["--image", p(&image), "--target", p(&disk)]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.stderr, "");
    assert_same(&std::fs::read(&disk).unwrap(), &s.expected, "disk");
    let out = &run.stdout;
    for needle in [
        "superblock copy",
        "disk serial:rl-log (256 sectors, 512-byte blocks)",
        "identity serial:rl-log not checked (forced)",
        "applied 4 record(s), 3584 bytes onto",
        "1 torn or bad descriptor",
        "report recorded in superblock copy",
        "rapilog-rescue: report applied=4 bytes=3584 empty=2 bad_descriptor=1 malformed=0 \
         wrong_epoch=0 stale=1 bad_payload=0 beyond_disk=0 from_seq=1 duration_us=",
        "region=written exit=0",
        "done in ",
    ] {
        assert!(out.contains(needle), "{needle:?} not in:\n{out}");
    }
    let region = std::fs::read(&image).unwrap();
    let sb = ActiveSuperblock::load(&region, SoftwareCrc32c)
        .unwrap()
        .superblock;
    assert_eq!(sb.state, RegionState::Clean);
    assert_eq!(sb.last_replay.replayer, Replayer::Rescue);
    assert_eq!(sb.last_replay.report.records_applied, 4);

    // Again: nothing to do, nothing written, the first report kept.
    let run = rescue(&["--image", p(&image), "--target", p(&disk)]);
    assert_eq!(run.code, 0);
    assert!(
        run.stdout.contains("region already clean"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("applied 0 record(s)"), "{}", run.stdout);
    assert!(
        run.stdout.contains("log disk has no loss marker"),
        "{}",
        run.stdout
    );
    assert_same(&std::fs::read(&image).unwrap(), &region, "region");
    assert_same(&std::fs::read(&disk).unwrap(), &s.expected, "disk");
}

/// A live marker for the scenario's region, in the disk's last 8 sectors.
fn live_marker(s: &Scenario, disk: &mut [u8]) -> DiskMarker {
    let marker = DiskMarker {
        state: MarkerState::Live,
        epoch: s.image.active().superblock.epoch,
        region_phys: PHYS,
        region_bytes: s.image.bytes().len() as u64,
        generation: 5,
        written_at_unix_secs: 1_800_000_000,
        writer: MarkerWriter::Module,
    };
    marker.encode_area(&mut disk[MARKER_AT..], SoftwareCrc32c);
    marker
}

const MARKER_AT: usize = (DISK_SECTORS as usize - 8) * 512;

#[test]
fn replay_writes_the_live_marker_clean() {
    let (s, _) = mixed();
    let dir = TempDir::new("cli-marker");
    let (image, disk) = files(&s, &dir);
    let mut before = s.disk_before.clone();
    let live = live_marker(&s, &mut before);
    std::fs::write(&disk, &before).unwrap();
    let run = rescue(&["--image", p(&image), "--target", p(&disk)]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("log disk marker: live marker, generation 5"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("-> clean (generation 6), written and flushed"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(" marker=cleaned region=written exit=0"),
        "{}",
        run.stdout
    );
    let after = std::fs::read(&disk).unwrap();
    let clean = DiskMarker::decode(&after[MARKER_AT..], SoftwareCrc32c)
        .unwrap()
        .unwrap();
    assert_eq!(
        (clean.state, clean.writer),
        (MarkerState::Clean, MarkerWriter::Rescue)
    );
    assert_eq!((clean.epoch, clean.generation), (live.epoch, 6));
    assert_same(&after[..MARKER_AT], &s.expected[..MARKER_AT], "data area");
}

#[test]
fn wiped_region_over_a_live_marker_exits_9_and_writes_nothing() {
    let (s, _) = mixed();
    let mut wiped = Scenario::new(512);
    wiped.image.bytes_mut().fill(0);
    let m = Machine::new(&wiped, "rl-log");
    let mut before = s.disk_before.clone();
    let live = live_marker(&s, &mut before);
    std::fs::write(m.dir.join("dev/vda"), &before).unwrap();
    let run = m.run(&format!("rapilog.disk={DISK_ID}"), &[]);
    assert_failed(&run, 9, "POSSIBLE LOSS OF ACKNOWLEDGED WRITES: ");
    let line = run.stderr.trim_end();
    assert!(
        line.contains(&format!(
            "region epoch {:#x} that was neither drained nor replayed",
            live.epoch
        )),
        "{line}"
    );
    assert!(line.contains("no valid superblock"), "{line}");
    assert!(line.contains("nothing written"), "{line}");
    assert!(run.stdout.contains("log disk "), "{}", run.stdout);
    assert_same(&m.disk("vda"), &before, "vda");
    assert_same(&m.disk("vdb"), &wiped.disk_before, "vdb");
    // Without rapilog.disk= there is no telling which disk: exit 3 as ever.
    let run = m.run("", &[]);
    assert_failed(&run, 3, "no valid superblock");
}

#[test]
fn corrupted_record_exits_1_and_is_not_written() {
    let mut s = Scenario::new(512);
    s.write(10, 512, 1);
    let bad = s.write(20, 1024, 2);
    let at = s.payload_offset(bad) + 3;
    s.image.bytes_mut()[at] ^= 0xff;
    let mut expected = s.expected.clone();
    expected[20 * 512..22 * 512].copy_from_slice(&s.disk_before[20 * 512..22 * 512]);
    let dir = TempDir::new("cli-corrupt");
    let (image, disk) = files(&s, &dir);
    let run = rescue(&["--image", p(&image), "--target", p(&disk)]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("WARNING: 1 damaged record(s) not replayed"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("bad_payload=1"), "{}", run.stdout);
    assert_same(&std::fs::read(&disk).unwrap(), &expected, "disk");
}

#[test]
fn wrong_disk_is_refused_and_nothing_is_written() {
    let (s, _) = mixed();
    let dir = TempDir::new("cli-wrong");
    let (image, disk) = files(&s, &dir);
    let run = rescue(&[
        "--image",
        p(&image),
        "--target",
        p(&disk),
        "--disk-id",
        "serial:rl-other",
    ]);
    assert_failed(&run, 4, "belongs to disk serial:rl-log but the configuration names disk serial:rl-other; nothing written");
    // Same id, other size.
    let small = dir.join("small.img");
    std::fs::write(&small, &s.disk_before[..(DISK_SECTORS as usize - 8) * 512]).unwrap();
    let run = rescue(&["--image", p(&image), "--target", p(&small)]);
    assert_failed(
        &run,
        4,
        "region's disk has 256 sectors, target has 248; nothing written",
    );
    // Same id and size, other block size.
    let run = rescue(&[
        "--image",
        p(&image),
        "--target",
        p(&disk),
        "--block-bytes",
        "4096",
    ]);
    assert_failed(&run, 4, "512-byte blocks, target has 4096");
    assert_same(&std::fs::read(&disk).unwrap(), &s.disk_before, "disk");
    assert_same(
        &std::fs::read(&small).unwrap(),
        &s.disk_before[..(DISK_SECTORS as usize - 8) * 512],
        "disk",
    );
    assert_same(&std::fs::read(&image).unwrap(), s.image.bytes(), "region");
}

#[test]
fn bad_region_and_bad_usage() {
    let dir = TempDir::new("cli-bad");
    let junk = dir.join("junk.img");
    std::fs::write(&junk, vec![0x5a; 8192]).unwrap();
    let disk = dir.join("disk.img");
    std::fs::write(&disk, vec![0u8; 4096]).unwrap();
    let run = rescue(&["--image", p(&junk), "--target", p(&disk)]);
    assert_failed(
        &run,
        3,
        "no valid superblock (copy 0: bad magic; copy 1: bad magic); nothing written",
    );
    let run = rescue(&["--image", p(&dir.join("missing")), "--target", p(&disk)]);
    assert_failed(&run, 3, "cannot read region image");
    assert_same(&std::fs::read(&disk).unwrap(), &[0u8; 4096], "disk");
    assert_failed(&rescue(&["--bogus"]), 2, "unknown argument \"--bogus\"");
    assert_failed(&rescue(&["--region", "64M"]), 2, "expected SIZE@PHYS");
    let cmdline = dir.join("cmdline");
    std::fs::write(&cmdline, "console=ttyS0 quiet\n").unwrap();
    assert_failed(
        &rescue(&["--cmdline", p(&cmdline)]),
        2,
        "no rapilog.region=SIZE@PHYS on the kernel command line",
    );
    let help = rescue(&["--help"]);
    assert_eq!(help.code, 0);
    assert!(help.stdout.contains("exit codes:"));
}

/// A "physical memory" file with the region at `PHYS`, a fake sysfs with
/// the log disk `vda` (and a decoy), and a device directory with regular
/// files as disks.
struct Machine {
    dir: TempDir,
    sysfs: FakeSysfs,
    spec: String,
}

const PHYS: u64 = 0x20_0000;

impl Machine {
    fn new(s: &Scenario, serial: &str) -> Self {
        let dir = TempDir::new("cli-machine");
        let region_len = s.image.bytes().len().div_ceil(4096) * 4096;
        let mut mem = vec![0u8; PHYS as usize + region_len + 4096];
        mem[PHYS as usize..PHYS as usize + s.image.bytes().len()].copy_from_slice(s.image.bytes());
        std::fs::write(dir.join("mem"), &mem).unwrap();
        let sysfs = FakeSysfs::new();
        sysfs.disk("vda", (253, 0), DISK_SECTORS, 512);
        sysfs.put("block/vda/serial", format!("{serial}\n").as_bytes());
        sysfs.disk("vdb", (253, 16), DISK_SECTORS, 512);
        sysfs.put("block/vdb/serial", b"rl-decoy\n");
        std::fs::create_dir(dir.join("dev")).unwrap();
        std::fs::write(dir.join("dev/vda"), &s.disk_before).unwrap();
        std::fs::write(dir.join("dev/vdb"), &s.disk_before).unwrap();
        Self {
            spec: format!("{}K@{PHYS:#x}", region_len / 1024),
            dir,
            sysfs,
        }
    }

    fn cmdline(&self, extra: &str) -> String {
        let path = self.dir.join("cmdline");
        std::fs::write(
            &path,
            format!(
                "console=ttyS0 rapilog.region={} rapilog.reboot=0 {extra}\n",
                self.spec
            ),
        )
        .unwrap();
        p(&path).to_string()
    }

    fn run(&self, cmdline_extra: &str, flags: &[&str]) -> Run {
        let cmdline = self.cmdline(cmdline_extra);
        let mem = self.dir.join("mem");
        let dev = self.dir.join("dev");
        let mut args = vec![
            "--cmdline",
            &cmdline,
            "--mem",
            p(&mem),
            "--sysfs",
            p(self.sysfs.root()),
            "--dev-dir",
            p(&dev),
        ];
        args.extend_from_slice(flags);
        rescue(&args)
    }

    fn region(&self) -> Vec<u8> {
        std::fs::read(self.dir.join("mem")).unwrap()[PHYS as usize..].to_vec()
    }

    fn disk(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.join("dev").join(name)).unwrap()
    }
}

#[test]
fn crash_kernel_mode_finds_the_disk_by_identity() {
    for flags in [&[][..], &["--read"][..]] {
        let (s, _) = mixed();
        let m = Machine::new(&s, "rl-log");
        let run = m.run(&format!("rapilog.disk={DISK_ID}"), flags);
        assert_eq!(run.code, 0, "{flags:?}\n{}{}", run.stdout, run.stderr);
        assert!(
            run.stdout
                .contains("(vda 253:0, serial:rl-log, 256 sectors, 512-byte blocks)"),
            "{}",
            run.stdout
        );
        assert!(run.stdout.contains("via "), "{}", run.stdout);
        assert_same(&m.disk("vda"), &s.expected, "log disk");
        assert_same(&m.disk("vdb"), &s.disk_before, "decoy disk");
        let sb = ActiveSuperblock::load(&m.region(), SoftwareCrc32c)
            .unwrap()
            .superblock;
        assert_eq!(sb.state, RegionState::Clean);
        assert_eq!(sb.last_replay.report.records_applied, 4);
    }
}

#[test]
fn crash_kernel_mode_refusals_write_nothing() {
    let (s, _) = mixed();
    // The disk with the region's identity is missing.
    let m = Machine::new(&s, "rl-other");
    let run = m.run("", &["--wait", "0"]);
    assert_failed(
        &run,
        4,
        "no disk has identity serial:rl-log (seen: vda serial:rl-other, /dev/disk/by-id/virtio-rl-other; \
         vdb serial:rl-decoy, /dev/disk/by-id/virtio-rl-decoy); nothing written",
    );
    // Two disks claim it.
    m.sysfs.put("block/vda/serial", b"rl-log");
    m.sysfs.put("block/vdb/serial", b"rl-log");
    let run = m.run("", &[]);
    assert_failed(
        &run,
        4,
        "2 disks have identity serial:rl-log: vda, vdb; refusing to guess",
    );
    // The configuration names another disk than the region.
    let run = m.run("rapilog.disk=serial:rl-decoy", &[]);
    assert_failed(&run, 4, "configuration names disk serial:rl-decoy");
    // The live driver owns the region.
    m.sysfs.put("module/rapilog/refcnt", b"1");
    let run = m.run("", &[]);
    assert_failed(&run, 2, "rapilog.ko is loaded");
    assert_same(&m.disk("vda"), &s.disk_before, "vda");
    assert_same(&m.disk("vdb"), &s.disk_before, "vdb");
    assert_same(
        &m.region()[..s.image.bytes().len()],
        s.image.bytes(),
        "region",
    );
}

#[test]
fn dry_run_verifies_and_writes_nothing() {
    let (s, _) = mixed();
    let m = Machine::new(&s, "rl-log");
    let run = m.run("rapilog.dry_run=1", &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("would apply 4 record(s), 3584 bytes onto"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("region=dry-run"), "{}", run.stdout);
    assert_same(&m.disk("vda"), &s.disk_before, "vda");
    assert_same(
        &m.region()[..s.image.bytes().len()],
        s.image.bytes(),
        "region",
    );
}

#[test]
fn list_disks() {
    let (s, _) = mixed();
    let m = Machine::new(&s, "rl-log");
    let run = rescue(&["--list-disks", "--sysfs", p(m.sysfs.root())]);
    assert_eq!(run.code, 0);
    assert_eq!(
        run.stdout,
        "vda 253:0 256 sectors, 512-byte blocks: serial:rl-log, /dev/disk/by-id/virtio-rl-log\n\
         vdb 253:16 256 sectors, 512-byte blocks: serial:rl-decoy, /dev/disk/by-id/virtio-rl-decoy\n"
    );
}

/// Three regions in one "physical memory" file, each for its own disk
/// (serial rl-a, rl-b, rl-c); the disks present are the ones named in
/// `present`, as vda, vdb, ... in that order.
struct Several {
    dir: TempDir,
    sysfs: FakeSysfs,
    scenarios: Vec<Scenario>,
    specs: Vec<String>,
}

const SEVERAL_AT: [u64; 3] = [0x20_0000, 0x40_0000, 0x60_0000];

impl Several {
    fn new(present: &[&str]) -> Self {
        let dir = TempDir::new("cli-several");
        let mut mem = vec![0u8; 0x80_0000];
        let mut scenarios = Vec::new();
        let mut specs = Vec::new();
        for (k, serial) in ["rl-a", "rl-b", "rl-c"].iter().enumerate() {
            let mut s = Scenario::with(&format!("serial:{serial}"), DISK_SECTORS, 512);
            s.write(4 + k as u64, 1024, 10 + k as u64);
            s.write(40, 512, 20 + k as u64);
            let at = SEVERAL_AT[k] as usize;
            mem[at..at + s.image.bytes().len()].copy_from_slice(s.image.bytes());
            specs.push(format!(
                "{}K@{:#x}",
                s.image.bytes().len().div_ceil(4096) * 4,
                SEVERAL_AT[k]
            ));
            scenarios.push(s);
        }
        std::fs::write(dir.join("mem"), &mem).unwrap();
        let sysfs = FakeSysfs::new();
        std::fs::create_dir(dir.join("dev")).unwrap();
        for (i, serial) in present.iter().enumerate() {
            let name = format!("vd{}", (b'a' + i as u8) as char);
            sysfs.disk(&name, (253, 16 * i as u32), DISK_SECTORS, 512);
            sysfs.put(&format!("block/{name}/serial"), serial.as_bytes());
            std::fs::write(dir.join("dev").join(&name), &scenarios[0].disk_before).unwrap();
        }
        Self {
            dir,
            sysfs,
            scenarios,
            specs,
        }
    }

    fn run(&self, cmdline: &str, flags: &[&str]) -> Run {
        let path = self.dir.join("cmdline");
        std::fs::write(&path, format!("console=ttyS0 rapilog.reboot=0 {cmdline}\n")).unwrap();
        let (mem, dev) = (self.dir.join("mem"), self.dir.join("dev"));
        let mut args = vec![
            "--cmdline",
            p(&path),
            "--mem",
            p(&mem),
            "--sysfs",
            p(self.sysfs.root()),
            "--dev-dir",
            p(&dev),
            "--wait",
            "0",
        ];
        args.extend_from_slice(flags);
        rescue(&args)
    }

    fn region(&self, k: usize) -> Vec<u8> {
        let at = SEVERAL_AT[k] as usize;
        std::fs::read(self.dir.join("mem")).unwrap()[at..at + self.scenarios[k].image.bytes().len()]
            .to_vec()
    }

    fn disk(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.join("dev").join(name)).unwrap()
    }
}

#[test]
fn several_regions_one_disk_missing_the_others_are_replayed() {
    // rl-b's disk is absent: region 1 fails, regions 0 and 2 land on theirs.
    let m = Several::new(&["rl-a", "rl-c"]);
    let s = &m.specs;
    let run = m.run(
        &format!(
        "rapilog.region={} rapilog.disk=serial:rl-a rapilog.region={} rapilog.disk=serial:rl-b \
         rapilog.region={} rapilog.disk=serial:rl-c",
        s[0], s[1], s[2]
    ),
        &[],
    );
    assert_eq!(run.code, 4, "{}{}", run.stdout, run.stderr);
    assert_same(&m.disk("vda"), &m.scenarios[0].expected, "rl-a on vda");
    assert_same(&m.disk("vdb"), &m.scenarios[2].expected, "rl-c on vdb");
    for k in [0, 2] {
        let sb = ActiveSuperblock::load(&m.region(k), SoftwareCrc32c)
            .unwrap()
            .superblock;
        assert_eq!(sb.state, RegionState::Clean, "region {k}");
        assert_eq!(sb.last_replay.report.records_applied, 2, "region {k}");
    }
    assert_same(
        &m.region(1),
        m.scenarios[1].image.bytes(),
        "region 1 untouched",
    );
    let out = &run.stdout;
    for needle in [
        format!(
            "rapilog-rescue: region 0 (1 of 3): {}, disk serial:rl-a\n",
            s[0]
        ),
        format!(
            "rapilog-rescue: region 1 (2 of 3): {}, disk serial:rl-b\n",
            s[1]
        ),
        format!(
            "rapilog-rescue: region 2 (3 of 3): {}, disk serial:rl-c\n",
            s[2]
        ),
        "(vda 253:0, serial:rl-a, 256 sectors, 512-byte blocks)".into(),
        "(vdb 253:16, serial:rl-c, 256 sectors, 512-byte blocks)".into(),
        format!(
            "rapilog-rescue: 2 of 3 regions replayed cleanly; region 1 ({}): exit 4, \
             disk refused or not found\n",
            s[1]
        ),
    ] {
        assert!(out.contains(&needle), "{needle:?} not in:\n{out}");
    }
    let reports: Vec<_> = out
        .lines()
        .filter(|l| l.starts_with("rapilog-rescue: report applied="))
        .collect();
    assert_eq!(reports.len(), 2, "{out}");
    assert!(
        reports[0].ends_with(" region=written exit=0 index=0"),
        "{}",
        reports[0]
    );
    assert!(
        reports[1].ends_with(" region=written exit=0 index=2"),
        "{}",
        reports[1]
    );
    // The summary comes after every region, then the closing line.
    let last: Vec<_> = out.lines().rev().take(2).collect();
    assert!(
        last[0].starts_with("rapilog-rescue: done in ") && last[0].ends_with(" (exit 4)"),
        "{out}"
    );
    assert!(last[1].contains("2 of 3 regions replayed cleanly"), "{out}");
    assert_failed(
        &run,
        4,
        &format!("region 1 ({}): no disk has identity serial:rl-b", s[1]),
    );
}

#[test]
fn several_regions_all_replayed_and_the_first_failing_does_not_stop_the_rest() {
    // Every disk present, no rapilog.disk= at all: each region finds the
    // disk it names itself.
    let m = Several::new(&["rl-c", "rl-b", "rl-a"]);
    let s = &m.specs;
    let run = m.run(
        &format!(
            "rapilog.region={} rapilog.region={} rapilog.region={}",
            s[0], s[1], s[2]
        ),
        &[],
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.stderr, "");
    assert!(
        run.stdout
            .contains("rapilog-rescue: 3 of 3 regions replayed cleanly\n"),
        "{}",
        run.stdout
    );
    assert_same(&m.disk("vda"), &m.scenarios[2].expected, "rl-c on vda");
    assert_same(&m.disk("vdb"), &m.scenarios[1].expected, "rl-b on vdb");
    assert_same(&m.disk("vdc"), &m.scenarios[0].expected, "rl-a on vdc");

    // The first region's superblocks wiped, the second paired with
    // another disk than the one it names: the third is still replayed.
    let m = Several::new(&["rl-a", "rl-b", "rl-c"]);
    let mut mem = std::fs::read(m.dir.join("mem")).unwrap();
    mem[SEVERAL_AT[0] as usize..SEVERAL_AT[0] as usize + 1024].fill(0);
    std::fs::write(m.dir.join("mem"), &mem).unwrap();
    let s = &m.specs;
    let run = m.run(
        &format!(
            "rapilog.region={} rapilog.disk= rapilog.region={} rapilog.disk=serial:rl-x \
             rapilog.region={} rapilog.disk=serial:rl-c",
            s[0], s[1], s[2]
        ),
        &[],
    );
    assert_eq!(run.code, 4, "{}{}", run.stdout, run.stderr);
    let failures: Vec<_> = run.stderr.lines().collect();
    assert_eq!(failures.len(), 2, "{}", run.stderr);
    assert!(
        failures[0].starts_with(&format!(
            "rapilog-rescue: FAILED (exit 3): region 0 ({}): ",
            s[0]
        )) && failures[0].contains("no valid superblock"),
        "{}",
        failures[0]
    );
    assert!(
        failures[1].starts_with(&format!(
            "rapilog-rescue: FAILED (exit 4): region 1 ({}): ",
            s[1]
        )) && failures[1].contains("configuration names disk serial:rl-x"),
        "{}",
        failures[1]
    );
    assert!(
        run.stdout.contains(&format!(
            "1 of 3 regions replayed cleanly; region 0 ({}): exit 3, region refused; \
             region 1 ({}): exit 4, disk refused or not found\n",
            s[0], s[1]
        )),
        "{}",
        run.stdout
    );
    assert_same(&m.disk("vdc"), &m.scenarios[2].expected, "rl-c on vdc");
    assert_same(&m.disk("vda"), &m.scenarios[0].disk_before, "vda untouched");
    assert_same(&m.disk("vdb"), &m.scenarios[1].disk_before, "vdb untouched");
}
