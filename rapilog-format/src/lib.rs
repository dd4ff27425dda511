// SPDX-License-Identifier: GPL-2.0

//! The rapilog on-region format: layout, encoders and decoders, writer-side
//! space accounting, the replay planner and the dirty-extent index.
//!
//! One source shared by the kernel module (which compiles this file as one
//! of its own modules), the crash-kernel rescue program and `rapilogctl`, so
//! the writer and the replayer cannot disagree. `FORMAT.md` beside this
//! crate describes the bytes; a test keeps it in step with the code.
//!
//! # Region
//!
//! Two superblock copies, a descriptor table (slot = `seq % slots`) and a
//! data ring of 512-byte-aligned payloads; see [`geometry`]. A record is a
//! payload in the ring plus a 64-byte [`Descriptor`] in its slot. Where the
//! region is in physical memory is given as `SIZE@PHYS`: [`region_spec`].
//!
//! # Publication protocol (writer)
//!
//! Described once, in `docs/design.md` ("The write protocol"). The API of
//! its steps: reserve with [`RingState::reserve`]; publish with
//! [`Reservation::descriptor`] then [`Descriptor::encode`]; index with
//! [`ExtentIndex::insert`].
//!
//! # Writeback protocol
//!
//! 0. Check every record of the batch ([`check_record`]): its descriptor
//!    in the table and its payload's CRC-32C. A record that fails is never
//!    written; the tail stops at it (FORMAT.md, "Writeback and space reuse").
//! 1. Write the batch's newest data to the disk: the dirty-extent index's
//!    extents whose record is in the batch, merged into runs
//!    ([`writeback_plan`]; older versions of a sector are never written),
//!    then flush (or FUA).
//! 2. Advance the durable tail: [`ActiveSuperblock::next_update`] with
//!    `durable_tail` = first sequence number not written back, encoded into
//!    the *other* copy with generation + 1.
//! 3. Only once that copy is completely written, free the space:
//!    [`RingState::release_through`] and [`ExtentIndex::retire_through`]
//!    (the index may be retired as soon as step 1 completes).
//!
//! # Recovery
//!
//! [`plan_replay`] loads the newer valid superblock copy, refuses a region
//! of another disk, and yields every valid record of the live window
//! `durable_tail .. durable_tail + slots` of the current epoch, in sequence
//! order, with its payload checksum verified. After applying and flushing
//! them, the replayer records the outcome with
//! [`ReplayPlan::replayed_superblock`]. Replaying again is harmless.
//! Records only ever target the disk's data area: a record reaching into
//! the marker area is skipped as beyond the disk.
//!
//! # Loss marker
//!
//! The last `max(4096, block)` bytes of the log disk ([`marker_area`]) hold
//! a [`DiskMarker`]: `Live` (a region may hold acknowledged records the disk
//! lacks) or `Clean`. The module writes `Live` with its new epoch before the
//! device goes live and `Clean` after a clean drain; the replayers write
//! `Clean` after a replay. At load, [`check_marker`] tells a warm reboot
//! (region still there: proceed) from a wiped region (possible loss).
//!
//! # Kernel build
//!
//! The kernel includes this file with
//! `#[path = "../rapilog-format/src/lib.rs"] mod format;` and builds with
//! `--cfg CONFIG_RUST`, under which the `no_std` attribute below (a crate
//! attribute, meaningless in a module) is left out and lints that only make
//! sense for a stand-alone crate are allowed. Paths between the files of
//! this crate are therefore `super::`, never `crate::`.

#![cfg_attr(not(any(test, CONFIG_RUST)), no_std)]
#![forbid(unsafe_code)]
// As a private module of the kernel crate, items and re-exports the module
// does not use would warn as dead or unused, and every `pub` as unreachable.
#![cfg_attr(CONFIG_RUST, allow(dead_code, unused_imports, unreachable_pub))]

pub mod control;
pub mod crc32c;
pub mod crc32c_test_vectors;
pub mod descriptor;
pub mod dirty_bound;
pub mod disk;
pub mod disk_marker;
pub mod extent_index;
pub mod field;
pub mod format_region;
pub mod geometry;
pub mod record_check;
pub mod region_spec;
pub mod replay;
pub mod replay_report;
pub mod ring;
pub mod superblock;
pub mod writeback_plan;

#[cfg(feature = "test-helpers")]
pub mod test_helpers;

pub use crc32c::{Crc32c, SoftwareCrc32c};
pub use descriptor::{Descriptor, DescriptorError};
pub use disk::{DiskId, DiskIdentity, DISK_ID_BYTES, SECTOR_BYTES};
pub use disk_marker::{
    check_marker, marker_area, DiskMarker, LossBrief, LossReason, MarkerArea, MarkerError,
    MarkerState, MarkerVerdict, MarkerWriter, RegionEvidence, MARKER_BYTES,
};
pub use extent_index::{Extent, ExtentIndex, IndexError, Lookup, Piece};
pub use format_region::{format_metadata, format_region, FormatError};
pub use geometry::{Geometry, GeometryError, DESCRIPTOR_BYTES, SUPERBLOCK_BYTES, UNIT_BYTES};
pub use record_check::{
    check_descriptor, check_record, ExpectedRecord, PublishedPayload, RecordFault,
};
pub use region_spec::{RegionSpec, RegionSpecError};
pub use replay::{plan_replay, ReplayPlan, ReplayRefusal, ReplayWrite};
pub use replay_report::{LastReplay, ReplayReport, Replayer, SkipCounts};
pub use ring::{ReleaseError, Reservation, ReserveError, RingGeometry, RingState};
pub use superblock::{
    generation_is_newer, ActiveSuperblock, LoadError, RegionState, Superblock, SuperblockCopy,
    SuperblockError, FORMAT_VERSION,
};
pub use writeback_plan::{
    batch_extents, is_whole_record, writes_in_flight, Run, Source, WritePlan,
};
