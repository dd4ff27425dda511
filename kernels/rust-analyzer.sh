#!/usr/bin/env bash
# Generate rapilog-blk/rust-project.json (git-ignored), which lets
# rust-analyzer follow the module into the kernel crate, and print its path.
#
#   kernels/rust-analyzer.sh KREL        in the build chroot (created if absent)
#   KDIR=... kernels/rust-analyzer.sh KREL
#                                        on a machine that runs the kernel:
#                                        against the source tree `make
#                                        host-rust-artifacts` prepared, or KDIR
#                                        itself if it is a configured source tree
#
# It is the kernel's own `make M=... rust-analyzer`. Debian's headers package
# lacks what that needs (rust/Makefile, scripts/generate_rust_analyzer.py,
# the kernel crate's sources), so in the chroot it runs against the source
# tree build-env.sh prepared the Rust artifacts with (same version, same
# .config). The file then names paths inside the chroot; they are rewritten
# to this machine's (/rapilog is this repository, every other absolute path
# is under the chroot's root), so an editor on the host can open them.
#
# rust-analyzer on the host then resolves the module and the kernel crate
# (go to definition, types). It cannot run the chroot's rustc or its
# proc-macro server (they need the chroot's libraries; it says so in its
# log), so the kernel's proc macros (module!, #[pin_data], #[vtable]) stay
# unexpanded unless the editor's rust-analyzer runs inside the chroot.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

[ $# -eq 1 ] || die "usage: $0 KREL"
krel=$1
module=$RAPILOG_TOP/rapilog-blk
out=$module/rust-project.json

if [ -n "${KDIR:-}" ]; then
	prep=$RAPILOG_CACHE/host-rust-artifacts
	if [ -e "$prep/source/scripts/generate_rust_analyzer.py" ]; then
		make -s -C "$prep/source" O="$prep/build" M="$module" rust-analyzer >&2
	elif [ -e "$KDIR/scripts/generate_rust_analyzer.py" ]; then
		make -s -C "$KDIR" M="$module" rust-analyzer >&2
	else
		die "neither $prep/source (run 'make host-rust-artifacts') nor $KDIR is a kernel source tree; rust-analyzer needs one, headers are not enough"
	fi
else
	load_kernel_env "$krel"
	root=$("$RAPILOG_TOP/kernels/build-env.sh" "$krel")
	prep=/usr/src/rapilog-prepare-$krel
	[ -e "$root$prep/source/scripts/generate_rust_analyzer.py" ] ||
		die "the build chroot has no prepared source tree at $root$prep (remove $RAPILOG_CACHE/kbuild/$krel/.stage-artifacts and run again)"
	run_in_chroot "$root" make -s -C "$prep/source" O="$prep/build" M=/rapilog/rapilog-blk rust-analyzer >&2
	python3 - "$out" "$root" "$RAPILOG_TOP" <<'EOF'
import json, sys

out, root, top = sys.argv[1:]


def host(path):
    if path == "/rapilog" or path.startswith("/rapilog/"):
        return top + path[len("/rapilog"):]
    return root + path if path.startswith("/") else path


with open(out) as f:
    project = json.load(f)
for key in ("sysroot", "sysroot_src"):
    if key in project:
        project[key] = host(project[key])
for crate in project["crates"]:
    for key in ("root_module", "proc_macro_dylib_path"):
        if key in crate:
            crate[key] = host(crate[key])
    for key, value in crate.get("env", {}).items():
        if value.startswith("/"):
            crate["env"][key] = host(value)
    for key in ("include_dirs", "exclude_dirs"):
        if key in crate.get("source", {}):
            crate["source"][key] = [host(p) for p in crate["source"][key]]
with open(out, "w") as f:
    json.dump(project, f, sort_keys=True, indent=4)
EOF
fi
[ -s "$out" ] || die "make rust-analyzer wrote no $out"
echo "$out"
