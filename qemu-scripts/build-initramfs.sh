#!/bin/bash
# Build the small busybox initramfs the QEMU tests boot with the stock kernel.
#
#   qemu-scripts/build-initramfs.sh [options]
#     -k, --krel KREL        kernel release (default 7.3.4+deb13-amd64); the
#                            kernel is fetched with fetch-kernel.sh if needed
#     -o, --output FILE      output (default .cache/guest/KREL/initramfs.cpio)
#     -m, --modules LIST     extra stock modules to include (comma separated;
#                            dependencies are added; built-in ones skipped)
#     -l, --load LIST        modules /init loads at boot (default:
#                            virtio_blk,button,evdev,pvpanic-pci)
#     -a, --add SRC:DEST     copy file or directory SRC to DEST in the image
#                            (repeatable). A *.ko added under
#                            /lib/modules/KREL/ is indexed by depmod, so
#                            `modprobe NAME` works in the guest, and the stock
#                            modules it depends on are included.
#     -O, --overlay DIR      copy DIR's contents over the image root (repeatable)
#     -z, --compress none|gzip|zstd   (default none: fastest to boot under TCG)
#
# Prints the output path. Contents:
#   busybox-static with all applets; busybox init (/init) with
#   /etc/inittab -> /etc/rapilog/rcS (mounts, modules, init.d hooks)
#   and the command agent /bin/rapilog-agent (protocol: see that file);
#   stock modules (decompressed .ko) under /lib/modules/KREL with depmod;
#   /bin/disk-by-serial SERIAL -> /dev/vdX.
# Hooks: executable files in /etc/rapilog/init.d/ (add them with --add or
# --overlay) run at boot, before the agent starts. Kernel command line:
# rapilog.load=a,b (more modules to load), rapilog.agent=/dev/ttyS1 (agent on
# a serial port instead of the virtio-serial port).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=kernels/lib.sh
source "$here/../kernels/lib.sh"

krel=$DEFAULT_KREL
out=
compress=none
load=virtio_blk,button,evdev,pvpanic-pci
modules=(virtio_blk virtio_pci virtio_console button evdev pvpanic-pci brd loop null_blk configfs)
adds=()
overlays=()

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
while (($#)); do
    case $1 in
        -k | --krel) krel=$2; shift 2 ;;
        -o | --output) out=$2; shift 2 ;;
        -m | --modules) IFS=, read -ra m <<<"$2"; modules+=("${m[@]}"); shift 2 ;;
        -l | --load) load=$2; shift 2 ;;
        -a | --add) adds+=("$2"); shift 2 ;;
        -O | --overlay) overlays+=("$2"); shift 2 ;;
        -z | --compress) compress=$2; shift 2 ;;
        -h | --help) usage ;;
        *) echo "unknown argument: $1" >&2; usage ;;
    esac
done
case $compress in none | gzip | zstd) ;; *) die "--compress: none, gzip or zstd" ;; esac

for tool in cpio depmod modinfo xz; do
    command -v "$tool" >/dev/null || die "$tool not found (run qemu-scripts/host-deps.sh)"
done
BUSYBOX=${BUSYBOX:-/bin/busybox}
[[ -x $BUSYBOX ]] || die "no $BUSYBOX (apt-get install busybox-static)"
{ ldd "$BUSYBOX" 2>&1 || true; } | grep -q 'not a dynamic executable' ||
    die "$BUSYBOX is not static (apt-get install busybox-static)"

kdir=$("$here/fetch-kernel.sh" "$krel")
KREL=$krel
kmods=$kdir/root/lib/modules/$KREL
out=${out:-$kdir/initramfs.cpio}
t0=$(date +%s.%N)

stage=$(mktemp -d "${TMPDIR:-/tmp}/rapilog-initramfs.XXXXXX")
trap 'rm -rf "$stage"' EXIT

# --- busybox ----------------------------------------------------------------
mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,root,mnt,etc/rapilog/init.d,lib/modules/"$KREL"}
cp "$BUSYBOX" "$stage/bin/busybox"
while read -r applet; do
    [[ -e $stage/$applet ]] || ln -s /bin/busybox "$stage/$applet"
done < <("$BUSYBOX" --list-full)
ln -sf /bin/busybox "$stage/init"
install -m 0644 "$here/guest/inittab" "$stage/etc/inittab"
install -m 0755 "$here/guest/rcS" "$stage/etc/rapilog/rcS"
install -m 0755 "$here/guest/rapilog-agent" "$stage/bin/rapilog-agent"
install -m 0755 "$here/guest/disk-by-serial" "$stage/bin/disk-by-serial"
echo 'root:x:0:0:root:/root:/bin/sh' >"$stage/etc/passwd"
echo 'root:x:0:' >"$stage/etc/group"
tr ',' '\n' <<<"$load" >"$stage/etc/rapilog/modules-boot"
echo "$KREL" >"$stage/etc/rapilog/krel"

# --- extra files --------------------------------------------------------------
for o in "${overlays[@]}"; do
    [[ -d $o ]] || die "--overlay $o: not a directory"
    cp -a "$o/." "$stage/"
done
for a in "${adds[@]}"; do
    src=${a%%:*} dst=${a#*:}
    [[ $a == *:* && -n $src && $dst == /* ]] || die "--add $a: expected SRC:/ABSOLUTE/DEST"
    [[ -e $src ]] || die "--add $a: $src does not exist"
    mkdir -p "$stage$(dirname "$dst")"
    cp -a "$src" "$stage$dst"
done

# --- stock modules --------------------------------------------------------------
# modules.dep lines: "kernel/x/y.ko.xz: dep1.ko.xz dep2.ko.xz"
declare -A want=()   # relative path -> 1
# modname PATH-OR-NAME: sets REPLY to the canonical module name (no subshell:
# modules.dep has thousands of lines).
modname() { REPLY=${1##*/}; REPLY=${REPLY%%.ko*}; REPLY=${REPLY//-/_}; }
declare -A bypath=() deps=()
while IFS= read -r line; do
    p=${line%%:*}
    modname "$p"
    bypath[$REPLY]=$p
    deps[$p]=${line#*:}
done <"$kmods/modules.dep"
declare -A builtin=()
while IFS= read -r p; do modname "$p"; builtin[$REPLY]=1; done <"$kmods/modules.builtin"

add_module() { # NAME
    local n p d
    modname "$1"
    n=$REPLY
    [[ -n ${builtin[$n]:-} ]] && return 0
    p=${bypath[$n]:-}
    [[ -n $p ]] || die "module $1 is neither built into $KREL nor in its modules.dep"
    [[ -n ${want[$p]:-} ]] && return 0
    want[$p]=1
    for d in ${deps[$p]}; do add_module "$d"; done
}
for m in "${modules[@]}"; do add_module "$m"; done
# stock dependencies of modules added by --add/--overlay
while IFS= read -r -d '' ko; do
    dep=$(modinfo -F depends "$ko" 2>/dev/null || true)
    IFS=, read -ra ds <<<"$dep"
    for d in "${ds[@]}"; do
        [[ -z $d ]] && continue
        modname "$d"
        [[ -n ${builtin[$REPLY]:-} ]] && continue
        if [[ -n ${bypath[$REPLY]:-} ]]; then
            add_module "$d"
        elif ! find "$stage/lib/modules" -name "$d.ko*" -o -name "${d//_/-}.ko*" | grep -q .; then
            log "warning: $ko depends on $d, which is neither stock nor added"
        fi
    done
done < <(find "$stage/lib/modules" -name '*.ko*' -print0)
for p in "${!want[@]}"; do
    mkdir -p "$stage/lib/modules/$KREL/$(dirname "$p")"
    case $p in
        *.ko.xz) xz -dc "$kmods/$p" >"$stage/lib/modules/$KREL/${p%.xz}" ;;
        *.ko.zst) zstd -qdc "$kmods/$p" >"$stage/lib/modules/$KREL/${p%.zst}" ;;
        *) cp "$kmods/$p" "$stage/lib/modules/$KREL/$p" ;;
    esac
done
for f in modules.builtin modules.builtin.modinfo modules.order; do
    [[ -e $kmods/$f ]] && cp "$kmods/$f" "$stage/lib/modules/$KREL/"
done
depmod -b "$stage" "$KREL" || die "depmod on the initramfs failed"

# --- pack ---------------------------------------------------------------------
mkdir -p "$(dirname "$out")"
tmpout=$out.tmp.$$
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --reproducible --quiet) |
    case $compress in
        none) cat ;;
        gzip) gzip -1 -n ;;
        zstd) zstd -q -3 ;;
    esac >"$tmpout"
mv "$tmpout" "$out"
log "built $out ($(du -h "$out" | cut -f1), ${#want[@]} stock modules) in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
echo "$out"
