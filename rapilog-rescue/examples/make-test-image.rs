// SPDX-License-Identifier: GPL-2.0

//! Builds a region image and the disks around it for the QEMU tests of
//! rapilog-rescue (tests/qemu/test_rescue.py), with the format crate's test
//! helpers (records are written exactly as the kernel writer writes them).
//!
//!     cargo run -p rapilog-rescue --example make-test-image -- --out DIR \
//!         [--disk-id serial:rl-log] [--disk-bytes 16M] [--block-bytes 512] \
//!         [--region-bytes 64M] [--records 64] [--written-back 8] [--torn 2] \
//!         [--seed 1] [--corrupt-payload I]... [--corrupt-descriptor I]...
//!
//! Writes into DIR:
//! - `region.img`: the region (standard geometry), records published;
//! - `disk.img`: the log disk at the crash (filler, plus the records that
//!   writeback finished before the tail moved);
//! - `expected.img`: the disk after a correct replay, given that the
//!   records named by `--corrupt-*` (indices into the published records,
//!   0 = oldest live one) were damaged before the replay;
//! - `manifest.json`: the records, the region offsets of one byte to flip
//!   per damaged record, and the expected report.
//!
//! The damage itself is left to the test (it flips the bytes in guest RAM
//! from the host), so `region.img` is always intact.

use std::fmt::Write as _;
use std::path::PathBuf;

use rapilog_format::geometry::Geometry;
use rapilog_format::marker_area;
use rapilog_format::region_spec::parse_memsize;
use rapilog_format::test_helpers::{disk, model_disk, pattern, RegionImage, SplitMix64};

struct Args {
    out: PathBuf,
    disk_id: String,
    disk_bytes: u64,
    block_bytes: u32,
    region_bytes: u64,
    records: usize,
    written_back: usize,
    torn: usize,
    seed: u64,
    corrupt_payload: Vec<usize>,
    corrupt_descriptor: Vec<usize>,
}

fn parse() -> Args {
    let mut a = Args {
        out: PathBuf::new(),
        disk_id: "serial:rl-log".into(),
        disk_bytes: 16 << 20,
        block_bytes: 512,
        region_bytes: 64 << 20,
        records: 64,
        written_back: 8,
        torn: 2,
        seed: 1,
        corrupt_payload: Vec::new(),
        corrupt_descriptor: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    let size = |v: String| parse_memsize(v.as_bytes()).unwrap_or_else(|| panic!("bad size {v}"));
    while let Some(flag) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--out" => a.out = v().into(),
            "--disk-id" => a.disk_id = v(),
            "--disk-bytes" => a.disk_bytes = size(v()),
            "--block-bytes" => a.block_bytes = v().parse().unwrap(),
            "--region-bytes" => a.region_bytes = size(v()),
            "--records" => a.records = v().parse().unwrap(),
            "--written-back" => a.written_back = v().parse().unwrap(),
            "--torn" => a.torn = v().parse().unwrap(),
            "--seed" => a.seed = v().parse().unwrap(),
            "--corrupt-payload" => a.corrupt_payload.push(v().parse().unwrap()),
            "--corrupt-descriptor" => a.corrupt_descriptor.push(v().parse().unwrap()),
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(!a.out.as_os_str().is_empty(), "--out DIR is required");
    a
}

struct Record {
    seq: u64,
    sector: u64,
    len: usize,
    seed: u64,
    payload_offset: usize,
    descriptor_offset: usize,
    state: &'static str,
}

fn main() {
    let a = parse();
    let sectors = a.disk_bytes / 512;
    let block_sectors = u64::from(a.block_bytes / 512);
    let geometry = Geometry::standard(a.region_bytes, 128 << 10).expect("geometry");
    let identity = disk(&a.disk_id, sectors, a.block_bytes);
    let data_sectors = marker_area(&identity)
        .expect("--disk-bytes too small for the marker area")
        .data_sectors();
    let mut image = RegionImage::new(geometry, identity, 0xC0FFEE ^ a.seed);
    let mut rng = SplitMix64(a.seed);
    let mut disk_before = model_disk(sectors);
    let mut records: Vec<Record> = Vec::new();

    let sizes: [usize; 5] = [512, 4096, 8192, 65536, 1024];
    let total = a.written_back + a.records + a.torn;
    // Torn records go in the middle of the live ones, so later records must
    // still be found after them.
    let torn_at: Vec<usize> = (0..a.torn)
        .map(|i| a.written_back + (i + 1) * a.records / (a.torn + 1) + i)
        .collect();
    for i in 0..total {
        let len = sizes[rng.below(sizes.len() as u64) as usize]
            .max(a.block_bytes as usize)
            .div_ceil(a.block_bytes as usize)
            * a.block_bytes as usize;
        let len_sectors = (len / 512) as u64;
        // Mostly in the first 4 MiB, so records overlap; one at the very end
        // of the data area (the marker area after it is never a target).
        let span = (8192u64).min(data_sectors) - len_sectors;
        let mut sector = if i == total - 1 {
            data_sectors - len_sectors
        } else {
            rng.below(span + 1)
        };
        sector -= sector % block_sectors;
        let seed = a.seed << 32 | i as u64;
        let data = pattern(seed, len);
        let torn = torn_at.contains(&i);
        let r = if torn {
            image
                .append_torn(sector, &data, len / 3, 37)
                .expect("append")
        } else {
            image.append(sector, &data).expect("append")
        };
        let g = image.active().superblock.geometry;
        records.push(Record {
            seq: r.seq,
            sector,
            len,
            seed,
            payload_offset: g.payload_range(r.ring_offset, r.length).unwrap().start,
            descriptor_offset: g.descriptor_range(r.slot).unwrap().start,
            state: if torn { "torn" } else { "published" },
        });
        if i + 1 == a.written_back {
            // Writeback finished these: on the disk, then the tail moves.
            for rec in &records {
                let at = rec.sector as usize * 512;
                disk_before[at..at + rec.len].copy_from_slice(&pattern(rec.seed, rec.len));
            }
            image.advance_tail_through(r.seq);
            for rec in &mut records {
                rec.state = "written-back";
            }
        }
    }

    // The disk after a correct replay.
    let live: Vec<usize> = (0..records.len())
        .filter(|&i| records[i].state == "published")
        .collect();
    let damaged_payload: Vec<usize> = a.corrupt_payload.iter().map(|&k| live[k]).collect();
    let damaged_descriptor: Vec<usize> = a.corrupt_descriptor.iter().map(|&k| live[k]).collect();
    let mut expected = disk_before.clone();
    let (mut applied, mut bytes) = (0u64, 0u64);
    for &i in &live {
        if damaged_payload.contains(&i) || damaged_descriptor.contains(&i) {
            continue;
        }
        let rec = &records[i];
        let at = rec.sector as usize * 512;
        expected[at..at + rec.len].copy_from_slice(&pattern(rec.seed, rec.len));
        applied += 1;
        bytes += rec.len as u64;
    }

    std::fs::create_dir_all(&a.out).unwrap();
    std::fs::write(a.out.join("region.img"), image.bytes()).unwrap();
    std::fs::write(a.out.join("disk.img"), &disk_before).unwrap();
    std::fs::write(a.out.join("expected.img"), &expected).unwrap();

    let mut j = String::new();
    let sb = image.active().superblock;
    writeln!(j, "{{").unwrap();
    writeln!(j, "  \"region_bytes\": {},", a.region_bytes).unwrap();
    writeln!(j, "  \"disk_id\": \"{}\",", a.disk_id).unwrap();
    writeln!(j, "  \"disk_bytes\": {},", a.disk_bytes).unwrap();
    writeln!(j, "  \"durable_tail\": {},", sb.durable_tail).unwrap();
    writeln!(j, "  \"records\": [").unwrap();
    for (n, r) in records.iter().enumerate() {
        let comma = if n + 1 < records.len() { "," } else { "" };
        writeln!(
            j,
            "    {{\"seq\": {}, \"sector\": {}, \"len\": {}, \"payload_offset\": {}, \"descriptor_offset\": {}, \"state\": \"{}\"}}{comma}",
            r.seq, r.sector, r.len, r.payload_offset, r.descriptor_offset, r.state
        )
        .unwrap();
    }
    writeln!(j, "  ],").unwrap();
    let flips: Vec<String> = damaged_payload
        .iter()
        .map(|&i| records[i].payload_offset + records[i].len / 2)
        .chain(
            damaged_descriptor
                .iter()
                .map(|&i| records[i].descriptor_offset + 24),
        )
        .map(|o| o.to_string())
        .collect();
    writeln!(j, "  \"flip\": [{}],", flips.join(", ")).unwrap();
    writeln!(
        j,
        "  \"expect\": {{\"applied\": {applied}, \"bytes\": {bytes}, \"bad_descriptor\": {}, \"bad_payload\": {}, \"from_seq\": {}}}",
        a.torn + damaged_descriptor.len(),
        damaged_payload.len(),
        sb.durable_tail
    )
    .unwrap();
    writeln!(j, "}}").unwrap();
    std::fs::write(a.out.join("manifest.json"), j).unwrap();
    println!("{}", a.out.display());
}
