// SPDX-License-Identifier: GPL-2.0

//! The fuzz target's entry point, run without cargo-fuzz: the committed seed
//! corpus, then 2 x 125,000 inputs mutated from it by a seeded PRNG
//! (reproducible; set `RAPILOG_FUZZ_ITERATIONS` per stream and
//! `RAPILOG_FUZZ_SEED` for longer or different runs). The mutator knows the
//! field layout, so it writes boundary values exactly where the parser looks,
//! and the entry point's mode byte reseals checksums so mutations get past
//! them.

use std::path::PathBuf;

use rapilog_format::descriptor::fields as descriptor_fields;
use rapilog_format::field::Field;
use rapilog_format::superblock::fields as superblock_fields;
use rapilog_format::test_helpers::{fuzz_region, seed_images, SplitMix64};
use rapilog_format::{ActiveSuperblock, SoftwareCrc32c, SUPERBLOCK_BYTES};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

fn corpus() -> Vec<(String, Vec<u8>)> {
    let mut seeds: Vec<_> = std::fs::read_dir(corpus_dir())
        .expect("tests/corpus")
        .map(|entry| {
            let path = entry.unwrap().path();
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&path).unwrap(),
            )
        })
        .collect();
    seeds.sort();
    seeds
}

/// The shared generator, with the index-sized `below` this file needs.
struct Rng(SplitMix64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    fn below(&mut self, n: usize) -> usize {
        self.0.below(n as u64) as usize
    }
}

/// Values that sit on the boundaries the parser checks.
fn interesting(rng: &mut Rng, len: usize) -> u64 {
    const VALUES: [u64; 16] = [
        0,
        1,
        2,
        3,
        4,
        7,
        63,
        64,
        511,
        512,
        513,
        1024,
        4096,
        0x7FFF_FFFF,
        u32::MAX as u64,
        u64::MAX,
    ];
    match rng.below(4) {
        0 => VALUES[rng.below(VALUES.len())],
        1 => u64::MAX - rng.below(1024) as u64,
        2 => (len as u64 + rng.below(1100) as u64).wrapping_sub(550),
        _ => rng.next_u64() % 8192,
    }
}

/// Where fields are: both superblock copies, and the descriptors of the
/// compact test geometries (table at 1024).
fn field_target(rng: &mut Rng) -> (usize, Field) {
    if rng.below(2) == 0 {
        let fields = superblock_fields::ALL;
        let copy = rng.below(2) * SUPERBLOCK_BYTES;
        (copy, fields[rng.below(fields.len())])
    } else {
        let fields = descriptor_fields::ALL;
        (1024 + 64 * rng.below(8), fields[rng.below(fields.len())])
    }
}

fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(6) {
        let len = input.len().max(1);
        match rng.below(8) {
            0 | 1 => {
                let bit = rng.below(len * 8);
                if let Some(byte) = input.get_mut(bit / 8) {
                    *byte ^= 1 << (bit % 8);
                }
            }
            2 => {
                let at = rng.below(len);
                if let Some(byte) = input.get_mut(at) {
                    *byte = rng.next_u64() as u8;
                }
            }
            3 | 4 => {
                // +1: the input's first byte is the mode byte.
                let (base, field) = field_target(rng);
                let value = interesting(rng, input.len()).to_le_bytes();
                let start = 1 + base + field.offset;
                let n = field.size.min(8);
                if let Some(dst) = input.get_mut(start..start + n) {
                    dst.copy_from_slice(&value[..n]);
                }
            }
            5 => {
                let cut = rng.below(len + 1);
                input.truncate(cut);
            }
            6 => {
                // Duplicate a 64-byte chunk elsewhere (e.g. a descriptor into another slot).
                let from = rng.below(len);
                let to = rng.below(len);
                let n = 64.min(input.len().saturating_sub(from.max(to)));
                let chunk: Vec<u8> = input[from..from + n].to_vec();
                input[to..to + n].copy_from_slice(&chunk);
            }
            _ => {
                let extra = rng.below(700);
                input.extend((0..extra).map(|_| rng.next_u64() as u8));
            }
        }
    }
    if let Some(mode) = input.first_mut() {
        // Mostly reseal everything, so mutations reach the deep checks.
        *mode = if rng.below(3) == 0 {
            rng.next_u64() as u8
        } else {
            0x07 | (rng.below(2) as u8) << 3
        };
    }
}

#[test]
fn committed_corpus_is_current() {
    let seeds = corpus();
    assert!(seeds.len() >= 4, "corpus missing");
    let total: usize = seeds.iter().map(|(_, bytes)| bytes.len()).sum();
    assert!(total < 32 * 1024, "corpus grew to {total} bytes");
    // Every seed must still be a valid region, or fuzzing starts from
    // garbage after a format change: regenerate with
    // `cargo test -p rapilog-format --test fuzz_corpus -- --ignored`.
    for (name, bytes) in &seeds {
        assert!(
            ActiveSuperblock::load(&bytes[1..], SoftwareCrc32c).is_ok(),
            "stale seed {name}"
        );
    }
}

#[test]
fn corpus_replays() {
    for (_, bytes) in corpus() {
        for mode in 0..16u8 {
            let mut input = bytes.clone();
            input[0] = mode;
            fuzz_region(&input);
        }
    }
}

/// Runs `iterations` mutated inputs from PRNG seed `seed`.
fn fuzz(default_seed: u64) {
    let iterations: usize = std::env::var("RAPILOG_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(125_000);
    let seed = std::env::var("RAPILOG_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
        ^ default_seed;
    let seeds: Vec<Vec<u8>> = corpus().into_iter().map(|(_, bytes)| bytes).collect();
    let mut rng = Rng(SplitMix64(seed));
    for iteration in 0..iterations {
        let mut input = if rng.below(50) == 0 {
            // Now and then, pure noise.
            (0..rng.below(3000)).map(|_| rng.next_u64() as u8).collect()
        } else {
            seeds[rng.below(seeds.len())].clone()
        };
        mutate(&mut rng, &mut input);
        let result = std::panic::catch_unwind(|| fuzz_region(&input));
        if result.is_err() {
            let path = std::env::temp_dir().join(format!("rapilog-fuzz-crash-{seed}-{iteration}"));
            std::fs::write(&path, &input).unwrap();
            panic!(
                "iteration {iteration} broke the planner; input saved to {}",
                path.display()
            );
        }
    }
}

// Two streams, so the test harness runs them on two cores.
#[test]
fn mutated_inputs_never_break_the_planner_a() {
    fuzz(0x5EED_F022_0000_000A);
}

#[test]
fn mutated_inputs_never_break_the_planner_b() {
    fuzz(0x5EED_F022_0000_000B);
}

/// Rewrites `tests/corpus/` from the test helpers' seed images.
#[test]
#[ignore = "writes tests/corpus; run by hand after a format change"]
fn regenerate_corpus() {
    let dir = corpus_dir();
    std::fs::create_dir_all(&dir).unwrap();
    for (name, image) in seed_images() {
        let mut input = vec![0u8];
        input.extend_from_slice(&image);
        std::fs::write(dir.join(format!("{name}.bin")), input).unwrap();
    }
}
