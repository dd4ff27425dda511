// SPDX-License-Identifier: GPL-2.0
//! rlio: small I/O loops for the QEMU tests, where spawning a process per
//! request (busybox dd) would cost more than the request itself.
//!
//! Built as a static binary with plain rustc (no crates):
//!   rustc -O -C target-feature=+crt-static tests/tools/rlio.rs -o rlio
//!
//!   rlio sync-writes DEV COUNT BS
//!       COUNT writes of BS bytes (O_DIRECT, sequential from offset 0), each
//!       followed by fdatasync: a database's commit. Prints one line:
//!       `ops=N seconds=S iops=I p50_us=A p99_us=B max_us=C`.
//!
//!   rlio numbered DEV FIRST SLOTS [COUNT]
//!       Numbered, self-describing 4 KiB blocks (see `block`) for the crash
//!       tests: block n = FIRST, FIRST+1, ... (COUNT of them, or until killed)
//!       goes to offset (n % SLOTS) * 4096 with O_DIRECT, then fdatasync;
//!       once that returns, the line `rlack N CRC` goes to /dev/kmsg (so it
//!       reaches the console before any later panic message does).
//!
//!   rlio files DIR FIRST [COUNT]
//!       Files DIR/fN for N = FIRST, ...: blocks N*16 .. N*16+K-1 with
//!       K = 1 + N % 13, written, fsync'ed, the directory fsync'ed; then
//!       `rlfile N CRC` (CRC-32 of the whole file) goes to /dev/kmsg.
//!
//!   rlio drain CTL
//!       The driver's drain ioctl (`_IO('R', 2)`) on its control device CTL
//!       (/dev/rapilog-ctl): writeback writes everything written so far and
//!       the call returns when it is durable. Prints `drain: ok` (exit 0) or
//!       `drain: ERROR` (exit 1). Unlike `rapilogctl flush` it does not read
//!       the versioned status block, so a test can drive writeback in a
//!       module of another status version (a control run).
//!
//! Block n (4096 bytes): sector j (0..8) is 16 copies of the 32 bytes of
//! splitmix64 outputs 4j..4j+3 of the stream seeded with n (little-endian);
//! then bytes 0..32 are replaced by the header `rlblk %016x %08x\n` (n and
//! the CRC-32 (zlib's) of bytes 32..4096). tests/lib/rapilog_harness/crashload.py
//! makes the same blocks on the host.

use std::alloc::{alloc_zeroed, Layout};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::process::exit;
use std::time::Instant;

const O_DIRECT: i32 = 0o40000;

fn usage() -> ! {
    eprintln!("usage: rlio sync-writes DEV COUNT BS | numbered DEV FIRST SLOTS [COUNT] | files DIR FIRST [COUNT] | drain CTL");
    exit(2)
}

fn number(s: Option<&String>) -> usize {
    s.and_then(|s| s.parse().ok()).unwrap_or_else(|| usage())
}

/// A zeroed, 4096-aligned buffer of `bs` bytes (O_DIRECT), alive for the whole run.
fn aligned_buffer(bs: usize) -> &'static mut [u8] {
    let layout = Layout::from_size_align(bs, 4096).unwrap_or_else(|_| usage());
    // SAFETY: `layout` has a non-zero size (bs > 0 checked by the callers).
    let ptr = unsafe { alloc_zeroed(layout) };
    assert!(!ptr.is_null());
    // SAFETY: `ptr` points to `bs` zeroed bytes that are never freed.
    unsafe { std::slice::from_raw_parts_mut(ptr, bs) }
}

fn open_or_exit(path: &str, opts: &mut OpenOptions) -> File {
    opts.open(path).unwrap_or_else(|e| {
        eprintln!("rlio: {path}: {e}");
        exit(1)
    })
}

const BLOCK: usize = 4096;

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// CRC-32 as zlib's `crc32(crc, data)` computes it: continues `crc`
/// (0 to start) over `data` (reflected 0xEDB88320, init and xor-out ~0).
fn crc32(crc: u32, data: &[u8]) -> u32 {
    let mut c = !crc;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0xEDB8_8320 } else { c >> 1 };
        }
    }
    !c
}

/// Fills `buf` (4096 bytes) with block n; returns its header CRC.
fn block(n: u64, buf: &mut [u8]) -> u32 {
    let mut state = n;
    for sector in buf.chunks_mut(512) {
        let mut key = [0u8; 32];
        for word in key.chunks_mut(8) {
            word.copy_from_slice(&splitmix64(&mut state).to_le_bytes());
        }
        for piece in sector.chunks_mut(32) {
            piece.copy_from_slice(&key);
        }
    }
    let crc = crc32(0, &buf[32..BLOCK]);
    buf[..32].copy_from_slice(format!("rlblk {n:016x} {crc:08x}\n").as_bytes());
    crc
}

/// One line to the kernel log: a single write(2) is a single record.
fn kmsg(kmsg: &mut File, line: &str) {
    if let Err(e) = kmsg.write_all(line.as_bytes()) {
        eprintln!("rlio: /dev/kmsg: {e}");
        exit(1);
    }
}

fn numbers(first: u64, count: Option<u64>) -> impl Iterator<Item = u64> {
    (first..).take(count.map_or(usize::MAX, |c| c as usize))
}

fn numbered(dev: &str, first: u64, slots: u64, count: Option<u64>) {
    let file = open_or_exit(dev, OpenOptions::new().write(true).custom_flags(O_DIRECT));
    let mut log = open_or_exit("/dev/kmsg", OpenOptions::new().write(true));
    let buf = aligned_buffer(BLOCK);
    for n in numbers(first, count) {
        let crc = block(n, buf);
        if let Err(e) = file.write_at(buf, (n % slots) * BLOCK as u64).and_then(|_| file.sync_data()) {
            eprintln!("rlio: {dev}: block {n}: {e}");
            exit(1);
        }
        kmsg(&mut log, &format!("rlack {n} {crc:08x}\n"));
    }
}

fn files(dir: &str, first: u64, count: Option<u64>) {
    let dirf = open_or_exit(dir, OpenOptions::new().read(true));
    let mut log = open_or_exit("/dev/kmsg", OpenOptions::new().write(true));
    let mut buf = vec![0u8; BLOCK];
    for n in numbers(first, count) {
        let path = format!("{dir}/f{n}");
        let mut f = open_or_exit(&path, OpenOptions::new().write(true).create(true).truncate(true));
        let mut crc = 0;
        for k in 0..1 + n % 13 {
            block(n * 16 + k, &mut buf);
            crc = crc32(crc, &buf);
            if let Err(e) = f.write_all(&buf) {
                eprintln!("rlio: {path}: {e}");
                exit(1);
            }
        }
        if let Err(e) = f.sync_all().and_then(|_| dirf.sync_all()) {
            eprintln!("rlio: {path}: fsync: {e}");
            exit(1);
        }
        kmsg(&mut log, &format!("rlfile {n} {crc:08x}\n"));
    }
}

/// `_IO('R', 2)`: rapilog's drain ioctl (rapilog-format/src/control.rs).
const IOCTL_DRAIN: u64 = 0x5202;

extern "C" {
    // libc's ioctl(2), linked statically with std.
    fn ioctl(fd: i32, request: u64, ...) -> i32;
}

fn drain(ctl: &str) {
    use std::os::fd::AsRawFd;
    let file = open_or_exit(ctl, OpenOptions::new().read(true));
    // SAFETY: `file` keeps the descriptor open for the call, and an `_IO`
    // request takes no argument, so the kernel reads no memory of ours.
    let rc = unsafe { ioctl(file.as_raw_fd(), IOCTL_DRAIN, 0usize) };
    if rc < 0 {
        println!("drain: {}", std::io::Error::last_os_error());
        exit(1);
    }
    println!("drain: ok");
}

fn sync_writes(dev: &str, count: usize, bs: usize) {
    let file = open_or_exit(dev, OpenOptions::new().write(true).custom_flags(O_DIRECT));
    let buf = aligned_buffer(bs);
    let mut lat = Vec::with_capacity(count);
    let start = Instant::now();
    for i in 0..count {
        buf[0] = i as u8;
        let t = Instant::now();
        if let Err(e) = file.write_at(buf, (i * bs) as u64).and_then(|_| file.sync_data()) {
            eprintln!("rlio: {dev}: write {i}: {e}");
            exit(1);
        }
        lat.push(t.elapsed().as_micros() as u64);
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: usize| lat[(lat.len() * p / 100).min(lat.len() - 1)];
    println!(
        "ops={count} seconds={secs:.3} iops={:.0} p50_us={} p99_us={} max_us={}",
        count as f64 / secs,
        pct(50),
        pct(99),
        lat[lat.len() - 1]
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("sync-writes") => {
            let dev = args.get(2).unwrap_or_else(|| usage());
            let (count, bs) = (number(args.get(3)), number(args.get(4)));
            if count == 0 || bs == 0 {
                usage();
            }
            sync_writes(dev, count, bs);
        }
        Some("numbered") => {
            let dev = args.get(2).unwrap_or_else(|| usage());
            let (first, slots) = (number(args.get(3)) as u64, number(args.get(4)) as u64);
            if slots == 0 {
                usage();
            }
            numbered(dev, first, slots, args.get(5).map(|_| number(args.get(5)) as u64));
        }
        Some("drain") => drain(args.get(2).unwrap_or_else(|| usage())),
        Some("files") => {
            let dir = args.get(2).unwrap_or_else(|| usage());
            files(dir, number(args.get(3)) as u64, args.get(4).map(|_| number(args.get(4)) as u64));
        }
        _ => usage(),
    }
}
