// SPDX-License-Identifier: GPL-2.0

//! Counters of what the device did and gauges of its state, for the unload
//! report and the control interface. Updated with relaxed atomics: they are
//! statistics, ordered by nothing.

#![deny(unsafe_code)]

use core::fmt;

use kernel::sync::atomic::{Atomic, Relaxed};

macro_rules! counters {
    ($($name:ident: $doc:literal,)*) => {
        /// The counters.
        pub(crate) struct Stats {
            $(#[doc = $doc] pub(crate) $name: Atomic<u64>,)*
        }

        impl Stats {
            /// All zero.
            pub(crate) const fn new() -> Self {
                Self { $($name: Atomic::new(0),)* }
            }
        }
    };
}

counters! {
    writes: "Write bios completed from the region.",
    write_bytes: "Bytes of those writes.",
    flushes: "Flush and FUA requests absorbed by the region.",
    throttled: "Writes that waited for ring space (back-pressure).",
    reads_region: "Read pieces served from the region.",
    reads_disk: "Read pieces passed to the backing disk.",
    writes_through: "Write bios passed to the backing disk after an orderly stop's drain.",
    wb_ios: "Disk writes issued by writeback (merged records).",
    wb_bytes: "Bytes written back.",
    wb_records: "Records written back.",
    wb_flushes: "Cache flushes of the backing disk.",
    disk_errors: "Failed disk writes or flushes (retried).",
    write_errors: "Write bios failed (internal errors).",
    wb_busy_ns: "Time writeback spent writing and flushing the disk, ns.",
    last_disk_errno: "Gauge: errno of the last failed disk operation (0: none yet).",
    wb_retrying: "Gauge: 1 while writeback retries a failed disk operation.",
    bad_records: "Records that failed writeback's check (never written).",
    bad_skipped: "Bad records an administrator skipped (IOCTL_SKIP_BAD_RECORD).",
    reads_bad: "Read pieces failed with EIO: their newest data is a bad record.",
    reads_again: "Region read pieces copied again: ring space was freed during the copy (`Live::freed`).",
}

/// Adds `n` to a counter.
pub(crate) fn add(counter: &Atomic<u64>, n: u64) {
    counter.add(n, Relaxed);
}

/// Sets a gauge.
pub(crate) fn set(gauge: &Atomic<u64>, value: u64) {
    gauge.store(value, Relaxed);
}

/// Reads a counter or gauge.
pub(crate) fn get(counter: &Atomic<u64>) -> u64 {
    counter.load(Relaxed)
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = get;
        write!(
            f,
            "{} writes ({} KiB), {} flushes absorbed, {} writes throttled, reads {} from region {} from disk; \
             {} writes passed through; writeback {} records in {} disk writes ({} KiB), {} disk flushes, \
             {} disk errors, {} bad records ({} skipped), {} region reads copied again",
            v(&self.writes),
            v(&self.write_bytes) / 1024,
            v(&self.flushes),
            v(&self.throttled),
            v(&self.reads_region),
            v(&self.reads_disk),
            v(&self.writes_through),
            v(&self.wb_records),
            v(&self.wb_ios),
            v(&self.wb_bytes) / 1024,
            v(&self.wb_flushes),
            v(&self.disk_errors),
            v(&self.bad_records),
            v(&self.bad_skipped),
            v(&self.reads_again)
        )
    }
}
