// SPDX-License-Identifier: GPL-2.0

//! Prototypes of `helpers.c`: one-line C wrappers around kernel functions
//! that are static inline or macros, which bindgen cannot see. Written by
//! hand from `helpers.h`; `tests/host/test_ffi_prototypes.py` (`make test`,
//! host-tests) checks every `extern "C"` block of `sys/` against it: names,
//! argument counts, types, and the constants that cross over.

use kernel::bindings::{
    bio, bio_set, blk_features_t, block_device, file, gendisk, page, pci_dev, pte_t, pteval_t,
    task_struct,
};
use kernel::ffi::{c_char, c_int, c_uint, c_ulong, c_ushort, c_void};

// The bindings' struct types hold zero-sized lockdep fields, which makes
// rustc call pointers to them not FFI-safe; they are only passed through.
#[allow(improper_ctypes)]
extern "C" {
    // The backing disk.
    pub(super) fn rapilog_bdev_open(path: *const c_char, holder: *mut c_void) -> *mut file;
    pub(super) fn rapilog_bdev_nr_sectors(bdev: *mut block_device) -> u64;
    pub(super) fn rapilog_bdev_logical_block_size(bdev: *mut block_device) -> c_uint;
    pub(super) fn rapilog_bdev_physical_block_size(bdev: *mut block_device) -> c_uint;
    pub(super) fn rapilog_bdev_partno(bdev: *mut block_device) -> c_uint;
    pub(super) fn rapilog_bio_alloc(
        bdev: *mut block_device,
        nr_vecs: c_ushort,
        write: bool,
        bs: *mut bio_set,
    ) -> *mut bio;

    // Bios arriving at /dev/rapilog0.
    pub(super) fn rapilog_bio_disk_private(bio: *mut bio) -> *mut c_void;
    pub(super) fn rapilog_disk_openers(disk: *mut gendisk) -> c_int;
    pub(super) fn rapilog_bio_op(bio: *mut bio) -> c_uint;
    pub(super) fn rapilog_bio_preflush(bio: *mut bio) -> bool;
    pub(super) fn rapilog_bio_fua(bio: *mut bio) -> bool;
    pub(super) fn rapilog_bio_end(bio: *mut bio, status: c_uint);
    pub(super) fn rapilog_bio_copy(
        bio: *mut bio,
        skip: c_uint,
        buf: *mut c_void,
        len: c_uint,
        to_bio: bool,
    );
    pub(super) fn rapilog_bio_split_to_limits(bio: *mut bio) -> *mut bio;
    pub(super) fn rapilog_bio_copy_crc(
        bio: *mut bio,
        skip: c_uint,
        buf: *mut c_void,
        len: c_uint,
        crc: u32,
        copy: unsafe extern "C" fn(
            crc: u32,
            dst: *mut c_void,
            src: *const c_void,
            len: c_uint,
        ) -> u32,
    ) -> u32;
    pub(super) fn rapilog_cpu_has_crc32() -> bool;
    pub(super) fn rapilog_cpu_copy_crc() -> bool;
    pub(super) fn rapilog_bio_remap(bio: *mut bio, bdev: *mut block_device);
    pub(super) fn rapilog_bio_split_front(
        bio: *mut bio,
        sectors: c_uint,
        bs: *mut bio_set,
    ) -> *mut bio;
    pub(super) fn rapilog_bioset_create(pool_size: c_uint, bvecs: bool) -> *mut bio_set;
    pub(super) fn rapilog_bioset_destroy(bs: *mut bio_set);

    // /dev/rapilog0.
    pub(super) fn rapilog_cache_features() -> blk_features_t;

    // Bounce pages.
    pub(super) fn rapilog_page_address(page: *mut page) -> *mut c_void;
    // The region.
    pub(super) fn rapilog_direct_map_addr(phys: u64) -> c_ulong;
    pub(super) fn rapilog_page_level_size(level: c_uint) -> c_ulong;
    pub(super) fn rapilog_entry_present(entry: *mut pte_t) -> bool;
    pub(super) fn rapilog_leaf_pfn(leaf: *mut pte_t, level: c_uint) -> c_ulong;
    pub(super) fn rapilog_leaf_flags_4k(
        leaf: *mut pte_t,
        level: c_uint,
        writable: bool,
    ) -> pteval_t;
    pub(super) fn rapilog_leaf_wrprotect(leaf: *mut pte_t);
    pub(super) fn rapilog_pte_set(ptep: *mut pte_t, pfn: c_ulong, flags: pteval_t);
    pub(super) fn rapilog_pte_clear(ptep: *mut pte_t);
    pub(super) fn rapilog_vmap_ro(pages: *mut *mut page, count: c_uint) -> *mut c_void;
    pub(super) fn rapilog_vunmap(addr: *const c_void);
    pub(super) fn rapilog_this_cpu() -> c_uint;
    pub(super) fn rapilog_preempt_disable();
    pub(super) fn rapilog_preempt_enable();

    // Threads.
    pub(super) fn rapilog_get_task_struct(t: *mut task_struct);
    pub(super) fn rapilog_put_task_struct(t: *mut task_struct);
    pub(super) fn rapilog_memalloc_noio_save() -> c_uint;
    pub(super) fn rapilog_memalloc_noio_restore(flags: c_uint);

    // The IOMMU fence; the path codes are `enum rapilog_dma_path`.
    pub(super) fn rapilog_pci_name(pdev: *mut pci_dev) -> *const c_char;
    pub(super) fn rapilog_pci_dma_path(pdev: *mut pci_dev) -> c_int;
}
