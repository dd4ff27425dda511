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
    for (so, len) in (0..=9000).map(|l| (l % 7, l)).chain([(0, 65536), (5, 70_000)]) {
        let s = &src[so..so + len];
        // SAFETY: `s` is readable for `len` bytes; SSE4.2 checked in main.
        let (got, done) = unsafe { copy_crc::crc(!0, s.as_ptr(), len) };
        let got = crc_bitwise(got, &s[done..]);
        assert_eq!(got, crc_bitwise(!0, s), "crc, len {len}, offset {so}");
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

/// Writeback's case: the region's bytes and the bounce pages are not in
/// the cache (a drain copies megabytes). Page by page from a 64 MiB source
/// into an 8 MiB destination (writeback's eight 1 MiB buffers, reused),
/// best of 5 passes: the three ways of checking what a disk write carries
/// against (the old way) checking the region before copying it.
fn cold() {
    const SRC: usize = 64 << 20;
    const DST: usize = 8 << 20;
    let src: Vec<u8> = (0..SRC).map(|i| (i * 7 + i / 4096) as u8).collect();
    let mut dst = vec![0u8; DST];
    let mut run = |name: &str, f: &mut dyn FnMut(&mut [u8], &[u8]) -> u32| {
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            let mut acc = 0u32;
            for (k, s) in src.chunks(4096).enumerate() {
                let at = (k * 4096) % DST;
                acc ^= f(&mut dst[at..at + 4096], black_box(s));
            }
            black_box(acc);
            best = best.min(t.elapsed().as_nanos() as f64);
        }
        println!(
            "  {name:<52} {:6.2} B/ns ({:.0} ns per 4 KiB)",
            SRC as f64 / best,
            best / (SRC / 4096) as f64
        );
        best
    };
    println!("cold: 64 MiB, page by page into 8 MiB of bounce pages, best of 5 passes");
    let old = run("check the source, then memcpy (before)", &mut |d, s| {
        let c = crc_3way(0, s);
        rep_movsb(d, s);
        c
    });
    let fused = run("fused copy + CRC of the copy (copy_crc)", &mut |d, s| {
        // SAFETY: `s` and `d` are both 4096 bytes long and disjoint.
        unsafe { copy_crc::copy_crc(0, d.as_mut_ptr(), s.as_ptr(), s.len()) }.0
    });
    let two = run("memcpy, then CRC of the copy (copy_crc::crc)", &mut |d, s| {
        rep_movsb(d, s);
        // SAFETY: `d` is readable for its 4096 bytes.
        let (c, done) = unsafe { copy_crc::crc(0, d.as_ptr(), d.len()) };
        crc_1stream(c, &d[done..])
    });
    println!(
        "  fused / before: {:.2}; memcpy then CRC of the copy / before: {:.2}",
        fused / old,
        two / old
    );
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
    if std::env::args().any(|a| a == "--cold") {
        cold();
        return;
    }
    for len in [4096usize, 65536, 1 << 20] {
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
        let c = time("fused, page by page (as the module)", len, || {
            let mut crc = 0;
            for (d, s) in dst.chunks_mut(4096).zip(black_box(&src).chunks(4096)) {
                // SAFETY: `s` and `d` are both `s.len()` bytes long and disjoint.
                crc = unsafe { copy_crc::copy_crc(crc, d.as_mut_ptr(), s.as_ptr(), s.len()) }.0;
            }
            crc
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
        println!(
            "  fused / (memcpy + 3-way) at {len} B: {:.2}; page by page: {:.2}",
            b / a,
            c / a
        );
    }
}
