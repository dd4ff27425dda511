// SPDX-License-Identifier: GPL-2.0

//! One device instance, `/dev/rapilog<N>`: its region, log disk, [`Device`],
//! writeback thread and disk, made by [`create`] from one device's
//! configuration and torn down (drained) when dropped. The module makes one
//! per device its parameters name ([`crate::registry`] holds them); what
//! serves every device (the control device, the power-fail signals, the
//! machine's events) is the registry's, not an instance's.
//!
//! Creating, in order, every refusal before anything is written: the log
//! disk, the region, the replay of what a warm reboot left and a fresh
//! format, the device and its writeback thread, then `/dev/rapilog<N>`.
//!
//! Dropping: the disk first (no bio arrives after it is gone), then
//! `lifecycle::unload`: writeback drains every record to the disk and
//! stops, and the region is marked clean. If writeback holds at a bad
//! record (one that failed its check), the drain writes every other record
//! and the region keeps the bad one and those after it, not marked clean:
//! the next load replays them, skipping the bad one, so nothing verified
//! is lost and nothing unverified written.

#![deny(unsafe_code)]

use kernel::{prelude::*, str::BStr, str::CStr, sync::Arc};

use crate::backing;
use crate::config::Config;
use crate::device::{Device, Parts};
use crate::format;
use crate::format::control::MAX_DEVICES;
use crate::iommu_fence::FenceReport;
use crate::lifecycle;
use crate::recovery;
use crate::region;
use crate::sys::backing::MAX_IO_BYTES;
use crate::sys::bounce::BounceBuffer;
use crate::sys::gendisk::{DiskParams, GenDisk};
use crate::sys::kthread::Kthread;

/// Names of the devices under /dev, by index.
const DISK_NAMES: [&str; MAX_DEVICES] = [
    "rapilog0", "rapilog1", "rapilog2", "rapilog3", "rapilog4", "rapilog5", "rapilog6", "rapilog7",
];

/// Names of their writeback threads, by index.
const THREAD_NAMES: [&CStr; MAX_DEVICES] = [
    c"rapilog0-wb",
    c"rapilog1-wb",
    c"rapilog2-wb",
    c"rapilog3-wb",
    c"rapilog4-wb",
    c"rapilog5-wb",
    c"rapilog6-wb",
    c"rapilog7-wb",
];

/// The name of device `index` under /dev (`rapilog<index>`).
pub(crate) fn disk_name(index: u32) -> &'static str {
    DISK_NAMES
        .get(index as usize)
        .copied()
        .unwrap_or("rapilog?")
}

/// A running device; drained and torn down when dropped.
pub(crate) struct Instance {
    /// Dropped first: no bio arrives after it is gone.
    disk: Option<GenDisk<Device>>,
    /// Dropped next (by `lifecycle::unload`): drains the ring and stops.
    writeback: Option<Kthread<Device>>,
    device: Arc<Device>,
}

/// Brings up the device `config` describes, `/dev/rapilog<config.index>`;
/// `fence` is the module's last IOMMU fence check.
#[inline(never)]
pub(crate) fn create(config: &Config, fence: FenceReport) -> Result<Instance> {
    let config = *config;
    let name = disk_name(config.index);
    let thread = THREAD_NAMES
        .get(config.index as usize)
        .copied()
        .ok_or(EINVAL)?;
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
    let writeback = Kthread::spawn(thread, device.clone())?;
    let params = DiskParams {
        name,
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
        "/dev/{name}: {} KiB in {}-byte blocks over backing={}, writeback after {} ms\n",
        data_sectors / 2,
        identity.block_bytes,
        BStr::from_bytes(&config.backing),
        config.writeback_delay_ms
    );
    Ok(Instance {
        disk: Some(disk),
        writeback: Some(writeback),
        device,
    })
}

impl Instance {
    /// The device's shared state.
    pub(crate) fn device(&self) -> &Arc<Device> {
        &self.device
    }

    /// How many times its block device is open now.
    pub(crate) fn openers(&self) -> u32 {
        self.disk.as_ref().map_or(0, |d| d.openers())
    }

    /// Its index: `/dev/rapilog<index>`.
    pub(crate) fn index(&self) -> u32 {
        self.device.config().index
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        drop(self.disk.take());
        lifecycle::unload(&self.device, self.writeback.take());
    }
}
