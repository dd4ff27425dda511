// SPDX-License-Identifier: GPL-2.0

//! The reserved physical region: checked, claimed, mapped read-only, and
//! written only through short-lived write windows.
//!
//! # What the region is
//!
//! The region is reserved at boot (`memmap=SIZE$PHYS`): an e820 "Reserved"
//! range, neither System RAM nor in the kernel's direct map. Whether its
//! page frames have a `struct page` depends on where it lies: a 128 MiB
//! memory section gets a memory map only if part of it is RAM, so a region
//! that covers a whole section (any region of 256 MiB or more) has frames
//! without one, and a region across a section boundary may have both kinds.
//! Nothing here uses `struct page` for region frames: they are mapped by
//! page frame number through page-table entries this module writes itself,
//! so every region size and position is handled the same way.
//!
//! [`Region::claim`] checks that no part is System RAM, claims the range in
//! `iomem_resource`, then checks that the whole range is reserved memory
//! (covered by "Reserved" resources) and that the direct map has no entry
//! for any of it (verified, not assumed: a direct-map alias would be a
//! writable mapping this module cannot protect).
//!
//! # Protection scheme (`protect=window`, the default)
//!
//! The driver maps the region twice over:
//!
//! - once, permanently, **read-only**: `memremap(MEMREMAP_WB)` maps the
//!   region in vmalloc space (the kernel's `ioremap` path, which needs no
//!   `struct page`, records the cache mode with PAT, and uses 2 MiB or 1 GiB
//!   entries where alignment allows). Before the address leaves
//!   [`Region::claim`], every leaf entry of that mapping (found with
//!   `lookup_address()`) is checked to map the expected frames and made
//!   read-only. Reads, writeback and recovery use this view; a stray kernel
//!   write through it faults instead of changing a byte.
//! - for each write, a **write window** in a per-CPU slot: each possible
//!   CPU owns [`SLOT_PAGES`] pages of vmalloc space, obtained once with
//!   `vmap()` of a dummy page; their PTE pointers are looked up once and
//!   the PTEs cleared. Opening a window disables preemption, takes this
//!   CPU's slot and points its PTEs at the region frames being written,
//!   with the view's attributes plus write access. Closing clears those
//!   PTEs, then invalidates this CPU's TLB entries for them with `invlpg`,
//!   and only then enables preemption again.
//!
//! Why no CPU can hold a writable translation of the view: memremap()
//! takes vmalloc space that is free, and the kernel purges freed vmalloc
//! space from every TLB before handing it out again; until the leaves are
//! read-only only `Region::claim` knows the address, and nothing reads or
//! writes through it; and the guard page vmalloc leaves after each area
//! keeps a neighbour's next-page prefetch out. As defence in depth every
//! online CPU then invalidates each leaf of the view (and the dummy
//! translations of its own slot) with `invlpg` through
//! `on_each_cpu_cond_mask()`: that drops global entries and those of the
//! current PCID (`__flush_tlb_all()`, which would reach other PCIDs under
//! page-table isolation too, is exported to KVM only).
//!
//! Why no writable TLB entry is left anywhere once a window closes:
//!
//! 1. Only the owning CPU sets a slot's PTEs, and only with preemption
//!    disabled, so the window is used on that CPU alone and in one address
//!    space (no context switch while it is open; interrupts do not switch
//!    page tables when they arrive in kernel mode).
//! 2. No other CPU is ever given a slot's address, so no other CPU's TLB
//!    holds a translation for it (the same assumption the `vm_map_ram()`
//!    scheme this replaces made for its per-CPU aliases).
//! 3. On close the PTEs are cleared first, then `invlpg` drops this CPU's
//!    entries (global ones, and those of the PCID the window was used in,
//!    the only one). A not-present PTE is never cached, so nothing can
//!    bring the translation back; the next window on this CPU starts from
//!    empty PTEs.
//!
//! This is how x86-32 `kmap_local()` uses its per-CPU fixmap slots, with a
//! vmalloc area the module owns instead of the fixmap. Per write it costs a
//! few PTE stores and one `invlpg` per page, with no allocation and no lock
//! (`vm_map_ram()` allocated from per-CPU vmap blocks under a spinlock,
//! needed `struct page`s, and its lazy unmap needed an extra `invlpg` per
//! page).
//!
//! A window larger than the slot (only formatting opens those: the
//! descriptor table) is *streamed*: each write or zeroing maps a slot's
//! worth of pages, copies, and unmaps before moving on. Such a window has
//! no single address ([`WriteWindow::raw`] returns an empty part).
//!
//! Cached PTE pointers stay valid for the slots' lifetime: the kernel frees
//! a kernel PTE table only when a new huge mapping replaces the whole 2 MiB
//! range it covers (`vmap_try_huge_pmd()`), which cannot include an area
//! someone else holds.
//!
//! `set_memory_ro()`, `flush_tlb_kernel_range()`, `get_vm_area()`,
//! `apply_to_page_range()` with `init_mm` and `__flush_tlb_all()` are not
//! available to modules, `vmap()`/`vm_map_ram()` need `struct page`s,
//! `vmap_pfn()` refuses frames that have them, and x86 `ioremap_prot()`
//! drops the write-protect bit; hence this scheme. It relies on the
//! exported `memremap`, `memunmap`, `lookup_address` (GPL), `vmap`,
//! `vunmap`, `on_each_cpu_cond_mask`, `walk_iomem_res_desc` (GPL) and
//! `region_intersects` (GPL), and on x86-64 (its page-table entry layout,
//! through the static inline accessors in `helpers.c`, and `invlpg`).
//!
//! `protect=off` keeps the view writable and writes through it: the same
//! data path without the windows' cost, to measure it.
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
//!
//! # Nothing sleeps while a write window is open
//!
//! An open window holds this CPU's slot with preemption disabled. Sleeping
//! there would schedule with preemption off ("scheduling while atomic"),
//! and another task on this CPU would find the slot busy. This is enforced
//! by construction, as far as the type system reaches:
//!
//! - **No window leaves this file.** [`WriteWindow`] is private; safe code
//!   writes the region through three calls that open a window, copy, and
//!   close it before they return: [`Region::write`], [`Region::zero`] and
//!   [`Region::publish`]. So no caller can keep a window open across code of
//!   its own, store one, or hand one to another thread (the guard is
//!   `!Send` as well).
//! - **The only caller code that runs inside a window** is `publish`'s
//!   `describe`, which turns the payload's checksum into the descriptor's
//!   bytes. It is a `fn` pointer, so it captures nothing, and it gets plain
//!   data `D: Copy + 'static`: no reference to the device, hence to none of
//!   its locks, condition variables, disk or bios, the things in this
//!   driver that sleep.
//! - **The payload is copied by a [`WindowSource`]**, an `unsafe trait`:
//!   only `sys/` can implement one (unsafe code is denied everywhere else),
//!   and each implementation promises that its copy does not sleep (a bio's
//!   pages are mapped with `kmap_local_page()`).
//!
//! What no type can rule out is `describe` calling a free function that
//! sleeps (`fsleep()`, an allocation with `GFP_KERNEL`), or reaching the
//! device through a `&'static` made on purpose by leaking an `Arc`: Rust
//! has no "may sleep" effect. Upstream checks that with klint's atomic-context analysis,
//! which this out-of-tree build does not run. `describe` is one encoder
//! call in `write_path.rs`, and should it ever schedule, the kernel
//! (`CONFIG_PREEMPT_COUNT=y`, as Debian builds it) reports "scheduling while
//! atomic" at once.

use core::marker::PhantomData;
use core::ops::Range;
use core::ptr::{self, NonNull};

use kernel::alloc::{flags::__GFP_ZERO, flags::GFP_KERNEL, KVVec};
use kernel::bindings;
use kernel::ffi::{c_int, c_uint, c_ulong, c_void};
use kernel::page::{Page, PAGE_SIZE};
use kernel::sync::atomic::{Atomic, Relaxed};

use super::compat::{smp_mb, Write};
use super::helpers::*;
use super::CopyError;
use crate::config::Protect;

/// Pages of one CPU's write-window slot: the most a window maps at once. A
/// record of the largest size the driver uses (128 KiB, 33 pages when
/// unaligned) plus its descriptor's page fits a two-part window.
const SLOT_PAGES: usize = 64;

/// Why a region could not be claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClaimError {
    /// Part of the range is System RAM (not reserved at boot).
    SystemRam,
    /// Another driver or the firmware already claimed part of the range.
    Claimed,
    /// Part of the range is not reserved memory: no "Reserved" resource
    /// covers it (a hole, a device, ACPI or persistent memory).
    NotReserved {
        /// Physical address of the first such byte.
        phys: u64,
    },
    /// The kernel's direct map maps part of the range: a writable alias
    /// that cannot be protected.
    DirectMapped {
        /// Physical address of the first mapped page.
        phys: u64,
    },
    /// Memory for the bookkeeping or vmalloc space could not be allocated.
    NoMemory,
    /// `memremap()` failed, or mapped the range in a way this module does
    /// not handle (the text says what).
    Map(&'static str),
}

/// Why a write window could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WindowError {
    /// A range is empty or lies outside the region.
    OutOfRange,
    /// The two ranges overlap.
    Overlap,
    /// The two ranges span more than [`SLOT_PAGES`] pages.
    TooManyPages,
    /// This CPU's slot is in use: a window was opened while another one
    /// was open on this CPU (from an interrupt, or nested), which the data
    /// path never does.
    Busy,
}

/// Why [`Region::write`] wrote nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteError {
    /// No window could be opened over the range.
    Window(WindowError),
    /// The bytes do not fit the range.
    Copy(CopyError),
}

/// Why [`Region::publish`] failed; the record is not published (its
/// descriptor was not written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PublishError {
    /// No window could be opened over the payload and the descriptor.
    Window(WindowError),
    /// The payload could not be copied (nothing was).
    Payload(CopyError),
    /// The descriptor's bytes do not fit its range.
    Descriptor(CopyError),
}

/// Bytes a write window can be filled from: what [`Region::publish`] copies
/// into a record's payload.
///
/// # Safety
///
/// [`WindowSource::copy_to`] and [`WindowSource::copy_checksummed`] must
/// not sleep, nor take a lock that a task on this CPU could hold, and the
/// checksum the latter returns must be the standard CRC-32C of the bytes
/// it stored (the descriptor vouches for them): it runs inside a write window, with preemption
/// disabled (module docs). Implementations live in `sys/` only.
pub(crate) unsafe trait WindowSource {
    /// Size in bytes.
    fn len(&self) -> usize;

    /// Copies all of it to `dst`.
    ///
    /// # Safety
    ///
    /// `dst` is valid for writes of `self.len()` bytes and is not memory
    /// of the source.
    unsafe fn copy_to(&self, dst: *mut u8) -> Result<(), CopyError>;

    /// Copies all of it to `dst` and returns the standard CRC-32C of the
    /// bytes stored there, computed from the values stored (so it is the
    /// checksum of what landed in `dst`, as [`WriteWindow::checksum`]
    /// would read it back); `None` if this source or CPU has no such copy
    /// (then only [`copy_to`](Self::copy_to) ran, and the caller checksums
    /// `dst`).
    ///
    /// # Safety
    ///
    /// As [`copy_to`](Self::copy_to).
    unsafe fn copy_checksummed(&self, dst: *mut u8) -> Result<Option<u32>, CopyError> {
        // SAFETY: The caller's promise, passed on.
        unsafe { self.copy_to(dst) }.map(|()| None)
    }
}

/// Which range of a [`WriteWindow`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// The first range given to [`Region::open_window`].
    First,
    /// The second range.
    Second,
}

impl Part {
    fn index(self) -> usize {
        match self {
            Part::First => 0,
            Part::Second => 1,
        }
    }
}

/// The region claimed in `iomem_resource` as "rapilog".
///
/// # Invariants
///
/// `[start, start + len)` was claimed with `__request_region()` on
/// `iomem_resource` and is released only by `drop`.
struct Claim {
    start: u64,
    len: u64,
}

impl Drop for Claim {
    fn drop(&mut self) {
        // SAFETY: Claimed on `iomem_resource` and not yet released (type
        // invariant).
        unsafe {
            bindings::__release_region(&raw mut bindings::iomem_resource, self.start, self.len)
        };
    }
}

/// The `memremap()` mapping of the whole region: the view.
///
/// # Invariants
///
/// The pointer is what `memremap()` returned for the whole region, and the
/// mapping is removed only by `drop`.
struct View(NonNull<u8>);

impl Drop for View {
    fn drop(&mut self) {
        // The leaves may be read-only: `memunmap` clears them whatever
        // their bits, and no TLB entry of the view is writable.
        // SAFETY: The address came from `memremap()` and is still mapped
        // (type invariant); no copy of it outlives the `Region` that owns
        // this view.
        unsafe { bindings::memunmap(self.0.as_ptr().cast()) };
    }
}

/// One CPU's write-window slot: [`SLOT_PAGES`] pages of vmalloc space whose
/// PTEs this module sets and clears.
///
/// # Invariants
///
/// - `base` is a `vmap()` area of [`SLOT_PAGES`] pages that this slot owns
///   (nobody else has its address) and unmaps only in `drop`.
/// - Once [`Slots::new`] returns, `ptes[i]` is the 4 KiB PTE that maps page
///   `i` of that area, valid for the slot's life (module docs), and every
///   PTE is clear unless the slot is held (`busy`) by its CPU, which alone
///   writes them, with preemption disabled.
struct Slot {
    base: NonNull<u8>,
    /// The PTE of each page of the slot (see the module docs for why the
    /// pointers stay valid). Every PTE is clear unless a window is open.
    ptes: [*mut bindings::pte_t; SLOT_PAGES],
    /// A window uses the slot. Only its CPU touches it, with preemption
    /// disabled; an interrupt's window on the same CPU would begin and end
    /// between two instructions of the interrupted code, so plain loads and
    /// stores suffice.
    busy: Atomic<bool>,
}

impl Slot {
    fn page_addr(&self, i: usize) -> usize {
        self.base.as_ptr() as usize + i * PAGE_SIZE
    }

    /// Points slot pages `at..at + count` at the page frames from `pfn` on.
    ///
    /// # Safety
    ///
    /// The caller holds the slot (`busy`, on its CPU with preemption
    /// disabled), `at + count <= SLOT_PAGES`, and the frames are region
    /// frames.
    unsafe fn map(&self, at: usize, pfn: c_ulong, count: usize, flags: bindings::pteval_t) {
        let ptes = self.ptes.get(at..at + count).unwrap_or(&[]);
        for (i, pte) in ptes.iter().enumerate() {
            // SAFETY: `pte` is the slot's own PTE (type invariant), written
            // only by the slot's holder, which the caller is.
            unsafe { rapilog_pte_set(*pte, pfn + i as c_ulong, flags) };
        }
    }

    /// Clears slot pages `0..count` and drops this CPU's TLB entries for
    /// them.
    ///
    /// # Safety
    ///
    /// As for [`Slot::map`]; no pointer into those pages is used afterwards.
    unsafe fn unmap(&self, count: usize) {
        let ptes = self.ptes.get(..count).unwrap_or(&[]);
        for pte in ptes {
            // SAFETY: See `map`.
            unsafe { rapilog_pte_clear(*pte) };
        }
        // After the PTEs are clear (the calls above are compiler barriers,
        // and stores are not reordered with a later `invlpg`).
        for i in 0..ptes.len() {
            invalidate_local(self.page_addr(i));
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // SAFETY: `base` came from `vmap()` and is unmapped only here (type
        // invariant); its PTEs are clear or still map the dummy page, both
        // of which `vunmap` handles.
        unsafe { rapilog_vunmap(self.base.as_ptr().cast()) };
    }
}

/// Drops this CPU's TLB entry for the page at `addr`.
#[cfg(target_arch = "x86_64")]
fn invalidate_local(addr: usize) {
    // SAFETY: `invlpg` only drops a TLB entry of this CPU: it reads and
    // writes no memory and cannot fault.
    unsafe { core::arch::asm!("invlpg [{}]", in(reg) addr, options(nostack, preserves_flags)) };
}

/// The per-CPU write-window slots (`protect=window`).
///
/// # Invariants
///
/// `slots[cpu]` is CPU `cpu`'s slot, one for each possible CPU
/// (`0..nr_cpu_ids`), and only that CPU holds it ([`Slots::hold`]).
struct Slots {
    /// Indexed by CPU number (`0..nr_cpu_ids`).
    slots: KVVec<Slot>,
    /// The page the slots were first mapped to; freed after them.
    _dummy: Page,
    /// Attributes of a window PTE: the view's, in 4 KiB form, writable.
    flags: bindings::pteval_t,
}

impl Slots {
    /// One slot per possible CPU, every PTE clear. Before a slot is used,
    /// its CPU drops any TLB entry of the dummy page it was first mapped to
    /// (`invalidate_everywhere`).
    fn new(flags: bindings::pteval_t) -> Result<Self, ClaimError> {
        let dummy = Page::alloc_page(GFP_KERNEL | __GFP_ZERO).map_err(|_| ClaimError::NoMemory)?;
        // SAFETY: `nr_cpu_ids` is set during boot and constant afterwards.
        let cpus = unsafe { bindings::nr_cpu_ids } as usize;
        let mut slots = KVVec::with_capacity(cpus, GFP_KERNEL).map_err(|_| ClaimError::NoMemory)?;
        let mut pages = [dummy.as_ptr(); SLOT_PAGES];
        for _ in 0..cpus {
            // SAFETY: `pages` holds `SLOT_PAGES` pointers to the page we
            // allocated; `vmap` reads the array and does not keep it.
            let base = unsafe { rapilog_vmap_ro(pages.as_mut_ptr(), SLOT_PAGES as c_uint) };
            let base = NonNull::new(base.cast::<u8>()).ok_or(ClaimError::NoMemory)?;
            let mut slot = Slot {
                base,
                ptes: [ptr::null_mut(); SLOT_PAGES],
                busy: Atomic::new(false),
            };
            for i in 0..SLOT_PAGES {
                let (pte, level) = lookup(slot.page_addr(i));
                if pte.is_null() || level != bindings::pg_level_PG_LEVEL_4K {
                    return Err(ClaimError::Map(
                        "vmap() did not map a window slot with 4 KiB pages",
                    ));
                }
                slot.ptes[i] = pte;
            }
            for pte in &slot.ptes {
                // SAFETY: The PTE maps our own `vmap()` area, which nobody
                // else knows about yet.
                unsafe { rapilog_pte_clear(*pte) };
            }
            // INVARIANT: `ptes` are the area's 4 KiB PTEs, all clear, and the
            // slot is pushed at index `cpu`.
            slots
                .push(slot, GFP_KERNEL)
                .map_err(|_| ClaimError::NoMemory)?;
        }
        Ok(Self {
            slots,
            _dummy: dummy,
            flags,
        })
    }

    /// Disables preemption and takes this CPU's slot.
    fn hold(&self) -> Result<SlotHold<'_>, WindowError> {
        // SAFETY: Paired with `preempt_enable` in `SlotHold::drop` or below.
        unsafe { rapilog_preempt_disable() };
        // SAFETY: Preemption is disabled: the CPU number stays ours.
        let cpu = unsafe { rapilog_this_cpu() } as usize;
        // `slots[cpu]` is this CPU's slot (type invariant).
        match self.slots.get(cpu) {
            Some(slot) if !slot.busy.load(Relaxed) => {
                slot.busy.store(true, Relaxed);
                // INVARIANT: Preemption is disabled, and this CPU's slot was
                // free and is now marked busy by us.
                Ok(SlotHold {
                    slot,
                    flags: self.flags,
                })
            }
            _ => {
                // SAFETY: Undoes the disable above.
                unsafe { rapilog_preempt_enable() };
                Err(WindowError::Busy)
            }
        }
    }
}

/// This CPU's slot, held with preemption disabled.
///
/// # Invariants
///
/// Preemption has been disabled since [`Slots::hold`] made this (once per
/// hold), `slot` is this CPU's slot, and its `busy` flag was set by that
/// call: no other window uses the slot until `drop` clears it. The hold is
/// `!Send` (`&Slot` is: a slot holds raw PTE pointers), so it is dropped on
/// this CPU.
struct SlotHold<'a> {
    slot: &'a Slot,
    /// Attributes of a window PTE ([`Slots::flags`]).
    flags: bindings::pteval_t,
}

impl SlotHold<'_> {
    /// Points slot pages `at..at + count` at region pages from `page` on.
    ///
    /// # Safety
    ///
    /// `at + count <= SLOT_PAGES` and the pages lie inside the region that
    /// `base_pfn` starts.
    unsafe fn map(&self, at: usize, base_pfn: c_ulong, page: usize, count: usize) {
        // SAFETY: We hold the slot on its CPU (type invariant); the rest is
        // the caller's promise.
        unsafe {
            self.slot
                .map(at, base_pfn + page as c_ulong, count, self.flags)
        };
    }
}

impl Drop for SlotHold<'_> {
    fn drop(&mut self) {
        self.slot.busy.store(false, Relaxed);
        // SAFETY: Pairs with the disable in `Slots::hold` (type invariant:
        // one disable per hold, not yet undone).
        unsafe { rapilog_preempt_enable() };
    }
}

/// `lookup_address()`: the page-table entry for kernel address `addr` and
/// its level, or null (then the level says how much is unmapped).
fn lookup(addr: usize) -> (*mut bindings::pte_t, c_uint) {
    let mut level: c_uint = 0;
    // SAFETY: `lookup_address` walks the kernel page tables (init_mm's,
    // which are never freed above the PTE level) and writes `level`.
    let entry = unsafe { bindings::lookup_address(addr as c_ulong, &mut level) };
    (entry, level)
}

/// Bytes a page-table entry at `level` maps (at least a page).
fn level_size(level: c_uint) -> usize {
    // SAFETY: A pure computation on its argument.
    (unsafe { rapilog_page_level_size(level) } as usize).max(PAGE_SIZE)
}

/// Most bytes of the view one round of [`invalidate_everywhere`] covers:
/// at most 4096 `invlpg`s with interrupts disabled on each CPU.
const INVALIDATE_CHUNK: usize = 4096 * PAGE_SIZE;

/// Drops this CPU's TLB entries for the kernel mapping `[start, start +
/// len)`: one `invlpg` per leaf entry, which drops every entry of a large
/// page (Intel SDM, INVLPG).
fn invalidate_mapping_local(start: usize, len: usize) {
    let mut pos = 0;
    while pos < len {
        let va = start + pos;
        let (_, level) = lookup(va);
        invalidate_local(va);
        let size = level_size(level);
        pos += size - va % size;
    }
}

/// Makes every online CPU drop its TLB entries for the view's pages and
/// for its own window slot's pages (module docs: defence in depth).
fn invalidate_everywhere(view: &View, len: usize, slots: &Slots) {
    unsafe extern "C" fn view_chunk(info: *mut c_void) {
        // SAFETY: `info` is the `Range` below, alive until every CPU is done.
        let range = unsafe { &*info.cast::<Range<usize>>() };
        invalidate_mapping_local(range.start, range.end - range.start);
    }
    unsafe extern "C" fn own_slot(info: *mut c_void) {
        // SAFETY: `info` is `slots`, alive until every CPU is done.
        let slots = unsafe { &*info.cast::<Slots>() };
        // SAFETY: Runs with interrupts disabled: the CPU number stays ours.
        let cpu = unsafe { rapilog_this_cpu() } as usize;
        if let Some(slot) = slots.slots.get(cpu) {
            invalidate_mapping_local(slot.page_addr(0), SLOT_PAGES * PAGE_SIZE);
        }
    }
    let start = view.0.as_ptr() as usize;
    let mut pos = 0;
    while pos < len {
        let mut chunk = (start + pos)..(start + (pos + INVALIDATE_CHUNK).min(len));
        on_each_cpu(view_chunk, (&raw mut chunk).cast());
        pos += INVALIDATE_CHUNK;
    }
    on_each_cpu(own_slot, ptr::from_ref(slots).cast_mut().cast());
}

/// Runs `func(info)` on every online CPU with interrupts disabled, and
/// returns when all have.
fn on_each_cpu(func: unsafe extern "C" fn(*mut c_void), info: *mut c_void) {
    // SAFETY: Process context with interrupts enabled (module load); `wait`
    // is true, so `info` only has to outlive this call, which the callers'
    // borrows guarantee; `func` only reads `info`.
    unsafe {
        bindings::on_each_cpu_cond_mask(
            None,
            Some(func),
            info,
            true,
            &raw const bindings::__cpu_online_mask,
        )
    };
}

/// Checks that `[phys, phys + len)` is covered by "Reserved" resources;
/// returns the first address that is not.
fn first_unreserved(phys: u64, len: u64) -> Option<u64> {
    unsafe extern "C" fn covered(res: *mut bindings::resource, arg: *mut c_void) -> c_int {
        // SAFETY: `walk_iomem_res_desc` passes a resource it copied (the
        // match clipped to the range asked about) and our `arg`: the cursor.
        let (res, cursor) = unsafe { (&*res, &mut *arg.cast::<u64>()) };
        if res.start > *cursor {
            return 1; // A gap before this resource: stop.
        }
        *cursor = (*cursor).max(res.end.saturating_add(1));
        0
    }
    let end = phys + len - 1;
    let mut cursor = phys;
    // SAFETY: The walk holds the resource lock and calls `covered` with a
    // pointer to `cursor`, which outlives the call.
    unsafe {
        bindings::walk_iomem_res_desc(
            bindings::IORES_DESC_RESERVED as c_ulong,
            bindings::IORESOURCE_MEM as c_ulong,
            phys,
            end,
            (&raw mut cursor).cast(),
            Some(covered),
        )
    };
    (cursor <= end).then_some(cursor)
}

/// Finds the first page of `[phys, phys + len)` that the direct map maps.
fn first_direct_mapped(phys: u64, len: u64) -> Option<u64> {
    let mut pos = 0u64;
    while pos < len {
        // SAFETY: Address arithmetic only (`__va`).
        let va = unsafe { rapilog_direct_map_addr(phys + pos) } as usize;
        let (entry, level) = lookup(va);
        // SAFETY: A non-null entry points into the kernel page tables.
        if !entry.is_null() && unsafe { rapilog_entry_present(entry) } {
            return Some(phys + pos);
        }
        // Nothing mapped up to the end of what this entry (or its absence)
        // covers.
        let size = level_size(level);
        pos += (size - va % size) as u64;
    }
    None
}

/// The claimed and mapped region.
///
/// # Invariants
///
/// - `[phys, phys + len)` is page aligned, not empty, reserved memory (no
///   System RAM, covered by "Reserved" resources, not in the direct map),
///   and claimed in `iomem_resource` by `_claim` for as long as `self`
///   lives.
/// - `view` maps all `len` bytes, write-back cached, for as long as `self`
///   lives, and nothing else maps them writable in this kernel except a
///   held window slot.
/// - With `slots: Some` (`protect=window`) every leaf entry of the view is
///   read-only, no CPU holds a writable TLB entry for it, and `slots` is
///   one slot per possible CPU whose PTEs are clear unless that CPU holds
///   it; with `None` (`protect=off`) the view is writable.
pub(crate) struct Region {
    phys: u64,
    len: usize,
    /// Read-only (`protect=window`) or writable (`protect=off`) view.
    view: View,
    /// `protect=window`: the write-window slots; `None` writes through the
    /// view.
    slots: Option<Slots>,
    // Released last: after the mappings are gone.
    _claim: Claim,
}

// Every access through the view and the slots is a copy whose exclusivity
// is the caller's protocol (module docs); slot PTEs are written only by the
// CPU holding the slot.
// SAFETY: Plain addresses of memory this object owns for its whole life: it
// can be used and dropped from any thread.
unsafe impl Send for Region {}
// SAFETY: `&Region` methods only read the view or map their own CPU's
// slot; see `Send`.
unsafe impl Sync for Region {}

fn pfn(phys: u64) -> c_ulong {
    // Lossless: c_ulong is 64 bits on every architecture this driver builds for.
    (phys / PAGE_SIZE as u64) as c_ulong
}

impl Region {
    /// Checks that `[phys, phys + len)` is reserved memory nobody else
    /// claimed, claims it and maps it. `phys` and `len` are page aligned
    /// and `len` is not zero (`RegionSpec` guarantees it). Nothing is
    /// written to the region.
    pub(crate) fn claim(phys: u64, len: u64, protect: Protect) -> Result<Self, ClaimError> {
        let bytes = usize::try_from(len).map_err(|_| ClaimError::NoMemory)?;
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
        // INVARIANT: Just claimed; released by `Claim::drop` only.
        let claim = Claim { start: phys, len };
        // Only now: an MMIO range someone claimed is reported as claimed.
        if let Some(at) = first_unreserved(phys, len) {
            return Err(ClaimError::NotReserved { phys: at });
        }
        if let Some(at) = first_direct_mapped(phys, len) {
            return Err(ClaimError::DirectMapped { phys: at });
        }
        // SAFETY: The range is reserved memory we claimed, not RAM the
        // kernel uses (checked above); `memremap` maps it in vmalloc space.
        let view = unsafe { bindings::memremap(phys, bytes, bindings::MEMREMAP_WB as c_ulong) };
        // INVARIANT: A non-null result maps the whole region until
        // `View::drop` unmaps it.
        let view = View(NonNull::new(view.cast::<u8>()).ok_or(ClaimError::Map(
            "memremap() failed (the kernel log above may say why)",
        ))?);
        let flags = Self::check_view(&view, phys, bytes, protect)?;
        let slots = match protect {
            Protect::Off => None,
            Protect::Window => {
                let slots = Slots::new(flags)?;
                invalidate_everywhere(&view, bytes, &slots);
                Some(slots)
            }
        };
        // INVARIANT: The range was checked and claimed above; `check_view`
        // found every byte mapped as expected and, with `protect=window`,
        // made each leaf read-only; `invalidate_everywhere` then dropped
        // every CPU's TLB entries of the view and of its slot.
        Ok(Self {
            phys,
            len: bytes,
            view,
            slots,
            _claim: claim,
        })
    }

    /// Walks the view's leaf entries: each must map the expected frames
    /// with the same attributes; with `protect=window` each is made
    /// read-only (the caller invalidates the TLBs). Returns the attributes of a
    /// writable 4 KiB PTE of the region.
    fn check_view(
        view: &View,
        phys: u64,
        len: usize,
        protect: Protect,
    ) -> Result<bindings::pteval_t, ClaimError> {
        let start = view.0.as_ptr() as usize;
        let mut flags = None;
        let mut pos = 0;
        while pos < len {
            let va = start + pos;
            let (leaf, level) = lookup(va);
            // SAFETY: A non-null entry points into the kernel page tables.
            if leaf.is_null() || !unsafe { rapilog_entry_present(leaf) } {
                return Err(ClaimError::Map(
                    "memremap() left part of the region unmapped",
                ));
            }
            if ![
                bindings::pg_level_PG_LEVEL_4K,
                bindings::pg_level_PG_LEVEL_2M,
                bindings::pg_level_PG_LEVEL_1G,
            ]
            .contains(&level)
            {
                return Err(ClaimError::Map("memremap() used an unknown page size"));
            }
            let size = level_size(level);
            let leaf_start = va - va % size;
            if leaf_start < start || leaf_start - start + size > len {
                return Err(ClaimError::Map("memremap() mapped beyond the region"));
            }
            // SAFETY: `leaf` is a present leaf entry at `level`.
            let first = unsafe { rapilog_leaf_pfn(leaf, level) };
            if first + ((va - leaf_start) / PAGE_SIZE) as c_ulong != pfn(phys + pos as u64) {
                return Err(ClaimError::Map("memremap() mapped other memory"));
            }
            // SAFETY: As above.
            let leaf_flags = unsafe { rapilog_leaf_flags_4k(leaf, level, true) };
            if flags.is_some_and(|f| f != leaf_flags) {
                return Err(ClaimError::Map("memremap() mapped parts differently"));
            }
            flags = Some(leaf_flags);
            if protect == Protect::Window {
                // SAFETY: The leaf belongs to our own mapping, which nothing
                // else knows yet; the caller invalidates the TLBs.
                unsafe { rapilog_leaf_wrprotect(leaf) };
            }
            pos = leaf_start + size - start;
        }
        flags.ok_or(ClaimError::Map("empty region"))
    }

    /// Size in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The whole region as bytes, while nothing else can touch it: at load,
    /// before the device exists (`&mut self`: no window, no copy in flight).
    pub(crate) fn quiescent(&mut self) -> &[u8] {
        // SAFETY: The view maps `len` bytes for as long as `self` lives (type
        // invariants), and the exclusive borrow keeps every writer of this
        // driver away while the slice exists.
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
        // SAFETY: `src..src + len` lies inside the view (`view_ptr` checked),
        // mapped while `self` lives (type invariants), and `dst` is ours, so
        // the ranges do not overlap.
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

    /// The raw CRC-32C register after the region's bytes `offset..offset +
    /// len`, from `crc` (no inversions: the kernel's `crc32c()`), read
    /// through the permanent view like [`Region::checksum`], to continue a
    /// checksum over several stretches; `None` if the range is not inside
    /// the region.
    pub(crate) fn crc_update_raw(&self, crc: u32, offset: usize, len: usize) -> Option<u32> {
        let src = self.view_ptr(offset, len)?;
        // SAFETY: As in `checksum`: `view_ptr` checked that `src..src + len`
        // lies inside the view, mapped while `self` lives; the bytes are
        // only read, as raw memory.
        Some(unsafe { super::crc32c::update_raw(crc, src, len) })
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
        // SAFETY: `offset <= len`, so the result stays inside the mapping of
        // `len` bytes (type invariants).
        Some(unsafe { self.view.0.as_ptr().add(offset) }.cast_const())
    }

    /// Copies `src` into the region from `range.start` on, through a write
    /// window over `range` that is closed again before this returns.
    /// Nothing is written unless `src` fits `range`.
    pub(crate) fn write(&self, range: Range<usize>, src: &[u8]) -> Result<(), WriteError> {
        let mut window = self.open_window(range, None).map_err(WriteError::Window)?;
        window.write(Part::First, 0, src).map_err(WriteError::Copy)
    }

    /// Zeroes the region's bytes `range`, through a write window closed
    /// again before this returns.
    pub(crate) fn zero(&self, range: Range<usize>) -> Result<(), WindowError> {
        self.open_window(range, None)?.zero(Part::First);
        Ok(())
    }

    /// Writes a record, steps 2 and 3 of the publication protocol
    /// (FORMAT.md), in one write window over `payload` and `descriptor`:
    /// copies `src` into `payload` (which must have its size), computes the
    /// CRC-32C of what landed in the region, has `describe(data, crc)` make
    /// the descriptor's bytes, and writes them into `descriptor` after a
    /// write barrier: the payload is visible before any byte of the
    /// descriptor. The window is closed before this returns.
    ///
    /// `describe` runs inside the window, so it gets plain data and
    /// captures nothing (module docs, "Nothing sleeps while a write window
    /// is open").
    pub(crate) fn publish<S: WindowSource, D: Copy + 'static, const N: usize>(
        &self,
        payload: Range<usize>,
        descriptor: Range<usize>,
        src: &S,
        data: D,
        describe: fn(D, u32) -> [u8; N],
    ) -> Result<(), PublishError> {
        let mut window = self
            .open_window(payload, Some(descriptor))
            .map_err(PublishError::Window)?;
        let checksum = match window
            .fill(Part::First, src)
            .map_err(PublishError::Payload)?
        {
            // Copied and checksummed in one pass (`copy_crc`).
            Some(checksum) => checksum,
            None => window.checksum(Part::First),
        };
        let bytes = describe(data, checksum);
        // On x86 stores are ordered anyway; this documents and enforces it.
        smp_mb(Write);
        window
            .write_all(Part::Second, &bytes)
            .map_err(PublishError::Descriptor)
    }

    /// Opens a window through which `first` (and `second`, if given) can be
    /// written. With `protect=window` the window is this CPU's slot, mapped
    /// writable: **nothing may sleep until it is dropped** (preemption is
    /// disabled; module docs). Ranges may not overlap; two ranges together
    /// may span at most [`SLOT_PAGES`] pages (with `protect=window`).
    /// Inlined so that the window is built where the caller keeps it: a
    /// returned `WriteWindow` (78 bytes) is otherwise moved with a `memcpy`
    /// call on every write.
    #[inline(always)]
    fn open_window(
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
        let two_parts = second.is_some();
        let ranges = [first, second.unwrap_or(0..0)];
        let Some(slots) = &self.slots else {
            // INVARIANT: Ranges checked above; `protect=off`: the view is
            // writable (`Region`'s invariants).
            return Ok(WriteWindow {
                region: self,
                ranges,
                access: Access::View,
                _not_send: PhantomData,
            });
        };
        let page_span = |r: &Range<usize>| {
            if r.is_empty() {
                0..0
            } else {
                (r.start / PAGE_SIZE)..((r.end - 1) / PAGE_SIZE + 1)
            }
        };
        let first_pages = page_span(&ranges[0]);
        let second_pages = page_span(&ranges[1]);
        let total = first_pages.len() + second_pages.len();
        if two_parts && total > SLOT_PAGES {
            return Err(WindowError::TooManyPages);
        }
        let hold = slots.hold()?;
        if total > SLOT_PAGES {
            // INVARIANT: Ranges checked above, one part; the slot is held
            // and none of its pages is mapped.
            return Ok(WriteWindow {
                region: self,
                ranges,
                access: Access::Streamed(hold),
                _not_send: PhantomData,
            });
        }
        let base = pfn(self.phys);
        // SAFETY: We hold the slot; `total <= SLOT_PAGES`; both page spans
        // lie inside the region (`check`), which starts at frame `base`.
        unsafe {
            hold.map(0, base, first_pages.start, first_pages.len());
            hold.map(
                first_pages.len(),
                base,
                second_pages.start,
                second_pages.len(),
            );
        }
        let at = |page: usize, r: &Range<usize>| {
            if r.is_empty() {
                ptr::null_mut()
            } else {
                (hold.slot.page_addr(page) + r.start % PAGE_SIZE) as *mut u8
            }
        };
        let addrs = [at(0, &ranges[0]), at(first_pages.len(), &ranges[1])];
        // INVARIANT: Ranges checked above; the slot is held and its first
        // `total` pages map both parts' pages, writable, at `addrs`.
        Ok(WriteWindow {
            region: self,
            ranges,
            access: Access::Mapped {
                hold,
                pages: total,
                addrs,
            },
            _not_send: PhantomData,
        })
    }

    /// Calls `f(dst, done, n)` for consecutive pieces of region bytes
    /// `range`, each mapped writable in the held slot at `dst` for `n`
    /// bytes while `f` runs; `done` counts the bytes before the piece.
    fn stream(
        &self,
        hold: &SlotHold<'_>,
        range: Range<usize>,
        mut f: impl FnMut(*mut u8, usize, usize),
    ) {
        let mut pos = range.start;
        while pos < range.end {
            let page = pos / PAGE_SIZE;
            let end = ((page + SLOT_PAGES) * PAGE_SIZE).min(range.end);
            let count = (end - 1) / PAGE_SIZE + 1 - page;
            // SAFETY: `hold` is held (its type invariant); `count <=
            // SLOT_PAGES`; the pages lie inside the region (the window's
            // range was checked).
            unsafe { hold.map(0, pfn(self.phys), page, count) };
            f(
                (hold.slot.page_addr(0) + pos % PAGE_SIZE) as *mut u8,
                pos - range.start,
                end - pos,
            );
            // SAFETY: As above; `f` has returned and kept no pointer.
            unsafe { hold.slot.unmap(count) };
            pos = end;
        }
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
            // SAFETY: `last < len`: inside the mapping (type invariants).
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

/// How a [`WriteWindow`] reaches its bytes.
enum Access<'a> {
    /// `protect=off`: through the writable view.
    View,
    /// Both parts mapped in this CPU's slot, `pages` pages, at `addrs`.
    Mapped {
        hold: SlotHold<'a>,
        pages: usize,
        addrs: [*mut u8; 2],
    },
    /// Larger than the slot: each access maps its pieces in turn.
    Streamed(SlotHold<'a>),
}

/// One or two byte ranges of the region, writable until dropped. Private to
/// this file: it is opened and closed within one call of [`Region`]'s
/// (module docs, "Nothing sleeps while a write window is open").
///
/// # Invariants
///
/// - `ranges[0]` is a non-empty range of the region, `ranges[1]` one too or
///   empty, and the two do not overlap.
/// - [`Access::View`]: `protect=off`, the view is writable.
/// - [`Access::Mapped`]: `hold` holds this CPU's slot (preemption disabled);
///   its first `pages` pages map the page spans of both ranges, writable,
///   and `addrs[i]` is where `ranges[i].start` is mapped (null if empty).
/// - [`Access::Streamed`]: `hold` holds this CPU's slot, none of whose pages
///   is mapped between two accesses; `ranges[1]` is empty.
struct WriteWindow<'a> {
    region: &'a Region,
    /// Region offsets of each part (the second may be empty).
    ranges: [Range<usize>; 2],
    access: Access<'a>,
    /// Used and dropped on the CPU that opened it (its slot is that CPU's).
    _not_send: PhantomData<*mut ()>,
}

impl WriteWindow<'_> {
    /// Address and length of a part; the window stays open while `self` is
    /// borrowed. A streamed window (larger than a slot: formatting only) has
    /// no single address: its parts come back empty.
    fn raw(&mut self, part: Part) -> (*mut u8, usize) {
        let range = &self.ranges[part.index()];
        if range.is_empty() {
            return (ptr::null_mut(), 0);
        }
        match &self.access {
            Access::View => (
                // SAFETY: The range lies inside the region (type invariant),
                // which the view maps.
                unsafe { self.region.view.0.as_ptr().add(range.start) },
                range.len(),
            ),
            Access::Mapped { addrs, .. } => (addrs[part.index()], range.len()),
            Access::Streamed(_) => (ptr::null_mut(), 0),
        }
    }

    /// Calls `f(dst, done, n)` for pieces of `len` bytes from `offset` in a
    /// part, each writable at `dst` for `n` bytes while `f` runs; no call if
    /// they do not fit the part.
    fn pieces(
        &self,
        part: Part,
        offset: usize,
        len: usize,
        mut f: impl FnMut(*mut u8, usize, usize),
    ) -> Result<(), CopyError> {
        let range = &self.ranges[part.index()];
        if offset.checked_add(len).is_none_or(|end| end > range.len()) {
            return Err(CopyError::OutsideBuffer);
        }
        if len == 0 {
            return Ok(());
        }
        let start = range.start + offset;
        match &self.access {
            Access::View => {
                // SAFETY: Inside the part (checked above), which lies inside
                // the region (type invariant), which the view maps.
                f(unsafe { self.region.view.0.as_ptr().add(start) }, 0, len)
            }
            // SAFETY: The part is mapped writable from `addrs` on for its
            // length (type invariant), and `offset + len` is inside it.
            Access::Mapped { addrs, .. } => f(unsafe { addrs[part.index()].add(offset) }, 0, len),
            Access::Streamed(hold) => self.region.stream(hold, start..start + len, f),
        }
        Ok(())
    }

    /// Fills a part with `src`, which must have the part's size
    /// ([`CopyError::SizeMismatch`]; a streamed part never matches), and
    /// returns the CRC-32C of what landed if the source computed it on the
    /// way ([`WindowSource::copy_checksummed`]).
    fn fill<S: WindowSource>(&mut self, part: Part, src: &S) -> Result<Option<u32>, CopyError> {
        let (dst, len) = self.raw(part);
        if len != src.len() {
            return Err(CopyError::SizeMismatch);
        }
        // SAFETY: The window maps `len` writable bytes at `dst` while it is
        // borrowed (`raw`, type invariants); region memory is no source's
        // memory.
        unsafe { src.copy_checksummed(dst) }
    }

    /// Copies `src` to `offset` in a part ([`CopyError::OutsideBuffer`] if
    /// it does not fit, and nothing is written).
    fn write(&mut self, part: Part, offset: usize, src: &[u8]) -> Result<(), CopyError> {
        self.pieces(part, offset, src.len(), |dst, done, n| {
            // SAFETY: `dst` is writable for `n` bytes while this runs
            // (`pieces`), and `done + n <= src.len()`; `src` is ordinary
            // memory, not region memory.
            unsafe { ptr::copy_nonoverlapping(src.as_ptr().add(done), dst, n) }
        })
    }

    /// Writes a whole part of `N` bytes (a descriptor) with one
    /// constant-size store, which the compiler emits as a few moves rather
    /// than a `memcpy` call ([`CopyError::SizeMismatch`] if the part is not
    /// `N` bytes, and nothing is written).
    fn write_all<const N: usize>(&mut self, part: Part, src: &[u8; N]) -> Result<(), CopyError> {
        if self.ranges[part.index()].len() != N {
            return Err(CopyError::SizeMismatch);
        }
        self.pieces(part, 0, N, |dst, done, n| {
            if done == 0 && n == N {
                // SAFETY: `dst` is writable for `n` = N bytes while this
                // runs (`pieces`); no alignment is assumed.
                unsafe { ptr::write_unaligned(dst.cast::<[u8; N]>(), *src) }
            } else {
                // SAFETY: As in `write`.
                unsafe { ptr::copy_nonoverlapping(src.as_ptr().add(done), dst, n) }
            }
        })
    }

    /// Zeroes a whole part.
    fn zero(&mut self, part: Part) {
        let len = self.ranges[part.index()].len();
        // Cannot fail: the whole part, from its start.
        let _ = self.pieces(part, 0, len, |dst, _, n| {
            // SAFETY: `dst` is writable for `n` bytes while this runs.
            unsafe { ptr::write_bytes(dst, 0, n) }
        });
    }

    /// CRC-32C (standard form) of a part's current contents, read through
    /// the view (same frames, same cache mode: it sees this CPU's writes
    /// through the window).
    fn checksum(&self, part: Part) -> u32 {
        let range = &self.ranges[part.index()];
        match self.region.view_ptr(range.start, range.len()) {
            // SAFETY: `view_ptr` checked that the view maps the part.
            Some(src) => unsafe { super::crc32c::checksum_raw(src, range.len()) },
            None => 0,
        }
    }
}

impl Drop for WriteWindow<'_> {
    fn drop(&mut self) {
        if let Access::Mapped { hold, pages, .. } = &self.access {
            // SAFETY: We hold the slot and `pages` pages of it are mapped
            // (type invariant); no pointer into them outlives the window.
            unsafe { hold.slot.unmap(*pages) };
        }
        // Then the hold (if any) is dropped: slot released, preemption on.
    }
}
