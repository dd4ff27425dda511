// SPDX-License-Identifier: GPL-2.0

//! `FORMAT.md` documents every field byte by byte; this test parses its
//! tables and compares them with the code's field tables, so neither can
//! change without the other.

use rapilog_format::control::{fields as status, STATUS_BYTES};
use rapilog_format::descriptor::fields as descriptor;
use rapilog_format::disk_marker::{fields as marker, MARKER_BYTES};
use rapilog_format::field::Field;
use rapilog_format::geometry::{DESCRIPTOR_BYTES, SUPERBLOCK_BYTES, SUPERBLOCK_OFFSETS};
use rapilog_format::superblock::fields as superblock;

const FORMAT_MD: &str = include_str!("../FORMAT.md");

/// Rows `(offset, size, name)` of the table after `<!-- fields: NAME -->`.
fn table(name: &str) -> Vec<(usize, usize, String)> {
    let marker = format!("<!-- fields: {name} -->");
    let start = FORMAT_MD
        .find(&marker)
        .unwrap_or_else(|| panic!("no table {name} in FORMAT.md"));
    FORMAT_MD[start + marker.len()..]
        .lines()
        .skip_while(|line| line.trim().is_empty())
        .take_while(|line| line.starts_with('|'))
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            // cells[0] is the empty string before the first '|'.
            let offset = cells.get(1)?.parse().ok()?;
            let size = cells.get(2)?.parse().ok()?;
            Some((offset, size, cells.get(3)?.to_string()))
        })
        .collect()
}

fn code_table(fields: &[Field]) -> Vec<(usize, usize, String)> {
    fields
        .iter()
        .map(|f| (f.offset, f.size, f.name.to_string()))
        .collect()
}

#[test]
fn superblock_table_matches_code() {
    assert_eq!(table("superblock"), code_table(superblock::ALL));
    let last = superblock::ALL.last().unwrap();
    assert_eq!(last.offset + last.size, SUPERBLOCK_BYTES);
}

#[test]
fn descriptor_table_matches_code() {
    assert_eq!(table("descriptor"), code_table(descriptor::ALL));
    let last = descriptor::ALL.last().unwrap();
    assert_eq!(last.offset + last.size, DESCRIPTOR_BYTES);
}

#[test]
fn region_table_matches_code() {
    let expected: Vec<_> = SUPERBLOCK_OFFSETS
        .iter()
        .enumerate()
        .map(|(i, &offset)| (offset, SUPERBLOCK_BYTES, format!("superblock_copy_{i}")))
        .collect();
    assert_eq!(table("region"), expected);
}

#[test]
fn parser_sees_every_row() {
    // Guard against the parser silently skipping rows (e.g. a typo in a number).
    let rows = |name: &str| {
        let marker = format!("<!-- fields: {name} -->");
        let start = FORMAT_MD.find(&marker).unwrap();
        FORMAT_MD[start + marker.len()..]
            .lines()
            .skip_while(|line| line.trim().is_empty())
            .take_while(|line| line.starts_with('|'))
            .count()
            - 2 // header and separator
    };
    assert_eq!(rows("superblock"), superblock::ALL.len());
    assert_eq!(rows("descriptor"), descriptor::ALL.len());
    assert_eq!(rows("region"), SUPERBLOCK_OFFSETS.len());
    assert_eq!(rows("marker"), marker::ALL.len());
    assert_eq!(rows("status"), status::ALL.len());
}

#[test]
fn marker_table_matches_code() {
    assert_eq!(table("marker"), code_table(marker::ALL));
    let last = marker::ALL.last().unwrap();
    assert_eq!(last.offset + last.size, MARKER_BYTES);
}

#[test]
fn status_table_matches_code() {
    assert_eq!(table("status"), code_table(status::ALL));
    let last = status::ALL.last().unwrap();
    assert_eq!(last.offset + last.size, STATUS_BYTES);
}
