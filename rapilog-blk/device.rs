// SPDX-License-Identifier: GPL-2.0

//! The device: everything `/dev/rapilog0` and its writeback thread share,
//! and the dispatch of each bio to the write path, the read path or a flush.
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
use kernel::sync::{new_condvar, new_mutex, Arc, CondVar, Mutex};
use kernel::time::{Delta, Instant, Monotonic};

use crate::config::Config;
use crate::disk_marker::{Marker, MarkerGauge};
use crate::format::{ActiveSuperblock, Geometry, LossReason, RingGeometry};
use crate::iommu_fence::FenceReport;
use crate::live::{Admission, Live};
use crate::powerfail::PowerFail;
use crate::ratelimit::RateLimit;
use crate::stats::{self, Stats};
use crate::sys::backing::BackingDisk;
use crate::sys::bio::{Bio, BioSet, Op, Status};
use crate::sys::bounce::BounceBuffer;
use crate::sys::gendisk::BioHandler;
use crate::sys::kthread::{NoIoScope, ThreadJob};
use crate::sys::region::Region;
use crate::writeback::Writeback;

/// Shared by the disk's `submit_bio` and the writeback thread.
#[pin_data]
pub(crate) struct Device {
    /// The configuration it was loaded with.
    pub(crate) config: Config,
    /// When it was loaded.
    pub(crate) loaded_at: Instant<Monotonic>,
    /// The region, mapped.
    pub(crate) region: Region,
    /// The log disk.
    pub(crate) backing: BackingDisk,
    /// The region's layout.
    pub(crate) geometry: Geometry,
    /// The part of it ring accounting needs.
    pub(crate) ring: RingGeometry,
    /// Epoch of the current format: goes into every descriptor. Changes only
    /// when the region is formatted afresh while no record is live
    /// (`lifecycle`), before writes are admitted again under `live`.
    epoch: Atomic<u64>,
    /// Spare bios for splitting reads at record boundaries.
    pub(crate) splits: BioSet,
    /// Longest time a record waits before writeback starts.
    pub(crate) writeback_delay: Delta,
    /// Dirty bytes that start writeback at once.
    pub(crate) writeback_threshold: u64,
    /// What happened so far.
    pub(crate) stats: Stats,
    /// The power-fail path.
    pub(crate) powerfail: PowerFail,
    /// Ring, index and records.
    #[pin]
    pub(crate) live: Mutex<Live>,
    /// Ring space was freed (writers wait here).
    #[pin]
    pub(crate) space_freed: CondVar,
    /// There may be work for writeback (the writeback thread waits here).
    #[pin]
    pub(crate) work: CondVar,
    /// Writeback's own state, held by the writeback thread while it runs.
    #[pin]
    pub(crate) writeback: Mutex<Writeback>,
    /// Rate limit of write-path error lines.
    #[pin]
    pub(crate) write_errors: Mutex<RateLimit>,
    /// The last IOMMU fence check.
    #[pin]
    pub(crate) fence: Mutex<FenceReport>,
    /// The log disk's loss marker as last written, for the status.
    pub(crate) marker_gauge: MarkerGauge,
    /// A possible loss accepted at load (`accept_loss=1`), for the status.
    pub(crate) accepted_loss: Option<LossReason>,
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

    /// Epoch of the current format.
    pub(crate) fn epoch(&self) -> u64 {
        // Relaxed: it changes only while no write is admitted, and writers
        // are admitted again under the `live` lock, which orders it.
        self.epoch.load(Relaxed)
    }

    /// Sets the epoch of a region just formatted afresh (no record live).
    pub(crate) fn set_epoch(&self, epoch: u64) {
        self.epoch.store(epoch, Relaxed);
    }

    /// Logs a write-path error, rate limited.
    pub(crate) fn write_error(&self, what: kernel::fmt::Arguments<'_>) {
        stats::add(&self.stats.write_errors, 1);
        if let Some(suppressed) = self.write_errors.lock().allow() {
            pr_err!("write failed: {what} ({suppressed} similar lines suppressed)\n");
        }
    }
}

impl BioHandler for Device {
    fn submit_bio(&self, bio: Bio) {
        // Records are at most max_record_bytes (the queue's max_hw_sectors):
        // bios arrive split to that, and to the segment limits.
        match bio.op() {
            Op::Write if bio.bytes() == 0 => {
                stats::add(&self.stats.flushes, 1);
                if self.live.lock().admission == Admission::WriteThrough {
                    // Writes go to the disk now, into its cache: the flush
                    // must reach it too.
                    bio.remap(&self.backing);
                } else {
                    // Every completed write is in the region.
                    bio.end(Status::Ok);
                }
            }
            Op::Write => self.write(bio),
            Op::Read => self.read(bio),
            // Not advertised (no discard or write-zeroes limits), so the
            // block layer should never send them.
            Op::Other => bio.end(Status::NotSupported),
        }
    }
}

impl ThreadJob for Device {
    fn run(&self) {
        // Whatever writeback allocates (or the kernel for it) must not wait
        // for I/O: that I/O may be waiting in `/dev/rapilog0` for ring space
        // only writeback frees.
        let _noio = NoIoScope::enter();
        crate::writeback::run(self);
    }
}
