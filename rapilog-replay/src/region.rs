// SPDX-License-Identifier: GPL-2.0

//! Access to the region's bytes: physical memory through `/dev/mem` (the
//! crash kernel, or a live system for tests), or an image file (offline
//! tools).
//!
//! Physical memory is mapped with `mmap` of `/dev/mem` (write-back cached:
//! 64 MiB in 0.05 s under QEMU TCG), or, if that fails, read into memory
//! with `read(2)` (the kernel maps and unmaps each page: 2 s under TCG; and
//! `/dev/mem` refuses `read` above the running kernel's own memory, which
//! `mmap` does not). `--read` tries them the other way round. The only
//! write ever made is one 512-byte superblock copy, followed by a
//! cache-line flush and a read-back check.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rapilog_format::RegionSpec;

use crate::sys::Mapping;

/// Where the region's bytes are, as far as replay is concerned.
pub trait RegionStore {
    /// The region, from its first byte.
    fn bytes(&self) -> &[u8];
    /// Writes `data` at byte `offset` of the region so that it reaches the
    /// medium (RAM, or the image file), and updates [`Self::bytes`].
    fn write(&mut self, offset: usize, data: &[u8]) -> io::Result<()>;
    /// Reads `len` bytes at `offset` back from the medium.
    fn read_back(&self, offset: usize, len: usize) -> io::Result<Vec<u8>>;
    /// Where the region is, for messages (e.g. `64M@0x60000000 via /dev/mem`).
    fn describe(&self) -> String;
}

/// How to get the bytes of a physical region (the other way is the
/// fallback).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemAccess {
    /// Map with mmap; read if that fails (the default).
    Map,
    /// Read into memory; map if that fails.
    Read,
}

enum Data {
    Owned(Vec<u8>),
    Mapped(Mapping),
}

/// A region in a file: `/dev/mem` at the region's physical address, or an
/// image file at offset 0.
pub struct FileRegion {
    file: File,
    path: PathBuf,
    /// File offset of the region's first byte.
    base: u64,
    data: Data,
    /// `Some` for physical memory.
    spec: Option<RegionSpec>,
    /// How the bytes were obtained, when it was not the plain way.
    note: Option<String>,
}

fn open(path: &Path, writable: bool) -> io::Result<File> {
    OpenOptions::new().read(true).write(writable).open(path)
}

fn read_owned(file: &File, base: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    buf.try_reserve_exact(len).map_err(|_| {
        io::Error::new(
            io::ErrorKind::OutOfMemory,
            format!("cannot allocate {len} bytes"),
        )
    })?;
    buf.resize(len, 0);
    file.read_exact_at(&mut buf, base)?;
    Ok(buf)
}

impl FileRegion {
    /// The physical region `spec`, through the memory device `mem`
    /// (normally `/dev/mem`), opened for writing unless `read_only`.
    pub fn open_memory(
        mem: &Path,
        spec: RegionSpec,
        access: MemAccess,
        read_only: bool,
    ) -> io::Result<Self> {
        let file = open(mem, !read_only)?;
        let len = usize::try_from(spec.size).map_err(io::Error::other)?;
        let map = || Mapping::new(&file, spec.phys, len, false).map(Data::Mapped);
        let read = || read_owned(&file, spec.phys, len).map(Data::Owned);
        let (first, second, names): (
            &dyn Fn() -> io::Result<Data>,
            &dyn Fn() -> io::Result<Data>,
            _,
        ) = match access {
            MemAccess::Map => (&map, &read, ("mapped", "read", "mmap")),
            MemAccess::Read => (&read, &map, ("read", "mapped", "read")),
        };
        let (data, note) = match first() {
            Ok(data) => (data, names.0.to_string()),
            Err(first_err) => match second() {
                Ok(data) => (
                    data,
                    format!("{} ({} failed: {first_err})", names.1, names.2),
                ),
                Err(second_err) => {
                    return Err(io::Error::new(
                        first_err.kind(),
                        format!("{}: {first_err}; fallback: {second_err}", names.2),
                    ))
                }
            },
        };
        Ok(Self {
            file,
            path: mem.to_path_buf(),
            base: spec.phys,
            data,
            spec: Some(spec),
            note: Some(note),
        })
    }

    /// A region image file, read whole, opened for writing unless `read_only`.
    pub fn open_image(path: &Path, read_only: bool) -> io::Result<Self> {
        let file = open(path, !read_only)?;
        let len = usize::try_from(file.metadata()?.len()).map_err(io::Error::other)?;
        let data = Data::Owned(read_owned(&file, 0, len)?);
        Ok(Self {
            file,
            path: path.to_path_buf(),
            base: 0,
            data,
            spec: None,
            note: Some("read".into()),
        })
    }

    /// How the bytes were obtained (for the log).
    pub fn note(&self) -> Option<&str> {
        self.note.as_deref()
    }

    fn file_offset(&self, offset: usize) -> io::Result<u64> {
        u64::try_from(offset)
            .ok()
            .and_then(|o| self.base.checked_add(o))
            .ok_or_else(|| io::Error::other("offset overflow"))
    }
}

impl RegionStore for FileRegion {
    fn bytes(&self) -> &[u8] {
        match &self.data {
            Data::Owned(v) => v,
            Data::Mapped(m) => m.bytes(),
        }
    }

    fn write(&mut self, offset: usize, data: &[u8]) -> io::Result<()> {
        if offset
            .checked_add(data.len())
            .is_none_or(|end| end > self.bytes().len())
        {
            return Err(io::Error::other("write outside the region"));
        }
        let at = self.file_offset(offset)?;
        if self.spec.is_none() {
            self.file.write_all_at(data, at)?;
            self.file.sync_data()?;
        } else {
            // Physical memory: write(2) on the memory device; where the
            // device refuses it for the range, through a writable mapping.
            // Then write the cache lines back, since a reset does not.
            let mut page = Mapping::new(&self.file, at, data.len(), true);
            if let Err(write_err) = self.file.write_all_at(data, at) {
                let page = page.as_mut().map_err(|map_err| {
                    io::Error::new(
                        write_err.kind(),
                        format!("write: {write_err}; mmap: {map_err}"),
                    )
                })?;
                page.write(0, data)?;
            }
            if let Ok(page) = &page {
                page.flush_cache_lines(0..data.len());
            }
        }
        if let Data::Owned(v) = &mut self.data {
            v[offset..offset + data.len()].copy_from_slice(data);
        }
        Ok(())
    }

    fn read_back(&self, offset: usize, len: usize) -> io::Result<Vec<u8>> {
        let at = self.file_offset(offset)?;
        let mut buf = vec![0u8; len];
        match self.file.read_exact_at(&mut buf, at) {
            Ok(()) => Ok(buf),
            // Same fallback as for reading the whole region.
            Err(e) if self.spec.is_some() => {
                let m = Mapping::new(&self.file, at, len, false).map_err(|_| e)?;
                Ok(m.bytes().to_vec())
            }
            Err(e) => Err(e),
        }
    }

    fn describe(&self) -> String {
        match self.spec {
            Some(spec) => format!("{spec} via {}", self.path.display()),
            None => format!("image {}", self.path.display()),
        }
    }
}

/// A region held in memory only: for tests of the replay engine, with
/// optional write failures.
#[derive(Debug, Clone)]
pub struct MemoryRegion {
    /// The region.
    pub bytes: Vec<u8>,
    /// Every write fails with this error kind when set.
    pub fail_writes: Option<io::ErrorKind>,
}

impl RegionStore for MemoryRegion {
    fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn write(&mut self, offset: usize, data: &[u8]) -> io::Result<()> {
        if let Some(kind) = self.fail_writes {
            return Err(io::Error::new(kind, "injected write failure"));
        }
        self.bytes
            .get_mut(offset..offset + data.len())
            .ok_or_else(|| io::Error::other("write outside the region"))?
            .copy_from_slice(data);
        Ok(())
    }

    fn read_back(&self, offset: usize, len: usize) -> io::Result<Vec<u8>> {
        self.bytes
            .get(offset..offset + len)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| io::Error::other("read outside the region"))
    }

    fn describe(&self) -> String {
        "memory".into()
    }
}
