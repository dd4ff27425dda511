// SPDX-License-Identifier: GPL-2.0

//! What a replay did, as counted by the planner and kept in the superblock.

/// Why descriptor slots in the replay window were not applied.
///
/// Every slot of the window lands in exactly one bucket of [`ReplayReport`]:
/// applied, or one of these.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SkipCounts {
    /// All-zero slot: never written since the region was formatted.
    pub empty: u32,
    /// Descriptor checksum mismatch: a torn (unpublished) or corrupted
    /// descriptor. Expected for records in flight at the crash.
    pub bad_descriptor_checksum: u32,
    /// Checksum fine but the contents are impossible (bad magic, unknown
    /// flags, zero or unaligned length, payload outside the ring, seq in the
    /// wrong slot, misaligned for the disk's block size): a writer bug.
    pub malformed: u32,
    /// Written under another epoch (before the last format).
    pub wrong_epoch: u32,
    /// The slot still holds an older record, below the durable tail: it is
    /// already on the disk. Normal.
    pub stale: u32,
    /// Descriptor fine but the payload does not match its checksum: the
    /// payload was corrupted after publication.
    pub bad_payload_checksum: u32,
    /// The record would write past the end of the disk's data area (into
    /// the marker area, or past the end of the disk).
    pub beyond_disk: u32,
}

/// In words, for logs and reports: `3 empty, 1 torn or bad descriptor, ...`.
impl core::fmt::Display for SkipCounts {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} empty, {} torn or bad descriptor, {} malformed, {} other epoch, {} stale, \
             {} bad payload, {} beyond disk",
            self.empty,
            self.bad_descriptor_checksum,
            self.malformed,
            self.wrong_epoch,
            self.stale,
            self.bad_payload_checksum,
            self.beyond_disk
        )
    }
}

impl SkipCounts {
    /// Skips that point at lost or damaged data, as opposed to slots that
    /// are simply empty, stale, or hold records that were never published.
    pub fn alarming(&self) -> u32 {
        self.malformed
            .saturating_add(self.bad_payload_checksum)
            .saturating_add(self.beyond_disk)
    }
}

/// Outcome of one replay, as counted by [`super::replay::ReplayPlan`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Records yielded for writing.
    pub records_applied: u32,
    /// Payload bytes yielded for writing.
    pub bytes_applied: u64,
    /// Slots not applied, by reason.
    pub skipped: SkipCounts,
}

/// Who ran a replay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Replayer {
    /// No replay recorded since the region was formatted.
    #[default]
    Never,
    /// The kernel module, at load after a warm reboot.
    Module,
    /// The rescue program in the kexec crash kernel.
    Rescue,
    /// The userspace tool, on an offline image or device.
    Tool,
}

impl Replayer {
    /// On-region code.
    pub const fn code(self) -> u32 {
        match self {
            Self::Never => 0,
            Self::Module => 1,
            Self::Rescue => 2,
            Self::Tool => 3,
        }
    }

    /// Decodes an on-region code; `None` for codes this version does not know.
    pub const fn from_code(code: u32) -> Option<Self> {
        match code {
            0 => Some(Self::Never),
            1 => Some(Self::Module),
            2 => Some(Self::Rescue),
            3 => Some(Self::Tool),
            _ => None,
        }
    }
}

/// The last replay, as kept in the superblock for operators.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LastReplay {
    /// Who replayed.
    pub replayer: Replayer,
    /// The durable tail the replay started from.
    pub from_seq: u64,
    /// Wall-clock end of the replay, seconds since the Unix epoch (0 if unknown).
    pub finished_at_unix_secs: u64,
    /// How long the replay took, writes and flush included, in microseconds.
    pub duration_us: u64,
    /// What it applied and skipped.
    pub report: ReplayReport,
}
