// SPDX-License-Identifier: GPL-2.0

//! The replay engine: region in, verified writes out to the disk, report
//! back into the region. Shared by the crash-kernel rescue program and
//! `rapilogctl replay` (same code path, different [`Replayer`]).
//!
//! Order of work, and what each failure leaves behind:
//!
//! 1. Load the current superblock. Refused: nothing written anywhere.
//! 2. If the caller names the disk it expects, the region must name the same
//!    one. Refused: nothing written.
//! 3. Plan against the region's own disk: if no record would be applied, no
//!    disk is needed at all (an idle rapilog at the crash).
//! 4. Otherwise find and open the disk (the caller's closure: by identity,
//!    or a forced path) and plan against it: [`plan_replay`] refuses
//!    another id, size or block size. Refused: nothing written.
//! 5. Write every verified record in sequence order, then flush the disk.
//!    An I/O error stops here: the region is untouched, so the replay can
//!    simply run again (replay is idempotent).
//! 6. Only then record the replay in the older superblock copy
//!    ([`rapilog_format::ReplayPlan::replayed_superblock`]): tail past the
//!    window, state clean, report. Read it back and check it.
//!
//! Nothing that fails a check ever reaches the disk: the planner yields only
//! records whose descriptor and payload checksums hold.

use std::fmt;
use std::ops::Range;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rapilog_format::{
    plan_replay, ActiveSuperblock, DiskId, DiskIdentity, RegionState, ReplayReport, Replayer,
    SoftwareCrc32c, Superblock, SUPERBLOCK_BYTES,
};

use crate::idtext::{show, IdText};
use crate::region::RegionStore;
use crate::target::BlockTarget;

/// What kind of failure, and the exit code it maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Bad command line or configuration (exit 2).
    Usage,
    /// The region cannot be read or has no usable superblock (exit 3).
    Region,
    /// No disk, several, or not the region's disk (exit 4).
    Disk,
    /// Writing or flushing the disk failed (exit 5).
    DiskIo,
    /// The disk is replayed and durable, but the report could not be
    /// recorded in the region (exit 6).
    Report,
}

impl FailureKind {
    /// The process exit code.
    pub const fn exit_code(self) -> i32 {
        match self {
            Self::Usage => 2,
            Self::Region => 3,
            Self::Disk => 4,
            Self::DiskIo => 5,
            Self::Report => 6,
        }
    }
}

/// A failed run: what kind, and one line saying what happened and what was
/// (not) written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Kind and exit code.
    pub kind: FailureKind,
    /// The message (one line, no prefix).
    pub message: String,
}

impl Failure {
    /// A failure of `kind`.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// A disk found and opened for a replay.
pub struct OpenedTarget<T> {
    /// The disk.
    pub disk: T,
    /// Its size in 512-byte sectors.
    pub sectors: u64,
    /// Its logical block size.
    pub block_bytes: u32,
    /// How it was found, for the log (e.g. `/dev/vda (vda 253:0, serial:rl-log)`).
    pub description: String,
}

/// Options of one replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayOptions {
    /// Recorded in the report: the rescue program or the CLI.
    pub replayer: Replayer,
    /// Verify and count, write nothing.
    pub dry_run: bool,
    /// The disk the caller expects the region to name (kernel command
    /// line `rapilog.disk=`); `None` to take the region's word.
    pub expected_id: Option<DiskId>,
}

/// What the report write did.
#[allow(clippy::large_enum_variant)] // one per run
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportWrite {
    /// Written (and read back) to the superblock copy of this update.
    Written(ActiveSuperblock),
    /// Dry run: nothing written.
    DryRun,
    /// The region was clean and held nothing to apply: left as it was, so
    /// the report of the replay that cleaned it is kept.
    AlreadyClean,
}

/// A finished replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The superblock the replay started from.
    pub before: ActiveSuperblock,
    /// The disk written, if one was needed.
    pub target: Option<String>,
    /// The live window examined.
    pub window: Range<u64>,
    /// Applied and skipped records.
    pub report: ReplayReport,
    /// Writes plus flush, in microseconds.
    pub duration_us: u64,
    /// What happened to the report.
    pub report_write: ReportWrite,
}

impl Outcome {
    /// 0, or 1 when records were damaged (malformed, bad payload, beyond
    /// the disk): the replay did all it could, but acknowledged data may be
    /// lost.
    pub fn exit_code(&self) -> i32 {
        if self.report.skipped.alarming() > 0 {
            1
        } else {
            0
        }
    }
}

fn state_name(state: RegionState) -> &'static str {
    match state {
        RegionState::Clean => "clean",
        RegionState::Dirty => "dirty",
    }
}

fn describe_superblock(active: &ActiveSuperblock) -> String {
    let sb = &active.superblock;
    let copy = match active.copy {
        rapilog_format::SuperblockCopy::First => 0,
        rapilog_format::SuperblockCopy::Second => 1,
    };
    format!(
        "superblock copy {copy} generation {} epoch {:#x} state {}, durable tail {} head hint {}, \
         {} slots, disk {} ({} sectors, {}-byte blocks)",
        sb.generation,
        sb.epoch,
        state_name(sb.state),
        sb.durable_tail,
        sb.head_hint,
        sb.geometry.descriptor_slots,
        show(&sb.disk.id),
        sb.disk.sectors,
        sb.disk.block_bytes,
    )
}

/// The machine-readable report line (without prefix): `key=value` words.
pub fn report_fields(outcome: &Outcome) -> String {
    let r = &outcome.report;
    let s = &r.skipped;
    let written = match outcome.report_write {
        ReportWrite::Written(_) => "written",
        ReportWrite::DryRun => "dry-run",
        ReportWrite::AlreadyClean => "already-clean",
    };
    format!(
        "applied={} bytes={} empty={} bad_descriptor={} malformed={} wrong_epoch={} stale={} \
         bad_payload={} beyond_disk={} from_seq={} duration_us={} region={} exit={}",
        r.records_applied,
        r.bytes_applied,
        s.empty,
        s.bad_descriptor_checksum,
        s.malformed,
        s.wrong_epoch,
        s.stale,
        s.bad_payload_checksum,
        s.beyond_disk,
        outcome.window.start,
        outcome.duration_us,
        written,
        outcome.exit_code()
    )
}

/// Replays `region` onto the disk `open_target` finds (given the region's
/// disk and the log), as described in the module docs. `log` receives progress lines (no prefix); the returned
/// failure is the one line to print last.
pub fn replay<T, F>(
    region: &mut dyn RegionStore,
    options: &ReplayOptions,
    open_target: F,
    log: &mut dyn FnMut(&str),
) -> Result<Outcome, Failure>
where
    T: BlockTarget,
    F: FnOnce(&DiskIdentity, &mut dyn FnMut(&str)) -> Result<OpenedTarget<T>, Failure>,
{
    let crc = SoftwareCrc32c;
    let where_ = region.describe();
    // 1. The superblock.
    let active = ActiveSuperblock::load(region.bytes(), crc).map_err(|e| {
        Failure::new(
            FailureKind::Region,
            format!("region {where_} refused: {e}; nothing written"),
        )
    })?;
    let sb: Superblock = active.superblock;
    log(&format!(
        "region {where_}: {}",
        describe_superblock(&active)
    ));

    // 2. The disk the caller expects.
    if let Some(expected) = options.expected_id {
        if expected != sb.disk.id {
            return Err(Failure::new(
                FailureKind::Disk,
                format!(
                    "region {where_} belongs to disk {} but the configuration names disk {}; \
                     nothing written",
                    show(&sb.disk.id),
                    show(&expected)
                ),
            ));
        }
    }

    // 3. Anything to do at all?
    let mut dry = plan_replay(region.bytes(), &sb.disk, crc).map_err(|e| {
        Failure::new(
            FailureKind::Region,
            format!("region {where_} refused: {e}; nothing written"),
        )
    })?;
    let window = dry.window();
    dry.by_ref().for_each(drop);
    let pre_report = dry.report();
    log(&format!(
        "live window {}..{}: {} record(s) to apply, {} bytes",
        window.start, window.end, pre_report.records_applied, pre_report.bytes_applied
    ));

    let (report, duration_us, target, finished) = if pre_report.records_applied == 0 {
        (pre_report, 0, None, dry)
    } else {
        // 4. The disk.
        let opened = open_target(&sb.disk, log)?;
        let target_identity = DiskIdentity {
            id: sb.disk.id,
            sectors: opened.sectors,
            block_bytes: opened.block_bytes,
        };
        let mut plan = plan_replay(region.bytes(), &target_identity, crc).map_err(|e| {
            Failure::new(
                FailureKind::Disk,
                format!(
                    "{} refused as log disk: {e}; nothing written",
                    opened.description
                ),
            )
        })?;
        log(&format!("log disk {}", opened.description));
        if options.dry_run {
            plan.by_ref().for_each(drop);
            (plan.report(), 0, Some(opened.description), plan)
        } else {
            // 5. Writes, then flush.
            let mut disk = opened.disk;
            let start = Instant::now();
            for write in plan.by_ref() {
                let offset = write.sector * 512;
                disk.write_at(write.data, offset).map_err(|e| {
                    Failure::new(
                        FailureKind::DiskIo,
                        format!(
                            "writing record {} ({} bytes at sector {}) to {} failed: {e}; \
                             region left as it was, replay again",
                            write.seq,
                            write.data.len(),
                            write.sector,
                            opened.description
                        ),
                    )
                })?;
            }
            disk.flush().map_err(|e| {
                Failure::new(
                    FailureKind::DiskIo,
                    format!(
                        "flushing {} failed: {e}; region left as it was, replay again",
                        opened.description
                    ),
                )
            })?;
            let us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
            (plan.report(), us, Some(opened.description), plan)
        }
    };

    // 6. The report.
    let report_write = if options.dry_run {
        ReportWrite::DryRun
    } else if sb.state == RegionState::Clean
        && report.records_applied == 0
        && report.skipped.alarming() == 0
    {
        ReportWrite::AlreadyClean
    } else {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let next = finished
            .replayed_superblock(options.replayer, now, duration_us)
            .ok_or_else(|| {
                Failure::new(FailureKind::Report, "internal: replay plan not finished")
            })?;
        write_superblock(region, &next).map_err(|e| {
            Failure::new(
                FailureKind::Report,
                format!(
                    "disk replayed and flushed, but recording the report in region {where_} \
                     failed: {e}; the next replay will apply the same records again"
                ),
            )
        })?;
        ReportWrite::Written(next)
    };
    Ok(Outcome {
        before: active,
        target,
        window,
        report,
        duration_us,
        report_write,
    })
}

/// Encodes `next` into its copy, writes it, reads it back and checks that it
/// is now the current superblock.
fn write_superblock(region: &mut dyn RegionStore, next: &ActiveSuperblock) -> Result<(), String> {
    let mut encoded = [0u8; SUPERBLOCK_BYTES];
    next.superblock.encode(&mut encoded, SoftwareCrc32c);
    let range = next.copy.range();
    region
        .write(range.start, &encoded)
        .map_err(|e| format!("write: {e}"))?;
    let back = region
        .read_back(range.start, SUPERBLOCK_BYTES)
        .map_err(|e| format!("read back: {e}"))?;
    if back != encoded {
        return Err("read back differs from what was written".into());
    }
    let now = ActiveSuperblock::load(region.bytes(), SoftwareCrc32c)
        .map_err(|e| format!("reload: {e}"))?;
    if now != *next {
        return Err("the written copy is not the current superblock after the write".into());
    }
    Ok(())
}

/// Human-readable lines describing a finished replay (no prefix).
pub fn describe_outcome(outcome: &Outcome) -> Vec<String> {
    let r = &outcome.report;
    let mut lines = Vec::new();
    let verb = if outcome.report_write == ReportWrite::DryRun {
        "would apply"
    } else {
        "applied"
    };
    let target = outcome
        .target
        .as_deref()
        .map_or_else(|| "no disk needed".to_string(), |t| format!("onto {t}"));
    lines.push(format!(
        "{verb} {} record(s), {} bytes {target}, in {}.{:06} s (writes and flush)",
        r.records_applied,
        r.bytes_applied,
        outcome.duration_us / 1_000_000,
        outcome.duration_us % 1_000_000
    ));
    let visited = u64::from(outcome.before.superblock.geometry.descriptor_slots);
    lines.push(format!(
        "skipped {} of {visited} slot(s): {}",
        visited - u64::from(r.records_applied),
        r.skipped
    ));
    if r.skipped.alarming() > 0 {
        lines.push(format!(
            "WARNING: {} damaged record(s) not replayed (acknowledged data may be lost): \
             {} malformed, {} bad payload, {} beyond disk",
            r.skipped.alarming(),
            r.skipped.malformed,
            r.skipped.bad_payload_checksum,
            r.skipped.beyond_disk
        ));
    }
    match outcome.report_write {
        ReportWrite::Written(next) => lines.push(format!(
            "report recorded in superblock copy {} (generation {}): region clean, durable tail {}",
            match next.copy {
                rapilog_format::SuperblockCopy::First => 0,
                rapilog_format::SuperblockCopy::Second => 1,
            },
            next.superblock.generation,
            next.superblock.durable_tail
        )),
        ReportWrite::DryRun => {
            lines.push("dry run: nothing written to the disk or the region".into())
        }
        ReportWrite::AlreadyClean => {
            let last = &outcome.before.superblock.last_replay;
            lines.push(format!(
                "region already clean, left as it was (last replay: {:?}, {} record(s) applied)",
                last.replayer, last.report.records_applied
            ))
        }
    }
    lines
}

/// Shows an id (for callers that only have bytes).
pub fn id_text(id: &[u8]) -> String {
    IdText(id).to_string()
}
