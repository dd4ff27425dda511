// SPDX-License-Identifier: GPL-2.0

//! The power-fail dirty bound: how much acknowledged data may wait for
//! writeback so that, when power fails, the driver can still write all of
//! it to the log disk within the power supply's hold-up time.
//!
//! A drain of `d` dirty bytes takes about `d / bandwidth` plus one flush.
//! The bound is the bytes writeback moves in **half** the hold-up window at
//! the bandwidth it has measured: the other half covers the final flush and
//! superblock update, and the estimate's error. The bandwidth is measured
//! per writeback batch (bytes over the time spent writing and flushing
//! them), so it already includes a flush per batch. The estimate
//! ([`BandwidthEstimate`]) follows a slower batch at once and a faster one
//! only gradually: a disk that slows down (or bursts, as throttled and
//! cached disks do) must shrink the bound before the next power failure,
//! not after a few more batches. Until a batch has been measured (and with no
//! explicit bandwidth) the bound is zero, which admits one write at a time:
//! the first batches measure the disk.
//!
//! A bound below one record would block every write; [`admits`] therefore
//! always admits a write into an empty ring.

/// Rounding of the bound, as records are multiples of sectors.
const BOUND_ALIGN: u64 = 512;

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// Weight of a new measurement in the smoothed bandwidth, as 1/N.
const SMOOTHING: u64 = 4;

/// Writeback bandwidth, bytes per second: down at once, up smoothed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BandwidthEstimate {
    bytes_per_sec: u64,
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
        .unwrap_or(u64::MAX);
        self.bytes_per_sec = if self.bytes_per_sec == 0 || sample <= self.bytes_per_sec {
            sample
        } else {
            // (old * (N-1) + sample) / N, saturating.
            self.bytes_per_sec
                .saturating_mul(SMOOTHING - 1)
                .saturating_add(sample)
                / SMOOTHING
        };
    }

    /// The estimate, bytes per second; `None` before the first batch.
    pub fn bytes_per_sec(&self) -> Option<u64> {
        (self.bytes_per_sec > 0).then_some(self.bytes_per_sec)
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
    fn estimate_follows_a_slower_batch_at_once_and_a_faster_one_smoothly() {
        let mut e = BandwidthEstimate::default();
        assert_eq!(e.bytes_per_sec(), None);
        e.observe(1_000_000, 1_000_000_000);
        assert_eq!(e.bytes_per_sec(), Some(1_000_000));
        e.observe(5_000_000, 1_000_000_000);
        assert_eq!(e.bytes_per_sec(), Some(2_000_000));
        // A slower batch counts at once.
        e.observe(500_000, 1_000_000_000);
        assert_eq!(e.bytes_per_sec(), Some(500_000));
        // Empty or instant batches say nothing.
        e.observe(0, 5);
        e.observe(5, 0);
        assert_eq!(e.bytes_per_sec(), Some(500_000));
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
            let rates: Vec<u64> = samples.iter().map(|&(b, n)| (u128::from(b) * 1_000_000_000 / u128::from(n)) as u64).collect();
            for &(b, n) in &samples {
                e.observe(b, n);
            }
            let got = e.bytes_per_sec().unwrap_or(0);
            // Never above the last sample when that one was the slowest yet.
            if rates.last() == rates.iter().min() {
                prop_assert_eq!(got, *rates.last().unwrap_or(&0));
            }
            let (lo, hi) = (rates.iter().min().copied().unwrap(), rates.iter().max().copied().unwrap());
            prop_assert!(got >= lo.saturating_sub(SMOOTHING) && got <= hi, "{got} outside {lo}..={hi}");
        }
    }
}
