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

use std::alloc::{alloc_zeroed, Layout};
use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::process::exit;
use std::time::Instant;

const O_DIRECT: i32 = 0o40000;

fn usage() -> ! {
    eprintln!("usage: rlio sync-writes DEV COUNT BS");
    exit(2)
}

fn number(s: Option<&String>) -> usize {
    s.and_then(|s| s.parse().ok()).unwrap_or_else(|| usage())
}

fn sync_writes(dev: &str, count: usize, bs: usize) {
    let file = OpenOptions::new()
        .write(true)
        .custom_flags(O_DIRECT)
        .open(dev)
        .unwrap_or_else(|e| {
            eprintln!("rlio: {dev}: {e}");
            exit(1)
        });
    let layout = Layout::from_size_align(bs, 4096).unwrap_or_else(|_| usage());
    // SAFETY: `layout` has a non-zero size (bs > 0 checked by the caller).
    let ptr = unsafe { alloc_zeroed(layout) };
    assert!(!ptr.is_null());
    // SAFETY: `ptr` points to `bs` zeroed bytes we own for the whole run.
    let buf = unsafe { std::slice::from_raw_parts_mut(ptr, bs) };
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
        _ => usage(),
    }
}
