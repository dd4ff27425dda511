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
//!   and takes the whole ring per batch (maximal merging, one flush); when
//!   the ring is empty and flushed it logs the bytes, the time and the
//!   dirty bound at the signal, marks the region and the disk's marker
//!   clean, logs the drain complete and stays quiescent or powers off
//!   (`powerfail_action=`). A disk error during the drain panics, so the
//!   crash kernel replays the region instead. A bad record (one that failed
//!   writeback's check) does not stop the drain: it is written past, like
//!   any drain does (`writeback`), so everything that can be verified is
//!   on the disk within the window, and the drain completes with a line
//!   naming the record left behind in the region. Handing over to the crash
//!   kernel instead would lose every record after it: the crash kernel
//!   needs seconds, the hold-up window is milliseconds.
//! - **False alarm** (`powerfail_resume_ms=`): a machine whose power failed
//!   is dead `holdup_ms` after the signal. One still running
//!   `powerfail_resume_ms` (far longer) after the last signal saw a spurious
//!   NMI or a stray button press: writeback marks the region and the disk's
//!   marker live again (the drain marked them clean), re-arms the path, and
//!   writers are admitted again, buffered as before; the false alarm is
//!   logged and counted. 0 never resumes; `powerfail_action=poweroff` never
//!   does.
//! - **Dirty bound** (`holdup_ms=`, `drain_kib_per_sec=`): writers wait
//!   while the ring holds more than [`crate::format::dirty_bound`] allows
//!   for the measured (or given) writeback bandwidth. It holds in every
//!   state, so the ring is always small enough for the next drain, the one
//!   after a false alarm included.
//! - **Several devices** share the hold-up window: the signals reach every
//!   device (`registry`), each drains its own ring, and device i's bound is
//!   what drains in `(holdup_ms / 2) / N` at its own bandwidth, N the
//!   number of devices now ([`set_devices`]), so the sum drains in half the
//!   window even if the drains ran one after another. When a device is
//!   created, the others' bounds shrink at once; a ring that holds more
//!   than its new bound admits nothing until writeback brought it under.
//!
//! # States
//!
//! ```text
//! Off                                    (no signal armed)
//! Armed --signal--> Draining --ring empty--> Drained --poweroff--> (off)
//!   ^                  |                        |
//!   |                  +--disk error--> Failed (panic)
//!   +--- resume_ms after the last signal, still running (false alarm)
//! ```
//!
//! Writes are held in `Draining`, `Drained` and `Failed`. A signal in
//! `Draining` or `Drained` restarts the wait for the resume: if the first
//! was spurious and the second is real, the power goes `holdup_ms` after
//! the second, and nothing may be admitted before then.
//!
//! # Races
//!
//! The signal handler (hard IRQ) moves `Armed -> Draining`; only writeback
//! moves `Drained -> Armed`. It first finds the resume due and notes the
//! signal count ([`PowerFail::resume_due`]), marks the region and the
//! marker live (disk I/O, writes still held), then flips the state under
//! the `live` lock ([`resume`]): a writer checks the state under that lock,
//! so it is either already waiting on `space_freed` when woken, or sees
//! the new state. A signal from the count on is never lost: the handler
//! counts the signal, then tries `Armed -> Draining`; writeback moves
//! `Drained -> Armed`, then looks whether the count moved, and if so starts
//! a drain itself, still under the lock (no writer sees `Armed`). Both
//! sides are fully ordered, so at least one sees the other (the
//! store-buffering pattern), and whichever does starts the drain; that
//! drain of an empty ring marks the region and the marker clean again.
//!
//! An orderly stop (`lifecycle`) owns the region's state while it holds
//! writes or writes through: a resume then only re-arms, and marks nothing.

#![deny(unsafe_code)]

use kernel::prelude::*;
use kernel::str::BStr;
use kernel::sync::atomic::{Acquire, Atomic, Full, Relaxed};
use kernel::time::{delay::fsleep, Delta};

use crate::config::{PowerFailAction, PowerFailConfig};
use crate::device::Device;
use crate::format::control::PowerFailState;
use crate::format::dirty_bound::{admits, dirty_bound};
use crate::instance::disk_name;
use crate::kernel_display::Errno;
use crate::lifecycle;
use crate::live::Admission;
use crate::stats;
use crate::sys::powerfail_signals::{self, BUTTON, NMI};
use crate::writeback::Writeback;

/// Wait before marking the region live again after that failed (a failing
/// log disk: writeback is stuck too, and orderly stops wait at most this).
const RETRY_MARK_LIVE_MS: i64 = 1000;

/// Devices sharing the hold-up window (module docs, Several devices);
/// changed under the registry's lock, read anywhere (Relaxed: a bound
/// computed with the old count a moment longer is the bound of a moment
/// ago).
static DEVICES: Atomic<u32> = Atomic::new(1);

/// Sets the number of devices sharing the hold-up window (`registry`).
pub(crate) fn set_devices(n: u32) {
    DEVICES.store(n, Relaxed);
}

/// The number of devices sharing the hold-up window (at least 1).
pub(crate) fn devices() -> u32 {
    DEVICES.load(Relaxed).max(1)
}

/// The power-fail path's state, shared by the signal handler (IRQ context),
/// writers and writeback: atomics only.
pub(crate) struct PowerFail {
    pub(crate) config: PowerFailConfig,
    /// A [`PowerFailState`] code.
    state: Atomic<u32>,
    /// Signals that came since the last resume ([`BUTTON`], [`NMI`] bits).
    sources: Atomic<u32>,
    /// When the signal that started the drain came, ns since load.
    signalled_at_ns: Atomic<i64>,
    /// When the last signal came, ns since load: the resume waits from it.
    last_signal_ns: Atomic<i64>,
    /// Signals handled since load: tells writeback whether one came while
    /// it resumed (module docs, Races).
    signals: Atomic<u32>,
    /// Bytes written back before the signal.
    wb_bytes_at_signal: Atomic<u64>,
    /// The dirty bound and the bandwidth it came from when the signal came,
    /// for the drain's log line.
    bound_at_signal: Atomic<u64>,
    bandwidth_at_signal: Atomic<u64>,
    /// When the drain's data was durable (ring empty, flushed), ns since
    /// load; the disk marker is written after it.
    durable_at_ns: Atomic<i64>,
    /// Measured writeback bandwidth, bytes/s (0: none yet).
    measured_bandwidth: Atomic<u64>,
    /// Drains after which service resumed.
    false_alarms: Atomic<u32>,
}

/// A false alarm writeback just resumed from, for its log line.
pub(crate) struct FalseAlarm {
    /// The signals of the episode.
    sources: u32,
    /// When the first and the last of them came, and service resumed, ns
    /// since load (the first is the last when only one came).
    first_ns: i64,
    last_ns: i64,
    now_ns: i64,
    /// False alarms since load, this one included.
    count: u32,
    /// What lifecycle does with new writes now (an orderly stop may have
    /// come during the wait).
    admission: Admission,
}

/// Whether a drained power-fail path resumes ([`PowerFail::resume_due`]).
pub(crate) enum Resume {
    /// Not drained, or resuming is off: nothing to wait for.
    No,
    /// Not yet: look again after this long.
    After(Delta),
    /// Now: mark the region live, then [`resume`].
    Due(Due),
}

/// A resume found due: the signals counted then. A signal after them
/// means a new drain instead.
pub(crate) struct Due {
    seen: u32,
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
            last_signal_ns: Atomic::new(0),
            signals: Atomic::new(0),
            wb_bytes_at_signal: Atomic::new(0),
            bound_at_signal: Atomic::new(0),
            bandwidth_at_signal: Atomic::new(0),
            durable_at_ns: Atomic::new(0),
            measured_bandwidth: Atomic::new(0),
            false_alarms: Atomic::new(0),
        }
    }

    /// Drains after which service resumed, since load.
    pub(crate) fn false_alarms(&self) -> u32 {
        self.false_alarms.load(Relaxed)
    }

    /// `Armed -> Draining`, once per drain: whoever wins records the start
    /// (`now_ns`, since load) and wakes writeback. From the signal handler,
    /// or from writeback for a signal that came as it resumed.
    fn start_drain(&self, dev: &Device, now_ns: i64) {
        let armed = PowerFailState::Armed.code();
        // Full: pairs with `rearm` (module docs, Races).
        if self
            .state
            .cmpxchg(armed, PowerFailState::Draining.code(), Full)
            .is_ok()
        {
            self.signalled_at_ns.store(now_ns, Relaxed);
            self.wb_bytes_at_signal
                .store(stats::get(&dev.stats().wb_bytes), Relaxed);
            // Atomics and arithmetic only: fine in NMI context.
            self.bound_at_signal
                .store(self.dirty_bound().unwrap_or(0), Relaxed);
            self.bandwidth_at_signal.store(self.bandwidth(), Relaxed);
            dev.work().notify_all();
        }
    }

    /// In the writeback thread: whether a drained path's last signal is
    /// `resume_ms` old. Changes nothing.
    pub(crate) fn resume_due(&self, dev: &Device) -> Resume {
        let resume_ms = self.config.resume_ms;
        if resume_ms == 0 || self.state() != PowerFailState::Drained {
            return Resume::No;
        }
        // Acquire: a signal stores `last_signal_ns` before it counts.
        let seen = self.signals.load(Acquire);
        let since_last = Delta::from_nanos(
            dev.loaded_at().elapsed().as_nanos() - self.last_signal_ns.load(Relaxed),
        );
        let wait = Delta::from_millis(i64::from(resume_ms));
        if since_last < wait {
            return Resume::After(wait - since_last);
        }
        Resume::Due(Due { seen })
    }

    /// `Drained -> Armed` for a resume found `due`, under the `live` lock
    /// (`admission` read there); `None` if a signal came since, which
    /// starts a new drain instead (module docs, Races).
    fn rearm(&self, dev: &Device, due: Due, admission: Admission) -> Option<FalseAlarm> {
        // The episode's signals, for the log line; a signal from now on
        // names itself in the next drain's line.
        let sources = self.sources.xchg(0, Relaxed);
        let drained = PowerFailState::Drained.code();
        // Full: pairs with `signalled` (module docs, Races).
        if self
            .state
            .cmpxchg(drained, PowerFailState::Armed.code(), Full)
            .is_err()
        {
            // Only writeback leaves `Drained`; keep the episode as it was.
            self.add_sources(sources);
            return None;
        }
        // Relaxed: the successful `Full` cmpxchg above orders this read
        // after the store of `Armed`, as `signalled` orders its count
        // before its cmpxchg.
        if self.signals.load(Relaxed) != due.seen {
            self.add_sources(sources);
            self.start_drain(dev, dev.loaded_at().elapsed().as_nanos());
            return None;
        }
        let count = self.false_alarms.load(Relaxed) + 1;
        self.false_alarms.store(count, Relaxed);
        let now = dev.loaded_at().elapsed().as_nanos();
        Some(FalseAlarm {
            sources,
            first_ns: self.signalled_at_ns.load(Relaxed),
            last_ns: self.last_signal_ns.load(Relaxed),
            now_ns: now,
            count,
            admission,
        })
    }

    fn add_sources(&self, sources: u32) {
        let mut seen = self.sources.load(Relaxed);
        while let Err(now) = self.sources.cmpxchg(seen, seen | sources, Relaxed) {
            seen = now;
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
    /// Its share of the hold-up window: what drains in `holdup_ms / 2 / N`
    /// (module docs, Several devices).
    pub(crate) fn dirty_bound(&self) -> Option<u64> {
        (self.config.signals != 0).then(|| {
            dirty_bound(
                self.config.holdup_ms,
                self.bandwidth() / u64::from(devices()),
            )
        })
    }

    /// Whether a write of `length` may be admitted with `live_bytes` in the
    /// ring.
    pub(crate) fn admits(&self, live_bytes: u64, length: u64) -> bool {
        self.dirty_bound()
            .is_none_or(|bound| admits(live_bytes, length, bound))
    }
}

/// A power-fail signal came (`PowerFailHandler::signalled`): hard-IRQ
/// context (an `irq_work`), so atomics and a wake-up only, no lock.
pub(crate) fn signalled(dev: &Device, sources: u32) {
    let pf = dev.powerfail();
    let now = dev.loaded_at().elapsed().as_nanos();
    pf.add_sources(sources);
    // Every signal, even during a drain or after it, restarts the wait
    // for the resume (module docs, States).
    pf.last_signal_ns.store(now, Relaxed);
    // Full: publishes `last_signal_ns` to `resume_due`, and orders the
    // count before the `Armed -> Draining` attempt (module docs, Races).
    pf.signals.fetch_add(1, Full);
    pf.start_drain(dev, now);
}

fn source_name(sources: u32) -> &'static str {
    match (sources & BUTTON != 0, sources & NMI != 0) {
        (true, true) => "power button and NMI",
        (true, false) => "power button",
        (false, true) => "NMI",
        (false, false) => "none",
    }
}

/// Writeback found the ring empty after a signal, every record written and
/// flushed: the acknowledged data is durable, which is what the hold-up
/// time is for. Logged now, before the disk marker's write (which follows
/// the data's, so a throttled disk charges it the whole drain's cost), with
/// the bound the drain was held to.
pub(crate) fn durable(dev: &Device) {
    let pf = dev.powerfail();
    let now = dev.loaded_at().elapsed().as_nanos();
    pf.durable_at_ns.store(now, Relaxed);
    let took_ns = now - pf.signalled_at_ns.load(Relaxed);
    let bytes = stats::get(&dev.stats().wb_bytes) - pf.wb_bytes_at_signal.load(Relaxed);
    let source = if pf.config.drain_kib_per_sec == 0 {
        ", measured"
    } else {
        ", drain_kib_per_sec="
    };
    pr_emerg!(
        "{}: power-fail drain: {bytes} bytes durable in {}.{:03} ms; dirty bound at the signal {} \
         bytes (writeback bandwidth {} bytes/s{}, hold-up window {} ms: the bound drains in \
         half of it); marking the region and the disk marker clean\n",
        disk_name(dev.config().index),
        took_ns / 1_000_000,
        (took_ns / 1000) % 1000,
        pf.bound_at_signal.load(Relaxed),
        pf.bandwidth_at_signal.load(Relaxed),
        source,
        pf.config.holdup_ms
    );
}

/// Writeback found the ring empty after a signal: the drain is complete;
/// `marked_clean` says whether the region and the disk's marker say so.
pub(crate) fn drained(dev: &Device, marked_clean: Result) {
    let pf = dev.powerfail();
    let now = dev.loaded_at().elapsed().as_nanos();
    let signalled = pf.signalled_at_ns.load(Relaxed);
    let took_ns = pf.durable_at_ns.load(Relaxed) - signalled;
    let marked_ns = now - signalled;
    let bytes = stats::get(&dev.stats().wb_bytes) - pf.wb_bytes_at_signal.load(Relaxed);
    pf.state.store(PowerFailState::Drained.code(), Relaxed);
    let poweroff = pf.config.action == PowerFailAction::PowerOff;
    let (held, left) = {
        let live = dev.lock_live();
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
            BStr::from_bytes(&dev.config().backing),
            dev.config().region,
            left
        );
    }
    let then = AfterDrain(&pf.config);
    let marker = match marked_clean {
        Ok(()) => "region and disk marker clean",
        Err(_) => {
            "could not mark the disk clean (a load after power returns reports a possible loss)"
        }
    };
    pr_emerg!(
        "{}: power-fail drain complete: {bytes} bytes written back and durable in {}.{:03} ms \
         (signal: {}, hold-up window {} ms); {} {}.{:03} ms after the signal; new writes are \
         held{then}\n",
        disk_name(dev.config().index),
        took_ns / 1_000_000,
        (took_ns / 1000) % 1000,
        source_name(pf.sources.load(Relaxed)),
        pf.config.holdup_ms,
        marker,
        marked_ns / 1_000_000,
        (marked_ns / 1000) % 1000
    );
    if poweroff {
        powerfail_signals::power_off();
    }
}

/// Resumes service for a resume found `due`: marks the region and the
/// disk's marker live, then re-arms under the `live` lock (module docs,
/// Races). While an orderly stop holds writes or writes through, it owns
/// the region's state: only re-arms. In the writeback thread, which owns
/// `wb`.
pub(crate) fn resume(dev: &Device, wb: &mut Writeback, due: Due) {
    let buffered = dev.lock_live().admission == Admission::Buffered;
    if buffered {
        if let Err(e) = lifecycle::mark_live(dev, wb) {
            // Buffering over a `Clean` marker would hide a loss: keep
            // holding; writeback finds the resume due again after this.
            if let Some(suppressed) = wb.errors.allow() {
                pr_err!(
                    "power-fail false alarm: could not mark the region and the disk live again \
                     ({}); writes stay held, retrying in {RETRY_MARK_LIVE_MS} ms ({suppressed} \
                     similar lines suppressed)\n",
                    Errno(e)
                );
            }
            fsleep(Delta::from_millis(RETRY_MARK_LIVE_MS));
            return;
        }
    }
    let live = dev.lock_live();
    let admission = live.admission;
    if admission == Admission::Buffered && !buffered {
        // An orderly stop gave the region back (a refused suspend) while
        // this resume did not mark it: writeback finds the resume due
        // again at once and marks it.
        return;
    }
    let alarm = dev.powerfail().rearm(dev, due, admission);
    // Logged before `live` is released: a writer is admitted only under
    // `live` after seeing `Armed`, so the resume line precedes every write
    // it lets in (the woken writer may preempt this thread for many
    // writes before it would otherwise get to the line).
    if let Some(alarm) = alarm {
        log_false_alarm(dev, alarm);
        drop(live);
        dev.space_freed().notify_all();
    }
}

/// The line of a false alarm service resumed from.
fn log_false_alarm(dev: &Device, alarm: FalseAlarm) {
    let after = Since {
        first: (alarm.first_ns != alarm.last_ns)
            .then(|| Delta::from_nanos(alarm.now_ns - alarm.first_ns)),
        last: Delta::from_nanos(alarm.now_ns - alarm.last_ns),
    };
    let writes = match alarm.admission {
        Admission::Buffered => {
            "region and disk marker live again, new writes are admitted and buffered again"
        }
        Admission::Held => "new writes stay held for the orderly stop in progress",
        Admission::WriteThrough => "new writes go straight to the disk for the orderly stop",
    };
    pr_warn!(
        "power-fail signal ({}) was a false alarm: the machine still runs {after}, far past \
         the hold-up window of {} ms; service resumed and the power-fail path is armed again, \
         {writes} (powerfail_resume_ms={}; false alarm {} since load)\n",
        source_name(alarm.sources),
        dev.powerfail().config.holdup_ms,
        dev.powerfail().config.resume_ms,
        alarm.count
    );
}

/// A disk operation failed during the drain: the records are still in the
/// region, so hand over to the crash kernel.
pub(crate) fn drain_failed(dev: &Device) -> ! {
    dev.powerfail()
        .state
        .store(PowerFailState::Failed.code(), Relaxed);
    powerfail_signals::panic(
        c"power-fail drain failed (disk error); panicking so the crash kernel replays the region",
    )
}

/// What the drain-complete line says comes next.
struct AfterDrain<'a>(&'a PowerFailConfig);

impl kernel::fmt::Display for AfterDrain<'_> {
    fn fmt(&self, f: &mut kernel::fmt::Formatter<'_>) -> kernel::fmt::Result {
        match (self.0.action, self.0.resume_ms) {
            (PowerFailAction::PowerOff, _) => f.write_str(", powering off"),
            (_, 0) => f.write_str(" until reboot (powerfail_resume_ms=0)"),
            (_, ms) => write!(
                f,
                " until reboot, or until the machine still runs {ms} ms after the last signal \
                 (powerfail_resume_ms): then it was a false alarm and service resumes"
            ),
        }
    }
}

/// What happens after a drain, for the line that arms the path.
pub(crate) struct AfterSignal<'a>(pub(crate) &'a PowerFailConfig);

impl kernel::fmt::Display for AfterSignal<'_> {
    fn fmt(&self, f: &mut kernel::fmt::Formatter<'_>) -> kernel::fmt::Result {
        match (self.0.action, self.0.resume_ms) {
            (PowerFailAction::PowerOff, _) => f.write_str("it powers off"),
            (_, 0) => f.write_str("writes are held until reboot (powerfail_resume_ms=0)"),
            (_, ms) => write!(
                f,
                "writes are held, and admitted again if the machine still runs \
                 powerfail_resume_ms={ms} ms after the last signal (a false alarm)"
            ),
        }
    }
}

/// How long after the signals of a false alarm service resumed (`first`:
/// only if several came).
struct Since {
    first: Option<Delta>,
    last: Delta,
}

impl kernel::fmt::Display for Since {
    fn fmt(&self, f: &mut kernel::fmt::Formatter<'_>) -> kernel::fmt::Result {
        match self.first {
            None => write!(f, "{} ms after it", self.last.as_millis()),
            Some(first) => write!(
                f,
                "{} ms after the first signal and {} ms after the last",
                first.as_millis(),
                self.last.as_millis()
            ),
        }
    }
}
