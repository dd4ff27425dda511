// SPDX-License-Identifier: GPL-2.0

//! rapilog: a log disk whose writes complete at memory speed, durably.
//!
//! `/dev/rapilog0` fronts a log disk. Each write is copied into a reserved,
//! write-protected physical memory region that survives a kernel crash and is
//! completed at once; a worker writes the disk in the background. After a
//! panic a kexec crash kernel replays the region (rapilog-rescue); after a warm
//! reboot this module replays it at load. See README.md and
//! rapilog-format/FORMAT.md.
//!
//! Loading, in order; every refusal happens before anything is written:
//! 1. [`config`]: the [`params`], validated; the [`iommu_fence`] checked.
//! 2. [`backing`]: the log disk, opened exclusively; its identity.
//! 3. [`region`]: the reserved region, checked, claimed and mapped; its layout.
//! 4. [`recovery`]: replay what a warm reboot left, refuse a region of
//!    another disk, format it afresh.
//! 5. [`device`]: the shared state; [`writeback`] starts; `/dev/rapilog0`
//!    appears. Bios go through [`write_path`] and [`read_path`].
//! 6. [`control`]: `/dev/rapilog-ctl` appears (status, drain, fence check,
//!    region snapshot); the [`powerfail`] signals are armed; the
//!    [`lifecycle`] events (reboot, power-off, kexec, suspend, hibernation)
//!    drain the region before the machine stops.
//!
//! Unloading (refused while `/dev/rapilog0` or `/dev/rapilog-ctl` is open):
//! the control device and the disk go away, writeback drains every record
//! to the disk, and the region is marked clean. If writeback holds at a bad
//! record (one that failed its check), the drain writes every other record
//! and the region keeps the bad one and those after it, not marked clean:
//! the next load replays them, skipping the bad one (its replay report
//! counts it), so nothing verified is lost and nothing unverified written.
//!
//! Also: [`live`] (ring, index and records under one lock), [`metadata`]
//! (superblock and format writes), [`stats`], [`ratelimit`],
//! [`stray_write`] (the write-protection self-test), [`kernel_display`],
//! [`format`] (the on-region format, shared with rapilog-rescue and
//! rapilogctl) and [`sys`] (the only `unsafe` code).

// Crate-wide: only `mod sys` below may contain `unsafe` (it allows it);
// every other file also denies it itself, at its top.
#![deny(unsafe_code)]

use kernel::{prelude::*, str::BStr, str::CStr, sync::Arc};

mod backing;
mod config;
mod control;
mod dead_disk;
mod device;
mod disk_identity;
mod disk_marker;
mod iommu_fence;
mod kernel_display;
mod lifecycle;
mod live;
mod metadata;
mod params;
mod powerfail;
mod ratelimit;
mod read_path;
mod recovery;
mod region;
mod stats;
mod stray_write;
/// The only module that may contain `unsafe` (see its docs).
#[allow(unsafe_code)]
mod sys;
mod write_path;
mod writeback;

/// The on-region format: the very source rapilog-rescue and rapilogctl build.
#[path = "../rapilog-format/src/lib.rs"]
mod format;

use device::{Device, Parts};
use sys::backing::MAX_IO_BYTES;
use sys::bounce::BounceBuffer;
use sys::control_device::ControlDevice;
use sys::gendisk::{DiskParams, GenDisk};
use sys::kthread::Kthread;
use sys::lifecycle_events::LifecycleEvents;
use sys::powerfail_signals::ArmedSignals;

module! {
    type: RapiLog,
    name: "rapilog",
    authors: ["The rapilog developers"],
    description: "Log disk accelerator: writes complete from a crash-surviving memory region",
    license: "GPL",
}

/// Name of the device under /dev.
const DISK_NAME: &str = "rapilog0";

/// Name of the control device under /dev (as in the format crate's
/// `control::CONTROL_DEVICE`).
const CONTROL_NAME: &CStr = c"rapilog-ctl";

/// The loaded module.
struct RapiLog {
    config: config::Config,
    /// Unregistered first: no stop drains during unload (which drains).
    lifecycle: Option<LifecycleEvents<Device>>,
    /// Disarmed first: no drain starts during unload.
    powerfail: Option<ArmedSignals<Device>>,
    /// Dropped first: no ioctl arrives after it is gone (open files keep
    /// the module loaded, so none is open).
    control: Option<Pin<KBox<ControlDevice<Device>>>>,
    /// Dropped next: no bio arrives after it is gone.
    disk: Option<GenDisk<Device>>,
    /// Dropped next: drains the ring to the disk and stops.
    writeback: Option<Kthread<Device>>,
    device: Arc<Device>,
}

impl kernel::Module for RapiLog {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let config = config::Config::from_params().map_err(|e| {
            pr_err!("{e}\n");
            EINVAL
        })?;
        // Records written here are verified by rapilog-rescue and rapilogctl
        // with the format crate's software CRC: refuse to run if the two differ.
        if let Err(index) = format::crc32c_test_vectors::verify(&sys::crc32c::KernelCrc32c) {
            pr_err!("the kernel's crc32c() disagrees with the format's test vector {index}; not loading\n");
            return Err(EINVAL);
        }
        pr_info!(
            "configured: region={} backing={} protect={}\n",
            config.region,
            BStr::from_bytes(config.backing),
            config.protect.name()
        );
        let fence = iommu_fence::check(config.iommu_fence);
        iommu_fence::enforce(&fence)?;
        let (backing, identity) = backing::open(&config)?;
        let mut region = region::claim(&config)?;
        let geometry = region::geometry(&config, region.len(), identity.block_bytes)?;
        let mut bounce = BounceBuffer::new(MAX_IO_BYTES)?;
        let up = recovery::bring_up(
            &config,
            &mut region,
            &backing,
            &identity,
            geometry,
            &mut bounce,
        )?;
        // The marker area at the disk's end is not the device's.
        let data_sectors = up.marker.data_sectors();
        let device = Device::new(Parts {
            config,
            fence,
            region,
            backing,
            superblock: up.superblock,
            marker: up.marker,
            accepted_loss: up.accepted_loss,
            bounce,
        })?;
        let writeback = Kthread::spawn(c"rapilog-wb", device.clone())?;
        let params = DiskParams {
            name: DISK_NAME,
            sectors: data_sectors,
            logical_block_size: identity.block_bytes,
            physical_block_size: device
                .backing
                .physical_block_size()
                .max(identity.block_bytes),
            max_hw_sectors: geometry.max_record_bytes / format::SECTOR_BYTES,
        };
        let disk = GenDisk::add(&params, device.clone())?;
        pr_info!(
            "/dev/{DISK_NAME}: {} KiB in {}-byte blocks over backing={}, writeback after {} ms\n",
            data_sectors / 2,
            identity.block_bytes,
            BStr::from_bytes(config.backing),
            config.writeback_delay_ms
        );
        let control = ControlDevice::register(CONTROL_NAME, device.clone())?;
        let powerfail = match config.powerfail.signals {
            0 => None,
            signals => {
                let armed = ArmedSignals::arm(signals, device.clone())?;
                pr_info!(
                    "power-fail path armed (powerfail={}): dirty data bounded to what drains in \
                     half of holdup_ms={} ms; after a drain {}\n",
                    BStr::from_bytes(params::powerfail.value()),
                    config.powerfail.holdup_ms,
                    powerfail::AfterSignal(&config.powerfail)
                );
                Some(armed)
            }
        };
        let lifecycle = LifecycleEvents::register(device.clone())?;
        if let Some(kind) = config.stray_write {
            stray_write::run(&device.region, kind);
        }
        Ok(Self {
            config,
            lifecycle: Some(lifecycle),
            powerfail,
            control: Some(control),
            disk: Some(disk),
            writeback: Some(writeback),
            device,
        })
    }
}

impl Drop for RapiLog {
    fn drop(&mut self) {
        drop(self.lifecycle.take());
        drop(self.powerfail.take());
        drop(self.control.take());
        drop(self.disk.take());
        self.device.live.lock().stopping = true;
        self.device.work.notify_all();
        drop(self.writeback.take());
        let dev = &self.device;
        let (left, held) = {
            let live = dev.live.lock();
            (live.ring.live_records(), live.held)
        };
        if let Some(h) = held {
            pr_warn!(
                "bad record seq {} (sectors {}..{}) failed its check and was not written back; it \
                 stays in region={} with {left} records in all (every other one is on backing={}): \
                 the next load replays them and skips it; to keep it, save the region first \
                 (`rapilogctl inspect --mem` or dd from /dev/mem)\n",
                h.seq,
                h.sector,
                h.sector + u64::from(h.length) / 512,
                self.config.region,
                BStr::from_bytes(self.config.backing)
            );
        } else if left == 0 {
            // The writeback thread has stopped: its state is free.
            if lifecycle::mark_clean(dev, &mut dev.writeback.lock()).is_err() {
                pr_err!("could not mark the region clean; the next load replays nothing anyway\n");
            }
        } else {
            pr_warn!(
                "{left} records were not written back; they stay in region={} and are replayed \
                 at the next load\n",
                self.config.region
            );
        }
        pr_info!("unloaded (region={}): {}\n", self.config.region, dev.stats);
    }
}
