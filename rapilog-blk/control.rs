// SPDX-License-Identifier: GPL-2.0

//! The control interface, `/dev/rapilog-ctl`: selecting, listing,
//! creating and removing devices, and for the selected one status,
//! drain-and-wait, the IOMMU fence check, skipping a bad record writeback
//! holds at, and a raw read of the region, for `rapilogctl` and
//! monitoring. The ioctls and the status block are defined in the format
//! crate ([`crate::format::control`]), shared with `rapilogctl`; this file
//! implements them over the device's state.

#![deny(unsafe_code)]

use core::fmt::Write;

use kernel::prelude::*;
use kernel::sync::Arc;

use crate::device::Device;
use crate::format::control::{
    flags, Status, Text, CREATE_BYTES, IOCTL_CHECK_FENCE, IOCTL_CREATE, IOCTL_DRAIN, IOCTL_LIST,
    IOCTL_REMOVE, IOCTL_SELECT, IOCTL_SKIP_BAD_RECORD, IOCTL_STATUS, REMOVE_FORCE, STATUS_BYTES,
};
use crate::format::{ActiveSuperblock, SUPERBLOCK_BYTES};
use crate::iommu_fence;
use crate::powerfail;
use crate::registry::Registry;
use crate::stats;
use crate::sys::control_device::{caller_is_admin, Selection, UserArg};
use crate::sys::crc32c::KernelCrc32c;
use crate::writeback;

/// Handles ioctl `cmd` of `/dev/rapilog-ctl` for an open file
/// (`ControlHandler::ioctl`): selecting and listing devices here, the
/// others on the file's selected device.
pub(crate) fn ioctl(reg: &Registry, file: &Selection, cmd: u32, arg: UserArg) -> Result<isize> {
    match cmd {
        IOCTL_SELECT => {
            let index = arg.read_u32()?;
            reg.get(index).ok_or(ENODEV)?;
            file.set(index);
        }
        IOCTL_LIST => arg.write(&reg.bitmap().to_ne_bytes())?,
        IOCTL_CREATE => {
            require_admin()?;
            let mut buf = [0u8; CREATE_BYTES];
            arg.read_into(&mut buf)?;
            let text = buf.split(|&b| b == 0).next().unwrap_or(&[]);
            if text.len() == buf.len() {
                // Not NUL-terminated.
                return Err(EINVAL);
            }
            file.set(reg.create(text)?);
        }
        IOCTL_REMOVE => {
            require_admin()?;
            let arg = arg.read_u64()?;
            reg.remove(arg as u32, arg & REMOVE_FORCE != 0)?;
        }
        IOCTL_CHECK_FENCE => {
            require_admin()?;
            // Not under a lock: the check takes each PCI device's lock.
            // The fence is the machine's: every device gets the result.
            let report = iommu_fence::check(device(reg, file)?.fence().policy);
            reg.for_each(|dev| {
                dev.set_fence(report);
                Ok(())
            })?;
        }
        _ => return device_ioctl(&*device(reg, file)?, cmd, arg),
    }
    Ok(0)
}

/// The open file's selected device (`ENODEV`: removed since).
fn device(reg: &Registry, file: &Selection) -> Result<Arc<Device>> {
    reg.get(file.get()).ok_or(ENODEV)
}

/// The ioctls that act on one device (not inlined: the status block's
/// frame stays off the create path's stack).
#[inline(never)]
fn device_ioctl(dev: &Device, cmd: u32, arg: UserArg) -> Result<isize> {
    match cmd {
        IOCTL_STATUS => {
            // The block names the region's physical address and carries
            // its superblock: for administrators only, whatever the
            // device node's mode. Checked before anything is gathered.
            require_admin()?;
            let mut block = [0u8; STATUS_BYTES];
            status(dev).encode(&mut block);
            arg.write(&block)?;
        }
        IOCTL_DRAIN => {
            require_admin()?;
            writeback::drain_and_wait(dev)?;
        }
        IOCTL_SKIP_BAD_RECORD => {
            require_admin()?;
            writeback::skip_bad_record(dev, arg.read_u64()?)?;
        }
        _ => return Err(ENOTTY),
    }
    Ok(0)
}

/// Reads of `/dev/rapilog-ctl`: the selected device's region's bytes from
/// `offset` on, a snapshot (`ControlHandler::read_at`).
pub(crate) fn read_at(
    reg: &Registry,
    file: &Selection,
    offset: u64,
    dst: &mut [u8],
) -> Result<usize> {
    require_admin()?;
    let dev = device(reg, file)?;
    let Ok(offset) = usize::try_from(offset) else {
        return Ok(0);
    };
    Ok(dev.region().snapshot(offset, dst))
}

/// Formats into 128 bytes without allocating; what does not fit is dropped.
struct TextWriter {
    buf: [u8; 128],
    len: usize,
}

impl TextWriter {
    fn new() -> Self {
        Self {
            buf: [0; 128],
            len: 0,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }
}

impl core::fmt::Write for TextWriter {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for &b in s.as_bytes() {
            let Some(slot) = self.buf.get_mut(self.len) else {
                break;
            };
            *slot = b;
            self.len += 1;
        }
        Ok(())
    }
}

fn require_admin() -> Result {
    if caller_is_admin() {
        Ok(())
    } else {
        Err(EPERM)
    }
}

/// The status block's contents, now.
pub(crate) fn status(dev: &Device) -> Status {
    let s = dev.stats();
    let fence = dev.fence();
    let mut status = Status {
        region_phys: dev.config().region.phys,
        region_bytes: dev.config().region.size,
        protect: dev.config().protect.mode(),
        writeback_delay_ms: dev.config().writeback_delay_ms,
        ring_bytes: dev.geometry().ring_bytes,
        writes: stats::get(&s.writes),
        write_bytes: stats::get(&s.write_bytes),
        flushes: stats::get(&s.flushes),
        throttled: stats::get(&s.throttled),
        reads_region: stats::get(&s.reads_region),
        reads_disk: stats::get(&s.reads_disk),
        wb_ios: stats::get(&s.wb_ios),
        wb_bytes: stats::get(&s.wb_bytes),
        wb_records: stats::get(&s.wb_records),
        wb_flushes: stats::get(&s.wb_flushes),
        disk_errors: stats::get(&s.disk_errors),
        write_errors: stats::get(&s.write_errors),
        wb_busy_us: stats::get(&s.wb_busy_ns) / 1000,
        bad_records: stats::get(&s.bad_records),
        bad_skipped: stats::get(&s.bad_skipped),
        uptime_us: dev.loaded_at().elapsed().as_micros_ceil().max(0) as u64,
        last_disk_errno: stats::get(&s.last_disk_errno) as u32,
        fence_state: fence.state,
        fence_policy: fence.policy,
        fence_devices: fence.devices,
        fence_unfenced: fence.unfenced,
        unfenced_list: fence.names,
        backing: Text::new(&dev.config().backing),
        powerfail_state: dev.powerfail().state(),
        powerfail_signals: dev.powerfail().config.signals,
        powerfail_false_alarms: dev.powerfail().false_alarms(),
        // 0 (never) when off or powering off, as the config has it.
        powerfail_resume_ms: dev.powerfail().config.resume_ms,
        // 0 when the power-fail path is off, as the status block says.
        holdup_ms: match dev.powerfail().config.signals {
            0 => 0,
            _ => dev.powerfail().config.holdup_ms,
        },
        dirty_bound_bytes: dev.powerfail().dirty_bound().unwrap_or(0),
        writeback_bandwidth: dev.powerfail().bandwidth(),
        superblock: current_superblock(dev),
        device_index: dev.config().index,
        powerfail_devices: match dev.powerfail().config.signals {
            0 => 0,
            _ => powerfail::devices(),
        },
        ..Status::default()
    };
    (status.marker_state, status.marker_epoch) = dev.marker_gauge().get();
    if let Some(reason) = dev.accepted_loss() {
        status.loss_accepted = 1;
        let mut text = TextWriter::new();
        // Cut at 128 bytes, which the writer does itself.
        let _ = write!(text, "{}", reason.brief());
        status.loss_reason = Text::new(text.as_bytes());
    }
    if dev.powerfail().holds_writes() {
        status.flags |= flags::WRITES_HELD;
    }
    if stats::get(&s.wb_retrying) != 0 {
        status.flags |= flags::WRITEBACK_RETRYING;
    }
    let live = dev.lock_live();
    status.next_seq = live.ring.next_seq();
    status.tail_seq = live.ring.tail_seq();
    status.live_records = live.ring.live_records();
    status.used_bytes = live.ring.used_bytes();
    status.dirty_bytes = live.dirty_bytes;
    status.set_held_record(live.held);
    if live.drain_to > live.written_to {
        status.flags |= flags::DRAINING;
    }
    if live.stopping {
        status.flags |= flags::UNLOADING;
    }
    status.dead_disk_ms = live.disk.deadline_ms();
    (status.failing_since_us, status.dead_since_us) = live.disk.since_us(dev.loaded_at());
    if live.disk.is_dead() {
        status.flags |= flags::DISK_DEAD;
    }
    status.writes_refused = live.disk.refused;
    status.oldest_dirty_us = live
        .oldest_age()
        .map_or(0, |age| age.as_micros_ceil().max(1) as u64);
    status
}

/// The region's current superblock copy, encoded (all zero if neither
/// copy is valid, which cannot happen while the device is live).
fn current_superblock(dev: &Device) -> [u8; SUPERBLOCK_BYTES] {
    // Writeback only ever rewrites the copy that is not current, so
    // the current one reads whole; a torn other copy is simply invalid.
    let mut copies = [0u8; 2 * SUPERBLOCK_BYTES];
    dev.region().snapshot(0, &mut copies);
    let mut out = [0u8; SUPERBLOCK_BYTES];
    if let Ok(active) = ActiveSuperblock::load_copies(&copies, KernelCrc32c) {
        active.superblock.encode(&mut out, KernelCrc32c);
    }
    out
}
