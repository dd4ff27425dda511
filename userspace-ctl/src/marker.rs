// SPDX-License-Identifier: GPL-2.0

//! `rapilogctl marker DISK [--clear]`: the log disk's loss marker, read
//! offline (a block device or a disk image), and cleared by an
//! administrator who has dealt with a possible loss.
//!
//! The marker (FORMAT.md "Disk marker") is the first sector of the last
//! `max(4096, block)` bytes of the disk. Reading needs no exclusivity (the
//! module may hold the disk); a block device is read with `O_DIRECT`, since
//! the module writes the marker with bios that bypass the page cache a
//! buffered read could serve stale.
//!
//! `--clear` writes `clean` (writer `tool`, generation + 1) over the whole
//! area, flushes, reads it back and checks it. It refuses a busy block
//! device (`O_EXCL`: mounted, or held by rapilog.ko or another driver), and
//! leaves a disk without a marker, or with a clean one, as it is.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use rapilog_format::{
    marker_area, DiskId, DiskIdentity, DiskMarker, MarkerArea, MarkerError, MarkerState,
    MarkerWriter, SoftwareCrc32c, MARKER_BYTES,
};
use serde::Serialize;

use crate::status::utc;
use crate::units::human;
use crate::{Code, Error};

/// Name of the `--json` document of `marker`.
pub const SCHEMA: &str = "rapilogctl.marker";
/// Its version.
pub const SCHEMA_VERSION: u32 = 1;

/// What to read (and whether to clear).
#[derive(Debug, Clone)]
pub struct Request {
    /// Block device or disk image.
    pub disk: PathBuf,
    /// Logical block size of a disk image (default 512).
    pub block_bytes: Option<u32>,
    /// Write `clean` over a live or damaged marker.
    pub clear: bool,
}

/// A marker as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MarkerJson {
    /// `live` or `clean`.
    pub state: String,
    /// The region epoch, `0x` hex.
    pub epoch: String,
    /// Physical address of that region.
    pub region_phys: u64,
    /// Its size.
    pub region_bytes: u64,
    /// Marker writes so far.
    pub generation: u64,
    /// When written, Unix seconds (0 unknown).
    pub written_at_unix: u64,
    /// `module`, `module-drain`, `rescue`, `tool` or `accepted-loss`.
    pub writer: &'static str,
}

impl From<&DiskMarker> for MarkerJson {
    fn from(m: &DiskMarker) -> Self {
        Self {
            state: m.state.to_string(),
            epoch: format!("{:#x}", m.epoch),
            region_phys: m.region_phys,
            region_bytes: m.region_bytes,
            generation: m.generation,
            written_at_unix: m.written_at_unix_secs,
            writer: m.writer.name(),
        }
    }
}

/// The marker area as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct AreaJson {
    /// First sector (512-byte units).
    pub first_sector: u64,
    /// Sectors.
    pub sectors: u64,
    /// Bytes.
    pub bytes: u64,
}

/// The `rapilogctl.marker` document.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// [`SCHEMA`].
    pub schema: &'static str,
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The disk as given.
    pub disk: String,
    /// Its size in 512-byte sectors.
    pub sectors: u64,
    /// Its logical block size.
    pub block_bytes: u32,
    /// The marker area (null: the disk is too small to have one).
    pub area: Option<AreaJson>,
    /// Sectors before the area: what `/dev/rapilog0` exposes.
    pub data_sectors: Option<u64>,
    /// `live`, `clean`, `none` (no marker), `damaged` or `no-area`.
    pub state: &'static str,
    /// The marker found (null unless live or clean).
    pub marker: Option<MarkerJson>,
    /// Why the marker is damaged (null otherwise).
    pub error: Option<String>,
    /// With `--clear`: `cleared`, `already-clean` or `nothing-to-clear`;
    /// null without.
    pub clear: Option<&'static str>,
    /// The marker written by `--clear` (null otherwise).
    pub written: Option<MarkerJson>,
    /// The exit code.
    pub exit_code: i32,
}

impl Report {
    /// Exit code: 9 for a damaged marker (every loader reports it as a
    /// possible loss) that was not cleared; 0 otherwise.
    pub fn code(&self) -> Code {
        if self.state == "damaged" && self.clear != Some("cleared") {
            Code::PossibleLoss
        } else {
            Code::Ok
        }
    }

    /// Human output, one aligned row per aspect.
    pub fn lines(&self) -> String {
        let mut rows: Vec<(&str, String)> = vec![(
            "disk",
            format!(
                "{} ({} sectors, {}, {}-byte blocks)",
                self.disk,
                self.sectors,
                human(self.sectors * 512),
                self.block_bytes
            ),
        )];
        match (&self.area, self.data_sectors) {
            (Some(a), Some(data)) => rows.push((
                "marker area",
                format!(
                    "sectors {}..{} ({}); data area {} sectors ({}), all /dev/rapilog0 shows",
                    a.first_sector,
                    a.first_sector + a.sectors,
                    human(a.bytes),
                    data,
                    human(data * 512)
                ),
            )),
            _ => rows.push((
                "marker area",
                "none: the disk is smaller than twice the marker area, rapilog cannot front it"
                    .into(),
            )),
        }
        rows.push(("marker", self.marker_words(self.marker.as_ref())));
        rows.push(("meaning", self.meaning().into()));
        if let Some(written) = &self.written {
            rows.push(("cleared", self.marker_words(Some(written))));
        } else if let Some(clear) = self.clear {
            rows.push((
                "clear",
                match clear {
                    "already-clean" => "already clean: nothing written".into(),
                    _ => "no marker: nothing to clear, nothing written".to_string(),
                },
            ));
        }
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        rows.iter()
            .map(|(k, v)| format!("{k:<width$}  {v}\n"))
            .collect()
    }

    fn marker_words(&self, marker: Option<&MarkerJson>) -> String {
        match (marker, self.state, &self.error) {
            (Some(m), _, _) => format!(
                "{}, generation {}: region epoch {} ({} at {:#x}), written by {} at {}",
                m.state,
                m.generation,
                m.epoch,
                human(m.region_bytes),
                m.region_phys,
                m.writer,
                if m.written_at_unix == 0 {
                    "an unknown time".to_string()
                } else {
                    utc(m.written_at_unix)
                }
            ),
            (None, "damaged", Some(e)) => format!("DAMAGED: {e}"),
            (None, "no-area", _) => "none (no marker area)".into(),
            _ => "none".into(),
        }
    }

    fn meaning(&self) -> &'static str {
        match (self.state, self.clear) {
            (_, Some("cleared")) => {
                "clean now: everything acknowledged is taken to be on this disk (cleared by \
                 rapilogctl)"
            }
            ("live", _) => {
                "a region may hold acknowledged writes that are not on this disk: rapilog.ko \
                 replays it at load (warm reboot) or rapilog-rescue after a crash; if that \
                 region is gone (memory wiped, a cold boot, another machine), they are lost, and \
                 the module refuses to load without accept_loss=1. Once dealt with: \
                 `rapilogctl marker DISK --clear`"
            }
            ("clean", _) => "everything acknowledged is on this disk",
            ("damaged", _) => {
                "POSSIBLE LOSS: whether a region holding acknowledged writes fronted this disk \
                 cannot be told; rapilog.ko will not load over it without accept_loss=1. Once \
                 dealt with: `rapilogctl marker DISK --clear`"
            }
            ("none", _) => {
                "never fronted by a rapilog.ko that writes a marker: nothing is known to be \
                 missing"
            }
            _ => "",
        }
    }
}

/// The disk, opened.
struct Disk {
    file: File,
    identity: DiskIdentity,
    /// Reads and writes must be whole, aligned blocks (`O_DIRECT`).
    direct: bool,
}

fn open(req: &Request, write: bool) -> Result<Disk, Error> {
    let path = &req.disk;
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::io(Code::Disk, &format!("disk {}", path.display()), &e))?;
    let block_device = meta.file_type().is_block_device();
    if !block_device && !meta.file_type().is_file() {
        return Err(Error::new(
            Code::Usage,
            format!(
                "{} is neither a block device nor a regular file",
                path.display()
            ),
        ));
    }
    let mut options = OpenOptions::new();
    options.read(true).write(write);
    if block_device {
        // O_EXCL only to write: refuses a mounted disk or one a driver
        // (rapilog.ko) holds.
        let excl = if write { libc::O_EXCL } else { 0 };
        options.custom_flags(libc::O_DIRECT | excl);
    }
    let file = options.open(path).map_err(|e| {
        if e.raw_os_error() == Some(libc::EBUSY) {
            Error::new(
                Code::Disk,
                format!(
                    "{} is busy (mounted, or held by rapilog.ko or another driver): unload or \
                     unmount it first; nothing written",
                    path.display()
                ),
            )
        } else {
            Error::io(Code::Disk, &format!("cannot open {}", path.display()), &e)
        }
    })?;
    let (bytes, block_bytes) = if block_device {
        rapilog_replay::sys::block_device_geometry(&file)
            .map_err(|e| Error::io(Code::Disk, &format!("{}: size", path.display()), &e))?
    } else {
        (
            meta.len(),
            req.block_bytes.unwrap_or(rapilog_format::SECTOR_BYTES),
        )
    };
    let identity = DiskIdentity {
        // The marker does not depend on the id.
        id: DiskId::new(b"").expect("empty id"),
        sectors: bytes / 512,
        block_bytes,
    };
    if !identity.is_valid() && identity.sectors != 0 {
        return Err(Error::new(
            Code::Usage,
            format!(
                "logical block size {block_bytes} of {}: a power of two from 512 to 65536 expected",
                path.display()
            ),
        ));
    }
    Ok(Disk {
        file,
        identity,
        direct: block_device,
    })
}

/// A buffer of `len` bytes aligned for `O_DIRECT` (to 64 KiB, the largest
/// logical block), inside `storage`.
fn aligned(storage: &mut Vec<u8>, len: usize) -> &mut [u8] {
    const ALIGN: usize = 64 << 10;
    storage.clear();
    storage.resize(len + ALIGN, 0);
    let off = storage.as_ptr().align_offset(ALIGN);
    &mut storage[off..off + len]
}

impl Disk {
    /// The marker record, read with one aligned logical block.
    fn read_marker(
        &self,
        area: &MarkerArea,
    ) -> io::Result<Result<Option<DiskMarker>, MarkerError>> {
        let len = if self.direct {
            (self.identity.block_bytes as usize).max(MARKER_BYTES)
        } else {
            MARKER_BYTES
        };
        let mut storage = Vec::new();
        let buf = aligned(&mut storage, len);
        self.file.read_exact_at(buf, area.byte_offset())?;
        Ok(DiskMarker::decode(buf, SoftwareCrc32c))
    }

    /// Writes `marker` over the whole area, flushes.
    fn write_marker(&self, area: &MarkerArea, marker: &DiskMarker) -> io::Result<()> {
        let len = usize::try_from(area.bytes()).map_err(io::Error::other)?;
        let mut storage = Vec::new();
        let buf = aligned(&mut storage, len);
        marker.encode_area(buf, SoftwareCrc32c);
        self.file.write_all_at(buf, area.byte_offset())?;
        self.file.sync_all()
    }
}

/// Reads the marker of `req.disk`, and clears it with `req.clear`.
pub fn run(req: &Request) -> Result<Report, Error> {
    let disk = open(req, req.clear)?;
    let id = &disk.identity;
    let area = marker_area(id);
    let mut report = Report {
        schema: SCHEMA,
        schema_version: SCHEMA_VERSION,
        disk: req.disk.display().to_string(),
        sectors: id.sectors,
        block_bytes: id.block_bytes,
        area: area.map(|a| AreaJson {
            first_sector: a.first_sector,
            sectors: a.sectors,
            bytes: a.bytes(),
        }),
        data_sectors: area.map(|a| a.data_sectors()),
        state: "no-area",
        marker: None,
        error: None,
        clear: None,
        written: None,
        exit_code: 0,
    };
    let Some(area) = area else {
        report.exit_code = report.code().value();
        return Ok(report);
    };
    let what = format!("reading the marker of {}", req.disk.display());
    let found = disk
        .read_marker(&area)
        .map_err(|e| Error::io(Code::Failed, &what, &e))?;
    match &found {
        Ok(Some(m)) => {
            report.state = match m.state {
                MarkerState::Live => "live",
                MarkerState::Clean => "clean",
            };
            report.marker = Some(m.into());
        }
        Ok(None) => report.state = "none",
        Err(e) => {
            report.state = "damaged";
            report.error = Some(e.to_string());
        }
    }
    if req.clear {
        let written = match found {
            Ok(None) => {
                report.clear = Some("nothing-to-clear");
                None
            }
            Ok(Some(m)) if m.state == MarkerState::Clean => {
                report.clear = Some("already-clean");
                None
            }
            Ok(Some(m)) => Some(m.cleaned(MarkerWriter::Tool, now())),
            // Nothing of a damaged marker can be trusted: epoch and region
            // unknown (0), a fresh generation.
            Err(_) => Some(DiskMarker {
                state: MarkerState::Clean,
                epoch: 0,
                region_phys: 0,
                region_bytes: 0,
                generation: DiskMarker::next_generation(None),
                written_at_unix_secs: now(),
                writer: MarkerWriter::Tool,
            }),
        };
        if let Some(clean) = written {
            let what = format!("writing the clean marker to {}", req.disk.display());
            disk.write_marker(&area, &clean)
                .map_err(|e| Error::io(Code::Failed, &what, &e))?;
            let back = disk
                .read_marker(&area)
                .map_err(|e| Error::io(Code::Failed, &what, &e))?;
            if back != Ok(Some(clean)) {
                return Err(Error::new(
                    Code::Failed,
                    format!(
                        "{what}: reading it back gave {}",
                        rapilog_replay::engine::marker_words(&back)
                    ),
                ));
            }
            report.clear = Some("cleared");
            report.written = Some((&clean).into());
        }
    }
    report.exit_code = report.code().value();
    Ok(report)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
