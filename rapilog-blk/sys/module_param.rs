// SPDX-License-Identifier: GPL-2.0

//! Module parameters parsed by the kernel's own C `param_ops_*`.
//!
//! The kernel crate's `module!` macro (7.2/7.3) supports only integer and bool
//! parameters and hides them from sysfs. rapilog needs string parameters
//! (`region=64M@0x60000000`, `backing=/dev/disk/by-id/...`) and shows every
//! parameter read-only under `/sys/module/rapilog/parameters/`, so an
//! administrator can see what the driver runs with. The [`module_param!`] macro
//! therefore emits exactly what C's `module_param_string()` emits: a
//! `struct kernel_param` in the `__param` section pointing at the kernel's
//! `param_ops_string`, plus the `parm=`/`parmtype=` strings `modinfo` shows.
//!
//! The kernel writes a parameter's storage only while it parses the arguments
//! of `insmod`, before any code of the module runs, and never again because the
//! parameters are registered read-only (0444). That is what makes the shared
//! reads below sound.

use core::cell::UnsafeCell;
use kernel::{bindings, ffi::c_void};

/// sysfs permission of every parameter: world-readable, never writable.
const PERM_READ_ONLY: u16 = 0o444;

/// Storage of a string parameter of at most `N - 1` bytes.
///
/// # Invariants
///
/// Only the kernel writes the storage, only while it parses the module's
/// arguments (before any code of the module runs), and always NUL-terminated
/// within `N` bytes: the parameter is registered read-only (0444) with
/// `maxlen = N`. Every access by the module is a read.
#[repr(transparent)]
pub(crate) struct StrParam<const N: usize>(UnsafeCell<[u8; N]>);

// SAFETY: Once the module's code runs, every access is a read (type
// invariant).
unsafe impl<const N: usize> Sync for StrParam<N> {}

impl<const N: usize> StrParam<N> {
    /// A string parameter holding `default` until the kernel parses a value.
    pub(crate) const fn new(default: &str) -> Self {
        let bytes = default.as_bytes();
        assert!(
            bytes.len() < N,
            "default longer than the parameter's buffer"
        );
        let mut buf = [0u8; N];
        let mut i = 0;
        while i < bytes.len() {
            buf[i] = bytes[i];
            i += 1;
        }
        // INVARIANT: NUL-terminated (`bytes.len() < N`); `module_param!`
        // registers it read-only with `maxlen = N` (`kparam`).
        Self(UnsafeCell::new(buf))
    }

    /// The value in force (given at load time, else the default), without its NUL.
    pub(crate) fn value(&'static self) -> &'static [u8] {
        // SAFETY: No writer exists once the module's code runs (type
        // invariant).
        let buf = unsafe { &*self.0.get() };
        let len = buf.iter().position(|&b| b == 0).unwrap_or(N);
        &buf[..len]
    }

    #[doc(hidden)]
    pub(crate) const fn kparam(&'static self) -> KparamString {
        KparamString(bindings::kparam_string {
            // `N` is a small buffer size chosen in `params.rs`.
            maxlen: N as u32,
            string: self.0.get().cast(),
        })
    }
}

/// Storage of an unsigned integer parameter, parsed by `param_ops_uint`.
///
/// # Invariants
///
/// As for [`StrParam`]: only the kernel writes it, only while it parses the
/// module's arguments; the module only reads it.
#[repr(transparent)]
pub(crate) struct UintParam(UnsafeCell<u32>);

// SAFETY: Once the module's code runs, every access is a read (type
// invariant).
unsafe impl Sync for UintParam {}

impl UintParam {
    /// An integer parameter holding `default` until the kernel parses a value.
    pub(crate) const fn new(default: u32) -> Self {
        // INVARIANT: `module_param!` registers it read-only.
        Self(UnsafeCell::new(default))
    }

    /// The value in force.
    pub(crate) fn value(&'static self) -> u32 {
        // SAFETY: No writer exists once the module's code runs (type
        // invariant).
        unsafe { *self.0.get() }
    }

    #[doc(hidden)]
    pub(crate) const fn arg(&'static self) -> *mut c_void {
        self.0.get().cast()
    }
}

/// `struct kparam_string`, shareable because it only points at static storage.
#[doc(hidden)]
#[repr(transparent)]
pub(crate) struct KparamString(bindings::kparam_string);

// SAFETY: It holds a length and a pointer to a `StrParam`, which is `Sync`.
unsafe impl Sync for KparamString {}

impl KparamString {
    #[doc(hidden)]
    pub(crate) const fn arg(&'static self) -> *mut c_void {
        core::ptr::from_ref(&self.0).cast_mut().cast()
    }
}

/// `struct kernel_param`, as placed in the `__param` section.
#[doc(hidden)]
#[repr(transparent)]
pub(crate) struct KernelParam(bindings::kernel_param);

// SAFETY: It only holds pointers to static, `Sync` data; the kernel serialises
// its own accesses.
unsafe impl Sync for KernelParam {}

impl KernelParam {
    #[doc(hidden)]
    pub(crate) const fn new(
        name: &'static [u8],
        ops: *const bindings::kernel_param_ops,
        arg: *mut c_void,
    ) -> Self {
        Self(bindings::kernel_param {
            name: name.as_ptr().cast(),
            mod_: &raw const bindings::__this_module as *mut bindings::module,
            ops,
            perm: PERM_READ_ONLY,
            level: -1,
            flags: 0,
            __bindgen_anon_1: bindings::kernel_param__bindgen_ty_1 { arg },
        })
    }
}

/// A `.modinfo` string (`parm=...`, `parmtype=...`) as a fixed-size array.
#[doc(hidden)]
pub(crate) const fn modinfo<const LEN: usize>(s: &str) -> [u8; LEN] {
    let bytes = s.as_bytes();
    let mut out = [0u8; LEN];
    let mut i = 0;
    while i < LEN {
        out[i] = bytes[i];
        i += 1;
    }
    out
}

/// Declares a read-only module parameter:
/// `module_param!(name: str(LEN) = "default", "description")` or
/// `module_param!(name: uint = 1000, "description")`.
macro_rules! module_param {
    ($name:ident: uint = $default:literal, $desc:literal) => {
        #[allow(non_upper_case_globals)]
        pub(crate) static $name: $crate::sys::module_param::UintParam =
            $crate::sys::module_param::UintParam::new($default);
        const _: () = {
            $crate::sys::module_param::module_param!(
                @register $name, &raw const kernel::bindings::param_ops_uint, $name.arg(), "uint", $desc
            );
        };
    };
    ($name:ident: str($len:expr) = $default:literal, $desc:literal) => {
        #[allow(non_upper_case_globals)]
        pub(crate) static $name: $crate::sys::module_param::StrParam<$len> =
            $crate::sys::module_param::StrParam::new($default);
        const _: () = {
            static KPARAM: $crate::sys::module_param::KparamString = $name.kparam();
            $crate::sys::module_param::module_param!(
                @register $name, &raw const kernel::bindings::param_ops_string, KPARAM.arg(), "string", $desc
            );
        };
    };
    (@register $name:ident, $ops:expr, $arg:expr, $type:literal, $desc:literal) => {
        // `#[link_section]` counts as unsafe code: these statics are expanded
        // where the macro is called (`params.rs`, which denies unsafe code),
        // but what they hold and where they go is this file's business.
        #[allow(unsafe_code)]
        #[link_section = "__param"]
        #[used(compiler)]
        static PARAM: $crate::sys::module_param::KernelParam =
            $crate::sys::module_param::KernelParam::new(
                concat!(stringify!($name), "\0").as_bytes(),
                $ops,
                $arg,
            );
        const PARM: &str = concat!("parm=", stringify!($name), ":", $desc, "\0");
        #[allow(unsafe_code)]
        #[link_section = ".modinfo"]
        #[used(compiler)]
        static PARM_INFO: [u8; PARM.len()] = $crate::sys::module_param::modinfo(PARM);
        const PARMTYPE: &str = concat!("parmtype=", stringify!($name), ":", $type, "\0");
        #[allow(unsafe_code)]
        #[link_section = ".modinfo"]
        #[used(compiler)]
        static PARMTYPE_INFO: [u8; PARMTYPE.len()] = $crate::sys::module_param::modinfo(PARMTYPE);
    };
}
pub(crate) use module_param;
