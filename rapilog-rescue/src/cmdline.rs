// SPDX-License-Identifier: GPL-2.0

//! The kernel command line: splitting it the way the kernel does and picking
//! out the `rapilog.*` parameters the rescue program reads.
//!
//! | parameter | meaning |
//! |---|---|
//! | `rapilog.region=SIZE@PHYS` | a region (required; repeated for several, one per device, in order) |
//! | `rapilog.disk=ID` | the disk id a region must name ([`rapilog_replay::idtext`] form); optional; the k-th belongs to the k-th region, an empty one means none |
//! | `rapilog.dry_run=0\|1` | verify and report, write nothing (default 0) |
//! | `rapilog.reboot=0\|1` | reboot when done (default 1 in a crash kernel, see `Config::reboot_wanted`) |
//! | `rapilog.wait=SECONDS` | how long to wait for the disk to appear (default 30; one wait for every region together) |
//!
//! As for kernel parameters, `-` and `_` are the same in names, and the last
//! occurrence wins, except for `rapilog.region` and `rapilog.disk`: every
//! occurrence counts, in order, so that one command line names several
//! regions (`rapilog.region=A rapilog.disk=X rapilog.region=B rapilog.disk=Y`).
//! Pairing them is the configuration's job (`config.rs`).

use std::fmt;

/// Splits a command line into words as the kernel's `next_arg()` does:
/// whitespace separates words except inside double quotes, and the quotes
/// themselves are dropped (`a="b c"` is the word `a=b c`).
pub fn split(cmdline: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quoted = false;
    for c in cmdline.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// The `rapilog.*` parameters found on a command line, as text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RescueParams {
    /// Every `rapilog.region`, in order.
    pub regions: Vec<String>,
    /// Every `rapilog.disk`, in order (the k-th belongs to the k-th region).
    pub disks: Vec<String>,
    /// `rapilog.dry_run`.
    pub dry_run: Option<bool>,
    /// `rapilog.reboot`.
    pub reboot: Option<bool>,
    /// `rapilog.wait`.
    pub wait_secs: Option<u64>,
}

/// A `rapilog.*` parameter with a value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    /// The parameter, e.g. `rapilog.reboot`.
    pub name: String,
    /// Its value as given.
    pub value: String,
    /// What is expected.
    pub expected: &'static str,
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "kernel command line {}={:?}: expected {}",
            self.name, self.value, self.expected
        )
    }
}

impl std::error::Error for ParamError {}

/// Parses a boolean the way the kernel's `kstrtobool()` does (first
/// character: 1/y/Y/0/n/N, or on/off); an empty value means true.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "" | "1" | "y" | "yes" | "on" | "true" => Some(true),
        "0" | "n" | "no" | "off" | "false" => Some(false),
        _ => None,
    }
}

impl RescueParams {
    /// Extracts the `rapilog.*` parameters of `cmdline`. Other words are
    /// ignored, and so are `rapilog.*` names this program does not use
    /// (the module and the test initramfs have their own).
    pub fn parse(cmdline: &str) -> Result<Self, ParamError> {
        let mut params = Self::default();
        for word in split(cmdline) {
            let (name, value) = match word.split_once('=') {
                Some((n, v)) => (n, v),
                None => (word.as_str(), ""),
            };
            let Some(key) = name.strip_prefix("rapilog.") else {
                continue;
            };
            let error = |expected| ParamError {
                name: name.to_string(),
                value: value.to_string(),
                expected,
            };
            match key.replace('-', "_").as_str() {
                "region" => params.regions.push(value.to_string()),
                "disk" => params.disks.push(value.to_string()),
                "dry_run" => {
                    params.dry_run = Some(parse_bool(value).ok_or_else(|| error("0 or 1"))?)
                }
                "reboot" => params.reboot = Some(parse_bool(value).ok_or_else(|| error("0 or 1"))?),
                "wait" => {
                    params.wait_secs = Some(
                        value
                            .parse()
                            .map_err(|_| error("a number of seconds, e.g. 30"))?,
                    )
                }
                _ => {}
            }
        }
        Ok(params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_the_kernel() {
        assert_eq!(
            split("  console=ttyS0  a=\"b c\" \"d=e f\" g\n"),
            ["console=ttyS0", "a=b c", "d=e f", "g"]
        );
        assert_eq!(split(""), Vec::<String>::new());
        assert_eq!(split("x=\"\""), ["x="]);
    }

    #[test]
    fn picks_rapilog_parameters() {
        let p = RescueParams::parse(
            "BOOT_IMAGE=/vmlinuz console=ttyS0 nr_cpus=1 irqpoll reset_devices \
             elfcorehdr=0x7f000000 rapilog.region=64M@0x60000000 rapilog.disk=serial:rl-log \
             rapilog.dry-run=1 rapilog.reboot=0 rapilog.wait=5 rapilog.load=brd",
        )
        .unwrap();
        assert_eq!(
            p,
            RescueParams {
                regions: vec!["64M@0x60000000".into()],
                disks: vec!["serial:rl-log".into()],
                dry_run: Some(true),
                reboot: Some(false),
                wait_secs: Some(5),
            }
        );
        // Quoted values keep their spaces; the last of a flag wins.
        let p =
            RescueParams::parse("rapilog.disk=\"wwid:t10.ATA  X\" rapilog.reboot=0 rapilog.reboot")
                .unwrap();
        assert_eq!(p.disks, ["wwid:t10.ATA  X"]);
        assert_eq!(p.reboot, Some(true));
        assert_eq!(
            RescueParams::parse("quiet").unwrap(),
            RescueParams::default()
        );
    }

    #[test]
    fn regions_and_disks_accumulate_in_order() {
        let p = RescueParams::parse(
            "rapilog.region=64M@0x60000000 rapilog.disk=serial:a \
             rapilog.region=32M@0x64000000 rapilog.disk= \
             rapilog.region=16M@0x66000000 rapilog.disk=serial:c",
        )
        .unwrap();
        assert_eq!(
            p.regions,
            ["64M@0x60000000", "32M@0x64000000", "16M@0x66000000"]
        );
        assert_eq!(p.disks, ["serial:a", "", "serial:c"]);
    }

    #[test]
    fn refuses_bad_values() {
        let e = RescueParams::parse("rapilog.reboot=maybe").unwrap_err();
        assert_eq!(e.name, "rapilog.reboot");
        assert!(e.to_string().contains("expected 0 or 1"), "{e}");
        assert!(RescueParams::parse("rapilog.wait=-1").is_err());
        assert!(RescueParams::parse("rapilog.dry_run=2").is_err());
    }
}
