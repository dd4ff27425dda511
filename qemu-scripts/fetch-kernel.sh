#!/bin/bash
# Fetch a stock Debian kernel for the QEMU guest, without the host's apt:
#
#   qemu-scripts/fetch-kernel.sh [KREL]      (default: 7.3.4+deb13-amd64)
#
# Reads the pins from kernels/KREL.env (KREL, KPKG_VERSION, KSUITE), downloads
# the suite's signed InRelease (checked with gpgv against the host's
# debian-archive-keyring), main/binary-amd64/Packages.xz (checked against
# InRelease), then linux-binary-KREL (bzImage), linux-modules-KREL and
# linux-base-KREL (config, modules.builtin) at
# exactly KPKG_VERSION (checked against the SHA256 in Packages), extracts them
# with dpkg-deb and runs depmod. Prints the cache directory, which holds:
#
#   vmlinuz                 the stock bzImage (/boot/vmlinuz-KREL or
#                           /usr/lib/modules/KREL/vmlinuz in newer packages)
#   root/lib/modules/KREL/  the stock modules (.ko.xz) with modules.dep etc.
#   root/lib/modules/KREL/config   the kernel .config
#   debs/                   the verified .deb files
#
# Reused when present (stamp file), rebuilt when absent. Env: DEBIAN_MIRROR,
# RAPILOG_CACHE.
set -euo pipefail
# shellcheck source=kernels/lib.sh
source "$(dirname "$0")/../kernels/lib.sh"

krel=${1:-$DEFAULT_KREL}
load_kernel_env "$krel"

out=$RAPILOG_CACHE/guest/$KREL
stamp=$out/.fetched-$KPKG_VERSION
if [[ -e $stamp ]]; then
    echo "$out"
    exit 0
fi

mkdir -p "$RAPILOG_CACHE/guest"
exec 9>"$RAPILOG_CACHE/guest/.lock-$KREL"
flock 9
if [[ -e $stamp ]]; then echo "$out"; exit 0; fi

for tool in curl xz gpgv dpkg-deb depmod sha256sum; do
    command -v "$tool" >/dev/null || die "$tool not found (run qemu-scripts/host-deps.sh)"
done
KEYRING=${DEBIAN_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}
[[ -r $KEYRING ]] || die "no $KEYRING (apt-get install debian-archive-keyring)"

mirror=$(debian_mirror)
t0=$(date +%s.%N)
tmp=$(mktemp -d "$RAPILOG_CACHE/guest/.tmp-$KREL.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

fetch() { # URL DEST
    curl -fsSL --retry 3 --retry-delay 2 --connect-timeout 20 -o "$2" "$1" ||
        die "download failed: $1"
}

log "mirror $mirror, suite $KSUITE, kernel $KREL ($KPKG_VERSION)"
dists=$mirror/dists/$KSUITE
fetch "$dists/InRelease" "$tmp/InRelease"
gpgv --keyring "$KEYRING" --output "$tmp/Release" "$tmp/InRelease" 2>"$tmp/gpgv.log" ||
    { cat "$tmp/gpgv.log" >&2; die "InRelease of $KSUITE: bad signature"; }
want=$(awk '/^SHA256:/ { s = 1; next } /^[^ ]/ { s = 0 } s && $3 == "main/binary-amd64/Packages.xz" { print $1 }' "$tmp/Release")
[[ -n $want ]] || die "InRelease of $KSUITE lists no main/binary-amd64/Packages.xz"
fetch "$dists/main/binary-amd64/Packages.xz" "$tmp/Packages.xz"
echo "$want  $tmp/Packages.xz" | sha256sum -c --quiet - || die "Packages.xz of $KSUITE: SHA256 mismatch"
xz -dc "$tmp/Packages.xz" >"$tmp/Packages"

# lookup PKG -> "FILENAME SHA256" of exactly KPKG_VERSION
lookup() {
    awk -v RS= -v FS='\n' -v pkg="$1" -v ver="$KPKG_VERSION" '
        {
            p = v = f = h = ""
            for (i = 1; i <= NF; i++) {
                if ($i ~ /^Package: /) p = substr($i, 10)
                else if ($i ~ /^Version: /) v = substr($i, 10)
                else if ($i ~ /^Filename: /) f = substr($i, 11)
                else if ($i ~ /^SHA256: /) h = substr($i, 9)
            }
            if (p == pkg && v == ver) { print f, h; exit }
        }' "$tmp/Packages"
}

mkdir -p "$tmp/debs" "$tmp/root"
# linux-base-KREL carries config, System.map and modules.builtin*.
for pkg in "linux-binary-$KREL" "linux-modules-$KREL" "linux-base-$KREL"; do
    read -r file sha < <(lookup "$pkg") || true
    if [[ -z ${file:-} || -z ${sha:-} ]]; then
        avail=$(awk -v RS= -v FS='\n' -v pkg="$pkg" '$1 == "Package: " pkg { for (i = 1; i <= NF; i++) if ($i ~ /^Version: /) print substr($i, 10) }' "$tmp/Packages" | tr '\n' ' ')
        die "$pkg $KPKG_VERSION not in $KSUITE (available: ${avail:-none}); update kernels/$KREL.env"
    fi
    deb=$tmp/debs/$(basename "$file")
    log "downloading $file"
    fetch "$mirror/$file" "$deb"
    echo "$sha  $deb" | sha256sum -c --quiet - || die "$file: SHA256 mismatch"
    dpkg-deb -x "$deb" "$tmp/root"
    unset file sha
done

# Debian's merged /usr: modules (and, in newer packages, the image itself)
# live under usr/lib/modules/KREL; present them as lib/modules/KREL.
moddir=$tmp/root/lib/modules/$KREL
if [[ -d $tmp/root/usr/lib/modules/$KREL ]]; then
    mkdir -p "$moddir"
    cp -a "$tmp/root/usr/lib/modules/$KREL/." "$moddir/"
    rm -rf "$tmp/root/usr/lib/modules/$KREL"
fi
[[ -f $moddir/modules.builtin ]] || die "linux-modules-$KREL has no lib/modules/$KREL/modules.builtin"
for img in "$tmp/root/boot/vmlinuz-$KREL" "$moddir/vmlinuz"; do
    [[ -f $img ]] && break
done
[[ -f $img ]] || die "linux-binary-$KREL has neither /boot/vmlinuz-$KREL nor lib/modules/$KREL/vmlinuz"
depmod -b "$tmp/root" "$KREL" || die "depmod failed"
cp "$img" "$tmp/vmlinuz"

rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
rm -f "$out/Packages" "$out/Packages.xz" "$out/gpgv.log"
touch "$stamp"
log "fetched $KREL in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
echo "$out"
