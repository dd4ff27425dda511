// SPDX-License-Identifier: GPL-2.0

//! One pass over a write's payload: copy it into the region and compute its
//! CRC-32C at once, with the SSE4.2 `crc32` instruction in three
//! interleaved streams.
//!
//! **Why.** Copying with `memcpy` and then checksumming the copy reads the
//! payload twice. On a CPU whose best CRC-32C is the `crc32` instruction
//! (no AVX-512 VPCLMULQDQ: what the kernel's `crc32c()` then runs is
//! `crc32c_x86_3way`, three streams of `crc32` combined with PCLMULQDQ), the
//! checksum's three streams of one `crc32` per 8 bytes per cycle set the
//! pace either way, and loading each word once, storing it and feeding the
//! same register to `crc32` adds the copy for the price of its stores. The
//! CRC is computed from the very register that was stored, so it is the
//! CRC of what landed in the region, as the two-pass version computed it
//! from the region. Measured natively (bench/copy_crc/): not slower than
//! `memcpy` + the same three-stream CRC (bench/README.md). On a CPU with
//! the kernel's AVX-512 CRC, `sys::bio` keeps `memcpy` + `crc32c()`, which
//! is faster there ([`usable`] decides, from the CPU's features).
//!
//! **How.** A block of [`BLOCK`] = 3 x [`STREAM`] bytes (4,080: a 4 KiB
//! page's segment holds one) is three streams, each one register of CRC:
//! stream A from the running CRC, B and C from 0. By linearity of the raw
//! CRC register update `f`, `f(c, A || B || C) = shift(f(c, A), 2 STREAM) ^
//! shift(f(0, B), STREAM) ^ f(0, C)`, where `shift(x, n)` is `f(x, n zero
//! bytes)`, a linear map of `x` that [`SHIFT_1`] and [`SHIFT_2`] tabulate
//! byte by byte (built at compile time). Less than a block: one stream, and
//! from [`ONE_STREAM_MAX`] bytes on the caller uses `memcpy` + `crc32c()`
//! instead (one stream would be slower than the kernel's three there).
//!
//! Values are the raw register (no pre- or post-inversion), like the
//! kernel's `crc32c()`. This file uses nothing of the kernel: the host
//! test and microbenchmark (bench/copy_crc/) compile it too.

use core::arch::asm;

/// Bytes per stream: 170 words.
pub(crate) const STREAM: usize = 1360;
/// Bytes per three-stream block.
pub(crate) const BLOCK: usize = 3 * STREAM;
/// A remainder this long or longer is not done in one stream.
pub(crate) const ONE_STREAM_MAX: usize = 512;

/// The reflected CRC-32C polynomial (Castagnoli).
const POLY: u32 = 0x82F6_3B78;

/// The raw register times x (one zero bit fed in).
const fn mulx(c: u32) -> u32 {
    (c >> 1) ^ if c & 1 != 0 { POLY } else { 0 }
}

/// Tables of `x -> shift(x, n)`: entry `[i][v]` is the shift of byte `i`
/// of the register holding `v` (the map is linear: XOR the four).
const fn shift_tables(n: usize) -> [[u32; 256]; 4] {
    // basis[k] = shift(1 << k, n). Bit 31 is x^0: feed it 8n zero bits;
    // 1 << (k - 1) is (1 << k) times x in the reflected representation.
    let mut basis = [0u32; 32];
    let mut c = 1u32 << 31;
    let mut i = 0;
    while i < 8 * n {
        c = mulx(c);
        i += 1;
    }
    basis[31] = c;
    let mut k = 31;
    while k > 0 {
        basis[k - 1] = mulx(basis[k]);
        k -= 1;
    }
    let mut t = [[0u32; 256]; 4];
    let mut byte = 0;
    while byte < 4 {
        let mut v: usize = 1;
        while v < 256 {
            // The lowest set bit plus the entry without it.
            let low = v & v.wrapping_neg();
            t[byte][v] = t[byte][v & (v - 1)] ^ basis[8 * byte + low.trailing_zeros() as usize];
            v += 1;
        }
        byte += 1;
    }
    t
}

/// `shift(x, STREAM)`.
static SHIFT_1: [[u32; 256]; 4] = shift_tables(STREAM);
/// `shift(x, 2 STREAM)`.
static SHIFT_2: [[u32; 256]; 4] = shift_tables(2 * STREAM);

fn shift(t: &[[u32; 256]; 4], x: u32) -> u32 {
    t[0][(x & 0xff) as usize]
        ^ t[1][((x >> 8) & 0xff) as usize]
        ^ t[2][((x >> 16) & 0xff) as usize]
        ^ t[3][(x >> 24) as usize]
}

/// Copies [`BLOCK`] bytes from `src` to `dst` and returns the raw CRC-32C
/// register after them, from `crc`.
///
/// # Safety
///
/// The CPU has SSE4.2; `src` is valid for reads and `dst` for writes of
/// [`BLOCK`] bytes (any alignment), and the two do not overlap.
unsafe fn block(crc: u32, dst: *mut u8, src: *const u8) -> u32 {
    let (mut a, mut b, mut c) = (u64::from(crc), 0u64, 0u64);
    let mut s = src;
    let mut d = dst;
    let end = src.wrapping_add(STREAM);
    while s < end {
        // Two words of each stream per round (STREAM is a multiple of 16).
        // The loads, stores and CRC steps are one asm block, so that the
        // compiler cannot turn the copy back into a memcpy call.
        // SAFETY: `s` and `d` run over the first stream, 16 bytes at a
        // time; the other two are STREAM and 2 STREAM further, all inside
        // the caller's BLOCK bytes; `crc32` needs SSE4.2 (the caller's).
        unsafe {
            asm!(
                "mov {x}, qword ptr [{s}]",
                "mov {y}, qword ptr [{s} + {n}]",
                "mov {z}, qword ptr [{s} + {n2}]",
                "mov qword ptr [{d}], {x}",
                "mov qword ptr [{d} + {n}], {y}",
                "mov qword ptr [{d} + {n2}], {z}",
                "crc32 {a}, {x}",
                "crc32 {b}, {y}",
                "crc32 {c}, {z}",
                "mov {x}, qword ptr [{s} + 8]",
                "mov {y}, qword ptr [{s} + {n} + 8]",
                "mov {z}, qword ptr [{s} + {n2} + 8]",
                "mov qword ptr [{d} + 8], {x}",
                "mov qword ptr [{d} + {n} + 8], {y}",
                "mov qword ptr [{d} + {n2} + 8], {z}",
                "crc32 {a}, {x}",
                "crc32 {b}, {y}",
                "crc32 {c}, {z}",
                s = in(reg) s,
                d = in(reg) d,
                n = const STREAM,
                n2 = const 2 * STREAM,
                x = out(reg) _,
                y = out(reg) _,
                z = out(reg) _,
                a = inout(reg) a,
                b = inout(reg) b,
                c = inout(reg) c,
                options(nostack, preserves_flags),
            );
        }
        s = s.wrapping_add(16);
        d = d.wrapping_add(16);
    }
    // `crc32` with a 64-bit operand leaves the upper half zero.
    combine(a as u32, b as u32, c as u32)
}

/// Returns the raw CRC-32C register after [`BLOCK`] bytes at `src`, from
/// `crc`, in three streams: [`block`] without the copy.
///
/// # Safety
///
/// The CPU has SSE4.2; `src` is valid for reads of [`BLOCK`] bytes.
unsafe fn block_crc(crc: u32, src: *const u8) -> u32 {
    let (mut a, mut b, mut c) = (u64::from(crc), 0u64, 0u64);
    let mut s = src;
    let end = src.wrapping_add(STREAM);
    while s < end {
        // SAFETY: `s` runs over the first stream, 16 bytes at a time
        // (STREAM is a multiple of 16); the other two are STREAM and 2
        // STREAM further, all inside the caller's BLOCK bytes; `crc32`
        // needs SSE4.2 (the caller's).
        unsafe {
            asm!(
                "crc32 {a}, qword ptr [{s}]",
                "crc32 {b}, qword ptr [{s} + {n}]",
                "crc32 {c}, qword ptr [{s} + {n2}]",
                "crc32 {a}, qword ptr [{s} + 8]",
                "crc32 {b}, qword ptr [{s} + {n} + 8]",
                "crc32 {c}, qword ptr [{s} + {n2} + 8]",
                s = in(reg) s,
                n = const STREAM,
                n2 = const 2 * STREAM,
                a = inout(reg) a,
                b = inout(reg) b,
                c = inout(reg) c,
                options(nostack, preserves_flags, readonly),
            );
        }
        s = s.wrapping_add(16);
    }
    combine(a as u32, b as u32, c as u32)
}

/// The raw CRC register after a block whose three streams ended with
/// registers `a` (started from the running CRC), `b` and `c` (from 0).
pub(crate) fn combine(a: u32, b: u32, c: u32) -> u32 {
    shift(&SHIFT_2, a) ^ shift(&SHIFT_1, b) ^ c
}

/// Copies `len` bytes in one stream and returns the raw CRC-32C register
/// after them, from `crc`.
///
/// # Safety
///
/// As [`block`], for `len` bytes.
unsafe fn one_stream(crc: u32, dst: *mut u8, src: *const u8, len: usize) -> u32 {
    let mut c = u64::from(crc);
    let mut done = 0;
    while done + 8 <= len {
        // SAFETY: `done + 8 <= len`: inside both buffers (the caller's).
        unsafe {
            asm!(
                "mov {x}, qword ptr [{s}]",
                "mov qword ptr [{d}], {x}",
                "crc32 {c}, {x}",
                s = in(reg) src.add(done),
                d = in(reg) dst.add(done),
                x = out(reg) _,
                c = inout(reg) c,
                options(nostack, preserves_flags),
            );
        }
        done += 8;
    }
    let mut c = c as u32;
    while done < len {
        // SAFETY: `done < len`: inside both buffers.
        unsafe {
            asm!(
                "mov {x}, byte ptr [{s}]",
                "mov byte ptr [{d}], {x}",
                "crc32 {c:e}, {x}",
                s = in(reg) src.add(done),
                d = in(reg) dst.add(done),
                x = out(reg_byte) _,
                c = inout(reg) c,
                options(nostack, preserves_flags),
            );
        }
        done += 1;
    }
    c
}

/// The raw CRC-32C register after `len` bytes at `src`, from `crc`, in one
/// stream: what the kernel's `crc32c()` runs below 512 bytes, inline (a
/// descriptor, a superblock).
///
/// # Safety
///
/// The CPU has SSE4.2; `src` is valid for reads of `len` bytes.
pub(crate) unsafe fn crc_one_stream(crc: u32, src: *const u8, len: usize) -> u32 {
    let mut c = u64::from(crc);
    let mut done = 0;
    while done + 8 <= len {
        // SAFETY: `done + 8 <= len`: inside the buffer (the caller's).
        unsafe {
            asm!(
                "crc32 {c}, qword ptr [{s}]",
                s = in(reg) src.add(done),
                c = inout(reg) c,
                options(nostack, preserves_flags, readonly),
            );
        }
        done += 8;
    }
    let mut c = c as u32;
    while done < len {
        // SAFETY: `done < len`: inside the buffer.
        unsafe {
            asm!(
                "crc32 {c:e}, byte ptr [{s}]",
                s = in(reg) src.add(done),
                c = inout(reg) c,
                options(nostack, preserves_flags, readonly),
            );
        }
        done += 1;
    }
    c
}

/// Copies as much of `len` bytes as this file does well: whole blocks,
/// then the rest in one stream if it is shorter than [`ONE_STREAM_MAX`].
/// Returns the raw CRC-32C register after the bytes copied, from `crc`,
/// and how many were copied; the caller copies and checksums the rest
/// (`memcpy` + `crc32c()`).
///
/// # Safety
///
/// The CPU has SSE4.2; `src` is valid for reads and `dst` for writes of
/// `len` bytes (any alignment), and the two do not overlap.
pub(crate) unsafe fn copy_crc(crc: u32, dst: *mut u8, src: *const u8, len: usize) -> (u32, usize) {
    let mut crc = crc;
    let mut done = 0;
    while len - done >= BLOCK {
        // SAFETY: BLOCK bytes from `done` are inside both buffers.
        crc = unsafe { block(crc, dst.add(done), src.add(done)) };
        done += BLOCK;
    }
    if len - done < ONE_STREAM_MAX {
        // SAFETY: The rest is inside both buffers.
        crc = unsafe { one_stream(crc, dst.add(done), src.add(done), len - done) };
        done = len;
    }
    (crc, done)
}

/// Checksums as much of `len` bytes at `src` as this file does well, as
/// [`copy_crc`] copies: whole blocks in three streams, then the rest in one
/// stream if it is shorter than [`ONE_STREAM_MAX`]. Returns the raw CRC-32C
/// register after the bytes checksummed, from `crc`, and how many they
/// were; the caller checksums the rest (`crc32c()`). For a page just
/// copied, still in the cache: inline, without the call and the FPU
/// section of the kernel's `crc32c()`, per page.
///
/// # Safety
///
/// The CPU has SSE4.2; `src` is valid for reads of `len` bytes.
pub(crate) unsafe fn crc(crc: u32, src: *const u8, len: usize) -> (u32, usize) {
    let mut crc = crc;
    let mut done = 0;
    while len - done >= BLOCK {
        // SAFETY: BLOCK bytes from `done` are inside the buffer.
        crc = unsafe { block_crc(crc, src.add(done)) };
        done += BLOCK;
    }
    if len - done < ONE_STREAM_MAX {
        // SAFETY: The rest is inside the buffer.
        crc = unsafe { crc_one_stream(crc, src.add(done), len - done) };
        done = len;
    }
    (crc, done)
}
