// SPDX-License-Identifier: GPL-2.0

//! Bios submitted to `/dev/rapilog0`, as handed to our `submit_bio`.
//!
//! A [`Bio`] is a move-only token for one bio the driver must complete
//! exactly once: by [`Bio::end`], or by passing it on ([`Bio::remap`],
//! [`Bio::split_front`]). Dropping one unfinished completes it with an I/O
//! error, so no path can leave a submitter hanging.
//!
//! Each bio with data is counted in the block layer's I/O statistics
//! (`/sys/block/rapilog0/stat`, iostat) from its arrival to its completion
//! or hand-over to the log disk. Empty flushes are not: a bio-based driver
//! has no call that counts them as flushes (device mapper does the same).

use core::ptr::{self, NonNull};

use kernel::bindings;
use kernel::ffi::{c_uint, c_ulong, c_void};

use super::backing::BackingDisk;
use super::helpers::*;
use super::region::{Region, WindowSource};
use super::CopyError;

/// What a bio asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// Read data.
    Read,
    /// Write data (possibly none: an empty write with PREFLUSH is a flush).
    Write,
    /// Anything else (discard, write-zeroes, zone operations...).
    Other,
}

/// How a bio completes. The codes are shared with `rapilog_bio_end()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Done.
    Ok = 0,
    /// The operation is not supported (`BLK_STS_NOTSUPP`).
    NotSupported = 1,
    /// Failed (`BLK_STS_IOERR`).
    IoError = 2,
}

/// A private bio set (`struct bio_set`): bios from a slab, with a mempool
/// that keeps `pool_size` bios (and, for bios with pages, as many arrays of
/// `BIO_MAX_VECS` vectors) in reserve for when the slab cannot allocate.
///
/// Invariant of every user: each bio taken from a set is freed without
/// waiting for another allocation from the same set, and at most
/// `pool_size` of them are held at once by work that waits on nothing but
/// their own completion. Then an allocation that may sleep (`GFP_NOIO`)
/// never fails and never waits for long: when memory is short it takes a
/// reserved bio, or sleeps until a bio of the set in flight completes and
/// refills the reserve (`mempool_alloc`). No other subsystem's bios can
/// drain it, unlike the shared `fs_bio_set`.
///
/// # Invariants
///
/// The pointer is a `struct bio_set` that `rapilog_bioset_create()`
/// allocated and initialised (`bioset_init()` succeeded), exclusively
/// ours, destroyed only by `drop`.
pub(crate) struct BioSet(NonNull<bindings::bio_set>);

// SAFETY: A bio_set is a mempool with its own locking.
unsafe impl Send for BioSet {}
// SAFETY: See `Send`.
unsafe impl Sync for BioSet {}

/// The block layer's default reserve (`BIO_POOL_SIZE`).
const BIO_POOL_SIZE: u32 = 2;

impl BioSet {
    /// For splitting bios handed to us: a split shares its parent's vectors,
    /// so the set needs none of its own.
    pub(crate) fn for_splits() -> Option<Self> {
        Self::new(BIO_POOL_SIZE, false)
    }

    /// For bios of up to `BIO_MAX_VECS` pages each, `pool_size` of them
    /// (and their vectors) in reserve.
    pub(super) fn with_pages(pool_size: u32) -> Option<Self> {
        Self::new(pool_size, true)
    }

    fn new(pool_size: u32, bvecs: bool) -> Option<Self> {
        // SAFETY: Plain allocation and `bioset_init`; returns NULL on failure.
        let set = unsafe { rapilog_bioset_create(pool_size, bvecs) };
        // INVARIANT: A non-null result is an initialised set, ours alone.
        NonNull::new(set).map(Self)
    }

    pub(super) fn raw(&self) -> *mut bindings::bio_set {
        self.0.as_ptr()
    }
}

impl Drop for BioSet {
    fn drop(&mut self) {
        // Every user frees its bios before it drops the set: splits
        // complete before the bio they were split from (`bio_chain`), and
        // the device is dropped only after the disk was deleted, which
        // needs every opener gone and their I/O completed; the log disk's
        // bios are synchronous (`BackingDisk::transfer`).
        // SAFETY: Created by `rapilog_bioset_create` and not yet destroyed
        // (type invariant); no bio from it is left (above).
        unsafe { rapilog_bioset_destroy(self.0.as_ptr()) };
    }
}

/// One bio to complete.
///
/// # Invariants
///
/// - `raw` is a valid bio of our disk, handed to our `submit_bio` (or split
///   from one), that this token alone owns: not completed, not passed on.
///   Every way the token ends completes it or passes it on exactly once
///   ([`Bio::end`], [`Bio::remap`], [`Bio::split_front`], `drop`).
/// - `accounted_since` is `Some(start)` exactly while the block layer's I/O
///   accounting of the bio, started at `start` by `bio_start_io_acct()`,
///   has not been ended; the bio then still addresses our disk.
pub(crate) struct Bio {
    raw: NonNull<bindings::bio>,
    /// When the I/O accounting of the bio started (jiffies, from
    /// `bio_start_io_acct`), or `None` if it is not counted.
    accounted_since: Option<c_ulong>,
}

// SAFETY: A bio may be completed from any thread.
unsafe impl Send for Bio {}

impl Bio {
    /// Takes charge of a bio handed to `submit_bio`: splits it to the queue
    /// limits (a read or write: its size only, `rapilog_bio_split_to_limits`;
    /// the rest comes back to `submit_bio` later) and starts its I/O
    /// accounting. `None` if the block layer ended
    /// the bio instead (an invalid bio).
    ///
    /// # Safety
    ///
    /// `bio` must be a valid bio of our disk that the caller owns and will
    /// not complete.
    pub(super) unsafe fn arrived(bio: NonNull<bindings::bio>) -> Option<Self> {
        // SAFETY: We own the bio (caller's guarantee); the block layer
        // returns either the front part to handle now (resubmitting the
        // rest) or NULL after ending it.
        let raw = NonNull::new(unsafe { rapilog_bio_split_to_limits(bio.as_ptr()) })?;
        // INVARIANT: `raw` is the caller's bio (or its front part), ours to
        // complete, and not counted yet.
        let mut bio = Self {
            raw,
            accounted_since: None,
        };
        if bio.bytes() > 0 {
            // SAFETY: A valid bio of our disk, not yet counted (type
            // invariants); every way it leaves us ends the count
            // (`stop_accounting`).
            let since = unsafe { bindings::bio_start_io_acct(bio.raw()) };
            // INVARIANT: The count started at `since`.
            bio.accounted_since = Some(since);
        }
        Some(bio)
    }

    fn raw(&self) -> *mut bindings::bio {
        self.raw.as_ptr()
    }

    /// Ends the bio's I/O accounting: it is complete, or handed over. Must
    /// come before either, while the bio still addresses our disk.
    fn stop_accounting(&mut self) {
        if let Some(since) = self.accounted_since.take() {
            // SAFETY: We own the bio, still addressed to our disk
            // (`bi_bdev`), whose count `bio_start_io_acct` started at `since`
            // (type invariants).
            unsafe { bindings::bio_end_io_acct_remapped(self.raw(), since, (*self.raw()).bi_bdev) };
        }
    }

    /// Gives the bio up without completing it (it was passed on) and
    /// without ending its accounting (the caller did, or passed it on too).
    fn into_raw(self) -> *mut bindings::bio {
        let raw = self.raw();
        core::mem::forget(self);
        raw
    }

    /// First sector (512 bytes) of the device the bio addresses.
    pub(crate) fn sector(&self) -> u64 {
        // SAFETY: `raw` is a valid bio we own (type invariant).
        unsafe { (*self.raw()).bi_iter.bi_sector }
    }

    /// Data size in bytes.
    pub(crate) fn bytes(&self) -> u32 {
        // SAFETY: `raw` is a valid bio we own (type invariant).
        unsafe { (*self.raw()).bi_iter.bi_size }
    }

    /// The operation.
    pub(crate) fn op(&self) -> Op {
        // SAFETY: `raw` is a valid bio we own (type invariant).
        match unsafe { rapilog_bio_op(self.raw()) } {
            bindings::req_op_REQ_OP_READ => Op::Read,
            bindings::req_op_REQ_OP_WRITE => Op::Write,
            _ => Op::Other,
        }
    }

    /// Whether the bio asks for a cache flush before its data (PREFLUSH).
    pub(crate) fn is_preflush(&self) -> bool {
        // SAFETY: `raw` is a valid bio we own (type invariant).
        unsafe { rapilog_bio_preflush(self.raw()) }
    }

    /// Whether the bio's data must be durable at completion (FUA).
    pub(crate) fn is_fua(&self) -> bool {
        // SAFETY: `raw` is a valid bio we own (type invariant).
        unsafe { rapilog_bio_fua(self.raw()) }
    }

    fn fits(&self, skip: usize, len: usize) -> Option<(c_uint, c_uint)> {
        let end = skip.checked_add(len)?;
        if end > self.bytes() as usize {
            return None;
        }
        Some((c_uint::try_from(skip).ok()?, c_uint::try_from(len).ok()?))
    }

    /// Fills `len` bytes of the bio, from `skip` bytes in, with region bytes
    /// from `offset`; nothing is copied if either range is out of bounds.
    pub(crate) fn copy_from_region(
        &mut self,
        skip: usize,
        region: &Region,
        offset: usize,
        len: usize,
    ) -> Result<(), CopyError> {
        let src = region
            .view_ptr(offset, len)
            .ok_or(CopyError::OutsideRegion)?;
        let (skip, len) = self.fits(skip, len).ok_or(CopyError::OutsideBuffer)?;
        // SAFETY: `raw` is a valid bio we own (type invariant), with `skip +
        // len` bytes of data (`fits`); `view_ptr` checked that the region's
        // view maps `len` bytes at `src` (and it does while `region` lives:
        // its type invariants). The copy only reads them and writes the
        // bio's own pages.
        unsafe { rapilog_bio_copy(self.raw(), skip, src.cast_mut().cast(), len, true) };
        Ok(())
    }

    /// Completes the bio.
    pub(crate) fn end(mut self, status: Status) {
        self.complete(status);
        let _ = self.into_raw();
    }

    fn complete(&mut self, status: Status) {
        self.stop_accounting();
        // SAFETY: We own the bio, not yet completed (type invariant), and
        // complete it exactly once: `end` gives up the token right after,
        // `drop` is its last use.
        unsafe { rapilog_bio_end(self.raw(), status as c_uint) };
    }

    /// Passes the bio to the backing disk unchanged (same sectors): it is
    /// issued once our `submit_bio` returns and completes to its submitter.
    /// Its time on the log disk is counted there, not here.
    pub(crate) fn remap(mut self, backing: &BackingDisk) {
        self.stop_accounting();
        // SAFETY: We own the bio (type invariant) and hand it over; the disk
        // is held open for longer than any bio of ours can be in flight.
        unsafe { rapilog_bio_remap(self.into_raw(), backing.bdev()) };
    }

    /// Hands the bio back to the block layer unchanged, for our own disk: it
    /// comes back to our `submit_bio` as a new arrival once this call
    /// returns (counted anew). For a read that must split again within one
    /// call (`read_path`): one split per call keeps the split pool from
    /// running dry.
    pub(crate) fn resubmit(mut self) {
        self.stop_accounting();
        // SAFETY: We own the bio (type invariant) and hand it over; it still
        // addresses our disk (`bi_bdev`), which outlives its bios.
        unsafe {
            let raw = self.into_raw();
            rapilog_bio_remap(raw, (*raw).bi_bdev)
        };
    }

    /// Splits off the first `sectors` sectors and returns them; the rest goes
    /// back to the block layer and comes back to our `submit_bio` later.
    /// Gives the bio back unchanged if it cannot be split.
    pub(crate) fn split_front(self, sectors: u32, set: &BioSet) -> Result<Bio, Bio> {
        if sectors == 0 || u64::from(sectors) * 512 >= u64::from(self.bytes()) {
            return Err(self);
        }
        // SAFETY: We own the bio (type invariant); the split comes from
        // `set`, which outlives every bio of the disk.
        let split = unsafe { rapilog_bio_split_front(self.raw(), sectors, set.raw()) };
        match NonNull::new(split) {
            // The remainder now belongs to the block layer, and comes back
            // as a new arrival, counted anew; the front carries on the
            // count started for the whole.
            Some(split) => {
                let accounted_since = self.accounted_since;
                let _ = self.into_raw();
                // INVARIANT: The front is a new bio of our disk, ours to
                // complete; the count started for the whole goes with it.
                Ok(Bio {
                    raw: split,
                    accounted_since,
                })
            }
            None => Err(self),
        }
    }
}

// SAFETY: `copy_to` is `rapilog_bio_copy()`, which copies segment by
// segment with `memcpy_from_bvec()`: `kmap_local_page()` and `memcpy`, no
// sleeping and no lock; `copy_checksummed` is `rapilog_bio_copy_crc()`,
// the same walk with `bvec_kmap_local()`, calling `copy_segment`: plain
// loads, stores and `crc32`, or `memcpy` and `crc32c()` (neither sleeps
// nor locks).
unsafe impl WindowSource for Bio {
    fn len(&self) -> usize {
        self.bytes() as usize
    }

    unsafe fn copy_to(&self, dst: *mut u8) -> Result<(), CopyError> {
        let (skip, len) = self
            .fits(0, self.bytes() as usize)
            .ok_or(CopyError::OutsideBuffer)?;
        // SAFETY: `raw` is a valid bio we own (type invariant), with `len`
        // bytes of data; `dst` is writable for them (the caller's promise)
        // and distinct from the bio's pages.
        unsafe { rapilog_bio_copy(self.raw(), skip, dst.cast(), len, false) };
        Ok(())
    }

    unsafe fn copy_checksummed(&self, dst: *mut u8) -> Result<Option<u32>, CopyError> {
        // SAFETY: Reads the boot CPU's feature bits only.
        if !unsafe { rapilog_cpu_copy_crc() } {
            // SAFETY: The caller's promise, passed on.
            return unsafe { self.copy_to(dst) }.map(|()| None);
        }
        let (skip, len) = self
            .fits(0, self.bytes() as usize)
            .ok_or(CopyError::OutsideBuffer)?;
        // SAFETY: As in `copy_to`: `raw` is a valid bio we own with `len`
        // bytes of data, `dst` is writable for them and distinct from the
        // bio's pages. The helper calls `copy_segment` with each mapped
        // segment and the part of `dst` it goes to; the CPU has SSE4.2
        // (`rapilog_cpu_copy_crc`), as `copy_segment` requires.
        let crc =
            unsafe { rapilog_bio_copy_crc(self.raw(), skip, dst.cast(), len, !0, copy_segment) };
        Ok(Some(!crc))
    }
}

/// Copies one mapped segment of a bio into a write window and returns the
/// raw CRC-32C register after it, from `crc` (`rapilog_bio_copy_crc`).
///
/// # Safety
///
/// The CPU has SSE4.2; `src` is valid for reads and `dst` for writes of
/// `len` bytes, and they do not overlap.
unsafe extern "C" fn copy_segment(
    crc: u32,
    dst: *mut c_void,
    src: *const c_void,
    len: c_uint,
) -> u32 {
    let (dst, src, len) = (dst.cast::<u8>(), src.cast::<u8>(), len as usize);
    // SAFETY: This function's own contract.
    let (crc, done) = unsafe { super::copy_crc::copy_crc(crc, dst, src, len) };
    if done == len {
        return crc;
    }
    // A long remainder (a segment that is not whole pages): memcpy, then
    // the kernel's crc32c() over what landed, as without `copy_crc`.
    // SAFETY: `done < len`: the rest is inside both buffers, which do not
    // overlap; then `dst`'s rest is readable.
    unsafe {
        ptr::copy_nonoverlapping(src.add(done), dst.add(done), len - done);
        super::crc32c::update_raw(crc, dst.add(done), len - done)
    }
}

impl Drop for Bio {
    fn drop(&mut self) {
        // An unfinished bio: complete it so its submitter does not hang.
        self.complete(Status::IoError);
    }
}
