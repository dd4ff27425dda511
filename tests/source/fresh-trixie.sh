#!/usr/bin/env bash
# tests/source/fresh-trixie.sh: a pristine Debian 13 trixie system (debootstrap
# minbase) for the rapilog-source test, made once under
# $RAPILOG_CACHE/fresh-trixie/root, and print its path. Nothing is installed
# into it afterwards: the test runs on an overlay of it, so every run starts
# from the same untouched system. Its apt sees the Debian archive only
# (trixie and trixie-backports, from the mirror kernels/lib.sh finds), as a
# server's would.
set -euo pipefail
. "$(dirname "$0")/../../kernels/lib.sh"
[ "$(id -u)" -eq 0 ] || die "debootstrap needs root"
dir=$RAPILOG_CACHE/fresh-trixie
root=$dir/root
mkdir -p "$dir"
if [ ! -e "$dir/.stage-debootstrap" ]; then
	mirror=$(debian_mirror)
	log "debootstrap trixie (minbase) into $root (mirror $mirror)"
	release_mounts "$root" 2>/dev/null || true
	rm -rf --one-file-system "$root"
	t0=$SECONDS
	unshare --mount --propagation private -- \
		debootstrap --variant=minbase --include=ca-certificates trixie "$root" "$mirror" \
		>"$dir/debootstrap.log" 2>&1 ||
		{ tail -n 20 "$dir/debootstrap.log" >&2; die "debootstrap of trixie failed (log: $dir/debootstrap.log)"; }
	release_mounts "$root"
	# As in kernels/build-env.sh: mirrors can serve Release files past Valid-Until.
	echo 'Acquire::Check-Valid-Until "false";' >"$root/etc/apt/apt.conf.d/90rapilog"
	printf 'deb %s trixie main\ndeb %s trixie-backports main\n' "$mirror" "$mirror" >"$root/etc/apt/sources.list"
	log "debootstrap done in $((SECONDS - t0)) s"
	touch "$dir/.stage-debootstrap"
fi
echo "$root"
