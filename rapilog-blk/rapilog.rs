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
//! - [`region_spec`]: shared with rapilog-rescue and rapilogctl (rapilog-format).
//! - [`kernel_display`]: lets `pr_*!` print those types.
//! - [`sys`]: the only `unsafe` code, safe wrappers over `kernel::bindings`.

use kernel::{prelude::*, str::BStr};

mod config;
mod kernel_display;
mod params;
mod sys;

/// The on-region format: the same source rapilog-rescue and rapilogctl build.
// TODO(format crate integration): becomes `#[path = "../rapilog-format/src/lib.rs"] mod format;`.
#[allow(dead_code, unreachable_pub)]
#[path = "../rapilog-format/src/region_spec.rs"]
mod region_spec;

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
