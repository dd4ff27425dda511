// SPDX-License-Identifier: GPL-2.0

//! rapilog: log disks whose writes complete at memory speed, durably.
//!
//! `/dev/rapilog0` (to `/dev/rapilog7`) fronts a log disk. Each write is
//! copied into a reserved, write-protected physical memory region that
//! survives a kernel crash and is completed at once; a worker writes the
//! disk in the background. After a panic a kexec crash kernel replays the
//! region (rapilog-rescue); after a warm reboot this module replays it at
//! load. See README.md and rapilog-format/FORMAT.md.
//!
//! The modules below are grouped by when they act (loading, service, around
//! the data path, support), one line each. [`device`] says how the code is
//! laid out (each stage a module of free functions over `&Device`, the
//! kernel's entry points in one place) and how it is locked.
//!
//! Loading ([`RapiLog::init`]), in order; every refusal happens before
//! anything is written: the configuration of every device (`region=`,
//! `backing=` and `disk_id=` are per-device lists) and the IOMMU fence;
//! then each device ([`instance::create`]: its log disk, its region, the
//! replay of what a warm reboot left and a fresh format, the device and its
//! writeback thread, `/dev/rapilog<N>`) into the [`registry`]; then
//! `/dev/rapilog-ctl`, the power-fail signals and the machine's events,
//! which serve every device.
//!
//! Unloading (refused while a `/dev/rapilog<N>` or `/dev/rapilog-ctl` is
//! open): the same in reverse; each device drains every record to its
//! disk, and its region is marked clean ([`instance`] says what happens to
//! a bad record).

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
/// One device: made from its configuration, drained when dropped.
mod instance;
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
/// The devices by index, and the fan-out of what serves all of them.
mod registry;
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

use registry::Registry;
use sys::control_device::ControlDevice;
use sys::lifecycle_events::LifecycleEvents;

module! {
    type: RapiLog,
    name: "rapilog",
    authors: ["The rapilog developers"],
    description: "Log disk accelerator: writes complete from a crash-surviving memory region",
    license: "GPL",
}

/// Name of the control device under /dev (as in the format crate's
/// `control::CONTROL_DEVICE`).
const CONTROL_NAME: &CStr = c"rapilog-ctl";

/// The loaded module.
struct RapiLog {
    /// Unregistered first: no stop drains during unload (which drains).
    lifecycle: Option<LifecycleEvents<Registry>>,
    /// Dropped next: no ioctl arrives after it is gone (open files keep
    /// the module loaded, so none is open).
    control: Option<Pin<KBox<ControlDevice<Registry>>>>,
    /// Disarms the signals, then drains and tears down every device.
    registry: Arc<Registry>,
}

impl kernel::Module for RapiLog {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let count = config::Config::devices_from_params().map_err(|e| {
            pr_err!("{e}\n");
            EINVAL
        })?;
        // Records written here are verified by rapilog-rescue and rapilogctl
        // with the format crate's software CRC: refuse to run if the two differ.
        if let Err(index) = format::crc32c_test_vectors::verify(&sys::crc32c::KernelCrc32c) {
            pr_err!("the kernel's crc32c() disagrees with the format's test vector {index}; not loading\n");
            return Err(EINVAL);
        }
        // Validated above: every device's configuration parses.
        let device = |index| config::Config::from_params_of_device(index).map_err(|_| EINVAL);
        for index in 0..count {
            let config = device(index)?;
            pr_info!(
                "configured: region={} backing={} protect={}\n",
                config.region,
                BStr::from_bytes(&config.backing),
                config.protect.name()
            );
        }
        // The same for every device (they share the module's parameters).
        let first = device(0)?;
        let fence = iommu_fence::check(first.iommu_fence);
        iommu_fence::enforce(&fence)?;
        let registry = Registry::new()?;
        for index in 0..count {
            // A device that fails to come up takes the module down: the
            // devices made before it drain and go.
            let made = device(index).and_then(|config| instance::create(&config, fence));
            let made = made.and_then(|instance| registry.add(instance));
            if let Err(e) = made {
                registry.remove_all();
                return Err(e);
            }
        }
        let control = match ControlDevice::register(CONTROL_NAME, registry.clone()) {
            Ok(control) => control,
            Err(e) => {
                registry.remove_all();
                return Err(e);
            }
        };
        let module = Self {
            lifecycle: None,
            control: Some(control),
            registry,
        };
        let powerfail = first.powerfail;
        if powerfail.signals != 0 {
            module.registry.arm(powerfail.signals)?;
            pr_info!(
                "power-fail path armed (powerfail={}): dirty data bounded to what drains in \
                 half of holdup_ms={} ms{}; after a drain {}\n",
                BStr::from_bytes(params::powerfail.value()),
                powerfail.holdup_ms,
                SharedBy(powerfail::devices()),
                powerfail::AfterSignal(&powerfail)
            );
        }
        let mut module = module;
        module.lifecycle = Some(LifecycleEvents::register(module.registry.clone())?);
        if let Some(kind) = first.stray_write {
            if let Some(dev) = module.registry.get(first.index) {
                stray_write::run(dev.region(), kind);
            }
        }
        Ok(module)
    }
}

/// How the hold-up window is shared, for the line that arms the path.
struct SharedBy(u32);

impl kernel::fmt::Display for SharedBy {
    fn fmt(&self, f: &mut kernel::fmt::Formatter<'_>) -> kernel::fmt::Result {
        match self.0 {
            1 => Ok(()),
            n => write!(
                f,
                ", shared by {n} devices: each device's bound drains in 1/{n} of that at its \
                 own bandwidth"
            ),
        }
    }
}

impl Drop for RapiLog {
    fn drop(&mut self) {
        drop(self.lifecycle.take());
        drop(self.control.take());
        self.registry.remove_all();
    }
}
