// SPDX-License-Identifier: GPL-2.0

//! `rapilogctl`: see `--help`, README.md and the library docs.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use rapilogctl::{arm, grub, inspect, live, marker, plan, replay, status, Code, Error, EXIT_CODES};

const ABOUT: &str = "Inspect and operate rapilog: the write-back log buffer in crash-safe memory";

const LONG_ABOUT: &str = "\
Inspect and operate rapilog: a block driver that completes log writes from a
reserved, crash-surviving physical memory region and writes the log disk in
the background; after a panic a kexec crash kernel replays the region.

Offline commands work on any machine: `inspect` decodes a region image (from
`dump`, or a crashed machine's memory), `replay` writes an image's records
onto the log disk with the rescue program's own code, `marker` shows (and
after a possible loss clears) the log disk's loss marker, `plan` computes
the boot parameters. Live commands (`status`, `flush`, `dump`, `inspect --live`,
`fence`, `skip-bad-record`) talk to the loaded driver through its control device
/dev/rapilog-ctl: exit 7 if the module is not loaded, 8 if the control
device is missing or of another version.

Read commands take --json: one JSON document on stdout whose `schema` and
`schema_version` fields name its format (userspace-ctl/README.md). Errors go
to stderr as one line `rapilogctl: error: ...`; with --json, stdout also gets
{\"schema\": \"rapilogctl.error\", \"schema_version\": 1, \"exit_code\": N, \"error\": \"...\"}.";

#[derive(Parser, Debug)]
#[command(name = "rapilogctl", version, about = ABOUT, long_about = LONG_ABOUT, after_help = EXIT_CODES)]
pub(crate) struct Cli {
    /// sysfs mount point (for tests and chroots)
    #[arg(long, global = true, default_value = "/sys", hide = true)]
    sysfs: PathBuf,
    /// The driver's control device (for tests)
    #[arg(long, global = true, default_value = live::DEFAULT_CONTROL, hide = true)]
    control: PathBuf,
    /// The rapilog device a live command acts on, N or rapilogN (the same as the DEV argument)
    #[arg(long, global = true, value_name = "N|rapilogN")]
    device: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug, Clone, Copy)]
struct JsonFlag {
    /// Print one JSON document on stdout (schema in userspace-ctl/README.md)
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Live state of a rapilog device, with a one-line verdict (PROTECTED, DEGRADED, AT RISK, POSSIBLE LOSS)
    #[command(long_about = "\
Live state of a rapilog device, read from its control device
/dev/rapilog-ctl (any user who can open it; the driver fills a versioned
status block): a one-line verdict, then backing disk, region address and
size, protection mode, used and dirty bytes, records, head and tail, durable
tail, writeback (bytes, writes, average size, bandwidth while busy, rate
since load), flushes absorbed, throttled writes, errors, IOMMU fence with
the unfenced PCI devices, power-fail path (signals, hold-up, dirty bound),
crash kernel armed or not (/sys/kernel/kexec_crash_loaded), the log disk's
loss marker, last replay.

Verdict, worst first:
  POSSIBLE LOSS  the module went live over a possible loss of acknowledged
             writes that an administrator accepted (accept_loss=1): the
             disk's marker said a region held writes that the region no
             longer had; the line gives the reason
  AT RISK    the crash kernel is not armed, the power-fail drain failed, or
             writeback holds at a bad record (it failed its checksum in the
             region: never written, the ring fills behind it; the line names
             it): a likely event loses acknowledged writes
  DEGRADED   safe from a panic, but a protection is missing or the disk is
             in trouble: IOMMU fence unfenced or unchecked, write protection
             off, writeback retrying disk errors, failed writes, power-fail
             path off, records that failed writeback's check since load
  PROTECTED  none of the above
Colour only when stdout is a terminal and NO_COLOR is not set.

Exit: 0 status shown (whatever the verdict: see --json's verdict.level),
7 module not loaded or no such DEV, 8 control device missing or of another
version, 77 cannot open the control device.")]
    Status {
        /// The rapilog device (default: every device, then the overall verdict)
        dev: Option<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// The rapilog devices the module runs: name, region, log disk, verdict
    #[command(long_about = "\
The rapilog devices the loaded module runs (/dev/rapilog0 to /dev/rapilog7),
one line each: name, region, log disk and the verdict `status` gives it.

Exit: 0 listed, 7 module not loaded, 8 control device missing or of another
version, 77 cannot open the control device or read a status (root).")]
    List {
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Create a rapilog device at run time: region, log disk, identity
    #[command(long_about = "\
Create a rapilog device while the module runs: the lowest free name
(/dev/rapilog0 to /dev/rapilog7) over a reserved region and a log disk,
with the parameters the module takes for one device (every other parameter
is the module's). As at load: the region must be reserved (memmap=) and
not overlap another device's, the disk must be no other device's, and a
region that holds another disk's records is refused (the module replays a
region of this disk's first). A refusal is one kernel-log line
(`dmesg | grep rapilog`).

Exit: 0 created (the line names the device), 1 refused, 2 bad arguments,
7 module not loaded, 8 control device without the create ioctl, 77 needs
root (CAP_SYS_ADMIN).")]
    Create {
        /// The reserved region, SIZE@PHYS (as reserved with memmap=SIZE$PHYS)
        #[arg(long, value_name = "SIZE@PHYS")]
        region: String,
        /// The log disk, preferably a stable /dev/disk/by-id/ path
        #[arg(long, value_name = "PATH")]
        backing: String,
        /// The log disk's identity recorded in the region (default: what the disk reports)
        #[arg(long, value_name = "ID")]
        disk_id: Option<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Drain a rapilog device to its log disk and remove it
    #[command(long_about = "\
Remove a rapilog device while the module runs: every acknowledged write is
drained to its log disk first (as at unload; a bad record writeback holds
at stays in the region, not marked clean, for the next load to replay past
it), then the device goes. Refused while the device is open (mounted, or
held by a program) unless --force: then it is drained and removed all the
same, and I/O through the open device fails afterwards.

Exit: 0 removed, 1 refused (open), 7 module not loaded or no such DEV,
8 control device without the remove ioctl, 77 needs root (CAP_SYS_ADMIN).")]
    Remove {
        /// The rapilog device (rapilogN, /dev/rapilogN or N)
        dev: Option<String>,
        /// Remove it even while it is open
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Decode a region: superblock copies, every record of the live window, replay decisions
    #[command(long_about = "\
Decode a region with the shared format crate: both superblock copies
(generation, checksum, which is current), geometry, disk identity, epoch,
state, durable tail and head hint, the last replay report; then every
non-empty slot of the live window (seq, slot, sector, length, descriptor and
payload checksum, the replay decision and the reason for a skip), and a
summary.

The decision is the replay planner's own: `apply` exactly when a replay
would write the record. Read-only: nothing is written anywhere.

Exit: 0 decoded, 1 damaged records (acknowledged data may be lost), 2 bad
arguments or unreadable file, 3 not a rapilog region or unknown version,
77 /dev/mem (or --live) needs root; --live: 7 module not loaded, 8 control
device missing or of another version.

--live reads the region through the driver's control device (root): a
snapshot taken while writes go on may show a record being copied in as
torn; its checksum tells, as it would in a crash.")]
    Inspect {
        /// Region image file (from `rapilogctl dump`, or a copy of a crashed machine's region)
        #[arg(long, value_name = "FILE", group = "source")]
        image: Option<PathBuf>,
        /// Physical region through /dev/mem: ADDR,SIZE (e.g. 0x60000000,64M; root)
        #[arg(long, value_name = "ADDR,SIZE", group = "source")]
        mem: Option<String>,
        /// The live device's region, read through /dev/rapilog-ctl (root)
        #[arg(long, group = "source")]
        live: bool,
        /// The rapilog device for --live (default: rapilog0)
        #[arg(requires = "live")]
        dev: Option<String>,
        /// Memory device for --mem
        #[arg(long, value_name = "PATH", default_value = "/dev/mem", hide = true)]
        mem_device: PathBuf,
        /// List empty slots too
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Write back everything written so far to the log disk and wait, with progress
    #[command(long_about = "\
Write back every record written before the call to the log disk, make it
durable there (disk flush, durable tail advanced), and wait: the driver's
drain ioctl, while the status is polled every 100 ms for a progress bar on
stderr (only when it is a terminal). Then one line: bytes written back,
disk writes, time, throughput, dirty bytes before and after.

Ctrl-C (or SIGTERM) stops the wait: exit 130; nothing is lost, the data
stays in the protected region and writeback goes on in the background.

A record that fails writeback's check (its checksum in the region) is never
written: flush then writes every other record, and fails (exit 1) naming
the bad record, which writeback holds at (see `skip-bad-record`).

Exit: 0 flushed, 1 failed, 7 module not loaded or no such DEV, 8 control
device missing or of another version, 77 needs root (CAP_SYS_ADMIN),
130 interrupted.")]
    Flush {
        /// The rapilog device (default: rapilog0)
        dev: Option<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Drop the bad record writeback holds at (it failed its checksum in the region), so writeback continues
    #[command(long_about = "\
Writeback checks every record against its checksums before writing it.
One that fails (a bit flip or a stray DMA in the region) is never written:
writeback holds at it, keeps it in the region (save it with `rapilogctl
dump`, decode it with `inspect --live`), fails reads of its sectors with
EIO, and the ring fills behind it until writers wait. `rapilogctl status`
names it (AT RISK) with its sequence number.

skip-bad-record SEQ drops that record: it is never written, and its sectors
keep what the log disk and newer records hold (an older version of the
data, or whatever the disk had), which is the administrator's decision to
make: the acknowledged data of that write is lost. Writeback then continues.
SEQ must be the held record's sequence number (as `status` shows it), so a
stale or mistyped request cannot drop another record; refused (exit 1)
when no bad record is held. If more bad records wait behind it, the next
one is held and named.

Exit: 0 skipped, 1 refused (no bad record held, or SEQ is not the held
one), 7 module not loaded or no such DEV, 8 control device missing or of
another version, 77 needs root (CAP_SYS_ADMIN).")]
    SkipBadRecord {
        /// Sequence number of the held bad record (`rapilogctl status`)
        seq: u64,
        /// The rapilog device (default: rapilog0)
        dev: Option<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Replay a region image onto its log disk (the rescue program's code path)
    #[command(long_about = "\
Replay a region image onto its log disk, offline: the replay engine the
crash kernel's rapilog-rescue runs too (the rapilog-replay library),
recording `tool` as the replayer in the region's report. Prints the same
report as rapilog-rescue.

The disk must be the region's: a block device must carry the region's disk
id (as `rapilog-rescue --list-disks` shows it); a regular file (a disk
image) has no identity, so --disk-id says which disk it is a copy of. Size
and logical block size must match too. A refusal writes nothing (exit 4).

--dry-run opens the image and the disk read-only and writes nothing.
Progress goes to stderr when it is a terminal.

Exit: 0 replayed (or nothing to do), 1 damaged records skipped, 2 bad
arguments, 3 not a rapilog region, 4 not the region's disk, 5 disk write or
flush failed, 6 report not recorded in the image, 77 needs root.")]
    Replay {
        /// The region image (read-write unless --dry-run: the report is recorded in it)
        #[arg(long, value_name = "FILE")]
        image: PathBuf,
        /// The log disk: a block device, or a disk image file
        #[arg(long, value_name = "DEV")]
        disk: PathBuf,
        /// The disk's identity (needed for an image file; checked for a device), e.g. serial:rl-log
        #[arg(long, value_name = "ID")]
        disk_id: Option<String>,
        /// Logical block size of a disk image file (default: the region's)
        #[arg(long, value_name = "BYTES")]
        block_bytes: Option<u32>,
        /// Verify and report; write nothing
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Show the log disk's loss marker (--clear: mark it clean after a possible loss)
    #[command(long_about = "\
Show the loss marker at the end of a log disk (a block device or a disk
image): the last max(4096, block size) bytes, which /dev/rapilog0 never
shows. `live` means a region may hold acknowledged writes that are not on
the disk: rapilog.ko writes it before the device goes live, and `clean`
after a clean drain; rapilog-rescue and `rapilogctl replay` write `clean`
after replaying. rapilog.ko refuses to load over a live marker whose region
is gone (memory wiped at boot, a cold boot, another machine) or a damaged
one, unless accept_loss=1: acknowledged writes may have been lost.

--clear, once the possible loss is dealt with (the database checked or
restored), writes the marker `clean` (writer tool, generation + 1), flushes
and reads it back. It refuses a busy block device (mounted, or held by
rapilog.ko or another driver), and writes nothing to a disk without a
marker or with a clean one. Reading needs no exclusive access.

Exit: 0 shown (or cleared, or nothing to clear), 1 reading or writing
failed, 2 bad arguments, 4 cannot open DISK or it is busy, 9 the marker is
damaged (not cleared), 77 needs root.")]
    Marker {
        /// The log disk: a block device, or an image file of one
        disk: PathBuf,
        /// Logical block size of an image file (default 512)
        #[arg(long, value_name = "BYTES")]
        block_bytes: Option<u32>,
        /// Write the marker clean (after dealing with a possible loss)
        #[arg(long)]
        clear: bool,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Save the live region to a file (for support and `inspect --image`)
    #[command(long_about = "\
Save the live region of a rapilog device to FILE (its whole size, as the
status says), read through the driver's control device, for support and for
`rapilogctl inspect --image FILE`. Prints the bytes written and the file's
SHA-256 (as `sha256sum FILE` prints it). Progress on stderr when it is a
terminal. FILE must not exist unless --force; a partial FILE is removed on
failure. Records being copied in during the read may be torn in the dump;
their checksums tell.

With the module not loaded, root can copy a region with
`rapilogctl inspect --mem ADDR,SIZE` or dd from /dev/mem.

Exit: 0 dumped, 1 read or write failed, 2 FILE exists (no --force) or
cannot be created, 7 module not loaded or no such DEV, 8 control device
missing or of another version, 77 needs root (CAP_SYS_ADMIN).")]
    Dump {
        /// Output file
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Overwrite FILE if it exists
        #[arg(long)]
        force: bool,
        /// The rapilog device (default: rapilog0)
        dev: Option<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Show the IOMMU fence: which PCI devices can DMA into the region (--check: check again)
    #[command(long_about = "\
Show the driver's IOMMU fence: whether an IOMMU translates (or blocks) the
DMA of every PCI device, so that no device can write into the region, and
which devices are unfenced. The driver checks at load (iommu_fence=warn
loads anyway with a warning, iommu_fence=require refuses); --check makes it
check again now (root; e.g. after a hot-plug), and logs the result in the
kernel log too.

Exit: 0 fenced, 1 unfenced or not checked, 7 module not loaded or no such
DEV, 8 control device missing or of another version, 77 --check needs root.")]
    Fence {
        /// The rapilog device (default: rapilog0)
        dev: Option<String>,
        /// Check again now (IOCTL_CHECK_FENCE; root)
        #[arg(long)]
        check: bool,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Print the boot parameters (memmap=, crashkernel=) and region size for this machine
    #[command(long_about = "\
Read this machine's memory map (/proc/iomem), kernel command line (existing
memmap= and crashkernel=), RAM size and block devices, and print the boot
parameters to add, in kernel command line and /etc/default/grub form, the
module's region= parameter, and the reasoning.

Region size: half of the power supply's hold-up window (--hold-up-ms,
default 50) is budgeted for draining dirty data; the region's ring holds at
most what the log disk writes in that time. The bandwidth is --bandwidth, or
measured with --disk DEV --measure: with --scratch FILE by writing up to
64 MiB with O_DIRECT to FILE (created, must not exist, then removed), else by
reading DEV with O_DIRECT (read-only) and halving the read bandwidth. No
disk is ever written without --scratch. Default: 100 MB/s, assumed.

--apply writes memmap=, crashkernel= and panic= to /etc/default/grub.d/rapilog.cfg
(under --root DIR), --grub-dropin PATH to PATH: a drop-in that extends
GRUB_CMDLINE_LINUX_DEFAULT, with `$` escaped for the shell and for GRUB
(memmap=64M\\\\\\$0x... in the file, memmap=64M\\$0x... in grub.cfg). Rewritten
only if it changes; then run update-grub and reboot.

Exit: 0 planned, 1 no room in RAM or a measurement failed, 2 bad arguments
or unreadable input, 77 needs root (/proc/iomem hides addresses otherwise).")]
    Plan {
        /// Power supply hold-up window, milliseconds
        #[arg(long, value_name = "MS", default_value_t = 50)]
        hold_up_ms: u64,
        /// Log disk write bandwidth, MB/s (10^6 bytes), instead of measuring
        /// (with several devices: the slowest log disk's)
        #[arg(long, value_name = "MB_PER_S")]
        bandwidth: Option<f64>,
        /// Plan this many devices (/dev/rapilog0..N-1; 1 to 8), sharing the
        /// power-fail budget, their regions slices of one memmap= range
        /// (default: one per --backing, else 1)
        #[arg(long, value_name = "N")]
        devices: Option<u32>,
        /// A log disk, for the rapilog.conf lines; repeat, in device order
        #[arg(long, value_name = "PATH")]
        backing: Vec<String>,
        /// The log disk (for --measure)
        #[arg(long, value_name = "DEV")]
        disk: Option<PathBuf>,
        /// Measure the log disk's bandwidth (read-only unless --scratch)
        #[arg(long, requires = "disk")]
        measure: bool,
        /// Measure writes with O_DIRECT to this new file (on the log disk's kind of storage)
        #[arg(long, value_name = "FILE", requires = "measure")]
        scratch: Option<PathBuf>,
        /// Memory map to read
        #[arg(long, value_name = "FILE", default_value = "/proc/iomem")]
        iomem: PathBuf,
        /// Kernel command line to read
        #[arg(long, value_name = "FILE", default_value = "/proc/cmdline")]
        cmdline: PathBuf,
        /// meminfo to read
        #[arg(long, value_name = "FILE", default_value = "/proc/meminfo")]
        meminfo: PathBuf,
        /// Write the boot parameters to /etc/default/grub.d/rapilog.cfg (then update-grub)
        #[arg(long, conflicts_with = "grub_dropin")]
        apply: bool,
        /// The root directory --apply writes under
        #[arg(long, value_name = "DIR", default_value = "/", requires = "apply")]
        root: PathBuf,
        /// Write the boot parameters as a GRUB drop-in to PATH
        #[arg(long, value_name = "PATH")]
        grub_dropin: Option<PathBuf>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Load the crash kernel (runs `rapilog-arm arm`, as the systemd unit does)
    #[command(long_about = "\
Load the kexec crash kernel that replays the region if Linux panics, by
running `rapilog-arm arm`: the same script, hence the same `kexec -p`
arguments, as rapilog-crash.service. --print shows the kexec command
(`rapilog-arm command`) and runs nothing.

Exit: 0 armed, 1 failed (the script's message says why), 2 script missing or
bad configuration, 77 needs root.")]
    Arm {
        #[command(flatten)]
        script: ArmScript,
        /// Print the kexec command only (`rapilog-arm command`); needs no root
        #[arg(long)]
        print: bool,
    },
    /// Unload the crash kernel (runs `rapilog-arm disarm`)
    #[command(long_about = "\
Unload the kexec crash kernel by running `rapilog-arm disarm` (kexec -p -u).
While disarmed, a panic is answered by the module's replay at the next warm
boot only.

Exit: 0 disarmed, 1 failed, 2 script missing or bad configuration, 77 needs root.")]
    Disarm {
        #[command(flatten)]
        script: ArmScript,
    },
}

#[derive(Args, Debug)]
struct ArmScript {
    /// The rapilog-arm script
    #[arg(long, value_name = "PATH", default_value = arm::DEFAULT_SCRIPT)]
    arm_script: PathBuf,
    /// Its configuration (default: the script's, /etc/rapilog/rapilog.conf)
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

fn print_json<T: serde::Serialize>(value: &T) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer_pretty(&mut out, value);
    let _ = writeln!(out);
}

fn run(cli: Cli) -> Result<Code, (Error, bool)> {
    let sysfs = cli.sysfs;
    let device = cli.device;
    let target = |command: &'static str, dev: Option<String>| live::Target {
        command,
        sysfs: sysfs.clone(),
        control: cli.control.clone(),
        dev: dev
            .or_else(|| device.clone())
            .map(|d| live::normalize_device(&d)),
    };
    let color = || {
        status::use_color(
            std::io::stdout().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
        )
    };
    match cli.command {
        Command::Status { dev, json } => {
            let target = target("status", dev);
            if target.dev.is_some() {
                let report = live::status(&target).map_err(|e| (e, json.json))?;
                if json.json {
                    print_json(&report);
                } else {
                    print!("{}", status::render(&report, color()));
                }
                return Ok(Code::Ok);
            }
            let reports = live::status_all(&target).map_err(|e| (e, json.json))?;
            let Some(all) = status::all_report(reports) else {
                return Err((
                    Error::new(
                        Code::NoDevice,
                        "status: the rapilog module runs no device (see `rapilogctl create`)",
                    ),
                    json.json,
                ));
            };
            if json.json {
                print_json(&all);
            } else {
                print!("{}", status::render_all(&all, color()));
            }
            Ok(Code::Ok)
        }
        Command::Create {
            region,
            backing,
            disk_id,
            json,
        } => {
            let done = live::create(
                &target("create", None),
                &region,
                &backing,
                disk_id.as_deref(),
            )
            .map_err(|e| (e, json.json))?;
            if json.json {
                print_json(&done);
            } else {
                println!("rapilogctl: {}", done.line());
            }
            Ok(Code::Ok)
        }
        Command::Remove { dev, force, json } => {
            let target = target("remove", dev);
            if target.dev.is_none() {
                return Err((
                    Error::new(
                        Code::Usage,
                        "remove: name the device (rapilogctl remove rapilogN)",
                    ),
                    json.json,
                ));
            }
            let done = live::remove(&target, force).map_err(|e| (e, json.json))?;
            if json.json {
                print_json(&done);
            } else {
                println!("rapilogctl: {}", done.line());
            }
            Ok(Code::Ok)
        }
        Command::List { json } => {
            let reports = live::status_all(&target("list", None)).map_err(|e| (e, json.json))?;
            if json.json {
                print_json(&status::list_json(&reports));
            } else {
                print!("{}", status::render_list(&reports));
            }
            Ok(Code::Ok)
        }
        Command::Flush { dev, json } => {
            let done = live::flush(&target("flush", dev), live::progress_wanted())
                .map_err(|e| (e, json.json))?;
            if json.json {
                print_json(&done);
            } else {
                println!("rapilogctl: {}", done.line());
            }
            Ok(Code::Ok)
        }
        Command::SkipBadRecord { seq, dev, json } => {
            let done = live::skip_bad_record(&target("skip-bad-record", dev), seq)
                .map_err(|e| (e, json.json))?;
            if json.json {
                print_json(&done);
            } else {
                for line in done.lines().lines() {
                    println!("rapilogctl: {line}");
                }
            }
            Ok(Code::Ok)
        }
        Command::Dump {
            dev,
            out,
            force,
            json,
        } => {
            let done = live::dump(&target("dump", dev), &out, force, live::progress_wanted())
                .map_err(|e| (e, json.json))?;
            if json.json {
                print_json(&done);
            } else {
                print!("{}", done.lines());
            }
            Ok(Code::Ok)
        }
        Command::Fence { dev, check, json } => {
            let fence = live::fence(&target("fence", dev), check).map_err(|e| (e, json.json))?;
            if json.json {
                print_json(&fence);
            } else {
                print!("{}", fence.lines());
            }
            Ok(fence.code())
        }
        Command::Inspect {
            image,
            mem,
            live: is_live,
            dev,
            mem_device,
            all,
            json,
        } => {
            let j = json.json;
            let source = match (image, mem) {
                (Some(path), _) => inspect::Source::Image(path),
                (None, Some(text)) => {
                    let spec = inspect::parse_mem(&text)
                        .map_err(|e| (Error::new(Code::Usage, format!("--mem {e}")), j))?;
                    inspect::Source::Memory {
                        device: mem_device,
                        spec,
                    }
                }
                (None, None) if is_live => {
                    let (bytes, source) =
                        live::snapshot(&target("inspect --live", dev), live::progress_wanted())
                            .map_err(|e| (e, j))?;
                    let inspection = inspect::inspect(&bytes, &source, all);
                    return Ok(show_inspection(&inspection, j));
                }
                (None, None) => {
                    return Err((
                        Error::new(
                            Code::Usage,
                            "inspect needs --image FILE, --mem ADDR,SIZE or --live",
                        ),
                        j,
                    ))
                }
            };
            let inspection = inspect::run(&source, all).map_err(|e| (e, j))?;
            Ok(show_inspection(&inspection, j))
        }
        Command::Replay {
            image,
            disk,
            disk_id,
            block_bytes,
            dry_run,
            json,
        } => {
            let j = json.json;
            let req = replay::Request {
                image,
                disk,
                disk_id,
                block_bytes,
                dry_run,
                sysfs,
                progress: std::io::stderr().is_terminal(),
            };
            let done = replay::run(&req).map_err(|e| (e, j))?;
            if j {
                print_json(&done.json());
            } else {
                if dry_run {
                    println!("rapilogctl: dry run: verifying only, nothing will be written");
                }
                for line in done.lines() {
                    println!("rapilogctl: {line}");
                }
            }
            Ok(done.code())
        }
        Command::Marker {
            disk,
            block_bytes,
            clear,
            json,
        } => {
            let report = marker::run(&marker::Request {
                disk,
                block_bytes,
                clear,
            })
            .map_err(|e| (e, json.json))?;
            if json.json {
                print_json(&report);
            } else {
                print!("{}", report.lines());
            }
            Ok(report.code())
        }
        Command::Plan {
            hold_up_ms,
            bandwidth,
            devices,
            backing,
            disk,
            measure,
            scratch,
            iomem,
            cmdline,
            meminfo,
            apply,
            root,
            grub_dropin,
            json,
        } => {
            let j = json.json;
            let machine = plan::gather(&plan::Inputs {
                iomem,
                cmdline,
                meminfo,
                sysfs,
            })
            .map_err(|e| (e, j))?;
            let bw = match (bandwidth, measure, &disk, &scratch) {
                (Some(mb), _, _, _) if mb > 0.0 && mb.is_finite() => plan::Bandwidth {
                    bytes_per_s: (mb * 1e6) as u64,
                    source: "given",
                    note: "given with --bandwidth".into(),
                },
                (Some(_), _, _, _) => {
                    return Err((
                        Error::new(Code::Usage, "--bandwidth must be a positive number of MB/s"),
                        j,
                    ))
                }
                (None, true, Some(_), Some(scratch)) => {
                    let b = plan::measure_write(scratch).map_err(|e| (e, j))?;
                    plan::Bandwidth {
                        bytes_per_s: b,
                        source: "measured-write",
                        note: format!("measured: O_DIRECT writes to {}", scratch.display()),
                    }
                }
                (None, true, Some(dev), None) => {
                    let b = plan::measure_read(dev).map_err(|e| (e, j))?;
                    plan::Bandwidth {
                        bytes_per_s: b / 2,
                        source: "estimated-from-read",
                        note: format!(
                            "estimated: half of {:.1} MB/s read from {} (writes are usually slower; use --scratch to measure writes)",
                            b as f64 / 1e6,
                            dev.display()
                        ),
                    }
                }
                _ => plan::Bandwidth {
                    bytes_per_s: plan::DEFAULT_BANDWIDTH,
                    source: "assumed",
                    note: "assumed: a slow SATA disk".into(),
                },
            };
            let devices = match devices {
                Some(n) if !backing.is_empty() && n as usize != backing.len() => {
                    return Err((
                        Error::new(
                            Code::Usage,
                            format!(
                                "--devices {n} but {} --backing: give one --backing per device, \
                                 or leave --devices out",
                                backing.len()
                            ),
                        ),
                        j,
                    ))
                }
                Some(n) => n,
                None => (backing.len() as u32).max(1),
            };
            let p = plan::make_plan_devices(&machine, bw, hold_up_ms, devices, &backing)
                .map_err(|e| (e, j))?;
            if j {
                print_json(&p);
            } else {
                print!("{}", plan::render(&p));
            }
            if let Some(path) = grub_dropin.or(apply.then(|| grub::apply_path(&root))) {
                let done = grub::write_dropin(&path, &grub::dropin_params(&p, &machine))
                    .map_err(|e| (e, j))?;
                eprintln!("rapilogctl: {}", done.message());
            }
            Ok(Code::Ok)
        }
        Command::Arm { script, print } => run_arm(if print { "command" } else { "arm" }, script),
        Command::Disarm { script } => run_arm("disarm", script),
    }
}

fn show_inspection(inspection: &inspect::Inspection, json: bool) -> Code {
    if json {
        print_json(inspection);
    } else {
        print!("{}", inspect::render(inspection));
    }
    inspection.code()
}

fn run_arm(action: &'static str, script: ArmScript) -> Result<Code, (Error, bool)> {
    if action != "command" && !rapilogctl::is_root() {
        return Err((
            Error::new(Code::NotRoot, format!("{action} needs root (kexec_load)")),
            false,
        ));
    }
    let ran = arm::run(&arm::Request {
        action,
        script: script.arm_script,
        config: script.config,
    })
    .map_err(|e| (e, false))?;
    print!("{}", ran.stdout);
    eprint!("{}", ran.stderr);
    let code = arm::code(ran.status);
    if code != Code::Ok {
        return Err((
            Error::new(
                code,
                format!("`{}` failed with exit status {}", ran.command, ran.status),
            ),
            false,
        ));
    }
    if action != "command" {
        println!("rapilogctl: {action}: done (`{}`)", ran.command);
    }
    Ok(code)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match run(cli) {
        Ok(code) => code,
        Err((e, json)) => {
            let _ = std::io::stdout().flush();
            eprintln!("rapilogctl: error: {}", e.message);
            if json {
                print_json(&serde_json::json!({
                    "schema": "rapilogctl.error",
                    "schema_version": 1,
                    "exit_code": e.code.value(),
                    "error": e.message,
                }));
            }
            e.code
        }
    };
    ExitCode::from(code.value() as u8)
}
