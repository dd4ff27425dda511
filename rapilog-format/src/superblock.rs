// SPDX-License-Identifier: GPL-2.0

//! The superblock: what the region is, which disk it belongs to, and how far
//! the disk is known to be durable.
//!
//! It is kept in two copies ([`SUPERBLOCK_OFFSETS`]), each with a generation
//! number and a CRC-32C. An update always overwrites the copy that is *not*
//! current, with generation + 1; so a crash in the middle of an update tears
//! at most the copy being written, and the other one is still valid. On load,
//! the valid copy with the newer generation wins.
//!
//! Generations compare as serial numbers (RFC 1982 style, modulo 2^64): the
//! two copies are always one update apart, so `a` is newer than `b` when
//! `a - b`, wrapped, is in `1..2^63`. That keeps working when the counter
//! wraps.

use core::ops::Range;

use super::crc32c::Crc32c;
use super::disk::{DiskId, DiskIdentity};
use super::field::{self, Field};
use super::geometry::{Geometry, GeometryError, SUPERBLOCK_BYTES, SUPERBLOCK_OFFSETS};
use super::replay_report::{LastReplay, ReplayReport, Replayer, SkipCounts};

/// Superblock magic: `"RAPILOGS"`.
pub const SUPERBLOCK_MAGIC: [u8; 8] = *b"RAPILOGS";

/// Format version this crate reads and writes.
pub const FORMAT_VERSION: u32 = 1;

const fn f(name: &'static str, offset: usize, size: usize) -> Field {
    Field { name, offset, size }
}

/// Superblock fields, one constant each, in on-region order.
pub mod fields {
    use super::f;
    use super::Field;

    /// `"RAPILOGS"`.
    pub const MAGIC: Field = f("magic", 0, 8);
    /// [`super::FORMAT_VERSION`].
    pub const VERSION: Field = f("version", 8, 4);
    /// 1 = clean, 2 = dirty.
    pub const STATE: Field = f("state", 12, 4);
    /// Update counter, compared as a serial number.
    pub const GENERATION: Field = f("generation", 16, 8);
    /// Changes on every format.
    pub const EPOCH: Field = f("epoch", 24, 8);
    /// Oldest sequence number not known durable on the disk.
    pub const DURABLE_TAIL: Field = f("durable_tail", 32, 8);
    /// Next sequence number to be reserved, when this copy was written.
    pub const HEAD_HINT: Field = f("head_hint", 40, 8);
    /// Size of the region.
    pub const REGION_BYTES: Field = f("region_bytes", 48, 8);
    /// Offset of the descriptor table.
    pub const DESCRIPTOR_OFFSET: Field = f("descriptor_offset", 56, 8);
    /// Number of descriptor slots.
    pub const DESCRIPTOR_SLOTS: Field = f("descriptor_slots", 64, 4);
    /// Largest record payload.
    pub const MAX_RECORD_BYTES: Field = f("max_record_bytes", 68, 4);
    /// Offset of the data ring.
    pub const RING_OFFSET: Field = f("ring_offset", 72, 8);
    /// Size of the data ring.
    pub const RING_BYTES: Field = f("ring_bytes", 80, 8);
    /// Opaque disk id, zero-padded.
    pub const DISK_ID: Field = f("disk_id", 88, 64);
    /// Disk size in 512-byte sectors.
    pub const DISK_SECTORS: Field = f("disk_sectors", 152, 8);
    /// Disk logical block size.
    pub const DISK_BLOCK_BYTES: Field = f("disk_block_bytes", 160, 4);
    /// Who ran the last replay (0 never, 1 module, 2 rescue, 3 tool).
    pub const REPLAY_BY: Field = f("replay_by", 164, 4);
    /// Durable tail the last replay started from.
    pub const REPLAY_FROM_SEQ: Field = f("replay_from_seq", 168, 8);
    /// End of the last replay, Unix seconds.
    pub const REPLAY_FINISHED_AT: Field = f("replay_finished_at", 176, 8);
    /// Duration of the last replay, microseconds.
    pub const REPLAY_DURATION_US: Field = f("replay_duration_us", 184, 8);
    /// Payload bytes the last replay applied.
    pub const REPLAY_BYTES: Field = f("replay_bytes", 192, 8);
    /// Records the last replay applied.
    pub const REPLAY_APPLIED: Field = f("replay_applied", 200, 4);
    /// Skipped: empty slot.
    pub const REPLAY_SKIP_EMPTY: Field = f("replay_skip_empty", 204, 4);
    /// Skipped: bad descriptor checksum.
    pub const REPLAY_SKIP_BAD_DESCRIPTOR: Field = f("replay_skip_bad_descriptor", 208, 4);
    /// Skipped: malformed descriptor.
    pub const REPLAY_SKIP_MALFORMED: Field = f("replay_skip_malformed", 212, 4);
    /// Skipped: wrong epoch.
    pub const REPLAY_SKIP_WRONG_EPOCH: Field = f("replay_skip_wrong_epoch", 216, 4);
    /// Skipped: stale (already durable).
    pub const REPLAY_SKIP_STALE: Field = f("replay_skip_stale", 220, 4);
    /// Skipped: bad payload checksum.
    pub const REPLAY_SKIP_BAD_PAYLOAD: Field = f("replay_skip_bad_payload", 224, 4);
    /// Skipped: beyond the end of the disk.
    pub const REPLAY_SKIP_BEYOND_DISK: Field = f("replay_skip_beyond_disk", 228, 4);
    /// Zero; room for later versions.
    pub const RESERVED: Field = f("reserved", 232, 276);
    /// CRC-32C of bytes 0..508.
    pub const CHECKSUM: Field = f("checksum", 508, 4);

    /// All fields in order; they tile the 512-byte superblock exactly.
    pub const ALL: &[Field] = &[
        MAGIC,
        VERSION,
        STATE,
        GENERATION,
        EPOCH,
        DURABLE_TAIL,
        HEAD_HINT,
        REGION_BYTES,
        DESCRIPTOR_OFFSET,
        DESCRIPTOR_SLOTS,
        MAX_RECORD_BYTES,
        RING_OFFSET,
        RING_BYTES,
        DISK_ID,
        DISK_SECTORS,
        DISK_BLOCK_BYTES,
        REPLAY_BY,
        REPLAY_FROM_SEQ,
        REPLAY_FINISHED_AT,
        REPLAY_DURATION_US,
        REPLAY_BYTES,
        REPLAY_APPLIED,
        REPLAY_SKIP_EMPTY,
        REPLAY_SKIP_BAD_DESCRIPTOR,
        REPLAY_SKIP_MALFORMED,
        REPLAY_SKIP_WRONG_EPOCH,
        REPLAY_SKIP_STALE,
        REPLAY_SKIP_BAD_PAYLOAD,
        REPLAY_SKIP_BEYOND_DISK,
        RESERVED,
        CHECKSUM,
    ];
}

/// Whether records may be live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionState {
    /// Nothing live: formatted, or drained and closed, or replayed. The
    /// replayer does not rely on it (the durable tail already says what is
    /// live); it is for operators and for a fast "nothing to do" check.
    Clean,
    /// A writer has (or had, at the crash) the region open.
    Dirty,
}

impl RegionState {
    /// On-region code.
    pub const fn code(self) -> u32 {
        match self {
            Self::Clean => 1,
            Self::Dirty => 2,
        }
    }

    /// Decodes an on-region code.
    pub const fn from_code(code: u32) -> Option<Self> {
        match code {
            1 => Some(Self::Clean),
            2 => Some(Self::Dirty),
            _ => None,
        }
    }
}

/// Decoded superblock (magic, version and checksum are implied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Superblock {
    /// Update counter, see the module docs.
    pub generation: u64,
    /// Changes on every format. Descriptors of other epochs are never applied.
    pub epoch: u64,
    /// Clean or dirty.
    pub state: RegionState,
    /// Oldest sequence number not known to be durable on the disk. Records
    /// below it are on the disk; their slots and ring space may be reused.
    pub durable_tail: u64,
    /// The writer's next sequence number when this copy was written; for
    /// operators only (records reserved later are not counted in it).
    pub head_hint: u64,
    /// Region layout.
    pub geometry: Geometry,
    /// The disk the records belong to.
    pub disk: DiskIdentity,
    /// The last replay.
    pub last_replay: LastReplay,
}

/// Why one superblock copy is not usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuperblockError {
    /// Not a rapilog superblock (or never written, or zeroed).
    BadMagic,
    /// A format version this crate does not know.
    UnsupportedVersion(u32),
    /// Checksum mismatch: torn by a crash mid-update, or corrupted.
    BadChecksum,
    /// Checksum fine but a field holds an impossible value (named).
    BadField(&'static str),
    /// Checksum fine but the geometry breaks a layout rule.
    BadGeometry(GeometryError),
}

impl core::fmt::Display for SuperblockError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BadMagic => f.write_str("bad magic"),
            Self::UnsupportedVersion(v) => write!(f, "unsupported format version {v}"),
            Self::BadChecksum => f.write_str("checksum mismatch (torn or corrupted)"),
            Self::BadField(name) => write!(f, "impossible value in field {name}"),
            Self::BadGeometry(e) => write!(f, "bad geometry: {e}"),
        }
    }
}

impl core::error::Error for SuperblockError {}

/// `a` is newer than `b` as serial numbers modulo 2^64.
pub fn generation_is_newer(a: u64, b: u64) -> bool {
    // The `as` reinterprets the wrapped difference as signed; no overflow.
    (a.wrapping_sub(b) as i64) > 0
}

impl Superblock {
    /// The window of sequence numbers that may still hold live records:
    /// `durable_tail .. durable_tail + descriptor_slots`. Every record at or
    /// past the tail was reserved while its slot's previous record was below
    /// the tail, so no live record lies outside it.
    pub fn live_window(&self) -> Range<u64> {
        let end = self
            .durable_tail
            .saturating_add(u64::from(self.geometry.descriptor_slots));
        self.durable_tail..end
    }

    /// Encodes into `out`, checksum included.
    pub fn encode<C: Crc32c>(&self, out: &mut [u8; SUPERBLOCK_BYTES], crc: C) {
        use fields::*;
        let g = &self.geometry;
        let r = &self.last_replay;
        let s = &r.report.skipped;
        out.fill(0);
        field::write_bytes(out, MAGIC, &SUPERBLOCK_MAGIC);
        field::write_u32(out, VERSION, FORMAT_VERSION);
        field::write_u32(out, STATE, self.state.code());
        field::write_u64(out, GENERATION, self.generation);
        field::write_u64(out, EPOCH, self.epoch);
        field::write_u64(out, DURABLE_TAIL, self.durable_tail);
        field::write_u64(out, HEAD_HINT, self.head_hint);
        field::write_u64(out, REGION_BYTES, g.region_bytes);
        field::write_u64(out, DESCRIPTOR_OFFSET, g.descriptor_offset);
        field::write_u32(out, DESCRIPTOR_SLOTS, g.descriptor_slots);
        field::write_u32(out, MAX_RECORD_BYTES, g.max_record_bytes);
        field::write_u64(out, RING_OFFSET, g.ring_offset);
        field::write_u64(out, RING_BYTES, g.ring_bytes);
        field::write_bytes(out, DISK_ID, self.disk.id.as_field());
        field::write_u64(out, DISK_SECTORS, self.disk.sectors);
        field::write_u32(out, DISK_BLOCK_BYTES, self.disk.block_bytes);
        field::write_u32(out, REPLAY_BY, r.replayer.code());
        field::write_u64(out, REPLAY_FROM_SEQ, r.from_seq);
        field::write_u64(out, REPLAY_FINISHED_AT, r.finished_at_unix_secs);
        field::write_u64(out, REPLAY_DURATION_US, r.duration_us);
        field::write_u64(out, REPLAY_BYTES, r.report.bytes_applied);
        field::write_u32(out, REPLAY_APPLIED, r.report.records_applied);
        field::write_u32(out, REPLAY_SKIP_EMPTY, s.empty);
        field::write_u32(out, REPLAY_SKIP_BAD_DESCRIPTOR, s.bad_descriptor_checksum);
        field::write_u32(out, REPLAY_SKIP_MALFORMED, s.malformed);
        field::write_u32(out, REPLAY_SKIP_WRONG_EPOCH, s.wrong_epoch);
        field::write_u32(out, REPLAY_SKIP_STALE, s.stale);
        field::write_u32(out, REPLAY_SKIP_BAD_PAYLOAD, s.bad_payload_checksum);
        field::write_u32(out, REPLAY_SKIP_BEYOND_DISK, s.beyond_disk);
        let checksum = crc.checksum(out.get(..CHECKSUM.offset).unwrap_or(&[]));
        field::write_u32(out, CHECKSUM, checksum);
    }

    /// Decodes and validates one copy.
    pub fn decode<C: Crc32c>(
        bytes: &[u8; SUPERBLOCK_BYTES],
        crc: C,
    ) -> Result<Self, SuperblockError> {
        use fields::*;
        if field::read_bytes::<8>(bytes, MAGIC) != SUPERBLOCK_MAGIC {
            return Err(SuperblockError::BadMagic);
        }
        // Version before checksum: another version may checksum differently.
        let version = field::read_u32(bytes, VERSION);
        if version != FORMAT_VERSION {
            return Err(SuperblockError::UnsupportedVersion(version));
        }
        let covered = bytes.get(..CHECKSUM.offset).unwrap_or(&[]);
        if crc.checksum(covered) != field::read_u32(bytes, CHECKSUM) {
            return Err(SuperblockError::BadChecksum);
        }
        let state = RegionState::from_code(field::read_u32(bytes, STATE))
            .ok_or(SuperblockError::BadField(STATE.name))?;
        let replayer = Replayer::from_code(field::read_u32(bytes, REPLAY_BY))
            .ok_or(SuperblockError::BadField(REPLAY_BY.name))?;
        let geometry = Geometry {
            region_bytes: field::read_u64(bytes, REGION_BYTES),
            descriptor_offset: field::read_u64(bytes, DESCRIPTOR_OFFSET),
            descriptor_slots: field::read_u32(bytes, DESCRIPTOR_SLOTS),
            ring_offset: field::read_u64(bytes, RING_OFFSET),
            ring_bytes: field::read_u64(bytes, RING_BYTES),
            max_record_bytes: field::read_u32(bytes, MAX_RECORD_BYTES),
        };
        geometry.validate().map_err(SuperblockError::BadGeometry)?;
        let disk = DiskIdentity {
            id: DiskId::from_field(field::read_bytes(bytes, DISK_ID)),
            sectors: field::read_u64(bytes, DISK_SECTORS),
            block_bytes: field::read_u32(bytes, DISK_BLOCK_BYTES),
        };
        if !disk.is_valid() {
            return Err(SuperblockError::BadField(DISK_BLOCK_BYTES.name));
        }
        let durable_tail = field::read_u64(bytes, DURABLE_TAIL);
        let head_hint = field::read_u64(bytes, HEAD_HINT);
        // The live window must be representable, and the writer never hints
        // a head behind the tail.
        if durable_tail
            .checked_add(u64::from(geometry.descriptor_slots))
            .is_none()
            || head_hint < durable_tail
        {
            return Err(SuperblockError::BadField(DURABLE_TAIL.name));
        }
        Ok(Self {
            generation: field::read_u64(bytes, GENERATION),
            epoch: field::read_u64(bytes, EPOCH),
            state,
            durable_tail,
            head_hint,
            geometry,
            disk,
            last_replay: LastReplay {
                replayer,
                from_seq: field::read_u64(bytes, REPLAY_FROM_SEQ),
                finished_at_unix_secs: field::read_u64(bytes, REPLAY_FINISHED_AT),
                duration_us: field::read_u64(bytes, REPLAY_DURATION_US),
                report: ReplayReport {
                    records_applied: field::read_u32(bytes, REPLAY_APPLIED),
                    bytes_applied: field::read_u64(bytes, REPLAY_BYTES),
                    skipped: SkipCounts {
                        empty: field::read_u32(bytes, REPLAY_SKIP_EMPTY),
                        bad_descriptor_checksum: field::read_u32(bytes, REPLAY_SKIP_BAD_DESCRIPTOR),
                        malformed: field::read_u32(bytes, REPLAY_SKIP_MALFORMED),
                        wrong_epoch: field::read_u32(bytes, REPLAY_SKIP_WRONG_EPOCH),
                        stale: field::read_u32(bytes, REPLAY_SKIP_STALE),
                        bad_payload_checksum: field::read_u32(bytes, REPLAY_SKIP_BAD_PAYLOAD),
                        beyond_disk: field::read_u32(bytes, REPLAY_SKIP_BEYOND_DISK),
                    },
                },
            },
        })
    }
}

/// Which of the two superblock copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuperblockCopy {
    /// The copy at offset 0.
    First,
    /// The copy at offset 512.
    Second,
}

impl SuperblockCopy {
    /// The other copy.
    pub const fn other(self) -> Self {
        match self {
            Self::First => Self::Second,
            Self::Second => Self::First,
        }
    }

    /// Byte range of this copy inside the region.
    pub const fn range(self) -> Range<usize> {
        let start = match self {
            Self::First => SUPERBLOCK_OFFSETS[0],
            Self::Second => SUPERBLOCK_OFFSETS[1],
        };
        start..start + SUPERBLOCK_BYTES
    }
}

/// Why a region's superblock cannot be loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadError {
    /// The region is too small to hold the two superblock copies.
    RegionTooSmall {
        /// Bytes available.
        available: usize,
    },
    /// Neither copy is usable.
    NoValidCopy {
        /// Why the copy at offset 0 is not.
        first: SuperblockError,
        /// Why the copy at offset 512 is not.
        second: SuperblockError,
    },
    /// The superblock describes a region larger than the bytes available.
    RegionTruncated {
        /// Size recorded in the superblock.
        region_bytes: u64,
        /// Bytes available.
        available: usize,
    },
}

impl core::fmt::Display for LoadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::RegionTooSmall { available } => {
                write!(f, "region of {available} bytes cannot hold the superblocks")
            }
            Self::NoValidCopy { first, second } => {
                write!(f, "no valid superblock (copy 0: {first}; copy 1: {second})")
            }
            Self::RegionTruncated {
                region_bytes,
                available,
            } => {
                write!(
                    f,
                    "superblock describes {region_bytes} bytes but only {available} are available"
                )
            }
        }
    }
}

impl core::error::Error for LoadError {}

/// The current superblock and the copy it was read from (or last written to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveSuperblock {
    /// The decoded superblock.
    pub superblock: Superblock,
    /// Where it lives.
    pub copy: SuperblockCopy,
}

impl ActiveSuperblock {
    /// Reads both copies of `region`'s superblock and picks the valid one
    /// with the newer generation (the first copy on a tie). Also checks that
    /// the geometry fits inside `region`.
    pub fn load<C: Crc32c>(region: &[u8], crc: C) -> Result<Self, LoadError> {
        let active = Self::load_copies(region, crc)?;
        let region_bytes = active.superblock.geometry.region_bytes;
        if usize::try_from(region_bytes).map_or(true, |needed| needed > region.len()) {
            return Err(LoadError::RegionTruncated {
                region_bytes,
                available: region.len(),
            });
        }
        Ok(active)
    }

    /// [`ActiveSuperblock::load`] from the start of a region holding at
    /// least both copies, without the check that the geometry fits: for a
    /// reader that has only the copies (the driver's status).
    pub fn load_copies<C: Crc32c>(region: &[u8], crc: C) -> Result<Self, LoadError> {
        let read = |copy: SuperblockCopy| {
            let bytes = region
                .get(copy.range())
                .and_then(|b| <&[u8; SUPERBLOCK_BYTES]>::try_from(b).ok())
                .ok_or(LoadError::RegionTooSmall {
                    available: region.len(),
                })?;
            Ok(Superblock::decode(bytes, &crc))
        };
        let first = read(SuperblockCopy::First)?;
        let second = read(SuperblockCopy::Second)?;
        let active = match (first, second) {
            (Ok(a), Ok(b)) if generation_is_newer(b.generation, a.generation) => Self {
                superblock: b,
                copy: SuperblockCopy::Second,
            },
            (Ok(a), _) => Self {
                superblock: a,
                copy: SuperblockCopy::First,
            },
            (Err(_), Ok(b)) => Self {
                superblock: b,
                copy: SuperblockCopy::Second,
            },
            (Err(first), Err(second)) => return Err(LoadError::NoValidCopy { first, second }),
        };
        Ok(active)
    }

    /// The next update: the same superblock with generation + 1, to be
    /// written to the *other* copy. The caller changes what it needs (tail,
    /// head hint, state, last replay), encodes it into `copy`, and makes the
    /// result its active superblock only once that write is complete.
    pub fn next_update(&self) -> Self {
        Self {
            superblock: Superblock {
                generation: self.superblock.generation.wrapping_add(1),
                ..self.superblock
            },
            copy: self.copy.other(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::crc32c::SoftwareCrc32c;
    use super::*;

    fn sample() -> Superblock {
        Superblock {
            generation: 7,
            epoch: 0xE0E0,
            state: RegionState::Dirty,
            durable_tail: 100,
            head_hint: 120,
            geometry: Geometry {
                region_bytes: 4096,
                descriptor_offset: 1024,
                descriptor_slots: 8,
                ring_offset: 1536,
                ring_bytes: 2048,
                max_record_bytes: 1024,
            },
            disk: DiskIdentity {
                id: DiskId::new(b"serial-1").unwrap(),
                sectors: 1 << 20,
                block_bytes: 512,
            },
            last_replay: LastReplay {
                replayer: Replayer::Rescue,
                from_seq: 50,
                finished_at_unix_secs: 1_700_000_000,
                duration_us: 1234,
                report: ReplayReport {
                    records_applied: 3,
                    bytes_applied: 4096,
                    skipped: SkipCounts {
                        empty: 1,
                        bad_descriptor_checksum: 2,
                        malformed: 3,
                        wrong_epoch: 4,
                        stale: 5,
                        bad_payload_checksum: 6,
                        beyond_disk: 7,
                    },
                },
            },
        }
    }

    fn encoded(sb: &Superblock) -> [u8; SUPERBLOCK_BYTES] {
        let mut out = [0xAAu8; SUPERBLOCK_BYTES];
        sb.encode(&mut out, SoftwareCrc32c);
        out
    }

    /// Re-seals a hand-edited copy so field validation (not the checksum) is tested.
    fn reseal(bytes: &mut [u8; SUPERBLOCK_BYTES]) {
        let crc = SoftwareCrc32c.checksum(&bytes[..508]);
        bytes[508..].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn fields_tile_the_superblock() {
        let mut next = 0;
        for field in fields::ALL {
            assert_eq!(field.offset, next, "{}", field.name);
            next = field.offset + field.size;
        }
        assert_eq!(next, SUPERBLOCK_BYTES);
    }

    #[test]
    fn round_trip() {
        let sb = sample();
        let bytes = encoded(&sb);
        assert_eq!(&bytes[..8], b"RAPILOGS");
        assert!(bytes[232..508].iter().all(|&b| b == 0));
        assert_eq!(Superblock::decode(&bytes, SoftwareCrc32c), Ok(sb));
    }

    #[test]
    fn every_byte_is_covered_by_the_checksum() {
        let bytes = encoded(&sample());
        for i in 12..SUPERBLOCK_BYTES {
            let mut torn = bytes;
            torn[i] ^= 0x01;
            assert_eq!(
                Superblock::decode(&torn, SoftwareCrc32c),
                Err(SuperblockError::BadChecksum),
                "byte {i}"
            );
        }
    }

    #[test]
    fn rejections() {
        let good = encoded(&sample());
        let mut b = good;
        b[0] = b'X';
        assert_eq!(
            Superblock::decode(&b, SoftwareCrc32c),
            Err(SuperblockError::BadMagic)
        );
        let mut b = good;
        b[8] = 2;
        assert_eq!(
            Superblock::decode(&b, SoftwareCrc32c),
            Err(SuperblockError::UnsupportedVersion(2))
        );
        let zeros = [0u8; SUPERBLOCK_BYTES];
        assert_eq!(
            Superblock::decode(&zeros, SoftwareCrc32c),
            Err(SuperblockError::BadMagic)
        );

        let cases: [(Field, u64, SuperblockError); 6] = [
            (fields::STATE, 3, SuperblockError::BadField("state")),
            (fields::REPLAY_BY, 9, SuperblockError::BadField("replay_by")),
            (
                fields::DESCRIPTOR_SLOTS,
                0,
                SuperblockError::BadGeometry(GeometryError::NoSlots),
            ),
            (
                fields::DISK_BLOCK_BYTES,
                1000,
                SuperblockError::BadField("disk_block_bytes"),
            ),
            (
                fields::DURABLE_TAIL,
                u64::MAX - 3,
                SuperblockError::BadField("durable_tail"),
            ),
            (
                fields::HEAD_HINT,
                99,
                SuperblockError::BadField("durable_tail"),
            ),
        ];
        for (field, value, expected) in cases {
            let mut b = good;
            if field.size == 4 {
                field::write_u32(&mut b, field, value as u32);
            } else {
                field::write_u64(&mut b, field, value);
            }
            if field == fields::DURABLE_TAIL {
                field::write_u64(&mut b, fields::HEAD_HINT, u64::MAX);
            }
            reseal(&mut b);
            assert_eq!(
                Superblock::decode(&b, SoftwareCrc32c),
                Err(expected),
                "{}",
                field.name
            );
        }
    }

    #[test]
    fn generation_serial_order() {
        assert!(generation_is_newer(1, 0));
        assert!(!generation_is_newer(0, 1));
        assert!(!generation_is_newer(5, 5));
        assert!(generation_is_newer(0, u64::MAX));
        assert!(!generation_is_newer(u64::MAX, 0));
        assert!(generation_is_newer(3, u64::MAX - 2));
    }

    fn region_with(a: Option<u64>, b: Option<u64>) -> [u8; 4096] {
        let mut region = [0u8; 4096];
        for (copy, generation) in [(SuperblockCopy::First, a), (SuperblockCopy::Second, b)] {
            if let Some(generation) = generation {
                let sb = Superblock {
                    generation,
                    durable_tail: generation,
                    head_hint: generation,
                    ..sample()
                };
                region[copy.range()].copy_from_slice(&encoded(&sb));
            }
        }
        region
    }

    #[test]
    fn newer_valid_copy_wins() {
        let load = |r: &[u8]| {
            ActiveSuperblock::load(r, SoftwareCrc32c).map(|a| (a.copy, a.superblock.generation))
        };
        assert_eq!(
            load(&region_with(Some(4), Some(5))),
            Ok((SuperblockCopy::Second, 5))
        );
        assert_eq!(
            load(&region_with(Some(6), Some(5))),
            Ok((SuperblockCopy::First, 6))
        );
        assert_eq!(
            load(&region_with(Some(5), Some(5))),
            Ok((SuperblockCopy::First, 5))
        );
        // Generation wrap: 0 follows u64::MAX.
        assert_eq!(
            load(&region_with(Some(u64::MAX), Some(0))),
            Ok((SuperblockCopy::Second, 0))
        );
        assert_eq!(
            load(&region_with(Some(0), Some(u64::MAX))),
            Ok((SuperblockCopy::First, 0))
        );
    }

    #[test]
    fn torn_copy_falls_back_to_the_other() {
        for torn_copy in [SuperblockCopy::First, SuperblockCopy::Second] {
            // The copy being written held generation 7; the other holds 8.
            let (before, after) = match torn_copy {
                SuperblockCopy::First => {
                    (region_with(Some(7), Some(8)), region_with(Some(9), Some(8)))
                }
                SuperblockCopy::Second => {
                    (region_with(Some(8), Some(7)), region_with(Some(8), Some(9)))
                }
            };
            // Tear at every byte: a prefix of the new copy over the old one.
            for cut in 0..SUPERBLOCK_BYTES {
                let mut region = before;
                let range = torn_copy.range();
                region[range.start..range.start + cut]
                    .copy_from_slice(&after[range.start..range.start + cut]);
                let active = ActiveSuperblock::load(&region, SoftwareCrc32c).unwrap();
                assert_eq!(active.superblock.generation, 8, "cut {cut}");
                assert_eq!(active.copy, torn_copy.other());
            }
            let active = ActiveSuperblock::load(&after, SoftwareCrc32c).unwrap();
            assert_eq!((active.copy, active.superblock.generation), (torn_copy, 9));
        }
    }

    #[test]
    fn load_errors() {
        assert_eq!(
            ActiveSuperblock::load(&[0u8; 1000], SoftwareCrc32c),
            Err(LoadError::RegionTooSmall { available: 1000 })
        );
        assert_eq!(
            ActiveSuperblock::load(&[0u8; 4096], SoftwareCrc32c),
            Err(LoadError::NoValidCopy {
                first: SuperblockError::BadMagic,
                second: SuperblockError::BadMagic
            })
        );
        let region = region_with(Some(1), None);
        assert_eq!(
            ActiveSuperblock::load(&region[..4095], SoftwareCrc32c),
            Err(LoadError::RegionTruncated {
                region_bytes: 4096,
                available: 4095
            })
        );
    }

    #[test]
    fn next_update_alternates() {
        let region = region_with(Some(1), Some(2));
        let active = ActiveSuperblock::load(&region, SoftwareCrc32c).unwrap();
        let next = active.next_update();
        assert_eq!(next.copy, SuperblockCopy::First);
        assert_eq!(next.superblock.generation, 3);
        let wrapped = ActiveSuperblock {
            superblock: Superblock {
                generation: u64::MAX,
                ..sample()
            },
            copy: SuperblockCopy::First,
        };
        assert_eq!(wrapped.next_update().superblock.generation, 0);
        assert_eq!(wrapped.next_update().copy, SuperblockCopy::Second);
    }
}
