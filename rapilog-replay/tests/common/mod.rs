// SPDX-License-Identifier: GPL-2.0

//! Helpers shared by the integration tests: temporary directories, region
//! images with a writer-side model of the disk, and a fake sysfs tree.

#![allow(dead_code)] // each test file uses a different subset

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rapilog_format::test_helpers::{compact_geometry, disk, model_disk, pattern, RegionImage};
use rapilog_format::DESCRIPTOR_BYTES;

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "rapilog-replay-test-{tag}-{}-{n}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

pub const DISK_ID: &str = "serial:rl-log";
pub const DISK_SECTORS: u64 = 256;

/// A region for `DISK_ID` (256 sectors), 8 slots, 8 KiB ring, records up
/// to 2 KiB, plus the disk as the writer expects it after a full replay.
pub struct Scenario {
    pub image: RegionImage,
    /// The disk before the crash: model filler, plus every record written
    /// back before the tail moved.
    pub disk_before: Vec<u8>,
    /// The disk the writer promised: `disk_before` plus every published
    /// record at or past the tail, in sequence order.
    pub expected: Vec<u8>,
}

impl Scenario {
    pub fn new(block_bytes: u32) -> Self {
        Self::with(DISK_ID, DISK_SECTORS, block_bytes)
    }

    pub fn with(id: &str, sectors: u64, block_bytes: u32) -> Self {
        let max = 4 * block_bytes;
        let image = RegionImage::new(
            compact_geometry(8, u64::from(max) * 4, max),
            disk(id, sectors, block_bytes),
            0xE90C,
        );
        let disk_before = model_disk(sectors);
        Self {
            image,
            expected: disk_before.clone(),
            disk_before,
        }
    }

    /// Publishes a record of `len` bytes (filler seeded by `seed`) for
    /// `sector`; the writer acknowledged it, so replay must deliver it.
    pub fn write(&mut self, sector: u64, len: usize, seed: u64) -> u64 {
        let data = pattern(seed, len);
        let r = self.image.append(sector, &data).unwrap();
        let at = sector as usize * 512;
        self.expected[at..at + len].copy_from_slice(&data);
        r.seq
    }

    /// A record caught by the crash: part of the payload and `descriptor`
    /// bytes of the descriptor written. Never acknowledged.
    pub fn torn(&mut self, sector: u64, len: usize, seed: u64, descriptor: usize) -> u64 {
        assert!(descriptor < DESCRIPTOR_BYTES);
        let data = pattern(seed, len);
        self.image
            .append_torn(sector, &data, len / 2, descriptor)
            .unwrap()
            .seq
    }

    /// Writeback of everything up to `seq`: onto the "before" disk, then
    /// the tail moves.
    pub fn write_back_through(&mut self, seq: u64) {
        self.disk_before = self.expected.clone();
        self.image.advance_tail_through(seq);
    }

    /// Byte offset in the region of the payload of the live record `seq`.
    pub fn payload_offset(&self, seq: u64) -> usize {
        let r = self.image.live().iter().find(|r| r.seq == seq).unwrap();
        let g = self.image.active().superblock.geometry;
        g.payload_range(r.ring_offset, r.length).unwrap().start
    }

    /// Byte offset in the region of the descriptor of the live record `seq`.
    pub fn descriptor_offset(&self, seq: u64) -> usize {
        let g = self.image.active().superblock.geometry;
        g.descriptor_range(g.slot_of(seq)).unwrap().start
    }
}

/// A standard mix: overlapping records, a torn one in the middle, a record
/// already written back.
pub fn mixed() -> (Scenario, Vec<(u64, usize)>) {
    let mut s = Scenario::new(512);
    let first = s.write(0, 1024, 1);
    s.write_back_through(first);
    s.write(4, 2048, 2);
    s.write(6, 512, 3); // overlaps the previous one: newer wins
    s.torn(20, 1024, 4, 40);
    s.write(30, 512, 5);
    // The last sector of the data area: the disk's last 8 sectors are its
    // marker area.
    s.write(247, 512, 6);
    // (sector, bytes) ranges the replay writes
    (s, vec![(4, 2048), (6, 512), (30, 512), (247, 512)])
}

/// A fake sysfs tree under a temporary directory.
pub struct FakeSysfs {
    pub dir: TempDir,
}

impl FakeSysfs {
    pub fn new() -> Self {
        let dir = TempDir::new("sysfs");
        fs::create_dir_all(dir.join("block")).unwrap();
        Self { dir }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn put(&self, rel: &str, content: &[u8]) {
        let p = self.dir.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    /// A whole disk `block/NAME` with dev, size, logical block size.
    pub fn disk(&self, name: &str, dev: (u32, u32), sectors: u64, block_bytes: u32) {
        self.put(
            &format!("block/{name}/dev"),
            format!("{}:{}\n", dev.0, dev.1).as_bytes(),
        );
        self.put(
            &format!("block/{name}/size"),
            format!("{sectors}\n").as_bytes(),
        );
        self.put(&format!("block/{name}/ro"), b"0\n");
        self.put(
            &format!("block/{name}/queue/logical_block_size"),
            format!("{block_bytes}\n").as_bytes(),
        );
    }

    /// A partition `block/DISK/PART` numbered `number`.
    pub fn partition(&self, disk: &str, part: &str, number: u32, dev: (u32, u32), sectors: u64) {
        let base = format!("block/{disk}/{part}");
        self.put(
            &format!("{base}/dev"),
            format!("{}:{}\n", dev.0, dev.1).as_bytes(),
        );
        self.put(&format!("{base}/size"), format!("{sectors}\n").as_bytes());
        self.put(
            &format!("{base}/partition"),
            format!("{number}\n").as_bytes(),
        );
    }
}
