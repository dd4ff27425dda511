// SPDX-License-Identifier: GPL-2.0

//! Rate limiting for kernel-log lines on hot or retrying paths: at most one
//! line per interval, and the next one says how many were suppressed.

#![deny(unsafe_code)]

use kernel::time::{Delta, Instant, Monotonic};

/// Interval between two lines of the same kind.
const INTERVAL: Delta = Delta::from_millis(5000);

/// One kind of message.
pub(crate) struct RateLimit {
    last: Option<Instant<Monotonic>>,
    suppressed: u32,
}

impl RateLimit {
    /// Nothing printed yet.
    pub(crate) const fn new() -> Self {
        Self {
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(suppressed since the last line)` if a line may be printed now.
    pub(crate) fn allow(&mut self) -> Option<u32> {
        if self.last.is_some_and(|t| t.elapsed() < INTERVAL) {
            self.suppressed = self.suppressed.saturating_add(1);
            return None;
        }
        self.last = Some(Instant::now());
        Some(core::mem::take(&mut self.suppressed))
    }
}
