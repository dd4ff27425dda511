// SPDX-License-Identifier: GPL-2.0

//! Bringing the region up at load, before the device exists.
//!
//! 1. Read what the region holds, without writing anything. Refuse a region
//!    of another disk, of a larger size than `region=` says, or of a format
//!    version this driver does not know: those may hold someone's records.
//! 2. If it is this disk's region, replay every valid record of its live
//!    window onto the disk (what a warm reboot without the crash kernel
//!    left behind), flush the disk, and record the replay in the superblock,
//!    exactly as rapilog-rescue would.
//! 3. Read the log disk's loss marker (`disk_marker`): if it says a region
//!    fronted the disk with records that were neither drained nor replayed,
//!    and this region holds none of them (memory wiped, a cold boot, another
//!    machine), refuse loudly unless `accept_loss=1`: acknowledged writes
//!    may be gone, and formatting over that in silence would hide it.
//! 4. Format the region afresh for this disk (new epoch, the layout for the
//!    current `region=` size), keeping the last replay report, and mark it
//!    dirty: the driver always starts from an empty ring. Then write the
//!    marker `Live` for the new epoch, before the device exists.

#![deny(unsafe_code)]

use kernel::prelude::*;
use kernel::str::BStr;
use kernel::time::{Instant, Monotonic};

use crate::config::Config;
use crate::disk_marker::Marker;
use crate::format::{
    check_marker, plan_replay, ActiveSuperblock, DiskIdentity, Geometry, LastReplay, LoadError,
    LossReason, MarkerState, MarkerVerdict, MarkerWriter, RegionEvidence, RegionState,
    ReplayRefusal, Replayer, SuperblockError, SECTOR_BYTES,
};
use crate::kernel_display::{Errno, Escaped};
use crate::metadata;
use crate::sys::backing::{BackingDisk, MAX_IO_BYTES};
use crate::sys::bounce::BounceBuffer;
use crate::sys::clock;
use crate::sys::compat;
use crate::sys::crc32c::KernelCrc32c;
use crate::sys::region::Region;

/// What the region held at load.
enum Found {
    /// No superblock: never formatted, or wiped.
    Fresh,
    /// Both copies damaged: formatted over, with a warning.
    Damaged(LoadError),
    /// This disk's region.
    Ours,
}

/// The region and the disk, ready for service.
pub(crate) struct BroughtUp {
    /// The live superblock (written, dirty).
    pub(crate) superblock: ActiveSuperblock,
    /// The disk's marker (written `Live` for the new epoch).
    pub(crate) marker: Marker,
    /// A possible loss the administrator accepted with `accept_loss=1`.
    pub(crate) accepted_loss: Option<LossReason>,
}

/// Brings the region up.
pub(crate) fn bring_up(
    config: &Config,
    region: &mut Region,
    disk: &BackingDisk,
    identity: &DiskIdentity,
    geometry: Geometry,
    bounce: &mut BounceBuffer,
) -> Result<BroughtUp> {
    let spec = config.region;
    let path = BStr::from_bytes(&config.backing);
    let found = inspect(config, region, identity)?;
    let (mut marker, accepted_loss) = check_loss(config, region, disk, identity, bounce)?;

    // Nothing has been written so far. From here on the region is ours.
    // A `Live` marker of the region found here is cleared once its records
    // are on the disk (replayed), before the region is formatted over:
    // a crash between the format and the new `Live` must not look like a
    // lost epoch.
    let clear_old = marker.is_live();
    let carried = match &found {
        Found::Fresh => {
            pr_info!("region={spec}: no rapilog superblock, formatting it for backing={path}\n");
            LastReplay::default()
        }
        Found::Damaged(e) => {
            pr_warn!("region={spec}: {e}; formatting it for backing={path}\n");
            LastReplay::default()
        }
        Found::Ours => replay(config, region, disk, identity, bounce)?,
    };

    if clear_old {
        marker.write_clean(disk, bounce).map_err(|e| {
            pr_err!(
                "backing={path}: writing its loss marker failed ({}); not loading\n",
                Errno(e)
            );
            e
        })?;
    }
    let epoch = clock::random_u64();
    let formatted = metadata::format(region, geometry, *identity, epoch)?;
    let mut live = formatted.next_update();
    live.superblock.state = RegionState::Dirty;
    live.superblock.last_replay = carried;
    metadata::write_superblock(region, &live)?;
    let writer = match accepted_loss {
        Some(_) => MarkerWriter::AcceptedLoss,
        None => MarkerWriter::Module,
    };
    if let Err(e) = marker.write(disk, bounce, None, MarkerState::Live, epoch, writer) {
        pr_err!(
            "backing={path}: writing its loss marker failed ({}); not loading\n",
            Errno(e)
        );
        return Err(e);
    }
    pr_info!(
        "region={spec}: formatted for disk_id \"{}\" (epoch {epoch:#018x}): {} record slots, \
         ring {} KiB, records up to {} KiB, protect={}\n",
        Escaped(identity.id.as_bytes()),
        geometry.descriptor_slots,
        geometry.ring_bytes / 1024,
        geometry.max_record_bytes / 1024,
        config.protect.name()
    );
    Ok(BroughtUp {
        superblock: live,
        marker,
        accepted_loss,
    })
}

/// Step 3: reads the disk's marker and decides, before anything is written.
fn check_loss(
    config: &Config,
    region: &mut Region,
    disk: &BackingDisk,
    identity: &DiskIdentity,
    bounce: &mut BounceBuffer,
) -> Result<(Marker, Option<LossReason>)> {
    let spec = config.region;
    let path = BStr::from_bytes(&config.backing);
    let (marker, on_disk) = Marker::read(config, disk, identity, bounce).map_err(|e| {
        if e == ENOSPC {
            pr_err!("backing={path} refused: too small to keep a loss marker at its end\n");
        } else {
            pr_err!(
                "backing={path} refused: reading its loss marker (its last 4 KiB) failed ({})\n",
                Errno(e)
            );
        }
        e
    })?;
    let evidence = RegionEvidence::of_region(region.quiescent(), identity, KernelCrc32c);
    match check_marker(on_disk, evidence) {
        MarkerVerdict::Proceed => Ok((marker, None)),
        MarkerVerdict::PossibleLoss { reason } if config.accept_loss => {
            pr_warn!(
                "backing={path}: {reason}; accepted (accept_loss=1): going live over region={spec}, \
                 rapilogctl status reports it until the next load\n"
            );
            Ok((marker, Some(reason)))
        }
        MarkerVerdict::PossibleLoss { reason } => {
            pr_err!(
                "backing={path} refused: {reason}. Check the data on the disk (e.g. the \
                 database's recovery), then load with accept_loss=1 to go on, or see `rapilogctl \
                 marker {path}`\n"
            );
            Err(compat::euclean())
        }
    }
}

/// Step 1: classifies the region's contents; refusals are logged here.
fn inspect(config: &Config, region: &mut Region, identity: &DiskIdentity) -> Result<Found> {
    let spec = config.region;
    let bytes = region.quiescent();
    let active = match ActiveSuperblock::load(bytes, KernelCrc32c) {
        Ok(active) => active,
        Err(LoadError::NoValidCopy {
            first: SuperblockError::BadMagic,
            second: SuperblockError::BadMagic,
        }) => return Ok(Found::Fresh),
        Err(LoadError::NoValidCopy { first, second })
            if matches!(first, SuperblockError::UnsupportedVersion(_))
                || matches!(second, SuperblockError::UnsupportedVersion(_)) =>
        {
            pr_err!(
                "region={spec} refused: it holds a rapilog region of another format version \
                 (copy 0: {first}; copy 1: {second}); replay it with a matching rapilogctl, \
                 then wipe it (zero its first 1 KiB)\n"
            );
            return Err(EINVAL);
        }
        Err(e @ LoadError::NoValidCopy { .. }) => return Ok(Found::Damaged(e)),
        Err(e) => {
            pr_err!(
                "region={spec} refused: {e}; load with the region= it was formatted with, or \
                 inspect it with rapilogctl\n"
            );
            return Err(EINVAL);
        }
    };
    match plan_replay(bytes, identity, KernelCrc32c) {
        Ok(_) => Ok(Found::Ours),
        Err(ReplayRefusal::DiskIdMismatch) => {
            // The commonest cause: kernel names (/dev/sdX, /dev/vdX) moved
            // between disks since the region was written. Nothing has been
            // written to either disk, and nothing will be.
            pr_err!(
                "region={spec} refused: it holds records of disk \"{}\", but backing={} is disk \
                 \"{}\"; nothing was replayed or written. Load with backing= naming disk \"{}\" \
                 (e.g. its /dev/disk/by-id/ path) to replay them onto it (a disk known by an id it \
                 does not report, such as a path an older rapilog recorded: add disk_id= with that \
                 id); only if its records are not needed, wipe the region by zeroing its first 1 KiB \
                 (superblocks)\n",
                Escaped(active.superblock.disk.id.as_bytes()),
                BStr::from_bytes(&config.backing),
                Escaped(identity.id.as_bytes()),
                Escaped(active.superblock.disk.id.as_bytes())
            );
            Err(EINVAL)
        }
        Err(refusal) => {
            let theirs = &active.superblock.disk;
            let why = match refusal {
                ReplayRefusal::DiskTooSmall { .. } => "a disk too small for its loss marker",
                _ => "a disk of another size or block size",
            };
            pr_err!(
                "region={spec} refused: it holds a rapilog region of {why} (disk_id \"{}\", {} \
                 sectors of {} bytes; backing= is disk_id \"{}\", {} sectors of {} bytes): inspect \
                 it with `rapilogctl inspect`, replay it onto its disk, or if its records are not \
                 needed wipe it by zeroing its first 1 KiB (superblocks) and load again\n",
                Escaped(theirs.id.as_bytes()),
                theirs.sectors,
                theirs.block_bytes,
                Escaped(identity.id.as_bytes()),
                identity.sectors,
                identity.block_bytes
            );
            Err(EINVAL)
        }
    }
}

/// Step 2: replays this disk's region; returns the replay to carry into
/// the new format (the previous one if there was nothing to replay).
fn replay(
    config: &Config,
    region: &mut Region,
    disk: &BackingDisk,
    identity: &DiskIdentity,
    bounce: &mut BounceBuffer,
) -> Result<LastReplay> {
    let spec = config.region;
    let path = BStr::from_bytes(&config.backing);
    let started = Instant::<Monotonic>::now();
    let bytes = region.quiescent();
    let mut plan = plan_replay(bytes, identity, KernelCrc32c).map_err(|_| EINVAL)?;
    let previous = plan.superblock().superblock.last_replay;
    let from = plan.window().start;
    for write in &mut plan {
        if let Err(e) = write_payload(disk, bounce, write.sector, write.data) {
            pr_err!(
                "replay of region={spec} onto backing={path} failed at sector {} (seq {}): {}; \
                 the region is left as it is, not loading\n",
                write.sector,
                write.seq,
                Errno(e)
            );
            return Err(e);
        }
    }
    if let Err(e) = disk.flush() {
        pr_err!(
            "replay of region={spec}: flushing backing={path} failed ({}); not loading\n",
            Errno(e)
        );
        return Err(e);
    }
    let report = plan.report();
    if report.records_applied == 0 && report.skipped.alarming() == 0 {
        pr_info!("region={spec}: nothing to replay (live window from seq {from})\n");
        log_previous(config, &previous);
        return Ok(previous);
    }
    let micros = started.elapsed().as_micros_ceil().max(0) as u64;
    let Some(replayed) = plan.replayed_superblock(Replayer::Module, clock::unix_seconds(), micros)
    else {
        return Err(EINVAL);
    };
    metadata::write_superblock(region, &replayed)?;
    let s = report.skipped;
    pr_info!(
        "region={spec}: replayed {} records ({} KiB) from seq {from} onto backing={path} in {} ms; \
         skipped {s}\n",
        report.records_applied,
        report.bytes_applied / 1024,
        micros / 1000
    );
    if s.alarming() > 0 {
        pr_warn!(
            "region={spec}: {} records were damaged and not replayed\n",
            s.alarming()
        );
    }
    Ok(replayed.superblock.last_replay)
}

/// Reports the last replay the region records, e.g. rapilog-rescue's after
/// a panic: the module's own replays are logged when they happen.
fn log_previous(config: &Config, last: &LastReplay) {
    let by = match last.replayer {
        Replayer::Never | Replayer::Module => return,
        Replayer::Rescue => "rapilog-rescue (crash kernel)",
        Replayer::Tool => "rapilogctl",
    };
    let r = &last.report;
    pr_info!(
        "region={}: last replay by {by} at {} (Unix time): {} records ({} KiB) from seq {} in {} ms, \
         {} damaged records skipped\n",
        config.region,
        last.finished_at_unix_secs,
        r.records_applied,
        r.bytes_applied / 1024,
        last.from_seq,
        last.duration_us / 1000,
        r.skipped.alarming()
    );
}

/// Writes `data` (whole logical blocks) at `sector` through the bounce pages.
fn write_payload(
    disk: &BackingDisk,
    bounce: &mut BounceBuffer,
    sector: u64,
    data: &[u8],
) -> Result {
    let chunk = bounce.capacity().min(MAX_IO_BYTES);
    let mut done = 0usize;
    while done < data.len() {
        let n = chunk.min(data.len() - done);
        let piece = data.get(done..done + n).ok_or(EINVAL)?;
        bounce.copy_from_slice(0, piece).map_err(|_| EINVAL)?;
        disk.write(sector + (done / SECTOR_BYTES as usize) as u64, bounce, n)?;
        done += n;
    }
    Ok(())
}
