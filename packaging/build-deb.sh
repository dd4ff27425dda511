#!/usr/bin/env bash
# make deb: the Debian packages of rapilog, built with Debian's own tooling
# (debhelper, dpkg-buildpackage, lintian) in a Debian 13 trixie chroot.
#
#   packaging/build-deb.sh [KREL]      (default: the default kernel)
#
# Writes into .cache/deb/:
#   rapilog-tools_VERSION_amd64.deb            rapilogctl, rapilog-rescue, rapilog-arm,
#                                              units, /etc/rapilog/rapilog.conf, hook, docs
#   rapilog-modules-KREL_VERSION_amd64.deb     /usr/lib/modules/KREL/updates/rapilog.ko
#   rapilog-source_VERSION_all.deb             the module's sources, rapilog-build-module
#                                              and kernel hooks: builds the module on the
#                                              server for a kernel installed later
#   rapilog_VERSION_amd64.changes, .buildinfo
#   lintian-KREL.txt                           lintian's output; the build fails on an
#                                              error or warning that is not overridden
#
# How:
#   1. rapilog.ko for KREL: kernels/build-module.sh KREL (the module build
#      every test uses, in that kernel's own build chroot).
#   2. The packaging chroot, once: debootstrap trixie + debhelper, lintian
#      and trixie's own cargo/rustc (the workspace's rust-version is trixie's
#      1.85) under .cache/debbuild/root, in stamped stages like
#      kernels/build-env.sh (an interrupted run resumes). It is separate from
#      the kernel build chroots: those hold an exactly pinned compiler set
#      that installing cargo could move.
#   3. The crates: `cargo vendor --locked` on the host (the cargo that
#      `make host-test` and `make lint` use; Cargo.lock pins every version
#      and checksum) into .cache/debbuild/root/build/vendor, redone only when
#      Cargo.lock changes; the package build runs
#      `cargo build --offline --locked` against it. The chroot needs no
#      network and no trust setup of its own for crates.io (a host behind a
#      TLS-intercepting proxy has its CA only on the host).
#   4. The source tree (the files git tracks, as they are in the working
#      tree, with their times) is copied to a fresh build directory in the
#      chroot (always the same path, so cargo rebuilds only what changed),
#      debian/control and debian/changelog are generated for KREL and
#      VERSION (packaging/version.sh), and `dpkg-buildpackage -b` builds;
#      cargo's target directory persists between runs.
#   5. lintian on the .changes (every package), with the overrides in
#      debian/*.lintian-overrides, each explained there.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=kernels/lib.sh
. "$here/../kernels/lib.sh"

krel=${1:-$DEFAULT_KREL}
[ "$(id -u)" -eq 0 ] || die "make deb needs root (debootstrap, chroot)"
BUILD=$RAPILOG_CACHE/debbuild
ROOT=$BUILD/root
OUT=$RAPILOG_CACHE/deb
SUITE=trixie
mkdir -p "$BUILD" "$OUT"
t_start=$SECONDS

# Everything the packaging chroot gets; Build-Depends in debian/control.in
# must be a subset (dpkg-buildpackage checks them).
PKGS=(build-essential debhelper dpkg-dev lintian cargo rustc libc6-dev kmod)

stage_done() { [ -e "$BUILD/.stage-$1" ]; }
stage_mark() { touch "$BUILD/.stage-$1"; }

# --- 1. the module (first: it may build that kernel's chroot)
ko=$("$RAPILOG_TOP/kernels/build-module.sh" "$krel")
[ -s "$ko" ] || die "kernels/build-module.sh $krel produced no module"
vermagic=$(modinfo -F vermagic "$ko" 2>/dev/null || true)
case $vermagic in "$krel "*) ;; *) die "$ko: vermagic '$vermagic' is not for $krel" ;; esac

# --- 2. the packaging chroot
if ! stage_done debootstrap; then
	mirror=$(debian_mirror)
	log "debootstrap $SUITE into $ROOT (mirror $mirror)"
	release_mounts "$ROOT" 2>/dev/null || true
	rm -rf --one-file-system "$ROOT"
	unshare --mount --propagation private -- \
		debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$ROOT" "$mirror" \
		>"$BUILD/debootstrap.log" 2>&1 ||
		{ tail -n 20 "$BUILD/debootstrap.log" >&2; die "debootstrap of $SUITE failed (log: $BUILD/debootstrap.log)"; }
	release_mounts "$ROOT"
	# As in kernels/build-env.sh: mirrors can serve Release files past Valid-Until.
	echo 'Acquire::Check-Valid-Until "false";' >"$ROOT/etc/apt/apt.conf.d/90rapilog"
	echo 'APT::Install-Recommends "false";' >>"$ROOT/etc/apt/apt.conf.d/90rapilog"
	echo "deb $mirror $SUITE main" >"$ROOT/etc/apt/sources.list"
	stage_mark debootstrap
fi
# The stamp names the package list, so adding a package here installs it.
pkgs_stamp=packages-$(printf '%s\n' "${PKGS[@]}" | md5sum | cut -c1-8)
if ! stage_done "$pkgs_stamp"; then
	log "installing debhelper, lintian, cargo and rustc into the packaging chroot"
	run_in_chroot "$ROOT" apt-get update -q >"$BUILD/apt.log" 2>&1 ||
		{ tail -n 20 "$BUILD/apt.log" >&2; die "apt-get update in $ROOT failed (log: $BUILD/apt.log)"; }
	run_in_chroot "$ROOT" apt-get install -y -q "${PKGS[@]}" >>"$BUILD/apt.log" 2>&1 ||
		{ tail -n 20 "$BUILD/apt.log" >&2; die "installing the packaging tools failed (log: $BUILD/apt.log)"; }
	stage_mark "$pkgs_stamp"
fi

# --- 4. the source tree, debian/control and debian/changelog
version=$("$here/version.sh")
src=$ROOT/build/src/rapilog
rm -rf --one-file-system "$ROOT/build/src"
mkdir -p "$src" "$ROOT/build/cargo-home" "$ROOT/build/target"
# Tracked files as they are now (uncommitted edits included), no build outputs.
git -C "$RAPILOG_TOP" ls-files -z --cached --others --exclude-standard |
	(cd "$RAPILOG_TOP" && xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh) |
	tar -C "$RAPILOG_TOP" --null -T - -cf - | tar -C "$src" -xf -
mkdir -p "$src/debian/prebuilt"
install -m 0644 "$ko" "$src/debian/prebuilt/rapilog.ko"
"$here/gen-debian.sh" "$src/debian" "$krel" "$version"

# --- 3. the crates, vendored once per Cargo.lock
lock_stamp=vendor-$(md5sum <"$RAPILOG_TOP/Cargo.lock" | cut -c1-8)
if ! stage_done "$lock_stamp"; then
	log "cargo vendor: the crates of Cargo.lock into $ROOT/build/vendor"
	rm -f "$BUILD"/.stage-vendor-*
	if command -v cargo >/dev/null; then
		cargo vendor --quiet --locked --manifest-path "$RAPILOG_TOP/Cargo.toml" "$ROOT/build/vendor" >/dev/null ||
			die "cargo vendor failed"
	else
		# No cargo on the host: trixie's, in the chroot (which then needs to
		# reach crates.io itself).
		run_in_chroot "$ROOT" env CARGO_HOME=/build/cargo-vendor-home \
			cargo vendor --quiet --locked --manifest-path /rapilog/Cargo.toml /build/vendor >/dev/null ||
			die "cargo vendor (in $ROOT) failed"
	fi
	cat >"$ROOT/build/cargo-home/config.toml" <<-'CONFIG'
		[source.crates-io]
		replace-with = "vendored-sources"
		[source.vendored-sources]
		directory = "/build/vendor"
	CONFIG
	stage_mark "$lock_stamp"
fi

# --- 4. the build, inside the chroot
log "dpkg-buildpackage of rapilog $version for $krel"
# The target directory persists, so a warm build only relinks.
inner="set -e
export CARGO_HOME=/build/cargo-home CARGO_TARGET_DIR=/build/target
cd /build/src/rapilog
DEB_BUILD_OPTIONS=nocheck dpkg-buildpackage -b -us -uc --no-pre-clean
cd ..
lintian --allow-root --info --display-info --pedantic --fail-on error,warning *.changes >lintian.txt 2>&1 || { echo lintian failed:; cat lintian.txt; exit 3; }"
t0=$SECONDS
run_in_chroot "$ROOT" sh -c "$inner" >"$BUILD/build-$krel.log" 2>&1 || {
	tail -n 40 "$BUILD/build-$krel.log" >&2
	die "package build failed (log: $BUILD/build-$krel.log)"
}
log "built and lintian-checked in $((SECONDS - t0)) s"

# --- results
rm -f "$OUT"/rapilog-modules-"$krel"_*.deb "$OUT"/rapilog-tools_*.deb "$OUT"/rapilog-source_*.deb \
	"$OUT"/rapilog_*.changes "$OUT"/rapilog_*.buildinfo
cp "$ROOT"/build/src/*.deb "$ROOT"/build/src/*.changes "$ROOT"/build/src/*.buildinfo "$OUT/"
cp "$ROOT/build/src/lintian.txt" "$OUT/lintian-$krel.txt"
log "make deb: $((SECONDS - t_start)) s; lintian: $(grep -c '^[EWIPX]: ' "$OUT/lintian-$krel.txt" || true) tag(s), none an error or warning ($OUT/lintian-$krel.txt)"
ls -1 "$OUT"/*.deb "$OUT"/*.changes
