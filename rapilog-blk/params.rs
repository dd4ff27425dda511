// SPDX-License-Identifier: GPL-2.0

//! The module parameters: what an administrator sets at `insmod`/`modprobe`.
//!
//! All are read-only after load and visible in `/sys/module/rapilog/parameters/`.
//! `region`, `backing` and `disk_id` are per-device lists (`config`); every
//! other parameter applies to every device.
//! [`crate::config`] turns them into a validated configuration.

#![deny(unsafe_code)]

use crate::sys::module_param::module_param;

module_param!(region: str(256) = "",
    "Reserved physical region SIZE@PHYS, as reserved at boot with memmap=SIZE$PHYS (e.g. 64M@0x60000000); for several devices a comma-separated list, /dev/rapilogN gets the N-th (at most 8, not overlapping)");
module_param!(backing: str(256) = "",
    "Path of the log disk rapilog fronts, preferably stable (e.g. /dev/disk/by-id/...); for several devices a comma-separated list (at most 255 bytes in all), one per region= element, each disk named once");
module_param!(protect: str(16) = "window",
    "Write protection of the region: window (read-only except while copying a record) or off");
module_param!(disk_id: str(528) = "",
    "Identity of the log disk recorded in the region, at most 64 bytes (default: the one the disk reports, serial:... or wwid:..., else the backing= path); replay at load and rapilog-rescue need the disk to match it. For several devices empty, or a comma-separated list with one element per region= element (an empty element: the default for that device)");
module_param!(test_stray_write: uint = 0,
    "Test only: after loading, write one byte into the region as a stray kernel write would: 1 through the read-only view, 2 through a write window after it closed. With protect=window insmod must oops and the byte stay; 0 (default) does nothing");
module_param!(iommu_fence: str(16) = "warn",
    "What a PCI device whose DMA no IOMMU translates means: warn (default: load with a loud warning naming it) or require (refuse to load)");
module_param!(powerfail: str(16) = "",
    "Power-fail signals that start the emergency drain: button (ACPI power button), nmi, or button,nmi; empty (default) for none");
module_param!(holdup_ms: uint = 50,
    "Hold-up time of the power supply in ms (1..10000): with powerfail= set, dirty data is bounded to what writeback drains in half of it");
module_param!(drain_kib_per_sec: uint = 0,
    "Writeback bandwidth in KiB/s the dirty bound assumes; 0 (default) measures it");
module_param!(powerfail_action: str(16) = "quiesce",
    "After the power-fail drain: quiesce (default: hold new writes) or poweroff");
module_param!(powerfail_resume_ms: uint = 5000,
    "After a power-fail drain, resume service (admit and buffer writes again) once the machine still runs this long after the last signal, in ms: the signal was a false alarm. 0: never (hold writes until reboot); else at least 1000 and 10 x holdup_ms, at most 3600000. Ignored with powerfail_action=poweroff");
module_param!(stop_drain_ms: uint = 30000,
    "Longest time an orderly stop (reboot, halt, power-off, kexec, suspend, hibernation) waits for the region to drain to the disk, in ms (100..600000); a suspend or hibernation that cannot drain in time is refused");
module_param!(accept_loss: uint = 0,
    "1: go live even though the log disk's marker says acknowledged writes may have been lost (a region that was neither drained nor replayed is gone); 0 (default) refuses to load");
module_param!(writeback_delay_ms: uint = 1000,
    "Longest time a write stays only in the region before writeback starts, in ms (0..60000)");
module_param!(dead_disk_ms: uint = 30000,
    "Once writeback has failed to write the log disk for this long, in ms, new writes fail with EIO instead of waiting for ring space (the database fails over); acknowledged data stays in the region and drains when the disk returns, and writes are accepted again. 0: never fail writes (writers wait for ever). Else 1000..600000; keep it below hung_task_timeout_secs");
