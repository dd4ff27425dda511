// SPDX-License-Identifier: GPL-2.0

//! Parser and replay planner on arbitrary bytes: never panics, never loops,
//! never yields a write outside the disk or with a bad payload. The checks
//! live in `fuzz_region`, shared with `tests/fuzz_corpus.rs`, which runs the
//! same entry point under plain `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rapilog_format::test_helpers::fuzz_region(data);
});
