// SPDX-License-Identifier: GPL-2.0

//! `rapilogctl plan`: boot parameters and a region size for this machine.
//!
//! The computation is pure ([`parse_iomem`], [`parse_cmdline`],
//! [`size_region`], [`choose_address`], [`memmap_param`], [`grub_escape`],
//! [`make_plan`]) and unit-tested on fixture texts; [`gather`] reads the
//! machine, and [`measure_write`] / [`measure_read`] time the log disk.
//!
//! # Sizing rule
//!
//! On a power failure the driver must write every dirty byte to the log disk
//! within the power supply's hold-up window. Half of the window is budgeted
//! for the drain (the rest covers noticing the failure, the disk's cache
//! flush, and a bandwidth that under load is lower than measured). The
//! region's data ring is then at most `bandwidth x window / 2`, so that even
//! a full ring drains in time; the region adds the superblocks and the
//! descriptor table (`Geometry::standard`: 64 bytes per 4 KiB) and is
//! rounded down to whole MiB, with a floor of [`MIN_REGION_BYTES`].
//!
//! # Several devices (`--devices N`, `--backing DISK` repeated)
//!
//! On a power failure every device's dirty data must drain within the same
//! window, and the drain may well run one device after another. So the
//! budget is shared: each of N devices gets 1/N of it, and its dirty bound
//! is what its disk writes in `(hold_up_ms / 2) / N` at the bandwidth given
//! (that of the slowest log disk: one bandwidth serves every device). The
//! bounds then add up to what drains in the budget even sequentially, and
//! in parallel the drain only finishes sooner. Every device gets a region
//! of the same size, sized from its bound as above.
//!
//! The N regions are consecutive slices of one reserved range: one
//! `memmap=` on the kernel command line (adjacent `memmap=` ranges would
//! become one `Reserved` range of `/proc/iomem` anyway, and the module
//! claims any range inside a `Reserved` one), one placement, and the
//! module's `region=` list (`REGION=`, `REGION_1=`, ... in rapilog.conf)
//! naming each slice.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rapilog_format::Geometry;
use serde::Serialize;

use crate::units::{human, kernel_size};
use crate::{Code, Error};

/// Name of the `--json` document of `plan`.
pub const SCHEMA: &str = "rapilogctl.plan";
/// Its version.
pub const SCHEMA_VERSION: u32 = 1;

/// The driver's largest record (rapilog-blk/region.rs).
pub const MAX_RECORD_BYTES: u32 = 128 * 1024;
/// Smallest region recommended: a few hundred records of any size.
pub const MIN_REGION_BYTES: u64 = 4 << 20;
/// Region placement alignment (a huge page).
pub const ALIGN: u64 = 2 << 20;
/// Memory below this is left alone (legacy DMA zone, the default kernel load address).
pub const LOW_LIMIT: u64 = 16 << 20;
/// Crash kernel reservation: a stock Debian kernel plus the small rescue
/// initramfs boot in it (kexec-tools-config/README.md).
pub const CRASHKERNEL: &str = "256M";
/// `panic=` proposed: seconds before a panicked kernel that could not
/// start the crash kernel reboots (warm: the module replays the region at
/// its next load). Debian's kernels are built with `CONFIG_PANIC_TIMEOUT=0`
/// (wait for ever).
pub const PANIC_REBOOT_S: i64 = 10;
/// Most devices one module serves (`/dev/rapilog0` .. `/dev/rapilog7`).
pub const MAX_DEVICES: u32 = 8;
/// Bandwidth assumed when none is given or measured: a slow SATA disk.
pub const DEFAULT_BANDWIDTH: u64 = 100_000_000;

/// One line of `/proc/iomem`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IomemEntry {
    /// First byte.
    pub start: u64,
    /// Last byte (inclusive).
    pub end: u64,
    /// Nesting level (two spaces each).
    pub depth: usize,
    /// What it is (`System RAM`, `Kernel code`, `Reserved`, ...).
    pub name: String,
}

/// Parses `/proc/iomem` (lines `start-end : name`, indented by nesting).
pub fn parse_iomem(text: &str) -> Vec<IomemEntry> {
    text.lines()
        .filter_map(|line| {
            let indent = line.len() - line.trim_start().len();
            let (range, name) = line.trim().split_once(" : ")?;
            let (start, end) = range.split_once('-')?;
            Some(IomemEntry {
                start: u64::from_str_radix(start, 16).ok()?,
                end: u64::from_str_radix(end, 16).ok()?,
                depth: indent / 2,
                name: name.trim().to_string(),
            })
        })
        .collect()
}

/// Whether the addresses are hidden (`/proc/iomem` read without root shows zeros).
pub fn addresses_hidden(entries: &[IomemEntry]) -> bool {
    !entries.is_empty() && entries.iter().all(|e| e.start == 0 && e.end == 0)
}

/// Total `System RAM` (top level).
pub fn system_ram(entries: &[IomemEntry]) -> u64 {
    entries
        .iter()
        .filter(|e| e.depth == 0 && e.name == "System RAM")
        .map(|e| e.end - e.start + 1)
        .sum()
}

/// A `memmap=` reservation found on the command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Memmap {
    /// As written (one entry).
    pub text: String,
    /// Size.
    pub size: u64,
    /// `$` reserved, `!` persistent memory, `#` ACPI, `@` usable.
    pub kind: char,
    /// Start address.
    pub phys: u64,
}

/// What the kernel command line already says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CmdlineFacts {
    /// Every `memmap=` entry (comma lists split).
    pub memmap: Vec<Memmap>,
    /// `crashkernel=` as written.
    pub crashkernel: Option<String>,
    /// `panic=` (seconds before a panicked kernel reboots; 0 waits for
    /// ever, negative reboots at once), the last one given.
    pub panic: Option<i64>,
    /// Every `mce=` value, in order (the kernel takes one option per
    /// `mce=`: `mce=off,x` is not `off`).
    pub mce: Vec<String>,
}

/// Parses the parts of the kernel command line that matter here.
pub fn parse_cmdline(text: &str) -> CmdlineFacts {
    let mut facts = CmdlineFacts::default();
    for word in text.split_whitespace() {
        if word == "--" {
            break;
        }
        if let Some(v) = word.strip_prefix("memmap=") {
            for entry in v.split(',') {
                let Some(pos) = entry.find(['$', '!', '#', '@']) else {
                    continue;
                };
                let kind = entry[pos..].chars().next().unwrap_or('$');
                let (size, phys) = (&entry[..pos], &entry[pos + 1..]);
                if let (Some(size), Some(phys)) = (
                    crate::units::parse_size(size),
                    crate::units::parse_size(phys),
                ) {
                    facts.memmap.push(Memmap {
                        text: entry.to_string(),
                        size,
                        kind,
                        phys,
                    });
                }
            }
        } else if let Some(v) = word.strip_prefix("crashkernel=") {
            facts.crashkernel = Some(v.to_string());
        } else if let Some(v) = word.strip_prefix("panic=") {
            // The kernel's own parser (core_param, int) takes an optional
            // sign and a number; anything else leaves panic_timeout as it was.
            if let Ok(n) = v.parse::<i64>() {
                facts.panic = Some(n);
            }
        } else if let Some(v) = word.strip_prefix("mce=") {
            facts.mce.push(v.to_string());
        } else if word == "mce" {
            facts.mce.push(String::new());
        }
    }
    facts
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
pub fn parse_meminfo_total(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The region size and how it was reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sizing {
    /// Hold-up window.
    pub hold_up_ms: u64,
    /// Part of it budgeted for the drain (half), shared by every device.
    pub drain_budget_ms: u64,
    /// Log disk write bandwidth, bytes per second.
    pub bandwidth_bytes_per_s: u64,
    /// Devices sharing the budget.
    pub devices: u32,
    /// Each device's share of the budget, microseconds.
    pub device_budget_us: u64,
    /// What drains in a device's share: the most dirty data allowed per device.
    pub dirty_bound_bytes: u64,
    /// Every device's bound together (drains in the budget even one device
    /// after another).
    pub total_dirty_bound_bytes: u64,
    /// Recommended region size (each device's).
    pub region_bytes: u64,
    /// Its data ring.
    pub ring_bytes: u64,
    /// Its descriptor slots (most records live at once).
    pub slots: u32,
    /// The floor was applied: the ring is larger than what drains in time,
    /// so the driver's dirty bound must be lower than the ring.
    pub floor_applied: bool,
}

/// The region size for `bandwidth` bytes/s and a `hold_up_ms` window (see
/// the module docs).
pub fn size_region(bandwidth: u64, hold_up_ms: u64) -> Result<Sizing, String> {
    size_regions(bandwidth, hold_up_ms, 1)
}

/// Each region's size for `devices` devices sharing a `hold_up_ms` window
/// at `bandwidth` bytes/s each (see the module docs, "Several devices").
pub fn size_regions(bandwidth: u64, hold_up_ms: u64, devices: u32) -> Result<Sizing, String> {
    if bandwidth == 0 || hold_up_ms == 0 {
        return Err("bandwidth and hold-up window must be positive".into());
    }
    if !(1..=MAX_DEVICES).contains(&devices) {
        return Err(format!("{devices} devices: rapilog has 1 to {MAX_DEVICES}"));
    }
    let drain_budget_ms = hold_up_ms / 2;
    let dirty_bound = u64::try_from(
        u128::from(bandwidth) * u128::from(drain_budget_ms) / (1000 * u128::from(devices)),
    )
    .map_err(|_| "bandwidth too large")?;
    let ring_of = |region: u64| {
        Geometry::standard(region, MAX_RECORD_BYTES)
            .map(|g| g.ring_bytes)
            .unwrap_or(0)
    };
    // Largest whole-MiB region whose ring drains in the budget.
    let mib = 1u64 << 20;
    let mut region = (dirty_bound.saturating_mul(64) / 63 + 2 * 4096) / mib * mib;
    while region > MIN_REGION_BYTES && ring_of(region) > dirty_bound {
        region -= mib;
    }
    while ring_of(region + mib) <= dirty_bound && ring_of(region + mib) > 0 {
        region += mib;
    }
    let floor_applied = region < MIN_REGION_BYTES || ring_of(region) > dirty_bound;
    let region = region.max(MIN_REGION_BYTES);
    let geometry = Geometry::standard(region, MAX_RECORD_BYTES).map_err(|e| e.to_string())?;
    Ok(Sizing {
        hold_up_ms,
        drain_budget_ms,
        bandwidth_bytes_per_s: bandwidth,
        devices,
        device_budget_us: drain_budget_ms * 1000 / u64::from(devices),
        dirty_bound_bytes: dirty_bound,
        total_dirty_bound_bytes: dirty_bound * u64::from(devices),
        region_bytes: region,
        ring_bytes: geometry.ring_bytes,
        slots: geometry.descriptor_slots,
        floor_applied,
    })
}

/// Where the region goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Placement {
    /// Start address.
    pub phys: u64,
    /// The `System RAM` range it lies in.
    pub ram_start: u64,
    /// Its last byte.
    pub ram_end: u64,
}

/// Where a region is best placed from: bootloaders put the initrd as high
/// as they can below 2 or 4 GiB (GRUB, EFI's top-down page allocator,
/// QEMU's `-initrd`), and they do so before the kernel has read `memmap=`,
/// so a region at the top of low RAM is overwritten at every boot (after a
/// warm reboot that still held records, those are lost). The kernel image
/// goes low: with `memmap=` on the command line the EFI stub turns physical
/// KASLR off and loads it at the lowest address above 16 MiB, the
/// decompressor's KASLR avoids `memmap=` ranges, and without KASLR it sits
/// at 16 MiB. 1 GiB is clear of both on any machine with room above it.
pub const PREFERRED_FLOOR: u64 = 1 << 30;

/// A `size`-byte, [`ALIGN`]-aligned range inside top-level `System RAM`,
/// overlapping nothing nested in it (kernel image, crash kernel, ...), as
/// low as possible in the first of these windows that has one:
/// [`PREFERRED_FLOOR`] to 4 GiB, then above 4 GiB, then (small machines)
/// 256 MiB to [`PREFERRED_FLOOR`], then [`LOW_LIMIT`] to 256 MiB, the
/// last resort, close to where the next boot's kernel decompresses. Low,
/// not high: see [`PREFERRED_FLOOR`].
pub fn choose_address(entries: &[IomemEntry], size: u64) -> Result<Placement, String> {
    const WINDOWS: [(u64, u64); 4] = [
        (PREFERRED_FLOOR, 1 << 32),
        (1 << 32, u64::MAX),
        (256 << 20, PREFERRED_FLOOR),
        (LOW_LIMIT, 256 << 20),
    ];
    let rams: Vec<(usize, &IomemEntry)> = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.depth == 0 && e.name == "System RAM")
        .collect();
    for (window_start, window_end) in WINDOWS {
        let mut best: Option<Placement> = None;
        for &(index, ram) in &rams {
            // Children: the entries nested under this one.
            let children: Vec<&IomemEntry> = entries[index + 1..]
                .iter()
                .take_while(|e| e.depth > 0)
                .collect();
            let low = ram.start.max(window_start);
            let top = ram.end.saturating_add(1).min(window_end);
            let mut start = low.div_ceil(ALIGN) * ALIGN;
            while start.checked_add(size).is_some_and(|end| end <= top) {
                let end = start + size - 1;
                match children
                    .iter()
                    .filter(|c| c.start <= end && c.end >= start)
                    .map(|c| c.end)
                    .max()
                {
                    None => {
                        if best.as_ref().is_none_or(|b| start < b.phys) {
                            best = Some(Placement {
                                phys: start,
                                ram_start: ram.start,
                                ram_end: ram.end,
                            });
                        }
                        break;
                    }
                    Some(busy_end) => start = (busy_end + 1).div_ceil(ALIGN) * ALIGN,
                }
            }
        }
        if let Some(placement) = best {
            return Ok(placement);
        }
    }
    Err(format!(
        "no free, aligned {} range in System RAM",
        human(size)
    ))
}

pub fn memmap_param(size: u64, phys: u64) -> String {
    format!("memmap={}${phys:#x}", kernel_size(size))
}

/// The same for `/etc/default/grub`, which is expanded twice: `$` is `\\\$`.
pub fn grub_escape(param: &str) -> String {
    param.replace('$', "\\\\\\$")
}

/// A block device, for the plan's list.
#[derive(Debug, Clone, Serialize)]
pub struct Disk {
    /// Kernel name.
    pub name: String,
    /// Size.
    pub bytes: u64,
    /// Logical block size.
    pub block_bytes: u32,
    /// Rotational (`queue/rotational`).
    pub rotational: bool,
    /// Identities (the rescue program's rule), text form.
    pub ids: Vec<String>,
}

/// Where the bandwidth came from.
#[derive(Debug, Clone, Serialize)]
pub struct Bandwidth {
    /// Bytes per second used for sizing.
    pub bytes_per_s: u64,
    /// `given`, `measured-write`, `estimated-from-read` or `assumed`.
    pub source: &'static str,
    /// In words.
    pub note: String,
}

/// What the machine says.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// `/proc/iomem`, parsed.
    #[serde(skip)]
    pub iomem: Vec<IomemEntry>,
    /// `MemTotal`.
    pub mem_total_bytes: Option<u64>,
    /// What the command line already has.
    pub cmdline: CmdlineFacts,
    /// Block devices (whole disks).
    pub disks: Vec<Disk>,
}

/// The plan: the `--json` document.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// [`SCHEMA`].
    pub schema: &'static str,
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// `System RAM` in `/proc/iomem`.
    pub system_ram_bytes: u64,
    /// `MemTotal`.
    pub mem_total_bytes: Option<u64>,
    /// Bandwidth used.
    pub bandwidth: Bandwidth,
    /// Size computation.
    pub sizing: Sizing,
    /// Where.
    pub placement: Placement,
    /// A `$` reservation already on the command line large enough to keep.
    pub existing_memmap: Option<Memmap>,
    /// The `memmap=` parameter (kernel command line form).
    pub memmap: String,
    /// The same, escaped for `/etc/default/grub`.
    pub memmap_grub: String,
    /// The `crashkernel=` parameter.
    pub crashkernel: String,
    /// `crashkernel=` already on the command line.
    pub crashkernel_present: bool,
    /// The `panic=` parameter.
    pub panic: String,
    /// A `panic=` that reboots is already on the command line.
    pub panic_present: bool,
    /// Parameters to remove from the command line (as written there), e.g.
    /// `mce=off`; empty if none.
    pub remove: Vec<String>,
    /// Parameters still to add (kernel command line form); empty if none.
    pub add: Vec<String>,
    /// The same for `/etc/default/grub`.
    pub add_grub: Vec<String>,
    /// The module's `region=` parameter (a comma-separated list with
    /// several devices).
    pub module_region: String,
    /// Each device's region, `SIZE@PHYS`, `/dev/rapilog0`'s first.
    pub regions: Vec<String>,
    /// The device lines of `/etc/rapilog/rapilog.conf` (`REGION=`,
    /// `BACKING=`, then `REGION_1=`, `BACKING_1=`, ...).
    pub conf: Vec<String>,
    /// Block devices.
    pub disks: Vec<Disk>,
    /// The reasoning, in plain words.
    pub reasoning: Vec<String>,
    /// Things to check.
    pub warnings: Vec<String>,
}

/// Builds the plan from what the machine says, for one device.
pub fn make_plan(machine: &Machine, bandwidth: Bandwidth, hold_up_ms: u64) -> Result<Plan, Error> {
    make_plan_devices(machine, bandwidth, hold_up_ms, 1, &[])
}

/// Builds the plan for `devices` devices (see the module docs, "Several
/// devices"); `backings` names their log disks for the rapilog.conf lines
/// (in device order; missing ones get a placeholder).
pub fn make_plan_devices(
    machine: &Machine,
    bandwidth: Bandwidth,
    hold_up_ms: u64,
    devices: u32,
    backings: &[String],
) -> Result<Plan, Error> {
    if machine.iomem.is_empty() {
        return Err(Error::new(
            Code::Usage,
            "the memory map (/proc/iomem) is empty",
        ));
    }
    if addresses_hidden(&machine.iomem) {
        return Err(Error::new(
            Code::NotRoot,
            "/proc/iomem shows no addresses to non-root users: run plan as root (or pass --iomem FILE)",
        ));
    }
    let sizing = size_regions(bandwidth.bytes_per_s, hold_up_ms, devices)
        .map_err(|e| Error::new(Code::Usage, e))?;
    let n = u64::from(devices);
    let ram = system_ram(&machine.iomem);
    let mut reasoning = Vec::new();
    let mut warnings = Vec::new();
    reasoning.push(format!(
        "The hold-up window is {hold_up_ms} ms; half of it, {} ms, is budgeted for draining dirty \
         data on a power failure (the rest covers noticing the failure, the disk's cache flush and \
         slower-than-measured writes).",
        sizing.drain_budget_ms
    ));
    if devices == 1 {
        reasoning.push(format!(
            "At {:.1} MB/s ({}) the log disk writes {} ({} bytes) in {} ms: that is the most dirty \
             data allowed.",
            bandwidth.bytes_per_s as f64 / 1e6,
            bandwidth.note,
            human(sizing.dirty_bound_bytes),
            sizing.dirty_bound_bytes,
            sizing.drain_budget_ms
        ));
    } else {
        reasoning.push(format!(
            "{devices} devices share that budget: the drain may run one device after another, so \
             each gets 1/{devices} of it, {}.{:03} ms. At {:.1} MB/s ({}; give the slowest log \
             disk's) a log disk writes {} ({} bytes) in that time: the most dirty data allowed \
             per device, {} in all, which drains within the {} ms even one device after another.",
            sizing.device_budget_us / 1000,
            sizing.device_budget_us % 1000,
            bandwidth.bytes_per_s as f64 / 1e6,
            bandwidth.note,
            human(sizing.dirty_bound_bytes),
            sizing.dirty_bound_bytes,
            human(sizing.total_dirty_bound_bytes),
            sizing.drain_budget_ms
        ));
    }
    if sizing.floor_applied {
        reasoning.push(format!(
            "That is less than the smallest useful region, so the region is {} (ring {}); the \
             driver must then keep its dirty bound at {} so the drain still fits.",
            human(sizing.region_bytes),
            human(sizing.ring_bytes),
            human(sizing.dirty_bound_bytes)
        ));
    } else {
        reasoning.push(format!(
            "A {} region holds a {} ring and {} descriptor slots (superblocks and the table take \
             the rest), so even a full ring drains within the budget.",
            kernel_size(sizing.region_bytes),
            human(sizing.ring_bytes),
            sizing.slots
        ));
    }
    let existing = machine
        .cmdline
        .memmap
        .iter()
        .find(|m| m.kind == '$' && m.size >= sizing.region_bytes * n)
        .cloned();
    let placement = match &existing {
        Some(m) => {
            reasoning.push(format!(
                "The command line already reserves memmap={}: it is large enough, keep it.",
                m.text
            ));
            let reserved = machine
                .iomem
                .iter()
                .any(|e| e.start == m.phys && e.name == "Reserved");
            if !reserved {
                warnings.push(format!(
                    "memmap={} is on the command line but /proc/iomem shows no Reserved range \
                     starting at {:#x}: check the address",
                    m.text, m.phys
                ));
            }
            Placement {
                phys: m.phys,
                ram_start: m.phys,
                ram_end: m.phys + m.size - 1,
            }
        }
        None => {
            let p = choose_address(&machine.iomem, sizing.region_bytes * n)
                .map_err(|e| Error::new(Code::Failed, e))?;
            reasoning.push(format!(
                "It goes at {:#x}, {}-aligned, inside System RAM {:#x}-{:#x}, clear of the kernel \
                 image and other reservations listed in /proc/iomem, as low as possible {}: \
                 bootloaders load the initrd at the top of low RAM before the kernel reads \
                 memmap=, and the kernel itself loads low (with memmap= the EFI stub turns \
                 physical KASLR off; the decompressor's KASLR avoids memmap= ranges).",
                p.phys,
                human(ALIGN),
                p.ram_start,
                p.ram_end,
                if p.phys >= 1 << 32 {
                    "above 4 GiB (no room between 1 and 4 GiB)"
                } else if p.phys >= PREFERRED_FLOOR {
                    "from 1 GiB up"
                } else {
                    "(a small machine: below 1 GiB)"
                }
            ));
            p
        }
    };
    for m in &machine.cmdline.memmap {
        if existing.as_ref() != Some(m) {
            warnings.push(format!(
                "the command line has another memmap={} ({}): make sure it is not the rapilog region \
                 of an older plan",
                m.text,
                human(m.size)
            ));
        }
    }
    let memmap = match &existing {
        Some(m) => format!("memmap={}", m.text),
        None => memmap_param(sizing.region_bytes * n, placement.phys),
    };
    // An existing reservation is used whole: one region, or N equal
    // MiB-aligned slices of it.
    let region_size = existing.as_ref().map_or(sizing.region_bytes, |m| {
        if devices == 1 {
            m.size
        } else {
            m.size / n / (1 << 20) * (1 << 20)
        }
    });
    let regions: Vec<String> = (0..n)
        .map(|k| {
            format!(
                "{}@{:#x}",
                kernel_size(region_size),
                placement.phys + k * region_size
            )
        })
        .collect();
    if devices > 1 {
        reasoning.push(format!(
            "The {devices} regions are consecutive {} slices of that one reserved range ({}), \
             /dev/rapilog0's first: one memmap= on the command line, and the module's region= \
             list (REGION=, REGION_1=, ... in /etc/rapilog/rapilog.conf) names each slice.",
            kernel_size(region_size),
            memmap.trim_start_matches("memmap="),
        ));
    }
    let conf = regions
        .iter()
        .enumerate()
        .flat_map(|(k, region)| {
            let suffix = if k == 0 {
                String::new()
            } else {
                format!("_{k}")
            };
            let backing = backings.get(k).map_or_else(
                || "/dev/disk/by-id/... (the log disk)".to_string(),
                Clone::clone,
            );
            [
                format!("REGION{suffix}={region}"),
                format!("BACKING{suffix}={backing}"),
            ]
        })
        .collect();
    let crashkernel = format!("crashkernel={CRASHKERNEL}");
    let crashkernel_present = machine.cmdline.crashkernel.is_some();
    reasoning.push(match &machine.cmdline.crashkernel {
        Some(c) => format!("crashkernel={c} is already there: the crash kernel has its memory."),
        None => format!(
            "crashkernel={CRASHKERNEL} reserves memory for the kexec crash kernel that runs \
             rapilog-rescue (a stock Debian kernel and a small initramfs)."
        ),
    });
    let mut add = Vec::new();
    if existing.is_none() {
        add.push(memmap.clone());
    }
    if !crashkernel_present {
        add.push(crashkernel.clone());
    }
    let panic = format!("panic={PANIC_REBOOT_S}");
    let panic_present = matches!(machine.cmdline.panic, Some(n) if n != 0);
    reasoning.push(match machine.cmdline.panic {
        Some(n) if n != 0 => format!(
            "panic={n} is already there: a kernel that panics without a crash kernel to start \
             reboots by itself, and the module replays the region at its next load."
        ),
        _ => format!(
            "{panic}: a kernel that panics while the crash kernel is not armed (or cannot \
             start it) reboots warm after {PANIC_REBOOT_S} s, and the module replays the \
             region at its next load; without it (Debian builds its kernels with \
             CONFIG_PANIC_TIMEOUT=0) it waits for ever, and the power cycle that ends the \
             wait may lose the region. With the crash kernel armed a panic never waits for it."
        ),
    });
    if !panic_present {
        add.push(panic.clone());
    }
    // Machine checks (arch/x86/kernel/cpu/mce/core.c, 7.x): an uncorrected
    // error the kernel cannot recover from (processor context corrupt,
    // consumed in kernel context, no restart IP) always panics through
    // mce_panic(), so the crash kernel replays the region like after any
    // panic. There is no tolerance level any more (mce=N sets only the
    // rendezvous timeout, in microseconds; a timeout panics as well). Only
    // mce=off takes that away: CR4.MCE stays clear, and a machine check then
    // shuts the processor down (a reset, no panic, no crash kernel).
    let mut remove = Vec::new();
    if machine.cmdline.mce.iter().any(|o| o == "off") {
        remove.push("mce=off".to_string());
        warnings.push(
            "mce=off is on the command line: with machine checks off, an uncorrected hardware \
             error shuts the processor down (a reset without a panic: no crash kernel replays \
             the region, which survives only if the reset keeps RAM); remove it"
                .into(),
        );
        reasoning.push(
            "Machine checks are off (mce=off): remove it, so that an uncorrected hardware \
             error panics and the crash kernel replays the region."
                .into(),
        );
    } else {
        reasoning.push(
            "Machine checks need nothing: an uncorrected error the kernel cannot recover from \
             (processor context corrupt, or consumed by the kernel) panics, and the crash \
             kernel replays the region like after any panic; mce=off would take that away."
                .into(),
        );
    }
    let total = machine.mem_total_bytes.unwrap_or(ram).max(1);
    if region_size * n + (256 << 20) > total / 4 {
        warnings.push(format!(
            "the region plus the crash kernel take more than a quarter of the {} of RAM",
            human(total)
        ));
    }
    if bandwidth.source == "assumed" {
        warnings.push(
            "the log disk's bandwidth was assumed: measure it with --disk DEV --measure \
             [--scratch FILE], or give it with --bandwidth MB/s"
                .into(),
        );
    }
    Ok(Plan {
        schema: SCHEMA,
        schema_version: SCHEMA_VERSION,
        system_ram_bytes: ram,
        mem_total_bytes: machine.mem_total_bytes,
        bandwidth,
        module_region: format!("region={}", regions.join(",")),
        regions,
        conf,
        sizing,
        placement,
        existing_memmap: existing,
        memmap_grub: grub_escape(&memmap),
        memmap,
        crashkernel,
        crashkernel_present,
        panic,
        panic_present,
        remove,
        add_grub: add.iter().map(|p| grub_escape(p)).collect(),
        add,
        disks: machine.disks.clone(),
        reasoning,
        warnings,
    })
}

/// Human output.
pub fn render(plan: &Plan) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "machine     {} System RAM{}\n",
        human(plan.system_ram_bytes),
        plan.mem_total_bytes
            .map_or(String::new(), |m| format!(", MemTotal {}", human(m)))
    ));
    if !plan.disks.is_empty() {
        let mut rows = vec![["disk", "size", "block", "type", "ids"]
            .map(String::from)
            .to_vec()];
        for d in &plan.disks {
            rows.push(vec![
                d.name.clone(),
                human(d.bytes),
                d.block_bytes.to_string(),
                if d.rotational {
                    "rotational".into()
                } else {
                    "solid-state".into()
                },
                if d.ids.is_empty() {
                    "no id".into()
                } else {
                    d.ids.join(", ")
                },
            ]);
        }
        out.push('\n');
        out.push_str(&crate::inspect::table(
            &rows,
            &[false, true, true, false, false],
        ));
    }
    out.push_str("\nWhy:\n");
    for r in &plan.reasoning {
        out.push_str(&format!("  - {r}\n"));
    }
    out.push('\n');
    if !plan.remove.is_empty() {
        out.push_str(&format!(
            "Remove from the kernel command line:\n  {}\n",
            plan.remove.join(" ")
        ));
    }
    if plan.add.is_empty() {
        out.push_str("The kernel command line has everything already.\n");
    } else {
        out.push_str(&format!(
            "Add to the kernel command line:\n  {}\n",
            plan.add.join(" ")
        ));
        out.push_str(&format!(
            "In /etc/default/grub (GRUB_CMDLINE_LINUX_DEFAULT), then update-grub and reboot:\n  {}\n",
            plan.add_grub.join(" ")
        ));
    }
    if plan.regions.len() == 1 {
        out.push_str(&format!(
            "Module parameter (REGION= in /etc/rapilog/rapilog.conf):\n  {}\n",
            plan.module_region
        ));
    } else {
        out.push_str(&format!(
            "Module parameter (rapilog-arm builds it from rapilog.conf):\n  {}\n\
             In /etc/rapilog/rapilog.conf, one device each (/dev/rapilog0 first):\n",
            plan.module_region
        ));
        for line in &plan.conf {
            out.push_str(&format!("  {line}\n"));
        }
    }
    for w in &plan.warnings {
        out.push_str(&format!("WARNING: {w}\n"));
    }
    out
}

/// Where [`gather`] reads.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// `/proc/iomem`.
    pub iomem: PathBuf,
    /// `/proc/cmdline`.
    pub cmdline: PathBuf,
    /// `/proc/meminfo`.
    pub meminfo: PathBuf,
    /// sysfs.
    pub sysfs: PathBuf,
}

fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path)
        .map_err(|e| Error::io(Code::Usage, &format!("cannot read {}", path.display()), &e))
}

/// Reads the machine.
pub fn gather(inputs: &Inputs) -> Result<Machine, Error> {
    let iomem = parse_iomem(&read(&inputs.iomem)?);
    let cmdline = parse_cmdline(&read(&inputs.cmdline)?);
    let mem_total_bytes = std::fs::read_to_string(&inputs.meminfo)
        .ok()
        .and_then(|t| parse_meminfo_total(&t));
    let disks = rapilog_replay::discover::scan(&inputs.sysfs)
        .unwrap_or_default()
        .into_iter()
        .filter(|d| d.partition.is_none() && d.sectors > 0)
        .filter(|d| {
            !["loop", "ram", "zram", "dm-"]
                .iter()
                .any(|p| d.name.starts_with(p))
        })
        .map(|d| Disk {
            rotational: std::fs::read_to_string(
                inputs
                    .sysfs
                    .join("block")
                    .join(&d.name)
                    .join("queue/rotational"),
            )
            .is_ok_and(|t| t.trim() == "1"),
            ids: d
                .ids
                .iter()
                .map(|i| rapilog_replay::idtext::IdText(i).to_string())
                .collect(),
            name: d.name,
            bytes: d.sectors * 512,
            block_bytes: d.block_bytes,
        })
        .collect();
    Ok(Machine {
        iomem,
        mem_total_bytes,
        cmdline,
        disks,
    })
}

const CHUNK: usize = 1 << 20;
const MEASURE_BYTES: u64 = 64 << 20;
const MEASURE_TIME: Duration = Duration::from_secs(2);

fn aligned_buffer(storage: &mut Vec<u8>) -> &mut [u8] {
    storage.resize(CHUNK + 4096, 0);
    let off = storage.as_ptr().align_offset(4096);
    &mut storage[off..off + CHUNK]
}

/// Writes up to 64 MiB (or 2 s) with `O_DIRECT` to `scratch`, which must
/// not exist, then `fdatasync`s it and removes it: bytes per second.
pub fn measure_write(scratch: &Path) -> Result<u64, Error> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_DIRECT)
        .open(scratch)
        .map_err(|e| {
            Error::io(
                Code::Usage,
                &format!(
                    "cannot create scratch file {} (it must not exist; O_DIRECT)",
                    scratch.display()
                ),
                &e,
            )
        })?;
    let mut storage = Vec::new();
    let buf = aligned_buffer(&mut storage);
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(151).wrapping_add(7);
    }
    let start = Instant::now();
    let mut written = 0u64;
    let result = (|| {
        while written < MEASURE_BYTES && start.elapsed() < MEASURE_TIME {
            file.write_all(buf)?;
            written += CHUNK as u64;
        }
        file.sync_data()
    })();
    let elapsed = start.elapsed();
    let _ = std::fs::remove_file(scratch);
    result.map_err(|e| {
        Error::io(
            Code::Failed,
            &format!("writing scratch file {}", scratch.display()),
            &e,
        )
    })?;
    Ok((written as f64 / elapsed.as_secs_f64().max(1e-6)) as u64)
}

/// Reads up to 64 MiB (or 2 s) with `O_DIRECT` from `dev`: bytes per second.
pub fn measure_read(dev: &Path) -> Result<u64, Error> {
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(dev)
        .map_err(|e| {
            Error::io(
                Code::Disk,
                &format!("cannot open {} (O_DIRECT)", dev.display()),
                &e,
            )
        })?;
    let mut storage = Vec::new();
    let buf = aligned_buffer(&mut storage);
    let start = Instant::now();
    let mut read = 0u64;
    while read < MEASURE_BYTES && start.elapsed() < MEASURE_TIME {
        let n = file
            .read(buf)
            .map_err(|e| Error::io(Code::Failed, &format!("reading {}", dev.display()), &e))?;
        if n == 0 {
            break;
        }
        read += n as u64;
    }
    if read == 0 {
        return Err(Error::new(
            Code::Failed,
            format!("{} is empty", dev.display()),
        ));
    }
    Ok((read as f64 / start.elapsed().as_secs_f64().max(1e-6)) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const QEMU_IOMEM: &str = "\
00000000-00000fff : Reserved
00001000-0009fbff : System RAM
0009fc00-0009ffff : Reserved
000f0000-000fffff : Reserved
  000f0000-000fffff : System ROM
00100000-7ffdffff : System RAM
  01000000-01e02fff : Kernel code
  02000000-0246bfff : Kernel rodata
  02600000-0280a2ff : Kernel data
  02c88000-02ffffff : Kernel bss
  6f000000-7effffff : Crash kernel
7ffe0000-7fffffff : Reserved
b0000000-bfffffff : PCI MMCONFIG 0000 [bus 00-ff]
fec00000-fec003ff : IOAPIC 0
";

    const BIG_IOMEM: &str = "\
00001000-0009fbff : System RAM
00100000-bfffffff : System RAM
  01000000-02276f47 : Kernel code
  03b32000-03c55fff : Kernel bss
c0001000-eebfffff : PCI Bus 0000:00
100000000-63fffffff : System RAM
";

    #[test]
    fn iomem_parsing() {
        let e = parse_iomem(QEMU_IOMEM);
        assert_eq!(e.len(), 14);
        assert_eq!(
            e[5],
            IomemEntry {
                start: 0x100000,
                end: 0x7ffdffff,
                depth: 0,
                name: "System RAM".into()
            }
        );
        assert_eq!(e[6].depth, 1);
        assert_eq!(e[10].name, "Crash kernel");
        assert_eq!(system_ram(&e), 0x9ec00 + 0x7fee0000);
        assert!(!addresses_hidden(&e));
        let hidden =
            parse_iomem("00000000-00000000 : System RAM\n  00000000-00000000 : Kernel code\n");
        assert!(addresses_hidden(&hidden));
        assert_eq!(
            system_ram(&parse_iomem(BIG_IOMEM)),
            0x9ec00 + 0xbff00000 + 0x540000000
        );
    }

    #[test]
    fn address_avoids_kernel_and_crash_kernel() {
        let e = parse_iomem(QEMU_IOMEM);
        let p = choose_address(&e, 64 << 20).unwrap();
        // From 1 GiB up: away from the top of low RAM, where bootloaders
        // put the initrd, and from the kernel image at 16 MiB.
        assert_eq!(
            (p.phys, p.ram_start, p.ram_end),
            (1 << 30, 0x100000, 0x7ffdffff)
        );
        // The crash kernel reservation (0x6f000000-0x7effffff) is stepped over.
        let p = choose_address(&e, 0x2f00_0000).unwrap();
        assert_eq!(p.phys, 0x4000_0000);
        assert_eq!(
            choose_address(&e, 0x2f00_0000 + ALIGN).unwrap().phys,
            256 << 20
        );
        let crowded = QEMU_IOMEM.replace("6f000000-7effffff", "41000000-7effffff");
        let p = choose_address(&parse_iomem(&crowded), 64 << 20).unwrap();
        assert_eq!(p.phys, 256 << 20, "no room from 1 GiB up: from 256 MiB up");
        // Big machine: 1 GiB, below 4 GiB.
        let e = parse_iomem(BIG_IOMEM);
        let p = choose_address(&e, 64 << 20).unwrap();
        assert_eq!(p.phys, 1 << 30);
        // Too large for 1-4 GiB: from 4 GiB up.
        let p = choose_address(&e, 4 << 30).unwrap();
        assert_eq!(p.phys, 1 << 32);
        assert!(choose_address(&e, 64 << 30).is_err());
        // Never below 16 MiB or over the kernel.
        let tiny =
            parse_iomem("00100000-03ffffff : System RAM\n  01000000-02ffffff : Kernel code\n");
        assert_eq!(choose_address(&tiny, 16 << 20).unwrap().phys, 0x0300_0000);
        assert_eq!(
            choose_address(&tiny, 32 << 20).unwrap_err(),
            "no free, aligned 32.0 MiB range in System RAM"
        );
    }

    #[test]
    fn cmdline_parsing() {
        let f = parse_cmdline(
            "BOOT_IMAGE=/vmlinuz root=/dev/vda1 memmap=64M$0x60000000,1G!4G crashkernel=256M quiet -- memmap=1M$0x0",
        );
        assert_eq!(f.crashkernel.as_deref(), Some("256M"));
        assert_eq!(f.memmap.len(), 2);
        assert_eq!(
            f.memmap[0],
            Memmap {
                text: "64M$0x60000000".into(),
                size: 64 << 20,
                kind: '$',
                phys: 0x6000_0000
            }
        );
        assert_eq!((f.memmap[1].kind, f.memmap[1].phys), ('!', 4 << 30));
        assert_eq!(parse_cmdline("quiet"), CmdlineFacts::default());
        let f = parse_cmdline("panic=5 mce=off mce=bootlog panic=x mce -- panic=7");
        assert_eq!(f.panic, Some(5));
        assert_eq!(
            f.mce,
            vec!["off".to_string(), "bootlog".into(), String::new()]
        );
        assert_eq!(
            parse_meminfo_total("MemTotal:        2030000 kB\nMemFree: 1 kB\n"),
            Some(2030000 * 1024)
        );
    }

    #[test]
    fn parameters() {
        assert_eq!(memmap_param(64 << 20, 0x6000_0000), "memmap=64M$0x60000000");
        assert_eq!(
            grub_escape("memmap=64M$0x60000000"),
            "memmap=64M\\\\\\$0x60000000"
        );
        assert_eq!(
            grub_escape("memmap=64M$0x60000000"),
            r"memmap=64M\\\$0x60000000"
        );
    }

    #[test]
    fn sizing() {
        // 500 MB/s, 50 ms: 25 ms drain budget, 12.5 MB dirty bound.
        let s = size_region(500_000_000, 50).unwrap();
        assert_eq!((s.drain_budget_ms, s.dirty_bound_bytes), (25, 12_500_000));
        assert_eq!(s.region_bytes, 12 << 20);
        assert!(s.ring_bytes <= s.dirty_bound_bytes && !s.floor_applied);
        // One more MiB would not drain in time.
        let bigger = Geometry::standard(13 << 20, MAX_RECORD_BYTES).unwrap();
        assert!(bigger.ring_bytes > s.dirty_bound_bytes);
        // A slow disk gets the floor, flagged.
        let s = size_region(20_000_000, 50).unwrap();
        assert_eq!(s.region_bytes, MIN_REGION_BYTES);
        assert!(s.floor_applied);
        // Fast disk, long window.
        let s = size_region(3_000_000_000, 150).unwrap();
        assert_eq!(s.dirty_bound_bytes, 225_000_000);
        assert!(s.ring_bytes <= 225_000_000 && s.region_bytes % (1 << 20) == 0);
        assert!(
            Geometry::standard(s.region_bytes + (1 << 20), MAX_RECORD_BYTES)
                .unwrap()
                .ring_bytes
                > 225_000_000
        );
        assert!(size_region(0, 50).is_err() && size_region(1, 0).is_err());
    }

    fn machine(iomem: &str, cmdline: &str) -> Machine {
        Machine {
            iomem: parse_iomem(iomem),
            mem_total_bytes: Some(2 << 30),
            cmdline: parse_cmdline(cmdline),
            disks: Vec::new(),
        }
    }

    fn given(bytes_per_s: u64) -> Bandwidth {
        Bandwidth {
            bytes_per_s,
            source: "given",
            note: "given".into(),
        }
    }

    #[test]
    fn machine_checks_and_panic_reboot() {
        let plan = |cmdline: &str| make_plan(&machine(BIG_IOMEM, cmdline), given(500_000_000), 50);
        // Nothing on the command line: panic=10 proposed, machine checks
        // need nothing.
        let p = plan("root=/dev/vda1").unwrap();
        assert!(p.add.contains(&"panic=10".to_string()), "{:?}", p.add);
        assert!(p.remove.is_empty() && p.warnings.is_empty(), "{p:?}");
        assert!(
            p.reasoning
                .iter()
                .any(|r| r.starts_with("Machine checks need nothing")),
            "{:?}",
            p.reasoning
        );
        // panic=0 waits for ever: replaced; a rebooting one is kept.
        assert!(plan("panic=0").unwrap().add.contains(&"panic=10".into()));
        assert!(!plan("panic=-1")
            .unwrap()
            .add
            .iter()
            .any(|a| a.starts_with("panic=")));
        assert!(!plan("panic=30")
            .unwrap()
            .add
            .iter()
            .any(|a| a.starts_with("panic=")));
        // mce=off: to be removed, with a warning; other mce= options are fine.
        let p = plan("root=/dev/vda1 mce=off").unwrap();
        assert_eq!(p.remove, vec!["mce=off".to_string()]);
        assert!(
            p.warnings
                .iter()
                .any(|w| w.starts_with("mce=off is on the command line")),
            "{:?}",
            p.warnings
        );
        let text = render(&p);
        assert!(
            text.contains("Remove from the kernel command line:\n  mce=off\n"),
            "{text}"
        );
        for ok in [
            "mce=bootlog",
            "mce=3",
            "mce=off,x",
            "mce=no_cmci mce=dont_log_ce",
        ] {
            let p = plan(ok).unwrap();
            assert!(p.remove.is_empty() && p.warnings.is_empty(), "{ok}: {p:?}");
        }
    }

    #[test]
    fn whole_plan() {
        let p = make_plan(
            &machine(BIG_IOMEM, "root=/dev/vda1 quiet"),
            given(500_000_000),
            50,
        )
        .unwrap();
        assert_eq!(p.memmap, "memmap=12M$0x40000000");
        assert_eq!(
            p.add,
            vec![
                "memmap=12M$0x40000000".to_string(),
                "crashkernel=256M".into(),
                "panic=10".into()
            ]
        );
        assert!(p.remove.is_empty());
        assert_eq!(p.add_grub[0], r"memmap=12M\\\$0x40000000");
        assert_eq!(p.module_region, "region=12M@0x40000000");
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        let text = render(&p);
        assert!(
            text.contains(
                "Add to the kernel command line:\n  memmap=12M$0x40000000 crashkernel=256M panic=10"
            ),
            "{text}"
        );
        // Already configured: nothing to add; the existing region is kept.
        let p = make_plan(
            &machine(BIG_IOMEM, "memmap=64M$0x60000000 crashkernel=384M panic=30"),
            given(500_000_000),
            50,
        )
        .unwrap();
        assert!(p.add.is_empty());
        assert_eq!(p.module_region, "region=64M@0x60000000");
        assert!(
            p.warnings[0].contains("no Reserved range"),
            "{:?}",
            p.warnings
        );
        // Hidden addresses: not root.
        let e = make_plan(
            &machine("00000000-00000000 : System RAM\n", ""),
            given(1),
            50,
        )
        .unwrap_err();
        assert_eq!(e.code, Code::NotRoot);
    }

    #[test]
    fn several_devices_share_the_power_fail_budget() {
        // 500 MB/s, 50 ms: 25 ms budget; three devices get 8.333 ms each,
        // 4.166 MB of dirty data each, 12.5 MB in all.
        let s = size_regions(500_000_000, 50, 3).unwrap();
        assert_eq!((s.devices, s.device_budget_us), (3, 8333));
        assert_eq!(s.dirty_bound_bytes, 4_166_666);
        assert!(s.total_dirty_bound_bytes <= 12_500_000);
        assert!(s.ring_bytes <= s.dirty_bound_bytes && !s.floor_applied);
        assert_eq!(s.region_bytes, 4 << 20);
        // Sequentially, every device's full ring drains in the budget.
        assert!(
            u128::from(s.ring_bytes) * 3 * 1000
                <= u128::from(s.bandwidth_bytes_per_s) * u128::from(s.drain_budget_ms)
        );
        // One device: what size_region always gave.
        assert_eq!(
            size_regions(500_000_000, 50, 1).unwrap(),
            size_region(500_000_000, 50).unwrap()
        );
        assert!(size_regions(500_000_000, 50, 0).is_err());
        assert!(size_regions(500_000_000, 50, 9)
            .unwrap_err()
            .contains("1 to 8"));
    }

    #[test]
    fn several_devices_plan() {
        let backings = [
            "/dev/disk/by-id/nvme-A".to_string(),
            "/dev/disk/by-id/nvme-B".into(),
        ];
        let p = make_plan_devices(
            &machine(BIG_IOMEM, "root=/dev/vda1 quiet"),
            given(1_000_000_000),
            50,
            3,
            &backings,
        )
        .unwrap();
        // 25 ms / 3 at 1 GB/s: 8.33 MB per device, an 8M region each, one
        // 24M reservation sliced in three.
        assert_eq!(p.sizing.region_bytes, 8 << 20);
        assert_eq!(p.memmap, "memmap=24M$0x40000000");
        assert_eq!(
            p.regions,
            ["8M@0x40000000", "8M@0x40800000", "8M@0x41000000"]
        );
        assert_eq!(
            p.module_region,
            "region=8M@0x40000000,8M@0x40800000,8M@0x41000000"
        );
        assert_eq!(
            p.conf,
            [
                "REGION=8M@0x40000000",
                "BACKING=/dev/disk/by-id/nvme-A",
                "REGION_1=8M@0x40800000",
                "BACKING_1=/dev/disk/by-id/nvme-B",
                "REGION_2=8M@0x41000000",
                "BACKING_2=/dev/disk/by-id/... (the log disk)",
            ]
        );
        assert_eq!(p.add[0], "memmap=24M$0x40000000");
        let text = render(&p);
        assert!(
            text.contains(
                "In /etc/rapilog/rapilog.conf, one device each (/dev/rapilog0 first):\n  \
                 REGION=8M@0x40000000\n  BACKING=/dev/disk/by-id/nvme-A\n  REGION_1=8M@0x40800000\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("3 devices share that budget") && text.contains("8.333 ms"),
            "{text}"
        );
        // An existing reservation large enough for all three is sliced.
        let p = make_plan_devices(
            &machine(BIG_IOMEM, "memmap=64M$0x60000000 crashkernel=384M panic=30"),
            given(1_000_000_000),
            50,
            3,
            &[],
        )
        .unwrap();
        assert!(p.add.is_empty(), "{:?}", p.add);
        assert_eq!(
            p.regions,
            ["21M@0x60000000", "21M@0x61500000", "21M@0x62a00000"]
        );
        // One too small for all three is not: a new one is planned.
        let p = make_plan_devices(
            &machine(BIG_IOMEM, "memmap=16M$0x60000000 crashkernel=384M panic=30"),
            given(1_000_000_000),
            50,
            3,
            &[],
        )
        .unwrap();
        assert_eq!(p.add[0], "memmap=24M$0x40000000");
    }
}
