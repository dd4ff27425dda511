// SPDX-License-Identifier: GPL-2.0

//! `rapilog-rescue`: the program the kexec crash kernel runs. See the
//! library docs (and `rapilog_replay`'s for the replay) and README.md;
//! `--help` for options and exit codes.

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use rapilog_format::Replayer;
use rapilog_replay::Failure;
use rapilog_rescue::config::{Action, USAGE};
use rapilog_rescue::{all, parse_args, rescue, sys};

const PREFIX: &str = "rapilog-rescue:";

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{PREFIX} {line}");
    let _ = out.flush();
}

fn say_err(line: &str) {
    let _ = std::io::stdout().flush();
    eprintln!("{PREFIX} {line}");
}

fn fail(failure: &Failure) -> i32 {
    let code = failure.kind.exit_code();
    say_err(&format!("FAILED (exit {code}): {}", failure.message));
    code
}

fn main() -> ExitCode {
    let started = Instant::now();
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let config = match parse_args(&args, &mut |path| std::fs::read_to_string(path)) {
        Ok(c) => c,
        Err(f) => return ExitCode::from(fail(&f) as u8),
    };
    let code = match config.action {
        Action::Help => {
            println!("{USAGE}");
            0
        }
        Action::Version => {
            println!("rapilog-rescue {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Action::ListDisks => match rescue::list_disks(&config.sysfs) {
            Ok(lines) => {
                for l in lines {
                    println!("{l}");
                }
                0
            }
            Err(f) => fail(&f),
        },
        Action::Replay => {
            if config.dry_run {
                say("dry run: verifying only, nothing will be written");
            }
            match rescue::check_driver(&config) {
                Ok(()) => {
                    let deadline = rescue::wait_deadline(&config);
                    let results = all::run_each(
                        &config.regions,
                        &mut |region, log| {
                            let config = rescue::until(&config, deadline);
                            rescue::run(&config, region, Replayer::Rescue, log)
                        },
                        &mut say,
                        &mut say_err,
                    );
                    all::exit_code(&results)
                }
                Err(f) => fail(&f),
            }
        }
    };
    let in_crash_kernel = std::path::Path::new("/proc/vmcore").exists();
    if config.action == Action::Replay && config.reboot_wanted(in_crash_kernel) {
        let t = started.elapsed();
        say(&format!(
            "done in {}.{:03} s (exit {code}), rebooting",
            t.as_secs(),
            t.subsec_millis()
        ));
        sys::sync_all();
        sys::drain_console();
        let e = sys::reboot();
        eprintln!("{PREFIX} FAILED (exit {code}): reboot failed: {e}");
    } else if config.action == Action::Replay {
        let t = started.elapsed();
        say(&format!(
            "done in {}.{:03} s (exit {code})",
            t.as_secs(),
            t.subsec_millis()
        ));
    }
    ExitCode::from(code as u8)
}
