// SPDX-License-Identifier: GPL-2.0

//! The writeback worker: checks published records, drains those that pass
//! to the log disk in sequence order and frees their space.
//!
//! One batch at a time:
//! 1. Wait until writeback is due: the oldest record not yet written back
//!    has waited `writeback_delay_ms`, or an eighth of the ring is dirty,
//!    or a writer waits for space, or a drain was requested
//!    ([`drain_and_wait`], an orderly stop, the power-fail path), or the
//!    module is unloading.
//! 2. Take the published records from where writeback left off
//!    (`Live::written_to`; up to the first one still being filled) and the
//!    dirty-extent index's extents of those records.
//! 3. **Check** every record of the batch before any of it is written
//!    (`format::check_descriptor`): its descriptor, read back from the
//!    region's descriptor table, must be the one published for it. A
//!    record none of whose data goes to the disk in this batch (newer
//!    records of the batch overwrite all of it) has its payload checked
//!    here too, against the CRC-32C its descriptor carries: a corrupt
//!    record is reported whether or not its bytes would have reached the
//!    disk. The payload of every other record is checked in step 4.
//! 4. Write the batch's newest data of the records that passed: the
//!    extents whose record is in the batch, copied into bounce pages and
//!    merged into as few writes as they are contiguous
//!    (`format::writeback_plan`). A sector rewritten by several records,
//!    like a database log's current page at every commit, goes to the
//!    disk once per batch, not once per record; one rewritten again after
//!    the batch waits for that newer record. Each run (one disk write) is
//!    **checked after it is copied** and before it is submitted
//!    ([`copy_run`]), against the CRC-32C its descriptor carries, computed
//!    over the copy: for a piece that is its record's whole payload page by
//!    page right after each page is copied; for a record copied in part
//!    over the bytes this run copied, read from its buffer, and the rest of
//!    the payload from the region. So every byte a disk write carries was
//!    checked where it is, in the bounce buffer: a corruption of the region
//!    before or during the copy fails the check, one after it does not
//!    reach the disk. A record that fails there is handled as if step 3 had
//!    found it: its run is not written, and the plan resumes at that run
//!    without it (`WritePlan::starting_at`). The writes go in groups of
//!    up to [`WRITES_IN_FLIGHT`] (8 x 1 MiB), all in flight at once, each
//!    from its own bounce buffer
//!    (`BackingDisk::write_group`); fewer on a disk that writes less than
//!    that in half a second at the bandwidth measured so far
//!    (`format::writes_in_flight`: a deeper queue would only delay the
//!    group's end, its errors, a `dmsetup suspend`, and make its retry
//!    longer). The batch's runs cover disjoint sectors, so they may reach
//!    the disk and complete in any order. A group is waited for as a
//!    whole; if any of its writes failed, the whole group is retried (the
//!    buffers still hold its checked data; writing a sector again with the
//!    same bytes is harmless), and the next group starts only once this
//!    one succeeded.
//! 5. Flush the disk's cache, after every write of the batch completed:
//!    now they are durable there.
//! 6. Advance the durable tail in the superblock (the other copy,
//!    generation + 1) over the records written back, never past a bad one.
//! 7. Only then drop them from the index, free their slots and ring space,
//!    and wake writers waiting for space.
//!
//! # A record that fails its check
//!
//! It is never written to the disk. It is marked bad, counted, logged once
//! (rate limited) with its sequence number, target sectors and the
//! checksums, and the status names it. Ordinary writeback stops its batch
//! just before it (writes and makes durable what precedes it, advances the
//! tail to it) and then **holds**: it takes no further batch, so the bad
//! record stays in the region with everything after it, for `rapilogctl
//! dump` and `inspect --live`, and the ring fills behind it until writers
//! wait. Reads of the sectors whose newest data it holds fail with EIO
//! (`read_path`). Because each run is checked as copied (step 4), no byte
//! of a record that fails its check reaches the disk from that run on; a
//! record found bad only while a later run is copied had its earlier runs
//! checked as they were copied, so those hold the data that was published.
//!
//! A **drain** does not stop at a bad record: `rapilogctl flush`
//! ([`drain_and_wait`]), an orderly stop (`lifecycle`), the power-fail drain
//! (`powerfail`) and unload each promise that acknowledged writes reach the
//! disk. They check and write every record past the bad ones (the newest
//! data of each sector, never a bad record's), flush, and leave the tail at
//! the oldest bad record: the region keeps it and the records after it,
//! which are then on the disk too (a replay writes them again,
//! identically). What each of them then does is in its own module; all of
//! them say that a bad record was left behind.
//!
//! An administrator clears the held record ([`skip_bad_record`],
//! `rapilogctl skip-bad-record SEQ`): it is dropped unwritten, its sectors
//! keep what the disk and newer records hold, and writeback goes on (the
//! next bad record, if the drain found more, is held next). The crash kernel
//! and the load-time replay check every record anyway and skip a bad one,
//! counted in the region's replay report.
//!
//! A failing disk never loses data: the records stay in the region, the
//! error is counted and logged (rate limited), and the step is retried with
//! back-off. Only at unload does writeback give up, after a few attempts,
//! leaving the records in the region for the next load to replay.
//! A disk that keeps failing for `dead_disk_ms` is declared dead: new writes
//! fail with EIO until a step succeeds again (`dead_disk`); the retries go
//! on meanwhile, at most [`MAX_BACKOFF_MS`] apart.

#![deny(unsafe_code)]

use core::fmt;

use kernel::alloc::{flags::GFP_KERNEL, KVVec, KVec};
use kernel::prelude::*;
use kernel::str::BStr;
use kernel::time::{delay::fsleep, msecs_to_jiffies, Delta, Instant, Monotonic};

use crate::dead_disk::Failing;
use crate::device::Device;
use crate::disk_marker::Marker;
use crate::format::dirty_bound::BandwidthEstimate;
use crate::format::{
    batch_extents, check_descriptor, is_whole_record, writes_in_flight, ActiveSuperblock,
    ExpectedRecord, Extent, Geometry, PublishedPayload, RecordFault, Run, Source, WritePlan,
    DESCRIPTOR_BYTES, SECTOR_BYTES,
};
use crate::kernel_display::Errno;
use crate::lifecycle;
use crate::live::{Chore, Live, Record, Stage};
use crate::metadata;
use crate::powerfail;
use crate::ratelimit::RateLimit;
use crate::stats;
use crate::sys::backing::{Write, MAX_IO_BYTES, WRITES_IN_FLIGHT};
use crate::sys::bounce::BounceBuffer;
use crate::sys::compat;
use crate::sys::crc32c::KernelCrc32c;
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

/// How long writeback sleeps when nothing can wake it but a notification
/// (idle, or held at a bad record outside a drain).
const IDLE_MS: i64 = 10_000;

/// Writeback's state, under `Device::lock_writeback`: held by the writeback
/// thread for as long as it runs, and by unload once it has exited
/// (`device`, Locking).
pub(crate) struct Writeback {
    /// The current superblock, as last written.
    pub(crate) superblock: ActiveSuperblock,
    /// The log disk's loss marker, as last written (`lifecycle` writes it
    /// while holding this state, with `bounce` as scratch space).
    pub(crate) marker: Marker,
    /// Pages records are copied into for the disk: the first of the
    /// [`WRITES_IN_FLIGHT`] bounce buffers of a write group (one disk
    /// write's worth each), and the scratch space of the marker's writes.
    pub(crate) bounce: BounceBuffer,
    /// The other bounce buffers of a write group, allocated at load
    /// (`WRITES_IN_FLIGHT - 1` of them), so a drain never allocates one.
    more_bounce: KVec<BounceBuffer>,
    /// Records of the batch in progress.
    batch: KVec<Record>,
    /// What of the batch goes to the disk: its extents in the dirty-extent
    /// index, by sector. Room for the whole index (`2 x slots + 1`).
    extents: KVVec<Extent>,
    /// How each record of the batch is checked, by its index in `batch`.
    /// Room for a whole batch.
    payloads: KVec<Payload>,
    /// Sequence numbers of the batch's records that failed their check,
    /// ascending. Room for a whole batch.
    bad: KVec<u64>,
    /// Bytes a batch may take.
    max_batch_bytes: u64,
    /// Bandwidth of the batches so far, for the power-fail dirty bound.
    bandwidth: BandwidthEstimate,
    /// Rate limit of error lines.
    pub(crate) errors: RateLimit,
    /// Rate limit of bad-record lines.
    bad_lines: RateLimit,
}

/// Writeback stopped retrying (unload with a failing disk).
pub(crate) struct GaveUp;

/// A step that may fail and be retried, for messages.
enum Step {
    /// A write group: `writes` disk writes of `bytes` in all, the first at
    /// `sector`, in flight together.
    Writes {
        sector: u64,
        bytes: usize,
        writes: usize,
    },
    Flush,
    Superblock,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Writes {
                sector,
                bytes,
                writes: 1,
            } => write!(f, "writing {bytes} bytes at sector {sector}"),
            Self::Writes {
                sector,
                bytes,
                writes,
            } => write!(
                f,
                "writing {bytes} bytes in {writes} writes from sector {sector} on"
            ),
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
        let mut more_bounce = KVec::with_capacity(WRITES_IN_FLIGHT - 1, GFP_KERNEL)?;
        for _ in 1..WRITES_IN_FLIGHT {
            more_bounce.push(BounceBuffer::new(MAX_IO_BYTES)?, GFP_KERNEL)?;
        }
        Ok(Self {
            superblock,
            marker,
            bounce,
            more_bounce,
            batch: KVec::with_capacity(MAX_BATCH_RECORDS, GFP_KERNEL)?,
            extents: KVVec::with_capacity(2 * geometry.descriptor_slots as usize + 1, GFP_KERNEL)?,
            payloads: KVec::with_capacity(MAX_BATCH_RECORDS, GFP_KERNEL)?,
            bad: KVec::with_capacity(MAX_BATCH_RECORDS, GFP_KERNEL)?,
            max_batch_bytes: MAX_BATCH_BYTES.min(geometry.ring_bytes / 4).max(1),
            bandwidth: BandwidthEstimate::default(),
            errors: RateLimit::new(),
            bad_lines: RateLimit::new(),
        })
    }
}

/// The thread body: batches until asked to stop, then drains what is left.
pub(crate) fn run(dev: &Device) {
    let mut guard = dev.lock_writeback();
    let wb = &mut *guard;
    loop {
        match next_batch(dev, wb) {
            Next::Stop => break,
            Next::Drained => {
                // Everything is on the disk: say so on the disk too, or a
                // machine whose memory dies with the power would find a
                // `Live` marker and no region, and report a loss that is
                // not one. After the data's flush: never clean too early.
                powerfail::durable(dev);
                let clean = lifecycle::mark_clean(dev, wb);
                powerfail::drained(dev, clean);
            }
            Next::Resume(due) => powerfail::resume(dev, wb, due),
            Next::Chore(chore) => {
                let outcome = lifecycle::perform(dev, wb, chore);
                dev.lock_live().chore_done = Some(outcome);
                dev.space_freed().notify_all();
            }
            Next::Batch {
                stopping,
                drain,
                head_hint,
                bound_limited,
            } => {
                if write_batch(dev, wb, stopping, drain, head_hint, bound_limited).is_err() {
                    break;
                }
            }
        }
    }
}

/// What [`next_batch`] found.
enum Next {
    /// A batch is collected (possibly empty, when only the tail can move);
    /// `stopping`: unload has begun; `drain`: write past a bad record;
    /// `head_hint` for the superblock; `bound_limited`: writers wait for
    /// space (the bandwidth estimate then counts the batch from its first
    /// record, see [`write_batch`]).
    Batch {
        stopping: bool,
        drain: bool,
        head_hint: u64,
        bound_limited: bool,
    },
    /// Unload has begun and nothing is left to write.
    Stop,
    /// A power-fail drain has handled every record: it is complete.
    Drained,
    /// The machine outlived a power-fail signal: service may resume.
    Resume(powerfail::Due),
    /// `lifecycle` asked for a chore.
    Chore(Chore),
}

/// Whether ordinary writeback is due (step 1; drains are asked for).
fn due(dev: &Device, live: &Live) -> bool {
    live.waiting_writers > 0
        || live.dirty_bytes >= dev.writeback_threshold()
        || live
            .oldest_age()
            .is_some_and(|age| age >= dev.writeback_delay())
}

/// How long to sleep before looking again.
fn sleep_for(dev: &Device, live: &Live, drain: bool) -> Delta {
    if live.held.is_some() && !drain {
        // Held at a bad record: only a skip, a drain, a chore or unload
        // moves writeback on, and each of them wakes it.
        return Delta::from_millis(IDLE_MS);
    }
    match live.oldest_age() {
        Some(age) => (dev.writeback_delay() - age).max(Delta::from_millis(1)),
        // The oldest unhandled record is being filled: its writer is about
        // to publish.
        None if live.written_to < live.ring.next_seq() => Delta::from_millis(1),
        // Idle; a writer wakes us when it publishes into a clean ring.
        None => Delta::from_millis(IDLE_MS),
    }
}

/// Waits until writeback is due and collects the batch (steps 1 and 2).
fn next_batch(dev: &Device, wb: &mut Writeback) -> Next {
    let mut live = dev.lock_live();
    loop {
        if let Some(chore) = live.chore.take() {
            return Next::Chore(chore);
        }
        if let Some(seq) = live.skip_request.take() {
            skip(dev, &mut live, seq);
            dev.space_freed().notify_all();
            continue;
        }
        let stopping = live.stopping || should_stop();
        let power_fail = dev.powerfail().draining();
        let drain = stopping || power_fail || live.drain_to > live.written_to;
        // A skipped record (or records a drain wrote past it) lets the
        // tail move without writing anything.
        let release = live.held.is_none() && live.releasable().is_some();
        if release || drain || (live.held.is_none() && due(dev, &live)) {
            // A power-fail drain takes the whole ring: fewest, largest writes.
            let max_bytes = if power_fail {
                u64::MAX
            } else {
                wb.max_batch_bytes
            };
            collect(&live, &mut wb.batch, &mut wb.extents, max_bytes);
            if !wb.batch.is_empty() || release {
                return Next::Batch {
                    stopping,
                    drain,
                    head_hint: live.ring.next_seq(),
                    bound_limited: live.waiting_writers > 0,
                };
            }
            if stopping {
                return Next::Stop;
            }
            if power_fail && live.written_to >= live.ring.next_seq() {
                return Next::Drained;
            }
        }
        let mut sleep = sleep_for(dev, &live, drain);
        // After a power-fail drain, writeback is the clock that ends the
        // hold once the machine has outlived the signal (`powerfail`).
        match dev.powerfail().resume_due(dev) {
            powerfail::Resume::No => {}
            powerfail::Resume::After(left) => sleep = sleep.min(left),
            powerfail::Resume::Due(due) => return Next::Resume(due),
        }
        let ms = compat::millis_ceil(sleep).clamp(1, IDLE_MS) as u32;
        // A signal cannot reach a kthread; waking early is harmless.
        let _ = dev
            .work()
            .wait_interruptible_timeout(&mut live, msecs_to_jiffies(ms));
    }
}

/// Copies the published records from where writeback left off into
/// `batch`, and the index's extents of those records into `extents`.
fn collect(live: &Live, batch: &mut KVec<Record>, extents: &mut KVVec<Extent>, max_bytes: u64) {
    batch.clear();
    extents.clear();
    let from = live.written_to;
    let mut bytes = 0u64;
    let mut seq = from;
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
    // Extents of older records are either on the disk already (written by
    // a drain past a held record, not yet freed) or a bad record's.
    let extents_of_batch =
        batch_extents(live.index.extents(), last.reservation.seq).filter(|e| e.seq >= from);
    for extent in extents_of_batch {
        // Cannot fail: `extents` has room for the whole index.
        if extents.push_within_capacity(extent).is_err() {
            break;
        }
    }
}

/// How a record of the batch is checked (steps 3 and 4).
enum Payload {
    /// Nothing of it goes to the disk in this batch (newer records of the
    /// batch overwrite all of it), or it is not published (abandoned):
    /// step 3 checks a published one whole, from the region.
    Unwritten,
    /// Some of it goes to the disk: step 3 checks its descriptor only.
    Written,
    /// A `Written` record whose descriptor passed: step 4 checks its
    /// payload against `payload` each time it copies any of it, before the
    /// copy is written. `checked_in`: the last run (numbered from 1 in the
    /// batch) for which it was checked from the region.
    Verify {
        payload: PublishedPayload,
        checked_in: u32,
    },
}

/// The descriptor half of step 3 for one record: its descriptor in the
/// table must be the one published for it.
fn check_descriptor_of(dev: &Device, record: &Record) -> Result<PublishedPayload, RecordFault> {
    let r = &record.reservation;
    let mut descriptor = [0u8; DESCRIPTOR_BYTES];
    let copied = dev.geometry().descriptor_range(r.slot).map_or(0, |range| {
        dev.region().snapshot(range.start, &mut descriptor)
    });
    if copied != DESCRIPTOR_BYTES {
        // Impossible with a valid geometry; never write what we cannot check.
        return Err(RecordFault::DescriptorMismatch);
    }
    let expected = ExpectedRecord {
        seq: r.seq,
        epoch: dev.epoch(),
        sector: record.sector,
        ring_offset: r.ring_offset,
        length: r.length,
    };
    check_descriptor(dev.geometry(), &descriptor, &expected, KernelCrc32c)
}

/// Checks `payload` as it is in the region now.
fn check_in_region(dev: &Device, payload: &PublishedPayload) -> Result<(), RecordFault> {
    let found = dev
        .region()
        .checksum(payload.range.start, payload.range.len())
        .ok_or(RecordFault::DescriptorMismatch)?;
    payload.verify(found)
}

/// Step 3 for one record: its descriptor, and its payload unless step 4
/// checks that as it copies it.
fn check(dev: &Device, record: &Record, payload: &mut Payload) -> Result<(), RecordFault> {
    let published = check_descriptor_of(dev, record)?;
    match payload {
        Payload::Written => {
            *payload = Payload::Verify {
                payload: published,
                checked_in: 0,
            };
            Ok(())
        }
        _ => check_in_region(dev, &published),
    }
}

/// Why a run was not written (step 4).
enum RunFault {
    /// A piece of record `seq` lies outside the region, or its record was
    /// not checked: impossible with a valid geometry and batch.
    Unchecked(u64),
    /// The record at `index` in the batch failed its check.
    Bad { index: usize, fault: RecordFault },
}

/// Step 4 for one run: copies its pieces into `buffer` and checks every
/// record it copied from against its descriptor's CRC-32C, computed over
/// **the copy**, so that every byte the disk write carries was checked
/// where it is, whatever happens to the region meanwhile. A piece that is
/// its record's whole payload: the CRC-32C of the copy, page by page as
/// each is copied, while it is in the cache
/// (`copy_from_region_checksummed`). A record copied in part
/// (newer records overwrite some of it, or the run ends inside it): once
/// per run, after the copy, over its copied bytes in `buffer` and the rest
/// in the region ([`checksum_with_copy`]). Returns the bytes copied.
/// `run_no` numbers the batch's runs from 1.
fn copy_run(
    dev: &Device,
    buffer: &mut BounceBuffer,
    run: &Run<'_>,
    batch: &[Record],
    payloads: &mut [Payload],
    run_no: u32,
) -> Result<usize, RunFault> {
    let from = batch.first().map_or(0, |r| r.reservation.seq);
    let index_of = |seq: u64| usize::try_from(seq.wrapping_sub(from)).unwrap_or(usize::MAX);
    let mut len = 0usize;
    for piece in run.pieces() {
        let index = index_of(piece.seq);
        let (Some(record), Some(Payload::Verify { payload, .. })) =
            (batch.get(index), payloads.get(index))
        else {
            return Err(RunFault::Unchecked(piece.seq));
        };
        // The index's handle is the payload's offset in the region: the
        // bytes copied are the bytes checked.
        if piece.record != payload.range.start as u64 {
            return Err(RunFault::Unchecked(piece.seq));
        }
        let piece_bytes = (piece.sectors * u64::from(SECTOR_BYTES)) as usize;
        // `record` is the payload's offset in the region.
        let offset = (piece.record + piece.record_offset * u64::from(SECTOR_BYTES)) as usize;
        if is_whole_record(&piece, record.reservation.length) {
            let found = buffer
                .copy_from_region_checksummed(len, dev.region(), offset, piece_bytes)
                .map_err(|_| RunFault::Unchecked(piece.seq))?;
            payload
                .verify(found)
                .map_err(|fault| RunFault::Bad { index, fault })?;
        } else {
            buffer
                .copy_from_region(len, dev.region(), offset, piece_bytes)
                .map_err(|_| RunFault::Unchecked(piece.seq))?;
        }
        len += piece_bytes;
    }
    for piece in run.pieces() {
        let index = index_of(piece.seq);
        let (
            Some(record),
            Some(Payload::Verify {
                payload,
                checked_in,
            }),
        ) = (batch.get(index), payloads.get_mut(index))
        else {
            return Err(RunFault::Unchecked(piece.seq));
        };
        if is_whole_record(&piece, record.reservation.length) || *checked_in == run_no {
            continue;
        }
        *checked_in = run_no;
        let found = checksum_with_copy(dev, buffer, run, piece.seq, payload)
            .ok_or(RunFault::Unchecked(piece.seq))?;
        payload
            .verify(found)
            .map_err(|fault| RunFault::Bad { index, fault })?;
    }
    Ok(len)
}

/// CRC-32C of record `seq`'s payload with the bytes `run` copied read from
/// `buffer`, where the copy is that the disk write carries, and the rest
/// (overwritten by newer records, or copied by other runs) from the region
/// (`Run::record_sources`); `None` if a range is out of bounds.
fn checksum_with_copy(
    dev: &Device,
    buffer: &BounceBuffer,
    run: &Run<'_>,
    seq: u64,
    payload: &PublishedPayload,
) -> Option<u32> {
    let mut crc = !0u32;
    let bytes = u32::try_from(payload.range.len()).ok()?;
    run.record_sources(seq, bytes, |source| {
        crc = match source {
            Source::Region { offset, len } => {
                dev.region()
                    .crc_update_raw(crc, payload.range.start.checked_add(offset)?, len)?
            }
            Source::Copy { at, len } => buffer.crc_update_raw(crc, at, len).ok()?,
        };
        Some(())
    })?;
    Some(!crc)
}

/// A record failed its check: marks it bad (held if it is the oldest),
/// counts and logs it.
fn found_bad(dev: &Device, lines: &mut RateLimit, record: &Record, fault: RecordFault) {
    let seq = record.reservation.seq;
    let found_at_us = dev.loaded_at().elapsed().as_micros_ceil().max(0) as u64;
    let held = dev.lock_live().mark_bad(record, fault, found_at_us);
    stats::add(&dev.stats().bad_records, 1);
    let Some(suppressed) = lines.allow() else {
        return;
    };
    let first = record.sector;
    let end = first + u64::from(record.reservation.length) / u64::from(SECTOR_BYTES);
    let backing = BStr::from_bytes(&dev.config().backing);
    let region = dev.config().region;
    match held {
        Some(h) if h.seq != seq => pr_err!(
            "writeback: record seq {seq} (sectors {first}..{end} of backing={backing}) failed its \
             check: {fault}; it is not written to the disk and stays in region={region} behind bad \
             record seq {}; reads of its sectors fail with EIO ({suppressed} similar lines \
             suppressed)\n",
            h.seq
        ),
        _ => pr_err!(
            "writeback: record seq {seq} (sectors {first}..{end} of backing={backing}) failed its \
             check: {fault}; it is not written to the disk: writeback holds at it, so the ring \
             fills behind it, and keeps it in region={region} (`rapilogctl dump` saves it); reads \
             of its sectors fail with EIO; `rapilogctl skip-bad-record {seq}` drops it \
             ({suppressed} similar lines suppressed)\n"
        ),
    }
}

/// Skips the held record `seq` for an administrator ([`skip_bad_record`]).
fn skip(dev: &Device, live: &mut Live, seq: u64) {
    let Some(skipped) = live.skip_held(seq) else {
        return;
    };
    stats::add(&dev.stats().bad_skipped, 1);
    let first = skipped.sector;
    let end = first + u64::from(skipped.length) / u64::from(SECTOR_BYTES);
    let backing = BStr::from_bytes(&dev.config().backing);
    pr_warn!(
        "writeback: bad record seq {seq} (sectors {first}..{end} of backing={backing}) skipped by \
         an administrator: dropped without being written; its sectors keep what the disk and \
         newer records hold; writeback continues\n"
    );
    if let Some(next) = live.held {
        pr_warn!(
            "writeback: holds at the next bad record, seq {} (`rapilogctl status`)\n",
            next.seq
        );
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
                stats::set(&dev.stats().wb_retrying, 0);
                disk_back(dev, &step);
            }
            return Ok(());
        };
        stats::add(&dev.stats().disk_errors, 1);
        stats::set(
            &dev.stats().last_disk_errno,
            e.to_errno().unsigned_abs().into(),
        );
        stats::set(&dev.stats().wb_retrying, 1);
        if dev.powerfail().draining() {
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
        let mut sleep = Delta::from_millis(backoff);
        let failing = dev.lock_live().disk.failed();
        match failing {
            // Look again when the deadline passes, not a back-off later.
            Failing::For(Some(left)) => sleep = sleep.min(left).max(Delta::from_millis(1)),
            Failing::For(None) | Failing::Dead => {}
            Failing::JustDead(failing) => disk_dead(dev, failing, e),
        }
        if let Some(suppressed) = errors.allow() {
            let ms = compat::millis_ceil(sleep);
            pr_err!(
                "writeback: {step} failed ({}); the data stays in the region, retrying in {ms} ms \
                 ({suppressed} similar lines suppressed)\n",
                Errno(e)
            );
        }
        sleep_awake(sleep);
        backoff = (backoff * 2).min(MAX_BACKOFF_MS);
    }
}

/// Sleeps `d` in steps of at most a second: an uninterruptible sleep as
/// long as the hung-task timeout (set low on a test machine) would be
/// reported as a hung writeback thread.
fn sleep_awake(mut d: Delta) {
    let step = Delta::from_millis(1000);
    while d > Delta::from_nanos(0) {
        let now = d.min(step);
        fsleep(now);
        d -= now;
    }
}

/// The disk failed for longer than `dead_disk_ms`: new writes fail from now
/// on (`dead_disk`), and writers waiting for ring space are woken to fail.
fn disk_dead(dev: &Device, failing: Delta, e: Error) {
    let (dirty, oldest) = {
        let live = dev.lock_live();
        (live.dirty_bytes, live.oldest_age())
    };
    dev.space_freed().notify_all();
    let oldest_s = oldest.map_or(0, |a| a.as_millis() / 1000);
    pr_err!(
        "writeback: the log disk backing={} has failed for {} ms without a single success (last \
         error {}): it is treated as dead (dead_disk_ms={}): new writes fail with EIO from now on, \
         reads and flushes still work; the {dirty} bytes acknowledged and not yet written (the \
         oldest for {oldest_s} s) stay in the region, are retried every {MAX_BACKOFF_MS} ms at most, \
         and writes are accepted again once the disk takes them (`rapilogctl status`)\n",
        BStr::from_bytes(&dev.config().backing),
        failing.as_millis(),
        Errno(e),
        dev.config().dead_disk_ms
    );
}

/// A step succeeded after failures: if the disk was failing, it is back.
fn disk_back(dev: &Device, step: &Step) {
    let Some((failing, dead)) = dev.lock_live().disk.succeeded() else {
        return;
    };
    let backing = BStr::from_bytes(&dev.config().backing);
    match dead {
        Some(dead) => pr_warn!(
            "writeback: the log disk backing={backing} is back ({step} succeeded) after failing for \
             {} ms; new writes had failed with EIO for {} ms and are accepted again; the region \
             drains\n",
            failing.as_millis(),
            dead.as_millis()
        ),
        None => pr_warn!(
            "writeback: the log disk backing={backing} is back ({step} succeeded) after failing for \
             {} ms\n",
            failing.as_millis()
        ),
    }
}

/// The bounce buffers of a write group, each once.
fn buffers<'a>(
    first: &'a mut BounceBuffer,
    more: &'a mut KVec<BounceBuffer>,
) -> impl Iterator<Item = &'a mut BounceBuffer> {
    Iterator::chain(core::iter::once(first), more.iter_mut())
}

/// Steps 3 to 7 for the collected batch; with `drain`, past bad records.
fn write_batch(
    dev: &Device,
    wb: &mut Writeback,
    stopping: bool,
    drain: bool,
    head_hint: u64,
    bound_limited: bool,
) -> Result<(), GaveUp> {
    let Writeback {
        superblock,
        bounce,
        more_bounce,
        batch,
        extents,
        payloads,
        bad,
        errors,
        bad_lines,
        bandwidth,
        ..
    } = wb;
    let started = Instant::<Monotonic>::now();
    // While writers wait for space, the batch's records came in since the
    // last batch freed it, and the disk's time for them is from then on:
    // a throttled disk lets a batch through at once and charges it to the
    // next one, whose own time then covers only what the bucket did not
    // leak while the writers refilled the ring. Counting from the batch's
    // first record charges that refill too, so the estimate stays at or
    // below what the disk sustains (writers faster than the disk refill
    // quickly, and then it counts little).
    let first_published = match batch.first().map(|r| r.stage) {
        Some(Stage::Published(at)) if bound_limited && !drain => Some(at),
        _ => None,
    };
    let (mut ios, mut bytes) = (0u64, 0u64);
    let handled = batch
        .first()
        .zip(batch.last())
        .map(|(first, last)| (first.reservation.seq, last.reservation.seq + 1));
    if let Some((from, mut end)) = handled {
        // Which records have data of theirs written: their payloads are
        // checked as they are copied (step 4); the others' in step 3.
        payloads.clear();
        for _ in batch.iter() {
            // Cannot fail: room for a whole batch.
            let _ = payloads.push_within_capacity(Payload::Unwritten);
        }
        for extent in extents.iter() {
            let index = usize::try_from(extent.seq - from).unwrap_or(usize::MAX);
            if let Some(payload) = payloads.get_mut(index) {
                *payload = Payload::Written;
            }
        }
        // Step 3: every record, before anything of the batch is written.
        bad.clear();
        for (record, payload) in batch.iter().zip(payloads.iter_mut()) {
            if !matches!(record.stage, Stage::Published(_)) {
                continue; // abandoned: nothing to check or write
            }
            let Err(fault) = check(dev, record, payload) else {
                continue;
            };
            found_bad(dev, bad_lines, record, fault);
            // Cannot fail: room for a whole batch.
            let _ = bad.push_within_capacity(record.reservation.seq);
            if !drain {
                // Stop the batch at it: what precedes it is written and the
                // tail advances to it; what follows waits.
                end = record.reservation.seq + 1;
                break;
            }
        }
        extents.retain(|e| e.seq < end && bad.binary_search(&e.seq).is_err());

        // Step 4: the runs cover disjoint sectors (each sector's newest
        // data once), so the writes of a group may be in flight together
        // and complete in any order; the flush (step 5) waits for all.
        let capacity = bounce.capacity().min(MAX_IO_BYTES);
        let max_sectors = (capacity / SECTOR_BYTES as usize) as u64;
        // As many as the disk writes in half a second at the bandwidth
        // measured so far (`format::writes_in_flight`), at most 8.
        let depth = writes_in_flight(bandwidth.bytes_per_sec(), WRITES_IN_FLIGHT, capacity as u64);
        let mut run_no = 0u32;
        // Where the plan starts: again after a record failed its check
        // while its run was copied (that run was not written, the runs
        // before it were, and they are not written again).
        let mut resume_at = 0u64;
        loop {
            let mut plan = WritePlan::starting_at(extents, max_sectors, resume_at);
            let failed = loop {
                let mut group = [Write::default(); WRITES_IN_FLIGHT];
                let mut count = 0;
                let mut stopped = None;
                // The first attempt copies and checks each run into its
                // buffer and submits it before copying the next; a retry
                // writes the same buffers again, unchanged.
                let first = dev.backing().write_group(
                    buffers(bounce, more_bounce).take(depth),
                    |k, buffer| {
                        let run = plan.next()?;
                        run_no += 1;
                        match copy_run(dev, buffer, &run, batch, payloads, run_no) {
                            Ok(len) => {
                                let write = Write {
                                    sector: run.sector,
                                    bytes: len,
                                };
                                *group.get_mut(k)? = write;
                                count = k + 1;
                                Some(write)
                            }
                            Err(fault) => {
                                stopped = Some((run.sector, fault));
                                None
                            }
                        }
                    },
                );
                if let Some((_, RunFault::Unchecked(seq))) = stopped {
                    // Impossible with a valid geometry; never write what we
                    // did not check (what this group submitted before it is
                    // waited for, nothing is flushed or released).
                    pr_err!("writeback: record {seq} lies outside the region or was not checked\n");
                    return Err(GaveUp);
                }
                if count > 0 {
                    let writes = group.get(..count).unwrap_or(&[]);
                    let group_bytes: usize = writes.iter().map(|w| w.bytes).sum();
                    ios += count as u64;
                    bytes += group_bytes as u64;
                    let step = Step::Writes {
                        sector: group[0].sector,
                        bytes: group_bytes,
                        writes: count,
                    };
                    let mut first = Some(first);
                    retry(dev, errors, stopping, step, || {
                        first.take().unwrap_or_else(|| {
                            dev.backing()
                                .write_group(buffers(bounce, more_bounce), |k, _| {
                                    writes.get(k).copied()
                                })
                        })
                    })?;
                }
                match stopped {
                    Some((sector, RunFault::Bad { index, fault })) => {
                        break Some((sector, index, fault))
                    }
                    _ if count == 0 => break None,
                    _ => {}
                }
            };
            let Some((sector, index, fault)) = failed else {
                break;
            };
            // A record failed its check after its run was copied: that run
            // is not written. The record is bad from now on, as if step 3
            // had found it; the plan goes on from that run without it.
            let Some(record) = batch.get(index) else {
                break;
            };
            found_bad(dev, bad_lines, record, fault);
            let seq = record.reservation.seq;
            if let Err(at) = bad.binary_search(&seq) {
                // Cannot fail: room for a whole batch.
                let _ = bad.insert_within_capacity(at, seq);
            }
            if !drain {
                // As in step 3: the batch ends at it. Runs already written
                // hold newer records' data too: on the disk before the tail
                // reaches them, like a drain's past a bad record, harmless
                // (a replay writes the same bytes again).
                end = end.min(seq + 1);
            }
            extents.retain(|e| e.seq < end && bad.binary_search(&e.seq).is_err());
            resume_at = sector;
        }
        // Step 5 (nothing to flush if nothing was written: each batch
        // flushes its own writes, and the batch's records that wrote
        // nothing were overwritten by newer ones).
        if ios > 0 {
            retry(dev, errors, stopping, Step::Flush, || dev.backing().flush())?;
            stats::add(&dev.stats().wb_flushes, 1);
        }
        // Counted before any waiter can see the batch done: a stop's drain
        // reads `wb_bytes` as soon as it wakes (`lifecycle::clean_stop`),
        // and `rapilogctl flush` the status right after.
        let busy = started.elapsed().as_nanos().max(0) as u64;
        stats::add(&dev.stats().wb_ios, ios);
        stats::add(&dev.stats().wb_bytes, bytes);
        stats::add(&dev.stats().wb_busy_ns, busy);
        let measured = first_published.map_or(busy, |at| at.elapsed().as_nanos().max(0) as u64);
        bandwidth.observe(bytes, measured.max(busy));
        dev.powerfail()
            .set_measured_bandwidth(bandwidth.bytes_per_sec().unwrap_or(0));
        let records = dev.lock_live().mark_written(from, end);
        stats::add(&dev.stats().wb_records, records);
        // Drain waiters watch `written_to`, which may move without the tail.
        dev.space_freed().notify_all();
    }

    // Step 6: the tail moves over what needs nothing more, never past a
    // bad record (`Live::releasable`).
    let release = dev.lock_live().releasable();
    if let Some(last) = release {
        let mut next = superblock.next_update();
        next.superblock.durable_tail = last.seq + 1;
        next.superblock.head_hint = head_hint.max(next.superblock.durable_tail);
        retry(dev, errors, stopping, Step::Superblock, || {
            metadata::write_superblock(dev.region(), &next)
        })?;
        *superblock = next;
        // Step 7.
        dev.lock_live().release_through(&last);
        dev.space_freed().notify_all();
    }
    Ok(())
}

/// Makes everything written before the call durable on the disk: asks
/// writeback to drain up to the current head at once (not after
/// `writeback_delay_ms`) and waits until it has. Interruptible by a signal.
///
/// `EIO` if a record it had to write failed its check: everything else
/// before the head is then on the disk, and the bad record is held.
pub(crate) fn drain_and_wait(dev: &Device) -> Result {
    let mut live = dev.lock_live();
    let target = live.ring.next_seq();
    live.drain_to = live.drain_to.max(target);
    dev.work().notify_all();
    while !live.drained_to(target) {
        if live.stopping {
            return Err(ENODEV);
        }
        if dev.space_freed().wait_interruptible(&mut live) {
            return Err(ERESTARTSYS);
        }
    }
    if live.held.is_some_and(|h| h.seq < target) {
        return Err(EIO);
    }
    Ok(())
}

/// Drops the bad record writeback holds at, for an administrator
/// (`IOCTL_SKIP_BAD_RECORD`): `seq` must name it (`ENOENT` if none is
/// held, `ESTALE` if another one is), so that a request made from an old
/// status cannot drop another record. The writeback thread does it between
/// batches (it owns the batch in flight); this waits until it has.
/// Interruptible: the request is then withdrawn if not yet taken.
pub(crate) fn skip_bad_record(dev: &Device, seq: u64) -> Result {
    let mut live = dev.lock_live();
    match live.held {
        None => return Err(ENOENT),
        Some(h) if h.seq != seq => return Err(compat::estale()),
        Some(_) => {}
    }
    live.skip_request = Some(seq);
    dev.work().notify_all();
    while live.skip_request == Some(seq) {
        if live.stopping {
            return Err(ENODEV);
        }
        if dev.space_freed().wait_interruptible(&mut live) {
            if live.skip_request == Some(seq) {
                live.skip_request = None;
            }
            return Err(ERESTARTSYS);
        }
    }
    if live.held.is_some_and(|h| h.seq == seq) {
        // Taken but not done: the tail had not reached it (cannot happen
        // between batches).
        return Err(EBUSY);
    }
    Ok(())
}
