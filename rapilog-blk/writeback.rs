// SPDX-License-Identifier: GPL-2.0

//! The writeback worker: drains published records to the log disk in
//! sequence order and frees their space.
//!
//! One batch at a time:
//! 1. Wait until writeback is due: the oldest record has waited
//!    `writeback_delay_ms`, or an eighth of the ring is dirty, or a writer
//!    waits for space, or a drain was requested ([`drain_and_wait`]), or
//!    the module is unloading.
//! 2. Take the published records from the tail on (up to the first one
//!    still being filled) and write the batch's newest data: the
//!    dirty-extent index's extents whose record is in the batch, copied
//!    into bounce pages and merged into as few writes as they are
//!    contiguous (`format::writeback_plan`). A sector rewritten by several
//!    records, like a database log's current page at every commit, goes to
//!    the disk once per batch, not once per record; one rewritten again
//!    after the batch waits for that newer record.
//! 3. Flush the disk's cache: now they are durable there.
//! 4. Advance the durable tail in the superblock (the other copy,
//!    generation + 1).
//! 5. Only then drop them from the index, free their slots and ring space,
//!    and wake writers waiting for space.
//!
//! A failing disk never loses data: the records stay in the region, the
//! error is counted and logged (rate limited), and the step is retried with
//! back-off. Only at unload does writeback give up, after a few attempts,
//! leaving the records in the region for the next load to replay.

use core::fmt;

use kernel::alloc::{flags::GFP_KERNEL, KVVec, KVec};
use kernel::prelude::*;
use kernel::time::{delay::fsleep, msecs_to_jiffies, Delta, Instant, Monotonic};

use crate::device::Device;
use crate::disk_marker::Marker;
use crate::format::dirty_bound::BandwidthEstimate;
use crate::format::{batch_extents, ActiveSuperblock, Extent, Geometry, WritePlan, SECTOR_BYTES};
use crate::kernel_display::Errno;
use crate::lifecycle;
use crate::live::{Chore, Live, Record, Stage};
use crate::metadata;
use crate::powerfail;
use crate::ratelimit::RateLimit;
use crate::stats;
use crate::sys::backing::MAX_IO_BYTES;
use crate::sys::bounce::BounceBuffer;
use crate::sys::kthread::should_stop;

/// Most records one batch takes (one superblock update per batch).
const MAX_BATCH_RECORDS: usize = 4096;

/// Most bytes one batch takes, so that space is freed in steps while the
/// ring is large.
const MAX_BATCH_BYTES: u64 = 16 << 20;

/// Attempts per step before giving up, at unload only.
const ATTEMPTS_AT_UNLOAD: u32 = 3;

/// Back-off between retries of a failed disk operation.
const FIRST_BACKOFF_MS: i64 = 100;
const MAX_BACKOFF_MS: i64 = 5000;

/// Writeback's state, owned by the writeback thread while it runs.
pub(crate) struct Writeback {
    /// The current superblock, as last written.
    pub(crate) superblock: ActiveSuperblock,
    /// The log disk's loss marker, as last written (`lifecycle` writes it
    /// while holding this state, with `bounce` as scratch space).
    pub(crate) marker: Marker,
    /// Pages records are copied into for the disk (one disk write's worth).
    pub(crate) bounce: BounceBuffer,
    /// Records of the batch in progress.
    batch: KVec<Record>,
    /// What of the batch goes to the disk: its extents in the dirty-extent
    /// index, by sector. Room for the whole index (`2 x slots + 1`).
    extents: KVVec<Extent>,
    /// Bytes a batch may take.
    max_batch_bytes: u64,
    /// Bandwidth of the batches so far, for the power-fail dirty bound.
    bandwidth: BandwidthEstimate,
    /// Rate limit of error lines.
    pub(crate) errors: RateLimit,
}

/// Writeback stopped retrying (unload with a failing disk).
pub(crate) struct GaveUp;

/// A step that may fail and be retried, for messages.
enum Step {
    Write { sector: u64, bytes: usize },
    Flush,
    Superblock,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Write { sector, bytes } => write!(f, "writing {bytes} bytes at sector {sector}"),
            Self::Flush => f.write_str("flushing the disk cache"),
            Self::Superblock => f.write_str("updating the superblock"),
        }
    }
}

impl kernel::fmt::Display for Step {
    fn fmt(&self, f: &mut kernel::fmt::Formatter<'_>) -> kernel::fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Writeback {
    /// Writeback state for a region brought up with `superblock`.
    pub(crate) fn new(
        superblock: ActiveSuperblock,
        marker: Marker,
        bounce: BounceBuffer,
        geometry: &Geometry,
    ) -> Result<Self> {
        Ok(Self {
            superblock,
            marker,
            bounce,
            batch: KVec::with_capacity(MAX_BATCH_RECORDS, GFP_KERNEL)?,
            extents: KVVec::with_capacity(
                2 * geometry.descriptor_slots as usize + 1,
                GFP_KERNEL,
            )?,
            max_batch_bytes: MAX_BATCH_BYTES.min(geometry.ring_bytes / 4).max(1),
            bandwidth: BandwidthEstimate::default(),
            errors: RateLimit::new(),
        })
    }
}

/// The thread body: batches until asked to stop, then drains what is left.
pub(crate) fn run(dev: &Device) {
    let mut guard = dev.writeback.lock();
    let wb = &mut *guard;
    loop {
        match next_batch(dev, wb) {
            Next::Stop => break,
            Next::Drained => {
                // Everything is on the disk: say so on the disk too, or a
                // machine whose memory dies with the power would find a
                // `Live` marker and no region, and report a loss that is
                // not one. After the data's flush: never clean too early.
                let clean = lifecycle::mark_clean(dev, wb);
                powerfail::drained(dev, clean);
            }
            Next::Resume(due) => powerfail::resume(dev, wb, due),
            Next::Chore(chore) => {
                let outcome = lifecycle::perform(dev, wb, chore);
                dev.live.lock().chore_done = Some(outcome);
                dev.space_freed.notify_all();
            }
            Next::Batch {
                stopping,
                head_hint,
            } => {
                if write_batch(dev, wb, stopping, head_hint).is_err() {
                    break;
                }
            }
        }
    }
}

/// What [`next_batch`] found.
enum Next {
    /// A batch is collected; `stopping`: unload has begun; `head_hint`
    /// for the superblock.
    Batch { stopping: bool, head_hint: u64 },
    /// Unload has begun and nothing is left to write.
    Stop,
    /// A power-fail drain found the ring empty: it is complete.
    Drained,
    /// The machine outlived a power-fail signal: service may resume.
    Resume(powerfail::Due),
    /// `lifecycle` asked for a chore.
    Chore(Chore),
}

/// Whether writeback is due (step 1).
fn due(dev: &Device, live: &Live) -> bool {
    live.waiting_writers > 0
        || dev.powerfail.draining()
        || live.drain_to > live.ring.tail_seq()
        || live.dirty_bytes >= dev.writeback_threshold
        || live
            .oldest_age()
            .is_some_and(|age| age >= dev.writeback_delay)
}

/// How long to sleep before looking again.
fn sleep_for(dev: &Device, live: &Live) -> Delta {
    match live.oldest_age() {
        Some(age) => (dev.writeback_delay - age).max(Delta::from_millis(1)),
        // The oldest record is being filled: its writer is about to publish.
        None if live.ring.live_records() > 0 => Delta::from_millis(1),
        // Idle; a writer wakes us when it publishes into a clean ring.
        None => Delta::from_millis(10_000),
    }
}

/// Waits until writeback is due and collects the batch (steps 1 and 2).
fn next_batch(dev: &Device, wb: &mut Writeback) -> Next {
    let mut live = dev.live.lock();
    loop {
        if let Some(chore) = live.chore.take() {
            return Next::Chore(chore);
        }
        let stopping = live.stopping || should_stop();
        if stopping || due(dev, &live) {
            let draining = dev.powerfail.draining();
            // A power-fail drain takes the whole ring: fewest, largest writes.
            let max_bytes = if draining {
                u64::MAX
            } else {
                wb.max_batch_bytes
            };
            collect(&live, &mut wb.batch, &mut wb.extents, max_bytes);
            if !wb.batch.is_empty() {
                return Next::Batch {
                    stopping,
                    head_hint: live.ring.next_seq(),
                };
            }
            if stopping {
                return Next::Stop;
            }
            if draining && live.ring.live_records() == 0 {
                return Next::Drained;
            }
        }
        let mut sleep = sleep_for(dev, &live);
        // After a power-fail drain, writeback is the clock that ends the
        // hold once the machine has outlived the signal (`powerfail`).
        match dev.powerfail.resume_due(dev) {
            powerfail::Resume::No => {}
            powerfail::Resume::After(left) => sleep = sleep.min(left),
            powerfail::Resume::Due(due) => return Next::Resume(due),
        }
        let ms = sleep.as_millis_ceil().clamp(1, 10_000) as u32;
        // A signal cannot reach a kthread; waking early is harmless.
        let _ = dev
            .work
            .wait_interruptible_timeout(&mut live, msecs_to_jiffies(ms));
    }
}

/// Copies the published records from the tail on into `batch`, and the
/// index's extents of those records into `extents`.
fn collect(live: &Live, batch: &mut KVec<Record>, extents: &mut KVVec<Extent>, max_bytes: u64) {
    batch.clear();
    extents.clear();
    let mut bytes = 0u64;
    let mut seq = live.ring.tail_seq();
    while seq < live.ring.next_seq() && bytes < max_bytes {
        let Some(record) = live.record(seq) else {
            break;
        };
        if matches!(record.stage, Stage::Filling) {
            break;
        }
        if batch.push_within_capacity(*record).is_err() {
            break;
        }
        bytes += u64::from(record.reservation.length);
        seq += 1;
    }
    let Some(last) = batch.last() else {
        return;
    };
    for extent in batch_extents(live.index.extents(), last.reservation.seq) {
        // Cannot fail: `extents` has room for the whole index.
        if extents.push_within_capacity(extent).is_err() {
            break;
        }
    }
}

/// Runs `op` until it succeeds, with back-off; gives up only at unload.
fn retry(
    dev: &Device,
    errors: &mut RateLimit,
    stopping: bool,
    step: Step,
    mut op: impl FnMut() -> Result,
) -> Result<(), GaveUp> {
    let mut backoff = FIRST_BACKOFF_MS;
    let mut attempts = 0;
    loop {
        let Err(e) = op() else {
            if attempts > 0 {
                stats::set(&dev.stats.wb_retrying, 0);
            }
            return Ok(());
        };
        stats::add(&dev.stats.disk_errors, 1);
        stats::set(
            &dev.stats.last_disk_errno,
            e.to_errno().unsigned_abs().into(),
        );
        stats::set(&dev.stats.wb_retrying, 1);
        if dev.powerfail.draining() {
            pr_emerg!("power-fail drain: {step} failed ({})\n", Errno(e));
            powerfail::drain_failed(dev);
        }
        attempts += 1;
        if (stopping || should_stop()) && attempts >= ATTEMPTS_AT_UNLOAD {
            pr_err!(
                "writeback: {step} failed ({}); giving up at unload\n",
                Errno(e)
            );
            return Err(GaveUp);
        }
        if let Some(suppressed) = errors.allow() {
            pr_err!(
                "writeback: {step} failed ({}); the data stays in the region, retrying in {backoff} ms \
                 ({suppressed} similar lines suppressed)\n",
                Errno(e)
            );
        }
        fsleep(Delta::from_millis(backoff));
        backoff = (backoff * 2).min(MAX_BACKOFF_MS);
    }
}

/// Steps 2 to 5 for the collected batch.
fn write_batch(
    dev: &Device,
    wb: &mut Writeback,
    stopping: bool,
    head_hint: u64,
) -> Result<(), GaveUp> {
    let Writeback {
        superblock,
        bounce,
        batch,
        extents,
        errors,
        bandwidth,
        ..
    } = wb;
    let Some(last) = batch.last().copied() else {
        return Ok(());
    };
    let started = Instant::<Monotonic>::now();
    let capacity = bounce.capacity().min(MAX_IO_BYTES);
    let (mut ios, mut bytes) = (0u64, 0u64);
    for run in WritePlan::new(extents, (capacity / SECTOR_BYTES as usize) as u64) {
        let mut len = 0usize;
        for piece in run.pieces() {
            let piece_bytes = (piece.sectors * u64::from(SECTOR_BYTES)) as usize;
            // `record` is the payload's offset in the region.
            let offset = (piece.record + piece.record_offset * u64::from(SECTOR_BYTES)) as usize;
            if !bounce.copy_from_region(len, &dev.region, offset, piece_bytes) {
                // Impossible with a valid geometry; never write what we did not copy.
                pr_err!(
                    "writeback: record {} lies outside the region\n",
                    piece.seq
                );
                return Err(GaveUp);
            }
            len += piece_bytes;
        }
        ios += 1;
        bytes += len as u64;
        let step = Step::Write {
            sector: run.sector,
            bytes: len,
        };
        retry(dev, errors, stopping, step, || {
            dev.backing.write(run.sector, bounce, len)
        })?;
    }
    let records = batch
        .iter()
        .filter(|r| !matches!(r.stage, Stage::Abandoned))
        .count() as u64;
    retry(dev, errors, stopping, Step::Flush, || dev.backing.flush())?;
    let busy = started.elapsed().as_nanos().max(0) as u64;

    let mut next = superblock.next_update();
    next.superblock.durable_tail = last.reservation.seq + 1;
    next.superblock.head_hint = head_hint.max(next.superblock.durable_tail);
    retry(dev, errors, stopping, Step::Superblock, || {
        metadata::write_superblock(&dev.region, &next)
    })?;
    *superblock = next;

    dev.live.lock().release_through(&last.reservation);
    dev.space_freed.notify_all();
    stats::add(&dev.stats.wb_ios, ios);
    stats::add(&dev.stats.wb_bytes, bytes);
    stats::add(&dev.stats.wb_records, records);
    stats::add(&dev.stats.wb_flushes, 1);
    stats::add(&dev.stats.wb_busy_ns, busy);
    bandwidth.observe(bytes, busy);
    dev.powerfail
        .set_measured_bandwidth(bandwidth.bytes_per_sec().unwrap_or(0));
    Ok(())
}

/// Makes everything written before the call durable on the disk: asks
/// writeback to drain up to the current head at once (not after
/// `writeback_delay_ms`) and waits until it has. Interruptible by a signal.
pub(crate) fn drain_and_wait(dev: &Device) -> Result {
    let mut live = dev.live.lock();
    let target = live.ring.next_seq();
    live.drain_to = live.drain_to.max(target);
    dev.work.notify_all();
    while live.ring.tail_seq() < target {
        if live.stopping {
            return Err(ENODEV);
        }
        if dev.space_freed.wait_interruptible(&mut live) {
            return Err(ERESTARTSYS);
        }
    }
    Ok(())
}
