// SPDX-License-Identifier: GPL-2.0

//! The driver's control interface: the ioctls of `/dev/rapilog-ctl` and the
//! status block [`IOCTL_STATUS`] returns.
//!
//! Shared by the kernel module (which encodes) and `rapilogctl` (which
//! decodes), like the region format, so the two cannot disagree. The status
//! block is versioned: it starts with a magic, a version and its size, and a
//! reader refuses a version it does not know. Its bytes are documented in
//! `FORMAT.md` (checked by a test).
//!
//! A field may be added in reserved bytes, which are written as zero and
//! ignored on read, without a new version, when zero there means what a
//! driver that predates the field does: a reader of the same version then
//! reads either driver right, and an older reader just does not show it
//! (`powerfail_false_alarms`, `powerfail_resume_ms`: a driver without them
//! never resumed after a power-fail drain, and counted no false alarm;
//! `dead_disk_ms` and the fields after it: a driver without them never
//! failed writes for a dead disk).
//! Anything else (a new size, a moved field, a changed meaning, a new code
//! an older reader would misread) is a new version.
//!
//! | ioctl | number | who | what |
//! |---|---|---|---|
//! | [`IOCTL_STATUS`] | `_IOR('R', 1, [u8; 1536])` | `CAP_SYS_ADMIN` | fills the status block |
//! | [`IOCTL_DRAIN`] | `_IO('R', 2)` | `CAP_SYS_ADMIN` | writes back everything written before the call; returns when it is durable on the disk (interruptible) |
//! | [`IOCTL_CHECK_FENCE`] | `_IO('R', 3)` | `CAP_SYS_ADMIN` | checks the IOMMU fence again; the result is in the status |
//! | [`IOCTL_SKIP_BAD_RECORD`] | `_IOW('R', 4, u64)` | `CAP_SYS_ADMIN` | drops the bad record writeback holds at, named by its sequence number; `ENOENT` if none is held, `ESTALE` if another one is |
//! | [`IOCTL_SELECT`] | `_IOW('R', 5, u32)` | anyone | selects the device (`/dev/rapilog<N>`) the other ioctls and `read()` of this open file act on; `ENODEV` if there is none |
//! | [`IOCTL_LIST`] | `_IOR('R', 6, u64)` | anyone | fills a bitmap of the existing devices' indexes (bit N: `/dev/rapilog<N>`) |
//! | [`IOCTL_CREATE`] | `_IOW('R', 7, [u8; 512])` | `CAP_SYS_ADMIN` | creates a device at the lowest free index from a NUL-terminated parameter string, the module's per-device parameters for one device: `region=SIZE@PHYS backing=PATH [disk_id=ID]` (every other parameter is the module's); selects it for this open file; `EINVAL` for a refusal (the kernel log names it), `ENOSPC` if every index is taken |
//! | [`IOCTL_REMOVE`] | `_IOW('R', 8, u64)` | `CAP_SYS_ADMIN` | drains and removes the device whose index is the low 32 bits; `EBUSY` while its block device is open, unless bit 32 ([`REMOVE_FORCE`]) is set; `ENODEV` if there is none |
//!
//! Every ioctl but [`IOCTL_SELECT`], [`IOCTL_LIST`], [`IOCTL_CREATE`] and
//! [`IOCTL_REMOVE`] acts on the open
//! file's selected device: at open, `rapilog0`, or the lowest existing one;
//! `ENODEV` if it has been removed since.
//!
//! `read()` on the device returns the region's raw bytes (`CAP_SYS_ADMIN`,
//! checked at open): a snapshot for `rapilogctl dump`. Records being copied in
//! during the read may be torn in the snapshot; their checksums tell.

use super::field::{self, Field};
use super::record_check::RecordFault;
use super::superblock::Superblock;
use super::{Crc32c, SuperblockError, SUPERBLOCK_BYTES};

/// Name of the control device under `/dev`.
pub const CONTROL_DEVICE: &str = "rapilog-ctl";

/// Size of the status block. It is part of the ioctl number
/// ([`IOCTL_STATUS`]), so a reader and a driver of different sizes do not
/// even agree on the request: `ENOTTY`.
pub const STATUS_BYTES: usize = 1536;

/// First bytes of a status block.
pub const STATUS_MAGIC: [u8; 8] = *b"RLSTATUS";

/// Version of the status block this code writes and reads. Version 2 added
/// the disk marker fields (and grew the block from 1024 bytes). Version 3
/// added the bad-record fields (writeback's record check) in reserved
/// bytes: same size, hence the same ioctl number, but a new version, so
/// that a version-2 reader refuses the block instead of showing a device
/// whose writeback is held at a bad record as healthy. The power-fail
/// false-alarm fields came with version 3 too.
pub const STATUS_VERSION: u32 = 3;

/// `_IOC` as in `include/uapi/asm-generic/ioctl.h`.
const fn ioc(dir: u32, nr: u32, size: usize) -> u32 {
    (dir << 30) | ((size as u32) << 16) | ((b'R' as u32) << 8) | nr
}

/// Fills the caller's `STATUS_BYTES` buffer with the status block.
pub const IOCTL_STATUS: u32 = ioc(2, 1, STATUS_BYTES);
/// Drain and wait: returns once everything written before the call is
/// durable on the log disk.
pub const IOCTL_DRAIN: u32 = ioc(0, 2, 0);
/// Checks the IOMMU fence again.
pub const IOCTL_CHECK_FENCE: u32 = ioc(0, 3, 0);
/// Drops the bad record writeback holds at. The argument is a pointer to
/// its sequence number (`u64`), so that a request made from a stale status
/// cannot drop another record.
pub const IOCTL_SKIP_BAD_RECORD: u32 = ioc(1, 4, 8);
/// Selects the device this open file acts on; the argument points to its
/// index (`u32`).
pub const IOCTL_SELECT: u32 = ioc(1, 5, 4);
/// Fills a `u64` bitmap of the existing devices (bit N: `/dev/rapilog<N>`).
pub const IOCTL_LIST: u32 = ioc(2, 6, 8);

/// Size of [`IOCTL_CREATE`]'s argument: a NUL-terminated string.
pub const CREATE_BYTES: usize = 512;
/// Creates a device from a parameter string ([`CREATE_BYTES`] bytes).
pub const IOCTL_CREATE: u32 = ioc(1, 7, CREATE_BYTES);
/// Removes a device: the argument points to a `u64`, the index in the low
/// 32 bits, [`REMOVE_FORCE`] to remove it even while it is open.
pub const IOCTL_REMOVE: u32 = ioc(1, 8, 8);
/// [`IOCTL_REMOVE`]'s bit: remove the device even while it is open.
pub const REMOVE_FORCE: u64 = 1 << 32;

/// Most devices one module runs (`/dev/rapilog0` to `/dev/rapilog7`).
pub const MAX_DEVICES: usize = 8;

/// Field table of the status block.
pub mod fields {
    use super::Field;

    const fn f(name: &'static str, offset: usize, size: usize) -> Field {
        Field { name, offset, size }
    }

    /// `"RLSTATUS"`.
    pub const MAGIC: Field = f("magic", 0, 8);
    /// [`super::STATUS_VERSION`].
    pub const VERSION: Field = f("version", 8, 4);
    /// [`super::STATUS_BYTES`].
    pub const SIZE: Field = f("size", 12, 4);
    /// Physical address of the region.
    pub const REGION_PHYS: Field = f("region_phys", 16, 8);
    /// Size of the region.
    pub const REGION_BYTES: Field = f("region_bytes", 24, 8);
    /// Protection mode.
    pub const PROTECT: Field = f("protect", 32, 4);
    /// [`super::flags`].
    pub const FLAGS: Field = f("flags", 36, 4);
    /// Sequence number the next record gets (the head).
    pub const NEXT_SEQ: Field = f("next_seq", 40, 8);
    /// Oldest live record (the tail).
    pub const TAIL_SEQ: Field = f("tail_seq", 48, 8);
    /// Records reserved and not yet freed.
    pub const LIVE_RECORDS: Field = f("live_records", 56, 8);
    /// Ring bytes reserved and not yet freed.
    pub const USED_BYTES: Field = f("used_bytes", 64, 8);
    /// Bytes acknowledged and not yet written back.
    pub const DIRTY_BYTES: Field = f("dirty_bytes", 72, 8);
    /// Size of the data ring.
    pub const RING_BYTES: Field = f("ring_bytes", 80, 8);
    /// Longest wait before writeback starts.
    pub const WRITEBACK_DELAY_MS: Field = f("writeback_delay_ms", 88, 4);
    /// Hold-up window of the power-fail path (0: off).
    pub const HOLDUP_MS: Field = f("holdup_ms", 92, 4);
    /// Most dirty bytes allowed (0: no bound but the ring).
    pub const DIRTY_BOUND_BYTES: Field = f("dirty_bound_bytes", 96, 8);
    /// Writeback bandwidth used for the bound, bytes per second (0: unknown).
    pub const WRITEBACK_BANDWIDTH: Field = f("writeback_bandwidth", 104, 8);
    /// Write bios completed from the region.
    pub const WRITES: Field = f("writes", 112, 8);
    /// Bytes of those writes.
    pub const WRITE_BYTES: Field = f("write_bytes", 120, 8);
    /// Flush and FUA requests absorbed.
    pub const FLUSHES: Field = f("flushes", 128, 8);
    /// Writes that waited for ring space.
    pub const THROTTLED: Field = f("throttled", 136, 8);
    /// Read pieces served from the region.
    pub const READS_REGION: Field = f("reads_region", 144, 8);
    /// Read pieces passed to the disk.
    pub const READS_DISK: Field = f("reads_disk", 152, 8);
    /// Disk writes issued by writeback.
    pub const WB_IOS: Field = f("wb_ios", 160, 8);
    /// Bytes written back.
    pub const WB_BYTES: Field = f("wb_bytes", 168, 8);
    /// Records written back.
    pub const WB_RECORDS: Field = f("wb_records", 176, 8);
    /// Cache flushes of the disk by writeback.
    pub const WB_FLUSHES: Field = f("wb_flushes", 184, 8);
    /// Failed disk writes or flushes (retried).
    pub const DISK_ERRORS: Field = f("disk_errors", 192, 8);
    /// Write bios failed (internal errors).
    pub const WRITE_ERRORS: Field = f("write_errors", 200, 8);
    /// Time writeback spent writing and flushing, microseconds.
    pub const WB_BUSY_US: Field = f("wb_busy_us", 208, 8);
    /// Time since the module loaded, microseconds.
    pub const UPTIME_US: Field = f("uptime_us", 216, 8);
    /// Errno of the last failed disk operation (0: none).
    pub const LAST_DISK_ERRNO: Field = f("last_disk_errno", 224, 4);
    /// [`super::FenceState`] code.
    pub const FENCE_STATE: Field = f("fence_state", 228, 4);
    /// [`super::FencePolicy`] code.
    pub const FENCE_POLICY: Field = f("fence_policy", 232, 4);
    /// PCI devices checked.
    pub const FENCE_DEVICES: Field = f("fence_devices", 236, 4);
    /// PCI devices whose DMA is not translated.
    pub const FENCE_UNFENCED: Field = f("fence_unfenced", 240, 4);
    /// Power-fail signals armed: bit 0 power button, bit 1 NMI.
    pub const POWERFAIL_SIGNALS: Field = f("powerfail_signals", 244, 4);
    /// [`super::PowerFailState`] code.
    pub const POWERFAIL_STATE: Field = f("powerfail_state", 248, 4);
    /// Power-fail drains after which the machine kept running and service
    /// resumed (false alarms), since load.
    pub const POWERFAIL_FALSE_ALARMS: Field = f("powerfail_false_alarms", 252, 4);
    /// Names of unfenced devices, space separated, zero padded.
    pub const UNFENCED_LIST: Field = f("unfenced_list", 256, 128);
    /// The `backing=` path, zero padded (truncated to 128 bytes).
    pub const BACKING: Field = f("backing", 384, 128);
    /// The region's current superblock, as in the region.
    pub const SUPERBLOCK: Field = f("superblock", 512, 512);
    /// The log disk's marker at load: 0 none or unknown, 1 live, 2 clean.
    pub const MARKER_STATE: Field = f("marker_state", 1024, 4);
    /// 1 when the module went live with `accept_loss=1` over a possible loss.
    pub const LOSS_ACCEPTED: Field = f("loss_accepted", 1028, 4);
    /// The region epoch the marker names.
    pub const MARKER_EPOCH: Field = f("marker_epoch", 1032, 8);
    /// Why a loss was possible (the verdict's reason, brief), zero padded.
    pub const LOSS_REASON: Field = f("loss_reason", 1040, 128);
    /// Why the held bad record failed its check (`RecordFault::code`;
    /// 0: no record held).
    pub const BAD_REASON: Field = f("bad_reason", 1168, 4);
    /// Payload bytes of the held bad record.
    pub const BAD_LENGTH: Field = f("bad_length", 1172, 4);
    /// Sequence number of the held bad record.
    pub const BAD_SEQ: Field = f("bad_seq", 1176, 8);
    /// Its target sector (512-byte units).
    pub const BAD_SECTOR: Field = f("bad_sector", 1184, 8);
    /// The checksum its descriptor says (payload or descriptor, by reason).
    pub const BAD_EXPECTED_CRC: Field = f("bad_expected_crc", 1192, 4);
    /// The checksum found in the region.
    pub const BAD_FOUND_CRC: Field = f("bad_found_crc", 1196, 4);
    /// When writeback found it, microseconds since load.
    pub const BAD_FOUND_AT_US: Field = f("bad_found_at_us", 1200, 8);
    /// Records that failed writeback's check since load.
    pub const BAD_RECORDS: Field = f("bad_records", 1208, 8);
    /// Of those, dropped by an administrator ([`super::IOCTL_SKIP_BAD_RECORD`]).
    pub const BAD_SKIPPED: Field = f("bad_skipped", 1216, 8);
    /// After a power-fail drain, service resumes once the machine still
    /// runs this long after the last signal, ms (0: never).
    pub const POWERFAIL_RESUME_MS: Field = f("powerfail_resume_ms", 1224, 4);
    /// Once writeback has failed this long, ms, new writes fail with EIO
    /// (`dead_disk_ms`; 0: never).
    pub const DEAD_DISK_MS: Field = f("dead_disk_ms", 1228, 4);
    /// Since when writeback has failed without a success, µs since load
    /// (0: it is not failing).
    pub const FAILING_SINCE_US: Field = f("failing_since_us", 1232, 8);
    /// Since when new writes fail because the disk is dead, µs since load
    /// (0: they do not; [`super::flags::DISK_DEAD`]).
    pub const DEAD_SINCE_US: Field = f("dead_since_us", 1240, 8);
    /// How long the oldest record not yet written back has waited, µs
    /// (0: none).
    pub const OLDEST_DIRTY_US: Field = f("oldest_dirty_us", 1248, 8);
    /// Writes failed because the disk was dead, since load.
    pub const WRITES_REFUSED: Field = f("writes_refused", 1256, 8);
    /// The device's index: `/dev/rapilog<N>` (0 from a driver that
    /// predates it, which only had `rapilog0`).
    pub const DEVICE_INDEX: Field = f("device_index", 1264, 4);
    /// Devices the power-fail dirty bound is shared by: this device's
    /// bound is what drains in `holdup_ms / 2 / N` (0 from a driver that
    /// predates it: one device).
    pub const POWERFAIL_DEVICES: Field = f("powerfail_devices", 1268, 4);
    /// Zero.
    pub const RESERVED_2: Field = f("reserved_2", 1272, 264);

    /// All fields in order; they tile the status block exactly.
    pub const ALL: &[Field] = &[
        MAGIC,
        VERSION,
        SIZE,
        REGION_PHYS,
        REGION_BYTES,
        PROTECT,
        FLAGS,
        NEXT_SEQ,
        TAIL_SEQ,
        LIVE_RECORDS,
        USED_BYTES,
        DIRTY_BYTES,
        RING_BYTES,
        WRITEBACK_DELAY_MS,
        HOLDUP_MS,
        DIRTY_BOUND_BYTES,
        WRITEBACK_BANDWIDTH,
        WRITES,
        WRITE_BYTES,
        FLUSHES,
        THROTTLED,
        READS_REGION,
        READS_DISK,
        WB_IOS,
        WB_BYTES,
        WB_RECORDS,
        WB_FLUSHES,
        DISK_ERRORS,
        WRITE_ERRORS,
        WB_BUSY_US,
        UPTIME_US,
        LAST_DISK_ERRNO,
        FENCE_STATE,
        FENCE_POLICY,
        FENCE_DEVICES,
        FENCE_UNFENCED,
        POWERFAIL_SIGNALS,
        POWERFAIL_STATE,
        POWERFAIL_FALSE_ALARMS,
        UNFENCED_LIST,
        BACKING,
        SUPERBLOCK,
        MARKER_STATE,
        LOSS_ACCEPTED,
        MARKER_EPOCH,
        LOSS_REASON,
        BAD_REASON,
        BAD_LENGTH,
        BAD_SEQ,
        BAD_SECTOR,
        BAD_EXPECTED_CRC,
        BAD_FOUND_CRC,
        BAD_FOUND_AT_US,
        BAD_RECORDS,
        BAD_SKIPPED,
        POWERFAIL_RESUME_MS,
        DEAD_DISK_MS,
        FAILING_SINCE_US,
        DEAD_SINCE_US,
        OLDEST_DIRTY_US,
        WRITES_REFUSED,
        DEVICE_INDEX,
        POWERFAIL_DEVICES,
        RESERVED_2,
    ];
}

/// Bits of the `flags` field.
pub mod flags {
    /// The module is unloading.
    pub const UNLOADING: u32 = 1 << 0;
    /// A disk operation of writeback failed and is being retried.
    pub const WRITEBACK_RETRYING: u32 = 1 << 1;
    /// A drain was requested and is in progress.
    pub const DRAINING: u32 = 1 << 2;
    /// New writes are held back (power-fail drain).
    pub const WRITES_HELD: u32 = 1 << 3;
    /// Writeback holds at a record that failed its check (the `bad_*`
    /// fields name it): nothing after it is freed until it is skipped.
    pub const WRITEBACK_HELD: u32 = 1 << 4;
    /// The log disk has failed for longer than `dead_disk_ms`: new writes
    /// fail with EIO until writeback succeeds again.
    pub const DISK_DEAD: u32 = 1 << 5;
}

/// How the region is protected against stray kernel writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProtectMode {
    /// Unknown code (a newer driver).
    #[default]
    Unknown,
    /// Read-only except while a record is copied in.
    Window,
    /// Writable all the time.
    Off,
}

/// Whether every PCI device's DMA goes through an IOMMU translation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FenceState {
    /// Not checked (or an unknown code).
    #[default]
    Unchecked,
    /// Every PCI device is translated or blocked.
    Fenced,
    /// Some device can reach all memory, the region included.
    Unfenced,
}

/// What the driver does about an unfenced machine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FencePolicy {
    /// Unknown code.
    #[default]
    Unknown,
    /// Load anyway with a loud warning.
    Warn,
    /// Refuse to load.
    Require,
}

/// Where the power-fail path is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PowerFailState {
    /// No signal armed (or an unknown code).
    #[default]
    Off,
    /// Armed, waiting for a signal.
    Armed,
    /// A signal came; draining.
    Draining,
    /// Drained: everything acknowledged is on the disk, writes are held
    /// (until reboot, or until the machine has outlived the signal by
    /// `powerfail_resume_ms`: then it was a false alarm, and the path is
    /// `Armed` again).
    Drained,
    /// The drain failed; the driver panics so the crash kernel replays.
    Failed,
}

macro_rules! codes {
    ($ty:ty { $($variant:ident = $code:literal,)* } default $default:ident) => {
        impl $ty {
            /// Code in the status block.
            pub const fn code(self) -> u32 {
                match self {
                    $(Self::$variant => $code,)*
                }
            }

            /// Decodes a code; unknown codes decode as the default.
            pub const fn from_code(code: u32) -> Self {
                match code {
                    $($code => Self::$variant,)*
                    _ => Self::$default,
                }
            }
        }
    };
}

codes!(ProtectMode { Unknown = 0, Window = 1, Off = 2, } default Unknown);
codes!(FenceState { Unchecked = 0, Fenced = 1, Unfenced = 2, } default Unchecked);
codes!(FencePolicy { Unknown = 0, Warn = 1, Require = 2, } default Unknown);
codes!(PowerFailState { Off = 0, Armed = 1, Draining = 2, Drained = 3, Failed = 4, } default Off);

/// A zero-padded text field of the status block.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Text<const N: usize>([u8; N]);

impl<const N: usize> Default for Text<N> {
    fn default() -> Self {
        Self([0; N])
    }
}

impl<const N: usize> core::fmt::Debug for Text<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?}", self.as_bytes())
    }
}

impl<const N: usize> Text<N> {
    /// `bytes`, cut to `N` bytes; a cut text ends in `...`.
    pub fn new(bytes: &[u8]) -> Self {
        let mut out = [0u8; N];
        if bytes.len() <= N {
            out[..bytes.len()].copy_from_slice(bytes);
        } else {
            out.copy_from_slice(&bytes[..N]);
            let dots = N.min(3);
            out[N - dots..].fill(b'.');
        }
        Self(out)
    }

    /// `value` formatted, cut to `N` bytes like [`Text::new`]; without
    /// allocating (the driver fills `loss_reason` from a `Display`).
    pub fn from_display<D: core::fmt::Display + ?Sized>(value: &D) -> Self {
        let mut writer = TextWriter {
            out: [0u8; N],
            len: 0,
            cut: false,
        };
        // TextWriter never fails; a Display that does leaves what it wrote.
        let _ = core::fmt::write(&mut writer, format_args!("{value}"));
        if writer.cut {
            let dots = N.min(3);
            writer.out[N - dots..].fill(b'.');
        }
        Self(writer.out)
    }

    /// The text without its padding.
    pub fn as_bytes(&self) -> &[u8] {
        let end = self.0.iter().position(|&b| b == 0).unwrap_or(N);
        &self.0[..end]
    }
}

/// Collects formatted text into `N` bytes, noting whether some was cut.
struct TextWriter<const N: usize> {
    out: [u8; N],
    len: usize,
    cut: bool,
}

impl<const N: usize> core::fmt::Write for TextWriter<N> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let room = N - self.len;
        let take = s.len().min(room);
        self.out[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        if take < s.len() {
            self.cut = true;
        }
        Ok(())
    }
}

/// The decoded status block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// Physical address of the region.
    pub region_phys: u64,
    /// Size of the region.
    pub region_bytes: u64,
    /// Protection mode.
    pub protect: ProtectMode,
    /// [`flags`] bits.
    pub flags: u32,
    /// Sequence number of the next record (head).
    pub next_seq: u64,
    /// Oldest live record (tail).
    pub tail_seq: u64,
    /// Records reserved and not yet freed.
    pub live_records: u64,
    /// Ring bytes reserved and not yet freed.
    pub used_bytes: u64,
    /// Bytes acknowledged and not yet written back.
    pub dirty_bytes: u64,
    /// Size of the data ring.
    pub ring_bytes: u64,
    /// Longest wait before writeback starts, ms.
    pub writeback_delay_ms: u32,
    /// Hold-up window of the power-fail path, ms (0: off).
    pub holdup_ms: u32,
    /// Most dirty bytes allowed (0: only the ring bounds them).
    pub dirty_bound_bytes: u64,
    /// Writeback bandwidth the bound uses, bytes/s (0: unknown).
    pub writeback_bandwidth: u64,
    /// Write bios completed from the region.
    pub writes: u64,
    /// Bytes of those writes.
    pub write_bytes: u64,
    /// Flush and FUA requests absorbed.
    pub flushes: u64,
    /// Writes that waited for ring space.
    pub throttled: u64,
    /// Read pieces served from the region.
    pub reads_region: u64,
    /// Read pieces passed to the disk.
    pub reads_disk: u64,
    /// Disk writes issued by writeback.
    pub wb_ios: u64,
    /// Bytes written back.
    pub wb_bytes: u64,
    /// Records written back.
    pub wb_records: u64,
    /// Disk cache flushes by writeback.
    pub wb_flushes: u64,
    /// Failed disk operations (retried).
    pub disk_errors: u64,
    /// Failed write bios.
    pub write_errors: u64,
    /// Time writeback spent on the disk, µs.
    pub wb_busy_us: u64,
    /// Time since load, µs.
    pub uptime_us: u64,
    /// Errno of the last failed disk operation (0: none).
    pub last_disk_errno: u32,
    /// IOMMU fence.
    pub fence_state: FenceState,
    /// What an unfenced machine means.
    pub fence_policy: FencePolicy,
    /// PCI devices checked.
    pub fence_devices: u32,
    /// PCI devices not fenced.
    pub fence_unfenced: u32,
    /// Power-fail signals armed (bit 0 button, bit 1 NMI).
    pub powerfail_signals: u32,
    /// Power-fail path.
    pub powerfail_state: PowerFailState,
    /// Power-fail drains after which service resumed (false alarms).
    pub powerfail_false_alarms: u32,
    /// After a power-fail drain, service resumes once the machine still
    /// runs this long after the last signal, ms (0: never, which is also
    /// what a driver without the field does).
    pub powerfail_resume_ms: u32,
    /// Unfenced device names, space separated.
    pub unfenced_list: Text<128>,
    /// `backing=`.
    pub backing: Text<128>,
    /// The region's current superblock, encoded.
    pub superblock: [u8; SUPERBLOCK_BYTES],
    /// The log disk's marker as the module found it at load: 0 none or
    /// unknown, 1 live, 2 clean (`disk_marker::MarkerState::code`).
    pub marker_state: u32,
    /// The region epoch that marker names.
    pub marker_epoch: u64,
    /// 1 when the module went live with `accept_loss=1` over a
    /// `PossibleLoss` verdict, else 0.
    pub loss_accepted: u32,
    /// The verdict's reason when a loss was accepted
    /// (`LossReason::brief`), empty otherwise.
    pub loss_reason: Text<128>,
    /// Why the held bad record failed (`RecordFault::code`; 0: none held).
    pub bad_reason: u32,
    /// Its payload bytes.
    pub bad_length: u32,
    /// Its sequence number.
    pub bad_seq: u64,
    /// Its target sector.
    pub bad_sector: u64,
    /// The checksum its descriptor says.
    pub bad_expected_crc: u32,
    /// The checksum found.
    pub bad_found_crc: u32,
    /// When it was found, µs since load.
    pub bad_found_at_us: u64,
    /// Records that failed writeback's check since load.
    pub bad_records: u64,
    /// Of those, skipped by an administrator.
    pub bad_skipped: u64,
    /// `dead_disk_ms` (0: never fail writes, also what a driver without
    /// the field does).
    pub dead_disk_ms: u32,
    /// Since when writeback has failed without a success, µs since load
    /// (0: not failing).
    pub failing_since_us: u64,
    /// Since when new writes fail because the disk is dead, µs since load
    /// (0: they do not).
    pub dead_since_us: u64,
    /// Age of the oldest record not yet written back, µs (0: none).
    pub oldest_dirty_us: u64,
    /// Writes failed because the disk was dead, since load.
    pub writes_refused: u64,
    /// The device's index: `/dev/rapilog<N>`.
    pub device_index: u32,
    /// Devices sharing the power-fail dirty bound (0 or 1: this one alone).
    pub powerfail_devices: u32,
}

/// The bad record writeback holds at, from a [`Status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldRecord {
    /// Sequence number (what [`IOCTL_SKIP_BAD_RECORD`] takes).
    pub seq: u64,
    /// Target sector (512-byte units).
    pub sector: u64,
    /// Payload bytes.
    pub length: u32,
    /// What failed.
    pub fault: RecordFault,
    /// When writeback found it, µs since load.
    pub found_at_us: u64,
}

impl Default for Status {
    fn default() -> Self {
        Self {
            region_phys: 0,
            region_bytes: 0,
            protect: ProtectMode::Unknown,
            flags: 0,
            next_seq: 0,
            tail_seq: 0,
            live_records: 0,
            used_bytes: 0,
            dirty_bytes: 0,
            ring_bytes: 0,
            writeback_delay_ms: 0,
            holdup_ms: 0,
            dirty_bound_bytes: 0,
            writeback_bandwidth: 0,
            writes: 0,
            write_bytes: 0,
            flushes: 0,
            throttled: 0,
            reads_region: 0,
            reads_disk: 0,
            wb_ios: 0,
            wb_bytes: 0,
            wb_records: 0,
            wb_flushes: 0,
            disk_errors: 0,
            write_errors: 0,
            wb_busy_us: 0,
            uptime_us: 0,
            last_disk_errno: 0,
            fence_state: FenceState::Unchecked,
            fence_policy: FencePolicy::Unknown,
            fence_devices: 0,
            fence_unfenced: 0,
            powerfail_signals: 0,
            powerfail_state: PowerFailState::Off,
            powerfail_false_alarms: 0,
            powerfail_resume_ms: 0,
            unfenced_list: Text::default(),
            backing: Text::default(),
            superblock: [0; SUPERBLOCK_BYTES],
            marker_state: 0,
            marker_epoch: 0,
            loss_accepted: 0,
            loss_reason: Text::default(),
            bad_reason: 0,
            bad_length: 0,
            bad_seq: 0,
            bad_sector: 0,
            bad_expected_crc: 0,
            bad_found_crc: 0,
            bad_found_at_us: 0,
            bad_records: 0,
            bad_skipped: 0,
            dead_disk_ms: 0,
            failing_since_us: 0,
            dead_since_us: 0,
            oldest_dirty_us: 0,
            writes_refused: 0,
            device_index: 0,
            powerfail_devices: 0,
        }
    }
}

/// Why a status block was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusError {
    /// Shorter than its header says, or than this version's block.
    Short(usize),
    /// Not a status block.
    BadMagic,
    /// A version this code does not know.
    UnsupportedVersion(u32),
}

impl core::fmt::Display for StatusError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Short(n) => write!(f, "status block of {n} bytes, expected {STATUS_BYTES}"),
            Self::BadMagic => f.write_str("not a rapilog status block"),
            Self::UnsupportedVersion(v) => write!(
                f,
                "status version {v}, this rapilogctl reads version {STATUS_VERSION}: \
                 use the rapilogctl built with the loaded module"
            ),
        }
    }
}

impl core::error::Error for StatusError {}

impl Status {
    /// Encodes into `out`.
    pub fn encode(&self, out: &mut [u8; STATUS_BYTES]) {
        use fields::*;
        out.fill(0);
        field::write_bytes(out, MAGIC, &STATUS_MAGIC);
        field::write_u32(out, VERSION, STATUS_VERSION);
        field::write_u32(out, SIZE, STATUS_BYTES as u32);
        let u64s = [
            (REGION_PHYS, self.region_phys),
            (REGION_BYTES, self.region_bytes),
            (NEXT_SEQ, self.next_seq),
            (TAIL_SEQ, self.tail_seq),
            (LIVE_RECORDS, self.live_records),
            (USED_BYTES, self.used_bytes),
            (DIRTY_BYTES, self.dirty_bytes),
            (RING_BYTES, self.ring_bytes),
            (DIRTY_BOUND_BYTES, self.dirty_bound_bytes),
            (WRITEBACK_BANDWIDTH, self.writeback_bandwidth),
            (WRITES, self.writes),
            (WRITE_BYTES, self.write_bytes),
            (FLUSHES, self.flushes),
            (THROTTLED, self.throttled),
            (READS_REGION, self.reads_region),
            (READS_DISK, self.reads_disk),
            (WB_IOS, self.wb_ios),
            (WB_BYTES, self.wb_bytes),
            (WB_RECORDS, self.wb_records),
            (WB_FLUSHES, self.wb_flushes),
            (DISK_ERRORS, self.disk_errors),
            (WRITE_ERRORS, self.write_errors),
            (WB_BUSY_US, self.wb_busy_us),
            (UPTIME_US, self.uptime_us),
            (MARKER_EPOCH, self.marker_epoch),
            (BAD_SEQ, self.bad_seq),
            (BAD_SECTOR, self.bad_sector),
            (BAD_FOUND_AT_US, self.bad_found_at_us),
            (BAD_RECORDS, self.bad_records),
            (BAD_SKIPPED, self.bad_skipped),
            (FAILING_SINCE_US, self.failing_since_us),
            (DEAD_SINCE_US, self.dead_since_us),
            (OLDEST_DIRTY_US, self.oldest_dirty_us),
            (WRITES_REFUSED, self.writes_refused),
        ];
        for (f, v) in u64s {
            field::write_u64(out, f, v);
        }
        let u32s = [
            (PROTECT, self.protect.code()),
            (FLAGS, self.flags),
            (WRITEBACK_DELAY_MS, self.writeback_delay_ms),
            (HOLDUP_MS, self.holdup_ms),
            (LAST_DISK_ERRNO, self.last_disk_errno),
            (FENCE_STATE, self.fence_state.code()),
            (FENCE_POLICY, self.fence_policy.code()),
            (FENCE_DEVICES, self.fence_devices),
            (FENCE_UNFENCED, self.fence_unfenced),
            (POWERFAIL_SIGNALS, self.powerfail_signals),
            (POWERFAIL_STATE, self.powerfail_state.code()),
            (POWERFAIL_FALSE_ALARMS, self.powerfail_false_alarms),
            (POWERFAIL_RESUME_MS, self.powerfail_resume_ms),
            (DEAD_DISK_MS, self.dead_disk_ms),
            (DEVICE_INDEX, self.device_index),
            (POWERFAIL_DEVICES, self.powerfail_devices),
            (MARKER_STATE, self.marker_state),
            (LOSS_ACCEPTED, self.loss_accepted),
            (BAD_REASON, self.bad_reason),
            (BAD_LENGTH, self.bad_length),
            (BAD_EXPECTED_CRC, self.bad_expected_crc),
            (BAD_FOUND_CRC, self.bad_found_crc),
        ];
        for (f, v) in u32s {
            field::write_u32(out, f, v);
        }
        field::write_bytes(out, UNFENCED_LIST, &self.unfenced_list.0);
        field::write_bytes(out, BACKING, &self.backing.0);
        field::write_bytes(out, SUPERBLOCK, &self.superblock);
        field::write_bytes(out, LOSS_REASON, &self.loss_reason.0);
    }

    /// Decodes a status block. Fields this version does not know are
    /// decoded as their defaults; nothing else is checked (the driver is
    /// trusted, the superblock is checked by [`Status::decode_superblock`]).
    pub fn decode(bytes: &[u8]) -> Result<Self, StatusError> {
        use fields::*;
        if bytes.len() < 16 {
            return Err(StatusError::Short(bytes.len()));
        }
        if field::read_bytes::<8>(bytes, MAGIC) != STATUS_MAGIC {
            return Err(StatusError::BadMagic);
        }
        let version = field::read_u32(bytes, VERSION);
        if version != STATUS_VERSION {
            return Err(StatusError::UnsupportedVersion(version));
        }
        let size = field::read_u32(bytes, SIZE) as usize;
        if size < STATUS_BYTES || bytes.len() < STATUS_BYTES {
            return Err(StatusError::Short(bytes.len().min(size)));
        }
        let u64 = |f| field::read_u64(bytes, f);
        let u32 = |f| field::read_u32(bytes, f);
        Ok(Self {
            region_phys: u64(REGION_PHYS),
            region_bytes: u64(REGION_BYTES),
            protect: ProtectMode::from_code(u32(PROTECT)),
            flags: u32(FLAGS),
            next_seq: u64(NEXT_SEQ),
            tail_seq: u64(TAIL_SEQ),
            live_records: u64(LIVE_RECORDS),
            used_bytes: u64(USED_BYTES),
            dirty_bytes: u64(DIRTY_BYTES),
            ring_bytes: u64(RING_BYTES),
            writeback_delay_ms: u32(WRITEBACK_DELAY_MS),
            holdup_ms: u32(HOLDUP_MS),
            dirty_bound_bytes: u64(DIRTY_BOUND_BYTES),
            writeback_bandwidth: u64(WRITEBACK_BANDWIDTH),
            writes: u64(WRITES),
            write_bytes: u64(WRITE_BYTES),
            flushes: u64(FLUSHES),
            throttled: u64(THROTTLED),
            reads_region: u64(READS_REGION),
            reads_disk: u64(READS_DISK),
            wb_ios: u64(WB_IOS),
            wb_bytes: u64(WB_BYTES),
            wb_records: u64(WB_RECORDS),
            wb_flushes: u64(WB_FLUSHES),
            disk_errors: u64(DISK_ERRORS),
            write_errors: u64(WRITE_ERRORS),
            wb_busy_us: u64(WB_BUSY_US),
            uptime_us: u64(UPTIME_US),
            last_disk_errno: u32(LAST_DISK_ERRNO),
            fence_state: FenceState::from_code(u32(FENCE_STATE)),
            fence_policy: FencePolicy::from_code(u32(FENCE_POLICY)),
            fence_devices: u32(FENCE_DEVICES),
            fence_unfenced: u32(FENCE_UNFENCED),
            powerfail_signals: u32(POWERFAIL_SIGNALS),
            powerfail_state: PowerFailState::from_code(u32(POWERFAIL_STATE)),
            powerfail_false_alarms: u32(POWERFAIL_FALSE_ALARMS),
            powerfail_resume_ms: u32(POWERFAIL_RESUME_MS),
            unfenced_list: Text(field::read_bytes(bytes, UNFENCED_LIST)),
            backing: Text(field::read_bytes(bytes, BACKING)),
            superblock: field::read_bytes(bytes, SUPERBLOCK),
            marker_state: u32(MARKER_STATE),
            marker_epoch: u64(MARKER_EPOCH),
            loss_accepted: u32(LOSS_ACCEPTED),
            loss_reason: Text(field::read_bytes(bytes, LOSS_REASON)),
            bad_reason: u32(BAD_REASON),
            bad_length: u32(BAD_LENGTH),
            bad_seq: u64(BAD_SEQ),
            bad_sector: u64(BAD_SECTOR),
            bad_expected_crc: u32(BAD_EXPECTED_CRC),
            bad_found_crc: u32(BAD_FOUND_CRC),
            bad_found_at_us: u64(BAD_FOUND_AT_US),
            bad_records: u64(BAD_RECORDS),
            bad_skipped: u64(BAD_SKIPPED),
            dead_disk_ms: u32(DEAD_DISK_MS),
            failing_since_us: u64(FAILING_SINCE_US),
            dead_since_us: u64(DEAD_SINCE_US),
            oldest_dirty_us: u64(OLDEST_DIRTY_US),
            writes_refused: u64(WRITES_REFUSED),
            device_index: u32(DEVICE_INDEX),
            powerfail_devices: u32(POWERFAIL_DEVICES),
        })
    }

    /// Records `held` as the bad record writeback holds at (flag and
    /// fields), or clears both for `None`.
    pub fn set_held_record(&mut self, held: Option<HeldRecord>) {
        match held {
            Some(h) => {
                let (expected, found) = h.fault.checksums();
                self.flags |= flags::WRITEBACK_HELD;
                self.bad_reason = h.fault.code();
                self.bad_seq = h.seq;
                self.bad_sector = h.sector;
                self.bad_length = h.length;
                self.bad_expected_crc = expected;
                self.bad_found_crc = found;
                self.bad_found_at_us = h.found_at_us;
            }
            None => {
                self.flags &= !flags::WRITEBACK_HELD;
                self.bad_reason = 0;
                self.bad_seq = 0;
                self.bad_sector = 0;
                self.bad_length = 0;
                self.bad_expected_crc = 0;
                self.bad_found_crc = 0;
                self.bad_found_at_us = 0;
            }
        }
    }

    /// The bad record writeback holds at, if any. A block that sets the
    /// flag with an unknown reason code (a newer driver) still says a
    /// record is held: as a descriptor mismatch, the least specific fault.
    pub fn held_record(&self) -> Option<HeldRecord> {
        if self.flags & flags::WRITEBACK_HELD == 0 && self.bad_reason == 0 {
            return None;
        }
        let fault =
            RecordFault::from_code(self.bad_reason, self.bad_expected_crc, self.bad_found_crc)
                .unwrap_or(RecordFault::DescriptorMismatch);
        Some(HeldRecord {
            seq: self.bad_seq,
            sector: self.bad_sector,
            length: self.bad_length,
            fault,
            found_at_us: self.bad_found_at_us,
        })
    }

    /// The region's superblock carried in the status, decoded and checked.
    pub fn decode_superblock<C: Crc32c>(&self, crc: C) -> Result<Superblock, SuperblockError> {
        Superblock::decode(&self.superblock, crc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_the_kernel_macros() {
        // _IOR('R', 1, char[1536]) and _IO('R', n) as computed by C.
        assert_eq!(IOCTL_STATUS, 0x8600_5201);
        assert_eq!(IOCTL_DRAIN, 0x5202);
        assert_eq!(IOCTL_CHECK_FENCE, 0x5203);
        // _IOW('R', 4, __u64).
        assert_eq!(IOCTL_SKIP_BAD_RECORD, 0x4008_5204);
    }

    #[test]
    fn fields_tile_the_block() {
        let mut end = 0;
        for f in fields::ALL {
            assert_eq!(f.offset, end, "{} does not follow its predecessor", f.name);
            end = f.offset + f.size;
        }
        assert_eq!(end, STATUS_BYTES);
        assert_eq!(fields::SUPERBLOCK.size, SUPERBLOCK_BYTES);
    }

    fn sample() -> Status {
        Status {
            region_phys: 0x6000_0000,
            region_bytes: 64 << 20,
            protect: ProtectMode::Window,
            flags: flags::DRAINING,
            next_seq: 1234,
            tail_seq: 1200,
            live_records: 34,
            used_bytes: 34 * 4096,
            dirty_bytes: 30 * 4096,
            ring_bytes: 60 << 20,
            writeback_delay_ms: 1000,
            holdup_ms: 50,
            dirty_bound_bytes: 4 << 20,
            writeback_bandwidth: 80 << 20,
            writes: 1,
            write_bytes: 2,
            flushes: 3,
            throttled: 4,
            reads_region: 5,
            reads_disk: 6,
            wb_ios: 7,
            wb_bytes: 8,
            wb_records: 9,
            wb_flushes: 10,
            disk_errors: 11,
            write_errors: 12,
            wb_busy_us: 13,
            uptime_us: 14,
            last_disk_errno: 5,
            fence_state: FenceState::Unfenced,
            fence_policy: FencePolicy::Warn,
            fence_devices: 6,
            fence_unfenced: 2,
            powerfail_signals: 3,
            powerfail_state: PowerFailState::Armed,
            powerfail_false_alarms: 2,
            powerfail_resume_ms: 5000,
            unfenced_list: Text::new(b"0000:00:02.0 0000:00:03.0"),
            backing: Text::new(b"/dev/disk/by-id/virtio-log"),
            superblock: [7; SUPERBLOCK_BYTES],
            marker_state: 1,
            marker_epoch: 0x9BB1_D511_32C5_F77D,
            loss_accepted: 1,
            loss_reason: Text::new(b"marker live for epoch 0x1; region holds no records"),
            bad_reason: 1,
            bad_length: 4096,
            bad_seq: 1201,
            bad_sector: 160,
            bad_expected_crc: 0xA1B2_C3D4,
            bad_found_crc: 0x0102_0304,
            bad_found_at_us: 15,
            bad_records: 2,
            bad_skipped: 1,
            dead_disk_ms: 30_000,
            failing_since_us: 16,
            dead_since_us: 17,
            oldest_dirty_us: 18,
            writes_refused: 19,
            device_index: 5,
            powerfail_devices: 3,
        }
    }

    #[test]
    fn round_trip() {
        let status = sample();
        let mut bytes = [0u8; STATUS_BYTES];
        status.encode(&mut bytes);
        assert_eq!(&bytes[..8], b"RLSTATUS");
        assert_eq!(Status::decode(&bytes), Ok(status));
    }

    #[test]
    fn refuses_what_is_not_a_v3_block() {
        let mut bytes = [0u8; STATUS_BYTES];
        sample().encode(&mut bytes);
        assert_eq!(bytes[8..12], 3u32.to_le_bytes());
        assert_eq!(Status::decode(&bytes[..100]), Err(StatusError::Short(100)));
        assert_eq!(
            Status::decode(&bytes[..1024]),
            Err(StatusError::Short(1024))
        );
        // Version 2 had the same size: refused by version, not by size.
        for old in [1u8, 2] {
            let mut other = bytes;
            other[8] = old;
            assert_eq!(
                Status::decode(&other),
                Err(StatusError::UnsupportedVersion(u32::from(old)))
            );
        }
        let mut other = bytes;
        other[0] = b'X';
        assert_eq!(Status::decode(&other), Err(StatusError::BadMagic));
    }

    #[test]
    fn held_record_round_trips_through_flag_and_fields() {
        let mut s = Status::default();
        assert_eq!(s.held_record(), None);
        let held = HeldRecord {
            seq: 77,
            sector: 4096,
            length: 8192,
            fault: RecordFault::PayloadChecksum {
                expected: 0xDEAD_BEEF,
                found: 0x1234_5678,
            },
            found_at_us: 99,
        };
        s.set_held_record(Some(held));
        assert_ne!(s.flags & flags::WRITEBACK_HELD, 0);
        let mut bytes = [0u8; STATUS_BYTES];
        s.encode(&mut bytes);
        let back = Status::decode(&bytes).unwrap();
        assert_eq!(back.held_record(), Some(held));
        assert_eq!(field::read_u64(&bytes, fields::BAD_SEQ), 77);
        assert_eq!(field::read_u32(&bytes, fields::BAD_FOUND_CRC), 0x1234_5678);
        s.set_held_record(None);
        assert_eq!(s, Status::default());
        // A newer driver's reason code: still a held record.
        s.flags = flags::WRITEBACK_HELD;
        s.bad_reason = 42;
        assert_eq!(
            s.held_record().map(|h| h.fault),
            Some(RecordFault::DescriptorMismatch)
        );
    }

    #[test]
    fn false_alarm_fields_sit_where_the_layout_says() {
        let mut bytes = [0u8; STATUS_BYTES];
        sample().encode(&mut bytes);
        assert_eq!(bytes[252..256], 2u32.to_le_bytes());
        assert_eq!(bytes[1224..1228], 5000u32.to_le_bytes());
        assert!(bytes[1272..].iter().all(|&b| b == 0), "reserved not zero");
    }

    #[test]
    fn device_fields_sit_where_the_layout_says_and_zero_means_rapilog0() {
        let mut bytes = [0u8; STATUS_BYTES];
        sample().encode(&mut bytes);
        assert_eq!(bytes[1264..1268], 5u32.to_le_bytes());
        assert_eq!(bytes[1268..1272], 3u32.to_le_bytes());
        bytes[1264..1272].fill(0);
        let old = Status::decode(&bytes).unwrap();
        assert_eq!((old.device_index, old.powerfail_devices), (0, 0));
    }

    #[test]
    fn dead_disk_fields_sit_where_the_layout_says_and_zero_means_never() {
        let mut bytes = [0u8; STATUS_BYTES];
        sample().encode(&mut bytes);
        assert_eq!(bytes[1228..1232], 30_000u32.to_le_bytes());
        assert_eq!(bytes[1232..1240], 16u64.to_le_bytes());
        assert_eq!(bytes[1240..1248], 17u64.to_le_bytes());
        assert_eq!(bytes[1248..1256], 18u64.to_le_bytes());
        assert_eq!(bytes[1256..1264], 19u64.to_le_bytes());
        // A driver without them leaves zeros: never fail writes, not failing.
        bytes[1228..1264].fill(0);
        let old = Status::decode(&bytes).unwrap();
        assert_eq!(old.dead_disk_ms, 0);
        assert_eq!(old.dead_since_us, 0);
        assert_eq!(old.writes_refused, 0);
    }

    #[test]
    fn long_text_is_cut_visibly() {
        let t = Text::<8>::new(b"0123456789");
        assert_eq!(t.as_bytes(), b"01234...");
        assert_eq!(Text::<8>::new(b"abc").as_bytes(), b"abc");
    }

    #[test]
    fn text_from_display_cuts_like_new() {
        assert_eq!(Text::<8>::from_display(&"abc").as_bytes(), b"abc");
        assert_eq!(Text::<8>::from_display(&"01234567").as_bytes(), b"01234567");
        assert_eq!(
            Text::<8>::from_display(&format_args!("{}{}", "0123", 456789)).as_bytes(),
            b"01234..."
        );
        assert_eq!(Text::<2>::from_display(&"abc").as_bytes(), b"..");
        let reason = super::super::LossReason::LiveRegionMissing { epoch: u64::MAX };
        let text = Text::<128>::from_display(&reason.brief());
        assert!(text
            .as_bytes()
            .starts_with(b"marker live for epoch 0xffffffffffffffff"));
        assert!(
            !text.as_bytes().ends_with(b"..."),
            "the brief reason was cut"
        );
    }

    #[test]
    fn unknown_codes_decode_as_defaults() {
        assert_eq!(FenceState::from_code(99), FenceState::Unchecked);
        assert_eq!(PowerFailState::from_code(4), PowerFailState::Failed);
        assert_eq!(ProtectMode::from_code(2), ProtectMode::Off);
    }
}
