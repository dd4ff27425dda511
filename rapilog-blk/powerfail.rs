// SPDX-License-Identifier: GPL-2.0

//! The power-fail path. A crash kernel takes seconds to boot; a power supply
//! holds up for tens of milliseconds. So when power fails the running kernel
//! itself drains the ring to the log disk, and the amount of dirty data is
//! bounded so that the drain fits the hold-up window.
//!
//! - **Signals** (`powerfail=button,nmi`): the ACPI power button or an NMI
//!   ([`crate::sys::powerfail_signals`]). The handler only flips
//!   [`PowerFail`]'s state to draining and wakes writeback.
//! - **Holding writes**: from the signal on, no write is admitted (writers
//!   wait, unacknowledged); those admitted before are drained with the rest.
//! - **Emergency drain**: writeback stops waiting for `writeback_delay_ms`
//!   and takes the whole ring per batch (maximal merging); when the ring is
//!   empty it logs the bytes and time and stays quiescent or powers off
//!   (`powerfail_action=`). A disk error during the drain panics, so the
//!   crash kernel replays the region instead. A bad record (one that failed
//!   writeback's check) does not stop the drain: it is written past, like
//!   any drain does (`writeback`), so everything that can be verified is
//!   on the disk within the window, and the drain completes with a line
//!   naming the record left behind in the region. Handing over to the crash
//!   kernel instead would lose every record after it: the crash kernel
//!   needs seconds, the hold-up window is milliseconds.
//! - **Dirty bound** (`holdup_ms=`, `drain_kib_per_sec=`): writers wait
//!   while the ring holds more than [`crate::format::dirty_bound`] allows
//!   for the measured (or given) writeback bandwidth.

use kernel::prelude::*;
use kernel::str::BStr;
use kernel::sync::atomic::{Atomic, Relaxed};

use crate::config::{PowerFailAction, PowerFailConfig};
use crate::device::Device;
use crate::format::control::PowerFailState;
use crate::format::dirty_bound::{admits, dirty_bound};
use crate::stats;
use crate::sys::powerfail_signals::{self, PowerFailHandler, BUTTON, NMI};

/// The power-fail path's state, shared by the signal handler (IRQ context),
/// writers and writeback: atomics only.
pub(crate) struct PowerFail {
    pub(crate) config: PowerFailConfig,
    /// A [`PowerFailState`] code.
    state: Atomic<u32>,
    /// Signals that came ([`BUTTON`], [`NMI`] bits).
    sources: Atomic<u32>,
    /// When the signal came, ns since load.
    signalled_at_ns: Atomic<i64>,
    /// Bytes written back before the signal.
    wb_bytes_at_signal: Atomic<u64>,
    /// Measured writeback bandwidth, bytes/s (0: none yet).
    measured_bandwidth: Atomic<u64>,
}

impl PowerFail {
    pub(crate) fn new(config: PowerFailConfig) -> Self {
        let state = if config.signals == 0 {
            PowerFailState::Off
        } else {
            PowerFailState::Armed
        };
        Self {
            config,
            state: Atomic::new(state.code()),
            sources: Atomic::new(0),
            signalled_at_ns: Atomic::new(0),
            wb_bytes_at_signal: Atomic::new(0),
            measured_bandwidth: Atomic::new(0),
        }
    }

    pub(crate) fn state(&self) -> PowerFailState {
        PowerFailState::from_code(self.state.load(Relaxed))
    }

    /// A signal came and the drain has not finished.
    pub(crate) fn draining(&self) -> bool {
        self.state() == PowerFailState::Draining
    }

    /// New writes must wait: a signal came.
    pub(crate) fn holds_writes(&self) -> bool {
        matches!(
            self.state(),
            PowerFailState::Draining | PowerFailState::Drained | PowerFailState::Failed
        )
    }

    /// Writeback bandwidth the bound uses: `drain_kib_per_sec=`, else
    /// measured; 0 if neither.
    pub(crate) fn bandwidth(&self) -> u64 {
        match self.config.drain_kib_per_sec {
            0 => self.measured_bandwidth.load(Relaxed),
            kib => u64::from(kib) * 1024,
        }
    }

    /// Records writeback's smoothed bandwidth.
    pub(crate) fn set_measured_bandwidth(&self, bytes_per_sec: u64) {
        self.measured_bandwidth.store(bytes_per_sec, Relaxed);
    }

    /// The dirty bound in bytes; `None` when the power-fail path is off.
    pub(crate) fn dirty_bound(&self) -> Option<u64> {
        (self.config.signals != 0).then(|| dirty_bound(self.config.holdup_ms, self.bandwidth()))
    }

    /// Whether a write of `length` may be admitted with `live_bytes` in the
    /// ring.
    pub(crate) fn admits(&self, live_bytes: u64, length: u64) -> bool {
        self.dirty_bound()
            .is_none_or(|bound| admits(live_bytes, length, bound))
    }
}

impl PowerFailHandler for Device {
    fn signalled(&self, sources: u32) {
        let pf = &self.powerfail;
        let mut seen = pf.sources.load(Relaxed);
        while let Err(now) = pf.sources.cmpxchg(seen, seen | sources, Relaxed) {
            seen = now;
        }
        let armed = PowerFailState::Armed.code();
        if pf
            .state
            .cmpxchg(armed, PowerFailState::Draining.code(), Relaxed)
            .is_ok()
        {
            pf.signalled_at_ns
                .store(self.loaded_at.elapsed().as_nanos(), Relaxed);
            pf.wb_bytes_at_signal
                .store(stats::get(&self.stats.wb_bytes), Relaxed);
            self.work.notify_all();
        }
    }
}

fn source_name(sources: u32) -> &'static str {
    match (sources & BUTTON != 0, sources & NMI != 0) {
        (true, true) => "power button and NMI",
        (true, false) => "power button",
        (false, true) => "NMI",
        (false, false) => "none",
    }
}

/// Writeback found the ring empty after a signal: the drain is complete;
/// `marked_clean` says whether the region and the disk's marker say so.
pub(crate) fn drained(dev: &Device, marked_clean: Result) {
    let pf = &dev.powerfail;
    let took_ns = dev.loaded_at.elapsed().as_nanos() - pf.signalled_at_ns.load(Relaxed);
    let bytes = stats::get(&dev.stats.wb_bytes) - pf.wb_bytes_at_signal.load(Relaxed);
    pf.state.store(PowerFailState::Drained.code(), Relaxed);
    let poweroff = pf.config.action == PowerFailAction::PowerOff;
    let (held, left) = {
        let live = dev.live.lock();
        (live.held, live.ring.live_records())
    };
    if let Some(h) = held {
        pr_emerg!(
            "power-fail drain: bad record seq {} (sectors {}..{}) failed its check and is not on \
             backing={}; every other acknowledged write is; region={} keeps it and {} records in \
             all\n",
            h.seq,
            h.sector,
            h.sector + u64::from(h.length) / 512,
            BStr::from_bytes(dev.config.backing),
            dev.config.region,
            left
        );
    }
    pr_emerg!(
        "power-fail drain complete: {bytes} bytes written back and durable in {}.{:03} ms \
         (signal: {}, hold-up window {} ms); {}; new writes are held{}\n",
        took_ns / 1_000_000,
        (took_ns / 1000) % 1000,
        source_name(pf.sources.load(Relaxed)),
        pf.config.holdup_ms,
        match marked_clean {
            Ok(()) => "region and disk marker clean",
            Err(_) => "could not mark the disk clean: a load after power returns reports a possible loss",
        },
        if poweroff { ", powering off" } else { "" }
    );
    if poweroff {
        powerfail_signals::power_off();
    }
}

/// A disk operation failed during the drain: the records are still in the
/// region, so hand over to the crash kernel.
pub(crate) fn drain_failed(dev: &Device) -> ! {
    dev.powerfail
        .state
        .store(PowerFailState::Failed.code(), Relaxed);
    powerfail_signals::panic(
        c"power-fail drain failed (disk error); panicking so the crash kernel replays the region",
    )
}
