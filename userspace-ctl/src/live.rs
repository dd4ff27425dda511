// SPDX-License-Identifier: GPL-2.0

//! The live commands (`status`, `flush`, `dump`, `inspect --live`, `fence`,
//! `skip-bad-record`) over the driver's control device `/dev/rapilog-ctl`:
//! its ioctls and its status block are defined in the format crate
//! ([`rapilog_format::control`]), shared with the driver.
//!
//! Failures, in the order they are checked: the module is not loaded (no
//! `SYSFS/module/rapilog`) or DEV is not one of its devices: exit 7; no
//! control device, or one that does not answer the status ioctl with a
//! block of this version: exit 8; not allowed (`CAP_SYS_ADMIN` for drain,
//! fence check, skip and reads of the region): exit 77; interrupted: exit
//! 130.

use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rapilog_format::control::{
    Status, CREATE_BYTES, IOCTL_CHECK_FENCE, IOCTL_CREATE, IOCTL_DRAIN, IOCTL_LIST, IOCTL_REMOVE,
    IOCTL_SELECT, IOCTL_SKIP_BAD_RECORD, IOCTL_STATUS, MAX_DEVICES, REMOVE_FORCE, STATUS_BYTES,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::status::{self, BadRecordJson, CrashKernel, FenceJson};
use crate::units::human;
use crate::{sys, Code, Error};

/// The control device.
pub const DEFAULT_CONTROL: &str = "/dev/rapilog-ctl";

/// The device rapilog creates.
pub const DEFAULT_DEVICE: &str = "rapilog0";

/// How often `flush` polls the status while it waits.
const POLL: Duration = Duration::from_millis(100);

/// Bytes per `read()` of the region (the driver copies at most 256 KiB).
const READ_CHUNK: usize = 256 << 10;

/// Which device, and where to find the system's view of it.
#[derive(Debug, Clone)]
pub struct Target {
    /// The command, for messages (`status`, `flush`, ...).
    pub command: &'static str,
    /// sysfs mount point.
    pub sysfs: PathBuf,
    /// The control device.
    pub control: PathBuf,
    /// The rapilog device as given (`rapilog0` or `/dev/rapilog0`), or `None`.
    pub dev: Option<String>,
}

/// A device as given: an index `3` becomes `rapilog3`; a name (`rapilog3`,
/// `/dev/rapilog3`) stays as given, for messages.
pub fn normalize_device(dev: &str) -> String {
    if !dev.is_empty() && dev.bytes().all(|b| b.is_ascii_digit()) {
        format!("rapilog{dev}")
    } else {
        dev.to_string()
    }
}

/// The index of a device named `rapilog<N>`.
pub fn device_index(name: &str) -> Option<u32> {
    name.strip_prefix("rapilog")?.parse().ok()
}

impl Target {
    /// The device's name (`rapilog0`).
    pub fn device_name(&self) -> &str {
        let dev = self.dev.as_deref().unwrap_or(DEFAULT_DEVICE);
        dev.rsplit('/').next().unwrap_or(dev)
    }

    /// The same target for another device.
    pub fn for_device(&self, name: &str) -> Self {
        Self {
            dev: Some(name.to_string()),
            ..self.clone()
        }
    }

    /// The devices the module runs, `rapilog0` first (exit 7 if it is not
    /// loaded). A module that predates several devices answers the list
    /// ioctl with ENOTTY: it has `rapilog0` alone.
    pub fn devices(&self) -> Result<Vec<String>, Error> {
        self.for_device(DEFAULT_DEVICE).check_module()?;
        let file = self.open_control()?;
        let mut bits = [0u8; 8];
        let bitmap = match sys::ioctl(&file, IOCTL_LIST, Some(&mut bits)) {
            Ok(_) => u64::from_ne_bytes(bits),
            Err(e) if e.raw_os_error() == Some(libc::ENOTTY) => 1,
            Err(e) => {
                return Err(self.err(
                    Code::Failed,
                    format!("list ioctl on {}: {e}", self.control.display()),
                ))
            }
        };
        Ok((0..MAX_DEVICES)
            .filter(|i| bitmap & (1 << i) != 0)
            .map(|i| format!("rapilog{i}"))
            .collect())
    }

    fn check_module(&self) -> Result<(), Error> {
        let module = self.sysfs.join("module/rapilog");
        if !module.exists() {
            return Err(self.err(
                Code::NoDevice,
                format!(
                    "the rapilog module is not loaded (no {}); load it with \
                     `modprobe rapilog region=SIZE@PHYS backing=DISK` (see `rapilogctl plan`)",
                    module.display()
                ),
            ));
        }
        Ok(())
    }

    fn err(&self, code: Code, message: impl std::fmt::Display) -> Error {
        Error::new(code, format!("{}: {message}", self.command))
    }

    /// Exit 7 unless the module is loaded and the device exists.
    pub fn check_device(&self) -> Result<(), Error> {
        self.check_module()?;
        let block = self.sysfs.join("block").join(self.device_name());
        if !block.exists() {
            return Err(self.err(
                Code::NoDevice,
                format!(
                    "no such rapilog device {} (no {})",
                    self.dev.as_deref().unwrap_or(DEFAULT_DEVICE),
                    block.display()
                ),
            ));
        }
        Ok(())
    }

    /// Checks the device, opens the control device read-only and selects
    /// the device on it.
    pub fn open(&self) -> Result<Control, Error> {
        self.check_device()?;
        let file = self.open_control()?;
        let index = device_index(self.device_name());
        let mut arg = index.unwrap_or(0).to_ne_bytes();
        match sys::ioctl(&file, IOCTL_SELECT, Some(&mut arg)) {
            Ok(_) => {}
            // A module that predates several devices: rapilog0 alone.
            Err(e) if e.raw_os_error() == Some(libc::ENOTTY) && index == Some(0) => {}
            Err(e) => {
                return Err(self.err(
                    Code::NoDevice,
                    format!(
                        "no such rapilog device {} ({} refuses to select it: {e})",
                        self.device_name(),
                        self.control.display()
                    ),
                ))
            }
        }
        Ok(Control {
            target: self.clone(),
            file,
        })
    }

    fn open_control(&self) -> Result<File, Error> {
        File::open(&self.control).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => self.err(
                Code::Unsupported,
                format!(
                    "the control interface is missing: no {} although the module is loaded \
                     (a rapilog.ko older than rapilogctl?)",
                    self.control.display()
                ),
            ),
            io::ErrorKind::PermissionDenied => self.err(
                Code::NotRoot,
                format!("cannot open {}: {e} (run as root)", self.control.display()),
            ),
            _ => self.err(
                Code::Failed,
                format!("cannot open {}: {e}", self.control.display()),
            ),
        })
    }

    /// Whether a crash kernel is loaded.
    pub fn crash_kernel(&self) -> CrashKernel {
        let text = std::fs::read_to_string(self.sysfs.join("kernel/kexec_crash_loaded")).ok();
        CrashKernel::from_sysfs(text.as_deref())
    }
}

/// An open control device.
#[derive(Debug)]
pub struct Control {
    target: Target,
    file: File,
}

fn is_permission(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES))
}

fn is_interrupt(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EINTR)
}

impl Control {
    fn err(&self, code: Code, message: impl std::fmt::Display) -> Error {
        self.target.err(code, message)
    }

    fn control(&self) -> String {
        self.target.control.display().to_string()
    }

    /// The status block, decoded.
    pub fn status(&self) -> Result<Status, Error> {
        let mut block = [0u8; STATUS_BYTES];
        sys::ioctl(&self.file, IOCTL_STATUS, Some(&mut block)).map_err(|e| {
            match e.raw_os_error() {
                Some(libc::ENOTTY) | Some(libc::EINVAL) => self.err(
                    Code::Unsupported,
                    format!(
                    "{} does not answer the status ioctl ({e}): a control interface of another \
                     version; use the rapilogctl built with the loaded rapilog.ko",
                    self.control()
                ),
                ),
                _ if is_permission(&e) => self.err(
                    Code::NotRoot,
                    format!(
                        "the status of {} needs root (CAP_SYS_ADMIN): it shows the region's \
                         physical address and superblock ({e})",
                        self.control()
                    ),
                ),
                _ => self.err(
                    Code::Failed,
                    format!("status ioctl on {}: {e}", self.control()),
                ),
            }
        })?;
        Status::decode(&block)
            .map_err(|e| self.err(Code::Unsupported, format!("{}: {e}", self.control())))
    }

    fn admin_error(&self, what: &str, e: &io::Error) -> Error {
        if is_permission(e) {
            self.err(
                Code::NotRoot,
                format!("{what} needs root (CAP_SYS_ADMIN): {e}"),
            )
        } else {
            self.err(Code::Failed, format!("{what}: {e}"))
        }
    }
}

/// `rapilogctl status` without a device: every device's report,
/// `rapilog0` first.
pub fn status_all(target: &Target) -> Result<Vec<status::Report>, Error> {
    target
        .devices()?
        .iter()
        .map(|name| status(&target.for_device(name)))
        .collect()
}

/// `rapilogctl status` of one device.
pub fn status(target: &Target) -> Result<status::Report, Error> {
    let control = target.open()?;
    let s = control.status()?;
    Ok(status::report(
        &s,
        target.device_name(),
        &control.control(),
        target.crash_kernel(),
    ))
}

/// A progress line on stderr (only used when stderr is a terminal).
struct Progress {
    on: bool,
    drawn: bool,
}

impl Progress {
    fn new(on: bool) -> Self {
        Self { on, drawn: false }
    }

    /// `label [#####-----] 45%  detail`.
    fn draw(&mut self, label: &str, fraction: f64, detail: &str) {
        if !self.on {
            return;
        }
        const WIDTH: usize = 30;
        let f = fraction.clamp(0.0, 1.0);
        let filled = (f * WIDTH as f64).round() as usize;
        let bar = format!("{}{}", "#".repeat(filled), "-".repeat(WIDTH - filled));
        let mut err = io::stderr().lock();
        let _ = write!(err, "\r{label} [{bar}] {:3.0}%  {detail}\x1b[K", f * 100.0);
        let _ = err.flush();
        self.drawn = true;
    }

    fn clear(&mut self) {
        if self.drawn {
            let mut err = io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
            self.drawn = false;
        }
    }
}

/// Whether progress goes to stderr.
pub fn progress_wanted() -> bool {
    io::stderr().is_terminal()
}

/// What `flush` did: the `rapilogctl.flush` document.
#[derive(Debug, Clone, Serialize)]
pub struct Flushed {
    /// `rapilogctl.flush`.
    pub schema: &'static str,
    /// 1.
    pub schema_version: u32,
    /// The rapilog device.
    pub device: String,
    /// Dirty bytes when the flush started.
    pub dirty_before: u64,
    /// Dirty bytes when it returned (writes issued meanwhile may add some).
    pub dirty_after: u64,
    /// Head when it started: everything before it is now durable on the disk.
    pub durable_through_seq: u64,
    /// Bytes writeback wrote while the flush ran.
    pub written_back_bytes: u64,
    /// Disk writes issued meanwhile.
    pub written_back_ios: u64,
    /// Records written back meanwhile.
    pub written_back_records: u64,
    /// Wall time of the drain.
    pub duration_us: u64,
    /// `written_back_bytes / duration` (null for a zero duration).
    pub bytes_per_s: Option<u64>,
    /// The superblock's durable tail afterwards (null if unreadable).
    pub durable_tail: Option<u64>,
}

impl Flushed {
    /// The final line.
    pub fn line(&self) -> String {
        format!(
            "flushed /dev/{}: {} written back in {} ({} records) in {}, {}; dirty {} -> {}; \
             durable through seq {}",
            self.device,
            human(self.written_back_bytes),
            if self.written_back_ios == 1 {
                "1 write".to_string()
            } else {
                format!("{} writes", self.written_back_ios)
            },
            self.written_back_records,
            status::duration_words(self.duration_us),
            status::rate_words(self.bytes_per_s),
            human(self.dirty_before),
            human(self.dirty_after),
            self.durable_through_seq.saturating_sub(1),
        )
    }
}

/// `rapilogctl flush`: the drain ioctl in a thread, the status polled
/// every 100 ms for the progress bar. SIGINT/SIGTERM stop the wait (exit
/// 130); the driver keeps writing back.
pub fn flush(target: &Target, progress: bool) -> Result<Flushed, Error> {
    let control = target.open()?;
    let before = control.status()?;
    sys::catch_interrupts()
        .map_err(|e| control.err(Code::Failed, format!("cannot catch SIGINT: {e}")))?;
    let drain_file = control
        .file
        .try_clone()
        .map_err(|e| control.err(Code::Failed, format!("dup: {e}")))?;
    let (tx, rx) = mpsc::channel();
    let started = Instant::now();
    std::thread::spawn(move || {
        let _ = tx.send(sys::ioctl(&drain_file, IOCTL_DRAIN, None));
    });
    let mut bar = Progress::new(progress);
    let result = loop {
        match rx.recv_timeout(POLL) {
            Ok(r) => break r,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                break Err(io::Error::other("the drain thread died"))
            }
        }
        if sys::interrupted() {
            break Err(io::Error::from_raw_os_error(libc::EINTR));
        }
        if let (true, Ok(now)) = (progress, control.status()) {
            let done = before.dirty_bytes.saturating_sub(now.dirty_bytes);
            let fraction = if before.dirty_bytes == 0 {
                1.0
            } else {
                done as f64 / before.dirty_bytes as f64
            };
            bar.draw(
                "flush",
                fraction,
                &format!(
                    "{} dirty left, {} written back",
                    human(now.dirty_bytes),
                    human(now.wb_bytes.saturating_sub(before.wb_bytes))
                ),
            );
        }
    };
    let elapsed = started.elapsed();
    bar.clear();
    let after = control.status();
    if let Err(e) = result {
        if is_interrupt(&e) {
            let left = after.map_or("some bytes".into(), |s| human(s.dirty_bytes));
            return Err(control.err(
                Code::Interrupted,
                format!(
                    "interrupted after {}: {left} still dirty; nothing is lost: the data stays \
                     in the protected region and writeback goes on in the background",
                    status::duration_words(elapsed.as_micros() as u64)
                ),
            ));
        }
        if e.raw_os_error() == Some(libc::ENODEV) {
            return Err(control.err(Code::Failed, "the module is unloading (ENODEV)"));
        }
        if e.raw_os_error() == Some(libc::EIO) {
            // The driver's answer when a record it had to write back
            // failed its check: everything else is on the disk.
            if let Some(b) = after.ok().as_ref().and_then(status::bad_record_json) {
                return Err(control.err(
                    Code::Failed,
                    format!(
                        "every record written before the flush is on the disk except bad record \
                         seq {} (sectors {}, {}): it failed its check in the region and is never \
                         written; writeback holds at it (`rapilogctl status`; \
                         `rapilogctl skip-bad-record {}` drops it)",
                        b.seq,
                        status::sector_range(b.sector, b.length),
                        b.reason.replace('_', " "),
                        b.seq
                    ),
                ));
            }
        }
        return Err(control.admin_error("drain", &e));
    }
    let after = after?;
    let us = elapsed.as_micros() as u64;
    let written = after.wb_bytes.saturating_sub(before.wb_bytes);
    Ok(Flushed {
        schema: "rapilogctl.flush",
        schema_version: 1,
        device: target.device_name().to_string(),
        dirty_before: before.dirty_bytes,
        dirty_after: after.dirty_bytes,
        durable_through_seq: before.next_seq,
        written_back_bytes: written,
        written_back_ios: after.wb_ios.saturating_sub(before.wb_ios),
        written_back_records: after.wb_records.saturating_sub(before.wb_records),
        duration_us: us,
        bytes_per_s: status::rate(written, us),
        durable_tail: after
            .decode_superblock(rapilog_format::SoftwareCrc32c)
            .ok()
            .map(|sb| sb.durable_tail),
    })
}

/// Reads the whole region through the control device (`read()` from
/// offset 0), handing each piece to `sink`. Returns the status it sized
/// the read from.
fn read_region(
    control: &Control,
    progress: bool,
    mut sink: impl FnMut(&[u8]) -> Result<(), Error>,
) -> Result<Status, Error> {
    let s = control.status()?;
    let total = s.region_bytes;
    let mut file = &control.file;
    let mut buf = vec![0u8; READ_CHUNK];
    let mut done = 0u64;
    let mut bar = Progress::new(progress);
    while done < total {
        let want = (total - done).min(READ_CHUNK as u64) as usize;
        let n = match file.read(&mut buf[..want]) {
            Ok(0) => {
                bar.clear();
                return Err(control.err(
                    Code::Failed,
                    format!(
                        "{} ended after {done} of {total} region bytes",
                        control.control()
                    ),
                ));
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                bar.clear();
                return Err(control.admin_error(
                    &format!("reading the region from {}", control.control()),
                    &e,
                ));
            }
        };
        sink(&buf[..n]).inspect_err(|_| bar.clear())?;
        done += n as u64;
        bar.draw(
            control.target.command,
            done as f64 / total as f64,
            &format!("{} of {}", human(done), human(total)),
        );
    }
    bar.clear();
    Ok(s)
}

/// What `dump` wrote: the `rapilogctl.dump` document.
#[derive(Debug, Clone, Serialize)]
pub struct Dumped {
    /// `rapilogctl.dump`.
    pub schema: &'static str,
    /// 1.
    pub schema_version: u32,
    /// The rapilog device.
    pub device: String,
    /// The file written.
    pub out: String,
    /// Bytes written (the region's size).
    pub bytes: u64,
    /// The region's physical address.
    pub region_phys: u64,
    /// SHA-256 of the file, as `sha256sum` prints it.
    pub sha256: String,
    /// Wall time.
    pub duration_us: u64,
}

impl Dumped {
    /// The final lines.
    pub fn lines(&self) -> String {
        format!(
            "dumped the region of /dev/{} ({} at {:#x}) to {}: {} bytes in {}\n\
             sha256 {}  {}\n\
             decode it with: rapilogctl inspect --image {}\n",
            self.device,
            human(self.bytes),
            self.region_phys,
            self.out,
            self.bytes,
            status::duration_words(self.duration_us),
            self.sha256,
            self.out,
            self.out
        )
    }
}

/// `rapilogctl dump --out FILE`: the live region into a new FILE
/// (overwritten only with `force`). A partial file is removed on failure.
pub fn dump(target: &Target, out: &Path, force: bool, progress: bool) -> Result<Dumped, Error> {
    target.check_device()?;
    if !force && out.exists() {
        return Err(target.err(
            Code::Usage,
            format!("{} exists; pass --force to overwrite it", out.display()),
        ));
    }
    let control = target.open()?;
    let started = Instant::now();
    let mut options = OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let file = options.open(out).map_err(|e| {
        Error::io(
            Code::Usage,
            &format!("{}: cannot create {}", target.command, out.display()),
            &e,
        )
    })?;
    let mut writer = io::BufWriter::with_capacity(READ_CHUNK, file);
    let mut hash = Sha256::new();
    let result = read_region(&control, progress, |piece| {
        hash.update(piece);
        writer
            .write_all(piece)
            .map_err(|e| control.err(Code::Failed, format!("writing {}: {e}", out.display())))
    })
    .and_then(|s| {
        writer
            .flush()
            .and_then(|()| writer.get_ref().sync_all())
            .map_err(|e| control.err(Code::Failed, format!("writing {}: {e}", out.display())))?;
        Ok(s)
    });
    let s = match result {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(out);
            return Err(e);
        }
    };
    Ok(Dumped {
        schema: "rapilogctl.dump",
        schema_version: 1,
        device: target.device_name().to_string(),
        out: out.display().to_string(),
        bytes: s.region_bytes,
        region_phys: s.region_phys,
        sha256: format!("{:x}", hash.finalize()),
        duration_us: started.elapsed().as_micros() as u64,
    })
}

/// `rapilogctl inspect --live`: the region's bytes, and where they came from.
pub fn snapshot(target: &Target, progress: bool) -> Result<(Vec<u8>, String), Error> {
    let control = target.open()?;
    let mut bytes = Vec::new();
    let s = read_region(&control, progress, |piece| {
        bytes.extend_from_slice(piece);
        Ok(())
    })?;
    let source = format!(
        "live /dev/{} via {} ({}@{:#x})",
        target.device_name(),
        control.control(),
        crate::units::kernel_size(s.region_bytes),
        s.region_phys
    );
    Ok((bytes, source))
}

/// The `rapilogctl.fence` document.
#[derive(Debug, Clone, Serialize)]
pub struct Fence {
    /// `rapilogctl.fence`.
    pub schema: &'static str,
    /// 1.
    pub schema_version: u32,
    /// The rapilog device.
    pub device: String,
    /// Whether the check was run now (`--check`), else the last one's result.
    pub checked_now: bool,
    /// The result.
    #[serde(flatten)]
    pub fence: FenceJson,
}

impl Fence {
    /// Exit code: 0 fenced, 1 otherwise.
    pub fn code(&self) -> Code {
        if self.fence.state == "fenced" {
            Code::Ok
        } else {
            Code::Failed
        }
    }

    /// Human output.
    pub fn lines(&self) -> String {
        let f = &self.fence;
        let when = if self.checked_now {
            "checked now"
        } else {
            "as last checked (at load, or by `fence --check`)"
        };
        let mut out = match f.state {
            "fenced" => format!(
                "IOMMU fence: fenced: an IOMMU translates the DMA of all {} PCI devices ({when}; policy {})\n",
                f.devices, f.policy
            ),
            "unfenced" => format!(
                "IOMMU fence: UNFENCED: {} of {} PCI devices can DMA into the region ({when}; policy {})\n",
                f.unfenced, f.devices, f.policy
            ),
            _ => format!("IOMMU fence: not checked (policy {})\n", f.policy),
        };
        for name in &f.unfenced_devices {
            out.push_str(&format!("  unfenced: PCI {name}\n"));
        }
        if f.state == "unfenced" {
            out.push_str(
                "  fix: boot with the IOMMU translating (intel_iommu=on or amd_iommu=on, iommu.passthrough=0)\n",
            );
        }
        out
    }
}

/// `rapilogctl fence [--check]`.
pub fn fence(target: &Target, check: bool) -> Result<Fence, Error> {
    let control = target.open()?;
    if check {
        sys::ioctl(&control.file, IOCTL_CHECK_FENCE, None)
            .map_err(|e| control.admin_error("the fence check", &e))?;
    }
    let s = control.status()?;
    Ok(Fence {
        schema: "rapilogctl.fence",
        schema_version: 1,
        device: target.device_name().to_string(),
        checked_now: check,
        fence: status::fence_json(&s),
    })
}

/// What `skip-bad-record` did: the `rapilogctl.skip-bad-record` document.
#[derive(Debug, Clone, Serialize)]
pub struct SkippedRecord {
    /// `rapilogctl.skip-bad-record`.
    pub schema: &'static str,
    /// 1.
    pub schema_version: u32,
    /// The rapilog device.
    pub device: String,
    /// The record dropped, as the status showed it before.
    pub skipped: BadRecordJson,
    /// The bad record writeback holds at now (null: none, writeback goes on).
    pub now_held: Option<BadRecordJson>,
}

impl SkippedRecord {
    /// Human output.
    pub fn lines(&self) -> String {
        let k = &self.skipped;
        let mut out = format!(
            "skipped bad record seq {} of /dev/{} (sectors {}, {}): dropped without being written; \
             its sectors keep what the log disk and newer records hold\n",
            k.seq,
            self.device,
            status::sector_range(k.sector, k.length),
            human(u64::from(k.length))
        );
        match &self.now_held {
            None => out.push_str("writeback continues\n"),
            Some(n) => out.push_str(&format!(
                "writeback now holds at the next bad record, seq {} (sectors {}, {}): \
                 `rapilogctl status`, then `rapilogctl skip-bad-record {}` if it must go too\n",
                n.seq,
                status::sector_range(n.sector, n.length),
                n.reason.replace('_', " "),
                n.seq
            )),
        }
        out
    }
}

/// `rapilogctl skip-bad-record SEQ`: refuses unless writeback holds at bad
/// record `seq` (so nothing is dropped by a typo or an old status), then
/// asks the driver to drop it (`IOCTL_SKIP_BAD_RECORD`, which checks the
/// number again) and reports what is held afterwards.
pub fn skip_bad_record(target: &Target, seq: u64) -> Result<SkippedRecord, Error> {
    let control = target.open()?;
    let before = control.status()?;
    let Some(held) = status::bad_record_json(&before) else {
        return Err(control.err(
            Code::Failed,
            format!(
                "refusing: writeback holds at no bad record, so there is nothing to skip \
                 ({} failed the check since load, {} skipped)",
                before.bad_records, before.bad_skipped
            ),
        ));
    };
    if held.seq != seq {
        return Err(control.err(
            Code::Failed,
            format!(
                "refusing: writeback holds at bad record seq {}, not {seq} (`rapilogctl status` \
                 names it)",
                held.seq
            ),
        ));
    }
    let mut arg = seq.to_ne_bytes();
    sys::ioctl(&control.file, IOCTL_SKIP_BAD_RECORD, Some(&mut arg)).map_err(|e| {
        match e.raw_os_error() {
            Some(libc::ENOENT) => control.err(
                Code::Failed,
                format!("refusing: bad record seq {seq} is no longer held"),
            ),
            Some(libc::ESTALE) => control.err(
                Code::Failed,
                format!("refusing: writeback now holds at another bad record than seq {seq}"),
            ),
            Some(libc::ENOTTY) => control.err(
                Code::Unsupported,
                format!("{} has no skip ioctl (another version)", control.control()),
            ),
            Some(libc::EINTR) => control.err(
                Code::Interrupted,
                "interrupted before writeback took the request; nothing was skipped",
            ),
            _ => control.admin_error("skipping the bad record", &e),
        }
    })?;
    let after = control.status()?;
    Ok(SkippedRecord {
        schema: "rapilogctl.skip-bad-record",
        schema_version: 1,
        device: target.device_name().to_string(),
        skipped: held,
        now_held: status::bad_record_json(&after),
    })
}

/// What `create` and `remove` did: the `rapilogctl.create` and
/// `rapilogctl.remove` documents.
#[derive(Debug, Clone, Serialize)]
pub struct Managed {
    /// `rapilogctl.create` or `rapilogctl.remove`.
    pub schema: &'static str,
    /// 1.
    pub schema_version: u32,
    /// The device created or removed (`rapilog1`).
    pub device: String,
    /// Its region, `SIZE@PHYS` as given (create) or null.
    pub region: Option<String>,
    /// Its log disk as given (create) or null.
    pub backing: Option<String>,
}

impl Managed {
    /// The line to print.
    pub fn line(&self) -> String {
        match (&self.region, &self.backing) {
            (Some(region), Some(backing)) => format!(
                "created /dev/{}: region={region} backing={backing}",
                self.device
            ),
            _ => format!(
                "removed /dev/{}: every acknowledged write drained to its log disk",
                self.device
            ),
        }
    }
}

/// `rapilogctl create`: a device at the lowest free index, from its
/// parameters as the module takes them for one device.
pub fn create(
    target: &Target,
    region: &str,
    backing: &str,
    disk_id: Option<&str>,
) -> Result<Managed, Error> {
    let usage = |what: String| target.err(Code::Usage, what);
    for (name, value) in [("--region", region), ("--backing", backing)]
        .into_iter()
        .chain(disk_id.map(|id| ("--disk-id", id)))
    {
        if value.is_empty() || value.contains(|c: char| c.is_whitespace() || c == ',') {
            return Err(usage(format!(
                "{name} {value:?}: expected one value without spaces or commas"
            )));
        }
    }
    let mut text = format!("region={region} backing={backing}");
    if let Some(id) = disk_id {
        text.push_str(&format!(" disk_id={id}"));
    }
    let mut arg = [0u8; CREATE_BYTES];
    if text.len() >= arg.len() {
        return Err(usage(format!(
            "the parameters are {} bytes, the driver takes at most {}",
            text.len(),
            arg.len() - 1
        )));
    }
    arg[..text.len()].copy_from_slice(text.as_bytes());
    target.for_device(DEFAULT_DEVICE).check_module()?;
    let file = target.open_control()?;
    sys::ioctl(&file, IOCTL_CREATE, Some(&mut arg)).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOTTY) => target.err(
            Code::Unsupported,
            format!(
                "{} has no create ioctl: a rapilog.ko older than rapilogctl",
                target.control.display()
            ),
        ),
        Some(libc::ENOSPC) => target.err(
            Code::Failed,
            format!(
                "refused: every device index (rapilog0 to rapilog{}) is taken",
                MAX_DEVICES - 1
            ),
        ),
        _ if is_permission(&e) => target.err(
            Code::NotRoot,
            format!("create needs root (CAP_SYS_ADMIN): {e}"),
        ),
        _ => target.err(
            Code::Failed,
            format!(
                "the driver refused {text:?} ({e}); the kernel log names the reason \
                 (`dmesg | grep rapilog`)"
            ),
        ),
    })?;
    // The new device is selected on this file: its status names it.
    let control = Control {
        target: target.clone(),
        file,
    };
    let s = control.status()?;
    Ok(Managed {
        schema: "rapilogctl.create",
        schema_version: 1,
        device: format!("rapilog{}", s.device_index),
        region: Some(region.to_string()),
        backing: Some(backing.to_string()),
    })
}

/// `rapilogctl remove DEV [--force]`: drains the device and removes it.
pub fn remove(target: &Target, force: bool) -> Result<Managed, Error> {
    target.check_device()?;
    let name = target.device_name().to_string();
    let Some(index) = device_index(&name) else {
        return Err(target.err(Code::NoDevice, format!("no such rapilog device {name}")));
    };
    let file = target.open_control()?;
    let mut arg = (u64::from(index) | if force { REMOVE_FORCE } else { 0 }).to_ne_bytes();
    sys::ioctl(&file, IOCTL_REMOVE, Some(&mut arg)).map_err(|e| match e.raw_os_error() {
        Some(libc::EBUSY) => target.err(
            Code::Failed,
            format!(
                "refusing: /dev/{name} is open (mounted, or held by a program); close it, or \
                 --force (its acknowledged writes are drained either way; I/O through the open \
                 device fails afterwards)"
            ),
        ),
        Some(libc::ENODEV) => target.err(Code::NoDevice, format!("no such rapilog device {name}")),
        Some(libc::ENOTTY) => target.err(
            Code::Unsupported,
            format!(
                "{} has no remove ioctl: a rapilog.ko older than rapilogctl",
                target.control.display()
            ),
        ),
        _ if is_permission(&e) => target.err(
            Code::NotRoot,
            format!("remove needs root (CAP_SYS_ADMIN): {e}"),
        ),
        _ => target.err(
            Code::Failed,
            format!("remove ioctl on {}: {e}", target.control.display()),
        ),
    })?;
    Ok(Managed {
        schema: "rapilogctl.remove",
        schema_version: 1,
        device: name.rsplit('/').next().unwrap_or(&name).to_string(),
        region: None,
        backing: None,
    })
}
