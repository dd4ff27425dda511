// SPDX-License-Identifier: GPL-2.0

//! The protection self-test (`test_stray_write=1|2`): a deliberate stray
//! write into the region, as a bug elsewhere in the kernel would do it.
//!
//! With `protect=window` the region is mapped read-only except inside a
//! write window, and a window's alias is unmapped (and its TLB entries
//! dropped) when it closes; so both writes must fault - the kernel oopses
//! and kills `insmod` - and the byte must keep its value. With
//! `protect=off` the same write lands: that is what the protection costs
//! are paid for. The QEMU test checks the byte from outside the guest.

#![deny(unsafe_code)]

use kernel::prelude::*;

use crate::config::StrayWrite;
use crate::sys::region::Region;

/// The value written; the test looks for it in the region's last byte.
const MARK: u8 = 0x5a;

/// Runs the test. Returns only if the write did not fault.
pub(crate) fn run(region: &Region, kind: StrayWrite) {
    let (how, closed_window) = match kind {
        StrayWrite::ThroughView => ("through the read-only view", false),
        StrayWrite::ThroughClosedWindow => ("through a closed write window", true),
    };
    pr_warn!(
        "test_stray_write: writing {MARK:#04x} into the region's last byte {how}; this must oops\n"
    );
    region.stray_write(closed_window, MARK);
    pr_warn!(
        "test_stray_write: the write {how} did not fault: the region is not write-protected\n"
    );
}
