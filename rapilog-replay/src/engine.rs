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
//!
//!    In both refusals the region holds no records of the expected disk
//!    (when one is named): that disk's loss marker is read, and if it says
//!    `live` ([`check_marker`]: possible loss) the refusal becomes the
//!    louder [`FailureKind::PossibleLoss`] (exit 9). Still nothing written.
//! 3. Plan against the region's own disk (how many records to apply).
//! 4. Find and open the disk (the caller's closure: by identity, or a
//!    forced path) and plan against it: [`plan_replay`] refuses another id,
//!    size or block size. Refused: nothing written. The disk is needed even
//!    when no record is to be applied, for its loss marker; if it cannot be
//!    opened then, the replay goes on without it ([`MarkerOutcome::NotChecked`]).
//! 5. Read the disk's loss marker and decide ([`check_marker`] with the
//!    region as evidence of this disk's epoch).
//! 6. Write every verified record in sequence order, then flush the disk.
//!    An I/O error stops here: the region is untouched, so the replay can
//!    simply run again (replay is idempotent).
//! 7. If the decision is "proceed" and the marker is `live`: write it
//!    `clean` (same epoch, generation + 1), then flush. An I/O error stops
//!    here as in step 6. On a possible loss the marker is left as it is
//!    (the evidence stays for the module and the administrator) and the
//!    outcome says so (exit 9); a disk without a marker is left without one.
//! 8. Only then record the replay in the older superblock copy
//!    ([`rapilog_format::ReplayPlan::replayed_superblock`]): tail past the
//!    window, state clean, report. Read it back and check it.
//!
//! Nothing that fails a check ever reaches the disk: the planner yields only
//! records whose descriptor and payload checksums hold, inside the disk's
//! data area.

use std::fmt;
use std::ops::Range;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rapilog_format::{
    check_marker, marker_area, plan_replay, ActiveSuperblock, DiskId, DiskIdentity, DiskMarker,
    LossReason, MarkerError, MarkerState, MarkerVerdict, MarkerWriter, RegionEvidence, RegionState,
    ReplayReport, Replayer, SoftwareCrc32c, Superblock, MARKER_BYTES, SECTOR_BYTES,
    SUPERBLOCK_BYTES,
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
    /// The disk's loss marker says acknowledged writes may have been lost,
    /// and the region holds no records of the disk (exit 9).
    PossibleLoss,
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
            Self::PossibleLoss => 9,
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

/// What became of the log disk's loss marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkerOutcome {
    /// The disk could not be opened, and no record needed it: the marker
    /// was neither read nor updated.
    NotChecked {
        /// Why the disk could not be opened.
        why: String,
    },
    /// The disk has no marker (fronted by a module without one, or never):
    /// left without one.
    Absent,
    /// Already clean: left as it was.
    AlreadyClean(DiskMarker),
    /// It was `live` for the region's epoch; now `clean`, written and
    /// flushed after the replay's writes.
    Cleaned {
        /// The marker found.
        before: DiskMarker,
        /// The marker written.
        after: DiskMarker,
    },
    /// Dry run: the marker would have been written `clean`.
    WouldClean(DiskMarker),
    /// Acknowledged writes may have been lost: the marker is left as it is.
    PossibleLoss {
        /// The marker as decoded.
        marker: Result<Option<DiskMarker>, MarkerError>,
        /// Why.
        reason: LossReason,
    },
}

impl MarkerOutcome {
    /// One word for the report line: `not-checked`, `none`, `clean`,
    /// `cleaned`, `would-clean` or `possible-loss`.
    pub fn word(&self) -> &'static str {
        match self {
            Self::NotChecked { .. } => "not-checked",
            Self::Absent => "none",
            Self::AlreadyClean(_) => "clean",
            Self::Cleaned { .. } => "cleaned",
            Self::WouldClean(_) => "would-clean",
            Self::PossibleLoss { .. } => "possible-loss",
        }
    }
}

/// A decoded marker (or why it is none or damaged), for messages.
pub fn marker_words(marker: &Result<Option<DiskMarker>, MarkerError>) -> String {
    match marker {
        Ok(Some(m)) => m.to_string(),
        Ok(None) => "no marker".into(),
        Err(e) => format!("damaged marker: {e}"),
    }
}

/// The marker writer recorded for `replayer`.
fn marker_writer(replayer: Replayer) -> MarkerWriter {
    match replayer {
        Replayer::Rescue => MarkerWriter::Rescue,
        Replayer::Module => MarkerWriter::Module,
        Replayer::Tool | Replayer::Never => MarkerWriter::Tool,
    }
}

/// Reads and decodes the marker of a disk of `sectors` and `block_bytes`.
/// `Ok(None)` when the disk has no marker area (too small to be fronted).
fn read_marker<T: BlockTarget>(
    disk: &mut T,
    identity: &DiskIdentity,
) -> std::io::Result<Option<Result<Option<DiskMarker>, MarkerError>>> {
    let Some(area) = marker_area(identity) else {
        return Ok(None);
    };
    let mut record = [0u8; MARKER_BYTES];
    disk.read_at(&mut record, area.byte_offset())?;
    Ok(Some(DiskMarker::decode(&record, SoftwareCrc32c)))
}

/// Writes `marker` over the whole marker area of `identity`, then flushes.
fn write_marker<T: BlockTarget>(
    disk: &mut T,
    identity: &DiskIdentity,
    marker: &DiskMarker,
) -> std::io::Result<()> {
    let area = marker_area(identity)
        .ok_or_else(|| std::io::Error::other("the disk has no marker area"))?;
    let len = usize::try_from(area.bytes()).map_err(std::io::Error::other)?;
    let mut bytes = vec![0u8; len];
    marker.encode_area(&mut bytes, SoftwareCrc32c);
    disk.write_at(&bytes, area.byte_offset())?;
    disk.flush()
}

/// The region was refused for `expected`'s sake (no valid superblock, or
/// another disk's): the region holds no records of that disk, so if that
/// disk's marker is `live`, acknowledged writes may have been lost. Reads
/// the marker (nothing is written) and returns the failure to report:
/// [`FailureKind::PossibleLoss`] then, else `refusal` as it was.
fn refused_region<T, F>(
    refusal: Failure,
    expected: Option<DiskId>,
    open_target: F,
    log: &mut dyn FnMut(&str),
) -> Failure
where
    T: BlockTarget,
    F: FnOnce(&DiskIdentity, &mut dyn FnMut(&str)) -> Result<OpenedTarget<T>, Failure>,
{
    let Some(id) = expected else {
        return refusal;
    };
    // Only the id is known; size and block size come from the disk itself.
    let wanted = DiskIdentity {
        id,
        sectors: 0,
        block_bytes: SECTOR_BYTES,
    };
    let mut opened = match open_target(&wanted, log) {
        Ok(opened) => opened,
        Err(f) => {
            log(&format!(
                "log disk {} not checked for a loss marker: {}",
                show(&id),
                f.message
            ));
            return refusal;
        }
    };
    let identity = DiskIdentity {
        id,
        sectors: opened.sectors,
        block_bytes: opened.block_bytes,
    };
    let marker = match read_marker(&mut opened.disk, &identity) {
        Ok(Some(marker)) => marker,
        Ok(None) => return refusal,
        Err(e) => {
            log(&format!(
                "reading the loss marker of {} failed: {e}",
                opened.description
            ));
            return refusal;
        }
    };
    log(&format!(
        "log disk {}: {}",
        opened.description,
        marker_words(&marker)
    ));
    match check_marker(marker, RegionEvidence::NoRegionRecords) {
        MarkerVerdict::Proceed => refusal,
        MarkerVerdict::PossibleLoss { reason } => Failure::new(
            FailureKind::PossibleLoss,
            format!(
                "POSSIBLE LOSS OF ACKNOWLEDGED WRITES: {reason}. {}; the marker of {} is left \
                 as it is: once the loss is dealt with, clear it with `rapilogctl marker DISK \
                 --clear`",
                refusal.message, opened.description
            ),
        ),
    }
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
    /// What became of the log disk's loss marker.
    pub marker: MarkerOutcome,
}

impl Outcome {
    /// 9 when the disk's marker says acknowledged writes may have been lost
    /// ([`MarkerOutcome::PossibleLoss`]); else 1 when records were damaged
    /// (malformed, bad payload, beyond the disk): the replay did all it
    /// could, but acknowledged data may be lost; else 0.
    pub fn exit_code(&self) -> i32 {
        if matches!(self.marker, MarkerOutcome::PossibleLoss { .. }) {
            FailureKind::PossibleLoss.exit_code()
        } else if self.report.skipped.alarming() > 0 {
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
         bad_payload={} beyond_disk={} from_seq={} duration_us={} marker={} region={} exit={}",
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
        outcome.marker.word(),
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
    let active = match ActiveSuperblock::load(region.bytes(), crc) {
        Ok(active) => active,
        Err(e) => {
            let refusal = Failure::new(
                FailureKind::Region,
                format!("region {where_} refused: {e}; nothing written"),
            );
            return Err(refused_region(
                refusal,
                options.expected_id,
                open_target,
                log,
            ));
        }
    };
    let sb: Superblock = active.superblock;
    log(&format!(
        "region {where_}: {}",
        describe_superblock(&active)
    ));

    // 2. The disk the caller expects.
    if let Some(expected) = options.expected_id {
        if expected != sb.disk.id {
            let refusal = Failure::new(
                FailureKind::Disk,
                format!(
                    "region {where_} belongs to disk {} but the configuration names disk {}; \
                     nothing written",
                    show(&sb.disk.id),
                    show(&expected)
                ),
            );
            return Err(refused_region(refusal, Some(expected), open_target, log));
        }
    }

    // 3. Anything to apply?
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

    // 4. The disk: for the records, and for its loss marker.
    let mut opened = match open_target(&sb.disk, log) {
        Ok(opened) => opened,
        Err(f) if pre_report.records_applied == 0 => {
            log(&format!(
                "no record to apply; the log disk's loss marker is not checked: {}",
                f.message
            ));
            let marker = MarkerOutcome::NotChecked { why: f.message };
            let finished = Finished::of(&dry, options, 0);
            return record_report(region, options, &active, finished, pre_report, None, marker);
        }
        Err(f) => return Err(f),
    };
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

    // 5. The loss marker and the decision.
    let marker = read_marker(&mut opened.disk, &target_identity)
        .map_err(|e| {
            Failure::new(
                FailureKind::DiskIo,
                format!(
                    "reading the loss marker of {} failed: {e}; nothing written",
                    opened.description
                ),
            )
        })?
        .unwrap_or(Ok(None)); // no marker area: plan_replay refused that already
    log(&format!("log disk marker: {}", marker_words(&marker)));
    let verdict = check_marker(marker, RegionEvidence::Ours { epoch: sb.epoch });
    let to_clean = match (verdict, marker) {
        (MarkerVerdict::Proceed, Ok(Some(m))) if m.state == MarkerState::Live => Some(m),
        _ => None,
    };

    let description = opened.description;
    let mut disk = opened.disk;
    if options.dry_run {
        plan.by_ref().for_each(drop);
        let marker = match (verdict, marker) {
            (MarkerVerdict::PossibleLoss { reason }, _) => {
                MarkerOutcome::PossibleLoss { marker, reason }
            }
            (_, Ok(Some(m))) if to_clean.is_some() => MarkerOutcome::WouldClean(m),
            (_, Ok(Some(m))) => MarkerOutcome::AlreadyClean(m),
            _ => MarkerOutcome::Absent,
        };
        let finished = Finished::of(&plan, options, 0);
        let report = plan.report();
        return record_report(
            region,
            options,
            &active,
            finished,
            report,
            Some(description),
            marker,
        );
    }

    // 6. Writes, then flush.
    let start = Instant::now();
    if pre_report.records_applied > 0 {
        for write in plan.by_ref() {
            let offset = write.sector * 512;
            disk.write_at(write.data, offset).map_err(|e| {
                Failure::new(
                    FailureKind::DiskIo,
                    format!(
                        "writing record {} ({} bytes at sector {}) to {description} failed: {e}; \
                         region left as it was, replay again",
                        write.seq,
                        write.data.len(),
                        write.sector,
                    ),
                )
            })?;
        }
        disk.flush().map_err(|e| {
            Failure::new(
                FailureKind::DiskIo,
                format!("flushing {description} failed: {e}; region left as it was, replay again"),
            )
        })?;
    } else {
        plan.by_ref().for_each(drop);
    }
    let duration_us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);

    // 7. The marker: clean now that everything is on the disk.
    let marker = match (verdict, marker, to_clean) {
        (MarkerVerdict::PossibleLoss { reason }, _, _) => {
            log(&format!("POSSIBLE LOSS: {reason}"));
            MarkerOutcome::PossibleLoss { marker, reason }
        }
        (_, _, Some(before)) => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let after = before.cleaned(marker_writer(options.replayer), now);
            write_marker(&mut disk, &target_identity, &after).map_err(|e| {
                Failure::new(
                    FailureKind::DiskIo,
                    format!(
                        "writing the clean loss marker to {description} failed: {e}; \
                         region left as it was, replay again"
                    ),
                )
            })?;
            MarkerOutcome::Cleaned { before, after }
        }
        (_, Ok(Some(m)), None) => MarkerOutcome::AlreadyClean(m),
        _ => MarkerOutcome::Absent,
    };
    let finished = Finished::of(&plan, options, duration_us);
    let report = plan.report();
    record_report(
        region,
        options,
        &active,
        finished,
        report,
        Some(description),
        marker,
    )
}

/// What a finished plan leaves for the report: its window and the
/// superblock update that records it.
struct Finished {
    window: Range<u64>,
    next: Option<ActiveSuperblock>,
    duration_us: u64,
}

impl Finished {
    fn of<C: rapilog_format::Crc32c>(
        plan: &rapilog_format::ReplayPlan<'_, C>,
        options: &ReplayOptions,
        duration_us: u64,
    ) -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self {
            window: plan.window(),
            next: plan.replayed_superblock(options.replayer, now, duration_us),
            duration_us,
        }
    }
}

/// Step 8: records the replay in the region (unless a dry run, or a clean
/// region with nothing applied) and builds the outcome.
fn record_report(
    region: &mut dyn RegionStore,
    options: &ReplayOptions,
    active: &ActiveSuperblock,
    finished: Finished,
    report: ReplayReport,
    target: Option<String>,
    marker: MarkerOutcome,
) -> Result<Outcome, Failure> {
    let sb = &active.superblock;
    let Finished {
        window,
        next,
        duration_us,
    } = finished;
    let report_write = if options.dry_run {
        ReportWrite::DryRun
    } else if sb.state == RegionState::Clean
        && report.records_applied == 0
        && report.skipped.alarming() == 0
    {
        ReportWrite::AlreadyClean
    } else {
        let next = next.ok_or_else(|| {
            Failure::new(FailureKind::Report, "internal: replay plan not finished")
        })?;
        let where_ = region.describe();
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
        before: *active,
        target,
        window,
        report,
        duration_us,
        report_write,
        marker,
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
    lines.extend(describe_marker(&outcome.marker));
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

/// Lines saying what became of the log disk's loss marker.
pub fn describe_marker(marker: &MarkerOutcome) -> Vec<String> {
    match marker {
        MarkerOutcome::NotChecked { why } => vec![format!(
            "WARNING: the log disk's loss marker was not checked ({why}); if it says live and \
             memory is wiped before rapilog.ko loads again, the module will report a possible \
             loss: check it with `rapilogctl marker DISK`"
        )],
        MarkerOutcome::Absent => {
            vec![
                "log disk has no loss marker (never fronted by a rapilog.ko that writes one): \
                  left as it is"
                    .into(),
            ]
        }
        MarkerOutcome::AlreadyClean(m) => vec![format!("log disk marker already clean: {m}")],
        MarkerOutcome::Cleaned { before, after } => vec![format!(
            "log disk marker: live for region epoch {:#x} -> clean (generation {}), written and \
             flushed",
            before.epoch, after.generation
        )],
        MarkerOutcome::WouldClean(m) => vec![format!(
            "dry run: the log disk's live marker would be written clean ({m})"
        )],
        MarkerOutcome::PossibleLoss { marker, reason } => vec![
            format!("POSSIBLE LOSS OF ACKNOWLEDGED WRITES: {reason}"),
            format!(
                "the log disk's marker ({}) is left as it is: rapilog.ko will not load over it \
                 without accept_loss=1; once the loss is dealt with, clear it with `rapilogctl \
                 marker DISK --clear`",
                marker_words(marker)
            ),
        ],
    }
}

/// Shows an id (for callers that only have bytes).
pub fn id_text(id: &[u8]) -> String {
    IdText(id).to_string()
}
