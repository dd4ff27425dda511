// SPDX-License-Identifier: GPL-2.0

//! A kernel thread running one long-lived job (the writeback worker); the
//! kernel crate has no kthread API.

use core::marker::PhantomData;
use core::ptr::NonNull;

use kernel::bindings;
use kernel::ffi::{c_int, c_uint, c_void};
use kernel::prelude::*;
use kernel::sync::Arc;

use super::helpers::*;

/// The job a [`Kthread`] runs.
pub(crate) trait ThreadJob: Send + Sync + 'static {
    /// Runs until [`should_stop`] says so, then returns.
    fn run(&self);
}

/// Whether the current kthread has been asked to stop (by dropping its
/// [`Kthread`]).
pub(crate) fn should_stop() -> bool {
    // SAFETY: Only called from the thread function of a `Kthread`.
    unsafe { bindings::kthread_should_stop() }
}

/// An implicit `GFP_NOIO` scope for the current thread
/// (`memalloc_noio_save()`): while it lives, every allocation the thread
/// makes, its own and the kernel's on its behalf (vmalloc page tables,
/// block layer, slab), reclaims memory without starting or waiting for
/// I/O. The writeback thread runs in one: reclaim that waited for I/O could
/// wait for dirty pages of `/dev/rapilog0`, which only writeback itself can
/// clean once the ring is full.
///
/// Ends (restores the thread's previous state) when dropped, on the thread
/// that entered it: it is not `Send`.
///
/// # Invariants
///
/// `saved` is what `memalloc_noio_save()` returned when the scope was
/// entered on the current thread, the only thread it can be dropped on.
pub(crate) struct NoIoScope {
    saved: c_uint,
    _this_thread: PhantomData<*mut ()>,
}

impl NoIoScope {
    /// Enters the scope on the current thread.
    pub(crate) fn enter() -> Self {
        // SAFETY: Changes only the current task's flags; the value returned
        // is handed back to `memalloc_noio_restore` on the same task by
        // `drop` (the type is not `Send`), scopes nesting like the stack.
        let saved = unsafe { rapilog_memalloc_noio_save() };
        // INVARIANT: Saved on this thread; `PhantomData<*mut ()>` keeps the
        // scope on it.
        Self {
            saved,
            _this_thread: PhantomData,
        }
    }
}

impl Drop for NoIoScope {
    fn drop(&mut self) {
        // SAFETY: On the task that entered the scope, with what `enter` saved
        // (type invariant).
        unsafe { rapilog_memalloc_noio_restore(self.saved) };
    }
}

/// A running kernel thread; dropping it stops it and waits for it to exit.
///
/// # Invariants
///
/// - `task` is a kthread that `kthread_create_on_node()` created to run
///   `trampoline::<T>` over `_job`, and it was started; we hold a reference
///   to its `task_struct`, dropped only in `drop`, after `kthread_stop()`.
/// - `_job` is the `Arc<T>` whose pointer the thread was given: it outlives
///   the thread.
pub(crate) struct Kthread<T: ThreadJob> {
    task: NonNull<bindings::task_struct>,
    /// Kept alive until the thread has exited: the thread borrows it.
    _job: Arc<T>,
}

// SAFETY: The task pointer is reference-counted (we hold a reference: type
// invariants) and kthread_stop may be called from any thread; `T` is
// `Send + Sync`.
unsafe impl<T: ThreadJob> Send for Kthread<T> {}
// SAFETY: `&Kthread` only gives access to `&T`, and `T: Sync`.
unsafe impl<T: ThreadJob> Sync for Kthread<T> {}

unsafe extern "C" fn trampoline<T: ThreadJob>(data: *mut c_void) -> c_int {
    // SAFETY: `data` is the `Arc<T>` held by the `Kthread` (its type
    // invariants), which outlives the thread (its drop waits in
    // `kthread_stop`).
    let job = unsafe { &*data.cast::<T>() };
    job.run();
    // `kthread_stop` expects us to be asked to stop before returning; if the
    // job returned early, wait for that request rather than exit early.
    while !should_stop() {
        kernel::time::delay::fsleep(kernel::time::Delta::from_millis(100));
    }
    0
}

impl<T: ThreadJob> Kthread<T> {
    /// Starts a thread named `name` running `job.run()`.
    pub(crate) fn spawn(name: &CStr, job: Arc<T>) -> Result<Self> {
        let data = Arc::as_ptr(&job).cast_mut().cast::<c_void>();
        // SAFETY: `trampoline::<T>` matches the thread function signature and
        // `data` stays valid as explained there; `name` has no format
        // specifiers, so no variadic arguments are needed.
        let task = unsafe {
            bindings::kthread_create_on_node(
                Some(trampoline::<T>),
                data,
                bindings::NUMA_NO_NODE,
                name.as_char_ptr(),
            )
        };
        let task = kernel::error::from_err_ptr(task)?;
        let task = NonNull::new(task).ok_or(ENOMEM)?;
        // SAFETY: A new, not yet running thread: keep a reference for
        // `kthread_stop` and start it.
        unsafe {
            rapilog_get_task_struct(task.as_ptr());
            bindings::wake_up_process(task.as_ptr());
        }
        // INVARIANT: Created over `job`'s pointer, referenced and started.
        Ok(Self { task, _job: job })
    }
}

impl<T: ThreadJob> Drop for Kthread<T> {
    fn drop(&mut self) {
        // SAFETY: We hold a reference to the task, a started kthread (type
        // invariants); `kthread_stop` wakes it, waits until the thread
        // function returned, and we then drop our reference. Only after
        // that may `job` go.
        unsafe {
            bindings::kthread_stop(self.task.as_ptr());
            rapilog_put_task_struct(self.task.as_ptr());
        }
    }
}
