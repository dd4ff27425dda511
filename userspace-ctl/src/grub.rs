// SPDX-License-Identifier: GPL-2.0

//! `rapilogctl plan --apply [--root DIR]` and `--grub-dropin PATH`: the
//! plan's boot parameters written the Debian way, as a GRUB drop-in
//! (`/etc/default/grub.d/rapilog.cfg`), which `update-grub` reads after
//! `/etc/default/grub`.
//!
//! # Escaping: two parsers between this file and the kernel
//!
//! A kernel parameter such as `memmap=64M$0x60000000` goes through two
//! parsers before the kernel sees it, and each needs its own escaping:
//!
//! 1. **The shell.** `grub-mkconfig` (`/usr/sbin/grub-mkconfig` of
//!    trixie's grub2-common 2.12-9+deb13u4, lines 161-167) sources
//!    `/etc/default/grub` and then every `/etc/default/grub.d/*.cfg` with
//!    `/bin/sh` (`. "${x}"`), and exports `GRUB_CMDLINE_LINUX_DEFAULT` to
//!    the `/etc/grub.d/*` scripts. We write the value in double quotes, where
//!    `\`, `$`, `"` and `` ` `` keep a special meaning and are escaped with a
//!    backslash (POSIX, "Double-Quotes"); `$GRUB_CMDLINE_LINUX_DEFAULT` stays
//!    unescaped so the value extends the one `/etc/default/grub` set.
//! 2. **GRUB's own script parser.** `/etc/grub.d/10_linux` (grub-common
//!    2.12-9+deb13u4: `linux_entry` gets `"${GRUB_CMDLINE_LINUX}
//!    ${GRUB_CMDLINE_LINUX_DEFAULT}"` as `args`, line 384) writes the value
//!    into `grub.cfg` unchanged: it expands it inside an unquoted
//!    here-document piped through `sed "s/^/$submenu_indentation/"` (line
//!    186: `linux ${rel_dirname}/${basename} root=... ro ${args}`), and the
//!    shell does not rescan the result of a parameter expansion for
//!    backslashes or `$`. (Recovery entries get `GRUB_CMDLINE_LINUX` only,
//!    so they boot without the region, like any recovery boot.)
//!
//!    GRUB then parses that `linux` line with its own lexer
//!    (grub-core/script/yylex.l): outside quotes `$` starts a variable
//!    reference, and `$0x60000000` is the positional parameter `$0`,
//!    replaced by its value (normally nothing), followed by `x60000000`:
//!    the kernel would get `memmap=64Mx60000000`. A backslash escapes the next character: the
//!    lexer keeps `\$` as text, and grub_script_arglist_to_argv
//!    (grub-core/script/execute.c) removes the backslash
//!    (`wildcard_unescape`) before `linux` gets its arguments. The
//!    characters the lexer treats specially outside quotes (blanks,
//!    `{ } | & $ ; < >`, quotes and `\`) are all escaped that way here.
//!
//! So `memmap=64M$0x60000000` must be `memmap=64M\$0x60000000` in
//! `grub.cfg` (layer 2), hence `memmap=64M\\\$0x60000000` inside the double
//! quotes of the drop-in (layer 1 turns `\\` into `\` and `\$` into `$`).
//! [`crate::plan::grub_escape`] is the same rule for `$` alone.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Code, Error};

/// Where `--apply` writes, relative to `--root`.
pub const DROPIN: &str = "etc/default/grub.d/rapilog.cfg";

/// Escape a kernel parameter for `grub.cfg` (layer 2 above): a backslash
/// before every character GRUB's script lexer gives a meaning outside quotes.
pub fn grub_cfg_escape(param: &str) -> String {
    let mut out = String::with_capacity(param.len() + 4);
    for c in param.chars() {
        if matches!(
            c,
            '\\' | '$' | '"' | '\'' | '{' | '}' | '|' | '&' | ';' | '<' | '>' | ' ' | '\t'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Escape text for the inside of a POSIX shell double-quoted string (layer 1).
pub fn sh_double_quote_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 4);
    for c in text.chars() {
        if matches!(c, '\\' | '$' | '"' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A parameter as it is written inside the drop-in's double quotes.
pub fn dropin_word(param: &str) -> String {
    sh_double_quote_escape(&grub_cfg_escape(param))
}

/// The drop-in for `params` (kernel command line form, e.g.
/// `memmap=64M$0x60000000`, `crashkernel=256M`).
pub fn dropin_text(params: &[String]) -> String {
    let words: Vec<String> = params.iter().map(|p| dropin_word(p)).collect();
    format!(
        "\
# /etc/default/grub.d/rapilog.cfg: rapilog's boot parameters, written by
# `rapilogctl plan --apply` (rewritten whole each time; edit the plan, not
# this file). Run update-grub after a change, then reboot.
#   {kernel}
# memmap=SIZE$PHYS reserves the region; crashkernel= the crash kernel's memory;
# panic= reboots a kernel that panicked without a crash kernel (warm: replayed at load).
# grub-mkconfig sources this file with /bin/sh: inside the double quotes
# \\\\\\$ is \\$ in grub.cfg, which GRUB's parser reads as a plain $.
GRUB_CMDLINE_LINUX_DEFAULT=\"$GRUB_CMDLINE_LINUX_DEFAULT {words}\"
",
        kernel = params.join(" "),
        words = words.join(" ")
    )
}

/// The parameters the drop-in carries: the whole set the next boot needs,
/// not only what the running command line lacks, so that `--apply` after
/// the reboot writes the same file (a reservation already on the command
/// line is kept as it is, as the plan keeps it; so is a `crashkernel=`).
/// A parameter that `/etc/default/grub` also sets then appears twice on
/// the command line, with the same value: harmless for both.
pub fn dropin_params(plan: &crate::plan::Plan, machine: &crate::plan::Machine) -> Vec<String> {
    let crashkernel = match &machine.cmdline.crashkernel {
        Some(c) => format!("crashkernel={c}"),
        None => plan.crashkernel.clone(),
    };
    // A rebooting `panic=` already there is kept (the plan keeps it too).
    let panic = match machine.cmdline.panic {
        Some(n) if n != 0 => format!("panic={n}"),
        _ => plan.panic.clone(),
    };
    vec![plan.memmap.clone(), crashkernel, panic]
}

/// What [`write_dropin`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// The file did not exist.
    Created(PathBuf),
    /// The file existed with other content and was replaced.
    Replaced(PathBuf),
    /// The file already had exactly this content: not touched.
    Unchanged(PathBuf),
}

impl Written {
    /// One line for the administrator.
    pub fn message(&self) -> String {
        match self {
            Written::Created(p) => format!("wrote {}; now run update-grub and reboot", p.display()),
            Written::Replaced(p) => {
                format!("rewrote {}; now run update-grub and reboot", p.display())
            }
            Written::Unchanged(p) => format!(
                "{} already has these parameters: nothing to do (update-grub if not run since)",
                p.display()
            ),
        }
    }
}

/// The path `--apply` writes under `root`.
pub fn apply_path(root: &Path) -> PathBuf {
    root.join(DROPIN)
}

/// Write the drop-in for `params` at `path`, creating its directory: only
/// if the content changes (so a second run is a no-op), through a temporary
/// file renamed over it (a crash leaves the old or the new file, never half).
pub fn write_dropin(path: &Path, params: &[String]) -> Result<Written, Error> {
    let text = dropin_text(params);
    let existed = match fs::read_to_string(path) {
        Ok(old) if old == text => return Ok(Written::Unchanged(path.to_path_buf())),
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(Error::io(Code::Failed, &path.display().to_string(), &e)),
    };
    let io =
        |what: &Path, e: std::io::Error| Error::io(Code::Failed, &what.display().to_string(), &e);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".rapilog-tmp");
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(io(path, e));
    }
    Ok(if existed {
        Written::Replaced(path.to_path_buf())
    } else {
        Written::Created(path.to_path_buf())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn escaping_of_memmap() {
        assert_eq!(
            grub_cfg_escape("memmap=64M$0x60000000"),
            r"memmap=64M\$0x60000000"
        );
        assert_eq!(
            dropin_word("memmap=64M$0x60000000"),
            r"memmap=64M\\\$0x60000000"
        );
        assert_eq!(dropin_word("crashkernel=256M"), "crashkernel=256M");
        // The rule plan.rs prints for /etc/default/grub is the same for `$`.
        assert_eq!(
            dropin_word("memmap=12M$0x40000000"),
            crate::plan::grub_escape("memmap=12M$0x40000000")
        );
        // Other GRUB metacharacters, and a backslash, survive both layers.
        assert_eq!(dropin_word(r"a;b\c"), r"a\\;b\\\\c");
    }

    /// The drop-in through the real shell, then GRUB's unescaping, gives
    /// the kernel exactly the parameters: what grub-mkconfig and GRUB do.
    #[test]
    fn through_sh_and_a_here_document_as_grub_mkconfig_does() {
        let dir = std::env::temp_dir().join(format!("rapilog-grub-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let params = vec![
            "memmap=64M$0x60000000".to_string(),
            "crashkernel=256M".to_string(),
        ];
        let path = dir.join("rapilog.cfg");
        write_dropin(&path, &params).unwrap();
        // 10_linux: `linux ... ro ${args}` in an unquoted here-document.
        let script = format!(
            "GRUB_CMDLINE_LINUX_DEFAULT='quiet'\n. '{}'\nargs=\"$GRUB_CMDLINE_LINUX_DEFAULT\"\n\
             cat <<EOF\n\tlinux\t/vmlinuz root=/dev/sda1 ro ${{args}}\nEOF\n",
            path.display()
        );
        let out = Command::new("/bin/sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let line = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            line,
            "\tlinux\t/vmlinuz root=/dev/sda1 ro quiet memmap=64M\\$0x60000000 crashkernel=256M\n"
        );
        // GRUB's parser: `\` quotes the next character.
        let mut kernel = String::new();
        let mut chars = line.trim().chars();
        while let Some(c) = chars.next() {
            kernel.push(if c == '\\' { chars.next().unwrap() } else { c });
        }
        assert!(
            kernel.ends_with(" ro quiet memmap=64M$0x60000000 crashkernel=256M"),
            "{kernel}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn idempotent_and_replacing() {
        let root = std::env::temp_dir().join(format!("rapilog-grub-root-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let path = apply_path(&root);
        let a = vec![
            "memmap=64M$0x60000000".to_string(),
            "crashkernel=256M".to_string(),
        ];
        assert_eq!(
            write_dropin(&path, &a).unwrap(),
            Written::Created(path.clone())
        );
        let first = fs::read_to_string(&path).unwrap();
        assert!(first.contains(
            "GRUB_CMDLINE_LINUX_DEFAULT=\"$GRUB_CMDLINE_LINUX_DEFAULT memmap=64M\\\\\\$0x60000000 crashkernel=256M\"\n"
        ));
        assert_eq!(
            write_dropin(&path, &a).unwrap(),
            Written::Unchanged(path.clone())
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), first);
        let b = vec![
            "memmap=128M$0x60000000".to_string(),
            "crashkernel=256M".to_string(),
        ];
        assert_eq!(
            write_dropin(&path, &b).unwrap(),
            Written::Replaced(path.clone())
        );
        let second = fs::read_to_string(&path).unwrap();
        assert!(second.contains("memmap=128M\\\\\\$0x60000000"));
        assert!(!second.contains("memmap=64M"));
        assert_eq!(second.matches("GRUB_CMDLINE_LINUX_DEFAULT=").count(), 1);
        assert!(!path.with_extension("cfg.rapilog-tmp").exists());
        fs::remove_dir_all(&root).unwrap();
    }
}
