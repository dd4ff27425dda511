// SPDX-License-Identifier: GPL-2.0

//! The live commands (`status`, `flush`, `dump`, `inspect --live`).
//!
//! They need the driver's control interface, which `rapilog.ko` does not
//! have yet. Until it does they check what can be checked (is the module
//! loaded, does the device exist) and fail with exit 7 or 8; they never make
//! up output. README.md lists what the interface must expose.

use std::path::Path;

use crate::{Code, Error};

/// The rapilog device of `dev` (`/dev/rapilog0` or `rapilog0`): its name.
fn device_name(dev: &str) -> &str {
    dev.rsplit('/').next().unwrap_or(dev)
}

/// Fails with the documented code: 7 if the module is not loaded (no
/// `SYSFS/module/rapilog`) or `dev` is not one of its devices, else 8.
pub fn unavailable(command: &str, sysfs: &Path, dev: Option<&str>) -> Error {
    if !sysfs.join("module/rapilog").exists() {
        return Error::new(
            Code::NoDevice,
            format!(
                "{command}: the rapilog module is not loaded (no {}); load it with \
                 `rapilog-arm load-module` or `modprobe rapilog region=... backing=...`",
                sysfs.join("module/rapilog").display()
            ),
        );
    }
    if let Some(dev) = dev {
        let name = device_name(dev);
        if !sysfs.join("block").join(name).exists() {
            return Error::new(
                Code::NoDevice,
                format!(
                    "{command}: no such rapilog device {dev} (no {})",
                    sysfs.join("block").join(name).display()
                ),
            );
        }
    }
    Error::new(
        Code::Unsupported,
        format!(
            "{command}: the loaded rapilog module has no control interface yet, so live state cannot \
             be read; offline, `rapilogctl inspect --mem ADDR,SIZE` (root) decodes the region"
        ),
    )
}
