// SPDX-License-Identifier: GPL-2.0

//! One region's replay as configured: open the region, find and open the
//! disk, replay. Running every configured region in turn is `all.rs`'s.

use std::path::Path;
use std::time::Instant;

use rapilog_format::{DiskIdentity, Replayer};
use rapilog_replay::discover::{self, device_node, find_by_id};
use rapilog_replay::engine::{self, Failure, FailureKind, OpenedTarget, Outcome, ReplayOptions};
use rapilog_replay::idtext::IdText;
use rapilog_replay::region::{FileRegion, RegionStore};
use rapilog_replay::target::TargetDisk;

use crate::config::{Config, RegionConfig, RegionSource, TargetSelect};

/// Whether rapilog.ko is loaded: then the live driver owns the region and
/// the disk, and replaying underneath it would race with it.
pub fn driver_loaded(sysfs: &Path) -> bool {
    sysfs.join("module/rapilog").exists()
}

/// Refuses to replay regions in physical memory while rapilog.ko is loaded
/// (unless forced): checked once for every region.
pub fn check_driver(config: &Config) -> Result<(), Failure> {
    let on_memory = config
        .regions
        .iter()
        .any(|r| matches!(r.source, RegionSource::Memory { .. }));
    if on_memory && !config.force && driver_loaded(&config.sysfs) {
        return Err(Failure::new(
            FailureKind::Usage,
            "rapilog.ko is loaded: the live driver owns the region (use rapilogctl, or --force); \
             nothing written",
        ));
    }
    Ok(())
}

/// Opens a region (read-only for a dry run).
pub fn open_region(source: &RegionSource, dry_run: bool) -> Result<FileRegion, Failure> {
    match source {
        RegionSource::Memory { mem, spec, access } => {
            FileRegion::open_memory(mem, *spec, *access, dry_run).map_err(|e| {
                Failure::new(
                    FailureKind::Region,
                    format!(
                        "cannot read region {spec} from {}: {e}; nothing written",
                        mem.display()
                    ),
                )
            })
        }
        RegionSource::Image(path) => FileRegion::open_image(path, dry_run).map_err(|e| {
            Failure::new(
                FailureKind::Region,
                format!(
                    "cannot read region image {}: {e}; nothing written",
                    path.display()
                ),
            )
        }),
    }
}

/// Finds (per `select`) and opens the disk for `region_disk`.
pub fn open_target(
    select: &TargetSelect,
    region_disk: &DiskIdentity,
    read_only: bool,
    log: &mut dyn FnMut(&str),
) -> Result<OpenedTarget<TargetDisk>, Failure> {
    let id = region_disk.id.as_bytes();
    let disk_failure = |m: String| Failure::new(FailureKind::Disk, format!("{m}; nothing written"));
    let (path, description) = match select {
        TargetSelect::Path {
            path,
            file_block_bytes: _,
        } => {
            log(&format!(
                "--target {}: identity {} not checked (forced)",
                path.display(),
                IdText(id)
            ));
            (path.clone(), path.display().to_string())
        }
        TargetSelect::ByIdentity {
            sysfs,
            dev_dir,
            allow_files,
            wait,
        } => {
            if !wait.is_zero() {
                log(&format!(
                    "looking for disk {} (waiting up to {} s for it to appear)",
                    IdText(id),
                    wait.as_secs()
                ));
            }
            let dev = find_by_id(sysfs, id, *wait).map_err(|e| disk_failure(e.to_string()))?;
            if dev.read_only {
                return Err(disk_failure(format!(
                    "{} has identity {} but is read-only",
                    dev.name,
                    IdText(id)
                )));
            }
            let scratch = std::env::temp_dir();
            let node = device_node(&dev, dev_dir, &scratch, *allow_files).map_err(disk_failure)?;
            let description = format!(
                "{} ({} {}:{}, {}, {} sectors, {}-byte blocks)",
                node.display(),
                dev.name,
                dev.major,
                dev.minor,
                IdText(id),
                dev.sectors,
                dev.block_bytes
            );
            (node, description)
        }
    };
    let file_block_bytes = match select {
        TargetSelect::Path {
            file_block_bytes, ..
        } => *file_block_bytes,
        // A regular file standing in for a disk in a fake sysfs: the
        // region's own block size (sysfs gave the rest).
        TargetSelect::ByIdentity { .. } => region_disk.block_bytes,
    };
    let disk = TargetDisk::open(&path, read_only, file_block_bytes)
        .map_err(|e| disk_failure(format!("cannot open {description}: {e}")))?;
    Ok(OpenedTarget {
        sectors: disk.sectors,
        block_bytes: disk.block_bytes,
        disk,
        description,
    })
}

/// The configuration with the disk wait cut to what is left until
/// `deadline`: `rapilog.wait` counts from the start of the run, for every
/// region together. The disk drivers probe every disk at once, so once the
/// wait has passed for one region a later region's missing disk is not
/// waited for again: missing disks delay the reboot by `rapilog.wait` at
/// most, not by that much each.
pub fn until(config: &Config, deadline: Instant) -> Config {
    let mut config = config.clone();
    if let TargetSelect::ByIdentity { wait, .. } = &mut config.target {
        *wait = (*wait).min(deadline.saturating_duration_since(Instant::now()));
    }
    config
}

/// When the disk wait of a run that starts now ends.
pub fn wait_deadline(config: &Config) -> Instant {
    match &config.target {
        TargetSelect::ByIdentity { wait, .. } => Instant::now() + *wait,
        TargetSelect::Path { .. } => Instant::now(),
    }
}

/// Replays one configured region, with `log` receiving progress lines
/// ([`check_driver`] first).
pub fn run(
    config: &Config,
    which: &RegionConfig,
    replayer: Replayer,
    log: &mut dyn FnMut(&str),
) -> Result<Outcome, Failure> {
    let start = Instant::now();
    let mut region = open_region(&which.source, config.dry_run)?;
    let t = start.elapsed();
    log(&format!(
        "region {}: {} bytes {} in {}.{:03} s",
        region.describe(),
        region.bytes().len(),
        region.note().unwrap_or("read"),
        t.as_secs(),
        t.subsec_millis()
    ));
    let options = ReplayOptions {
        replayer,
        dry_run: config.dry_run,
        expected_id: which.disk_id,
    };
    let select = config.target.clone();
    let dry_run = config.dry_run;
    engine::replay(
        &mut region,
        &options,
        |disk, log| open_target(&select, disk, dry_run, log),
        log,
    )
}

/// Lines describing every block device and its identities.
pub fn list_disks(sysfs: &Path) -> Result<Vec<String>, Failure> {
    let devs = discover::scan(sysfs).map_err(|e| {
        Failure::new(
            FailureKind::Disk,
            format!(
                "cannot list block devices in {}: {e}",
                sysfs.join("block").display()
            ),
        )
    })?;
    Ok(devs
        .iter()
        .map(|d| {
            format!(
                "{} {}:{} {} sectors, {}-byte blocks{}: {}",
                d.name,
                d.major,
                d.minor,
                d.sectors,
                d.block_bytes,
                if d.read_only { ", read-only" } else { "" },
                d.ids_text()
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn with_wait(secs: u64) -> Config {
        crate::parse_args(
            &[
                "--image".to_string(),
                "r.img".into(),
                "--wait".into(),
                secs.to_string(),
            ],
            &mut |_| unreachable!(),
        )
        .unwrap()
    }

    fn wait_of(config: &Config) -> Duration {
        match &config.target {
            TargetSelect::ByIdentity { wait, .. } => *wait,
            TargetSelect::Path { .. } => unreachable!(),
        }
    }

    #[test]
    fn the_disk_wait_is_shared_by_every_region() {
        let config = with_wait(30);
        // Past the deadline: later regions do not wait again.
        let past = Instant::now();
        assert_eq!(wait_of(&until(&config, past)), Duration::ZERO);
        // Before it: what is left, never more than configured.
        let left = wait_of(&until(&config, wait_deadline(&config)));
        assert!(left <= Duration::from_secs(30));
        let far = Instant::now() + Duration::from_secs(3600);
        assert_eq!(wait_of(&until(&config, far)), Duration::from_secs(30));
    }
}
