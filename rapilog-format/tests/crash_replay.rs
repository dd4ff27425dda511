// SPDX-License-Identifier: GPL-2.0

//! Crash-consistency property test of the whole protocol.
//!
//! A model of the kernel module runs several writers and a writeback worker
//! over a region held in a byte array, with their steps interleaved as
//! proptest chooses. Every store into the region is split into chunks of
//! arbitrary size, so the crash, which can come after any step, tears
//! payloads, descriptors and superblock updates at byte granularity. The disk
//! has a volatile cache: writes not yet flushed land or not, sector by
//! sector. Optionally, bits of the region are flipped after the crash.
//!
//! Then the replay planner runs on the region and its writes go to the disk,
//! twice, and the properties of the design are checked:
//!
//! - every sector holds the newest *published* record covering it, or its
//!   original contents if none (published = the descriptor the writer meant
//!   is in its slot: fully stored, or torn where the bytes not yet stored
//!   already held the same values, which no reader can tell apart; all
//!   acknowledged records are fully stored);
//! - nothing but exact copies of published records is ever written;
//! - the loaded superblock is the last one stored (fully, or torn where
//!   the bytes not yet stored already held the same values);
//! - a second replay changes nothing.
//!
//! With bit flips only the safety properties are checked: every write is an
//! exact copy (sector and bytes) of a record a writer issued, and every
//! sector holds some version that was really written to it. A flip may
//! complete a torn descriptor into exactly the one its writer was storing;
//! replay then writes that unacknowledged, in-flight write, which a block
//! device may do after a crash; what it must never write is anything else.

use proptest::prelude::*;
use rapilog_format::test_helpers::{compact_geometry, disk, model_disk, pattern};
use rapilog_format::{
    format_region, plan_replay, ActiveSuperblock, Crc32c, DiskIdentity, Geometry, RegionState,
    Reservation, RingGeometry, RingState, SoftwareCrc32c, DESCRIPTOR_BYTES, SUPERBLOCK_BYTES,
};

/// The whole disk: a 32-sector data area, then the 8-sector marker area
/// (4 KiB), which no record targets and replay must leave as it was (the
/// checks below compare every sector of the disk).
const DISK_SECTORS: u64 = 40;
const DATA_SECTORS: u64 = 32;
const SECTOR: usize = 512;

#[derive(Debug, Clone)]
struct WriteOp {
    sector: u64,
    sectors: u64,
}

#[derive(Debug, Clone)]
struct Scenario {
    slots: u32,
    ring_units: u64,
    max_units: u64,
    writers: Vec<Vec<WriteOp>>,
    /// Each step: low byte picks the actor, high byte sizes its chunk or
    /// picks its action.
    schedule: Vec<u16>,
    /// Where the crash hits, as a fraction (/ 65536) of the steps the
    /// schedule takes until nothing moves any more.
    crash_point: u16,
    /// Whether each sector of an unflushed disk write landed.
    landed: Vec<bool>,
    /// Bits of the region to flip after the crash.
    flips: Vec<u64>,
}

struct Record {
    sector: u64,
    data: Vec<u8>,
    reservation: Reservation,
    descriptor: [u8; DESCRIPTOR_BYTES],
    payload_written: usize,
    descriptor_written: usize,
    acked: bool,
}

impl Record {
    fn complete(&self) -> bool {
        self.descriptor_written == DESCRIPTOR_BYTES
    }
}

enum Writer {
    Idle { next: usize },
    Copying { seq: u64, next: usize },
    Publishing { seq: u64, next: usize },
    Acking { seq: u64, next: usize },
}

struct PendingSuperblock {
    next: ActiveSuperblock,
    bytes: [u8; SUPERBLOCK_BYTES],
    written: usize,
}

struct Sim<'a> {
    scenario: &'a Scenario,
    geometry: Geometry,
    ring_geometry: RingGeometry,
    region: Vec<u8>,
    ring: RingState,
    active: ActiveSuperblock,
    records: Vec<Record>,
    writers: Vec<Writer>,
    /// Next record the writeback worker will write to the disk.
    writeback_next: u64,
    pending: Option<PendingSuperblock>,
    durable: Vec<u8>,
    cache: Vec<(u64, Vec<u8>)>,
    initial_disk: Vec<u8>,
}

/// How many of the `max` remaining bytes one step stores: a few bytes (to
/// tear anywhere), a sector, or everything left.
fn chunk(arg: u8, max: usize, small: usize) -> usize {
    let n = match arg {
        0..=95 => usize::from(arg) % small + 1,
        96..=175 => SECTOR,
        _ => max,
    };
    n.min(max)
}

impl<'a> Sim<'a> {
    fn new(scenario: &'a Scenario) -> Self {
        let geometry = compact_geometry(
            scenario.slots,
            scenario.ring_units * 512,
            (scenario.max_units * 512) as u32,
        );
        let mut region = pattern(0xF00D, geometry.region_bytes as usize);
        let target = disk_identity();
        let mut active =
            format_region(&mut region, geometry, target, 0xE90C, SoftwareCrc32c).unwrap();
        // Open the region as the module does: mark it dirty.
        active = active.next_update();
        active.superblock.state = RegionState::Dirty;
        let mut bytes = [0u8; SUPERBLOCK_BYTES];
        active.superblock.encode(&mut bytes, SoftwareCrc32c);
        region[active.copy.range()].copy_from_slice(&bytes);
        let initial_disk = model_disk(DISK_SECTORS);
        Sim {
            scenario,
            geometry,
            ring_geometry: RingGeometry::new(&geometry).unwrap(),
            region,
            ring: RingState::new(0),
            active,
            records: Vec::new(),
            writers: scenario
                .writers
                .iter()
                .map(|_| Writer::Idle { next: 0 })
                .collect(),
            writeback_next: 0,
            pending: None,
            durable: initial_disk.clone(),
            cache: Vec::new(),
            initial_disk,
        }
    }

    fn data_for(&self, writer: usize, op: usize, sectors: u64) -> Vec<u8> {
        pattern(
            ((writer as u64) << 32) | op as u64,
            sectors as usize * SECTOR,
        )
    }

    /// One step of writer `w`; false if it could not move.
    fn step_writer(&mut self, w: usize, arg: u8) -> bool {
        match self.writers[w] {
            Writer::Idle { next } => {
                let Some(op) = self.scenario.writers[w].get(next) else {
                    return false;
                };
                let sectors = op.sectors.min(self.scenario.max_units);
                let sector = op.sector.min(DATA_SECTORS - sectors);
                let data = self.data_for(w, next, sectors);
                let Ok(reservation) = self.ring.reserve(&self.ring_geometry, data.len() as u32)
                else {
                    return false; // full: wait for writeback
                };
                assert_eq!(reservation.seq, self.records.len() as u64);
                let descriptor = reservation.descriptor(
                    self.active.superblock.epoch,
                    sector,
                    SoftwareCrc32c.checksum(&data),
                );
                let mut encoded = [0u8; DESCRIPTOR_BYTES];
                descriptor.encode(&mut encoded, SoftwareCrc32c);
                self.records.push(Record {
                    sector,
                    data,
                    reservation,
                    descriptor: encoded,
                    payload_written: 0,
                    descriptor_written: 0,
                    acked: false,
                });
                self.writers[w] = Writer::Copying {
                    seq: reservation.seq,
                    next,
                };
            }
            Writer::Copying { seq, next } => {
                let record = &mut self.records[seq as usize];
                let range = self
                    .geometry
                    .payload_range(record.reservation.ring_offset, record.reservation.length)
                    .unwrap();
                let n = chunk(arg, record.data.len() - record.payload_written, 96);
                let from = record.payload_written;
                self.region[range.start + from..range.start + from + n]
                    .copy_from_slice(&record.data[from..from + n]);
                record.payload_written += n;
                if record.payload_written == record.data.len() {
                    self.writers[w] = Writer::Publishing { seq, next };
                }
            }
            Writer::Publishing { seq, next } => {
                let record = &mut self.records[seq as usize];
                let range = self
                    .geometry
                    .descriptor_range(record.reservation.slot)
                    .unwrap();
                // Descriptor stores are word-sized or so; usually several per descriptor.
                let left = DESCRIPTOR_BYTES - record.descriptor_written;
                let n = if arg < 192 {
                    (usize::from(arg) % 16 + 1).min(left)
                } else {
                    left
                };
                let from = record.descriptor_written;
                self.region[range.start + from..range.start + from + n]
                    .copy_from_slice(&record.descriptor[from..from + n]);
                record.descriptor_written += n;
                if record.complete() {
                    self.writers[w] = Writer::Acking { seq, next };
                }
            }
            Writer::Acking { seq, next } => {
                self.records[seq as usize].acked = true;
                self.writers[w] = Writer::Idle { next: next + 1 };
            }
        }
        true
    }

    /// One step of the writeback worker; false if it had nothing to do.
    fn step_writeback(&mut self, arg: u8) -> bool {
        if let Some(pending) = &mut self.pending {
            let left = SUPERBLOCK_BYTES - pending.written;
            let n = if arg < 192 {
                (usize::from(arg) % 64 + 1).min(left)
            } else {
                left
            };
            let range = pending.next.copy.range();
            let from = pending.written;
            self.region[range.start + from..range.start + from + n]
                .copy_from_slice(&pending.bytes[from..from + n]);
            pending.written += n;
            if pending.written == SUPERBLOCK_BYTES {
                let old_tail = self.active.superblock.durable_tail;
                self.active = pending.next;
                self.pending = None;
                let new_tail = self.active.superblock.durable_tail;
                if new_tail > old_tail {
                    let last = self.records[new_tail as usize - 1].reservation;
                    self.ring.release_through(&last).unwrap();
                }
            }
            return true;
        }
        let next = self.records.get(self.writeback_next as usize);
        if arg % 4 != 0 && next.is_some_and(|r| r.acked) {
            // Write the next record, in sequence order, into the disk cache.
            let record = next.unwrap();
            self.cache.push((record.sector, record.data.clone()));
            self.writeback_next += 1;
        } else if arg % 8 == 0 || self.writeback_next > self.active.superblock.durable_tail {
            // Flush, then start advancing the tail in the other copy.
            for (sector, data) in self.cache.drain(..) {
                let start = sector as usize * SECTOR;
                self.durable[start..start + data.len()].copy_from_slice(&data);
            }
            let mut next = self.active.next_update();
            next.superblock.durable_tail = self.writeback_next;
            next.superblock.head_hint = self.ring.next_seq();
            let mut bytes = [0u8; SUPERBLOCK_BYTES];
            next.superblock.encode(&mut bytes, SoftwareCrc32c);
            self.pending = Some(PendingSuperblock {
                next,
                bytes,
                written: 0,
            });
        } else {
            return false;
        }
        true
    }

    /// Runs the first `steps` steps of the schedule; returns how many steps
    /// it took until the last one that moved anything.
    fn run(&mut self, steps: usize) -> usize {
        let actors = self.writers.len() + 1;
        let mut busy_until = 0;
        for (i, &step) in self.scenario.schedule.iter().take(steps).enumerate() {
            let actor = usize::from(step as u8) % actors;
            let arg = (step >> 8) as u8;
            let moved = if actor == self.writers.len() {
                self.step_writeback(arg)
            } else {
                self.step_writer(actor, arg)
            };
            if moved {
                busy_until = i + 1;
            }
        }
        busy_until
    }

    /// Runs the scenario up to its crash point.
    fn crashed(scenario: &'a Scenario) -> Self {
        let busy = Sim::new(scenario).run(usize::MAX);
        let crash_at = (busy + 1) * usize::from(scenario.crash_point) / 65536;
        let mut sim = Sim::new(scenario);
        sim.run(crash_at);
        sim
    }

    /// The disk after the crash: durable contents plus, sector by sector,
    /// whatever of the unflushed cache happened to land.
    fn crashed_disk(&self) -> Vec<u8> {
        let mut disk = self.durable.clone();
        let mut coin = self.scenario.landed.iter().cycle();
        for (sector, data) in &self.cache {
            for (i, sector_data) in data.chunks(SECTOR).enumerate() {
                if *coin.next().unwrap() {
                    let start = (*sector as usize + i) * SECTOR;
                    disk[start..start + SECTOR].copy_from_slice(sector_data);
                }
            }
        }
        disk
    }

    /// Whether record `seq`'s descriptor is in its slot of the crashed
    /// region: fully stored, or torn where the bytes not yet stored already
    /// held the values it meant to store (an earlier record in the same slot
    /// can share them). A later record reusing the slot implies this one
    /// was fully stored, since slots are reused only after writeback.
    fn published(&self, seq: usize) -> bool {
        let record = &self.records[seq];
        let range = self
            .geometry
            .descriptor_range(record.reservation.slot)
            .unwrap();
        record.complete() || self.region[range] == record.descriptor[..]
    }

    /// Sequence numbers of the published records, oldest first.
    fn published_seqs(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.records.len()).filter(|&seq| self.published(seq))
    }

    /// The superblock a reader must load: the pending update if its copy
    /// already holds every byte it meant to store (the same argument as
    /// [`Sim::published`]), else the last fully stored one.
    fn last_superblock(&self) -> ActiveSuperblock {
        match &self.pending {
            Some(p) if self.region[p.next.copy.range()] == p.bytes[..] => p.next,
            _ => self.active,
        }
    }

    /// For each sector, the contents of the newest published record covering
    /// it, or the original contents.
    fn expected_disk(&self) -> Vec<u8> {
        let mut disk = self.initial_disk.clone();
        for record in self.published_seqs().map(|seq| &self.records[seq]) {
            let start = record.sector as usize * SECTOR;
            disk[start..start + record.data.len()].copy_from_slice(&record.data);
        }
        disk
    }

    /// Every version a write ever carried to `sector`: original, or any
    /// issued record's.
    fn possible_versions(&self, sector: u64) -> Vec<&[u8]> {
        let s = sector as usize * SECTOR;
        let mut versions = vec![&self.initial_disk[s..s + SECTOR]];
        for record in &self.records {
            let covered = record.sector <= sector
                && sector < record.sector + (record.data.len() / SECTOR) as u64;
            if covered {
                let offset = (sector - record.sector) as usize * SECTOR;
                versions.push(&record.data[offset..offset + SECTOR]);
            }
        }
        versions
    }

    /// Replays `region` onto `disk`, checking each write is an exact copy
    /// of an issued record and, unless bits were flipped, of a published
    /// one. Returns the number of writes, or None if refused.
    fn replay(&self, region: &[u8], disk: &mut [u8], flipped: bool) -> Option<usize> {
        let plan = plan_replay(region, &disk_identity(), SoftwareCrc32c).ok()?;
        let mut writes = 0;
        for write in plan {
            let record = self
                .records
                .get(write.seq as usize)
                .expect("write for a record never reserved");
            assert!(
                flipped || self.published(write.seq as usize),
                "replayed unpublished record {}",
                write.seq
            );
            assert_eq!(
                write.sector, record.sector,
                "record {} replayed to the wrong sector",
                write.seq
            );
            assert!(
                write.data == record.data.as_slice(),
                "record {} replayed with wrong bytes",
                write.seq
            );
            let start = write.sector as usize * SECTOR;
            disk[start..start + write.data.len()].copy_from_slice(write.data);
            writes += 1;
        }
        Some(writes)
    }
}

fn disk_identity() -> DiskIdentity {
    disk("crash-test-disk", DISK_SECTORS, 512)
}

fn check(scenario: &Scenario) -> Result<(), TestCaseError> {
    let sim = Sim::crashed(scenario);
    let mut region = sim.region.clone();
    for &bit in &scenario.flips {
        let bit = (bit % (region.len() as u64 * 8)) as usize;
        region[bit / 8] ^= 1 << (bit % 8);
    }
    let mut disk = sim.crashed_disk();
    let flipped = !scenario.flips.is_empty();
    let applied = sim.replay(&region, &mut disk, flipped);
    let mut again = disk.clone();
    sim.replay(&region, &mut again, flipped);
    prop_assert!(disk == again, "second replay changed the disk");

    if scenario.flips.is_empty() {
        let loaded = ActiveSuperblock::load(&region, SoftwareCrc32c).unwrap();
        prop_assert_eq!(
            loaded,
            sim.last_superblock(),
            "loaded superblock is not the last one stored"
        );
        let tail = loaded.superblock.durable_tail;
        let live_published = sim
            .published_seqs()
            .filter(|&seq| seq >= tail as usize)
            .count();
        prop_assert_eq!(applied, Some(live_published));
        let expected = sim.expected_disk();
        for sector in 0..DISK_SECTORS as usize {
            let range = sector * SECTOR..(sector + 1) * SECTOR;
            prop_assert!(
                disk[range.clone()] == expected[range],
                "sector {} is not the newest published version",
                sector
            );
        }
        for (seq, record) in sim.records.iter().enumerate() {
            if record.acked {
                prop_assert!(
                    record.complete(),
                    "record {} acknowledged before publication",
                    seq
                );
            }
        }
    } else {
        for sector in 0..DISK_SECTORS {
            let s = sector as usize * SECTOR;
            let actual = &disk[s..s + SECTOR];
            prop_assert!(
                sim.possible_versions(sector).contains(&actual),
                "sector {} holds bytes never written to it",
                sector
            );
        }
    }
    Ok(())
}

fn scenario(max_flips: usize) -> impl Strategy<Value = Scenario> {
    (prop::sample::select(vec![2u32, 3, 4, 8]), 2u64..=12)
        .prop_flat_map(move |(slots, ring_units)| {
            let max_units = 1..=(ring_units / 2).max(1);
            (Just(slots), Just(ring_units), max_units)
        })
        .prop_flat_map(move |(slots, ring_units, max_units)| {
            let op = (0..DATA_SECTORS, 1..=max_units)
                .prop_map(|(sector, sectors)| WriteOp { sector, sectors });
            (
                Just(slots),
                Just(ring_units),
                Just(max_units),
                prop::collection::vec(prop::collection::vec(op, 1..12), 1..=4),
                prop::collection::vec(any::<u16>(), 0..400),
                any::<u16>(),
                prop::collection::vec(any::<bool>(), 1..16),
                prop::collection::vec(any::<u64>(), 0..=max_flips),
            )
        })
        .prop_map(
            |(slots, ring_units, max_units, writers, schedule, crash_point, landed, flips)| {
                Scenario {
                    slots,
                    ring_units,
                    max_units,
                    writers,
                    schedule,
                    crash_point,
                    landed,
                    flips,
                }
            },
        )
}

fn cases(default: u32) -> ProptestConfig {
    // PROPTEST_CASES overrides, for long soak runs.
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(cases(3000))]

    #[test]
    fn crash_at_any_point_replays_to_the_newest_published_versions(s in scenario(0)) {
        check(&s)?;
    }
}

proptest! {
    #![proptest_config(cases(1500))]

    #[test]
    fn bit_flips_never_put_garbage_on_the_disk(s in scenario(4).prop_filter("needs flips", |s| !s.flips.is_empty())) {
        check(&s)?;
    }
}

/// The schedule generator must actually reach the interesting states; this
/// counts them over a fixed set of seeds so a change that silently makes the
/// simulation trivial fails here.
#[test]
fn simulation_reaches_interesting_states() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let strategy = scenario(0);
    let (mut wrapped, mut torn_descriptor, mut torn_superblock, mut released, mut full) =
        (0, 0, 0, 0, 0);
    let mut hole = 0;
    for _ in 0..300 {
        let s = strategy.new_tree(&mut runner).unwrap().current();
        let sim = Sim::crashed(&s);
        wrapped += usize::from(
            sim.records
                .iter()
                .any(|r| r.reservation.end > s.ring_units * 512),
        );
        torn_descriptor += usize::from(
            sim.records
                .iter()
                .any(|r| r.descriptor_written > 0 && !r.complete()),
        );
        torn_superblock += usize::from(sim.pending.as_ref().is_some_and(|p| p.written > 0));
        released += usize::from(sim.ring.tail_seq() > 0);
        full += usize::from(sim.ring.live_records() == u64::from(s.slots));
        let first_incomplete = sim.records.iter().position(|r| !r.complete());
        hole += usize::from(
            first_incomplete.is_some_and(|n| sim.records[n..].iter().any(|r| r.complete())),
        );
    }
    eprintln!("wrapped {wrapped} torn_descriptor {torn_descriptor} torn_superblock {torn_superblock} released {released} full {full} hole {hole}");
    assert!(wrapped > 60, "ring wrapped in only {wrapped} runs");
    assert!(
        torn_descriptor > 50,
        "torn descriptors in only {torn_descriptor} runs"
    );
    assert!(
        torn_superblock > 20,
        "torn superblocks in only {torn_superblock} runs"
    );
    assert!(released > 100, "space released in only {released} runs");
    assert!(full > 40, "slots full in only {full} runs");
    assert!(
        hole > 20,
        "a complete record after an incomplete one in only {hole} runs"
    );
}

/// Found by the property test (shrunk): record 5's descriptor is torn two
/// bytes short, but its slot's last two bytes, left by record 3, already
/// hold the values it was storing, so the region holds the whole descriptor
/// and replay writes record 5 (unacknowledged, in flight, exact). An oracle
/// that counted bytes stored instead of reading the slot called that a
/// replay of an incomplete record.
#[test]
fn a_torn_descriptor_whose_missing_bytes_already_match_is_published() {
    let op = |sector, sectors| WriteOp { sector, sectors };
    let scenario = Scenario {
        slots: 2,
        ring_units: 8,
        max_units: 2,
        writers: vec![
            vec![op(0, 2)],
            vec![op(22, 2)],
            vec![op(0, 1)],
            vec![op(0, 1), op(0, 1), op(4, 2)],
        ],
        schedule: vec![
            26300, 61793, 60614, 61453, 34286, 49437, 17542, 64380, 36677, 3874, 16353, 16639, 0,
            0, 0, 0, 130, 205, 15, 90, 0, 0, 0, 255, 245, 5, 5, 0, 0, 0, 0, 6288, 0, 0, 0, 55737,
            0, 0, 25541, 0, 0, 0, 54999, 0, 0, 0, 0, 0, 0, 0, 0, 51683, 49984, 135, 5, 250, 40711,
            65, 55, 40, 41772, 215, 4662, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 29509, 0, 0, 0, 0, 57026, 146, 0, 0, 54679, 0, 0, 0, 0, 51219, 0,
            0, 0, 0, 0, 50658, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 13443, 0, 57342, 155, 0, 5, 0, 45,
            42349, 0, 0, 0, 5424, 28454, 0, 0, 57954, 13024, 0, 0, 0, 0, 0, 0, 0, 27369, 58798, 0,
            25311, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 47588, 28932, 1565, 932, 691, 22998, 6900, 17602,
            7302, 290, 521, 0, 35311, 40777, 3397, 1851, 34855, 3618, 6383, 4958, 0, 430, 9084,
            6680, 11417, 8125, 16036, 1017, 14776, 470, 3838, 15624, 8492, 33816, 9772, 46485,
            6915, 0, 16734, 8155, 35, 6092, 7608, 8025, 1836, 8045, 26275, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3702,
        ],
        crash_point: 39132,
        landed: vec![false],
        flips: vec![],
    };
    let sim = Sim::crashed(&scenario);
    assert_eq!(sim.records[5].descriptor_written, DESCRIPTOR_BYTES - 2);
    assert!(sim.published(5));
    check(&scenario).unwrap();
}
