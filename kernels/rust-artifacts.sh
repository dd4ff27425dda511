#!/usr/bin/env bash
# Regenerate the Rust build artifacts a stock Debian headers package lacks, and
# install them into that headers directory so out-of-tree Rust modules build.
#
#   kernels/rust-artifacts.sh HEADERS_DIR SOURCE_TARBALL WORK_DIR
#
# HEADERS_DIR     e.g. /usr/src/linux-headers-$(uname -r)  (Debian's, unmodified
#                 except for the files this script adds under rust/ and scripts/)
# SOURCE_TARBALL  e.g. /usr/src/linux-source-7.3.tar.xz (package linux-source-7.3,
#                 same version as the kernel)
# WORK_DIR        scratch directory for the unpacked source and the O= build
#
# Needs the exact rustc, rust-src and bindgen the kernel was built with (the
# kernel's .config names them: CONFIG_RUSTC_VERSION_TEXT, CONFIG_BINDGEN_VERSION_TEXT),
# the C compiler named by CONFIG_CC_VERSION_TEXT, and make bc bison flex
# libelf-dev libssl-dev python3. Used inside the build chroot by
# kernels/build-env.sh and directly by `make host-rust-artifacts` on a machine
# that runs the kernel itself.
set -euo pipefail

die() { echo "error: $*" >&2; exit 1; }
[ $# -eq 3 ] || die "usage: $0 HEADERS_DIR SOURCE_TARBALL WORK_DIR"
hdr=$1 tarball=$2 work=$3

[ -f "$hdr/.config" ] || die "$hdr/.config not found: is $hdr a kernel headers directory? (install linux-headers-\$(uname -r))"
[ -f "$tarball" ] || die "$tarball not found: install the linux-source package matching the kernel version"

config() { sed -n "s/^$1=\"\\(.*\\)\"\$/\\1/p" "$hdr/.config"; }

want_rustc=$(config CONFIG_RUSTC_VERSION_TEXT)
[ -n "$want_rustc" ] || die "$hdr/.config has no CONFIG_RUSTC_VERSION_TEXT: this kernel was built without CONFIG_RUST and cannot load Rust modules"
have_rustc=$(rustc --version 2>/dev/null || echo "no rustc in PATH")
[ "$want_rustc" = "$have_rustc" ] ||
	die "rustc mismatch: the kernel was built with '$want_rustc' but PATH has '$have_rustc' (install that exact rustc and rust-src)"
want_bindgen=$(config CONFIG_BINDGEN_VERSION_TEXT)
have_bindgen=$(bindgen --version 2>/dev/null || echo "no bindgen in PATH")
[ -z "$want_bindgen" ] || [ "$want_bindgen" = "$have_bindgen" ] ||
	die "bindgen mismatch: the kernel was built with '$want_bindgen' but PATH has '$have_bindgen'"
# The kernel's C compiler, exactly as named (Debian uses the triplet driver).
cc=$(config CONFIG_CC_VERSION_TEXT | cut -d' ' -f1)
command -v "$cc" >/dev/null || die "the kernel was built with $cc, which is not installed"

src=$work/source prep=$work/build
rm -rf "$src" "$prep"
mkdir -p "$src" "$prep"
tar -xaf "$tarball" -C "$src" --strip-components=1
cp "$hdr/.config" "$prep/.config"
make -s -C "$src" O="$prep" CC="$cc" HOSTCC="$cc" olddefconfig
if ! cmp -s "$hdr/.config" "$prep/.config"; then
	diff "$hdr/.config" "$prep/.config" | head -n 20 >&2
	die "olddefconfig changed the stock .config: the source or compiler does not match the kernel"
fi
# Builds scripts/, objtool, resolve_btfids and rust/; no vmlinux.
make -s -C "$src" O="$prep" CC="$cc" HOSTCC="$cc" -j"$(nproc)" prepare

mkdir -p "$hdr/rust"
for f in libcore libcompiler_builtins libffi libbuild_error libpin_init \
	 libzerocopy libbindings libuapi libkernel; do
	if [ -e "$prep/rust/$f.rmeta" ]; then cp "$prep/rust/$f.rmeta" "$hdr/rust/"; fi
done
for f in libmacros libpin_init_internal libzerocopy_derive; do
	if [ -e "$prep/rust/$f.so" ]; then cp "$prep/rust/$f.so" "$hdr/rust/"; fi
done
# scripts/ in Debian's headers is a symlink into linux-kbuild.
cp "$prep/scripts/target.json" "$hdr/scripts/target.json"
[ -e "$hdr/rust/libkernel.rmeta" ] && [ -e "$hdr/rust/libmacros.so" ] ||
	die "make prepare did not produce rust/libkernel.rmeta and rust/libmacros.so"
echo "installed the Rust artifacts into $hdr"
