// SPDX-License-Identifier: GPL-2.0

//! Lets the kernel's `pr_*!` macros print the driver's types.
//!
//! Since 6.18 `pr_*!` format through `kernel::fmt::Display` rather than
//! `core::fmt::Display`. The format crate is shared with userspace and must
//! stay kernel-agnostic, so its types implement `core::fmt::Display`; this
//! forwards the kernel trait to it for every type the driver logs.

macro_rules! forward_display {
    ($($ty:ty),* $(,)?) => {
        $(
            impl kernel::fmt::Display for $ty {
                fn fmt(&self, f: &mut kernel::fmt::Formatter<'_>) -> kernel::fmt::Result {
                    core::fmt::Display::fmt(self, f)
                }
            }
        )*
    };
}

forward_display!(
    crate::config::ConfigError,
    crate::format::region_spec::RegionSpec,
);
