// SPDX-License-Identifier: GPL-2.0

//! Orderly stops: nothing acknowledged may stay only in the region when the
//! machine goes down in an ordinary way, because nothing guarantees that the
//! region survives it. A reboot may wipe memory (the firmware's reset-attack
//! mitigation, ECC scrubbing, a cold boot), a power-off always does, and a
//! hibernation image does not contain the region.
//!
//! # Clean stop
//!
//! Reboot, halt, power-off, a non-crash `kexec -e` (the reboot notifier),
//! suspend and hibernation (the PM notifier) all run the same steps, in the
//! task that asked for the stop, before devices are shut down or tasks
//! frozen:
//! 1. **Hold** new writes: they wait, unacknowledged (the ring must be
//!    emptied, and a record admitted now would be written back after the
//!    drain's end).
//! 2. **Drain**: writeback writes every record to the disk at once (not
//!    after `writeback_delay_ms`), flushes it and advances the tail; bounded
//!    by `stop_drain_ms`.
//! 3. **Mark clean**: the superblock says the region holds nothing to
//!    replay.
//! 4. **Write through**: from now on writes are passed to the disk, and
//!    complete when the disk completes them (flush and FUA with them). The
//!    region is not used again, so it needs no protection from whatever
//!    happens to memory next. Holding writes instead would hang a stop in
//!    which something still writes (another driver's reboot notifier
//!    flushing onto us, `sync` at the start of a suspend).
//!
//! If the drain does not finish in time (a failing disk), the stop is
//! reported, writes stay held (never acknowledged from a region that may be
//! lost), and the region is left as the protocol always leaves it:
//! consistent, dirty, replayable by the crash kernel or the next load. A
//! reboot or power-off goes on regardless; a suspend or hibernation is
//! refused instead, and service resumes.
//!
//! A **bad record** (one that failed writeback's check) makes the drain
//! unfinished too, but not slow: the drain writes every other record past
//! it (`writeback`), so nothing that can be verified stays only in the
//! region, and ends as soon as they are on the disk. The bad record is
//! never written, so the region cannot be marked clean: it keeps the bad
//! record and those after it (already on the disk; a replay writes them
//! again). Writes stay held, not written through: the crash kernel or the
//! next load would replay those records over anything written through
//! after them. The line names the record; a suspend or hibernation is
//! refused until an administrator skips it (`rapilogctl skip-bad-record`).
//!
//! # Resume
//!
//! After a suspend or hibernation (or one that failed), service resumes in
//! a freshly formatted region: the region's bytes may not be what they were
//! (a hibernated machine was powered off, and the kernel that booted to
//! restore the image may have touched it), and the ring is empty, so
//! nothing in memory may point into the old contents. A new epoch makes
//! every old descriptor invisible to replay.
//!
//! # Who does what
//!
//! The writeback thread owns the superblock and the marker (it holds
//! `Device::lock_writeback` for as long as it runs), so marking clean and
//! formatting afresh are chores it runs on request ([`Chore`]); the task
//! that stops the machine waits for them. Lock order (`device`, Locking):
//! `writeback` before `live`; a notifier takes only `live`, and does not
//! hold it across the wait.

#![deny(unsafe_code)]

use kernel::prelude::*;
use kernel::str::BStr;
use kernel::sync::CondVarTimeoutResult;
use kernel::time::{delay::fsleep, msecs_to_jiffies, Delta, Instant, Monotonic};

use crate::device::Device;
use crate::format::control::HeldRecord;
use crate::format::{MarkerState, MarkerWriter, RegionState};
use crate::kernel_display::Errno;
use crate::live::{Admission, Chore, Live};
use crate::metadata;
use crate::stats;
use crate::sys::clock;
use crate::sys::compat;
use crate::sys::kthread::Kthread;
use crate::sys::lifecycle_events::{Sleep, Stop};
use crate::writeback::Writeback;

/// What a finished drain did.
struct Drained {
    bytes: u64,
    took: Delta,
    /// Whether the region and the disk's marker say clean now.
    marked_clean: bool,
}

/// What an unfinished drain left.
struct Unfinished {
    records: u64,
    bytes: u64,
    took: Delta,
    /// The bad record writeback holds at, if that is why (every other
    /// record is then on the disk).
    held: Option<HeldRecord>,
}

/// Steps 1 to 4 of a clean stop.
fn clean_stop(dev: &Device) -> Result<Drained, Unfinished> {
    let started = Instant::<Monotonic>::now();
    let deadline = Delta::from_millis(i64::from(dev.config().stop_drain_ms));
    let bytes_before = stats::get(&dev.stats().wb_bytes);
    let target = {
        let mut live = dev.lock_live();
        live.admission = Admission::Held;
        let target = live.ring.next_seq();
        live.drain_to = live.drain_to.max(target);
        target
    };
    dev.work().notify_all();
    // Every record written back or found bad, the tail as far as it goes.
    let drained = wait_until(dev, started, deadline, |live| live.drained_to(target));
    {
        let live = dev.lock_live();
        if !drained || live.held.is_some() {
            return Err(Unfinished {
                records: live.ring.live_records(),
                bytes: live.ring.used_bytes(),
                took: started.elapsed(),
                held: live.held,
            });
        }
    }
    let mut drained = Drained {
        bytes: stats::get(&dev.stats().wb_bytes) - bytes_before,
        took: started.elapsed(),
        marked_clean: true,
    };
    if let Err(e) = run_chore(dev, Chore::MarkClean, started, deadline) {
        drained.marked_clean = false;
        // The records are on the disk; only the superblock or the marker
        // says otherwise: a replay rewrites what is there, and a wiped
        // region is reported as a possible loss that is not one.
        pr_warn!(
            "could not mark region={} and backing={} clean ({})\n",
            dev.config().region,
            BStr::from_bytes(&dev.config().backing),
            Errno(e)
        );
    }
    dev.lock_live().admission = Admission::WriteThrough;
    dev.space_freed().notify_all();
    Ok(drained)
}

/// Waits until `done` holds or `deadline` has passed since `started`
/// (woken by `space_freed`). Not interruptible: a stop is not something to
/// abandon because the stopping task has a signal pending.
fn wait_until(
    dev: &Device,
    started: Instant<Monotonic>,
    deadline: Delta,
    mut done: impl FnMut(&mut Live) -> bool,
) -> bool {
    let mut live = dev.lock_live();
    while !done(&mut live) {
        let left = deadline - started.elapsed();
        if left <= Delta::ZERO {
            return false;
        }
        let ms = compat::millis_ceil(left).clamp(1, 100) as u32;
        if let CondVarTimeoutResult::Signal { .. } = dev
            .space_freed()
            .wait_interruptible_timeout(&mut live, msecs_to_jiffies(ms))
        {
            // A pending signal ends every wait at once: poll instead.
            drop(live);
            fsleep(Delta::from_millis(1));
            live = dev.lock_live();
        }
    }
    true
}

/// Has the writeback thread do `chore` and waits for its outcome.
fn run_chore(dev: &Device, chore: Chore, started: Instant<Monotonic>, deadline: Delta) -> Result {
    {
        let mut live = dev.lock_live();
        live.chore_done = None;
        live.chore = Some(chore);
    }
    dev.work().notify_all();
    let mut outcome = None;
    let done = wait_until(dev, started, deadline, |live| {
        outcome = live.chore_done.take();
        outcome.is_some()
    });
    if !done {
        // Not taken yet: withdraw it. (Taken: its outcome is dropped.)
        dev.lock_live().chore = None;
        return Err(ETIMEDOUT);
    }
    outcome.unwrap_or(Err(EINVAL))
}

/// Runs a chore in the writeback thread, which owns `wb`.
pub(crate) fn perform(dev: &Device, wb: &mut Writeback, chore: Chore) -> Result {
    match chore {
        Chore::MarkClean => mark_clean(dev, wb),
        Chore::Restart => restart(dev, wb),
    }
}

/// Records in the superblock, then in the disk's marker, that the region
/// holds nothing to replay: every record up to the head is durable on the
/// disk. Only when the ring is empty; returns `EBUSY` otherwise. Called by
/// the writeback thread, or at unload once it has stopped.
pub(crate) fn mark_clean(dev: &Device, wb: &mut Writeback) -> Result {
    {
        let live = dev.lock_live();
        if live.ring.live_records() != 0 {
            return Err(EBUSY);
        }
        let mut clean = wb.superblock.next_update();
        clean.superblock.state = RegionState::Clean;
        clean.superblock.durable_tail = live.ring.next_seq();
        clean.superblock.head_hint = live.ring.next_seq();
        metadata::write_superblock(dev.region(), &clean)?;
        wb.superblock = clean;
    }
    // Not under `live` (disk I/O): writes are held or pass through, or the
    // device is going away, so the ring stays empty.
    wb.marker.write(
        dev.backing(),
        &mut wb.bounce,
        Some(dev.marker_gauge()),
        MarkerState::Clean,
        dev.epoch(),
        MarkerWriter::ModuleDrain,
    )
}

/// Records that the region may hold writes the disk lacks again: the
/// superblock says dirty, then the disk's marker says `Live` for the
/// current epoch. For a power-fail false alarm (`powerfail`): the drain
/// marked both clean, and writes are about to be buffered again; a `Clean`
/// marker over buffered writes would hide their loss if the region went.
/// The epoch stays (memory was never lost, and the ring is empty: writes
/// are held until this returns). Called by the writeback thread.
pub(crate) fn mark_live(dev: &Device, wb: &mut Writeback) -> Result {
    if wb.superblock.superblock.state != RegionState::Dirty {
        let mut dirty = wb.superblock.next_update();
        dirty.superblock.state = RegionState::Dirty;
        metadata::write_superblock(dev.region(), &dirty)?;
        wb.superblock = dirty;
    }
    wb.marker.write(
        dev.backing(),
        &mut wb.bounce,
        Some(dev.marker_gauge()),
        MarkerState::Live,
        dev.epoch(),
        MarkerWriter::Module,
    )
}

/// Service in the region again after a write-through period: format it
/// afresh under a new epoch, reset the ring to it, mark the disk `Live`,
/// then buffer writes again (module docs, Resume).
fn restart(dev: &Device, wb: &mut Writeback) -> Result {
    let old = wb.superblock.superblock;
    let epoch = clock::random_u64();
    let formatted = metadata::format(dev.region(), old.geometry, old.disk, epoch)?;
    let mut next = formatted.next_update();
    next.superblock.state = RegionState::Dirty;
    next.superblock.last_replay = old.last_replay;
    metadata::write_superblock(dev.region(), &next)?;
    {
        let mut live = dev.lock_live();
        if live.ring.live_records() != 0 {
            return Err(EBUSY);
        }
        live.reset(next.superblock.durable_tail);
    }
    dev.set_epoch(epoch);
    wb.superblock = next;
    // Writes still pass through (not under `live`: disk I/O); none is
    // buffered until the marker says `Live` for the new epoch.
    wb.marker.write(
        dev.backing(),
        &mut wb.bounce,
        Some(dev.marker_gauge()),
        MarkerState::Live,
        epoch,
        MarkerWriter::Module,
    )?;
    dev.lock_live().admission = Admission::Buffered;
    dev.space_freed().notify_all();
    Ok(())
}

/// Buffers writes again after a sleep; `Ok(false)` if they already were.
fn resume_buffering(dev: &Device) -> Result<bool> {
    {
        let mut live = dev.lock_live();
        match live.admission {
            Admission::Buffered => return Ok(false),
            // A stop that did not drain: the ring and region are as they were.
            Admission::Held => {
                live.admission = Admission::Buffered;
                drop(live);
                dev.space_freed().notify_all();
                return Ok(false);
            }
            Admission::WriteThrough => {}
        }
    }
    let deadline = Delta::from_millis(i64::from(dev.config().stop_drain_ms));
    run_chore(dev, Chore::Restart, Instant::<Monotonic>::now(), deadline)?;
    Ok(true)
}

fn ms(d: Delta) -> (i64, i64) {
    let us = d.as_micros_ceil();
    (us / 1000, us % 1000)
}

/// The machine is stopping (`LifecycleHandler::stopping`): drains the
/// region (a clean stop), then writes go straight to the disk.
pub(crate) fn stopping(dev: &Device, how: Stop) {
    match clean_stop(dev) {
        Ok(d) => {
            let (ms, frac) = ms(d.took);
            pr_info!(
                "shutdown drain: {} bytes in {ms}.{frac:03} ms ({}); every acknowledged write \
                 is on backing={}{}; writes from now on go straight to it\n",
                d.bytes,
                how.name(),
                BStr::from_bytes(&dev.config().backing),
                if d.marked_clean { ", region clean" } else { "" }
            );
        }
        Err(Unfinished {
            records,
            took,
            held: Some(h),
            ..
        }) => {
            let (ms, frac) = ms(took);
            pr_emerg!(
                "shutdown drain ({}) done in {ms}.{frac:03} ms except bad record seq {} \
                 (sectors {}..{}): it failed its check and is never written; every other \
                 acknowledged write is on backing={}; region={} keeps it and {} records in all \
                 (not marked clean): the crash kernel or the next load replays them and skips \
                 it; new writes are held\n",
                how.name(),
                h.seq,
                h.sector,
                h.sector + u64::from(h.length) / 512,
                BStr::from_bytes(&dev.config().backing),
                dev.config().region,
                records
            );
        }
        Err(u) => {
            let (ms, frac) = ms(u.took);
            pr_emerg!(
                "shutdown drain incomplete after {ms}.{frac:03} ms ({}): {} records ({} bytes) \
                 acknowledged but not on backing={} (disk errors: {}); they stay in region={}: \
                 the crash kernel or the next load replays them if memory survives the {}, \
                 otherwise the next load reports them lost; new writes are held\n",
                how.name(),
                u.records,
                u.bytes,
                BStr::from_bytes(&dev.config().backing),
                stats::get(&dev.stats().disk_errors),
                dev.config().region,
                how.name()
            );
        }
    }
}

/// A suspend or hibernation begins (`LifecycleHandler::sleep_prepare`):
/// drains the region, or refuses (`EBUSY`) if it cannot.
pub(crate) fn sleep_prepare(dev: &Device, what: Sleep) -> Result {
    match clean_stop(dev) {
        Ok(d) => {
            let (ms, frac) = ms(d.took);
            pr_info!(
                "{} drain: {} bytes in {ms}.{frac:03} ms; every acknowledged write is on \
                 backing={}{}; writes go straight to it until resume\n",
                what.name(),
                d.bytes,
                BStr::from_bytes(&dev.config().backing),
                if d.marked_clean { ", region clean" } else { "" }
            );
            Ok(())
        }
        Err(Unfinished { held: Some(h), .. }) => {
            pr_err!(
                "refusing {}: writeback holds at bad record seq {} (it failed its check and \
                 is never written; every other acknowledged write is on backing={}), and \
                 only an empty region is left behind for a {}: `rapilogctl skip-bad-record \
                 {}` drops it\n",
                what.name(),
                h.seq,
                BStr::from_bytes(&dev.config().backing),
                what.name(),
                h.seq
            );
            dev.lock_live().admission = Admission::Buffered;
            dev.space_freed().notify_all();
            Err(EBUSY)
        }
        Err(u) => {
            let (ms, frac) = ms(u.took);
            pr_err!(
                "refusing {}: {} records ({} bytes) could not be written to backing={} in \
                 {ms}.{frac:03} ms (stop_drain_ms={}); they would not survive it\n",
                what.name(),
                u.records,
                u.bytes,
                BStr::from_bytes(&dev.config().backing),
                dev.config().stop_drain_ms
            );
            dev.lock_live().admission = Admission::Buffered;
            dev.space_freed().notify_all();
            Err(EBUSY)
        }
    }
}

/// The machine runs again after a sleep (`LifecycleHandler::resumed`):
/// buffers writes again in a region formatted afresh.
pub(crate) fn resumed(dev: &Device) {
    match resume_buffering(dev) {
        Ok(false) => {}
        Ok(true) => pr_info!(
            "resumed: region={} formatted afresh (epoch {:#018x}), writes are buffered again\n",
            dev.config().region,
            dev.epoch()
        ),
        Err(e) => pr_err!(
            "resumed, but region={} could not be formatted afresh ({}); writes keep going \
             straight to the disk\n",
            dev.config().region,
            Errno(e)
        ),
    }
}

/// Unload, once no bio, ioctl, signal or notifier can arrive any more:
/// tells writeback to drain every record and stop, waits until its thread
/// has exited (dropping `writeback`), then marks the region clean if
/// nothing is left in it, and says what is left otherwise.
pub(crate) fn unload(dev: &Device, writeback: Option<Kthread<Device>>) {
    dev.lock_live().stopping = true;
    dev.work().notify_all();
    drop(writeback);
    let (left, held) = {
        let live = dev.lock_live();
        (live.ring.live_records(), live.held)
    };
    let config = *dev.config();
    if let Some(h) = held {
        pr_warn!(
            "bad record seq {} (sectors {}..{}) failed its check and was not written back; it \
             stays in region={} with {left} records in all (every other one is on backing={}): \
             the next load replays them and skips it; to keep it, save the region first \
             (`rapilogctl inspect --mem` or dd from /dev/mem)\n",
            h.seq,
            h.sector,
            h.sector + u64::from(h.length) / 512,
            config.region,
            BStr::from_bytes(&config.backing)
        );
    } else if left == 0 {
        // The writeback thread has exited: its state is free.
        if mark_clean(dev, &mut dev.lock_writeback()).is_err() {
            pr_err!("could not mark the region clean; the next load replays nothing anyway\n");
        }
    } else {
        pr_warn!(
            "{left} records were not written back; they stay in region={} and are replayed \
             at the next load\n",
            config.region
        );
    }
    pr_info!("unloaded (region={}): {}\n", config.region, dev.stats());
}
