// SPDX-License-Identifier: GPL-2.0

//! The device: everything `/dev/rapilog<N>`, its writeback thread, the
//! control device and the machine's events share, and the kernel's entry
//! points into the driver. One per device (`instance`); the module's
//! devices are in the `registry`, whose lock comes before all of these.
//!
//! # How the code is laid out
//!
//! `impl Device` lives in this file only: the state, its accessors and
//! locks, and the kernel's entry points of one device (the `sys` traits: a
//! bio, the writeback thread), each of them one call into the module that
//! does the work. The entry points that serve every device (an ioctl, a
//! power-fail signal, a reboot or PM event) are the `registry`'s, which
//! finds the device and calls the same modules. Every stage is
//! a module of free functions whose first argument is `dev: &Device`, and
//! callers name the module: `write_path::write(dev, bio)`,
//! `writeback::run(dev)`, `lifecycle::stopping(dev, how)`. A reader (and
//! rust-analyzer) goes from an entry point here to the file that handles
//! it; other types keep their methods in their own module (`Live` in
//! `live`, `PowerFail` in `powerfail`, ...).
//!
//! # Locking
//!
//! Locks, in the order they are taken (a lock is never taken while one
//! below it is held):
//!
//! 0. The registry's `slots` (module-wide, `registry`): taken before any
//!    lock of a device, never by a device's own paths (bio, writeback,
//!    signal); held by the reboot and PM notifiers across each device's
//!    drain, and by module init and exit.
//! 1. [`Device::lock_writeback`] (`Mutex<Writeback>`): the superblock as
//!    last written, the disk's loss marker, the bounce pages (the
//!    `WRITES_IN_FLIGHT` buffers of a write group, allocated at load; a
//!    group's bios borrow them until every one completed, within one
//!    `BackingDisk::write_group` call), writeback's
//!    batch buffers, bandwidth estimate and rate limits. Taken by the
//!    **writeback thread** for its whole life (so everything that writes
//!    the superblock or the marker while the device is live runs there:
//!    `lifecycle`'s chores, `powerfail`'s resume), and by **unload** once
//!    that thread has exited. Nothing else takes it: a notifier or an ioctl
//!    that needs the superblock or the marker changed asks the thread
//!    (`Live::chore`, `Live::drain_to`, `Live::skip_request`) and waits on
//!    `space_freed`. Held across disk I/O, sleeps and `live`.
//! 2. [`Device::lock_live`] (`Mutex<Live>`): ring accounting, the
//!    dirty-extent index, every live record's stage, the admission of new
//!    writes, the held bad record, the disk's health, and the requests to
//!    writeback (chore, drain, skip, stopping). Taken by **submit_bio**
//!    (any task that submits I/O: reserve, publish, abandon; a read's
//!    lookup, its split and the check after its copy out of the region,
//!    `Live::freed`; a flush's admission check), the **writeback thread** (under `writeback`), **ioctls**
//!    (status, drain, skip), the **reboot and PM notifiers** (`lifecycle`)
//!    and **unload**. Held only for bookkeeping (and, rarely, a read's copy:
//!    its fourth try, `read_path`): never across
//!    disk I/O or a sleep, except that a read allocates its split bio
//!    under it (`GFP_NOIO`, from a private pool; `read_path` says why that
//!    pool cannot run dry). A superblock written under it opens a write
//!    window, which does not sleep (`sys::region`).
//!    - [`Device::space_freed`] and [`Device::work`], the condition
//!      variables, are waited on with `live` held (it is released while
//!      asleep): writers, drain and skip requests and stopping notifiers
//!      wait on `space_freed`, the writeback thread on `work`.
//! 3. Leaves, taken with no other lock of the driver held:
//!    `write_errors` (`Mutex<RateLimit>`, [`Device::write_error`]: the
//!    write path's error lines) and `fence` (`Mutex<FenceReport>`,
//!    [`Device::fence`], [`Device::set_fence`]: ioctls; not held across
//!    the PCI walk, which takes each device's lock).
//!
//! No lock at all:
//!
//! - The **power-fail signal** path: the NMI and the power button's input
//!   event only set a C atomic and queue an `irq_work`, whose callback (hard
//!   IRQ) runs `powerfail::signalled`: atomics of [`PowerFail`] and a
//!   wake-up of `work` (the condition variable's wait-queue spinlock, which
//!   disables interrupts), nothing that sleeps.
//! - [`Stats`], the epoch ([`Device::epoch`]) and the marker gauge:
//!   atomics, ordered by nothing but what their comments say.
//! - A write window holds this CPU's slot with preemption disabled, no
//!   lock (`sys::region`); the records it writes belong to its writer by the
//!   ring protocol (reserved under `live`).
//!
//! Contexts, and what each may take:
//!
//! | context | locks |
//! |---|---|
//! | process, `submit_bio` of `/dev/rapilog0` | `live`, `write_errors` |
//! | process, `/dev/rapilog-ctl` ioctls and reads | `slots` (released before the rest), `live`, `fence` |
//! | writeback thread (kthread, `GFP_NOIO` scope) | `writeback`, then `live` |
//! | reboot and PM notifiers (process, blocking chains) | `slots`, then `live` |
//! | module init and exit (process) | `slots`, then `live`; `writeback` once the thread is gone |
//! | power-fail signal (hard IRQ via `irq_work`; the NMI itself only in C) | none |
//!
//! # Cache semantics presented to the block layer
//!
//! The disk advertises a volatile write cache with FUA, so filesystems and
//! databases send their flushes and FUA writes here instead of having the
//! block layer drop them. The driver completes a flush at once, and a FUA
//! write as soon as its record is published, because the region is the
//! durability domain: every write completed before is already in it, and
//! the region survives a kernel crash (rapilog-rescue replays it) and a warm
//! reboot (this module replays it at load). That is the same promise a disk
//! with a power-loss-protected cache makes - the "cache" here is the region.
//! It is honest only as long as the region is: on power loss the bounded
//! ring must be drained within the hold-up time (the power-fail path).

#![deny(unsafe_code)]

use kernel::prelude::*;
use kernel::sync::atomic::{Atomic, Relaxed};
use kernel::sync::lock::{mutex::MutexBackend, Guard};
use kernel::sync::{new_condvar, new_mutex, Arc, CondVar, Mutex};
use kernel::time::{Delta, Instant, Monotonic};

use crate::config::Config;
use crate::disk_marker::{Marker, MarkerGauge};
use crate::format::{ActiveSuperblock, Geometry, LossReason, RingGeometry};
use crate::iommu_fence::FenceReport;
use crate::live::Live;
use crate::powerfail::PowerFail;
use crate::ratelimit::RateLimit;
use crate::read_path;
use crate::stats::{self, Stats};
use crate::sys::backing::BackingDisk;
use crate::sys::bio::{Bio, BioSet, Op, Status};
use crate::sys::bounce::BounceBuffer;
use crate::sys::gendisk::BioHandler;
use crate::sys::kthread::{NoIoScope, ThreadJob};
use crate::sys::region::Region;
use crate::write_path;
use crate::writeback::{self, Writeback};

/// Shared by the disk's `submit_bio`, the writeback thread, the control
/// device and the machine's events (module docs: layout, locking).
#[pin_data]
pub(crate) struct Device {
    /// The configuration it was loaded with.
    config: Config,
    /// When it was loaded.
    loaded_at: Instant<Monotonic>,
    /// The region, mapped.
    region: Region,
    /// The log disk.
    backing: BackingDisk,
    /// The region's layout.
    geometry: Geometry,
    /// The part of it ring accounting needs.
    ring: RingGeometry,
    /// Epoch of the current format: goes into every descriptor. Changes only
    /// when the region is formatted afresh while no record is live
    /// (`lifecycle`), before writes are admitted again under `live`.
    epoch: Atomic<u64>,
    /// Spare bios for splitting reads at record boundaries.
    splits: BioSet,
    /// Longest time a record waits before writeback starts.
    writeback_delay: Delta,
    /// Dirty bytes that start writeback at once.
    writeback_threshold: u64,
    /// What happened so far.
    stats: Stats,
    /// The power-fail path.
    powerfail: PowerFail,
    /// Ring, index and records (module docs, Locking: 2).
    #[pin]
    live: Mutex<Live>,
    /// Ring space was freed, or something writers and waiters watch under
    /// `live` changed (they wait here).
    #[pin]
    space_freed: CondVar,
    /// There may be work for writeback (the writeback thread waits here).
    #[pin]
    work: CondVar,
    /// Writeback's own state, held by the writeback thread while it runs
    /// (module docs, Locking: 1).
    #[pin]
    writeback: Mutex<Writeback>,
    /// Rate limit of write-path error lines (a leaf lock).
    #[pin]
    write_errors: Mutex<RateLimit>,
    /// The last IOMMU fence check (a leaf lock).
    #[pin]
    fence: Mutex<FenceReport>,
    /// The log disk's loss marker as last written, for the status.
    marker_gauge: MarkerGauge,
    /// A possible loss accepted at load (`accept_loss=1`), for the status.
    accepted_loss: Option<LossReason>,
}

/// What [`Device::new`] is made of.
pub(crate) struct Parts {
    pub(crate) config: Config,
    pub(crate) fence: FenceReport,
    pub(crate) region: Region,
    pub(crate) backing: BackingDisk,
    pub(crate) superblock: ActiveSuperblock,
    pub(crate) marker: Marker,
    pub(crate) accepted_loss: Option<LossReason>,
    pub(crate) bounce: BounceBuffer,
}

/// The state and its accessors.
impl Device {
    /// The device over a region just brought up with `parts.superblock`.
    pub(crate) fn new(parts: Parts) -> Result<Arc<Self>> {
        let sb = &parts.superblock.superblock;
        let geometry = sb.geometry;
        let ring = RingGeometry::new(&geometry).map_err(|_| EINVAL)?;
        let live = Live::new(&geometry, sb.durable_tail, parts.config.dead_disk_ms)?;
        let marker_gauge = MarkerGauge::new(&parts.marker);
        let writeback = Writeback::new(parts.superblock, parts.marker, parts.bounce, &geometry)?;
        let splits = BioSet::for_splits().ok_or(ENOMEM)?;
        Arc::pin_init(
            pin_init!(Self {
                config: parts.config,
                loaded_at: Instant::now(),
                region: parts.region,
                backing: parts.backing,
                geometry,
                ring,
                epoch: Atomic::new(sb.epoch),
                splits,
                writeback_delay: Delta::from_millis(i64::from(parts.config.writeback_delay_ms)),
                // An eighth of the ring: writeback starts well before writers
                // would have to wait, and still merges many small records.
                writeback_threshold: geometry.ring_bytes / 8,
                stats: Stats::new(),
                powerfail: PowerFail::new(parts.config.powerfail),
                live <- new_mutex!(live),
                space_freed <- new_condvar!(),
                work <- new_condvar!(),
                writeback <- new_mutex!(writeback),
                write_errors <- new_mutex!(RateLimit::new()),
                fence <- new_mutex!(parts.fence),
                marker_gauge,
                accepted_loss: parts.accepted_loss,
            }),
            GFP_KERNEL,
        )
    }

    /// The configuration it was loaded with.
    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// When it was loaded.
    pub(crate) fn loaded_at(&self) -> Instant<Monotonic> {
        self.loaded_at
    }

    /// The region, mapped.
    pub(crate) fn region(&self) -> &Region {
        &self.region
    }

    /// The log disk.
    pub(crate) fn backing(&self) -> &BackingDisk {
        &self.backing
    }

    /// The region's layout.
    pub(crate) fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// The part of the layout ring accounting needs.
    pub(crate) fn ring(&self) -> &RingGeometry {
        &self.ring
    }

    /// Spare bios for splitting reads at record boundaries.
    pub(crate) fn splits(&self) -> &BioSet {
        &self.splits
    }

    /// Longest time a record waits before writeback starts.
    pub(crate) fn writeback_delay(&self) -> Delta {
        self.writeback_delay
    }

    /// Dirty bytes that start writeback at once.
    pub(crate) fn writeback_threshold(&self) -> u64 {
        self.writeback_threshold
    }

    /// What happened so far.
    pub(crate) fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The power-fail path's state (atomics: usable in any context).
    pub(crate) fn powerfail(&self) -> &PowerFail {
        &self.powerfail
    }

    /// The log disk's loss marker as last written, for the status.
    pub(crate) fn marker_gauge(&self) -> &MarkerGauge {
        &self.marker_gauge
    }

    /// A possible loss accepted at load (`accept_loss=1`), for the status.
    pub(crate) fn accepted_loss(&self) -> Option<LossReason> {
        self.accepted_loss
    }

    /// Epoch of the current format. Constant while any record is live.
    pub(crate) fn epoch(&self) -> u64 {
        // Relaxed: it changes only while no write is admitted, and writers
        // are admitted again under the `live` lock, which orders it.
        self.epoch.load(Relaxed)
    }

    /// Sets the epoch of a region just formatted afresh (no record live).
    pub(crate) fn set_epoch(&self, epoch: u64) {
        self.epoch.store(epoch, Relaxed);
    }

    /// Takes the `live` lock (module docs, Locking: 2). May sleep; never
    /// with `write_errors` or `fence` held, nor from the power-fail signal.
    pub(crate) fn lock_live(&self) -> Guard<'_, Live, MutexBackend> {
        self.live.lock()
    }

    /// Takes the `writeback` lock (module docs, Locking: 1): the writeback
    /// thread, or unload after it exited. Before `live`, never after it.
    pub(crate) fn lock_writeback(&self) -> Guard<'_, Writeback, MutexBackend> {
        self.writeback.lock()
    }

    /// Where writers, drain and skip requests and stopping notifiers wait,
    /// with `live`, for ring space or for writeback to act on a request.
    pub(crate) fn space_freed(&self) -> &CondVar {
        &self.space_freed
    }

    /// Where the writeback thread waits, with `live`, for work; notified by
    /// writers, requests and the power-fail signal (any context but NMI).
    pub(crate) fn work(&self) -> &CondVar {
        &self.work
    }

    /// Logs a write-path error, rate limited (takes the leaf lock
    /// `write_errors`: call with no lock held).
    pub(crate) fn write_error(&self, what: kernel::fmt::Arguments<'_>) {
        stats::add(&self.stats.write_errors, 1);
        if let Some(suppressed) = self.write_errors.lock().allow() {
            pr_err!("write failed: {what} ({suppressed} similar lines suppressed)\n");
        }
    }

    /// The last IOMMU fence check (takes the leaf lock `fence`).
    pub(crate) fn fence(&self) -> FenceReport {
        *self.fence.lock()
    }

    /// Records a new IOMMU fence check (takes the leaf lock `fence`).
    pub(crate) fn set_fence(&self, report: FenceReport) {
        *self.fence.lock() = report;
    }
}

/// A bio submitted to `/dev/rapilog0`, in the submitter's process context
/// (may sleep).
impl BioHandler for Device {
    fn submit_bio(&self, bio: Bio) {
        // Records are at most max_record_bytes (the queue's max_hw_sectors):
        // bios arrive split to that, and to the segment limits.
        match bio.op() {
            Op::Write if bio.bytes() == 0 => write_path::flush(self, bio),
            Op::Write => write_path::write(self, bio),
            Op::Read => read_path::read(self, bio),
            // Not advertised (no discard or write-zeroes limits), so the
            // block layer should never send them.
            Op::Other => bio.end(Status::NotSupported),
        }
    }
}

/// The writeback thread.
impl ThreadJob for Device {
    fn run(&self) {
        // Whatever writeback allocates (or the kernel for it) must not wait
        // for I/O: that I/O may be waiting in `/dev/rapilog0` for ring space
        // only writeback frees.
        let _noio = NoIoScope::enter();
        writeback::run(self);
    }
}
