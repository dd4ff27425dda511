#!/bin/bash
# Debian's kexec-tools for the busybox test guest (which has no libc): the
# kexec binary plus every shared library it loads, as an overlay directory
# for Guest(overlays=[...]) / qemu-scripts/build-initramfs.sh --overlay.
#
#   rapilog-rescue/fetch-kexec-tools.sh [KREL]     (default: the default kernel)
#
# Uses the kernel's build chroot (kernels/build-env.sh KREL, created if
# missing), whose apt downloads kexec-tools and its dependencies for that
# suite (into .cache/kexec-tools/KREL/debs) without installing anything; the
# packages are unpacked and the ELF closure of /usr/sbin/kexec (DT_NEEDED,
# resolved in the unpacked packages, then in the chroot's own libc) is
# copied into the overlay. Debian's kexec-tools links the Xen libraries
# (libxenctrl) even for bare metal; they come along. Prints the overlay
# directory:
#
#   sbin/kexec  lib/x86_64-linux-gnu/*.so*  lib64/ld-linux-x86-64.so.2
#
# Cached (stamp file). ~4 s when the chroot exists.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=kernels/lib.sh
source "$here/../kernels/lib.sh"

krel=${1:-$DEFAULT_KREL}
out=$RAPILOG_CACHE/kexec-tools/$krel
overlay=$out/overlay
if [[ -e $out/.done ]]; then
    echo "$overlay"
    exit 0
fi
for tool in readelf dpkg-deb; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install binutils dpkg)"
done
root=$("$RAPILOG_TOP/kernels/build-env.sh" "$krel" | tail -n1)
[[ -x $root/usr/bin/apt-get ]] || die "no build chroot at $root"

mkdir -p "$out"
exec 9>"$out/.lock"
flock 9
[[ -e $out/.done ]] && { echo "$overlay"; exit 0; }
rm -rf "$out/debs" "$out/unpacked" "$overlay"
mkdir -p "$out/debs/partial" "$out/unpacked"
t0=$SECONDS
# Download inside the chroot (its own apt lists and keyring), into a private
# directory there, then move the packages out.
dl=$(mktemp -d "$root/tmp/rapilog-kexec-tools.XXXXXX")
trap 'rm -rf "$dl"' EXIT
mkdir -p "$dl/partial"
run_in_chroot "$root" apt-get install --download-only --yes --no-install-recommends \
    -o "Dir::Cache::archives=/tmp/$(basename "$dl")" kexec-tools >"$out/apt.log" 2>&1 ||
    { tail -n 20 "$out/apt.log" >&2; die "apt-get --download-only kexec-tools failed (log: $out/apt.log)"; }
mv "$dl"/*.deb "$out/debs/"
for deb in "$out"/debs/*.deb; do dpkg-deb -x "$deb" "$out/unpacked"; done
kexec=$out/unpacked/usr/sbin/kexec
[[ -x $kexec ]] || kexec=$out/unpacked/sbin/kexec
[[ -x $kexec ]] || die "kexec-tools has no sbin/kexec"

mkdir -p "$overlay/sbin" "$overlay/lib/x86_64-linux-gnu" "$overlay/lib64"
cp "$kexec" "$overlay/sbin/kexec"
find_lib() { # NAME -> path
    local d
    for d in "$out/unpacked/usr/lib/x86_64-linux-gnu" "$out/unpacked/lib/x86_64-linux-gnu" \
        "$root/usr/lib/x86_64-linux-gnu" "$root/lib/x86_64-linux-gnu"; do
        [[ -e $d/$1 ]] && { echo "$d/$1"; return 0; }
    done
    return 1
}
declare -A seen=()
todo=("$kexec")
while ((${#todo[@]})); do
    elf=${todo[0]}
    todo=("${todo[@]:1}")
    for name in $(readelf -d "$elf" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
        [[ -n ${seen[$name]:-} ]] && continue
        seen[$name]=1
        lib=$(find_lib "$name") || die "library $name of $(basename "$elf") not found"
        cp -L "$lib" "$overlay/lib/x86_64-linux-gnu/$name"
        todo+=("$lib")
    done
done
interp=$(readelf -l "$kexec" | sed -n 's/.*interpreter: \(.*\)]/\1/p')
[[ $interp == /lib64/ld-linux-x86-64.so.2 ]] || die "unexpected interpreter $interp"
cp -L "$(find_lib ld-linux-x86-64.so.2)" "$overlay/lib64/ld-linux-x86-64.so.2"
rm -rf "$out/unpacked"
touch "$out/.done"
log "kexec-tools $(ls "$out"/debs/kexec-tools_*.deb | sed 's/.*kexec-tools_\(.*\)_amd64.deb/\1/; s/%3a/:/') + ${#seen[@]} libraries in $((SECONDS - t0)) s"
echo "$overlay"
