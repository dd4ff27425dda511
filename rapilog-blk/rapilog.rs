// SPDX-License-Identifier: GPL-2.0

//! rapilog: a log disk whose writes complete at memory speed, durably.
//!
//! `/dev/rapilog0` fronts a log disk. Each write is copied into a reserved,
//! write-protected physical memory region that survives a kernel crash and is
//! completed at once; a worker writes the disk in the background. After a
//! panic a kexec crash kernel replays the region (rapilog-rescue); after a warm
//! reboot this module replays it at load. See README.md and
//! rapilog-format/FORMAT.md.
//!
//! Layout:
//! - [`params`]: the module parameters, as an administrator sets them.
//! - [`config`]: their validation into a [`config::Config`].
//! - [`format`]: the on-region format, shared with rapilog-rescue and rapilogctl.
//! - [`kernel_display`]: lets `pr_*!` print those types.
//! - [`sys`]: the only `unsafe` code, safe wrappers over `kernel::bindings`.

use kernel::{prelude::*, str::BStr};

mod config;
mod kernel_display;
mod params;
mod sys;

/// The on-region format: the very source rapilog-rescue and rapilogctl build.
#[path = "../rapilog-format/src/lib.rs"]
mod format;

module! {
    type: RapiLog,
    name: "rapilog",
    authors: ["The rapilog developers"],
    description: "Log disk accelerator: writes complete from a crash-surviving memory region",
    license: "GPL",
}

/// The loaded module.
struct RapiLog {
    config: config::Config,
}

impl kernel::Module for RapiLog {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let config = config::Config::from_params().map_err(|e| {
            pr_err!("{e}\n");
            EINVAL
        })?;
        // Records written here are verified by rapilog-rescue and rapilogctl
        // with the format crate's software CRC: refuse to run if the two differ.
        if let Err(index) = format::crc32c_test_vectors::verify(&sys::crc32c::KernelCrc32c) {
            pr_err!("the kernel's crc32c() disagrees with the format's test vector {index}; not loading\n");
            return Err(EINVAL);
        }
        pr_info!(
            "configured: region={} backing={} protect={}\n",
            config.region,
            BStr::from_bytes(config.backing),
            config.protect.name()
        );
        Ok(Self { config })
    }
}

impl Drop for RapiLog {
    fn drop(&mut self) {
        pr_info!("unloaded (region={})\n", self.config.region);
    }
}
