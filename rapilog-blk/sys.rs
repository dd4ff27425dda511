// SPDX-License-Identifier: GPL-2.0

//! The driver's only `unsafe` code: thin, safe types over `kernel::bindings`
//! for what the kernel crate does not wrap yet. Everything outside this module
//! is safe Rust.

pub(crate) mod crc32c;
pub(crate) mod module_param;
