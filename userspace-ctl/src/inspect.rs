// SPDX-License-Identifier: GPL-2.0

//! `rapilogctl inspect`: decode a region with the format crate.
//!
//! The replay decision of each record is the planner's own
//! ([`rapilog_format::plan_replay`] against the region's disk): a record is
//! "apply" exactly when the planner yields it. The reason a record is
//! skipped is found by the same checks, in the same order, as FORMAT.md's
//! recovery rule 3; the counts are compared with the planner's report and
//! any disagreement is reported (`summary.planner_agrees`).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;

use rapilog_format::descriptor::fields as dfields;
use rapilog_format::superblock::fields as sfields;
use rapilog_format::{
    marker_area, plan_replay, ActiveSuperblock, Crc32c, Descriptor, DescriptorError, LoadError,
    RegionSpec, RegionState, ReplayReport, Replayer, SkipCounts, SoftwareCrc32c, Superblock,
    SuperblockCopy, DESCRIPTOR_BYTES, SECTOR_BYTES, SUPERBLOCK_BYTES, UNIT_BYTES,
};
use rapilog_replay::idtext::IdText;
use rapilog_replay::region::{FileRegion, MemAccess, RegionStore};
use serde::Serialize;

use crate::units::{human, parse_number, parse_size};
use crate::{Code, Error};

/// Name of the `--json` document of `inspect`.
pub const SCHEMA: &str = "rapilogctl.inspect";
/// Version of that document; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// Where a region's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An image file (a dump, or a test image).
    Image(PathBuf),
    /// Physical memory through a memory device (normally `/dev/mem`).
    Memory {
        /// The memory device.
        device: PathBuf,
        /// Address and size.
        spec: RegionSpec,
    },
}

/// Parses `--mem ADDR,SIZE` (also accepts the module's `SIZE@ADDR`).
pub fn parse_mem(text: &str) -> Result<RegionSpec, String> {
    let spec_text = match text.split_once(',') {
        Some((addr, size)) => {
            let addr = parse_number(addr).ok_or_else(|| format!("bad address {addr:?}"))?;
            let size = parse_size(size).ok_or_else(|| format!("bad size {size:?}"))?;
            format!("{size}@{addr:#x}")
        }
        None => text.to_string(),
    };
    RegionSpec::parse(spec_text.as_bytes())
        .map_err(|e| format!("{text:?}: {e} (expected ADDR,SIZE, e.g. 0x60000000,64M)"))
}

/// Reads the region's bytes, read-only.
pub fn read_region(source: &Source) -> Result<(Vec<u8>, String), Error> {
    let region = match source {
        Source::Image(path) => FileRegion::open_image(path, true).map_err(|e| {
            Error::io(
                Code::Usage,
                &format!("cannot read image {}", path.display()),
                &e,
            )
        })?,
        Source::Memory { device, spec } => {
            FileRegion::open_memory(device, *spec, MemAccess::Read, true).map_err(|e| {
                let mut err = Error::io(
                    Code::Failed,
                    &format!("cannot read {spec} from {}", device.display()),
                    &e,
                );
                if err.code == Code::NotRoot {
                    err.message
                        .push_str(" (reading physical memory needs root)");
                }
                err
            })?
        }
    };
    Ok((region.bytes().to_vec(), region.describe()))
}

/// One superblock copy.
#[derive(Debug, Clone, Serialize)]
pub struct CopyReport {
    /// 0 or 1.
    pub copy: u8,
    /// Byte offset in the region.
    pub offset: u64,
    /// Whether the copy decodes and validates.
    pub valid: bool,
    /// Whether it is the current superblock.
    pub active: bool,
    /// Its generation (valid copies only).
    pub generation: Option<u64>,
    /// Checksum verdict: `ok`, `bad`, or `n/a` (bad magic or version).
    pub checksum: &'static str,
    /// Why it is not valid.
    pub error: Option<String>,
}

/// Disk identity as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct DiskReport {
    /// Text form of the id (`\xHH` escapes for odd bytes).
    pub id: String,
    /// Size in 512-byte sectors.
    pub sectors: u64,
    /// Logical block size.
    pub block_bytes: u32,
}

/// Layout.
#[derive(Debug, Clone, Serialize)]
pub struct GeometryReport {
    /// Region size.
    pub region_bytes: u64,
    /// Descriptor table start.
    pub descriptor_offset: u64,
    /// Descriptor slots.
    pub descriptor_slots: u32,
    /// Ring start.
    pub ring_offset: u64,
    /// Ring size.
    pub ring_bytes: u64,
    /// Largest record.
    pub max_record_bytes: u32,
}

/// Serializes the format crate's [`SkipCounts`] (no_std, without serde)
/// under its field names, the superblock report's.
#[derive(Serialize)]
#[serde(remote = "SkipCounts")]
struct SkipCountsJson {
    empty: u32,
    bad_descriptor_checksum: u32,
    malformed: u32,
    wrong_epoch: u32,
    stale: u32,
    bad_payload_checksum: u32,
    beyond_disk: u32,
}

/// Counts one skipped slot under its reason (a [`skip_reason`] name).
fn count_skip(skips: &mut SkipCounts, reason: &str) {
    let c = match reason {
        "empty" => &mut skips.empty,
        "bad_descriptor_checksum" => &mut skips.bad_descriptor_checksum,
        "malformed" => &mut skips.malformed,
        "wrong_epoch" => &mut skips.wrong_epoch,
        "stale" => &mut skips.stale,
        "bad_payload_checksum" => &mut skips.bad_payload_checksum,
        _ => &mut skips.beyond_disk,
    };
    *c += 1;
}

/// A replay report (the superblock's last replay, or a replay's outcome).
#[derive(Debug, Clone, Serialize)]
pub struct ReportJson {
    /// Records applied.
    pub applied: u32,
    /// Payload bytes applied.
    pub bytes: u64,
    /// Skipped slots by reason.
    #[serde(with = "SkipCountsJson")]
    pub skipped: SkipCounts,
}

impl From<ReplayReport> for ReportJson {
    fn from(r: ReplayReport) -> Self {
        Self {
            applied: r.records_applied,
            bytes: r.bytes_applied,
            skipped: r.skipped,
        }
    }
}

/// The last replay recorded in the superblock.
#[derive(Debug, Clone, Serialize)]
pub struct LastReplayReport {
    /// `never`, `module`, `rescue` or `tool`.
    pub by: &'static str,
    /// Durable tail it started from.
    pub from_seq: u64,
    /// End, Unix seconds (0 unknown).
    pub finished_at_unix: u64,
    /// Duration in microseconds.
    pub duration_us: u64,
    /// What it did.
    pub report: ReportJson,
}

/// The current superblock.
#[derive(Debug, Clone, Serialize)]
pub struct SuperblockReport {
    /// Copy it was read from.
    pub copy: u8,
    /// Its contents.
    #[serde(flatten)]
    pub fields: SuperblockFields,
}

impl std::ops::Deref for SuperblockReport {
    type Target = SuperblockFields;
    fn deref(&self) -> &SuperblockFields {
        &self.fields
    }
}

/// A superblock's contents (also in `rapilogctl.status`).
#[derive(Debug, Clone, Serialize)]
pub struct SuperblockFields {
    /// Generation.
    pub generation: u64,
    /// Epoch, as `0x` hex text (64-bit random: JSON numbers would lose bits).
    pub epoch: String,
    /// `clean` or `dirty`.
    pub state: &'static str,
    /// Oldest sequence number not known durable.
    pub durable_tail: u64,
    /// Writer's next sequence number when written (informational).
    pub head_hint: u64,
    /// Layout.
    pub geometry: GeometryReport,
    /// The log disk.
    pub disk: DiskReport,
    /// Last replay.
    pub last_replay: LastReplayReport,
}

/// The live window.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Window {
    /// First sequence number (the durable tail).
    pub start: u64,
    /// One past the last.
    pub end: u64,
}

/// One slot of the live window.
#[derive(Debug, Clone, Serialize)]
pub struct RecordReport {
    /// The sequence number this slot holds in the window.
    pub seq: u64,
    /// Slot index (`seq % descriptor_slots`).
    pub slot: u32,
    /// The descriptor's own `seq` field (may differ: stale), as read.
    pub descriptor_seq: u64,
    /// Target sector (512-byte units), as read.
    pub sector: u64,
    /// Payload length, as read.
    pub length: u32,
    /// Payload offset in the ring, as read.
    pub ring_offset: u64,
    /// Descriptor checksum: `ok`, `bad` or `n/a` (empty).
    pub descriptor_crc: &'static str,
    /// Payload checksum: `ok`, `bad` or `n/a` (not reached).
    pub payload_crc: &'static str,
    /// `apply` or `skip`.
    pub decision: &'static str,
    /// Skip reason (a `summary.skipped` key), `null` when applied.
    pub reason: Option<&'static str>,
}

/// Totals.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Slots in the window.
    pub slots: u32,
    /// Records the replay would apply.
    pub apply: u32,
    /// Their payload bytes.
    pub apply_bytes: u64,
    /// Skipped slots by reason.
    #[serde(with = "SkipCountsJson")]
    pub skipped: SkipCounts,
    /// Skips that mean damaged acknowledged data (malformed, bad payload, beyond disk).
    pub damaged: u32,
    /// The per-record reasons add up to the replay planner's own report.
    pub planner_agrees: bool,
}

/// The whole inspection: the `--json` document.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// [`SCHEMA`].
    pub schema: &'static str,
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Where the bytes came from.
    pub source: String,
    /// Bytes read.
    pub bytes: u64,
    /// Both superblock copies.
    pub superblock_copies: Vec<CopyReport>,
    /// Why the region is refused (then `superblock`, `window`, `summary` are null).
    pub error: Option<String>,
    /// The current superblock.
    pub superblock: Option<SuperblockReport>,
    /// The live window.
    pub window: Option<Window>,
    /// Non-empty slots of the window (every slot with `--all`), in seq order.
    pub records: Vec<RecordReport>,
    /// Totals.
    pub summary: Option<Summary>,
}

impl Inspection {
    /// Exit code: 3 refused, 1 damaged records (or the planner disagrees), else 0.
    pub fn code(&self) -> Code {
        match &self.summary {
            None => Code::Region,
            Some(s) if s.damaged > 0 || !s.planner_agrees => Code::Failed,
            Some(_) => Code::Ok,
        }
    }
}

fn le(bytes: &[u8], offset: usize, len: usize) -> u64 {
    bytes.get(offset..offset + len).map_or(0, |b| {
        b.iter().rev().fold(0u64, |v, &x| (v << 8) | u64::from(x))
    })
}

fn copy_index(copy: SuperblockCopy) -> u8 {
    match copy {
        SuperblockCopy::First => 0,
        SuperblockCopy::Second => 1,
    }
}

fn replayer_name(r: Replayer) -> &'static str {
    match r {
        Replayer::Never => "never",
        Replayer::Module => "module",
        Replayer::Rescue => "rescue",
        Replayer::Tool => "tool",
    }
}

fn state_name(s: RegionState) -> &'static str {
    match s {
        RegionState::Clean => "clean",
        RegionState::Dirty => "dirty",
    }
}

fn copies(region: &[u8], active: Option<&ActiveSuperblock>) -> Vec<CopyReport> {
    [SuperblockCopy::First, SuperblockCopy::Second]
        .into_iter()
        .map(|copy| {
            let range = copy.range();
            let bytes = region
                .get(range.clone())
                .and_then(|b| <&[u8; SUPERBLOCK_BYTES]>::try_from(b).ok());
            let decoded = bytes.map(|b| Superblock::decode(b, SoftwareCrc32c));
            let checksum = match bytes {
                None => "n/a",
                Some(b) => {
                    let magic_ok = b[..8] == rapilog_format::superblock::SUPERBLOCK_MAGIC;
                    let version_ok = le(b, sfields::VERSION.offset, 4)
                        == u64::from(rapilog_format::FORMAT_VERSION);
                    let crc = SoftwareCrc32c.checksum(&b[..sfields::CHECKSUM.offset]);
                    if !magic_ok || !version_ok {
                        "n/a"
                    } else if u64::from(crc) == le(b, sfields::CHECKSUM.offset, 4) {
                        "ok"
                    } else {
                        "bad"
                    }
                }
            };
            let (valid, generation, error) = match decoded {
                None => (false, None, Some("region too small".to_string())),
                Some(Ok(sb)) => (true, Some(sb.generation), None),
                Some(Err(e)) => (false, None, Some(e.to_string())),
            };
            CopyReport {
                copy: copy_index(copy),
                offset: range.start as u64,
                valid,
                active: active.is_some_and(|a| a.copy == copy),
                generation,
                checksum,
                error,
            }
        })
        .collect()
}

fn superblock_report(active: &ActiveSuperblock) -> SuperblockReport {
    SuperblockReport {
        copy: copy_index(active.copy),
        fields: superblock_fields(&active.superblock),
    }
}

/// A superblock's contents, for JSON and [`render`].
pub fn superblock_fields(sb: &Superblock) -> SuperblockFields {
    let g = &sb.geometry;
    let r = &sb.last_replay;
    SuperblockFields {
        generation: sb.generation,
        epoch: format!("{:#x}", sb.epoch),
        state: state_name(sb.state),
        durable_tail: sb.durable_tail,
        head_hint: sb.head_hint,
        geometry: GeometryReport {
            region_bytes: g.region_bytes,
            descriptor_offset: g.descriptor_offset,
            descriptor_slots: g.descriptor_slots,
            ring_offset: g.ring_offset,
            ring_bytes: g.ring_bytes,
            max_record_bytes: g.max_record_bytes,
        },
        disk: DiskReport {
            id: IdText(sb.disk.id.as_bytes()).to_string(),
            sectors: sb.disk.sectors,
            block_bytes: sb.disk.block_bytes,
        },
        last_replay: LastReplayReport {
            by: replayer_name(r.replayer),
            from_seq: r.from_seq,
            finished_at_unix: r.finished_at_unix_secs,
            duration_us: r.duration_us,
            report: r.report.into(),
        },
    }
}

/// The last replay in words: `never`, or who, from where, when, what.
pub fn last_replay_words(r: &LastReplayReport) -> String {
    if r.by == "never" {
        return "never".into();
    }
    format!(
        "by {} from seq {}, finished at {} (Unix), {} us: {} applied ({}), {}",
        r.by,
        r.from_seq,
        r.finished_at_unix,
        r.duration_us,
        r.report.applied,
        human(r.report.bytes),
        r.report.skipped
    )
}

/// Why the slot of `seq` is skipped (rule 3 of FORMAT.md, in order), or
/// `None` if it passes every check.
fn skip_reason(
    region: &[u8],
    sb: &Superblock,
    seq: u64,
    raw: &[u8; DESCRIPTOR_BYTES],
) -> (Option<&'static str>, &'static str, &'static str) {
    let g = &sb.geometry;
    let d = match Descriptor::decode(raw, SoftwareCrc32c) {
        Ok(d) => d,
        Err(DescriptorError::Empty) => return (Some("empty"), "n/a", "n/a"),
        Err(DescriptorError::BadChecksum) => {
            return (Some("bad_descriptor_checksum"), "bad", "n/a")
        }
        Err(DescriptorError::Malformed) => return (Some("malformed"), "ok", "n/a"),
    };
    let skip = |reason| (Some(reason), "ok", "n/a");
    if d.epoch != sb.epoch {
        return skip("wrong_epoch");
    }
    if d.seq != seq {
        return skip(if g.slot_of(d.seq) == g.slot_of(seq) {
            "stale"
        } else {
            "malformed"
        });
    }
    let length = u64::from(d.length);
    if length == 0
        || length % UNIT_BYTES != 0
        || d.length > g.max_record_bytes
        || d.ring_offset % UNIT_BYTES != 0
    {
        return skip("malformed");
    }
    let block = sb.disk.block_sectors();
    let sectors = length / u64::from(SECTOR_BYTES);
    if d.sector % block != 0 || sectors % block != 0 {
        return skip("malformed");
    }
    // Records end inside the disk's data area, before its loss marker.
    let data_sectors = marker_area(&sb.disk).map_or(0, |a| a.data_sectors());
    match d.sector.checked_add(sectors) {
        Some(end) if end <= data_sectors => {}
        _ => return skip("beyond_disk"),
    }
    let Some(payload) = g
        .payload_range(d.ring_offset, d.length)
        .and_then(|r| region.get(r))
    else {
        return skip("malformed");
    };
    if SoftwareCrc32c.checksum(payload) != d.payload_checksum {
        return (Some("bad_payload_checksum"), "ok", "bad");
    }
    (None, "ok", "ok")
}

/// Decodes `region` (read from `source`). `all` lists empty slots too.
pub fn inspect(region: &[u8], source: &str, all: bool) -> Inspection {
    let loaded = ActiveSuperblock::load(region, SoftwareCrc32c);
    let mut inspection = Inspection {
        schema: SCHEMA,
        schema_version: SCHEMA_VERSION,
        source: source.to_string(),
        bytes: region.len() as u64,
        superblock_copies: copies(region, loaded.as_ref().ok()),
        error: None,
        superblock: None,
        window: None,
        records: Vec::new(),
        summary: None,
    };
    let active = match loaded {
        Ok(a) => a,
        Err(e) => {
            inspection.error = Some(load_error_text(&e));
            return inspection;
        }
    };
    let sb = active.superblock;
    inspection.superblock = Some(superblock_report(&active));
    // The planner's decision, against the region's own disk.
    let (applied, planner_report): (BTreeSet<u64>, ReplayReport) =
        match plan_replay(region, &sb.disk, SoftwareCrc32c) {
            Ok(mut plan) => {
                let seqs = plan.by_ref().map(|w| w.seq).collect();
                (seqs, plan.report())
            }
            Err(e) => {
                // After a successful load only a disk too small for its
                // marker area is refused.
                inspection.error = Some(e.to_string());
                return inspection;
            }
        };
    let window = sb.live_window();
    inspection.window = Some(Window {
        start: window.start,
        end: window.end,
    });
    let mut skips = SkipCounts::default();
    let mut apply = 0u32;
    let mut apply_bytes = 0u64;
    let mut agrees = true;
    for seq in window {
        let slot = sb.geometry.slot_of(seq);
        let raw: [u8; DESCRIPTOR_BYTES] = sb
            .geometry
            .descriptor_range(slot)
            .and_then(|r| region.get(r))
            .and_then(|b| b.try_into().ok())
            .unwrap_or([0xff; DESCRIPTOR_BYTES]);
        let (reason, descriptor_crc, payload_crc) = skip_reason(region, &sb, seq, &raw);
        let planner_applies = applied.contains(&seq);
        agrees &= planner_applies == reason.is_none();
        let length = le(&raw, dfields::LENGTH.offset, 4) as u32;
        match reason {
            Some(r) => count_skip(&mut skips, r),
            None => {
                apply += 1;
                apply_bytes += u64::from(length);
            }
        }
        if reason == Some("empty") && !all {
            continue;
        }
        inspection.records.push(RecordReport {
            seq,
            slot,
            descriptor_seq: le(&raw, dfields::SEQ.offset, 8),
            sector: le(&raw, dfields::SECTOR.offset, 8),
            length,
            ring_offset: le(&raw, dfields::RING_OFFSET.offset, 8),
            descriptor_crc,
            payload_crc,
            decision: if planner_applies { "apply" } else { "skip" },
            reason,
        });
    }
    let planner = planner_report.skipped;
    agrees &= planner == skips
        && planner_report.records_applied == apply
        && planner_report.bytes_applied == apply_bytes;
    inspection.summary = Some(Summary {
        slots: sb.geometry.descriptor_slots,
        apply: planner_report.records_applied,
        apply_bytes: planner_report.bytes_applied,
        skipped: skips,
        damaged: planner.alarming(),
        planner_agrees: agrees,
    });
    inspection
}

fn load_error_text(e: &LoadError) -> String {
    format!("not a usable rapilog region: {e}")
}

/// Reads `source` and inspects it.
pub fn run(source: &Source, all: bool) -> Result<Inspection, Error> {
    let (bytes, describe) = read_region(source)?;
    Ok(inspect(&bytes, &describe, all))
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// Aligns `rows` (first row: header) into columns; numeric columns
/// (`right[i]`) right-aligned.
pub fn table(rows: &[Vec<String>], right: &[bool]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c > 0 {
                line.push_str("  ");
            }
            if right.get(c).copied().unwrap_or(false) {
                let _ = write!(line, "{cell:>w$}", w = widths[c]);
            } else {
                let _ = write!(line, "{cell:<w$}", w = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Human output.
pub fn render(i: &Inspection) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "region      {} ({})", i.source, human(i.bytes));
    let mut rows = vec![vec![
        "superblock".to_string(),
        "offset".into(),
        "valid".into(),
        "checksum".into(),
        "generation".into(),
        "active".into(),
        "error".into(),
    ]];
    for c in &i.superblock_copies {
        rows.push(vec![
            format!("copy {}", c.copy),
            c.offset.to_string(),
            yes_no(c.valid).into(),
            c.checksum.into(),
            c.generation.map_or("-".into(), |g| g.to_string()),
            if c.active { "*".into() } else { String::new() },
            c.error.clone().unwrap_or_default(),
        ]);
    }
    out.push('\n');
    out.push_str(&table(
        &rows,
        &[false, true, false, false, true, false, false],
    ));
    if let Some(e) = &i.error {
        let _ = writeln!(out, "\nREFUSED: {e}");
        return out;
    }
    if let Some(sb) = &i.superblock {
        let g = &sb.geometry;
        let r = &sb.last_replay;
        out.push('\n');
        let _ = writeln!(
            out,
            "state       {}   epoch {}   generation {} (copy {})",
            sb.state, sb.epoch, sb.generation, sb.copy
        );
        let _ = writeln!(
            out,
            "durable     tail {}   head hint {}",
            sb.durable_tail, sb.head_hint
        );
        let _ = writeln!(
            out,
            "geometry    region {}, {} slots at {}, ring {} at {}, records up to {}",
            human(g.region_bytes),
            g.descriptor_slots,
            g.descriptor_offset,
            human(g.ring_bytes),
            g.ring_offset,
            human(u64::from(g.max_record_bytes))
        );
        let _ = writeln!(
            out,
            "disk        {}   {} sectors ({})   {}-byte blocks",
            sb.disk.id,
            sb.disk.sectors,
            human(sb.disk.sectors * 512),
            sb.disk.block_bytes
        );
        let _ = writeln!(out, "last replay {}", last_replay_words(r));
    }
    if let (Some(w), Some(s)) = (&i.window, &i.summary) {
        let _ = writeln!(
            out,
            "\nlive window {}..{} ({} slots)",
            w.start, w.end, s.slots
        );
        if i.records.is_empty() {
            let _ = writeln!(out, "(every slot empty)");
        } else {
            let mut rows = vec![[
                "seq",
                "slot",
                "sector",
                "length",
                "desc crc",
                "payload crc",
                "decision",
                "reason",
            ]
            .map(String::from)
            .to_vec()];
            for r in &i.records {
                rows.push(vec![
                    r.seq.to_string(),
                    r.slot.to_string(),
                    r.sector.to_string(),
                    r.length.to_string(),
                    r.descriptor_crc.into(),
                    r.payload_crc.into(),
                    r.decision.into(),
                    match r.reason {
                        Some("stale") => format!("stale (holds seq {})", r.descriptor_seq),
                        Some(reason) => reason.into(),
                        None => String::new(),
                    },
                ]);
            }
            out.push_str(&table(
                &rows,
                &[true, true, true, true, false, false, false, false],
            ));
        }
        let _ = writeln!(
            out,
            "\nsummary     {} to apply ({}), {} skipped: {}",
            s.apply,
            human(s.apply_bytes),
            s.slots - s.apply,
            s.skipped
        );
        if s.damaged > 0 {
            let _ = writeln!(
                out,
                "DAMAGED     {} record(s) fail their checks (malformed, bad payload, beyond disk): \
                 acknowledged data may be lost",
                s.damaged
            );
        }
        if !s.planner_agrees {
            let _ = writeln!(
                out,
                "WARNING     the per-record reasons disagree with the replay planner's counts \
                 (a rapilogctl bug): the decisions shown are the planner's"
            );
        }
    }
    out
}
