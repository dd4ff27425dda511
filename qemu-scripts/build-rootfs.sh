#!/bin/bash
# Build the Debian rootfs image QEMU tests boot when they need Debian tools
# (fio, mkfs.ext4/fsck.ext4, kexec-tools, dmsetup, ndctl, ...).
#
#   qemu-scripts/build-rootfs.sh [options]
#     -k, --krel KREL        kernel release (default 7.3.4+deb13-amd64); the
#                            Debian suite is SUITE from kernels/KREL.env
#     -o, --output FILE      write the image there (always packed again)
#                            instead of the cached .cache/guest/KREL/rootfs-KEY.img
#     -p, --packages "a b"   more packages on top of the default set (each
#                            set gets its own debootstrap tree and image)
#     --print-key            print the image cache key and exit
#
# Prints the image path. Steps (each cached):
#   1. debootstrap --variant=minbase of SUITE with DEFAULT_PACKAGES (+ the
#      extra ones) into .cache/guest/KREL/rootfs/PKGKEY/ (.debs kept in
#      .cache/guest/debs-SUITE/ for the next package set);
#   2. the stock modules of KREL (fetch-kernel.sh; /lib/modules/KREL/vmlinuz
#      is the bzImage, e.g. for `kexec -p`), depmod;
#   3. the boot files the busybox initramfs uses too (qemu-scripts/guest/:
#      inittab, rcS, rapilog-agent, disk-by-serial) and the host's static
#      busybox as /usr/lib/rapilog/busybox: it is PID 1 (busybox init) and
#      provides every applet the Debian tree lacks (reboot, devmem, ...);
#   4. mkfs.ext4 -d into a sparse raw image (>= 1 GiB) named after a key over
#      the package set, the suite, the kernel package and the content of this
#      script, the boot files and busybox: reused when present, rebuilt when
#      any of them changes.
# The image is booted by tests/lib/guest.py (Guest(rootfs=...)): the busybox
# initramfs runs qemu-scripts/guest/rapilog-root-init as rdinit, which loads
# virtio_blk + ext4, mounts the disk whose serial is rapilog.root=SERIAL and
# switch_roots into it. Runs as root; nothing is installed on the host.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=kernels/lib.sh
source "$here/../kernels/lib.sh"

# Keep this small: every test that boots the rootfs pays for its size once.
DEFAULT_PACKAGES="fio e2fsprogs kexec-tools dmsetup ndctl util-linux kmod procps iproute2 python3-minimal"
# Files of qemu-scripts/guest/ that go into the image (same as the initramfs).
BOOT_FILES=(inittab rcS rapilog-agent disk-by-serial)
MIN_SIZE=$((1 << 30))

krel=$DEFAULT_KREL
out=
extra=
print_key=0
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
while (($#)); do
    case $1 in
        -k | --krel) krel=$2; shift 2 ;;
        -o | --output) out=$2; shift 2 ;;
        -p | --packages) extra="$extra $2"; shift 2 ;;
        --print-key) print_key=1; shift ;;
        -h | --help) usage ;;
        *) echo "unknown argument: $1" >&2; usage ;;
    esac
done

load_kernel_env "$krel"
[[ -n ${SUITE:-} ]] || die "kernels/$krel.env has no SUITE"
BUSYBOX=${BUSYBOX:-/bin/busybox}
[[ -x $BUSYBOX ]] || die "no $BUSYBOX (apt-get install busybox-static)"

# Sorted, unique package set -> keys.
pkgs=$(tr ' ' '\n' <<<"$DEFAULT_PACKAGES $extra" | grep -v '^$' | LC_ALL=C sort -u | tr '\n' ' ')
pkgs=${pkgs% }
pkgkey=$(echo "$SUITE $pkgs" | sha256sum | cut -c1-12)
key=$( {
    echo "$pkgkey $KREL $KPKG_VERSION"
    cat "$0"
    for f in "${BOOT_FILES[@]}"; do echo "== $f"; cat "$here/guest/$f"; done
    sha256sum <"$BUSYBOX"
} | sha256sum | cut -c1-12)
base=$RAPILOG_CACHE/guest/$KREL
img=$base/rootfs-$pkgkey-$key.img
if ((print_key)); then echo "$pkgkey-$key"; exit 0; fi
if [[ -z $out && -e $img ]]; then
    echo "$img"
    exit 0
fi

[[ $(id -u) == 0 ]] || die "must run as root (debootstrap, mkfs.ext4 -d with owners)"
for tool in debootstrap mkfs.ext4 depmod; do
    command -v "$tool" >/dev/null || die "$tool not found (run qemu-scripts/host-deps.sh)"
done
kdir=$("$here/fetch-kernel.sh" "$krel")
mkdir -p "$base"
exec 9>"$RAPILOG_CACHE/guest/.lock-rootfs-$KREL"
flock 9
if [[ -z $out && -e $img ]]; then echo "$img"; exit 0; fi
t0=$(date +%s.%N)
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

# --- 1. debootstrap (cached per package set) -----------------------------------
tree=$base/rootfs/$pkgkey
if [[ ! -e $tree/.rapilog-debootstrapped ]]; then
    mirror=$(debian_mirror)
    debs=$RAPILOG_CACHE/guest/debs-$SUITE
    mkdir -p "$debs"
    rm -rf "$tree"
    mkdir -p "$tree"
    log "debootstrap $SUITE from $mirror: $pkgs"
    dlog=$base/rootfs/$pkgkey.debootstrap.log
    # Two stages, so that dpkg runs with force-unsafe-io: without it, dpkg's
    # fsync of every file makes the install stage several times slower.
    # --cache-dir keeps the .debs for the next package set (and a rebuild).
    unshare --mount --propagation private -- \
        debootstrap --foreign --variant=minbase --merged-usr --include="${pkgs// /,}" --cache-dir="$debs" \
        "$SUITE" "$tree" "$mirror" >"$dlog" 2>&1 ||
        { tail -n 30 "$dlog" >&2; die "debootstrap (first stage) failed (log: $dlog)"; }
    log "first stage done in $(since "$t0") s"
    mkdir -p "$tree/etc/dpkg/dpkg.cfg.d"
    echo force-unsafe-io >"$tree/etc/dpkg/dpkg.cfg.d/rapilog-unsafe-io"
    # In a private mount namespace (chroot_stage): the /proc the second stage
    # mounts cannot outlive it, even when its own unmount fails.
    chroot_stage "$tree" "$dlog" /debootstrap/debootstrap --second-stage ||
        { tail -n 30 "$dlog" >&2; die "debootstrap (second stage) failed (log: $dlog)"; }
    rm -f "$tree/etc/dpkg/dpkg.cfg.d/rapilog-unsafe-io"
    # The mirror's metadata may be past Valid-Until (apt in a chroot of it).
    echo 'Acquire::Check-Valid-Until "false";' >"$tree/etc/apt/apt.conf.d/99rapilog"
    # Documentation, manuals and translations: not needed by tests.
    rm -rf "$tree"/usr/share/{doc,man,info,locale}/* "$tree"/var/cache/apt/*.bin \
        "$tree"/var/lib/apt/lists/*_Packages "$tree"/var/cache/apt/archives/*.deb
    echo "$pkgs" >"$tree/.rapilog-debootstrapped"
    log "debootstrap done in $(since "$t0") s ($(du -shx "$tree" | cut -f1))"
    sync -f "$tree" # once, instead of dpkg's per-file fsync
fi

# --- 2. stock modules ---------------------------------------------------------------
t1=$(date +%s.%N)
# A tree left mounted by an earlier, interrupted run is released first.
release_mounts "$tree"
mkdir -p "$tree/usr/lib/modules"
rm -rf "$tree/usr/lib/modules/$KREL"
cp -a "$kdir/root/lib/modules/$KREL" "$tree/usr/lib/modules/$KREL"
depmod -b "$tree" "$KREL" || die "depmod in the rootfs failed"

# --- 3. boot files and busybox ---------------------------------------------------------
install -D -m 0755 "$BUSYBOX" "$tree/usr/lib/rapilog/busybox"
install -D -m 0644 "$here/guest/inittab" "$tree/etc/inittab"
install -D -m 0755 "$here/guest/rcS" "$tree/etc/rapilog/rcS"
install -D -m 0755 "$here/guest/rapilog-agent" "$tree/usr/bin/rapilog-agent"
install -D -m 0755 "$here/guest/disk-by-serial" "$tree/usr/bin/disk-by-serial"
mkdir -p "$tree/etc/rapilog/init.d"
echo "$KREL" >"$tree/etc/rapilog/krel"
# The initramfs's list replaces this one at boot (Guest(load=...)).
printf '%s\n' virtio_blk button evdev pvpanic-pci >"$tree/etc/rapilog/modules-boot"
echo rapilog-guest >"$tree/etc/hostname"
: >"$tree/etc/fstab"
# busybox applets the Debian tree lacks (init, reboot, devmem, ...): links in
# /usr/bin or /usr/sbin (merged /bin and /sbin), Debian's binaries win.
# Links made by an earlier run of this step are made again.
find "$tree/usr/bin" "$tree/usr/sbin" -maxdepth 1 -type l -lname /usr/lib/rapilog/busybox -delete
n=0
while read -r applet; do
    name=${applet##*/}
    [[ -e $tree/usr/bin/$name || -L $tree/usr/bin/$name || -e $tree/usr/sbin/$name || -L $tree/usr/sbin/$name ]] && continue
    case $applet in sbin/* | */sbin/*) d=usr/sbin ;; *) d=usr/bin ;; esac
    ln -s /usr/lib/rapilog/busybox "$tree/$d/$name"
    n=$((n + 1))
done < <("$BUSYBOX" --list-full)

# --- 4. pack ------------------------------------------------------------------------------
target=${out:-$img}
pack_tree "$tree" "$target" rapilog-root "$MIN_SIZE"
size=$(stat -c %s "$target")
if [[ -z $out ]]; then
    # Older images of this package set (other boot files or script version).
    for old in "$base"/rootfs-"$pkgkey"-*.img; do
        [[ $old == "$img" ]] || rm -f "$old"
    done
fi
log "packed $target ($((size >> 20)) MiB, $(du -sh "$target" | cut -f1) used, $n busybox applets) in $(since "$t1") s; total $(since "$t0") s"
echo "$target"
