// SPDX-License-Identifier: GPL-2.0

//! Every configured region, one after another (one per rapilog device).
//!
//! A region that fails (unreadable, its disk missing or refused, a write
//! error) does not stop the others: each region is independent (its own
//! superblock, its own disk), and the crash kernel is the last chance to
//! bring every other device's acknowledged writes to its disk before the
//! reboot. The exit status is the highest of the regions' (so any failure
//! shows, and a POSSIBLE LOSS, 9, above all), and the last line says how
//! many succeeded.
//!
//! With one region the output is exactly the single-region output it has
//! always been; with several, each region's lines follow a header naming
//! it, its report line ends in `index=K` (its place on the command line,
//! `/dev/rapilog<K>`'s when `rapilog-arm` built it), its failure line names
//! it, and a summary line closes the run.

use rapilog_replay::engine::{describe_outcome, report_fields, Failure, Outcome};
use rapilog_replay::idtext::IdText;

use crate::config::RegionConfig;

/// What became of one region.
#[derive(Debug)]
pub struct RegionResult {
    /// Its place in the configuration (0-based).
    pub index: usize,
    /// How the configuration named it (`SIZE@PHYS` or the image path).
    pub name: String,
    /// The replay, or why not.
    pub result: Result<Outcome, Failure>,
}

impl RegionResult {
    /// The exit code this region alone would have given.
    pub fn exit_code(&self) -> i32 {
        match &self.result {
            Ok(outcome) => outcome.exit_code(),
            Err(failure) => failure.kind.exit_code(),
        }
    }
}

/// What an exit code means, in a few words (for the summary line).
pub fn exit_meaning(code: i32) -> &'static str {
    match code {
        0 => "replayed",
        1 => "replayed, damaged records skipped",
        2 => "bad configuration",
        3 => "region refused",
        4 => "disk refused or not found",
        5 => "disk write or flush failed",
        6 => "replayed, report not recorded in the region",
        9 => "POSSIBLE LOSS",
        _ => "failed",
    }
}

/// The run's exit code: the highest of the regions' (0 for none).
pub fn exit_code(results: &[RegionResult]) -> i32 {
    results
        .iter()
        .map(RegionResult::exit_code)
        .max()
        .unwrap_or(0)
}

/// The last line of a run with several regions: how many succeeded, and
/// what became of each of the others.
pub fn summary_line(results: &[RegionResult]) -> String {
    let ok = results.iter().filter(|r| r.exit_code() == 0).count();
    let mut line = format!("{ok} of {} regions replayed cleanly", results.len());
    for r in results.iter().filter(|r| r.exit_code() != 0) {
        let code = r.exit_code();
        line.push_str(&format!(
            "; region {} ({}): exit {code}, {}",
            r.index,
            r.name,
            exit_meaning(code)
        ));
    }
    line
}

/// Replays one region, its progress lines going to the logger given.
pub type RunOne<'a> =
    dyn FnMut(&RegionConfig, &mut dyn FnMut(&str)) -> Result<Outcome, Failure> + 'a;

/// Replays every region in `regions` with `run_one`, printing each
/// region's outcome to `out` (progress and report lines) or `err` (its
/// failure line) as it finishes, so the console shows a region's result
/// before the next one waits for its disk.
pub fn run_each(
    regions: &[RegionConfig],
    run_one: &mut RunOne<'_>,
    out: &mut dyn FnMut(&str),
    err: &mut dyn FnMut(&str),
) -> Vec<RegionResult> {
    let several = regions.len() > 1;
    let mut results = Vec::with_capacity(regions.len());
    for (index, region) in regions.iter().enumerate() {
        let name = region.describe();
        if several {
            let disk = region.disk_id.map_or_else(
                || "the disk it names".to_string(),
                |id| format!("disk {}", IdText(id.as_bytes())),
            );
            out(&format!(
                "region {index} ({} of {}): {name}, {disk}",
                index + 1,
                regions.len()
            ));
        }
        let result = run_one(region, &mut *out);
        let tag = if several {
            format!(" index={index}")
        } else {
            String::new()
        };
        match &result {
            Ok(outcome) => {
                for line in describe_outcome(outcome) {
                    out(&line);
                }
                out(&format!("report {}{tag}", report_fields(outcome)));
            }
            Err(failure) => {
                let code = failure.kind.exit_code();
                if several {
                    err(&format!(
                        "FAILED (exit {code}): region {index} ({name}): {}",
                        failure.message
                    ));
                } else {
                    err(&format!("FAILED (exit {code}): {}", failure.message));
                }
            }
        }
        results.push(RegionResult {
            index,
            name,
            result,
        });
    }
    if several {
        out(&summary_line(&results));
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RegionSource;
    use rapilog_format::{DiskId, RegionSpec};
    use rapilog_replay::engine::FailureKind;
    use rapilog_replay::region::MemAccess;

    fn region(phys: u64, disk: Option<&str>) -> RegionConfig {
        RegionConfig {
            source: RegionSource::Memory {
                mem: "/dev/mem".into(),
                spec: RegionSpec {
                    size: 64 << 20,
                    phys,
                },
                access: MemAccess::Map,
            },
            disk_id: disk.and_then(|d| DiskId::new(d.as_bytes())),
        }
    }

    /// Runs `run_each` with each region failing as `fails` says (by index;
    /// the others fail with a `Region` failure too, since an `Outcome` needs
    /// a real replay: the successes are tests/cli.rs's), returning the
    /// regions run, the output lines and the error lines.
    fn run(
        regions: &[RegionConfig],
        kinds: &[FailureKind],
    ) -> (Vec<usize>, Vec<String>, Vec<String>, Vec<RegionResult>) {
        let mut called = Vec::new();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let results = run_each(
            regions,
            &mut |r, log| {
                let k = regions.iter().position(|x| x == r).unwrap();
                called.push(k);
                log(&format!("working on {k}"));
                Err(Failure::new(
                    kinds[k],
                    format!("trouble {k}; nothing written"),
                ))
            },
            &mut |l| out.push(l.to_string()),
            &mut |l| err.push(l.to_string()),
        );
        (called, out, err, results)
    }

    #[test]
    fn every_region_is_tried_whatever_the_others_did() {
        let regions = [
            region(0x6000_0000, Some("serial:a")),
            region(0x6400_0000, None),
            region(0x6800_0000, Some("serial:c")),
        ];
        let kinds = [FailureKind::Disk, FailureKind::Region, FailureKind::DiskIo];
        let (called, out, err, results) = run(&regions, &kinds);
        assert_eq!(called, [0, 1, 2]);
        assert_eq!(
            out,
            [
                "region 0 (1 of 3): 64M@0x60000000, disk serial:a",
                "working on 0",
                "region 1 (2 of 3): 64M@0x64000000, the disk it names",
                "working on 1",
                "region 2 (3 of 3): 64M@0x68000000, disk serial:c",
                "working on 2",
                "0 of 3 regions replayed cleanly; \
                 region 0 (64M@0x60000000): exit 4, disk refused or not found; \
                 region 1 (64M@0x64000000): exit 3, region refused; \
                 region 2 (64M@0x68000000): exit 5, disk write or flush failed",
            ]
        );
        assert_eq!(
            err,
            [
                "FAILED (exit 4): region 0 (64M@0x60000000): trouble 0; nothing written",
                "FAILED (exit 3): region 1 (64M@0x64000000): trouble 1; nothing written",
                "FAILED (exit 5): region 2 (64M@0x68000000): trouble 2; nothing written",
            ]
        );
        // The highest exit code: a disk write failure over a refusal.
        assert_eq!(exit_code(&results), 5);
    }

    #[test]
    fn one_region_prints_what_it_always_printed() {
        let (called, out, err, results) = run(&[region(0x6000_0000, None)], &[FailureKind::Disk]);
        assert_eq!(called, [0]);
        assert_eq!(out, ["working on 0"]);
        assert_eq!(err, ["FAILED (exit 4): trouble 0; nothing written"]);
        assert_eq!(exit_code(&results), 4);
        assert_eq!(exit_code(&[]), 0);
    }

    #[test]
    fn possible_loss_outranks_every_other_exit_code() {
        let regions = [region(0x6000_0000, None), region(0x6400_0000, None)];
        let (_, _, _, results) = run(&regions, &[FailureKind::PossibleLoss, FailureKind::Report]);
        assert_eq!(exit_code(&results), 9);
        assert!(summary_line(&results).contains("exit 9, POSSIBLE LOSS"));
    }
}
