// SPDX-License-Identifier: GPL-2.0

//! rapilog-rescue: the program the kexec crash kernel runs to replay the
//! rapilog region onto its log disk after a crash, and reboot.
//!
//! The replay itself (engine, region access, disk discovery, identity) is
//! the `rapilog_replay` crate, shared with `rapilogctl`. What is here is the
//! crash kernel's side of it:
//!
//! - [`cmdline`]: the kernel command line and its `rapilog.*` parameters.
//! - [`config`]: one run's configuration, from those parameters and the program's flags.
//! - [`rescue`]: one region as configured: open the region, find and open the disk, replay; `--list-disks`.
//! - [`all`]: every configured region in turn, one failing not stopping the others; the summary and exit code.
//! - [`sys`]: the only `unsafe`: sync, console drain and reboot at the end of the run.
//!
//! The binary (`src/main.rs`) prints the outcome with the `rapilog-rescue:`
//! prefix and maps it to the exit codes of
//! [`rapilog_replay::FailureKind`].

#![deny(unsafe_code)]

pub mod all;
pub mod cmdline;
pub mod config;
pub mod rescue;

#[allow(unsafe_code)]
pub mod sys;

pub use config::{parse_args, Config};
