// SPDX-License-Identifier: GPL-2.0

//! The machine-lifecycle events, through the C glue in
//! `lifecycle_events.c`: the machine stopping (reboot, halt, power-off, a
//! non-crash `kexec -e`) and suspend or hibernation beginning and ending.
//! Both come on blocking notifier chains, in process context: the handler
//! may sleep and do disk I/O.

use kernel::error::to_result;
use kernel::ffi::{c_int, c_uint, c_void};
use kernel::prelude::*;
use kernel::sync::Arc;

extern "C" {
    fn rapilog_lifecycle_register(
        stop: unsafe extern "C" fn(ctx: *mut c_void, how: c_uint) -> c_int,
        pm: unsafe extern "C" fn(ctx: *mut c_void, event: c_uint) -> c_int,
        ctx: *mut c_void,
    ) -> c_int;
    fn rapilog_lifecycle_unregister();
}

// In step with helpers.h (RAPILOG_STOP_*, RAPILOG_PM_*).
const STOP_RESTART: c_uint = 1;
const STOP_HALT: c_uint = 2;
const PM_SUSPEND_PREPARE: c_uint = 1;
const PM_HIBERNATE_PREPARE: c_uint = 2;

/// How the machine is stopping.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Reboot, or a non-crash `kexec -e` (the kernel reports both as a restart).
    Restart,
    Halt,
    PowerOff,
}

impl Stop {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Restart => "reboot",
            Self::Halt => "halt",
            Self::PowerOff => "power-off",
        }
    }
}

/// A sleep state beginning.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sleep {
    /// Suspend to RAM or to idle: memory stays powered.
    Suspend,
    /// Hibernation: memory is saved to swap and the machine powers off; the
    /// region is not part of the image.
    Hibernate,
}

impl Sleep {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Suspend => "suspend",
            Self::Hibernate => "hibernation",
        }
    }
}

/// What the machine-lifecycle events trigger.
pub(crate) trait LifecycleHandler: Send + Sync + 'static {
    /// The machine is about to stop; devices are still up. The stop goes on
    /// whatever this does.
    fn stopping(&self, how: Stop);
    /// Suspend or hibernation is about to begin (tasks not yet frozen). An
    /// error aborts it.
    fn sleep_prepare(&self, what: Sleep) -> Result;
    /// The machine is running again after a suspend or hibernation (or one
    /// that failed or was aborted).
    fn resumed(&self);
}

unsafe extern "C" fn stop_event<T: LifecycleHandler>(ctx: *mut c_void, how: c_uint) -> c_int {
    // SAFETY: `ctx` is the `Arc<T>` pointer `register` passed, kept alive by
    // the `LifecycleEvents` until it unregistered, which waits for a
    // callback in flight (its type invariants).
    let handler = unsafe { &*ctx.cast_const().cast::<T>() };
    handler.stopping(match how {
        STOP_RESTART => Stop::Restart,
        STOP_HALT => Stop::Halt,
        _ => Stop::PowerOff,
    });
    0
}

unsafe extern "C" fn pm_event<T: LifecycleHandler>(ctx: *mut c_void, event: c_uint) -> c_int {
    // SAFETY: As in `stop_event`.
    let handler = unsafe { &*ctx.cast_const().cast::<T>() };
    let result = match event {
        PM_SUSPEND_PREPARE => handler.sleep_prepare(Sleep::Suspend),
        PM_HIBERNATE_PREPARE => handler.sleep_prepare(Sleep::Hibernate),
        _ => {
            handler.resumed();
            Ok(())
        }
    };
    match result {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// The registered notifiers; unregistered when dropped. One per module.
///
/// # Invariants
///
/// The reboot and PM notifiers are registered with `stop_event::<T>`,
/// `pm_event::<T>` and `Arc::as_ptr(&_handler)` as their context, until
/// `drop` unregisters them (which waits for a callback in flight), before
/// `_handler` goes.
pub(crate) struct LifecycleEvents<T: LifecycleHandler> {
    /// Kept alive for the callbacks until unregistered.
    _handler: Arc<T>,
}

impl<T: LifecycleHandler> LifecycleEvents<T> {
    /// Registers the reboot and PM notifiers, handled by `handler`.
    pub(crate) fn register(handler: Arc<T>) -> Result<Self> {
        let ctx = Arc::as_ptr(&handler).cast_mut().cast::<c_void>();
        // SAFETY: The callbacks match the C prototypes, and `ctx` stays
        // valid until `Drop` unregisters (see `stop_event`).
        to_result(unsafe { rapilog_lifecycle_register(stop_event::<T>, pm_event::<T>, ctx) })?;
        // INVARIANT: Registered above with `handler`'s pointer.
        Ok(Self { _handler: handler })
    }
}

impl<T: LifecycleHandler> Drop for LifecycleEvents<T> {
    fn drop(&mut self) {
        // SAFETY: Registered by `register` (type invariants); waits for a
        // callback in flight.
        unsafe { rapilog_lifecycle_unregister() };
    }
}
