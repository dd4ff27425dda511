// SPDX-License-Identifier: GPL-2.0

//! The backing log disk: opened exclusively for the life of the module, and
//! written synchronously from bounce pages (writeback and replay only; the
//! region itself is never handed to a device).

use core::ptr::NonNull;

use kernel::alloc::{flags::GFP_KERNEL, KVec};
use kernel::bindings;
use kernel::error::{from_err_ptr, to_result};
use kernel::ffi::{c_uint, c_ushort, c_void};
use kernel::page::PAGE_SIZE;
use kernel::prelude::*;

use super::bio::BioSet;
use super::bounce::BounceBuffer;
use super::helpers::*;

/// Our claim on the disk: the block layer compares holders by address, so
/// any static of ours will do.
static HOLDER: u8 = 0;

/// Most bytes one bio carries (`BIO_MAX_VECS` pages).
pub(crate) const MAX_IO_BYTES: usize = bindings::BIO_MAX_VECS as usize * PAGE_SIZE;

/// Bios [`BackingDisk::transfer`] keeps in reserve. At most one bio of the
/// disk's set is in flight at a time: a transfer allocates one, waits for
/// its completion and frees it before it returns, and its callers (replay
/// at load, then only the writeback thread, which holds `Device::lock_writeback`
/// for every disk write: batches, loss markers, drains) never overlap. A
/// bio in flight waits only for the log disk. So one reserved bio already
/// guarantees that writeback gets its bio while memory is exhausted; the
/// second is the block layer's customary spare.
const RESERVED_BIOS: u32 = 2;

/// The log disk, held open read-write and exclusively.
///
/// # Invariants
///
/// - `file` is a block device file that `bdev_file_open_by_path()` opened
///   read-write for our holder (exclusive, other writers restricted), and
///   only `drop` releases it (`bdev_fput()`).
/// - `bdev` is `file_bdev(file)`: valid for as long as `file` is open.
pub(crate) struct BackingDisk {
    file: NonNull<bindings::file>,
    bdev: NonNull<bindings::block_device>,
    /// Where its bios come from: its own set, never the shared
    /// `fs_bio_set`, whose reserve may be held by filesystem bios that wait
    /// in `/dev/rapilog0` for ring space only writeback can free.
    bios: BioSet,
}

// SAFETY: The file and block device are reference-counted kernel objects
// usable from any thread, held open for our whole life (type invariants); we
// only call thread-safe block layer functions.
unsafe impl Send for BackingDisk {}
// SAFETY: See `Send`; nothing here has interior state of its own.
unsafe impl Sync for BackingDisk {}

impl BackingDisk {
    /// Opens the block device at `path` read-write, claimed exclusively.
    /// Errors are the kernel's: `ENOENT` (no such path), `ENOTBLK` (not a
    /// block device), `ENXIO` (no such device), `EACCES` (read-only),
    /// `EBUSY` (claimed by someone else or open for writing).
    pub(crate) fn open(path: &[u8]) -> Result<Self> {
        if path.contains(&0) {
            return Err(EINVAL);
        }
        let bios = BioSet::with_pages(RESERVED_BIOS).ok_or(ENOMEM)?;
        let mut c_path = KVec::with_capacity(path.len() + 1, GFP_KERNEL)?;
        c_path.extend_from_slice(path, GFP_KERNEL)?;
        c_path.push(0, GFP_KERNEL)?;
        // SAFETY: `c_path` is NUL-terminated; the holder is a static whose
        // address identifies our claim until `bdev_fput`.
        let file = unsafe {
            rapilog_bdev_open(
                c_path.as_ptr().cast(),
                (&raw const HOLDER).cast_mut().cast::<c_void>(),
            )
        };
        let file = NonNull::new(from_err_ptr(file)?).ok_or(ENODEV)?;
        // SAFETY: `file` is an open block device file.
        let bdev = unsafe { bindings::file_bdev(file.as_ptr()) };
        let Some(bdev) = NonNull::new(bdev) else {
            // SAFETY: We own the open file and drop it here.
            unsafe { bindings::bdev_fput(file.as_ptr()) };
            return Err(ENODEV);
        };
        // INVARIANT: `file` was opened above for our holder, `bdev` is its
        // block device.
        Ok(Self { file, bdev, bios })
    }

    pub(super) fn bdev(&self) -> *mut bindings::block_device {
        self.bdev.as_ptr()
    }

    /// Size in 512-byte sectors.
    pub(crate) fn sectors(&self) -> u64 {
        // SAFETY: `bdev` is valid while we hold the file open (type
        // invariants).
        unsafe { rapilog_bdev_nr_sectors(self.bdev()) }
    }

    /// Logical block size in bytes.
    pub(crate) fn logical_block_size(&self) -> u32 {
        // SAFETY: As in `sectors`.
        unsafe { rapilog_bdev_logical_block_size(self.bdev()) }
    }

    /// Physical block size in bytes.
    pub(crate) fn physical_block_size(&self) -> u32 {
        // SAFETY: As in `sectors`.
        unsafe { rapilog_bdev_physical_block_size(self.bdev()) }
    }

    /// Partition number of the device within its disk; 0 for the whole disk.
    pub(crate) fn partition(&self) -> u32 {
        // SAFETY: As in `sectors`.
        unsafe { rapilog_bdev_partno(self.bdev()) }
    }

    /// Reads the sysfs attribute `name` (e.g. `serial`, `device/wwid`) of
    /// the whole disk the device belongs to, as `/sys/class/block/DISK/name`
    /// shows it, into `out`; returns how many bytes were read. This is how
    /// the disk reports its own identity: virtio-blk has no other interface
    /// for its serial, and it is what rapilog-rescue reads in the crash
    /// kernel, so both name the disk the same way. Errors are the kernel's
    /// (`ENOENT`: no such attribute for this kind of disk).
    pub(crate) fn disk_attribute(&self, name: &[u8], out: &mut [u8]) -> Result<usize> {
        const PREFIX: &[u8] = b"/sys/class/block/";
        // SAFETY: `bdev` and its `bd_disk` are valid while the device is held
        // open (type invariants), and `disk_name` is a NUL-terminated array
        // set when the disk was added.
        let disk_name = unsafe { (*(*self.bdev()).bd_disk).disk_name };
        let disk_name = disk_name.iter().take_while(|&&c| c != 0).map(|&c| c as u8);
        let mut path = KVec::with_capacity(PREFIX.len() + 34 + name.len(), GFP_KERNEL)?;
        path.extend_from_slice(PREFIX, GFP_KERNEL)?;
        for c in disk_name {
            path.push(c, GFP_KERNEL)?;
        }
        path.push(b'/', GFP_KERNEL)?;
        path.extend_from_slice(name, GFP_KERNEL)?;
        path.push(0, GFP_KERNEL)?;
        // SAFETY: `path` is NUL-terminated; a read-only open of a sysfs file.
        let file =
            unsafe { bindings::filp_open(path.as_ptr().cast(), bindings::O_RDONLY as i32, 0) };
        let file = NonNull::new(from_err_ptr(file)?).ok_or(ENOENT)?;
        let mut pos: bindings::loff_t = 0;
        // SAFETY: `file` is open; `out` is valid for `out.len()` bytes.
        let read = unsafe {
            bindings::kernel_read(file.as_ptr(), out.as_mut_ptr().cast(), out.len(), &mut pos)
        };
        // SAFETY: We opened `file` above and drop it here; no owner to flush.
        unsafe { bindings::filp_close(file.as_ptr(), core::ptr::null_mut()) };
        usize::try_from(read).map_err(|_| Error::from_errno(read as i32))
    }

    /// Writes the first `bytes` bytes of `data` at `sector` and waits for
    /// completion (not for durability: see [`Self::flush`]).
    pub(crate) fn write(&self, sector: u64, data: &BounceBuffer, bytes: usize) -> Result {
        self.transfer(true, sector, data, bytes)
    }

    /// Reads `bytes` bytes at `sector` into the start of `data` and waits for
    /// completion.
    pub(crate) fn read(&self, sector: u64, data: &mut BounceBuffer, bytes: usize) -> Result {
        self.transfer(false, sector, data, bytes)
    }

    /// One synchronous bio over the first `bytes` bytes of `data`. A read
    /// changes the pages behind a shared reference: `read` takes
    /// `&mut BounceBuffer`, so nothing else can look at them meanwhile.
    fn transfer(&self, write: bool, sector: u64, data: &BounceBuffer, bytes: usize) -> Result {
        if bytes == 0 || bytes > data.capacity() || bytes > MAX_IO_BYTES {
            return Err(EINVAL);
        }
        let pages = bytes.div_ceil(PAGE_SIZE);
        let nr_vecs = c_ushort::try_from(pages).map_err(|_| EINVAL)?;
        // SAFETY: The device is held open (type invariants). The bio comes
        // from the disk's own set with GFP_NOIO, whose reserve covers every bio of the set that
        // can be in flight ([`RESERVED_BIOS`]), so it does not fail.
        let bio = unsafe { rapilog_bio_alloc(self.bdev(), nr_vecs, write, self.bios.raw()) };
        let Some(bio) = NonNull::new(bio) else {
            return Err(ENOMEM);
        };
        let mut left = bytes;
        let mut result = Ok(());
        for page in data.pages().iter().take(pages) {
            let len = left.min(PAGE_SIZE);
            // SAFETY: `bio` has room for `pages` vectors; the page belongs to
            // `data`, which outlives the synchronous I/O below.
            let added =
                unsafe { bindings::bio_add_page(bio.as_ptr(), page.as_ptr(), len as c_uint, 0) };
            if added as usize != len {
                result = Err(EIO);
                break;
            }
            left -= len;
        }
        if result.is_ok() {
            // SAFETY: We own the bio until `bio_put`; `submit_bio_wait`
            // returns once it completed.
            result = to_result(unsafe {
                (*bio.as_ptr()).bi_iter.bi_sector = sector;
                bindings::submit_bio_wait(bio.as_ptr())
            });
        }
        // SAFETY: Drops our reference; the bio is complete or never submitted.
        unsafe { bindings::bio_put(bio.as_ptr()) };
        result
    }

    /// Makes everything written so far durable on the disk (cache flush).
    pub(crate) fn flush(&self) -> Result {
        // SAFETY: The device is held open (type invariants); the call sleeps
        // until done.
        to_result(unsafe { bindings::blkdev_issue_flush(self.bdev()) })
    }
}

impl Drop for BackingDisk {
    fn drop(&mut self) {
        // SAFETY: The file is open and ours (type invariants); this releases
        // our claim and the reference.
        unsafe { bindings::bdev_fput(self.file.as_ptr()) };
    }
}
