// SPDX-License-Identifier: GPL-2.0

//! The devices the module runs, by index (`/dev/rapilog0` to
//! `/dev/rapilog7`), and what serves all of them: the control device's
//! ioctls look their selected device up here, and the power-fail signals
//! and the machine's events fan out from here to every device.
//!
//! # Locking
//!
//! One lock, `slots` (`Mutex<Slots>`): the instances and the armed
//! power-fail signals. It comes **before every lock of a device** in the
//! lock order (`device`, Locking): it is taken by module init and exit, by
//! the control device's ioctls (only to look a device up: the `Arc<Device>`
//! is cloned and the lock released before the ioctl acts on it) and by the
//! reboot and PM notifiers, which hold it while they drain every device in
//! turn (so no device appears or goes away in the middle of a stop). No
//! path of a device (`submit_bio`, writeback, the power-fail signal) ever
//! takes it.
//!
//! The power-fail signal (hard IRQ) takes no lock: it runs over a
//! [`Fanout`], an immutable list of the devices, which the registry
//! rebuilds under `slots` whenever the devices change and hands to the
//! armed signals (`ArmedSignals::retarget`, which waits for a callback
//! still running over the old list).
//!
//! # Power failure with several devices
//!
//! The hold-up window is the machine's, shared by every device: each
//! device's dirty bound is what drains in `holdup_ms / 2 / N` at its own
//! bandwidth, N the number of devices now ([`powerfail::set_devices`]), so
//! the sum drains in half the window even if the drains ran one after
//! another (they run in parallel, one writeback thread each).
//!
//! # Lifecycle events
//!
//! One registration for the module; each event fans out to every device,
//! in index order. A suspend or hibernation that one device refuses is
//! refused: the devices that already drained for it resume at once (the
//! kernel does not tell the notifier that refused).

#![deny(unsafe_code)]

use kernel::prelude::*;
use kernel::sync::{new_mutex, Arc, Mutex};

use kernel::str::BStr;

use crate::config::{check_distinct, Config};
use crate::control;
use crate::device::Device;
use crate::format::control::MAX_DEVICES;
use crate::instance::{self, disk_name, Instance};
use crate::iommu_fence;
use crate::lifecycle;
use crate::powerfail;
use crate::sys::control_device::{ControlHandler, Selection, UserArg};
use crate::sys::lifecycle_events::{LifecycleHandler, Sleep, Stop};
use crate::sys::powerfail_signals::{ArmedSignals, PowerFailHandler};

/// What the `slots` lock guards.
struct Slots {
    /// Instance `i` is `/dev/rapilog<i>`.
    instances: [Option<Instance>; MAX_DEVICES],
    /// The armed power-fail signals, over the current [`Fanout`].
    signals: Option<ArmedSignals<Fanout>>,
}

/// The module's devices (module docs: locking).
#[pin_data]
pub(crate) struct Registry {
    #[pin]
    slots: Mutex<Slots>,
}

/// The devices a power-fail signal reaches: a snapshot, never changed.
pub(crate) struct Fanout {
    devices: KVec<Arc<Device>>,
}

impl Slots {
    fn fanout(&self) -> Result<Arc<Fanout>> {
        let mut devices = KVec::new();
        for instance in self.instances.iter().flatten() {
            devices.push(instance.device().clone(), GFP_KERNEL)?;
        }
        Ok(Arc::new(Fanout { devices }, GFP_KERNEL)?)
    }

    fn count(&self) -> u32 {
        self.instances.iter().flatten().count() as u32
    }

    /// After a device came or went: the shared dirty bound's N, and the
    /// signals' fan-out.
    fn changed(&mut self) -> Result {
        powerfail::set_devices(self.count());
        if self.signals.is_some() {
            let fanout = self.fanout()?;
            if let Some(signals) = self.signals.as_mut() {
                signals.retarget(fanout);
            }
        }
        Ok(())
    }
}

impl Registry {
    /// No devices yet.
    pub(crate) fn new() -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Self {
                slots <- new_mutex!(Slots {
                    instances: [const { None }; MAX_DEVICES],
                    signals: None,
                }),
            }),
            GFP_KERNEL,
        )
    }

    /// Adds a running device in its slot (`EEXIST` if taken).
    pub(crate) fn add(&self, instance: Instance) -> Result {
        let mut slots = self.slots.lock();
        let slot = slots
            .instances
            .get_mut(instance.index() as usize)
            .ok_or(EINVAL)?;
        if slot.is_some() {
            return Err(EEXIST);
        }
        *slot = Some(instance);
        slots.changed()
    }

    /// Creates a device at the lowest free index from `text`, a device's
    /// parameters (`IOCTL_CREATE`, `Config::from_create`); returns its
    /// index. Refusals are logged, one line each, as at load; a region that
    /// overlaps another device's, or a log disk another device uses, is
    /// refused before anything is touched, and a region holding records of
    /// another disk by the load path (`recovery`). Under the lock: creates
    /// and removes take turns, and no stop runs meanwhile.
    #[inline(never)]
    pub(crate) fn create(&self, text: &[u8]) -> Result<u32> {
        let mut slots = self.slots.lock();
        let index = slots
            .instances
            .iter()
            .position(Option::is_none)
            .ok_or(ENOSPC)? as u32;
        let refused = |e: crate::config::ConfigError<'_>| {
            pr_err!("{e}\n");
            EINVAL
        };
        let config = Config::from_create(index, text).map_err(refused)?;
        let existing = slots.instances.iter().flatten();
        check_distinct(existing.map(|i| i.device().config()), &config).map_err(refused)?;
        pr_info!(
            "configured: region={} backing={} protect={} (created at run time as /dev/{})\n",
            config.region,
            BStr::from_bytes(&config.backing),
            config.protect.name(),
            disk_name(index)
        );
        let fence = iommu_fence::check(config.iommu_fence);
        iommu_fence::enforce(&fence)?;
        let made = instance::create(&config, fence)?;
        if let Some(slot) = slots.instances.get_mut(index as usize) {
            *slot = Some(made);
        }
        slots.changed()?;
        Ok(index)
    }

    /// Drains and removes device `index` (`IOCTL_REMOVE`): `EBUSY` while
    /// its block device is open, unless `force`. The drain is unload's
    /// (`instance`): every record reaches the disk, or a bad record stays
    /// in the region, not marked clean. Under the lock, so no stop runs
    /// while it drains (the status of the other devices waits for it too).
    pub(crate) fn remove(&self, index: u32, force: bool) -> Result {
        let mut slots = self.slots.lock();
        let slot = slots.instances.get_mut(index as usize).ok_or(ENODEV)?;
        let openers = slot.as_ref().ok_or(ENODEV)?.openers();
        if openers > 0 && !force {
            return Err(EBUSY);
        }
        let name = disk_name(index);
        if openers > 0 {
            pr_warn!(
                "removing /dev/{name} although it is open {openers} times (forced): its \
                 acknowledged writes are drained to the disk; new I/O on it fails\n"
            );
        }
        // Drained and gone before the others' share of the hold-up window
        // grows: until then its dirty data counts.
        drop(slot.take());
        slots.changed()?;
        pr_info!("/dev/{name} removed\n");
        Ok(())
    }

    /// Arms the power-fail signals (`powerfail_signals` bits) for every
    /// device, now and to come.
    pub(crate) fn arm(&self, signals: u32) -> Result {
        let mut slots = self.slots.lock();
        let fanout = slots.fanout()?;
        slots.signals = Some(ArmedSignals::arm(signals, fanout)?);
        Ok(())
    }

    /// Disarms the power-fail signals, then drains and tears down every
    /// device, highest index first (module exit).
    pub(crate) fn remove_all(&self) {
        let mut slots = self.slots.lock();
        drop(slots.signals.take());
        for slot in slots.instances.iter_mut().rev() {
            drop(slot.take());
        }
        powerfail::set_devices(0);
    }

    /// Device `index`, if it exists.
    pub(crate) fn get(&self, index: u32) -> Option<Arc<Device>> {
        let slots = self.slots.lock();
        slots
            .instances
            .get(index as usize)?
            .as_ref()
            .map(|i| i.device().clone())
    }

    /// Bit N set for each existing `/dev/rapilog<N>`.
    pub(crate) fn bitmap(&self) -> u64 {
        let slots = self.slots.lock();
        slots
            .instances
            .iter()
            .flatten()
            .fold(0, |bits, i| bits | 1 << i.index())
    }

    /// Runs `f` on every device in index order, with the registry locked
    /// (no device comes or goes meanwhile).
    pub(crate) fn for_each(&self, mut f: impl FnMut(&Device) -> Result) -> Result {
        let slots = self.slots.lock();
        for instance in slots.instances.iter().flatten() {
            f(instance.device())?;
        }
        Ok(())
    }
}

/// A power-fail signal, in hard-IRQ context: every device starts its
/// drain (atomics and a wake-up each, no lock).
impl PowerFailHandler for Fanout {
    fn signalled(&self, sources: u32) {
        for dev in self.devices.iter() {
            powerfail::signalled(dev, sources);
        }
    }
}

/// `/dev/rapilog-ctl`, in the caller's process context.
impl ControlHandler for Registry {
    fn initial_selection(&self) -> u32 {
        // rapilog0, or the lowest that exists (none: 0, which then
        // answers ENODEV).
        self.bitmap().trailing_zeros() % 64
    }

    fn ioctl(&self, file: &Selection, cmd: u32, arg: UserArg) -> Result<isize> {
        control::ioctl(self, file, cmd, arg)
    }

    fn read_at(&self, file: &Selection, offset: u64, dst: &mut [u8]) -> Result<usize> {
        control::read_at(self, file, offset, dst)
    }
}

/// The reboot and PM notifiers, in process context (may sleep): every
/// device in turn (module docs, Lifecycle events).
impl LifecycleHandler for Registry {
    fn stopping(&self, how: Stop) {
        let _ = self.for_each(|dev| {
            lifecycle::stopping(dev, how);
            Ok(())
        });
    }

    fn sleep_prepare(&self, what: Sleep) -> Result {
        let slots = self.slots.lock();
        let mut prepared = 0;
        for instance in slots.instances.iter().flatten() {
            if let Err(e) = lifecycle::sleep_prepare(instance.device(), what) {
                // Those that drained for it buffer writes again.
                for done in slots.instances.iter().flatten().take(prepared) {
                    lifecycle::resumed(done.device());
                }
                return Err(e);
            }
            prepared += 1;
        }
        Ok(())
    }

    fn resumed(&self) {
        let _ = self.for_each(|dev| {
            lifecycle::resumed(dev);
            Ok(())
        });
    }
}
