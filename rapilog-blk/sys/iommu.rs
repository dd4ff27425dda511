// SPDX-License-Identifier: GPL-2.0

//! Which PCI devices' DMA an IOMMU translates: the facts behind the IOMMU
//! fence (`crate::iommu_fence` decides what they mean).

use kernel::bindings;
use kernel::ffi::{c_int, c_uint};
use kernel::str::{CStr, CStrExt};

use super::helpers::{rapilog_pci_dma_path, rapilog_pci_name};

/// How one device's DMA reaches memory (`enum rapilog_dma_path`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DmaPath {
    /// Through an IOMMU page table: only what the DMA API mapped.
    Translated,
    /// The IOMMU blocks all of its DMA.
    Blocked,
    /// An identity (passthrough) domain: all of memory.
    Identity,
    /// Not behind any IOMMU: all of memory.
    NoIommu,
    /// A domain type this driver does not know.
    Unknown,
}

impl DmaPath {
    fn from_code(code: c_int) -> Self {
        match code {
            1 => Self::Translated,
            2 => Self::Blocked,
            3 => Self::Identity,
            4 => Self::NoIommu,
            _ => Self::Unknown,
        }
    }
}

/// Calls `visit` with the name (e.g. `0000:00:02.0`) and DMA path of every
/// PCI device. Sleeps (takes each device's lock).
pub(crate) fn for_each_pci_device(mut visit: impl FnMut(&CStr, DmaPath)) {
    let any = bindings::PCI_ANY_ID as c_uint;
    let mut dev: *mut bindings::pci_dev = core::ptr::null_mut();
    loop {
        // SAFETY: `dev` is null or the device the previous call returned,
        // whose reference `pci_get_device` drops; it returns the next device
        // with a reference held, or null after the last one.
        dev = unsafe { bindings::pci_get_device(any, any, dev) };
        if dev.is_null() {
            return;
        }
        // SAFETY: `dev` is a live, referenced PCI device.
        let path = DmaPath::from_code(unsafe { rapilog_pci_dma_path(dev) });
        // SAFETY: A device's name is a NUL-terminated string that lives as
        // long as the device, which the reference we hold keeps alive until
        // the next `pci_get_device`; `name` does not outlive this iteration.
        let name = unsafe { CStr::from_char_ptr(rapilog_pci_name(dev)) };
        visit(name, path);
    }
}
