// SPDX-License-Identifier: GPL-2.0

//! The driver's only `unsafe` code: thin, safe types over `kernel::bindings`
//! and the C helpers in `sys/helpers.c`, for what the kernel crate does not
//! wrap yet. Everything outside this module is safe Rust, and the compiler
//! holds it to that: the crate root and every file outside `sys/` say
//! `#![deny(unsafe_code)]`, and only the `mod sys` item allows it. (The one
//! other `allow` is inside the [`module_param!`](module_param::module_param)
//! macro: the `#[link_section]` statics it expands in `params.rs`.)
//!
//! - [`region`]: the reserved region, its read-only view and write windows.
//! - [`backing`]: the log disk, opened exclusively; synchronous writes, groups
//!   of writes in flight together, flush.
//! - [`bounce`]: pages that carry region data to the disk.
//! - [`bio`]: bios submitted to `/dev/rapilog0`.
//! - [`gendisk`]: `/dev/rapilog0` itself, a bio-based disk.
//! - [`kthread`]: the writeback thread.
//! - [`clock`]: wall clock and randomness.
//! - [`compat`]: what differs between the kernels' Rust APIs.
//! - [`control_device`]: `/dev/rapilog-ctl`, the control interface.
//! - [`crc32c`]: the kernel's CRC-32C for the format crate.
//! - `copy_crc`: a write's payload copied and checksummed in one pass.
//! - [`iommu`]: which PCI devices' DMA an IOMMU translates.
//! - [`module_param`]: string and integer module parameters.
//! - [`powerfail_signals`]: the power button and NMI signals, power off,
//!   panic.
//! - [`lifecycle_events`]: the reboot and PM notifiers.
//! - `helpers`: prototypes of `helpers.c`.

/// Why bytes could not be copied between the region, a bio, bounce pages
/// or a write window. Every range comes from a geometry validated at load,
/// so each of these is a bug of the caller's arithmetic, reported instead
/// of acted on: nothing is copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CopyError {
    /// A range lies outside the region.
    OutsideRegion,
    /// A range lies outside the other side: a window's part, a bio's data,
    /// the bounce pages, a slice.
    OutsideBuffer,
    /// A bio and the window part it fills differ in size.
    SizeMismatch,
}

pub(crate) mod backing;
pub(crate) mod bio;
pub(crate) mod bounce;
pub(crate) mod clock;
pub(crate) mod compat;
pub(crate) mod control_device;
mod copy_crc;
pub(crate) mod crc32c;
pub(crate) mod gendisk;
mod helpers;
pub(crate) mod iommu;
pub(crate) mod kthread;
pub(crate) mod lifecycle_events;
pub(crate) mod module_param;
pub(crate) mod powerfail_signals;
pub(crate) mod region;
