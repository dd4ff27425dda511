// SPDX-License-Identifier: GPL-2.0

//! Disk ids as text: how the superblock's `disk_id` bytes are written on a
//! kernel command line (`rapilog.disk=`), on this program's command line
//! (`--disk-id`) and in its messages.
//!
//! Printable ASCII other than space and backslash stands for itself; any
//! other byte is written `\xHH` (two hex digits), and a backslash may also be
//! written `\\`. So `serial:rl-log` is written as is, and a SCSI id with
//! spaces such as `t10.ATA     QEMU HARDDISK` becomes
//! `t10.ATA\x20\x20\x20\x20\x20QEMU\x20HARDDISK`, which needs no quoting on
//! a kernel command line.

use std::fmt;

use rapilog_format::{DiskId, DISK_ID_BYTES};

/// Why a disk id text was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdTextError {
    /// Nothing given.
    Empty,
    /// A backslash not followed by `\` or `xHH`.
    BadEscape,
    /// More than [`DISK_ID_BYTES`] bytes once decoded.
    TooLong,
}

impl fmt::Display for IdTextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "empty disk id",
            Self::BadEscape => "bad escape in disk id (use \\xHH for a byte, \\\\ for a backslash)",
            Self::TooLong => "disk id longer than 64 bytes",
        })
    }
}

impl std::error::Error for IdTextError {}

/// Decodes the text form of a disk id into its bytes.
pub fn decode(text: &str) -> Result<Vec<u8>, IdTextError> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'\\') => out.push(b'\\'),
            Some(b'x') => {
                let hi = bytes.next().and_then(hex_value);
                let lo = bytes.next().and_then(hex_value);
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                    _ => return Err(IdTextError::BadEscape),
                }
            }
            _ => return Err(IdTextError::BadEscape),
        }
    }
    if out.is_empty() {
        return Err(IdTextError::Empty);
    }
    if out.len() > DISK_ID_BYTES {
        return Err(IdTextError::TooLong);
    }
    Ok(out)
}

/// Decodes the text form straight into a [`DiskId`].
pub fn parse_disk_id(text: &str) -> Result<DiskId, IdTextError> {
    let bytes = decode(text)?;
    DiskId::new(&bytes).ok_or(IdTextError::TooLong)
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Displays id bytes in the text form (see the module docs).
#[derive(Clone, Copy)]
pub struct IdText<'a>(pub &'a [u8]);

impl fmt::Display for IdText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(empty)");
        }
        for &b in self.0 {
            if b == b'\\' {
                f.write_str("\\\\")?;
            } else if b.is_ascii_graphic() {
                write!(f, "{}", b as char)?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for IdText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// The text form of a [`DiskId`] (without its zero padding).
pub fn show(id: &DiskId) -> String {
    IdText(id.as_bytes()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_byte() {
        let all: Vec<u8> = (0..=255u8).collect();
        for chunk in all.chunks(DISK_ID_BYTES) {
            let text = IdText(chunk).to_string();
            assert!(text.bytes().all(|b| b.is_ascii_graphic()), "{text}");
            assert_eq!(decode(&text).unwrap(), chunk);
        }
    }

    #[test]
    fn plain_ids_stand_for_themselves() {
        assert_eq!(decode("serial:rl-log").unwrap(), b"serial:rl-log");
        assert_eq!(
            IdText(b"wwid:naa.5000c500a1b2c3d4").to_string(),
            "wwid:naa.5000c500a1b2c3d4"
        );
        assert_eq!(IdText(b"a b\\c").to_string(), "a\\x20b\\\\c");
        assert_eq!(decode("a\\x20b\\\\c").unwrap(), b"a b\\c");
        assert_eq!(decode("\\X41"), Err(IdTextError::BadEscape));
    }

    #[test]
    fn refusals() {
        assert_eq!(decode(""), Err(IdTextError::Empty));
        assert_eq!(decode("a\\"), Err(IdTextError::BadEscape));
        assert_eq!(decode("a\\x4"), Err(IdTextError::BadEscape));
        assert_eq!(decode("a\\xg0"), Err(IdTextError::BadEscape));
        assert_eq!(decode("a\\n"), Err(IdTextError::BadEscape));
        assert_eq!(decode(&"x".repeat(65)), Err(IdTextError::TooLong));
        assert!(decode(&"x".repeat(64)).is_ok());
        assert!(parse_disk_id(&"\\x00".repeat(64)).is_ok());
    }
}
