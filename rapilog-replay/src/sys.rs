// SPDX-License-Identifier: GPL-2.0

//! The only `unsafe` code of the crate: thin wrappers over the system calls
//! std does not offer (mmap, block-device ioctls, mknod) and the cache-line
//! flush after writing the region. The crash kernel's own calls (sync,
//! reboot) are `rapilog-rescue`'s.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// `_IOR(0x12, 114, size_t)`: size of a block device in bytes.
const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
/// `_IO(0x12, 104)`: logical block size of a block device.
const BLKSSZGET: libc::c_ulong = 0x1268;

/// Size in bytes and logical block size of the block device open as `file`.
pub fn block_device_geometry(file: &File) -> io::Result<(u64, u32)> {
    let fd = file.as_raw_fd();
    let mut bytes: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which points
    // to a live u64.
    if unsafe { libc::ioctl(fd, BLKGETSIZE64 as _, &mut bytes as *mut u64) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut block: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one int through the pointer, which points to a
    // live c_int.
    if unsafe { libc::ioctl(fd, BLKSSZGET as _, &mut block as *mut libc::c_int) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let block = u32::try_from(block).map_err(|_| io::Error::other("negative block size"))?;
    Ok((bytes, block))
}

/// Major number of a `dev_t` (glibc encoding).
pub fn dev_major(dev: u64) -> u32 {
    (((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff)) as u32
}

/// Minor number of a `dev_t` (glibc encoding).
pub fn dev_minor(dev: u64) -> u32 {
    ((dev & 0xff) | ((dev >> 12) & !0xff)) as u32
}

/// A `dev_t` from major and minor numbers (glibc encoding).
pub fn make_dev(major: u32, minor: u32) -> u64 {
    let (major, minor) = (u64::from(major), u64::from(minor));
    (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12) | ((major & !0xfff) << 32)
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::other("NUL in path"))
}

/// Creates a block device node (mode 0600) for `major:minor` at `path`.
pub fn mknod_block(path: &Path, major: u32, minor: u32) -> io::Result<()> {
    let c = c_path(path)?;
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    let rc = unsafe {
        libc::mknod(
            c.as_ptr(),
            libc::S_IFBLK | 0o600,
            make_dev(major, minor) as _,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A shared mapping of part of a file (e.g. /dev/mem).
#[derive(Debug)]
pub struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
    writable: bool,
    /// Bytes between the page-aligned start of the mapping and the first
    /// byte asked for.
    skew: usize,
}

// SAFETY: the mapping is owned; it is only written through `&mut self`, so
// sharing `&[u8]` views across threads is as safe as for a byte slice.
unsafe impl Send for Mapping {}
// SAFETY: see above.
unsafe impl Sync for Mapping {}

fn page_size() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}

impl Mapping {
    /// Maps `len` bytes of `file` from byte `offset`, shared (so writes
    /// made through the file, e.g. to /dev/mem, are visible), read-only
    /// unless `writable` (then `file` must be open for writing).
    pub fn new(file: &File, offset: u64, len: usize, writable: bool) -> io::Result<Self> {
        if len == 0 {
            return Err(io::Error::other("empty mapping"));
        }
        let page = page_size();
        let start = offset - offset % page;
        let skew = usize::try_from(offset - start).map_err(io::Error::other)?;
        let map_len = len
            .checked_add(skew)
            .ok_or_else(|| io::Error::other("mapping too large"))?;
        let file_offset = libc::off_t::try_from(start).map_err(io::Error::other)?;
        // SAFETY: a fresh mapping at an address the kernel chooses; the
        // result is checked for MAP_FAILED and owned by the returned value.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                if writable {
                    libc::PROT_READ | libc::PROT_WRITE
                } else {
                    libc::PROT_READ
                },
                libc::MAP_SHARED,
                file.as_raw_fd(),
                file_offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            ptr,
            len: map_len,
            writable,
            skew,
        })
    }

    /// Copies `data` into the mapping at byte `offset` of [`Self::bytes`].
    pub fn write(&mut self, offset: usize, data: &[u8]) -> io::Result<()> {
        if offset
            .checked_add(data.len())
            .is_none_or(|end| end > self.len - self.skew)
        {
            return Err(io::Error::other("write outside the mapping"));
        }
        if !self.writable {
            return Err(io::Error::other("mapping is read-only"));
        }
        // SAFETY: the destination range is inside the live, writable mapping
        // (checked above) and cannot overlap `data`, which is borrowed
        // immutably while `self` is borrowed mutably.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                (self.ptr as *mut u8).add(self.skew + offset),
                data.len(),
            )
        };
        Ok(())
    }

    /// The mapped bytes asked for.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes for as long as `self`
        // lives, and `skew < len`.
        unsafe {
            std::slice::from_raw_parts((self.ptr as *const u8).add(self.skew), self.len - self.skew)
        }
    }

    /// Writes back and invalidates the CPU cache lines of `range` (bytes of
    /// [`Self::bytes`]), so that data written there reaches RAM before a
    /// reset, which does not write caches back. No-op off x86-64.
    pub fn flush_cache_lines(&self, range: std::ops::Range<usize>) {
        #[cfg(target_arch = "x86_64")]
        {
            let bytes = self.bytes();
            let Some(slice) = bytes.get(range) else {
                return;
            };
            for line in (0..slice.len()).step_by(64) {
                // SAFETY: the pointer is inside the live mapping; clflush
                // (SSE2, always present on x86-64) only affects the cache.
                unsafe { std::arch::x86_64::_mm_clflush(slice.as_ptr().add(line)) };
            }
            if let Some(last) = slice.last() {
                // SAFETY: as above, for the line holding the last byte.
                unsafe { std::arch::x86_64::_mm_clflush(last) };
            }
            // SAFETY: a fence has no memory-safety preconditions.
            unsafe { std::arch::x86_64::_mm_mfence() };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = range;
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping created in `new`, once.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_numbers_round_trip() {
        for (ma, mi) in [
            (8, 0),
            (253, 16),
            (259, 3),
            (4095, 255),
            (4096, 256),
            (0xfffff, 0xfffff),
        ] {
            let dev = make_dev(ma, mi);
            assert_eq!((dev_major(dev), dev_minor(dev)), (ma, mi));
        }
        assert_eq!(make_dev(8, 1), 0x801);
    }

    #[test]
    fn maps_a_file_at_an_unaligned_offset() {
        let path = std::env::temp_dir().join(format!("rapilog-replay-map-{}", std::process::id()));
        let data: Vec<u8> = (0..3 * 4096u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let file = File::open(&path).unwrap();
        let m = Mapping::new(&file, 5000, 4000, false).unwrap();
        assert_eq!(m.bytes(), &data[5000..9000]);
        m.flush_cache_lines(0..4000);
        m.flush_cache_lines(10..11);
        m.flush_cache_lines(3999..5000);
        drop(m);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let mut m = Mapping::new(&file, 4096, 100, true).unwrap();
        m.write(10, b"hello").unwrap();
        assert!(m.write(96, b"hello").is_err());
        drop(m);
        assert_eq!(&std::fs::read(&path).unwrap()[4106..4111], b"hello");
        std::fs::remove_file(&path).unwrap();
    }
}
