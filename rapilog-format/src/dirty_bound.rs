// SPDX-License-Identifier: GPL-2.0

//! The power-fail dirty bound: how much acknowledged data may wait for
//! writeback so that, when power fails, the driver can still write all of
//! it to the log disk within the power supply's hold-up time.
//!
//! A drain of `d` dirty bytes takes about `d / bandwidth` plus one flush.
//! The bound is the bytes writeback moves in **half** the hold-up window at
//! the bandwidth it has measured: the other half covers the final flush and
//! the disk marker's update, and the estimate's error. The bandwidth is
//! measured per writeback batch (bytes over the whole time spent checking,
//! writing and flushing them), so it already includes a flush per batch.
//! While writers wait for space the driver counts a batch from its first
//! record's arrival instead (`rapilog-blk/writeback.rs`): on a throttled
//! disk the bucket leaks while writers refill the ring, and the batch's
//! own time then shows only part of what the disk charged for the one
//! before it.
//!
//! The estimate ([`BandwidthEstimate`]) is the **slowest of the last
//! [`WINDOW`] batches**: it follows a slower batch at once and a faster one
//! only once every slower batch has left the window. A disk that slows down
//! must shrink the bound before the next power failure, not after a few
//! more batches; and a disk that bursts must not raise it. Throttled disks
//! (a cloud volume's or QEMU's token bucket) let a write through at once
//! while the bucket has room and charge its cost to the writes after it:
//! a batch that found the bucket empty looks many times faster than the
//! disk, and the next one pays for it. Smoothing those samples (as this
//! once did, a quarter of the way up per batch) let the estimate reach
//! about 5x the disk's rate under `tests/qemu/test_powerfail.py`; the
//! slowest of the window stays near the rate the disk sustains. Until a
//! batch has been measured (and with no explicit bandwidth) the bound is
//! zero, which admits one write at a time: the first batches measure the
//! disk.
//!
//! A bound below one record would block every write; [`admits`] therefore
//! always admits a write into an empty ring.

/// Rounding of the bound, as records are multiples of sectors.
const BOUND_ALIGN: u64 = 512;

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// Batches the estimate looks back over: it is the slowest of them.
pub const WINDOW: usize = 8;

/// Writeback bandwidth, bytes per second: the slowest of the last
/// [`WINDOW`] batches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BandwidthEstimate {
    /// Rates of the last batches, bytes/s; 0: no batch yet in that place.
    samples: [u64; WINDOW],
    /// Where the next sample goes.
    next: usize,
}

impl BandwidthEstimate {
    /// Adds one batch: `bytes` written and flushed in `nanos`. (No 128-bit
    /// division: the kernel does not link it.)
    pub fn observe(&mut self, bytes: u64, nanos: u64) {
        if bytes == 0 || nanos == 0 {
            return;
        }
        // checked_div: no division-by-zero panic path (objtool in 7.3 does
        // not know that one never returns).
        let sample = match bytes.checked_mul(NANOS_PER_SEC) {
            Some(scaled) => scaled.checked_div(nanos),
            None => bytes.checked_div(nanos / NANOS_PER_SEC),
        }
        .unwrap_or(u64::MAX)
        .max(1);
        if let Some(place) = self.samples.get_mut(self.next) {
            *place = sample;
        }
        self.next = (self.next + 1) % WINDOW;
    }

    /// The estimate, bytes per second; `None` before the first batch.
    pub fn bytes_per_sec(&self) -> Option<u64> {
        self.samples.iter().copied().filter(|&s| s > 0).min()
    }
}

/// Most dirty bytes that drain within half of `holdup_ms` at
/// `bytes_per_sec`, rounded down to whole sectors.
pub fn dirty_bound(holdup_ms: u32, bytes_per_sec: u64) -> u64 {
    let holdup = u64::from(holdup_ms);
    let bytes = match bytes_per_sec.checked_mul(holdup) {
        Some(product) => product / 2000,
        None => (bytes_per_sec / 2000).saturating_mul(holdup),
    };
    bytes - bytes % BOUND_ALIGN
}

/// Whether a write of `length` bytes may become dirty now: it fits under
/// `bound`, or nothing is dirty (a record larger than the bound must still
/// be admitted, alone).
pub fn admits(dirty_bytes: u64, length: u64, bound: u64) -> bool {
    dirty_bytes == 0 || dirty_bytes.saturating_add(length) <= bound
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bound_is_half_the_window_at_the_bandwidth() {
        // 100 MB/s, 50 ms: 5 MB in the window, half of it as the bound.
        assert_eq!(dirty_bound(50, 100_000_000), 2_500_000 - 2_500_000 % 512);
        assert_eq!(dirty_bound(50, 0), 0);
        assert_eq!(dirty_bound(0, 1 << 30), 0);
        assert_eq!(dirty_bound(u32::MAX, u64::MAX), u64::MAX - u64::MAX % 512);
        assert_eq!(
            dirty_bound(4000, u64::MAX / 1000),
            (u64::MAX / 1000 / 2000 * 4000) & !511
        );
    }

    #[test]
    fn estimate_follows_a_slower_batch_at_once_and_a_faster_one_only_after_the_window() {
        let mut e = BandwidthEstimate::default();
        assert_eq!(e.bytes_per_sec(), None);
        e.observe(1_000_000, 1_000_000_000);
        assert_eq!(e.bytes_per_sec(), Some(1_000_000));
        // A burst does not raise it while the slower batch is in the window.
        e.observe(5_000_000, 1_000_000_000);
        assert_eq!(e.bytes_per_sec(), Some(1_000_000));
        // A slower batch counts at once.
        e.observe(500_000, 1_000_000_000);
        assert_eq!(e.bytes_per_sec(), Some(500_000));
        // Empty or instant batches say nothing.
        e.observe(0, 5);
        e.observe(5, 0);
        assert_eq!(e.bytes_per_sec(), Some(500_000));
        // Once WINDOW faster batches came, the slow one is forgotten.
        for _ in 0..WINDOW - 1 {
            e.observe(4_000_000, 1_000_000_000);
            assert_eq!(e.bytes_per_sec(), Some(500_000));
        }
        e.observe(4_000_000, 1_000_000_000);
        assert_eq!(e.bytes_per_sec(), Some(4_000_000));
    }

    #[test]
    fn a_token_bucket_disk_is_estimated_at_its_sustained_rate() {
        // QEMU's throttle (200 ops/s, 4 KiB per op, a burst of 20 ops): a
        // batch that finds the bucket below its burst goes through at once
        // (~2 ms of flush and checks), the next one waits for the bucket to
        // drain. Alternating, the smoothing the estimate once had settled at
        // several times the disk's 800 KiB/s; the window's slowest batch
        // does not.
        let mut e = BandwidthEstimate::default();
        let batch = 100 << 10;
        for _ in 0..20 {
            e.observe(batch, 2_000_000);
            e.observe(batch, 125_000_000);
        }
        let rate = e.bytes_per_sec().unwrap();
        assert!(rate <= 800 << 10, "{rate}");
    }

    #[test]
    fn an_empty_ring_admits_any_write() {
        assert!(admits(0, 1 << 20, 0));
        assert!(!admits(512, 512, 512));
        assert!(admits(512, 512, 1024));
    }

    proptest! {
        /// Admitted writes never take dirty data past the bound unless
        /// they are alone; the estimate stays between its samples.
        #[test]
        fn admitted_dirty_data_stays_under_the_bound(
            bound in 0u64..1 << 24,
            writes in proptest::collection::vec(1u64..1 << 17, 1..64),
        ) {
            let mut dirty = 0u64;
            for len in writes {
                if admits(dirty, len, bound) {
                    dirty += len;
                    prop_assert!(dirty <= bound.max(len));
                } else {
                    // Writeback frees everything before the writer retries.
                    dirty = 0;
                }
            }
        }

        #[test]
        fn estimate_lies_between_the_samples(
            samples in proptest::collection::vec((1u64..1 << 30, 1u64..1 << 34), 1..32),
        ) {
            let mut e = BandwidthEstimate::default();
            let rates: Vec<u64> = samples.iter().map(|&(b, n)| ((u128::from(b) * 1_000_000_000 / u128::from(n)) as u64).max(1)).collect();
            for &(b, n) in &samples {
                e.observe(b, n);
            }
            let got = e.bytes_per_sec().unwrap_or(0);
            // Never above the last sample when that one was the slowest yet.
            if rates.last() == rates.iter().min() {
                prop_assert_eq!(got, *rates.last().unwrap_or(&0));
            }
            let (lo, hi) = (rates.iter().min().copied().unwrap(), rates.iter().max().copied().unwrap());
            prop_assert!(got >= lo && got <= hi, "{got} outside {lo}..={hi}");
            // Never above any of the last WINDOW samples.
            let recent = &rates[rates.len().saturating_sub(WINDOW)..];
            prop_assert_eq!(got, recent.iter().copied().min().unwrap());
        }
    }
}
