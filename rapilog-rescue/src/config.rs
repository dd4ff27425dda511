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

/// A complete configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// What to do.
    pub action: Action,
    /// The region (unset only for actions other than replay).
    pub region: Option<RegionSource>,
    /// The disk the region must name, if configured.
    pub disk_id: Option<DiskId>,
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
Replays the rapilog region onto its log disk, found by identity.

Without --region/--image the kernel command line configures the run:
  rapilog.region=SIZE@PHYS  rapilog.disk=ID  rapilog.dry_run=0|1
  rapilog.reboot=0|1 (default 1 in a crash kernel)  rapilog.wait=SECONDS (30)

  --region SIZE@PHYS   the region in physical memory (e.g. 64M@0x60000000)
  --image FILE         read the region from an image file instead
  --disk-id ID         the disk the region must name (text form, \\xHH escapes)
  --mem PATH           memory device (default /dev/mem)
  --read               read(2) the region instead of mapping it
  --target DEV         write to DEV whatever its identity (size and block
                       size are still checked)
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
writes that neither this region nor the disk has (marker left as it is)";

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
    let mut region_text: Option<String> = None;
    let mut image: Option<PathBuf> = None;
    let mut disk_text: Option<String> = None;
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
            "--region" => region_text = Some(value(flag)?),
            "--image" => image = Some(value(flag)?.into()),
            "--disk-id" => disk_text = Some(value(flag)?),
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

    let from_cmdline = action == Action::Replay && region_text.is_none() && image.is_none();
    let mut params = RescueParams::default();
    if from_cmdline {
        let path = cmdline_path.as_deref().unwrap_or("/proc/cmdline");
        let text = read_cmdline(path).map_err(|e| usage(format!("cannot read {path}: {e}")))?;
        params = RescueParams::parse(&text).map_err(|e| usage(e.to_string()))?;
        if params.region.is_none() {
            return Err(usage(format!(
                "no rapilog.region=SIZE@PHYS on the kernel command line ({path}) and no --region"
            )));
        }
    } else if region_text.is_some() && image.is_some() {
        return Err(usage("--region and --image exclude each other"));
    }

    let region = if action != Action::Replay {
        None
    } else if let Some(image) = image {
        Some(RegionSource::Image(image))
    } else {
        let (text, origin) = match (&region_text, &params.region) {
            (Some(t), _) => (t.clone(), "--region"),
            (None, Some(t)) => (t.clone(), "rapilog.region="),
            (None, None) => unreachable!("checked above"),
        };
        Some(RegionSource::Memory {
            mem,
            spec: parse_region(&text, origin)?,
            access,
        })
    };
    let disk_id = match (&disk_text, &params.disk) {
        (Some(t), _) => Some(parse_disk(t, "--disk-id")?),
        (None, Some(t)) => Some(parse_disk(t, "rapilog.disk=")?),
        (None, None) => None,
    };
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
        region,
        disk_id,
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
            c.region,
            Some(RegionSource::Memory {
                mem: "/dev/mem".into(),
                spec: RegionSpec {
                    size: 64 << 20,
                    phys: 0x6000_0000
                },
                access: MemAccess::Map
            })
        );
        assert_eq!(c.disk_id, DiskId::new(b"serial:rl-log"));
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
        assert!(!c.reboot_wanted(true) && c.dry_run && c.disk_id.is_none());
        let c = parse_with(&[], "rapilog.region=4K@0x1000 rapilog.reboot=1").unwrap();
        assert!(c.reboot_wanted(false));
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
        assert_eq!(c.region, Some(RegionSource::Image("r.img".into())));
        assert_eq!(
            c.target,
            TargetSelect::Path {
                path: "d.img".into(),
                file_block_bytes: 4096
            }
        );
        assert_eq!(c.disk_id, DiskId::new(b"wwid:a b"));
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
            c.region,
            Some(RegionSource::Memory {
                access: MemAccess::Read,
                ..
            })
        ));
        assert!(
            matches!(c.target, TargetSelect::ByIdentity { allow_files: true, wait, .. } if wait.is_zero())
        );
        let c = parse_args(&args(&["--list-disks"]), &mut |_| panic!("read")).unwrap();
        assert_eq!(c.action, Action::ListDisks);
    }
}
