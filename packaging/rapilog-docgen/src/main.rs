// SPDX-License-Identifier: GPL-2.0

//! `rapilog-docgen OUT_DIR`: rapilogctl's man pages and shell completions,
//! generated at package build time (debian/rules) from the clap definition
//! the binary itself parses with, so they cannot drift from `--help`.
//!
//! Writes `OUT_DIR/man/rapilogctl.8` and one `rapilogctl-COMMAND.8` per
//! command, and `OUT_DIR/completions/{rapilogctl.bash,_rapilogctl,rapilogctl.fish}`.
//! The date on the pages is `SOURCE_DATE_EPOCH`'s (set by dpkg-buildpackage
//! from debian/changelog), so a rebuild is byte-identical.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

// rapilogctl's main.rs as a module: its `Cli` is the command line. Its
// `main` and run functions are unused here.
#[allow(dead_code)]
#[path = "../../../userspace-ctl/src/main.rs"]
mod rapilogctl_main;

/// `YYYY-MM-DD` of a Unix time (UTC), for the pages' footer.
fn civil_date(epoch: u64) -> String {
    // Howard Hinnant's days-to-civil algorithm.
    let z = (epoch / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn pages(
    cmd: &clap::Command,
    dir: &Path,
    date: &str,
    out: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        pages(sub, dir, date, out)?;
    }
    let man = clap_mangen::Man::new(cmd.clone())
        .section("8")
        .manual("rapilog")
        .source(format!("rapilog {}", env!("CARGO_PKG_VERSION")))
        .date(date);
    out.push(man.generate_to(dir)?);
    Ok(())
}

fn generate(out_dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut cmd = rapilogctl_main::Cli::command().disable_help_subcommand(true);
    cmd.build();
    let date = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or_else(String::new, civil_date);
    let man_dir = out_dir.join("man");
    let comp_dir = out_dir.join("completions");
    std::fs::create_dir_all(&man_dir)?;
    std::fs::create_dir_all(&comp_dir)?;
    let mut written = Vec::new();
    pages(&cmd, &man_dir, &date, &mut written)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        written.push(clap_complete::generate_to(
            shell,
            &mut cmd,
            "rapilogctl",
            &comp_dir,
        )?);
    }
    Ok(written)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, out_dir] = args.as_slice() else {
        eprintln!("usage: rapilog-docgen OUT_DIR");
        return ExitCode::from(2);
    };
    match generate(Path::new(out_dir)) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rapilog-docgen: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        assert_eq!(super::civil_date(0), "1970-01-01");
        assert_eq!(super::civil_date(1_796_515_200), "2026-12-06");
        assert_eq!(super::civil_date(951_782_400), "2000-02-29");
    }
}
