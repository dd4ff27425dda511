// SPDX-License-Identifier: GPL-2.0

//! The log disk's identity, recorded in the region so that a region is never
//! replayed onto another disk.
//!
//! By default it is what the disk itself reports, in the form rapilog-rescue
//! finds it by in the crash kernel (rapilog-replay/src/discover.rs has the
//! rule): the first of
//!
//! | id | attribute of `/sys/class/block/DISK/` | disks |
//! |---|---|---|
//! | `serial:VALUE` | `serial` | virtio-blk (QEMU `serial=`) |
//! | `wwid:VALUE` | `wwid` | NVMe namespace |
//! | `wwid:VALUE` | `device/wwid` | SCSI/SATA |
//! | `serial:VALUE` | `device/serial` | NVMe controller, MMC |
//! | `serial:VALUE` | `device/vpd_pg80` (bytes 4.., length in byte 3) | SCSI/SATA whose WWID is too long |
//!
//! trimmed of whitespace and NULs, with `-partN` appended for partition N.
//! A path (`backing=`) is not an identity: `/dev/sdX` names move between
//! disks from one boot to the next, so replay at load would write one
//! disk's records onto another. Only if the disk reports none of these is
//! the `backing=` path recorded, with a warning. `disk_id=` overrides all.

#![deny(unsafe_code)]

use kernel::prelude::*;
use kernel::str::BStr;

use crate::config::Config;
use crate::format::{disk, DiskId, DiskIdentity, DISK_ID_BYTES};
use crate::kernel_display::Escaped;
use crate::sys::backing::BackingDisk;

/// Where the identity came from, for the kernel log.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// `disk_id=`.
    Parameter,
    /// An attribute the disk reports.
    Disk,
    /// The `backing=` path: the disk reports nothing usable.
    Path,
}

impl Source {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Parameter => "from disk_id=",
            Self::Disk => "reported by the disk",
            Self::Path => "the backing= path",
        }
    }
}

/// The attributes tried, in order, with the id prefix each gives.
const ATTRIBUTES: [(&[u8], &[u8]); 5] = [
    (b"serial", b"serial:"),
    (b"wwid", b"wwid:"),
    (b"device/wwid", b"wwid:"),
    (b"device/serial", b"serial:"),
    (VPD_PG80, b"serial:"),
];

/// SCSI's unit serial number page, binary: the serial is bytes 4.., as
/// long as byte 3 says.
const VPD_PG80: &[u8] = b"device/vpd_pg80";

/// The identity of `disk` (`sectors`, `block_bytes` already checked).
pub(crate) fn of(
    config: &Config,
    disk: &BackingDisk,
    sectors: u64,
    block_bytes: u32,
) -> Result<(DiskIdentity, Source)> {
    let path = BStr::from_bytes(&config.backing);
    let (id, source) = if let Some(given) = config.disk_id {
        // Config checked the length against the field's size.
        (DiskId::new(&given).ok_or(EINVAL)?, Source::Parameter)
    } else if let Some(id) = reported(disk) {
        (id, Source::Disk)
    } else {
        let Some(id) = DiskId::new(&config.backing) else {
            pr_err!(
                "backing={path} refused: the disk reports no serial or WWID, and the path is longer \
                 than {DISK_ID_BYTES} bytes and cannot serve as its identity: set disk_id= to a \
                 stable id of at most {DISK_ID_BYTES} bytes\n"
            );
            return Err(EINVAL);
        };
        pr_warn!(
            "backing={path}: the disk reports no serial or WWID, so the path is recorded as its \
             identity: if disk names change between boots a region could be replayed onto the \
             wrong disk, and rapilog-rescue cannot find a /dev/sdX name after a crash; set \
             disk_id= to a stable id (see rapilog-rescue --list-disks)\n"
        );
        (id, Source::Path)
    };
    pr_info!(
        "backing={path}: disk identity \"{}\" ({})\n",
        Escaped(id.as_bytes()),
        source.name()
    );
    Ok((
        DiskIdentity {
            id,
            sectors,
            block_bytes,
        },
        source,
    ))
}

/// The first identity the disk reports that fits the superblock's field.
fn reported(disk: &BackingDisk) -> Option<DiskId> {
    let mut raw = [0u8; 128];
    let mut id = [0u8; DISK_ID_BYTES];
    for (attribute, prefix) in ATTRIBUTES {
        let Ok(n) = disk.disk_attribute(attribute, &mut raw) else {
            continue;
        };
        let raw = raw.get(..n).unwrap_or(&[]);
        let value = if attribute == VPD_PG80 {
            disk::vpd80_serial(raw)
        } else {
            disk::trim_attribute(raw)
        };
        if value.is_empty() {
            continue;
        }
        let mut len = 0;
        let mut ok = append(&mut id, &mut len, prefix) && append(&mut id, &mut len, value);
        let part = disk.partition();
        if part != 0 {
            let mut digits = [0u8; 10];
            ok = ok
                && append(&mut id, &mut len, b"-part")
                && append(&mut id, &mut len, decimal(part, &mut digits));
        }
        if ok {
            if let Some(id) = id.get(..len).and_then(DiskId::new) {
                return Some(id);
            }
        }
    }
    None
}

/// Appends `bytes` at `*len`; false if they do not fit.
fn append(buf: &mut [u8], len: &mut usize, bytes: &[u8]) -> bool {
    let Some(dst) = buf.get_mut(*len..*len + bytes.len()) else {
        return false;
    };
    dst.copy_from_slice(bytes);
    *len += bytes.len();
    true
}

/// `n` in decimal, in `digits`.
fn decimal(mut n: u32, digits: &mut [u8; 10]) -> &[u8] {
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &digits[at..]
}
