// SPDX-License-Identifier: GPL-2.0

//! `rapilogctl arm | disarm`: runs `rapilog-arm arm|disarm`, the script the
//! systemd unit `rapilog-crash.service` runs, so that both load the crash
//! kernel with the same `kexec -p` arguments.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Code, Error};

/// Where Debian installs the script (kexec-tools-config/README.md).
pub const DEFAULT_SCRIPT: &str = "/usr/sbin/rapilog-arm";

/// One call of the script.
#[derive(Debug, Clone)]
pub struct Request {
    /// `arm`, `disarm`, `status` or `command`.
    pub action: &'static str,
    /// The script.
    pub script: PathBuf,
    /// Its configuration file (`-c`), if not the default.
    pub config: Option<PathBuf>,
}

/// The script's output and exit status.
#[derive(Debug, Clone)]
pub struct Ran {
    /// The command line run, for the report.
    pub command: String,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
    /// Its exit status (-1 if killed by a signal).
    pub status: i32,
}

/// Runs the script and maps its exit status: 0 done, 2 bad configuration,
/// anything else failed.
pub fn run(req: &Request) -> Result<Ran, Error> {
    let script: &Path = &req.script;
    if !script.exists() {
        return Err(Error::new(
            Code::Usage,
            format!(
                "{} not found: install kexec-tools-config/rapilog-arm there \
                 (see kexec-tools-config/README.md) or pass --arm-script PATH",
                script.display()
            ),
        ));
    }
    let mut cmd = Command::new(script);
    let mut shown = vec![script.display().to_string()];
    if let Some(config) = &req.config {
        cmd.arg("-c").arg(config);
        shown.push("-c".into());
        shown.push(config.display().to_string());
    }
    cmd.arg(req.action);
    shown.push(req.action.into());
    let out = cmd.output().map_err(|e| {
        Error::io(
            Code::Failed,
            &format!("cannot run {}", script.display()),
            &e,
        )
    })?;
    Ok(Ran {
        command: shown.join(" "),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        status: out.status.code().unwrap_or(-1),
    })
}

/// The exit code for the script's status.
pub fn code(status: i32) -> Code {
    match status {
        0 => Code::Ok,
        2 => Code::Usage,
        _ => Code::Failed,
    }
}
