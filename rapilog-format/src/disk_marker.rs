// SPDX-License-Identifier: GPL-2.0

//! The loss marker on the log disk: whether the disk is being fronted by a
//! region whose acknowledged records may not have reached it.
//!
//! The region lives in RAM. Firmware may wipe RAM at boot (reset-attack
//! mitigation, ECC scrubbing), and a cold boot or another machine has none
//! of it; then every record that was only in the region is gone, and a
//! module that simply formatted the region afresh would hide that. So the
//! disk itself says, in its last few KiB (the *marker area*, which
//! `/dev/rapilog0` never exposes), that a region holds records it may not
//! have: the module writes `Live` with its new region epoch (and flushes)
//! before the device goes live, and `Clean` once everything is on the disk
//! (clean drain; a replay by the rescue program or `rapilogctl`).
//!
//! At load, [`check_marker`] compares the marker with what the region holds
//! for this disk ([`RegionEvidence`]): a `Live` marker with no region
//! records of the same epoch means acknowledged writes may be lost, and the
//! loss is reported ([`MarkerVerdict::PossibleLoss`]) instead of formatting
//! over it.
//!
//! The marker record is one 512-byte sector (written atomically by every
//! disk), at the start of the area; the rest of the area is zero.

use super::crc32c::Crc32c;
use super::disk::{DiskIdentity, SECTOR_BYTES};
use super::field::{self, Field};
use super::superblock::ActiveSuperblock;

/// Marker magic: `"RLMARKER"`.
pub const MARKER_MAGIC: [u8; 8] = *b"RLMARKER";

/// Marker format version this crate reads and writes.
pub const MARKER_VERSION: u32 = 1;

/// Size of the marker record (one sector, whatever the block size).
pub const MARKER_BYTES: usize = 512;

/// Smallest marker area; a larger logical block makes it one block.
pub const MARKER_AREA_MIN_BYTES: u32 = 4096;

/// A magic that differs from [`MARKER_MAGIC`] in at most this many bytes is
/// a damaged marker, not "no marker": a flipped byte in the magic of a
/// `Live` marker must not pass for a disk that was never fronted.
const NEAR_MAGIC_BYTES: usize = 2;

const fn f(name: &'static str, offset: usize, size: usize) -> Field {
    Field { name, offset, size }
}

/// Marker record fields, one constant each, in on-disk order.
pub mod fields {
    use super::f;
    use super::Field;

    /// `"RLMARKER"`.
    pub const MAGIC: Field = f("magic", 0, 8);
    /// [`super::MARKER_VERSION`].
    pub const VERSION: Field = f("version", 8, 4);
    /// 1 = live, 2 = clean.
    pub const STATE: Field = f("state", 12, 4);
    /// The region format epoch the state refers to.
    pub const EPOCH: Field = f("epoch", 16, 8);
    /// Physical address of that region.
    pub const REGION_PHYS: Field = f("region_phys", 24, 8);
    /// Size of that region.
    pub const REGION_BYTES: Field = f("region_bytes", 32, 8);
    /// +1 per marker write.
    pub const GENERATION: Field = f("generation", 40, 8);
    /// When the marker was written, Unix seconds (0 unknown).
    pub const WRITTEN_AT: Field = f("written_at_unix_secs", 48, 8);
    /// Who wrote it.
    pub const WRITER: Field = f("writer", 56, 4);
    /// Zero; room for later fields.
    pub const RESERVED: Field = f("reserved", 60, 448);
    /// CRC-32C of bytes 0..508.
    pub const CHECKSUM: Field = f("crc", 508, 4);

    /// All fields in order; they tile the 512-byte record exactly.
    pub const ALL: &[Field] = &[
        MAGIC,
        VERSION,
        STATE,
        EPOCH,
        REGION_PHYS,
        REGION_BYTES,
        GENERATION,
        WRITTEN_AT,
        WRITER,
        RESERVED,
        CHECKSUM,
    ];
}

/// Where the marker lives: the last `max(4096, block_bytes)` bytes of the
/// disk's whole logical blocks. Everything before it is the data area, the
/// only part `/dev/rapilog0` exposes and records may target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkerArea {
    /// First sector (512-byte units) of the area; block-aligned.
    pub first_sector: u64,
    /// Size of the area in 512-byte sectors; whole blocks.
    pub sectors: u64,
}

impl MarkerArea {
    /// Size of the data area in 512-byte sectors: the sectors before the
    /// marker area.
    pub const fn data_sectors(&self) -> u64 {
        self.first_sector
    }

    /// Byte offset of the area (and of the marker record) on the disk.
    /// (Saturating: an identity read from a damaged region must not make
    /// the kernel's overflow checks panic.)
    pub const fn byte_offset(&self) -> u64 {
        self.first_sector.saturating_mul(SECTOR_BYTES as u64)
    }

    /// Size of the area in bytes (a multiple of the logical block size).
    pub const fn bytes(&self) -> u64 {
        self.sectors.saturating_mul(SECTOR_BYTES as u64)
    }
}

/// The marker area of `disk`, or `None` when the disk identity is invalid
/// or the disk is smaller than twice the area (no room for a data area of
/// at least the marker's size).
///
/// `disk.sectors` is the whole disk. A size that is not a whole number of
/// logical blocks (an image file) leaves its last partial block unused.
pub fn marker_area(disk: &DiskIdentity) -> Option<MarkerArea> {
    if !disk.is_valid() {
        return None;
    }
    let area = u64::from(disk.block_bytes.max(MARKER_AREA_MIN_BYTES) / SECTOR_BYTES);
    let block = disk.block_sectors();
    let end = disk.sectors - disk.sectors % block;
    if end < area.checked_mul(2)? {
        return None;
    }
    Some(MarkerArea {
        first_sector: end - area,
        sectors: area,
    })
}

/// What the marker says about the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerState {
    /// A region may hold acknowledged records that are not on this disk.
    Live,
    /// Everything acknowledged is on the disk.
    Clean,
}

impl MarkerState {
    /// On-disk code (also the status block's `marker_state`).
    pub const fn code(self) -> u32 {
        match self {
            Self::Live => 1,
            Self::Clean => 2,
        }
    }

    /// Decodes an on-disk code; `None` for codes this version does not know.
    pub const fn from_code(code: u32) -> Option<Self> {
        match code {
            1 => Some(Self::Live),
            2 => Some(Self::Clean),
            _ => None,
        }
    }
}

impl core::fmt::Display for MarkerState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Live => "live",
            Self::Clean => "clean",
        })
    }
}

/// Who wrote the marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerWriter {
    /// The module at load, before the device went live (`Live`).
    Module,
    /// The module after a clean drain: unload, orderly shutdown, before
    /// hibernation (`Clean`).
    ModuleDrain,
    /// `rapilog-rescue` after a replay (`Clean`).
    Rescue,
    /// `rapilogctl`: after an offline replay, or `marker --clear` (`Clean`).
    Tool,
    /// The module went live after an administrator accepted a possible
    /// loss (`accept_loss=1`; `Live`).
    AcceptedLoss,
}

impl MarkerWriter {
    /// On-disk code.
    pub const fn code(self) -> u32 {
        match self {
            Self::Module => 1,
            Self::ModuleDrain => 2,
            Self::Rescue => 3,
            Self::Tool => 4,
            Self::AcceptedLoss => 5,
        }
    }

    /// Decodes an on-disk code; `None` for codes this version does not know.
    pub const fn from_code(code: u32) -> Option<Self> {
        match code {
            1 => Some(Self::Module),
            2 => Some(Self::ModuleDrain),
            3 => Some(Self::Rescue),
            4 => Some(Self::Tool),
            5 => Some(Self::AcceptedLoss),
            _ => None,
        }
    }

    /// Short name for tables and JSON: `module`, `module-drain`, `rescue`,
    /// `tool`, `accepted-loss`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Module => "module",
            Self::ModuleDrain => "module-drain",
            Self::Rescue => "rescue",
            Self::Tool => "tool",
            Self::AcceptedLoss => "accepted-loss",
        }
    }
}

impl core::fmt::Display for MarkerWriter {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Module => "the module at load",
            Self::ModuleDrain => "the module after a clean drain",
            Self::Rescue => "rapilog-rescue after a replay",
            Self::Tool => "rapilogctl",
            Self::AcceptedLoss => "the module at load, after a possible loss was accepted",
        })
    }
}

/// A decoded marker record (magic, version and checksum are implied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskMarker {
    /// Live or clean.
    pub state: MarkerState,
    /// The region format epoch `Live` refers to; for `Clean`, the last one.
    pub epoch: u64,
    /// Physical address of that region.
    pub region_phys: u64,
    /// Size of that region.
    pub region_bytes: u64,
    /// +1 per marker write (wrapping).
    pub generation: u64,
    /// When it was written, Unix seconds (0 unknown).
    pub written_at_unix_secs: u64,
    /// Who wrote it.
    pub writer: MarkerWriter,
}

/// Why a marker record that carries the magic is not usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerError {
    /// Fewer than [`MARKER_BYTES`] bytes were given.
    Short {
        /// Bytes given.
        len: usize,
    },
    /// The magic is one or two bytes off: a damaged marker.
    DamagedMagic,
    /// A marker version this code does not know.
    UnsupportedVersion(u32),
    /// Checksum mismatch: corrupted.
    BadChecksum,
    /// Checksum fine but a field holds an unknown code (named).
    BadField(&'static str),
}

impl core::fmt::Display for MarkerError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Short { len } => write!(
                f,
                "only {len} bytes given, a marker record is {MARKER_BYTES}"
            ),
            Self::DamagedMagic => f.write_str("damaged magic (almost \"RLMARKER\")"),
            Self::UnsupportedVersion(v) => write!(
                f,
                "marker version {v}, this code knows version {MARKER_VERSION}"
            ),
            Self::BadChecksum => f.write_str("checksum mismatch (corrupted)"),
            Self::BadField(name) => write!(f, "unknown code in field {name}"),
        }
    }
}

impl core::error::Error for MarkerError {}

impl DiskMarker {
    /// The generation of the marker written after `previous` (1 for the
    /// first marker of a disk).
    pub fn next_generation(previous: Option<&DiskMarker>) -> u64 {
        previous.map_or(1, |p| p.generation.wrapping_add(1))
    }

    /// The `Clean` marker that follows this one: same epoch and region,
    /// generation + 1, written by `writer` at `now_unix_secs`.
    pub fn cleaned(&self, writer: MarkerWriter, now_unix_secs: u64) -> DiskMarker {
        DiskMarker {
            state: MarkerState::Clean,
            generation: self.generation.wrapping_add(1),
            written_at_unix_secs: now_unix_secs,
            writer,
            ..*self
        }
    }

    /// Encodes the 512-byte record into `out`, checksum included.
    pub fn encode<C: Crc32c>(&self, out: &mut [u8; MARKER_BYTES], crc: C) {
        use fields::*;
        out.fill(0);
        field::write_bytes(out, MAGIC, &MARKER_MAGIC);
        field::write_u32(out, VERSION, MARKER_VERSION);
        field::write_u32(out, STATE, self.state.code());
        field::write_u64(out, EPOCH, self.epoch);
        field::write_u64(out, REGION_PHYS, self.region_phys);
        field::write_u64(out, REGION_BYTES, self.region_bytes);
        field::write_u64(out, GENERATION, self.generation);
        field::write_u64(out, WRITTEN_AT, self.written_at_unix_secs);
        field::write_u32(out, WRITER, self.writer.code());
        let checksum = crc.checksum(out.get(..CHECKSUM.offset).unwrap_or(&[]));
        field::write_u32(out, CHECKSUM, checksum);
    }

    /// Encodes the whole marker area into `out` (its size is
    /// [`MarkerArea::bytes`]): the record, then zeros. An `out` shorter than
    /// the record is only zeroed.
    pub fn encode_area<C: Crc32c>(&self, out: &mut [u8], crc: C) {
        out.fill(0);
        if let Some(record) = out
            .get_mut(..MARKER_BYTES)
            .and_then(|b| <&mut [u8; MARKER_BYTES]>::try_from(b).ok())
        {
            self.encode(record, crc);
        }
    }

    /// Decodes the first [`MARKER_BYTES`] of `bytes` (the start of the
    /// marker area).
    ///
    /// `Ok(None)`: no marker (no magic, e.g. all zero: a disk never fronted
    /// by a marker-writing module). `Err`: the magic is there (or nearly)
    /// but the record is damaged or of an unknown version, so what the disk
    /// went through cannot be told.
    pub fn decode<C: Crc32c>(bytes: &[u8], crc: C) -> Result<Option<DiskMarker>, MarkerError> {
        use fields::*;
        let Some(record) = bytes.get(..MARKER_BYTES) else {
            return Err(MarkerError::Short { len: bytes.len() });
        };
        let magic = field::read_bytes::<8>(record, MAGIC);
        if magic != MARKER_MAGIC {
            let differing = magic
                .iter()
                .zip(MARKER_MAGIC.iter())
                .filter(|(a, b)| a != b)
                .count();
            return if differing <= NEAR_MAGIC_BYTES {
                Err(MarkerError::DamagedMagic)
            } else {
                Ok(None)
            };
        }
        // Version before checksum: another version may checksum differently.
        let version = field::read_u32(record, VERSION);
        if version != MARKER_VERSION {
            return Err(MarkerError::UnsupportedVersion(version));
        }
        let covered = record.get(..CHECKSUM.offset).unwrap_or(&[]);
        if crc.checksum(covered) != field::read_u32(record, CHECKSUM) {
            return Err(MarkerError::BadChecksum);
        }
        let state = MarkerState::from_code(field::read_u32(record, STATE))
            .ok_or(MarkerError::BadField(STATE.name))?;
        let writer = MarkerWriter::from_code(field::read_u32(record, WRITER))
            .ok_or(MarkerError::BadField(WRITER.name))?;
        Ok(Some(DiskMarker {
            state,
            epoch: field::read_u64(record, EPOCH),
            region_phys: field::read_u64(record, REGION_PHYS),
            region_bytes: field::read_u64(record, REGION_BYTES),
            generation: field::read_u64(record, GENERATION),
            written_at_unix_secs: field::read_u64(record, WRITTEN_AT),
            writer,
        }))
    }
}

/// `live marker, generation 3: region epoch 0x..., 67108864 bytes at
/// 0x60000000, written by the module at load (Unix time 1795452425)`.
impl core::fmt::Display for DiskMarker {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} marker, generation {}: region epoch {:#x}, {} bytes at {:#x}, written by {} \
             (Unix time {})",
            self.state,
            self.generation,
            self.epoch,
            self.region_bytes,
            self.region_phys,
            self.writer,
            self.written_at_unix_secs
        )
    }
}

/// What the region holds for the disk whose marker is being checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionEvidence {
    /// No records of this disk: no valid superblock (wiped, never
    /// formatted, damaged), or the region of another disk.
    NoRegionRecords,
    /// A valid superblock of this disk, with this epoch.
    Ours {
        /// The region's format epoch.
        epoch: u64,
    },
}

impl RegionEvidence {
    /// What `region` (from its first byte) holds for `disk`: `Ours` when its
    /// current superblock is valid and names exactly this disk (id, size,
    /// block size: what [`super::plan_replay`] requires).
    pub fn of_region<C: Crc32c>(region: &[u8], disk: &DiskIdentity, crc: C) -> Self {
        match ActiveSuperblock::load(region, crc) {
            Ok(active) if active.superblock.disk == *disk => Self::Ours {
                epoch: active.superblock.epoch,
            },
            _ => Self::NoRegionRecords,
        }
    }
}

/// Why acknowledged writes may have been lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossReason {
    /// The marker is `Live` for `epoch`, and the region holds no records of
    /// this disk: wiped at boot, a cold boot, or another machine.
    LiveRegionMissing {
        /// The epoch the marker names.
        epoch: u64,
    },
    /// The marker is `Live` for one epoch, the region holds another.
    LiveEpochMismatch {
        /// The epoch the marker names.
        marker_epoch: u64,
        /// The epoch of the region's superblock.
        region_epoch: u64,
    },
    /// The marker carries the magic but is damaged or of an unknown version.
    MarkerDamaged,
}

/// One sentence, for logs and reports.
impl core::fmt::Display for LossReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::LiveRegionMissing { epoch } => write!(
                f,
                "the log disk's marker says it was fronted by region epoch {epoch:#x} that was \
                 neither drained nor replayed, and the region holds no records of this disk \
                 (memory wiped at boot, a cold boot, or another machine): acknowledged writes \
                 may have been lost"
            ),
            Self::LiveEpochMismatch {
                marker_epoch,
                region_epoch,
            } => write!(
                f,
                "the log disk's marker says it was fronted by region epoch {marker_epoch:#x} \
                 that was neither drained nor replayed, but the region holds epoch \
                 {region_epoch:#x} (formatted again in between): acknowledged writes of epoch \
                 {marker_epoch:#x} may have been lost"
            ),
            Self::MarkerDamaged => f.write_str(
                "the log disk's marker is damaged or of an unknown version, so whether a region \
                 that was neither drained nor replayed fronted this disk cannot be told: \
                 acknowledged writes may have been lost",
            ),
        }
    }
}

impl LossReason {
    /// The reason in at most 128 bytes, for the status block's
    /// `loss_reason` (`control::Text<128>`).
    pub const fn brief(self) -> LossBrief {
        LossBrief(self)
    }
}

/// [`LossReason`] in at most 128 bytes (see [`LossReason::brief`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LossBrief(pub LossReason);

impl core::fmt::Display for LossBrief {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            LossReason::LiveRegionMissing { epoch } => write!(
                f,
                "marker live for epoch {epoch:#x}; region holds no records of this disk \
                 (wiped, cold boot or other machine)"
            ),
            LossReason::LiveEpochMismatch {
                marker_epoch,
                region_epoch,
            } => write!(
                f,
                "marker live for epoch {marker_epoch:#x}, region holds epoch {region_epoch:#x}"
            ),
            LossReason::MarkerDamaged => {
                f.write_str("log disk marker damaged or of an unknown version")
            }
        }
    }
}

/// The load decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerVerdict {
    /// Nothing was lost that the region does not hold: replay as usual.
    Proceed,
    /// Acknowledged writes may have been lost; do not go on silently.
    PossibleLoss {
        /// Why.
        reason: LossReason,
    },
}

impl core::fmt::Display for MarkerVerdict {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Proceed => f.write_str("proceed"),
            Self::PossibleLoss { reason } => write!(f, "possible loss: {reason}"),
        }
    }
}

/// The load decision, shared by the module and the replayers: compares the
/// disk's marker (as [`DiskMarker::decode`] returned it) with what the
/// region holds for the disk.
///
/// | marker | region has no records of the disk | region of the disk, epoch E |
/// |---|---|---|
/// | none | proceed | proceed |
/// | clean | proceed | proceed |
/// | live, epoch E | possible loss: region missing | proceed |
/// | live, epoch M != E | possible loss: region missing | possible loss: epoch mismatch |
/// | damaged, unknown version | possible loss: damaged | possible loss: damaged |
pub fn check_marker(
    marker: Result<Option<DiskMarker>, MarkerError>,
    region: RegionEvidence,
) -> MarkerVerdict {
    let reason = match (marker, region) {
        (Err(_), _) => LossReason::MarkerDamaged,
        (Ok(None), _) => return MarkerVerdict::Proceed,
        (Ok(Some(m)), _) if m.state == MarkerState::Clean => return MarkerVerdict::Proceed,
        (Ok(Some(m)), RegionEvidence::NoRegionRecords) => {
            LossReason::LiveRegionMissing { epoch: m.epoch }
        }
        (Ok(Some(m)), RegionEvidence::Ours { epoch }) if m.epoch == epoch => {
            return MarkerVerdict::Proceed
        }
        (Ok(Some(m)), RegionEvidence::Ours { epoch }) => LossReason::LiveEpochMismatch {
            marker_epoch: m.epoch,
            region_epoch: epoch,
        },
    };
    MarkerVerdict::PossibleLoss { reason }
}

#[cfg(test)]
mod tests {
    use super::super::crc32c::SoftwareCrc32c;
    use super::super::disk::DiskId;
    use super::*;

    fn sample() -> DiskMarker {
        DiskMarker {
            state: MarkerState::Live,
            epoch: 0x9BB1_D511_32C5_F77D,
            region_phys: 0x6000_0000,
            region_bytes: 64 << 20,
            generation: 7,
            written_at_unix_secs: 1_795_452_425,
            writer: MarkerWriter::Module,
        }
    }

    fn encoded(m: &DiskMarker) -> [u8; MARKER_BYTES] {
        let mut out = [0xAAu8; MARKER_BYTES];
        m.encode(&mut out, SoftwareCrc32c);
        out
    }

    fn reseal(bytes: &mut [u8; MARKER_BYTES]) {
        let crc = SoftwareCrc32c.checksum(&bytes[..508]);
        bytes[508..].copy_from_slice(&crc.to_le_bytes());
    }

    fn identity(sectors: u64, block_bytes: u32) -> DiskIdentity {
        DiskIdentity {
            id: DiskId::new(b"serial:rl-log").unwrap(),
            sectors,
            block_bytes,
        }
    }

    #[test]
    fn fields_tile_the_record() {
        let mut next = 0;
        for field in fields::ALL {
            assert_eq!(field.offset, next, "{}", field.name);
            next = field.offset + field.size;
        }
        assert_eq!(next, MARKER_BYTES);
    }

    #[test]
    fn round_trip_and_layout() {
        let m = sample();
        let bytes = encoded(&m);
        assert_eq!(&bytes[..8], b"RLMARKER");
        assert_eq!(bytes[8..12], 1u32.to_le_bytes());
        assert_eq!(bytes[12..16], 1u32.to_le_bytes());
        assert_eq!(bytes[16..24], m.epoch.to_le_bytes());
        assert_eq!(bytes[56..60], 1u32.to_le_bytes());
        assert!(bytes[60..508].iter().all(|&b| b == 0), "reserved not zero");
        assert_eq!(DiskMarker::decode(&bytes, SoftwareCrc32c), Ok(Some(m)));
        // A longer buffer (the whole area) decodes the same.
        let mut area = [0x55u8; 4096];
        m.encode_area(&mut area, SoftwareCrc32c);
        assert_eq!(area[..MARKER_BYTES], bytes);
        assert!(
            area[MARKER_BYTES..].iter().all(|&b| b == 0),
            "area not zeroed"
        );
        assert_eq!(DiskMarker::decode(&area, SoftwareCrc32c), Ok(Some(m)));
    }

    #[test]
    fn every_state_and_writer_round_trips() {
        let states = [MarkerState::Live, MarkerState::Clean];
        let writers = [
            MarkerWriter::Module,
            MarkerWriter::ModuleDrain,
            MarkerWriter::Rescue,
            MarkerWriter::Tool,
            MarkerWriter::AcceptedLoss,
        ];
        for (code, writer) in (1..).zip(writers) {
            assert_eq!(writer.code(), code);
            assert_eq!(MarkerWriter::from_code(code), Some(writer));
            for state in states {
                let m = DiskMarker {
                    state,
                    writer,
                    ..sample()
                };
                assert_eq!(
                    DiskMarker::decode(&encoded(&m), SoftwareCrc32c),
                    Ok(Some(m))
                );
            }
        }
        assert_eq!(MarkerWriter::from_code(0), None);
        assert_eq!(MarkerWriter::from_code(6), None);
        assert_eq!(MarkerState::from_code(0), None);
        assert_eq!(MarkerState::from_code(3), None);
        assert_eq!(
            (MarkerState::Live.code(), MarkerState::Clean.code()),
            (1, 2)
        );
    }

    #[test]
    fn no_marker_damaged_marker_and_unknown_version() {
        let decode = |b: &[u8]| DiskMarker::decode(b, SoftwareCrc32c);
        assert_eq!(decode(&[0u8; MARKER_BYTES]), Ok(None));
        assert_eq!(decode(&[0xFFu8; MARKER_BYTES]), Ok(None));
        let good = encoded(&sample());
        assert_eq!(decode(&good[..511]), Err(MarkerError::Short { len: 511 }));
        // Three bytes of the magic off: no marker; one or two: damaged.
        let mut b = good;
        b[0] = b'X';
        assert_eq!(decode(&b), Err(MarkerError::DamagedMagic));
        b[7] = b'X';
        assert_eq!(decode(&b), Err(MarkerError::DamagedMagic));
        b[3] = b'X';
        assert_eq!(decode(&b), Ok(None));
        let mut b = good;
        b[8] = 2;
        assert_eq!(decode(&b), Err(MarkerError::UnsupportedVersion(2)));
        // Every byte after the version is covered by the checksum.
        for i in 12..MARKER_BYTES {
            let mut torn = good;
            torn[i] ^= 0x01;
            assert_eq!(decode(&torn), Err(MarkerError::BadChecksum), "byte {i}");
        }
        for (field, value) in [(fields::STATE, 3u32), (fields::WRITER, 0)] {
            let mut b = good;
            field::write_u32(&mut b, field, value);
            reseal(&mut b);
            assert_eq!(decode(&b), Err(MarkerError::BadField(field.name)));
        }
    }

    #[test]
    fn cleaned_follows_the_live_marker() {
        let live = sample();
        let clean = live.cleaned(MarkerWriter::Rescue, 42);
        assert_eq!(clean.state, MarkerState::Clean);
        assert_eq!(clean.generation, live.generation + 1);
        assert_eq!(
            (clean.epoch, clean.region_phys, clean.region_bytes),
            (live.epoch, live.region_phys, live.region_bytes)
        );
        assert_eq!(
            (clean.writer, clean.written_at_unix_secs),
            (MarkerWriter::Rescue, 42)
        );
        let last = DiskMarker {
            generation: u64::MAX,
            ..live
        };
        assert_eq!(last.cleaned(MarkerWriter::Tool, 0).generation, 0);
        assert_eq!(DiskMarker::next_generation(None), 1);
        assert_eq!(DiskMarker::next_generation(Some(&live)), 8);
    }

    #[test]
    fn marker_area_of_each_block_size() {
        // (sectors, block_bytes) -> Some((first_sector, sectors))
        type Case = (u64, u32, Option<(u64, u64)>);
        let cases: [Case; 10] = [
            (32768, 512, Some((32760, 8))),
            (32768, 4096, Some((32760, 8))),
            (32768, 1024, Some((32760, 8))),
            (32768, 65536, Some((32640, 128))),
            (32768, 8192, Some((32752, 16))),
            // Exactly twice the area: the smallest disk with a marker.
            (16, 512, Some((8, 8))),
            (15, 512, None),
            (256, 65536, Some((128, 128))),
            (255, 65536, None),
            // A partial last block is left out; the area stays aligned.
            (32771, 4096, Some((32760, 8))),
        ];
        for (sectors, block_bytes, expected) in cases {
            let area = marker_area(&identity(sectors, block_bytes));
            assert_eq!(
                area.map(|a| (a.first_sector, a.sectors)),
                expected,
                "{sectors} sectors of {block_bytes}"
            );
            if let Some(a) = area {
                assert_eq!(a.data_sectors(), a.first_sector);
                assert_eq!(a.first_sector % u64::from(block_bytes / 512), 0);
                assert_eq!(a.bytes() % u64::from(block_bytes), 0);
                assert_eq!(a.byte_offset(), a.first_sector * 512);
                assert!(a.bytes() >= 4096);
            }
        }
        assert_eq!(marker_area(&identity(32768, 1000)), None);
        assert_eq!(marker_area(&identity(0, 512)), None);
        let huge = marker_area(&identity(u64::MAX, 512)).unwrap();
        assert_eq!((huge.sectors, huge.bytes()), (8, 4096));
        assert_eq!(huge.byte_offset(), u64::MAX, "saturates, no overflow");
    }

    fn live(epoch: u64) -> Result<Option<DiskMarker>, MarkerError> {
        Ok(Some(DiskMarker { epoch, ..sample() }))
    }

    fn clean(epoch: u64) -> Result<Option<DiskMarker>, MarkerError> {
        Ok(Some(DiskMarker {
            state: MarkerState::Clean,
            epoch,
            ..sample()
        }))
    }

    #[test]
    fn every_cell_of_the_load_decision() {
        use LossReason::*;
        use MarkerVerdict::*;
        let none = RegionEvidence::NoRegionRecords;
        let ours = |epoch| RegionEvidence::Ours { epoch };
        let loss = |reason| PossibleLoss { reason };
        let damaged = [
            MarkerError::BadChecksum,
            MarkerError::DamagedMagic,
            MarkerError::UnsupportedVersion(2),
            MarkerError::BadField("state"),
            MarkerError::Short { len: 0 },
        ];
        let mut cases = std::vec![
            (Ok(None), none, Proceed),
            (Ok(None), ours(5), Proceed),
            (clean(5), none, Proceed),
            (clean(5), ours(5), Proceed),
            (clean(5), ours(6), Proceed),
            (live(5), none, loss(LiveRegionMissing { epoch: 5 })),
            (live(5), ours(5), Proceed),
            (
                live(5),
                ours(6),
                loss(LiveEpochMismatch {
                    marker_epoch: 5,
                    region_epoch: 6,
                }),
            ),
        ];
        for e in damaged {
            cases.push((Err(e), none, loss(MarkerDamaged)));
            cases.push((Err(e), ours(5), loss(MarkerDamaged)));
        }
        for (marker, region, expected) in cases {
            assert_eq!(
                check_marker(marker, region),
                expected,
                "{marker:?} {region:?}"
            );
        }
    }

    #[test]
    fn reasons_in_words() {
        let missing = LossReason::LiveRegionMissing { epoch: 0xABC };
        let text = missing.to_string();
        assert!(
            text.starts_with(
                "the log disk's marker says it was fronted by region epoch 0xabc that was \
                 neither drained nor replayed, and the region holds no records of this disk \
                 (memory wiped at boot, a cold boot, or another machine)"
            ),
            "{text}"
        );
        assert!(
            text.ends_with("acknowledged writes may have been lost"),
            "{text}"
        );
        let mismatch = LossReason::LiveEpochMismatch {
            marker_epoch: 1,
            region_epoch: 2,
        };
        assert!(mismatch.to_string().contains("region holds epoch 0x2"));
        assert!(LossReason::MarkerDamaged.to_string().contains("damaged"));
        // The brief form fits the status block's 128 bytes at the widest.
        for reason in [
            LossReason::LiveRegionMissing { epoch: u64::MAX },
            LossReason::LiveEpochMismatch {
                marker_epoch: u64::MAX,
                region_epoch: u64::MAX,
            },
            LossReason::MarkerDamaged,
        ] {
            let brief = reason.brief().to_string();
            assert!(brief.len() <= 128, "{} bytes: {brief}", brief.len());
        }
        assert_eq!(
            MarkerVerdict::PossibleLoss { reason: missing }.to_string(),
            std::format!("possible loss: {missing}")
        );
        let shown = sample().to_string();
        assert!(
            shown.starts_with("live marker, generation 7: region epoch 0x9bb1d51132c5f77d"),
            "{shown}"
        );
        assert!(shown.contains("written by the module at load"), "{shown}");
        assert!(MarkerError::UnsupportedVersion(9)
            .to_string()
            .contains("version 9"));
    }
}
