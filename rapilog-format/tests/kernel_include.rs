// SPDX-License-Identifier: GPL-2.0

//! The kernel module compiles `src/lib.rs` as one of its own modules:
//! `#[path = "../rapilog-format/src/lib.rs"] mod format;` in a `#![no_std]`
//! crate. These tests build such a wrapper with rustc and the lint flags of
//! the kernel's `rust_common_flags`, so that a `crate::` path, a std-only API
//! or an undocumented item is caught here rather than in a kernel build.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Lints the kernel passes to every Rust object (Makefile `rust_common_flags`).
const KERNEL_LINTS: &[&str] = &[
    "-Dnon_ascii_idents",
    "-Dunsafe_op_in_unsafe_fn",
    "-Wmissing_docs",
    "-Wrust_2018_idioms",
    "-Wunreachable_pub",
];

fn lib_rs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")
}

/// Compiles a wrapper crate declaring the format module with `declaration`
/// and returns rustc's exit status and stderr.
fn compile_wrapper(name: &str, declaration: &str, extra: &[&str]) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!(
        "rapilog-kernel-include-{}-{name}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let wrapper = dir.join("wrapper.rs");
    let source = format!(
        "//! Stand-in for the kernel module crate.\n#![no_std]\n#[path = {:?}]\n{declaration}\n",
        lib_rs().display().to_string()
    );
    std::fs::write(&wrapper, source).unwrap();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let output = Command::new(rustc)
        .args([
            "--edition=2021",
            "--crate-type=lib",
            "--crate-name=kernel_wrapper",
            "--emit=metadata",
        ])
        .arg("--out-dir")
        .arg(&dir)
        .args(extra)
        .arg(&wrapper)
        .output()
        .expect("run rustc");
    let _ = std::fs::remove_dir_all(&dir);
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn kernel_flags() -> Vec<&'static str> {
    let mut flags = vec!["--cfg", "CONFIG_RUST", "--cfg", "MODULE", "-Dwarnings"];
    flags.extend_from_slice(KERNEL_LINTS);
    flags
}

#[test]
fn private_module_builds_warning_free_with_kernel_lints() {
    let (ok, stderr) = compile_wrapper("private", "mod format;", &kernel_flags());
    assert!(ok, "{stderr}");
}

#[test]
fn public_module_is_fully_documented() {
    // As `pub mod`, every item is reachable, so missing_docs checks them all.
    let (ok, stderr) = compile_wrapper("public", "pub mod format;", &kernel_flags());
    assert!(ok, "{stderr}");
}

#[test]
fn builds_as_a_module_without_kernel_cfg() {
    // Without CONFIG_RUST the `no_std` crate attribute stays (and rustc may
    // warn that it is ignored in a module); it must still compile.
    let (ok, stderr) = compile_wrapper("plain", "mod format;", &[]);
    assert!(ok, "{stderr}");
}
