// SPDX-License-Identifier: GPL-2.0

//! The reserved physical region: checked, claimed, mapped read-only, and
//! written only through short-lived write windows.
//!
//! # Protection scheme (`protect=window`, the default)
//!
//! The region is reserved at boot (`memmap=SIZE$PHYS`), so it is neither
//! System RAM nor in the kernel's direct map, yet its page frames have
//! `struct page`s. The driver maps it twice over:
//!
//! - once, permanently, **read-only** (`vmap(..., PAGE_KERNEL_RO)`): reads,
//!   writeback and recovery use this view. A stray kernel write through it
//!   faults instead of changing a byte.
//! - for each write, a **write window**: a writable alias of just the pages
//!   being written, made with `vm_map_ram()` on one CPU with migration
//!   disabled, used with preemption disabled, and torn down before the
//!   bio completes. Tearing down clears the PTEs (`vm_unmap_ram()`, whose TLB
//!   flush is lazy) and invalidates the alias's TLB entries on this CPU with
//!   `invlpg` - before and after the unmap. No other CPU ever touched the
//!   alias, and with preemption disabled while it is in use no other address
//!   space on this CPU did either, so once the window is closed no TLB
//!   anywhere still maps the region writable.
//!
//! `set_memory_ro()`, `flush_tlb_kernel_range()` and `apply_to_page_range()`
//! (which needs `init_mm`) are not available to modules, and x86
//! `ioremap_prot()` drops the write-protect bit; hence this scheme.
//!
//! `protect=off` maps the region writable once and writes through that
//! mapping: the same data path without the window's cost, to measure it.
//!
//! # No references into the region
//!
//! Region memory is shared with concurrent writers on other CPUs and with
//! the crash kernel, so this module never hands out `&`/`&mut` slices of it
//! while the device is live: bytes move in and out by copies through raw
//! pointers (like `memcpy_toio`). Which bytes a writer may write is the data
//! path's protocol (ring reservations, one superblock writer), not something
//! references could express. The one exception is [`Region::quiescent`],
//! which needs `&mut Region`, i.e. no window and no reader can exist.

use core::ops::Range;
use core::ptr::{self, NonNull};

use kernel::alloc::{flags::GFP_KERNEL, KVVec};
use kernel::bindings;
use kernel::ffi::{c_int, c_uint, c_ulong, c_void};
use kernel::page::PAGE_SIZE;

use super::helpers::*;
use crate::config::Protect;

/// Most pages one two-part write window maps: a record of the largest size
/// the driver uses (128 KiB, 33 pages when unaligned) plus its descriptor's
/// page, within `vm_map_ram()`'s per-CPU fast path (64 pages on 64-bit).
const TWO_PART_MAX_PAGES: usize = 64;

/// Why a region could not be claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClaimError {
    /// Part of the range is System RAM (not reserved at boot).
    SystemRam,
    /// A page frame of the range has no `struct page` (not memory at all).
    NoStructPage {
        /// Physical address of the first such page.
        phys: u64,
    },
    /// Another driver or the firmware already claimed part of the range.
    Claimed,
    /// The page array or the mapping could not be allocated.
    NoMemory,
}

/// Why a write window could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WindowError {
    /// A range is empty or lies outside the region.
    OutOfRange,
    /// The two ranges overlap.
    Overlap,
    /// The two ranges span more than [`TWO_PART_MAX_PAGES`] pages.
    TooManyPages,
    /// `vm_map_ram()` failed (out of vmalloc space or memory); retry later.
    NoMemory,
}

/// Which range of a [`WriteWindow`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// The first range given to [`Region::open_window`].
    First,
    /// The second range.
    Second,
}

/// The region claimed in `iomem_resource` as "rapilog".
struct Claim {
    start: u64,
    len: u64,
}

impl Drop for Claim {
    fn drop(&mut self) {
        // SAFETY: `[start, start + len)` was claimed with `__request_region`
        // on `iomem_resource` by `Region::claim` and is released only here.
        unsafe {
            bindings::__release_region(&raw mut bindings::iomem_resource, self.start, self.len)
        };
    }
}

/// A `vmap()` mapping of the whole region.
struct Mapping(NonNull<u8>);

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: The address came from `vmap()` and is unmapped only here;
        // no copy of it outlives the `Region` that owns this mapping.
        unsafe { rapilog_vunmap(self.0.as_ptr().cast()) };
    }
}

/// The claimed and mapped region.
pub(crate) struct Region {
    len: usize,
    protect: Protect,
    /// `struct page` of every page frame, in order: write windows map these.
    pages: KVVec<*mut bindings::page>,
    /// Read-only (`protect=window`) or writable (`protect=off`) view.
    view: Mapping,
    // Released last: after the mapping is gone.
    _claim: Claim,
}

// Every access through the page pointers and the mapping is a copy whose
// exclusivity is the caller's protocol (module docs).
// SAFETY: Plain addresses of memory this object owns for its whole life: it
// can be used and dropped from any thread.
unsafe impl Send for Region {}
// SAFETY: `&Region` methods only read the view or map their own aliases;
// see `Send`.
unsafe impl Sync for Region {}

fn pfn(phys: u64) -> c_ulong {
    // Lossless: c_ulong is 64 bits on every architecture this driver builds for.
    (phys / PAGE_SIZE as u64) as c_ulong
}

impl Region {
    /// Checks that `[phys, phys + len)` is reserved memory nobody else
    /// claimed, claims it and maps it. `phys` and `len` are page aligned
    /// (`RegionSpec` guarantees it). Nothing is written.
    pub(crate) fn claim(phys: u64, len: u64, protect: Protect) -> Result<Self, ClaimError> {
        let bytes = usize::try_from(len).map_err(|_| ClaimError::NoMemory)?;
        let count = bytes / PAGE_SIZE;
        let page_count = c_uint::try_from(count).map_err(|_| ClaimError::NoMemory)?;
        // SAFETY: `region_intersects` only walks the resource tree under its
        // own lock.
        let ram = unsafe {
            bindings::region_intersects(
                phys,
                bytes,
                bindings::IORESOURCE_SYSTEM_RAM as c_ulong,
                bindings::IORES_DESC_NONE as c_ulong,
            )
        };
        if ram != bindings::REGION_DISJOINT as c_int {
            return Err(ClaimError::SystemRam);
        }
        // SAFETY: The name is a static string, as the resource keeps a
        // pointer to it until released; `iomem_resource` is the root of the
        // memory resource tree, which `__request_region` locks itself.
        let claimed = unsafe {
            bindings::__request_region(
                &raw mut bindings::iomem_resource,
                phys,
                len,
                c"rapilog".as_ptr().cast(),
                0,
            )
        };
        if claimed.is_null() {
            return Err(ClaimError::Claimed);
        }
        let claim = Claim { start: phys, len };
        // Only now: an MMIO range someone claimed is reported as claimed.
        for i in 0..count as u64 {
            let frame = phys + i * PAGE_SIZE as u64;
            // SAFETY: `pfn_valid` only looks the frame up in the memory map.
            if !unsafe { rapilog_pfn_valid(pfn(frame)) } {
                return Err(ClaimError::NoStructPage { phys: frame });
            }
        }
        let mut pages =
            KVVec::with_capacity(count, GFP_KERNEL).map_err(|_| ClaimError::NoMemory)?;
        let first = pfn(phys);
        for i in 0..count as c_ulong {
            // SAFETY: Every frame of the range was checked with `pfn_valid`.
            let page = unsafe { rapilog_pfn_to_page(first + i) };
            pages
                .push(page, GFP_KERNEL)
                .map_err(|_| ClaimError::NoMemory)?;
        }
        // SAFETY: `pages` holds `page_count` valid `struct page` pointers of
        // frames we claimed; `vmap` copies the array, it does not keep it.
        let view = unsafe { rapilog_vmap(pages.as_mut_ptr(), page_count, protect == Protect::Off) };
        let view = NonNull::new(view.cast::<u8>()).ok_or(ClaimError::NoMemory)?;
        Ok(Self {
            len: bytes,
            protect,
            pages,
            view: Mapping(view),
            _claim: claim,
        })
    }

    /// Size in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The whole region as bytes, while nothing else can touch it: at load,
    /// before the device exists (`&mut self`: no window, no copy in flight).
    pub(crate) fn quiescent(&mut self) -> &[u8] {
        // SAFETY: The view maps `len` bytes for as long as `self` lives, and
        // the exclusive borrow keeps every writer of this driver away while
        // the slice exists.
        unsafe { core::slice::from_raw_parts(self.view.0.as_ptr(), self.len) }
    }

    /// Copies the region's bytes from `offset` on into `dst`, as many as
    /// fit before its end, while the device is live: a snapshot for
    /// `rapilogctl dump` and the status. A record being copied in at the
    /// same time may be torn in the copy; its checksums tell. Returns how
    /// many bytes were copied.
    pub(crate) fn snapshot(&self, offset: usize, dst: &mut [u8]) -> usize {
        let len = self.len.saturating_sub(offset).min(dst.len());
        let Some(src) = self.view_ptr(offset, len) else {
            return 0;
        };
        // Writers may change those region bytes concurrently through their
        // windows: no reference to them is formed, they are copied as raw
        // memory, which is what the kernel's own memcpy of shared buffers does.
        // SAFETY: `src..src + len` lies inside the view (`view_ptr` checked)
        // and `dst` is ours, so the ranges do not overlap.
        unsafe { ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), len) };
        len
    }

    /// Standard CRC-32C of the region's bytes `offset..offset + len`, read
    /// through the permanent view, as writeback checks a record before
    /// writing it (`None` if the range is not inside the region). One pass,
    /// no copy: the kernel's `crc32c()` reads the mapping directly.
    ///
    /// Writers may be filling *other* records through their windows at the
    /// same time; the caller's protocol (a published record is not rewritten
    /// until writeback frees it) keeps these bytes stable, and if something
    /// else changed them meanwhile (the very corruption this looks for), the
    /// result is simply a mismatch.
    pub(crate) fn checksum(&self, offset: usize, len: usize) -> Option<u32> {
        let src = self.view_ptr(offset, len)?;
        // SAFETY: `view_ptr` checked that `src..src + len` lies inside the
        // view, which stays mapped for as long as `self` lives; the bytes
        // are only read, as raw memory (no reference to region memory is
        // formed, see the module docs).
        Some(unsafe { super::crc32c::checksum_raw(src, len) })
    }

    /// Checks that `range` lies inside the region and is not empty.
    fn check(&self, range: &Range<usize>) -> bool {
        range.start < range.end && range.end <= self.len
    }

    /// Address of `offset` in the permanent view, for copies out of the
    /// region (bios, bounce pages) in sibling modules; `None` unless
    /// `offset..offset + len` is inside the region.
    pub(super) fn view_ptr(&self, offset: usize, len: usize) -> Option<*const u8> {
        let end = offset.checked_add(len)?;
        if end > self.len {
            return None;
        }
        // SAFETY: `offset <= len`, so the result stays inside the mapping.
        Some(unsafe { self.view.0.as_ptr().add(offset) }.cast_const())
    }

    /// Opens a window through which `first` (and `second`, if given) can be
    /// written. With `protect=window` the window is a fresh writable alias
    /// of their pages on this CPU: **do not sleep until it is dropped**
    /// (preemption is disabled). Ranges may not overlap.
    pub(crate) fn open_window(
        &self,
        first: Range<usize>,
        second: Option<Range<usize>>,
    ) -> Result<WriteWindow<'_>, WindowError> {
        if !self.check(&first) || second.as_ref().is_some_and(|s| !self.check(s)) {
            return Err(WindowError::OutOfRange);
        }
        if let Some(s) = &second {
            if s.start < first.end && first.start < s.end {
                return Err(WindowError::Overlap);
            }
        }
        match self.protect {
            Protect::Off => {
                let at = |r: &Range<usize>| {
                    // SAFETY: `check` put the range inside the mapping.
                    let p = unsafe { self.view.0.as_ptr().add(r.start) };
                    (p, r.end - r.start)
                };
                let first_part = at(&first);
                let second_part = second.as_ref().map_or((ptr::null_mut(), 0), at);
                Ok(WriteWindow {
                    _region: self,
                    alias: None,
                    parts: [first_part, second_part],
                })
            }
            Protect::Window => self.open_alias(first, second),
        }
    }

    fn open_alias(
        &self,
        first: Range<usize>,
        second: Option<Range<usize>>,
    ) -> Result<WriteWindow<'_>, WindowError> {
        let page_span = |r: &Range<usize>| (r.start / PAGE_SIZE)..((r.end - 1) / PAGE_SIZE + 1);
        let first_pages = page_span(&first);
        let first_count = first_pages.end - first_pages.start;
        let mut local = [ptr::null_mut::<bindings::page>(); TWO_PART_MAX_PAGES];
        let (array, count): (*mut *mut bindings::page, usize) = match &second {
            // One range: its pages are consecutive in our own array.
            None => {
                let slice = self
                    .pages
                    .get(first_pages.clone())
                    .ok_or(WindowError::OutOfRange)?;
                (slice.as_ptr().cast_mut(), first_count)
            }
            Some(s) => {
                let second_pages = page_span(s);
                let first_slice = self.pages.get(first_pages).ok_or(WindowError::OutOfRange)?;
                let second_slice = self
                    .pages
                    .get(second_pages)
                    .ok_or(WindowError::OutOfRange)?;
                let count = first_slice.len() + second_slice.len();
                let dst = local.get_mut(..count).ok_or(WindowError::TooManyPages)?;
                for (d, s) in dst.iter_mut().zip(first_slice.iter().chain(second_slice)) {
                    *d = *s;
                }
                (local.as_mut_ptr(), count)
            }
        };
        let count_c = c_uint::try_from(count).map_err(|_| WindowError::TooManyPages)?;
        // Mapping may allocate page tables and vmap blocks: in the I/O path
        // that must not recurse into I/O.
        // SAFETY: Paired with the restore in `WriteWindow::drop` or below.
        let noio = unsafe { rapilog_memalloc_noio_save() };
        // SAFETY: Paired with `migrate_enable` in `WriteWindow::drop` or below.
        unsafe { bindings::migrate_disable() };
        // SAFETY: `array` holds `count` valid `struct page` pointers of the
        // claimed region; `vm_map_ram` reads the array and does not keep it.
        let addr = unsafe { rapilog_vm_map_ram(array, count_c) };
        let Some(addr) = NonNull::new(addr.cast::<u8>()) else {
            // SAFETY: Undoes the two calls above, in reverse order.
            unsafe {
                bindings::migrate_enable();
                rapilog_memalloc_noio_restore(noio);
            }
            return Err(WindowError::NoMemory);
        };
        // SAFETY: Paired with `preempt_enable` in `WriteWindow::drop`; the
        // window's user does not sleep (documented on `open_window`).
        unsafe { rapilog_preempt_disable() };
        let base = addr.as_ptr();
        // SAFETY: The alias maps `count` whole pages starting at `base`; each
        // range starts inside its first page.
        let first_part = (
            unsafe { base.add(first.start % PAGE_SIZE) },
            first.end - first.start,
        );
        let second_part = match &second {
            // SAFETY: As above; the second range's pages follow the first's.
            Some(s) => (
                unsafe { base.add(first_count * PAGE_SIZE + s.start % PAGE_SIZE) },
                s.end - s.start,
            ),
            None => (ptr::null_mut(), 0),
        };
        Ok(WriteWindow {
            _region: self,
            alias: Some(Alias {
                addr,
                pages: count_c,
                noio,
            }),
            parts: [first_part, second_part],
        })
    }
}

impl Region {
    /// Test only (`test_stray_write=`): writes `value` to the region's last
    /// byte the way a stray kernel write would, through the permanent view
    /// or, with `closed_window`, through the address a write window had
    /// just before it was closed. With `protect=window` both must fault
    /// (oops) without changing the byte; with `protect=off` the view is
    /// writable and the byte changes.
    pub(crate) fn stray_write(&self, closed_window: bool, value: u8) {
        let last = self.len - 1;
        let target = if closed_window {
            let Ok(mut window) = self.open_window(last..self.len, None) else {
                return;
            };
            let (addr, _) = window.raw(Part::First);
            drop(window);
            addr
        } else {
            // SAFETY: `last < len`: inside the mapping.
            unsafe { self.view.0.as_ptr().add(last) }
        };
        // Deliberately the write a stray pointer would do, through a mapping
        // the protection makes read-only or unmapped: the CPU faults before
        // the store. With `protect=off` it is an ordinary write.
        // SAFETY: The target is the region's last byte, which we own and
        // which holds nothing live (the ring is empty at load).
        unsafe { ptr::write_volatile(target, value) };
    }
}

/// The writable alias behind a window in `protect=window` mode.
struct Alias {
    addr: NonNull<u8>,
    pages: c_uint,
    noio: c_uint,
}

/// Drops this CPU's TLB entries for the alias's pages.
#[cfg(target_arch = "x86_64")]
fn invalidate_local(addr: NonNull<u8>, pages: c_uint) {
    for i in 0..pages as usize {
        let page = addr.as_ptr() as usize + i * PAGE_SIZE;
        // SAFETY: `invlpg` only drops a TLB entry of this CPU: it reads and
        // writes no memory and cannot fault.
        unsafe { core::arch::asm!("invlpg [{}]", in(reg) page, options(nostack, preserves_flags)) };
    }
}

/// One or two byte ranges of the region, writable until dropped.
pub(crate) struct WriteWindow<'a> {
    _region: &'a Region,
    alias: Option<Alias>,
    /// Start and length of each part (the second may be empty).
    parts: [(*mut u8, usize); 2],
}

impl WriteWindow<'_> {
    fn part(&self, part: Part) -> (*mut u8, usize) {
        match part {
            Part::First => self.parts[0],
            Part::Second => self.parts[1],
        }
    }

    /// Address and length of a part for sibling modules that copy into it
    /// (bios); the window stays open while `self` is borrowed.
    pub(super) fn raw(&mut self, part: Part) -> (*mut u8, usize) {
        self.part(part)
    }

    /// Copies `src` to `offset` in a part; `false` if it does not fit.
    pub(crate) fn write(&mut self, part: Part, offset: usize, src: &[u8]) -> bool {
        let (base, len) = self.part(part);
        if offset.checked_add(src.len()).is_none_or(|end| end > len) {
            return false;
        }
        // SAFETY: The part is mapped writable for `len` bytes while the
        // window is open; `src` is ordinary memory, not region memory.
        unsafe { ptr::copy_nonoverlapping(src.as_ptr(), base.add(offset), src.len()) };
        true
    }

    /// Zeroes a whole part.
    pub(crate) fn zero(&mut self, part: Part) {
        let (base, len) = self.part(part);
        if len > 0 {
            // SAFETY: As in `write`.
            unsafe { ptr::write_bytes(base, 0, len) };
        }
    }

    /// CRC-32C (standard form) of a part's current contents.
    pub(crate) fn checksum(&self, part: Part) -> u32 {
        let (base, len) = self.part(part);
        // SAFETY: The part is mapped for `len` bytes while the window is open.
        unsafe { super::crc32c::checksum_raw(base.cast_const(), len) }
    }
}

impl Drop for WriteWindow<'_> {
    fn drop(&mut self) {
        let Some(alias) = self.alias.take() else {
            return;
        };
        // Still on the CPU (and in the address space) that used the alias.
        invalidate_local(alias.addr, alias.pages);
        // Undo `open_alias` in reverse order: preemption on, alias unmapped
        // (PTEs cleared now, TLB flush lazy), this CPU's TLB entries dropped
        // once more, migration allowed again, allocation scope restored.
        // SAFETY: Pairs with the calls in `open_alias`; `addr` and `pages`
        // are what `vm_map_ram` returned and was given.
        unsafe {
            rapilog_preempt_enable();
            rapilog_vm_unmap_ram(alias.addr.as_ptr().cast::<c_void>(), alias.pages);
        }
        invalidate_local(alias.addr, alias.pages);
        // SAFETY: See above.
        unsafe {
            bindings::migrate_enable();
            rapilog_memalloc_noio_restore(alias.noio);
        }
    }
}
