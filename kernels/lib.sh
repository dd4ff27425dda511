# shellcheck shell=bash
# Shared helpers of the build and harness scripts (kernels/, qemu-scripts/,
# tests/). Source it; it defines variables and functions only.

# Repository top level and cache directory (ignored by git).
RAPILOG_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RAPILOG_CACHE=${RAPILOG_CACHE:-$RAPILOG_TOP/.cache}
# The default kernel: Debian 13 trixie-backports, whose compiler set is a
# stable release (sid's moves). RAPILOG_KREL or KREL select another.
DEFAULT_KREL=${RAPILOG_KREL:-${KREL:-7.3.4+deb13-amd64}}

die() { echo "error: $*" >&2; exit 1; }
log() { echo "[$(date +%H:%M:%S) $(basename "$0")] $*" >&2; }

# debian_mirror: print the Debian archive URI (no trailing slash).
# $DEBIAN_MIRROR wins; otherwise the first `URIs:` (deb822) or `deb` line of
# the host's apt configuration that points at the main archive (not
# debian-security, not third-party repos).
debian_mirror() {
    if [[ -n ${DEBIAN_MIRROR:-} ]]; then
        echo "${DEBIAN_MIRROR%/}"
        return
    fi
    local f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -r $f ]] || continue
        # shellcheck disable=SC2013
        for uri in $(awk 'tolower($1)=="uris:" { for (i = 2; i <= NF; i++) print $i }' "$f"); do
            if [[ $uri =~ /debian/?$ ]]; then echo "${uri%/}"; return; fi
        done
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -r $f ]] || continue
        uri=$(awk '$1=="deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/ && $i ~ /:\/\//) { print $i; exit } }' "$f" |
            grep -E '/debian/?$' | head -n1 || true)
        if [[ -n $uri ]]; then echo "${uri%/}"; return; fi
    done
    die "cannot find a Debian mirror in /etc/apt (set DEBIAN_MIRROR=http://.../debian)"
}

# load_kernel_env KREL: source the kernel's settings (KEY=VALUE lines; unknown
# keys are fine) and check the variables the harness needs. A committed pin,
# kernels/KREL.env, wins (the default kernel has one: its build is
# reproducible); any other kernel's settings are derived from the Debian
# archive and the kernel's own .config by kernels/kernel-env.py, once, into
# $RAPILOG_CACHE/kernels/KREL.env.
load_kernel_env() {
    local krel=$1 f
    f=$RAPILOG_TOP/kernels/$krel.env
    if [[ ! -r $f ]]; then
        f=$RAPILOG_CACHE/kernels/$krel.env
        if [[ ! -s $f ]]; then
            mkdir -p "$RAPILOG_CACHE/kernels"
            log "no pin kernels/$krel.env: deriving its build settings from the archive (kernels/kernel-env.py)"
            python3 "$RAPILOG_TOP/kernels/kernel-env.py" derive "$krel" >"$f.tmp.$$" ||
                { rm -f "$f.tmp.$$"; die "cannot build for $krel (the line above says why; 'kernels/kernel-env.py list' shows the kernels that can)"; }
            mv "$f.tmp.$$" "$f"
        fi
    fi
    # shellcheck disable=SC1090
    source "$f"
    [[ ${KREL:-} == "$krel" ]] || die "$f: KREL=${KREL:-} does not match file name"
    [[ -n ${KPKG_VERSION:-} && -n ${KSUITE:-} ]] || die "$f: KPKG_VERSION and KSUITE are required"
}

# mounts_under DIR: the mount points at or below DIR in this mount namespace,
# in the order they were mounted (children after their parents).
mounts_under() {
	local dir
	dir=$(realpath -m "$1")
	# Field 5 of mountinfo is the mount point, with space, tab, newline and
	# backslash octal-escaped.
	awk -v d="$dir" '{ p = $5; gsub(/\\040/, " ", p); gsub(/\\011/, "\t", p)
		if (p == d || index(p, d "/") == 1) print p }' /proc/self/mountinfo
}

# release_mounts DIR: unmount everything mounted at or below DIR (a chroot
# tree), deepest first, and stop with one line naming the mount if anything is
# left. A chroot stage that leaves /proc, /sys or /dev mounted in the tree
# (debootstrap's second stage did, once) must not make a later step walk into
# the host's /proc, or delete the host's /dev through a bind mount.
#   - Each mount is made private first: a bind of /dev in a tree is a peer of
#     the host's /dev when / is shared (systemd's default), and unmounting
#     the tree's /dev/pts would otherwise unmount the host's /dev/pts too.
#   - Busy mounts are retried (a process of the stage may be exiting), then
#     detached lazily: gone from the tree at once, freed when unused.
release_mounts() {
	local dir=$1 try m left=()
	for try in 1 2 3 4 5 6; do
		mapfile -t left < <(mounts_under "$dir" | tac)
		((${#left[@]})) || return 0
		for m in "${left[@]}"; do
			mount --make-private "$m" 2>/dev/null || true
			if ((try < 6)); then umount "$m" 2>/dev/null || true; else umount -l "$m" 2>/dev/null || true; fi
		done
		sleep "0.$try"
	done
	mapfile -t left < <(mounts_under "$dir")
	((${#left[@]} == 0)) ||
		die "${left[0]} is still mounted inside $dir (${#left[@]} mount(s) in all); unmount it (umount -R ${left[0]}), check with 'findmnt -R $dir', and run again"
}

# chroot_stage TREE LOG CMD...: run CMD in chroot TREE in a private mount
# namespace, its output appended to LOG, so that whatever CMD mounts
# (debootstrap's second stage mounts /proc) dies with it; then check that
# nothing is left mounted in TREE. Returns CMD's exit status.
# RAPILOG_FAULT_LEFTOVER_PROC=1 mounts proc in TREE in the caller's namespace
# after CMD, as a stage that fails to unmount does (tests/host/test_chroot_mounts.py).
chroot_stage() {
	local tree=$1 stage_log=$2 rc=0
	shift 2
	unshare --mount --propagation private -- \
		chroot "$tree" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@" \
		>>"$stage_log" 2>&1 || rc=$?
	if [[ ${RAPILOG_FAULT_LEFTOVER_PROC:-0} == 1 ]]; then
		mkdir -p "$tree/proc"
		mount -t proc proc "$tree/proc"
		log "fault injection: left proc mounted at $tree/proc"
	fi
	release_mounts "$tree"
	return $rc
}

# tree_bytes TREE: apparent size of a directory tree, never crossing into
# another filesystem (a leftover mount must not count, or fail the walk).
tree_bytes() {
	du -sbx --apparent-size "$1" | cut -f1
}

# pack_tree TREE IMAGE LABEL [MIN_BYTES]: an ext4 image of TREE (mkfs.ext4 -d)
# with half as much free space again plus 256 MiB, at least MIN_BYTES. The
# tree's mounts are released first: mkfs.ext4 -d copies whatever it finds.
# Writes IMAGE.tmp.PID and renames it, so IMAGE is complete or absent.
pack_tree() {
	local tree=$1 image=$2 label=$3 min=${4:-0} used size tmp
	release_mounts "$tree"
	used=$(tree_bytes "$tree")
	size=$(((used * 3 / 2 + (256 << 20) + (1 << 20) - 1) >> 20 << 20))
	((size >= min)) || size=$min
	mkdir -p "$(dirname "$image")"
	tmp=$image.tmp.$$
	rm -f "$tmp"
	truncate -s "$size" "$tmp"
	mkfs.ext4 -q -F -L "$label" -d "$tree" "$tmp" || { rm -f "$tmp"; die "mkfs.ext4 -d $tree into $tmp failed"; }
	mv "$tmp" "$image"
}

# Run a command inside a build chroot with /proc, /sys, /dev (objtool and apt
# need them) and the repository at /rapilog. A private mount namespace tears
# every mount down with the process, even on failure.
run_in_chroot() {
	unshare --mount --propagation private -- bash -euc '
		root=$1 top=$2; shift 2
		mount -t proc proc "$root/proc"
		mount --rbind /sys "$root/sys"
		mount --rbind /dev "$root/dev"
		mkdir -p "$root/rapilog"
		mount --bind "$top" "$root/rapilog"
		exec chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
			HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"
	' run_in_chroot "$1" "$RAPILOG_TOP" "${@:2}"
}
