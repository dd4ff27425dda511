// SPDX-License-Identifier: GPL-2.0

//! Finding the log disk by its identity, in sysfs.
//!
//! # The identity rule
//!
//! The superblock's `disk_id` is ASCII text `KIND:VALUE`, where VALUE is a
//! sysfs attribute of the disk with leading and trailing whitespace (and
//! NULs) removed:
//!
//! | id | source (first that exists and is not empty) | devices |
//! |---|---|---|
//! | `serial:VALUE` | `/sys/block/NAME/serial` | virtio-blk (QEMU `serial=`) |
//! | `serial:VALUE` | `/sys/block/NAME/device/serial` | NVMe (controller serial), MMC |
//! | `serial:VALUE` | `/sys/block/NAME/device/vpd_pg80` (bytes 4.., page length in byte 3) | SCSI/SATA unit serial |
//! | `wwid:VALUE` | `/sys/block/NAME/wwid` | NVMe namespace (`eui.`, `nguid.`, `nvme.`) |
//! | `wwid:VALUE` | `/sys/block/NAME/device/wwid` | SCSI/SATA (`naa.`, `t10.`, `eui.`) |
//!
//! A disk also answers to the `/dev/disk/by-id` path udev would give it,
//! for regions whose id is such a path (rapilog.ko records its `backing=`
//! path when no `disk_id=` is set), as far as it follows from sysfs alone:
//!
//! | id | from |
//! |---|---|
//! | `/dev/disk/by-id/virtio-VALUE` | `serial` (virtio-blk) |
//! | `/dev/disk/by-id/nvme-VALUE` | `wwid` (NVMe namespace) |
//! | `/dev/disk/by-id/wwn-0xHEX` | `device/wwid` = `naa.HEX` (SCSI/SATA) |
//! | `/dev/disk/by-id/nvme-MODEL_SERIAL[_NSID]` | `device/model`, `device/serial`, `nsid` (NVMe) |
//!
//! (the first three only when VALUE has no character udev would rewrite:
//! letters, digits, `#+-.:=@_`; MODEL_SERIAL as udev writes it: whitespace
//! runs become one `_`, other characters `_`). SATA and SCSI model names
//! (`ata-...`, `scsi-...`: sysfs shows a truncated model) and kernel names
//! (`/dev/vda`) are not understood: use `serial:`/`wwid:` ids there.
//!
//! A partition NAME*N* has the ids of its disk with `-partN` appended
//! (`serial:rl-log-part1`, `/dev/disk/by-id/virtio-rl-log-part1`), N being
//! `/sys/block/NAME/NAMEpN/partition`, as in `/dev/disk/by-id`. A disk has
//! every id its attributes give; ids longer than 64 bytes cannot be stored
//! and are not offered.
//!
//! A disk matches when one of its ids equals the region's `disk_id` byte for
//! byte. Exactly one block device must match: none or several (two disks
//! with the same serial, or the controller serial of an NVMe drive with
//! several namespaces: use `wwid:` there) is a refusal, and nothing is
//! written. Size and logical block size are then checked against the
//! superblock by the replay planner.
//!
//! Whoever formats a region (the kernel module) must store an id produced
//! by this rule; `rapilog-rescue --list-disks` prints the ids of every disk.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rapilog_format::{disk, DISK_ID_BYTES};

use crate::idtext::IdText;
use crate::sys;

/// A block device (disk or partition) as sysfs describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDev {
    /// Kernel name, e.g. `vda` or `nvme0n1p2`.
    pub name: String,
    /// Device number.
    pub major: u32,
    /// Device number.
    pub minor: u32,
    /// Size in 512-byte sectors (`size`).
    pub sectors: u64,
    /// Logical block size (`queue/logical_block_size` of the disk).
    pub block_bytes: u32,
    /// Partition number, for partitions.
    pub partition: Option<u32>,
    /// Read-only (`ro` is 1).
    pub read_only: bool,
    /// Every id the identity rule gives it.
    pub ids: Vec<Vec<u8>>,
}

impl BlockDev {
    /// Whether one of its ids is `id`.
    pub fn has_id(&self, id: &[u8]) -> bool {
        self.ids.iter().any(|i| i == id)
    }

    /// Its ids in text form, comma separated (for messages).
    pub fn ids_text(&self) -> String {
        if self.ids.is_empty() {
            return "no id".into();
        }
        self.ids
            .iter()
            .map(|i| IdText(i).to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Reads a sysfs attribute, trimmed of whitespace and NULs. `None` if absent,
/// unreadable or empty.
fn attr(path: &Path) -> Option<Vec<u8>> {
    let raw = fs::read(path).ok()?;
    let trimmed = disk::trim_attribute(&raw);
    (!trimmed.is_empty()).then(|| trimmed.to_vec())
}

fn attr_u64(path: &Path) -> Option<u64> {
    std::str::from_utf8(&attr(path)?).ok()?.parse().ok()
}

/// The unit serial number of a SCSI VPD page 0x80 (`vpd_pg80`), if any.
fn vpd80_serial(raw: &[u8]) -> Option<Vec<u8>> {
    let serial = disk::vpd80_serial(raw);
    (!serial.is_empty()).then(|| serial.to_vec())
}

/// Characters udev keeps as they are in `/dev/disk/by-id` names; a value
/// with any other character gets no by-id alias (udev would rewrite it).
fn udev_safe(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b"#+-.:=@_".contains(&b))
}

/// The ids of the whole disk whose sysfs directory is `dir`, in the order
/// of the rule's table, then the `/dev/disk/by-id` aliases, without
/// duplicates.
pub fn disk_ids(dir: &Path) -> Vec<Vec<u8>> {
    let mut ids: Vec<Vec<u8>> = Vec::new();
    let mut offer = |kind: &[u8], value: Option<&[u8]>| {
        if let Some(value) = value {
            let id = [kind, value].concat();
            if id.len() <= DISK_ID_BYTES && !ids.contains(&id) {
                ids.push(id);
            }
        }
    };
    let virtio_serial = attr(&dir.join("serial"));
    let device_serial = attr(&dir.join("device/serial"));
    let vpd_serial = fs::read(dir.join("device/vpd_pg80"))
        .ok()
        .and_then(|raw| vpd80_serial(&raw));
    let own_wwid = attr(&dir.join("wwid"));
    let device_wwid = attr(&dir.join("device/wwid"));
    offer(b"serial:", virtio_serial.as_deref());
    offer(b"serial:", device_serial.as_deref());
    offer(b"serial:", vpd_serial.as_deref());
    offer(b"wwid:", own_wwid.as_deref());
    offer(b"wwid:", device_wwid.as_deref());
    // The /dev/disk/by-id names udev gives (60-persistent-storage.rules),
    // for regions whose disk id is such a path (the module's default id was
    // its backing= path before it read the disk's own, rapilog-blk/disk_identity.rs).
    let safe = |v: &Option<Vec<u8>>| v.clone().filter(|v| udev_safe(v));
    offer(b"/dev/disk/by-id/virtio-", safe(&virtio_serial).as_deref());
    offer(b"/dev/disk/by-id/nvme-", safe(&own_wwid).as_deref());
    let naa = safe(&device_wwid).and_then(|w| w.strip_prefix(b"naa.").map(<[u8]>::to_vec));
    offer(b"/dev/disk/by-id/wwn-0x", naa.as_deref());
    let is_nvme = dir
        .file_name()
        .is_some_and(|n| n.as_encoded_bytes().starts_with(b"nvme"));
    if let (true, Some(model), Some(serial)) =
        (is_nvme, attr(&dir.join("device/model")), &device_serial)
    {
        let name = udev_name(&[model.as_slice(), b"_", serial].concat());
        offer(b"/dev/disk/by-id/nvme-", Some(&name));
        if let Some(nsid) = attr(&dir.join("nsid")) {
            offer(
                b"/dev/disk/by-id/nvme-",
                Some(&[name.as_slice(), b"_", &nsid].concat()),
            );
        }
    }
    ids
}

/// A name as udev writes it into a symlink: surrounding whitespace removed,
/// each run of whitespace one `_`, any character it does not keep `_`.
fn udev_name(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let mut space = false;
    for &b in disk::trim_attribute(value) {
        if b.is_ascii_whitespace() {
            space = true;
            continue;
        }
        if space {
            out.push(b'_');
            space = false;
        }
        out.push(if udev_safe(&[b]) { b } else { b'_' });
    }
    out
}

fn dev_numbers(path: &Path) -> Option<(u32, u32)> {
    let text = String::from_utf8(attr(path)?).ok()?;
    let (ma, mi) = text.split_once(':')?;
    Some((ma.parse().ok()?, mi.parse().ok()?))
}

/// Every disk and partition under `SYSFS/block`, sorted by name. Entries
/// that lack `dev` or `size` are left out.
pub fn scan(sysfs: &Path) -> io::Result<Vec<BlockDev>> {
    let mut devs = Vec::new();
    for entry in fs::read_dir(sysfs.join("block"))? {
        let entry = entry?;
        let dir = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let (Some((major, minor)), Some(sectors)) =
            (dev_numbers(&dir.join("dev")), attr_u64(&dir.join("size")))
        else {
            continue;
        };
        let block_bytes = attr_u64(&dir.join("queue/logical_block_size"))
            .and_then(|b| u32::try_from(b).ok())
            .unwrap_or(512);
        let read_only = attr_u64(&dir.join("ro")) == Some(1);
        let ids = disk_ids(&dir);
        // Partitions: subdirectories with a `partition` attribute.
        if let Ok(children) = fs::read_dir(&dir) {
            for child in children.flatten() {
                let cdir = child.path();
                let Some(number) = attr_u64(&cdir.join("partition")) else {
                    continue;
                };
                let (Some(cname), Some((cmajor, cminor)), Some(csectors)) = (
                    child.file_name().to_str().map(str::to_string),
                    dev_numbers(&cdir.join("dev")),
                    attr_u64(&cdir.join("size")),
                ) else {
                    continue;
                };
                let suffix = format!("-part{number}");
                let cids = ids
                    .iter()
                    .map(|id| [id.as_slice(), suffix.as_bytes()].concat())
                    .filter(|id| id.len() <= DISK_ID_BYTES)
                    .collect();
                devs.push(BlockDev {
                    name: cname,
                    major: cmajor,
                    minor: cminor,
                    sectors: csectors,
                    block_bytes,
                    partition: u32::try_from(number).ok(),
                    read_only: read_only || attr_u64(&cdir.join("ro")) == Some(1),
                    ids: cids,
                });
            }
        }
        devs.push(BlockDev {
            name,
            major,
            minor,
            sectors,
            block_bytes,
            partition: None,
            read_only,
            ids,
        });
    }
    devs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(devs)
}

/// Why no single disk was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FindError {
    /// `SYSFS/block` could not be read.
    Sysfs(String),
    /// No device has the id; `seen` lists what there is.
    NotFound {
        /// The id looked for.
        id: Vec<u8>,
        /// Every device seen, with its ids.
        seen: Vec<BlockDev>,
    },
    /// Several devices have the id.
    Ambiguous {
        /// The id looked for.
        id: Vec<u8>,
        /// The devices that have it.
        matches: Vec<BlockDev>,
    },
}

impl std::fmt::Display for FindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sysfs(e) => write!(f, "cannot list block devices: {e}"),
            Self::NotFound { id, seen } => {
                write!(f, "no disk has identity {}", IdText(id))?;
                if id.starts_with(b"/dev/") && !id.starts_with(b"/dev/disk/by-id/") {
                    f.write_str(" (a device name is not an identity: give rapilog.ko a disk_id= from `rapilog-rescue --list-disks`)")?;
                }
                if seen.is_empty() {
                    return f.write_str(" (no block devices at all: driver module missing?)");
                }
                f.write_str(" (seen: ")?;
                for (i, d) in seen.iter().filter(|d| d.partition.is_none()).enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{} {}", d.name, d.ids_text())?;
                }
                f.write_str(")")
            }
            Self::Ambiguous { id, matches } => {
                write!(f, "{} disks have identity {}: ", matches.len(), IdText(id))?;
                let names: Vec<_> = matches.iter().map(|d| d.name.as_str()).collect();
                write!(f, "{}; refusing to guess", names.join(", "))
            }
        }
    }
}

/// Finds the one device whose ids include `id`, scanning `SYSFS/block`
/// again every 200 ms for up to `wait` while none has it (disks of slow
/// controllers appear after the module loads). Several matches refuse at
/// once.
pub fn find_by_id(sysfs: &Path, id: &[u8], wait: Duration) -> Result<BlockDev, FindError> {
    let start = Instant::now();
    loop {
        let devs = scan(sysfs)
            .map_err(|e| FindError::Sysfs(format!("{}: {e}", sysfs.join("block").display())))?;
        let mut matches: Vec<BlockDev> = devs.iter().filter(|d| d.has_id(id)).cloned().collect();
        match matches.len() {
            1 => return Ok(matches.remove(0)),
            0 if start.elapsed() < wait => std::thread::sleep(Duration::from_millis(200)),
            0 => {
                return Err(FindError::NotFound {
                    id: id.to_vec(),
                    seen: devs,
                })
            }
            _ => {
                return Err(FindError::Ambiguous {
                    id: id.to_vec(),
                    matches,
                })
            }
        }
    }
}

/// The device node for `dev`: `DEV_DIR/NAME` if it is that block device,
/// else a node made with mknod in `scratch`. With `allow_files` (tests), a
/// regular file `DEV_DIR/NAME` is accepted too.
pub fn device_node(
    dev: &BlockDev,
    dev_dir: &Path,
    scratch: &Path,
    allow_files: bool,
) -> Result<PathBuf, String> {
    let path = dev_dir.join(&dev.name);
    if let Ok(meta) = fs::metadata(&path) {
        let ft = meta.file_type();
        if ft.is_block_device()
            && sys::dev_major(meta.rdev()) == dev.major
            && sys::dev_minor(meta.rdev()) == dev.minor
        {
            return Ok(path);
        }
        if allow_files && ft.is_file() {
            return Ok(path);
        }
    }
    let node = scratch.join(format!("rapilog-rescue-{}", dev.name));
    let _ = fs::remove_file(&node);
    sys::mknod_block(&node, dev.major, dev.minor).map_err(|e| {
        format!(
            "{} is not block device {}:{} and mknod {} failed: {e}",
            path.display(),
            dev.major,
            dev.minor,
            node.display()
        )
    })?;
    Ok(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vpd80() {
        let mut page = vec![0, 0x80, 0, 8];
        page.extend_from_slice(b"  S123  ");
        assert_eq!(vpd80_serial(&page).unwrap(), b"S123");
        assert_eq!(vpd80_serial(&[0, 0x83, 0, 1, b'x']), None);
        assert_eq!(vpd80_serial(&[0, 0x80, 0, 4, b' ', b' ']), None);
        assert_eq!(vpd80_serial(&[0, 0x80]), None);
        // Page length beyond the data: what is there counts.
        assert_eq!(vpd80_serial(&[0, 0x80, 0, 200, b'a']).unwrap(), b"a");
    }
}
