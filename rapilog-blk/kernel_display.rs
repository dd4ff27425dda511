// SPDX-License-Identifier: GPL-2.0

//! Lets the kernel's `pr_*!` macros print the driver's types.
//!
//! Since 6.18 `pr_*!` format through `kernel::fmt::Display` rather than
//! `core::fmt::Display`. The format crate is shared with userspace and must
//! stay kernel-agnostic, so its types implement `core::fmt::Display`; this
//! forwards the kernel trait to it for every type the driver logs.

#![deny(unsafe_code)]

use core::fmt;

use kernel::error::Error;

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
    crate::config::ConfigError<'_>,
    crate::format::region_spec::RegionSpec,
    crate::format::LoadError,
    crate::format::ReplayRefusal,
    crate::format::SuperblockError,
    crate::format::ReserveError,
    crate::format::IndexError,
    crate::format::SkipCounts,
    crate::format::LossReason,
    crate::format::LossBrief,
    crate::format::RecordFault,
    Errno,
    Escaped<'_>,
    Memmap,
    crate::stats::Stats,
);

/// A kernel error shown by name (`EBUSY`), or by number if it has none.
pub(crate) struct Errno(pub(crate) Error);

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.name() {
            Some(name) => match name.to_str() {
                Ok(s) => f.write_str(s),
                Err(_) => write!(f, "errno {}", -self.0.to_errno()),
            },
            None => write!(f, "errno {}", -self.0.to_errno()),
        }
    }
}

/// Bytes from a parameter or the region, printable ASCII as is and the rest
/// escaped, so a log line stays one line whatever they hold.
pub(crate) struct Escaped<'a>(pub(crate) &'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in self.0 {
            if b.is_ascii_graphic() || b == b' ' {
                write!(f, "{}", b as char)?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

/// A region as the kernel's `memmap=SIZE$PHYS` argument that reserves it.
pub(crate) struct Memmap(pub(crate) crate::format::RegionSpec);

impl fmt::Display for Memmap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let size = self.0.size;
        let (value, unit) = [(1u64 << 30, "G"), (1 << 20, "M"), (1 << 10, "K")]
            .into_iter()
            .find(|&(d, _)| size % d == 0)
            .map_or((size, ""), |(d, u)| (size / d, u));
        write!(f, "memmap={value}{unit}${:#x}", self.0.phys)
    }
}
