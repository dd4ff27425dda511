// SPDX-License-Identifier: GPL-2.0

//! `rapilogctl status`: the driver's status block (decoded by the format
//! crate, [`rapilog_format::control::Status`]) turned into a verdict, a
//! table for people and the `rapilogctl.status` JSON document.
//!
//! # The verdict
//!
//! One line, worst level first:
//!
//! - **POSSIBLE LOSS**: the module went live over a possible loss that an
//!   administrator accepted (`accept_loss=1`): the log disk's marker said a
//!   region held acknowledged writes that were neither drained nor
//!   replayed, and the region did not have them. Whatever else holds, writes
//!   acknowledged before this load may be missing; the line says why.
//! - **AT RISK**: a likely event loses acknowledged writes: the crash kernel
//!   is not armed (a panic then relies on RAM surviving the reboot until
//!   the module's replay at the next load, which firmware need not allow),
//!   the power-fail drain failed, writeback holds at a bad record (one
//!   that failed its checksum in the region: it is never written, and the
//!   ring fills behind it until writers wait; the line names it, and
//!   `rapilogctl skip-bad-record SEQ` drops it), or the log disk is dead
//!   (writeback failed for longer than `dead_disk_ms`: new writes fail with
//!   EIO, and the acknowledged writes not yet on the disk live only in the
//!   region; the line says for how long, and how old the oldest one is).
//! - **DEGRADED**: acknowledged writes are safe from a panic, but a
//!   protection is missing or the log disk is in trouble: a PCI device's
//!   DMA can reach the region (IOMMU fence unfenced or unchecked), write
//!   protection is off, writeback is retrying a failed disk write, write
//!   bios failed, the power-fail path is off (a power loss loses the dirty
//!   bytes), or records failed writeback's check since load (something
//!   corrupts the region: failing memory or a device's DMA).
//! - **PROTECTED**: none of the above: crash kernel armed, IOMMU fenced,
//!   region write-protected, power-fail path armed, writeback healthy.
//!
//! The line names every problem found, then how much is dirty.

use std::fmt::Write as _;

use rapilog_format::control::{
    flags, FencePolicy, FenceState, HeldRecord, PowerFailState, ProtectMode, Status,
};
use rapilog_format::{MarkerState, RecordFault, SoftwareCrc32c};
use serde::Serialize;

use crate::inspect::{superblock_fields, SuperblockFields};
use crate::units::human;

/// Name of the `--json` document of `status`.
pub const SCHEMA: &str = "rapilogctl.status";
/// Its version; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// Whether a crash kernel is loaded (`/sys/kernel/kexec_crash_loaded`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashKernel {
    /// `1`: a panic boots the crash kernel, which replays the region.
    Armed,
    /// `0`.
    NotArmed,
    /// The file is missing: this kernel cannot load a crash kernel.
    Unsupported,
}

impl CrashKernel {
    /// From the contents of `kexec_crash_loaded` (`None`: file missing).
    pub fn from_sysfs(text: Option<&str>) -> Self {
        match text.map(str::trim) {
            None => Self::Unsupported,
            Some("1") => Self::Armed,
            Some(_) => Self::NotArmed,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Armed => "armed",
            Self::NotArmed => "not_armed",
            Self::Unsupported => "unsupported",
        }
    }
}

/// How safe acknowledged writes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Every protection in place.
    Protected,
    /// Safe from a panic, a protection missing.
    Degraded,
    /// A likely event loses acknowledged writes.
    AtRisk,
    /// Acknowledged writes may already have been lost (accepted at load).
    PossibleLoss,
}

impl Level {
    /// As the verdict line starts.
    pub fn words(self) -> &'static str {
        match self {
            Self::Protected => "PROTECTED",
            Self::Degraded => "DEGRADED",
            Self::AtRisk => "AT RISK",
            Self::PossibleLoss => "POSSIBLE LOSS",
        }
    }
}

/// The verdict: the level, every problem found (worst first), the line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// `protected`, `degraded` or `at_risk`.
    pub level: Level,
    /// Problems, AT RISK ones first.
    pub problems: Vec<String>,
    /// The one-line verdict.
    pub line: String,
}

/// `errno` in words: `EIO, Input/output error`.
pub fn errno_words(errno: u32) -> String {
    let text = std::io::Error::from_raw_os_error(errno as i32).to_string();
    let text = text.split(" (os error").next().unwrap_or(&text).to_string();
    let name = match errno as i32 {
        libc::EIO => "EIO".to_string(),
        libc::ENOSPC => "ENOSPC".into(),
        libc::ENOMEM => "ENOMEM".into(),
        libc::ENODEV => "ENODEV".into(),
        libc::ENXIO => "ENXIO".into(),
        libc::ETIMEDOUT => "ETIMEDOUT".into(),
        libc::EROFS => "EROFS".into(),
        _ => format!("errno {errno}"),
    };
    format!("{name}, {text}")
}

fn dirty_words(s: &Status) -> String {
    if s.dirty_bound_bytes > 0 {
        format!(
            "{} dirty of {} bound",
            human(s.dirty_bytes),
            human(s.dirty_bound_bytes)
        )
    } else {
        format!("{} dirty", human(s.dirty_bytes))
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Sectors `first..end` of a record, as the kernel log names them.
pub fn sector_range(sector: u64, length: u32) -> String {
    format!("{sector}..{}", sector + u64::from(length) / 512)
}

/// What failed, briefly.
pub fn fault_brief(fault: RecordFault) -> &'static str {
    match fault {
        RecordFault::PayloadChecksum { .. } => "payload checksum mismatch",
        RecordFault::DescriptorChecksum { .. } => "descriptor checksum mismatch",
        RecordFault::DescriptorMismatch => "descriptor is not the one published",
    }
}

/// Name of a fault in the JSON document.
pub fn fault_name(fault: RecordFault) -> &'static str {
    match fault {
        RecordFault::PayloadChecksum { .. } => "payload_checksum",
        RecordFault::DescriptorChecksum { .. } => "descriptor_checksum",
        RecordFault::DescriptorMismatch => "descriptor_mismatch",
    }
}

/// The possible loss accepted at load, in words (`None`: none accepted).
pub fn accepted_loss_words(s: &Status) -> Option<String> {
    (s.loss_accepted != 0).then(|| {
        let reason = String::from_utf8_lossy(s.loss_reason.as_bytes());
        format!(
            "acknowledged writes may have been lost before this load, accepted with \
             accept_loss=1 ({})",
            if reason.is_empty() {
                "no reason given".into()
            } else {
                reason
            }
        )
    })
}

/// The AT RISK words for a dead log disk (`flags::DISK_DEAD`).
fn dead_disk_words(s: &Status) -> String {
    let ago = |since: u64| duration_words(s.uptime_us.saturating_sub(since));
    let mut words = format!(
        "log disk failing for {} (last {}), new writes fail with EIO since {} ago \
         (dead_disk_ms={}; {} refused)",
        ago(s.failing_since_us),
        errno_words(s.last_disk_errno),
        ago(s.dead_since_us),
        s.dead_disk_ms,
        plural(s.writes_refused, "write", "writes")
    );
    if s.oldest_dirty_us > 0 {
        let _ = write!(
            words,
            "; oldest unwritten record waiting for {}",
            duration_words(s.oldest_dirty_us)
        );
    }
    words
}

/// The verdict for `s` (rules in the module docs).
pub fn verdict(s: &Status, crash: CrashKernel) -> Verdict {
    let loss: Vec<String> = accepted_loss_words(s).into_iter().collect();
    let mut at_risk = Vec::new();
    let mut degraded = Vec::new();
    match crash {
        CrashKernel::Armed => {}
        CrashKernel::NotArmed => at_risk.push("crash kernel not armed".to_string()),
        CrashKernel::Unsupported => {
            at_risk.push("crash kernel not armed (this kernel has no kexec_crash_loaded)".into())
        }
    }
    if s.powerfail_state == PowerFailState::Failed {
        at_risk.push("power-fail drain failed".into());
    }
    if s.flags & flags::DISK_DEAD != 0 {
        at_risk.push(dead_disk_words(s));
    }
    if let Some(h) = s.held_record() {
        at_risk.push(format!(
            "writeback held at bad record seq {} (sectors {}, {}): never written, the ring fills \
             behind it; `rapilogctl skip-bad-record {}` drops it",
            h.seq,
            sector_range(h.sector, h.length),
            fault_brief(h.fault),
            h.seq
        ));
    } else if s.bad_records > 0 {
        degraded.push(format!(
            "region corruption: {} failed writeback's check since load ({} skipped)",
            plural(s.bad_records, "record", "records"),
            s.bad_skipped
        ));
    }
    match s.fence_state {
        FenceState::Fenced => {}
        FenceState::Unfenced => degraded.push(format!(
            "{} of {} unfenced",
            s.fence_unfenced,
            plural(u64::from(s.fence_devices), "PCI device", "PCI devices")
        )),
        FenceState::Unchecked => degraded.push("IOMMU fence not checked".into()),
    }
    if s.protect != ProtectMode::Window {
        degraded.push("region write protection off".into());
    }
    if s.flags & flags::WRITEBACK_RETRYING != 0 && s.flags & flags::DISK_DEAD == 0 {
        let failing = match (s.failing_since_us, s.dead_disk_ms) {
            (0, _) => String::new(),
            (since, 0) => format!(" for {}", duration_words(s.uptime_us.saturating_sub(since))),
            (since, ms) => format!(
                " for {} (new writes fail with EIO after {})",
                duration_words(s.uptime_us.saturating_sub(since)),
                duration_words(u64::from(ms) * 1000)
            ),
        };
        degraded.push(format!(
            "writeback retrying after disk errors{failing} (last {})",
            errno_words(s.last_disk_errno)
        ));
    }
    if s.write_errors > 0 {
        degraded.push(format!(
            "{} failed",
            plural(s.write_errors, "write", "writes")
        ));
    }
    if s.powerfail_state == PowerFailState::Off {
        degraded.push("power-fail path off".into());
    }
    if s.decode_superblock(SoftwareCrc32c).is_err() {
        degraded.push("region superblock unreadable".into());
    }
    let level = if !loss.is_empty() {
        Level::PossibleLoss
    } else if !at_risk.is_empty() {
        Level::AtRisk
    } else if !degraded.is_empty() {
        Level::Degraded
    } else {
        Level::Protected
    };
    let mut problems = loss;
    problems.extend(at_risk);
    problems.extend(degraded);
    let line = if problems.is_empty() {
        format!(
            "{}: crash kernel armed, IOMMU fenced, power-fail armed, {}",
            level.words(),
            dirty_words(s)
        )
    } else {
        format!(
            "{}: {} ({})",
            level.words(),
            problems.join("; "),
            dirty_words(s)
        )
    };
    Verdict {
        level,
        problems,
        line,
    }
}

/// Region address and size.
#[derive(Debug, Clone, Serialize)]
pub struct RegionJson {
    /// Physical address.
    pub phys: u64,
    /// Size.
    pub bytes: u64,
}

/// The status block's flags.
#[derive(Debug, Clone, Serialize)]
pub struct FlagsJson {
    /// The module is unloading.
    pub unloading: bool,
    /// A disk write or flush failed and is being retried.
    pub writeback_retrying: bool,
    /// A drain is in progress.
    pub draining: bool,
    /// New writes are held back (power-fail drain).
    pub writes_held: bool,
    /// Writeback holds at a bad record (`bad_record`).
    pub writeback_held: bool,
    /// The log disk is dead: new writes fail with EIO (`dead_disk`).
    pub disk_dead: bool,
}

/// The dead-disk policy (`dead_disk_ms`) and where the log disk stands.
#[derive(Debug, Clone, Serialize)]
pub struct DeadDiskJson {
    /// `dead_disk_ms`: how long writeback may fail before new writes fail
    /// (0: never).
    pub deadline_ms: u32,
    /// New writes fail with EIO now.
    pub dead: bool,
    /// How long writeback has failed without a success (null: it is not
    /// failing).
    pub failing_for_us: Option<u64>,
    /// How long new writes have failed (null: they do not).
    pub dead_for_us: Option<u64>,
    /// Age of the oldest acknowledged record not yet written back (null:
    /// none).
    pub oldest_unwritten_us: Option<u64>,
    /// Writes failed because the disk was dead, since load.
    pub writes_refused: u64,
}

/// The dead-disk part of `s`, for JSON.
pub fn dead_disk_json(s: &Status) -> DeadDiskJson {
    let age = |since: u64| (since != 0).then(|| s.uptime_us.saturating_sub(since));
    DeadDiskJson {
        deadline_ms: s.dead_disk_ms,
        dead: s.flags & flags::DISK_DEAD != 0,
        failing_for_us: age(s.failing_since_us),
        dead_for_us: age(s.dead_since_us),
        oldest_unwritten_us: (s.oldest_dirty_us != 0).then_some(s.oldest_dirty_us),
        writes_refused: s.writes_refused,
    }
}

/// The bad record writeback holds at.
#[derive(Debug, Clone, Serialize)]
pub struct BadRecordJson {
    /// Sequence number (what `skip-bad-record` takes).
    pub seq: u64,
    /// First target sector (512-byte units).
    pub sector: u64,
    /// Payload bytes.
    pub length: u32,
    /// `payload_checksum`, `descriptor_checksum` or `descriptor_mismatch`.
    pub reason: &'static str,
    /// The checksum its descriptor says (null for a mismatch).
    pub expected_crc: Option<String>,
    /// The checksum found in the region (null for a mismatch).
    pub found_crc: Option<String>,
    /// When writeback found it, µs since load.
    pub found_at_us: u64,
    /// How long writeback has held at it.
    pub held_for_us: u64,
}

/// The bad record of `s`, for JSON.
pub fn bad_record_json(s: &Status) -> Option<BadRecordJson> {
    s.held_record().map(|h: HeldRecord| {
        let crc =
            |v: u32| (h.fault != RecordFault::DescriptorMismatch).then(|| format!("{v:#010x}"));
        let (expected, found) = h.fault.checksums();
        BadRecordJson {
            seq: h.seq,
            sector: h.sector,
            length: h.length,
            reason: fault_name(h.fault),
            expected_crc: crc(expected),
            found_crc: crc(found),
            found_at_us: h.found_at_us,
            held_for_us: s.uptime_us.saturating_sub(h.found_at_us),
        }
    })
}

/// The ring: space and sequence numbers.
#[derive(Debug, Clone, Serialize)]
pub struct RingJson {
    /// Size of the data ring.
    pub ring_bytes: u64,
    /// Reserved and not yet freed.
    pub used_bytes: u64,
    /// `used_bytes` in percent of `ring_bytes`.
    pub used_percent: f64,
    /// Acknowledged, not yet written back.
    pub dirty_bytes: u64,
    /// `dirty_bytes` in percent of `ring_bytes`.
    pub dirty_percent: f64,
    /// Records reserved and not yet freed.
    pub live_records: u64,
    /// Sequence number of the next record.
    pub head_seq: u64,
    /// Oldest live record.
    pub tail_seq: u64,
    /// Durable tail recorded in the region's superblock (null if unreadable).
    pub durable_tail: Option<u64>,
}

/// Requests served.
#[derive(Debug, Clone, Serialize)]
pub struct IoJson {
    /// Write bios completed from the region.
    pub writes: u64,
    /// Their bytes.
    pub write_bytes: u64,
    /// Flush and FUA requests absorbed.
    pub flushes_absorbed: u64,
    /// Writes that waited for ring space.
    pub throttled: u64,
    /// Read pieces served from the region.
    pub reads_region: u64,
    /// Read pieces passed to the disk.
    pub reads_disk: u64,
}

/// Writeback.
#[derive(Debug, Clone, Serialize)]
pub struct WritebackJson {
    /// Longest wait before writeback starts.
    pub delay_ms: u32,
    /// Disk writes issued.
    pub ios: u64,
    /// Bytes written back.
    pub bytes: u64,
    /// Records written back.
    pub records: u64,
    /// Disk cache flushes.
    pub disk_flushes: u64,
    /// Time spent writing and flushing.
    pub busy_us: u64,
    /// `bytes / ios` (null before the first write).
    pub average_io_bytes: Option<u64>,
    /// `bytes / busy time`: the disk's bandwidth as writeback sees it (null if never busy).
    pub busy_bytes_per_s: Option<u64>,
    /// `bytes / uptime`.
    pub bytes_per_s_since_load: Option<u64>,
    /// Records that failed writeback's check since load (never written).
    pub bad_records: u64,
    /// Of those, skipped by an administrator.
    pub bad_records_skipped: u64,
}

/// Errors.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorsJson {
    /// Failed disk writes or flushes (retried).
    pub disk_errors: u64,
    /// Errno of the last (0: none).
    pub last_disk_errno: u32,
    /// It in words (null: none).
    pub last_disk_error: Option<String>,
    /// Failed write bios.
    pub write_errors: u64,
}

/// The IOMMU fence.
#[derive(Debug, Clone, Serialize)]
pub struct FenceJson {
    /// `fenced`, `unfenced` or `unchecked`.
    pub state: &'static str,
    /// `warn`, `require` or `unknown`.
    pub policy: &'static str,
    /// PCI devices checked.
    pub devices: u32,
    /// Of those, not fenced.
    pub unfenced: u32,
    /// Their names (the driver keeps 128 bytes; a cut list ends in `...`).
    pub unfenced_devices: Vec<String>,
}

/// The power-fail path.
#[derive(Debug, Clone, Serialize)]
pub struct PowerFailJson {
    /// `off`, `armed`, `draining`, `drained` or `failed`.
    pub state: &'static str,
    /// Signals armed: `power_button`, `nmi`.
    pub signals: Vec<&'static str>,
    /// Hold-up window (0: off).
    pub holdup_ms: u32,
    /// Most dirty bytes allowed (0: only the ring bounds them).
    pub dirty_bound_bytes: u64,
    /// Writeback bandwidth the bound uses (0: unknown).
    pub writeback_bandwidth: u64,
    /// After a drain, service resumes once the machine still runs this
    /// long after the last signal (0: never).
    pub resume_ms: u32,
    /// Drains after which the machine kept running and service resumed.
    pub false_alarms: u32,
    /// Devices sharing the hold-up window: this one's dirty bound drains in
    /// `holdup_ms / 2 / shared_by` (1: it alone; also from an older module).
    pub shared_by: u32,
}

/// The log disk's loss marker, as the module found it at load.
#[derive(Debug, Clone, Serialize)]
pub struct MarkerStatusJson {
    /// `live`, `clean` or `none` (no marker, or a module that does not say).
    pub state: &'static str,
    /// The region epoch the marker names, `0x` hex (null for `none`).
    pub epoch: Option<String>,
    /// The module went live over a possible loss (`accept_loss=1`).
    pub loss_accepted: bool,
    /// Why the loss was possible (null unless `loss_accepted`).
    pub loss_reason: Option<String>,
}

/// The marker part of `s`.
pub fn marker_json(s: &Status) -> MarkerStatusJson {
    let state = match MarkerState::from_code(s.marker_state) {
        Some(MarkerState::Live) => "live",
        Some(MarkerState::Clean) => "clean",
        None => "none",
    };
    MarkerStatusJson {
        state,
        epoch: (state != "none").then(|| format!("{:#x}", s.marker_epoch)),
        loss_accepted: s.loss_accepted != 0,
        loss_reason: (s.loss_accepted != 0)
            .then(|| String::from_utf8_lossy(s.loss_reason.as_bytes()).into_owned()),
    }
}

/// The crash kernel.
#[derive(Debug, Clone, Serialize)]
pub struct CrashKernelJson {
    /// `armed`, `not_armed` or `unsupported`.
    pub state: &'static str,
    /// Whether a panic boots the crash kernel.
    pub armed: bool,
}

/// The `rapilogctl.status` document.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// [`SCHEMA`].
    pub schema: &'static str,
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The rapilog device (`rapilog0`).
    pub device: String,
    /// The control device it was read from.
    pub control: String,
    /// The verdict.
    pub verdict: Verdict,
    /// `backing=` as the module was given it.
    pub backing: String,
    /// The region.
    pub region: RegionJson,
    /// `window`, `off` or `unknown`.
    pub protect: &'static str,
    /// Flags.
    pub flags: FlagsJson,
    /// Time since the module loaded.
    pub uptime_us: u64,
    /// Ring.
    pub ring: RingJson,
    /// Requests.
    pub io: IoJson,
    /// Writeback.
    pub writeback: WritebackJson,
    /// The bad record writeback holds at (null: none).
    pub bad_record: Option<BadRecordJson>,
    /// The dead-disk policy and the log disk's state.
    pub dead_disk: DeadDiskJson,
    /// Errors.
    pub errors: ErrorsJson,
    /// IOMMU fence.
    pub fence: FenceJson,
    /// Power-fail path.
    pub power_fail: PowerFailJson,
    /// Crash kernel.
    pub crash_kernel: CrashKernelJson,
    /// The log disk's loss marker, and a possible loss accepted at load.
    pub marker: MarkerStatusJson,
    /// The region's current superblock (as `rapilogctl.inspect` shows it, without `copy`).
    pub superblock: Option<SuperblockFields>,
    /// Why the superblock could not be decoded (null when it could).
    pub superblock_error: Option<String>,
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        (part as f64 * 1000.0 / whole as f64).round() / 10.0
    }
}

/// `bytes` per second over `us` microseconds (`None` for 0 us).
pub fn rate(bytes: u64, us: u64) -> Option<u64> {
    (us > 0).then(|| (u128::from(bytes) * 1_000_000 / u128::from(us)) as u64)
}

/// Name of a fence state.
pub fn fence_state_name(s: FenceState) -> &'static str {
    match s {
        FenceState::Fenced => "fenced",
        FenceState::Unfenced => "unfenced",
        FenceState::Unchecked => "unchecked",
    }
}

fn fence_policy_name(p: FencePolicy) -> &'static str {
    match p {
        FencePolicy::Warn => "warn",
        FencePolicy::Require => "require",
        FencePolicy::Unknown => "unknown",
    }
}

fn powerfail_name(p: PowerFailState) -> &'static str {
    match p {
        PowerFailState::Off => "off",
        PowerFailState::Armed => "armed",
        PowerFailState::Draining => "draining",
        PowerFailState::Drained => "drained",
        PowerFailState::Failed => "failed",
    }
}

fn protect_name(p: ProtectMode) -> &'static str {
    match p {
        ProtectMode::Window => "window",
        ProtectMode::Off => "off",
        ProtectMode::Unknown => "unknown",
    }
}

/// The fence report of `s`.
pub fn fence_json(s: &Status) -> FenceJson {
    FenceJson {
        state: fence_state_name(s.fence_state),
        policy: fence_policy_name(s.fence_policy),
        devices: s.fence_devices,
        unfenced: s.fence_unfenced,
        unfenced_devices: String::from_utf8_lossy(s.unfenced_list.as_bytes())
            .split_whitespace()
            .map(String::from)
            .collect(),
    }
}

/// Builds the report of `s`, read from `control` for `device`.
pub fn report(s: &Status, device: &str, control: &str, crash: CrashKernel) -> Report {
    let (superblock, superblock_error) = match s.decode_superblock(SoftwareCrc32c) {
        Ok(sb) => (Some(superblock_fields(&sb)), None),
        Err(e) => (None, Some(e.to_string())),
    };
    Report {
        schema: SCHEMA,
        schema_version: SCHEMA_VERSION,
        device: device.to_string(),
        control: control.to_string(),
        verdict: verdict(s, crash),
        backing: String::from_utf8_lossy(s.backing.as_bytes()).into_owned(),
        region: RegionJson {
            phys: s.region_phys,
            bytes: s.region_bytes,
        },
        protect: protect_name(s.protect),
        flags: FlagsJson {
            unloading: s.flags & flags::UNLOADING != 0,
            writeback_retrying: s.flags & flags::WRITEBACK_RETRYING != 0,
            draining: s.flags & flags::DRAINING != 0,
            writes_held: s.flags & flags::WRITES_HELD != 0,
            writeback_held: s.flags & flags::WRITEBACK_HELD != 0,
            disk_dead: s.flags & flags::DISK_DEAD != 0,
        },
        uptime_us: s.uptime_us,
        ring: RingJson {
            ring_bytes: s.ring_bytes,
            used_bytes: s.used_bytes,
            used_percent: percent(s.used_bytes, s.ring_bytes),
            dirty_bytes: s.dirty_bytes,
            dirty_percent: percent(s.dirty_bytes, s.ring_bytes),
            live_records: s.live_records,
            head_seq: s.next_seq,
            tail_seq: s.tail_seq,
            durable_tail: superblock.as_ref().map(|sb| sb.durable_tail),
        },
        io: IoJson {
            writes: s.writes,
            write_bytes: s.write_bytes,
            flushes_absorbed: s.flushes,
            throttled: s.throttled,
            reads_region: s.reads_region,
            reads_disk: s.reads_disk,
        },
        writeback: WritebackJson {
            delay_ms: s.writeback_delay_ms,
            ios: s.wb_ios,
            bytes: s.wb_bytes,
            records: s.wb_records,
            disk_flushes: s.wb_flushes,
            busy_us: s.wb_busy_us,
            average_io_bytes: s.wb_bytes.checked_div(s.wb_ios),
            busy_bytes_per_s: rate(s.wb_bytes, s.wb_busy_us),
            bytes_per_s_since_load: rate(s.wb_bytes, s.uptime_us),
            bad_records: s.bad_records,
            bad_records_skipped: s.bad_skipped,
        },
        bad_record: bad_record_json(s),
        dead_disk: dead_disk_json(s),
        errors: ErrorsJson {
            disk_errors: s.disk_errors,
            last_disk_errno: s.last_disk_errno,
            last_disk_error: (s.last_disk_errno != 0).then(|| errno_words(s.last_disk_errno)),
            write_errors: s.write_errors,
        },
        fence: fence_json(s),
        power_fail: PowerFailJson {
            state: powerfail_name(s.powerfail_state),
            signals: [(1, "power_button"), (2, "nmi")]
                .into_iter()
                .filter(|(bit, _)| s.powerfail_signals & bit != 0)
                .map(|(_, name)| name)
                .collect(),
            holdup_ms: s.holdup_ms,
            dirty_bound_bytes: s.dirty_bound_bytes,
            writeback_bandwidth: s.writeback_bandwidth,
            resume_ms: s.powerfail_resume_ms,
            false_alarms: s.powerfail_false_alarms,
            shared_by: s.powerfail_devices.max(1),
        },
        crash_kernel: CrashKernelJson {
            state: crash.name(),
            armed: crash == CrashKernel::Armed,
        },
        marker: marker_json(s),
        superblock,
        superblock_error,
    }
}

/// A duration in microseconds, for people: `850 us`, `12.5 ms`, `3.2 s`, `4m 05s`, `2h 10m`.
pub fn duration_words(us: u64) -> String {
    match us {
        0..=999 => format!("{us} us"),
        1_000..=999_999 => format!("{:.1} ms", us as f64 / 1e3),
        1_000_000..=59_999_999 => format!("{:.1} s", us as f64 / 1e6),
        _ => {
            let s = us / 1_000_000;
            if s < 3600 {
                format!("{}m {:02}s", s / 60, s % 60)
            } else {
                format!("{}h {:02}m", s / 3600, (s % 3600) / 60)
            }
        }
    }
}

/// Bytes per second, for people.
pub fn rate_words(bytes_per_s: Option<u64>) -> String {
    bytes_per_s.map_or("-".into(), |r| format!("{}/s", human(r)))
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

fn last_replay_line(sb: &SuperblockFields) -> String {
    let r = &sb.last_replay;
    if r.by == "never" {
        return "never (nothing replayed since the region was formatted)".into();
    }
    let when = if r.finished_at_unix == 0 {
        "at an unknown time".to_string()
    } else {
        format!("at {}", utc(r.finished_at_unix))
    };
    let k = &r.report.skipped;
    let skips: Vec<String> = [
        (k.bad_descriptor_checksum, "torn"),
        (k.malformed, "malformed"),
        (k.wrong_epoch, "other epoch"),
        (k.stale, "stale"),
        (k.bad_payload_checksum, "bad payload"),
        (k.beyond_disk, "beyond disk"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    format!(
        "by {} {when}, from seq {}: {} ({}) in {}; skipped {}{}",
        r.by,
        r.from_seq,
        plural(u64::from(r.report.applied), "record", "records"),
        human(r.report.bytes),
        duration_words(r.duration_us),
        plural(u64::from(k.empty), "empty slot", "empty slots"),
        if skips.is_empty() {
            String::new()
        } else {
            format!(", {}", skips.join(", "))
        }
    )
}

/// Whether to colour: stdout is a terminal and `NO_COLOR` is unset or empty.
pub fn use_color(stdout_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stdout_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

fn paint(text: &str, code: &str, color: bool) -> String {
    if color {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// The human output: the verdict line, then one aligned row per aspect.
pub fn render(r: &Report, color: bool) -> String {
    let mut out = String::new();
    let code = match r.verdict.level {
        Level::Protected => "1;32",
        Level::Degraded => "1;33",
        Level::AtRisk | Level::PossibleLoss => "1;31",
    };
    let _ = writeln!(out, "{}", paint(&r.verdict.line, code, color));
    let mut rows: Vec<(&str, String)> = Vec::new();
    let mut state = vec![format!("up {}", duration_words(r.uptime_us))];
    for (on, what) in [
        (r.flags.draining, "draining"),
        (r.flags.unloading, "unloading"),
        (r.flags.writes_held, "writes held"),
        (r.flags.writeback_held, "writeback held"),
        (r.flags.disk_dead, "log disk dead"),
    ] {
        if on {
            state.push(what.into());
        }
    }
    rows.push((
        "device",
        format!("/dev/{} ({}), {}", r.device, r.control, state.join(", ")),
    ));
    let disk = r.superblock.as_ref().map_or(String::new(), |sb| {
        format!(
            "   disk id {}, {} ({}-byte blocks)",
            sb.disk.id,
            human(sb.disk.sectors * 512),
            sb.disk.block_bytes
        )
    });
    rows.push(("backing", format!("{}{disk}", r.backing)));
    rows.push((
        "region",
        format!(
            "{} at {:#x}   protect {}",
            human(r.region.bytes),
            r.region.phys,
            if r.protect == "window" {
                "window (read-only except while a record is copied in)".to_string()
            } else {
                paint(r.protect, "1;33", color)
            }
        ),
    ));
    let g = &r.ring;
    rows.push((
        "ring",
        format!(
            "{} used ({:.1}%), {} dirty ({:.1}%) of {}; {}",
            human(g.used_bytes),
            g.used_percent,
            human(g.dirty_bytes),
            g.dirty_percent,
            human(g.ring_bytes),
            plural(g.live_records, "record", "records")
        ),
    ));
    rows.push((
        "sequence",
        format!(
            "head {}   tail {}   durable tail {}",
            g.head_seq,
            g.tail_seq,
            g.durable_tail.map_or("?".into(), |t| t.to_string())
        ),
    ));
    let io = &r.io;
    rows.push((
        "writes",
        format!(
            "{} ({}), {} absorbed, {} throttled; reads: {} from region, {} from disk",
            io.writes,
            human(io.write_bytes),
            plural(io.flushes_absorbed, "flush", "flushes"),
            io.throttled,
            io.reads_region,
            io.reads_disk
        ),
    ));
    let w = &r.writeback;
    rows.push((
        "writeback",
        format!(
            "{} in {} (avg {}), {}, {}; {} while busy, {} since load; delay {} ms",
            human(w.bytes),
            plural(w.ios, "write", "writes"),
            w.average_io_bytes.map_or("-".into(), human),
            plural(w.records, "record", "records"),
            plural(w.disk_flushes, "disk flush", "disk flushes"),
            rate_words(w.busy_bytes_per_s),
            rate_words(w.bytes_per_s_since_load),
            w.delay_ms
        ),
    ));
    if let Some(b) = &r.bad_record {
        let crcs = match (&b.expected_crc, &b.found_crc) {
            (Some(e), Some(f)) => format!(": its descriptor says {e}, the region holds {f}"),
            _ => String::new(),
        };
        rows.push((
            "bad record",
            paint(
                &format!(
                    "seq {}, sectors {} ({}), {}{crcs}; found {} after load, held for {}: never \
                     written, reads of its sectors fail (EIO), the ring fills behind it; \
                     `rapilogctl dump` saves it, `rapilogctl skip-bad-record {}` drops it",
                    b.seq,
                    sector_range(b.sector, b.length),
                    human(u64::from(b.length)),
                    b.reason.replace('_', " "),
                    duration_words(b.found_at_us),
                    duration_words(b.held_for_us),
                    b.seq
                ),
                "1;31",
                color,
            ),
        ));
    }
    if w.bad_records > 0 {
        rows.push((
            "verification",
            format!(
                "{} failed writeback's check since load, {} skipped",
                plural(w.bad_records, "record", "records"),
                w.bad_records_skipped
            ),
        ));
    }
    let d = &r.dead_disk;
    if let Some(failing) = d.failing_for_us {
        let text = match d.dead_for_us {
            Some(dead) => format!(
                "failing for {}; dead for {}: new writes fail with EIO ({} refused), reads work; \
                 acknowledged writes stay in the region{} and drain when it is back",
                duration_words(failing),
                duration_words(dead),
                d.writes_refused,
                d.oldest_unwritten_us.map_or(String::new(), |us| format!(
                    " (oldest unwritten for {})",
                    duration_words(us)
                ))
            ),
            None if d.deadline_ms == 0 => format!(
                "failing for {}; dead_disk_ms=0: writers wait for it for ever",
                duration_words(failing)
            ),
            None => format!(
                "failing for {}; new writes fail with EIO once it has failed for {}",
                duration_words(failing),
                duration_words(u64::from(d.deadline_ms) * 1000)
            ),
        };
        rows.push(("log disk", paint(&text, "1;31", color)));
    }
    let e = &r.errors;
    rows.push((
        "errors",
        if e.disk_errors == 0 && e.write_errors == 0 {
            "none".into()
        } else {
            let text = format!(
                "{}{}, {}{}",
                plural(e.disk_errors, "disk error", "disk errors"),
                e.last_disk_error
                    .as_ref()
                    .map_or(String::new(), |t| format!(" (last {t})")),
                plural(e.write_errors, "failed write", "failed writes"),
                if r.flags.writeback_retrying {
                    "; writeback retrying"
                } else {
                    ""
                }
            );
            paint(&text, "1;31", color)
        },
    ));
    let f = &r.fence;
    rows.push((
        "iommu fence",
        match f.state {
            "fenced" => format!(
                "fenced: an IOMMU translates the DMA of all {} (policy {})",
                plural(u64::from(f.devices), "PCI device", "PCI devices"),
                f.policy
            ),
            "unfenced" => format!(
                "{}: {} of {} PCI devices can DMA into the region: {}{} (policy {})",
                paint("UNFENCED", "1;33", color),
                f.unfenced,
                f.devices,
                f.unfenced_devices.join(" "),
                if f.unfenced_devices
                    .last()
                    .is_some_and(|n| n.ends_with("..."))
                {
                    " (list cut: the kernel log names them all)"
                } else {
                    ""
                },
                f.policy
            ),
            _ => format!("not checked (policy {})", f.policy),
        },
    ));
    let p = &r.power_fail;
    // What follows a drain, and how often a signal was a false alarm;
    // meaningless without a signal armed.
    let after_drain = if p.signals.is_empty() {
        String::new()
    } else {
        format!(
            "; {}, {}",
            match p.resume_ms {
                0 => "no resume after a drain".to_string(),
                ms => format!("resumes if still running {ms} ms after a signal"),
            },
            plural(u64::from(p.false_alarms), "false alarm", "false alarms")
        )
    };
    rows.push((
        "power-fail",
        format!(
            "{}{}; hold-up {} ms{}, dirty bound {}, writeback bandwidth {}{after_drain}",
            p.state,
            if p.signals.is_empty() {
                " (no signal armed)".to_string()
            } else {
                format!(" on {}", p.signals.join(", "))
            },
            p.holdup_ms,
            match p.shared_by {
                0 | 1 => String::new(),
                n => format!(" (shared by {n} devices)"),
            },
            if p.dirty_bound_bytes == 0 {
                "none".to_string()
            } else {
                human(p.dirty_bound_bytes)
            },
            if p.writeback_bandwidth == 0 {
                "unknown".to_string()
            } else {
                rate_words(Some(p.writeback_bandwidth))
            }
        ),
    ));
    rows.push((
        "crash kernel",
        match r.crash_kernel.state {
            "armed" => "armed: a panic boots it and it replays the region".into(),
            "not_armed" => paint("not armed: load it with `rapilogctl arm`", "1;31", color),
            _ => paint(
                "not available: this kernel has no /sys/kernel/kexec_crash_loaded",
                "1;31",
                color,
            ),
        },
    ));
    let m = &r.marker;
    rows.push((
        "disk marker",
        match m.state {
            "live" => format!(
                "live for region epoch {} (the log disk says this region may hold writes it \
                 lacks, until a clean drain)",
                m.epoch.as_deref().unwrap_or("?")
            ),
            "clean" => format!("clean (region epoch {})", m.epoch.as_deref().unwrap_or("?")),
            _ => "none reported by the module".into(),
        },
    ));
    if m.loss_accepted {
        rows.push((
            "loss",
            paint(
                &format!(
                    "accepted at load (accept_loss=1): {}; the disk may lack acknowledged \
                     writes from before this load",
                    m.loss_reason.as_deref().unwrap_or("no reason given")
                ),
                "1;31",
                color,
            ),
        ));
    }
    rows.push((
        "superblock",
        match (&r.superblock, &r.superblock_error) {
            (Some(sb), _) => format!(
                "generation {}, {}, epoch {}, head hint {}",
                sb.generation, sb.state, sb.epoch, sb.head_hint
            ),
            (None, e) => format!("unreadable: {}", e.as_deref().unwrap_or("?")),
        },
    ));
    if let Some(sb) = &r.superblock {
        rows.push(("last replay", last_replay_line(sb)));
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in rows {
        let _ = writeln!(out, "{key:<width$}  {value}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_devices_get_the_worst_verdict_and_one_keeps_its_view() {
        let a = report(
            &Status::default(),
            "rapilog0",
            "/dev/rapilog-ctl",
            CrashKernel::Armed,
        );
        let mut b = report(
            &Status::default(),
            "rapilog2",
            "/dev/rapilog-ctl",
            CrashKernel::Armed,
        );
        b.verdict.level = Level::AtRisk;
        let all = all_report(vec![a.clone(), b]).unwrap();
        assert_eq!(all.overall.level, Level::AtRisk);
        assert_eq!(
            all.overall.line,
            format!(
                "overall: AT RISK (rapilog0 {}, rapilog2 AT RISK)",
                a.verdict.level.words()
            )
        );
        let doc = serde_json::to_value(&all).unwrap();
        assert_eq!(doc["device"], "rapilog0");
        assert_eq!(doc["devices"][1]["device"], "rapilog2");
        assert_eq!(doc["overall"]["level"], "at_risk");
        let rendered = render_all(&all, false);
        assert!(
            rendered.ends_with(&format!("{}\n", all.overall.line)),
            "{rendered}"
        );
        // One device: exactly its own status, no overall line.
        let one = all_report(vec![a.clone()]).unwrap();
        assert_eq!(render_all(&one, false), render(&a, false));
        assert!(all_report(Vec::new()).is_none());
        assert!(render_list(&all.devices).contains("/dev/rapilog2  region "));
    }

    #[test]
    fn dates_and_durations() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_795_452_425), "2026-11-23 16:47:05 UTC");
        assert_eq!(duration_words(850), "850 us");
        assert_eq!(duration_words(12_500), "12.5 ms");
        assert_eq!(duration_words(3_200_000), "3.2 s");
        assert_eq!(duration_words(245_000_000), "4m 05s");
        assert_eq!(duration_words(7_800_000_000), "2h 10m");
    }

    #[test]
    fn errno_in_words() {
        assert_eq!(errno_words(5), "EIO, Input/output error");
        assert!(errno_words(9999).contains("errno 9999"));
    }

    #[test]
    fn color_only_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        assert!(use_color(true, None));
        assert!(use_color(true, Some(OsStr::new(""))));
        assert!(!use_color(true, Some(OsStr::new("1"))));
        assert!(!use_color(false, None));
    }
}

/// The verdict over several devices: the worst of theirs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Overall {
    /// The worst device's level.
    pub level: Level,
    /// `overall: LEVEL (rapilog0 PROTECTED, rapilog1 DEGRADED)`.
    pub line: String,
}

/// The overall verdict of `reports` (`None` for none).
pub fn overall(reports: &[Report]) -> Option<Overall> {
    let level = reports.iter().map(|r| r.verdict.level).max()?;
    let each: Vec<String> = reports
        .iter()
        .map(|r| format!("{} {}", r.device, r.verdict.level.words()))
        .collect();
    Some(Overall {
        level,
        line: format!("overall: {} ({})", level.words(), each.join(", ")),
    })
}

/// The `rapilogctl.status` document of `status` without a device: the
/// first device's report as ever (its fields at the top level, for readers
/// of one device), every device's in `devices`, and the `overall` verdict.
#[derive(Debug, Clone, Serialize)]
pub struct AllReport {
    /// The first device's report (`rapilog0`, or the lowest that exists).
    #[serde(flatten)]
    pub first: Report,
    /// Every device's report, by index.
    pub devices: Vec<Report>,
    /// The worst verdict of them.
    pub overall: Overall,
}

/// `reports` (at least one) as one document.
pub fn all_report(reports: Vec<Report>) -> Option<AllReport> {
    let overall = overall(&reports)?;
    Some(AllReport {
        first: reports.first()?.clone(),
        devices: reports,
        overall,
    })
}

/// Every device's status, then the overall verdict (only for several).
pub fn render_all(all: &AllReport, color: bool) -> String {
    if let [only] = all.devices.as_slice() {
        return render(only, color);
    }
    let mut out = String::new();
    for r in &all.devices {
        out.push_str(&render(r, color));
        out.push('\n');
    }
    let code = match all.overall.level {
        Level::Protected => "1;32",
        Level::Degraded => "1;33",
        Level::AtRisk | Level::PossibleLoss => "1;31",
    };
    let _ = writeln!(out, "{}", paint(&all.overall.line, code, color));
    out
}

/// One device of the `rapilogctl.list` document.
#[derive(Debug, Clone, Serialize)]
pub struct ListedDevice {
    /// `rapilog0`.
    pub device: String,
    /// The region.
    pub region: RegionJson,
    /// `backing=` as the module was given it.
    pub backing: String,
    /// `status`'s verdict level.
    pub level: Level,
}

/// The `rapilogctl.list` document.
#[derive(Debug, Clone, Serialize)]
pub struct ListJson {
    /// `rapilogctl.list`.
    pub schema: &'static str,
    /// 1.
    pub schema_version: u32,
    /// The devices, by index.
    pub devices: Vec<ListedDevice>,
}

/// `rapilogctl list --json`.
pub fn list_json(reports: &[Report]) -> ListJson {
    ListJson {
        schema: "rapilogctl.list",
        schema_version: 1,
        devices: reports
            .iter()
            .map(|r| ListedDevice {
                device: r.device.clone(),
                region: r.region.clone(),
                backing: r.backing.clone(),
                level: r.verdict.level,
            })
            .collect(),
    }
}

/// `rapilogctl list`: one line a device.
pub fn render_list(reports: &[Report]) -> String {
    let mut out = String::new();
    if reports.is_empty() {
        out.push_str("no rapilog devices\n");
    }
    for r in reports {
        let _ = writeln!(
            out,
            "/dev/{}  region {}@{:#x}  backing {}  {}",
            r.device,
            crate::units::human(r.region.bytes),
            r.region.phys,
            r.backing,
            r.verdict.level.words()
        );
    }
    out
}
