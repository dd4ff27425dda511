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
//! The modules below are grouped by when they act (loading, service, around
//! the data path, support), one line each. [`device`] says how the code is
//! laid out (each stage a module of free functions over `&Device`, the
//! kernel's entry points in one place) and how it is locked.
//!
//! Loading ([`RapiLog::init`]), in order; every refusal happens before
//! anything is written: the configuration and the IOMMU fence, the log
//! disk, the region, the replay of what a warm reboot left and a fresh
//! format, the device and its writeback thread, `/dev/rapilog0`,
//! `/dev/rapilog-ctl`, the power-fail signals and the machine's events.
//!
//! Unloading (refused while `/dev/rapilog0` or `/dev/rapilog-ctl` is open):
//! the same in reverse; writeback drains every record to the disk, and the
//! region is marked clean (`lifecycle::unload`). If writeback holds at a
//! bad record (one that failed its check), the drain writes every other
//! record and the region keeps the bad one and those after it, not marked
//! clean: the next load replays them, skipping the bad one (its replay
//! report counts it), so nothing verified is lost and nothing unverified
//! written.

// Crate-wide: only `mod sys` below may contain `unsafe` (it allows it);
// every other file also denies it itself, at its top.
#![deny(unsafe_code)]

use kernel::{prelude::*, str::BStr, str::CStr, sync::Arc};

// Loading.

/// Opening the log disk, with one clear log line per refusal.
mod backing;
/// The parameters, validated into the configuration.
mod config;
/// The log disk's identity, recorded in the region.
mod disk_identity;
/// The loss marker at the log disk's end.
mod disk_marker;
/// Whether an IOMMU keeps every PCI device's DMA out of the region.
mod iommu_fence;
/// The module parameters, as the kernel parsed them at `insmod`.
mod params;
/// Replaying what a warm reboot left in the region, then formatting it.
mod recovery;
/// Claiming the reserved region and choosing its layout.
mod region;

// Service: the shared state and a bio's stages.

/// A log disk that stays dead: new writes fail instead of waiting.
mod dead_disk;
/// The shared state, its locks, and the kernel's entry points into the driver.
mod device;
/// Ring accounting, dirty-extent index and records, under one lock.
mod live;
/// Superblock updates and formatting, through write windows.
mod metadata;
/// Reads: the newest data wins, from the region or from the disk.
mod read_path;
/// Writes: a bio becomes a record in the region and completes.
mod write_path;
/// Writeback: checks records and drains them to the disk in sequence order.
mod writeback;

// Around the data path.

/// `/dev/rapilog-ctl`: status, drain, fence check, skipping a bad record.
mod control;
/// Orderly stops, suspend, hibernation, resume and unload.
mod lifecycle;
/// The power-fail path: signals, emergency drain, dirty bound.
mod powerfail;
/// The write-protection self-test (`test_stray_write=`).
mod stray_write;

// Support.

/// The on-region format: the very source rapilog-rescue and rapilogctl build.
#[path = "../rapilog-format/src/lib.rs"]
mod format;
/// Lets `pr_*!` print the driver's and the format crate's types.
mod kernel_display;
/// At most one kernel-log line of a kind per interval.
mod ratelimit;
/// Counters and gauges, for the status and the unload line.
mod stats;
/// Safe wrappers over the kernel's C API: the only module with `unsafe` code.
#[allow(unsafe_code)]
mod sys;

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
                .backing()
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
            stray_write::run(device.region(), kind);
        }
        Ok(Self {
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
        lifecycle::unload(&self.device, self.writeback.take());
    }
}
