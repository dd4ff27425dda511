// SPDX-License-Identifier: GPL-2.0
//! Host check and native microbenchmark of the module's fused copy +
//! CRC-32C (rapilog-blk/sys/copy_crc.rs, compiled here unchanged).
//! `bench/copy_crc/run.sh` builds and runs it.
//!
//! 1. Check: the fused copy's CRC and copied bytes against a bitwise
//!    CRC-32C and the standard check value, every length 0..=9000 at
//!    several source and destination alignments, and random lengths.
//! 2. Time (ns per call, best of several rounds, data hot in cache) of:
//!    fused (this file's copy_crc), against memcpy (`rep movsb`, the
//!    kernel's memcpy with FSRM) + a three-stream `crc32` CRC that does
//!    what the kernel's crc32c_x86_3way does when the CPU has no AVX-512
//!    VPCLMULQDQ (same instruction mix; block combine by table here, by
//!    PCLMULQDQ there), and against memcpy + one stream of `crc32`.

#![allow(dead_code)]
#[path = "../../rapilog-blk/sys/copy_crc.rs"]
mod copy_crc;

use std::arch::asm;
use std::hint::black_box;
use std::time::Instant;

fn crc_bitwise(mut c: u32, data: &[u8]) -> u32 {
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = (c >> 1) ^ if c & 1 != 0 { 0x82F6_3B78 } else { 0 };
        }
    }
    c
}

fn fused(crc: u32, dst: &mut [u8], src: &[u8]) -> u32 {
    assert_eq!(dst.len(), src.len());
    // SAFETY: `src` is readable and `dst` writable for `src.len()` bytes
    // (asserted equal above), and they do not overlap (`&mut` and `&`).
    let (c, done) = unsafe { copy_crc::copy_crc(crc, dst.as_mut_ptr(), src.as_ptr(), src.len()) };
    // The module's fallback for a long remainder: memcpy + crc32c().
    dst[done..].copy_from_slice(&src[done..]);
    crc_3way(c, &dst[done..])
}

fn rep_movsb(dst: &mut [u8], src: &[u8]) {
    assert_eq!(dst.len(), src.len());
    // SAFETY: `rep movsb` copies `rcx = src.len()` bytes from `src` into
    // `dst`, both that long (asserted above) and disjoint.
    unsafe {
        asm!("rep movsb", inout("rcx") src.len() => _, inout("rsi") src.as_ptr() => _,
             inout("rdi") dst.as_mut_ptr() => _, options(nostack, preserves_flags));
    }
}

fn crc_1stream(crc: u32, data: &[u8]) -> u32 {
    let mut c = u64::from(crc);
    let mut chunks = data.chunks_exact(8);
    for w in &mut chunks {
        let v = u64::from_le_bytes(w.try_into().unwrap());
        // SAFETY: `crc32` on two registers touches no memory; the CPU has
        // SSE4.2 (`main` checks before anything runs).
        unsafe {
            asm!("crc32 {c}, {v}", c = inout(reg) c, v = in(reg) v, options(nostack, pure, nomem))
        };
    }
    crc_bitwise(c as u32, chunks.remainder())
}

/// Three streams of crc32 over STREAM-byte thirds, tables to combine:
/// the kernel's crc32c_x86_3way instruction mix, without the copy.
fn crc_3way(crc: u32, data: &[u8]) -> u32 {
    const N: usize = copy_crc::STREAM;
    let mut crc = crc;
    let mut blocks = data.chunks_exact(3 * N);
    for blk in &mut blocks {
        let (mut a, mut b, mut c) = (u64::from(crc), 0u64, 0u64);
        let p = blk.as_ptr();
        let mut i = 0;
        while i < N {
            // SAFETY: `i + 8 < N` and the block is `3 * N` bytes, so every
            // qword read lies inside `blk`; the asm only reads.
            unsafe {
                asm!("crc32 {a}, qword ptr [{p}]", "crc32 {b}, qword ptr [{p} + {n}]",
                     "crc32 {c}, qword ptr [{p} + {n2}]",
                     "crc32 {a}, qword ptr [{p} + 8]", "crc32 {b}, qword ptr [{p} + {n} + 8]",
                     "crc32 {c}, qword ptr [{p} + {n2} + 8]",
                     p = in(reg) p.add(i), n = const N, n2 = const 2 * N,
                     a = inout(reg) a, b = inout(reg) b, c = inout(reg) c, options(nostack, readonly));
            }
            i += 16;
        }
        crc = copy_crc::combine(a as u32, b as u32, c as u32);
    }
    crc_1stream(crc, blocks.remainder())
}

fn check() {
    let mut rng = 0x1234_5678_9abc_def0u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let src: Vec<u8> = (0..80_000).map(|_| next() as u8).collect();
    // Standard check value: CRC-32C("123456789") = 0xE3069283.
    let mut d = [0u8; 9];
    assert_eq!(!fused(!0, &mut d, b"123456789"), 0xE306_9283);
    let mut dst = vec![0u8; 80_000];
    let mut n = 0;
    for (so, dof) in [(0, 0), (1, 3), (7, 0), (0, 5), (4096 - 512, 8)] {
        for len in (0..=9000).chain([12240, 16384, 65536, 65536 + 513, 4080 * 3 + 511]) {
            let s = &src[so..so + len];
            dst[dof..dof + len].fill(0);
            let got = fused(!0, &mut dst[dof..dof + len], s);
            assert_eq!(
                got,
                crc_bitwise(!0, s),
                "crc, len {len}, offsets {so} {dof}"
            );
            assert_eq!(
                &dst[dof..dof + len],
                s,
                "copy, len {len}, offsets {so} {dof}"
            );
            n += 1;
        }
    }
    for _ in 0..2000 {
        let len = (next() % 70_000) as usize;
        let so = (next() % 5000) as usize;
        let s = &src[so..so + len];
        let got = fused(next() as u32, &mut dst[..len], s);
        let _ = got;
        let seed = 0xdead_beef;
        assert_eq!(fused(seed, &mut dst[..len], s), crc_bitwise(seed, s));
        assert_eq!(&dst[..len], s);
        n += 1;
    }
    for len in 0..600 {
        let s = &src[3..3 + len];
        // SAFETY: `s` is readable for `len` bytes.
        let got = unsafe { copy_crc::crc_one_stream(!0, s.as_ptr(), len) };
        assert_eq!(got, crc_bitwise(!0, s), "crc_one_stream, len {len}");
        n += 1;
    }
    println!("check: {n} copies and checksums, CRC-32C and bytes equal to the bitwise reference");
}

fn time(name: &str, len: usize, mut f: impl FnMut() -> u32) -> f64 {
    let iters = (4_000_000 / len).max(200);
    let mut best = f64::MAX;
    for _ in 0..15 {
        let t = Instant::now();
        for _ in 0..iters {
            black_box(f());
        }
        best = best.min(t.elapsed().as_nanos() as f64 / iters as f64);
    }
    println!(
        "  {name:<42} {len:>6} B: {best:8.1} ns ({:5.2} B/ns)",
        len as f64 / best
    );
    best
}

fn main() {
    // Everything here executes `crc32` (SSE4.2), as the module does only
    // after `rapilog_cpu_copy_crc` said the CPU has it.
    if !std::is_x86_feature_detected!("sse4.2") {
        println!("no SSE4.2: nothing to check or time");
        return;
    }
    check();
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpu
        .lines()
        .find(|l| l.starts_with("model name"))
        .unwrap_or("?");
    println!("timing, data hot in cache, best of 15 rounds ({model})");
    for len in [4096usize, 65536] {
        let src: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        let mut dst = vec![0u8; len];
        let a = time("memcpy (rep movsb) + crc32 3-way", len, || {
            rep_movsb(&mut dst, black_box(&src));
            crc_3way(0, &dst)
        });
        let b = time("fused copy + crc32 3-way (copy_crc)", len, || {
            // SAFETY: `src` and `dst` are both `len` bytes long and disjoint.
            let (c, _) =
                unsafe { copy_crc::copy_crc(0, dst.as_mut_ptr(), black_box(src.as_ptr()), len) };
            c
        });
        time("memcpy (rep movsb) + crc32 1 stream", len, || {
            rep_movsb(&mut dst, black_box(&src));
            crc_1stream(0, &dst)
        });
        time("memcpy (rep movsb) alone", len, || {
            rep_movsb(&mut dst, black_box(&src));
            dst[0] as u32
        });
        time("crc32 3-way alone", len, || crc_3way(0, black_box(&src)));
        println!("  fused / (memcpy + 3-way) at {len} B: {:.2}", b / a);
    }
}
