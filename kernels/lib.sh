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

# load_kernel_env KREL: source kernels/KREL.env (KEY=VALUE lines; unknown keys
# are fine) and check the variables the harness needs.
load_kernel_env() {
    local krel=$1 f
    f=$RAPILOG_TOP/kernels/$krel.env
    if [[ ! -r $f ]]; then
        local known=() k
        for k in "$RAPILOG_TOP"/kernels/*.env; do [[ -e $k ]] && known+=("$(basename "$k" .env)"); done
        die "no pin file $f (known: ${known[*]:-none})"
    fi
    # shellcheck disable=SC1090
    source "$f"
    [[ ${KREL:-} == "$krel" ]] || die "$f: KREL=${KREL:-} does not match file name"
    [[ -n ${KPKG_VERSION:-} && -n ${KSUITE:-} ]] || die "$f: KPKG_VERSION and KSUITE are required"
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
