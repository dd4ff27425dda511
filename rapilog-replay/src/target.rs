// SPDX-License-Identifier: GPL-2.0

//! The log disk replay writes to: a block device, or a regular file standing
//! in for one (tests, offline images).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::sys;

/// What replay needs from a disk: positioned reads (of the loss marker),
/// positioned writes and a flush that makes them durable.
pub trait BlockTarget {
    /// Fills `buf` from byte `offset`.
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes `data` at byte `offset`.
    fn write_at(&mut self, data: &[u8], offset: u64) -> io::Result<()>;
    /// Makes every write so far durable (written through the disk's cache).
    fn flush(&mut self) -> io::Result<()>;
}

/// An opened log disk (or file standing in for one).
#[derive(Debug)]
pub struct TargetDisk {
    file: File,
    /// Path it was opened by.
    pub path: PathBuf,
    /// Size in 512-byte sectors.
    pub sectors: u64,
    /// Logical block size in bytes.
    pub block_bytes: u32,
    /// A block device (else a regular file).
    pub is_block_device: bool,
}

impl TargetDisk {
    /// Opens `path` for writing (read-only if `read_only`). A block device
    /// is opened exclusively (`O_EXCL`: fails if mounted or held by a
    /// driver, e.g. a live rapilog.ko) and its size and logical block size
    /// are asked from the kernel. A regular file has its length as size
    /// (whole sectors) and `file_block_bytes` as block size.
    pub fn open(path: &Path, read_only: bool, file_block_bytes: u32) -> io::Result<Self> {
        let meta = std::fs::metadata(path)?;
        let is_block_device = meta.file_type().is_block_device();
        if !is_block_device && !meta.file_type().is_file() {
            return Err(io::Error::other(
                "neither a block device nor a regular file",
            ));
        }
        let mut options = OpenOptions::new();
        options.read(true).write(!read_only);
        if is_block_device {
            options.custom_flags(libc::O_EXCL);
        }
        let file = options.open(path)?;
        let (bytes, block_bytes) = if is_block_device {
            sys::block_device_geometry(&file)?
        } else {
            (file.metadata()?.len(), file_block_bytes)
        };
        Ok(Self {
            file,
            path: path.to_path_buf(),
            sectors: bytes / 512,
            block_bytes,
            is_block_device,
        })
    }
}

impl BlockTarget for TargetDisk {
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn write_at(&mut self, data: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(data, offset)
    }

    /// fsync(2): for a block device, writes back the page cache and sends
    /// the disk a cache flush.
    fn flush(&mut self) -> io::Result<()> {
        self.file.sync_all()
    }
}

/// A disk in memory: for tests of the replay engine, with failure injection.
#[derive(Debug, Clone, Default)]
pub struct MemoryDisk {
    /// The disk's bytes.
    pub bytes: Vec<u8>,
    /// Writes done so far (each `(offset, len)`).
    pub writes: Vec<(u64, usize)>,
    /// Flushes done so far.
    pub flushes: usize,
    /// The write with this index (0-based) fails with EIO.
    pub fail_write: Option<usize>,
    /// Flushes fail with EIO.
    pub fail_flush: bool,
    /// Reads fail with EIO.
    pub fail_read: bool,
}

impl BlockTarget for MemoryDisk {
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if self.fail_read {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        let src = self
            .bytes
            .get(start..start + buf.len())
            .ok_or_else(|| io::Error::other("read beyond the disk"))?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write_at(&mut self, data: &[u8], offset: u64) -> io::Result<()> {
        if self.fail_write == Some(self.writes.len()) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        self.bytes
            .get_mut(start..start + data.len())
            .ok_or_else(|| io::Error::other("write beyond the disk"))?
            .copy_from_slice(data);
        self.writes.push((offset, data.len()));
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.fail_flush {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        self.flushes += 1;
        Ok(())
    }
}
