// SPDX-License-Identifier: GPL-2.0

//! Host-side helpers for tests of this crate, the rescue program and the
//! CLI: region images built the way the kernel writer builds them (valid,
//! torn, corrupted, for the wrong disk), a model disk, and the fuzz entry
//! point shared by the cargo-fuzz target and the corpus test.
//!
//! Compiled only with the `test-helpers` feature; uses `std`.

extern crate std;

use std::vec;
use std::vec::Vec;

use super::crc32c::{Crc32c, SoftwareCrc32c};
use super::descriptor::{fields as descriptor_fields, Descriptor};
use super::disk::{DiskId, DiskIdentity, SECTOR_BYTES};
use super::disk_marker::{check_marker, DiskMarker, MarkerState, MarkerVerdict, RegionEvidence};
use super::field;
use super::format_region::format_region;
use super::geometry::{Geometry, DESCRIPTOR_BYTES, SUPERBLOCK_BYTES};
use super::replay::{plan_replay, ReplayRefusal};
use super::replay_report::ReplayReport;
use super::ring::{Reservation, ReserveError, RingGeometry, RingState};
use super::superblock::{
    fields as superblock_fields, ActiveSuperblock, RegionState, Superblock, FORMAT_VERSION,
    SUPERBLOCK_MAGIC,
};

/// A disk identity named `name` (an id of at most 64 bytes).
pub fn disk(name: &str, sectors: u64, block_bytes: u32) -> DiskIdentity {
    DiskIdentity {
        id: DiskId::new(name.as_bytes()).expect("disk id longer than 64 bytes"),
        sectors,
        block_bytes,
    }
}

/// The tightest valid layout: table right after the superblocks, ring right
/// after the table, region ending with the ring. Keeps test images small.
pub fn compact_geometry(slots: u32, ring_bytes: u64, max_record_bytes: u32) -> Geometry {
    let table_end = 1024 + u64::from(slots) * DESCRIPTOR_BYTES as u64;
    let ring_offset = table_end.div_ceil(512) * 512;
    Geometry {
        region_bytes: ring_offset + ring_bytes,
        descriptor_offset: 1024,
        descriptor_slots: slots,
        ring_offset,
        ring_bytes,
        max_record_bytes,
    }
}

/// splitmix64: a tiny seedable generator, so test inputs (fuzz mutations,
/// region images for the QEMU tests) are reproducible from a seed.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

/// `len` bytes of deterministic, seed-dependent filler: stands for leftover
/// ring contents and for test payloads.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as u8
        })
        .collect()
}

/// A region image plus the writer state that built it.
#[derive(Debug, Clone)]
pub struct RegionImage {
    bytes: Vec<u8>,
    active: ActiveSuperblock,
    ring: RingState,
    ring_geometry: RingGeometry,
    /// Live reservations, oldest first.
    live: Vec<Reservation>,
}

impl RegionImage {
    /// A freshly formatted region; the ring holds filler, as real memory would.
    pub fn new(geometry: Geometry, disk: DiskIdentity, epoch: u64) -> Self {
        let len = usize::try_from(geometry.region_bytes).expect("region too large");
        let mut bytes = pattern(epoch, len);
        let active =
            format_region(&mut bytes, geometry, disk, epoch, SoftwareCrc32c).expect("format");
        let ring_geometry = RingGeometry::new(&geometry).expect("geometry");
        let mut image = Self {
            bytes,
            active,
            ring: RingState::new(0),
            ring_geometry,
            live: Vec::new(),
        };
        image.set_state(RegionState::Dirty);
        image
    }

    /// A 4-slot, 2 KiB-ring region (records up to 1 KiB) for a 64-sector,
    /// 512-byte-block disk named "test-disk" (data area: sectors 0..56,
    /// marker area 56..64): 3.5 KiB in all.
    pub fn small() -> Self {
        Self::new(
            compact_geometry(4, 2048, 1024),
            disk("test-disk", 64, 512),
            0x5EED,
        )
    }

    /// The image.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The image, for hand-made damage.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }

    /// The image, consumed.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// The current superblock.
    pub fn active(&self) -> &ActiveSuperblock {
        &self.active
    }

    /// The disk the region belongs to.
    pub fn disk(&self) -> DiskIdentity {
        self.active.superblock.disk
    }

    /// The writer's space accounting.
    pub fn ring(&self) -> &RingState {
        &self.ring
    }

    /// Live reservations, oldest first.
    pub fn live(&self) -> &[Reservation] {
        &self.live
    }

    /// Reserves space for `data` (whose length must be a multiple of 512).
    pub fn reserve(&mut self, data_len: usize) -> Result<Reservation, ReserveError> {
        let length = u32::try_from(data_len).map_err(|_| ReserveError::TooLarge)?;
        let reservation = self.ring.reserve(&self.ring_geometry, length)?;
        self.live.push(reservation);
        Ok(reservation)
    }

    /// The descriptor bytes a complete publication of `data` writes.
    pub fn descriptor_bytes(
        &self,
        reservation: &Reservation,
        sector: u64,
        data: &[u8],
    ) -> [u8; DESCRIPTOR_BYTES] {
        let descriptor = reservation.descriptor(
            self.active.superblock.epoch,
            sector,
            SoftwareCrc32c.checksum(data),
        );
        let mut out = [0u8; DESCRIPTOR_BYTES];
        descriptor.encode(&mut out, SoftwareCrc32c);
        out
    }

    /// Writes the first `payload_bytes` of `data` and the first
    /// `descriptor_bytes` of its descriptor: a record caught by a crash.
    pub fn write_partial(
        &mut self,
        reservation: &Reservation,
        sector: u64,
        data: &[u8],
        payload_bytes: usize,
        descriptor_bytes: usize,
    ) {
        let geometry = self.active.superblock.geometry;
        let payload = geometry
            .payload_range(reservation.ring_offset, reservation.length)
            .expect("payload range");
        let n = payload_bytes.min(data.len());
        self.bytes[payload.start..payload.start + n].copy_from_slice(&data[..n]);
        let encoded = self.descriptor_bytes(reservation, sector, data);
        let slot = geometry
            .descriptor_range(reservation.slot)
            .expect("slot range");
        let n = descriptor_bytes.min(DESCRIPTOR_BYTES);
        self.bytes[slot.start..slot.start + n].copy_from_slice(&encoded[..n]);
    }

    /// Reserves and publishes a record of `data` for `sector`.
    pub fn append(&mut self, sector: u64, data: &[u8]) -> Result<Reservation, ReserveError> {
        let reservation = self.reserve(data.len())?;
        self.write_partial(&reservation, sector, data, data.len(), DESCRIPTOR_BYTES);
        Ok(reservation)
    }

    /// Reserves a record and writes only part of it.
    pub fn append_torn(
        &mut self,
        sector: u64,
        data: &[u8],
        payload_bytes: usize,
        descriptor_bytes: usize,
    ) -> Result<Reservation, ReserveError> {
        let reservation = self.reserve(data.len())?;
        self.write_partial(&reservation, sector, data, payload_bytes, descriptor_bytes);
        Ok(reservation)
    }

    /// Encodes the next superblock update after `change`, writes its first
    /// `cut` bytes to the other copy, and adopts it if it was whole.
    pub fn update_superblock(&mut self, cut: usize, change: impl FnOnce(&mut Superblock)) {
        let mut next = self.active.next_update();
        change(&mut next.superblock);
        next.superblock.head_hint = next.superblock.head_hint.max(next.superblock.durable_tail);
        let mut encoded = [0u8; SUPERBLOCK_BYTES];
        next.superblock.encode(&mut encoded, SoftwareCrc32c);
        let range = next.copy.range();
        let n = cut.min(SUPERBLOCK_BYTES);
        self.bytes[range.start..range.start + n].copy_from_slice(&encoded[..n]);
        if n == SUPERBLOCK_BYTES {
            self.active = next;
        }
    }

    fn set_state(&mut self, state: RegionState) {
        self.update_superblock(SUPERBLOCK_BYTES, |sb| sb.state = state);
    }

    /// Marks records up to `seq` durable: writes the superblock with the new
    /// tail, then frees their space, as writeback does.
    pub fn advance_tail_through(&mut self, seq: u64) {
        let next_seq = self.ring.next_seq();
        self.update_superblock(SUPERBLOCK_BYTES, |sb| {
            sb.durable_tail = seq + 1;
            sb.head_hint = next_seq;
        });
        let freed = self.live.iter().rposition(|r| r.seq <= seq);
        if let Some(index) = freed {
            self.ring
                .release_through(&self.live[index])
                .expect("release");
            self.live.drain(..=index);
        }
    }

    /// Flips one bit of the image.
    pub fn flip_bit(&mut self, bit: usize) {
        self.bytes[bit / 8] ^= 1 << (bit % 8);
    }
}

/// Applies a replay of `region` to `disk_bytes` (the whole disk, 512 bytes a
/// sector), returning the report.
pub fn replay_into(
    region: &[u8],
    target: &DiskIdentity,
    disk_bytes: &mut [u8],
) -> Result<ReplayReport, ReplayRefusal> {
    let mut plan = plan_replay(region, target, SoftwareCrc32c)?;
    for write in plan.by_ref() {
        let start = usize::try_from(write.sector).expect("sector") * SECTOR_BYTES as usize;
        disk_bytes[start..start + write.data.len()].copy_from_slice(write.data);
    }
    Ok(plan.report())
}

/// Recomputes the checksum of each superblock copy that has the right magic
/// and version, so that mutated fields reach field validation.
fn reseal_superblocks(region: &mut [u8]) {
    for offset in [0, SUPERBLOCK_BYTES] {
        let Some(copy) = region.get_mut(offset..offset + SUPERBLOCK_BYTES) else {
            return;
        };
        let magic_ok = copy.get(..8) == Some(&SUPERBLOCK_MAGIC[..]);
        if magic_ok && field::read_u32(copy, superblock_fields::VERSION) == FORMAT_VERSION {
            let crc = SoftwareCrc32c.checksum(&copy[..superblock_fields::CHECKSUM.offset]);
            field::write_u32(copy, superblock_fields::CHECKSUM, crc);
        }
    }
}

/// Recomputes payload and descriptor checksums of every non-empty slot, so
/// that mutated descriptors reach the planner's field checks.
fn reseal_descriptors(region: &mut [u8], geometry: &Geometry, payloads: bool) {
    for slot in 0..geometry.descriptor_slots {
        let Some(range) = geometry.descriptor_range(slot) else {
            return;
        };
        let Some(bytes) = region.get(range.clone()) else {
            return;
        };
        if bytes.iter().all(|&b| b == 0) {
            continue;
        }
        if payloads {
            let ring_offset = field::read_u64(bytes, descriptor_fields::RING_OFFSET);
            let length = field::read_u32(bytes, descriptor_fields::LENGTH);
            let payload_crc = geometry
                .payload_range(ring_offset, length)
                .and_then(|p| region.get(p))
                .map(|payload| SoftwareCrc32c.checksum(payload));
            if let Some(payload_crc) = payload_crc {
                field::write_u32(
                    &mut region[range.clone()],
                    descriptor_fields::PAYLOAD_CHECKSUM,
                    payload_crc,
                );
            }
        }
        let crc = SoftwareCrc32c
            .checksum(&region[range.start..range.start + descriptor_fields::CHECKSUM.offset]);
        field::write_u32(&mut region[range], descriptor_fields::CHECKSUM, crc);
    }
}

/// Fuzz entry point: parses and plans `input` and asserts the planner's
/// guarantees, then decodes it as a disk marker and decides on it. Panics
/// only if a guarantee is broken.
///
/// The first byte selects helpers that get past checksums, which random
/// mutation alone almost never does: bit 0 reseals the superblocks, bit 1
/// the descriptors, bit 2 also the payload checksums, bit 3 replays onto a
/// disk one sector larger (must be refused). The rest is the region image.
/// The target disk is the one the region names, so that identity checks
/// pass and the planner itself is exercised.
pub fn fuzz_region(input: &[u8]) {
    let Some((&mode, image)) = input.split_first() else {
        return;
    };
    let mut region = image.to_vec();
    if mode & 1 != 0 {
        reseal_superblocks(&mut region);
    }
    let loaded = ActiveSuperblock::load(&region, SoftwareCrc32c);
    if let (true, Ok(active)) = (mode & 2 != 0, &loaded) {
        reseal_descriptors(&mut region, &active.superblock.geometry, mode & 4 != 0);
    }
    let mut target = match loaded {
        Ok(active) => active.superblock.disk,
        Err(_) => disk("fuzz", 1 << 20, 512),
    };
    if mode & 8 != 0 {
        target.sectors = target.sectors.wrapping_add(1);
    }
    check_plan(&region, &target);
    // The same bytes as a disk's marker area, and the load decision on
    // them: neither may panic.
    let marker = DiskMarker::decode(image, SoftwareCrc32c);
    let evidence = RegionEvidence::of_region(&region, &target, SoftwareCrc32c);
    let verdict = check_marker(marker, evidence);
    if let Ok(Some(m)) = marker {
        if m.state == MarkerState::Live && evidence == RegionEvidence::NoRegionRecords {
            assert_ne!(verdict, MarkerVerdict::Proceed, "a live marker passed");
        }
    }
}

/// Asserts every guarantee of one plan and that planning again gives the
/// same writes.
pub fn check_plan(region: &[u8], target: &DiskIdentity) {
    let Ok(mut plan) = plan_replay(region, target, SoftwareCrc32c) else {
        return;
    };
    let sb = plan.superblock().superblock;
    assert_eq!(sb.disk, *target, "planned for another disk");
    let window = plan.window();
    let slots = u64::from(sb.geometry.descriptor_slots);
    let data_sectors = plan.data_sectors();
    let mut writes = Vec::new();
    let mut previous: Option<u64> = None;
    for write in plan.by_ref() {
        writes.push(write);
        assert!(writes.len() as u64 <= slots, "more writes than slots");
        assert!(window.contains(&write.seq), "write outside the live window");
        assert!(
            previous.is_none_or(|p| write.seq > p),
            "writes out of sequence order"
        );
        previous = Some(write.seq);
        let len = write.data.len() as u64;
        assert!(
            len > 0 && len % u64::from(target.block_bytes) == 0,
            "bad write length"
        );
        assert_eq!(write.sector % target.block_sectors(), 0, "unaligned write");
        let end = write
            .sector
            .checked_add(len / 512)
            .expect("sector overflow");
        assert!(end <= target.sectors, "write beyond the end of the disk");
        assert!(end <= data_sectors, "write into the marker area");
        let slot = sb
            .geometry
            .descriptor_range(sb.geometry.slot_of(write.seq))
            .expect("slot");
        let raw: &[u8; DESCRIPTOR_BYTES] = region[slot].try_into().expect("descriptor");
        let descriptor = Descriptor::decode(raw, SoftwareCrc32c).expect("applied a bad descriptor");
        assert_eq!(descriptor.epoch, sb.epoch, "applied another epoch");
        assert_eq!(
            SoftwareCrc32c.checksum(write.data),
            descriptor.payload_checksum,
            "applied a bad payload"
        );
    }
    assert!(plan.is_finished());
    let report = plan.report();
    let s = report.skipped;
    let visited = u64::from(report.records_applied)
        + [
            s.empty,
            s.bad_descriptor_checksum,
            s.malformed,
            s.wrong_epoch,
            s.stale,
            s.bad_payload_checksum,
            s.beyond_disk,
        ]
        .iter()
        .map(|&n| u64::from(n))
        .sum::<u64>();
    assert_eq!(visited, slots, "report does not account for every slot");
    assert_eq!(report.records_applied as usize, writes.len());
    let again = plan_replay(region, target, SoftwareCrc32c).expect("second plan refused");
    assert!(again.eq(writes), "planning twice gave different writes");
}

/// Small valid images for the fuzz corpus and other tests: empty, a few
/// records with wrap-around and overwrites, a torn record before a good one,
/// and a region whose tail moved past a lap of the ring.
pub fn seed_images() -> Vec<(&'static str, Vec<u8>)> {
    let mut images = Vec::new();
    images.push(("empty", RegionImage::small().into_bytes()));

    let mut image = RegionImage::small();
    image.append(0, &pattern(1, 1024)).expect("append");
    image.append(1, &pattern(2, 512)).expect("append");
    // The last sector of the data area.
    image.append(55, &pattern(3, 512)).expect("append");
    images.push(("three-records", image.into_bytes()));

    let mut image = RegionImage::small();
    image
        .append_torn(8, &pattern(4, 1024), 1000, 40)
        .expect("append");
    image.append(9, &pattern(5, 1024)).expect("append");
    images.push(("torn-then-good", image.into_bytes()));

    // Records of 1 KiB and 512 B alternate so the ring wraps with a skipped
    // gap; the tail trails the head by one record.
    let mut image = RegionImage::small();
    for i in 0..7u64 {
        let len = if i % 2 == 0 { 1024 } else { 512 };
        let r = image.append(i * 3, &pattern(10 + i, len)).expect("append");
        if r.seq > 0 {
            image.advance_tail_through(r.seq - 1);
        }
    }
    images.push(("wrapped", image.into_bytes()));

    let mut image = RegionImage::small();
    image.append(5, &pattern(20, 512)).expect("append");
    image.update_superblock(SUPERBLOCK_BYTES, |sb| sb.epoch ^= 1);
    images.push(("wrong-epoch", image.into_bytes()));
    images
}

/// A whole-disk model: `sectors` sectors of 512 bytes, each holding filler
/// that identifies it, so tests can tell "untouched" from "written".
pub fn model_disk(sectors: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; usize::try_from(sectors).expect("sectors") * SECTOR_BYTES as usize];
    for (i, sector) in bytes.chunks_mut(SECTOR_BYTES as usize).enumerate() {
        sector.copy_from_slice(&pattern(!(i as u64), SECTOR_BYTES as usize));
    }
    bytes
}
