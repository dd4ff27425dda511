// SPDX-License-Identifier: GPL-2.0

//! rapilog-rescue: replays the rapilog region onto its log disk after a
//! crash.
//!
//! The kexec crash kernel runs the `rapilog-rescue` binary (static, from a
//! small initramfs). It reads its configuration from the kernel command
//! line ([`cmdline`], [`config`]), reads the old kernel's region through
//! `/dev/mem` ([`region`]), finds the log disk by the identity the region
//! names ([`discover`]: the identity rule), verifies and replays every
//! record with the shared format crate and flushes the disk ([`engine`],
//! [`target`]), records the report in the region, prints it, and reboots.
//!
//! The library is the replay path for everyone outside the kernel:
//! `rapilogctl replay --image FILE --disk DEV` calls [`engine::replay`] (or
//! [`rescue::run`] with a [`config::Config`]) with [`rapilog_format::Replayer::Tool`].
//!
//! Every refusal happens before the first write; see [`engine`] for what
//! each failure leaves behind and [`engine::FailureKind`] for exit codes.

#![deny(unsafe_code)]

pub mod cmdline;
pub mod config;
pub mod discover;
pub mod engine;
pub mod idtext;
pub mod region;
pub mod rescue;
pub mod target;

#[allow(unsafe_code)]
pub mod sys;

pub use config::{parse_args, Config};
pub use engine::{replay, Failure, FailureKind, Outcome, ReplayOptions};
