// SPDX-License-Identifier: GPL-2.0

//! The IOMMU fence: write protection stops stray CPU writes, but a PCI
//! device doing DMA does not go through the CPU's page tables. Only an IOMMU
//! translating every device's DMA keeps devices out of the region (the
//! region is never DMA-mapped: writeback copies through bounce pages). This
//! checks, at load and on request, that every PCI device is translated or
//! blocked, names those that are not, and applies `iommu_fence=`.

#![deny(unsafe_code)]

use kernel::prelude::*;

use crate::format::control::{FencePolicy, FenceState, Text};
use crate::sys::iommu::{for_each_pci_device, DmaPath};

/// Most unfenced devices named one line each in the kernel log.
const MAX_LOGGED: u32 = 16;

/// Bytes of unfenced device names kept for the status (as in the block).
const NAMES_BYTES: usize = 128;

/// The outcome of a check.
#[derive(Clone, Copy)]
pub(crate) struct FenceReport {
    /// What an unfenced machine means.
    pub(crate) policy: FencePolicy,
    /// Fenced or not.
    pub(crate) state: FenceState,
    /// PCI devices checked.
    pub(crate) devices: u32,
    /// Of those, devices whose DMA can reach the region.
    pub(crate) unfenced: u32,
    /// Their names, space separated (cut with `...`).
    pub(crate) names: Text<NAMES_BYTES>,
}

/// Names, space separated, one byte more than kept so a cut shows.
struct NameList {
    bytes: [u8; NAMES_BYTES + 1],
    len: usize,
}

impl NameList {
    fn push(&mut self, name: &[u8]) {
        let sep: &[u8] = if self.len == 0 { b"" } else { b" " };
        for &b in Iterator::chain(sep.iter(), name) {
            if let Some(slot) = self.bytes.get_mut(self.len) {
                *slot = b;
                self.len += 1;
            }
        }
    }

    fn text(&self) -> Text<NAMES_BYTES> {
        Text::new(self.bytes.get(..self.len).unwrap_or(&[]))
    }
}

/// Why a device's DMA is not fenced; `None` if it is.
fn unfenced_because(path: DmaPath) -> Option<&'static str> {
    match path {
        DmaPath::Translated | DmaPath::Blocked => None,
        DmaPath::Identity => Some("identity (passthrough) IOMMU domain"),
        DmaPath::NoIommu => Some("not behind an IOMMU"),
        DmaPath::Unknown => Some("IOMMU domain of a type rapilog does not know"),
    }
}

/// Checks every PCI device and logs the outcome: one line per unfenced
/// device (the first few) and a verdict.
pub(crate) fn check(policy: FencePolicy) -> FenceReport {
    let (mut devices, mut unfenced) = (0u32, 0u32);
    let mut names = NameList {
        bytes: [0; NAMES_BYTES + 1],
        len: 0,
    };
    for_each_pci_device(|name, path| {
        devices += 1;
        let Some(why) = unfenced_because(path) else {
            return;
        };
        unfenced += 1;
        names.push(name.to_bytes());
        if unfenced <= MAX_LOGGED {
            pr_warn!(
                "IOMMU fence: PCI {}: {why}: its DMA can reach the region\n",
                name.to_str().unwrap_or("?")
            );
        }
    });
    if unfenced > MAX_LOGGED {
        pr_warn!(
            "IOMMU fence: ... and {} more unfenced PCI devices\n",
            unfenced - MAX_LOGGED
        );
    }
    let state = if unfenced == 0 {
        pr_info!("IOMMU fence: fenced: an IOMMU translates the DMA of all {devices} PCI devices\n");
        FenceState::Fenced
    } else {
        FenceState::Unfenced
    };
    FenceReport {
        policy,
        state,
        devices,
        unfenced,
        names: names.text(),
    }
}

/// Applies the policy to a check made at load: refuses to load, or warns.
pub(crate) fn enforce(report: &FenceReport) -> Result {
    if report.state != FenceState::Unfenced {
        return Ok(());
    }
    let (unfenced, devices) = (report.unfenced, report.devices);
    if report.policy == FencePolicy::Require {
        pr_err!(
            "iommu_fence=require refused: {unfenced} of {devices} PCI devices can DMA into the region \
             unchecked (named above); boot with the IOMMU translating (intel_iommu=on or amd_iommu=on, \
             iommu.passthrough=0), or load with iommu_fence=warn to accept the risk\n"
        );
        return Err(EPERM);
    }
    pr_warn!(
        "IOMMU fence: UNFENCED: {unfenced} of {devices} PCI devices can DMA into the region unchecked \
         (named above); a faulty device or driver can corrupt acknowledged writes. Boot with the IOMMU \
         translating (intel_iommu=on or amd_iommu=on, iommu.passthrough=0), or load with \
         iommu_fence=require to refuse such a machine\n"
    );
    Ok(())
}
