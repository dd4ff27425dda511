// SPDX-License-Identifier: GPL-2.0

//! Bounce pages: ordinary kernel pages that writeback and replay fill from
//! the region and hand to the backing disk. The region is never given to a
//! device for DMA, so a misbehaving device cannot scribble on it.

use kernel::alloc::{flags::GFP_KERNEL, AllocError, KVec};
use kernel::page::{Page, PAGE_SIZE};

use super::crc32c::update_raw_per_page;
use super::helpers::{rapilog_cpu_copy_crc, rapilog_page_address};
use super::region::Region;
use super::CopyError;

/// A fixed set of pages, addressed as one byte range.
///
/// # Invariants
///
/// `pages` were allocated for this buffer and are ordinary kernel memory,
/// never region memory. Their contents are reached only through this
/// buffer: `&mut self` to change them, or a bio of
/// `BackingDisk::transfer` or `BackingDisk::write_group`, which hold the
/// buffer borrowed until the I/O completed.
pub(crate) struct BounceBuffer {
    pages: KVec<Page>,
}

impl BounceBuffer {
    /// Allocates `bytes` (rounded up to whole pages).
    pub(crate) fn new(bytes: usize) -> Result<Self, AllocError> {
        let count = bytes.div_ceil(PAGE_SIZE);
        let mut pages = KVec::with_capacity(count, GFP_KERNEL)?;
        for _ in 0..count {
            pages.push(Page::alloc_page(GFP_KERNEL)?, GFP_KERNEL)?;
        }
        // INVARIANT: Pages just allocated, reachable only through `pages`.
        Ok(Self { pages })
    }

    /// Size in bytes.
    pub(crate) fn capacity(&self) -> usize {
        self.pages.len() * PAGE_SIZE
    }

    pub(super) fn pages(&self) -> &[Page] {
        &self.pages
    }

    /// Calls `f(page, in_page, done, n)` for each page that the buffer's
    /// bytes `at..at + len` touch, in order: `n` bytes from `in_page` in
    /// `page` are the range's bytes `done..done + n`. Nothing is called if
    /// the range is out of bounds ([`CopyError::OutsideBuffer`]).
    fn each_page(
        &self,
        at: usize,
        len: usize,
        mut f: impl FnMut(&Page, usize, usize, usize) -> Result<(), CopyError>,
    ) -> Result<(), CopyError> {
        if at.checked_add(len).is_none_or(|end| end > self.capacity()) {
            return Err(CopyError::OutsideBuffer);
        }
        let mut done = 0;
        while done < len {
            let pos = at + done;
            let in_page = pos % PAGE_SIZE;
            let n = (PAGE_SIZE - in_page).min(len - done);
            let page = self
                .pages
                .get(pos / PAGE_SIZE)
                .ok_or(CopyError::OutsideBuffer)?;
            f(page, in_page, done, n)?;
            done += n;
        }
        Ok(())
    }

    /// Copies `len` bytes from `src` into the buffer at `at`, page by page.
    ///
    /// # Safety
    ///
    /// `src` must be valid for reads of `len` bytes and must not point into
    /// this buffer.
    unsafe fn copy_in(&mut self, at: usize, src: *const u8, len: usize) -> Result<(), CopyError> {
        self.each_page(at, len, |page, in_page, done, n| {
            // SAFETY: `src + done` is readable for `n` bytes (caller), the
            // range lies inside the page, and we hold `&mut self`, so nobody
            // else accesses the page (type invariant).
            unsafe { page.write_raw(src.add(done), in_page, n) }
                .map_err(|_| CopyError::OutsideBuffer)
        })
    }

    /// Copies `dst.len()` bytes of the buffer from `at` into `dst`
    /// ([`CopyError::OutsideBuffer`] if the range is out of bounds).
    pub(crate) fn copy_to_slice(&self, at: usize, dst: &mut [u8]) -> Result<(), CopyError> {
        self.each_page(at, dst.len(), |page, in_page, done, n| {
            let out = dst
                .get_mut(done..done + n)
                .ok_or(CopyError::OutsideBuffer)?;
            // SAFETY: `out` is writable for `n` bytes and is ordinary memory,
            // not one of our pages (only we reach those: type invariant); the
            // range lies inside the page.
            unsafe { page.read_raw(out.as_mut_ptr(), in_page, n) }
                .map_err(|_| CopyError::OutsideBuffer)
        })
    }

    /// Copies `src` into the buffer at `at` ([`CopyError::OutsideBuffer`]
    /// if it does not fit).
    pub(crate) fn copy_from_slice(&mut self, at: usize, src: &[u8]) -> Result<(), CopyError> {
        // SAFETY: A slice is readable for its length and cannot alias the
        // pages, which are only reachable through `&mut self` (type
        // invariant).
        unsafe { self.copy_in(at, src.as_ptr(), src.len()) }
    }

    /// Copies `len` bytes of the region from `offset` into the buffer at
    /// `at`; nothing is copied if either range is out of bounds.
    pub(crate) fn copy_from_region(
        &mut self,
        at: usize,
        region: &Region,
        offset: usize,
        len: usize,
    ) -> Result<(), CopyError> {
        let src = region
            .view_ptr(offset, len)
            .ok_or(CopyError::OutsideRegion)?;
        // SAFETY: `view_ptr` checked that `len` bytes are mapped at `src`;
        // region memory is never one of our pages (type invariant).
        unsafe { self.copy_in(at, src, len) }
    }

    /// Copies `len` bytes of the region from `offset` into the buffer at
    /// `at`, as [`BounceBuffer::copy_from_region`] does, and returns the
    /// standard CRC-32C of the bytes *as they landed in the buffer*: what a
    /// disk write of them carries, whatever happens to the region's bytes
    /// during or after the copy. Page by page: `memcpy`, then the CRC-32C
    /// of the page just written, still in the cache
    /// ([`BounceBuffer::crc_update_raw`]).
    /// Measured natively on writeback's cold buffers (`bench/copy_crc/run.sh
    /// --cold`), that is 0.83-0.86 of the time of checksumming the region
    /// and then copying it, and faster than `copy_crc`'s single pass, which
    /// reads every destination line before storing to it. Nothing is
    /// copied if either range is out of bounds.
    pub(crate) fn copy_from_region_checksummed(
        &mut self,
        at: usize,
        region: &Region,
        offset: usize,
        len: usize,
    ) -> Result<u32, CopyError> {
        let src = region
            .view_ptr(offset, len)
            .ok_or(CopyError::OutsideRegion)?;
        let mut crc = !0u32;
        self.each_page(at, len, |page, in_page, done, n| {
            // SAFETY: `src + done` is inside the region's view for `n` bytes
            // (`view_ptr` checked `len`), region memory is never one of our
            // pages, the range lies inside the page, and we hold `&mut
            // self`, so nobody else accesses the page (type invariant).
            unsafe { page.write_raw(src.add(done), in_page, n) }
                .map_err(|_| CopyError::OutsideBuffer)?;
            crc = self.crc_update_raw(crc, at + done, n)?;
            Ok(())
        })?;
        Ok(!crc)
    }

    /// The raw CRC-32C register after the buffer's bytes `at..at + len`,
    /// from `crc` (the kernel's `crc32c()`, no inversions), to checksum what
    /// a disk write of them carries ([`CopyError::OutsideBuffer`] if the
    /// range is out of bounds).
    pub(crate) fn crc_update_raw(&self, crc: u32, at: usize, len: usize) -> Result<u32, CopyError> {
        // SAFETY: Reads the boot CPU's feature bits only.
        let inline = unsafe { rapilog_cpu_copy_crc() };
        let mut crc = crc;
        self.each_page(at, len, |page, in_page, _, n| {
            // SAFETY: `page` is a page this buffer allocated (type
            // invariant), so it has a direct-map address for its life.
            let base = unsafe { rapilog_page_address(page.as_ptr()) }.cast::<u8>();
            // SAFETY: `in_page + n <= PAGE_SIZE`: the bytes lie in the page,
            // which nobody changes while we hold `&self` (type invariant);
            // `inline` is what `rapilog_cpu_copy_crc` said of this CPU.
            crc = unsafe { update_raw_per_page(crc, base.add(in_page), n, inline) };
            Ok(())
        })?;
        Ok(crc)
    }
}
