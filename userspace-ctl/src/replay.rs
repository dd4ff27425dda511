// SPDX-License-Identifier: GPL-2.0

//! `rapilogctl replay --image FILE --disk DEV [--dry-run]`: the offline
//! equivalent of the rescue program. The replay itself is
//! [`rapilog_replay::engine::replay`], the code the crash kernel runs, with
//! [`Replayer::Tool`] recorded in the report.
//!
//! What this module adds is the operator's side: the disk is the one named
//! on the command line, so it is checked up front, before the engine runs,
//! even when the region holds nothing to apply:
//!
//! - a block device must carry the region's disk id (the identity rule of
//!   [`rapilog_replay::discover`], read from sysfs);
//! - a regular file (a disk image) has no identity, so `--disk-id ID` must
//!   say which disk it stands for, and it must be the region's;
//! - size and logical block size must be the region's (the planner's check).
//!
//! `--dry-run` opens the image and the disk read-only: nothing is written.
//!
//! Like the rescue program, a replay writes the disk's loss marker `clean`
//! once the records are flushed (when it was `live` for the region's epoch),
//! and on a possible loss leaves it as it is and exits 9.

use std::io::{IsTerminal, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rapilog_format::{
    plan_replay, ActiveSuperblock, DiskId, DiskIdentity, Replayer, SoftwareCrc32c,
};
use rapilog_replay::discover;
use rapilog_replay::engine::{
    self, describe_outcome, report_fields, MarkerOutcome, OpenedTarget, Outcome, ReplayOptions,
    ReportWrite,
};
use rapilog_replay::idtext::{self, IdText};
use rapilog_replay::region::{FileRegion, RegionStore};
use rapilog_replay::target::{BlockTarget, TargetDisk};
use serde::Serialize;

use crate::inspect::ReportJson;
use crate::marker::MarkerJson;
use crate::units::human;
use crate::{Code, Error};

/// Name of the `--json` document of `replay`.
pub const SCHEMA: &str = "rapilogctl.replay";
/// Its version.
pub const SCHEMA_VERSION: u32 = 1;

/// What to replay where.
#[derive(Debug, Clone)]
pub struct Request {
    /// The region image.
    pub image: PathBuf,
    /// The log disk (block device or image file).
    pub disk: PathBuf,
    /// The disk's identity, for a regular file (or to double-check a device).
    pub disk_id: Option<String>,
    /// Logical block size of a regular file (default: the region's).
    pub block_bytes: Option<u32>,
    /// Verify and report only.
    pub dry_run: bool,
    /// sysfs mount point.
    pub sysfs: PathBuf,
    /// Show progress on stderr (normally: stderr is a terminal).
    pub progress: bool,
}

/// The `--json` document of a finished replay.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayJson {
    /// [`SCHEMA`].
    pub schema: &'static str,
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The region.
    pub region: String,
    /// The disk written (`null` when no record needed it).
    pub disk: Option<String>,
    /// Nothing written.
    pub dry_run: bool,
    /// The live window examined.
    pub window: crate::inspect::Window,
    /// Applied and skipped records.
    pub report: ReportJson,
    /// Damaged records skipped (malformed, bad payload, beyond disk).
    pub damaged: u32,
    /// Writes plus flush.
    pub duration_us: u64,
    /// `written`, `dry-run` or `already-clean`: what happened to the region's report.
    pub region_update: &'static str,
    /// What became of the log disk's loss marker.
    pub marker: MarkerUpdateJson,
    /// The rescue program's report line (`key=value` words).
    pub report_line: String,
    /// Progress lines of the engine.
    pub log: Vec<String>,
    /// The exit code: 0, 1 when damaged records were skipped, 9 on a
    /// possible loss.
    pub exit_code: i32,
}

/// What a replay did with the log disk's loss marker.
#[derive(Debug, Clone, Serialize)]
pub struct MarkerUpdateJson {
    /// `cleaned`, `clean` (already), `none` (no marker), `would-clean`
    /// (dry run), `possible-loss`, or `not-checked`.
    pub outcome: &'static str,
    /// The marker found (null: none, damaged or not checked).
    pub found: Option<MarkerJson>,
    /// The marker written (null unless `cleaned`).
    pub written: Option<MarkerJson>,
    /// The possible loss in words (null unless `possible-loss`).
    pub possible_loss: Option<String>,
    /// Why the disk's marker was not checked, or why it is damaged.
    pub error: Option<String>,
}

impl From<&MarkerOutcome> for MarkerUpdateJson {
    fn from(m: &MarkerOutcome) -> Self {
        let mut json = Self {
            outcome: m.word(),
            found: None,
            written: None,
            possible_loss: None,
            error: None,
        };
        match m {
            MarkerOutcome::NotChecked { why } => json.error = Some(why.clone()),
            MarkerOutcome::Absent => {}
            MarkerOutcome::AlreadyClean(found) | MarkerOutcome::WouldClean(found) => {
                json.found = Some(found.into())
            }
            MarkerOutcome::Cleaned { before, after } => {
                json.found = Some(before.into());
                json.written = Some(after.into());
            }
            MarkerOutcome::PossibleLoss { marker, reason } => {
                json.possible_loss = Some(reason.to_string());
                match marker {
                    Ok(Some(found)) => json.found = Some(found.into()),
                    Ok(None) => {}
                    Err(e) => json.error = Some(e.to_string()),
                }
            }
        }
        json
    }
}

/// A finished replay: the outcome and the engine's log.
pub struct Done {
    /// What the engine returned.
    pub outcome: Outcome,
    /// Its progress lines.
    pub log: Vec<String>,
    /// The region, for messages.
    pub region: String,
    /// Dry run.
    pub dry_run: bool,
}

impl Done {
    /// Exit code: the rescue program's (0; 1 when damaged records were
    /// skipped; 9 when the disk's marker says writes may have been lost).
    pub fn code(&self) -> Code {
        match self.outcome.exit_code() {
            0 => Code::Ok,
            9 => Code::PossibleLoss,
            _ => Code::Failed,
        }
    }

    /// Human output: the engine's lines, then the rescue program's report.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = self.log.clone();
        lines.extend(describe_outcome(&self.outcome));
        lines.push(format!("report {}", report_fields(&self.outcome)));
        lines
    }

    /// The `--json` document.
    pub fn json(&self) -> ReplayJson {
        let o = &self.outcome;
        ReplayJson {
            schema: SCHEMA,
            schema_version: SCHEMA_VERSION,
            region: self.region.clone(),
            disk: o.target.clone(),
            dry_run: self.dry_run,
            window: crate::inspect::Window {
                start: o.window.start,
                end: o.window.end,
            },
            report: o.report.into(),
            damaged: o.report.skipped.alarming(),
            duration_us: o.duration_us,
            region_update: match o.report_write {
                ReportWrite::Written(_) => "written",
                ReportWrite::DryRun => "dry-run",
                ReportWrite::AlreadyClean => "already-clean",
            },
            marker: (&o.marker).into(),
            report_line: report_fields(o),
            log: self.log.clone(),
            exit_code: self.code().value(),
        }
    }
}

/// Counts bytes written and shows progress on stderr.
struct Progress<T> {
    inner: T,
    total: u64,
    done: u64,
    shown: Option<Instant>,
    enabled: bool,
}

impl<T> Progress<T> {
    fn show(&mut self, force: bool, what: &str) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if !force
            && self
                .shown
                .is_some_and(|t| now.duration_since(t).as_millis() < 100)
        {
            return;
        }
        self.shown = Some(now);
        let pct = (self.done * 100).checked_div(self.total).unwrap_or(100);
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\rrapilogctl: {what} {} of {} ({pct}%)   ",
            human(self.done),
            human(self.total)
        );
        let _ = err.flush();
    }
}

impl<T: BlockTarget> BlockTarget for Progress<T> {
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.inner.read_at(buf, offset)
    }

    fn write_at(&mut self, data: &[u8], offset: u64) -> std::io::Result<()> {
        self.inner.write_at(data, offset)?;
        self.done += data.len() as u64;
        self.show(false, "replaying");
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.show(true, "flushing, wrote");
        let r = self.inner.flush();
        if self.enabled {
            eprintln!();
        }
        r
    }
}

fn refuse(message: String) -> Error {
    Error::new(Code::Disk, format!("{message}; nothing written"))
}

/// The identity the disk at `path` has: for a block device, its ids from
/// sysfs must include the region's; for a file, `--disk-id` stands for it.
fn check_identity(
    req: &Request,
    region_id: &DiskId,
    meta: &std::fs::Metadata,
) -> Result<String, Error> {
    let region_text = IdText(region_id.as_bytes()).to_string();
    let claimed = match &req.disk_id {
        Some(text) => Some(
            idtext::parse_disk_id(text)
                .map_err(|e| Error::new(Code::Usage, format!("--disk-id {text:?}: {e}")))?,
        ),
        None => None,
    };
    if let Some(claimed) = &claimed {
        if claimed != region_id {
            return Err(refuse(format!(
                "the region belongs to disk {region_text}, but --disk-id says {} is disk {}",
                req.disk.display(),
                IdText(claimed.as_bytes())
            )));
        }
    }
    if meta.file_type().is_block_device() {
        let rdev = meta.rdev();
        let (major, minor) = (
            rapilog_replay::sys::dev_major(rdev),
            rapilog_replay::sys::dev_minor(rdev),
        );
        let devs = discover::scan(&req.sysfs).map_err(|e| {
            Error::new(
                Code::Disk,
                format!(
                    "cannot list block devices in {}: {e}",
                    req.sysfs.join("block").display()
                ),
            )
        })?;
        let dev = devs
            .iter()
            .find(|d| d.major == major && d.minor == minor)
            .ok_or_else(|| {
                refuse(format!(
                    "{} ({major}:{minor}) is not in {}",
                    req.disk.display(),
                    req.sysfs.join("block").display()
                ))
            })?;
        if !dev.has_id(region_id.as_bytes()) {
            return Err(refuse(format!(
                "{} ({}) is not the region's disk: the region names {region_text}, the device has {}",
                req.disk.display(),
                dev.name,
                dev.ids_text()
            )));
        }
        Ok(format!(
            "{} ({} {major}:{minor}, {region_text})",
            req.disk.display(),
            dev.name
        ))
    } else if meta.file_type().is_file() {
        if claimed.is_none() {
            return Err(Error::new(
                Code::Usage,
                format!(
                    "{} is a regular file, which has no disk identity: say which disk it is a copy of \
                     with --disk-id ID (the region names {region_text})",
                    req.disk.display()
                ),
            ));
        }
        Ok(format!("{} (image of {region_text})", req.disk.display()))
    } else {
        Err(Error::new(
            Code::Usage,
            format!(
                "{} is neither a block device nor a regular file",
                req.disk.display()
            ),
        ))
    }
}

/// Runs the replay.
pub fn run(req: &Request) -> Result<Done, Error> {
    let mut region = FileRegion::open_image(&req.image, req.dry_run).map_err(|e| {
        Error::io(
            Code::Usage,
            &format!("cannot open region image {}", req.image.display()),
            &e,
        )
    })?;
    let region_text = region.describe();
    // The same refusal the engine would give, before the disk is touched.
    let active = ActiveSuperblock::load(region.bytes(), SoftwareCrc32c).map_err(|e| {
        Error::new(
            Code::Region,
            format!("region {region_text} refused: {e}; nothing written"),
        )
    })?;
    let region_disk = active.superblock.disk;
    let meta = std::fs::metadata(&req.disk)
        .map_err(|e| Error::io(Code::Disk, &format!("disk {}", req.disk.display()), &e))?;
    let description = check_identity(req, &region_disk.id, &meta)?;
    let block_bytes = req.block_bytes.unwrap_or(region_disk.block_bytes);
    let disk = TargetDisk::open(&req.disk, req.dry_run, block_bytes).map_err(|e| {
        let mut err = Error::io(Code::Disk, &format!("cannot open {description}"), &e);
        err.message.push_str("; nothing written");
        err
    })?;
    let target = DiskIdentity {
        id: region_disk.id,
        sectors: disk.sectors,
        block_bytes: disk.block_bytes,
    };
    let total = match plan_replay(region.bytes(), &target, SoftwareCrc32c) {
        Ok(mut plan) => {
            plan.by_ref().for_each(drop);
            plan.report().bytes_applied
        }
        Err(e) => {
            return Err(refuse(format!(
                "{description} refused as the region's log disk: {e}"
            )))
        }
    };
    let expected_id = Some(region_disk.id);
    let options = ReplayOptions {
        replayer: Replayer::Tool,
        dry_run: req.dry_run,
        expected_id,
    };
    let mut log = Vec::new();
    let opened = OpenedTarget {
        sectors: disk.sectors,
        block_bytes: disk.block_bytes,
        disk: Progress {
            inner: disk,
            total,
            done: 0,
            shown: None,
            enabled: req.progress && !req.dry_run && std::io::stderr().is_terminal(),
        },
        description,
    };
    let outcome = engine::replay(&mut region, &options, |_, _| Ok(opened), &mut |line| {
        log.push(line.to_string())
    })
    .map_err(Error::from)?;
    Ok(Done {
        outcome,
        log,
        region: region_text,
        dry_run: req.dry_run,
    })
}

/// `Path` of the default sysfs.
pub fn default_sysfs() -> &'static Path {
    Path::new("/sys")
}
