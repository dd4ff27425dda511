# shellcheck shell=bash
# Shared helpers for the kernel build environment and the guest harness.
# Source it; it defines functions only.

RAPILOG_TOP=${RAPILOG_TOP:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
RAPILOG_CACHE=${RAPILOG_CACHE:-$RAPILOG_TOP/.cache}

die() { echo "error: $*" >&2; exit 1; }
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# The Debian mirror this host's apt already uses (override: DEBIAN_MIRROR).
# Nothing in the repository names a mirror host: we follow the machine's setup.
debian_mirror() {
	if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "${DEBIAN_MIRROR%/}"; return; fi
	local uri
	uri=$( { grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}';
		 grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{print $2}'; } |
	       grep -E '/debian/?$' | head -n1)
	[ -n "$uri" ] || die "cannot find a Debian mirror in the host's apt sources; set DEBIAN_MIRROR=http://<mirror>/debian"
	echo "${uri%/}"
}

# Load kernels/<KREL>.env into the environment (KREL, KPKG_VERSION, SUITE, ...).
load_kernel_env() {
	local krel=$1 f="$RAPILOG_TOP/kernels/$1.env"
	[ -f "$f" ] || die "unsupported kernel '$krel': no $f (supported: $(cd "$RAPILOG_TOP/kernels" && ls ./*.env | sed 's|^\./||; s|\.env$||' | tr '\n' ' '))"
	# shellcheck disable=SC1090
	. "$f"
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
