// SPDX-License-Identifier: GPL-2.0

//! The backing log disk: opened exclusively for the life of the module, and
//! written from bounce pages (writeback and replay only; the region itself
//! is never handed to a device): one bio at a time and waited for
//! ([`BackingDisk::write`], [`BackingDisk::read`]), or a group of up to
//! [`WRITES_IN_FLIGHT`] bios in flight at once, waited for together
//! ([`BackingDisk::write_group`], writeback's batches and drains).

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

/// Most disk writes writeback keeps in flight at once
/// ([`BackingDisk::write_group`]), each from its own bounce buffer of
/// [`MAX_IO_BYTES`]: 8 MiB of bounce pages, allocated at load.
pub(crate) const WRITES_IN_FLIGHT: usize = 8;

/// Bios the disk's bio set keeps in reserve. The bios of the set are held
/// by one task at a time: replay at load, then only the writeback thread,
/// which holds `Device::lock_writeback` for every disk I/O (batches, loss
/// markers, drains), so these never overlap. A [`BackingDisk::transfer`]
/// holds one bio; a [`BackingDisk::write_group`] holds at most
/// [`WRITES_IN_FLIGHT`] (one per bounce buffer; each frees its bio when it
/// completes, and the group returns only once all of them have). Every bio
/// held waits only for the log disk, or, the one of a group not yet
/// submitted, for the copy of the group's next buffer, which allocates
/// nothing. So a reserve of [`WRITES_IN_FLIGHT`] bios guarantees that
/// writeback gets every bio it asks for while memory is exhausted (each
/// allocation finds the slab, a reserved bio, or one that completes and
/// refills the reserve; `BioSet`); the one more is the block layer's
/// customary spare.
const RESERVED_BIOS: u32 = WRITES_IN_FLIGHT as u32 + 1;

/// One write of a [`BackingDisk::write_group`]: the first `bytes` bytes of
/// its bounce buffer, at `sector`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Write {
    pub(crate) sector: u64,
    pub(crate) bytes: usize,
}

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
        let bio = self.bio_for(write, sector, data, bytes)?;
        // SAFETY: `bio` is ours, built and not submitted (`bio_for`);
        // `submit_bio_wait` returns once it completed, and `data`, whose
        // pages it carries, is borrowed until we return.
        let result = to_result(unsafe { bindings::submit_bio_wait(bio.as_ptr()) });
        // SAFETY: Drops our reference; the bio is complete.
        unsafe { bindings::bio_put(bio.as_ptr()) };
        result
    }

    /// A bio from the disk's own set over the first `bytes` bytes of `data`
    /// at `sector`, not submitted. The caller owns it: it must submit it (or
    /// chain it and submit it) and keep `data` alive and unchanged until it
    /// completed, or free it with `bio_put` unsubmitted.
    fn bio_for(
        &self,
        write: bool,
        sector: u64,
        data: &BounceBuffer,
        bytes: usize,
    ) -> Result<NonNull<bindings::bio>> {
        if bytes == 0 || bytes > data.capacity() || bytes > MAX_IO_BYTES {
            return Err(EINVAL);
        }
        let pages = bytes.div_ceil(PAGE_SIZE);
        let nr_vecs = c_ushort::try_from(pages).map_err(|_| EINVAL)?;
        // SAFETY: The device is held open (type invariants). The bio comes
        // from the disk's own set with GFP_NOIO, whose reserve covers every
        // bio of the set that can be held at once ([`RESERVED_BIOS`]), so it
        // does not fail.
        let bio = unsafe { rapilog_bio_alloc(self.bdev(), nr_vecs, write, self.bios.raw()) };
        let Some(bio) = NonNull::new(bio) else {
            return Err(ENOMEM);
        };
        let mut left = bytes;
        for page in data.pages().iter().take(pages) {
            let len = left.min(PAGE_SIZE);
            // SAFETY: `bio` has room for `pages` vectors; the page belongs to
            // `data`, which the caller keeps until the I/O completed.
            let added =
                unsafe { bindings::bio_add_page(bio.as_ptr(), page.as_ptr(), len as c_uint, 0) };
            if added as usize != len {
                // SAFETY: Ours and never submitted.
                unsafe { bindings::bio_put(bio.as_ptr()) };
                return Err(EIO);
            }
            left -= len;
        }
        // SAFETY: We own the bio and have not submitted it.
        unsafe { (*bio.as_ptr()).bi_iter.bi_sector = sector };
        Ok(bio)
    }

    /// Writes up to one group of [`WRITES_IN_FLIGHT`] bios, all in flight
    /// at once, and waits until every one of them completed (not for
    /// durability: see [`Self::flush`]).
    ///
    /// `next(k, buffer)` is asked for the `k`-th write, in order, with the
    /// `k`-th of `buffers` (distinct buffers, each borrowed for the whole
    /// call; a write is of that buffer's first bytes): it may fill the
    /// buffer first (the writes before it are in flight meanwhile), and
    /// returns `None` to end the group. So the copy of one buffer overlaps
    /// the disk's work on the ones before it.
    ///
    /// The writes of a group may reach the disk in any order and complete
    /// in any order: the caller gives them disjoint sectors. The result is
    /// an error if any of them failed (or could not be built: the group
    /// then ends there, after waiting for those already submitted); which
    /// one is not said, so a retry writes the whole group again.
    ///
    /// # Invariants (of the chain, inside the call)
    ///
    /// - `pending` is `None` or the bio of the latest write: built from the
    ///   disk's set, not yet submitted. Every earlier write's bio of the
    ///   group was chained to its successor (`bio_chain`: the child's
    ///   completion, with its status if it failed and the parent has none
    ///   yet, is passed to the parent, whose completion waits for it) and
    ///   then submitted. So the last bio completes only after all of them,
    ///   and carries an error status if any of them failed.
    /// - The bio of write `k` references only pages of the `k`-th buffer,
    ///   which `next` has had its last access to before the bio was built
    ///   (the iterator hands out each buffer once); every buffer stays
    ///   borrowed for the whole call, and the call returns only after the
    ///   last bio (hence every bio) completed.
    /// - Chained children are freed by the block layer when they complete
    ///   (`bio_chain_endio`), the last bio by us after its wait: at most
    ///   [`WRITES_IN_FLIGHT`] bios of the set are held at once.
    pub(crate) fn write_group<'b>(
        &self,
        buffers: impl IntoIterator<Item = &'b mut BounceBuffer>,
        mut next: impl FnMut(usize, &mut BounceBuffer) -> Option<Write>,
    ) -> Result {
        let mut pending: Option<NonNull<bindings::bio>> = None;
        let mut result = Ok(());
        for (k, buffer) in buffers.into_iter().take(WRITES_IN_FLIGHT).enumerate() {
            let Some(write) = next(k, buffer) else {
                break;
            };
            let bio = match self.bio_for(true, write.sector, buffer, write.bytes) {
                Ok(bio) => bio,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            if let Some(previous) = pending {
                // SAFETY: Both bios are ours and not yet submitted
                // (invariant of `pending`; `bio` was just built);
                // `bio_chain` makes `bio` wait for `previous`, which is
                // then submitted and from now on owned by the block layer
                // (freed by `bio_chain_endio`). Its pages are in the
                // previous buffer, which `next` no longer reaches and which
                // stays borrowed until the whole chain completed.
                unsafe {
                    bindings::bio_chain(previous.as_ptr(), bio.as_ptr());
                    bindings::submit_bio(previous.as_ptr());
                }
            }
            // INVARIANT: `bio` is the latest write's, not submitted.
            pending = Some(bio);
        }
        if let Some(last) = pending {
            // SAFETY: The last bio is ours and not submitted (invariant of
            // `pending`); `submit_bio_wait` returns once it completed, which
            // is after every bio chained to it completed.
            let status = to_result(unsafe { bindings::submit_bio_wait(last.as_ptr()) });
            // SAFETY: Drops our reference; the bio is complete.
            unsafe { bindings::bio_put(last.as_ptr()) };
            result = result.and(status);
        }
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
