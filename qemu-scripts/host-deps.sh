#!/bin/bash
# Install the host packages the QEMU harness needs. Idempotent; a fast no-op
# (dpkg-query only, no network) when everything is already installed.
#
#   qemu-system-x86 >= 10  from bookworm-backports (bookworm's 7.2 lacks
#                          -action panic=none with pvpanic-pci events etc.)
#   the rest               from bookworm
#
# The bookworm-backports source is derived from the host's own Debian mirror
# (see debian_mirror in kernels/lib.sh; override with DEBIAN_MIRROR).
set -euo pipefail
# shellcheck source=kernels/lib.sh
source "$(dirname "$0")/../kernels/lib.sh"

QEMU_MIN=1:10.0
# harness: busybox-static cpio kmod (depmod/modinfo) xz-utils zstd curl gpgv
# debian-archive-keyring (fetch-kernel.sh), python3 python3-venv (tests);
# debootstrap: the module build chroot (kernels/build-env.sh); shellcheck:
# tests/lint.sh.
BASE_PKGS=(busybox-static cpio xz-utils zstd kmod python3 python3-venv curl ca-certificates gpgv
    debian-archive-keyring dpkg e2fsprogs debootstrap shellcheck)
BPO_PKGS=(qemu-system-x86 qemu-utils)

missing=()
for p in "${BASE_PKGS[@]}"; do
    st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [[ $st == installed ]] || missing+=("$p")
done
bpo_missing=()
for p in "${BPO_PKGS[@]}"; do
    st=$(dpkg-query -W -f='${db:Status-Status} ${Version}' "$p" 2>/dev/null || true)
    if [[ $st != installed\ * ]] || ! dpkg --compare-versions "${st#installed }" ge "$QEMU_MIN"; then
        bpo_missing+=("$p")
    fi
done

if ((${#missing[@]} == 0 && ${#bpo_missing[@]} == 0)); then
    log "all host packages present"
    exit 0
fi
[[ $(id -u) == 0 ]] || die "need root to install: ${missing[*]} ${bpo_missing[*]}"

. /etc/os-release
[[ ${VERSION_CODENAME:-} == bookworm ]] || log "warning: host is ${VERSION_CODENAME:-unknown}, expected bookworm"

export DEBIAN_FRONTEND=noninteractive
APT=(apt-get -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)

if ((${#bpo_missing[@]})); then
    src=/etc/apt/sources.list.d/rapilog-bookworm-backports.sources
    if ! grep -rqsE '^[^#]*bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; then
        mirror=$(debian_mirror)
        log "adding bookworm-backports from $mirror"
        cat >"$src" <<EOF
# Added by rapilog qemu-scripts/host-deps.sh (QEMU >= 10 for the test harness).
Types: deb
URIs: $mirror
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
Check-Valid-Until: no
EOF
    fi
fi

log "installing: ${missing[*]} ${bpo_missing[*]}"
"${APT[@]}" -o Acquire::Check-Valid-Until=false update
if ((${#missing[@]})); then
    "${APT[@]}" install --no-install-recommends "${missing[@]}"
fi
if ((${#bpo_missing[@]})); then
    "${APT[@]}" install --no-install-recommends -t bookworm-backports "${bpo_missing[@]}"
fi

v=$(dpkg-query -W -f='${Version}' qemu-system-x86)
dpkg --compare-versions "$v" ge "$QEMU_MIN" || die "qemu-system-x86 $v < $QEMU_MIN"
log "done (qemu-system-x86 $v)"
