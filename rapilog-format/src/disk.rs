// SPDX-License-Identifier: GPL-2.0

//! Identity of the backing log disk a region belongs to.
//!
//! Replaying a region onto the wrong disk would silently corrupt it, so the
//! superblock names its disk and the replayer refuses any other. The identity
//! is an opaque, stable byte string chosen by whoever formats the region
//! (WWN, serial number, or another id that survives reboots and device
//! renumbering), plus the disk's size and logical block size.

/// Size of the disk id field.
pub const DISK_ID_BYTES: usize = 64;

/// Smallest logical block size (and the unit of sector numbers).
pub const SECTOR_BYTES: u32 = 512;

/// Largest logical block size accepted.
pub const MAX_BLOCK_BYTES: u32 = 65536;

/// An opaque disk id, zero-padded to [`DISK_ID_BYTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DiskId([u8; DISK_ID_BYTES]);

impl DiskId {
    /// Wraps `id`, zero-padding it. Returns `None` if it is longer than
    /// [`DISK_ID_BYTES`]: truncating could make two disks look alike.
    pub fn new(id: &[u8]) -> Option<Self> {
        let mut bytes = [0u8; DISK_ID_BYTES];
        bytes.get_mut(..id.len())?.copy_from_slice(id);
        Some(Self(bytes))
    }

    /// Wraps an already padded field as stored in the superblock.
    pub const fn from_field(bytes: [u8; DISK_ID_BYTES]) -> Self {
        Self(bytes)
    }

    /// The full, zero-padded field.
    pub const fn as_field(&self) -> &[u8; DISK_ID_BYTES] {
        &self.0
    }

    /// The id without its zero padding, for display.
    pub fn as_bytes(&self) -> &[u8] {
        let len = self
            .0
            .iter()
            .rposition(|&b| b != 0)
            .map_or(0, |last| last + 1);
        self.0.get(..len).unwrap_or(&[])
    }
}

/// Everything the replayer compares between a region and its target disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DiskIdentity {
    /// Stable id (WWN, serial, ...).
    pub id: DiskId,
    /// Size in 512-byte sectors.
    pub sectors: u64,
    /// Logical block size in bytes: a power of two from 512 to 65536. Every
    /// record is a whole number of blocks at a block-aligned position.
    pub block_bytes: u32,
}

impl DiskIdentity {
    /// Whether size and block size are plausible (non-empty disk, block size
    /// a power of two in `512..=65536`). The id itself is opaque.
    pub fn is_valid(&self) -> bool {
        self.sectors != 0
            && self.block_bytes.is_power_of_two()
            && (SECTOR_BYTES..=MAX_BLOCK_BYTES).contains(&self.block_bytes)
    }

    /// Logical block size in 512-byte sectors (at least 1).
    pub fn block_sectors(&self) -> u64 {
        u64::from(self.block_bytes / SECTOR_BYTES).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_padding() {
        let id = DiskId::new(b"wwn-0x5000c500a1b2c3d4").unwrap();
        assert_eq!(id.as_bytes(), b"wwn-0x5000c500a1b2c3d4");
        assert_eq!(id.as_field()[22..], [0u8; 42]);
        assert!(DiskId::new(&[1u8; DISK_ID_BYTES]).is_some());
        assert!(DiskId::new(&[1u8; DISK_ID_BYTES + 1]).is_none());
        assert_eq!(DiskId::new(b"").unwrap().as_bytes(), b"");
    }

    #[test]
    fn identity_validity() {
        let id = DiskId::new(b"x").unwrap();
        let ok = DiskIdentity {
            id,
            sectors: 8,
            block_bytes: 4096,
        };
        assert!(ok.is_valid());
        assert_eq!(ok.block_sectors(), 8);
        assert!(!DiskIdentity { sectors: 0, ..ok }.is_valid());
        assert!(!DiskIdentity {
            block_bytes: 256,
            ..ok
        }
        .is_valid());
        assert!(!DiskIdentity {
            block_bytes: 1536,
            ..ok
        }
        .is_valid());
        assert!(!DiskIdentity {
            block_bytes: 131072,
            ..ok
        }
        .is_valid());
    }
}

/// A sysfs identity attribute (`serial`, `wwid`, ...) with whitespace and
/// NULs stripped from both ends: the value the module at load and
/// `rapilog-replay`'s discovery both compare, so that they agree on it.
pub fn trim_attribute(mut s: &[u8]) -> &[u8] {
    let junk = |b: &u8| b.is_ascii_whitespace() || *b == 0;
    while let [first, rest @ ..] = s {
        if !junk(first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !junk(last) {
            break;
        }
        s = rest;
    }
    s
}

/// The unit serial number of a SCSI VPD page 0x80 (sysfs `vpd_pg80`),
/// trimmed; empty if `page` is not such a page. The length byte is capped
/// at what the page holds.
pub fn vpd80_serial(page: &[u8]) -> &[u8] {
    match page {
        [_, 0x80, _, len, rest @ ..] => {
            trim_attribute(rest.get(..usize::from(*len)).unwrap_or(rest))
        }
        _ => &[],
    }
}

#[cfg(test)]
mod attribute_tests {
    use super::*;

    #[test]
    fn trims_whitespace_and_nuls_at_both_ends_only() {
        assert_eq!(trim_attribute(b"\0 rl-log\n\0"), b"rl-log");
        assert_eq!(trim_attribute(b"a b"), b"a b");
        assert_eq!(trim_attribute(b" \n"), b"");
    }

    #[test]
    fn vpd80_serial_reads_the_page_and_caps_its_length() {
        assert_eq!(vpd80_serial(b"\0\x80\0\x06 SN42 "), b"SN42");
        assert_eq!(vpd80_serial(b"\0\x80\0\x40SN42"), b"SN42");
        assert_eq!(vpd80_serial(b"\0\x83\0\x04SN42"), b"");
        assert_eq!(vpd80_serial(b"\0\x80"), b"");
    }
}
