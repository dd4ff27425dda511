// SPDX-License-Identifier: GPL-2.0

//! The driver's configuration, validated from the module parameters before
//! anything touches the region or the disk.

#![deny(unsafe_code)]

use core::fmt;

use crate::format::control::{FencePolicy, ProtectMode, MAX_DEVICES};
use crate::format::region_spec::{RegionSpec, RegionSpecError};
use crate::format::DISK_ID_BYTES;
use crate::kernel_display::Escaped as Raw;
use crate::params;
use crate::sys::powerfail_signals;

/// Upper bound of `holdup_ms`: longer than any power supply holds up.
const MAX_HOLDUP_MS: u32 = 10_000;

/// `powerfail_resume_ms` is 0 (never resume) or at least this, ...
const MIN_RESUME_MS: u32 = 1000;

/// ... and at least this many hold-up windows: `holdup_ms` is what the
/// supply guarantees at full load, and at light load it holds up several
/// times longer. Resuming while it might still hold up would admit writes
/// that a power failure already under way loses: no second signal comes.
const RESUME_HOLDUPS: u32 = 10;

/// Upper bound of `powerfail_resume_ms` (an hour): past it, 0 says better
/// what is meant.
const MAX_RESUME_MS: u32 = 3_600_000;

/// The shortest `powerfail_resume_ms` allowed with `holdup_ms`.
const fn min_resume_ms(holdup_ms: u32) -> u32 {
    let holdups = holdup_ms.saturating_mul(RESUME_HOLDUPS);
    if holdups > MIN_RESUME_MS {
        holdups
    } else {
        MIN_RESUME_MS
    }
}

/// Upper bound of `writeback_delay_ms`: writeback that waits longer only
/// holds ring space longer without merging noticeably more.
const MAX_WRITEBACK_DELAY_MS: u32 = 60_000;

/// Range of `stop_drain_ms`: long enough for a slow disk to take a full
/// ring, short enough that a dead disk cannot stall a reboot for long.
const STOP_DRAIN_MS: core::ops::RangeInclusive<u32> = 100..=600_000;

/// Range of `dead_disk_ms` (0 aside: never fail writes): long enough to
/// ride out a path failover or a disk reset, short enough that writers
/// blocked on a full ring fail before the hung-task detector (120 s by
/// default) calls them hung.
const DEAD_DISK_MS: core::ops::RangeInclusive<u32> = 1000..=600_000;

/// How the region is protected against stray kernel writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Protect {
    /// Mapped read-only except during the copy of a record.
    Window,
    /// Mapped writable all the time (measures what protection costs).
    Off,
}

impl Protect {
    fn parse(text: &[u8]) -> Option<Self> {
        match text {
            b"window" => Some(Self::Window),
            b"off" => Some(Self::Off),
            _ => None,
        }
    }

    /// The parameter value that selects this mode.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Window => "window",
            Self::Off => "off",
        }
    }

    /// The mode as the control interface reports it.
    pub(crate) fn mode(self) -> ProtectMode {
        match self {
            Self::Window => ProtectMode::Window,
            Self::Off => ProtectMode::Off,
        }
    }
}

/// What the driver does once the power-fail drain is complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PowerFailAction {
    /// Hold new writes and wait for the power to go.
    Quiesce,
    /// Power the machine off.
    PowerOff,
}

/// The power-fail path's settings.
#[derive(Clone, Copy)]
pub(crate) struct PowerFailConfig {
    /// Signals armed: `sys::powerfail_signals::{BUTTON, NMI}` bits; 0 is off.
    pub(crate) signals: u32,
    /// Hold-up window, ms.
    pub(crate) holdup_ms: u32,
    /// Assumed writeback bandwidth, KiB/s; 0 to measure.
    pub(crate) drain_kib_per_sec: u32,
    /// After the drain.
    pub(crate) action: PowerFailAction,
    /// After a drain, service resumes once the machine has outlived the
    /// last signal by this long (a false alarm); 0: never. Always 0 with
    /// [`PowerFailAction::PowerOff`], which never comes back.
    pub(crate) resume_ms: u32,
}

/// The power-fail path's parameters as given.
struct PowerFailParams {
    signals: &'static [u8],
    holdup_ms: u32,
    drain_kib_per_sec: u32,
    action: &'static [u8],
    resume_ms: u32,
}

impl PowerFailParams {
    fn parse(self) -> Result<PowerFailConfig, ConfigError<'static>> {
        let signals = parse_signals(self.signals).ok_or(ConfigError::PowerFail(self.signals))?;
        if self.holdup_ms == 0 || self.holdup_ms > MAX_HOLDUP_MS {
            return Err(ConfigError::Holdup(self.holdup_ms));
        }
        let action = match self.action {
            b"quiesce" => PowerFailAction::Quiesce,
            b"poweroff" => PowerFailAction::PowerOff,
            _ => return Err(ConfigError::PowerFailAction(self.action)),
        };
        let resume_ms = self.resume_ms;
        // The range always; the relation to the hold-up window only where
        // a resume can happen, so that a large holdup_ms= without a signal
        // or with poweroff is not refused over the default resume time.
        let resumes = signals != 0 && action == PowerFailAction::Quiesce;
        if resume_ms > MAX_RESUME_MS
            || (resumes && resume_ms != 0 && resume_ms < min_resume_ms(self.holdup_ms))
        {
            return Err(ConfigError::Resume {
                resume_ms,
                holdup_ms: self.holdup_ms,
            });
        }
        Ok(PowerFailConfig {
            signals,
            holdup_ms: self.holdup_ms,
            drain_kib_per_sec: self.drain_kib_per_sec,
            action,
            resume_ms: if resumes { resume_ms } else { 0 },
        })
    }
}

fn parse_signals(text: &[u8]) -> Option<u32> {
    if text.is_empty() || text == b"off" {
        return Some(0);
    }
    let mut signals = 0;
    for name in text.split(|&b| b == b',') {
        signals |= match name {
            b"button" => powerfail_signals::BUTTON,
            b"nmi" => powerfail_signals::NMI,
            _ => return None,
        };
    }
    Some(signals)
}

fn parse_fence_policy(text: &[u8]) -> Option<FencePolicy> {
    match text {
        b"warn" => Some(FencePolicy::Warn),
        b"require" => Some(FencePolicy::Require),
        _ => None,
    }
}

/// Most bytes of one device's `backing=` path (the parameter's whole list
/// holds 255).
pub(crate) const MAX_PATH_BYTES: usize = 255;

/// A short byte string owned by the configuration (a path, a disk id):
/// copies of the parameters' bytes or of an ioctl's, so a configuration
/// outlives whatever it was parsed from.
#[derive(Clone, Copy)]
pub(crate) struct Bytes<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Bytes<N> {
    /// `bytes`, if at most `N` of them.
    pub(crate) fn new(bytes: &[u8]) -> Option<Self> {
        let mut buf = [0u8; N];
        buf.get_mut(..bytes.len())?.copy_from_slice(bytes);
        Some(Self {
            buf,
            len: bytes.len(),
        })
    }
}

impl<const N: usize> core::ops::Deref for Bytes<N> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }
}

/// A validated configuration of one device.
#[derive(Clone, Copy)]
pub(crate) struct Config {
    /// The device's index: `/dev/rapilog<index>`.
    pub(crate) index: u32,
    /// The reserved physical region.
    pub(crate) region: RegionSpec,
    /// Path of the backing log disk.
    pub(crate) backing: Bytes<MAX_PATH_BYTES>,
    /// Protection mode of the region.
    pub(crate) protect: Protect,
    /// Identity of the log disk recorded in the region, `disk_id=`; `None`:
    /// the one the disk reports ([`crate::disk_identity`]).
    pub(crate) disk_id: Option<Bytes<DISK_ID_BYTES>>,
    /// Longest time a record waits before writeback starts, in ms.
    pub(crate) writeback_delay_ms: u32,
    /// Longest time an orderly stop waits for the drain, in ms.
    pub(crate) stop_drain_ms: u32,
    /// How long writeback may fail before new writes fail, in ms (0: never).
    pub(crate) dead_disk_ms: u32,
    /// Go live over a possible loss the disk's marker reports.
    pub(crate) accept_loss: bool,
    /// What an unfenced machine means.
    pub(crate) iommu_fence: FencePolicy,
    /// The power-fail path.
    pub(crate) powerfail: PowerFailConfig,
    /// The protection self-test to run after loading, if any.
    pub(crate) stray_write: Option<StrayWrite>,
}

/// A deliberate stray write into the region (`test_stray_write=`), to prove
/// the write protection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StrayWrite {
    /// Through the permanent read-only view.
    ThroughView,
    /// Through the alias of a write window that has been closed.
    ThroughClosedWindow,
}

/// A parameter that was missing or malformed, with what to do about it.
pub(crate) enum ConfigError<'a> {
    /// `region=` is missing or malformed.
    Region(&'a [u8], RegionSpecError),
    /// `backing=` is missing or not an absolute path.
    Backing(&'a [u8]),
    /// `protect=` names no known mode.
    Protect(&'static [u8]),
    /// `disk_id=` is too long.
    DiskId(&'a [u8]),
    /// `writeback_delay_ms=` is out of range.
    WritebackDelay(u32),
    /// `stop_drain_ms=` is out of range.
    StopDrain(u32),
    /// `dead_disk_ms=` is out of range.
    DeadDisk(u32),
    /// `accept_loss=` is not 0 or 1.
    AcceptLoss(u32),
    /// `iommu_fence=` names no known policy.
    IommuFence(&'static [u8]),
    /// `powerfail=` names an unknown signal.
    PowerFail(&'static [u8]),
    /// `holdup_ms=` is out of range.
    Holdup(u32),
    /// `powerfail_action=` names no known action.
    PowerFailAction(&'static [u8]),
    /// `powerfail_resume_ms=` is out of range, or not well above
    /// `holdup_ms=`.
    Resume { resume_ms: u32, holdup_ms: u32 },
    /// `test_stray_write=` is not 0, 1 or 2.
    StrayWrite(u32),
    /// A per-device list has another length than `region=`'s.
    ListLength {
        param: &'static str,
        got: usize,
        expected: usize,
    },
    /// `region=` lists more devices than one module runs.
    TooMany(usize),
    /// Two devices' regions overlap.
    Overlap {
        a: usize,
        b: usize,
        first: RegionSpec,
        second: RegionSpec,
    },
    /// A device's parameter string (`IOCTL_CREATE`) names something else
    /// than `region=`, `backing=` and `disk_id=`.
    CreateParam(&'a [u8]),
    /// Two devices name the same log disk.
    SameBacking {
        a: usize,
        b: usize,
        path: Bytes<MAX_PATH_BYTES>,
    },
}

/// The elements of a comma-separated per-device list (`region=`,
/// `backing=`, `disk_id=`): one empty element for an empty value.
fn list<'a>(raw: &'a [u8]) -> impl Iterator<Item = &'a [u8]> {
    raw.split(|&b| b == b',')
}

impl Config {
    /// Validates the module parameters for every device: `region=`,
    /// `backing=` and `disk_id=` are per-device lists (device i gets the
    /// i-th element of each; a single value is one device, as it always
    /// was), every other parameter applies to every device. Returns how
    /// many devices they name; [`Config::from_params_of_device`] gives
    /// each. (One configuration at a time, not an array of them: the
    /// kernel stack is small.)
    #[inline(never)]
    pub(crate) fn devices_from_params() -> Result<u32, ConfigError<'static>> {
        let (regions, backings, ids) = (
            params::region.value(),
            params::backing.value(),
            params::disk_id.value(),
        );
        let count = list(regions).count();
        if count > MAX_DEVICES {
            return Err(ConfigError::TooMany(count));
        }
        // The first device's own errors first: a single device reports
        // exactly what it always did.
        Self::from_params_of_device(0)?;
        let lengths = [
            ("backing", list(backings).count()),
            // Empty: no disk_id for any device.
            (
                "disk_id",
                if ids.is_empty() {
                    count
                } else {
                    list(ids).count()
                },
            ),
        ];
        if let Some(&(param, got)) = lengths.iter().find(|(_, got)| *got != count) {
            return Err(ConfigError::ListLength {
                param,
                got,
                expected: count,
            });
        }
        for j in 1..count as u32 {
            let config = Self::from_params_of_device(j)?;
            for i in 0..j {
                check_distinct(Some(&Self::from_params_of_device(i)?), &config)?;
            }
        }
        Ok(count as u32)
    }

    /// Device `index`'s configuration from the module parameters (its
    /// element of each per-device list).
    #[inline(never)]
    pub(crate) fn from_params_of_device(index: u32) -> Result<Self, ConfigError<'static>> {
        let nth = |raw: &'static [u8]| list(raw).nth(index as usize).unwrap_or(b"");
        Self::from_params_of(
            index,
            nth(params::region.value()),
            nth(params::backing.value()),
            nth(params::disk_id.value()),
        )
    }

    /// The configuration of a device created at run time (`IOCTL_CREATE`)
    /// as device `index`: `text` is `region=SIZE@PHYS backing=PATH
    /// [disk_id=ID]`, separated by spaces, as the module's per-device
    /// parameters for one device; every other parameter is the module's.
    pub(crate) fn from_create(index: u32, text: &[u8]) -> Result<Self, ConfigError<'_>> {
        let (mut region, mut backing, mut disk_id): (&[u8], &[u8], &[u8]) = (b"", b"", b"");
        for word in text.split(|b| b.is_ascii_whitespace()) {
            if word.is_empty() {
                continue;
            }
            if let Some(value) = word.strip_prefix(b"region=") {
                region = value;
            } else if let Some(value) = word.strip_prefix(b"backing=") {
                backing = value;
            } else if let Some(value) = word.strip_prefix(b"disk_id=") {
                disk_id = value;
            } else {
                return Err(ConfigError::CreateParam(word));
            }
        }
        // One device: no lists.
        for (param, value) in [
            ("region", region),
            ("backing", backing),
            ("disk_id", disk_id),
        ] {
            if value.contains(&b',') {
                return Err(ConfigError::ListLength {
                    param,
                    got: list(value).count(),
                    expected: 1,
                });
            }
        }
        Self::from_params_of(index, region, backing, disk_id)
    }

    /// One device's configuration: its own `region`, `backing` and
    /// `disk_id`, every other parameter the module's.
    fn from_params_of<'a>(
        index: u32,
        region: &'a [u8],
        backing: &'a [u8],
        disk_id: &'a [u8],
    ) -> Result<Self, ConfigError<'a>> {
        Self::parse(
            index,
            region,
            backing,
            params::protect.value(),
            disk_id,
            params::writeback_delay_ms.value(),
            params::stop_drain_ms.value(),
            params::dead_disk_ms.value(),
            params::accept_loss.value(),
            params::iommu_fence.value(),
            PowerFailParams {
                signals: params::powerfail.value(),
                holdup_ms: params::holdup_ms.value(),
                drain_kib_per_sec: params::drain_kib_per_sec.value(),
                action: params::powerfail_action.value(),
                resume_ms: params::powerfail_resume_ms.value(),
            },
            params::test_stray_write.value(),
        )
    }

    fn parse<'a>(
        index: u32,
        region: &'a [u8],
        backing: &'a [u8],
        protect: &'static [u8],
        disk_id: &'a [u8],
        writeback_delay_ms: u32,
        stop_drain_ms: u32,
        dead_disk_ms: u32,
        accept_loss: u32,
        iommu_fence: &'static [u8],
        powerfail: PowerFailParams,
        stray_write: u32,
    ) -> Result<Self, ConfigError<'a>> {
        let region = RegionSpec::parse(region).map_err(|e| ConfigError::Region(region, e))?;
        if !backing.starts_with(b"/") {
            return Err(ConfigError::Backing(backing));
        }
        let backing = Bytes::new(backing).ok_or(ConfigError::Backing(backing))?;
        let protect = Protect::parse(protect).ok_or(ConfigError::Protect(protect))?;
        let disk_id = match disk_id {
            b"" => None,
            id => Some(Bytes::new(id).ok_or(ConfigError::DiskId(id))?),
        };
        if writeback_delay_ms > MAX_WRITEBACK_DELAY_MS {
            return Err(ConfigError::WritebackDelay(writeback_delay_ms));
        }
        if !STOP_DRAIN_MS.contains(&stop_drain_ms) {
            return Err(ConfigError::StopDrain(stop_drain_ms));
        }
        if dead_disk_ms != 0 && !DEAD_DISK_MS.contains(&dead_disk_ms) {
            return Err(ConfigError::DeadDisk(dead_disk_ms));
        }
        let accept_loss = match accept_loss {
            0 => false,
            1 => true,
            n => return Err(ConfigError::AcceptLoss(n)),
        };
        let iommu_fence =
            parse_fence_policy(iommu_fence).ok_or(ConfigError::IommuFence(iommu_fence))?;
        let powerfail = powerfail.parse()?;
        let stray_write = match stray_write {
            0 => None,
            1 => Some(StrayWrite::ThroughView),
            2 => Some(StrayWrite::ThroughClosedWindow),
            n => return Err(ConfigError::StrayWrite(n)),
        };
        Ok(Self {
            index,
            region,
            backing,
            protect,
            disk_id,
            writeback_delay_ms,
            stop_drain_ms,
            dead_disk_ms,
            accept_loss,
            iommu_fence,
            powerfail,
            stray_write,
        })
    }
}

/// Refuses `config` if its region overlaps, or its log disk is named by,
/// one of `others`.
pub(crate) fn check_distinct<'a>(
    others: impl IntoIterator<Item = &'a Config>,
    config: &Config,
) -> Result<(), ConfigError<'static>> {
    let (start, end) = (config.region.phys, config.region.phys + config.region.size);
    for other in others {
        let (a, b) = (other.index as usize, config.index as usize);
        let (o_start, o_end) = (other.region.phys, other.region.phys + other.region.size);
        if start < o_end && o_start < end {
            return Err(ConfigError::Overlap {
                a,
                b,
                first: other.region,
                second: config.region,
            });
        }
        if *other.backing == *config.backing {
            return Err(ConfigError::SameBacking {
                a,
                b,
                path: config.backing,
            });
        }
    }
    Ok(())
}

impl fmt::Display for ConfigError<'_> {
    /// One line naming the parameter, what was wrong and how to fix it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Region(raw, RegionSpecError::Empty) if raw.is_empty() => f.write_str(
                "region= is required: reserve memory at boot with memmap=SIZE$PHYS \
                 (e.g. memmap=64M$0x60000000) and load with region=64M@0x60000000",
            ),
            Self::Region(raw, e) => write!(f, "region={} refused: {e}", Raw(raw)),
            Self::Backing(raw) if raw.is_empty() => {
                f.write_str("backing= is required: the log disk's path, e.g. backing=/dev/disk/by-id/virtio-log")
            }
            Self::Backing(raw) => {
                write!(f, "backing={} refused: expected an absolute path such as /dev/sdb", Raw(raw))
            }
            Self::Protect(raw) => {
                write!(f, "protect={} refused: expected window (default) or off", Raw(raw))
            }
            Self::DiskId(raw) => write!(
                f,
                "disk_id={} refused: at most {DISK_ID_BYTES} bytes (e.g. the disk's serial or WWN)",
                Raw(raw)
            ),
            Self::IommuFence(raw) => write!(
                f,
                "iommu_fence={} refused: expected warn (default) or require",
                Raw(raw)
            ),
            Self::PowerFail(raw) => write!(
                f,
                "powerfail={} refused: expected button, nmi, button,nmi, or empty for none",
                Raw(raw)
            ),
            Self::Holdup(ms) => write!(
                f,
                "holdup_ms={ms} refused: expected 1 to {MAX_HOLDUP_MS} (the power supply's hold-up \
                 time; the ATX spec guarantees about 17 ms at full load)"
            ),
            Self::PowerFailAction(raw) => write!(
                f,
                "powerfail_action={} refused: expected quiesce (default) or poweroff",
                Raw(raw)
            ),
            Self::Resume {
                resume_ms,
                holdup_ms,
            } => write!(
                f,
                "powerfail_resume_ms={resume_ms} refused: expected 0 (never: after a power-fail \
                 drain, hold writes until reboot) or {} to {MAX_RESUME_MS} (how long the machine \
                 must still run after a power-fail signal before service resumes: at least \
                 {MIN_RESUME_MS} and {RESUME_HOLDUPS} x holdup_ms={holdup_ms}, well past any \
                 hold-up time)",
                min_resume_ms(*holdup_ms)
            ),
            Self::StrayWrite(n) => write!(
                f,
                "test_stray_write={n} refused: expected 0 (off), 1 (read-only view) or 2 (closed window)"
            ),
            Self::AcceptLoss(n) => write!(
                f,
                "accept_loss={n} refused: expected 0 (default: refuse a disk whose marker reports a \
                 possible loss) or 1 (go live anyway)"
            ),
            Self::StopDrain(ms) => write!(
                f,
                "stop_drain_ms={ms} refused: expected {} to {} (how long a reboot, power-off or \
                 suspend may wait for the region to reach the disk)",
                STOP_DRAIN_MS.start(),
                STOP_DRAIN_MS.end()
            ),
            Self::DeadDisk(ms) => write!(
                f,
                "dead_disk_ms={ms} refused: expected 0 (never fail writes: writers wait for the \
                 disk for ever) or {} to {} (how long the log disk may fail before new writes \
                 fail with EIO)",
                DEAD_DISK_MS.start(),
                DEAD_DISK_MS.end()
            ),
            Self::ListLength {
                param,
                got,
                expected,
            } => write!(
                f,
                "{param}= lists {got} values refused: expected {expected}, one per region= \
                 (comma-separated lists: /dev/rapilogN gets the N-th element of region=, \
                 backing= and disk_id=; disk_id= may also be empty, or have empty elements)"
            ),
            Self::TooMany(n) => write!(
                f,
                "region= lists {n} regions refused: at most {MAX_DEVICES} devices \
                 (rapilog0 to rapilog{})",
                MAX_DEVICES - 1
            ),
            Self::Overlap {
                a,
                b,
                first,
                second,
            } => write!(
                f,
                "region= refused: rapilog{a}'s region {first} and rapilog{b}'s region {second} \
                 overlap; give each device its own memmap= range (or its own slice of one)"
            ),
            Self::CreateParam(word) => write!(
                f,
                "create refused: {} is not a device parameter: expected region=SIZE@PHYS \
                 backing=PATH [disk_id=ID] (every other parameter is the module's)",
                Raw(word)
            ),
            Self::SameBacking { a, b, path } => write!(
                f,
                "backing= refused: {} is named for rapilog{a} and for rapilog{b}; each device \
                 needs its own log disk",
                Raw(&**path)
            ),
            Self::WritebackDelay(ms) => write!(
                f,
                "writeback_delay_ms={ms} refused: expected 0 to {MAX_WRITEBACK_DELAY_MS}"
            ),
        }
    }
}
