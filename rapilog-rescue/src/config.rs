// SPDX-License-Identifier: GPL-2.0

//! Configuration of one run, from the kernel command line (the crash
//! kernel) and/or this program's own arguments (tests, by hand).
//!
//! Without `--region` or `--image`, the `rapilog.*` parameters of the
//! kernel command line (`/proc/cmdline`, or `--cmdline FILE`) configure the
//! run, and reboot is on by default in a crash kernel; flags given as well
//! override them.
//! With `--region` or `--image`, the kernel command line is not read and
//! reboot is off unless `--reboot` is given.
//!
//! Several regions (one per rapilog device): `rapilog.region=` repeated on
//! the kernel command line, or `--region`/`--image` repeated; the k-th
//! `rapilog.disk=` (`--disk-id`) belongs to the k-th region. Disks are given
//! for every region or for none, and an empty one means "none for this
//! region" (the region's own identity is looked for): a count that does not
//! match is refused rather than guessed, since a disk paired with the wrong
//! region would be refused at replay anyway, after the wait. With one
//! region the last disk wins, as it always has.

use std::path::PathBuf;
use std::time::Duration;

use rapilog_format::{DiskId, RegionSpec};
use rapilog_replay::engine::{Failure, FailureKind};
use rapilog_replay::idtext;
use rapilog_replay::region::MemAccess;

use crate::cmdline::RescueParams;

/// Where the region comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegionSource {
    /// Physical memory through a memory device (normally `/dev/mem`).
    Memory {
        /// The memory device.
        mem: PathBuf,
        /// The region.
        spec: RegionSpec,
        /// Read or map.
        access: MemAccess,
    },
    /// An image file holding the region from its first byte.
    Image(PathBuf),
}

/// How the log disk is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSelect {
    /// By the identity the region names, in sysfs (the normal way).
    ByIdentity {
        /// sysfs mount point (`/sys`).
        sysfs: PathBuf,
        /// Where device nodes are (`/dev`).
        dev_dir: PathBuf,
        /// Accept regular files in `dev_dir` (tests with a fake sysfs).
        allow_files: bool,
        /// How long to wait for the disk to appear.
        wait: Duration,
    },
    /// This path, whatever its identity (`--target`); size and block size
    /// are still checked.
    Path {
        /// Block device or file.
        path: PathBuf,
        /// Logical block size when the path is a regular file.
        file_block_bytes: u32,
    },
}

/// What to do instead of a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Replay (or dry-run).
    Replay,
    /// Print every block device and its ids.
    ListDisks,
    /// Print usage.
    Help,
    /// Print the version.
    Version,
}

/// One region to replay, and the disk it must name if configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionConfig {
    /// Where the region is.
    pub source: RegionSource,
    /// The disk the region must name, if configured.
    pub disk_id: Option<DiskId>,
}

impl RegionConfig {
    /// The region as the configuration named it: `SIZE@PHYS`, or the image path.
    pub fn describe(&self) -> String {
        match &self.source {
            RegionSource::Memory { spec, .. } => spec.to_string(),
            RegionSource::Image(path) => path.display().to_string(),
        }
    }
}

/// A complete configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// What to do.
    pub action: Action,
    /// The regions, in the order given (empty only for actions other than
    /// replay); the k-th is `/dev/rapilog<k>`'s when `rapilog-arm` built
    /// the command line.
    pub regions: Vec<RegionConfig>,
    /// How to find the disk.
    pub target: TargetSelect,
    /// sysfs mount point (also used for the live-driver check).
    pub sysfs: PathBuf,
    /// Verify and report only.
    pub dry_run: bool,
    /// Reboot when done, if said; see [`Config::reboot_wanted`].
    pub reboot: Option<bool>,
    /// Run even though rapilog.ko is loaded.
    pub force: bool,
    /// Configured from the kernel command line.
    pub from_cmdline: bool,
}

impl Config {
    /// Whether to reboot when done: as said by `--reboot`/`--no-reboot` or
    /// `rapilog.reboot=`; by default only when configured from the kernel
    /// command line *and* running in a crash kernel (`in_crash_kernel`:
    /// `/proc/vmcore` exists), so that trying the program on a live system
    /// never restarts it by surprise.
    pub fn reboot_wanted(&self, in_crash_kernel: bool) -> bool {
        self.reboot.unwrap_or(self.from_cmdline && in_crash_kernel)
    }
}

/// Usage text.
pub const USAGE: &str = "\
usage: rapilog-rescue [OPTIONS]
Replays each rapilog region onto its log disk, found by identity.

Without --region/--image the kernel command line configures the run:
  rapilog.region=SIZE@PHYS  rapilog.disk=ID  rapilog.dry_run=0|1
  rapilog.reboot=0|1 (default 1 in a crash kernel)  rapilog.wait=SECONDS (30)
Several regions: rapilog.region=A rapilog.disk=X rapilog.region=B rapilog.disk=Y
(the k-th disk belongs to the k-th region; one per region or none; empty: none).
Each region is replayed in turn; one failing does not stop the others.

  --region SIZE@PHYS   a region in physical memory (e.g. 64M@0x60000000);
                       repeat for several
  --image FILE         read a region from an image file instead; repeatable
  --disk-id ID         the disk the region must name (text form, \\xHH escapes);
                       repeat, one per region in the same order
  --mem PATH           memory device (default /dev/mem)
  --read               read(2) the region instead of mapping it
  --target DEV         write to DEV whatever its identity (size and block
                       size are still checked); one region only
  --block-bytes N      logical block size when --target is a regular file (512)
  --sysfs DIR          sysfs mount point (default /sys)
  --dev-dir DIR        device nodes directory (default /dev; a given DIR may
                       hold regular files standing in for disks)
  --wait SECONDS       wait up to this long for the disk to appear
  --cmdline FILE       read rapilog.* parameters from FILE (default /proc/cmdline)
  --dry-run            verify and report, write nothing
  --no-reboot          do not reboot when done
  --reboot             reboot when done
  --force              run even though rapilog.ko is loaded
  --list-disks         print every block device with its identities
  -h, --help           this text
  -V, --version        version

exit codes: 0 replayed (or nothing to do), 1 replayed but damaged records
skipped, 2 usage, 3 region refused, 4 disk refused or not found,
5 disk write/flush failed, 6 report not recorded in the region,
9 POSSIBLE LOSS: the log disk's marker says a region held acknowledged
writes that neither this region nor the disk has (marker left as it is).
With several regions: the highest of theirs, and the last line says how many
were replayed cleanly.";

fn usage(message: impl Into<String>) -> Failure {
    Failure::new(FailureKind::Usage, message)
}

fn parse_region(text: &str, origin: &str) -> Result<RegionSpec, Failure> {
    RegionSpec::parse(text.as_bytes()).map_err(|e| usage(format!("{origin} {text:?}: {e}")))
}

fn parse_disk(text: &str, origin: &str) -> Result<DiskId, Failure> {
    idtext::parse_disk_id(text).map_err(|e| usage(format!("{origin} {text:?}: {e}")))
}

/// Builds the configuration from the program's arguments (without `argv[0]`).
/// `read_cmdline` returns the kernel command line of a path (normally
/// `/proc/cmdline`); it is only called when the command line configures the
/// run.
pub fn parse_args(
    args: &[String],
    read_cmdline: &mut dyn FnMut(&str) -> std::io::Result<String>,
) -> Result<Config, Failure> {
    let mut action = Action::Replay;
    let mut region_texts: Vec<String> = Vec::new();
    let mut images: Vec<PathBuf> = Vec::new();
    let mut disk_texts: Vec<String> = Vec::new();
    let mut mem = PathBuf::from("/dev/mem");
    let mut access = MemAccess::Map;
    let mut target_path: Option<PathBuf> = None;
    let mut block_bytes: u32 = 512;
    let mut sysfs = PathBuf::from("/sys");
    let mut dev_dir: Option<PathBuf> = None;
    let mut wait: Option<u64> = None;
    let mut cmdline_path: Option<String> = None;
    let mut dry_run: Option<bool> = None;
    let mut reboot: Option<bool> = None;
    let mut force = false;

    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = |name: &str| -> Result<String, Failure> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| usage(format!("{name} needs a value"))),
            }
        };
        match flag {
            "--region" => region_texts.push(value(flag)?),
            "--image" => images.push(value(flag)?.into()),
            "--disk-id" => disk_texts.push(value(flag)?),
            "--mem" => mem = value(flag)?.into(),
            "--read" => access = MemAccess::Read,
            "--target" => target_path = Some(value(flag)?.into()),
            "--block-bytes" => {
                let v = value(flag)?;
                block_bytes = v
                    .parse()
                    .ok()
                    .filter(|b: &u32| b.is_power_of_two() && (512..=65536).contains(b))
                    .ok_or_else(|| {
                        usage(format!("--block-bytes {v:?}: a power of two, 512..65536"))
                    })?;
            }
            "--sysfs" => sysfs = value(flag)?.into(),
            "--dev-dir" => dev_dir = Some(value(flag)?.into()),
            "--wait" => {
                let v = value(flag)?;
                wait = Some(
                    v.parse()
                        .map_err(|_| usage(format!("--wait {v:?}: seconds")))?,
                );
            }
            "--cmdline" => cmdline_path = Some(value(flag)?),
            "--dry-run" => dry_run = Some(true),
            "--no-reboot" => reboot = Some(false),
            "--reboot" => reboot = Some(true),
            "--force" => force = true,
            "--list-disks" => action = Action::ListDisks,
            "-h" | "--help" => action = Action::Help,
            "-V" | "--version" => action = Action::Version,
            other => return Err(usage(format!("unknown argument {other:?} (see --help)"))),
        }
    }

    let from_cmdline = action == Action::Replay && region_texts.is_empty() && images.is_empty();
    let mut params = RescueParams::default();
    if from_cmdline {
        let path = cmdline_path.as_deref().unwrap_or("/proc/cmdline");
        let text = read_cmdline(path).map_err(|e| usage(format!("cannot read {path}: {e}")))?;
        params = RescueParams::parse(&text).map_err(|e| usage(e.to_string()))?;
        if params.regions.is_empty() {
            return Err(usage(format!(
                "no rapilog.region=SIZE@PHYS on the kernel command line ({path}) and no --region"
            )));
        }
    } else if !region_texts.is_empty() && !images.is_empty() {
        return Err(usage("--region and --image exclude each other"));
    }

    let sources: Vec<RegionSource> = if action != Action::Replay {
        Vec::new()
    } else if !images.is_empty() {
        images.into_iter().map(RegionSource::Image).collect()
    } else {
        let (texts, origin) = if region_texts.is_empty() {
            (std::mem::take(&mut params.regions), "rapilog.region=")
        } else {
            (region_texts, "--region")
        };
        texts
            .iter()
            .map(|text| {
                Ok(RegionSource::Memory {
                    mem: mem.clone(),
                    spec: parse_region(text, origin)?,
                    access,
                })
            })
            .collect::<Result<_, Failure>>()?
    };
    let (disk_texts, disk_origin) = if disk_texts.is_empty() {
        (std::mem::take(&mut params.disks), "rapilog.disk=")
    } else {
        (disk_texts, "--disk-id")
    };
    let mut disk_ids: Vec<Option<DiskId>> = disk_texts
        .iter()
        .map(|t| {
            if t.is_empty() {
                Ok(None)
            } else {
                parse_disk(t, disk_origin).map(Some)
            }
        })
        .collect::<Result<_, Failure>>()?;
    if sources.len() == 1 && disk_ids.len() > 1 {
        // One region: the last rapilog.disk= wins, as it always has (a
        // CRASH_APPEND="rapilog.disk=..." in rapilog.conf repeats the one
        // rapilog-arm already put there).
        disk_ids.drain(..disk_ids.len() - 1);
    }
    if !disk_ids.is_empty() && !sources.is_empty() && disk_ids.len() != sources.len() {
        let region_origin = if from_cmdline {
            "rapilog.region="
        } else {
            "regions (--region/--image)"
        };
        return Err(usage(format!(
            "{} {disk_origin} for {} {region_origin}: the k-th {disk_origin} belongs to the k-th \
             region, so give one per region in the same order (an empty one for a region \
             without), or none",
            disk_ids.len(),
            sources.len(),
        )));
    }
    if target_path.is_some() && sources.len() > 1 {
        return Err(usage(
            "--target names one disk, but several regions are configured: \
             without --target each region's disk is found by its identity",
        ));
    }
    let regions = sources
        .into_iter()
        .enumerate()
        .map(|(k, source)| RegionConfig {
            source,
            disk_id: disk_ids.get(k).copied().flatten(),
        })
        .collect();
    let default_wait = if from_cmdline { 30 } else { 0 };
    let target = match target_path {
        Some(path) => TargetSelect::Path {
            path,
            file_block_bytes: block_bytes,
        },
        None => TargetSelect::ByIdentity {
            sysfs: sysfs.clone(),
            allow_files: dev_dir.is_some(),
            dev_dir: dev_dir.unwrap_or_else(|| "/dev".into()),
            wait: Duration::from_secs(wait.or(params.wait_secs).unwrap_or(default_wait)),
        },
    };
    Ok(Config {
        action,
        regions,
        target,
        sysfs,
        dry_run: dry_run.or(params.dry_run).unwrap_or(false),
        reboot: reboot.or(params.reboot),
        force,
        from_cmdline,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn parse_with(list: &[&str], cmdline: &str) -> Result<Config, Failure> {
        let cmdline = cmdline.to_string();
        parse_args(&args(list), &mut |_| Ok(cmdline.clone()))
    }

    #[test]
    fn crash_kernel_configuration() {
        let c = parse_with(
            &[],
            "console=ttyS0 reset_devices rapilog.region=64M@0x60000000 rapilog.disk=serial:rl-log\n",
        )
        .unwrap();
        assert!(c.from_cmdline && !c.dry_run && !c.force);
        assert!(c.reboot_wanted(true) && !c.reboot_wanted(false));
        assert_eq!(
            c.regions,
            [RegionConfig {
                source: RegionSource::Memory {
                    mem: "/dev/mem".into(),
                    spec: RegionSpec {
                        size: 64 << 20,
                        phys: 0x6000_0000
                    },
                    access: MemAccess::Map
                },
                disk_id: DiskId::new(b"serial:rl-log"),
            }]
        );
        assert_eq!(
            c.target,
            TargetSelect::ByIdentity {
                sysfs: "/sys".into(),
                dev_dir: "/dev".into(),
                allow_files: false,
                wait: Duration::from_secs(30)
            }
        );
        // Flags override the command line.
        let c = parse_with(
            &["--no-reboot", "--dry-run", "--wait=2"],
            "rapilog.region=64M@0x60000000 rapilog.reboot=1 rapilog.wait=9",
        )
        .unwrap();
        assert!(!c.reboot_wanted(true) && c.dry_run);
        assert!(
            matches!(c.target, TargetSelect::ByIdentity { wait, .. } if wait == Duration::from_secs(2))
        );
        let c = parse_with(
            &[],
            "rapilog.region=4K@0x1000 rapilog.reboot=0 rapilog.dry_run=1",
        )
        .unwrap();
        assert!(!c.reboot_wanted(true) && c.dry_run && c.regions[0].disk_id.is_none());
        let c = parse_with(&[], "rapilog.region=4K@0x1000 rapilog.reboot=1").unwrap();
        assert!(c.reboot_wanted(false));
    }

    fn specs(c: &Config) -> Vec<(String, Option<DiskId>)> {
        c.regions
            .iter()
            .map(|r| (r.describe(), r.disk_id))
            .collect()
    }

    #[test]
    fn several_regions_pair_with_their_disks_in_order() {
        let c = parse_with(
            &[],
            "console=ttyS0 rapilog.region=64M@0x60000000 rapilog.disk=serial:a \
             rapilog.region=32M@0x64000000 rapilog.disk= \
             rapilog.region=16M@0x66000000 rapilog.disk=serial:c rapilog.wait=5",
        )
        .unwrap();
        assert_eq!(
            specs(&c),
            [
                ("64M@0x60000000".into(), DiskId::new(b"serial:a")),
                ("32M@0x64000000".into(), None),
                ("16M@0x66000000".into(), DiskId::new(b"serial:c")),
            ]
        );
        assert!(c.from_cmdline && c.reboot_wanted(true));
        // The pairing is by order, whatever the interleaving.
        let c = parse_with(
            &[],
            "rapilog.region=64M@0x60000000 rapilog.region=32M@0x64000000 \
             rapilog.disk=serial:a rapilog.disk=serial:b",
        )
        .unwrap();
        assert_eq!(c.regions[1].disk_id, DiskId::new(b"serial:b"));
        // Without disks, each region's own identity is looked for.
        let c = parse_with(
            &[],
            "rapilog.region=64M@0x60000000 rapilog.region=32M@0x64000000",
        )
        .unwrap();
        assert_eq!(c.regions.len(), 2);
        assert!(c.regions.iter().all(|r| r.disk_id.is_none()));
        // Flags: repeated --region / --image and --disk-id.
        let c = parse_with(
            &[
                "--region",
                "64M@0x60000000",
                "--disk-id",
                "serial:a",
                "--region=8M@0x70000000",
                "--disk-id=serial:b",
            ],
            "",
        )
        .unwrap();
        assert_eq!(
            specs(&c),
            [
                ("64M@0x60000000".into(), DiskId::new(b"serial:a")),
                ("8M@0x70000000".into(), DiskId::new(b"serial:b")),
            ]
        );
        // One region: the last disk wins, as it always has.
        let c = parse_with(
            &[],
            "rapilog.region=64M@0x60000000 rapilog.disk=serial:a rapilog.disk=serial:b",
        )
        .unwrap();
        assert_eq!(
            specs(&c),
            [("64M@0x60000000".into(), DiskId::new(b"serial:b"))]
        );
        let c = parse_with(&["--image", "a.img", "--image", "b.img"], "").unwrap();
        assert_eq!(specs(&c), [("a.img".into(), None), ("b.img".into(), None)]);
    }

    #[test]
    fn a_disk_count_that_does_not_match_the_regions_is_refused() {
        for (list, cmdline, needle) in [
            (
                &[][..],
                "rapilog.region=64M@0x60000000 rapilog.region=32M@0x64000000 rapilog.disk=serial:a",
                "1 rapilog.disk= for 2 rapilog.region=: the k-th rapilog.disk= belongs to the k-th region",
            ),
            (
                &[],
                "rapilog.region=64M@0x60000000 rapilog.region=32M@0x64000000 \
                 rapilog.disk=serial:a rapilog.disk=serial:b rapilog.disk=serial:c",
                "3 rapilog.disk= for 2 rapilog.region=",
            ),
            (
                &["--disk-id", "serial:a"],
                "rapilog.region=64M@0x60000000 rapilog.region=32M@0x64000000",
                "1 --disk-id for 2 rapilog.region=",
            ),
            (
                &["--image", "a", "--image", "b", "--disk-id", "serial:a"],
                "",
                "1 --disk-id for 2 regions (--region/--image)",
            ),
            (
                &["--image", "a", "--image", "b", "--target", "d"],
                "",
                "--target names one disk",
            ),
            (
                &[],
                "rapilog.region=64M@0x60000000 rapilog.region=32M",
                "rapilog.region= \"32M\": expected SIZE@PHYS",
            ),
        ] {
            let e = parse_with(list, cmdline).unwrap_err();
            assert_eq!(e.kind, FailureKind::Usage);
            assert!(
                e.message.contains(needle),
                "{list:?} {cmdline:?}: {}",
                e.message
            );
        }
    }

    #[test]
    fn command_line_errors_are_usage_failures() {
        for (list, cmdline, needle) in [
            (&[][..], "quiet", "no rapilog.region"),
            (&[], "rapilog.region=64Q@0x1000", "SIZE must be a number"),
            (
                &[],
                "rapilog.region=4K@0x1000 rapilog.disk=a\\q",
                "bad escape",
            ),
            (
                &[],
                "rapilog.region=4K@0x1000 rapilog.reboot=sometimes",
                "rapilog.reboot",
            ),
            (&["--bogus"], "", "unknown argument"),
            (&["--region"], "", "needs a value"),
            (&["--region", "64M@0x1000", "--image", "x"], "", "exclude"),
            (
                &["--image", "x", "--block-bytes", "1000"],
                "",
                "power of two",
            ),
            (&["--image", "x", "--wait", "soon"], "", "seconds"),
        ] {
            let e = parse_with(list, cmdline).unwrap_err();
            assert_eq!(e.kind, FailureKind::Usage);
            assert!(
                e.message.contains(needle),
                "{list:?} {cmdline:?}: {}",
                e.message
            );
        }
        let e = parse_args(&[], &mut |_| Err(std::io::Error::other("gone"))).unwrap_err();
        assert!(
            e.message.contains("cannot read /proc/cmdline"),
            "{}",
            e.message
        );
    }

    #[test]
    fn explicit_configuration_ignores_the_kernel_command_line() {
        let c = parse_args(
            &args(&[
                "--image",
                "r.img",
                "--target",
                "d.img",
                "--block-bytes",
                "4096",
                "--disk-id",
                "wwid:a\\x20b",
            ]),
            &mut |_| panic!("kernel command line read"),
        )
        .unwrap();
        assert!(!c.from_cmdline && !c.reboot_wanted(true));
        assert_eq!(c.regions[0].source, RegionSource::Image("r.img".into()));
        assert_eq!(
            c.target,
            TargetSelect::Path {
                path: "d.img".into(),
                file_block_bytes: 4096
            }
        );
        assert_eq!(c.regions[0].disk_id, DiskId::new(b"wwid:a b"));
        let c = parse_args(
            &args(&[
                "--region=8K@0x2000",
                "--mem",
                "/tmp/m",
                "--read",
                "--reboot",
                "--dev-dir",
                "/tmp/d",
            ]),
            &mut |_| panic!("kernel command line read"),
        )
        .unwrap();
        assert!(c.reboot_wanted(false));
        assert!(matches!(
            c.regions[..],
            [RegionConfig {
                source: RegionSource::Memory {
                    access: MemAccess::Read,
                    ..
                },
                ..
            }]
        ));
        assert!(
            matches!(c.target, TargetSelect::ByIdentity { allow_files: true, wait, .. } if wait.is_zero())
        );
        let c = parse_args(&args(&["--list-disks"]), &mut |_| panic!("read")).unwrap();
        assert_eq!(c.action, Action::ListDisks);
    }
}
