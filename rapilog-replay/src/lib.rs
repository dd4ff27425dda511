// SPDX-License-Identifier: GPL-2.0

//! rapilog-replay: replays a rapilog region onto its log disk, outside the
//! kernel. The crash kernel's `rapilog-rescue` and `rapilogctl` (`replay`,
//! `inspect`, `marker`, `plan`) both build on it; each brings its own
//! command line and records itself as a different
//! [`rapilog_format::Replayer`].
//!
//! - [`engine`]: the replay itself: superblock, identity check, verified writes, flush, loss marker, report.
//! - [`region`]: the region's bytes, from physical memory (`/dev/mem`) or an image file.
//! - [`target`]: the log disk written to, a block device or a file standing in for one.
//! - [`discover`]: finding the log disk in sysfs by the identity the region names (the identity rule).
//! - [`idtext`]: disk ids as text, for command lines and messages.
//! - [`sys`]: the only `unsafe`: mmap, block-device ioctls, mknod, device numbers, cache-line flush.
//!
//! Every refusal happens before the first write; see [`engine`] for what
//! each failure leaves behind and [`FailureKind`] for exit codes.

#![deny(unsafe_code)]

pub mod discover;
pub mod engine;
pub mod idtext;
pub mod region;
pub mod target;

#[allow(unsafe_code)]
pub mod sys;

pub use engine::{replay, Failure, FailureKind, Outcome, ReplayOptions};
