// SPDX-License-Identifier: GPL-2.0

//! `/dev/rapilog0`: a bio-based block device.
//!
//! Bio-based rather than blk-mq: the driver must be able to sleep in the
//! submission path (back-pressure when the ring is full), which a blk-mq
//! `queue_rq` may not, and the 7.x Rust blk-mq API has no request accessors
//! (sector, length, data) anyway. The kernel crate has no bio-based disk, so
//! this is one: `__blk_alloc_disk()` + `device_add_disk()` with our own
//! `block_device_operations` whose `submit_bio` hands each bio to a
//! [`BioHandler`].

use core::ptr::NonNull;

use kernel::bindings;
use kernel::error::{from_err_ptr, to_result};
use kernel::prelude::*;
use kernel::static_lock_class;
use kernel::sync::Arc;

use super::bio::Bio;
use super::helpers::*;

/// What receives the bios submitted to the disk.
pub(crate) trait BioHandler: Send + Sync + 'static {
    /// Handles one bio, already split to the queue limits; may sleep.
    /// Must complete it or pass it on.
    fn submit_bio(&self, bio: Bio);
}

/// Shape of the disk.
pub(crate) struct DiskParams<'a> {
    /// Device name under /dev (at most 31 bytes).
    pub(crate) name: &'a str,
    /// Capacity in 512-byte sectors.
    pub(crate) sectors: u64,
    /// Logical block size in bytes.
    pub(crate) logical_block_size: u32,
    /// Physical block size in bytes.
    pub(crate) physical_block_size: u32,
    /// Largest bio, in 512-byte sectors (bigger ones are split for us).
    pub(crate) max_hw_sectors: u32,
}

/// A registered disk; deleted when dropped.
///
/// # Invariants
///
/// - `disk` points to a `struct gendisk` that `__blk_alloc_disk()` allocated
///   and `device_add_disk()` added, and this object holds the reference
///   that `put_disk()` drops; nothing else deletes it.
/// - Its `fops` are `Table::<T>::OPS` (whose `submit_bio` is
///   [`submit_bio_trampoline::<T>`]) and its `private_data` is `handler`.
/// - `handler` came from `Arc::into_raw()` of an `Arc<T>` this object owns:
///   it stays valid until `drop` gives it back, after `del_gendisk()`.
pub(crate) struct GenDisk<T: BioHandler> {
    disk: NonNull<bindings::gendisk>,
    /// The handler, as stored in `private_data`.
    handler: *const T,
}

// SAFETY: The gendisk is a kernel object usable from any thread; the handler
// is an `Arc<T>` (type invariants) with `T: Send + Sync`.
unsafe impl<T: BioHandler> Send for GenDisk<T> {}
// SAFETY: `&GenDisk` gives access to nothing.
unsafe impl<T: BioHandler> Sync for GenDisk<T> {}

/// `submit_bio` of our `block_device_operations`.
unsafe extern "C" fn submit_bio_trampoline<T: BioHandler>(bio: *mut bindings::bio) {
    let Some(bio) = NonNull::new(bio) else {
        return;
    };
    // SAFETY: Only a `GenDisk<T>`'s fops point here, and the block layer
    // calls us with a valid bio of that disk, whose `private_data` is the
    // `Arc<T>` pointer of the `GenDisk` (type invariants); it stays alive
    // until after `del_gendisk` returned, i.e. after the last call.
    let handler = unsafe { &*rapilog_bio_disk_private(bio.as_ptr()).cast::<T>() };
    // SAFETY: `submit_bio` hands us a valid bio of our disk to complete; we
    // do not touch `bio` again after handing it to `Bio::arrived`.
    if let Some(bio) = unsafe { Bio::arrived(bio) } {
        handler.submit_bio(bio);
    }
}

impl<T: BioHandler> GenDisk<T> {
    /// Creates the disk and makes it visible; bios may arrive before this
    /// returns.
    pub(crate) fn add(params: &DiskParams<'_>, handler: Arc<T>) -> Result<Self> {
        const fn ops<T: BioHandler>() -> bindings::block_device_operations {
            bindings::block_device_operations {
                submit_bio: Some(submit_bio_trampoline::<T>),
                open: None,
                release: None,
                ioctl: None,
                compat_ioctl: None,
                check_events: None,
                unlock_native_capacity: None,
                getgeo: None,
                set_read_only: None,
                swap_slot_free_notify: None,
                report_zones: None,
                devnode: None,
                alternative_gpt_sector: None,
                get_unique_id: None,
                // Holding the device open pins the module: no rmmod while open.
                owner: &raw const bindings::__this_module as *mut bindings::module,
                pr_ops: core::ptr::null_mut(),
                free_disk: None,
                poll_bio: None,
            }
        }
        struct Table<T: BioHandler>(core::marker::PhantomData<T>);
        impl<T: BioHandler> Table<T> {
            const OPS: bindings::block_device_operations = ops::<T>();
        }

        let mut lim: bindings::queue_limits = pin_init::zeroed();
        lim.logical_block_size = params.logical_block_size;
        lim.physical_block_size = params.physical_block_size;
        lim.max_hw_sectors = params.max_hw_sectors;
        // SAFETY: Returns constant flags.
        lim.features = unsafe { rapilog_cache_features() };
        // SAFETY: `lim` is a valid, initialised limits structure (the rest
        // zero: block layer defaults); the lock class key is static.
        let disk = from_err_ptr(unsafe {
            bindings::__blk_alloc_disk(
                &mut lim,
                bindings::NUMA_NO_NODE,
                static_lock_class!().as_ptr(),
            )
        })?;
        let disk = NonNull::new(disk).ok_or(ENOMEM)?;
        let name = params.name.as_bytes();
        let handler = Arc::into_raw(handler);
        // SAFETY: The disk is ours and not yet visible: we may fill it in.
        unsafe {
            let d = disk.as_ptr();
            // Dynamic dev_t from the extended range: major and minors zero.
            (*d).major = 0;
            (*d).first_minor = 0;
            (*d).minors = 0;
            (*d).fops = &Table::<T>::OPS;
            (*d).private_data = handler.cast_mut().cast();
            let dst = &mut (*d).disk_name;
            for (i, slot) in dst.iter_mut().enumerate() {
                *slot = name.get(i).copied().unwrap_or(0) as _;
            }
            if let Some(last) = dst.last_mut() {
                *last = 0;
            }
            bindings::set_capacity(d, params.sectors);
        }
        // SAFETY: The disk is fully set up; no parent device, no extra groups.
        let added = to_result(unsafe {
            bindings::device_add_disk(core::ptr::null_mut(), disk.as_ptr(), core::ptr::null_mut())
        });
        if let Err(e) = added {
            // SAFETY: Never added: drop our reference and the handler, which
            // came from `Arc::into_raw` above.
            unsafe {
                bindings::put_disk(disk.as_ptr());
                drop(Arc::<T>::from_raw(handler));
            }
            return Err(e);
        }
        // INVARIANT: `disk` was allocated and added above, with our fops and
        // `handler` (from `Arc::into_raw`) as its `private_data`.
        Ok(Self { disk, handler })
    }
}

impl<T: BioHandler> GenDisk<T> {
    /// How many times the disk is open now (a moment later it may differ).
    pub(crate) fn openers(&self) -> u32 {
        // SAFETY: The disk was added and we hold a reference to it (type
        // invariants); the count is read atomically.
        let n = unsafe { rapilog_disk_openers(self.disk.as_ptr()) };
        n.max(0) as u32
    }
}

impl<T: BioHandler> Drop for GenDisk<T> {
    fn drop(&mut self) {
        // SAFETY: By the type invariants the disk was added and we hold its
        // reference, and `handler` came from `Arc::into_raw`. `del_gendisk`
        // returns once no `submit_bio` call is running or can start, so the
        // handler may go after it.
        unsafe {
            bindings::del_gendisk(self.disk.as_ptr());
            bindings::put_disk(self.disk.as_ptr());
            drop(Arc::<T>::from_raw(self.handler));
        }
    }
}
