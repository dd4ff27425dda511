// SPDX-License-Identifier: GPL-2.0

//! The control device (`/dev/rapilog-ctl`): a misc device whose every open
//! file leads to one shared [`ControlHandler`], which implements its ioctls
//! and reads in safe Rust. Each open file carries a [`Selection`]: which of
//! the handler's devices its ioctls and reads act on.

use core::marker::PhantomData;

use kernel::bindings;
use kernel::fs::{File, Kiocb};
use kernel::iov::IovIterDest;
use kernel::miscdevice::{MiscDevice, MiscDeviceOptions, MiscDeviceRegistration};
use kernel::prelude::*;
use kernel::str::CStr;
use kernel::sync::atomic::{Atomic, Relaxed};
use kernel::sync::{Arc, ArcBorrow};
use kernel::uaccess::{UserPtr, UserSlice};

/// Most bytes one `read()` copies.
const MAX_READ_BYTES: usize = 256 << 10;

/// What the control device does.
pub(crate) trait ControlHandler: Send + Sync + 'static {
    /// What a newly opened file selects.
    fn initial_selection(&self) -> u32;
    /// Handles ioctl `cmd` with argument `arg` for an open file.
    fn ioctl(&self, file: &Selection, cmd: u32, arg: UserArg) -> Result<isize>;
    /// Fills `dst` with the selected device's bytes from `offset` on;
    /// returns how many (0 at the end).
    fn read_at(&self, file: &Selection, offset: u64, dst: &mut [u8]) -> Result<usize>;
}

/// Which device an open file acts on: an index the handler gives meaning
/// to. Relaxed: each open file's selection stands alone, and concurrent
/// ioctls on one file see the one or the other.
pub(crate) struct Selection(Atomic<u32>);

impl Selection {
    /// The selected index.
    pub(crate) fn get(&self) -> u32 {
        self.0.load(Relaxed)
    }

    /// Selects `index`.
    pub(crate) fn set(&self, index: u32) {
        self.0.store(index, Relaxed);
    }
}

/// An open file: the shared handler and this file's selection.
struct OpenFile<T> {
    handler: Arc<T>,
    selection: Selection,
}

/// An ioctl's argument: a pointer into the caller's memory.
pub(crate) struct UserArg(usize);

impl UserArg {
    /// Reads the `u64` the argument points to (an `_IOW(..., u64)` ioctl).
    pub(crate) fn read_u64(&self) -> Result<u64> {
        let mut bytes = [0u8; 8];
        UserSlice::new(UserPtr::from_addr(self.0), bytes.len())
            .reader()
            .read_slice(&mut bytes)?;
        // The caller's native order, as the ioctl's C prototype has it.
        Ok(u64::from_ne_bytes(bytes))
    }

    /// Fills `dst` from where the argument points (an `_IOW(..., [u8; N])`
    /// ioctl, `dst.len() == N`).
    pub(crate) fn read_into(&self, dst: &mut [u8]) -> Result {
        UserSlice::new(UserPtr::from_addr(self.0), dst.len())
            .reader()
            .read_slice(dst)
    }

    /// Reads the `u32` the argument points to (an `_IOW(..., u32)` ioctl).
    pub(crate) fn read_u32(&self) -> Result<u32> {
        let mut bytes = [0u8; 4];
        UserSlice::new(UserPtr::from_addr(self.0), bytes.len())
            .reader()
            .read_slice(&mut bytes)?;
        Ok(u32::from_ne_bytes(bytes))
    }

    /// Copies `data` to where the argument points.
    pub(crate) fn write(&self, data: &[u8]) -> Result {
        UserSlice::new(UserPtr::from_addr(self.0), data.len())
            .writer()
            .write_slice(data)
    }
}

/// Whether the calling task may administer the device (`CAP_SYS_ADMIN`).
pub(crate) fn caller_is_admin() -> bool {
    // SAFETY: `capable` only checks the current task's credentials.
    unsafe { bindings::capable(bindings::CAP_SYS_ADMIN as i32) }
}

/// The registered device; deregistered when dropped. Open files keep the
/// handler (an `Arc`) and the module (the file operations' owner) alive.
///
/// # Invariants
///
/// Every registration of `ControlFile<T>` is the `registration` field of a
/// pinned `ControlDevice<T>` (only [`ControlDevice::register`] makes one),
/// and that field is dropped (deregistered) before `handler`.
#[pin_data]
pub(crate) struct ControlDevice<T: ControlHandler> {
    /// Dropped first: no open happens after it is gone.
    #[pin]
    registration: MiscDeviceRegistration<ControlFile<T>>,
    handler: Arc<T>,
}

impl<T: ControlHandler> ControlDevice<T> {
    /// Registers `/dev/<name>`, served by `handler`.
    pub(crate) fn register(name: &'static CStr, handler: Arc<T>) -> Result<Pin<KBox<Self>>> {
        // INVARIANT: The registration is made in place as a field of the
        // pinned device; fields drop in declaration order, `registration`
        // first.
        KBox::try_pin_init(
            try_pin_init!(Self {
                // The handler first: the device may be opened as soon as it
                // is registered.
                handler,
                registration <- MiscDeviceRegistration::register(MiscDeviceOptions { name }),
            }),
            GFP_KERNEL,
        )
    }
}

/// The file operations (never instantiated).
struct ControlFile<T>(PhantomData<T>);

#[vtable]
impl<T: ControlHandler> MiscDevice for ControlFile<T> {
    type Ptr = Arc<OpenFile<T>>;

    fn open(_file: &File, misc: &MiscDeviceRegistration<Self>) -> Result<Arc<OpenFile<T>>> {
        let misc: *const MiscDeviceRegistration<Self> = misc;
        // SAFETY: `ControlFile<T>` is private to this file and only ever
        // registered as the `registration` field of a pinned
        // `ControlDevice<T>` (its type invariant), which outlives its
        // registration: so `misc` lies inside a live `ControlDevice<T>`.
        let control = unsafe { &*kernel::container_of!(misc, ControlDevice<T>, registration) };
        let handler = control.handler.clone();
        let selection = Selection(Atomic::new(handler.initial_selection()));
        Ok(Arc::new(OpenFile { handler, selection }, GFP_KERNEL)?)
    }

    fn read_iter(
        mut kiocb: Kiocb<'_, Arc<OpenFile<T>>>,
        iov: &mut IovIterDest<'_>,
    ) -> Result<usize> {
        let offset = u64::try_from(kiocb.ki_pos()).map_err(|_| EINVAL)?;
        let mut buf = KVVec::from_elem(0u8, iov.len().min(MAX_READ_BYTES), GFP_KERNEL)?;
        let open: ArcBorrow<'_, OpenFile<T>> = kiocb.file();
        let filled = open.handler.read_at(&open.selection, offset, &mut buf)?;
        let copied = iov.copy_to_iter(buf.get(..filled).unwrap_or(&[]));
        if copied == 0 && filled > 0 {
            return Err(EFAULT);
        }
        *kiocb.ki_pos_mut() += copied as i64;
        Ok(copied)
    }

    fn ioctl(
        open: ArcBorrow<'_, OpenFile<T>>,
        _file: &File,
        cmd: u32,
        arg: usize,
    ) -> Result<isize> {
        open.handler.ioctl(&open.selection, cmd, UserArg(arg))
    }
}
