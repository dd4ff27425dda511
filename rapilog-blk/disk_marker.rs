// SPDX-License-Identifier: GPL-2.0

//! The loss marker on the log disk, from the driver's side. The record, its
//! place (the last few KiB of the disk, which `/dev/rapilog0` never
//! exposes) and the load decision are the format crate's
//! ([`crate::format::disk_marker`], FORMAT.md "Disk marker").
//!
//! When the driver writes it, each time followed by a flush:
//! - `Live` with the new epoch at load, after replay and format and before
//!   the device exists: once per load, never on the path of an
//!   acknowledged write in steady state;
//! - `Clean` after a clean drain (unload, orderly stop, before a suspend or
//!   hibernation), once the superblock says so;
//! - `Live` with the new epoch when service resumes after a sleep.
//!
//! So a disk whose marker says `Live` while the region holds no records of
//! that epoch went through a stop that neither drained nor was replayed,
//! with the region gone since: exactly when acknowledged writes may be lost.

#![deny(unsafe_code)]

use kernel::prelude::*;
use kernel::sync::atomic::{Atomic, Relaxed};

use crate::config::Config;
use crate::format::{
    marker_area, DiskIdentity, DiskMarker, MarkerArea, MarkerError, MarkerState, MarkerWriter,
    MARKER_BYTES,
};
use crate::sys::backing::BackingDisk;
use crate::sys::bounce::BounceBuffer;
use crate::sys::clock;
use crate::sys::crc32c::KernelCrc32c;

/// The marker of one disk, as last read or written.
pub(crate) struct Marker {
    area: MarkerArea,
    region_phys: u64,
    region_bytes: u64,
    /// The marker on the disk now (`None`: none, or damaged).
    last: Option<DiskMarker>,
}

/// What the status shows of the marker, readable without a lock.
pub(crate) struct MarkerGauge {
    /// [`MarkerState::code`] of the marker on the disk; 0 none.
    state: Atomic<u32>,
    epoch: Atomic<u64>,
}

impl MarkerGauge {
    pub(crate) fn new(marker: &Marker) -> Self {
        let gauge = Self {
            state: Atomic::new(0),
            epoch: Atomic::new(0),
        };
        gauge.show(marker);
        gauge
    }

    fn show(&self, marker: &Marker) {
        if let Some(m) = &marker.last {
            self.epoch.store(m.epoch, Relaxed);
            self.state.store(m.state.code(), Relaxed);
        }
    }

    /// The marker's state code and epoch, for the status block.
    pub(crate) fn get(&self) -> (u32, u64) {
        (self.state.load(Relaxed), self.epoch.load(Relaxed))
    }
}

impl Marker {
    /// Reads the marker of `disk` (writes nothing). `Err` only if the disk
    /// is too small for a marker area or cannot be read; the marker itself
    /// may be absent or damaged (the inner result).
    pub(crate) fn read(
        config: &Config,
        disk: &BackingDisk,
        identity: &DiskIdentity,
        bounce: &mut BounceBuffer,
    ) -> Result<(Self, Result<Option<DiskMarker>, MarkerError>)> {
        let area = marker_area(identity).ok_or(ENOSPC)?;
        let bytes = usize::try_from(area.bytes()).map_err(|_| EINVAL)?;
        disk.read(area.first_sector, bounce, bytes)?;
        let mut record = [0u8; MARKER_BYTES];
        bounce.copy_to_slice(0, &mut record).map_err(|_| EINVAL)?;
        let found = DiskMarker::decode(&record, KernelCrc32c);
        let marker = Self {
            area,
            region_phys: config.region.phys,
            region_bytes: config.region.size,
            last: found.ok().flatten(),
        };
        Ok((marker, found))
    }

    /// Whether the marker on the disk says `Live`.
    pub(crate) fn is_live(&self) -> bool {
        self.last.is_some_and(|m| m.state == MarkerState::Live)
    }

    /// Clears a `Live` marker once its region's records are on the disk:
    /// `Clean` for the same epoch (at load, after replay).
    pub(crate) fn write_clean(&mut self, disk: &BackingDisk, bounce: &mut BounceBuffer) -> Result {
        let Some(last) = self.last else {
            return Ok(());
        };
        self.write(
            disk,
            bounce,
            None,
            MarkerState::Clean,
            last.epoch,
            MarkerWriter::Module,
        )
    }

    /// The disk's sectors before the marker area: all `/dev/rapilog0` shows.
    pub(crate) fn data_sectors(&self) -> u64 {
        self.area.data_sectors()
    }

    /// Writes a marker saying `state` for region `epoch`, then flushes the
    /// disk. `bounce` is scratch space.
    pub(crate) fn write(
        &mut self,
        disk: &BackingDisk,
        bounce: &mut BounceBuffer,
        gauge: Option<&MarkerGauge>,
        state: MarkerState,
        epoch: u64,
        writer: MarkerWriter,
    ) -> Result {
        let marker = DiskMarker {
            state,
            epoch,
            region_phys: self.region_phys,
            region_bytes: self.region_bytes,
            generation: DiskMarker::next_generation(self.last.as_ref()),
            written_at_unix_secs: clock::unix_seconds(),
            writer,
        };
        let bytes = usize::try_from(self.area.bytes()).map_err(|_| EINVAL)?;
        let mut record = [0u8; MARKER_BYTES];
        marker.encode(&mut record, KernelCrc32c);
        // The record, then zeros to the end of the area (whole blocks).
        let zeros = [0u8; MARKER_BYTES];
        let mut at = MARKER_BYTES;
        let mut copied = bounce.copy_from_slice(0, &record);
        while copied.is_ok() && at < bytes {
            copied = bounce.copy_from_slice(at, &zeros);
            at += MARKER_BYTES;
        }
        copied.map_err(|_| EINVAL)?;
        disk.write(self.area.first_sector, bounce, bytes)?;
        disk.flush()?;
        self.last = Some(marker);
        if let Some(gauge) = gauge {
            gauge.show(self);
        }
        Ok(())
    }
}
