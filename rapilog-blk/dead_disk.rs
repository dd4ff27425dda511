// SPDX-License-Identifier: GPL-2.0

//! A log disk that stays dead (`dead_disk_ms=`): how long writeback has been
//! failing, and whether new writes fail because of it.
//!
//! Writeback retries a failing disk for ever with back-off (`writeback`):
//! acknowledged records stay in the region until they reach the disk. New
//! writes are acknowledged until the ring is full; then writers wait for
//! space that never comes, in uninterruptible sleep, and the database hangs
//! instead of failing over. So, once writeback has failed for
//! `dead_disk_ms` without a single success, the disk is **dead**: new
//! writes fail with EIO at once (`write_path`), writers already waiting for
//! space are woken and fail too (nothing of theirs was acknowledged, so
//! nothing is lost), flushes still succeed (every acknowledged write is in
//! the region), reads still work (region first, disk otherwise). The first
//! step of writeback that succeeds again ends it: the ring drains and
//! writes are admitted again.
//!
//! A writer waits uninterruptibly for ring space at most until the disk is
//! declared dead (plus one disk operation), so `dead_disk_ms` below the
//! hung-task timeout keeps the hung-task detector quiet.
//!
//! The state lives in `Live`, under its lock: the writeback thread changes
//! it, writers read it when they are admitted.

#![deny(unsafe_code)]

use kernel::time::{Delta, Instant, Monotonic};

/// The log disk as writeback last found it.
pub(crate) struct DiskHealth {
    /// `dead_disk_ms`; `None` (0) never fails writes.
    deadline: Option<Delta>,
    /// The first failure since the last success.
    failing_since: Option<Instant<Monotonic>>,
    /// Since when new writes fail (the deadline passed): `failing_since <=
    /// dead_since`.
    dead_since: Option<Instant<Monotonic>>,
    /// Writes failed because the disk is dead, since load.
    pub(crate) refused: u64,
}

/// What a failed writeback step means ([`DiskHealth::failed`]).
pub(crate) enum Failing {
    /// Not dead (yet): it will be in this long, if it keeps failing
    /// (`None`: never, `dead_disk_ms=0`).
    For(Option<Delta>),
    /// The deadline just passed: new writes fail from now on. With how long
    /// the disk has failed.
    JustDead(Delta),
    /// Dead already.
    Dead,
}

impl DiskHealth {
    /// A healthy disk, with `dead_disk_ms`.
    pub(crate) fn new(dead_disk_ms: u32) -> Self {
        Self {
            deadline: (dead_disk_ms != 0).then(|| Delta::from_millis(i64::from(dead_disk_ms))),
            failing_since: None,
            dead_since: None,
            refused: 0,
        }
    }

    /// A writeback step failed.
    pub(crate) fn failed(&mut self) -> Failing {
        if self.dead_since.is_some() {
            return Failing::Dead;
        }
        let since = *self.failing_since.get_or_insert_with(Instant::now);
        let failing = since.elapsed();
        match self.deadline {
            Some(deadline) if failing >= deadline => {
                self.dead_since = Some(Instant::now());
                Failing::JustDead(failing)
            }
            Some(deadline) => Failing::For(Some(deadline - failing)),
            None => Failing::For(None),
        }
    }

    /// A writeback step succeeded after failures. Returns how long the disk
    /// was failing and, if it was dead, how long new writes failed.
    pub(crate) fn succeeded(&mut self) -> Option<(Delta, Option<Delta>)> {
        let since = self.failing_since.take()?;
        let dead = self.dead_since.take().map(|t| t.elapsed());
        Some((since.elapsed(), dead))
    }

    /// Whether new writes fail.
    pub(crate) fn is_dead(&self) -> bool {
        self.dead_since.is_some()
    }

    /// `dead_disk_ms` (0: never).
    pub(crate) fn deadline_ms(&self) -> u32 {
        self.deadline
            .map_or(0, |d| u32::try_from(d.as_millis()).unwrap_or(u32::MAX))
    }

    /// When the current failure began and when writes started failing, µs
    /// since `loaded_at` (at least 1; 0: not failing, not dead), for the
    /// status.
    pub(crate) fn since_us(&self, loaded_at: Instant<Monotonic>) -> (u64, u64) {
        let us = |t: Option<Instant<Monotonic>>| {
            t.map_or(0, |t| ((t - loaded_at).as_micros_ceil().max(1)) as u64)
        };
        (us(self.failing_since), us(self.dead_since))
    }
}
