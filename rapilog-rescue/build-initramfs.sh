#!/bin/bash
# Build the crash kernel's initramfs: busybox, the static rapilog-rescue, the
# stock modules the log disk needs, and an /init that loads them, runs the
# rescue and reboots.
#
#   rapilog-rescue/build-initramfs.sh [options]
#     -k, --krel KREL        kernel release of the crash kernel (default: uname -r)
#     -r, --root DIR         where lib/modules/KREL is (default /; the tests use
#                            .cache/guest/KREL/root, the stock kernel's modules)
#     -m, --modules LIST     disk drivers to include and load, comma separated
#                            (default: virtio_pci,virtio_blk,virtio_scsi,nvme,
#                            ahci,sd_mod); dependencies are added, built-in
#                            ones skipped; a name the kernel lacks is an error
#     -b, --rescue FILE      the rapilog-rescue binary (default: build it with
#                            rapilog-rescue/build-static.sh); must be static
#         --busybox FILE     static busybox (default /bin/busybox, Debian's
#                            busybox-static)
#     -o, --output FILE      output (default .cache/rescue/KREL/rescue-initramfs.cpio.gz)
#     -z, --compress none|gzip   (default gzip)
#
# Prints the output path. In the image:
#   /init                     the script below (busybox sh)
#   /sbin/rapilog-rescue      reads rapilog.* from the kernel command line
#   /etc/rapilog-rescue/modules   modules /init loads, one per line
#   /lib/modules/KREL/...     the modules (decompressed) and depmod's index
# The crash kernel's command line (kexec -p --append=...) carries
# rapilog.region=SIZE@PHYS, rapilog.disk=ID and optionally rapilog.reboot=0
# (stay in a shell instead of rebooting), rapilog.dry_run=1, rapilog.wait=S;
# see rapilog-rescue/README.md.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [[ -r $here/../kernels/lib.sh ]]; then
    # shellcheck source=kernels/lib.sh
    source "$here/../kernels/lib.sh"
else
    # Installed by the rapilog-tools package as /usr/lib/rapilog/build-initramfs,
    # next to the static rapilog-rescue, without the repository's helpers.
    die() { echo "error: $*" >&2; exit 1; }
    log() { echo "[$(date +%H:%M:%S) build-initramfs] $*" >&2; }
    RAPILOG_CACHE=/var/cache/rapilog
fi

krel=$(uname -r)
root=/
modules=virtio_pci,virtio_blk,virtio_scsi,nvme,ahci,sd_mod
rescue=
busybox=/bin/busybox
out=
compress=gzip

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
while (($#)); do
    case $1 in
        -k | --krel) krel=$2; shift 2 ;;
        -r | --root) root=$2; shift 2 ;;
        -m | --modules) modules=$2; shift 2 ;;
        -b | --rescue) rescue=$2; shift 2 ;;
        --busybox) busybox=$2; shift 2 ;;
        -o | --output) out=$2; shift 2 ;;
        -z | --compress) compress=$2; shift 2 ;;
        -h | --help) usage ;;
        *) echo "unknown argument: $1" >&2; usage ;;
    esac
done
case $compress in none | gzip) ;; *) die "--compress: none or gzip" ;; esac
for tool in cpio depmod modprobe xz ldd; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install cpio kmod xz-utils)"
done
static() { { ldd "$1" 2>&1 || true; } | grep -Eq 'statically linked|not a dynamic executable'; }
[[ -x $busybox ]] && static "$busybox" || die "$busybox is not a static busybox (apt-get install busybox-static)"
if [[ -z $rescue && -x $here/rapilog-rescue ]]; then
    rescue=$here/rapilog-rescue # installed by the package
fi
[[ -n $rescue ]] || rescue=$("$here/build-static.sh")
[[ -x $rescue ]] && static "$rescue" || die "$rescue is not a static executable (see rapilog-rescue/build-static.sh)"
kmods=$root/lib/modules/$krel
[[ -f $kmods/modules.dep ]] || die "no $kmods/modules.dep: wrong --root or --krel?"
out=${out:-$RAPILOG_CACHE/rescue/$krel/rescue-initramfs.cpio$([[ $compress == gzip ]] && echo .gz)}

stage=$(mktemp -d "${TMPDIR:-/tmp}/rapilog-rescue-initramfs.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,sbin,proc,sys,dev,tmp,etc/rapilog-rescue,lib/modules/"$krel"}
cp "$busybox" "$stage/bin/busybox"
for applet in sh mount umount mkdir cat echo grep sleep modprobe insmod reboot poweroff ls dmesg; do
    ln -s busybox "$stage/bin/$applet"
done
install -m 0755 "$rescue" "$stage/sbin/rapilog-rescue"

# --- modules: modprobe --show-depends lists each with its dependencies, in
# load order ("builtin NAME" for those compiled in).
: >"$stage/etc/rapilog-rescue/modules"
IFS=, read -ra wanted <<<"$modules"
n=0
for m in "${wanted[@]}"; do
    deps=$(modprobe -d "$root" -S "$krel" --show-depends "$m" 2>&1) ||
        die "module $m: $deps"
    while read -r kind path _; do
        [[ $kind == insmod ]] || continue
        rel=${path#"$kmods"/}
        dst=$stage/lib/modules/$krel/${rel%.xz}
        dst=${dst%.zst}
        [[ -e $dst ]] && continue
        mkdir -p "$(dirname "$dst")"
        case $path in
            *.ko.xz) xz -dc "$path" >"$dst" ;;
            *.ko.zst) zstd -qdc "$path" >"$dst" ;;
            *) cp "$path" "$dst" ;;
        esac
        n=$((n + 1))
    done <<<"$deps"
    echo "$m" >>"$stage/etc/rapilog-rescue/modules"
done
for f in modules.builtin modules.builtin.modinfo modules.order; do
    [[ -e $kmods/$f ]] && cp "$kmods/$f" "$stage/lib/modules/$krel/"
done
depmod -b "$stage" "$krel" || die "depmod on the initramfs failed"

cat >"$stage/init" <<'EOF'
#!/bin/sh
# rapilog crash-kernel init: disk drivers, rapilog-rescue, reboot.
export PATH=/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
echo "rapilog-rescue initramfs: loading disk drivers"
while read -r m; do
    modprobe "$m" 2>/dev/null
done </etc/rapilog-rescue/modules
# Replays, records the report in the region, prints it, and reboots
# (rapilog.reboot=1 is the default in a crash kernel).
/sbin/rapilog-rescue
rc=$?
echo "rapilog-rescue initramfs: rapilog-rescue exited with $rc"
for w in $(cat /proc/cmdline); do
    case $w in rapilog.reboot=0 | rapilog.reboot=n*) exec sh ;; esac
done
sync
reboot -f
EOF
chmod 0755 "$stage/init"

mkdir -p "$(dirname "$out")"
tmpout=$out.tmp.$$
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --reproducible --quiet) |
    if [[ $compress == gzip ]]; then gzip -9 -n; else cat; fi >"$tmpout"
mv "$tmpout" "$out"
log "built $out ($(du -h "$out" | cut -f1), $n modules for ${#wanted[@]} drivers)"
echo "$out"
