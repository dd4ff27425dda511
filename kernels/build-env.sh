#!/usr/bin/env bash
# Create (once) the build environment for an out-of-tree Rust module against a
# stock Debian kernel, and print its root directory.
#
#   kernels/build-env.sh KREL
#
# Debian's linux-headers package ships Module.symvers with the kernel's Rust
# exports but not the Rust build artifacts (rust/*.rmeta, the proc-macro .so
# files, scripts/target.json) that an out-of-tree Rust module needs. We rebuild
# them exactly: a chroot of the kernel's own suite with the exact rustc, bindgen
# and gcc named by the kernel's .config, `make prepare` on the matching
# linux-source, then copy the artifacts into the stock headers directory.
# Nothing of the kernel itself is rebuilt; the module links against the stock
# Module.symvers (checked by tests/check-module.sh).
#
# Stages are stamped under .cache/kbuild/KREL/ so an interrupted run resumes.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

[ $# -eq 1 ] || die "usage: $0 KREL"
load_kernel_env "$1"
[ "$(id -u)" -eq 0 ] || die "building the kernel build chroot needs root (debootstrap, chroot)"

ENV_DIR=$RAPILOG_CACHE/kbuild/$KREL
ROOT=$ENV_DIR/root
HDR=/usr/src/linux-headers-$KREL
PREP=/usr/src/rapilog-prepare-$KREL
mkdir -p "$ENV_DIR"

stage_done() { [ -e "$ENV_DIR/.stage-$1" ]; }
stage_mark() { touch "$ENV_DIR/.stage-$1"; }

in_chroot() { run_in_chroot "$ROOT" "$@"; }

if ! stage_done debootstrap; then
	mirror=$(debian_mirror)
	log "debootstrap $SUITE into $ROOT (mirror $mirror)"
	rm -rf "$ROOT"
	t0=$SECONDS
	unshare --mount --propagation private -- \
		debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$ROOT" "$mirror" \
		>"$ENV_DIR/debootstrap.log" 2>&1 ||
		{ tail -n 20 "$ENV_DIR/debootstrap.log" >&2; die "debootstrap of $SUITE failed (log: $ENV_DIR/debootstrap.log)"; }
	# The archive's Release files can be past their Valid-Until in mirrors and
	# snapshots; the packages are still verified by their signed hashes.
	echo 'Acquire::Check-Valid-Until "false";' >"$ROOT/etc/apt/apt.conf.d/90rapilog"
	echo 'APT::Install-Recommends "false";' >>"$ROOT/etc/apt/apt.conf.d/90rapilog"
	{
		echo "deb $mirror $SUITE main"
		[ "$KSUITE" = "$SUITE" ] || echo "deb $mirror $KSUITE main"
	} >"$ROOT/etc/apt/sources.list"
	log "debootstrap done in $((SECONDS - t0)) s"
	stage_mark debootstrap
fi

if ! stage_done packages; then
	log "installing the kernel's exact compiler set and sources into the chroot"
	t0=$SECONDS
	pkgs=(
		"linux-headers-$KREL=$KPKG_VERSION"
		"linux-source-$KSERIES=$KPKG_VERSION"
		"rustc=$RUSTC_VERSION" "rust-src=$RUSTC_VERSION"
		"bindgen=$BINDGEN_VERSION"
		"$GCC" make bc bison flex libelf-dev libssl-dev kmod dwarves python3 xz-utils
	)
	# Some packages must come from the kernel's backports suite (elfutils for
	# trixie-backports): ask for those by suite instead.
	for p in $BACKPORTS_PKGS; do
		for i in "${!pkgs[@]}"; do [ "${pkgs[$i]}" != "$p" ] || unset 'pkgs[i]'; done
		pkgs+=("$p/$KSUITE")
	done
	in_chroot apt-get update -q >"$ENV_DIR/apt.log" 2>&1 ||
		{ tail -n 20 "$ENV_DIR/apt.log" >&2; die "apt-get update in the chroot failed"; }
	in_chroot apt-get install -y -q "${pkgs[@]}" >>"$ENV_DIR/apt.log" 2>&1 || {
		tail -n 20 "$ENV_DIR/apt.log" >&2
		die "installing the pinned packages failed; if the archive dropped a version, bump kernels/$KREL.env (see kernels/README.md)"
	}
	log "packages installed in $((SECONDS - t0)) s"
	stage_mark packages
fi

if ! stage_done artifacts; then
	log "regenerating the Rust artifacts: make prepare of linux-source-$KSERIES with the stock .config"
	t0=$SECONDS
	in_chroot /rapilog/kernels/rust-artifacts.sh "$HDR" "/usr/src/linux-source-$KSERIES.tar.xz" "$PREP" \
		>"$ENV_DIR/prepare.log" 2>&1 ||
		{ tail -n 30 "$ENV_DIR/prepare.log" >&2; die "regenerating the Rust artifacts failed (log: $ENV_DIR/prepare.log)"; }
	log "Rust artifacts installed in $((SECONDS - t0)) s"
	stage_mark artifacts
fi

echo "$ROOT"
