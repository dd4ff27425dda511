// SPDX-License-Identifier: GPL-2.0

//! The power-fail signals (ACPI power button, NMI), armed through the C glue
//! in `powerfail_signals.c`, and the two ways a power-fail drain ends that
//! are not returns: powering off and panicking.

use kernel::error::to_result;
use kernel::ffi::{c_int, c_uint, c_void};
use kernel::prelude::*;
use kernel::str::{CStr, CStrExt};
use kernel::sync::Arc;

/// Signal bit: KEY_POWER from the ACPI "Power Button" input device.
pub(crate) const BUTTON: u32 = 1;
/// Signal bit: an NMI no other handler claims.
pub(crate) const NMI: u32 = 2;

extern "C" {
    fn rapilog_powerfail_arm(
        sources: c_uint,
        signalled: unsafe extern "C" fn(ctx: *mut c_void, sources: c_uint),
        ctx: *mut c_void,
    ) -> c_int;
    fn rapilog_powerfail_disarm();
    fn rapilog_powerfail_retarget(ctx: *mut c_void);
    fn rapilog_power_off();
}

/// What a power-fail signal triggers.
pub(crate) trait PowerFailHandler: Send + Sync + 'static {
    /// A signal came (`sources`: [`BUTTON`] and/or [`NMI`] bits). Runs in
    /// hard-IRQ context: must not sleep or take a sleeping lock.
    fn signalled(&self, sources: u32);
}

/// The armed signals; disarmed when dropped. One at a time per module.
///
/// # Invariants
///
/// The signals are armed with `signalled::<T>` and
/// `Arc::as_ptr(&_handler)` as its context, until `drop` disarms them
/// (which waits for a callback in flight: `irq_work_sync()`), or
/// [`ArmedSignals::retarget`] replaces `_handler` (after waiting the same
/// way), before that `_handler` goes.
pub(crate) struct ArmedSignals<T: PowerFailHandler> {
    /// Kept alive for the callback until disarmed.
    _handler: Arc<T>,
}

unsafe extern "C" fn signalled<T: PowerFailHandler>(ctx: *mut c_void, sources: c_uint) {
    // SAFETY: `ctx` is the `Arc<T>` pointer `arm` passed, and the
    // `ArmedSignals` holding that `Arc` disarms before dropping it, which
    // waits for a running callback to return (its type invariants).
    let handler = unsafe { &*ctx.cast_const().cast::<T>() };
    handler.signalled(sources);
}

impl<T: PowerFailHandler> ArmedSignals<T> {
    /// Arms the signals in `sources` (non-zero), handled by `handler`.
    pub(crate) fn arm(sources: u32, handler: Arc<T>) -> Result<Self> {
        let ctx = Arc::as_ptr(&handler).cast_mut().cast::<c_void>();
        // SAFETY: `signalled::<T>` matches the callback type, and `ctx`
        // stays valid until `Drop` disarms (see `signalled`).
        to_result(unsafe { rapilog_powerfail_arm(sources, signalled::<T>, ctx) })?;
        // INVARIANT: Armed above with `handler`'s pointer.
        Ok(Self { _handler: handler })
    }

    /// From now on, signals go to `handler`; the previous handler is
    /// dropped once no callback uses it. The handlers stay registered: no
    /// signal is lost.
    pub(crate) fn retarget(&mut self, handler: Arc<T>) {
        let ctx = Arc::as_ptr(&handler).cast_mut().cast::<c_void>();
        // SAFETY: Armed (type invariants) with `signalled::<T>`, which
        // `ctx` (a live `Arc<T>`) matches; the call waits for a callback
        // that may still use the old context.
        unsafe { rapilog_powerfail_retarget(ctx) };
        // INVARIANT: Armed with `handler`'s pointer from now on; the old
        // handler is used by no callback any more.
        self._handler = handler;
    }
}

impl<T: PowerFailHandler> Drop for ArmedSignals<T> {
    fn drop(&mut self) {
        // SAFETY: Armed by `arm` (type invariants); unregisters both
        // handlers and waits for a callback in flight.
        unsafe { rapilog_powerfail_disarm() };
    }
}

/// Panics the kernel with `why`, so the crash kernel replays the region.
pub(crate) fn panic(why: &CStr) -> ! {
    // SAFETY: The format takes one string argument, and `why` is a
    // NUL-terminated string; `panic` does not return.
    unsafe { kernel::bindings::panic(c"rapilog: %s".as_char_ptr(), why.as_char_ptr()) }
}

/// Powers the machine off now, without running userspace.
pub(crate) fn power_off() {
    // SAFETY: `kernel_power_off` may be called from process context, which
    // the writeback thread is.
    unsafe { rapilog_power_off() }
}
